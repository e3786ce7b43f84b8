//! Generates the helloworld and probe messages, traits and servers.
fn main() {
    plugrpc_build::compile(
        &[
            "../../../proto/helloworld/helloworld.proto",
            "../../proto/probe/v1/probe.proto",
        ],
        &["../../../proto", "../../proto"],
    )
    .expect("helloworld.proto and probe.proto compile");
}
