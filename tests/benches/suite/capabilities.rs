//! The capabilities section: a key-value read and write per call (the keeper plugin, on
//! the embedded store and on Redis) and one outbound unary hop per call (the caller
//! plugin, to a plugin of the same host through `local` and to a native tonic greeter
//! over loopback), each beside a native tonic twin doing the same work in this process:
//! the same `Backend` for the store, a pooled tonic channel for the hop. Workloads
//! interleaved over rounds; ratios are server CPU per call against the twin, this run.

use std::fmt::Write as _;
use std::net::SocketAddr;

use plugrpc_runtime::{Backend, Namespace};
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::caller::caller_server::{Caller, CallerServer};
use plugrpc_tests::pb::caller::{Relay, Relayed};
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::keeper::keeper_server::{Keeper, KeeperServer};
use plugrpc_tests::pb::keeper::{
    Count, Done, Entries, Entry, Found, Inserted, Key, KeyList, SettingValue, Step,
};
use plugrpc_tests::redis::RedisServer;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::plugins::{CALLER, GREETER, KEEPER};
use crate::{DURATION, ROUNDS, Run, Target, load, process_cpu};

/// Bytes each Put writes.
const VALUE_SIZE: usize = 100;

/// The bucket quota the twins enforce, as the plugin's default grant does.
const MAX_BYTES: u64 = 64 << 20;

/// The keeper's Get and Put, natively, on `backend`.
struct NativeKeeper {
    backend: Backend,
    namespace: Namespace,
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not benchmarked"))
}

#[tonic::async_trait]
impl Keeper for NativeKeeper {
    async fn put(&self, request: Request<Entry>) -> Result<Response<Done>, Status> {
        let entry = request.into_inner();
        self.backend
            .set(&self.namespace, &entry.key, &entry.value, MAX_BYTES)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Done {}))
    }

    async fn get(&self, request: Request<Key>) -> Result<Response<Found>, Status> {
        let value = self
            .backend
            .get(&self.namespace, &request.into_inner().key)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(Found {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn delete(&self, _: Request<Key>) -> Result<Response<Done>, Status> {
        unused()
    }
    async fn increment(&self, _: Request<Step>) -> Result<Response<Count>, Status> {
        unused()
    }
    async fn insert(&self, _: Request<Entry>) -> Result<Response<Inserted>, Status> {
        unused()
    }
    async fn keys(&self, _: Request<Key>) -> Result<Response<KeyList>, Status> {
        unused()
    }
    async fn put_many(&self, _: Request<Entries>) -> Result<Response<Entries>, Status> {
        unused()
    }
    async fn setting(&self, _: Request<Key>) -> Result<Response<SettingValue>, Status> {
        unused()
    }
}

/// The caller's Hello, natively: one unary call to a greeter on a pooled channel.
struct NativeCaller {
    greeter: GreeterClient<Channel>,
}

#[tonic::async_trait]
impl Caller for NativeCaller {
    async fn hello(&self, request: Request<Relay>) -> Result<Response<Relayed>, Status> {
        let reply = self
            .greeter
            .clone()
            .say_hello(HelloRequest {
                name: request.into_inner().name,
            })
            .await?
            .into_inner();
        Ok(Response::new(Relayed {
            messages: vec![reply.message],
            ..Relayed::default()
        }))
    }

    async fn users(&self, _: Request<Relay>) -> Result<Response<Relayed>, Status> {
        unused()
    }
    async fn create(&self, _: Request<Relay>) -> Result<Response<Relayed>, Status> {
        unused()
    }
    async fn chat(&self, _: Request<Relay>) -> Result<Response<Relayed>, Status> {
        unused()
    }
    async fn stash(&self, _: Request<Relay>) -> Result<Response<Relayed>, Status> {
        unused()
    }
}

/// Serves `router` on a free loopback port of this process.
async fn serve(router: tonic::transport::server::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(router.serve_with_incoming(
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
    ));
    addr
}

/// One row: the workload, on the plugin's host and on the native twin.
struct Row {
    title: &'static str,
    workload: &'static str,
    plugin: Target,
    native: Target,
}

fn target(name: &'static str, addr: SocketAddr) -> Target {
    Target {
        name,
        url: format!("http://{addr}"),
        cpu: Box::new(|| process_cpu("/proc/self/stat")),
        users_only: false,
    }
}

fn args(workload: &str) -> Vec<String> {
    [
        "--workload",
        workload,
        "--size",
        &VALUE_SIZE.to_string(),
        "--connections",
        "1",
        "--concurrency",
        "8",
        "--duration",
        &format!("{}s", DURATION.as_secs()),
    ]
    .map(String::from)
    .to_vec()
}

/// Key-value and outbound rows, each plugin beside its twin.
pub(crate) fn capabilities(runtime: &tokio::runtime::Runtime) -> String {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let native_data = tempfile::tempdir().unwrap();
    let (hosts, rows) = runtime.block_on(async {
        let greeter = plugrpc_tests::native::serve().await;
        let keeper_config = |backend: &str| {
            format!(
                "[host]\ndata_dir = {:?}\n{backend}[plugins.keeper.kv]\n",
                data.path()
            )
        };
        let embedded = TestHost::with_config(&[KEEPER], &keeper_config("")).await;
        let on_redis = TestHost::with_config(
            &[KEEPER],
            &keeper_config(&format!(
                "[kv]\nbackend = \"redis\"\nurl = {:?}\n",
                redis.url()
            )),
        )
        .await;
        let caller = TestHost::with_config(
            &[CALLER, GREETER],
            &format!(
                "[plugins.caller.outbound.local]\nendpoints = [\"local\"]\n\
                 [plugins.caller.outbound.native]\nendpoints = [\"http://{greeter}\"]\n"
            ),
        )
        .await;
        let namespace = Namespace {
            tenant: "default".into(),
            bucket: "native".into(),
        };
        let keeper = |backend: Backend| NativeKeeper {
            backend,
            namespace: namespace.clone(),
        };
        let native_embedded = serve(tonic::transport::Server::builder().add_service(
            KeeperServer::new(keeper(Backend::embedded(native_data.path()).unwrap())),
        ))
        .await;
        let native_redis = serve(tonic::transport::Server::builder().add_service(
            KeeperServer::new(keeper(Backend::redis(&redis.url()).await.unwrap())),
        ))
        .await;
        let channel = Channel::from_shared(format!("http://{greeter}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let native_caller = serve(tonic::transport::Server::builder().add_service(
            CallerServer::new(NativeCaller {
                greeter: GreeterClient::new(channel),
            }),
        ))
        .await;
        let rows = vec![
            Row {
                title: "KV get, embedded (redb)",
                workload: "kv-get",
                plugin: target("keeper", embedded.addr()),
                native: target("native keeper", native_embedded),
            },
            Row {
                title: "KV put 100 B, embedded (redb, durable)",
                workload: "kv-put",
                plugin: target("keeper", embedded.addr()),
                native: target("native keeper", native_embedded),
            },
            Row {
                title: "KV get, Redis",
                workload: "kv-get",
                plugin: target("keeper", on_redis.addr()),
                native: target("native keeper", native_redis),
            },
            Row {
                title: "KV put 100 B, Redis",
                workload: "kv-put",
                plugin: target("keeper", on_redis.addr()),
                native: target("native keeper", native_redis),
            },
            Row {
                title: "outbound hop: plugin -> plugin (local)",
                workload: "hop-local",
                plugin: target("caller", caller.addr()),
                native: target("native caller", native_caller),
            },
            Row {
                title: "outbound hop: plugin -> native tonic",
                workload: "hop-native",
                plugin: target("caller", caller.addr()),
                native: target("native caller", native_caller),
            },
        ];
        ((embedded, on_redis, caller), rows)
    });
    // Warm both sides of every row (connections, instances, the key written once).
    for row in &rows {
        let warm = |target: &Target| {
            let mut warm = args(if row.workload == "kv-get" {
                "kv-put"
            } else {
                row.workload
            });
            let last = warm.len() - 1;
            warm[last] = "1s".into();
            load(target, &warm);
        };
        warm(&row.plugin);
        warm(&row.native);
    }
    let mut runs: Vec<(Vec<Run>, Vec<Run>)> =
        rows.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for _ in 0..ROUNDS {
        for (row, (plugin, native)) in rows.iter().zip(&mut runs) {
            plugin.push(load(&row.plugin, &args(row.workload)));
            native.push(load(&row.native, &args(row.workload)));
        }
    }
    let median = crate::median_by_cpu;
    let mut out = format!(
        "\n## Capabilities\n\nOne key-value operation, or one outbound unary call, per call; each row's \
         plugin (warm) beside a native tonic service doing the same work in this process: the same \
         `Backend` (a redb file with `Durability::Immediate`; one `redis-server` on loopback, whose own \
         CPU is counted on neither side), and for the hop a pooled tonic channel to a greeter (the greeter \
         plugin of the same host for `local`, a native tonic greeter of this process otherwise, both \
         counted). One HTTP/2 connection, 8 calls in flight, {ROUNDS} rounds of {}s interleaved, median \
         by server CPU per call; the ratio is plugin over native, this run.\n\n\
         | workload | plugin calls/s | plugin p50 | plugin CPU/call | native calls/s | native p50 | native CPU/call | CPU/call ratio | failed |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        DURATION.as_secs()
    );
    for (row, (plugin, native)) in rows.iter().zip(runs) {
        let (plugin, native) = (median(plugin), median(native));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} us | {:.1} us | {:.0} | {:.0} us | {:.1} us | {:.2}x | {} / {} |",
            row.title,
            plugin.get("calls_per_sec"),
            plugin.get("p50_us"),
            plugin.cpu_per_call_us(),
            native.get("calls_per_sec"),
            native.get("p50_us"),
            native.cpu_per_call_us(),
            plugin.cpu_per_call_us() / native.cpu_per_call_us().max(f64::MIN_POSITIVE),
            plugin.failed(),
            native.failed(),
        );
    }
    drop(hosts);
    drop(redis);
    out
}
