//! A real OCI registry for the plugin-source tests: Debian's `docker-registry`
//! (distribution 2.8), on a free loopback port with its storage in a temporary folder;
//! it can be stopped and started again on the same port, its content kept, to show a
//! host riding out an outage.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting registry gets to answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) registry.
pub struct OciRegistry {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OciRegistry {
    /// Starts a registry on a free loopback port. Fails the test, saying what to install,
    /// when `docker-registry` is missing.
    pub fn start() -> Self {
        Self::configured("")
    }

    /// Starts a registry serving HTTPS with the certificate `make_certs` made in
    /// `certs` (`server.crt`: localhost, 127.0.0.1), whose CA no system trusts.
    pub fn start_tls(certs: &std::path::Path) -> Self {
        Self::configured(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            certs.join("server.crt").display(),
            certs.join("server.key").display()
        ))
    }

    /// Starts a registry that asks for a password (HTTP basic auth): it, and the user
    /// and password it made up.
    pub fn start_with_password() -> (Self, String, String) {
        let registry =
            Self::configured("auth:\n  htpasswd:\n    realm: plugrpc-test\n    path: HTPASSWD\n");
        // The registry makes the file up, and says the password in its log.
        let log = std::fs::read_to_string(registry.dir.path().join("log")).unwrap_or_default();
        let field = |name: &str| {
            log.split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .map(|value| value.trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("no {name} in the registry's log: {log}"))
        };
        let (user, password) = (field("user"), field("password"));
        (registry, user, password)
    }

    fn configured(extra: &str) -> Self {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = extra.replace(
            "HTPASSWD",
            &dir.path().join("htpasswd").display().to_string(),
        );
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{extra}",
                dir.path().join("data").display()
            ),
        )
        .expect("write the registry's config");
        let mut registry = Self {
            addr,
            dir,
            child: None,
        };
        registry.restart();
        registry
    }

    /// `127.0.0.1:<port>`, the registry part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on its port, once it answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("log")).expect("the registry's log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting docker-registry ({error}): install it (apt-get install docker-registry)")
            });
        self.child = Some(child);
        let started = Instant::now();
        while !answers(self.addr) {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "docker-registry did not answer on {} within {START_TIMEOUT:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Pushes the plugin file `wasm` as `reference` (plain HTTP: the test registries are on
/// loopback); the manifest's digest.
pub async fn push(reference: &str, wasm: &std::path::Path) -> String {
    let plain = plugrpc::oci::Transport {
        insecure: true,
        ca: None,
    };
    push_by(reference, wasm, &plain).await
}

/// Pushes the plugin file `wasm` as `reference`, reaching the registry by `transport`;
/// the manifest's digest.
pub async fn push_by(
    reference: &str,
    wasm: &std::path::Path,
    transport: &plugrpc::oci::Transport,
) -> String {
    plugrpc::oci::Artifact::new(reference, transport)
        .await
        .unwrap()
        .push(std::fs::read(wasm).unwrap(), "test", Vec::new(), Vec::new())
        .await
        .unwrap()
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET /v2/` answers: 200; 401, asking for a password; 400, on TLS, refusing
/// plain HTTP.
fn answers(addr: SocketAddr) -> bool {
    let request = b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n";
    super::probe::ask(addr, request, Duration::from_secs(2)).is_some_and(|answer| {
        [
            "HTTP/1.0 200",
            "HTTP/1.1 200",
            "HTTP/1.0 401",
            "HTTP/1.1 401",
            "HTTP/1.0 400",
        ]
        .iter()
        .any(|status| answer.starts_with(status.as_bytes()))
    })
}
