//! What every benchmark report states the same way: the machine, and durations.

use std::time::Duration;

/// Cores and CPU model, for a report's first line.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Every core the machine has, not only those this process may run on (a pinned
    // benchmark sees one).
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |info| {
        info.lines().filter(|l| l.starts_with("processor")).count()
    });
    format!("{cores} cores ({cpu})")
}

/// A duration in milliseconds, two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Sorted durations as `p50 | min | max` table cells.
pub fn median_min_max(sorted: &[Duration]) -> String {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return "— | — | —".into();
    };
    let median = sorted[sorted.len() / 2];
    format!("{} | {} | {}", ms(median), ms(*first), ms(*last))
}
