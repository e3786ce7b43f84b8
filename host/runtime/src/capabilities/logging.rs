//! The logging capability: `wasi:logging` records and the guest's stdout and stderr go
//! into the host log, tagged with the plugin and rate-limited per plugin, so a chatty
//! tenant cannot flood the operator's log. Per call it holds the plugin's shared
//! [`LogBudget`]; it has no config section (its rate is fixed, below).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::bindings::{Level, LoggingHost, add_logging_to_linker};
use crate::sandbox::CallState;

/// Lines a plugin may log per second, on average.
const LINES_PER_SECOND: f64 = 50.0;
/// Lines a plugin may log in a burst.
const BURST_LINES: f64 = 200.0;
/// Longest line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;

/// One plugin's log allowance, shared by all its calls.
pub(crate) struct LogBudget {
    plugin: Arc<str>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl LogBudget {
    pub(crate) fn new(plugin: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            plugin,
            bucket: Mutex::new(Bucket {
                tokens: BURST_LINES,
                refilled: Instant::now(),
                suppressed: 0,
            }),
        })
    }

    /// Whether one more line may be logged now; reports lines dropped before it.
    pub(crate) fn allow(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.refilled).as_secs_f64() * LINES_PER_SECOND;
        bucket.tokens = (bucket.tokens + refill).min(BURST_LINES);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            bucket.suppressed += 1;
            return false;
        }
        bucket.tokens -= 1.0;
        if bucket.suppressed > 0 {
            tracing::warn!(
                target: "plugrpc::guest",
                plugin = &*self.plugin,
                "{} lines from this plugin were not logged (over {LINES_PER_SECOND} lines/s)",
                std::mem::take(&mut bucket.suppressed)
            );
        }
        true
    }

    /// Logs `text` one record per line, each cut at [`MAX_LINE`] bytes, within the budget.
    pub(crate) fn emit(&self, level: tracing::Level, stream: &str, text: &[u8]) {
        for line in text.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
            let line = line.trim_end();
            if line.is_empty() || !self.allow() {
                continue;
            }
            let plugin = &*self.plugin;
            match level {
                tracing::Level::TRACE => {
                    tracing::trace!(target: "plugrpc::guest", plugin, stream, "{line}")
                }
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "plugrpc::guest", plugin, stream, "{line}")
                }
                tracing::Level::INFO => {
                    tracing::info!(target: "plugrpc::guest", plugin, stream, "{line}")
                }
                tracing::Level::WARN => {
                    tracing::warn!(target: "plugrpc::guest", plugin, stream, "{line}")
                }
                tracing::Level::ERROR => {
                    tracing::error!(target: "plugrpc::guest", plugin, stream, "{line}")
                }
            }
        }
    }
}

/// Adds `wasi:logging` to the linker, served from each call's [`LogBudget`].
pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    add_logging_to_linker::<CallState, Logging>(linker, |state| state.log.as_ref())
}

/// A WASI context that grants nothing (no files, sockets, environment or arguments)
/// and sends stdout and stderr to the host log through `budget`.
pub(crate) fn wasi_ctx(budget: &Arc<LogBudget>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(GuestOutput::new(budget.clone(), "stdout"))
        .stderr(GuestOutput::new(budget.clone(), "stderr"))
        .build()
}

/// The [`HasData`] of the logging capability: what its host functions see of a call.
struct Logging;

impl HasData for Logging {
    type Data<'a> = &'a LogBudget;
}

impl LoggingHost for &LogBudget {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error | Level::Critical => tracing::Level::ERROR,
        };
        if context.is_empty() {
            self.emit(level, "log", message.as_bytes());
        } else {
            self.emit(level, "log", format!("{context}: {message}").as_bytes());
        }
        Ok(())
    }
}

/// A guest's stdout or stderr.
struct GuestOutput {
    budget: Arc<LogBudget>,
    stream: &'static str,
}

impl GuestOutput {
    fn new(budget: Arc<LogBudget>, stream: &'static str) -> Self {
        Self { budget, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            budget: self.budget.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }
}

/// Splits what the guest writes into lines and logs each one; never fails the guest.
struct LineWriter {
    budget: Arc<LogBudget>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        self.budget
            .emit(tracing::Level::INFO, self.stream, &self.line);
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_lines_are_dropped() {
        let budget = LogBudget::new("chatty".into());
        let allowed = (0..1000).filter(|_| budget.allow()).count();
        assert!(
            (BURST_LINES as usize..BURST_LINES as usize + 10).contains(&allowed),
            "{allowed}"
        );
    }
}
