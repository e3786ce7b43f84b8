//! Retries as gRFC A6 has them: the request messages kept for replay (up to a cap, past
//! which the call commits), full-jitter exponential backoff, the server's
//! `grpc-retry-pushback-ms`, and the retry-throttling token bucket. Never decides on its
//! own whether to retry: the call loop asks it for each part.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

use crate::config::{RetryPolicy, RetryThrottling};

/// Request bytes kept for a retry; past it the call commits (no more retries) and the
/// messages are no longer kept: grpc-go's default (`defaultMaxRetryRPCBufferSize`).
pub(super) const REPLAY_BUFFER: usize = 256 << 10;

/// The trailer a server slows or stops retries with (gRFC A6).
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Milli-tokens in a token: A6 keeps `token_ratio` to three decimals.
const MILLI: u64 = 1000;

/// The request messages of one call, shared by its attempts: each attempt replays what
/// was sent before, then goes on with what the plugin sends.
pub(super) struct Replay {
    state: Arc<Mutex<ReplayState>>,
}

struct ReplayState {
    requests: mpsc::Receiver<Bytes>,
    /// The messages sent so far, while replayable.
    kept: Vec<Bytes>,
    kept_bytes: usize,
    /// The plugin closed its side: no message follows `kept`.
    closed: bool,
    /// No attempt can replay the call any more: `kept` overflowed, or a response began.
    committed: bool,
    /// The attempt now running; streams of earlier ones end.
    attempt: u64,
}

impl Replay {
    /// Keeps what `requests` yields for the call's attempts.
    pub(super) fn new(requests: mpsc::Receiver<Bytes>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ReplayState {
                requests,
                kept: Vec::new(),
                kept_bytes: 0,
                closed: false,
                committed: false,
                attempt: 0,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request stream of the next attempt; the previous attempt's stream ends.
    pub(super) fn attempt(&self) -> AttemptStream {
        let mut state = self.state();
        state.attempt += 1;
        AttemptStream {
            state: Arc::clone(&self.state),
            attempt: state.attempt,
            next: 0,
        }
    }

    /// Whether another attempt could send everything this one sent.
    pub(super) fn replayable(&self) -> bool {
        !self.state().committed
    }

    /// A response began: messages are no longer kept.
    pub(super) fn commit(&self) {
        let mut state = self.state();
        state.committed = true;
        state.kept = Vec::new();
    }
}

/// One attempt's request messages.
pub(super) struct AttemptStream {
    state: Arc<Mutex<ReplayState>>,
    attempt: u64,
    /// The next kept message to replay.
    next: usize,
}

impl Stream for AttemptStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let state = Arc::clone(&self.state);
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.attempt != self.attempt {
            return Poll::Ready(None);
        }
        if let Some(message) = state.kept.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(message.clone()));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match state.requests.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                if !state.committed {
                    state.kept_bytes += message.len();
                    if state.kept_bytes > REPLAY_BUFFER {
                        state.committed = true;
                        state.kept = Vec::new();
                    } else {
                        state.kept.push(message.clone());
                        self.next += 1;
                    }
                }
                Poll::Ready(Some(message))
            }
            Poll::Ready(None) => {
                state.closed = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The wait before retry number `retry` (1 for the first): a random time up to
/// `initial_backoff * backoff_multiplier^(retry-1)`, capped at `max_backoff` (A6's full
/// jitter).
pub(super) fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let cap = (policy.initial_backoff.as_secs_f64() * policy.backoff_multiplier.powi(exponent))
        .min(policy.max_backoff.as_secs_f64());
    Duration::try_from_secs_f64(fastrand::f64() * cap).unwrap_or(policy.max_backoff)
}

/// What a failed attempt's `grpc-retry-pushback-ms` says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushback {
    /// No pushback: the policy's backoff applies.
    None,
    /// Retry after exactly this long.
    After(Duration),
    /// Do not retry (a negative or unreadable value).
    Stop,
}

/// The pushback `status` carries.
pub(super) fn pushback(status: &Status) -> Pushback {
    let Some(value) = status.metadata().get(PUSHBACK) else {
        return Pushback::None;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(ms) => Pushback::After(Duration::from_millis(ms)),
        None => Pushback::Stop,
    }
}

/// The retry budget of one target (A6 `retryThrottling`), in thousandths of a token.
pub(super) struct Throttle {
    max: u64,
    ratio: u64,
    tokens: AtomicU64,
}

impl Throttle {
    /// A full bucket.
    pub(super) fn new(config: &RetryThrottling) -> Self {
        let max = u64::from(config.max_tokens) * MILLI;
        // Three decimals, as A6 keeps; a ratio that rounds to nothing still refills.
        let ratio = ((config.token_ratio * MILLI as f64).round() as u64).clamp(1, max);
        Self {
            max,
            ratio,
            tokens: AtomicU64::new(max),
        }
    }

    /// An attempt failed with a retryable status (or was pushed back): one token less.
    pub(super) fn failure(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(MILLI))
            });
    }

    /// A call succeeded: `token_ratio` back, up to the bucket's size.
    pub(super) fn success(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + self.ratio).min(self.max))
            });
    }

    /// Whether retries may go on: more than half the bucket is left.
    pub(super) fn allows_retry(&self) -> bool {
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            backoff_multiplier: 2.0,
            retryable_status_codes: vec![crate::config::GrpcCode(tonic::Code::Unavailable)],
        }
    }

    #[test]
    fn backoff_is_jittered_below_a_growing_capped_bound() {
        let policy = policy();
        for _ in 0..200 {
            assert!(backoff(&policy, 1) < Duration::from_millis(100));
            assert!(backoff(&policy, 2) < Duration::from_millis(200));
            assert!(backoff(&policy, 5) <= Duration::from_millis(300));
        }
        let spread: std::collections::BTreeSet<_> = (0..50).map(|_| backoff(&policy, 3)).collect();
        assert!(spread.len() > 1, "random, not fixed");
    }

    #[test]
    fn pushback_is_a_wait_a_stop_or_nothing() {
        let with = |value: &str| {
            let mut status = Status::unavailable("busy");
            status
                .metadata_mut()
                .insert(PUSHBACK, value.parse().unwrap());
            pushback(&status)
        };
        assert_eq!(with("250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(with("-1"), Pushback::Stop);
        assert_eq!(with("soon"), Pushback::Stop);
        assert_eq!(pushback(&Status::unavailable("busy")), Pushback::None);
    }

    #[test]
    fn the_token_bucket_stops_retries_at_half_and_refills_by_the_ratio() {
        let throttle = Throttle::new(&RetryThrottling {
            max_tokens: 10,
            token_ratio: 0.5,
        });
        for _ in 0..4 {
            throttle.failure();
        }
        assert!(throttle.allows_retry(), "6 of 10 left");
        throttle.failure();
        assert!(!throttle.allows_retry(), "5 of 10 is half: no retry");
        throttle.success();
        assert!(throttle.allows_retry(), "5.5 of 10");
        for _ in 0..100 {
            throttle.success();
        }
        for _ in 0..4 {
            throttle.failure();
        }
        assert!(
            throttle.allows_retry(),
            "the bucket never holds more than max_tokens"
        );
        throttle.failure();
        assert!(!throttle.allows_retry());
    }

    #[tokio::test]
    async fn a_retry_replays_the_messages_sent_then_goes_on() {
        let (tx, rx) = mpsc::channel(4);
        let replay = Replay::new(rx);
        let mut first = replay.attempt();
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert_eq!(first.next().await.unwrap(), "a");
        assert_eq!(first.next().await.unwrap(), "b");
        let mut second = replay.attempt();
        assert_eq!(
            first.next().await,
            None,
            "a superseded attempt's stream ends"
        );
        tx.send(Bytes::from_static(b"c")).await.unwrap();
        drop(tx);
        let messages: Vec<Bytes> = second.by_ref().collect().await;
        assert_eq!(messages, ["a", "b", "c"]);
        assert!(replay.replayable());
        let third: Vec<Bytes> = replay.attempt().collect().await;
        assert_eq!(third, ["a", "b", "c"], "a half-closed call replays whole");
    }

    #[tokio::test]
    async fn past_the_replay_buffer_the_call_commits() {
        let (tx, rx) = mpsc::channel(4);
        let replay = Replay::new(rx);
        let mut attempt = replay.attempt();
        tx.send(Bytes::from(vec![0; REPLAY_BUFFER])).await.unwrap();
        assert_eq!(attempt.next().await.unwrap().len(), REPLAY_BUFFER);
        assert!(replay.replayable(), "at the cap exactly");
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(attempt.next().await.unwrap(), "x");
        assert!(!replay.replayable());
    }
}
