//! The `user.v1.UserService` example: a small user directory kept in the plugin's
//! key-value bucket (`[plugins.users.kv]` grants it), in every gRPC call shape.
//!
//! Layout of the bucket: `next_id` (a counter, incremented atomically for each new
//! user), `email/<email>` (the id that owns the address, claimed by compare-and-swap so
//! two creations cannot share one) and `user/<id, 20 digits>` (the `User` message; the
//! zero padding makes byte order id order, which ListUsers pages through).

plugrpc_guest::include_proto!("user.v1");

use std::time::{SystemTime, UNIX_EPOCH};

use plugrpc_guest::details::ErrorDetails;
use plugrpc_guest::kv::Bucket;
use plugrpc_guest::{Context, Requests, Sink, Status};
use prost_types::Timestamp;
use user_service_server::{UserService, UserServiceServer};

/// The counter key ids come from.
const NEXT_ID: &str = "next_id";

/// The UserService handlers; everything they keep is in the bucket.
#[derive(Default)]
struct Users;

/// The key of user `id`.
fn user_key(id: i64) -> String {
    format!("user/{id:020}")
}

/// The key that records who owns `email`.
fn email_key(email: &str) -> String {
    format!("email/{}", email.to_lowercase())
}

/// NOT_FOUND for `id`, saying which resource.
fn no_such_user(id: i64) -> Status {
    Status::not_found(format!("no user with id {id}")).with_details(
        ErrorDetails::new().with_resource_info(
            "user.v1.User",
            id.to_string(),
            "",
            "no user has this id",
        ),
    )
}

/// Now, as a protobuf timestamp.
fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// Takes over the claim `claim` for `id` when no stored user holds it (a call cut short
/// between claiming an address and storing its user leaves such a claim); whether it did.
fn take_stale(bucket: &Bucket, claim: &str, id: i64) -> Result<bool, Status> {
    let mut taken = false;
    bucket.update(claim, 3, |current| {
        taken = false;
        let owner = current
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.parse::<i64>().ok());
        if let Some(owner) = owner
            && bucket.exists(&user_key(owner))?
        {
            return Ok(None);
        }
        taken = true;
        Ok(Some(id.to_string().into_bytes()))
    })?;
    Ok(taken)
}

/// Users one ListUsers call streams at most: a page, within the plugin's operations
/// per call.
const MAX_PAGE: i32 = 1000;

/// Stores one new user: a fresh id, the email claimed, then the user.
fn create(bucket: &Bucket, request: CreateUserRequest) -> Result<User, Status> {
    if request.email.is_empty() {
        return Err(Status::invalid_argument(format!(
            "user {:?} has an empty email",
            request.name
        ))
        .with_details(
            ErrorDetails::new().with_bad_request_violation("email", "must not be empty"),
        ));
    }
    let id = bucket.increment(NEXT_ID, 1)?;
    let claim = email_key(&request.email);
    if !bucket.insert_new(&claim, id.to_string().as_bytes())? && !take_stale(bucket, &claim, id)? {
        return Err(Status::already_exists(format!(
            "a user with email {:?} exists already",
            request.email
        ))
        .with_details(ErrorDetails::new().with_resource_info(
            "user.v1.User",
            request.email,
            "",
            "emails are unique",
        )));
    }
    let user = User {
        id,
        name: request.name,
        email: request.email,
        created_at: Some(now()),
    };
    if let Err(status) = bucket.set_message(&user_key(id), &user) {
        // Give the address back: no user holds it.
        let _ = bucket.delete(&claim);
        return Err(status);
    }
    Ok(user)
}

impl UserService for Users {
    fn get_user(&self, _cx: &Context, request: GetUserRequest) -> Result<User, Status> {
        if request.id <= 0 {
            return Err(no_such_user(request.id));
        }
        Bucket::open_default()?
            .get_message(&user_key(request.id))?
            .ok_or_else(|| no_such_user(request.id))
    }

    fn list_users(
        &self,
        _cx: &Context,
        request: ListUsersRequest,
        out: &mut Sink<User>,
    ) -> Result<(), Status> {
        if request.limit < 0 || request.after_id < 0 {
            return Err(Status::invalid_argument(format!(
                "limit and after_id must not be negative, got {} and {}",
                request.limit, request.after_id
            )));
        }
        let bucket = Bucket::open_default()?;
        let mut left = usize::try_from(request.limit.min(MAX_PAGE)).unwrap_or(0);
        let mut cursor = Some(user_key(request.after_id));
        while left > 0 {
            let (keys, next) = bucket.keys(cursor.as_deref())?;
            let ours: Vec<String> = keys
                .into_iter()
                .take_while(|key| key.starts_with("user/"))
                .take(left)
                .collect();
            let done = ours.len() < left || next.is_none();
            for user in bucket.get_many(&ours)?.into_iter().flatten() {
                out.send(prost::Message::decode(user.as_slice())?)?;
                left -= 1;
            }
            if done {
                break;
            }
            cursor = ours.last().cloned();
        }
        Ok(())
    }

    fn create_users(
        &self,
        _cx: &Context,
        input: Requests<CreateUserRequest>,
    ) -> Result<CreateUsersResponse, Status> {
        let bucket = Bucket::open_default()?;
        let mut users = Vec::new();
        for request in input {
            users.push(create(&bucket, request?)?);
        }
        Ok(CreateUsersResponse {
            count: i32::try_from(users.len()).unwrap_or(i32::MAX),
            users,
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

plugrpc_guest::export!(stateless: UserServiceServer<Users>);
