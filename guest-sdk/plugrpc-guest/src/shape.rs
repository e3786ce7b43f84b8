//! The four gRPC call shapes, once: where a handler's request comes from and where its
//! reply goes. Generated servers pick one per method and pass the author's handler.

use prost::Message;

use crate::context::Context;
use crate::status::Status;
use crate::stream::{Requests, Sink};

/// Serves a unary method: one request in, one reply out.
pub fn unary<Req, Resp>(
    cx: &Context<'_>,
    handler: impl FnOnce(Req) -> Result<Resp, Status>,
) -> Result<(), Status>
where
    Req: Message + Default,
    Resp: Message,
{
    let reply = handler(first_request(cx)?)?;
    cx.io().push(&reply)
}

/// Serves a server-streaming method: one request in, a stream of replies out.
pub fn server_streaming<Req, Resp>(
    cx: &Context<'_>,
    handler: impl FnOnce(Req, &mut Sink<'_, Resp>) -> Result<(), Status>,
) -> Result<(), Status>
where
    Req: Message + Default,
    Resp: Message,
{
    handler(first_request(cx)?, &mut Sink::new(cx))
}

/// Serves a client-streaming method: a stream of requests in, one reply out.
pub fn client_streaming<Req, Resp>(
    cx: &Context<'_>,
    handler: impl FnOnce(Requests<'_, Req>) -> Result<Resp, Status>,
) -> Result<(), Status>
where
    Req: Message + Default,
    Resp: Message,
{
    let reply = handler(Requests::new(cx))?;
    cx.io().push(&reply)
}

/// Serves a bidirectional-streaming method: streams both ways.
pub fn bidi_streaming<Req, Resp>(
    cx: &Context<'_>,
    handler: impl FnOnce(Requests<'_, Req>, &mut Sink<'_, Resp>) -> Result<(), Status>,
) -> Result<(), Status>
where
    Req: Message + Default,
    Resp: Message,
{
    handler(Requests::new(cx), &mut Sink::new(cx))
}

/// The one request of a unary or server-streaming call.
fn first_request<Req: Message + Default>(cx: &Context<'_>) -> Result<Req, Status> {
    cx.io()
        .next_request()
        .unwrap_or_else(|| Err(Status::invalid_argument("missing request message")))
}
