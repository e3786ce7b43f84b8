//! `plugrpc inspect`'s report on the repo's plugins: what the host would load, named
//! before serving it.

use crate::plugins::{CALLER, KEEPER, USERS};
use plugrpc::inspect::inspect;

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_is_described_with_its_methods_and_the_grants_it_needs() {
    let users = inspect(USERS.wasm()).await.unwrap();
    assert_eq!(users.name, "users");
    assert_eq!(users.contract, "plugrpc:plugin@0.3.0");
    assert!(users.stateless);
    assert_eq!(users.needs_grants, ["kv"]);
    let service = &users.services[0];
    assert_eq!(service.name, "user.v1.UserService");
    let chat = service.methods.iter().find(|m| m.name == "Chat").unwrap();
    assert_eq!(
        (chat.kind, chat.input.as_str(), chat.output.as_str()),
        (
            "bidi-streaming",
            "user.v1.ChatMessage",
            "user.v1.ChatMessage"
        )
    );
    let text = users.text();
    assert!(
        text.contains("grants it needs: [plugins.users.kv]"),
        "{text}"
    );
    assert!(
        text.contains("GetUser (unary): user.v1.GetUserRequest -> user.v1.User"),
        "{text}"
    );
    assert!(inspect(CALLER.wasm()).await.unwrap().needs_grants == ["outbound"]);
    assert!(
        inspect(KEEPER.wasm())
            .await
            .unwrap()
            .imports
            .iter()
            .any(|import| import.starts_with("wasi:keyvalue/atomics"))
    );
}
