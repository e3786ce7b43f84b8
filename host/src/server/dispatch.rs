//! The dynamic half of the request path: find the route, fix the deadline, and drive the
//! method's shape through tonic's `Grpc` (framing, compression, trailers) into the guest.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::MetadataMap;
use tonic::server::Grpc;
use tonic::{Code as WireCode, Status, Streaming};

use super::codec::RawCodec;
use super::timeout;
use crate::metadata;
use crate::registry::{MethodKind, Registry};
use crate::runtime::{
    CallError, Invocation, Limit, LoadedPlugin, MetadataEntry, Outgoing, Reply, ResponseItem,
    ResponseOut, ResponseStream, response_channel,
};
use crate::status;

/// Response body messages, ending with an `Ok`-coded status when trailers are due.
type Messages = Pin<Box<dyn Stream<Item = ResponseItem> + Send>>;

/// Serves every gRPC path the routing table knows; the rest are UNIMPLEMENTED.
#[derive(Clone)]
pub(crate) struct Dispatch {
    registry: Arc<Registry>,
}

impl Dispatch {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

impl<B> tower::Service<http::Request<B>> for Dispatch
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
        return Status::unimplemented(format!("no plugin serves {path}")).into_http();
    };
    let limits = *route.plugin.limits();
    let requested = match timeout::from_headers(request.headers()) {
        Ok(requested) => requested,
        Err(error) => return Status::invalid_argument(error.to_string()).into_http(),
    };
    // Config validation bounds every deadline; checked all the same, never a panic.
    let deadline = Instant::now().checked_add(limits.deadline_for(requested));
    let Some(deadline) = deadline else {
        return Status::invalid_argument("grpc-timeout is too far in the future").into_http();
    };
    let call = Call {
        plugin: route.plugin,
        method: Arc::from(path),
        deadline,
    };

    let mut grpc = Grpc::new(RawCodec)
        .max_decoding_message_size(limits.max_request_size)
        // Responses are checked against max_response_size before they get here.
        .max_encoding_message_size(usize::MAX);
    // Unary answers are framed exactly like a one-message server stream, and client
    // streams like bidi ones; the streaming forms let guest trailers ride along.
    let serve = async {
        match route.kind {
            MethodKind::Unary => {
                grpc.server_streaming(handler(call.clone(), Call::unary), request)
                    .await
            }
            MethodKind::ServerStreaming => {
                grpc.server_streaming(handler(call.clone(), Call::server_streaming), request)
                    .await
            }
            MethodKind::ClientStreaming => {
                grpc.streaming(handler(call.clone(), Call::client_streaming), request)
                    .await
            }
            MethodKind::BidiStreaming => {
                grpc.streaming(handler(call.clone(), Call::bidi_streaming), request)
                    .await
            }
        }
    };
    // Reading a unary request (up to the client's half-close) happens before the
    // plugin is called: the deadline bounds it too.
    match tokio::time::timeout_at(deadline.into(), serve).await {
        Ok(response) => call.name_oversized_request(response),
        Err(_) => call.fail(CallError::DeadlineExceeded).into_http(),
    }
}

/// Adapts one of `Call`'s shape methods into the service tonic's `Grpc` drives.
fn handler<M, F, Fut>(
    call: Call,
    shape: F,
) -> impl tower::Service<
    tonic::Request<M>,
    Response = tonic::Response<Messages>,
    Error = Status,
    Future = Fut,
> + Send
where
    F: Fn(Call, tonic::Request<M>) -> Fut + Clone + Send,
    Fut: Future<Output = Result<tonic::Response<Messages>, Status>> + Send,
{
    tower::service_fn(move |request| shape(call.clone(), request))
}

/// One call on its way to a plugin.
#[derive(Clone)]
struct Call {
    plugin: Arc<LoadedPlugin>,
    method: Arc<str>,
    deadline: Instant,
}

impl Call {
    /// tonic refuses an oversized single request message before the plugin is called;
    /// say which limit it hit, as for every other limit.
    fn name_oversized_request(
        &self,
        response: http::Response<tonic::body::Body>,
    ) -> http::Response<tonic::body::Body> {
        let size =
            Status::from_header_map(response.headers()).and_then(|s| status::oversized_message(&s));
        match size {
            Some(size) => {
                let limit = Limit::RequestSize {
                    size,
                    limit: self.plugin.limits().max_request_size,
                };
                self.fail(CallError::Limit(limit)).into_http()
            }
            None => response,
        }
    }

    async fn unary(
        self,
        request: tonic::Request<Bytes>,
    ) -> Result<tonic::Response<Messages>, Status> {
        let (invocation, message) = self.invocation(request);
        let reply = invocation.unary(message).await.map_err(|e| self.fail(e))?;
        self.reply(reply)
    }

    async fn client_streaming(
        self,
        request: tonic::Request<Streaming<Bytes>>,
    ) -> Result<tonic::Response<Messages>, Status> {
        let (invocation, input) = self.invocation(request);
        let reply = invocation
            .client_streaming(input)
            .await
            .map_err(|e| self.fail(e))?;
        self.reply(reply)
    }

    async fn server_streaming(
        self,
        request: tonic::Request<Bytes>,
    ) -> Result<tonic::Response<Messages>, Status> {
        let (invocation, message) = self.invocation(request);
        self.stream_out(move |out| invocation.server_streaming(message, out))
            .await
    }

    async fn bidi_streaming(
        self,
        request: tonic::Request<Streaming<Bytes>>,
    ) -> Result<tonic::Response<Messages>, Status> {
        let (invocation, input) = self.invocation(request);
        self.stream_out(move |out| invocation.bidi_streaming(input, out))
            .await
    }

    fn invocation<M>(&self, request: tonic::Request<M>) -> (Invocation, M) {
        let peer = request.remote_addr().as_ref().map(SocketAddr::to_string);
        let invocation = Invocation {
            plugin: self.plugin.clone(),
            method: self.method.to_string(),
            metadata: metadata::to_guest(request.metadata()),
            peer,
            deadline: self.deadline,
        };
        (invocation, request.into_inner())
    }

    fn fail(&self, error: CallError) -> Status {
        status::to_client(error, self.plugin.name(), &self.method)
    }

    /// A single-message answer: headers, the message, then trailers.
    fn reply(&self, reply: Reply) -> Result<tonic::Response<Messages>, Status> {
        let headers = metadata::from_guest(reply.headers)
            .map_err(|e| status::invalid_guest_metadata(&e, self.plugin.name(), &self.method))?;
        let trailers = self.trailers(reply.trailers)?;
        let messages = stream::once(async move { Ok(Bytes::from(reply.message)) })
            .chain(stream::iter(trailers));
        Ok(response(headers, Box::pin(messages)))
    }

    /// Runs a streaming-response call in its own task, answering as soon as the guest
    /// commits headers (or ends, when an error then goes out trailers-only). The task
    /// stops the guest when the client goes away.
    async fn stream_out<F, Fut>(self, run: F) -> Result<tonic::Response<Messages>, Status>
    where
        F: FnOnce(ResponseOut) -> Fut,
        Fut: Future<Output = Result<Vec<MetadataEntry>, CallError>> + Send + 'static,
    {
        let (tx, mut rx) = response_channel();
        let (headers_tx, headers_rx) = oneshot::channel();
        let guest = run(ResponseOut {
            stream: ResponseStream::new(tx.clone()),
            headers: headers_tx,
        });
        let call = self.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = guest => outcome,
                () = tx.closed() => Err(CallError::Cancelled),
            };
            let last = match outcome {
                Ok(trailers) => call
                    .trailers(trailers)
                    .unwrap_or_else(|status| Some(Err(status))),
                Err(error) => Some(Err(call.fail(error))),
            };
            if let Some(last) = last {
                // Fails only when the client left or stopped reading past the deadline,
                // and then nobody is listening.
                let last = Outgoing::last(last);
                let _ = tokio::time::timeout_at(call.deadline.into(), tx.send(last)).await;
            }
        });

        match headers_rx.await {
            Ok(headers) => Ok(response(headers, until_deadline(rx, self.deadline))),
            // The guest ended without sending headers or messages.
            Err(_) => match rx.recv().await.map(Outgoing::into_item) {
                Some(Err(status)) if status.code() != WireCode::Ok => Err(status),
                last => Ok(response(MetadataMap::new(), Box::pin(stream::iter(last)))),
            },
        }
    }

    /// Guest trailers as the last item of the body, if there are any.
    fn trailers(&self, entries: Vec<MetadataEntry>) -> Result<Option<ResponseItem>, Status> {
        if entries.is_empty() {
            return Ok(None);
        }
        let trailers = metadata::from_guest(entries)
            .map_err(|e| status::invalid_guest_metadata(&e, self.plugin.name(), &self.method))?;
        Ok(Some(Err(Status::with_metadata(WireCode::Ok, "", trailers))))
    }
}

/// The response body of a streaming call: what the guest sends, cut off with
/// DEADLINE_EXCEEDED if the client is still reading when the deadline passes.
fn until_deadline(rx: mpsc::Receiver<Outgoing>, deadline: Instant) -> Messages {
    // One timer for the whole body, not one per message.
    let expired = Box::pin(tokio::time::sleep_until(deadline.into()));
    Box::pin(stream::unfold(Some((rx, expired)), |state| async move {
        let (mut rx, mut expired) = state?;
        tokio::select! {
            biased;
            item = rx.recv() => item.map(|item| (item.into_item(), Some((rx, expired)))),
            () = &mut expired => {
                Some((Err(Status::deadline_exceeded("deadline exceeded")), None))
            }
        }
    }))
}

fn response(headers: MetadataMap, messages: Messages) -> tonic::Response<Messages> {
    let mut response = tonic::Response::new(messages);
    *response.metadata_mut() = headers;
    response
}
