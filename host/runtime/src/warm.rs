//! Warm instances, for plugins that declare themselves stateless: an instance that ended
//! a call cleanly is kept and serves a later call, which then skips instantiation and
//! teardown. One call at a time per instance, and nothing is kept after a fault.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::sandbox::Sandbox;

/// Calls one instance serves before it is replaced: bounds what a slow leak can grow to.
pub(crate) const MAX_CALLS_PER_INSTANCE: u32 = 10_000;

/// Linear memory an instance may have grown to and still be kept idle: bounds what idle
/// instances hold (this times [`MAX_IDLE_INSTANCES`] at most).
pub(crate) const MAX_IDLE_MEMORY: usize = 8 << 20;

/// Idle instances across the host, at most; and at most a quarter of its sandboxes, so
/// that idle ones never take the pool from calls.
pub(crate) const MAX_IDLE_INSTANCES: usize = 250;

/// The host-wide count of idle instances, and every pool holding them, so that a call
/// finding the sandbox pool full can have them freed; cheap to clone.
#[derive(Clone)]
pub(crate) struct IdleBudget {
    idle: Arc<AtomicUsize>,
    limit: usize,
    pools: Arc<Mutex<Vec<Weak<WarmPool>>>>,
}

impl IdleBudget {
    /// A budget for a host pooling `sandboxes`.
    pub(crate) fn new(sandboxes: usize) -> Self {
        Self {
            idle: Arc::default(),
            limit: MAX_IDLE_INSTANCES.min(sandboxes / 4),
            pools: Arc::default(),
        }
    }

    /// Drops every idle instance of every plugin, giving their sandboxes back to the
    /// pool; how many there were.
    pub(crate) fn evict(&self) -> usize {
        let pools: Vec<Arc<WarmPool>> = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|pool| pool.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        pools.iter().map(|pool| pool.clear()).sum()
    }

    fn try_reserve(&self) -> Option<IdlePermit> {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                (idle < self.limit).then_some(idle + 1)
            })
            .ok()
            .map(|_| IdlePermit(self.idle.clone()))
    }

    /// Whether any instance may be kept idle at all (a tiny pool keeps none).
    pub(crate) fn allows_idle(&self) -> bool {
        self.limit > 0
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.load(Ordering::Acquire)
    }
}

/// One idle instance's place in the [`IdleBudget`], given back when it leaves the pool.
struct IdlePermit(Arc<AtomicUsize>);

impl Drop for IdlePermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One plugin version's idle instances; dropped (with them) when the version is.
pub(crate) struct WarmPool {
    idle: Mutex<Vec<(Sandbox, IdlePermit)>>,
    capacity: usize,
    budget: IdleBudget,
}

impl WarmPool {
    /// A pool keeping at most `capacity` idle instances, within the host's `budget`.
    pub(crate) fn new(capacity: usize, budget: IdleBudget) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::new(Vec::new()),
            capacity,
            budget: budget.clone(),
        });
        let mut pools = budget.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|pool| pool.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        drop(pools);
        pool
    }

    /// The most recently used idle instance (its memory is the likeliest to be cached).
    pub(crate) fn take(&self) -> Option<Sandbox> {
        self.lock().pop().map(|(sandbox, _permit)| sandbox)
    }

    /// Keeps `sandbox`, whose call just ended cleanly, for a later call, unless it served
    /// its share of calls, holds leftovers of the call, or there is no room.
    pub(crate) fn put(&self, mut sandbox: Sandbox) {
        sandbox.calls += 1;
        if sandbox.calls >= MAX_CALLS_PER_INSTANCE || !sandbox.store.data().reusable() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.capacity {
            return;
        }
        if let Some(permit) = self.budget.try_reserve() {
            idle.push((sandbox, permit));
        }
    }

    /// Drops the idle instances (outside the lock); how many there were.
    /// Instances idle in the pool now.
    pub(crate) fn idle(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn clear(&self) -> usize {
        let idle = std::mem::take(&mut *self.lock());
        idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sandbox, IdlePermit)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_budget_bounds_idle_instances_and_is_given_back() {
        for (sandboxes, limit) in [(1000, 250), (16_384, MAX_IDLE_INSTANCES), (100, 25)] {
            let budget = IdleBudget::new(sandboxes);
            let permits: Vec<_> = std::iter::from_fn(|| budget.try_reserve())
                .take(MAX_IDLE_INSTANCES + 10)
                .collect();
            assert_eq!(permits.len(), limit);
            assert!(budget.try_reserve().is_none());
            drop(permits);
            assert_eq!(budget.idle(), 0);
            assert!(budget.try_reserve().is_some());
        }
    }
}
