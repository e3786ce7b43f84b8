//! What every end-to-end test needs: the plugins built for this run, a host on an
//! ephemeral loopback port, and tonic clients generated from the project's protos.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

/// The `.wasm` file of a plugin crate built for this test run.
pub fn plugin_wasm(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    Path::new(env!("PLUGRPC_TEST_PLUGINS")).join(file)
}

/// A host serving from its own temporary plugins folder; stops when dropped.
pub struct TestHost {
    addr: SocketAddr,
    report: LoadReport,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestHost {
    /// A host serving copies of the named plugin crates.
    pub async fn with_plugins(crates: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in crates {
            copy_plugin(name, &dir.path().join(format!("{name}.wasm")));
        }
        Self::serving(dir).await
    }

    /// A host serving whatever `dir` holds.
    pub async fn serving(dir: tempfile::TempDir) -> Self {
        let config = HostConfig {
            plugins_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let host = Host::bind(&config).await.expect("host starts");
        let (addr, report) = (host.local_addr(), host.load_report().clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            host.serve(async {
                let _ = stop.await;
            })
            .await
            .expect("host serves");
        });
        Self {
            addr,
            report,
            shutdown: Some(shutdown),
            task: Some(task),
            dir,
        }
    }

    /// A fresh HTTP/2 connection to the host.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }

    /// The address the host listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What loading the plugins folder did.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The host's plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        self.dir.path()
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

/// Copies a built plugin into a plugins folder under `dest`.
pub fn copy_plugin(crate_name: &str, dest: &Path) {
    let src = plugin_wasm(crate_name);
    std::fs::copy(&src, dest).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
}

/// Calls by path with arbitrary bytes, for what generated clients cannot send.
pub mod raw {
    use bytes::{Buf, BufMut, Bytes};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status};

    /// Sends and receives message bytes unchanged.
    #[derive(Clone, Copy, Default)]
    pub struct BytesCodec;

    impl Codec for BytesCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = Self;
        type Decoder = Self;
        fn encoder(&mut self) -> Self {
            Self
        }
        fn decoder(&mut self) -> Self {
            Self
        }
    }

    impl Encoder for BytesCodec {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for BytesCodec {
        type Item = Bytes;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }

    /// A unary call to `path` carrying `request` as the message bytes.
    pub async fn unary(
        channel: Channel,
        path: &'static str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(
            request,
            http::uri::PathAndQuery::from_static(path),
            BytesCodec,
        )
        .await
    }
}
