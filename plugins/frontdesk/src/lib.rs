//! The `frontdesk.v1.FrontDesk` example: an API made of other services. Visitors are
//! users of the users plugin, called in process through the target `users` (the host's
//! `local` door); greetings come from a `helloworld.Greeter` reached over the network
//! through the target `greeter`. The config names the desk (`desk`), so the handler is
//! built from it.
//!
//! ```toml
//! [plugins.frontdesk.config]
//! desk = "Front desk"
//! [plugins.frontdesk.outbound.users]
//! endpoints = ["local"]
//! [plugins.frontdesk.outbound.greeter]
//! endpoints = ["http://127.0.0.1:50051"]
//! ```

plugrpc_guest::include_proto!("frontdesk.v1");

#[allow(unreachable_pub, missing_docs, dead_code)]
mod helloworld {
    plugrpc_guest::include_proto!("helloworld");
}

#[allow(unreachable_pub, missing_docs, dead_code)]
mod user {
    plugrpc_guest::include_proto!("user.v1");
}

use front_desk_server::{FrontDesk, FrontDeskServer};
use helloworld::HelloRequest;
use helloworld::greeter_client::GreeterClient;
use plugrpc_guest::{Config, Context, FromConfig, Status};
use user::user_service_client::UserServiceClient;
use user::{CreateUserRequest, GetUserRequest};

/// The desk: its name, and its clients of the services it is made of.
struct Desk {
    name: String,
    users: UserServiceClient,
    greeter: GreeterClient,
}

impl FromConfig for Desk {
    fn from_config(config: &Config) -> Result<Self, Status> {
        Ok(Self {
            name: config.get("desk").unwrap_or("Front desk").to_owned(),
            users: UserServiceClient::new("users"),
            greeter: GreeterClient::new("greeter"),
        })
    }
}

impl Desk {
    /// The greeter's greeting for `name`, signed by the desk.
    fn greet(&self, name: &str) -> Result<String, Status> {
        let reply = self.greeter.say_hello(&HelloRequest {
            name: name.to_owned(),
        })?;
        Ok(format!("{}: {}", self.name, reply.message))
    }
}

impl FrontDesk for Desk {
    fn check_in(&self, _cx: &Context, request: CheckInRequest) -> Result<CheckInReply, Status> {
        // The greeting first: a greeter that is down stores nobody.
        let greeting = self.greet(&request.name)?;
        let mut create = self.users.create_users()?;
        create.send(&CreateUserRequest {
            name: request.name,
            email: request.email,
        })?;
        let created = create.close_and_receive()?;
        let user = created
            .users
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("the users service stored no user"))?;
        Ok(CheckInReply {
            id: user.id,
            greeting,
        })
    }

    fn welcome(&self, _cx: &Context, request: WelcomeRequest) -> Result<WelcomeReply, Status> {
        let user = self.users.get_user(&GetUserRequest { id: request.id })?;
        Ok(WelcomeReply {
            greeting: self.greet(&user.name)?,
            email: user.email,
        })
    }
}

plugrpc_guest::export!(stateless: FrontDeskServer<Desk>);
