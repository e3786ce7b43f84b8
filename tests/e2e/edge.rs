//! The edge under attack, over real sockets: each test runs an attack from 127.0.0.2
//! while a well-behaved client on 127.0.0.1 calls beside it, and asserts the attack is
//! bounded (connections closed, refused or told to go away) and the client loses no call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use plugrpc_tests::pb::user::GetUserRequest;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{LogCapture, TestHost};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::plugins::USERS_FIXTURE;

/// Where attacks come from: another loopback address, so per-IP caps tell them apart.
const ATTACKER: &str = "127.0.0.2";
/// Far longer than any timer the tests set: reaching it means the host did not act.
const PATIENCE: Duration = Duration::from_secs(20);

/// A TCP connection to the host from the attacker's address.
async fn connect_from_attacker(host: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{ATTACKER}:0").parse().unwrap())?;
    socket.connect(host).await
}

/// `calls` GetUser calls from a well-behaved client; the failures, if any.
async fn well_behaved_calls(host: &TestHost, calls: usize) -> Vec<tonic::Status> {
    let mut client = UserServiceClient::new(host.channel().await);
    let mut failures = Vec::new();
    for id in 1..=calls {
        if let Err(status) = client.get_user(GetUserRequest { id: id as i64 }).await {
            failures.push(status);
        }
    }
    failures
}

/// Waits until the host closes `stream` (EOF or reset); how long it took.
async fn closed_by_host(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    let mut byte = [0u8; 1024];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the host closes the connection");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_are_capped_per_ip_and_closed_when_they_send_no_request() {
    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nmax_connections_per_ip = 50\nfirst_request_timeout = \"2s\"\n",
    )
    .await;
    // Each connection is watched from the moment it opens; one reset before the connect
    // completed was refused at once.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(match connect_from_attacker(host.addr()).await {
            Ok(stream) => tokio::spawn(closed_by_host(stream)),
            Err(error) => {
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");
                tokio::spawn(async { Duration::ZERO })
            }
        });
    }
    // While they are open: the client from another address is served in full.
    let failures = well_behaved_calls(&host, 50).await;
    assert!(failures.is_empty(), "the good client failed: {failures:?}");

    let waits: Vec<Duration> = futures::future::join_all(silent)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let refused = waits
        .iter()
        .filter(|w| **w < Duration::from_secs(1))
        .count();
    assert_eq!(
        refused, 250,
        "all but edge.max_connections_per_ip are closed on accept"
    );
    let timed_out = waits
        .iter()
        .filter(|w| **w >= Duration::from_secs(1))
        .count();
    assert_eq!(
        timed_out, 50,
        "the 50 let in are closed after first_request_timeout, none are left open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_idle_for_idle_timeout_is_closed_and_an_old_one_told_to_go_away() {
    let host = TestHost::with_config(&[USERS_FIXTURE], "[edge]\nidle_timeout = \"300ms\"\n").await;
    let (mut client, connection) = h2_connect(host.addr()).await;
    let driver = tokio::spawn(connection);
    call_get_user(&mut client, &host).await;
    let closed = tokio::time::timeout(PATIENCE, driver).await;
    assert!(closed.is_ok(), "the idle connection is closed by the host");

    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nmax_connection_age = \"300ms\"\nmax_connection_age_grace = \"1500ms\"\n",
    )
    .await;
    let (mut client, connection) = h2_connect(host.addr()).await;
    let driver = tokio::spawn(connection);
    // A stream held open past the age and its grace: the connection is closed anyway.
    let (_response, _stream) = open_chat(&mut client, &host);
    let started = Instant::now();
    let closed = tokio::time::timeout(PATIENCE, driver).await;
    assert!(closed.is_ok(), "the old connection is closed by the host");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the stream had the grace: closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_may_open_100_streams() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let (mut client, connection) = h2_connect(host.addr()).await;
    tokio::spawn(connection);
    // After a round trip, the server's SETTINGS have surely arrived.
    call_get_user(&mut client, &host).await;
    assert_eq!(client.current_max_send_streams(), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_cancelled_just_after_acceptance_close_the_connection_and_spare_others() {
    let log = LogCapture::install();
    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nmax_resets_per_second = 100\nabuse_penalty = \"60s\"\n",
    )
    .await;
    let attacks = (0..4).map(|_| {
        let addr = host.addr();
        tokio::spawn(async move {
            let tcp = connect_from_attacker(addr).await.unwrap();
            let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
            let driver = tokio::spawn(connection);
            let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(50));
            let mut sent = 0u32;
            // Bounded: the host must close the connection long before 20,000 resets.
            while sent < 20_000 && !driver.is_finished() {
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                client = match client.ready().await {
                    Ok(ready) => ready,
                    Err(_) => break,
                };
                let Ok((response, mut stream)) =
                    client.send_request(grpc_request(addr, "Chat"), false)
                else {
                    break;
                };
                sent += 1;
                tokio::spawn(async move {
                    // Accepted: the plugin's headers came back. Now cancel it.
                    let _ = tokio::time::timeout(Duration::from_secs(1), response).await;
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(permit);
                });
            }
            let closed = tokio::time::timeout(PATIENCE, driver).await.is_ok();
            (sent, closed)
        })
    });
    let attacks = tokio::spawn(futures::future::join_all(attacks));
    let failures = well_behaved_calls(&host, 200).await;
    for attack in attacks.await.unwrap() {
        let (sent, closed) = attack.unwrap();
        assert!(closed, "the attacking connection was closed");
        assert!(sent < 20_000, "the host stopped it early ({sent} resets)");
    }
    assert!(failures.is_empty(), "the good client failed: {failures:?}");
    assert!(
        !log.lines_with(&[
            "cancelled or refused within a second (edge.max_resets_per_second = 100)"
        ])
        .is_empty(),
        "the close is logged with the key that caused it"
    );

    // For edge.abuse_penalty, a new connection from the attacker's address is held open
    // and never served.
    let tcp = connect_from_attacker(host.addr()).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let (response, _stream) = client
        .send_request(grpc_request(host.addr(), "GetUser"), true)
        .unwrap();
    let unserved = tokio::time::timeout(Duration::from_millis(500), response).await;
    assert!(unserved.is_err(), "a penalized address is not served");
    let failures = well_behaved_calls(&host, 10).await;
    assert!(failures.is_empty(), "others are served: {failures:?}");
}

/// A raw HTTP/2 connection to the host.
async fn h2_connect(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    h2::client::Connection<TcpStream>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    h2::client::handshake(tcp).await.unwrap()
}

/// A Chat stream opened and left open.
fn open_chat(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    host: &TestHost,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    client
        .send_request(grpc_request(host.addr(), "Chat"), false)
        .unwrap()
}

/// One GetUser call over a raw HTTP/2 connection; asserts it succeeds.
async fn call_get_user(client: &mut h2::client::SendRequest<bytes::Bytes>, host: &TestHost) {
    let (response, mut stream) = client
        .send_request(grpc_request(host.addr(), "GetUser"), false)
        .unwrap();
    // GetUserRequest { id: 1 }: field 1, varint 1.
    let message = plugrpc_tests::raw::frames(&[vec![0x08, 0x01]]);
    stream.send_data(message.into(), true).unwrap();
    let response = response.await.unwrap();
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_messages_that_never_finish_are_bounded_by_the_request_buffers() {
    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nrequest_buffer_per_connection = \"8MiB\"\nrequest_buffer = \"16MiB\"\nmessage_timeout = \"2s\"\n",
    )
    .await;
    let tcp = connect_from_attacker(host.addr()).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // 40 GetUser calls, each sending all but the last byte of a 4 MiB message.
    let size = (4 << 20) - 1;
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(size as u32).to_be_bytes());
    let mut calls = Vec::new();
    for _ in 0..40 {
        client = client.ready().await.unwrap();
        let (response, mut stream) = client
            .send_request(grpc_request(host.addr(), "GetUser"), false)
            .unwrap();
        stream.send_data(prefix.clone().into(), false).unwrap();
        stream.send_data(vec![0u8; size - 1].into(), false).unwrap();
        calls.push((response, stream));
    }
    let failures = well_behaved_calls(&host, 50).await;
    assert!(failures.is_empty(), "the good client failed: {failures:?}");
    let mut refused = 0;
    for (response, _stream) in calls {
        let (code, message) = tokio::time::timeout(PATIENCE, grpc_status(response))
            .await
            .expect("every unfinished call ends");
        match code {
            // RESOURCE_EXHAUSTED: over the connection's buffer.
            8 => {
                assert!(
                    message.contains("edge.request_buffer_per_connection"),
                    "{message}"
                );
                refused += 1;
            }
            // DEADLINE_EXCEEDED: its message did not finish in time.
            4 => assert!(message.contains("edge.message_timeout"), "{message}"),
            other => panic!("unexpected status {other}: {message}"),
        }
    }
    assert!(refused > 0, "the connection's buffer was reached");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_trickles_in_is_ended_after_message_timeout() {
    let host =
        TestHost::with_config(&[USERS_FIXTURE], "[edge]\nmessage_timeout = \"500ms\"\n").await;
    let (mut client, connection) = h2_connect(host.addr()).await;
    tokio::spawn(connection);
    let (response, mut stream) = client
        .send_request(grpc_request(host.addr(), "GetUser"), false)
        .unwrap();
    // A 100-byte message, of which 10 bytes ever arrive.
    let mut start = vec![0u8, 0, 0, 0, 100];
    start.extend_from_slice(&[0u8; 10]);
    stream.send_data(start.into(), false).unwrap();
    let (code, message) = tokio::time::timeout(PATIENCE, grpc_status(response))
        .await
        .expect("the call ends");
    assert_eq!(code, 4, "DEADLINE_EXCEEDED: {message}");
    assert!(
        message.contains("took longer than 500ms to arrive (edge.message_timeout)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_of_idle_streams_takes_only_its_share_and_its_streams_end_when_idle() {
    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nstream_idle_timeout = \"1s\"\n[plugins.users]\nmax_concurrent_calls = 8\nmax_queued_calls = 8\n",
    )
    .await;
    let tcp = connect_from_attacker(host.addr()).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut chats = Vec::new();
    for _ in 0..60 {
        client = client.ready().await.unwrap();
        chats.push(
            client
                .send_request(grpc_request(host.addr(), "Chat"), false)
                .unwrap(),
        );
    }
    // Half the slots and half the queue are the attacker's at most: the rest serve others.
    let failures = well_behaved_calls(&host, 30).await;
    assert!(failures.is_empty(), "the good client failed: {failures:?}");
    let (mut over_share, mut idle) = (0, 0);
    for (response, _stream) in chats {
        let (code, message) = tokio::time::timeout(PATIENCE, grpc_status(response))
            .await
            .expect("every idle stream ends");
        match code {
            8 if message.contains("(max_caller_share)") => over_share += 1,
            1 if message.contains("(edge.stream_idle_timeout)") => idle += 1,
            other => panic!("unexpected status {other}: {message}"),
        }
    }
    assert_eq!(
        idle, 8,
        "4 running and 4 queued, then ended when idle: {over_share} refused"
    );
    assert_eq!(over_share, 52);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_a_stream_loses_it_after_stream_idle_timeout() {
    let host = TestHost::with_config(
        &[USERS_FIXTURE],
        "[edge]\nstream_idle_timeout = \"1s\"\n[plugins.users]\nmax_concurrent_calls = 1\nmax_queued_calls = 4\n",
    )
    .await;
    // ListUsers of ten million, never read: the plugin fills the buffers and waits in send.
    let tcp = connect_from_attacker(host.addr()).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let (response, mut stream) = client
        .send_request(grpc_request(host.addr(), "ListUsers"), false)
        .unwrap();
    let request = prost::Message::encode_to_vec(&plugrpc_tests::pb::user::ListUsersRequest {
        limit: 10_000_000,
        after_id: 0,
    });
    stream
        .send_data(plugrpc_tests::raw::frames(&[request]).into(), true)
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();

    // The plugin's one slot is the stalled stream's until the idle timeout frees it.
    let mut users = UserServiceClient::new(host.channel().await);
    let mut request = tonic::Request::new(GetUserRequest { id: 7 });
    request.set_timeout(PATIENCE);
    users
        .get_user(request)
        .await
        .expect("served once the stalled stream is ended");

    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "1", "CANCELLED: {trailers:?}");
    let message = percent_decode(trailers["grpc-message"].to_str().unwrap());
    assert!(
        message.contains("no message either way for 1s (edge.stream_idle_timeout)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_over_http1_is_refused_with_505() {
    use tokio::io::AsyncWriteExt;
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let mut stream = TcpStream::connect(host.addr()).await.unwrap();
    stream
        .write_all(
            b"POST /user.v1.UserService/GetUser HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc\r\ncontent-length: 7\r\n\r\n\0\0\0\0\x02\x08\x07",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("HTTP/2") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed without an answer: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 505"), "{answer}");
    assert!(answer.contains("grpc-status: 12"), "{answer}");
    assert!(
        answer.contains("gRPC needs HTTP/2, and this request is HTTP/1.1"),
        "{answer}"
    );
}

/// The headers of a call of a UserService method, with no message yet.
fn grpc_request(addr: SocketAddr, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/user.v1.UserService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// The grpc-status and grpc-message a call ended with, from its headers or trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> (i32, String) {
    let response = response.await.expect("a response");
    let status_of = |headers: &http::HeaderMap| {
        let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
        let message = headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default();
        Some((code, percent_decode(message)))
    };
    if let Some(status) = status_of(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.expect("body");
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    status_of(&trailers).expect("a grpc-status")
}

/// grpc-message is percent-encoded.
fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
