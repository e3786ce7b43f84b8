//! Generates the frontdesk.v1 service, and the clients of the services it calls.
fn main() {
    plugrpc_build::compile(
        &[
            "../../proto/frontdesk/v1/frontdesk.proto",
            "../../proto/user/v1/user_service.proto",
            "../../proto/helloworld/helloworld.proto",
        ],
        &["../../proto"],
    )
    .expect("frontdesk.proto and the protos it calls compile");
}
