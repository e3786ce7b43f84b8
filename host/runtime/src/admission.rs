//! Per-plugin admission: a bounded number of a plugin's calls run, a bounded number wait
//! for a slot, and the rest are refused at once, so one tenant's flood queues behind its
//! own limit instead of everyone's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::{CallError, Limit};

/// Slots and queue of one plugin.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    queued: AtomicUsize,
    max_queued: usize,
}

/// A running call's slot, given back when dropped.
pub(crate) type Slot = OwnedSemaphorePermit;

impl Admission {
    pub(crate) fn new(max_concurrent: usize, max_queued: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            queued: AtomicUsize::new(0),
            max_queued,
        }
    }

    /// A slot now, or after waiting in the queue; refused at once when the queue is full.
    /// The wait is bounded by the caller's deadline.
    pub(crate) async fn admit(&self) -> Result<Slot, CallError> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(CallError::Limit(Limit::Concurrency {
                running: self.max_concurrent,
                queued: self.max_queued,
            }));
        }
        let _in_queue = QueuePlace(&self.queued);
        // The semaphore is never closed, so acquiring can only wait.
        self.slots.clone().acquire_owned().await.map_err(|_| {
            CallError::Limit(Limit::Concurrency {
                running: self.max_concurrent,
                queued: self.max_queued,
            })
        })
    }
}

/// Leaves the queue when the wait ends, however it ends.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_up_to_the_limit_queues_up_to_the_queue_and_refuses_the_rest() {
        let admission = Arc::new(Admission::new(2, 1));
        let running = [
            admission.admit().await.unwrap(),
            admission.admit().await.unwrap(),
        ];
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        while admission.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = admission.admit().await.unwrap_err();
        assert!(matches!(
            refused,
            CallError::Limit(Limit::Concurrency {
                running: 2,
                queued: 1
            })
        ));
        drop(running);
        waiting.await.unwrap().unwrap();
        assert_eq!(admission.queued.load(Ordering::Acquire), 0);
    }
}
