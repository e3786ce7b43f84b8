//! Bytes of request messages received but not yet whole are bounded per connection and
//! host-wide, and a message that has begun must arrive whole within the edge's message
//! timeout. A whole message is the call's (bounded by its plugin's admission and
//! `max_request_size`); a message still arriving is nobody's, and without these bounds
//! clients sending many large messages that never finish could hold the host's memory.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use plugrpc_runtime::{duration, size};

/// Bytes that may be held by messages still arriving.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
    /// The config key that sets the limit, for the error.
    key: &'static str,
}

impl Budget {
    /// A budget of `limit` bytes, set by `key`.
    pub(crate) fn new(limit: usize, key: &'static str) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
            key,
        }
    }

    /// Takes `bytes`, or nothing when they would pass the limit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// A request body whose partial gRPC message is charged to the connection's and the
/// host's budgets, and timed.
pub(crate) struct Buffered<B> {
    body: B,
    /// The host's budget, then the connection's when the request came on one.
    budgets: [Option<Arc<Budget>>; 2],
    framing: Framing,
    /// Bytes of the message still arriving charged to both budgets.
    charged: usize,
    /// `framing.completed` when the timer started: the timer is the partial message's.
    timed: u64,
    message_timeout: Duration,
    /// Runs while a message is partly received.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Buffered<B> {
    /// `body`, charged to `host` and `connection`.
    pub(crate) fn new(
        body: B,
        host: Arc<Budget>,
        connection: Option<Arc<Budget>>,
        message_timeout: Duration,
    ) -> Self {
        Self {
            body,
            budgets: [Some(host), connection],
            framing: Framing::default(),
            charged: 0,
            timed: 0,
            message_timeout,
            timer: None,
        }
    }

    /// Charges or releases the budgets so they hold what the partial message holds.
    fn settle(&mut self) -> Result<(), tonic::Status> {
        let partial = self.framing.partial;
        if partial < self.charged {
            for budget in self.budgets.iter().flatten() {
                budget.give(self.charged - partial);
            }
        } else if partial > self.charged {
            let more = partial - self.charged;
            for (taken, budget) in self.budgets.iter().flatten().enumerate() {
                if !budget.take(more) {
                    for earlier in self.budgets.iter().flatten().take(taken) {
                        earlier.give(more);
                    }
                    return Err(tonic::Status::resource_exhausted(format!(
                        "request messages still arriving would hold more than {} ({})",
                        size(budget.limit),
                        budget.key
                    )));
                }
            }
        }
        self.charged = partial;
        // A message that finished inside this chunk takes its timer with it, even when
        // the next one began in the same chunk.
        if partial == 0 || self.timed != self.framing.completed {
            self.timer = None;
        }
        if partial > 0 && self.timer.is_none() {
            self.timer = Some(Box::pin(tokio::time::sleep(self.message_timeout)));
            self.timed = self.framing.completed;
        }
        Ok(())
    }
}

impl<B> Buffered<B> {
    /// `body` as one unframed message (a Connect unary request), charged whole to the
    /// budgets and timed from its first byte to its end.
    pub(crate) fn whole(
        body: B,
        host: Arc<Budget>,
        connection: Option<Arc<Budget>>,
        message_timeout: Duration,
    ) -> Self {
        let mut buffered = Self::new(body, host, connection, message_timeout);
        buffered.framing.whole = true;
        // Timed from the start: a client that sends headers and no body byte is not
        // waited for past the message timeout either.
        buffered.timer = Some(Box::pin(tokio::time::sleep(message_timeout)));
        buffered
    }
}

impl<B> Drop for Buffered<B> {
    fn drop(&mut self) {
        for budget in self.budgets.iter().flatten() {
            budget.give(self.charged);
        }
    }
}

impl<B> HttpBody for Buffered<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(timer) = this.timer.as_mut() {
                    ready!(timer.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(tonic::Status::deadline_exceeded(format!(
                        "a request message took longer than {} to arrive (edge.message_timeout)",
                        duration(this.message_timeout)
                    ))
                    .into())));
                }
                return Poll::Pending;
            }
        };
        let Some(frame) = frame else {
            return Poll::Ready(None);
        };
        let frame = frame.map_err(Into::into)?;
        if let Some(data) = frame.data_ref() {
            this.framing.read(data.chunk());
            this.settle()?;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a gRPC message stream is: inside a message's 5-byte prefix, or its body.
#[derive(Debug, Default)]
struct Framing {
    /// Prefix bytes seen of the current message (0..=5).
    prefix: [u8; 5],
    prefix_len: usize,
    /// Body bytes still due for the current message, once its prefix is whole.
    remaining: usize,
    /// Bytes of the current message received so far (prefix included); 0 between messages.
    partial: usize,
    /// Messages received whole so far: a change means the partial one is a new message.
    completed: u64,
    /// The body is one message with no envelope (a Connect unary request): every byte
    /// is partial until the body ends.
    whole: bool,
}

impl Framing {
    /// Follows `data` through the framing.
    fn read(&mut self, mut data: &[u8]) {
        if self.whole {
            self.partial += data.len();
            return;
        }
        while !data.is_empty() {
            if self.prefix_len < 5 {
                let n = (5 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                self.partial += n;
                data = &data[n..];
                if self.prefix_len == 5 {
                    let length = u32::from_be_bytes([
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ]);
                    self.remaining = length as usize;
                }
            } else {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                self.partial += n;
                data = &data[n..];
            }
            if self.prefix_len == 5 && self.remaining == 0 {
                *self = Self {
                    completed: self.completed + 1,
                    whole: self.whole,
                    ..Self::default()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body_len: usize) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(body_len as u32).to_be_bytes());
        framed.resize(5 + body_len, 7);
        framed
    }

    #[test]
    fn framing_counts_only_the_message_still_arriving_however_it_is_split() {
        let mut stream = message(10);
        stream.extend(message(0));
        stream.extend(message(300));
        // Every split point: what is partial after the first part is the third message's
        // bytes received, or the first's, never a finished one.
        for split in 0..=stream.len() {
            let mut framing = Framing::default();
            framing.read(&stream[..split]);
            let expected = match split {
                0..=14 => split,
                15..=19 => split - 15,
                _ if split == stream.len() => 0,
                _ => split - 20,
            };
            assert_eq!(framing.partial, expected, "split at {split}");
            framing.read(&stream[split..]);
            assert_eq!(framing.partial, 0, "whole after split at {split}");
            assert_eq!(framing.completed, 3);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_begins_in_the_chunk_ending_another_gets_its_own_timer() {
        let budget = || Arc::new(Budget::new(1 << 20, "edge.request_buffer"));
        let mut body = Buffered::new((), budget(), Some(budget()), Duration::from_secs(30));
        body.framing.read(&message(10)[..8]);
        body.settle().unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        // The first message ends and the second begins in one chunk.
        let mut chunk = message(10)[8..].to_vec();
        chunk.extend_from_slice(&message(10)[..3]);
        body.framing.read(&chunk);
        body.settle().unwrap();
        tokio::time::advance(Duration::from_secs(20)).await;
        let timer = body.timer.as_mut().expect("the second message is timed");
        assert!(
            futures::poll!(timer.as_mut()).is_pending(),
            "20 s into its own 30 s, not 40 s into the first's"
        );
    }

    #[test]
    fn a_budget_refuses_what_would_pass_its_limit_and_takes_back_what_is_given() {
        let budget = Budget::new(100, "edge.request_buffer");
        assert!(budget.take(60));
        assert!(!budget.take(41));
        assert!(budget.take(40));
        budget.give(100);
        assert!(budget.take(100));
    }
}
