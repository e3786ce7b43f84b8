//! Asking a server on loopback something, for the helpers that start real ones (is it up
//! yet?) and for tests that read a plain-text answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What the server at `addr` answers to `request`, read until it closes the connection
/// or stays silent for `patience`; `None` when it cannot be reached.
pub fn ask(addr: SocketAddr, request: &[u8], patience: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(patience)).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Some(answer)
}
