//! A real browser (Debian's chromium, headless) loads a page from another origin that
//! calls GetUser through Connect JSON and gRPC-Web: CORS lets the listed origin's page
//! read the answers and keeps an unlisted origin's page from them.

use std::path::Path;
use std::time::Duration;

use plugrpc_tests::TestHost;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::plugins::USERS_FIXTURE;

/// Longest the browser may take to load the page and run its calls.
const PATIENCE: Duration = Duration::from_secs(90);

/// Serves tests/browser/page.html to every request on a port of its own (an origin
/// other than the host's) until dropped.
struct PageServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start() -> Self {
        let page = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/page.html"))
            .expect("the test page");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // A browser asks for the page and a favicon: a handful of connections.
            for _ in 0..16 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let page = page.clone();
                tokio::spawn(async move {
                    let mut request = vec![0; 8192];
                    let _ = stream.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        page.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&page).await;
                });
            }
        });
        Self { port, task }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads `page`'s page in headless chromium, pointed at `host`; the lines the page
/// wrote into its result.
async fn browse(page: &PageServer, host: &TestHost) -> Vec<String> {
    let profile = tempfile::tempdir().unwrap();
    let url = format!(
        "{}/page.html?host=http://127.0.0.1:{}",
        page.origin(),
        host.addr().port()
    );
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("chromium finishes")
        .expect("chromium runs (apt-get install chromium)");
    let dom = String::from_utf8_lossy(&output.stdout);
    let result = dom
        .split_once("<pre id=\"result\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(result, _)| result)
        .unwrap_or_else(|| {
            panic!(
                "no result in the page: {dom}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    result.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_from_a_listed_origin_calls_through_connect_and_grpc_web_and_others_cannot() {
    let listed = PageServer::start().await;
    let unlisted = PageServer::start().await;
    let config = format!("[cors]\nallowed_origins = [{:?}]\n", listed.origin());
    let host = TestHost::with_config(&[USERS_FIXTURE], &config).await;

    assert_eq!(
        browse(&listed, &host).await,
        [
            "connect 200 user-7",
            "connect-error 404 not_found",
            "grpc-web 200 user-8 status=0",
        ]
    );
    assert_eq!(
        browse(&unlisted, &host).await,
        [
            "connectJson blocked: TypeError",
            "grpcWeb blocked: TypeError"
        ]
    );
}
