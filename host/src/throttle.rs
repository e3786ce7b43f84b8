//! Problems that a client or a plugin can repeat at will (a limit reached, a trap, a
//! broken contract, a refused connection) are logged at most a few times a second per
//! subject (a plugin, or the listener) and kind; the rest are counted, and the count
//! rides on the next line logged for them. A client flooding the host, or a plugin
//! trapping on every call, cannot flood the operator's log.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines one plugin may log for one kind of problem per window.
const LINES_PER_WINDOW: u32 = 5;

/// How long a window lasts.
const WINDOW: Duration = Duration::from_secs(1);

/// One plugin's count of one kind of problem in the current window.
struct Window {
    started: Instant,
    logged: u32,
    /// Not logged so far, in this window or before.
    suppressed: u64,
}

/// Whether a line about `kind` for `plugin` (or another subject) may be logged now: `Some(n)` with the lines
/// left out before it, or `None` when this one is left out (and counted).
pub(crate) fn allow(plugin: &str, kind: &'static str) -> Option<u64> {
    static WINDOWS: OnceLock<Mutex<HashMap<(String, &'static str), Window>>> = OnceLock::new();
    let mut windows = WINDOWS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let window = windows.entry((plugin.to_owned(), kind)).or_insert(Window {
        started: now,
        logged: 0,
        suppressed: 0,
    });
    if now.duration_since(window.started) >= WINDOW {
        window.started = now;
        window.logged = 0;
    }
    if window.logged >= LINES_PER_WINDOW {
        window.suppressed += 1;
        return None;
    }
    window.logged += 1;
    Some(std::mem::take(&mut window.suppressed))
}

/// How a line tells what was left out before it.
pub(crate) fn left_out(count: u64) -> String {
    match count {
        0 => String::new(),
        1 => " (1 more like it was not logged)".to_owned(),
        n => format!(" ({n} more like it were not logged)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_counted_and_the_count_reported() {
        let allowed = (0..100)
            .filter(|_| allow("flood", "trap").is_some())
            .count();
        assert_eq!(allowed, LINES_PER_WINDOW as usize);
        assert!(allow("other", "trap").is_some(), "per plugin");
        assert!(allow("flood", "limit").is_some(), "per kind");
        std::thread::sleep(WINDOW);
        assert_eq!(
            allow("flood", "trap"),
            Some(100 - u64::from(LINES_PER_WINDOW))
        );
        assert_eq!(left_out(95), " (95 more like it were not logged)");
    }
}
