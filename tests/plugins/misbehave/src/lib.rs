//! Test-only plugin: each method breaks one rule of the sandbox, so the tests can check
//! that the host answers with the right status and keeps serving everyone else.

plugrpc_guest::include_proto!("misbehave.v1");

use std::hint::black_box;
use std::time::{Duration, Instant};

use misbehave_server::{Misbehave, MisbehaveServer};
use plugrpc_guest::{Context, Requests, Sink, Status};

/// The Misbehave handlers.
#[derive(Default)]
struct Rogue;

/// Recurses on the wasm stack: no address-taken locals (those would live on Rust's
/// shadow stack in linear memory), and a call that is not in tail position.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    black_box(recurse(black_box(depth + 1)))
}

impl Misbehave for Rogue {
    fn spin(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn busy_wait(&self, _cx: &Context, request: BusyWaitRequest) -> Result<Empty, Status> {
        let until = Instant::now() + Duration::from_millis(request.millis.into());
        while Instant::now() < until {
            black_box(());
        }
        Ok(Empty {})
    }

    fn allocate(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        let mut hoard = Vec::new();
        loop {
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }

    fn panic(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        panic!("misbehave panics on purpose");
    }

    fn unreachable(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        // The `unreachable` instruction itself; the host build only needs to compile.
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        unreachable!("this plugin runs as wasm32")
    }

    fn recurse(&self, _cx: &Context, _request: Empty) -> Result<Empty, Status> {
        black_box(recurse(0));
        Ok(Empty {})
    }

    fn huge_reply(&self, _cx: &Context, request: SizeRequest) -> Result<Blob, Status> {
        let size =
            usize::try_from(request.bytes).map_err(|_| Status::invalid_argument("too big"))?;
        Ok(Blob {
            data: vec![7; size],
        })
    }

    fn endless(&self, _cx: &Context, _request: Empty, out: &mut Sink<Blob>) -> Result<(), Status> {
        loop {
            out.send(Blob {
                data: vec![1; 1024],
            })?;
        }
    }

    fn hoard(&self, _cx: &Context, _input: Requests<Blob>) -> Result<Empty, Status> {
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn drain(&self, _cx: &Context, input: Requests<Blob>) -> Result<SizeRequest, Status> {
        let mut bytes = 0;
        for blob in input {
            bytes += blob?.data.len() as u64;
        }
        Ok(SizeRequest { bytes })
    }

    fn print(&self, _cx: &Context, request: PrintRequest) -> Result<Empty, Status> {
        for i in 0..request.lines {
            println!("misbehave stdout line {i}");
            eprintln!("misbehave stderr line {i}");
        }
        Ok(Empty {})
    }

    fn escape(&self, _cx: &Context, _request: Empty) -> Result<EscapeReport, Status> {
        let attempts = [
            ("read /etc/passwd", std::fs::read("/etc/passwd").is_ok()),
            ("list /", std::fs::read_dir("/").is_ok()),
            ("list .", std::fs::read_dir(".").is_ok()),
            ("create a file", std::fs::write("escape.txt", b"x").is_ok()),
            (
                "environment variables",
                std::env::vars_os().next().is_some(),
            ),
            ("program arguments", std::env::args_os().next().is_some()),
            (
                "connect to 127.0.0.1:50051",
                std::net::TcpStream::connect("127.0.0.1:50051").is_ok(),
            ),
            (
                "bind a listener",
                std::net::TcpListener::bind("127.0.0.1:0").is_ok(),
            ),
        ];
        let mut report = EscapeReport::default();
        for (what, worked) in attempts {
            if worked {
                &mut report.granted
            } else {
                &mut report.denied
            }
            .push(what.to_owned());
        }
        Ok(report)
    }

    fn measure(&self, _cx: &Context, request: Blob) -> Result<SizeRequest, Status> {
        Ok(SizeRequest {
            bytes: request.data.len() as u64,
        })
    }
}

plugrpc_guest::export!(MisbehaveServer<Rogue>);
