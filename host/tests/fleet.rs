//! A fleet on one machine: three `plugrpc serve` processes on loopback with one config,
//! plugins from a real OCI registry (Debian's docker-registry), shared state in a real
//! `redis-server`, and a client balancing round robin over the three with retries on
//! UNAVAILABLE (the host's own outbound client). A push swaps every host under load with
//! no call failed; a key written through one host is read through another; SIGTERM to one
//! host under load fails no call; the registry stopped, serving goes on and the next push
//! lands once it is back; a breaking push is refused on every host with the same reason.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use plugrpc::OutboundTarget;
use plugrpc::outbound::{OutboundCall, Target};
use prost::Message as _;
use rustix::process::Signal;
use tokio::task::JoinHandle;

use common::oci_registry::{self, OciRegistry};
use common::redis::RedisServer;
use common::{Served, test_plugins};

/// Far longer than anything here takes, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// `versioned.v1.VersionReply`.
#[derive(Clone, PartialEq, prost::Message)]
struct VersionReply {
    #[prost(string, tag = "1")]
    version: String,
}

/// `keeper.v1.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(string, tag = "1")]
    bucket: String,
    #[prost(string, tag = "2")]
    key: String,
    #[prost(bytes = "vec", tag = "3")]
    value: Vec<u8>,
}

/// `keeper.v1.Key`.
#[derive(Clone, PartialEq, prost::Message)]
struct Key {
    #[prost(string, tag = "1")]
    bucket: String,
    #[prost(string, tag = "2")]
    key: String,
}

/// `keeper.v1.Found`.
#[derive(Clone, PartialEq, prost::Message)]
struct Found {
    #[prost(bool, tag = "1")]
    found: bool,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// One host of the fleet: the process and its admin address.
struct Member {
    served: Served,
    admin: SocketAddr,
}

impl Member {
    fn start(config: &str) -> Self {
        let served = Served::start(&[], config, &["--admin", "127.0.0.1:0"]);
        let line = served
            .log
            .until("serving the admin endpoints", Duration::from_secs(10));
        let line = line.last().expect("the admin line");
        let admin = line
            .split("Some(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in {line}"));
        Self { served, admin }
    }

    /// The version this host serves.
    async fn version(&self) -> String {
        let reply: VersionReply =
            unary(self.served.addr, "/versioned.v1.Versioned/Version", &()).await;
        reply.version
    }

    /// `GET path` on the admin port: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n");
        let answer = common::probe::ask(self.admin, request.as_bytes(), PATIENCE)
            .expect("the admin port answers");
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
        (status, body.to_owned())
    }
}

/// Calls `method` on the host at `addr` with `request`, on a connection of its own.
async fn unary<Q: prost::Message + 'static, R: prost::Message + Default + 'static>(
    addr: SocketAddr,
    method: &'static str,
    request: &Q,
) -> R {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(PATIENCE)
        .timeout(PATIENCE)
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let answer: Bytes = grpc
        .unary(
            tonic::Request::new(Bytes::from(request.encode_to_vec())),
            http::uri::PathAndQuery::from_static(method),
            plugrpc::outbound::RawCodec,
        )
        .await
        .unwrap_or_else(|status| panic!("{method} on {addr}: {status:?}"))
        .into_inner();
    R::decode(answer).unwrap()
}

/// One `Version` call through the balanced client.
async fn version(fleet: &Target) -> Result<String, tonic::Status> {
    let (send, requests) = tokio::sync::mpsc::channel(1);
    send.send(Bytes::new()).await.unwrap();
    drop(send);
    let mut response = fleet
        .call(OutboundCall {
            method: "/versioned.v1.Versioned/Version".into(),
            metadata: tonic::metadata::MetadataMap::new(),
            timeout: Duration::from_secs(5),
            requests,
        })
        .await?;
    let reply = response.message().await?.unwrap_or_default();
    while response.message().await?.is_some() {}
    Ok(VersionReply::decode(reply).unwrap().version)
}

type Made = Vec<Result<String, tonic::Status>>;

/// Calls through `fleet` on 4 workers until `stop` says so (60 s at most); every call's
/// outcome.
fn load(fleet: &Arc<Target>, stop: &tokio::sync::watch::Receiver<bool>) -> Vec<JoinHandle<Made>> {
    (0..4)
        .map(|_| {
            let (fleet, stop) = (fleet.clone(), stop.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let mut made = Vec::new();
                while !*stop.borrow() && started.elapsed() < PATIENCE {
                    made.push(version(&fleet).await);
                }
                made
            })
        })
        .collect()
}

/// Every outcome of `workers`; fails the test, listing them, if any call failed.
async fn none_failed(workers: Vec<JoinHandle<Made>>) -> Made {
    let mut made = Vec::new();
    for worker in workers {
        made.extend(worker.await.unwrap());
    }
    let failed: Vec<_> = made.iter().filter_map(|m| m.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        made.len()
    );
    made
}

/// Waits until every host serves `wanted`.
async fn until_every_host_serves(hosts: &[Member], wanted: &str) {
    let started = Instant::now();
    for host in hosts {
        while host.version().await != wanted {
            assert!(
                started.elapsed() < PATIENCE,
                "a host never swapped to {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_of_three_deploys_shares_state_and_loses_no_call() {
    let [v1, v2, broken, keeper] = <[std::path::PathBuf; 4]>::try_from(test_plugins(&[
        "versioned-v1",
        "versioned-v2",
        "versioned-broken",
        "keeper",
    ]))
    .unwrap();
    let mut registry = OciRegistry::start();
    let redis = RedisServer::start();
    let repository = format!("{}/acme", registry.host());
    let push = |tag: &'static str, wasm: &std::path::Path| {
        let (reference, wasm) = (format!("{repository}/{tag}"), wasm.to_owned());
        async move { oci_registry::push(&reference, &wasm).await }
    };
    push("versioned:live", &v1).await;
    push("keeper:live", &keeper).await;
    let config = format!(
        "[sources.default]\noci = {repository:?}\nplugins = [\"versioned:live\", \"keeper:live\"]\n\
         poll_interval = \"1s\"\ninsecure = true\n\
         [kv]\nbackend = \"redis\"\nurl = {:?}\n[plugins.keeper.kv]\n\
         [shutdown]\ndrain_delay = \"500ms\"\ngrace = \"10s\"\n",
        redis.url()
    );
    let mut hosts: Vec<Member> = (0..3).map(|_| Member::start(&config)).collect();
    for host in &hosts {
        assert_eq!(host.version().await, "v1");
    }
    let endpoints: Vec<String> = hosts
        .iter()
        .map(|h| format!("\"http://{}\"", h.served.addr))
        .collect();
    let client: OutboundTarget = toml::from_str(&format!(
        "endpoints = [{}]\nload_balancing = \"round_robin\"\n\
         [retry]\nmax_attempts = 4\ninitial_backoff = \"20ms\"\nmax_backoff = \"200ms\"\n\
         retryable_status_codes = [\"UNAVAILABLE\"]\n",
        endpoints.join(", ")
    ))
    .unwrap();
    let fleet = Arc::new(Target::new("fleet", &client).unwrap());

    // Push v2 under load: every host swaps, no call fails. How fast is the fleet
    // bench's to say (benchmarks/fleet.md).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = load(&fleet, &stopped);
    tokio::time::sleep(Duration::from_millis(300)).await;
    push("versioned:live", &v2).await;
    until_every_host_serves(&hosts, "v2").await;
    stop.send(true).unwrap();
    let made = none_failed(workers).await;
    assert!(made.iter().any(|m| m.as_deref().is_ok_and(|v| v == "v1")));
    assert!(made.iter().any(|m| m.as_deref().is_ok_and(|v| v == "v2")));

    // A key written through one host is read through another.
    let entry = Entry {
        bucket: String::new(),
        key: "shared".into(),
        value: b"across the fleet".to_vec(),
    };
    let () = unary(hosts[0].served.addr, "/keeper.v1.Keeper/Put", &entry).await;
    let key = Key {
        bucket: String::new(),
        key: "shared".into(),
    };
    let found: Found = unary(hosts[2].served.addr, "/keeper.v1.Keeper/Get", &key).await;
    assert!(found.found);
    assert_eq!(found.value, b"across the fleet");

    // SIGTERM to one host under load: it drains (serving through its drain delay, then
    // GOAWAY, then finishing what it started), the client retries elsewhere, no call
    // fails, and it exits 0.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = load(&fleet, &stopped);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut gone = hosts.remove(1);
    gone.served.signal(Signal::TERM);
    let status = tokio::task::block_in_place(|| gone.served.exit_within(PATIENCE));
    assert!(status.success(), "{status:?}");
    // It went through the drain, not around it.
    let drained = gone.served.log.until("draining: NOT_SERVING now", PATIENCE);
    assert!(
        drained.last().unwrap().contains("accepting for 500ms more"),
        "{drained:#?}"
    );
    gone.served.log.until("shut down", PATIENCE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    none_failed(workers).await;

    // The registry gone: every host notices (its /readyz says so) and serves on.
    registry.stop();
    for host in &hosts {
        let started = Instant::now();
        loop {
            let (status, readyz) = host.get("/readyz");
            assert_eq!(status, 200, "{readyz}");
            if readyz.contains("source default: failing since") {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the outage went unnoticed: {readyz}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(host.version().await, "v2");
    }
    // A breaking version once it is back: refused on every host, with the same reason.
    registry.restart();
    push("versioned:live", &broken).await;
    let mut reasons = Vec::new();
    for host in &hosts {
        let started = Instant::now();
        let reason = loop {
            let (_, body) = host.get("/plugins");
            let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(refused) = listed["refused"].as_array().and_then(|r| r.first()) {
                break refused["reason"].as_str().unwrap().to_owned();
            }
            assert!(started.elapsed() < PATIENCE, "never refused: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(host.version().await, "v2");
        reasons.push(reason);
    }
    assert!(reasons[0].contains("would break callers"), "{}", reasons[0]);
    assert!(reasons.iter().all(|r| *r == reasons[0]), "{reasons:#?}");
}
