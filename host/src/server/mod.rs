//! The listener, the HTTP/2 server with its limits set explicitly rather than left at
//! tonic's permissive defaults, and the tower stack every request goes through, built in
//! one function ([`stack`]) with the reason for each layer's place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use plugrpc_runtime::{Engine, EngineError};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tower::layer::util::{Identity, Stack};
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use crate::config::{HostConfig, Invalid};
use crate::doors::grpc::GrpcDoor;
use crate::registry::{LoadReport, Registry, RegistryError};
use crate::watch::{self, FolderWatch};

/// Concurrent HTTP/2 streams one connection may open (tonic sets no cap of its own).
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Reset-but-unaccepted streams one connection may pile up (rapid-reset defence).
const MAX_PENDING_ACCEPT_RESETS: usize = 100;
/// Idle connections are pinged this often, and dropped if the ping is not answered in time.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the host could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The config breaks a bound (possible when it was built in code, not parsed).
    #[error("invalid config: {0}")]
    Config(Invalid),
    /// The wasmtime engine could not be built.
    #[error("starting the WebAssembly engine: {0}")]
    Engine(#[from] EngineError),
    /// The plugins folder could not be read.
    #[error(transparent)]
    Plugins(#[from] RegistryError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A host with its plugins loaded and its port bound, ready to serve.
pub struct Host {
    listener: TcpListener,
    local_addr: SocketAddr,
    registry: Arc<Registry>,
    report: LoadReport,
    /// Keeps the folder watched while the host lives.
    _watch: Option<FolderWatch>,
    /// Keeps the epoch ticker running: deadlines and yields stop without it.
    _engine: Engine,
    /// How long calls and connections may take to finish after the shutdown signal.
    shutdown_grace: Duration,
}

impl Host {
    /// Loads the plugins folder and binds the listener; fails only when neither can be used.
    pub async fn bind(config: &HostConfig) -> Result<Self, HostError> {
        config.validate().map_err(HostError::Config)?;
        let engine = Engine::new(&config.engine())?;
        let registry = Arc::new(Registry::new());
        let config = Arc::new(config.clone());
        // Watch before the first read, so no change can fall between the two.
        // Serving matters more than reloading: a folder that cannot be watched is logged.
        let watch = if config.watch {
            watch::watch(registry.clone(), engine.clone(), config.clone())
                .map_err(|error| tracing::warn!("not watching the plugins folder: {error}"))
                .ok()
        } else {
            None
        };
        let report = registry.sync(&engine, &config).await?;
        for name in config.plugins.keys() {
            if !report.loaded.iter().any(|p| &p.name == name) {
                tracing::warn!(
                    "the config sets limits for plugin {name:?}, but no plugin of that name is loaded"
                );
            }
        }
        let bind_error = |source| HostError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            registry,
            report,
            _watch: watch,
            _engine: engine,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What loading the plugins folder did.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Serves until `shutdown` completes, then stops accepting and lets calls and
    /// connections in flight finish, for at most the shutdown grace: a connection that
    /// stays open (an idle client, a stream with a long deadline) cannot keep the host
    /// from exiting.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), HostError> {
        tracing::info!(addr = %self.local_addr, "serving gRPC");
        let (_watch, _engine) = (self._watch, self._engine);
        let grace = self.shutdown_grace;
        let signalled = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let signalled = signalled.clone();
            async move {
                shutdown.await;
                signalled.notify_one();
            }
        };
        let server = tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(stack())
            .add_routes(router(self.registry))
            .serve_with_incoming_shutdown(
                // tonic applies tcp_nodelay only to listeners it binds itself; without it,
                // Nagle's algorithm holds small stream writes back ~40 ms.
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                signal,
            );
        let expired = async {
            signalled.notified().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            served = server => served?,
            () = expired => tracing::warn!(
                "shutdown grace of {} passed: closing the connections still open",
                plugrpc_runtime::duration(grace)
            ),
        }
        Ok(())
    }
}

/// The layers every request passes through before the router, outermost first. The
/// order is the point: a layer sees what the ones above it established, and a request
/// that one refuses never costs the layers below it anything.
///
/// 1. Request span: opened first, so that every later layer and the call itself log
///    inside it.
fn stack() -> tower::ServiceBuilder<Layers> {
    tower::ServiceBuilder::new().layer(RequestSpanLayer)
}

/// The type [`stack`] builds, innermost last.
type Layers = Stack<RequestSpanLayer, Identity>;

/// Where a request goes once through the stack: built-in services by their service
/// name first (none yet), then every other path to the gRPC door, which serves what
/// the plugins declare.
fn router(registry: Arc<Registry>) -> Routes {
    let router = Routes::default()
        .into_axum_router()
        .fallback_service(GrpcDoor::new(registry));
    Routes::from(router)
}

/// The request span layer: one tracing span per request, named by its path, so every
/// later layer and the call itself log inside it. Ours rather than tower-http's
/// `TraceLayer`, which cost 4% of a warm unary call's CPU here (classifying every
/// response, timing every body frame) and logs every failed call at ERROR, which
/// `status` already logs once.
#[derive(Clone, Copy, Debug, Default)]
struct RequestSpanLayer;

impl<S> tower::Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;

    fn layer(&self, inner: S) -> RequestSpan<S> {
        RequestSpan(inner)
    }
}

/// Runs each request inside a `request` span carrying its path; at a level the log
/// does not record, the span costs one check.
#[derive(Clone, Debug)]
struct RequestSpan<S>(S);

impl<S, B> tower::Service<http::Request<B>> for RequestSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = tracing::debug_span!("request", path = request.uri().path());
        self.0.call(request).instrument(span)
    }
}
