//! The frontdesk example: an API made of other services. It keeps visitors as users of
//! the users plugin (in process, through `local`) and has a Greeter reached over the
//! network greet them: here a native tonic greeter on loopback.

use crate::plugins::{FRONTDESK, USERS};
use crate::users::USERS_KV;
use plugrpc_tests::TestHost;
use plugrpc_tests::pb::frontdesk::front_desk_client::FrontDeskClient;
use plugrpc_tests::pb::frontdesk::{CheckInRequest, WelcomeRequest};
use tonic::Code;

/// The example's grants, its greeter at `greeter`.
fn config(greeter: std::net::SocketAddr) -> String {
    format!(
        "{USERS_KV}[plugins.frontdesk.config]\ndesk = \"Lobby\"\n\
         [plugins.frontdesk.outbound.users]\nendpoints = [\"local\"]\n\
         [plugins.frontdesk.outbound.greeter]\nendpoints = [\"http://{greeter}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visitor_checks_in_and_is_welcomed_back() {
    let greeter = plugrpc_tests::native::serve().await;
    let host = TestHost::with_config(&[FRONTDESK, USERS], &config(greeter)).await;
    let mut desk = FrontDeskClient::new(host.channel().await);
    let checked_in = desk
        .check_in(CheckInRequest {
            name: "ada".into(),
            email: "ada@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked_in.id, 1);
    assert_eq!(checked_in.greeting, "Lobby: Hello ada!");

    let welcome = desk
        .welcome(WelcomeRequest { id: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(welcome.greeting, "Lobby: Hello ada!");
    assert_eq!(welcome.email, "ada@example.com");

    // The users service's statuses come through as they are.
    let again = desk
        .check_in(CheckInRequest {
            name: "ada".into(),
            email: "ada@example.com".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    let unknown = desk.welcome(WelcomeRequest { id: 42 }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "no user with id 42");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_greeter_that_is_down_is_unavailable_and_nothing_else_breaks() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = listener.local_addr().unwrap();
    drop(listener);
    let host = TestHost::with_config(&[FRONTDESK, USERS], &config(nobody)).await;
    let mut desk = FrontDeskClient::new(host.channel().await);
    let status = desk
        .check_in(CheckInRequest {
            name: "grace".into(),
            email: "grace@example.com".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("greeter"), "{status:?}");
}
