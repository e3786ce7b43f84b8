//! Plugins as OCI artifacts, in the Wasm OCI artifact layout (CNCF TAG Runtime; what
//! `wkg`, wasmCloud and `oras` use): an image manifest whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the component,
//! `application/wasm`. Pushed by `plugrpc push`, pulled by a tenant's `[sources]`; every
//! pull is pinned to the manifest's digest and the layer checked against its own.
//! Credentials come from `PLUGRPC_REGISTRY_USERNAME`/`PLUGRPC_REGISTRY_PASSWORD`, else the
//! Docker config file (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, helpers
//! included); TLS to the registry, trusting the system's roots and a `ca` of the
//! source's, unless it says `insecure` (a loopback or test registry).

use std::collections::BTreeMap;

use futures::StreamExt as _;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;

/// The config blob's media type in the Wasm OCI artifact layout.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type in the Wasm OCI artifact layout.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The largest plugin pulled: past it the registry's answer is refused, not buffered.
pub const MAX_PLUGIN_SIZE: u64 = 256 << 20;

/// Why a push or pull failed; one line naming the reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error("{reference:?} is not an OCI reference (registry/repository:tag): {reason}")]
    Reference {
        /// What was given.
        reference: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The registry refused or could not be reached.
    #[error("{reference}: {source}")]
    Registry {
        /// The artifact.
        reference: String,
        /// What the registry (or the way to it) said.
        source: oci_client::errors::OciDistributionError,
    },
    /// The artifact is not a Wasm component in the Wasm OCI artifact layout.
    #[error("{reference}: not a Wasm component artifact: {reason}")]
    NotWasm {
        /// The artifact.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a registry is reached: TLS, trusting the system's roots and `ca`, or plain HTTP
/// when `insecure`.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Plain HTTP: a loopback or test registry, never a shared network.
    pub insecure: bool,
    /// PEM CA certificates the registry's certificate may chain to besides the system's
    /// roots (a private registry's own CA).
    pub ca: Option<Vec<u8>>,
}

impl Transport {
    /// Plain HTTP when `insecure`, else TLS trusting also the CA certificates in the
    /// PEM file `ca`, if any; an error says what is wrong with the file.
    pub fn new(insecure: bool, ca: Option<&std::path::Path>) -> Result<Self, String> {
        let ca = ca
            .map(crate::outbound::connect::read_certificates)
            .transpose()?;
        Ok(Self { insecure, ca })
    }
}

/// A registry client for one artifact, with the credentials the Docker config holds for
/// its registry.
pub struct Artifact {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl Artifact {
    /// The artifact `reference` names, its registry reached as `transport` says.
    pub async fn new(reference: &str, transport: &Transport) -> Result<Self, OciError> {
        let invalid = |reason: String| OciError::Reference {
            reference: reference.to_owned(),
            reason,
        };
        let parsed: Reference = reference
            .parse()
            .map_err(|error: oci_client::ParseError| invalid(error.to_string()))?;
        // reqwest's rustls has no provider of its own here: the host's (ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = parsed.resolve_registry().to_owned();
        let client = Client::try_from(ClientConfig {
            protocol: if transport.insecure {
                ClientProtocol::HttpsExcept(vec![registry.clone()])
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: transport
                .ca
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            ..ClientConfig::default()
        })
        .map_err(|source| OciError::Registry {
            reference: reference.to_owned(),
            source,
        })?;
        // Credential helpers are programs: off the async workers.
        let auth = tokio::task::spawn_blocking(move || credentials(&registry))
            .await
            .unwrap_or(RegistryAuth::Anonymous);
        Ok(Self {
            client,
            reference: parsed,
            auth,
        })
    }

    fn failed(&self, source: oci_client::errors::OciDistributionError) -> OciError {
        OciError::Registry {
            reference: self.reference.to_string(),
            source,
        }
    }

    fn not_wasm(&self, reason: impl Into<String>) -> OciError {
        OciError::NotWasm {
            reference: self.reference.to_string(),
            reason: reason.into(),
        }
    }

    /// The digest the reference's tag points at now (a HEAD of the manifest).
    pub async fn digest(&self) -> Result<String, OciError> {
        self.client
            .fetch_manifest_digest(&self.reference, &self.auth)
            .await
            .map_err(|error| self.failed(error))
    }

    /// The component at the manifest `digest` (pinned: a tag moved meanwhile is not
    /// followed), its layer checked against the manifest's digest of it and its size.
    pub async fn pull(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let pinned = self.reference.clone_with_digest(digest.to_owned());
        let (manifest, pulled) = self
            .client
            .pull_image_manifest(&pinned, &self.auth)
            .await
            .map_err(|error| self.failed(error))?;
        if pulled != digest {
            return Err(self.not_wasm(format!("manifest digest {pulled}, expected {digest}")));
        }
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            return Err(self.not_wasm(format!(
                "its config is {:?}, not {WASM_CONFIG_MEDIA_TYPE}",
                manifest.config.media_type
            )));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(self.not_wasm(format!(
                "{} layers, where the layout has one",
                manifest.layers.len()
            )));
        };
        if layer.media_type != WASM_LAYER_MEDIA_TYPE {
            return Err(self.not_wasm(format!(
                "its layer is {:?}, not {WASM_LAYER_MEDIA_TYPE}",
                layer.media_type
            )));
        }
        let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
        if size > MAX_PLUGIN_SIZE {
            return Err(self.not_wasm(format!(
                "its layer of {size} bytes is over the {MAX_PLUGIN_SIZE} a plugin may be"
            )));
        }
        let mut stream = self
            .client
            .pull_blob_stream(&pinned, layer)
            .await
            .map_err(|error| self.failed(error))?;
        let mut wasm = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // The stream checks the bytes against the layer's digest (sha256 or sha512): its
        // last item is an error when they do not match.
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|error| self.not_wasm(format!("reading its layer: {error}")))?;
            if (wasm.len() + chunk.len()) as u64 > size {
                return Err(self.not_wasm("its layer is longer than its descriptor says"));
            }
            wasm.extend_from_slice(&chunk);
        }
        Ok(wasm)
    }

    /// Pushes `wasm` (a component exporting `exports` and importing `imports`, version
    /// `version`) as the artifact; the manifest's digest.
    pub async fn push(
        &self,
        wasm: Vec<u8>,
        version: &str,
        exports: Vec<String>,
        imports: Vec<String>,
    ) -> Result<String, OciError> {
        let config = WasmConfig {
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            author: None,
            architecture: "wasm",
            os: "wasip2",
            layer_digests: vec![sha256(&wasm)],
            component: Some(ComponentInfo { exports, imports }),
        };
        let config = Config::new(
            serde_json::to_vec(&config).unwrap_or_default(),
            WASM_CONFIG_MEDIA_TYPE.to_owned(),
            None,
        );
        let title = self
            .reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or("plugin");
        let layer = ImageLayer::new(
            wasm,
            WASM_LAYER_MEDIA_TYPE.to_owned(),
            Some(BTreeMap::from([(
                "org.opencontainers.image.title".to_owned(),
                format!("{title}.wasm"),
            )])),
        );
        let mut manifest = OciImageManifest::build(
            std::slice::from_ref(&layer),
            &config,
            Some(BTreeMap::from([(
                "org.opencontainers.image.version".to_owned(),
                version.to_owned(),
            )])),
        );
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_owned());
        // The manifest's bytes are ours: their digest is the one the registry keeps.
        let body = serde_json::to_vec(&OciManifest::Image(manifest.clone())).unwrap_or_default();
        let digest = sha256(&body);
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let reference = &self.reference;
        self.client
            .push_blob(reference, layer.data, &manifest.layers[0].digest)
            .await
            .map_err(|error| self.failed(error))?;
        self.client
            .push_blob(reference, config.data, &manifest.config.digest)
            .await
            .map_err(|error| self.failed(error))?;
        self.client
            .push_manifest_raw(
                reference,
                body,
                http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
            )
            .await
            .map_err(|error| self.failed(error))?;
        Ok(digest)
    }
}

/// The config blob of the Wasm OCI artifact layout.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    author: Option<String>,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
    component: Option<ComponentInfo>,
}

/// What a component exports and imports, for the layout's config.
#[derive(Serialize)]
struct ComponentInfo {
    exports: Vec<String>,
    imports: Vec<String>,
}

/// `sha256:<hex>` of `bytes`, as OCI digests are written (the host's content hash).
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", plugrpc_runtime::content_hash(bytes))
}

/// The credentials for `registry`: `PLUGRPC_REGISTRY_USERNAME` and
/// `PLUGRPC_REGISTRY_PASSWORD` when both are set (a CI job, a pod's Secret), else what the
/// Docker config holds for it (anonymous when nothing, or a token this client cannot use).
fn credentials(registry: &str) -> RegistryAuth {
    if let (Ok(user), Ok(password)) = (
        std::env::var("PLUGRPC_REGISTRY_USERNAME"),
        std::env::var("PLUGRPC_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(user, password);
    }
    let key = match registry {
        "index.docker.io" | "docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    match docker_credential::get_credential(key) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        _ => RegistryAuth::Anonymous,
    }
}
