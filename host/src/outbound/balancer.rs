//! Which endpoint a call goes to: round robin or power of two choices over the live
//! endpoints, and outlier ejection — an endpoint that keeps failing sits out a while,
//! longer each time it comes back failing. Never ejects the last live endpoint: a target
//! with every endpoint failing still tries one, so it notices when the service is back.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::config::LoadBalancing;
use plugrpc_runtime::duration;

/// What a call is sent through: a channel to one address, or the host's own router.
pub(super) type HttpService =
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// A failure of the service a call is sent through (its cause is the source). A type
/// of its own rather than a `Box<dyn Error>`: a future awaiting a service whose error is
/// a trait object cannot be proven `Send` by rustc (rust-lang/rust#110338), and the host
/// spawns calls.
#[derive(Debug)]
pub(super) struct TransportError(tower::BoxError);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// `service` as an [`HttpService`].
pub(super) fn http_service<S>(service: S) -> HttpService
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    HttpService::new(tower::ServiceExt::map_err(service, |error: S::Error| {
        TransportError(error.into())
    }))
}

/// Failures in a row that eject an endpoint: Envoy's outlier detection default
/// (`consecutive_5xx`). Few enough that a dead endpoint costs a handful of calls (most
/// of them retried elsewhere), enough that one blip does not take a healthy one out.
pub(super) const EJECT_AFTER: u32 = 5;

/// How long a first ejection lasts: a restarted server is usually back within seconds,
/// so shorter than Envoy's 30 s, which suits fleets of many endpoints more than a
/// target of two or three.
pub(super) const BASE_EJECTION: Duration = Duration::from_secs(10);

/// The longest ejection, however often it failed again: Envoy's `max_ejection_time`.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// One endpoint address and what the balancer knows of it.
pub(super) struct Backend {
    /// Where it is, for logs and errors: `10.0.0.5:50051`, `name:port (10.0.0.5:50051)`
    /// or `local`.
    pub(super) address: String,
    /// Which `endpoints` entry and address it is, to keep it across re-resolutions.
    key: Option<(usize, SocketAddr)>,
    service: HttpService,
    in_flight: AtomicUsize,
    health: Mutex<Health>,
}

/// An endpoint's recent record.
#[derive(Default)]
struct Health {
    /// Failures since its last success or ejection.
    failures: u32,
    /// Ejected until then.
    ejected_until: Option<Instant>,
    /// Ejections since its last success: each doubles the next.
    ejections: u32,
}

impl Backend {
    /// An endpoint reached through `service`.
    pub(super) fn new(
        address: String,
        key: Option<(usize, SocketAddr)>,
        service: HttpService,
    ) -> Self {
        Self {
            address,
            key,
            service,
            in_flight: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    /// Which `endpoints` entry and address it is (none for the local router).
    pub(super) fn key(&self) -> Option<(usize, SocketAddr)> {
        self.key
    }

    /// A handle to send one call through (cheap: the connection is shared).
    pub(super) fn service(&self) -> HttpService {
        self.service.clone()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_live(&self, now: Instant) -> bool {
        self.health().ejected_until.is_none_or(|until| until <= now)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A call in flight on a backend, counted for power of two choices until dropped.
pub(super) struct InFlight(Arc<Backend>);

impl InFlight {
    fn new(backend: Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(backend)
    }

    /// The backend the call is on.
    pub(super) fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints as last resolved.
pub(super) struct Snapshot {
    /// Every address, live or ejected, in a stable order.
    pub(super) backends: Vec<Arc<Backend>>,
    /// Whether every host name has had its first resolution (or failed it).
    pub(super) settled: bool,
    /// Why there is no backend, when resolution failed.
    pub(super) problem: Option<String>,
}

/// Why no backend was picked.
pub(super) enum NoBackend {
    /// The names were not resolved before the call's deadline.
    Deadline,
    /// Resolution is done and gave nothing; why.
    Unresolved(String),
}

/// Picks backends for one target's calls and keeps their records.
pub(super) struct Balancer {
    alias: Arc<str>,
    mode: LoadBalancing,
    next: AtomicUsize,
    set: watch::Receiver<Arc<Snapshot>>,
    /// Held while deciding an ejection, so two at once cannot eject the last two.
    ejecting: Mutex<()>,
}

impl Balancer {
    /// A balancer over the backends `set` publishes.
    pub(super) fn new(
        alias: Arc<str>,
        mode: LoadBalancing,
        set: watch::Receiver<Arc<Snapshot>>,
    ) -> Self {
        Self {
            alias,
            mode,
            next: AtomicUsize::new(0),
            set,
            ejecting: Mutex::new(()),
        }
    }

    /// A backend for the next attempt, preferring one other than `avoid`; waits (until
    /// `deadline`) for the first resolution of host names if there is nothing yet.
    pub(super) async fn pick(
        &self,
        avoid: Option<&Arc<Backend>>,
        deadline: Instant,
    ) -> Result<InFlight, NoBackend> {
        let mut set = self.set.clone();
        let ready = |s: &Arc<Snapshot>| s.settled || !s.backends.is_empty();
        let waited = tokio::time::timeout_at(deadline, set.wait_for(ready))
            .await
            .map(|found| found.map(|snapshot| Arc::clone(&snapshot)));
        let snapshot = match waited {
            Err(_) => return Err(NoBackend::Deadline),
            Ok(Ok(snapshot)) => snapshot,
            // The resolver is gone (the target is being dropped): what it left.
            Ok(Err(_)) => Arc::clone(&set.borrow()),
        };
        self.choose(&snapshot, avoid)
            .map(InFlight::new)
            .ok_or_else(|| {
                NoBackend::Unresolved(
                    snapshot
                        .problem
                        .clone()
                        .unwrap_or_else(|| "no endpoint address".into()),
                )
            })
    }

    fn choose(&self, snapshot: &Snapshot, avoid: Option<&Arc<Backend>>) -> Option<Arc<Backend>> {
        let now = Instant::now();
        let mut live: Vec<&Arc<Backend>> = snapshot
            .backends
            .iter()
            .filter(|b| b.is_live(now))
            .collect();
        if live.is_empty() {
            // Ejections of backends resolved away can leave none: try them all.
            live = snapshot.backends.iter().collect();
        }
        if let Some(avoid) = avoid
            && live.len() > 1
        {
            live.retain(|b| !Arc::ptr_eq(b, avoid));
        }
        let chosen = match (self.mode, live.len()) {
            (_, 0) => return None,
            (_, 1) => live[0],
            (LoadBalancing::RoundRobin, n) => live[self.next.fetch_add(1, Ordering::Relaxed) % n],
            (LoadBalancing::P2c, n) => {
                let first = fastrand::usize(..n);
                let mut second = fastrand::usize(..n - 1);
                if second >= first {
                    second += 1;
                }
                let (a, b) = (live[first], live[second]);
                if b.in_flight() < a.in_flight() { b } else { a }
            }
        };
        Some(Arc::clone(chosen))
    }

    /// Records an attempt's outcome on `backend`: a failure (UNAVAILABLE, or no
    /// connection) counts towards ejection, anything else clears its record.
    pub(super) fn record(&self, backend: &Arc<Backend>, failed: bool) {
        let now = Instant::now();
        let due = {
            let mut health = backend.health();
            if !failed {
                *health = Health::default();
                return;
            }
            health.failures += 1;
            health.failures >= EJECT_AFTER && health.ejected_until.is_none_or(|t| t <= now)
        };
        if !due {
            return;
        }
        let _deciding = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = Arc::clone(&self.set.borrow());
        let others_live = snapshot
            .backends
            .iter()
            .any(|b| !Arc::ptr_eq(b, backend) && b.is_live(now));
        if !others_live {
            return;
        }
        let mut health = backend.health();
        let period = BASE_EJECTION
            .saturating_mul(1 << health.ejections.min(16))
            .min(MAX_EJECTION);
        tracing::warn!(
            "outbound target {}: endpoint {} ejected for {} after {} failures in a row",
            self.alias,
            backend.address,
            duration(period),
            health.failures
        );
        health.ejected_until = Some(now + period);
        health.ejections += 1;
        health.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn backend(name: &str) -> Arc<Backend> {
        let service = tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::empty()))
        });
        Arc::new(Backend::new(name.into(), None, http_service(service)))
    }

    fn balancer(mode: LoadBalancing, backends: &[Arc<Backend>]) -> Balancer {
        let snapshot = Snapshot {
            backends: backends.to_vec(),
            settled: true,
            problem: None,
        };
        let (_, set) = watch::channel(Arc::new(snapshot));
        Balancer::new("greeter".into(), mode, set)
    }

    async fn picks(balancer: &Balancer, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..n {
            let deadline = Instant::now() + Duration::from_secs(1);
            let Ok(pick) = balancer.pick(None, deadline).await else {
                panic!("a backend")
            };
            names.push(pick.backend().address.clone());
        }
        names
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_failing_in_a_row_sits_out_then_returns_for_longer_each_time() {
        let (a, b) = (backend("a"), backend("b"));
        let balancer = balancer(LoadBalancing::RoundRobin, &[a.clone(), b.clone()]);
        for _ in 0..EJECT_AFTER - 1 {
            balancer.record(&a, true);
        }
        assert!(picks(&balancer, 4).await.contains(&"a".to_owned()));
        balancer.record(&a, true);
        assert_eq!(picks(&balancer, 4).await, ["b"; 4]);
        tokio::time::advance(BASE_EJECTION).await;
        assert!(
            picks(&balancer, 2).await.contains(&"a".to_owned()),
            "back after the period"
        );
        for _ in 0..EJECT_AFTER {
            balancer.record(&a, true);
        }
        tokio::time::advance(BASE_EJECTION).await;
        assert_eq!(
            picks(&balancer, 4).await,
            ["b"; 4],
            "the second ejection is longer"
        );
        tokio::time::advance(BASE_EJECTION).await;
        assert!(picks(&balancer, 2).await.contains(&"a".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_live_endpoint_is_never_ejected() {
        let (a, b) = (backend("a"), backend("b"));
        let balancer = balancer(LoadBalancing::RoundRobin, &[a.clone(), b.clone()]);
        for _ in 0..EJECT_AFTER {
            balancer.record(&a, true);
        }
        for _ in 0..EJECT_AFTER * 3 {
            balancer.record(&b, true);
        }
        assert_eq!(picks(&balancer, 3).await, ["b"; 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_clears_the_failures_in_a_row() {
        let (a, b) = (backend("a"), backend("b"));
        let balancer = balancer(LoadBalancing::RoundRobin, &[a.clone(), b.clone()]);
        for _ in 0..3 {
            for _ in 0..EJECT_AFTER - 1 {
                balancer.record(&a, true);
            }
            balancer.record(&a, false);
        }
        assert!(picks(&balancer, 2).await.contains(&"a".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn p2c_steers_away_from_the_busier_endpoint() {
        let (a, b) = (backend("a"), backend("b"));
        let balancer = balancer(LoadBalancing::P2c, &[a.clone(), b.clone()]);
        let _busy = InFlight::new(a.clone());
        assert_eq!(picks(&balancer, 20).await, ["b"; 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_prefers_another_endpoint() {
        let (a, b) = (backend("a"), backend("b"));
        let balancer = balancer(LoadBalancing::RoundRobin, &[a.clone(), b.clone()]);
        for _ in 0..6 {
            let deadline = Instant::now() + Duration::from_secs(1);
            let Ok(pick) = balancer.pick(Some(&a), deadline).await else {
                panic!("a backend")
            };
            assert_eq!(pick.backend().address, "b");
        }
    }
}
