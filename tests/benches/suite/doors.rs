//! The doors section: the same call through each door of one warm host (gRPC, Connect
//! JSON, gRPC-Web), and a 1 MiB unary call plain and gzip-compressed both ways, the
//! workloads interleaved over rounds; ratios against the plain gRPC path of this run.

use std::fmt::Write as _;

use plugrpc_tests::TestHost;

use crate::plugins::{INTEROP, USERS_FIXTURE};
use crate::{DURATION, ROUNDS, Run, Target, load, process_cpu};

/// One row: what loadgen runs, and the row its ratio is against.
struct Row {
    title: &'static str,
    workload: &'static str,
    size: usize,
    concurrency: usize,
    baseline: &'static str,
}

const ROWS: [Row; 5] = [
    Row {
        title: "GetUser, gRPC",
        workload: "get-user",
        size: 0,
        concurrency: 32,
        baseline: "GetUser, gRPC",
    },
    Row {
        title: "GetUser, Connect JSON",
        workload: "connect-json",
        size: 0,
        concurrency: 32,
        baseline: "GetUser, gRPC",
    },
    Row {
        title: "GetUser, gRPC-Web",
        workload: "grpc-web",
        size: 0,
        concurrency: 32,
        baseline: "GetUser, gRPC",
    },
    Row {
        title: "1 MiB each way, gRPC",
        workload: "big-unary",
        size: 1 << 20,
        concurrency: 4,
        baseline: "1 MiB each way, gRPC",
    },
    Row {
        title: "1 MiB each way, gRPC gzip",
        workload: "big-unary-gzip",
        size: 1 << 20,
        concurrency: 4,
        baseline: "1 MiB each way, gRPC",
    },
];

/// Each door, and gzip on 1 MiB, beside plain gRPC on one warm host of this process.
pub(crate) fn doors(runtime: &tokio::runtime::Runtime) -> String {
    let config = "[plugins.interop]\nmax_request_size = \"2MiB\"\nmax_response_size = \"2MiB\"\n";
    let host = runtime.block_on(TestHost::with_config(&[USERS_FIXTURE, INTEROP], config));
    let target = Target {
        name: "doors",
        url: format!("http://{}", host.addr()),
        cpu: Box::new(|| process_cpu("/proc/self/stat")),
        users_only: false,
    };
    let args = |row: &Row| -> Vec<String> {
        [
            "--workload",
            row.workload,
            "--size",
            &row.size.to_string(),
            "--connections",
            "1",
            "--concurrency",
            &row.concurrency.to_string(),
            "--duration",
            &format!("{}s", DURATION.as_secs()),
        ]
        .map(String::from)
        .to_vec()
    };
    let mut rounds: Vec<Vec<Run>> = ROWS.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (row, runs) in ROWS.iter().zip(&mut rounds) {
            runs.push(load(&target, &args(row)));
        }
    }
    let medians: Vec<Run> = rounds.into_iter().map(crate::median_by_cpu).collect();
    let mut out = format!(
        "\n## Doors\n\nThe users and interop plugins, warm, on one host of this process; every row over one \
         HTTP/2 connection from loadgen (tonic's channel; the web doors' requests built by hand on it). \
         {ROUNDS} rounds each, interleaved, median by server CPU per call. The 1 MiB rows call \
         `grpc.testing.TestService/UnaryCall` with 1 MiB of zeros each way (the interop service's payloads: \
         the best case for compression), the gzip row compressing both ways. Ratios are server CPU per call \
         against the row named, from this run.\n\n\
         | workload | calls/s | p50 | p99 | server CPU/call | vs | CPU/call ratio | failed |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (row, run) in ROWS.iter().zip(&medians) {
        let baseline = ROWS
            .iter()
            .position(|r| r.title == row.baseline)
            .map_or(run, |at| &medians[at]);
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} us | {:.0} us | {:.1} us | {} | {:.2}x | {} |",
            row.title,
            run.get("calls_per_sec"),
            run.get("p50_us"),
            run.get("p99_us"),
            run.cpu_per_call_us(),
            row.baseline,
            run.cpu_per_call_us() / baseline.cpu_per_call_us().max(f64::MIN_POSITIVE),
            run.failed()
        );
    }
    drop(host);
    out
}
