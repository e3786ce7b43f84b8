//! The services built into the host, beside what plugins serve: `grpc.health.v1.Health`
//! and server reflection (`grpc.reflection.v1` and `v1alpha`), answered from the live
//! routing table. Each answer shows a caller only the services it may call on the host
//! it asked (the `allow` rules and tenants' `hosts`), and follows every reload.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::hosts::host_of;
use crate::identity::CallerIdentity;
use crate::registry::Registry;

pub(crate) mod health;
pub(crate) mod reflection;

/// Generated from the vendored protos in `proto/grpc/`.
pub(crate) mod pb {
    /// `grpc.health.v1`.
    pub(crate) mod health {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.health.v1");
    }
    /// `grpc.reflection.v1`.
    pub(crate) mod reflection {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.reflection.v1");
    }
    /// `grpc.reflection.v1alpha`.
    pub(crate) mod reflection_v1alpha {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        tonic::include_proto!("grpc.reflection.v1alpha");
    }
}

/// The encoded `FileDescriptorSet` of the built-in services' protos.
pub(crate) const DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/builtin_descriptors.bin"));

/// A generated server that takes and sends compressed messages in every encoding the
/// host speaks.
macro_rules! compressed {
    ($server:expr) => {
        $server
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Deflate)
            .send_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Deflate)
    };
}

/// The built-in services, ready for the router; `health` is kept by the host to turn
/// everything NOT_SERVING at shutdown.
pub(crate) fn routes(registry: &Arc<Registry>, health: &health::HealthService) -> Routes {
    use pb::health::health_server::HealthServer;
    use pb::reflection::server_reflection_server::ServerReflectionServer;
    use pb::reflection_v1alpha::server_reflection_server::ServerReflectionServer as V1Alpha;
    let reflection = reflection::Reflection::new(registry.clone());
    Routes::new(Viewed(compressed!(HealthServer::new(health.clone()))))
        .add_service(Viewed(compressed!(ServerReflectionServer::new(
            reflection.clone()
        ))))
        .add_service(Viewed(compressed!(V1Alpha::new(reflection::V1Alpha(
            reflection
        )))))
}

/// Who asks, and for which host: what decides the services a built-in answer shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Viewer {
    /// The caller's identity, if it proved one.
    pub(crate) identity: Option<Arc<str>>,
    /// The host the request named (`:authority`), without its port.
    pub(crate) host: Option<String>,
}

impl Viewer {
    /// The viewer of a request that went through [`Viewed`].
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_default()
    }
}

/// Puts the request's [`Viewer`] in its extensions for the generated server inside, which
/// sees neither the URI nor the connection.
#[derive(Clone)]
pub(crate) struct Viewed<S>(S);

impl<S: NamedService> NamedService for Viewed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Viewed<S>
where
    S: tower::Service<http::Request<B>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let authority = request.uri().authority().map(|a| a.as_str().to_owned());
        let authority = authority.or_else(|| {
            let host = request.headers().get(http::header::HOST)?;
            host.to_str().ok().map(str::to_owned)
        });
        let viewer = Viewer {
            identity: request
                .extensions()
                .get::<CallerIdentity>()
                .map(|caller| caller.identity.clone()),
            host: authority.as_deref().and_then(host_of),
        };
        request.extensions_mut().insert(viewer);
        self.0.call(request)
    }
}
