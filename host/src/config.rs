//! Host settings, with defaults that let `plugrpc serve` run with no config file.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// Where the host listens when told nothing: loopback only, the usual gRPC port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50051));

/// The plugins folder when told nothing, relative to the working directory.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";

/// What a host serves and where.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Folder whose `.wasm` files are the plugins.
    pub plugins_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            plugins_dir: PathBuf::from(DEFAULT_PLUGINS_DIR),
            listen: DEFAULT_LISTEN,
        }
    }
}
