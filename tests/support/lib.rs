//! What every end-to-end test needs: the plugins built for this run, a host on an
//! ephemeral loopback port, and tonic clients generated from the project's protos.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use plugrpc::{Host, HostConfig, LoadReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Generated clients and messages.
pub mod pb {
    /// `helloworld`.
    pub mod helloworld {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("helloworld");
    }
    /// `user.v1`.
    pub mod user {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("user.v1");
    }
    /// `probe.v1`.
    pub mod probe {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("probe.v1");
    }
    /// `versioned.v1`.
    pub mod versioned {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("versioned.v1");
    }
    /// `misbehave.v1`.
    pub mod misbehave {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("misbehave.v1");
    }
    /// `multi.alpha.v1`.
    pub mod multi_alpha {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("multi.alpha.v1");
    }
    /// `multi.beta.v1`.
    pub mod multi_beta {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("multi.beta.v1");
    }
    /// `grpc.testing`: the interop test service.
    pub mod interop {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.testing");
    }
    /// `caller.v1`: the outbound test plugin's service.
    pub mod caller {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("caller.v1");
    }
    /// `frontdesk.v1`: the frontdesk example's service.
    pub mod frontdesk {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("frontdesk.v1");
    }
    /// `keeper.v1`: the key-value and config test plugin's service.
    pub mod keeper {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("keeper.v1");
    }
    /// `grpc.health.v1`.
    pub mod health {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.health.v1");
    }
    /// `grpc.reflection.v1`.
    pub mod reflection {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.reflection.v1");
    }
    /// `grpc.reflection.v1alpha`.
    pub mod reflection_v1alpha {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.reflection.v1alpha");
    }
}

mod certs;
pub mod native;
pub mod oci_registry;
pub mod otlp;
pub mod probe;
pub mod prometheus;
pub mod quiet;
pub mod redis;
pub mod report;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// A plugin crate of the repo, built for this test run. Tests name them through the
/// constants `foreach_plugin!(declare_plugin)` declares, never by string.
#[derive(Clone, Copy, Debug)]
pub struct Plugin {
    /// The crate's name.
    pub name: &'static str,
    /// Where its `.wasm` was built.
    pub wasm: &'static str,
}

impl Plugin {
    /// The built `.wasm` file.
    pub fn wasm(self) -> &'static Path {
        Path::new(self.wasm)
    }

    /// The file name it is deployed under by default, `<crate>.wasm`.
    pub fn file_name(self) -> String {
        format!("{}.wasm", self.name)
    }
}

/// Declares a `pub(crate)` [`Plugin`] constant, for `foreach_plugin!(declare_plugin)` in
/// the benchmarks (the end-to-end tests declare theirs with a macro of their own, so that
/// an unused one is reported as dead code).
#[macro_export]
macro_rules! declare_plugin {
    ($constant:ident, $name:literal, $wasm:literal) => {
        #[doc = concat!("The `", $name, "` plugin crate, as built for this run.")]
        pub(crate) const $constant: $crate::Plugin = $crate::Plugin {
            name: $name,
            wasm: $wasm,
        };
    };
}

/// A bare HTTP/2 client for generated gRPC clients.
pub type PlainHttp2 = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// A host serving from its own temporary plugins folder; stops when dropped.
pub struct TestHost {
    addr: SocketAddr,
    report: LoadReport,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
    /// The host's data folder, when the test did not choose one.
    _data: Option<tempfile::TempDir>,
    admin: Option<SocketAddr>,
}

impl TestHost {
    /// A host serving copies of `plugins`.
    pub async fn with_plugins(plugins: &[Plugin]) -> Self {
        Self::with_config(plugins, "").await
    }

    /// A host serving copies of `plugins`, configured by `toml` (plugrpc.toml syntax;
    /// its listen address and plugins folder are overridden).
    pub async fn with_config(plugins: &[Plugin], toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for plugin in plugins {
            copy_plugin(*plugin, &dir.path().join(plugin.file_name()));
        }
        let config = HostConfig::from_toml("test config", toml).expect("valid test config");
        Self::start(dir, config).await
    }

    /// A host serving copies of `plugins`, configured by the file `config` (watched for
    /// changes, as `plugrpc serve --config` does).
    pub async fn from_file(plugins: &[Plugin], config: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for plugin in plugins {
            copy_plugin(*plugin, &dir.path().join(plugin.file_name()));
        }
        Self::serving_from_file(dir, config).await
    }

    /// A host serving whatever `dir` holds, configured by the file `config` (watched).
    pub async fn serving_from_file(dir: tempfile::TempDir, config: &Path) -> Self {
        let config = HostConfig::from_file(config).expect("valid test config");
        Self::start(dir, config).await
    }

    /// A host serving whatever `dir` holds, with default limits.
    pub async fn serving(dir: tempfile::TempDir) -> Self {
        Self::start(dir, HostConfig::default()).await
    }

    /// A host serving whatever `dir` holds (tenant folders included), configured by
    /// `toml`.
    pub async fn serving_with_config(dir: tempfile::TempDir, toml: &str) -> Self {
        let config = HostConfig::from_toml("test config", toml).expect("valid test config");
        Self::start(dir, config).await
    }

    async fn start(dir: tempfile::TempDir, mut config: HostConfig) -> Self {
        config.plugins_dir = dir.path().to_owned();
        config.listen = "127.0.0.1:0".parse().unwrap();
        if config.drain_delay == HostConfig::default().drain_delay {
            // Unless the test chose one: tests stop hosts at once.
            config.drain_delay = std::time::Duration::ZERO;
        }
        if config.admin_listen == HostConfig::default().admin_listen {
            // Unless the test chose one: a port of its own, so hosts never collide.
            config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        }
        if config.cache_dir == HostConfig::default().cache_dir {
            // Unless the test chose one: one compile cache for the whole run.
            config.cache_dir = Some(Path::new(env!("PLUGRPC_TEST_PLUGINS")).join("../../cache"));
        }
        // Unless the test chose one, data stays in a folder of the host's own, never
        // in the working directory.
        let data = (config.data_dir == HostConfig::default().data_dir).then(|| {
            let data = tempfile::tempdir().expect("temp dir");
            config.data_dir = data.path().to_owned();
            data
        });
        let host = Host::bind(&config).await.expect("host starts");
        let (addr, report) = (host.local_addr(), host.load_report().clone());
        let admin = host.admin_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            host.serve(async {
                let _ = stop.await;
            })
            .await;
        });
        Self {
            addr,
            report,
            shutdown: Some(shutdown),
            task: Some(task),
            dir,
            _data: data,
            admin,
        }
    }

    /// The version the `versioned` test plugin this host serves answers with.
    pub async fn version(&self) -> Result<String, tonic::Status> {
        pb::versioned::versioned_client::VersionedClient::new(self.channel().await)
            .version(pb::versioned::VersionRequest {})
            .await
            .map(|reply| reply.into_inner().version)
    }

    /// A fresh HTTP/2 connection to the host.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }

    /// A fresh HTTP/2 connection to the host over TLS, as `tls` says (its CA, and a
    /// client certificate for mTLS).
    pub async fn tls_channel(
        &self,
        tls: tonic::transport::ClientTlsConfig,
    ) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(format!("https://localhost:{}", self.addr.port()))
            .unwrap()
            .tls_config(tls.domain_name("localhost"))?
            .connect()
            .await
    }

    /// An HTTP/2 client with no client-side deadline timer, so a test sees the status the
    /// server sends when a deadline passes (tonic's channel answers CANCELLED itself).
    /// Use with a generated client's `with_origin(client, host.origin())`.
    pub fn plain_http2(&self) -> PlainHttp2 {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Without it, Nagle's algorithm and delayed ACKs add ~40 ms to small calls.
        connector.set_nodelay(true);
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(connector)
    }

    /// The `http://` origin of the host.
    pub fn origin(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().unwrap()
    }

    /// The address the host listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the host's admin endpoints, unless they are off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// What loading the plugins folder did.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The host's plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Signals the host to stop (as SIGTERM does), without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops accepting, lets calls finish, and waits for the host to exit.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("host task");
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Copies a built plugin to `dest`.
pub fn copy_plugin(plugin: Plugin, dest: &Path) {
    std::fs::copy(plugin.wasm(), dest).unwrap_or_else(|e| panic!("copying {}: {e}", plugin.wasm));
}

pub use certs::make_certs;

/// Calls by path with arbitrary bytes, for what generated clients cannot send.
pub mod raw {
    use bytes::Bytes;
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status};

    /// Sends and receives message bytes unchanged (the host's own outbound codec).
    pub use plugrpc::outbound::RawCodec as BytesCodec;

    /// A gRPC response as it came over the wire: its headers, the bytes of its DATA
    /// frames, and its trailers (none for a trailers-only response).
    #[derive(Debug)]
    pub struct WireResponse {
        /// The HEADERS frame that started the response.
        pub headers: http::HeaderMap,
        /// Every DATA frame's bytes, in order (gRPC message frames).
        pub data: Vec<u8>,
        /// The trailing HEADERS frame, if the response had one.
        pub trailers: Option<http::HeaderMap>,
    }

    /// `messages` in gRPC's framing: each behind an uncompressed flag and its length.
    pub fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for message in messages {
            body.push(0);
            body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
            body.extend_from_slice(message);
        }
        body
    }

    /// The envelopes of a gRPC body: each message's flags byte and bytes, in order.
    pub fn envelopes(mut data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut envelopes = Vec::new();
        while data.len() >= 5 {
            let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            envelopes.push((data[0], data[5..5 + length].to_vec()));
            data = &data[5 + length..];
        }
        assert!(data.is_empty(), "a body ending inside an envelope");
        envelopes
    }

    /// Sends `messages` to `path` as one gRPC request with `metadata`, half-closing
    /// after them, and reads the whole response frame by frame.
    pub async fn wire_call(
        client: &crate::PlainHttp2,
        origin: &http::Uri,
        path: &str,
        messages: &[Vec<u8>],
        metadata: &[(&str, &str)],
    ) -> WireResponse {
        wire_request(client, origin, path, frames(messages), metadata).await
    }

    /// Sends `body` (envelopes made by the caller) to `path` as one gRPC request with
    /// `metadata`, and reads the whole response frame by frame.
    pub async fn wire_request(
        client: &crate::PlainHttp2,
        origin: &http::Uri,
        path: &str,
        body: Vec<u8>,
        metadata: &[(&str, &str)],
    ) -> WireResponse {
        use http_body_util::BodyExt as _;
        let mut request = http::Request::post(format!("{origin}{}", path.trim_start_matches('/')))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (key, value) in metadata {
            request = request.header(*key, *value);
        }
        let request = request
            .body(tonic::body::Body::new(http_body_util::Full::new(
                Bytes::from(body),
            )))
            .unwrap();
        let response = client.request(request).await.expect("an HTTP/2 response");
        let (parts, mut body) = response.into_parts();
        let mut wire = WireResponse {
            headers: parts.headers,
            data: Vec::new(),
            trailers: None,
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("a response frame");
            match frame.into_data() {
                Ok(data) => wire.data.extend_from_slice(&data),
                Err(frame) => wire.trailers = frame.into_trailers().ok(),
            }
        }
        wire
    }

    /// A unary call to `path` carrying `request` as the message bytes.
    pub async fn unary(
        channel: Channel,
        path: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(
            request,
            http::uri::PathAndQuery::try_from(path)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
            BytesCodec,
        )
        .await
    }
}

/// Everything a test binary logs, to check what operators are told.
#[derive(Clone)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures this process's log from now on (once per test binary).
    pub fn install() -> Self {
        static LOG: OnceLock<LogCapture> = OnceLock::new();
        LOG.get_or_init(|| {
            let capture = LogCapture(Arc::new(Mutex::new(Vec::new())));
            let writer = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            capture
        })
        .clone()
    }

    /// Logged lines that contain every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
