//! The `tls` and `dns` probes, the `http` probe's phases, certificate data and JSON checks,
//! and `source_address`, against real servers on loopback.
//!
//! Certificates are generated here with rcgen: a root CA (trusted through `ca_file`), an
//! intermediate that expires before the leaf (so "earliest expiry over the whole chain" is
//! visible), and leaves that are valid, expiring soon, expired or for another name. TLS
//! servers are tokio-rustls over `127.0.0.1:0`; HTTP over them is axum through hyper-util's
//! h1/h2 server. DNS is a real dnsmasq (`dnsmasq-base`) on a free loopback port, plus
//! hostile UDP peers. All traffic stays on 127.0.0.0/8.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, Version, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::Acceptor;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;

use tocsin::detector::Observation;
use tocsin::probe::Reason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::LazyConfigAcceptor;

mod common;
use common::probing::{failed, ok, run, with};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const GENEROUS: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_secs(2);
const MARGIN: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------

fn in_days(days: i64) -> OffsetDateTime {
    // Whole seconds: X.509 times carry no fraction, so comparisons below are exact.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    OffsetDateTime::from_unix_timestamp(now + days * 86_400).unwrap()
}

fn ca_params(name: &str, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = in_days(-30);
    params.not_after = not_after;
    params
}

/// A private PKI: root → intermediate (expires in 40 days) → leaves.
struct Pki {
    dir: TempDir,
    intermediate_params: CertificateParams,
    intermediate_key: KeyPair,
    intermediate: CertificateDer<'static>,
    intermediate_expiry: i64,
}

impl Pki {
    fn new() -> Self {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("tocsin test root", in_days(3650));
        let root = root_params.self_signed(&root_key).unwrap();
        let intermediate_key = KeyPair::generate().unwrap();
        let intermediate_expiry = in_days(40);
        let intermediate_params = ca_params("tocsin test intermediate", intermediate_expiry);
        let issuer = Issuer::from_params(&root_params, &root_key);
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), root.pem()).unwrap();
        Self {
            dir,
            intermediate_params,
            intermediate_key,
            intermediate: intermediate.der().clone(),
            intermediate_expiry: intermediate_expiry.unix_timestamp(),
        }
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// A leaf for `names`, valid from `from` to `until` days from now, with its chain.
    fn leaf(&self, names: &[&str], from: i64, until: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = in_days(from);
        params.not_after = in_days(until);
        let issuer = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.intermediate.clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            expiry: in_days(until).unix_timestamp(),
        }
    }
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    expiry: i64,
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// What a TLS server saw from its clients: peer addresses and SNI names.
#[derive(Default)]
struct Seen {
    peers: Vec<SocketAddr>,
    sni: Vec<Option<String>>,
}

/// A TLS server on a loopback port presenting `leaf`. With `app`, serves it over HTTP
/// (h2 when `alpn` offers it); without, completes handshakes and holds the connection.
async fn tls_server(
    leaf: &Leaf,
    alpn: &[&[u8]],
    app: Option<Router>,
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
    .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            log.lock().unwrap().peers.push(peer);
            let (config, app, log) = (config.clone(), app.clone(), log.clone());
            tokio::spawn(async move {
                // The SNI is noted from the ClientHello, before the client can finish.
                let acceptor = LazyConfigAcceptor::new(Acceptor::default(), stream);
                let Ok(start) = acceptor.await else {
                    return;
                };
                let sni = start.client_hello().server_name().map(str::to_string);
                log.lock().unwrap().sni.push(sni);
                // A client that rejects the certificate aborts the handshake: not an error here.
                let Ok(stream) = start.into_stream(config).await else {
                    return;
                };
                match app {
                    Some(app) => {
                        let service = TowerToHyperService::new(app);
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let mut stream = stream;
                        let mut buf = [0u8; 1024];
                        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Serves `router` over plain HTTP on a loopback port; returns `http://127.0.0.1:PORT`.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// Answers with the HTTP version it was asked over, so a test can tell h1 from h2.
fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|version: Version| async move { format!("{version:?}") }),
        )
        .route(
            "/status",
            get(|| async {
                axum::Json(json!({
                    "status": "ok",
                    "build": 42,
                    "checks": [
                        { "name": "db", "state": "up" },
                        { "name": "cache", "state": "up" },
                        { "name": "queue", "state": "down" },
                    ],
                }))
            }),
        )
        .route("/text", get(|| async { "not json" }))
        .route(
            "/hop/{n}",
            get(|Path(n): Path<u32>| async move {
                match n.checked_sub(1) {
                    None => "arrived".into_response(),
                    Some(next) => {
                        let location = format!("/hop/{next}");
                        (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
                    }
                }
            }),
        )
}

// ---------------------------------------------------------------------------------------
// tls probe
// ---------------------------------------------------------------------------------------

fn tls_probe(addr: SocketAddr, pki: &Pki, extra: Value) -> Value {
    with(
        json!({ "type": "tls", "address": addr.to_string(), "sni": "svc.tocsin.test",
                "ca_file": pki.ca_file() }),
        extra,
    )
}

/// The leaf lives a year but the intermediate 40 days: the chain's earliest expiry is the
/// intermediate's, and the server received the configured SNI.
#[tokio::test]
async fn tls_valid_chain_reports_earliest_expiry_of_the_whole_chain() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["svc.tocsin.test"], -1, 365);
    let (addr, seen) = tls_server(&leaf, &[], None).await;

    let result = run(tls_probe(addr, &pki, json!({})), GENEROUS).await;
    ok(&result);
    let tls = result.tls.as_ref().expect("tls info");
    assert_eq!(tls.earliest_expiry.timestamp(), pki.intermediate_expiry);
    assert!(pki.intermediate_expiry < leaf.expiry);
    assert_eq!(tls.version, "TLS 1.3");
    assert!(!tls.expiring, "{result:?}");
    for phase in [result.phases.dns, result.phases.connect, result.phases.tls] {
        assert!(phase.is_some(), "{result:?}");
    }
    assert_eq!(result.phases.total, Some(result.latency));
    assert_eq!(
        seen.lock().unwrap().sni,
        [Some("svc.tocsin.test".to_string())]
    );
}

/// Within `cert_expiry_warning` a success is degraded for the detector; outside it is not.
#[tokio::test]
async fn tls_chain_expiring_within_the_warning_is_degraded() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["svc.tocsin.test"], -1, 10);
    let (addr, _) = tls_server(&leaf, &[], None).await;

    let warned = run(
        tls_probe(addr, &pki, json!({ "cert_expiry_warning": "14d" })),
        GENEROUS,
    )
    .await;
    ok(&warned);
    assert!(warned.cert_expiring(), "{warned:?}");
    assert_eq!(
        warned.tls.as_ref().unwrap().earliest_expiry.timestamp(),
        leaf.expiry
    );
    // Fast, yet degraded.
    assert_eq!(Observation::of(&warned, GENEROUS), Observation::Slow);

    let calm = run(
        tls_probe(addr, &pki, json!({ "cert_expiry_warning": "7d" })),
        GENEROUS,
    )
    .await;
    ok(&calm);
    assert!(!calm.cert_expiring(), "{calm:?}");
    assert_eq!(Observation::of(&calm, GENEROUS), Observation::Fast);
}

#[tokio::test]
async fn tls_expired_certificate_is_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["svc.tocsin.test"], -10, -1);
    let (addr, _) = tls_server(&leaf, &[], None).await;
    let result = run(tls_probe(addr, &pki, json!({})), GENEROUS).await;
    let detail = failed(&result, Reason::Tls);
    assert!(detail.contains("expired"), "{detail}");
}

#[tokio::test]
async fn tls_wrong_name_is_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["other.tocsin.test"], -1, 365);
    let (addr, _) = tls_server(&leaf, &[], None).await;
    let result = run(tls_probe(addr, &pki, json!({})), GENEROUS).await;
    let detail = failed(&result, Reason::Tls);
    assert!(detail.contains("not valid for name"), "{detail}");
}

/// Without `ca_file` the system roots apply, and they do not know the test root.
#[tokio::test]
async fn tls_private_ca_without_ca_file_is_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["svc.tocsin.test"], -1, 365);
    let (addr, _) = tls_server(&leaf, &[], None).await;
    let probe = json!({ "type": "tls", "address": addr.to_string(), "sni": "svc.tocsin.test" });
    let detail = failed(&run(probe, GENEROUS).await, Reason::Tls);
    assert!(detail.contains("UnknownIssuer"), "{detail}");
}

#[tokio::test]
async fn tls_to_a_server_that_never_handshakes_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let pki = Pki::new();
    let started = Instant::now();
    let result = run(tls_probe(addr, &pki, json!({})), SHORT).await;
    failed(&result, Reason::Timeout);
    assert!(started.elapsed() < SHORT + MARGIN, "{result:?}");
    assert!(result.phases.connect.is_some(), "{result:?}");
}

// ---------------------------------------------------------------------------------------
// http over TLS
// ---------------------------------------------------------------------------------------

fn https(addr: SocketAddr, pki: &Pki, path: &str, extra: Value) -> Value {
    // `localhost` resolves through the hosts file to loopback, so the `dns` phase is real.
    with(
        json!({ "type": "http", "url": format!("https://localhost:{}{path}", addr.port()),
                "ca_file": pki.ca_file() }),
        extra,
    )
}

/// h2 when the server offers it: every phase present, the named ones within the total.
#[tokio::test]
async fn https_h2_has_every_phase_in_order() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], -1, 365);
    let (addr, _) = tls_server(&leaf, &[b"h2", b"http/1.1"], Some(app())).await;

    let result = run(
        https(addr, &pki, "/", json!({ "body_contains": "HTTP/2.0" })),
        GENEROUS,
    )
    .await;
    ok(&result);
    let p = result.phases;
    let (dns, connect, tls, first_byte, total) = (
        p.dns.expect("dns"),
        p.connect.expect("connect"),
        p.tls.expect("tls"),
        p.first_byte.expect("first_byte"),
        p.total.expect("total"),
    );
    assert!(dns + connect + tls + first_byte <= total, "{p:?}");
    assert!(!tls.is_zero() && !connect.is_zero(), "{p:?}");
    assert_eq!(
        result.tls.as_ref().unwrap().earliest_expiry.timestamp(),
        pki.intermediate_expiry
    );
}

#[tokio::test]
async fn https_http1_only_server_is_spoken_http1() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["localhost"], -1, 365);
    let (addr, _) = tls_server(&leaf, &[b"http/1.1"], Some(app())).await;
    let result = run(
        https(addr, &pki, "/", json!({ "body_contains": "HTTP/1.1" })),
        GENEROUS,
    )
    .await;
    ok(&result);
    assert!(result.phases.tls.is_some(), "{result:?}");
}

#[tokio::test]
async fn https_expiring_certificate_is_degraded_and_expired_is_tls() {
    let pki = Pki::new();
    let soon = pki.leaf(&["localhost"], -1, 3);
    let (addr, _) = tls_server(&soon, &[b"http/1.1"], Some(app())).await;
    let result = run(
        https(addr, &pki, "/", json!({ "cert_expiry_warning": "7d" })),
        GENEROUS,
    )
    .await;
    ok(&result);
    assert!(result.cert_expiring(), "{result:?}");

    let expired = pki.leaf(&["localhost"], -10, -1);
    let (addr, _) = tls_server(&expired, &[b"http/1.1"], Some(app())).await;
    let result = run(https(addr, &pki, "/", json!({})), GENEROUS).await;
    assert!(failed(&result, Reason::Tls).contains("expired"));

    // tls_insecure accepts it and still reports the expiry, which counts as degraded.
    let insecure = json!({ "type": "http", "url": format!("https://localhost:{}/", addr.port()),
                           "tls_insecure": true, "cert_expiry_warning": "1d" });
    let result = run(insecure, GENEROUS).await;
    ok(&result);
    assert_eq!(
        result.tls.as_ref().unwrap().earliest_expiry.timestamp(),
        expired.expiry
    );
    assert!(result.cert_expiring(), "{result:?}");
}

#[tokio::test]
async fn https_wrong_name_is_tls() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["elsewhere.tocsin.test"], -1, 365);
    let (addr, _) = tls_server(&leaf, &[b"http/1.1"], Some(app())).await;
    let result = run(https(addr, &pki, "/", json!({})), GENEROUS).await;
    assert!(failed(&result, Reason::Tls).contains("not valid for name"));
}

// ---------------------------------------------------------------------------------------
// http: redirects and JSON
// ---------------------------------------------------------------------------------------

/// Ten redirects are followed (and the connect phase adds up over the hops); eleven are
/// a `protocol` failure.
#[tokio::test]
async fn http_follows_ten_redirects_not_eleven() {
    let base = serve(app()).await;
    let ten =
        json!({ "type": "http", "url": format!("{base}/hop/10"), "body_contains": "arrived" });
    let result = run(ten, GENEROUS).await;
    ok(&result);
    let one = run(
        json!({ "type": "http", "url": format!("{base}/hop/0") }),
        GENEROUS,
    )
    .await;
    ok(&one);

    let eleven = json!({ "type": "http", "url": format!("{base}/hop/11") });
    let detail = failed(&run(eleven, GENEROUS).await, Reason::Protocol);
    assert!(detail.contains("more than 10 redirects"), "{detail}");
}

fn json_probe(base: &str, path: &str, extra: Value) -> Value {
    with(
        json!({ "type": "http", "url": format!("{base}{path}") }),
        extra,
    )
}

#[tokio::test]
async fn http_json_path_and_json_equals() {
    let base = serve(app()).await;
    let check = |extra: Value| run(json_probe(&base, "/status", extra), GENEROUS);

    ok(&check(json!({ "json_path": "$.status", "json_equals": "ok" })).await);
    ok(&check(json!({ "json_path": "$.build", "json_equals": 42 })).await);
    ok(
        &check(json!({ "json_path": "$.checks[?@.name == 'db'].state", "json_equals": "up" }))
            .await,
    );
    // Presence alone.
    ok(&check(json!({ "json_path": "$.checks[0]" })).await);

    let detail = failed(
        &check(json!({ "json_path": "$.status", "json_equals": "degraded" })).await,
        Reason::Assertion,
    );
    assert!(detail.contains("\"ok\""), "{detail}");
    // JSON types are compared, not text: 42 is not "42".
    failed(
        &check(json!({ "json_path": "$.build", "json_equals": "42" })).await,
        Reason::Assertion,
    );
    // Every match must equal: one check is down.
    let detail = failed(
        &check(json!({ "json_path": "$.checks[*].state", "json_equals": "up" })).await,
        Reason::Assertion,
    );
    assert!(detail.contains("down"), "{detail}");
    let detail = failed(
        &check(json!({ "json_path": "$.missing" })).await,
        Reason::Assertion,
    );
    assert!(detail.contains("matches nothing"), "{detail}");

    let text = run(
        json_probe(&base, "/text", json!({ "json_path": "$.status" })),
        GENEROUS,
    )
    .await;
    assert!(failed(&text, Reason::Assertion).contains("not JSON"));
}

// ---------------------------------------------------------------------------------------
// source_address
// ---------------------------------------------------------------------------------------

/// A plain TCP server that notes each peer and answers any request with a small HTTP 200.
async fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let log = peers.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, peer) = listener.accept().await.unwrap();
            log.lock().unwrap().push(peer);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (addr, peers)
}

const SOURCE: &str = "127.0.0.2";

#[tokio::test]
async fn source_address_is_the_peer_address_the_server_sees() {
    let source: IpAddr = SOURCE.parse().unwrap();
    let (addr, peers) = recording_server().await;

    // The server notes a peer before it answers, so waiting for the answer orders the log.
    let tcp = json!({ "type": "tcp", "address": addr.to_string(), "send": "GET / HTTP/1.0\r\n\r\n",
                      "expect_regex": "200 OK" });
    ok(&run(
        with(tcp.clone(), json!({ "source_address": SOURCE })),
        GENEROUS,
    )
    .await);
    let http =
        json!({ "type": "http", "url": format!("http://{addr}/"), "source_address": SOURCE });
    ok(&run(http, GENEROUS).await);
    // Control: without it the kernel picks 127.0.0.1.
    ok(&run(tcp, GENEROUS).await);
    let seen: Vec<IpAddr> = peers.lock().unwrap().iter().map(SocketAddr::ip).collect();
    assert_eq!(seen, [source, source, "127.0.0.1".parse().unwrap()]);

    let pki = Pki::new();
    let leaf = pki.leaf(&["svc.tocsin.test"], -1, 365);
    let (addr, tls_seen) = tls_server(&leaf, &[], None).await;
    ok(&run(
        tls_probe(addr, &pki, json!({ "source_address": SOURCE })),
        GENEROUS,
    )
    .await);
    assert_eq!(tls_seen.lock().unwrap().peers[0].ip(), source);

    let (server, dns_peers) = answering_dns_server().await;
    let dns = with(
        dns_probe(server, "tocsin.test"),
        json!({ "source_address": SOURCE }),
    );
    ok(&run(dns, GENEROUS).await);
    assert_eq!(dns_peers.lock().unwrap()[0].ip(), source);
}

/// A local address the machine does not have cannot be bound: `internal`, said plainly.
#[tokio::test]
async fn unusable_source_address_is_internal() {
    let (addr, _) = recording_server().await;
    let tcp = json!({ "type": "tcp", "address": addr.to_string(), "source_address": "192.0.2.1" });
    let detail = failed(&run(tcp, GENEROUS).await, Reason::Internal);
    assert!(detail.contains("192.0.2.1"), "{detail}");
}

// ---------------------------------------------------------------------------------------
// dns: a real dnsmasq
// ---------------------------------------------------------------------------------------

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// dnsmasq on 127.0.0.1 and a free port, answering `tocsin.test` (and below) with
/// 127.0.0.7 and ::7 and `gone.test` with NXDOMAIN; killed when dropped.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    async fn start() -> Self {
        assert!(
            std::path::Path::new(DNSMASQ).exists(),
            "{DNSMASQ} is missing: install dnsmasq-base (.ci/test does)"
        );
        // A port free for both UDP and TCP right now.
        let port = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = udp.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let child = Command::new(DNSMASQ)
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--address=/tocsin.test/127.0.0.7",
                "--address=/tocsin.test/::7",
                "--address=/gone.test/",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Ready when its TCP listener accepts (it binds UDP first).
        let ready = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(ready.elapsed() < GENEROUS, "dnsmasq did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, addr }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dns_probe(server: SocketAddr, name: &str) -> Value {
    json!({ "type": "dns", "server": server.to_string(), "name": name })
}

#[tokio::test]
async fn dns_udp_and_tcp_against_dnsmasq() {
    let dnsmasq = Dnsmasq::start().await;
    let probe = with(
        dns_probe(dnsmasq.addr, "www.tocsin.test"),
        json!({ "answer_regex": r"\bA\s+127\.0\.0\.7$" }),
    );
    let udp = run(probe.clone(), GENEROUS).await;
    ok(&udp);
    assert!(udp.phases.first_byte.is_some(), "{udp:?}");
    assert!(udp.phases.connect.is_none(), "{udp:?}");

    let tcp = run(with(probe, json!({ "transport": "tcp" })), GENEROUS).await;
    ok(&tcp);
    assert!(tcp.phases.connect.is_some(), "{tcp:?}");
    assert!(tcp.phases.first_byte.is_some(), "{tcp:?}");
}

#[tokio::test]
async fn dns_answer_regex_not_matched_is_assertion() {
    let dnsmasq = Dnsmasq::start().await;
    let probe = with(
        dns_probe(dnsmasq.addr, "tocsin.test"),
        json!({ "answer_regex": r"127\.0\.0\.8" }),
    );
    let detail = failed(&run(probe, GENEROUS).await, Reason::Assertion);
    assert!(detail.contains("127.0.0.7"), "{detail}");
}

#[tokio::test]
async fn dns_nxdomain_is_status_unless_accepted() {
    let dnsmasq = Dnsmasq::start().await;
    let probe = dns_probe(dnsmasq.addr, "host.gone.test");
    let detail = failed(&run(probe.clone(), GENEROUS).await, Reason::Status);
    assert!(detail.contains("NXDOMAIN"), "{detail}");

    let accepted = with(
        probe,
        json!({ "valid_rcodes": ["NXDOMAIN"], "transport": "tcp" }),
    );
    ok(&run(accepted, GENEROUS).await);
}

#[tokio::test]
async fn dns_record_type_is_asked() {
    let dnsmasq = Dnsmasq::start().await;
    let probe = with(
        dns_probe(dnsmasq.addr, "tocsin.test"),
        json!({ "answer_regex": r"\bAAAA\s+::7$" }),
    );
    ok(&run(
        with(probe.clone(), json!({ "record_type": "aaaa" })),
        GENEROUS,
    )
    .await);
    // The default type is A, whose answer is 127.0.0.7.
    failed(&run(probe, GENEROUS).await, Reason::Assertion);
}

// ---------------------------------------------------------------------------------------
// dns: hostile peers
// ---------------------------------------------------------------------------------------

/// A UDP DNS server that answers every query with an A record for 127.0.0.9, noting peers.
async fn answering_dns_server() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let log = peers.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            log.lock().unwrap().push(peer);
            let query = Message::from_vec(&buf[..n]).unwrap();
            let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            answer.metadata.response_code = ResponseCode::NoError;
            answer.add_queries(query.queries.clone());
            let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
        }
    });
    (addr, peers)
}

/// A UDP peer that answers each datagram with `reply` (or never, when `None`).
async fn hostile_dns(reply: Option<&'static [u8]>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (_, peer) = socket.recv_from(&mut buf).await.unwrap();
            if let Some(reply) = reply {
                let _ = socket.send_to(reply, peer).await;
            }
        }
    });
    addr
}

#[tokio::test]
async fn dns_garbage_reply_is_protocol_at_once() {
    let server = hostile_dns(Some(b"this is not a DNS message at all")).await;
    let started = Instant::now();
    let detail = failed(
        &run(dns_probe(server, "tocsin.test"), GENEROUS).await,
        Reason::Protocol,
    );
    assert!(detail.contains("unparsable"), "{detail}");
    assert!(started.elapsed() < GENEROUS / 2, "waited for the deadline");
}

#[tokio::test]
async fn dns_silent_server_times_out_on_the_deadline() {
    let server = hostile_dns(None).await;
    let started = Instant::now();
    let result = run(dns_probe(server, "tocsin.test"), SHORT).await;
    failed(&result, Reason::Timeout);
    let elapsed = started.elapsed();
    assert!(
        elapsed < SHORT + MARGIN,
        "returned {elapsed:?} after {SHORT:?}"
    );
    assert!(
        elapsed >= SHORT - Duration::from_millis(100),
        "gave up early ({elapsed:?})"
    );
}

/// A TCP server that closes after reading the query: `protocol`, not a hang.
#[tokio::test]
async fn dns_tcp_server_closing_mid_answer_is_protocol() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(&[0x01, 0x00, 0xab]).await; // promises 256 bytes
        }
    });
    let probe = with(
        dns_probe(addr, "tocsin.test"),
        json!({ "transport": "tcp" }),
    );
    let detail = failed(&run(probe, GENEROUS).await, Reason::Protocol);
    assert!(detail.contains("closed"), "{detail}");
}

/// The response a well-behaved server gives to `query`: its id and question, an A record
/// for 127.0.0.9.
fn proper_answer(query: &Message) -> Message {
    use hickory_proto::rr::{RData, Record, rdata::A};
    let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    answer.add_queries(query.queries.clone());
    for q in &query.queries {
        let a = RData::A(A::new(127, 0, 0, 9));
        answer.add_answer(Record::from_rdata(q.name().clone(), 60, a));
    }
    answer
}

/// A UDP peer that answers each query with what `craft` makes of it, and counts them.
async fn crafting_dns(craft: fn(&Message) -> Message) -> (SocketAddr, Arc<Mutex<u32>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            *seen.lock().unwrap() += 1;
            let query = Message::from_vec(&buf[..n]).unwrap();
            let _ = socket.send_to(&craft(&query).to_vec().unwrap(), peer).await;
        }
    });
    (addr, count)
}

/// An answer to another question is no answer to ours, whatever it says: the name, the
/// type and the class must be the ones asked (the name in any case, per the 0x20 rules).
#[tokio::test]
async fn dns_answer_to_another_question_is_protocol() {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{DNSClass, Name, RecordType};
    let other_name: fn(&Message) -> Message = |q| {
        let mut m = proper_answer(q);
        m.queries = vec![Query::query(
            Name::from_ascii("evil.test.").unwrap(),
            RecordType::A,
        )];
        m
    };
    let other_type: fn(&Message) -> Message = |q| {
        let mut m = proper_answer(q);
        m.queries[0].query_type = RecordType::MX;
        m
    };
    let other_class: fn(&Message) -> Message = |q| {
        let mut m = proper_answer(q);
        m.queries[0].set_query_class(DNSClass::CH);
        m
    };
    let no_question: fn(&Message) -> Message = |q| {
        let mut m = proper_answer(q);
        m.queries.clear();
        m
    };
    for (what, craft) in [
        ("name", other_name),
        ("type", other_type),
        ("class", other_class),
        ("no question", no_question),
    ] {
        let (server, _) = crafting_dns(craft).await;
        let result = run(dns_probe(server, "www.tocsin.test"), GENEROUS).await;
        let detail = failed(&result, Reason::Protocol);
        assert!(detail.contains("question"), "{what}: {detail}");
    }

    let shouting: fn(&Message) -> Message = |q| {
        let mut m = proper_answer(q);
        m.queries[0].name = Name::from_ascii("WwW.ToCsIn.TeSt.").unwrap();
        m
    };
    let (server, _) = crafting_dns(shouting).await;
    ok(&run(dns_probe(server, "www.tocsin.test"), GENEROUS).await);
}

/// A datagram with another id is not ours (a late or spoofed answer): it is skipped, and
/// with nothing else coming the probe times out on its deadline.
#[tokio::test]
async fn dns_answer_with_another_id_is_ignored_until_the_deadline() {
    let (server, count) = crafting_dns(|q| {
        let mut m = proper_answer(q);
        m.metadata.id = m.metadata.id.wrapping_add(1);
        m
    })
    .await;
    let started = Instant::now();
    let result = run(dns_probe(server, "tocsin.test"), SHORT).await;
    failed(&result, Reason::Timeout);
    assert!(
        started.elapsed() >= SHORT - Duration::from_millis(100),
        "{result:?}"
    );
    assert_eq!(*count.lock().unwrap(), 1);
}

/// TC=1 over UDP says the answer did not fit: the probe asks again over TCP, within the
/// same deadline, and the TCP answer decides.
#[tokio::test]
async fn dns_truncated_udp_answer_is_retried_over_tcp() {
    let (server, udp_count) = crafting_dns(|q| {
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.add_queries(q.queries.clone());
        m.metadata.truncation = true;
        m
    })
    .await;
    let listener = TcpListener::bind(server).await.unwrap();
    let tcp_count = Arc::new(Mutex::new(0));
    let seen = tcp_count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut length = [0u8; 2];
            stream.read_exact(&mut length).await.unwrap();
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut query).await.unwrap();
            *seen.lock().unwrap() += 1;
            let answer = proper_answer(&Message::from_vec(&query).unwrap())
                .to_vec()
                .unwrap();
            let length = u16::try_from(answer.len()).unwrap().to_be_bytes();
            stream
                .write_all(&[&length[..], &answer].concat())
                .await
                .unwrap();
        }
    });
    let probe = with(
        dns_probe(server, "tocsin.test"),
        json!({ "answer_regex": r"\bA\s+127\.0\.0\.9$" }),
    );
    let result = run(probe, GENEROUS).await;
    ok(&result);
    assert_eq!(*udp_count.lock().unwrap(), 1);
    assert_eq!(*tcp_count.lock().unwrap(), 1);
    assert!(result.phases.connect.is_some(), "{result:?}");

    // Truncated with no TCP listener to fall back on: never a success.
    let (server, _) = crafting_dns(|q| {
        let mut m = proper_answer(q);
        m.metadata.truncation = true;
        m
    })
    .await;
    let result = run(dns_probe(server, "tocsin.test"), GENEROUS).await;
    assert!(!result.is_ok(), "{result:?}");
}
