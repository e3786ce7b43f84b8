//! A gRPC load generator for plugrpc's benchmarks (ghz-like): connections x calls in
//! flight, closed loop or a fixed rate, for a duration; reports throughput, latency
//! percentiles and errors per status code, as text or one JSON object.
//!
//! `cargo run --release -p plugrpc-tests --bin loadgen -- --target http://127.0.0.1:50051 --workload hello`
//!
//! The `attack-*` workloads (module `attack`) attack the host's edge instead, for the
//! benchmark's edge section.

mod attack;
mod capabilities;
mod web;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::pb::user::{ChatMessage, CreateUserRequest, GetUserRequest, ListUsersRequest};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Load a gRPC server and report what it did.
#[derive(Parser)]
struct Args {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// What each call does.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Bytes in the request (hello), or messages per call (list-users, create-users, chat).
    #[arg(long, default_value_t = 10)]
    size: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    concurrency: usize,
    /// How long to send load.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Calls per second across all workers (open loop); closed loop when absent.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// PEM CA to trust the server by: TLS (the target is then `https://localhost:<port>`).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Address the attack workloads connect from (another loopback address keeps them
    /// apart from a well-behaved client under per-IP caps).
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: std::net::IpAddr,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a whole number of at least 1")),
        Ok(n) => Ok(n),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of calls per second"
        )),
    }
}

/// The calls a workload makes.
#[derive(Clone, Copy, ValueEnum)]
enum Workload {
    /// Greeter.SayHello with a name of `size` bytes.
    Hello,
    /// UserService.GetUser.
    GetUser,
    /// UserService.ListUsers streaming `size` users.
    ListUsers,
    /// UserService.CreateUsers with `size` messages.
    CreateUsers,
    /// UserService.Chat, `size` request/reply round trips.
    Chat,
    /// `size` UserService.Chat streams open at once, spread over the connections: each
    /// makes one round trip, all are held open until every one has (or `duration` ends),
    /// `HOLDING <open>` is printed and a line is awaited on stdin (at most a minute); then
    /// each makes a second round trip and closes (within `duration` again). A call is one
    /// stream that did both.
    OpenStreams,
    /// Greeter.SayHello over a new connection per call (TCP, TLS with --ca, HTTP/2).
    Connect,
    /// UserService.GetUser as a Connect unary call with JSON (the web doors).
    ConnectJson,
    /// UserService.GetUser as a gRPC-Web call (binary).
    GrpcWeb,
    /// grpc.testing.TestService.UnaryCall with `size` bytes each way, uncompressed.
    BigUnary,
    /// The same, gzip-compressed both ways.
    BigUnaryGzip,
    /// keeper.v1.Keeper.Get of one key (a key-value read per call).
    KvGet,
    /// keeper.v1.Keeper.Put of `size` bytes to one key (a key-value write per call).
    KvPut,
    /// caller.v1.Caller.Hello relayed through the target `local` (one outbound hop).
    HopLocal,
    /// caller.v1.Caller.Hello relayed through the target `native` (one outbound hop over
    /// the network).
    HopNative,
    /// `size` TCP connections that never send a byte, held for the duration.
    AttackSilent,
    /// Chat streams cancelled once accepted, 50 at a time on each connection.
    AttackResets,
    /// `size` Chat streams on one connection that never send a message.
    AttackIdleStreams,
    /// `concurrency` GetUser calls per connection, each sending all but the last byte of
    /// a 4 MiB message.
    AttackUnfinished,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    messages: u64,
    errors: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if matches!(args.workload, Workload::Chat | Workload::OpenStreams) && args.size == 0 {
        anyhow::bail!(
            "--size must be at least 1 for chat and open-streams (round trips / streams)"
        );
    }
    if let Some(done) = attack(&args).await? {
        return Ok(done);
    }
    let endpoint = endpoint(&args)?;
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(endpoint.connect().await?);
    }
    if let Workload::OpenStreams = args.workload {
        let started = Instant::now();
        let mut total = open_streams(&channels, args.size, args.duration).await;
        report(&args, &mut total, started.elapsed().as_secs_f64());
        return Ok(());
    }
    let workers = args.connections * args.concurrency;
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(workers as f64 / rate));
    let started = Instant::now();
    let until = started + args.duration;
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let (workload, size, endpoint) = (args.workload, args.size, endpoint.clone());
            tokio::spawn(async move {
                worker(channel, &endpoint, workload, size, until, interval).await
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await?;
        total.latencies.extend(tally.latencies);
        total.messages += tally.messages;
        for (code, n) in tally.errors {
            *total.errors.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    report(&args, &mut total, elapsed);
    Ok(())
}

/// Where calls go: the target, over TLS when `--ca` is given.
fn endpoint(args: &Args) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(args.target.clone())?.tcp_nodelay(true);
    Ok(match &args.ca {
        Some(ca) => endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca)?))
                .domain_name("localhost"),
        )?,
        None => endpoint,
    })
}

/// Runs an attack workload, if that is the workload; `None` otherwise.
async fn attack(args: &Args) -> anyhow::Result<Option<()>> {
    if !matches!(
        args.workload,
        Workload::AttackSilent
            | Workload::AttackResets
            | Workload::AttackIdleStreams
            | Workload::AttackUnfinished
    ) {
        return Ok(None);
    }
    let target: std::net::SocketAddr = args
        .target
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| anyhow::anyhow!("attacks need --target http://<ip>:<port>: {e}"))?;
    let (source, size, duration) = (args.source_ip, args.size, args.duration);
    match args.workload {
        Workload::AttackSilent => attack::silent(target, source, size, duration).await,
        Workload::AttackResets => attack::resets(target, source, args.connections, duration).await,
        Workload::AttackIdleStreams => attack::idle_streams(target, source, size, duration).await,
        Workload::AttackUnfinished => {
            attack::unfinished(target, source, args.connections, args.concurrency, duration).await
        }
        _ => unreachable!("checked above"),
    }
    Ok(Some(()))
}

/// Calls back to back (or on a fixed schedule) until `until`.
async fn worker(
    channel: Channel,
    endpoint: &Endpoint,
    workload: Workload,
    size: usize,
    until: Instant,
    interval: Option<Duration>,
) -> Tally {
    let mut tally = Tally::default();
    let mut greeter = GreeterClient::new(channel.clone());
    let mut users = UserServiceClient::new(channel.clone());
    let name = "x".repeat(size);
    let mut next = Instant::now();
    while Instant::now() < until {
        // Open loop: latency counts from when the call was due, so a slow server
        // cannot hide its queueing (no coordinated omission).
        let due = match interval {
            Some(interval) => {
                tokio::time::sleep_until(next.into()).await;
                let due = next;
                next += interval;
                due
            }
            None => Instant::now(),
        };
        let outcome = match workload {
            Workload::Hello => greeter
                .say_hello(HelloRequest { name: name.clone() })
                .await
                .map(|_| 1),
            Workload::GetUser => users.get_user(GetUserRequest { id: 7 }).await.map(|_| 1),
            Workload::ListUsers => list_users(&mut users, size).await,
            Workload::CreateUsers => create_users(&mut users, size).await,
            Workload::Chat => chat(&mut users, size).await,
            Workload::Connect => match endpoint.connect().await {
                Ok(fresh) => GreeterClient::new(fresh)
                    .say_hello(HelloRequest { name: name.clone() })
                    .await
                    .map(|_| 1),
                Err(error) => Err(tonic::Status::unavailable(error.to_string())),
            },
            Workload::ConnectJson => web::connect_json(&channel).await,
            Workload::GrpcWeb => web::grpc_web(&channel).await,
            Workload::BigUnary => web::big_unary(&channel, size, false).await,
            Workload::BigUnaryGzip => web::big_unary(&channel, size, true).await,
            Workload::KvGet => capabilities::kv_get(&channel).await,
            Workload::KvPut => capabilities::kv_put(&channel, size).await,
            Workload::HopLocal => capabilities::hop(&channel, "local").await,
            Workload::HopNative => capabilities::hop(&channel, "native").await,
            Workload::OpenStreams
            | Workload::AttackSilent
            | Workload::AttackResets
            | Workload::AttackIdleStreams
            | Workload::AttackUnfinished => unreachable!("these have their own drivers"),
        };
        match outcome {
            Ok(messages) => {
                tally.messages += messages;
                tally.latencies.push(due.elapsed());
            }
            Err(status) => {
                *tally
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1
            }
        }
    }
    tally
}

async fn list_users(
    users: &mut UserServiceClient<Channel>,
    size: usize,
) -> Result<u64, tonic::Status> {
    let limit = i32::try_from(size).unwrap_or(i32::MAX);
    let mut stream = users
        .list_users(ListUsersRequest { limit, after_id: 0 })
        .await?
        .into_inner();
    let mut messages = 0;
    while let Some(user) = stream.next().await {
        user?;
        messages += 1;
    }
    Ok(messages)
}

async fn create_users(
    users: &mut UserServiceClient<Channel>,
    size: usize,
) -> Result<u64, tonic::Status> {
    let requests = tokio_stream::iter((0..size).map(|i| CreateUserRequest {
        name: format!("n{i}"),
        email: format!("n{i}@example.com"),
    }));
    let count = users.create_users(requests).await?.into_inner().count;
    Ok(u64::try_from(count).unwrap_or(0))
}

async fn chat(users: &mut UserServiceClient<Channel>, size: usize) -> Result<u64, tonic::Status> {
    let mut chat = Chat::open(users, "bench", 0).await?;
    for i in 1..size {
        chat.round_trip("bench", i).await?;
    }
    chat.close().await;
    Ok(size as u64)
}

/// One UserService.Chat call in progress: each message sent waits for its reply.
struct Chat {
    tx: mpsc::Sender<ChatMessage>,
    replies: tonic::Streaming<ChatMessage>,
}

impl Chat {
    /// Starts a chat whose first message goes out with the call (servers that send
    /// headers with their first reply, like grpcio, would otherwise wait for us while we
    /// wait for them), and takes its reply.
    async fn open(
        users: &mut UserServiceClient<Channel>,
        user: &str,
        text: usize,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(1);
        Self::send(&tx, user, text).await?;
        let replies = users.chat(ReceiverStream::new(rx)).await?.into_inner();
        let mut chat = Self { tx, replies };
        chat.reply().await?;
        Ok(chat)
    }

    async fn round_trip(&mut self, user: &str, text: usize) -> Result<(), tonic::Status> {
        Self::send(&self.tx, user, text).await?;
        self.reply().await
    }

    async fn send(
        tx: &mpsc::Sender<ChatMessage>,
        user: &str,
        text: usize,
    ) -> Result<(), tonic::Status> {
        let message = ChatMessage {
            user: user.into(),
            text: text.to_string(),
            sent_at: None,
        };
        tx.send(message)
            .await
            .map_err(|_| tonic::Status::aborted("chat closed early"))
    }

    async fn reply(&mut self) -> Result<(), tonic::Status> {
        self.replies
            .next()
            .await
            .ok_or_else(|| tonic::Status::aborted("no reply"))?
            .map(drop)
    }

    /// Half-closes the call and reads it to its end.
    async fn close(self) {
        let Self { tx, mut replies } = self;
        drop(tx);
        while replies.next().await.is_some() {}
    }
}

/// Opens `streams` chats at once (see [`Workload::OpenStreams`]).
async fn open_streams(channels: &[Channel], streams: usize, limit: Duration) -> Tally {
    let opened = std::sync::Arc::new(tokio::sync::Barrier::new(streams + 1));
    let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let mut users = UserServiceClient::new(channels[i % channels.len()].clone());
            let (opened, open, mut release) = (opened.clone(), open.clone(), release.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let first = tokio::time::timeout(limit, Chat::open(&mut users, "held", i)).await;
                let latency = started.elapsed();
                if matches!(first, Ok(Ok(_))) {
                    open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                opened.wait().await;
                let mut chat = match first {
                    Ok(Ok(chat)) => chat,
                    Ok(Err(status)) => return Err(status),
                    Err(_) => return Err(tonic::Status::deadline_exceeded("not opened in time")),
                };
                let _ = release.wait_for(|go| *go).await;
                let late = || tonic::Status::deadline_exceeded("not closed in time");
                tokio::time::timeout(limit, chat.round_trip("held", i))
                    .await
                    .map_err(|_| late())??;
                tokio::time::timeout(limit, chat.close())
                    .await
                    .map_err(|_| late())?;
                Ok(latency)
            })
        })
        .collect();
    opened.wait().await;
    println!(
        "HOLDING {}",
        open.load(std::sync::atomic::Ordering::Relaxed)
    );
    let mut line = String::new();
    let stdin = tokio::io::stdin();
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stdin), &mut line),
    )
    .await;
    let _ = release_tx.send(true);
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(Ok(latency)) => {
                tally.latencies.push(latency);
                tally.messages += 2;
            }
            Ok(Err(status)) => {
                *tally
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1
            }
            Err(_) => *tally.errors.entry("Panicked".into()).or_default() += 1,
        }
    }
    tally
}

fn report(args: &Args, tally: &mut Tally, seconds: f64) {
    tally.latencies.sort();
    let calls = tally.latencies.len();
    let at = |q: f64| {
        tally
            .latencies
            .get(((calls as f64 * q) as usize).min(calls.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    let failed: u64 = tally.errors.values().sum();
    if args.json {
        // The latency distribution for plots: every percent, then the tail in finer steps.
        let quantiles = (0..100)
            .map(|p| f64::from(p) / 100.0)
            .chain([0.995, 0.999, 0.9995, 0.9999, 1.0]);
        let report = serde_json::json!({
            "calls": calls,
            "failed": failed,
            "messages": tally.messages,
            "seconds": seconds,
            "calls_per_sec": calls as f64 / seconds,
            "messages_per_sec": tally.messages as f64 / seconds,
            "p50_us": at(0.5),
            "p90_us": at(0.9),
            "p99_us": at(0.99),
            "p999_us": at(0.999),
            "errors": tally.errors,
            "latency_us": quantiles.map(|q| [q, at(q)]).collect::<Vec<_>>(),
        });
        println!("{report}");
    } else {
        println!(
            "calls      {calls} ok, {failed} failed in {seconds:.2} s: {:.0} calls/s, {:.0} messages/s",
            calls as f64 / seconds,
            tally.messages as f64 / seconds
        );
        println!(
            "latency    p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999)
        );
        for (code, n) in &tally.errors {
            println!("errors     {code}: {n}");
        }
    }
}
