//! Accepting connections within the edge's caps. A connection over the host-wide cap or
//! its address's cap is reset as soon as it is accepted (the client sees it refused, not
//! a hang), and an accept that fails for want of file descriptors or memory backs off
//! instead of spinning: the connections already open keep being served.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::EdgeConfig;
use crate::throttle;

/// The first pause after an accept fails for want of a resource; it doubles per failure.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause between failed accepts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// File descriptors kept back from connections: plugin files, the compile cache, the
/// folder watch, logs.
const RESERVED_FILES: u64 = 256;

/// The listening socket and the places connections may take.
pub(crate) struct Listener {
    tcp: TcpListener,
    open: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
    /// Addresses refused until the instant given, for abuse on a connection.
    penalized: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// An accepted connection, holding its places under both caps until dropped.
pub(crate) struct Accepted {
    /// The socket, with Nagle's algorithm off.
    pub(crate) stream: TcpStream,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Released when the connection ends.
    pub(crate) place: Place,
}

/// One connection's place under the host-wide and per-IP caps.
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    penalized: Arc<Mutex<HashMap<IpAddr, Instant>>>,
    /// When the address is penalized: the connection is held open, never read, until
    /// then (a tarpit: a client that reconnects at once after a close would otherwise
    /// make the host accept and close in a loop), within the per-IP cap.
    pub(crate) held_until: Option<Instant>,
}

impl Place {
    /// Refuses new connections from this connection's address for `penalty`.
    pub(crate) fn penalize(&self, penalty: Duration) {
        let mut penalized = self.penalized.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Old entries go here rather than in a task of their own.
        penalized.retain(|_, until| *until > now);
        penalized.insert(self.ip, now + penalty);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Listener {
    /// Listens on `tcp` with the caps of `edge`, lowered to what the process's open-file
    /// limit can hold.
    pub(crate) fn new(tcp: TcpListener, edge: &EdgeConfig) -> Self {
        let files = raise_open_files_limit();
        let room = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
        let max = if edge.max_connections > room {
            tracing::warn!(
                "edge.max_connections is {}, but the open-file limit ({files}) leaves room for {room}: capping connections at {room}",
                edge.max_connections
            );
            room.max(1)
        } else {
            edge.max_connections
        };
        Self {
            tcp,
            open: Arc::new(Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip: edge.max_connections_per_ip,
            penalized: Arc::default(),
        }
    }

    /// The next connection within the caps; connections over them are closed here.
    pub(crate) async fn accept(&self) -> Accepted {
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.tcp.accept().await {
                Ok((stream, peer)) => {
                    backoff = MIN_BACKOFF;
                    let Some(place) = self.place_for(client_address(peer.ip())) else {
                        // A reset, not a FIN: no TIME_WAIT left behind under a flood.
                        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        continue;
                    };
                    // Small stream writes would otherwise wait ~40 ms for Nagle.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, "cannot set TCP_NODELAY: {error}");
                    }
                    return Accepted {
                        stream,
                        peer,
                        place,
                    };
                }
                // The client gave up before it was accepted: nothing to wait for.
                Err(error) if is_per_connection(&error) => {}
                Err(error) => {
                    if let Some(before) = throttle::allow("listener", "accept") {
                        tracing::warn!(
                            "cannot accept connections: {error}; retrying in {}{}",
                            plugrpc_runtime::duration(backoff),
                            throttle::left_out(before)
                        );
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// A place for a connection from `ip`, or `None` (logged) when a cap is reached; a
    /// penalized address's place says how long to hold it unserved.
    fn place_for(&self, ip: IpAddr) -> Option<Place> {
        let until = self
            .penalized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied();
        let penalized = until.filter(|until| *until > Instant::now());
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            if let Some(before) = throttle::allow("listener", "max_connections") {
                tracing::warn!(
                    "refused a connection from {ip}: the host has edge.max_connections open{}",
                    throttle::left_out(before)
                );
            }
            return None;
        };
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_default();
        if *count >= self.max_per_ip {
            drop(per_ip);
            if let Some(before) = throttle::allow("listener", "max_connections_per_ip") {
                tracing::warn!(
                    "refused a connection from {ip}: it has edge.max_connections_per_ip ({}) open{}",
                    self.max_per_ip,
                    throttle::left_out(before)
                );
            }
            return None;
        }
        *count += 1;
        drop(per_ip);
        if penalized.is_some()
            && let Some(before) = throttle::allow("listener", "abuse_penalty")
        {
            tracing::info!(
                "holding a connection from {ip} unserved: a connection of it was closed for abuse (edge.abuse_penalty){}",
                throttle::left_out(before)
            );
        }
        Some(Place {
            _permit: permit,
            ip,
            per_ip: self.per_ip.clone(),
            penalized: self.penalized.clone(),
            held_until: penalized,
        })
    }
}

/// The address a client is counted by: an IPv4 address (also when it comes mapped into
/// IPv6), or an IPv6 address's /64, the block one client usually holds.
pub(crate) fn client_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
    }
}

/// Whether an accept error concerns only the one connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Raises the soft open-file limit to the hard one (many systems start processes at
/// 1,024, far below what a server needs) and returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), hard) = (limit.current, limit.maximum) else {
        return u64::MAX; // unlimited
    };
    let Some(hard) = hard else {
        return current;
    };
    if current >= hard {
        return current;
    }
    let raised = rustix::process::Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!("raised the open-file limit from {current} to {hard}");
            hard
        }
        Err(error) => {
            tracing::warn!("cannot raise the open-file limit from {current} to {hard}: {error}");
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(client_address(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_address(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(
            client_address(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_address(ip("2001:db8:1:2:ffff::9")),
            client_address(ip("2001:db8:1:2::1"))
        );
        assert_ne!(client_address(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }
}
