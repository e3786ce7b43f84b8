//! The binary's lifecycle under real signals: SIGTERM during steady unary, streaming and
//! slow calls fails none of those started before it (the host drains), refuses new
//! connections once gone and exits 0; SIGHUP applies a new config to the calls that
//! follow without failing one meanwhile, and a broken config is refused with one line.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use plugrpc::outbound::RawCodec;
use tonic::transport::Channel;

use common::Served;
use rustix::process::Signal;

/// `value` as a protobuf varint.
fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}

/// A protobuf string field `number` holding `text`.
fn string_field(number: u8, text: &str) -> Vec<u8> {
    let mut field = vec![number << 3 | 2];
    field.extend(varint(text.len() as u64));
    field.extend_from_slice(text.as_bytes());
    field
}

/// `helloworld.Greeter/SayHello` for `name`.
async fn hello(channel: Channel, name: &str) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/helloworld.Greeter/SayHello");
    let request = tonic::Request::new(Bytes::from(string_field(1, name)));
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// `user.v1.UserService/ListUsers` for `limit` users: how many came.
async fn list_users(channel: Channel, limit: u8) -> Result<usize, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/user.v1.UserService/ListUsers");
    let request = tonic::Request::new(Bytes::from(vec![0x08, limit]));
    let mut stream = grpc
        .server_streaming(request, path, RawCodec)
        .await?
        .into_inner();
    let mut count = 0;
    while stream.message().await?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// `caller.v1.Caller/Hello` through the local door, its guest first sleeping `wait_ms`.
async fn slow_relay(channel: Channel, wait_ms: u32) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/caller.v1.Caller/Hello");
    let mut relay = string_field(1, "local");
    relay.extend(string_field(2, "ada"));
    relay.push(0x38);
    relay.extend(varint(wait_ms.into()));
    grpc.unary(tonic::Request::new(Bytes::from(relay)), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// One call a load worker made: when it started, and whether it failed.
struct Made {
    at: Instant,
    failed: Option<tonic::Status>,
}

/// Workers calling in a loop, each on a connection of its own, until their calls fail
/// (the host is gone), `stop` says so or `limit` passes; every call recorded.
async fn load(
    served: &Served,
    workers: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
    limit: Duration,
    call: impl Fn(Channel) -> futures::future::BoxFuture<'static, Result<(), tonic::Status>>
    + Send
    + Sync
    + Clone
    + 'static,
) -> Vec<tokio::task::JoinHandle<Vec<Made>>> {
    let mut handles = Vec::new();
    for _ in 0..workers {
        let channel = served.channel().await;
        let (call, stop) = (call.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut made = Vec::new();
            while started.elapsed() < limit && !*stop.borrow() {
                let at = Instant::now();
                let failed = call(channel.clone()).await.err();
                let stop = failed.is_some();
                made.push(Made { at, failed });
                if stop {
                    break;
                }
            }
            made
        }));
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_fails_no_call_started_before_it() {
    let served = Served::start(
        &["greeter", "users-fixture", "caller"],
        "[shutdown]\ndrain_delay = \"1s\"\ngrace = \"10s\"\n\
         [plugins.caller.outbound.local]\nendpoints = [\"local\"]\n",
        &[],
    );
    // A folder of several shows its progress as each plugin compiles.
    for step in ["[1/3]", "[2/3]", "[3/3]"] {
        assert!(
            served
                .startup
                .iter()
                .any(|line| line.contains(step) && line.contains("compiled in")),
            "no {step} in {:#?}",
            served.startup
        );
    }
    let limit = Duration::from_secs(20);
    // The workers stop when the host is gone.
    let (_never, go_on) = tokio::sync::watch::channel(false);
    let mut workers = load(&served, 6, &go_on, limit, |channel| {
        Box::pin(async move { hello(channel, "ada").await.map(drop) })
    })
    .await;
    workers.extend(
        load(&served, 3, &go_on, limit, |channel| {
            Box::pin(async move {
                let count = list_users(channel, 50).await?;
                assert_eq!(count, 50, "a stream cut short");
                Ok(())
            })
        })
        .await,
    );
    workers.extend(
        load(&served, 2, &go_on, limit, |channel| {
            Box::pin(async move { slow_relay(channel, 200).await.map(drop) })
        })
        .await,
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A call still running when the drain delay ends holds the host in its grace.
    let held = tokio::spawn(slow_relay(served.channel().await, 8000));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    served.signal(Signal::TERM);
    // Past the drain delay (1 s), while that call runs: new connections are refused.
    tokio::time::sleep_until((signalled + Duration::from_millis(1000)).into()).await;
    while tokio::net::TcpStream::connect(served.addr).await.is_ok() {
        assert!(
            !held.is_finished(),
            "new connections were accepted as long as the host held a call"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut made = Vec::new();
    for worker in workers {
        made.extend(worker.await.unwrap());
    }
    let before: Vec<&Made> = made.iter().filter(|m| m.at < signalled).collect();
    let failed: Vec<_> = before.iter().filter_map(|m| m.failed.as_ref()).collect();
    assert!(before.len() > 50, "too little load: {} calls", before.len());
    assert!(
        failed.is_empty(),
        "{} of {} calls started before SIGTERM failed: {failed:?}",
        failed.len(),
        before.len()
    );
    // The drain delay: the host still answers new calls after the signal.
    let during = made
        .iter()
        .filter(|m| m.at > signalled && m.at < signalled + Duration::from_millis(500));
    assert!(
        during.clone().all(|m| m.failed.is_none()),
        "a call in the drain delay failed"
    );
    assert!(
        during.count() > 0,
        "no call was made during the drain delay"
    );

    let mut served = served;
    let status = tokio::task::block_in_place(|| served.exit_within(Duration::from_secs(15)));
    assert!(status.success(), "{status:?}");
    served.log.until("shut down", Duration::from_secs(5));
    held.await
        .unwrap()
        .expect("the call in flight through the drain finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_applies_a_new_config_and_refuses_a_broken_one() {
    // The file is not watched: only the signal may apply it.
    let served = Served::start(
        &["greeter"],
        "watch = false\n[plugins.greeter]\nmax_request_size = \"1MiB\"\n",
        &[],
    );
    let big = "x".repeat(4000);
    hello(served.channel().await, &big).await.unwrap();

    // Steady small calls across both reloads: none may fail.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = load(&served, 4, &stopped, Duration::from_secs(60), |channel| {
        Box::pin(async move { hello(channel, "ada").await.map(drop) })
    })
    .await;

    served.write_config("watch = false\n[plugins.greeter]\nmax_request_size = \"1KiB\"\n");
    served.signal(Signal::HUP);
    served.log.until("config reloaded", Duration::from_secs(30));
    let refused = hello(served.channel().await, &big).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("max_request_size"),
        "{refused:?}"
    );

    served.write_config("watch = false\n[plugins.greeter]\nmemory = \"1B\"\n");
    served.signal(Signal::HUP);
    let said = served
        .log
        .until("config not reloaded", Duration::from_secs(30));
    let line = said.last().unwrap();
    assert!(line.contains("plugins.greeter.memory"), "{line}");
    // The running config stays: the 1 KiB bound still holds, small calls still pass.
    let still = hello(served.channel().await, &big).await.unwrap_err();
    assert_eq!(still.code(), tonic::Code::ResourceExhausted);
    hello(served.channel().await, "ada").await.unwrap();

    stop.send(true).unwrap();
    for worker in workers {
        let made = worker.await.unwrap();
        assert!(!made.is_empty());
        let failed: Vec<_> = made.iter().filter_map(|m| m.failed.as_ref()).collect();
        assert!(
            failed.is_empty(),
            "calls failed across a reload: {failed:?}"
        );
    }
}
