//! Generates the probe.v1 messages, Probe trait and server (google/api's annotations
//! come from the repo's proto/).
fn main() {
    plugrpc_build::compile(
        &["../../proto/probe/v1/probe.proto"],
        &["../../proto", "../../../proto"],
    )
    .expect("probe.proto compiles");
}
