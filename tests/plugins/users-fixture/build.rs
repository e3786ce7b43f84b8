//! Generates the user.v1 messages, UserService trait and server from proto/.
fn main() {
    plugrpc_build::compile(
        &["../../../proto/user/v1/user_service.proto"],
        &["../../../proto"],
    )
    .expect("user_service.proto compiles");
}
