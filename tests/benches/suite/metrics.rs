//! The metrics section: what counting costs. Two warm hosts of this process serve the
//! greeter, one with `host.metrics` on (the default) and one with it off; the unary hello
//! runs on both, interleaved over more rounds than elsewhere (the difference sought is
//! smaller than one round's noise); the ratio is server CPU per call, on over off.

use std::fmt::Write as _;

use plugrpc_tests::TestHost;

use crate::plugins::GREETER;
use crate::{DURATION, Run, Target, load, process_cpu};

/// Rounds per host: the median of many, for a ratio near 1.
const ROUNDS: usize = 9;
/// The goal: metrics on costs at most this much more CPU per unary call.
const GOAL: f64 = 1.03;
/// A pool for the 32 calls in flight (the suite's other hosts hold most of the address
/// space a pool reserves).
const ON: &str = "[host]\nsandboxes = 64\n";
const OFF: &str = "[host]\nsandboxes = 64\nmetrics = false\n";

/// Unary CPU per call with metrics on and off, and the goal's verdict.
pub(crate) fn metrics(runtime: &tokio::runtime::Runtime) -> String {
    let hosts = runtime.block_on(async {
        [
            TestHost::with_config(&[GREETER], ON).await,
            TestHost::with_config(&[GREETER], OFF).await,
        ]
    });
    let targets: Vec<Target> = ["metrics on", "metrics off"]
        .into_iter()
        .zip(&hosts)
        .map(|(name, host)| Target {
            name,
            url: format!("http://{}", host.addr()),
            cpu: Box::new(|| process_cpu("/proc/self/stat")),
            users_only: false,
        })
        .collect();
    let args: Vec<String> = [
        "--workload",
        "hello",
        "--size",
        "10",
        "--connections",
        "4",
        "--concurrency",
        "8",
        "--duration",
        &format!("{}s", DURATION.as_secs()),
    ]
    .map(String::from)
    .to_vec();
    let mut rounds: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (target, runs) in targets.iter().zip(&mut rounds) {
            runs.push(load(target, &args));
        }
    }
    let medians: Vec<Run> = rounds.into_iter().map(crate::median_by_cpu).collect();
    let mut out = format!(
        "\n## Metrics\n\nThe warm greeter on two hosts of this process, `host.metrics` on (the default: every \
         call counted, its sandbox accounted) and off; unary hello (10 B), 4 connections x 8 calls in \
         flight, {ROUNDS} rounds of {} s each, interleaved, median by server CPU per call.\n\n\
         | host | calls/s | p50 | p99 | server CPU/call | failed |\n|---|---|---|---|---|---|\n",
        DURATION.as_secs()
    );
    for (target, run) in targets.iter().zip(&medians) {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} us | {:.0} us | {:.2} us | {} |",
            target.name,
            run.get("calls_per_sec"),
            run.get("p50_us"),
            run.get("p99_us"),
            run.cpu_per_call_us(),
            run.failed()
        );
    }
    let ratio = medians[0].cpu_per_call_us() / medians[1].cpu_per_call_us().max(f64::MIN_POSITIVE);
    let verdict = if ratio <= GOAL { "met" } else { "**missed**" };
    let _ = writeln!(
        out,
        "\nServer CPU per unary call, metrics on / off (same run): **{ratio:.3}x** (goal <= {GOAL}x: {verdict})."
    );
    drop(hosts);
    out
}
