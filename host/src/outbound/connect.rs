//! Channels to one endpoint address: plaintext HTTP/2, or TLS with the target's trust,
//! client certificate and server name. Certificate files are read once, when the target
//! is built, so a bad file stops the host at start, naming the file; connections are
//! made lazily, so a server that is down does not.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::TargetError;
use crate::config::{EndpointHost, EndpointUrl, OutboundTarget, OutboundTls};

/// How long one connection attempt (TCP and TLS handshakes) may take: a loopback or
/// data-centre connect takes milliseconds, and this still rides out two lost SYNs
/// (retransmitted after 1 s and 3 s); a call's own deadline cuts it shorter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive on every connection, so a peer that vanished is noticed on an idle
/// connection. HTTP/2 pings are not used: grpc-go servers answer a client that pings
/// more often than every 5 minutes with GOAWAY `too_many_pings`.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// What calls to the target's endpoints are sent with: the `user-agent`.
const USER_AGENT: &str = concat!("plugrpc/", env!("CARGO_PKG_VERSION"));

/// Builds the channel of each endpoint address of one target.
pub(super) struct Dialer {
    alias: String,
    /// The TLS settings `https` endpoints use, without a server name (set per endpoint).
    tls: ClientTlsConfig,
    /// `tls.server_name`, else each endpoint's host.
    server_name: Option<String>,
}

impl Dialer {
    /// Reads the target's certificate files; an error names the key and the file.
    pub(super) fn new(alias: &str, config: &OutboundTarget) -> Result<Self, TargetError> {
        let table = config.tls.clone().unwrap_or_default();
        let tls = client_tls(&table).map_err(|file| TargetError::Tls {
            alias: alias.to_owned(),
            key: file.key,
            path: file.path,
            problem: file.problem,
        })?;
        let dialer = Self {
            alias: alias.to_owned(),
            tls,
            server_name: table.server_name,
        };
        // Every https endpoint's TLS is built now, so what the files hold that rustls
        // refuses (a key that does not go with its certificate) stops the start too.
        if let crate::config::Endpoints::Remote(urls) = &config.endpoints {
            for url in urls.iter().filter(|url| url.tls) {
                dialer.endpoint(url, SocketAddr::from(([127, 0, 0, 1], url.port)))?;
            }
        }
        Ok(dialer)
    }

    /// A channel to `addr`, one of `url`'s addresses; it connects on its first call and
    /// reconnects when the connection is lost. Calls on it share one HTTP/2 connection.
    pub(super) fn channel(
        &self,
        url: &EndpointUrl,
        addr: SocketAddr,
    ) -> Result<Channel, TargetError> {
        Ok(self.endpoint(url, addr)?.connect_lazy())
    }

    fn endpoint(&self, url: &EndpointUrl, addr: SocketAddr) -> Result<Endpoint, TargetError> {
        let scheme = if url.tls { "https" } else { "http" };
        let bad = |problem: String| TargetError::Endpoint {
            alias: self.alias.clone(),
            endpoint: url.to_string(),
            problem,
        };
        let origin: http::Uri = url.to_string().parse().map_err(|e| bad(format!("{e}")))?;
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| bad(e.to_string()))?
            .origin(origin)
            .user_agent(USER_AGENT)
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Some(TCP_KEEPALIVE));
        if !url.tls {
            return Ok(endpoint);
        }
        let name = match (&self.server_name, &url.host) {
            (Some(name), _) => name.clone(),
            (None, EndpointHost::Name(name)) => name.clone(),
            (None, EndpointHost::Ip(ip)) => ip.to_string(),
        };
        endpoint
            .tls_config(self.tls.clone().domain_name(name))
            .map_err(|e| TargetError::Endpoint {
                alias: self.alias.clone(),
                endpoint: url.to_string(),
                problem: format!("TLS: {}", source_chain(&e)),
            })
    }
}

/// A certificate or key file of a `tls` table that does not load.
#[derive(Debug)]
pub(crate) struct BadTlsFile {
    /// The key that names the file (`ca`, `cert`, `key`).
    pub(crate) key: &'static str,
    /// The file.
    pub(crate) path: String,
    /// What is wrong with it.
    pub(crate) problem: String,
}

/// The client side of TLS as `table` sets it, its files read now: servers chain to its
/// `ca` (else the public web roots), and its `cert` and `key` are shown when asked.
/// Outbound targets and the OTLP exporter share it.
pub(crate) fn client_tls(table: &OutboundTls) -> Result<ClientTlsConfig, BadTlsFile> {
    let bad = |key, path: &Path| {
        let path = path.display().to_string();
        move |problem| BadTlsFile { key, path, problem }
    };
    let mut tls = ClientTlsConfig::new();
    match &table.ca {
        Some(ca) => {
            let pem = read_certificates(ca).map_err(bad("ca", ca))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        None => tls = tls.with_webpki_roots(),
    }
    if let (Some(cert), Some(key)) = (&table.cert, &table.key) {
        let cert_pem = read_certificates(cert).map_err(bad("cert", cert))?;
        let key_pem = read_key(key).map_err(bad("key", key))?;
        tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(tls)
}

/// The PEM text of a file holding at least one certificate.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in the file".into());
    }
    Ok(pem)
}

/// The PEM text of a file holding a private key.
fn read_key(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY in the file".to_owned(),
        other => format!("not valid PEM: {other}"),
    })?;
    Ok(pem)
}

/// An error and its causes, on one line.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
