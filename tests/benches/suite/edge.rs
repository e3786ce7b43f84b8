//! The edge sections: what TLS costs beside plaintext (same run, same plugin), and a
//! well-behaved client's latency while the host's edge is attacked from another address,
//! each attack beside the same client with no attack, the host on its default `[edge]`.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use plugrpc_tests::{TestHost, make_certs};

use crate::plugins::{GREETER, USERS_FIXTURE};
use crate::{DURATION, ROUNDS, Run, Target, WORKLOADS, load, loadgen_args, process_cpu, rss_kib};

/// How long each attack runs; the client measures inside it, after a ramp.
const ATTACK: Duration = Duration::from_secs(9);
const RAMP: Duration = Duration::from_millis(2500);

/// Unary hello and one new connection per call, over plaintext and TLS, on two warm hosts
/// serving the same plugin.
pub(crate) fn tls(runtime: &tokio::runtime::Runtime) -> String {
    let certs = make_certs();
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls_config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        file("server.crt"),
        file("server.key")
    );
    let (plain, tls) = runtime.block_on(async {
        (
            TestHost::with_plugins(&[GREETER]).await,
            TestHost::with_config(&[GREETER], &tls_config).await,
        )
    });
    let targets = [
        (
            Target {
                name: "plaintext",
                url: format!("http://{}", plain.addr()),
                cpu: Box::new(|| process_cpu("/proc/self/stat")),
                users_only: false,
            },
            Vec::new(),
        ),
        (
            Target {
                name: "TLS 1.3",
                url: format!("https://localhost:{}", tls.addr().port()),
                cpu: Box::new(|| process_cpu("/proc/self/stat")),
                users_only: false,
            },
            vec!["--ca".to_owned(), file("ca.crt")],
        ),
    ];
    let hello = loadgen_args(&WORKLOADS[0], DURATION);
    let connect: Vec<String> = [
        "--workload",
        "connect",
        "--size",
        "10",
        "--connections",
        "1",
        "--concurrency",
        "4",
        "--duration",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("{}s", DURATION.as_secs())])
    .collect();
    let mut out = format!(
        "\n## TLS\n\nThe warm greeter plugin on two hosts of this process, one plaintext and one TLS (rustls, ring, \
         TLS 1.3, ECDSA P-256 certificate from `examples/tls/make-certs.sh`); {ROUNDS} rounds each, interleaved, \
         median by server CPU. *New connection per call*: each of 4 workers connects (TCP, TLS, HTTP/2), calls \
         SayHello once and drops the connection, so calls/s is handshakes/s.\n\n\
         | workload | transport | calls/s | p50 | p99 | server CPU/call | failed |\n|---|---|---|---|---|---|---|\n"
    );
    let mut per_call = Vec::new();
    for (title, args) in [
        ("unary hello (10 B), 32 in flight", &hello),
        ("new connection per call", &connect),
    ] {
        let mut rounds: Vec<Vec<Run>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            for ((target, extra), runs) in targets.iter().zip(&mut rounds) {
                let args: Vec<String> = args.iter().cloned().chain(extra.clone()).collect();
                runs.push(load(target, &args));
            }
        }
        let mut cpu = Vec::new();
        for ((target, _), runs) in targets.iter().zip(rounds) {
            let run = crate::median_by_cpu(runs);
            let _ = writeln!(
                out,
                "| {title} | {} | {:.0} | {:.0} us | {:.0} us | {:.1} us | {} |",
                target.name,
                run.get("calls_per_sec"),
                run.get("p50_us"),
                run.get("p99_us"),
                run.cpu_per_call_us(),
                run.failed()
            );
            cpu.push(run.cpu_per_call_us());
        }
        per_call.push((title, cpu[1] / cpu[0].max(f64::MIN_POSITIVE)));
    }
    out.push_str("\nTLS vs plaintext, server CPU per call (same run):");
    for (title, ratio) in per_call {
        let _ = write!(out, " {title} **{ratio:.2}x**;");
    }
    out.push('\n');
    drop((plain, tls));
    out
}

/// A well-behaved client (GetUser at 200 calls/s over one connection from 127.0.0.1)
/// alone, then during each attack from 127.0.0.2, against a host with default limits.
pub(crate) fn attacks(runtime: &tokio::runtime::Runtime) -> String {
    let host = runtime.block_on(TestHost::with_plugins(&[USERS_FIXTURE]));
    let target = Target {
        name: "users",
        url: format!("http://{}", host.addr()),
        cpu: Box::new(|| process_cpu("/proc/self/stat")),
        users_only: true,
    };
    let client: Vec<String> = [
        "--workload",
        "get-user",
        "--rate",
        "200",
        "--connections",
        "1",
        "--concurrency",
        "4",
        "--duration",
        "5s",
    ]
    .map(String::from)
    .to_vec();
    let mut out = String::from(
        "\n## The edge under attack\n\nA host with the default `[edge]` and limits, serving `users` (warm). The \
         well-behaved client: `loadgen --workload get-user --rate 200` (open loop, one connection, 5 s) from \
         127.0.0.1. Each attack: a second `loadgen --workload attack-*` from 127.0.0.2 (both on core 1), \
         started 2.5 s before the client and running 9 s; *host RSS* is this process's peak growth over the \
         attack (it holds the other hosts too). The goal: no failed call, p99 within 2x of the client alone.\n\n\
         | attack | client p50 | client p99 | p99 vs alone | failed | host RSS growth | what the host did to the attacker |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let alone = load(&target, &client);
    let base_p99 = alone.get("p99_us");
    let _ = writeln!(
        out,
        "| none | {:.0} us | {:.0} us | 1.00x | {} | - | - |",
        alone.get("p50_us"),
        base_p99,
        alone.failed()
    );
    let attacks: [(&str, &[&str]); 4] = [
        (
            "3,000 silent TCP connections",
            &["--workload", "attack-silent", "--size", "3000"],
        ),
        (
            "streams cancelled once accepted, 10 connections x 50",
            &["--workload", "attack-resets", "--connections", "10"],
        ),
        (
            "2,000 idle Chat streams on one connection",
            &["--workload", "attack-idle-streams", "--size", "2000"],
        ),
        (
            "200 GetUser calls on one connection, each 4 MiB minus the last byte",
            &[
                "--workload",
                "attack-unfinished",
                "--connections",
                "1",
                "--concurrency",
                "200",
            ],
        ),
    ];
    for (title, args) in attacks {
        let attacker = Command::new("taskset")
            .args(["-c", "1", env!("CARGO_BIN_EXE_loadgen"), "--json"])
            .args(["--target", &target.url, "--source-ip", "127.0.0.2"])
            .args(["--duration", &format!("{}s", ATTACK.as_secs())])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the attacker");
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let before = rss_kib();
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        std::thread::sleep(RAMP);
        let run = load(&target, &client);
        let report = attacker.wait_with_output().expect("the attacker ends");
        sampling.store(false, Ordering::Relaxed);
        sampler.join().unwrap();
        let grew = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
        let did = String::from_utf8_lossy(&report.stdout)
            .trim()
            .replace('|', "/");
        let _ = writeln!(
            out,
            "| {title} | {:.0} us | {:.0} us | {:.2}x | {} | {grew} MiB | `{did}` |",
            run.get("p50_us"),
            run.get("p99_us"),
            run.get("p99_us") / base_p99.max(1.0),
            run.failed(),
        );
        eprintln!("{}", out.lines().last().unwrap_or_default());
    }
    drop(host);
    out
}
