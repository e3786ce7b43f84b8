//! Traces: one OpenTelemetry span per call, the child of the caller's when the request
//! carries W3C `traceparent`/`tracestate` (on every door), with child spans for its
//! queueing, its instantiation, the guest and each outbound call; exported in batches
//! over OTLP/gRPC when `[tracing] otlp` names a collector, never holding a call up (a
//! full queue drops spans). The call's own context reaches the guest as the
//! `traceparent` of its metadata, and through it every outbound call the guest makes.

use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use plugrpc_runtime::MetadataEntry;

use crate::config::TracingConfig;
use crate::metrics::Door;
use crate::outbound::connect::client_tls;
use crate::registry::Route;

/// The W3C trace context's keys, as HTTP headers and gRPC metadata carry them.
pub(crate) const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// Spans queued for export at most; past it new ones are dropped, never waited for.
const QUEUE: usize = 8192;
/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the span exporter could not be made.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp {endpoint:?}: {reason}")]
pub struct TracingError {
    endpoint: String,
    reason: String,
}

/// The host's tracer and the exporter behind it.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Traces")
    }
}

impl Traces {
    /// The exporter `config` names, if any. Made inside the runtime that serves: the
    /// exporter's connection lives on it.
    pub(crate) fn start(config: &TracingConfig) -> Result<Option<Self>, TracingError> {
        let Some(endpoint) = &config.otlp else {
            return Ok(None);
        };
        let failed = |reason: String| TracingError {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT);
        if config.is_https() {
            let table = config.tls.clone().unwrap_or_default();
            let mut tls = client_tls(&table).map_err(|file| {
                failed(format!(
                    "tracing.tls.{}: {}: {}",
                    file.key, file.path, file.problem
                ))
            })?;
            if let Some(name) = &table.server_name {
                tls = tls.domain_name(name);
            }
            exporter = exporter.with_tls_config(tls);
        }
        let exporter = exporter
            .build()
            .map_err(|error| failed(error.to_string()))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(config.export_interval)
            .with_max_queue_size(QUEUE)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batches)
                    .build(),
            )
            .build();
        let tracer = provider.tracer("plugrpc");
        tracing::info!(collector = %endpoint, "exporting spans over OTLP");
        Ok(Some(Self { provider, tracer }))
    }

    /// The span of a call of `route` by `door`, started now: the child of the caller's
    /// when `headers` carry its trace context.
    pub(crate) fn call(&self, headers: &http::HeaderMap, route: &Route, door: Door) -> CallSpan {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let service = route.method.parent_service().full_name().to_owned();
        let span = self
            .tracer
            .span_builder(format!("{service}/{}", route.method.name()))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service),
                KeyValue::new("rpc.method", route.method.name().to_owned()),
                KeyValue::new("plugrpc.tenant", route.tenant.to_string()),
                KeyValue::new("plugrpc.plugin", route.plugin.name().to_owned()),
                KeyValue::new("plugrpc.door", door.label()),
            ])
            .start_with_context(&self.tracer, &parent);
        CallSpan {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
        }
    }

    /// The span of a plugin's outbound call of `method` to `target`, child of the span
    /// in the calling call's `inbound` metadata; its own context goes in `outbound`.
    pub(crate) fn outbound(
        &self,
        inbound: &[MetadataEntry],
        target: &str,
        method: &str,
        outbound: &mut tonic::metadata::MetadataMap,
    ) -> OutboundSpan {
        let parent = TraceContextPropagator::new().extract(&Entries(inbound));
        let name = method.trim_start_matches('/').to_owned();
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("plugrpc.target", target.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        TraceContextPropagator::new().inject_context(&cx, &mut Metadata(outbound));
        OutboundSpan { cx }
    }

    /// Sends the spans still queued; off the async workers, for exporting blocks.
    pub(crate) async fn flush(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        // Shutting the exporter down blocks until its last batch is sent: on a thread of
        // its own, not the runtime worker that drops the host.
        let provider = self.provider.clone();
        std::thread::spawn(move || provider.shutdown_with_timeout(EXPORT_TIMEOUT));
    }
}

/// A call's span, and the tracer its children come from.
#[derive(Debug)]
pub(crate) struct CallSpan {
    cx: Context,
    tracer: SdkTracer,
}

impl CallSpan {
    /// A child span that ran from `took` ago until now.
    pub(crate) fn child(&self, name: &'static str, took: Duration, attributes: Vec<KeyValue>) {
        let end = SystemTime::now();
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(end.checked_sub(took).unwrap_or(end))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &self.cx);
        span.end_with_timestamp(end);
    }

    /// Ends the span with the call's code.
    pub(crate) fn end(&self, code: tonic::Code) {
        end(&self.cx, code);
    }

    /// The span's W3C trace context, for the guest's metadata.
    pub(crate) fn trace_context(&self) -> Vec<MetadataEntry> {
        let mut entries = Vec::new();
        TraceContextPropagator::new().inject_context(&self.cx, &mut EntriesOut(&mut entries));
        entries
    }
}

/// An outbound call's span, ended with the call.
pub(crate) struct OutboundSpan {
    cx: Context,
}

impl OutboundSpan {
    /// Ends the span with the outbound call's code.
    pub(crate) fn end(&self, code: tonic::Code) {
        end(&self.cx, code);
    }
}

/// Ends the span in `cx` with a call's code, an error unless OK.
fn end(cx: &Context, code: tonic::Code) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
    if code != tonic::Code::Ok {
        span.set_status(Status::error(format!("{code:?}")));
    }
    span.end();
}

/// Request headers, as the propagator reads them.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A call's metadata, as the propagator reads it.
struct Entries<'a>(&'a [MetadataEntry]);

impl Extractor for Entries<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|entry| entry.key.eq_ignore_ascii_case(key))
            .and_then(|entry| std::str::from_utf8(&entry.value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|entry| entry.key.as_str()).collect()
    }
}

/// Metadata entries, as the propagator writes them.
struct EntriesOut<'a>(&'a mut Vec<MetadataEntry>);

impl Injector for EntriesOut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push(MetadataEntry {
            key: key.to_owned(),
            value: value.into_bytes(),
        });
    }
}

/// Outbound gRPC metadata, as the propagator writes it (replacing what was there).
struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}
