//! The `plugrpc` binary under a low open-file limit, as many systems start processes:
//! it raises its soft limit to the hard one, keeps connections under what the limit
//! leaves, and a flood of silent connections from one address neither spins the accept
//! loop nor keeps a client on another address from being served.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Served;

/// `plugrpc serve` under `prlimit --nofile=<soft>:<hard>` (util-linux), serving an empty
/// plugins folder with `config`.
fn serve(soft: u32, hard: u32, config: &str) -> Served {
    let prlimit = format!("--nofile={soft}:{hard}");
    Served::start_under(&["prlimit", &prlimit], &[], config, &[])
}

/// The soft and hard open-file limits of a process, from /proc.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// User + system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Whether the host answers an HTTP/2 request on a new connection from 127.0.0.1 (any
/// answer: the folder is empty, so it is UNIMPLEMENTED).
fn served(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    use std::io::Write;
    // The client preface, an empty SETTINGS, then HEADERS (stream 1, END_STREAM,
    // END_HEADERS) for POST /x.Y/Z with content-type application/grpc, HPACK literals.
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend([0x44, 0x04]);
    block.extend(b"/x/Z"); // :path, literal with indexing (name 4)
    block.extend([0x41, 0x01, b'h']); // :authority h
    block.extend([0x5f, 0x10]);
    block.extend(b"application/grpc"); // content-type
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let len = block.len();
    request.extend([
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        0x05,
        0,
        0,
        0,
        1,
    ]);
    request.extend(block);
    if stream.write_all(&request).is_err() {
        return false;
    }
    // Any HEADERS frame (type 1) back on stream 1 is an answer.
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while at + 9 <= buffer.len() {
            let len = usize::from(buffer[at]) << 16
                | usize::from(buffer[at + 1]) << 8
                | usize::from(buffer[at + 2]);
            if buffer[at + 3] == 1 && buffer[at + 5..at + 9] == [0, 0, 0, 1] {
                return true;
            }
            at += 9 + len;
        }
    }
    false
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let host = serve(512, 4096, "");
    assert_eq!(open_file_limits(host.child.id()), (4096, 4096));
    assert!(served(host.addr));
}

#[test]
fn silent_connections_past_a_low_open_file_limit_neither_spin_nor_starve_others() {
    // 300 files, 256 kept for the host: connections are capped at 44, 30 per address.
    let host = serve(300, 300, "[edge]\nmax_connections_per_ip = 30\n");
    assert!(
        host.startup
            .iter()
            .any(|line| line.contains("capping connections at 44")),
        "the cap is lowered and says so: {:?}",
        host.startup
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pid = host.child.id();
    let before = cpu_time(pid);
    let started = Instant::now();
    let silent: Vec<TcpStream> = (0..400)
        .filter_map(|_| connect_from_attacker(&runtime, host.addr))
        .collect();
    let mut answered = 0;
    for _ in 0..20 {
        answered += usize::from(served(host.addr));
    }
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_time(pid) - before;
    let elapsed = started.elapsed();
    assert_eq!(answered, 20, "a client on another address is served");
    assert!(!silent.is_empty());
    assert!(
        spent < elapsed / 2,
        "the host spent {spent:?} of CPU in {elapsed:?}: its accept loop spins"
    );
}

/// A connection to `addr` from 127.0.0.2 (another address than the served client's),
/// if the host lets it open.
fn connect_from_attacker(runtime: &tokio::runtime::Runtime, addr: SocketAddr) -> Option<TcpStream> {
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind("127.0.0.2:0".parse().unwrap()).ok()?;
        let stream = socket.connect(addr).await.ok()?;
        stream.into_std().ok()
    })
}
