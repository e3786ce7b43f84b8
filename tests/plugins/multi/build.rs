//! Generates multi.alpha.v1 and multi.beta.v1 in two `compile` calls: both services must
//! reach the manifest.
fn main() {
    plugrpc_build::compile(&["../../proto/multi/v1/alpha.proto"], &["../../proto"])
        .expect("alpha.proto compiles");
    plugrpc_build::compile(&["../../proto/multi/v1/beta.proto"], &["../../proto"])
        .expect("beta.proto compiles");
}
