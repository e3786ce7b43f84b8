//! Test-only: `user.v1.UserService` with users derived from their ids (user 7 is
//! `user-7`, `user-7@example.com`), every call shape and no store, served under the
//! example's name `users`. The tests of the host's call path and the benchmarks use it,
//! so that what they measure is the host, not a store; `plugins/users` is the real one.

plugrpc_guest::include_proto!("user.v1");

use plugrpc_guest::details::ErrorDetails;
use plugrpc_guest::{Context, Requests, Sink, Status};
use prost_types::Timestamp;
use user_service_server::{UserService, UserServiceServer};

/// Creation time of every derived user: 2024-01-01T00:00:00Z.
const CREATED_AT_SECONDS: i64 = 1_704_067_200;

/// The UserService handlers.
#[derive(Default)]
struct Users;

fn user(id: i64) -> User {
    User {
        id,
        name: format!("user-{id}"),
        email: format!("user-{id}@example.com"),
        created_at: Some(Timestamp {
            seconds: CREATED_AT_SECONDS + id,
            nanos: 0,
        }),
    }
}

impl UserService for Users {
    fn get_user(&self, _cx: &Context, request: GetUserRequest) -> Result<User, Status> {
        if request.id <= 0 {
            return Err(
                Status::not_found(format!("no user with id {}", request.id)).with_details(
                    ErrorDetails::new().with_resource_info(
                        "user.v1.User",
                        request.id.to_string(),
                        "",
                        "ids start at 1",
                    ),
                ),
            );
        }
        Ok(user(request.id))
    }

    fn list_users(
        &self,
        _cx: &Context,
        request: ListUsersRequest,
        out: &mut Sink<User>,
    ) -> Result<(), Status> {
        if request.limit < 0 {
            return Err(Status::invalid_argument(format!(
                "limit must not be negative, got {}",
                request.limit
            )));
        }
        for id in 1..=i64::from(request.limit) {
            out.send(user(id))?;
        }
        Ok(())
    }

    fn create_users(
        &self,
        _cx: &Context,
        input: Requests<CreateUserRequest>,
    ) -> Result<CreateUsersResponse, Status> {
        let mut count = 0;
        for request in input {
            let request = request?;
            if request.email.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "user {:?} has an empty email",
                    request.name
                ))
                .with_details(
                    ErrorDetails::new().with_bad_request_violation("email", "must not be empty"),
                ));
            }
            count += 1;
        }
        Ok(CreateUsersResponse {
            count,
            users: Vec::new(),
        })
    }

    fn chat(
        &self,
        _cx: &Context,
        input: Requests<ChatMessage>,
        out: &mut Sink<ChatMessage>,
    ) -> Result<(), Status> {
        for message in input {
            let message = message?;
            out.send(ChatMessage {
                user: "users-plugin".to_owned(),
                text: format!("{} said: {}", message.user, message.text),
                sent_at: message.sent_at,
            })?;
        }
        Ok(())
    }
}

plugrpc_guest::export!(name: "users", stateless: UserServiceServer<Users>);
