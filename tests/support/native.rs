//! The example plugins' services written as plain tonic services, so benchmarks compare
//! a plugin with a native handler doing the same work, in the same process.

use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::helloworld::greeter_server::{Greeter, GreeterServer};
use crate::pb::helloworld::{HelloReply, HelloRequest};
use crate::pb::user::user_service_server::{UserService, UserServiceServer};
use crate::pb::user::{
    ChatMessage, CreateUserRequest, CreateUsersResponse, GetUserRequest, ListUsersRequest, User,
};

/// Creation time of every derived user, as in the users plugin.
const CREATED_AT_SECONDS: i64 = 1_704_067_200;

/// Native twin of the greeter plugin.
#[derive(Default)]
pub struct NativeGreeter;

/// Native twin of the users plugin.
#[derive(Default)]
pub struct NativeUsers;

fn user(id: i64) -> User {
    User {
        id,
        name: format!("user-{id}"),
        email: format!("user-{id}@example.com"),
        created_at: Some(prost_types::Timestamp {
            seconds: CREATED_AT_SECONDS + id,
            nanos: 0,
        }),
    }
}

#[tonic::async_trait]
impl Greeter for NativeGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("Hello {}!", request.into_inner().name),
        }))
    }
}

type Replies<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl UserService for NativeUsers {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        if id <= 0 {
            return Err(Status::not_found(format!("no user with id {id}")));
        }
        Ok(Response::new(user(id)))
    }

    type ListUsersStream = Replies<User>;

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        let limit = request.into_inner().limit;
        if limit < 0 {
            return Err(Status::invalid_argument(format!(
                "limit must not be negative, got {limit}"
            )));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(
            (1..=i64::from(limit)).map(|id| Ok(user(id))),
        ))))
    }

    async fn create_users(
        &self,
        request: Request<Streaming<CreateUserRequest>>,
    ) -> Result<Response<CreateUsersResponse>, Status> {
        let mut input = request.into_inner();
        let mut count = 0;
        while let Some(request) = input.next().await {
            let request = request?;
            if request.email.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "user {:?} has an empty email",
                    request.name
                )));
            }
            count += 1;
        }
        Ok(Response::new(CreateUsersResponse {
            count,
            users: Vec::new(),
        }))
    }

    type ChatStream = Replies<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(message) = input.next().await {
                let reply = message.map(|m| ChatMessage {
                    user: "users-plugin".to_owned(),
                    text: format!("{} said: {}", m.user, m.text),
                    sent_at: m.sent_at,
                });
                if tx.send(reply).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves both native services on an ephemeral loopback port, until the runtime ends.
pub async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GreeterServer::new(NativeGreeter))
            .add_service(UserServiceServer::new(NativeUsers))
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    addr
}
