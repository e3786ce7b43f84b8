//! Throwaway certificates for the TLS tests, shared with the binary's tests (which
//! include this file).

use std::path::Path;

/// Throwaway certificates, made by the repo's own `examples/tls/make-certs.sh`: `ca`,
/// `server` (localhost, 127.0.0.1), `client` (URI SAN `spiffe://example.org/client`),
/// and `other-ca` with `other-client`, which a host trusting `ca` must refuse.
pub fn make_certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tls/make-certs.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("bash runs (the script needs the openssl command)");
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}
