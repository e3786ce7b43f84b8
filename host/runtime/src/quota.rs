//! A group's quota over all its plugins' calls (a tenant's, to the host): calls running
//! at once with a bounded queue, and calls per second from a token bucket. Taken before
//! the plugin's own admission, held until the call ends, so a group's many plugins share
//! one budget.

use std::sync::{Arc, Mutex};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use crate::admission::{Admission, Slot};
use crate::errors::{CallError, Limit};

/// What a group may run; `None` parts are unbounded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaLimits {
    /// Calls running at once, and waiting for one of those places.
    pub concurrency: Option<(usize, usize)>,
    /// Calls admitted per second, and the burst the bucket holds.
    pub rate: Option<(f64, f64)>,
}

/// One group's live quota, shared by its routes.
pub struct Quota {
    name: Arc<str>,
    admission: Option<Admission>,
    bucket: Option<Mutex<Bucket>>,
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
        }
    }

    /// A place for one call: a token now, then a running place (waiting in the queue if
    /// need be, within the call's deadline); refused at once otherwise.
    pub(crate) async fn admit(&self) -> Result<QuotaSlot, CallError> {
        if let Some(bucket) = &self.bucket {
            let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(bucket.at).as_secs_f64() * bucket.rate;
            bucket.tokens = (bucket.tokens + refill).min(bucket.burst);
            bucket.at = now;
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
        admission
            .admit(&self.name)
            .await
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
                concurrency: None,
                rate: Some((50.0, 3.0)),
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
                rate: None,
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
}
