//! Per-plugin admission: a bounded number of a plugin's calls run, a bounded number wait
//! for a slot, and the rest are refused at once, so one tenant's flood queues behind its
//! own limit instead of everyone's. Within a plugin, admission is fair between callers
//! (an identity, or an address when none is known; the front door says which): one
//! caller may hold at most its share of the slots, and of the queue, so a client holding
//! many idle streams leaves room for the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::{CallError, Limit};

/// Slots and queue of one plugin.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    /// Calls admitted or waiting. Counted this way, not as "waiting", a slot given back
    /// makes room at once: a waiter handed that slot may not have run yet to leave the
    /// queue, and the next call must not be refused for it.
    in_system: Arc<AtomicUsize>,
    max_queued: usize,
    /// Slots one caller may hold.
    caller_slots: usize,
    /// Queue places one caller may hold.
    caller_queue: usize,
    callers: Arc<Mutex<HashMap<Arc<str>, Arc<CallerShare>>>>,
}

/// What one caller holds of a plugin: its own slots (at most its share) and places in
/// the queue.
struct CallerShare {
    slots: Arc<Semaphore>,
    /// Calls of this caller admitted or waiting: the entry goes when none are.
    calls: AtomicUsize,
}

/// A running call's slot, given back when dropped.
pub(crate) struct Slot {
    // Dropped first: the count goes down before the slot is free, never after.
    _place: Place,
    _plugin: OwnedSemaphorePermit,
    _caller: OwnedSemaphorePermit,
    _call: CallerCall,
}

/// A call counted in a plugin's calls admitted or waiting, until dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub(crate) fn new(max_concurrent: usize, max_queued: usize, caller_percent: u8) -> Self {
        let share = |total: usize| {
            let share = (total as u128 * u128::from(caller_percent)).div_ceil(100);
            usize::try_from(share).unwrap_or(usize::MAX).max(1)
        };
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            in_system: Arc::default(),
            max_queued,
            caller_slots: share(max_concurrent),
            caller_queue: share(max_queued),
            callers: Arc::default(),
        }
    }

    /// A slot now, or after waiting in the queue; refused at once when the queue, or
    /// the caller's share of it, is full. The wait is bounded by the call's deadline.
    /// Calls running now: slots taken.
    pub(crate) fn running(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.slots.available_permits())
    }

    pub(crate) async fn admit(&self, caller: &Arc<str>) -> Result<Slot, CallError> {
        let capacity = self.max_concurrent + self.max_queued;
        if self.in_system.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.in_system.fetch_sub(1, Ordering::AcqRel);
            return Err(self.full());
        }
        let place = Place(self.in_system.clone());
        let call = self.call_of(caller);
        let share = call.share.clone();
        // This call is counted in `calls` already.
        if share.calls.load(Ordering::Acquire) > self.caller_slots + self.caller_queue {
            return Err(CallError::Limit(Limit::CallerShare {
                running: self.caller_slots,
                queued: self.caller_queue,
            }));
        }
        // The caller's own share first, so a caller over it waits without holding one of
        // the plugin's slots. Neither semaphore is ever closed: acquiring can only wait.
        let own = share.slots.clone().acquire_owned().await;
        let slot = self.slots.clone().acquire_owned().await;
        match (own, slot) {
            (Ok(own), Ok(slot)) => Ok(Slot {
                _plugin: slot,
                _caller: own,
                _call: call,
                _place: place,
            }),
            _ => Err(self.full()),
        }
    }

    fn full(&self) -> CallError {
        CallError::Limit(Limit::Concurrency {
            running: self.max_concurrent,
            queued: self.max_queued,
        })
    }

    /// `caller`'s share, made on its first call.
    fn call_of(&self, caller: &Arc<str>) -> CallerCall {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        let share = callers
            .entry(caller.clone())
            .or_insert_with(|| {
                Arc::new(CallerShare {
                    slots: Arc::new(Semaphore::new(self.caller_slots)),
                    calls: AtomicUsize::new(0),
                })
            })
            .clone();
        share.calls.fetch_add(1, Ordering::AcqRel);
        CallerCall {
            share,
            caller: caller.clone(),
            callers: self.callers.clone(),
        }
    }
}

/// One call of a caller, admitted or waiting; the caller's entry goes with its last call.
struct CallerCall {
    share: Arc<CallerShare>,
    caller: Arc<str>,
    callers: Arc<Mutex<HashMap<Arc<str>, Arc<CallerShare>>>>,
}

impl Drop for CallerCall {
    fn drop(&mut self) {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if self.share.calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            callers.remove(&self.caller);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_up_to_the_limit_queues_up_to_the_queue_and_refuses_the_rest() {
        let admission = Arc::new(Admission::new(2, 1, 100));
        let running = [
            admission.admit(&"a".into()).await.unwrap(),
            admission.admit(&"a".into()).await.unwrap(),
        ];
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(&"a".into()).await.map(drop) }
        });
        tokio::task::yield_now().await;
        while admission.in_system.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let Err(refused) = admission.admit(&"b".into()).await else {
            panic!("a full queue refuses");
        };
        assert!(matches!(
            refused,
            CallError::Limit(Limit::Concurrency {
                running: 2,
                queued: 1
            })
        ));
        drop(running);
        waiting.await.unwrap().unwrap();
        assert_eq!(admission.in_system.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn one_caller_holds_at_most_its_share_and_the_others_get_the_rest() {
        // Half of 4 slots and of 2 queue places.
        let admission = Arc::new(Admission::new(4, 2, 50));
        let greedy = [
            admission.admit(&"greedy".into()).await.unwrap(),
            admission.admit(&"greedy".into()).await.unwrap(),
        ];
        // Over its share of slots, the greedy caller waits, holding no plugin slot.
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit(&"greedy".into()).await.map(drop) }
        });
        while admission.in_system.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let Err(refused) = admission.admit(&"greedy".into()).await else {
            panic!("a caller over its share of the queue is refused");
        };
        assert!(matches!(
            refused,
            CallError::Limit(Limit::CallerShare {
                running: 2,
                queued: 1
            })
        ));
        let others = [
            admission.admit(&"polite".into()).await.unwrap(),
            admission.admit(&"other".into()).await.unwrap(),
        ];
        drop(greedy);
        waiting.await.unwrap().unwrap();
        drop(others);
        assert!(
            admission.callers.lock().unwrap().is_empty(),
            "callers with no call are forgotten"
        );
    }
}
