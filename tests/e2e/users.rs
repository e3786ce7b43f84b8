//! The users example plugin, all four call shapes, over a real loopback socket.

use std::time::Duration;

use crate::plugins::{GREETER, USERS};
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::helloworld::HelloRequest;
use plugrpc_tests::pb::helloworld::greeter_client::GreeterClient;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::pb::user::{ChatMessage, CreateUserRequest, GetUserRequest, ListUsersRequest};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

/// How long a test waits for an answer before calling it a hang.
const PATIENCE: Duration = Duration::from_secs(20);

async fn users() -> (TestHost, UserServiceClient<tonic::transport::Channel>) {
    let host = TestHost::with_plugins(&[USERS, GREETER]).await;
    let client = UserServiceClient::new(host.channel().await);
    (host, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn get_user_derives_the_user_from_its_id() {
    let (_host, mut client) = users().await;
    let user = client
        .get_user(GetUserRequest { id: 7 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.id, 7);
    assert_eq!(user.name, "user-7");
    assert_eq!(user.email, "user-7@example.com");
    assert_eq!(user.created_at.unwrap().seconds, 1_704_067_200 + 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_user_for_a_non_positive_id_is_not_found_with_resource_info() {
    let (_host, mut client) = users().await;
    for id in [0, -3] {
        let status = client.get_user(GetUserRequest { id }).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), format!("no user with id {id}"));
        let details = status.get_error_details();
        let resource = details.resource_info().expect("ResourceInfo detail");
        assert_eq!(resource.resource_type, "user.v1.User");
        assert_eq!(resource.resource_name, id.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_users_streams_exactly_limit_users_in_order() {
    let (_host, mut client) = users().await;
    let stream = client
        .list_users(ListUsersRequest { limit: 250 })
        .await
        .unwrap()
        .into_inner();
    let users: Vec<_> = stream.map(|u| u.unwrap().id).collect().await;
    assert_eq!(users, (1..=250).collect::<Vec<i64>>());

    let empty = client
        .list_users(ListUsersRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.collect::<Vec<_>>().await.len(), 0);

    let status = client
        .list_users(ListUsersRequest { limit: -1 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_counts_a_client_stream_of_ten_thousand() {
    let (_host, mut client) = users().await;
    let requests = tokio_stream::iter((0..10_000).map(|i| CreateUserRequest {
        name: format!("n{i}"),
        email: format!("n{i}@example.com"),
    }));
    let reply = client.create_users(requests).await.unwrap().into_inner();
    assert_eq!(reply.count, 10_000);

    let none = client
        .create_users(tokio_stream::empty())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_refuses_an_empty_email_with_a_field_violation() {
    let (_host, mut client) = users().await;
    let requests = tokio_stream::iter([
        CreateUserRequest {
            name: "ok".into(),
            email: "ok@example.com".into(),
        },
        CreateUserRequest {
            name: "bad".into(),
            email: String::new(),
        },
    ]);
    let status = client.create_users(requests).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("\"bad\""), "{}", status.message());
    let details = status.get_error_details();
    let violations = &details
        .bad_request()
        .expect("BadRequest detail")
        .field_violations;
    assert_eq!(violations[0].field, "email");
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_answers_each_message_before_the_next_is_sent() {
    let (_host, mut client) = users().await;
    let (tx, rx) = mpsc::channel(1);
    let mut replies = client
        .chat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Each reply must arrive while the request stream is still open: a plugin that
    // collected first and answered later would leave this waiting, and fail the timeout.
    for i in 0..20 {
        let text = format!("line {i}");
        tx.send(ChatMessage {
            user: "ada".into(),
            text: text.clone(),
            sent_at: None,
        })
        .await
        .unwrap();
        let reply = tokio::time::timeout(PATIENCE, replies.next())
            .await
            .expect("reply before next send");
        let reply = reply.expect("stream open").unwrap();
        assert_eq!(reply.text, format!("ada said: {text}"));
        assert_eq!(reply.user, "users-plugin");
    }
    drop(tx);
    let end = tokio::time::timeout(PATIENCE, replies.next())
        .await
        .expect("stream ends");
    assert!(end.is_none(), "no replies after the client half-closes");
}

#[tokio::test(flavor = "multi_thread")]
async fn greeter_says_hello() {
    let (host, _users) = users().await;
    let mut greeter = GreeterClient::new(host.channel().await);
    let reply = greeter
        .say_hello(HelloRequest {
            name: "plugrpc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "Hello plugrpc!");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_on_one_connection_all_succeed() {
    let (_host, client) = users().await;
    let calls = (1..=200).map(|id| {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .get_user(GetUserRequest { id })
                .await
                .map(|r| r.into_inner().id)
        })
    });
    for (id, call) in (1..=200).zip(calls) {
        assert_eq!(call.await.unwrap().unwrap(), id);
    }
}
