//! TLS on the listener: a rustls server config built from `[tls]`'s files (ring, TLS 1.2
//! and 1.3, ALPN h2 and http/1.1, client certificates checked against `client_ca`), and
//! watched: when a file changes, new handshakes use the new certificate, key or CA while
//! connections already open go on. A change that does not load is logged and the
//! current config kept, so a half-written rotation never takes the listener down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

/// How often the files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Why a TLS config could not be built: the key, the file and the problem, one line.
#[derive(Debug, thiserror::Error)]
#[error("tls.{key}: {path}: {problem}")]
pub struct TlsError {
    key: &'static str,
    path: String,
    problem: String,
}

impl TlsError {
    fn new(key: &'static str, path: &Path, problem: impl ToString) -> Self {
        Self {
            key,
            path: path.display().to_string(),
            problem: problem.to_string(),
        }
    }
}

/// The listener's TLS: the config new handshakes use, kept current by a watch task.
pub(crate) struct Tls {
    current: Arc<ArcSwap<ServerConfig>>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl Tls {
    /// Loads `config`'s files and starts watching them.
    pub(crate) fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        let current = Arc::new(ArcSwap::new(server_config(config)?));
        let watch = tokio::spawn(watch(config.clone(), current.clone()));
        Ok(Self { current, watch })
    }

    /// An acceptor with the config as it is now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// Rebuilds the config whenever a file's size or modification time changes; the file
/// work runs on the blocking pool, off the threads that serve calls.
async fn watch(config: TlsConfig, current: Arc<ArcSwap<ServerConfig>>) {
    let config = Arc::new(config);
    let mut seen = stamps(&config);
    let mut ticks = tokio::time::interval(RELOAD_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let check = {
            let (config, seen) = (config.clone(), seen.clone());
            tokio::task::spawn_blocking(move || {
                let now = stamps(&config);
                let reloaded = (now != seen).then(|| server_config(&config));
                (now, reloaded)
            })
        };
        let Ok((now, Some(reloaded))) = check.await else {
            continue;
        };
        seen = now;
        match reloaded {
            Ok(reloaded) => {
                current.store(reloaded);
                tracing::info!("TLS files changed: new handshakes use them");
            }
            Err(error) => {
                tracing::warn!(
                    "TLS files changed but do not load, keeping the current ones: {error}"
                );
            }
        }
    }
}

/// Size and modification time of each file, as far as they can be read.
fn stamps(config: &TlsConfig) -> Vec<Option<(u64, SystemTime)>> {
    files(config)
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

fn files(config: &TlsConfig) -> impl Iterator<Item = &PathBuf> {
    [&config.cert, &config.key]
        .into_iter()
        .chain(&config.client_ca)
}

/// The rustls config `[tls]` describes.
pub(crate) fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::new("cert", &config.cert, e))?;
    let builder = match (&config.client_ca, config.client_auth()) {
        (Some(ca), Some(auth)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::new("client_ca", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::new("client_ca", ca, e))?,
            )
        }
        _ => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&config.key)
        .map_err(|e| TlsError::new("key", &config.key, pem_problem(e, "PRIVATE KEY")))?;
    let mut server = builder
        .with_single_cert(certificates("cert", &config.cert)?, key)
        .map_err(|e| {
            TlsError::new(
                "key",
                &config.key,
                format!("does not go with tls.cert {}: {e}", config.cert.display()),
            )
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The PEM certificates of a file; none is an error.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(key, path, pem_problem(e, "CERTIFICATE")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(key, path, pem_problem(e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(TlsError::new(key, path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// A PEM error as an operator reads it.
fn pem_problem(error: rustls::pki_types::pem::Error, expected: &str) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(error) => format!("cannot read: {error}"),
        Error::NoItemsFound => format!("no {expected} in the file"),
        other => format!("not valid PEM: {other}"),
    }
}
