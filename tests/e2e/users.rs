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

/// The users example's grant: its own bucket, room for the tests' streams of creations.
pub(crate) const USERS_KV: &str = "[plugins.users.kv]\nmax_ops_per_call = 100000\n";

async fn users() -> (TestHost, UserServiceClient<tonic::transport::Channel>) {
    let host = TestHost::with_config(&[USERS, GREETER], USERS_KV).await;
    let client = UserServiceClient::new(host.channel().await);
    (host, client)
}

/// New users named `<prefix><i>`, `<prefix><i>@example.com`.
fn new_users(prefix: &str, count: usize) -> Vec<CreateUserRequest> {
    (0..count)
        .map(|i| CreateUserRequest {
            name: format!("{prefix}{i}"),
            email: format!("{prefix}{i}@example.com"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn created_users_get_ids_in_order_and_are_read_back() {
    let (_host, mut client) = users().await;
    let reply = client
        .create_users(tokio_stream::iter(new_users("ada", 3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.count, 3);
    let ids: Vec<i64> = reply.users.iter().map(|u| u.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    for created in reply.users {
        let read = client
            .get_user(GetUserRequest { id: created.id })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read, created);
        assert!(read.created_at.is_some_and(|t| t.seconds > 1_700_000_000));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_user_for_an_unknown_id_is_not_found_with_resource_info() {
    let (_host, mut client) = users().await;
    for id in [0, -3, 99] {
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
async fn list_users_pages_through_stored_users_in_id_order() {
    let (_host, mut client) = users().await;
    client
        .create_users(tokio_stream::iter(new_users("u", 250)))
        .await
        .unwrap();
    let mut pages = Vec::new();
    let mut after_id = 0;
    loop {
        let page: Vec<i64> = client
            .list_users(ListUsersRequest {
                limit: 100,
                after_id,
            })
            .await
            .unwrap()
            .into_inner()
            .map(|u| u.unwrap().id)
            .collect()
            .await;
        let Some(&last) = page.last() else { break };
        after_id = last;
        pages.push(page);
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert_eq!(pages.concat(), (1..=250).collect::<Vec<i64>>());

    let empty = client
        .list_users(ListUsersRequest {
            limit: 0,
            after_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(empty.collect::<Vec<_>>().await.len(), 0);

    let status = client
        .list_users(ListUsersRequest {
            limit: -1,
            after_id: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_stores_a_client_stream_of_two_thousand() {
    let (_host, mut client) = users().await;
    let reply = client
        .create_users(tokio_stream::iter(new_users("n", 2_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.count, 2_000);
    let last = client
        .get_user(GetUserRequest { id: 2_000 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.email, "n1999@example.com");

    let none = client
        .create_users(tokio_stream::empty())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.count, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_email_is_already_exists_and_the_users_before_it_stay() {
    let (_host, mut client) = users().await;
    let mut requests = new_users("grace", 2);
    requests.push(CreateUserRequest {
        name: "impostor".into(),
        email: "GRACE0@example.com".into(),
    });
    let status = client
        .create_users(tokio_stream::iter(requests))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(
        status.message().contains("GRACE0@example.com"),
        "{status:?}"
    );
    let second = client
        .get_user(GetUserRequest { id: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.name, "grace1");
}

#[tokio::test(flavor = "multi_thread")]
async fn users_outlive_the_host_that_stored_them() {
    let data = tempfile::tempdir().unwrap();
    let config = format!("[host]\ndata_dir = {:?}\n{USERS_KV}", data.path());
    let host = TestHost::with_config(&[USERS], &config).await;
    let mut client = UserServiceClient::new(host.channel().await);
    client
        .create_users(tokio_stream::iter(new_users("kept", 1)))
        .await
        .unwrap();
    host.stop().await;

    let host = TestHost::with_config(&[USERS], &config).await;
    let mut client = UserServiceClient::new(host.channel().await);
    let user = client
        .get_user(GetUserRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.email, "kept0@example.com");
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
    let (_host, mut client) = users().await;
    client
        .create_users(tokio_stream::iter(new_users("c", 200)))
        .await
        .unwrap();
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
