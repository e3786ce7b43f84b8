//! Build-time code generation for plugrpc plugins, called from a plugin's `build.rs`:
//!
//! ```no_run
//! plugrpc_build::compile(&["../../proto/user/v1/user_service.proto"], &["../../proto"]).unwrap();
//! ```
//!
//! `.proto` files are compiled in pure Rust (protox; no `protoc` needed) into prost message
//! types, one blocking trait per service, the server that dispatches to it, and the
//! FileDescriptorSet the plugin hands the host (routing, reflection, validation).
//!
//! A `build.rs` may call [`compile`] several times (say, for protos under different
//! include roots); every server it generates reaches the plugin's manifest with its own
//! descriptors. Each call writes one `<package>.rs` per protobuf package it compiles, so a
//! package must be compiled by one call: a later call compiling it again replaces the
//! earlier one's code.

mod service_gen;

use std::path::{Path, PathBuf};

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

/// Compiles `protos` (searching imports in `includes`) into `OUT_DIR`, for
/// `plugrpc_guest::include_proto!`. A package must be compiled by one call only (see the
/// crate docs).
pub fn compile(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<(), Error> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?);
    for path in protos
        .iter()
        .map(AsRef::as_ref)
        .chain(includes.iter().map(AsRef::as_ref))
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut compiler = protox::Compiler::new(includes)?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(protos)?;
    let fds = compiler.file_descriptor_set();
    // Encoded by protox itself, not from `fds`: prost's option types would drop the
    // options' extensions (`google.api.http`), which the host reads.
    let descriptor = compiler.encode_file_descriptor_set();
    let descriptor_file = descriptor_file_name(&descriptor);
    std::fs::write(out_dir.join(&descriptor_file), descriptor)?;

    prost_build::Config::new()
        .out_dir(&out_dir)
        .type_attribute(".", "#[allow(missing_docs)]")
        .service_generator(Box::new(service_gen::ServiceGen { descriptor_file }))
        .compile_fds(fds)?;
    Ok(())
}

/// The `OUT_DIR` file name for an encoded descriptor set: named by its content, so the
/// sets of several `compile` calls sit side by side and each server embeds its own.
fn descriptor_file_name(descriptor: &[u8]) -> String {
    format!("plugrpc_descriptor_{:016x}.bin", fnv1a(descriptor))
}

/// 64-bit FNV-1a: a stable content hash for file names, not for security.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn descriptor_files_are_named_by_content() {
        assert_eq!(
            descriptor_file_name(b"a"),
            "plugrpc_descriptor_af63dc4c8601ec8c.bin"
        );
        assert_ne!(descriptor_file_name(b"a"), descriptor_file_name(b"b"));
    }
}
