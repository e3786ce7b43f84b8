//! Warm instances: a plugin that declares itself stateless is served from reused
//! instances, one call at a time each, and an instance is dropped instead of reused after
//! anything goes wrong. The `warm` test plugin answers `<name> #<calls its instance served>`.

use std::time::Duration;

use crate::plugins::{MISBEHAVE, WARM};
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::misbehave::Empty;
use plugrpc_tests::pb::misbehave::misbehave_client::MisbehaveClient;
use plugrpc_tests::pb::probe::EchoRequest;
use plugrpc_tests::pb::probe::probe_client::ProbeClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

async fn host(toml: &str) -> (TestHost, GreeterClient<Channel>) {
    let host = TestHost::with_config(&[WARM], toml).await;
    let client = GreeterClient::new(host.channel().await);
    (host, client)
}

async fn hello(client: &mut GreeterClient<Channel>, name: &str) -> Result<String, tonic::Status> {
    let request = HelloRequest { name: name.into() };
    Ok(client.say_hello(request).await?.into_inner().message)
}

/// How many calls the instance that answered had served: the number after `#`.
fn served(reply: &str) -> u64 {
    let (_, count) = reply.rsplit_once('#').expect("a `#<count>` reply");
    count.parse().expect("a count")
}

#[tokio::test]
async fn calls_one_after_another_share_one_instance() {
    let (_host, mut client) = host("").await;
    for expected in 1..=5 {
        assert_eq!(
            hello(&mut client, "a").await.unwrap(),
            format!("a #{expected}")
        );
    }
}

#[tokio::test]
async fn reuse_can_be_turned_off_per_plugin() {
    let (_host, mut client) = host("[plugins.warm]\nreuse_instances = false\n").await;
    for _ in 0..3 {
        assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    }
}

#[tokio::test]
async fn a_guest_error_status_keeps_the_instance() {
    let (_host, mut client) = host("").await;
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    let status = hello(&mut client, "fail").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "failed #2");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #3");
}

#[tokio::test]
async fn a_panic_drops_the_instance() {
    let (_host, mut client) = host("").await;
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #2");
    let status = hello(&mut client, "panic").await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
}

#[tokio::test]
async fn a_deadline_drops_the_instance() {
    let (_host, mut client) = host("[plugins.warm]\ndeadline = \"200ms\"\n").await;
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    let status = hello(&mut client, "spin").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
}

#[tokio::test]
async fn a_cancelled_call_drops_the_instance() {
    let (_host, mut client) = host("").await;
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    // No grpc-timeout: the host's deadline is a minute away, so only the client's
    // reset (dropping the call) can end it.
    let spin = hello(&mut client, "spin");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), spin)
            .await
            .is_err()
    );
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
}

#[tokio::test]
async fn an_instance_grown_large_is_not_kept() {
    let (_host, mut client) = host("").await;
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
    assert_eq!(hello(&mut client, "grow").await.unwrap(), "grow #2");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
}

#[tokio::test]
async fn printing_keeps_the_instance() {
    let (_host, mut client) = host("").await;
    assert_eq!(hello(&mut client, "print").await.unwrap(), "print #1");
    assert_eq!(hello(&mut client, "print").await.unwrap(), "print #2");
}

#[tokio::test]
async fn a_streaming_call_leaves_its_instance_ready_for_the_next_call() {
    let (host, mut client) = host("").await;
    let mut probe = ProbeClient::new(host.channel().await);
    for expected in 1..=2 {
        let request = EchoRequest {
            text: "s".into(),
            count: 3,
        };
        let replies: Vec<String> = probe
            .echo_stream(request)
            .await
            .unwrap()
            .into_inner()
            .map(|reply| reply.unwrap().text)
            .collect()
            .await;
        assert_eq!(replies, vec![format!("s #{expected}"); 3]);
    }
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #3");
}

#[tokio::test]
async fn concurrent_calls_reuse_idle_instances_and_make_no_more_than_run_at_once() {
    const CALLERS: usize = 8;
    const CALLS: usize = 25;
    let (host, _) = host("").await;
    let channel = host.channel().await;
    let callers = (0..CALLERS).map(|_| {
        let mut client = GreeterClient::new(channel.clone());
        tokio::spawn(async move {
            let mut counts = Vec::new();
            for _ in 0..CALLS {
                counts.push(served(&hello(&mut client, "c").await.unwrap()));
            }
            counts
        })
    });
    let mut counts = Vec::new();
    for caller in callers {
        counts.extend(caller.await.unwrap());
    }
    // Idle instances were reused: no more were made than calls ever ran at once
    // (a pool that kept nothing would make one per call), and some served many calls.
    let instances = counts.iter().filter(|&&c| c == 1).count();
    assert!(
        (1..=CALLERS).contains(&instances),
        "{instances} instances for {CALLERS} callers"
    );
    assert!(counts.iter().any(|&c| c as usize >= CALLS), "{counts:?}");
    assert_eq!(counts.len(), CALLERS * CALLS);
}

#[tokio::test]
async fn an_instance_is_replaced_after_ten_thousand_calls() {
    let (_host, mut client) = host("").await;
    for _ in 1..10_000 {
        hello(&mut client, "a").await.unwrap();
    }
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #10000");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
}

#[tokio::test]
async fn idle_instances_give_their_sandboxes_to_calls_when_the_pool_runs_out() {
    // 8 sandboxes: at most 2 idle warm instances; the rogue plugin may run 8 calls.
    let config =
        "[host]\nsandboxes = 8\n[plugins.misbehave]\ndeadline = \"1s\"\nmax_caller_share = 100\n";
    let host = TestHost::with_config(&[WARM, MISBEHAVE], config).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut greeter = greeter.clone();
            tokio::spawn(async move { hello(&mut greeter, "slow").await })
        })
        .collect();
    for call in slow {
        assert_eq!(call.await.unwrap().unwrap(), "slow #1");
    }
    // Two instances idle, six sandboxes free: the seventh spinning call needs one of theirs.
    let rogue = MisbehaveClient::new(host.channel().await);
    let spins: Vec<_> = (0..7)
        .map(|_| {
            let mut rogue = rogue.clone();
            tokio::spawn(async move { rogue.spin(Empty {}).await })
        })
        .collect();
    for spin in spins {
        let status = spin.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    }
    assert_eq!(hello(&mut greeter, "a").await.unwrap(), "a #1");
}
