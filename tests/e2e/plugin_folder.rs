//! Loading the plugins folder: bad files are refused one line each while the rest serve,
//! and a service claimed twice stays with the first plugin.

use crate::plugins::{GREETER, GREETER_TWIN, MULTI, USERS_FIXTURE};
use plugrpc::{Host, HostConfig};
use plugrpc::{LoadError, RefusalReason};
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::multi_alpha::PingRequest;
use plugrpc_tests::pb::multi_alpha::alpha_client::AlphaClient;
use plugrpc_tests::pb::multi_beta::PongRequest;
use plugrpc_tests::pb::multi_beta::beta_client::BetaClient;
use plugrpc_tests::pb::user::GetUserRequest;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{LogCapture, Plugin, TestHost, copy_plugin};
use tonic::Code;

/// Log lines that refuse `file`.
fn refusals_of(log: &LogCapture, file: &str) -> Vec<String> {
    let file = format!("/{file}");
    log.lines_with(&["plugin refused", &file])
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_are_refused_with_one_log_line_each_and_the_rest_serve() {
    let log = LogCapture::install();
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(USERS_FIXTURE, &dir.path().join("users.wasm"));
    std::fs::write(
        dir.path().join("corrupt.wasm"),
        b"\0asm this is not webassembly",
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.wasm"), b"").unwrap();
    // A valid core module: WebAssembly, but not a component.
    std::fs::write(dir.path().join("core-module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        b"not a plugin, not even looked at",
    )
    .unwrap();

    let host = TestHost::serving(dir).await;

    let loaded: Vec<_> = host
        .report()
        .loaded
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(loaded, ["users"]);
    let mut refused: Vec<_> = host
        .report()
        .refused
        .iter()
        .map(|r| r.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    refused.sort();
    assert_eq!(refused, ["core-module.wasm", "corrupt.wasm", "empty.wasm"]);
    for refusal in &host.report().refused {
        assert!(
            matches!(*refusal.reason, RefusalReason::Load(LoadError::Compile(_))),
            "{}",
            refusal.reason
        );
        let reason = refusal.reason.to_string();
        assert!(
            reason.contains("not a valid WebAssembly component"),
            "{reason}"
        );
        assert!(!reason.contains('\n'), "one line: {reason:?}");
        let file = refusal
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = refusals_of(&log, &file);
        assert_eq!(lines.len(), 1, "one log line for {file}: {lines:?}");
    }

    let mut users = UserServiceClient::new(host.channel().await);
    assert_eq!(
        users
            .get_user(GetUserRequest { id: 1 })
            .await
            .unwrap()
            .into_inner()
            .name,
        "user-1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_plugin_claiming_a_served_service_is_refused() {
    let log = LogCapture::install();
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(GREETER, &dir.path().join("a-greeter.wasm"));
    copy_plugin(GREETER_TWIN, &dir.path().join("b-twin.wasm"));

    let host = TestHost::serving(dir).await;

    assert_eq!(host.report().loaded.len(), 1);
    assert_eq!(host.report().loaded[0].name, "greeter");
    let refusal = &host.report().refused[0];
    assert!(refusal.file.ends_with("b-twin.wasm"));
    assert!(
        matches!(&*refusal.reason, RefusalReason::ServiceTaken { service, plugin, .. }
            if service == "helloworld.Greeter" && plugin == "greeter"),
        "{}",
        refusal.reason
    );
    assert!(
        refusal
            .reason
            .to_string()
            .contains("service helloworld.Greeter is already served by plugin \"greeter\""),
        "{}",
        refusal.reason
    );
    assert_eq!(refusals_of(&log, "b-twin.wasm").len(), 1);

    let mut greeter = GreeterClient::new(host.channel().await);
    let reply = greeter
        .say_hello(HelloRequest { name: "x".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.message, "Hello x!",
        "the first plugin keeps the service"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_folder_serves_nothing_but_unimplemented() {
    let host = TestHost::serving(tempfile::tempdir().unwrap()).await;
    assert!(host.report().loaded.is_empty());
    let mut users = UserServiceClient::new(host.channel().await);
    let status = users.get_user(GetUserRequest { id: 1 }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_built_in_code_is_checked_like_a_file() {
    let config = HostConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        sandboxes: 0,
        ..HostConfig::default()
    };
    let error = Host::bind(&config).await.err().expect("startup fails");
    assert_eq!(
        error.to_string(),
        "invalid config: host.sandboxes: 0 is outside 1 ..= 16384"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_plugins_folder_stops_startup_with_its_name() {
    let config = HostConfig {
        plugins_dir: "/nonexistent/plugrpc-plugins".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HostConfig::default()
    };
    let error = Host::bind(&config).await.err().expect("startup fails");
    assert!(
        error.to_string().contains("/nonexistent/plugrpc-plugins"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_plugin_crate_of_the_repo_loads_on_this_contract() {
    /// Every capability, for every plugin of the repo that imports one.
    const GRANT_ALL: &str = "[plugins.users.kv]\n[plugins.keeper.kv]\n\
        [plugins.caller.outbound.local]\nendpoints = [\"local\"]\n\
        [plugins.frontdesk.outbound.local]\nendpoints = [\"local\"]\n";
    async fn loads(plugin: Plugin) {
        if plugin.name == "impostor" {
            // Built to be refused: it claims a built-in service (builtin.rs).
            return;
        }
        let host = TestHost::with_config(&[plugin], GRANT_ALL).await;
        let report = host.report();
        assert!(
            report.refused.is_empty(),
            "{}: {:?}",
            plugin.name,
            report.refused
        );
        assert_eq!(report.loaded.len(), 1, "{}", plugin.name);
    }
    macro_rules! loads {
        ($constant:ident, $name:literal, $wasm:literal) => {
            loads(Plugin {
                name: $name,
                wasm: $wasm,
            })
            .await;
        };
    }
    plugrpc_tests::foreach_plugin!(loads);
}

/// A component exporting the 0.2 contract's handler, as a plugin built with the 0.2 SDK
/// does (its functions are not what the host checks first, so one stands for all).
const CONTRACT_0_2: &str = r#"
(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func $f (canon lift (core func $i "f")))
  (instance $handler (export "describe" (func $f)))
  (export "plugrpc:plugin/handler@0.2.0" (instance $handler))
)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_against_contract_0_2_is_refused_naming_both_versions() {
    let log = LogCapture::install();
    let dir = tempfile::tempdir().unwrap();
    let old = wat::parse_str(CONTRACT_0_2).unwrap();
    std::fs::write(dir.path().join("old-sdk.wasm"), old).unwrap();
    copy_plugin(USERS_FIXTURE, &dir.path().join("users.wasm"));

    let host = TestHost::serving(dir).await;

    assert_eq!(host.report().loaded.len(), 1, "the rest serve");
    let refusal = &host.report().refused[0];
    assert!(
        matches!(&*refusal.reason, RefusalReason::Load(LoadError::ContractVersion { found })
            if found == "plugrpc:plugin@0.2.0"),
        "{}",
        refusal.reason
    );
    let lines = refusals_of(&log, "old-sdk.wasm");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("plugrpc:plugin@0.2.0") && lines[0].contains(plugrpc::CONTRACT),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_compiled_from_two_proto_sets_serves_both_under_its_own_name() {
    let host = TestHost::with_plugins(&[MULTI]).await;
    let loaded = &host.report().loaded;
    assert_eq!(loaded.len(), 1, "{:?}", host.report().refused);
    assert_eq!(loaded[0].name, "multi-named");
    let mut services = loaded[0].services.clone();
    services.sort();
    assert_eq!(services, ["multi.alpha.v1.Alpha", "multi.beta.v1.Beta"]);

    let mut alpha = AlphaClient::new(host.channel().await);
    let reply = alpha
        .ping(PingRequest { text: "a".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "alpha:a");
    let mut beta = BetaClient::new(host.channel().await);
    let reply = beta
        .pong(PongRequest { text: "b".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.text, "beta:b");
}
