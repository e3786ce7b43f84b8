//! Front doors: each turns one wire protocol into calls of the runtime's call core and
//! writes their responses back, on the one port, for every plugin, from the plugin's
//! descriptors alone. A request goes to the door its content-type names:
//!
//! - `application/grpc...` (HTTP/2): [`grpc`];
//! - `application/grpc-web...` (HTTP/1.1 or 2, binary or base64 text): [`grpc_web`];
//! - `application/connect+...` (streams): [`connect`];
//! - a verb and path a plugin's `google.api.http` annotation binds: [`transcode`];
//! - `application/proto`, `application/json` (unary POST), a GET with a `message`
//!   query: [`connect`];
//! - anything else: 415, naming what the host speaks.
//!
//! A CORS preflight is answered before any door ([`cors`]), and a web response to an
//! allowed origin is marked for its page.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::config::HostConfig;
use crate::registry::{self, Registry};
use crate::status;

pub(crate) mod connect;
pub(crate) mod cors;
pub(crate) mod envelope;
pub(crate) mod front;
pub(crate) mod grpc;
pub(crate) mod grpc_web;
pub(crate) mod http_rule;
pub(crate) mod json;
pub(crate) mod request_buffer;
pub(crate) mod response;
pub(crate) mod transcode;

use front::Front;
use grpc::HttpResponse;

/// Every door, behind one service: the router's fallback for every path the built-in
/// services do not take.
#[derive(Clone)]
pub(crate) struct Doors {
    front: Front,
    cors: Arc<cors::Cors>,
}

impl Doors {
    pub(crate) fn new(registry: Arc<Registry>, config: &HostConfig) -> Self {
        Self {
            front: Front::new(registry, &config.edge, &config.compression),
            cors: Arc::new(cors::Cors::new(config)),
        }
    }
}

/// The door a request is for.
enum Door {
    Grpc,
    GrpcWeb {
        text: bool,
    },
    /// Connect, with the route of the request's path when one serves it.
    Connect(Option<connect::Kind>, Option<registry::Route>),
    Transcode(registry::Transcoded),
    None,
}

impl Doors {
    fn door(&self, parts: &http::request::Parts) -> Door {
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(http::HeaderValue::as_bytes);
        let connect = content_type.and_then(connect::kind);
        if let Some(value) = content_type {
            if grpc::is_grpc(value) {
                return Door::Grpc;
            }
            if let Some(text) = grpc_web::kind(value) {
                return Door::GrpcWeb { text };
            }
        }
        // A method's own path is Connect's, whatever a binding's template would also
        // match; the route found is the call's (not looked up again).
        let connect_call = connect.is_some() || connect::is_get(parts);
        let route = connect_call
            .then(|| {
                self.front
                    .registry()
                    .lookup(parts.uri.path(), || front::request_host(parts))
            })
            .flatten();
        if route.is_some() || matches!(connect, Some(connect::Kind::Streaming(_))) {
            return Door::Connect(connect, route);
        }
        let transcoded = self
            .front
            .registry()
            .transcode(&parts.method, parts.uri.path(), || {
                front::request_host(parts)
            });
        match (transcoded, connect) {
            (Some(transcoded), _) => Door::Transcode(transcoded),
            (None, Some(kind)) => Door::Connect(Some(kind), None),
            (None, None) if connect::is_get(parts) => Door::Connect(None, None),
            (None, None) => Door::None,
        }
    }
}

impl<B> tower::Service<http::Request<B>> for Doors
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let doors = self.clone();
        Box::pin(async move { Ok(doors.serve(request).await) })
    }
}

impl Doors {
    async fn serve<B>(&self, request: http::Request<B>) -> HttpResponse
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let (parts, body) = request.into_parts();
        if let Some(preflight) = self.cors.preflight(&self.front, &parts) {
            return preflight;
        }
        let door = self.door(&parts);
        let marks = match door {
            Door::Grpc => http::HeaderMap::new(),
            _ => self.cors.marks(&self.front, &parts),
        };
        let request = http::Request::from_parts(parts, body);
        let mut response = match door {
            Door::Grpc => grpc::serve(&self.front, request).await,
            Door::GrpcWeb { text } => grpc_web::serve(&self.front, request, text).await,
            Door::Connect(kind, route) => connect::serve(&self.front, request, kind, route).await,
            Door::Transcode(transcoded) => transcode::serve(&self.front, request, transcoded).await,
            Door::None
                if request.headers().get(http::header::CONTENT_TYPE).is_none()
                    && matches!(*request.method(), http::Method::GET | http::Method::DELETE) =>
            {
                connect::error_response(&tonic::Status::not_found(format!(
                    "no plugin binds {} {}",
                    request.method(),
                    request.uri().path()
                )))
            }
            Door::None => status::not_grpc(request.headers().get(http::header::CONTENT_TYPE)),
        };
        for (name, value) in &marks {
            if name == http::header::VARY {
                response.headers_mut().append(name, value.clone());
            } else {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}
