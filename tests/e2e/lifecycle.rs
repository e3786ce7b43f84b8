//! Stopping the host: after the shutdown signal, calls and connections in flight get the
//! shutdown grace, nothing a client holds open keeps the host from exiting, and the calls
//! still running then end UNAVAILABLE with their status sent.

use std::time::Duration;

use plugrpc_tests::pb::misbehave::Blob;
use plugrpc_tests::pb::misbehave::misbehave_client::MisbehaveClient;
use plugrpc_tests::pb::user::ChatMessage;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{LogCapture, TestHost};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use crate::plugins::{MISBEHAVE, USERS_FIXTURE};

/// Far longer than the grace the test sets: reaching it means the host never stopped.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_and_an_idle_stream_do_not_keep_the_host_from_stopping() {
    let log = LogCapture::install();
    let host = TestHost::with_config(&[USERS_FIXTURE], "[shutdown]\ngrace = \"300ms\"\n").await;
    // A client that connects and never says anything.
    let _silent = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    // A bidi stream left open, with an hour's deadline.
    let mut client = UserServiceClient::new(host.channel().await);
    let (_keep_open, messages) = mpsc::channel::<ChatMessage>(1);
    let mut request = Request::new(ReceiverStream::new(messages));
    request.set_timeout(Duration::from_secs(3600));
    let mut stream = client.chat(request).await.unwrap().into_inner();

    tokio::time::timeout(PATIENCE, host.stop())
        .await
        .expect("the host stops once its shutdown grace has passed");
    let closed = log.lines_with(&["shutdown grace of 300ms passed"]);
    assert!(!closed.is_empty(), "the forced close is logged");
    // The stream was ended by the host with a status, not cut off.
    let ended = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream ended")
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert_eq!(ended.message(), "the host is shutting down");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_still_running_after_the_grace_end_unavailable() {
    let host = TestHost::with_config(
        &[MISBEHAVE, USERS_FIXTURE],
        "[shutdown]\ngrace = \"300ms\"\n",
    )
    .await;
    // A client stream whose end never comes: its one answer is still owed (the call runs
    // in the request's own future) ...
    let mut rogue = MisbehaveClient::new(host.channel().await);
    let (more, blobs) = mpsc::channel::<Blob>(1);
    more.send(Blob { data: vec![1; 10] }).await.unwrap();
    let mut request = Request::new(ReceiverStream::new(blobs));
    request.set_timeout(Duration::from_secs(3600));
    let draining = tokio::spawn(async move { rogue.drain(request).await });
    // ... and a bidi stream with its answers under way (the call runs in a task).
    let mut users = UserServiceClient::new(host.channel().await);
    let (say, said) = mpsc::channel::<ChatMessage>(1);
    let mut request = Request::new(ReceiverStream::new(said));
    request.set_timeout(Duration::from_secs(3600));
    let mut chat = users.chat(request).await.unwrap().into_inner();
    say.send(ChatMessage {
        text: "hello".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    chat.message()
        .await
        .unwrap()
        .expect("an answer before the stop");

    tokio::time::timeout(PATIENCE, host.stop())
        .await
        .expect("the host stops once its shutdown grace has passed");
    let drained = tokio::time::timeout(PATIENCE, draining)
        .await
        .expect("the client stream ended")
        .unwrap()
        .unwrap_err();
    assert_eq!(drained.code(), tonic::Code::Unavailable, "{drained:?}");
    assert_eq!(drained.message(), "the host is shutting down");
    let chatted = tokio::time::timeout(PATIENCE, chat.message())
        .await
        .expect("the bidi stream ended")
        .unwrap_err();
    assert_eq!(chatted.code(), tonic::Code::Unavailable, "{chatted:?}");
    assert_eq!(chatted.message(), "the host is shutting down");
    drop((more, say));
}
