//! What the binary's tests share: running `plugrpc`, serving with it, and the repo's
//! test plugins built for them.
#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// `plugrpc ARGS`, run to its end.
pub(crate) fn plugrpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugrpc"))
        .args(args)
        // A backtrace must not appear whatever the environment asks.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("plugrpc runs")
}

/// The workspace's root folder.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace root")
        .to_owned()
}

/// The `.wasm` files of the repo's plugin crates `names`, built as tests/build.rs builds
/// them (into the same target dir, so a test run that built them already reuses them).
pub(crate) fn test_plugins(names: &[&str]) -> Vec<PathBuf> {
    if names.is_empty() {
        return Vec::new();
    }
    let target_dir = root().join("target/test-plugins");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root())
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(names.iter().flat_map(|name| ["-p", name]))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {names:?} failed");
    names
        .iter()
        .map(|name| {
            target_dir
                .join("wasm32-wasip2/plugin")
                .join(format!("{}.wasm", name.replace('-', "_")))
        })
        .collect()
}

/// The address a host's log says it serves gRPC on, in text (`addr=...`) or JSON.
fn serving_addr(log: &[String]) -> SocketAddr {
    log.iter()
        .find_map(|line| {
            let (at, key) = ["addr=", "\"addr\":\""]
                .iter()
                .find_map(|key| Some((line.find(key)?, key.len())))?;
            let rest = &line[at + key..];
            rest.split(|c: char| c.is_whitespace() || c == '"')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no address in {log:?}"))
}

/// A child's output lines, read in a thread, so that every wait for one is bounded.
pub(crate) struct Lines {
    lines: mpsc::Receiver<String>,
    seen: Mutex<Vec<String>>,
}

impl Lines {
    pub(crate) fn of(output: impl Read + Send + 'static) -> Self {
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            lines,
            seen: Mutex::default(),
        }
    }

    /// Waits up to `limit` for a line holding `needle`: the lines read until then. Fails
    /// naming every line seen so far when none comes, or the output ends.
    pub(crate) fn until(&self, needle: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut read = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                break false;
            };
            let found = line.contains(needle);
            read.push(line);
            if found {
                break true;
            }
        };
        let mut seen = self.seen.lock().unwrap();
        seen.extend(read.iter().cloned());
        assert!(found, "no line with {needle:?} within {limit:?}: {seen:#?}");
        read
    }
}

/// A `plugrpc serve` child on a folder of its own, with its log and address; killed
/// when dropped, so a failing test leaves no host behind.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) log: Lines,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: tempfile::TempDir,
    /// The log up to "serving gRPC".
    pub(crate) startup: Vec<String>,
}

impl Served {
    /// Serves the repo's test plugins `plugins` (crate names) with `config` and `args`
    /// after `serve`. `config` is TOML read after a loopback listen and the `[host]` keys
    /// `cache_dir` (one for every test) and `admin_listen = "off"` (`--admin` overrides
    /// it): keys before its first table are more `[host]` keys.
    pub(crate) fn start(plugins: &[&str], config: &str, args: &[&str]) -> Self {
        Self::start_under(&[], plugins, config, args)
    }

    /// As [`Self::start`], run by the command `wrapper` (`prlimit` and its flags).
    pub(crate) fn start_under(
        wrapper: &[&str],
        plugins: &[&str],
        config: &str,
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        for (name, wasm) in plugins.iter().zip(test_plugins(plugins)) {
            let file = dir.path().join("plugins").join(format!("{name}.wasm"));
            std::fs::copy(wasm, file).unwrap();
        }
        write_config(dir.path(), config);
        let binary = env!("CARGO_BIN_EXE_plugrpc");
        let mut command = match wrapper {
            [program, flags @ ..] => {
                let mut command = Command::new(program);
                command.args(flags).arg(binary);
                command
            }
            [] => Command::new(binary),
        };
        let mut child = command
            .arg("serve")
            .args(args)
            .arg("--config")
            .arg(dir.path().join("plugrpc.toml"))
            .arg("--plugins")
            .arg(dir.path().join("plugins"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("running {wrapper:?} {binary}: {error}"));
        let log = Lines::of(child.stdout.take().unwrap());
        let mut served = Self {
            child,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            startup: Vec::new(),
        };
        served.startup = served.log.until("serving gRPC", Duration::from_secs(60));
        served.addr = serving_addr(&served.startup);
        served
    }

    /// The folder it serves plugins from.
    pub(crate) fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Replaces its config file (written whole, then renamed), as [`Self::start`] takes it.
    pub(crate) fn write_config(&self, config: &str) {
        write_config(self.dir.path(), config);
    }

    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .unwrap();
    }

    /// Waits up to `limit` for it to exit: its status.
    pub(crate) fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, config: &str) {
    // Written whole, then renamed: the host never reads half a file.
    let part = dir.join("plugrpc.toml.part");
    // One compile cache for every host the binary's tests start.
    let cache = root().join("target/test-plugins/binary-cache");
    let header = format!(
        "listen = \"127.0.0.1:0\"\n[host]\ncache_dir = {:?}\nadmin_listen = \"off\"\n",
        cache.display().to_string()
    );
    std::fs::write(&part, format!("{header}{config}")).unwrap();
    std::fs::rename(part, dir.join("plugrpc.toml")).unwrap();
}

/// Throwaway certificates, as the end-to-end tests make them (their file, shared).
#[path = "../../../tests/support/certs.rs"]
#[allow(unreachable_pub)]
pub(crate) mod certs;

/// Asking a loopback server something (the end-to-end tests' file, shared).
#[path = "../../../tests/support/probe.rs"]
#[allow(unreachable_pub)]
pub(crate) mod probe;

/// A real `redis-server` on loopback, as the end-to-end tests start it (their file, shared).
#[path = "../../../tests/support/redis.rs"]
#[allow(unreachable_pub)]
pub(crate) mod redis;

/// A real OCI registry on loopback, as the end-to-end tests start it (their file, shared;
/// its items are `pub` for that crate).
#[path = "../../../tests/support/oci_registry.rs"]
#[allow(unreachable_pub)]
pub(crate) mod oci_registry;
