//! The admin listener: a second port, never the gRPC one (default `127.0.0.1:9901`,
//! `host.admin_listen`, `--admin`), for what operators and orchestrators ask of a host:
//! `/healthz` (the process answers), `/readyz` (plugins serve and the host is not
//! draining), `/plugins` (what serves per tenant, and what was refused) and `/metrics`
//! (Prometheus text format, unless `host.metrics = false`). Plain HTTP/1.1 and HTTP/2;
//! it never reaches a plugin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::registry::Registry;
use crate::sources::SourceHealth;

/// How long an admin connection may take to send its request: probes are quick, and a
/// slow one must not hold a task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read: the registry, and whether the host is draining.
#[derive(Clone)]
pub(crate) struct AdminState {
    registry: Arc<Registry>,
    draining: watch::Receiver<bool>,
    /// The plugin sources failing now, said in `/readyz`.
    sources: Arc<SourceHealth>,
}

impl AdminState {
    /// Answers from `registry`, not ready once `draining` turns true; `/readyz` also
    /// names the `sources` failing.
    pub(crate) fn new(
        registry: Arc<Registry>,
        draining: watch::Receiver<bool>,
        sources: Arc<SourceHealth>,
    ) -> Self {
        Self {
            registry,
            draining,
            sources,
        }
    }
}

/// Serves the admin endpoints on `listener` until `stop` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    // Each connection's task, ended with the listener: none outlives the host.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => {
                connections.shutdown().await;
                return;
            }
        };
        // Reap the connections that ended.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = accepted else {
            // Out of descriptors, say: the gRPC listener's backoff is the one that matters.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&state, request.uri().path())) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The answer to a request for `path`.
fn answer(state: &AdminState, path: &str) -> http::Response<Full<Bytes>> {
    match path {
        "/healthz" => text(http::StatusCode::OK, "ok\n"),
        "/readyz" => readiness(state),
        "/plugins" => json(&plugins(&state.registry)),
        "/metrics" => match state.registry.metrics() {
            Some(metrics) => {
                let mut response = http::Response::new(Full::new(Bytes::from(metrics.encode())));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(crate::metrics::Metrics::CONTENT_TYPE),
                );
                response
            }
            None => text(
                http::StatusCode::NOT_FOUND,
                "metrics are off (host.metrics = false)\n",
            ),
        },
        _ => text(
            http::StatusCode::NOT_FOUND,
            "not found: the admin endpoints are /healthz, /readyz, /plugins and /metrics\n",
        ),
    }
}

/// Ready: not draining, and at least one plugin serving. Each failing source is a line
/// of detail either way: what serves keeps serving while a source fails, and a host
/// with nothing to serve says which source it is waiting for.
fn readiness(state: &AdminState) -> http::Response<Full<Bytes>> {
    if *state.draining.borrow() {
        return text(http::StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    let (status, headline) = if state.registry.serving().plugins.is_empty() {
        (http::StatusCode::SERVICE_UNAVAILABLE, "no plugins serving")
    } else {
        (http::StatusCode::OK, "ready")
    };
    let mut body = format!("{headline}\n");
    for line in state.sources.report() {
        body.push_str(&line);
        body.push('\n');
    }
    text(status, body)
}

/// `/plugins`: what serves now, by tenant, and the files refused.
#[derive(Serialize)]
struct Plugins {
    plugins: Vec<PluginStatus>,
    refused: Vec<RefusedFile>,
}

/// One serving plugin.
#[derive(Serialize)]
struct PluginStatus {
    tenant: String,
    name: String,
    version: String,
    hash: String,
    file: String,
    services: Vec<String>,
    limits: String,
    running_calls: usize,
    idle_instances: usize,
    reuses_instances: bool,
    /// Seconds since the Unix epoch.
    loaded_at: u64,
    compile_ms: u128,
}

/// One file that does not serve, and why.
#[derive(Serialize)]
struct RefusedFile {
    file: String,
    reason: String,
}

fn plugins(registry: &Registry) -> Plugins {
    let serving = registry.serving();
    let mut plugins: Vec<PluginStatus> = serving
        .plugins
        .iter()
        .map(|(tenant, plugin)| PluginStatus {
            tenant: tenant.to_string(),
            name: plugin.name().to_owned(),
            version: plugin.version().to_owned(),
            hash: plugin.hash().to_owned(),
            file: plugin.file().display().to_string(),
            services: plugin
                .services()
                .iter()
                .map(|s| s.full_name().to_owned())
                .collect(),
            limits: plugin.limits().to_string(),
            running_calls: plugin.running_calls(),
            idle_instances: plugin.idle_instances(),
            reuses_instances: plugin.reuses_instances(),
            loaded_at: plugin
                .loaded_at()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            compile_ms: plugin.compile_time().as_millis(),
        })
        .collect();
    plugins.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    Plugins {
        plugins,
        refused: serving
            .refused
            .iter()
            .map(|refusal| RefusedFile {
                file: refusal.file.display().to_string(),
                reason: refusal.reason.to_string(),
            })
            .collect(),
    }
}

fn text(status: http::StatusCode, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &impl Serialize) -> http::Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
