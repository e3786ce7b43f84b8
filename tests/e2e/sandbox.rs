//! One tenant's plugin misbehaving in every way we know: each fault gets the right
//! status, the host keeps serving, and another plugin's calls keep succeeding.

use std::time::{Duration, Instant};

use crate::plugins::{MISBEHAVE, PROBE, USERS_FIXTURE};
use plugrpc_tests::pb::misbehave::misbehave_client::MisbehaveClient;
use plugrpc_tests::pb::misbehave::{Blob, BusyWaitRequest, Empty, PrintRequest, SizeRequest};
use plugrpc_tests::pb::probe::EchoRequest;
use plugrpc_tests::pb::probe::probe_client::ProbeClient;
use plugrpc_tests::pb::user::GetUserRequest;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{LogCapture, PlainHttp2, TestHost};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};

/// Tight limits for the rogue plugin; the well-behaved ones keep the defaults.
const CONFIG: &str = r#"
[plugins.misbehave]
deadline = "2s"
max_deadline = "10s"
memory = "16MiB"
cpu_time = "1s"
max_concurrent_calls = 2
max_queued_calls = 2
# One client fills the plugin here: the whole of it may be one caller's.
max_caller_share = 100
max_request_size = "64KiB"
max_response_size = "64KiB"

[plugins.probe]
deadline = "1s"
max_deadline = "3s"
"#;

/// The host, and a client of the rogue plugin that leaves deadlines to the server.
async fn host() -> (TestHost, MisbehaveClient<PlainHttp2>) {
    let host = TestHost::with_config(&[MISBEHAVE, USERS_FIXTURE, PROBE], CONFIG).await;
    let client = MisbehaveClient::with_origin(host.plain_http2(), host.origin());
    (host, client)
}

/// A request with a `grpc-timeout`; over [`TestHost::plain_http2`] only the server enforces it.
fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    let millis = MetadataValue::try_from(format!("{}m", timeout.as_millis())).unwrap();
    request.metadata_mut().insert("grpc-timeout", millis);
    request
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, says: &str) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(says),
        "{:?} should mention {says:?}",
        status.message()
    );
    status
}

/// The host still answers the rogue plugin and its neighbour.
async fn assert_still_serving(host: &TestHost) {
    let mut rogue = MisbehaveClient::new(host.channel().await);
    let size = rogue
        .measure(Blob { data: vec![0; 10] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(size.bytes, 10);
    let mut users = UserServiceClient::new(host.channel().await);
    assert_eq!(
        users
            .get_user(GetUserRequest { id: 3 })
            .await
            .unwrap()
            .into_inner()
            .id,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_infinite_loop_is_stopped_at_the_client_deadline() {
    let (host, mut rogue) = host().await;
    let started = Instant::now();
    assert_status(
        rogue
            .spin(with_timeout(Empty {}, Duration::from_millis(200)))
            .await,
        Code::DeadlineExceeded,
        "deadline",
    );
    let took = started.elapsed();
    // Not a speed check (benches measure precision): the client's 200 ms, not the
    // plugin's 2 s default, is what ended the call.
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_hold_with_the_folder_watch_off() {
    // The epoch clock must not depend on anything optional being alive.
    let host = TestHost::with_config(&[MISBEHAVE], "[host]\nwatch = false\n").await;
    let mut rogue = MisbehaveClient::with_origin(host.plain_http2(), host.origin());
    let spin = rogue
        .spin(with_timeout(Empty {}, Duration::from_millis(200)))
        .await;
    assert_status(spin, Code::DeadlineExceeded, "deadline");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_waiting_on_input_with_no_client_deadline_ends_at_the_plugins_default() {
    let (host, mut rogue) = host().await;
    let (_tx, rx) = mpsc::channel::<Blob>(1);
    let started = Instant::now();
    assert_status(
        rogue.drain(ReceiverStream::new(rx)).await,
        Code::DeadlineExceeded,
        "deadline",
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the 2 s default deadline"
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_its_deadline_defaulted_and_capped() {
    let (host, _rogue) = host().await;
    let mut probe = ProbeClient::new(host.channel().await);
    let default = probe
        .echo(EchoRequest::default())
        .await
        .unwrap()
        .into_inner()
        .remaining_ms;
    assert!(
        (1..=1000).contains(&default),
        "default deadline 1s, guest saw {default} ms"
    );
    let capped = probe
        .echo(with_timeout(
            EchoRequest::default(),
            Duration::from_secs(60),
        ))
        .await;
    let capped = capped.unwrap().into_inner().remaining_ms;
    assert!(
        (1001..=3000).contains(&capped),
        "60 s asked, capped at 3 s, guest saw {capped} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_waiting_past_the_deadline_is_deadline_exceeded() {
    let (host, mut rogue) = host().await;
    let wait = BusyWaitRequest { millis: 10_000 };
    assert_status(
        rogue
            .busy_wait(with_timeout(wait, Duration::from_millis(300)))
            .await,
        Code::DeadlineExceeded,
        "deadline",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spending_the_cpu_budget_is_resource_exhausted_naming_cpu_time() {
    let (host, mut rogue) = host().await;
    let wait = BusyWaitRequest { millis: 8_000 };
    let result = rogue
        .busy_wait(with_timeout(wait, Duration::from_secs(9)))
        .await;
    assert_status(result, Code::ResourceExhausted, "cpu_time");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_on_a_slow_client_does_not_spend_cpu_time() {
    let (_host, mut rogue) = host().await;
    let (tx, rx) = mpsc::channel(1);
    let call = tokio::spawn(async move {
        rogue
            .drain(with_timeout(
                ReceiverStream::new(rx),
                Duration::from_secs(8),
            ))
            .await
    });
    // 1.5 s of waiting on input: more than the 1 s CPU budget, but none of it computing.
    for _ in 0..6 {
        tx.send(Blob { data: vec![1; 100] }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(tx);
    assert_eq!(call.await.unwrap().unwrap().into_inner().bytes, 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_allocation_is_resource_exhausted_naming_memory() {
    let (host, mut rogue) = host().await;
    assert_status(
        rogue.allocate(Empty {}).await,
        Code::ResourceExhausted,
        "memory limit of 16.0 MiB",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn panics_and_traps_are_internal_without_trap_text() {
    let (host, mut rogue) = host().await;
    let status = assert_status(
        rogue.panic(Empty {}).await,
        Code::Internal,
        "plugin misbehave failed",
    );
    assert!(
        !status.message().contains("wasm"),
        "no trap text for clients: {}",
        status.message()
    );
    assert_status(
        rogue.unreachable(Empty {}).await,
        Code::Internal,
        "plugin misbehave failed",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_resource_exhausted_naming_the_stack() {
    let (host, mut rogue) = host().await;
    assert_status(
        rogue.recurse(Empty {}).await,
        Code::ResourceExhausted,
        "host.guest_stack",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_over_max_response_size_is_resource_exhausted() {
    let (host, mut rogue) = host().await;
    let small = rogue
        .huge_reply(SizeRequest { bytes: 1000 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(small.data.len(), 1000);
    assert_status(
        rogue.huge_reply(SizeRequest { bytes: 100_000 }).await,
        Code::ResourceExhausted,
        "max_response_size",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_max_request_size_is_resource_exhausted_in_every_shape() {
    let (host, mut rogue) = host().await;
    let big = Blob {
        data: vec![0; 100_000],
    };
    assert_status(
        rogue.measure(big.clone()).await,
        Code::ResourceExhausted,
        "max_request_size",
    );
    let stream = tokio_stream::iter([Blob { data: vec![0; 10] }, big]);
    assert_status(
        rogue.drain(stream).await,
        Code::ResourceExhausted,
        "max_request_size",
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_stream_ends_at_its_deadline() {
    let (host, mut rogue) = host().await;
    let mut stream = rogue
        .endless(with_timeout(Empty {}, Duration::from_millis(300)))
        .await
        .unwrap()
        .into_inner();
    let mut received = 0;
    let status = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break status,
            None => panic!("an endless stream cannot end without a status"),
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(received > 0);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_leaving_an_endless_stream_frees_the_plugins_slot() {
    let (host, mut rogue) = host().await;
    // Both of the plugin's slots held by endless streams, then abandoned.
    for _ in 0..2 {
        let mut stream = rogue.endless(Empty {}).await.unwrap().into_inner();
        for _ in 0..5 {
            stream.next().await.unwrap().unwrap();
        }
    }
    // With the slots still held, this would wait in the queue past its 1 s deadline
    // (the abandoned streams would end at their 2 s one).
    let size = rogue
        .measure(with_timeout(
            Blob { data: vec![1; 3] },
            Duration::from_secs(1),
        ))
        .await;
    assert_eq!(size.unwrap().into_inner().bytes, 3);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_resetting_a_spinning_call_stops_the_guest_and_frees_its_slot() {
    let (host, rogue) = host().await;
    // Fill both slots with spinning calls, then walk away from them (RST_STREAM).
    for _ in 0..2 {
        let mut rogue = rogue.clone();
        let call = tokio::spawn(async move {
            rogue
                .spin(with_timeout(Empty {}, Duration::from_secs(9)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        call.abort();
    }
    // Were the guests still running, this would wait behind them past its 500 ms
    // deadline (their 1 s cpu_time would stop them only later).
    let mut rogue = rogue.clone();
    let size = rogue
        .measure(with_timeout(
            Blob { data: vec![1; 4] },
            Duration::from_millis(500),
        ))
        .await;
    assert_eq!(size.unwrap().into_inner().bytes, 4);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn input_that_is_never_read_ends_at_the_deadline() {
    let (host, mut rogue) = host().await;
    let flood = tokio_stream::iter((0..5_000).map(|_| Blob {
        data: vec![9; 1024],
    }));
    let result = rogue
        .hoard(with_timeout(flood, Duration::from_millis(500)))
        .await;
    assert_status(result, Code::DeadlineExceeded, "deadline");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_past_the_limit_and_queue_are_refused_at_once() {
    let (host, rogue) = host().await;
    let spins: Vec<_> = (0..4)
        .map(|_| {
            let mut rogue = rogue.clone();
            // Under the 1 s CPU budget, so the deadline is what ends them.
            tokio::spawn(async move {
                rogue
                    .spin(with_timeout(Empty {}, Duration::from_millis(700)))
                    .await
            })
        })
        .collect();
    // Two spinning, two waiting: the fifth is refused without waiting.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut fifth = rogue.clone();
    let refused = fifth.measure(Blob::default()).await;
    assert_status(refused, Code::ResourceExhausted, "max_concurrent_calls");
    for spin in spins {
        assert_eq!(
            spin.await.unwrap().unwrap_err().code(),
            Code::DeadlineExceeded
        );
    }
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hog_at_its_concurrency_limit_does_not_stop_another_plugins_calls() {
    let (host, rogue) = host().await;
    let hog_until = Instant::now() + Duration::from_secs(4);
    // Keep both of the rogue's slots spinning (one per core), and its queue full.
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let mut rogue = rogue.clone();
            tokio::spawn(async move {
                while Instant::now() < hog_until {
                    let _ = rogue
                        .spin(with_timeout(Empty {}, Duration::from_millis(700)))
                        .await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut users = UserServiceClient::new(host.channel().await);
    let mut served = 0;
    while Instant::now() < hog_until && served < 2_000 {
        let id = served + 1;
        let user = users
            .get_user(with_timeout(GetUserRequest { id }, Duration::from_secs(2)))
            .await;
        assert_eq!(
            user.expect("the neighbour's calls all succeed")
                .into_inner()
                .id,
            id
        );
        served += 1;
    }
    assert!(served >= 10, "only {served} calls served beside the hog");
    for hog in hogs {
        hog.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_grants_no_files_environment_or_network() {
    let (_host, mut rogue) = host().await;
    let report = rogue.escape(Empty {}).await.unwrap().into_inner();
    assert!(report.granted.is_empty(), "granted: {:?}", report.granted);
    assert_eq!(report.denied.len(), 8, "{:?}", report.denied);
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_goes_to_the_log_tagged_and_rate_limited() {
    let log = LogCapture::install();
    let (_host, mut rogue) = host().await;
    rogue.print(PrintRequest { lines: 2_000 }).await.unwrap();
    let logged = log.lines_with(&[
        "misbehave stdout line",
        "plugin=\"misbehave\"",
        "stream=\"stdout\"",
    ]);
    assert!(
        logged.iter().any(|l| l.contains("misbehave stdout line 0")),
        "first line logged"
    );
    assert!(
        !log.lines_with(&["misbehave stderr line 0", "stream=\"stderr\""])
            .is_empty()
    );
    let all = log.lines_with(&["misbehave s", "line"]).len();
    assert!(
        all <= 300,
        "4000 lines written, {all} logged: rate limit missing"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    rogue.print(PrintRequest { lines: 1 }).await.unwrap();
    assert!(
        !log.lines_with(&["lines from this plugin were not logged", "misbehave"])
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_trapping_on_every_call_does_not_flood_the_log() {
    let log = LogCapture::install();
    let (host, rogue) = host().await;
    let started = Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let mut rogue = rogue.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let failed = rogue.unreachable(Empty {}).await.unwrap_err();
                    assert_eq!(failed.code(), Code::Internal, "{failed:?}");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let windows = started.elapsed().as_secs() + 2;
    let logged = log.lines_with(&["plugin trapped"]).len();
    // Five records a second at most, of 200 traps (a trap's record spans several lines,
    // so records are counted by their first; other tests trap a few times too).
    assert!(
        (1..=5 * windows as usize + 10).contains(&logged),
        "{logged} lines for 200 traps in {windows} windows"
    );
    assert_still_serving(&host).await;
}
