//! A group's quota over all its plugins' calls (a tenant's, to the host): calls running
//! at once with a bounded queue, calls per second from a token bucket, and a CPU share.
//! The share bounds both how many of the group's calls are being polled at one instant
//! (the share rounded up, so a share below the core count always leaves a worker to
//! others) and its average: every poll is charged to a bucket of cores' worth of CPU
//! time over [`CPU_WINDOW`], and once that is spent the group's calls are held back until
//! it refills (as a cgroup's CPU quota does). Taken before the plugin's own admission, held
//! until the call ends, so a group's many plugins share one budget.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::admission::{Admission, Slot};
use crate::errors::{CallError, Limit};

/// What a group may run; `None` parts are unbounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaLimits {
    /// Calls running at once, and waiting for one of those places.
    pub concurrency: Option<(usize, usize)>,
    /// Calls admitted per second, and the burst the bucket holds.
    pub rate: Option<(f64, f64)>,
    /// Cores of CPU time the group's calls may use, averaged over [`CPU_WINDOW`].
    pub cpu: Option<f64>,
    /// Bytes of linear memory all the group's instances may hold, idle warm ones
    /// included.
    pub memory: Option<usize>,
}

/// A group's linear-memory budget, charged as its instances grow and given back as they
/// go.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// The group, for refusals.
    pub(crate) group: Arc<str>,
    pub(crate) limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl MemoryBudget {
    /// Takes `bytes`, or nothing when they would pass the limit.
    pub(crate) fn take(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    pub(crate) fn give(&self, bytes: usize) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The window a CPU share is averaged over: how far a group may run ahead of its share.
pub const CPU_WINDOW: Duration = Duration::from_millis(100);

/// One group's live quota, shared by its routes.
pub struct Quota {
    name: Arc<str>,
    admission: Option<Admission>,
    bucket: Option<Mutex<Bucket>>,
    /// CPU time, in seconds, as a bucket refilled at the share.
    cpu: Option<Mutex<Bucket>>,
    /// Workers the group's calls may occupy at one instant: the share, rounded up.
    workers: Option<Arc<Semaphore>>,
    memory: Option<Arc<MemoryBudget>>,
}

impl Bucket {
    /// Adds what has dripped in since the last look.
    fn refill(&mut self) {
        let now = Instant::now();
        let dripped = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + dripped).min(self.burst);
        self.at = now;
    }
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A token bucket: `tokens` now, refilled at `rate` a second up to `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

/// A call's place under its group's quota, given back when the call ends.
pub(crate) struct QuotaSlot {
    _running: Option<Slot>,
}

impl Quota {
    /// The quota of the group `name` (named in refusals).
    pub fn new(name: &str, limits: &QuotaLimits) -> Self {
        Self {
            name: Arc::from(name),
            admission: limits
                .concurrency
                .map(|(running, queued)| Admission::new(running, queued, 100)),
            bucket: limits.rate.map(|(rate, burst)| {
                Mutex::new(Bucket {
                    tokens: burst,
                    rate,
                    burst,
                    at: Instant::now(),
                })
            }),
            memory: limits.memory.map(|limit| {
                Arc::new(MemoryBudget {
                    group: Arc::from(name),
                    limit,
                    used: std::sync::atomic::AtomicUsize::new(0),
                })
            }),
            workers: limits
                .cpu
                .map(|cores| Arc::new(Semaphore::new((cores.ceil() as usize).max(1)))),
            cpu: limits.cpu.map(|cores| {
                let burst = cores * CPU_WINDOW.as_secs_f64();
                Mutex::new(Bucket {
                    tokens: burst,
                    rate: cores,
                    burst,
                    at: Instant::now(),
                })
            }),
        }
    }

    /// Charges `used` CPU time to the group's share.
    pub(crate) fn charge(&self, used: Duration) {
        if let Some(cpu) = &self.cpu {
            let mut cpu = cpu.lock().unwrap_or_else(|e| e.into_inner());
            cpu.refill();
            cpu.tokens -= used.as_secs_f64();
        }
    }

    /// The group's memory budget, when it has one.
    pub(crate) fn memory(&self) -> Option<&Arc<MemoryBudget>> {
        self.memory.as_ref()
    }

    /// The workers the group may occupy at once, when it has a CPU share.
    pub(crate) fn workers(&self) -> Option<&Arc<Semaphore>> {
        self.workers.as_ref()
    }

    /// How long the group's calls must wait before running again: none while its CPU
    /// share has time left.
    pub(crate) fn cpu_wait(&self) -> Option<Duration> {
        let cpu = self.cpu.as_ref()?;
        let mut cpu = cpu.lock().unwrap_or_else(|e| e.into_inner());
        cpu.refill();
        (cpu.tokens < 0.0).then(|| {
            Duration::try_from_secs_f64(-cpu.tokens / cpu.rate).unwrap_or(CPU_WINDOW * 100)
        })
    }

    /// A place for one call: a token now, then a running place (waiting in the queue if
    /// need be, within the call's deadline); refused at once otherwise.
    pub(crate) async fn admit(&self) -> Result<QuotaSlot, CallError> {
        if let Some(bucket) = &self.bucket {
            let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.refill();
            if bucket.tokens < 1.0 {
                return Err(CallError::Limit(Limit::GroupRate {
                    group: self.name.to_string(),
                    rate: bucket.rate,
                }));
            }
            bucket.tokens -= 1.0;
        }
        let Some(admission) = &self.admission else {
            return Ok(QuotaSlot { _running: None });
        };
        let admitted = admission.admit(&self.name).await;
        if admitted.is_err()
            && let Some(bucket) = &self.bucket
        {
            // A refused call gives its token back: refusals must not spend the rate.
            let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
            bucket.tokens = (bucket.tokens + 1.0).min(bucket.burst);
        }
        admitted
            .map(|slot| QuotaSlot {
                _running: Some(slot),
            })
            .map_err(|error| match error {
                CallError::Limit(Limit::Concurrency { running, queued }) => {
                    CallError::Limit(Limit::GroupConcurrency {
                        group: self.name.to_string(),
                        running,
                        queued,
                    })
                }
                other => other,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_admits_its_burst_then_refills_at_its_rate() {
        let quota = Quota::new(
            "acme",
            &QuotaLimits {
                rate: Some((50.0, 3.0)),
                ..QuotaLimits::default()
            },
        );
        for _ in 0..3 {
            quota.admit().await.unwrap();
        }
        let Err(refused) = quota.admit().await else {
            panic!("the burst is spent");
        };
        assert_eq!(
            refused.to_string(),
            "tenant acme is over its rate of 50 calls a second (tenants.acme.rate)"
        );
        // Two tokens' worth of time at 50 a second.
        std::thread::sleep(Duration::from_millis(40));
        quota.admit().await.expect("a token came back");
    }

    #[tokio::test]
    async fn running_places_are_shared_and_refused_past_the_queue() {
        let quota = Quota::new(
            "acme",
            &QuotaLimits {
                concurrency: Some((1, 0)),
                ..QuotaLimits::default()
            },
        );
        let running = quota.admit().await.unwrap();
        let Err(refused) = quota.admit().await else {
            panic!("no queue");
        };
        assert!(
            refused
                .to_string()
                .contains("(tenants.acme.max_concurrent_calls, tenants.acme.max_queued_calls)"),
            "{refused}"
        );
        drop(running);
        quota.admit().await.expect("the place came back");
    }

    #[test]
    fn a_cpu_share_spent_holds_calls_back_for_what_it_overdrew() {
        let quota = Quota::new(
            "acme",
            &QuotaLimits {
                cpu: Some(0.5),
                ..QuotaLimits::default()
            },
        );
        assert_eq!(
            quota.cpu_wait(),
            None,
            "half a core over 100 ms: 50 ms to start with"
        );
        quota.charge(Duration::from_millis(150));
        let wait = quota.cpu_wait().expect("overdrawn by 100 ms");
        // 100 ms of CPU at half a core: about 200 ms.
        assert!(
            (Duration::from_millis(180)..=Duration::from_millis(200)).contains(&wait),
            "{wait:?}"
        );
        assert_eq!(quota.workers().map(|w| w.available_permits()), Some(1));
    }
}
