//! The quiet client of the neighbour benchmarks: sequential GetUser calls on a thread and
//! runtime of its own, apart from the host, and what they measured.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::TestHost;
use crate::pb::user::GetUserRequest;
use crate::pb::user::user_service_client::UserServiceClient;

/// Calls measured per scenario, at most.
pub const CALLS: usize = 3_000;
/// Longest a scenario may measure, whatever it has counted by then.
pub const SCENARIO_TIME: Duration = Duration::from_secs(60);

/// Latency percentiles, rate and failures of one scenario.
pub struct Stats {
    /// Median latency.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest call.
    pub max: Duration,
    /// Calls a second.
    pub rate: f64,
    /// Calls that failed.
    pub failed: usize,
}

/// Sequential GetUser calls against `host` from a client on its own thread and runtime.
pub fn measure(host: &TestHost) -> Stats {
    let mut users = UserServiceClient::with_origin(host.plain_http2(), host.origin());
    on_client_thread(async move {
        let mut latencies = Vec::with_capacity(CALLS);
        let mut failed = 0;
        let started = Instant::now();
        for i in 0..CALLS {
            if started.elapsed() > SCENARIO_TIME {
                break;
            }
            let begin = Instant::now();
            let id = i64::try_from(i).unwrap() + 1;
            if users.get_user(GetUserRequest { id }).await.is_err() {
                failed += 1;
            }
            latencies.push(begin.elapsed());
        }
        let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
        latencies.sort();
        let at =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        Stats {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: *latencies.last().unwrap(),
            rate,
            failed,
        }
    })
}

/// The host's runtime in these benchmarks: two workers, as many as the machine's cores,
/// so a hog can hold them all.
pub fn host_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a measuring client on its own thread and single-threaded runtime, apart from the
/// host.
pub fn on_client_thread<T: Send + 'static>(client: impl Future<Output = T> + Send + 'static) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || runtime.block_on(client))
        .join()
        .unwrap()
}
