//! A real Prometheus (Debian's `prometheus` package) for the metrics tests: started on a
//! free loopback port with a temporary data folder and a scrape config naming one target,
//! scraping every second; its HTTP API answers PromQL queries; stopped when dropped.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a starting Prometheus gets to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `prometheus`.
pub struct PrometheusServer {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts a Prometheus scraping `target`'s `/metrics` every second, once it is ready.
    /// Fails the test, saying what to install, when `prometheus` is missing.
    pub async fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: plugrpc\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the scrape config");
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting prometheus ({error}): install it (apt-get install prometheus)")
            });
        let server = Self {
            addr,
            child,
            _dir: dir,
        };
        let started = Instant::now();
        while get(addr, "/-/ready").await.map(|(status, _)| status) != Some(200) {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "prometheus was not ready on {addr} within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// The result of an instant PromQL query (`data.result` of `/api/v1/query`).
    pub async fn query(&self, promql: &str) -> serde_json::Value {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let (status, body) = get(self.addr, &format!("/api/v1/query?{query}"))
            .await
            .expect("prometheus answers");
        assert_eq!(status, 200, "query {promql:?}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        answer["data"]["result"].clone()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status and body of `GET path` on `addr` (HTTP/1.0: the body ends with the
/// connection); `None` when nothing answers.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .ok()?
        .ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
