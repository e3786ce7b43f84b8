//! `[edge]`: what one client may hold of the host, and how long the host waits for it.
//! Every key has a default safe on a network shared by strangers; each bounds one
//! resource an unauthenticated client could otherwise take.

use std::time::Duration;

use bytesize::ByteSize;
use plugrpc_runtime::{duration, size};
use serde::Deserialize;

use super::{Invalid, invalid, to_usize};

/// Connection and stream limits of the listener, as `[edge]` sets them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Connections open at once, host-wide; more are closed as they are accepted.
    pub max_connections: usize,
    /// Connections open at once from one client IP address.
    pub max_connections_per_ip: usize,
    /// A TLS handshake that takes longer is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection that has sent no request this long after it opened is closed.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// A connection with no stream open for this long is closed (GOAWAY first).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection this old is told to go away (GOAWAY), so clients rebalance.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// How long the calls of a connection told to go away may take before it is closed.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
    /// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// Streams per second on one connection that a client cancels, or that are refused
    /// for want of capacity, before the connection is closed.
    pub max_resets_per_second: u32,
    /// How long new connections from an address are refused after one of its
    /// connections was closed for passing `max_resets_per_second`.
    #[serde(with = "humantime_serde")]
    pub abuse_penalty: Duration,
    /// Bytes of request messages received but not yet whole, host-wide.
    pub request_buffer: ByteSize,
    /// Bytes of request messages received but not yet whole, per connection.
    pub request_buffer_per_connection: ByteSize,
    /// A request message that has begun must arrive whole within this.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// A stream with no message either way for this long is ended.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            handshake_timeout: Duration::from_secs(10),
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connection_age: Duration::from_secs(3600),
            max_connection_age_grace: Duration::from_secs(3600),
            // Envoy's edge guidance; h2's own default is unbounded.
            max_streams_per_connection: 100,
            max_resets_per_second: 200,
            abuse_penalty: Duration::from_secs(10),
            request_buffer: ByteSize::mib(256),
            request_buffer_per_connection: ByteSize::mib(32),
            message_timeout: Duration::from_secs(30),
            stream_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// The longest any `[edge]` duration may be: long enough for any real client.
const MAX_EDGE_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

impl EdgeConfig {
    /// `request_buffer` in bytes.
    pub fn request_buffer_bytes(&self) -> usize {
        to_usize(self.request_buffer)
    }

    /// `request_buffer_per_connection` in bytes.
    pub fn request_buffer_per_connection_bytes(&self) -> usize {
        to_usize(self.request_buffer_per_connection)
    }

    /// Every bound, naming the key that breaks one.
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection as usize,
            ),
            ("max_resets_per_second", self.max_resets_per_second as usize),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(invalid(&format!("edge.{key}"), "must be at least 1".into()));
            }
        }
        let durations = [
            ("handshake_timeout", self.handshake_timeout),
            ("first_request_timeout", self.first_request_timeout),
            ("idle_timeout", self.idle_timeout),
            ("max_connection_age", self.max_connection_age),
            ("max_connection_age_grace", self.max_connection_age_grace),
            ("abuse_penalty", self.abuse_penalty),
            ("message_timeout", self.message_timeout),
            ("stream_idle_timeout", self.stream_idle_timeout),
        ];
        for (key, value) in durations {
            if value.is_zero() || value > MAX_EDGE_DURATION {
                return Err(invalid(
                    &format!("edge.{key}"),
                    format!(
                        "{} is outside 1ms ..= {}",
                        duration(value),
                        duration(MAX_EDGE_DURATION)
                    ),
                ));
            }
        }
        if self.request_buffer_per_connection_bytes() == 0 {
            return Err(invalid(
                "edge.request_buffer_per_connection",
                "must be at least 1 B".into(),
            ));
        }
        if self.request_buffer_bytes() < self.request_buffer_per_connection_bytes() {
            return Err(invalid(
                "edge.request_buffer",
                format!(
                    "{} is less than request_buffer_per_connection ({})",
                    size(self.request_buffer_bytes()),
                    size(self.request_buffer_per_connection_bytes())
                ),
            ));
        }
        Ok(())
    }
}
