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

    // Emails are unique in the store: a run of their own, so the example can run
    // again against a host that kept the last run's users.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let new = tokio_stream::iter((0..3).map(move |i| CreateUserRequest {
        name: format!("n{i}"),
        email: format!("n{i}-{run}@example.com"),
    }));
    let created = users.create_users(new).await?.into_inner();
    println!("CreateUsers(3) -> count={}", created.count);
    let first = created.users.first().map_or(0, |u| u.id);

    let user = users
        .get_user(GetUserRequest { id: first })
        .await?
        .into_inner();
    println!(
        "GetUser({first}) -> id={} name={} email={}",
        user.id, user.name, user.email
    );

    let status = users
        .get_user(GetUserRequest { id: 0 })
        .await
        .expect_err("id 0 does not exist");
    println!("GetUser(0) -> {:?}: {}", status.code(), status.message());

    let listed: Vec<String> = users
        .list_users(ListUsersRequest {
            limit: 3,
            after_id: first - 1,
        })
        .await?
        .into_inner()
        .map(|u| u.map(|u| u.name))
        .collect::<Result<_, _>>()
        .await?;
    println!("ListUsers(3 from {first}) -> {}", listed.join(", "));

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
