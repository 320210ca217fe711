//! Shared test harness: the real daemon on port 0, a target server whose answer the test
//! controls, and a webhook receiver that records what it gets.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod console;
pub mod mail;
pub mod postgres;
pub mod probing;
pub mod servers;
pub mod test_config;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tocsin::app::AppError;
use tocsin::config::{self, ConfigSource};

/// Generous upper bound for anything the daemon should do within a few probe intervals.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The daemon running in this process on 127.0.0.1:0.
pub struct Daemon {
    pub addr: SocketAddr,
    token: CancellationToken,
    handle: JoinHandle<Result<(), AppError>>,
}

impl Daemon {
    /// Writes `toml` to `dir/tocsin.toml`, validates it and runs the daemon on it.
    pub async fn start(toml: impl std::fmt::Display, dir: &Path) -> Daemon {
        let path = dir.join("tocsin.toml");
        std::fs::write(&path, toml.to_string()).unwrap();
        let source = ConfigSource::File(path);
        let settings = config::load(&source).unwrap_or_else(|e| panic!("test config: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let handle = tokio::spawn(tocsin::app::run(source, settings, listener, token.clone()));
        let daemon = Daemon {
            addr,
            token,
            handle,
        };
        wait_for("the daemon to be ready", || async {
            get_status(daemon.addr, "/readyz").await == Some(200)
        })
        .await;
        daemon
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = reqwest::get(self.url(path)).await.unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(self) {
        self.token.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The daemon started in this process without a listener: requests go straight to its
/// router (`tower::ServiceExt::oneshot`), no socket involved.
pub struct InProcess {
    app: tocsin::app::App,
}

impl InProcess {
    pub async fn start(toml: impl std::fmt::Display, dir: &Path) -> InProcess {
        let path = dir.join("tocsin.toml");
        std::fs::write(&path, toml.to_string()).unwrap();
        let source = ConfigSource::File(path);
        let settings = config::load(&source).unwrap_or_else(|e| panic!("test config: {e}"));
        let app = tocsin::app::App::start(source, settings).await.unwrap();
        InProcess { app }
    }

    /// `method path` with an optional bearer token and JSON body: the status, the
    /// content type and the body (JSON as a string, parse it with [`json`]).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, String, String) {
        let (content_type, body) = match body {
            Some(json) => (Some("application/json"), json.to_string().into_bytes()),
            None => (None, Vec::new()),
        };
        let (status, headers, body) = self.raw(method, path, token, content_type, body).await;
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, body)
    }

    /// A request with any content type and body: the status, the headers and the body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, HeaderMap, String) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = self
            .app
            .router()
            .oneshot(request.body(axum::body::Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}

/// A response body as JSON.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Polls `condition` until it holds; panics after [`PATIENCE`]. This waits for a state,
/// it does not sleep in the hope that something happened.
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sum of a counter or gauge over all label sets matching every `label="value"` given.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An HTTP target whose status code the test sets, counting the requests it answers.
pub struct Target {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl Target {
    pub async fn start() -> Target {
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/health",
                get(
                    |State((s, hits)): State<(Arc<AtomicU16>, Arc<AtomicUsize>)>| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let code = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                        (code, "mailbox store ready")
                    },
                ),
            )
            .with_state((Arc::clone(&status), Arc::clone(&hits)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Target { addr, status, hits }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }
}

/// One request received by the webhook receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The query string of the receiver URL, to tell receivers apart.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub event: serde_json::Value,
}

impl Delivery {
    pub fn kind(&self) -> &str {
        self.event["type"].as_str().unwrap()
    }
}

/// A webhook receiver on loopback that answers 204 and passes on what it gets.
pub struct Receiver {
    pub addr: SocketAddr,
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel::<Delivery>();
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State(tx): State<mpsc::UnboundedSender<Delivery>>,
                     RawQuery(query): RawQuery,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let event = serde_json::from_slice(&body).unwrap_or_default();
                        let _ = tx.send(Delivery {
                            query,
                            headers,
                            body: body.to_vec(),
                            event,
                        });
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            deliveries: rx,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next delivery; panics after [`PATIENCE`].
    pub async fn next(&mut self) -> Delivery {
        self.next_within(PATIENCE).await
    }

    /// The next delivery; panics after `patience`.
    pub async fn next_within(&mut self, patience: Duration) -> Delivery {
        tokio::time::timeout(patience, self.deliveries.recv())
            .await
            .expect("timed out waiting for a webhook")
            .expect("receiver closed")
    }

    /// Everything received so far, without waiting.
    pub fn drain(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(d) = self.deliveries.try_recv() {
            out.push(d);
        }
        out
    }
}

/// A temporary directory removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Lints a metrics exposition with `promtool check metrics`, as Prometheus' own tooling does.
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by the README's test command (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
