//! Warm instances: a plugin that declares itself stateless is served from reused
//! instances, one call at a time each, and an instance is dropped instead of reused after
//! anything goes wrong. The `warm` test plugin answers `<name> #<calls its instance served>`.

use std::time::Duration;

use plugrpc_tests::TestHost;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn host(toml: &str) -> (TestHost, GreeterClient<Channel>) {
    let host = TestHost::with_config(&["warm"], toml).await;
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
    let mut spin = Request::new(HelloRequest {
        name: "spin".into(),
    });
    spin.set_timeout(Duration::from_millis(200));
    // tonic gives up on its own timer and resets the stream: the host sees a cancel.
    let status = client.say_hello(spin).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert_eq!(hello(&mut client, "a").await.unwrap(), "a #1");
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
    // No more instances than calls ever ran at once: idle ones were reused.
    let instances = counts.iter().filter(|&&c| c == 1).count();
    assert!(
        (1..=CALLERS).contains(&instances),
        "{instances} instances for {CALLERS} callers"
    );
    // Each instance answers #1, #2, ... in turn: count k comes from every instance that
    // served k calls, so no count is answered more often than the one before it.
    let answers = |count: u64| counts.iter().filter(|&&c| c == count).count();
    for count in 2..=(CALLERS * CALLS) as u64 {
        assert!(answers(count) <= answers(count - 1), "#{count}: {counts:?}");
    }
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
