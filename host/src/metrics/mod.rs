//! The host's metrics, served in the Prometheus text format at the admin listener's
//! `/metrics`. Calls are counted under go-grpc-prometheus's names (`grpc_server_*`, with
//! `grpc_type`, `grpc_service`, `grpc_method` and `grpc_code`) plus the `tenant`, the
//! `plugin` and the front `door`; the sandboxes, plugin loads, key-value use and outbound
//! calls under `plugrpc_*`. Label values come from what the host loaded (a method it
//! does not serve is counted once as `unknown`), so a caller cannot grow the series.
//!
//! The request path touches only handles made once per route and door ([`RouteMetrics`])
//! and one call's [`crate::tally::Tally`]: atomic adds, no lookup.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use plugrpc_runtime::MethodKind;

/// The front door a call came in by, as its label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Door {
    /// gRPC over HTTP/2.
    Grpc,
    /// gRPC-Web, binary or text.
    GrpcWeb,
    /// Connect, unary or streaming, and its GET.
    Connect,
    /// HTTP/JSON transcoding (`google.api.http`).
    Json,
}

impl Door {
    const ALL: [Door; 4] = [Door::Grpc, Door::GrpcWeb, Door::Connect, Door::Json];

    /// The door's name, as labels and span attributes say it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Door::Grpc => "grpc",
            Door::GrpcWeb => "grpc-web",
            Door::Connect => "connect",
            Door::Json => "json",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a call of a method is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: String,
    grpc_method: String,
    tenant: String,
    plugin: String,
    door: &'static str,
}

/// A method's calls by how they ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    #[prometheus(flatten)]
    method: MethodLabels,
    grpc_code: &'static str,
}

/// What a plugin's sandbox accounting is counted under.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    tenant: String,
    plugin: String,
}

/// A plugin's series that need one more label: the limit, the trap's kind, the key-value
/// operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    #[prometheus(flatten)]
    plugin: PluginLabels,
    kind: &'static str,
}

/// A plugin's limit refusals, by the limit's config key.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    #[prometheus(flatten)]
    plugin: PluginLabels,
    limit: &'static str,
}

/// A plugin's key-value operations, by operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    #[prometheus(flatten)]
    plugin: PluginLabels,
    op: &'static str,
}

/// A plugin's outbound calls, by the target its grant names and how they ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    #[prometheus(flatten)]
    plugin: PluginLabels,
    target: String,
    grpc_code: &'static str,
}

/// A source's pulls, by tenant and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    tenant: String,
    result: &'static str,
}

/// A tenant's source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

/// Plugin files refused, by tenant and reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    tenant: String,
    reason: &'static str,
}

/// Makes histograms with one set of buckets.
#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// go-grpc-prometheus's (Prometheus' default) buckets for handling time, in seconds.
const HANDLING_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Queue waits are shorter: from 100 µs.
const QUEUE_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Compiling a plugin takes from milliseconds to a minute.
const COMPILE_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

type Counters<L> = Family<L, Counter>;
type Histograms<L> = Family<L, Histogram, Buckets>;

/// Every series the host keeps, and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    started: Counters<MethodLabels>,
    handled: Counters<HandledLabels>,
    handling: Histograms<MethodLabels>,
    received: Counters<MethodLabels>,
    sent: Counters<MethodLabels>,
    instances: Counters<PluginLabels>,
    warm_hits: Counters<PluginLabels>,
    cpu: Family<PluginLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    memory_peak: Family<PluginLabels, Gauge>,
    queue_wait: Histograms<PluginLabels>,
    limit_refusals: Counters<LimitLabels>,
    traps: Counters<KindLabels>,
    deadline_kills: Counters<PluginLabels>,
    cancellations: Counters<PluginLabels>,
    loads: Counters<PluginLabels>,
    refusals: Counters<RefusalLabels>,
    compile: Histograms<PluginLabels>,
    kv_operations: Counters<OperationLabels>,
    kv_read: Counters<PluginLabels>,
    kv_written: Counters<PluginLabels>,
    outbound: Counters<OutboundLabels>,
    source_pulls: Counters<SourceLabels>,
    source_up: Family<TenantLabels, Gauge>,
}

impl Metrics {
    /// Every family, registered and empty.
    pub(crate) fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(Buckets(HANDLING_BUCKETS)),
            received: Family::default(),
            sent: Family::default(),
            instances: Family::default(),
            warm_hits: Family::default(),
            cpu: Family::default(),
            memory_peak: Family::default(),
            queue_wait: Family::new_with_constructor(Buckets(QUEUE_BUCKETS)),
            limit_refusals: Family::default(),
            traps: Family::default(),
            deadline_kills: Family::default(),
            cancellations: Family::default(),
            loads: Family::default(),
            refusals: Family::default(),
            compile: Family::new_with_constructor(Buckets(COMPILE_BUCKETS)),
            kv_operations: Family::default(),
            kv_read: Family::default(),
            kv_written: Family::default(),
            outbound: Family::default(),
            source_pulls: Family::default(),
            source_up: Family::default(),
        };
        metrics.register();
        metrics
    }

    /// Names each family (counters without `_total`, which the encoding adds).
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "grpc_server_started",
            "RPCs started on the server",
            self.started.clone(),
        );
        r.register(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their code",
            self.handled.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "Time from a call's arrival to its end, as the server saw it",
            self.handling.clone(),
        );
        r.register(
            "grpc_server_msg_received",
            "Request messages received on the server",
            self.received.clone(),
        );
        r.register(
            "grpc_server_msg_sent",
            "Response messages sent by the server",
            self.sent.clone(),
        );
        r.register(
            "plugrpc_sandbox_instances_created",
            "Fresh plugin instances made for calls",
            self.instances.clone(),
        );
        r.register(
            "plugrpc_sandbox_warm_hits",
            "Calls served by an idle warm instance",
            self.warm_hits.clone(),
        );
        r.register(
            "plugrpc_sandbox_cpu_seconds",
            "CPU time calls spent in host and guest code",
            self.cpu.clone(),
        );
        r.register(
            "plugrpc_sandbox_memory_peak_bytes",
            "Most linear memory one instance of the plugin grew to",
            self.memory_peak.clone(),
        );
        r.register(
            "plugrpc_sandbox_queue_wait_seconds",
            "Time calls waited for a slot (tenant quota and plugin admission)",
            self.queue_wait.clone(),
        );
        r.register(
            "plugrpc_sandbox_limit_refusals",
            "Calls a limit stopped, by the limit's config key",
            self.limit_refusals.clone(),
        );
        r.register(
            "plugrpc_sandbox_traps",
            "Calls whose guest trapped, failed to start or broke the contract, by kind",
            self.traps.clone(),
        );
        r.register(
            "plugrpc_sandbox_deadline_kills",
            "Calls stopped at their deadline",
            self.deadline_kills.clone(),
        );
        r.register(
            "plugrpc_sandbox_cancellations",
            "Calls the client cancelled or left, or the host ended at the end of its shutdown grace",
            self.cancellations.clone(),
        );
        r.register(
            "plugrpc_plugin_loads",
            "Plugin versions loaded (at start and on reload)",
            self.loads.clone(),
        );
        r.register(
            "plugrpc_plugin_refusals",
            "Plugin files refused at a load, by reason",
            self.refusals.clone(),
        );
        r.register(
            "plugrpc_plugin_compile_seconds",
            "Time compiling a plugin version took",
            self.compile.clone(),
        );
        r.register(
            "plugrpc_kv_operations",
            "Key-value operations plugins made, by operation (a batch counts its keys)",
            self.kv_operations.clone(),
        );
        r.register(
            "plugrpc_kv_read_bytes",
            "Key-value bytes (keys and values) plugins read",
            self.kv_read.clone(),
        );
        r.register(
            "plugrpc_kv_written_bytes",
            "Key-value bytes (keys and values) plugins wrote",
            self.kv_written.clone(),
        );
        r.register(
            "plugrpc_outbound_calls",
            "Outbound calls plugins made, by target and code",
            self.outbound.clone(),
        );
        r.register(
            "plugrpc_source_pulls",
            "Looks at a tenant's OCI source's tags, by result (pulled, unchanged, failed)",
            self.source_pulls.clone(),
        );
        r.register(
            "plugrpc_source_up",
            "Whether a tenant's OCI source answered its last round (1) or not (0)",
            self.source_up.clone(),
        );
    }

    /// The content type of [`Metrics::encode`]'s text.
    pub(crate) const CONTENT_TYPE: &str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// Every series, in the Prometheus text format (0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// The handles for the calls of one method of `tenant`'s `plugin`.
    pub(crate) fn route(
        self: &Arc<Self>,
        tenant: &str,
        plugin: &Arc<PluginMetrics>,
        method: &prost_reflect::MethodDescriptor,
    ) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            metrics: self.clone(),
            grpc_type: grpc_type(MethodKind::of(method)),
            service: method.parent_service().full_name().to_owned(),
            method: method.name().to_owned(),
            tenant: tenant.to_owned(),
            plugin: plugin.clone(),
            doors: Default::default(),
        })
    }

    /// The handles for one loaded plugin of `tenant`'s.
    pub(crate) fn plugin(self: &Arc<Self>, tenant: &str, plugin: &str) -> Arc<PluginMetrics> {
        let labels = PluginLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        };
        Arc::new(PluginMetrics {
            metrics: self.clone(),
            instances: self.instances.get_or_create_owned(&labels),
            warm_hits: self.warm_hits.get_or_create_owned(&labels),
            cpu: self.cpu.get_or_create_owned(&labels),
            memory_peak: self.memory_peak.get_or_create_owned(&labels),
            queue_wait: self.queue_wait.get_or_create_owned(&labels),
            kv_read: self.kv_read.get_or_create_owned(&labels),
            kv_written: self.kv_written.get_or_create_owned(&labels),
            deadline_kills: self.deadline_kills.get_or_create_owned(&labels),
            cancellations: self.cancellations.get_or_create_owned(&labels),
            limits: Handles::default(),
            traps: Handles::default(),
            kv_operations: Handles::default(),
            outbound: Handles::default(),
            labels,
        })
    }

    /// A call of a method no plugin serves (or one not routed on the request's host):
    /// counted under `unknown`, whatever path the caller sent.
    pub(crate) fn unknown(&self, door: Door, code: tonic::Code) {
        let labels = MethodLabels {
            grpc_type: "unknown",
            grpc_service: "unknown".into(),
            grpc_method: "unknown".into(),
            tenant: String::new(),
            plugin: String::new(),
            door: door.label(),
        };
        self.started.get_or_create(&labels).inc();
        self.handled
            .get_or_create(&HandledLabels {
                method: labels,
                grpc_code: code_name(code),
            })
            .inc();
    }

    /// A plugin version loaded, having compiled for `compile`.
    pub(crate) fn loaded(&self, tenant: &str, plugin: &str, compile: std::time::Duration) {
        let labels = PluginLabels {
            tenant: tenant.to_owned(),
            plugin: plugin.to_owned(),
        };
        self.loads.get_or_create(&labels).inc();
        self.compile
            .get_or_create(&labels)
            .observe(compile.as_secs_f64());
    }

    /// One look at a plugin of `tenant`'s source, with its `result`.
    pub(crate) fn source(&self, tenant: &str, result: &'static str) {
        self.source_pulls
            .get_or_create(&SourceLabels {
                tenant: tenant.to_owned(),
                result,
            })
            .inc();
    }

    /// Whether `tenant`'s source answered its last round.
    pub(crate) fn source_up(&self, tenant: &str, up: bool) {
        self.source_up
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .set(i64::from(up));
    }

    /// A plugin file of `tenant`'s refused, for `reason`.
    pub(crate) fn refused(&self, tenant: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                tenant: tenant.to_owned(),
                reason,
            })
            .inc();
    }
}

/// One loaded plugin's handles: what its calls' sandboxes count.
#[derive(Debug)]
pub(crate) struct PluginMetrics {
    metrics: Arc<Metrics>,
    labels: PluginLabels,
    pub(crate) instances: Counter,
    pub(crate) warm_hits: Counter,
    pub(crate) cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    pub(crate) memory_peak: Gauge,
    pub(crate) queue_wait: Histogram,
    pub(crate) kv_read: Counter,
    pub(crate) kv_written: Counter,
    deadline_kills: Counter,
    cancellations: Counter,
    /// By the limit's config key, the trap's kind, the key-value operation.
    limits: Handles<&'static str>,
    traps: Handles<&'static str>,
    kv_operations: Handles<&'static str>,
    /// By target and code.
    outbound: Handles<(Box<str>, tonic::Code)>,
}

/// One plugin's counters of a family by the label values it has met (a small set: the
/// limits, trap kinds, operations and targets a plugin can meet), each made once, so
/// that counting an event finds its counter without building a label set.
#[derive(Debug)]
struct Handles<K>(std::sync::RwLock<Vec<(K, Counter)>>);

impl<K> Default for Handles<K> {
    fn default() -> Self {
        Self(std::sync::RwLock::default())
    }
}

impl<K: PartialEq> Handles<K> {
    /// Adds `by` to the counter of the values `is` picks, made by `make` at first.
    fn add(&self, is: impl Fn(&K) -> bool, by: u64, make: impl FnOnce() -> (K, Counter)) {
        let made = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = made.iter().find(|(k, _)| is(k)) {
            counter.inc_by(by);
            return;
        }
        drop(made);
        let (key, counter) = make();
        counter.inc_by(by);
        let mut made = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !made.iter().any(|(k, _)| *k == key) {
            made.push((key, counter));
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl PluginMetrics {
    /// A call stopped by the limit `limit` (its config key).
    pub(crate) fn limit(&self, limit: &'static str) {
        self.limits.add(
            |k| *k == limit,
            1,
            || {
                let labels = LimitLabels {
                    plugin: self.labels.clone(),
                    limit,
                };
                (
                    limit,
                    self.metrics.limit_refusals.get_or_create_owned(&labels),
                )
            },
        );
    }

    /// A call whose guest trapped (or failed to start, or broke the contract).
    pub(crate) fn trap(&self, kind: &'static str) {
        self.traps.add(
            |k| *k == kind,
            1,
            || {
                let labels = KindLabels {
                    plugin: self.labels.clone(),
                    kind,
                };
                (kind, self.metrics.traps.get_or_create_owned(&labels))
            },
        );
    }

    /// A call stopped at its deadline.
    pub(crate) fn deadline_kill(&self) {
        self.deadline_kills.inc();
    }

    /// A call the client cancelled or left.
    pub(crate) fn cancellation(&self) {
        self.cancellations.inc();
    }

    /// A key-value operation `op` over `keys` keys.
    pub(crate) fn kv_operation(&self, op: &'static str, keys: usize) {
        self.kv_operations.add(
            |k| *k == op,
            keys as u64,
            || {
                let labels = OperationLabels {
                    plugin: self.labels.clone(),
                    op,
                };
                (op, self.metrics.kv_operations.get_or_create_owned(&labels))
            },
        );
    }

    /// An outbound call of this plugin's to `target` ended with `code`.
    pub(crate) fn outbound(&self, target: &str, code: tonic::Code) {
        let is = |(t, c): &(Box<str>, tonic::Code)| **t == *target && *c == code;
        self.outbound.add(is, 1, || {
            let labels = OutboundLabels {
                plugin: self.labels.clone(),
                target: target.to_owned(),
                grpc_code: code_name(code),
            };
            let counter = self.metrics.outbound.get_or_create_owned(&labels);
            ((target.into(), code), counter)
        });
    }
}

/// One method's handles, per door as calls come in by it.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    metrics: Arc<Metrics>,
    grpc_type: &'static str,
    service: String,
    method: String,
    tenant: String,
    plugin: Arc<PluginMetrics>,
    doors: [OnceLock<Arc<MethodMetrics>>; Door::ALL.len()],
}

impl RouteMetrics {
    /// A call of this method coming in by `door`, counted as started.
    pub(crate) fn start(&self, door: Door) -> Counts {
        let method = self.doors[door.index()].get_or_init(|| Arc::new(self.method(door)));
        method.started.inc();
        Counts {
            method: method.clone(),
            plugin: self.plugin.clone(),
        }
    }

    fn method(&self, door: Door) -> MethodMetrics {
        let labels = MethodLabels {
            grpc_type: self.grpc_type,
            grpc_service: self.service.clone(),
            grpc_method: self.method.clone(),
            tenant: self.tenant.clone(),
            plugin: self.plugin.labels.plugin.clone(),
            door: door.label(),
        };
        let metrics = &self.metrics;
        MethodMetrics {
            started: metrics.started.get_or_create_owned(&labels),
            handling: metrics.handling.get_or_create_owned(&labels),
            received: metrics.received.get_or_create_owned(&labels),
            sent: metrics.sent.get_or_create_owned(&labels),
            handled: Default::default(),
            metrics: metrics.clone(),
            labels,
        }
    }
}

/// What one call counts into: its method's series on its door, and its plugin's.
#[derive(Debug)]
pub(crate) struct Counts {
    pub(crate) method: Arc<MethodMetrics>,
    pub(crate) plugin: Arc<PluginMetrics>,
}

/// The handles of one method on one door.
#[derive(Debug)]
pub(crate) struct MethodMetrics {
    metrics: Arc<Metrics>,
    labels: MethodLabels,
    started: Counter,
    pub(crate) handling: Histogram,
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
    /// By code, made at its first use.
    handled: [OnceLock<Counter>; 17],
}

impl MethodMetrics {
    /// Counts a call that ended with `code`.
    pub(crate) fn handled(&self, code: tonic::Code) {
        let index = (code as usize).min(16);
        self.handled[index]
            .get_or_init(|| {
                self.metrics.handled.get_or_create_owned(&HandledLabels {
                    method: self.labels.clone(),
                    grpc_code: code_name(code),
                })
            })
            .inc();
    }
}

/// go-grpc-prometheus's `grpc_type` for a method's shape.
fn grpc_type(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::Unary => "unary",
        MethodKind::ServerStreaming => "server_stream",
        MethodKind::ClientStreaming => "client_stream",
        MethodKind::BidiStreaming => "bidi_stream",
    }
}

/// A code as go-grpc-prometheus labels it (grpc-go's names).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
