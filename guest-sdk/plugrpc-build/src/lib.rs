//! Build-time code generation for plugrpc plugins, called from a plugin's `build.rs`:
//!
//! ```no_run
//! plugrpc_build::compile(&["../../proto/user/v1/user_service.proto"], &["../../proto"]).unwrap();
//! ```
//!
//! `.proto` files are compiled in pure Rust (protox; no `protoc` needed) into prost message
//! types, one blocking trait per service, the server that dispatches to it, and the
//! FileDescriptorSet the plugin hands the host (routing, reflection, validation).

mod service_gen;

use std::path::{Path, PathBuf};

use prost::Message;

/// Why code generation failed; shown by cargo as the build script's error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `.proto` file did not compile (the message names file, line and column).
    #[error("compiling .proto files: {0}")]
    Proto(#[from] protox::Error),
    /// Writing generated files failed.
    #[error("writing generated code: {0}")]
    Io(#[from] std::io::Error),
    /// Not run from a build script.
    #[error("OUT_DIR is not set: call plugrpc_build::compile from a build.rs")]
    NoOutDir,
}

/// The descriptor file name inside `OUT_DIR`, which generated servers embed.
pub const DESCRIPTOR_FILE: &str = "plugrpc_descriptor.bin";

/// Compiles `protos` (searching imports in `includes`) into `OUT_DIR`, for
/// `plugrpc_guest::include_proto!`.
pub fn compile(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<(), Error> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?);
    for path in protos
        .iter()
        .map(AsRef::as_ref)
        .chain(includes.iter().map(AsRef::as_ref))
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let fds = protox::compile(protos, includes)?;
    std::fs::write(out_dir.join(DESCRIPTOR_FILE), fds.encode_to_vec())?;

    prost_build::Config::new()
        .out_dir(&out_dir)
        .type_attribute(".", "#[allow(missing_docs)]")
        .service_generator(Box::new(service_gen::ServiceGen))
        .compile_fds(fds)?;
    Ok(())
}
