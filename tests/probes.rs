//! The `http` and `tcp` probes against real servers on loopback.
//!
//! Every server here is started by the test itself on `127.0.0.1:0`: well-behaved ones with
//! axum, hostile ones (silent, stalling, endless) as raw `TcpListener`s. All probe traffic
//! goes to 127.0.0.1; the one exception is the lookup of a `.invalid` name (RFC 6761), which
//! goes to the system resolver and is answered NXDOMAIN at once in this sandbox.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use serde_json::{Value, json};

use tocsin::probe::{ProbeConfig, Prober, Reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

mod common;
use common::probing::{failed, issues_of, ok, run, spec, with};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Deadline for probes that are expected to finish on their own.
const GENEROUS: Duration = Duration::from_secs(10);
/// Deadline for probes that are expected to time out.
const SHORT: Duration = Duration::from_secs(2);
/// How late past its deadline a probe may return on a noisy machine.
const MARGIN: Duration = Duration::from_secs(1);
/// The default read bound.
const ONE_MIB: u64 = 1024 * 1024;

/// Serves `router` on a fresh loopback port; returns `http://127.0.0.1:PORT`.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A raw TCP server: runs `handle` on each accepted connection, in its own task.
async fn raw_server<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Accepts and holds each connection open without ever writing a byte.
async fn silent_server() -> SocketAddr {
    raw_server(|stream| async move {
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

/// Reads an HTTP request head (up to the blank line, at most 64 KiB).
async fn read_request_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        stream.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    Ok(())
}

/// Reads the request, writes `head` (status line, headers, part of the body), then stalls.
async fn stalled_http_server(head: &'static [u8]) -> SocketAddr {
    raw_server(move |mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream.write_all(head).await;
        }
        std::future::pending::<()>().await;
    })
    .await
}

/// Writes `chunk` again and again until the peer goes away; with `http_head`, reads the
/// request and writes that head first. The counter holds the bytes written; `closed` fires
/// when a write fails (the probe hung up).
async fn endless_server(
    http_head: Option<&'static [u8]>,
    chunk: Vec<u8>,
) -> (SocketAddr, Arc<AtomicU64>, oneshot::Receiver<()>) {
    let sent = Arc::new(AtomicU64::new(0));
    let (closed_tx, closed_rx) = oneshot::channel();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    let counter = sent.clone();
    let addr = raw_server(move |mut stream| {
        let (sent, closed_tx, chunk) = (counter.clone(), closed_tx.clone(), chunk.clone());
        async move {
            let ready = match http_head {
                Some(head) => {
                    read_request_head(&mut stream).await.is_ok()
                        && stream.write_all(head).await.is_ok()
                }
                None => true,
            };
            if ready {
                while stream.write_all(&chunk).await.is_ok() {
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
            if let Some(tx) = closed_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    })
    .await;
    (addr, sent, closed_rx)
}

/// Promises 1000 bytes of body, sends 9.
const STALLED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nhalf a bo";

const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

/// One HTTP chunk of 16 KiB of `x`.
fn http_chunk() -> Vec<u8> {
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'x', 0x4000));
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// A listener whose accept queue (backlog 0: one connection) is already full, so the
/// kernel drops further SYNs and connecting hangs. Keep the guard alive while probing.
async fn full_backlog() -> (SocketAddr, impl Sized) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect(addr).await.unwrap();
    (addr, (listener, filler))
}

/// A loopback port nobody listens on: bind, note the port, close.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn http(url: impl Into<String>) -> Value {
    json!({ "type": "http", "url": url.into() })
}

fn tcp(addr: SocketAddr, extra: Value) -> Value {
    with(json!({ "type": "tcp", "address": addr.to_string() }), extra)
}

/// Runs a probe expected to hit its deadline; checks reason and punctuality.
async fn times_out(probe: Value) -> String {
    let started = Instant::now();
    let result = run(probe, SHORT).await;
    let elapsed = started.elapsed();
    let detail = failed(&result, Reason::Timeout);
    assert!(
        elapsed < SHORT + MARGIN,
        "returned {elapsed:?} after a {SHORT:?} deadline"
    );
    assert!(
        elapsed >= SHORT - Duration::from_millis(100),
        "gave up early ({elapsed:?})"
    );
    detail
}

/// A small well-behaved HTTP service.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello from tocsin tests, build 42" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route("/busy", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/sized", get(|| async { "x".repeat(64) }))
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/final")]) }),
        )
        .route("/final", get(|| async { "you made it" }))
        .route("/echo", any(echo))
}

/// 200 only for `PUT` with `x-probe: tocsin` and body `ping`; 400 otherwise.
async fn echo(method: Method, headers: HeaderMap, body: String) -> impl IntoResponse {
    let header_ok = headers.get("x-probe").is_some_and(|v| v == "tocsin");
    if method == Method::PUT && header_ok && body == "ping" {
        (StatusCode::OK, "pong".to_string())
    } else {
        let got = format!(
            "{method} x-probe={:?} body={body:?}",
            headers.get("x-probe")
        );
        (StatusCode::BAD_REQUEST, got)
    }
}

// ---------------------------------------------------------------------------------------
// http: well-behaved servers
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_200_is_ok_with_phases() {
    let base = serve(app()).await;
    let result = run(http(format!("{base}/")), GENEROUS).await;
    ok(&result);
    let first_byte = result.phases.first_byte.expect("first_byte phase");
    let total = result.phases.total.expect("total phase");
    assert!(first_byte <= total, "{result:?}");
    assert_eq!(result.latency, total);
}

#[tokio::test]
async fn http_valid_status_list_is_exact() {
    let base = serve(app()).await;
    let only_204 = json!({ "valid_status": [204] });

    ok(&run(
        with(http(format!("{base}/empty")), only_204.clone()),
        GENEROUS,
    )
    .await);

    let refused = run(with(http(format!("{base}/")), only_204), GENEROUS).await;
    assert!(failed(&refused, Reason::Status).contains("200"));
}

#[tokio::test]
async fn http_default_accepts_any_2xx_only() {
    let base = serve(app()).await;
    ok(&run(http(format!("{base}/empty")), GENEROUS).await); // 204
    let busy = run(http(format!("{base}/busy")), GENEROUS).await;
    assert!(failed(&busy, Reason::Status).contains("503"));
}

#[tokio::test]
async fn http_body_contains() {
    let base = serve(app()).await;
    let url = format!("{base}/");
    ok(&run(
        with(http(&url), json!({ "body_contains": "build 42" })),
        GENEROUS,
    )
    .await);

    let missing = run(
        with(http(&url), json!({ "body_contains": "build 43" })),
        GENEROUS,
    )
    .await;
    assert!(failed(&missing, Reason::Assertion).contains("build 43"));
}

#[tokio::test]
async fn http_body_regex() {
    let base = serve(app()).await;
    let url = format!("{base}/");
    ok(&run(
        with(http(&url), json!({ "body_regex": r"build \d+$" })),
        GENEROUS,
    )
    .await);

    let missing = run(
        with(http(&url), json!({ "body_regex": r"^build" })),
        GENEROUS,
    )
    .await;
    assert!(failed(&missing, Reason::Assertion).contains("^build"));
}

#[tokio::test]
async fn http_redirects_are_followed_by_default() {
    let base = serve(app()).await;
    let url = format!("{base}/moved");
    // The body check proves the probe saw /final, not the 302 itself.
    ok(&run(
        with(http(&url), json!({ "body_contains": "you made it" })),
        GENEROUS,
    )
    .await);
}

#[tokio::test]
async fn http_redirects_not_followed_when_disabled() {
    let base = serve(app()).await;
    let url = format!("{base}/moved");
    let no_follow = json!({ "follow_redirects": false });

    let plain = run(with(http(&url), no_follow.clone()), GENEROUS).await;
    assert!(failed(&plain, Reason::Status).contains("302"));

    let accepted = with(
        with(http(&url), no_follow),
        json!({ "valid_status": [302] }),
    );
    ok(&run(accepted, GENEROUS).await);
}

#[tokio::test]
async fn http_sends_method_headers_and_body() {
    let base = serve(app()).await;
    let url = format!("{base}/echo");
    let full = with(
        http(&url),
        json!({
            "method": "PUT",
            "headers": { "X-Probe": "tocsin" },
            "body": "ping",
            "body_contains": "pong",
        }),
    );
    ok(&run(full, GENEROUS).await);

    // Control: without the method the server refuses, so the check above means something.
    let get = with(
        http(&url),
        json!({ "headers": { "X-Probe": "tocsin" }, "body": "ping" }),
    );
    assert!(failed(&run(get, GENEROUS).await, Reason::Status).contains("400"));
}

#[tokio::test]
async fn http_body_limit_is_inclusive() {
    let base = serve(app()).await;
    let url = format!("{base}/sized"); // exactly 64 bytes
    ok(&run(with(http(&url), json!({ "max_body_bytes": 64 })), GENEROUS).await);

    let over = run(with(http(&url), json!({ "max_body_bytes": 63 })), GENEROUS).await;
    assert!(failed(&over, Reason::Assertion).contains("max_body_bytes"));
}

// ---------------------------------------------------------------------------------------
// http: network failures
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_connection_refused() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let result = run(http(url), GENEROUS).await;
    failed(&result, Reason::ConnectRefused);
}

/// A TLS client talking to a plain-HTTP server: the server answers the ClientHello with an
/// HTTP 400, which rustls rejects as a corrupt record, so the reason is `tls`.
#[tokio::test]
async fn https_to_plain_http_server_is_tls() {
    let base = serve(app()).await;
    let url = base.replacen("http://", "https://", 1) + "/";
    let result = run(http(url), GENEROUS).await;
    failed(&result, Reason::Tls);
}

// ---------------------------------------------------------------------------------------
// http: hostile endpoints
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_server_that_never_answers_times_out() {
    let addr = silent_server().await;
    times_out(http(format!("http://{addr}/"))).await;
}

/// The connect itself hangs: the probe drives the phases itself, so it names the phase that
/// ran out, like the tcp probe, and keeps its deadline.
#[tokio::test]
async fn http_connect_that_never_completes_is_connect_timeout() {
    let (addr, _guard) = full_backlog().await;
    let started = Instant::now();
    let result = run(http(format!("http://{addr}/")), SHORT).await;
    failed(&result, Reason::ConnectTimeout);
    assert!(started.elapsed() < SHORT + MARGIN, "{result:?}");
}

#[tokio::test]
async fn http_headers_then_stalled_body_times_out() {
    let addr = stalled_http_server(STALLED_HEAD).await;
    times_out(http(format!("http://{addr}/"))).await;
}

#[tokio::test]
async fn http_endless_body_hits_small_limit() {
    let (addr, _, _) = endless_server(Some(CHUNKED_HEAD), http_chunk()).await;
    let probe = with(
        http(format!("http://{addr}/")),
        json!({ "max_body_bytes": 1000 }),
    );
    let result = run(probe, GENEROUS).await;
    let detail = failed(&result, Reason::Assertion);
    assert!(detail.contains("max_body_bytes (1000)"), "{detail}");
}

/// Headers that never end: hyper's own head-size limit stops the read with a `protocol`
/// failure long before the deadline, and the probe hangs up.
#[tokio::test]
async fn http_endless_headers_are_bounded() {
    let junk = [b"x-junk: ".as_slice(), &[b'a'; 1000], b"\r\n"].concat();
    let (addr, _, closed) = endless_server(Some(b"HTTP/1.1 200 OK\r\n"), junk).await;
    let result = run(http(format!("http://{addr}/")), GENEROUS).await;
    failed(&result, Reason::Protocol);
    tokio::time::timeout(GENEROUS, closed)
        .await
        .expect("the probe left the connection open")
        .unwrap();
}

/// The default bound (1 MiB) applies even when the body is kept for a check, and the probe
/// hangs up instead of draining the stream: the server sees the connection die.
#[tokio::test]
async fn http_endless_body_hits_default_limit_and_hangs_up() {
    let (addr, sent, closed) = endless_server(Some(CHUNKED_HEAD), http_chunk()).await;
    let probe = with(
        http(format!("http://{addr}/")),
        json!({ "body_contains": "never there" }),
    );
    let result = run(probe, GENEROUS).await;
    let detail = failed(&result, Reason::Assertion);
    assert!(
        detail.contains(&format!("max_body_bytes ({ONE_MIB})")),
        "{detail}"
    );

    tokio::time::timeout(GENEROUS, closed)
        .await
        .expect("the probe left the connection open")
        .unwrap();
    // What the server managed to push is the probe's reads plus socket buffers, not more.
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 64 * ONE_MIB, "server wrote {sent} bytes");
}

/// A stalled endpoint must not hold up another probe on the same `Prober`, even on a
/// single-threaded runtime: the healthy probe, started while the stalled one is in flight,
/// finishes first, and the stalled one then ends on its own deadline.
#[tokio::test]
async fn http_stalled_endpoint_does_not_delay_a_healthy_probe() {
    let (accepted_tx, accepted_rx) = oneshot::channel::<()>();
    let accepted_tx = Arc::new(std::sync::Mutex::new(Some(accepted_tx)));
    let stalled_addr = raw_server(move |mut stream| {
        let accepted_tx = accepted_tx.clone();
        async move {
            read_request_head(&mut stream).await.unwrap();
            stream.write_all(STALLED_HEAD).await.unwrap();
            if let Some(tx) = accepted_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<()>().await;
        }
    })
    .await;
    let base = serve(app()).await;

    let prober = Prober::new().unwrap();
    let stalled_spec = spec(http(format!("http://{stalled_addr}/")));
    let healthy_spec = spec(http(format!("{base}/")));

    let stalled = prober.run(&stalled_spec, SHORT);
    tokio::pin!(stalled);
    let healthy = async {
        accepted_rx.await.unwrap(); // the stalled probe is now waiting for the body
        prober.run(&healthy_spec, SHORT).await
    };
    let healthy_result = tokio::select! {
        biased;
        result = &mut stalled => panic!("the stalled probe finished first: {result:?}"),
        result = healthy => result,
    };
    ok(&healthy_result);

    let stalled_result = stalled.await;
    failed(&stalled_result, Reason::Timeout);
    assert!(healthy_result.latency < stalled_result.latency);
}

// ---------------------------------------------------------------------------------------
// tcp
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn tcp_connect_only() {
    let addr = silent_server().await;
    let result = run(tcp(addr, json!({})), GENEROUS).await;
    ok(&result);
    assert!(result.phases.connect.is_some(), "{result:?}");
    assert!(result.phases.total.is_some(), "{result:?}");
}

#[tokio::test]
async fn tcp_send_and_expect() {
    // Answers only after reading the probe's line, so `send` is checked too.
    let addr = raw_server(|mut stream| async move {
        let mut line = [0u8; 6];
        if stream.read_exact(&mut line).await.is_ok() && &line == b"PING\r\n" {
            let _ = stream.write_all(b"PONG tocsin-test\r\n").await;
        }
        std::future::pending::<()>().await;
    })
    .await;
    let probe = tcp(
        addr,
        json!({ "send": "PING\r\n", "expect_regex": "^PONG tocsin" }),
    );
    let result = run(probe, GENEROUS).await;
    ok(&result);
    assert!(result.phases.first_byte.is_some(), "{result:?}");
}

#[tokio::test]
async fn tcp_expect_not_matched_then_closed_is_assertion() {
    let addr = raw_server(|mut stream| async move {
        let _ = stream.write_all(b"500 go away\r\n").await;
        // dropped here: the peer closes
    })
    .await;
    let result = run(tcp(addr, json!({ "expect_regex": "^220 " })), GENEROUS).await;
    assert!(failed(&result, Reason::Assertion).contains("closed"));
}

#[tokio::test]
async fn tcp_peer_never_answers_times_out() {
    let addr = silent_server().await;
    times_out(tcp(
        addr,
        json!({ "send": "HELLO\r\n", "expect_regex": "." }),
    ))
    .await;
}

#[tokio::test]
async fn tcp_connect_that_never_completes_is_connect_timeout() {
    let (addr, _guard) = full_backlog().await;
    let started = Instant::now();
    let result = run(tcp(addr, json!({})), SHORT).await;
    failed(&result, Reason::ConnectTimeout);
    assert!(started.elapsed() < SHORT + MARGIN, "{result:?}");
}

#[tokio::test]
async fn tcp_connection_refused() {
    let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let result = run(tcp(addr, json!({})), GENEROUS).await;
    failed(&result, Reason::ConnectRefused);
}

#[tokio::test]
async fn tcp_endless_stream_without_match_is_bounded() {
    let (addr, _, closed) = endless_server(None, vec![b'x'; 16 * 1024]).await;
    let started = Instant::now();
    let result = run(tcp(addr, json!({ "expect_regex": "READY" })), GENEROUS).await;
    let detail = failed(&result, Reason::Assertion);
    assert!(detail.contains(&ONE_MIB.to_string()), "{detail}");
    assert!(started.elapsed() < GENEROUS, "{result:?}");
    tokio::time::timeout(GENEROUS, closed)
        .await
        .expect("the probe left the connection open")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Validation of probe options
// ---------------------------------------------------------------------------------------

#[test]
fn relative_url_is_refused_with_its_key_path() {
    assert_eq!(
        issues_of(http("/health")),
        "targets[0].probe.url: relative URL without a base"
    );
}

#[test]
fn non_http_scheme_is_refused() {
    assert_eq!(
        issues_of(http("ftp://example.net/")),
        "targets[0].probe.url: scheme `ftp` is not http or https"
    );
}

#[test]
fn bad_regexes_are_refused_with_their_key_paths() {
    let text = issues_of(with(
        http("http://127.0.0.1/"),
        json!({ "body_regex": "(" }),
    ));
    assert!(text.starts_with("targets[0].probe.body_regex: "), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let text = issues_of(tcp(addr, json!({ "expect_regex": "[a-" })));
    assert!(
        text.starts_with("targets[0].probe.expect_regex: "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn bad_tcp_addresses_are_refused() {
    let cases = [
        ("example.net", "`example.net` is not host:port"),
        ("example.net:0", "`example.net:0` has no valid port"),
        ("example.net:99999", "`example.net:99999` has no valid port"),
        (":25", "`:25` has no host"),
        ("::1:25", "`::1:25`: put IPv6 addresses in brackets"),
    ];
    for (address, message) in cases {
        let text = issues_of(json!({ "type": "tcp", "address": address }));
        assert_eq!(text, format!("targets[0].probe.address: {message}"));
    }
    // Brackets make IPv6 fine.
    spec(json!({ "type": "tcp", "address": "[::1]:25" }));
}

#[test]
fn every_problem_is_reported_at_once() {
    let probe = with(
        http("nope"),
        json!({ "body_regex": "(", "valid_status": [200, 999], "max_body_bytes": 0 }),
    );
    let text = issues_of(probe);
    let paths: Vec<&str> = text
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "targets[0].probe.url",
            "targets[0].probe.valid_status[1]",
            "targets[0].probe.body_regex",
            "targets[0].probe.max_body_bytes",
        ],
        "{text}"
    );
}

#[test]
fn unknown_probe_keys_are_errors() {
    let typo = with(http("http://127.0.0.1/"), json!({ "body_contain": "x" }));
    let err = serde_json::from_value::<ProbeConfig>(typo).unwrap_err();
    assert!(err.to_string().contains("body_contain"), "{err}");
}
