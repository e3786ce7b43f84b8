//! The benchmark suite: each workload against the example plugins (fresh instance per
//! call, and warm), their native tonic twins served by this same process, and the
//! UserService as a Python grpcio server; the server side pinned to core 0, the load
//! generator (`loadgen`, or `h2load` for the cross-check) to core 1. Server CPU per call
//! comes from the server process's own accounting, the figure that survives a noisy
//! machine. Writes `BENCHMARKS.md` and the plots in `benchmarks/`.
//!
//! `make bench` (= `cargo bench -p plugrpc-tests --bench suite`)

mod capabilities;
mod doors;
mod edge;
mod metrics;
mod plot;
mod python;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plot::Series;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::report::{machine, median_min_max, ms};
use plugrpc_tests::{TestHost, copy_plugin, native};
use serde_json::Value;

use plugins::{GREETER, USERS_FIXTURE};

/// The repo's plugin crates, as built for this run; a benchmark uses a few of them.
#[allow(dead_code)]
mod plugins {
    use plugrpc_tests::declare_plugin;

    plugrpc_tests::foreach_plugin!(declare_plugin);
}

/// How long each workload runs per target and round.
const DURATION: Duration = Duration::from_secs(3);
/// Rounds of each workload; the median is reported.
const ROUNDS: usize = 3;
/// How long each point of the concurrency sweep runs.
const SWEEP_DURATION: Duration = Duration::from_secs(3);
/// Calls in flight at each point of the sweep.
const SWEEP: [usize; 5] = [1, 4, 16, 64, 256];
/// Streams held open at once.
const OPEN_STREAMS: usize = 10_000;
/// Repetitions of the drop-in and restart measurements.
const REPEATS: usize = 5;

/// Both plugin hosts serve the examples; this one gives every call a fresh instance.
const FRESH: &str = "[defaults]\nreuse_instances = false\n";
/// Warm instances (the examples declare themselves stateless), and room for the open streams.
/// One client (loadgen) opens them all, so it may hold the whole plugin (`max_caller_share`).
const WARM: &str = "[host]\nsandboxes = 12000\n[plugins.users]\nmax_concurrent_calls = 12000\nmax_caller_share = 100\n";

/// A workload: what loadgen runs and how hard.
struct Workload {
    title: &'static str,
    name: &'static str,
    size: usize,
    connections: usize,
    concurrency: usize,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        title: "unary hello (10 B)",
        name: "hello",
        size: 10,
        connections: 4,
        concurrency: 8,
    },
    Workload {
        title: "unary hello (1 MiB)",
        name: "hello",
        size: 1 << 20,
        connections: 2,
        concurrency: 2,
    },
    Workload {
        title: "unary GetUser",
        name: "get-user",
        size: 0,
        connections: 4,
        concurrency: 8,
    },
    Workload {
        title: "server streaming (100 users/call)",
        name: "list-users",
        size: 100,
        connections: 2,
        concurrency: 4,
    },
    Workload {
        title: "client streaming (100 msgs/call)",
        name: "create-users",
        size: 100,
        connections: 2,
        concurrency: 4,
    },
    Workload {
        title: "bidi ping-pong (10 round trips/call)",
        name: "chat",
        size: 10,
        connections: 2,
        concurrency: 4,
    },
];

/// Figures from the sections after the workload table, for the goals.
#[derive(Default)]
struct Measured {
    streams_served: u64,
    streams_rss_mib: u64,
    first_call: Duration,
    start_per_plugin: Duration,
}

/// A server the suite loads: where it listens and whose CPU it spends.
struct Target {
    name: &'static str,
    url: String,
    cpu: Box<dyn Fn() -> Duration>,
    /// Serves only UserService.
    users_only: bool,
}

/// What loadgen reported, and what the server spent.
struct Run {
    report: Value,
    cpu: Duration,
}

impl Run {
    fn get(&self, key: &str) -> f64 {
        self.report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {}", self.report))
    }

    fn cpu_per_call_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.get("calls").max(1.0)
    }

    fn failed(&self) -> String {
        let errors = self.report["errors"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if errors.is_empty() {
            return "0".into();
        }
        errors
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn latency_series(&self, label: &str) -> Series {
        let points = self.report["latency_us"]
            .as_array()
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| Some((p[1].as_f64()?, p[0].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Series {
            label: label.into(),
            points,
        }
    }
}

fn main() {
    pin_to("0", std::process::id());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let examples = [GREETER, USERS_FIXTURE];
    let (fresh, warm, native) = runtime.block_on(async {
        (
            TestHost::with_config(&examples, FRESH).await,
            TestHost::with_config(&examples, WARM).await,
            native::serve().await,
        )
    });
    let python = python::Server::start();
    let mut targets = vec![
        target("plugin, fresh", fresh.addr(), false),
        target("plugin, warm", warm.addr(), false),
        target("native", native, false),
    ];
    if let Ok(python) = &python {
        let pid = python.pid();
        targets.push(Target {
            name: "Python grpcio",
            url: format!("http://{}", python.addr()),
            cpu: Box::new(move || process_cpu(&format!("/proc/{pid}/stat"))),
            users_only: true,
        });
    }
    let only = std::env::var("PLUGRPC_BENCH_ONLY").ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plots = root.join("benchmarks");

    let mut report = header(&python);
    let mut results = Vec::new();
    let _ = writeln!(
        report,
        "## Workloads\n\n{ROUNDS} rounds of {} s per workload and target, the targets interleaved; each row is the \
         target's median round by server CPU per call. Closed loop. Ratios below are from these rows.\n\n\
         | workload | target | calls/s | msgs/s | p50 | p99 | server CPU/call | CPU/msg | failed |\n\
         |---|---|---|---|---|---|---|---|---|",
        DURATION.as_secs()
    );
    // PLUGRPC_BENCH_ONLY=<loadgen workload> runs one workload (=edge: the edge sections;
    // =doors: the doors section; =capabilities, =metrics: those sections)
    // while iterating; the committed report is always a full run.
    for workload in WORKLOADS
        .iter()
        .filter(|w| only.as_deref().is_none_or(|o| o == w.name))
    {
        let serving: Vec<&Target> = targets
            .iter()
            .filter(|t| !(t.users_only && workload.name == "hello"))
            .collect();
        // Rounds interleave the targets, so a noisy spell on the machine hits all alike;
        // each target's median round (by server CPU per call) is the one reported.
        let mut rounds: Vec<Vec<Run>> = serving.iter().map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            for (target, runs) in serving.iter().zip(&mut rounds) {
                runs.push(load(target, &loadgen_args(workload, DURATION)));
            }
        }
        let mut runs = Vec::new();
        for (target, mut rounds) in serving.iter().zip(rounds) {
            rounds.sort_by(|a, b| a.cpu_per_call_us().total_cmp(&b.cpu_per_call_us()));
            let run = rounds.swap_remove(ROUNDS / 2);
            let elsewhere: f64 = rounds.iter().map(|r| r.get("failed")).sum();
            let failed = if elsewhere > 0.0 {
                format!("{} (+{elsewhere} in other rounds)", run.failed())
            } else {
                run.failed()
            };
            let _ = writeln!(
                report,
                "| {} | {} | {:.0} | {:.0} | {:.0} us | {:.0} us | {:.1} us | {:.2} us | {} |",
                workload.title,
                target.name,
                run.get("calls_per_sec"),
                run.get("messages_per_sec"),
                run.get("p50_us"),
                run.get("p99_us"),
                run.cpu_per_call_us(),
                run.cpu.as_secs_f64() * 1e6 / run.get("messages").max(1.0),
                failed
            );
            eprintln!("{}", report.lines().last().unwrap_or_default());
            runs.push((target.name, run));
        }
        results.push((workload, runs));
    }
    report.push_str(&ratios(&results));

    if only.is_none() {
        let hello = &results[0].1;
        let series: Vec<Series> = hello
            .iter()
            .map(|(name, run)| run.latency_series(name))
            .collect();
        let path = plots.join("latency-hello.svg");
        plot::latency_cdf(&path, "unary hello (10 B): latency distribution", &series).unwrap();
        let _ = writeln!(
            report,
            "\n## Latency distribution, unary hello\n\nFrom the median rounds above (32 calls in flight, closed loop).\n\n\
             ![latency distribution](benchmarks/latency-hello.svg)\n"
        );
        // Each section is shown as it comes, so a long run can be followed.
        let mut add = |section: String| {
            eprintln!("{section}");
            report.push_str(&section);
        };
        let mut measured = Measured::default();
        add(sweep(&targets[..3], &plots));
        add(open_streams(&warm, &mut measured));
        add(h2load_cross_check(&targets[1..3]));
        add(runtime.block_on(deploys(&mut measured)));
        add(edge::tls(&runtime));
        add(edge::attacks(&runtime));
        add(doors::doors(&runtime));
        add(capabilities::capabilities(&runtime));
        add(metrics::metrics(&runtime));
        let summary = goals(&results, &measured);
        eprintln!("{summary}");
        report = report.replacen("## Workloads", &format!("{summary}\n## Workloads"), 1);
    }
    if only.as_deref() == Some("doors") {
        report.push_str(&doors::doors(&runtime));
    }
    if only.as_deref() == Some("metrics") {
        report.push_str(&metrics::metrics(&runtime));
    }
    if only.as_deref() == Some("capabilities") {
        report.push_str(&capabilities::capabilities(&runtime));
    }
    if only.as_deref() == Some("edge") {
        report.push_str(&edge::tls(&runtime));
        report.push_str(&edge::attacks(&runtime));
    }
    drop((fresh, warm));
    if only.is_some() {
        println!("{report}\n(partial run: BENCHMARKS.md left as it is)");
        return;
    }
    let path = root.join("BENCHMARKS.md");
    std::fs::write(&path, &report).unwrap();
    println!("{report}\nwritten to {}", path.display());
}

/// The median of `runs` by server CPU per call: the figure that survives a noisy machine.
fn median_by_cpu(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.cpu_per_call_us().total_cmp(&b.cpu_per_call_us()));
    let middle = runs.len() / 2;
    runs.swap_remove(middle)
}

fn target(name: &'static str, addr: std::net::SocketAddr, users_only: bool) -> Target {
    Target {
        name,
        url: format!("http://{addr}"),
        cpu: Box::new(|| process_cpu("/proc/self/stat")),
        users_only,
    }
}

fn header(python: &Result<python::Server, String>) -> String {
    let mut report = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        report,
        "Generated by `make bench` (`cargo bench -p plugrpc-tests --bench suite`), one run, on {}.\n",
        machine()
    );
    let _ = writeln!(
        report,
        "Server side: this process, pinned to core 0 with one tokio worker, serving the `greeter` and `users` \
         plugins twice (`users` as tests/plugins/users-fixture: the example's calls with users derived from \
         their ids and no store, so the rows measure the host; the Capabilities section measures the store) (one host gives every call a fresh instance, `reuse_instances = false`; the other reuses \
         warm instances, as the examples declare themselves stateless) and their native tonic twins, each on \
         its own port; and the same UserService as a Python grpcio server (sync server, 16 threads), also \
         pinned to core 0. Load: `loadgen` (tonic) pinned to core 1. *Server CPU/call* is the server \
         process's user+system time (from /proc/<pid>/stat, 10 ms ticks) over completed calls; it is the \
         figure that survives a noisy machine, so the ratios use it where they can.\n"
    );
    if let Err(why) = python {
        let _ = writeln!(report, "Python grpcio server skipped: {why}.\n");
    }
    report
}

/// Plugin vs native, and vs Python, from the same rows.
fn ratios(results: &[(&Workload, Vec<(&str, Run)>)]) -> String {
    let mut out = String::from(
        "\n## Ratios\n\n| workload | CPU/call fresh / native | CPU/call warm / native | throughput fresh / native | \
         throughput warm / native | throughput warm / Python | throughput fresh / Python |\n|---|---|---|---|---|---|---|\n",
    );
    for (workload, runs) in results {
        let find = |name: &str| runs.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
        let (Some(fresh), Some(warm), Some(native)) =
            (find("plugin, fresh"), find("plugin, warm"), find("native"))
        else {
            continue;
        };
        let python = find("Python grpcio");
        let versus = |run: &Run| {
            python.map_or("—".into(), |p| {
                format!("{:.1}x", run.get("calls_per_sec") / p.get("calls_per_sec"))
            })
        };
        let _ = writeln!(
            out,
            "| {} | {:.2}x | {:.2}x | {:.2}x | {:.2}x | {} | {} |",
            workload.title,
            fresh.cpu_per_call_us() / native.cpu_per_call_us(),
            warm.cpu_per_call_us() / native.cpu_per_call_us(),
            fresh.get("calls_per_sec") / native.get("calls_per_sec"),
            warm.get("calls_per_sec") / native.get("calls_per_sec"),
            versus(warm),
            versus(fresh),
        );
    }
    out
}

/// Each engineering goal of the suite, met or not, by how much, and what bounds it.
fn goals(results: &[(&Workload, Vec<(&str, Run)>)], measured: &Measured) -> String {
    let run = |workload: &str, target: &str| {
        results
            .iter()
            .find(|(w, _)| w.title == workload)
            .and_then(|(_, runs)| runs.iter().find(|(t, _)| *t == target))
            .map(|(_, run)| run)
            .unwrap_or_else(|| panic!("no {target} run of {workload}"))
    };
    let cpu = |workload: &str, target: &str| {
        run(workload, target).cpu_per_call_us() / run(workload, "native").cpu_per_call_us()
    };
    let rate = |workload: &str, target: &str, versus: &str| {
        run(workload, target).get("calls_per_sec") / run(workload, versus).get("calls_per_sec")
    };
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    let hello = "unary hello (10 B)";
    let big = "unary hello (1 MiB)";
    let stream = "server streaming (100 users/call)";
    let user_calls = [
        "unary GetUser",
        stream,
        "client streaming (100 msgs/call)",
        "bidi ping-pong (10 round trips/call)",
    ];
    let mut out = String::from(concat!(
        "## Goals\n\n",
        "From this run. Ratios are plugin / native (or / Python) from the workload rows below.\n\n",
        "| goal | measured | verdict |\n|---|---|---|\n",
    ));
    let mut row = |goal: &str, measured: String, met: bool| {
        let _ = writeln!(out, "| {goal} | {measured} | {} |", verdict(met));
    };
    let fresh = cpu(hello, "plugin, fresh");
    row(
        "unary hello, server CPU per call, fresh instance <= 1.25x native",
        format!("{fresh:.2}x"),
        fresh <= 1.25,
    );
    let warm = cpu(hello, "plugin, warm");
    row(
        "the same, warm instance (opt-in, stateless plugins)",
        format!("{warm:.2}x"),
        warm <= 1.25,
    );
    let (fresh, warm) = (
        rate(big, "plugin, fresh", "native"),
        rate(big, "plugin, warm", "native"),
    );
    row(
        "unary 1 MiB, throughput >= 0.8x native",
        format!("fresh {fresh:.2}x, warm {warm:.2}x"),
        fresh >= 0.8 && warm >= 0.8,
    );
    for (title, workload) in [
        ("server streaming", stream),
        ("client streaming", "client streaming (100 msgs/call)"),
    ] {
        let (fresh, warm) = (
            rate(workload, "plugin, fresh", "native"),
            rate(workload, "plugin, warm", "native"),
        );
        row(
            &format!("{title}, throughput >= 0.8x native with warm instances"),
            format!("warm {warm:.2}x (fresh {fresh:.2}x)"),
            warm >= 0.8,
        );
    }
    if results
        .iter()
        .any(|(_, runs)| runs.iter().any(|(t, _)| *t == "Python grpcio"))
    {
        let versus: Vec<String> = user_calls
            .iter()
            .map(|w| {
                format!(
                    "{w}: {:.1}x (native {:.1}x)",
                    rate(w, "plugin, warm", "Python grpcio"),
                    rate(w, "native", "Python grpcio")
                )
            })
            .collect();
        let met = user_calls
            .iter()
            .all(|w| rate(w, "plugin, warm", "Python grpcio") >= 10.0);
        row(
            ">= 10x the Python grpcio server's throughput (warm plugin)",
            versus.join("; "),
            met,
        );
    }
    row(
        &format!("{OPEN_STREAMS} open streams held, host RSS < 1 GiB"),
        format!(
            "{} served, {} MiB",
            measured.streams_served, measured.streams_rss_mib
        ),
        measured.streams_served == OPEN_STREAMS as u64 && measured.streams_rss_mib < 1024,
    );
    row(
        "plugin dropped in -> first call served < 1 s",
        ms(measured.first_call),
        measured.first_call < Duration::from_secs(1),
    );
    row(
        "restart with cached compiled plugins < 100 ms per plugin",
        ms(measured.start_per_plugin),
        measured.start_per_plugin < Duration::from_millis(100),
    );
    out.push_str(GAPS);
    out
}

/// What bounds the goals this machine misses; from profiles (`perf record`) of the
/// server under the same loads.
const GAPS: &str = include_str!("gaps.md");

/// Unary hello at rising concurrency: throughput and server CPU per call.
fn sweep(targets: &[Target], plots: &Path) -> String {
    let mut out = format!(
        "\n## Throughput vs concurrency, unary hello (10 B)\n\n{} s per point; calls in flight spread over up to 4 \
         connections.\n\n| calls in flight | target | calls/s | p50 | p99 | server CPU/call |\n|---|---|---|---|---|---|\n",
        SWEEP_DURATION.as_secs()
    );
    let mut series: Vec<Series> = targets
        .iter()
        .map(|t| Series {
            label: t.name.into(),
            points: Vec::new(),
        })
        .collect();
    for in_flight in SWEEP {
        let connections = in_flight.min(4);
        let workload = Workload {
            title: "",
            name: "hello",
            size: 10,
            connections,
            concurrency: in_flight / connections,
        };
        for (target, line) in targets.iter().zip(&mut series) {
            let run = load(target, &loadgen_args(&workload, SWEEP_DURATION));
            let _ = writeln!(
                out,
                "| {in_flight} | {} | {:.0} | {:.0} us | {:.0} us | {:.1} us |",
                target.name,
                run.get("calls_per_sec"),
                run.get("p50_us"),
                run.get("p99_us"),
                run.cpu_per_call_us()
            );
            line.points
                .push((in_flight as f64, run.get("calls_per_sec")));
        }
    }
    let path = plots.join("throughput-hello.svg");
    plot::throughput(
        &path,
        "unary hello (10 B): throughput vs calls in flight",
        &series,
    )
    .unwrap();
    out.push_str("\n![throughput vs concurrency](benchmarks/throughput-hello.svg)\n");
    out
}

/// 10,000 Chat streams open at once on the warm plugin host: are all served, and at what RSS.
fn open_streams(warm: &TestHost, measured: &mut Measured) -> String {
    let before = rss_kib();
    let mut child = Command::new("taskset")
        .args([
            "-c",
            "1",
            env!("CARGO_BIN_EXE_loadgen"),
            "--json",
            "--workload",
        ])
        .arg("open-streams")
        .args(["--target", &format!("http://{}", warm.addr())])
        .args(["--size", &OPEN_STREAMS.to_string(), "--connections", "100"])
        .args(["--duration", "60s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting loadgen");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("HOLDING"), "loadgen said {line:?}");
    // Let the last replies settle into the server's accounting before sampling.
    std::thread::sleep(Duration::from_millis(200));
    let holding = rss_kib();
    drop(child.stdin.take());
    let mut json = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut json).unwrap();
    assert!(child.wait().unwrap().success(), "loadgen failed: {json}");
    let report: Value = serde_json::from_str(&json).expect("loadgen JSON");
    let served = report["calls"].as_u64().unwrap_or(0);
    measured.streams_served = served;
    measured.streams_rss_mib = holding / 1024;
    format!(
        "\n## {OPEN_STREAMS} concurrently open streams\n\n`loadgen --workload open-streams`: {OPEN_STREAMS} UserService.Chat streams over \
         100 connections (100 each: `edge.max_streams_per_connection`) against the warm plugin host (`host.sandboxes = 12000`, `max_concurrent_calls = 12000` and `max_caller_share = 100` for users: one client holds them all), each one round \
         trip, then all held open at once while the server's RSS is read, then a second round trip each.\n\n\
         | streams served (both round trips) | failed | server RSS before | server RSS holding them all | per stream |\n\
         |---|---|---|---|---|\n| {served} of {OPEN_STREAMS} | {} | {} MiB | {} MiB | {:.0} KiB |\n\n\
         Each open stream is a live sandbox (its own instance, Store, fiber stack) plus its HTTP/2 stream. \
         The RSS is the whole suite process (all three servers).\n",
        report["failed"],
        before / 1024,
        holding / 1024,
        (holding.saturating_sub(before)) as f64 / OPEN_STREAMS as f64
    )
}

/// The same unary hello load from h2load (nghttp2), which knows nothing of gRPC beyond
/// the request bytes: throughput from a second client, and every reply's size checked.
fn h2load_cross_check(targets: &[Target]) -> String {
    const REQUESTS: usize = 200_000;
    let mut out = String::from("\n## Cross-check with h2load\n\n");
    if Command::new("h2load").arg("--version").output().is_err() {
        out.push_str("Skipped: `h2load` not found (Debian: `apt-get install nghttp2-client`).\n");
        return out;
    }
    let body = std::env::temp_dir().join("plugrpc-hello.grpc");
    // A gRPC frame: not compressed, 12 bytes, HelloRequest { name: "xxxxxxxxxx" }.
    let mut frame = vec![0, 0, 0, 0, 12, 0x0a, 10];
    frame.extend_from_slice(b"xxxxxxxxxx");
    std::fs::write(&body, frame).unwrap();
    let _ = writeln!(
        out,
        "`h2load -n {REQUESTS} -c 4 -m 8` (32 in flight, as loadgen's unary hello) posting one gRPC frame to \
         /helloworld.Greeter/SayHello. h2load checks HTTP status only, so the suite also checks that the \
         response bytes are exactly one 24-byte HelloReply frame per request.\n\n\
         | target | h2load calls/s | loadgen calls/s (3 s, just before) | server CPU/call under h2load | replies intact |\n|---|---|---|---|---|"
    );
    for target in targets {
        let cpu_before = (target.cpu)();
        let output = Command::new("taskset")
            .args([
                "-c",
                "1",
                "h2load",
                "-n",
                &REQUESTS.to_string(),
                "-c",
                "4",
                "-m",
                "8",
            ])
            .args([
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                "-d",
            ])
            .arg(&body)
            .arg(format!("{}/helloworld.Greeter/SayHello", target.url))
            .output()
            .expect("running h2load");
        let cpu = (target.cpu)() - cpu_before;
        let text = String::from_utf8_lossy(&output.stdout);
        let rate = text
            .lines()
            .find(|l| l.starts_with("finished in"))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|r| r.trim_end_matches(" req/s").parse::<f64>().ok())
            .unwrap_or(0.0);
        // Every request answered 200 with exactly one 24-byte HelloReply frame.
        let intact = text.contains(&format!("status codes: {REQUESTS} 2xx"))
            && text.contains(&format!("({}) data", 24 * REQUESTS));
        let loadgen = loadgen_rate(target);
        let _ = writeln!(
            out,
            "| {} | {rate:.0} | {loadgen:.0} | {:.1} us | {} |",
            target.name,
            cpu.as_secs_f64() * 1e6 / REQUESTS as f64,
            if intact { "yes" } else { "NO" }
        );
    }
    out
}

/// Unary hello throughput from a short loadgen run, to set beside h2load's.
fn loadgen_rate(target: &Target) -> f64 {
    load(target, &loadgen_args(&WORKLOADS[0], SWEEP_DURATION)).get("calls_per_sec")
}

/// A plugin file dropped into a serving host's folder -> its first call served; and host
/// starts with the compile cache warm.
async fn deploys(measured: &mut Measured) -> String {
    let mut first_call = Vec::new();
    for _ in 0..REPEATS {
        let cache = tempfile::tempdir().unwrap();
        let config = format!(
            "[host]\ncache_dir = {:?}\n",
            cache.path().display().to_string()
        );
        let host = TestHost::with_config(&[], &config).await;
        let mut client = GreeterClient::new(host.channel().await);
        let staging = host.plugins_dir().join(".greeter.wasm.partial");
        copy_plugin(GREETER, &staging);
        let started = Instant::now();
        std::fs::rename(&staging, host.plugins_dir().join("greeter.wasm")).unwrap();
        while client
            .say_hello(HelloRequest { name: "x".into() })
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(30), "never served");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first_call.push(started.elapsed());
    }
    let mut starts = Vec::new();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "[host]\ncache_dir = {:?}\n",
        cache.path().display().to_string()
    );
    TestHost::with_config(&[GREETER, USERS_FIXTURE], &config)
        .await
        .stop()
        .await;
    for _ in 0..REPEATS {
        let started = Instant::now();
        let host = TestHost::with_config(&[GREETER, USERS_FIXTURE], &config).await;
        starts.push(started.elapsed());
        host.stop().await;
    }
    first_call.sort();
    starts.sort();
    measured.first_call = first_call[REPEATS / 2];
    measured.start_per_plugin = starts[REPEATS / 2] / 2;
    let per_plugin: Vec<Duration> = starts.iter().map(|&start| start / 2).collect();
    format!(
        "\n## Deploys\n\n{REPEATS} runs each, on the suite's pinned core.\n\n\
         | measurement | p50 | min | max |\n|---|---|---|---|\n\
         | greeter.wasm renamed into a serving host's folder -> first call served (cold compile cache; includes the watcher's 250 ms settle) | {} |\n\
         | host start serving greeter + users, compile cache warm | {} |\n\
         | the same, per plugin | {} |\n",
        median_min_max(&first_call),
        median_min_max(&starts),
        median_min_max(&per_plugin),
    )
}

fn loadgen_args(workload: &Workload, duration: Duration) -> Vec<String> {
    [
        "--workload",
        workload.name,
        "--size",
        &workload.size.to_string(),
        "--connections",
        &workload.connections.to_string(),
        "--concurrency",
        &workload.concurrency.to_string(),
        "--duration",
        &format!("{}s", duration.as_secs()),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs loadgen on core 1 against `target`, charging the target's CPU meanwhile.
fn load(target: &Target, args: &[String]) -> Run {
    let before = (target.cpu)();
    let output = Command::new("taskset")
        .args([
            "-c",
            "1",
            env!("CARGO_BIN_EXE_loadgen"),
            "--json",
            "--target",
        ])
        .arg(&target.url)
        .args(args)
        .output()
        .expect("running loadgen");
    let cpu = (target.cpu)() - before;
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadgen failed: {json} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Run {
        report: serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}")),
        cpu,
    }
}

/// A process's user + system CPU time so far, from its `stat` file.
fn process_cpu(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Pins every thread of `pid` (and those it starts later) to `cores`.
fn pin_to(cores: &str, pid: u32) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .output();
    assert!(
        status.is_ok_and(|o| o.status.success()),
        "taskset could not pin the server"
    );
}

/// Where the workspace keeps its Python virtualenv (`make test` creates it).
fn venv_python() -> PathBuf {
    std::env::var_os("PLUGRPC_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
        PathBuf::from,
    )
}
