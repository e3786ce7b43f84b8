//! The edge attacks of `loadgen --workload attack-*`, for the benchmark's edge section:
//! each runs for `--duration` from `--source-ip`, then prints what the host did to it as
//! one JSON object. Every loop is bounded by the duration and by a count.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// The most streams or connections any attack opens, whatever `--size` says.
const MAX_OPENED: usize = 20_000;

/// A TCP connection to `target` from `source`.
async fn connect(target: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The headers of a call of a UserService method.
fn request(target: SocketAddr, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{target}/user.v1.UserService/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// `connections` TCP connections that never send a byte, held for `duration`; how many
/// the host closed, and how fast.
pub(crate) async fn silent(
    target: SocketAddr,
    source: IpAddr,
    connections: usize,
    duration: Duration,
) {
    let until = Instant::now() + duration;
    let mut opened = 0;
    let mut failed = 0;
    let closed = Arc::new(AtomicU64::new(0));
    let closed_at_once = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    for _ in 0..connections.min(MAX_OPENED) {
        match connect(target, source).await {
            Ok(mut stream) => {
                opened += 1;
                let (closed, at_once) = (closed.clone(), closed_at_once.clone());
                held.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let mut byte = [0u8; 64];
                    let left = until.saturating_duration_since(Instant::now());
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(left, stream.read(&mut byte)).await
                    {
                        closed.fetch_add(1, Ordering::Relaxed);
                        if started.elapsed() < Duration::from_millis(500) {
                            at_once.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            Err(_) => failed += 1,
        }
    }
    for task in held {
        let _ = task.await;
    }
    println!(
        "{}",
        json!({
            "opened": opened,
            "connect_failed": failed,
            "closed_by_host": closed.load(Ordering::Relaxed),
            "closed_within_500ms": closed_at_once.load(Ordering::Relaxed),
        })
    );
}

/// On each of `connections` connections, streams opened and cancelled as soon as the
/// plugin's headers arrive, 50 at a time, reconnecting when the host closes the
/// connection; how many resets went out and how many connections the host closed.
pub(crate) async fn resets(
    target: SocketAddr,
    source: IpAddr,
    connections: usize,
    duration: Duration,
) {
    let until = Instant::now() + duration;
    let resets = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (resets, closed, opened) = (resets.clone(), closed.clone(), opened.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let Ok(tcp) = connect(target, source).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let Ok((mut client, connection)) = h2::client::handshake(tcp).await else {
                        continue;
                    };
                    let driver = tokio::spawn(connection);
                    let in_flight = Arc::new(tokio::sync::Semaphore::new(50));
                    while Instant::now() < until && !driver.is_finished() {
                        let Ok(permit) = in_flight.clone().acquire_owned().await else {
                            break;
                        };
                        client = match client.ready().await {
                            Ok(ready) => ready,
                            Err(_) => break,
                        };
                        let Ok((response, mut stream)) =
                            client.send_request(request(target, "Chat"), false)
                        else {
                            break;
                        };
                        let resets = resets.clone();
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), response).await;
                            stream.send_reset(h2::Reason::CANCEL);
                            resets.fetch_add(1, Ordering::Relaxed);
                            drop(permit);
                        });
                    }
                    // Told to go away, or cut: wait for the close (bounded).
                    let left = until.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, driver).await.is_ok() {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "{}",
        json!({
            "resets_sent": resets.load(Ordering::Relaxed),
            "connections_opened": opened.load(Ordering::Relaxed),
            "connections_closed_by_host": closed.load(Ordering::Relaxed),
        })
    );
}

/// `streams` Chat streams on one connection that never send a message; how many the
/// plugin took, how many were refused, how many the host ended while idle.
pub(crate) async fn idle_streams(
    target: SocketAddr,
    source: IpAddr,
    streams: usize,
    duration: Duration,
) {
    let until = Instant::now() + duration;
    let Ok(tcp) = connect(target, source).await else {
        println!("{}", json!({ "error": "cannot connect" }));
        return;
    };
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut calls = Vec::new();
    for _ in 0..streams.min(MAX_OPENED) {
        let Ok(ready) = tokio::time::timeout_at(until.into(), client.ready()).await else {
            break;
        };
        let Ok(ready) = ready else { break };
        client = ready;
        let Ok((response, stream)) = client.send_request(request(target, "Chat"), false) else {
            break;
        };
        calls.push(tokio::spawn(async move {
            let _stream = stream;
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, status_of(response)).await {
                Ok(Some(8)) => "refused",
                Ok(Some(_)) => "ended",
                Ok(None) | Err(_) => "held",
            }
        }));
    }
    let mut outcomes = std::collections::BTreeMap::<&str, u64>::new();
    for call in calls {
        *outcomes.entry(call.await.unwrap_or("held")).or_default() += 1;
    }
    println!("{}", json!(outcomes));
}

/// On each of `connections` connections, `per_connection` GetUser calls that send all but
/// the last byte of a 4 MiB message and hold; how the host answered them.
pub(crate) async fn unfinished(
    target: SocketAddr,
    source: IpAddr,
    connections: usize,
    per_connection: usize,
    duration: Duration,
) {
    let until = Instant::now() + duration;
    let size = (4 << 20) - 1;
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(&(size as u32).to_be_bytes());
    let body = Bytes::from(vec![0u8; size - 1]);
    let mut calls = Vec::new();
    for _ in 0..connections {
        let Ok(tcp) = connect(target, source).await else {
            continue;
        };
        let Ok((mut client, connection)) = h2::client::handshake(tcp).await else {
            continue;
        };
        tokio::spawn(connection);
        for _ in 0..per_connection.min(MAX_OPENED) {
            let Ok(ready) = client.ready().await else {
                break;
            };
            client = ready;
            let Ok((response, mut stream)) = client.send_request(request(target, "GetUser"), false)
            else {
                break;
            };
            let _ = stream.send_data(Bytes::from(prefix.clone()), false);
            let _ = stream.send_data(body.clone(), false);
            calls.push(tokio::spawn(async move {
                let _stream = stream;
                let left = until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, status_of(response)).await {
                    Ok(Some(8)) => "refused (request buffer)",
                    Ok(Some(4)) => "timed out (message_timeout)",
                    Ok(Some(_)) => "other status",
                    Ok(None) | Err(_) => "held",
                }
            }));
        }
    }
    let mut outcomes = std::collections::BTreeMap::<&str, u64>::new();
    for call in calls {
        *outcomes.entry(call.await.unwrap_or("held")).or_default() += 1;
    }
    println!("{}", json!(outcomes));
}

/// The grpc-status a call ended with, from its headers or trailers.
async fn status_of(response: h2::client::ResponseFuture) -> Option<i32> {
    let response = response.await.ok()?;
    let code = |headers: &http::HeaderMap| headers.get("grpc-status")?.to_str().ok()?.parse().ok();
    if let Some(code) = code(response.headers()) {
        return Some(code);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.ok()?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    code(&body.trailers().await.ok()??)
}
