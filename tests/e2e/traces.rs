//! Spans over OTLP: a call's span is the child of the caller's `traceparent`, with child
//! spans for its queueing, instantiation and guest; a plugin's outbound call is a client
//! span under its call's, and the callee's span under that; a failed call's span says
//! so; every door (gRPC-Web, Connect, JSON) takes the caller's trace context as gRPC
//! does. Received by an OTLP collector stand-in on loopback.

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use plugrpc::{Host, HostConfig};
use plugrpc_tests::TestHost;
use plugrpc_tests::otlp::{Collector, ReceivedSpan};
use plugrpc_tests::pb::caller::Relay;
use plugrpc_tests::pb::caller::caller_client::CallerClient;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::misbehave::Empty;
use plugrpc_tests::pb::misbehave::misbehave_client::MisbehaveClient;
use tonic::Code;

use crate::plugins::{CALLER, GREETER, MISBEHAVE, USERS_FIXTURE};

/// The caller's trace and span, as its `traceparent` names them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn config(collector: &Collector, more: &str) -> String {
    format!(
        "[tracing]\notlp = {:?}\nexport_interval = \"50ms\"\nservice_name = \"edge-1\"\n{more}",
        collector.endpoint()
    )
}

fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CALLER_SPAN}-01").parse().unwrap(),
    );
    request
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_is_a_span_under_its_callers_with_its_sandbox_steps_under_it() {
    let collector = Collector::start().await;
    let host = TestHost::with_config(&[GREETER], &config(&collector, "")).await;
    let mut greeter = GreeterClient::new(host.channel().await);
    greeter
        .say_hello(traced(HelloRequest { name: "ada".into() }))
        .await
        .unwrap();
    let spans = collector
        .spans_once(|spans| {
            [
                "helloworld.Greeter/SayHello",
                "queue",
                "instantiate",
                "guest",
            ]
            .iter()
            .all(|name| spans.iter().any(|span| span.name == *name))
        })
        .await;
    let call = named(&spans, "helloworld.Greeter/SayHello");
    assert_eq!(call.kind, SpanKind::Server);
    assert_eq!(call.trace_id, TRACE);
    assert_eq!(call.parent_span_id, CALLER_SPAN);
    assert_eq!(call.service, "edge-1");
    assert!(!call.error);
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "helloworld.Greeter"),
        ("rpc.method", "SayHello"),
        ("rpc.grpc.status_code", "0"),
        ("plugrpc.tenant", "default"),
        ("plugrpc.plugin", "greeter"),
        ("plugrpc.door", "grpc"),
    ] {
        assert_eq!(call.attribute(key), Some(value), "{key} of {call:#?}");
    }
    for step in ["queue", "instantiate", "guest"] {
        let step = named(&spans, step);
        assert_eq!(step.trace_id, TRACE, "{step:#?}");
        assert_eq!(step.parent_span_id, call.span_id, "{step:#?}");
    }
    assert!(
        named(&spans, "guest")
            .attribute("plugrpc.memory_bytes")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trace_goes_through_a_plugins_outbound_call_to_the_callee() {
    let collector = Collector::start().await;
    let host = TestHost::with_config(
        &[CALLER, GREETER],
        &config(
            &collector,
            "[plugins.caller.outbound.local]\nendpoints = [\"local\"]\n",
        ),
    )
    .await;
    let mut caller = CallerClient::new(host.channel().await);
    caller
        .hello(traced(Relay {
            target: "local".into(),
            name: "ada".into(),
            ..Relay::default()
        }))
        .await
        .unwrap();
    let server = |spans: &[ReceivedSpan], name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.kind == SpanKind::Server)
            .cloned()
    };
    let spans = collector
        .spans_once(|spans| {
            server(spans, "caller.v1.Caller/Hello").is_some()
                && server(spans, "helloworld.Greeter/SayHello").is_some()
        })
        .await;
    let relay = server(&spans, "caller.v1.Caller/Hello").expect("the caller's span");
    let hop = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .unwrap_or_else(|| panic!("no client span among {spans:#?}"));
    let callee = server(&spans, "helloworld.Greeter/SayHello").expect("the callee's span");
    assert_eq!(relay.parent_span_id, CALLER_SPAN);
    assert_eq!(hop.name, "helloworld.Greeter/SayHello");
    assert_eq!(hop.attribute("plugrpc.target"), Some("local"));
    assert_eq!(hop.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(
        hop.parent_span_id, relay.span_id,
        "the hop is the call's child"
    );
    assert_eq!(
        callee.parent_span_id, hop.span_id,
        "the callee is the hop's child"
    );
    for span in [&relay, hop, &callee] {
        assert_eq!(span.trace_id, TRACE, "{span:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_without_a_caller_span_is_a_root_marked_failed() {
    let collector = Collector::start().await;
    let host = TestHost::with_config(&[MISBEHAVE], &config(&collector, "")).await;
    let mut rogue = MisbehaveClient::new(host.channel().await);
    assert_eq!(
        rogue.panic(Empty {}).await.unwrap_err().code(),
        Code::Internal
    );
    let spans = collector
        .spans_once(|spans| {
            spans
                .iter()
                .any(|s| s.name == "misbehave.v1.Misbehave/Panic")
        })
        .await;
    let call = named(&spans, "misbehave.v1.Misbehave/Panic");
    assert!(call.parent_span_id.is_empty(), "{call:#?}");
    assert!(call.error, "{call:#?}");
    assert_eq!(call.attribute("rpc.grpc.status_code"), Some("13"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_door_takes_the_callers_trace_context() {
    use http_body_util::BodyExt as _;
    use plugrpc_tests::pb::user::GetUserRequest;
    use prost::Message as _;

    let collector = Collector::start().await;
    let host = TestHost::with_config(&[USERS_FIXTURE], &config(&collector, "")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let url = |path: &str| format!("http://{}{path}", host.addr());
    // Each door's request, with a caller span of its own.
    let grpc_web = GetUserRequest { id: 3 }.encode_to_vec();
    let requests = [
        (
            "grpc-web",
            "00f067aa0ba90201",
            http::Request::post(url("/user.v1.UserService/GetUser"))
                .header("content-type", "application/grpc-web+proto")
                .body(plugrpc_tests::raw::frames(&[grpc_web]).into()),
        ),
        (
            "connect",
            "00f067aa0ba90202",
            http::Request::post(url("/user.v1.UserService/GetUser"))
                .header("content-type", "application/json")
                .body(br#"{"id":4}"#.to_vec().into()),
        ),
        (
            "json",
            "00f067aa0ba90203",
            http::Request::get(url("/v1/users/5")).body(Vec::new().into()),
        ),
    ];
    for (door, parent, request) in requests {
        let mut request = request.unwrap();
        let traceparent = format!("00-{TRACE}-{parent}-01");
        request
            .headers_mut()
            .insert("traceparent", traceparent.parse().unwrap());
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{door}");
        response.into_body().collect().await.unwrap();
    }
    let spans = collector
        .spans_once(|spans| {
            spans
                .iter()
                .filter(|span| span.name == "user.v1.UserService/GetUser")
                .count()
                == 3
        })
        .await;
    for (door, parent) in [
        ("grpc-web", "00f067aa0ba90201"),
        ("connect", "00f067aa0ba90202"),
        ("json", "00f067aa0ba90203"),
    ] {
        let call = spans
            .iter()
            .find(|span| span.attribute("plugrpc.door") == Some(door))
            .unwrap_or_else(|| panic!("no call span by {door}: {spans:#?}"));
        assert_eq!(call.trace_id, TRACE, "{door}: {call:#?}");
        assert_eq!(call.parent_span_id, parent, "{door}: {call:#?}");
        assert_eq!(call.kind, SpanKind::Server);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_a_collector_over_mutual_tls() {
    let certs = plugrpc_tests::make_certs();
    let collector = Collector::start_mutual_tls(certs.path()).await;
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls = format!(
        "[tracing.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        file("ca.crt"),
        file("client.crt"),
        file("client.key")
    );
    let host = TestHost::with_config(&[GREETER], &config(&collector, &tls)).await;
    // A second host trusting the collector but showing it no certificate, named apart.
    let anonymous = format!("[tracing.tls]\nca = {:?}\n", file("ca.crt"));
    let stranger = TestHost::with_config(
        &[GREETER],
        &config(&collector, &anonymous).replace("\"edge-1\"", "\"stranger\""),
    )
    .await;
    for host in [&stranger, &host] {
        GreeterClient::new(host.channel().await)
            .say_hello(traced(HelloRequest { name: "ada".into() }))
            .await
            .unwrap();
    }
    let spans = collector
        .spans_once(|spans| {
            spans
                .iter()
                .any(|s| s.name == "helloworld.Greeter/SayHello")
        })
        .await;
    let call = named(&spans, "helloworld.Greeter/SayHello");
    assert_eq!(call.trace_id, TRACE);
    assert_eq!(call.parent_span_id, CALLER_SPAN);
    assert_eq!(call.service, "edge-1");
    // The stranger's span, ended first and exported every 50 ms, would have come with
    // or before it, and surely within 20 more intervals: the collector refused it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let later = collector.spans_once(|_| true).await;
    assert!(
        later.iter().all(|span| span.service == "edge-1"),
        "spans came without a client certificate: {later:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_certificate_file_that_does_not_load_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let mut config = HostConfig::from_toml(
        "test config",
        &format!(
            "[tracing]\notlp = \"https://localhost:4317\"\n[tracing.tls]\nca = {:?}\n",
            ca.display().to_string()
        ),
    )
    .unwrap();
    config.plugins_dir = dir.path().to_owned();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = None;
    let error = Host::bind(&config)
        .await
        .err()
        .expect("the host refuses to start")
        .to_string();
    assert!(
        error.contains("tracing.tls.ca") && error.contains("ca.crt"),
        "{error}"
    );
}
