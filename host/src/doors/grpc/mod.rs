//! The gRPC front door: finds the route, reads `grpc-timeout` and the metadata, lets
//! tonic's `Grpc` do the framing (message sizes, compression negotiation, trailers), and
//! turns the request into the call core's input and the core's response back into gRPC.
//! All four call shapes take the same path: tonic's bidi form, since the core reads a
//! unary request itself and a streaming body carries trailers on success.

mod codec;
mod timeout;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{Stream, StreamExt};
use plugrpc_runtime::{BodyPart, Call, CallRequest, InputError, Requests, Response};
use tonic::server::Grpc;
use tonic::{Status, Streaming};

use crate::metadata;
use crate::registry::{Registry, Route};
use crate::status::{self, For};
use codec::RawCodec;

/// Response messages as tonic encodes them, ending with an `Ok`-coded status when
/// trailers are due.
type Messages = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Serves every gRPC path the routing table knows; the rest are UNIMPLEMENTED.
#[derive(Clone)]
pub(crate) struct GrpcDoor {
    registry: Arc<Registry>,
}

impl GrpcDoor {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl<B> tower::Service<http::Request<B>> for GrpcDoor
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let registry = self.registry.clone();
        Box::pin(async move { Ok(serve(&registry, request).await) })
    }
}

async fn serve<B>(
    registry: &Registry,
    request: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let path = request.uri().path().to_owned();
    let Some(route) = registry.lookup(&path) else {
        return status::no_route(&path).into_http();
    };
    let timeout = match timeout::from_headers(request.headers()) {
        Ok(timeout) => timeout,
        Err(error) => return status::malformed_timeout(&error).into_http(),
    };
    let mut grpc = Grpc::new(RawCodec)
        .max_decoding_message_size(route.plugin.limits().max_request_size)
        // The core checks max_response_size before a message gets here.
        .max_encoding_message_size(usize::MAX);
    let path: Arc<str> = Arc::from(path);
    let handler = tower::service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
        call(route.clone(), path.clone(), timeout, request)
    });
    grpc.streaming(handler, request).await
}

/// One call through the core: the request as its input, its response as gRPC.
async fn call(
    route: Route,
    path: Arc<str>,
    timeout: Option<std::time::Duration>,
    request: tonic::Request<Streaming<Bytes>>,
) -> Result<tonic::Response<Messages>, Status> {
    let peer = request.remote_addr().as_ref().map(SocketAddr::to_string);
    let metadata = metadata::to_guest(request.metadata());
    let requests: Requests = Box::pin(request.into_inner().map(|item| item.map_err(input_error)));
    let call = Call::new(
        route.plugin.clone(),
        route.kind,
        CallRequest {
            method: path.to_string(),
            timeout,
            metadata,
            peer,
        },
    );
    let for_call = For {
        plugin: route.plugin.name(),
        method: &path,
    };
    match call.run(requests).await {
        Response::Failed { metadata, error } => Err(status::failed(error, metadata, for_call)),
        Response::Started { headers, body } => {
            let headers = metadata::from_guest(headers)
                .map_err(|invalid| status::invalid_guest_metadata(&invalid, for_call))?;
            let plugin = route.plugin.clone();
            let messages = body.filter_map(move |part| {
                let item = match part {
                    BodyPart::Message(message) => Some(Ok(message)),
                    BodyPart::End { trailers, result } => {
                        let call = For {
                            plugin: plugin.name(),
                            method: &path,
                        };
                        status::end(result, trailers, call).map(Err)
                    }
                };
                std::future::ready(item)
            });
            let mut response = tonic::Response::new(Box::pin(messages) as Messages);
            *response.metadata_mut() = headers;
            Ok(response)
        }
    }
}

/// A request stream error as the core reads it. tonic reports a message over the
/// decoding limit only in its error text (OUT_OF_RANGE "... length too large: found N
/// bytes, ..."): this is the one place that text is read.
fn input_error(status: Status) -> InputError {
    match oversized_message(&status) {
        Some(size) => InputError::TooLarge(size),
        None => InputError::Failed(status::to_guest(&status)),
    }
}

fn oversized_message(status: &Status) -> Option<usize> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    let found = status.message().split_once("length too large: found ")?.1;
    found.split_once(' ')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_oversized_message_error_is_recognised() {
        // The text tonic 0.14's decoder produces (tonic/src/codec/decode.rs).
        let tonic_says = Status::out_of_range(
            "Error, decoded message length too large: found 5242880 bytes, the limit is: 4194304 bytes",
        );
        assert!(matches!(
            input_error(tonic_says),
            InputError::TooLarge(5_242_880)
        ));
        assert!(matches!(
            input_error(Status::out_of_range("other")),
            InputError::Failed(_)
        ));
        assert!(matches!(
            input_error(Status::internal("length too large: found 1 bytes")),
            InputError::Failed(_)
        ));
    }
}
