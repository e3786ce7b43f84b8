//! The built-in services seen from tonic clients generated from gRPC's own protos:
//! health (Check, List, Watch through a reload and a shutdown) and reflection (v1 and
//! v1alpha) over the live plugin set, each showing a caller only what it may call.

use std::time::Duration;

use plugrpc_tests::pb::health::health_check_response::ServingStatus;
use plugrpc_tests::pb::health::health_client::HealthClient;
use plugrpc_tests::pb::health::{HealthCheckRequest, HealthListRequest};
use plugrpc_tests::pb::reflection::server_reflection_client::ServerReflectionClient;
use plugrpc_tests::pb::reflection::server_reflection_request::MessageRequest;
use plugrpc_tests::pb::reflection::server_reflection_response::MessageResponse;
use plugrpc_tests::pb::reflection::{ServerReflectionRequest, ServerReflectionResponse};
use plugrpc_tests::pb::reflection_v1alpha as alpha;
use plugrpc_tests::{TestHost, copy_plugin};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::plugins::{GREETER, IMPOSTOR, USERS_FIXTURE};
use crate::tenants::{api_keys, bearing};

/// Longest a reload may take to show.
const PATIENCE: Duration = Duration::from_secs(20);

const USERS_SERVICE: &str = "user.v1.UserService";
const GREETER_SERVICE: &str = "helloworld.Greeter";

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

/// The next status a Watch stream sends, within [`PATIENCE`].
async fn next_status(
    stream: &mut tonic::Streaming<plugrpc_tests::pb::health::HealthCheckResponse>,
) -> Option<ServingStatus> {
    let next = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a status within the patience");
    next.map(|reply| reply.unwrap().status())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_and_list_name_the_host_and_every_served_service() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE, GREETER]).await;
    let mut health = HealthClient::new(host.channel().await);
    for service in ["", USERS_SERVICE, GREETER_SERVICE, "grpc.health.v1.Health"] {
        let reply = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = health.check(check("no.Such")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let list = health
        .list(HealthListRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<&str> = list.statuses.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            GREETER_SERVICE,
            USERS_SERVICE,
        ]
    );
    assert!(
        list.statuses
            .values()
            .all(|s| s.status() == ServingStatus::Serving)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_watch_follows_a_removal_a_return_and_the_shutdown() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let mut health = HealthClient::new(host.channel().await);
    let mut users = health
        .watch(check(USERS_SERVICE))
        .await
        .unwrap()
        .into_inner();
    let mut whole = health.watch(check("")).await.unwrap().into_inner();
    let mut later = health
        .watch(check(GREETER_SERVICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut users).await, Some(ServingStatus::Serving));
    assert_eq!(next_status(&mut whole).await, Some(ServingStatus::Serving));
    assert_eq!(
        next_status(&mut later).await,
        Some(ServingStatus::ServiceUnknown),
        "unknown, and the stream stays open"
    );

    let file = host.plugins_dir().join(USERS_FIXTURE.file_name());
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        next_status(&mut users).await,
        Some(ServingStatus::ServiceUnknown)
    );
    copy_plugin(USERS_FIXTURE, &file);
    assert_eq!(next_status(&mut users).await, Some(ServingStatus::Serving));
    copy_plugin(GREETER, &host.plugins_dir().join(GREETER.file_name()));
    assert_eq!(next_status(&mut later).await, Some(ServingStatus::Serving));

    let stopped = tokio::spawn(host.stop());
    for stream in [&mut users, &mut whole, &mut later] {
        assert_eq!(next_status(stream).await, Some(ServingStatus::NotServing));
        assert_eq!(next_status(stream).await, None, "then the stream ends");
    }
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .expect("the watchers do not hold the shutdown")
        .unwrap();
}

/// A host with users in the default tenant and greeter in acme, which only key:ops may
/// call.
async fn two_tenants() -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("acme")).unwrap();
    copy_plugin(USERS_FIXTURE, &dir.path().join(USERS_FIXTURE.file_name()));
    copy_plugin(GREETER, &dir.path().join("acme").join(GREETER.file_name()));
    let config = format!("{}[tenants.acme]\nallow = [\"key:ops\"]\n", api_keys());
    TestHost::serving_with_config(dir, &config).await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_show_a_caller_only_what_it_may_call() {
    let host = two_tenants().await;
    let mut health = HealthClient::new(host.channel().await);
    for (key, sees_greeter) in [(None, false), (Some("ops-key"), true)] {
        let status = health.check(bearing(check(GREETER_SERVICE), key)).await;
        assert_eq!(status.is_ok(), sees_greeter, "{key:?}: {status:?}");
        let list = health
            .list(bearing(HealthListRequest {}, key))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.statuses.contains_key(GREETER_SERVICE), sees_greeter);
        assert!(list.statuses.contains_key(USERS_SERVICE));

        let mut reflection = Reflecting::open(&host, key).await;
        let services = reflection.list().await;
        assert_eq!(services.contains(&GREETER_SERVICE.to_owned()), sees_greeter);
        assert!(services.contains(&USERS_SERVICE.to_owned()));
        let found = reflection
            .ask(MessageRequest::FileContainingSymbol(
                GREETER_SERVICE.to_owned(),
            ))
            .await;
        assert_eq!(
            matches!(found, MessageResponse::FileDescriptorResponse(_)),
            sees_greeter,
            "{key:?}: {found:?}"
        );
    }
}

/// One reflection stream, asked one question at a time.
struct Reflecting {
    requests: mpsc::Sender<ServerReflectionRequest>,
    answers: tonic::Streaming<ServerReflectionResponse>,
}

impl Reflecting {
    async fn open(host: &TestHost, key: Option<&str>) -> Self {
        let (requests, rx) = mpsc::channel(1);
        let answers = ServerReflectionClient::new(host.channel().await)
            .server_reflection_info(bearing(ReceiverStream::new(rx), key))
            .await
            .unwrap()
            .into_inner();
        Self { requests, answers }
    }

    async fn ask(&mut self, question: MessageRequest) -> MessageResponse {
        self.requests
            .send(ServerReflectionRequest {
                host: String::new(),
                message_request: Some(question.clone()),
            })
            .await
            .unwrap();
        let answer = self.answers.next().await.unwrap().unwrap();
        assert_eq!(
            answer.original_request.unwrap().message_request,
            Some(question)
        );
        answer.message_response.unwrap()
    }

    async fn list(&mut self) -> Vec<String> {
        match self.ask(MessageRequest::ListServices(String::new())).await {
            MessageResponse::ListServicesResponse(list) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    /// The names of the files an answer carries.
    async fn files(&mut self, question: MessageRequest) -> Vec<String> {
        match self.ask(question).await {
            MessageResponse::FileDescriptorResponse(files) => files
                .file_descriptor_proto
                .iter()
                .map(|bytes| {
                    prost_types::FileDescriptorProto::decode(bytes.as_slice())
                        .unwrap()
                        .name()
                        .to_owned()
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_describes_plugins_and_built_ins_and_follows_a_reload() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let mut reflection = Reflecting::open(&host, None).await;
    assert_eq!(
        reflection.list().await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            USERS_SERVICE,
        ]
    );
    let files = reflection
        .files(MessageRequest::FileContainingSymbol(
            "user.v1.UserService.GetUser".to_owned(),
        ))
        .await;
    assert_eq!(files[0], "user/v1/user_service.proto");
    // Files go out with their options' extensions: the google.api.http binding is there.
    match reflection
        .ask(MessageRequest::FileByFilename(
            "user/v1/user_service.proto".to_owned(),
        ))
        .await
    {
        MessageResponse::FileDescriptorResponse(files) => {
            let file = &files.file_descriptor_proto[0];
            let binding = b"/v1/users/{id}";
            assert!(file.windows(binding.len()).any(|w| w == binding));
        }
        other => panic!("{other:?}"),
    }
    // The same file again: itself, its dependencies already sent on this stream.
    let again = reflection
        .files(MessageRequest::FileByFilename(
            "user/v1/user_service.proto".to_owned(),
        ))
        .await;
    assert_eq!(again, ["user/v1/user_service.proto"]);
    let health = reflection
        .files(MessageRequest::FileContainingSymbol(
            "grpc.health.v1.HealthCheckRequest".to_owned(),
        ))
        .await;
    assert_eq!(health, ["grpc/health/v1/health.proto"]);
    match reflection
        .ask(MessageRequest::FileContainingSymbol("no.Such".to_owned()))
        .await
    {
        MessageResponse::ErrorResponse(error) => {
            assert_eq!(error.error_code, Code::NotFound as i32);
            assert!(error.error_message.contains("no.Such"));
        }
        other => panic!("{other:?}"),
    }
    match reflection
        .ask(MessageRequest::AllExtensionNumbersOfType(
            "user.v1.GetUserRequest".to_owned(),
        ))
        .await
    {
        MessageResponse::AllExtensionNumbersResponse(numbers) => {
            assert_eq!(numbers.base_type_name, "user.v1.GetUserRequest");
            assert!(numbers.extension_number.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // The users proto's google.api.http annotation extends MethodOptions.
    const HTTP_RULE: i32 = 72_295_728;
    match reflection
        .ask(MessageRequest::AllExtensionNumbersOfType(
            "google.protobuf.MethodOptions".to_owned(),
        ))
        .await
    {
        MessageResponse::AllExtensionNumbersResponse(numbers) => {
            assert_eq!(numbers.extension_number, [HTTP_RULE]);
        }
        other => panic!("{other:?}"),
    }
    let extending = reflection
        .files(MessageRequest::FileContainingExtension(
            plugrpc_tests::pb::reflection::ExtensionRequest {
                containing_type: "google.protobuf.MethodOptions".to_owned(),
                extension_number: HTTP_RULE,
            },
        ))
        .await;
    assert_eq!(extending[0], "google/api/annotations.proto");

    // A plugin dropped in shows in the next answer on the same stream; one removed goes.
    copy_plugin(GREETER, &host.plugins_dir().join(GREETER.file_name()));
    let started = tokio::time::Instant::now();
    while !reflection
        .list()
        .await
        .contains(&GREETER_SERVICE.to_owned())
    {
        assert!(started.elapsed() < PATIENCE, "greeter never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(host.plugins_dir().join(USERS_FIXTURE.file_name())).unwrap();
    while reflection.list().await.contains(&USERS_SERVICE.to_owned()) {
        assert!(started.elapsed() < PATIENCE, "users still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match reflection
        .ask(MessageRequest::FileContainingSymbol(
            USERS_SERVICE.to_owned(),
        ))
        .await
    {
        MessageResponse::ErrorResponse(error) => {
            assert_eq!(error.error_code, Code::NotFound as i32);
        }
        other => panic!("a removed service is not found: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_v1alpha_answers_as_v1_does() {
    let host = TestHost::with_plugins(&[USERS_FIXTURE]).await;
    let mut client =
        alpha::server_reflection_client::ServerReflectionClient::new(host.channel().await);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("{answer:?}");
    };
    assert!(list.service.iter().any(|s| s.name == USERS_SERVICE));
    assert!(
        answers.next().await.is_none(),
        "the stream ends with the client's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_declaring_a_built_in_service_is_refused() {
    let host = TestHost::with_plugins(&[IMPOSTOR, USERS_FIXTURE]).await;
    let [refusal] = &host.report().refused[..] else {
        panic!("{:?}", host.report().refused);
    };
    assert_eq!(
        refusal.reason.to_string(),
        "service grpc.health.v1.Health is built into the host and cannot be served by a plugin"
    );
    let mut health = HealthClient::new(host.channel().await);
    let reply = health.check(check(USERS_SERVICE)).await.unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
}
