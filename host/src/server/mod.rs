//! The host: its listener, one task per connection, and the tower stack every request
//! goes through, built in one function ([`stack`]) with the reason for each layer's place.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use plugrpc_runtime::{Engine, EngineError};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tower::layer::util::{Identity, Stack};
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use crate::admin::{self, AdminState};
use crate::builtin::{self, health::HealthService};
use crate::capabilities::{Capabilities, CapabilityError, LocalStack};
use crate::config::{EdgeConfig, HostConfig, Invalid};
use crate::doors::Doors;
use crate::doors::request_buffer::Budget;
use crate::identity::{ApiKeys, IdentityLayer};
use crate::metrics::Metrics;
use crate::registry::{LoadReport, Registry, RegistryError};
use crate::reload::Reloader;
use crate::sources::{Sources, SourcesError};
use crate::tls::{Tls, TlsError};
use crate::traces::{Traces, TracingError};
use crate::watch::{self, FolderWatch};

/// How long, once the shutdown grace has passed and the calls still running are ended,
/// their trailers have to go out before every connection still open is closed.
const LAST_TRAILERS: Duration = Duration::from_secs(1);

pub(crate) mod connection;
mod listener;

pub(crate) use connection::{Peer, Wasted};
pub(crate) use listener::client_address;

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
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A capability plugins are granted could not be set up (the key-value store).
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// The span exporter `[tracing]` names could not be made.
    #[error(transparent)]
    Tracing(#[from] TracingError),
    /// A source of plugins from a registry cannot start.
    #[error(transparent)]
    Sources(#[from] SourcesError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the OS refused.
        source: std::io::Error,
    },
}

/// A host with its plugins loaded and its port bound, ready to serve.
pub struct Host {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The admin endpoints' listener, unless they are off.
    admin: Option<TcpListener>,
    registry: Arc<Registry>,
    report: LoadReport,
    /// Keeps the folder watched while the host lives.
    _watch: Option<FolderWatch>,
    /// Keeps the config file watched while the host lives.
    _config_watch: Option<FolderWatch>,
    /// Keeps the plugin sources polled while the host lives.
    sources: Sources,
    /// Keeps the epoch ticker running: deadlines and yields stop without it.
    _engine: Engine,
    /// How long calls and connections may take to finish after the shutdown signal.
    shutdown_grace: Duration,
    /// How long the host keeps accepting after the signal, reporting NOT_SERVING.
    drain_delay: Duration,
    edge: Arc<EdgeConfig>,
    /// The config, for the doors' settings.
    config: Arc<HostConfig>,
    /// TLS on the listener, when configured.
    tls: Option<Tls>,
    api_keys: ApiKeys,
}

impl Host {
    /// Loads the plugins folder and binds the listener; fails only when neither can be used.
    pub async fn bind(config: &HostConfig) -> Result<Self, HostError> {
        // The file as it was read, for the config watch to tell a change made while the
        // host starts (its first pulls and compiles can take a minute).
        let config_read = (config.source.as_ref())
            .filter(|_| config.watch)
            .map(|file| (file.clone(), watch::ConfigVersion::of(file)));
        config.validate().map_err(HostError::Config)?;
        // A bad certificate is the operator's mistake: refuse before the slow part.
        let tls = config.tls.as_ref().map(Tls::new).transpose()?;
        let engine = Engine::new(&config.engine())?;
        let metrics = config.metrics.then(|| Arc::new(Metrics::new()));
        let traces = Traces::start(&config.tracing)?.map(Arc::new);
        let capabilities = Capabilities::open(config, metrics.clone(), traces.clone()).await?;
        let registry = Arc::new(Registry::new(capabilities, metrics, traces));
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
        let mut sources = Sources::new(&config)?;
        sources
            .first_round(registry.metrics().map(AsRef::as_ref))
            .await;
        let report = registry.sync(&engine, &config).await?;
        sources.start(registry.clone(), engine.clone(), config.clone());
        let config_watch = config_read.and_then(|(file, read)| {
            let reloader = Reloader::new(registry.clone(), engine.clone(), config.clone());
            watch::watch_config(reloader, file, read)
                .map_err(|error| tracing::warn!("not watching the config file: {error}"))
                .ok()
        });
        for (tenant, name, key) in config.configured_plugins() {
            if !report
                .loaded
                .iter()
                .any(|p| p.tenant == tenant && p.name == name)
            {
                tracing::warn!(
                    "the config sets limits in [{key}], but tenant {tenant:?} has no plugin of that name loaded"
                );
            }
        }
        let bind_error = |source| HostError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let admin = match config.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| HostError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Self {
            listener,
            local_addr,
            admin,
            registry,
            report,
            _watch: watch,
            _config_watch: config_watch,
            sources,
            _engine: engine,
            shutdown_grace: config.shutdown_grace,
            drain_delay: config.drain_delay,
            edge: Arc::new(config.edge.clone()),
            config: config.clone(),
            tls,
            api_keys: ApiKeys::new(&config.api_keys),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin endpoints listen on, unless they are off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|admin| admin.local_addr().ok())
    }

    /// What re-reads the config file while the host serves (on SIGHUP, say).
    pub fn reloader(&self) -> Reloader {
        Reloader::new(
            self.registry.clone(),
            self._engine.clone(),
            self.config.clone(),
        )
    }

    /// What loading the plugins folder did.
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// Serves until `shutdown` completes, then stops accepting and lets calls and
    /// connections in flight finish, for at most the shutdown grace: a connection that
    /// stays open (an idle client, a stream with a long deadline) cannot keep the host
    /// from exiting.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) {
        let (_watch, _config_watch, _engine) = (self._watch, self._config_watch, self._engine);
        let sources = self.sources;
        let edge = self.edge;
        let listener = listener::Listener::new(self.listener, &edge);
        tracing::info!(
            addr = %self.local_addr,
            tls = self.tls.is_some(),
            "serving gRPC"
        );
        let http = Arc::new(connection::http(&edge));
        let health = HealthService::new(self.registry.clone());
        // The admin endpoints answer until the host is gone, draining included.
        let admin_stop = CancellationToken::new();
        let admin_task = self.admin.map(|admin| {
            let addr = admin.local_addr().ok();
            tracing::info!(addr = ?addr, "serving the admin endpoints (/healthz, /readyz, /plugins, /metrics)");
            let state = AdminState::new(self.registry.clone(), health.draining(), sources.health());
            let stop = admin_stop.clone();
            tokio::spawn(async move {
                admin::serve(admin, state, stop.cancelled()).await;
            })
        });
        let service = stack(self.api_keys)
            .service(router(self.registry.clone(), &health, &self.config).prepare());
        // Plugins' `local` outbound calls take the same stack, in process, while this
        // function runs.
        let local_stack = Arc::new(LocalStack::new(service.clone()));
        self.registry.capabilities().local_door().open(&local_stack);
        let tls = self.tls;
        let stopping = CancellationToken::new();
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        let mut draining = false;
        // Armed when the shutdown signal comes.
        let drain = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(drain);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let peer = Peer {
                        addr: accepted.peer,
                        buffer: Arc::new(Budget::new(
                            edge.request_buffer_per_connection_bytes(),
                            "edge.request_buffer_per_connection",
                        )),
                        identity: None,
                        anonymous: Arc::from(format!(
                            "ip:{}",
                            client_address(accepted.peer.ip())
                        )),
                    };
                    let (service, http, edge, stopping) =
                        (service.clone(), http.clone(), edge.clone(), stopping.clone());
                    let acceptor = tls.as_ref().map(Tls::acceptor);
                    connections.spawn(async move {
                        connection::open(accepted, acceptor, peer, service, &http, &edge, stopping)
                            .await;
                    });
                }
                Some(_) = connections.join_next() => {}
                () = &mut shutdown, if !draining => {
                    // Health checkers and /readyz hear it first; the host keeps accepting
                    // for the drain delay, so a balancer stops sending before it stops.
                    draining = true;
                    health.shutting_down();
                    tracing::info!(
                        "draining: NOT_SERVING now, accepting for {} more",
                        plugrpc_runtime::duration(self.drain_delay)
                    );
                    drain.as_mut().reset(tokio::time::Instant::now() + self.drain_delay);
                }
                () = &mut drain, if draining => break,
            }
        }
        tokio::task::yield_now().await;
        drop(listener);
        stopping.cancel();
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!(
                "shutdown grace of {} passed: ending the calls still running UNAVAILABLE",
                plugrpc_runtime::duration(self.shutdown_grace),
            );
            // Calls end with their status sent; a connection still open a moment later
            // (a silent client, a built-in service's stream) is closed.
            self.registry.stop_calls();
            let ended = tokio::time::timeout(LAST_TRAILERS, async {
                while connections.join_next().await.is_some() {}
            });
            if ended.await.is_err() {
                tracing::warn!("closing the {} connections still open", connections.len());
                connections.shutdown().await;
            }
        }
        // Nothing of the host outlives this call: the watches' hold on the registry
        // (and its key-value store) ends here, not whenever their tasks are next polled.
        sources.stop().await;
        for watch in [_watch, _config_watch].into_iter().flatten() {
            watch.stop().await;
        }
        // Nor the admin listener's: it answered through the drain, and goes now.
        admin_stop.cancel();
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        // The last calls' spans go before the process may exit.
        if let Some(traces) = self.registry.traces() {
            traces.flush().await;
        }
    }
}

/// The layers every request passes through before the router, outermost first. The
/// order is the point: a layer sees what the ones above it established, and a request
/// that one refuses never costs the layers below it anything.
///
/// 1. Request span: opened first, so that every later layer and the call itself log
///    inside it.
/// 2. Identity: who calls (client certificate, API key), before anything that decides
///    by it; an unknown API key is refused here, before routing costs anything.
fn stack(api_keys: ApiKeys) -> tower::ServiceBuilder<Layers> {
    tower::ServiceBuilder::new()
        .layer(RequestSpanLayer)
        .layer(IdentityLayer(api_keys))
}

/// The type [`stack`] builds, innermost last.
type Layers = Stack<IdentityLayer, Stack<RequestSpanLayer, Identity>>;

/// Where a request goes once through the stack: the built-in services (health,
/// reflection) by their service name first, then every other path to the gRPC door,
/// which serves what the plugins declare (no plugin may declare a built-in's name).
fn router(registry: Arc<Registry>, health: &HealthService, config: &HostConfig) -> Routes {
    let router = builtin::routes(&registry, health)
        .into_axum_router()
        .fallback_service(Doors::new(registry, config));
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
        let span = tracing::debug_span!(
            "request",
            path = request.uri().path(),
            caller = tracing::field::Empty
        );
        // Entered while the inner layers' `call` runs too, not only their future: the
        // identity layer records the caller there.
        let future = span.in_scope(|| self.0.call(request));
        future.instrument(span)
    }
}
