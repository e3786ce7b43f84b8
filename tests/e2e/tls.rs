//! TLS, mTLS and caller identity with real clients (tonic over rustls here, grpcio in
//! python_client.rs), on certificates made by the repo's own script.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plugrpc_tests::pb::probe::probe_client::ProbeClient;
use plugrpc_tests::pb::probe::{EchoReply, EchoRequest};
use plugrpc_tests::pb::user::ChatMessage;
use plugrpc_tests::pb::user::user_service_client::UserServiceClient;
use plugrpc_tests::{TestHost, make_certs};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::{Code, Request};

use crate::plugins::{PROBE, USERS_FIXTURE};

const PATIENCE: Duration = Duration::from_secs(20);

/// A `[tls]` table for the certificates in `certs`, with `extra` lines.
fn tls_config(certs: &Path, extra: &str) -> String {
    let file = |name: &str| certs.join(name).display().to_string();
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{extra}\n",
        file("server.crt"),
        file("server.key")
    )
}

/// A client config trusting the test CA, with `client` (`"client"`, `"other-client"`)'s
/// certificate when given.
fn client_tls(certs: &Path, client: Option<&str>) -> ClientTlsConfig {
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.crt")));
    match client {
        Some(name) => tls.identity(Identity::from_pem(
            read(&format!("{name}.crt")),
            read(&format!("{name}.key")),
        )),
        None => tls,
    }
}

/// One Echo call over `channel`.
async fn echo(
    channel: tonic::transport::Channel,
    metadata: &[(&'static str, &str)],
) -> Result<EchoReply, tonic::Status> {
    let mut request = Request::new(EchoRequest {
        text: "hi".into(),
        count: 1,
    });
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    ProbeClient::new(channel)
        .echo(request)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_names_the_caller_by_its_certificate_and_refuses_strangers() {
    let certs = make_certs();
    let ca = certs.path().join("ca.crt").display().to_string();
    let host = TestHost::with_config(
        &[PROBE],
        &tls_config(certs.path(), &format!("client_ca = {ca:?}")),
    )
    .await;

    let channel = host
        .tls_channel(client_tls(certs.path(), Some("client")))
        .await
        .expect("a trusted client connects");
    let reply = echo(channel, &[])
        .await
        .expect("a trusted client is served");
    assert_eq!(
        reply.caller, "spiffe://example.org/client",
        "the plugin sees the certificate's URI SAN"
    );

    // With TLS 1.3 the refusal arrives after the client's side of the handshake: the
    // call is what fails, with a transport error whose code varies.
    for stranger in [None, Some("other-client")] {
        let refused = match host.tls_channel(client_tls(certs.path(), stranger)).await {
            Ok(channel) => echo(channel, &[]).await.err(),
            Err(_) => Some(tonic::Status::unavailable("handshake refused")),
        };
        assert!(refused.is_some(), "{stranger:?} must not be served");
    }

    // Plaintext to the TLS port is not served either.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", host.addr()))
        .unwrap()
        .connect_lazy();
    let plain = echo(plain, &[]).await;
    assert!(plain.is_err(), "plaintext on a TLS port: {plain:?}");

    // Refusing them was about them: the trusted client is still served.
    let channel = host
        .tls_channel(client_tls(certs.path(), Some("client")))
        .await
        .unwrap();
    assert!(echo(channel, &[]).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_client_auth_serves_callers_without_a_certificate_as_anonymous() {
    let certs = make_certs();
    let ca = certs.path().join("ca.crt").display().to_string();
    let host = TestHost::with_config(
        &[PROBE],
        &tls_config(
            certs.path(),
            &format!("client_ca = {ca:?}\nclient_auth = \"optional\""),
        ),
    )
    .await;
    let anonymous = host
        .tls_channel(client_tls(certs.path(), None))
        .await
        .unwrap();
    assert_eq!(echo(anonymous, &[]).await.unwrap().caller, "");
    let named = host
        .tls_channel(client_tls(certs.path(), Some("client")))
        .await
        .unwrap();
    assert_eq!(
        echo(named, &[]).await.unwrap().caller,
        "spiffe://example.org/client"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_names_the_caller_and_a_wrong_one_is_unauthenticated() {
    let hash = format!("{:x}", Sha256::digest(b"s3cret-key"));
    let host = TestHost::with_config(&[PROBE], &format!("[api_keys]\nci = {hash:?}\n")).await;

    let reply = echo(
        host.channel().await,
        &[("authorization", "Bearer s3cret-key")],
    )
    .await
    .expect("a known key is served");
    assert_eq!(reply.caller, "key:ci");
    assert!(
        reply
            .metadata
            .iter()
            .all(|pair| pair.key != "authorization"),
        "the key never reaches the plugin: {:?}",
        reply.metadata
    );

    let wrong = echo(
        host.channel().await,
        &[("authorization", "Bearer s3cret-kez")],
    )
    .await
    .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    assert_eq!(
        wrong.message(),
        "the bearer key is not one of the host's API keys"
    );

    let anonymous = echo(host.channel().await, &[]).await.unwrap();
    assert_eq!(anonymous.caller, "", "no key: an anonymous caller");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_handshake_that_never_comes_is_dropped_after_handshake_timeout() {
    let certs = make_certs();
    let host = TestHost::with_config(
        &[PROBE],
        &format!(
            "{}\n[edge]\nhandshake_timeout = \"300ms\"\n",
            tls_config(certs.path(), "")
        ),
    )
    .await;
    let mut silent = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read(&mut silent, &mut byte),
    )
    .await
    .expect("the host closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_serves_new_handshakes_while_an_open_stream_goes_on() {
    let certs = make_certs();
    let host = TestHost::with_config(&[USERS_FIXTURE], &tls_config(certs.path(), "")).await;
    let channel = host
        .tls_channel(client_tls(certs.path(), None))
        .await
        .unwrap();
    let mut users = UserServiceClient::new(channel);
    let (outbox, messages) = mpsc::channel(4);
    let mut replies = users
        .chat(ReceiverStream::new(messages))
        .await
        .unwrap()
        .into_inner();
    let say = |text: &str| ChatMessage {
        user: "ada".into(),
        text: text.into(),
        ..Default::default()
    };
    outbox.send(say("before")).await.unwrap();
    assert!(
        replies
            .message()
            .await
            .unwrap()
            .unwrap()
            .text
            .contains("before")
    );

    // Rotate to certificates from a new CA: write the files aside, then rename them in.
    let rotated = make_certs();
    for name in ["server.key", "server.crt"] {
        let aside = certs.path().join(format!("{name}.new"));
        std::fs::copy(rotated.path().join(name), &aside).unwrap();
        std::fs::rename(&aside, certs.path().join(name)).unwrap();
    }
    let new_leaf = pem_leaf(&rotated.path().join("server.crt"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while served_leaf(&host, &rotated.path().join("ca.crt")).await != Some(new_leaf.clone()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new handshakes never got the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    outbox.send(say("after")).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, replies.message())
        .await
        .unwrap()
        .expect("the stream opened before the rotation goes on")
        .unwrap();
    assert!(reply.text.contains("after"), "{reply:?}");
}

/// The DER of the first certificate of a PEM file.
fn pem_leaf(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// The certificate a fresh handshake trusting `ca` gets, if the handshake succeeds.
async fn served_leaf(host: &TestHost, ca: &Path) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(host.addr()).await.ok()?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}
