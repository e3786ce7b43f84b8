//! Host names in `endpoints`, resolved at start and every `resolve_every` by a task the
//! target owns (it stops when the target is dropped). Each address is an endpoint with a
//! channel of its own; an address that disappears is dropped with its channel, a new one
//! is added, and one that stays keeps its connection and its record. A failed resolution
//! keeps the last good addresses and is logged once, not at every period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::balancer::{Backend, Snapshot, http_service};
use super::connect::Dialer;
use crate::config::{EndpointHost, EndpointUrl};

/// How long one lookup may take: glibc's resolver gives up after 5 s times 2 attempts
/// by default, so a longer wait would only wait on a lookup that already failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves a target's host names and publishes its endpoint addresses.
pub(super) struct Resolver {
    /// The target's alias, for logs.
    pub(super) alias: Arc<str>,
    /// Each host-name endpoint with its index in `endpoints`.
    pub(super) names: Vec<(usize, EndpointUrl)>,
    /// The endpoints given as addresses, always in the set.
    pub(super) fixed: Vec<Arc<Backend>>,
    /// Builds the channel of a new address.
    pub(super) dialer: Dialer,
    /// The period between resolutions.
    pub(super) every: Duration,
    /// Where the set goes.
    pub(super) publish: watch::Sender<Arc<Snapshot>>,
}

impl Resolver {
    /// Resolves every name, publishes the set, waits a period; until aborted.
    pub(super) async fn run(self) {
        let mut resolved: Vec<Vec<SocketAddr>> = vec![Vec::new(); self.names.len()];
        let mut failing = vec![false; self.names.len()];
        loop {
            let mut problems = Vec::new();
            for (slot, (_, url)) in self.names.iter().enumerate() {
                let EndpointHost::Name(host) = &url.host else {
                    continue;
                };
                match lookup(host, url.port).await {
                    Ok(addresses) => {
                        if failing[slot] {
                            tracing::info!("outbound target {}: {host} resolves again", self.alias);
                        }
                        failing[slot] = false;
                        resolved[slot] = addresses;
                    }
                    Err(why) => {
                        if !failing[slot] {
                            tracing::warn!(
                                "outbound target {}: cannot resolve {host}: {why}; keeping its \
                                 last addresses ({}) until it resolves",
                                self.alias,
                                resolved[slot].len()
                            );
                        }
                        failing[slot] = true;
                        problems.push(format!("cannot resolve {host}: {why}"));
                    }
                }
            }
            self.publish(&resolved, problems);
            tokio::time::sleep(self.every).await;
        }
    }

    /// Publishes the fixed endpoints and the resolved addresses, reusing the backends
    /// of addresses already known.
    fn publish(&self, resolved: &[Vec<SocketAddr>], problems: Vec<String>) {
        let current = Arc::clone(&self.publish.borrow());
        let mut backends = self.fixed.clone();
        for ((index, url), addresses) in self.names.iter().zip(resolved) {
            for &address in addresses {
                let key = Some((*index, address));
                if let Some(known) = current.backends.iter().find(|b| b.key() == key) {
                    backends.push(Arc::clone(known));
                    continue;
                }
                match self.dialer.channel(url, address) {
                    Ok(channel) => backends.push(Arc::new(Backend::new(
                        format!("{} ({address})", url.authority()),
                        key,
                        http_service(channel),
                    ))),
                    Err(error) => tracing::warn!("{error}"),
                }
            }
        }
        let problem = (backends.is_empty() && !problems.is_empty()).then(|| problems.join("; "));
        self.publish.send_replace(Arc::new(Snapshot {
            backends,
            settled: true,
            problem,
        }));
    }
}

/// The addresses of `host`, sorted, at least one.
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| "the lookup timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let mut addresses: Vec<SocketAddr> = found.collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return Err("no address".into());
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> Resolver {
        let config: crate::config::OutboundTarget =
            toml::from_str("endpoints = [\"http://greeter.internal:50051\"]").unwrap();
        let crate::config::Endpoints::Remote(urls) = &config.endpoints else {
            panic!("remote endpoints")
        };
        let (publish, _) = watch::channel(Arc::new(Snapshot {
            backends: Vec::new(),
            settled: false,
            problem: None,
        }));
        Resolver {
            alias: "greeter".into(),
            names: vec![(0, urls[0].clone())],
            fixed: Vec::new(),
            dialer: Dialer::new("greeter", &config).unwrap(),
            every: Duration::from_secs(30),
            publish,
        }
    }

    fn address(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 50051))
    }

    #[tokio::test]
    async fn a_new_resolution_keeps_known_addresses_drops_gone_ones_and_adds_new_ones() {
        let resolver = resolver();
        resolver.publish(&[vec![address(1), address(2)]], Vec::new());
        let first = Arc::clone(&resolver.publish.borrow());
        assert!(first.settled);
        resolver.publish(&[vec![address(2), address(3)]], Vec::new());
        let second = Arc::clone(&resolver.publish.borrow());
        let keys: Vec<_> = second.backends.iter().map(|b| b.key()).collect();
        assert_eq!(keys, [Some((0, address(2))), Some((0, address(3)))]);
        assert!(
            Arc::ptr_eq(&first.backends[1], &second.backends[0]),
            "an address that stays keeps its channel and record"
        );
        assert_eq!(
            second.backends[1].address,
            "greeter.internal:50051 (10.0.0.3:50051)"
        );
    }

    #[tokio::test]
    async fn a_name_that_never_resolved_publishes_why() {
        let resolver = resolver();
        resolver.publish(
            &[Vec::new()],
            vec!["cannot resolve greeter.internal: no".into()],
        );
        let snapshot = Arc::clone(&resolver.publish.borrow());
        assert!(snapshot.settled && snapshot.backends.is_empty());
        assert_eq!(
            snapshot.problem.as_deref(),
            Some("cannot resolve greeter.internal: no")
        );
    }
}
