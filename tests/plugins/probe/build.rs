//! Generates the probe.v1 messages, Probe trait and server.
fn main() {
    plugrpc_build::compile(&["../../proto/probe/v1/probe.proto"], &["../../proto"])
        .expect("probe.proto compiles");
}
