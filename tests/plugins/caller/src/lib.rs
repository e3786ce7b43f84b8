//! Test-only plugin: outbound calls through the host, one RPC per call shape, so
//! end-to-end tests can show what the callee sees (deadline, metadata, cancellation) and
//! what the plugin gets back. A failed outbound call fails the RPC with its status.

plugrpc_guest::include_proto!("caller.v1");

#[allow(unreachable_pub, missing_docs, dead_code)]
mod helloworld {
    plugrpc_guest::include_proto!("helloworld");
}

#[allow(unreachable_pub, missing_docs, dead_code)]
mod user {
    plugrpc_guest::include_proto!("user.v1");
}

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use caller_server::{Caller, CallerServer};
use helloworld::HelloRequest;
use helloworld::greeter_client::GreeterClient;
use plugrpc_guest::outbound::Client;
use plugrpc_guest::{Context, Metadata, Status};
use user::user_service_client::UserServiceClient;
use user::{ChatMessage, CreateUserRequest, ListUsersRequest};

/// The handlers; they keep nothing, but for what Stash keeps on purpose.
#[derive(Default)]
struct Relays;

thread_local! {
    /// The call Stash keeps past its own end.
    static STASHED: RefCell<Option<plugrpc_guest::outbound::Responses<user::User>>> =
        const { RefCell::new(None) };
}

/// The client a relay asks for: its target, metadata and timeout.
fn client(relay: &Relay) -> Client {
    let mut client = Client::new(relay.target.clone());
    for (key, value) in &relay.metadata {
        client = client.with_metadata(key, value.as_bytes());
    }
    if relay.timeout_ms > 0 {
        client = client.with_timeout(Duration::from_millis(relay.timeout_ms));
    }
    client
}

/// Printable metadata, gRPC's own left out.
fn printable(metadata: &Metadata) -> HashMap<String, String> {
    metadata
        .iter()
        .filter(|(key, _)| !key.ends_with("-bin"))
        .map(|(key, value)| (key.to_owned(), String::from_utf8_lossy(value).into_owned()))
        .collect()
}

impl Caller for Relays {
    fn hello(&self, _cx: &Context, relay: Relay) -> Result<Relayed, Status> {
        std::thread::sleep(Duration::from_millis(relay.wait_ms.into()));
        let greeter = GreeterClient::with_client(client(&relay));
        let reply = greeter.say_hello(&HelloRequest { name: relay.name })?;
        Ok(Relayed {
            messages: vec![reply.message],
            ..Relayed::default()
        })
    }

    fn users(&self, _cx: &Context, relay: Relay) -> Result<Relayed, Status> {
        let users = UserServiceClient::with_client(client(&relay));
        let mut stream = users.list_users(&ListUsersRequest {
            limit: relay.count,
            after_id: 0,
        })?;
        let headers = printable(&stream.headers()?);
        let take = if relay.take > 0 {
            relay.take as usize
        } else {
            usize::MAX
        };
        let mut messages = Vec::new();
        for user in stream.by_ref().take(take) {
            messages.push(user?.name);
        }
        let trailers = if relay.take > 0 {
            HashMap::new()
        } else {
            printable(&stream.trailers())
        };
        Ok(Relayed {
            messages,
            headers,
            trailers,
        })
    }

    fn create(&self, _cx: &Context, relay: Relay) -> Result<Relayed, Status> {
        let users = UserServiceClient::with_client(client(&relay));
        let mut call = users.create_users()?;
        for i in 0..relay.count {
            call.send(&CreateUserRequest {
                name: format!("{}{i}", relay.name),
                email: format!("{}{i}@example.com", relay.name),
            })?;
        }
        let reply = call.close_and_receive()?;
        Ok(Relayed {
            messages: vec![reply.count.to_string()],
            ..Relayed::default()
        })
    }

    fn stash(&self, _cx: &Context, relay: Relay) -> Result<Relayed, Status> {
        let users = UserServiceClient::with_client(client(&relay));
        let mut stream = users.list_users(&ListUsersRequest {
            limit: relay.count,
            after_id: 0,
        })?;
        let first = stream
            .next()
            .ok_or_else(|| Status::internal("no user came"))??;
        STASHED.with(|stashed| *stashed.borrow_mut() = Some(stream));
        Ok(Relayed {
            messages: vec![first.name],
            ..Relayed::default()
        })
    }

    fn chat(&self, _cx: &Context, relay: Relay) -> Result<Relayed, Status> {
        let users = UserServiceClient::with_client(client(&relay));
        let mut call = users.chat()?;
        let mut messages = Vec::new();
        for i in 0..relay.count {
            call.send(&ChatMessage {
                user: relay.name.clone(),
                text: format!("line {i}"),
                sent_at: None,
            })?;
            let reply = call
                .responses()
                .next()
                .ok_or_else(|| Status::internal("the chat ended early"))??;
            messages.push(reply.text);
        }
        call.finish();
        if let Some(extra) = call.responses().next() {
            extra?;
            return Err(Status::internal("the chat answered more than it was told"));
        }
        Ok(Relayed {
            messages,
            ..Relayed::default()
        })
    }
}

plugrpc_guest::export!(stateless: CallerServer<Relays>);
