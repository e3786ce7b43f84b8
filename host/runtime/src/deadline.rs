//! A call's deadline: computed once, from what the client asked and the plugin's limits,
//! and enforced the same way for every call shape: the whole call (queueing, reading the
//! request, the guest, host awaits) runs under [`Deadline::bound`], and the epoch
//! callback traps a spinning guest at the next tick past it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::limits::Limits;

/// How far ahead a deadline can be at most; config validation keeps `max_deadline`
/// within it, so this only guards a config built in code.
const FARTHEST: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a call must be over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of a call starting now whose client asked for `requested`: the
    /// plugin's `deadline` when it asked for none, never past its `max_deadline`.
    pub fn for_call(requested: Option<Duration>, limits: &Limits) -> Self {
        let wanted = requested
            .map_or(limits.deadline, |d| d.min(limits.max_deadline))
            .min(FARTHEST);
        Self(Instant::now() + wanted)
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Self(at)
    }

    /// The moment itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left (zero once it has passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// `work`'s output, or `None` if the deadline passes first (`work` is then dropped,
    /// which stops a guest inside it).
    pub async fn bound<F: Future>(self, work: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.0.into(), work).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_LIMITS;

    #[test]
    fn client_deadlines_are_capped_and_defaulted() {
        let limits = Limits {
            deadline: Duration::from_secs(1),
            max_deadline: Duration::from_secs(10),
            ..DEFAULT_LIMITS
        };
        let left = |requested| Deadline::for_call(requested, &limits).remaining();
        assert!(left(None) <= Duration::from_secs(1) && left(None) > Duration::from_millis(900));
        let asked = left(Some(Duration::from_secs(3)));
        assert!(asked <= Duration::from_secs(3) && asked > Duration::from_millis(2900));
        let capped = left(Some(Duration::from_secs(300)));
        assert!(capped <= Duration::from_secs(10) && capped > Duration::from_millis(9900));
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_dropped() {
        let deadline = Deadline::at(Instant::now() + Duration::from_millis(20));
        assert_eq!(deadline.bound(async { 7 }).await, Some(7));
        let never = deadline.bound(std::future::pending::<()>()).await;
        assert_eq!(never, None);
        assert!(deadline.passed());
    }
}
