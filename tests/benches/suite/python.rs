//! The UserService as a Python grpcio server (`tests/bench/users_server.py`), pinned to
//! the server core; stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the server with the workspace's venv Python; why not, when it cannot.
    pub(crate) fn start() -> Result<Self, String> {
        let python = super::venv_python();
        if !python.exists() {
            return Err(format!(
                "no Python at {} (run `make test` once to create the venv, or set PLUGRPC_PYTHON)",
                python.display()
            ));
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/users_server.py");
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(&python)
            .args([script, "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", python.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse::<u16>().ok());
        match port {
            Some(port) => Ok(Self {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the Python server did not start (it said {line:?})"
                ))
            }
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Python process itself (taskset execs it in place).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
