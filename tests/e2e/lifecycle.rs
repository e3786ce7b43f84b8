//! Stopping the host: after the shutdown signal, calls and connections in flight get the
//! shutdown grace, and nothing a client holds open keeps the host from exiting.

use std::time::Duration;

use plugrpc_tests::pb::user::ChatMessage;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{LogCapture, TestHost};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use crate::plugins::USERS_FIXTURE;

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
    let _stream = client.chat(request).await.unwrap();

    tokio::time::timeout(PATIENCE, host.stop())
        .await
        .expect("the host stops once its shutdown grace has passed");
    let closed = log.lines_with(&["shutdown grace of 300ms passed"]);
    assert!(!closed.is_empty(), "the forced close is logged");
}
