//! Tenants: each subfolder of the plugins folder is a tenant, with its own plugin
//! limits and its plugins' own view of whom they serve for; files directly in the
//! folder are the default tenant's.

use std::path::Path;
use std::time::{Duration, Instant};

use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::probe::EchoRequest;
use plugrpc_tests::pb::probe::probe_client::ProbeClient;
use plugrpc_tests::pb::user::GetUserRequest;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{Plugin, TestHost, copy_plugin};
use tonic::Code;

use crate::plugins::{GREETER, GREETER_TWIN, PROBE, USERS_FIXTURE};

/// Longer than any reload takes.
const PATIENCE: Duration = Duration::from_secs(20);

/// Copies `plugin` into `dir/tenant/` (`dir` itself for `None`).
fn place(dir: &Path, tenant: Option<&str>, plugin: Plugin) {
    let folder = tenant.map_or_else(|| dir.to_owned(), |tenant| dir.join(tenant));
    std::fs::create_dir_all(&folder).unwrap();
    copy_plugin(plugin, &folder.join(plugin.file_name()));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_folder_is_a_tenant_with_its_own_plugin_limits() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), PROBE);
    place(dir.path(), Some("globex"), USERS_FIXTURE);
    place(dir.path(), None, GREETER);
    let host = TestHost::serving_with_config(
        dir,
        "[plugins.probe]\ndeadline = \"50s\"\n[tenants.acme.plugins.probe]\ndeadline = \"7s\"\n",
    )
    .await;
    let mut tenants: Vec<(String, String)> = host
        .report()
        .loaded
        .iter()
        .map(|p| (p.tenant.clone(), p.name.clone()))
        .collect();
    tenants.sort();
    assert_eq!(
        tenants,
        [
            ("acme", "probe"),
            ("default", "greeter"),
            ("globex", "users")
        ]
        .map(|(t, n)| (t.to_owned(), n.to_owned()))
    );

    let reply = ProbeClient::new(host.channel().await)
        .echo(EchoRequest {
            text: "hi".into(),
            count: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.tenant, "acme", "the plugin sees its tenant");
    assert!(
        (1..=7_000).contains(&reply.remaining_ms),
        "acme's own deadline (7s), not the default tenant's (50s): {} ms",
        reply.remaining_ms
    );
    UserServiceClient::new(host.channel().await)
        .get_user(GetUserRequest { id: 7 })
        .await
        .expect("globex's users plugin serves");
    GreeterClient::new(host.channel().await)
        .say_hello(HelloRequest { name: "x".into() })
        .await
        .expect("the default tenant's greeter serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_claimed_by_two_tenants_is_refused_naming_the_tenant_serving_it() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), GREETER);
    place(dir.path(), Some("globex"), GREETER);
    let host = TestHost::serving(dir).await;
    let report = host.report();
    assert_eq!(report.loaded.len(), 1, "one greeter serves");
    assert_eq!(report.loaded[0].tenant, "acme");
    let refusal = report.refused[0].reason.to_string();
    assert!(
        refusal.contains(
            r#"service helloworld.Greeter is already served by plugin "greeter" of tenant "acme""#
        ),
        "the same plugin name in two tenants is no conflict; the service is: {refusal}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_folder_moved_in_is_served_and_moved_out_goes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let host = TestHost::serving(dir).await;
    // Prepared aside (hidden folders are no tenant), then moved in at once.
    place(&root, Some(".staging"), PROBE);
    std::fs::rename(root.join(".staging"), root.join("newco")).unwrap();
    let reply = until(|| async {
        ProbeClient::new(host.channel().await)
            .echo(EchoRequest {
                text: "hi".into(),
                count: 1,
            })
            .await
            .ok()
    })
    .await;
    assert_eq!(reply.into_inner().tenant, "newco");

    std::fs::rename(root.join("newco"), root.join(".gone")).unwrap();
    until(|| async {
        let status = ProbeClient::new(host.channel().await)
            .echo(EchoRequest::default())
            .await
            .err()?;
        (status.code() == Code::Unimplemented).then_some(())
    })
    .await;
}

/// `[api_keys]` lines for the keys `ci-key` (key:ci) and `ops-key` (key:ops).
pub(crate) fn api_keys() -> String {
    use sha2::Digest as _;
    let hash = |key: &str| format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
    format!(
        "[api_keys]\nci = {:?}\nops = {:?}\n",
        hash("ci-key"),
        hash("ops-key")
    )
}

/// `request` sent with `authorization: Bearer <key>`, if any.
pub(crate) fn bearing<T>(request: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_rules_of_tenant_plugin_and_method_narrow_who_may_call() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), PROBE);
    place(dir.path(), Some("globex"), USERS_FIXTURE);
    place(dir.path(), None, GREETER);
    let config = format!(
        "{}\n[tenants.acme]\nallow = [\"key:*\"]\n\
         [tenants.acme.plugins.probe]\nallow = [\"key:ci\", \"key:ops\"]\n\
         [tenants.acme.plugins.probe.methods.Fail]\nallow = [\"key:ops\"]\n\
         [tenants.globex]\nallow = [\"key:ops\"]\n",
        api_keys()
    );
    let host = TestHost::serving_with_config(dir, &config).await;
    let mut probe = ProbeClient::new(host.channel().await);
    let mut users = UserServiceClient::new(host.channel().await);
    let echo = || EchoRequest {
        text: "hi".into(),
        count: 1,
    };
    let fail = || plugrpc_tests::pb::probe::FailRequest {
        code: Code::NotFound as i32,
        message: "reached the plugin".into(),
    };

    let reply = probe.echo(bearing(echo(), Some("ci-key"))).await.unwrap();
    assert_eq!(reply.into_inner().caller, "key:ci");
    let denied = probe
        .fail(bearing(fail(), Some("ci-key")))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(denied.message(), "the caller may not call this method");
    let reached = probe
        .fail(bearing(fail(), Some("ops-key")))
        .await
        .unwrap_err();
    assert_eq!(
        reached.code(),
        Code::NotFound,
        "ops may call Fail: {reached:?}"
    );

    let denied = users
        .get_user(bearing(GetUserRequest { id: 7 }, Some("ci-key")))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "another tenant's caller"
    );
    users
        .get_user(bearing(GetUserRequest { id: 7 }, Some("ops-key")))
        .await
        .expect("globex allows key:ops");

    let anonymous = probe.echo(bearing(echo(), None)).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    GreeterClient::new(host.channel().await)
        .say_hello(HelloRequest { name: "x".into() })
        .await
        .expect("a tenant with no rules is open");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_allows_callers_by_client_certificate_pattern() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let certs = plugrpc_tests::make_certs();
    let file = |name: &str| certs.path().join(name).display().to_string();
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), PROBE);
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\nclient_auth = \"optional\"\n\
         [tenants.acme]\nallow = [\"spiffe://example.org/*\"]\n",
        file("server.crt"),
        file("server.key"),
        file("ca.crt")
    );
    let host = TestHost::serving_with_config(dir, &config).await;
    let read = |name: &str| std::fs::read(certs.path().join(name)).unwrap();
    let trusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.crt")));
    let with_cert = trusting
        .clone()
        .identity(Identity::from_pem(read("client.crt"), read("client.key")));
    let echo = EchoRequest {
        text: "hi".into(),
        count: 1,
    };
    let reply = ProbeClient::new(host.tls_channel(with_cert).await.unwrap())
        .echo(echo.clone())
        .await
        .expect("spiffe://example.org/client matches");
    assert_eq!(reply.into_inner().caller, "spiffe://example.org/client");
    let anonymous = ProbeClient::new(host.tls_channel(trusting).await.unwrap())
        .echo(echo)
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
}

/// A greeter client whose requests carry `:authority` `host`.
async fn greeter_for(host: &TestHost, authority: &str) -> GreeterClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", host.addr()))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap();
    GreeterClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_serve_one_service_told_apart_by_host() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), GREETER);
    place(dir.path(), Some("globex"), GREETER_TWIN);
    let config = "[tenants.acme]\nhosts = [\"acme.example.com\"]\n\
                  [tenants.globex]\nhosts = [\"*.globex.example.com\"]\n";
    let host = TestHost::serving_with_config(dir, config).await;
    assert!(
        host.report().refused.is_empty(),
        "{:?}",
        host.report().refused
    );
    let hello = |name: &str| HelloRequest { name: name.into() };

    let acme = greeter_for(&host, "ACME.example.com:50051")
        .await
        .say_hello(hello("a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acme.message, "Hello a!", "acme's own greeter");
    let globex = greeter_for(&host, "api.globex.example.com")
        .await
        .say_hello(hello("g"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        globex.message.starts_with("Twin says hello g"),
        "{globex:?}"
    );
    let nobody = greeter_for(&host, "example.org")
        .await
        .say_hello(hello("n"))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::Unimplemented, "{nobody:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_may_each_have_a_plugin_called_users() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), USERS_FIXTURE);
    place(dir.path(), Some("globex"), USERS_FIXTURE);
    let config = "[tenants.acme]\nhosts = [\"acme.example.com\"]\n\
                  [tenants.globex]\nhosts = [\"globex.example.com\"]\n\
                  [tenants.globex.plugins.users]\ndeadline = \"9s\"\n";
    let host = TestHost::serving_with_config(dir, config).await;
    let mut loaded: Vec<(String, String)> = host
        .report()
        .loaded
        .iter()
        .map(|p| (p.tenant.clone(), p.name.clone()))
        .collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [("acme", "users"), ("globex", "users")].map(|(t, n)| (t.to_owned(), n.to_owned()))
    );
    let globex = host
        .report()
        .loaded
        .iter()
        .find(|p| p.tenant == "globex")
        .unwrap();
    assert_eq!(
        globex.limits.deadline,
        Duration::from_secs(9),
        "its own table"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_claim_is_refused_naming_both_tenants() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), GREETER);
    place(dir.path(), Some("globex"), GREETER_TWIN);
    let config = "[tenants.acme]\nhosts = [\"*.example.com\"]\n\
                  [tenants.globex]\nhosts = [\"api.example.com\"]\n";
    let host = TestHost::serving_with_config(dir, config).await;
    let refusal = host.report().refused[0].reason.to_string();
    assert_eq!(
        refusal,
        r#"service helloworld.Greeter of tenant "globex" is also served by tenant "acme", and their hosts overlap (api.example.com and *.example.com)"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_quota_is_refused_while_another_serves_on() {
    use plugrpc_tests::pb::user::ChatMessage;
    use tokio_stream::wrappers::ReceiverStream;
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), USERS_FIXTURE);
    place(dir.path(), Some("globex"), GREETER);
    place(dir.path(), Some("initech"), PROBE);
    let config = "[tenants.acme]\nmax_concurrent_calls = 2\nmax_queued_calls = 0\n\
                  [tenants.initech]\nrate = 0.2\nburst = 2\n";
    let host = TestHost::serving_with_config(dir, config).await;

    // Two streams hold acme's two places.
    let mut users = UserServiceClient::new(host.channel().await);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (outbox, messages) = tokio::sync::mpsc::channel::<ChatMessage>(1);
        let stream = users.chat(ReceiverStream::new(messages)).await.unwrap();
        held.push((outbox, stream));
    }
    let refused = users.get_user(GetUserRequest { id: 7 }).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("tenant acme has 2 calls running and 0 waiting already (tenants.acme.max_concurrent_calls, tenants.acme.max_queued_calls)"),
        "{}",
        refused.message()
    );
    // Meanwhile another tenant loses nothing.
    let mut greeter = GreeterClient::new(host.channel().await);
    for i in 0..50 {
        greeter
            .say_hello(HelloRequest {
                name: i.to_string(),
            })
            .await
            .expect("globex serves on");
    }
    drop(held);
    until(|| async {
        let mut users = UserServiceClient::new(host.channel().await);
        users.get_user(GetUserRequest { id: 7 }).await.ok()
    })
    .await;

    // initech may make 2 calls at once, and one more every 5 s.
    let mut probe = ProbeClient::new(host.channel().await);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(probe.echo(EchoRequest::default()).await.map(drop));
    }
    let refused = outcomes.pop().unwrap().unwrap_err();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert!(
        refused.message().contains("(tenants.initech.rate)"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_past_its_memory_budget_is_refused_while_another_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), Some("acme"), PROBE);
    place(dir.path(), Some("globex"), GREETER);
    place(dir.path(), Some("initech"), USERS_FIXTURE);
    // acme: less than one instance's initial memory. initech: room for a few instances,
    // so calls one after another fit only if each gives its memory back.
    let host = TestHost::serving_with_config(
        dir,
        "[tenants.acme]\nmemory = \"64KiB\"\n\
         [tenants.initech]\nmemory = \"16MiB\"\n[tenants.initech.plugins.users]\nreuse_instances = false\n",
    )
    .await;
    let refused = ProbeClient::new(host.channel().await)
        .echo(EchoRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("tenant acme's memory budget of 64.0 KiB is spent (tenants.acme.memory)"),
        "{}",
        refused.message()
    );
    GreeterClient::new(host.channel().await)
        .say_hello(HelloRequest { name: "x".into() })
        .await
        .expect("globex serves on");
    let mut users = UserServiceClient::new(host.channel().await);
    for id in 1..=40 {
        users
            .get_user(GetUserRequest { id })
            .await
            .expect("each fresh instance gives its memory back");
    }
}

/// Polls `check` until it answers, for at most [`PATIENCE`].
async fn until<T, F, Fut>(check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(answer) = check().await {
            return answer;
        }
        assert!(started.elapsed() < PATIENCE, "the host never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
