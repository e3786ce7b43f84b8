//! Calls all four methods of the users plugin on a running plugrpc host, with a plain
//! tonic client: nothing about the server being WebAssembly shows on this side.

use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod pb {
    tonic::include_proto!("user.v1");
}

use pb::user_service_client::UserServiceClient;
use pb::{ChatMessage, CreateUserRequest, GetUserRequest, ListUsersRequest};

/// Call the users plugin's four methods.
#[derive(Parser)]
struct Args {
    /// URL of the plugrpc host.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut users = UserServiceClient::connect(args.target).await?;

    let user = users.get_user(GetUserRequest { id: 7 }).await?.into_inner();
    println!(
        "GetUser(7) -> id={} name={} email={}",
        user.id, user.name, user.email
    );

    let status = users
        .get_user(GetUserRequest { id: 0 })
        .await
        .expect_err("id 0 does not exist");
    println!("GetUser(0) -> {:?}: {}", status.code(), status.message());

    let listed: Vec<String> = users
        .list_users(ListUsersRequest { limit: 3 })
        .await?
        .into_inner()
        .map(|u| u.map(|u| u.name))
        .collect::<Result<_, _>>()
        .await?;
    println!("ListUsers(3) -> {}", listed.join(", "));

    let new = tokio_stream::iter((0..3).map(|i| CreateUserRequest {
        name: format!("n{i}"),
        email: format!("n{i}@example.com"),
    }));
    println!(
        "CreateUsers(3) -> count={}",
        users.create_users(new).await?.into_inner().count
    );

    // Each line goes out only after the answer to the previous one came back.
    let (tx, rx) = mpsc::channel(1);
    let mut replies = users.chat(ReceiverStream::new(rx)).await?.into_inner();
    let mut texts = Vec::new();
    for line in ["hello", "how are you?", "bye"] {
        tx.send(ChatMessage {
            user: "ada".into(),
            text: line.into(),
            sent_at: None,
        })
        .await?;
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.next()).await?;
        texts.push(
            reply
                .ok_or_else(|| anyhow::anyhow!("chat ended early"))??
                .text,
        );
    }
    drop(tx);
    println!("Chat -> {}", texts.join(" | "));
    Ok(())
}
