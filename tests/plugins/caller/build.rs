//! Generates the caller.v1 service and the helloworld and user.v1 clients it calls.
fn main() {
    plugrpc_build::compile(
        &[
            "../../proto/caller/v1/caller.proto",
            "../../../proto/helloworld/helloworld.proto",
            "../../../proto/user/v1/user_service.proto",
        ],
        &["../../proto", "../../../proto"],
    )
    .expect("caller.proto and the services it calls compile");
}
