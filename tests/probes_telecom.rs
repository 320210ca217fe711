//! The telecom probes (`sip`, `imap`, `smtp`, `icmp`) against real servers on loopback
//!.
//!
//! Kamailio, Dovecot and Exim are started here (with `common::servers`), each with its own
//! configuration in a temporary directory and on free high ports of 127.0.0.1, waited for
//! by polling their ports, and stopped when the test drops them; no system instance is
//! used. Hostile peers
//! (garbage, a stall mid-line, an endless line, lost datagrams) are raw sockets started by
//! the tests. ICMP goes to 127.0.0.1. `.ci/test` installs the Debian packages.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use tocsin::probe::{ProbeConfig, Reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

mod common;
use common::probing::{
    GENEROUS, failed, fails_at_deadline, fails_early, free_port, issues_of, ok, path_str, run,
    spec, with, write,
};
use common::servers::{Pki, Ready, Server, shared_dir};

// ---------------------------------------------------------------------------------------
// Hostile and fault-injecting peers
// ---------------------------------------------------------------------------------------

/// A TCP peer: writes `greeting` on accept; then, for each line it reads, the answer
/// `reply` gives (if any). Records each client's address.
async fn tcp_peer(
    greeting: &'static [u8],
    reply: fn(&str) -> Option<&'static [u8]>,
) -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = Arc::new(Mutex::new(Vec::new()));
    let seen = clients.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, from)) = listener.accept().await {
            seen.lock().unwrap().push(from);
            tokio::spawn(async move {
                if stream.write_all(greeting).await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    line.push(byte[0]);
                    if byte[0] == b'\n' {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        line.clear();
                        if let Some(answer) = reply(&text)
                            && stream.write_all(answer).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, clients)
}

fn never(_: &str) -> Option<&'static [u8]> {
    None
}

/// A TCP peer that writes `head` then `x` forever, without a line end; reports the bytes
/// written when the probe hangs up.
async fn endless_peer(head: &'static [u8]) -> (SocketAddr, tokio::sync::oneshot::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut sent = 0u64;
        let chunk = vec![b'x'; 16 * 1024];
        if stream.write_all(head).await.is_ok() {
            while stream.write_all(&chunk).await.is_ok() {
                sent += chunk.len() as u64;
            }
        }
        let _ = tx.send(sent);
    });
    (addr, rx)
}

/// Asserts the probe hung up on an endless peer after a bounded amount.
async fn hung_up(rx: tokio::sync::oneshot::Receiver<u64>) {
    let sent = tokio::time::timeout(GENEROUS, rx)
        .await
        .expect("the probe left the endless connection open")
        .unwrap();
    // Socket buffers hold a few MiB at most; a probe that buffered everything would have
    // taken until the deadline and far more.
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes sent");
}

// ---------------------------------------------------------------------------------------
// sip: Kamailio
// ---------------------------------------------------------------------------------------

struct Kamailio {
    port: u16,
    tls_port: u16,
    pki: Pki,
    _daemon: Server,
}

impl Kamailio {
    /// Answers OPTIONS with `options_reply()` (200) over udp, tcp and tls, except to the
    /// user `busy`, which gets 503.
    async fn start() -> Kamailio {
        let dir = shared_dir();
        let pki = Pki::new(dir.path(), "localhost", "client.invalid");
        let (port, tls_port) = (free_port(), free_port());
        let tls_cfg = write(
            dir.path(),
            "tls.cfg",
            &format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\nprivate_key = {}\ncertificate = {}\n",
                path_str(&pki.key),
                path_str(&pki.cert)
            ),
        );
        let cfg = write(
            dir.path(),
            "kamailio.cfg",
            &format!(
                r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
enable_tls=yes
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
listen=tls:127.0.0.1:{tls_port}
mpath="/usr/lib/{arch}-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
    if (method == "OPTIONS") {{
        if ($rU == "busy") {{
            sl_send_reply("503", "Service Unavailable");
            exit;
        }}
        options_reply();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#,
                tls_cfg = path_str(&tls_cfg),
                arch = std::env::consts::ARCH,
            ),
        );
        let mut command = Command::new("/usr/sbin/kamailio");
        command
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(dir.path());
        let daemon = Server::start("kamailio", command, dir, Ready::Tcp(&[port, tls_port])).await;
        Kamailio {
            port,
            tls_port,
            pki,
            _daemon: daemon,
        }
    }

    fn uri(&self, user: &str, transport: &str) -> String {
        let port = if transport == "tls" {
            self.tls_port
        } else {
            self.port
        };
        format!("sip:{user}127.0.0.1:{port};transport={transport}")
    }
}

fn sip(uri: impl Into<String>, extra: Value) -> Value {
    with(json!({ "type": "sip", "uri": uri.into() }), extra)
}

#[tokio::test]
async fn sip_options_over_udp_tcp_and_tls_against_kamailio() {
    let k = Kamailio::start().await;
    let udp = run(sip(k.uri("", "udp"), json!({})), GENEROUS).await;
    ok(&udp);
    assert!(udp.phases.first_byte.is_some() && udp.phases.total.is_some());

    let tcp = run(sip(k.uri("", "tcp"), json!({})), GENEROUS).await;
    ok(&tcp);
    assert!(tcp.phases.connect.is_some(), "{tcp:?}");

    let ca = path_str(&k.pki.ca);
    let tls = run(sip(k.uri("", "tls"), json!({ "ca_file": ca })), GENEROUS).await;
    ok(&tls);
    assert!(tls.phases.tls.is_some(), "{tls:?}");
    assert!(tls.tls.is_some(), "the handshake is reported: {tls:?}");

    // The system roots do not know our CA.
    let untrusted = run(sip(k.uri("", "tls"), json!({})), GENEROUS).await;
    failed(&untrusted, Reason::Tls);
    let insecure = json!({ "tls_insecure": true });
    ok(&run(sip(k.uri("", "tls"), insecure), GENEROUS).await);

    // `from` and `to` are sent as given; Kamailio answers whatever they are.
    let named = json!({ "from": "sip:noc@probe.example.net", "to": "sip:sbc@example.net" });
    ok(&run(sip(k.uri("", "udp"), named), GENEROUS).await);
}

#[tokio::test]
async fn sip_valid_status_against_kamailio() {
    let k = Kamailio::start().await;
    for transport in ["udp", "tcp"] {
        let busy = run(sip(k.uri("busy@", transport), json!({})), GENEROUS).await;
        let detail = failed(&busy, Reason::Status);
        assert!(detail.starts_with("503 "), "{detail}");
        let accepted = json!({ "valid_status": [200, 503] });
        ok(&run(sip(k.uri("busy@", transport), accepted), GENEROUS).await);
        let only_202 = json!({ "valid_status": [202] });
        failed(
            &run(sip(k.uri("", transport), only_202), GENEROUS).await,
            Reason::Status,
        );
    }
}

/// The request of a datagram, and a response to it carrying its Via, Call-ID and CSeq
/// (with `call_id` / `branch` replaced when given, to forge a stray response).
fn respond(request: &str, code: &str, call_id: Option<&str>, branch: Option<&str>) -> String {
    let header = |name: &str| {
        request
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {request}"))
            .to_string()
    };
    let mut via = header("via");
    if let Some(b) = branch {
        let at = via.find("branch=").unwrap() + "branch=".len();
        let end = via[at..].find(';').map_or(via.len(), |e| at + e);
        via.replace_range(at..end, b);
    }
    let call_id = call_id.map_or(header("call-id"), |c| format!("Call-ID: {c}"));
    format!(
        "SIP/2.0 {code}\r\n{via}\r\n{}\r\n{}\r\n{call_id}\r\n{}\r\nContent-Length: 0\r\n\r\n",
        header("from"),
        header("to"),
        header("cseq"),
    )
}

/// A UDP peer: `answer(n, request)` gives the datagrams to send back for the n-th request
/// (from 0). Records each request and when it arrived.
async fn udp_peer(
    answer: fn(usize, &str) -> Vec<String>,
) -> (SocketAddr, Arc<Mutex<Vec<(Instant, SocketAddr, String)>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let mut n = 0;
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let request = String::from_utf8_lossy(&buf[..len]).into_owned();
            seen.lock()
                .unwrap()
                .push((Instant::now(), from, request.clone()));
            for datagram in answer(n, &request) {
                let _ = socket.send_to(datagram.as_bytes(), from).await;
            }
            n += 1;
        }
    });
    (addr, log)
}

#[tokio::test]
async fn sip_udp_retransmits_on_timer_e_until_answered() {
    // The first two requests are "lost"; the third is answered.
    let (addr, log) = udp_peer(|n, request| match n {
        0 | 1 => vec![],
        _ => vec![respond(request, "200 OK", None, None)],
    })
    .await;
    let result = run(sip(format!("sip:{addr}"), json!({})), GENEROUS).await;
    ok(&result);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3, "one request and two retransmissions");
    assert!(
        log.iter().all(|(_, _, r)| r == &log[0].2),
        "a retransmission is the same request (same branch, Call-ID, CSeq)"
    );
    // Timer E: T1 = 500ms, then 1s. A timer never fires early, so these lower bounds are
    // exact; that the schedule is not slower is what the silent-peer test checks (three
    // sends before its 2 s deadline).
    for (i, expected) in [(1, 500u64), (2, 1000)] {
        let gap = log[i].0 - log[i - 1].0;
        let expected = Duration::from_millis(expected);
        assert!(
            gap >= expected - Duration::from_millis(50),
            "gap {i}: {gap:?}, expected {expected:?}"
        );
    }
}

#[tokio::test]
async fn sip_udp_silent_peer_times_out_after_retransmitting() {
    let (addr, log) = udp_peer(|_, _| vec![]).await;
    fails_at_deadline(sip(format!("sip:{addr}"), json!({})), Reason::Timeout).await;
    // Sent at 0, 0.5s and 1.5s within the 2s deadline.
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn sip_udp_ignores_stray_responses() {
    // Before the real 200: responses of other transactions (another Call-ID, another
    // branch) and a request. Had any of them been taken as ours, the 503s would fail it.
    let (addr, _) = udp_peer(|_, request| {
        vec![
            respond(request, "503 Not yours", Some("other@elsewhere"), None),
            respond(request, "503 Not yours", None, Some("z9hG4bKother")),
            "OPTIONS sip:probe SIP/2.0\r\nContent-Length: 0\r\n\r\n".to_string(),
            respond(request, "100 Trying", None, None),
            respond(request, "200 OK", None, None),
        ]
    })
    .await;
    ok(&run(sip(format!("sip:{addr}"), json!({})), GENEROUS).await);
}

#[tokio::test]
async fn sip_udp_garbage_is_protocol() {
    let (addr, _) = udp_peer(|_, _| vec!["HELLO THERE\r\n\r\n".to_string()]).await;
    let detail = fails_at_deadline(sip(format!("sip:{addr}"), json!({})), Reason::Protocol).await;
    assert!(detail.contains("unparsable"), "{detail}");
}

#[tokio::test]
async fn sip_udp_closed_port_is_connect_refused() {
    let port = free_port();
    let uri = format!("sip:127.0.0.1:{port}");
    fails_early(sip(uri, json!({})), Reason::ConnectRefused).await;
}

#[tokio::test]
async fn sip_tcp_hostile_peers() {
    let uri = |addr: SocketAddr| format!("sip:{addr};transport=tcp");

    let (addr, _) = tcp_peer(b"", |_| Some(b"HTTP/1.1 400 Bad Request\r\n\r\n")).await;
    let detail = fails_early(sip(uri(addr), json!({})), Reason::Protocol).await;
    assert!(detail.contains("not a SIP message"), "{detail}");

    // A status line cut mid-way, then silence.
    let (addr, _) = tcp_peer(b"", |l| (l == "\r\n").then_some(b"SIP/2.0 200 O")).await;
    fails_at_deadline(sip(uri(addr), json!({})), Reason::Timeout).await;

    let (addr, rx) = endless_peer(b"SIP/2.0 200 OK\r\nX-Pad: ").await;
    let detail = fails_early(sip(uri(addr), json!({})), Reason::Protocol).await;
    assert!(detail.contains("longer than"), "{detail}");
    hung_up(rx).await;
}

#[tokio::test]
async fn sip_source_address_is_used() {
    let (addr, log) = udp_peer(|_, r| vec![respond(r, "200 OK", None, None)]).await;
    let source = json!({ "source_address": "127.0.0.2" });
    ok(&run(sip(format!("sip:{addr}"), source.clone()), GENEROUS).await);
    let (_, from, request) = log.lock().unwrap()[0].clone();
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    assert!(request.contains("Via: SIP/2.0/UDP 127.0.0.2:"), "{request}");
    assert!(
        request.contains("From: <sip:tocsin@127.0.0.2>"),
        "{request}"
    );

    let (addr, clients) = tcp_peer(b"", never).await;
    let uri = format!("sip:{addr};transport=tcp");
    run(sip(uri, source), Duration::from_millis(300)).await;
    assert_eq!(clients.lock().unwrap()[0].ip().to_string(), "127.0.0.2");
}

#[test]
fn sip_validation() {
    let text = issues_of(sip(
        "sip:host;transport=sctp",
        json!({ "valid_status": [200, 180], "from": "tocsin", "to": "sip:a>b",
                "source_address": "localhost" }),
    ));
    assert_eq!(
        text,
        "targets[0].probe.uri: transport `sctp` is not udp, tcp or tls\n\
         targets[0].probe.valid_status[1]: `180` is not a final SIP status (200-699)\n\
         targets[0].probe.from: `tocsin` is not a sip: or sips: URI\n\
         targets[0].probe.to: `sip:a>b` is not a sip: or sips: URI\n\
         targets[0].probe.source_address: `localhost` is not an IP address"
    );
    assert_eq!(
        issues_of(sip("sip:127.0.0.1", json!({ "tls_insecure": true }))),
        "targets[0].probe: `ca_file` and `tls_insecure` apply only to transport=tls or sips:"
    );
    spec(sip("sips:[::1]:5061", json!({ "tls_insecure": true })));
}

// ---------------------------------------------------------------------------------------
// imap: Dovecot
// ---------------------------------------------------------------------------------------

/// A password made to need escaping in a quoted string.
const QUOTED_PASSWORD: &str = r#"s3cret "quoted" \ back"#;
/// A password only a literal can carry (not 7-bit printable).
const LITERAL_PASSWORD: &str = "mot de passe é";

struct Dovecot {
    plain: u16,
    implicit: u16,
    pki: Pki,
    dir: Arc<TempDir>,
    _daemon: Server,
}

impl Dovecot {
    /// Users `alice` and `bob` in a passwd-file; port `plain` offers STARTTLS, `implicit`
    /// is TLS from the first byte.
    async fn start() -> Dovecot {
        let dir = shared_dir();
        let d = dir.path();
        let pki = Pki::new(d, "localhost", "client.invalid");
        let (plain, implicit) = (free_port(), free_port());
        let passwd = write(
            d,
            "passwd",
            &format!(
                "alice:{{PLAIN}}{QUOTED_PASSWORD}::::::\nbob:{{PLAIN}}{LITERAL_PASSWORD}::::::\n"
            ),
        );
        let mail = d.join("mail");
        std::fs::create_dir(&mail).unwrap();
        let chown = Command::new("chown")
            .args(["dovecot:dovecot"])
            .arg(&mail)
            .status()
            .unwrap();
        assert!(chown.success());
        let config = write(
            d,
            "dovecot.conf",
            &format!(
                r#"protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
info_log_path = /dev/stderr
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={mail}/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {plain}
  }}
  inet_listener imaps {{
    port = {implicit}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"#,
                d = path_str(d),
                cert = path_str(&pki.cert),
                key = path_str(&pki.key),
                mail = path_str(&mail),
                passwd = path_str(&passwd),
            ),
        );
        let mut command = Command::new("/usr/sbin/dovecot");
        command.arg("-F").arg("-c").arg(&config);
        let daemon = Server::start(
            "dovecot",
            command,
            dir.clone(),
            Ready::Tcp(&[plain, implicit]),
        )
        .await;
        Dovecot {
            plain,
            implicit,
            pki,
            dir,
            _daemon: daemon,
        }
    }

    fn probe(&self, tls: &str, username: &str, password: &str, extra: Value) -> Value {
        let port = if tls == "implicit" {
            self.implicit
        } else {
            self.plain
        };
        let file = write(self.dir.path(), &format!("{username}.password"), password);
        with(
            json!({
                "type": "imap",
                "address": format!("127.0.0.1:{port}"),
                "tls": tls,
                "username": username,
                "password_file": path_str(&file),
            }),
            extra,
        )
    }
}

#[tokio::test]
async fn imap_login_and_select_against_dovecot() {
    let d = Dovecot::start().await;
    let ca = json!({ "ca_file": path_str(&d.pki.ca) });

    let starttls = run(
        d.probe("starttls", "alice", QUOTED_PASSWORD, ca.clone()),
        GENEROUS,
    )
    .await;
    ok(&starttls);
    assert!(
        starttls.phases.tls.is_some() && starttls.tls.is_some(),
        "{starttls:?}"
    );
    assert!(starttls.phases.first_byte.is_some(), "{starttls:?}");

    let implicit = run(
        d.probe("implicit", "alice", QUOTED_PASSWORD, ca.clone()),
        GENEROUS,
    )
    .await;
    ok(&implicit);
    assert!(implicit.tls.is_some(), "{implicit:?}");

    // Plain, with the password sent as a literal; the trailing newline of the file is
    // not part of it.
    let literal = format!("{LITERAL_PASSWORD}\n");
    ok(&run(d.probe("none", "bob", &literal, json!({})), GENEROUS).await);

    let insecure = json!({ "tls_insecure": true, "mailbox": "inbox" });
    ok(&run(
        d.probe("implicit", "bob", LITERAL_PASSWORD, insecure),
        GENEROUS,
    )
    .await);
}

#[tokio::test]
async fn imap_failures_against_dovecot() {
    let d = Dovecot::start().await;
    let ca = json!({ "ca_file": path_str(&d.pki.ca) });

    let bad = run(d.probe("starttls", "alice", "wrong", ca.clone()), GENEROUS).await;
    let detail = failed(&bad, Reason::Auth);
    assert!(detail.starts_with("LOGIN refused"), "{detail}");
    let bad = run(d.probe("none", "bob", "s3cret", json!({})), GENEROUS).await;
    failed(&bad, Reason::Auth);

    let missing = with(ca.clone(), json!({ "mailbox": "Voicemail/Nope" }));
    let result = run(
        d.probe("implicit", "alice", QUOTED_PASSWORD, missing),
        GENEROUS,
    )
    .await;
    assert!(failed(&result, Reason::Status).contains("Voicemail/Nope"));

    let untrusted = run(
        d.probe("implicit", "alice", QUOTED_PASSWORD, json!({})),
        GENEROUS,
    )
    .await;
    failed(&untrusted, Reason::Tls);
    let untrusted = run(
        d.probe("starttls", "alice", QUOTED_PASSWORD, json!({})),
        GENEROUS,
    )
    .await;
    failed(&untrusted, Reason::Tls);
}

fn imap_at(addr: SocketAddr, tls: &str, extra: Value) -> Value {
    let file = "tests/fixtures/config/files/imap.password";
    with(
        json!({ "type": "imap", "address": addr.to_string(), "tls": tls,
                "username": "u", "password_file": file }),
        extra,
    )
}

#[tokio::test]
async fn imap_hostile_peers() {
    let (addr, _) = tcp_peer(b"220 smtp.example.net ESMTP\r\n", never).await;
    let detail = fails_early(imap_at(addr, "none", json!({})), Reason::Protocol).await;
    assert!(detail.contains("not an IMAP greeting"), "{detail}");

    let (addr, _) = tcp_peer(b"* OK [CAPABILITY IMAP4rev1", never).await;
    fails_at_deadline(imap_at(addr, "none", json!({})), Reason::Timeout).await;

    let (addr, rx) = endless_peer(b"* OK ").await;
    let detail = fails_early(imap_at(addr, "none", json!({})), Reason::Protocol).await;
    assert!(detail.contains("longer than"), "{detail}");
    hung_up(rx).await;

    // A LOGIN answered with something that is neither tagged nor untagged.
    let (addr, _) = tcp_peer(b"* OK ready\r\n", |_| Some(b"hello?\r\n")).await;
    fails_early(imap_at(addr, "none", json!({})), Reason::Protocol).await;

    // STARTTLS answered, plus a line injected ahead of the handshake (CVE-2011-0411).
    let (addr, _) = tcp_peer(b"* OK ready\r\n", |l| {
        l.starts_with("t1 STARTTLS")
            .then_some(b"t1 OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
    })
    .await;
    let probe = imap_at(addr, "starttls", json!({ "tls_insecure": true }));
    let detail = fails_early(probe, Reason::Protocol).await;
    assert!(detail.contains("before the TLS handshake"), "{detail}");

    let (addr, _) = tcp_peer(b"* BYE too many connections\r\n", never).await;
    fails_early(imap_at(addr, "none", json!({})), Reason::Status).await;

    let (addr, clients) = tcp_peer(b"", never).await;
    let probe = imap_at(addr, "none", json!({ "source_address": "127.0.0.2" }));
    run(probe, Duration::from_millis(300)).await;
    assert_eq!(clients.lock().unwrap()[0].ip().to_string(), "127.0.0.2");
}

/// An IMAP peer that refuses LOGIN by quoting the whole command back, plain and base64
/// (as AUTH PLAIN would carry it), wrapped in terminal escapes and padding: the detail
/// that reaches `/api/v1/status` must carry none of the password, in any form.
#[tokio::test]
async fn imap_echoed_login_never_shows_the_password() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let password = std::fs::read_to_string("tests/fixtures/config/files/imap.password").unwrap();
    let password = password.trim().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = tokio::io::BufReader::new(read);
        write.write_all(b"* OK ready\r\n").await.unwrap();
        let mut login = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut login)
            .await
            .unwrap();
        let login = login.trim_end();
        let plain = b64(&format!(
            "\0u\0{}",
            login.rsplit(' ').next().unwrap().trim_matches('"')
        ));
        let reply = format!(
            "t2 NO \x1b[31m{}[{login}] [{}] [{plain}]\x07\r\n",
            "padding ".repeat(3),
            b64(login),
        );
        write.write_all(reply.as_bytes()).await.unwrap();
    });
    let result = run(imap_at(addr, "none", json!({})), GENEROUS).await;
    let detail = failed(&result, Reason::Auth);
    assert!(detail.starts_with("LOGIN refused: "), "{detail}");
    let upper = password.to_ascii_uppercase();
    assert!(!detail.to_ascii_uppercase().contains(&upper), "{detail}");
    // No run of base64 in the detail decodes to anything holding the password.
    let base64ish = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    for token in detail.split(|c| !base64ish(c)).filter(|t| t.len() >= 8) {
        let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
        let token = token.trim_end_matches('=');
        if let Ok(bytes) = engine.decode(&token[..token.len() / 4 * 4]) {
            let text = String::from_utf8_lossy(&bytes).to_ascii_uppercase();
            assert!(!text.contains(&upper), "{token} decodes to {text:?}");
        }
    }
    assert!(detail.contains("[redacted]"), "{detail}");
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    assert!(detail.chars().count() <= 240, "{} chars", detail.len());
}

#[test]
fn imap_validation() {
    let probe = json!({ "type": "imap", "address": "vm.example.net", "tls": "none",
                        "username": "", "password_file": "/nonexistent/tocsin/pw",
                        "mailbox": "", "tls_insecure": true });
    assert_eq!(
        issues_of(probe),
        "targets[0].probe.address: `vm.example.net` is not host:port\n\
         targets[0].probe.username: must not be empty\n\
         targets[0].probe.password_file: cannot read /nonexistent/tocsin/pw: No such file or directory (os error 2)\n\
         targets[0].probe.mailbox: must not be empty\n\
         targets[0].probe: `ca_file` and `tls_insecure` need tls = \"implicit\" or \"starttls\""
    );
    let unknown = json!({ "type": "imap", "address": "a:1", "tls": "ssl",
                          "username": "u", "password_file": "/p" });
    let err = serde_json::from_value::<ProbeConfig>(unknown).unwrap_err();
    assert!(err.to_string().contains("unknown variant `ssl`"), "{err}");
}

// ---------------------------------------------------------------------------------------
// smtp: Exim
// ---------------------------------------------------------------------------------------

fn smtp(addr: impl Into<String>, extra: Value) -> Value {
    with(json!({ "type": "smtp", "address": addr.into() }), extra)
}

/// Exim with two ports: STARTTLS offered on the first only.
#[tokio::test]
async fn smtp_against_exim() {
    let dir = shared_dir();
    let d = dir.path();
    let pki = Pki::new(d, "localhost", "client.invalid");
    let spool = d.join("spool");
    std::fs::create_dir(&spool).unwrap();
    // Exim drops to its own user before it reads the key or writes its spool.
    let chown = Command::new("chown")
        .arg("Debian-exim:Debian-exim")
        .args([&spool, &pki.key])
        .status()
        .unwrap();
    assert!(chown.success());
    let (with_tls, without_tls) = (free_port(), free_port());
    let config = write(
        d,
        "exim.conf",
        &format!(
            "primary_hostname = localhost\n\
             spool_directory = {spool}\n\
             log_file_path = {spool}/%slog\n\
             pid_file_path = {spool}/exim.pid\n\
             keep_environment =\n\
             daemon_smtp_ports = {with_tls} : {without_tls}\n\
             local_interfaces = <; 127.0.0.1.{with_tls} ; 127.0.0.1.{without_tls}\n\
             tls_certificate = {cert}\n\
             tls_privatekey = {key}\n\
             tls_advertise_hosts = ${{if eq{{$received_port}}{{{with_tls}}}{{*}}{{}}}}\n\
             begin acl\nbegin routers\nbegin transports\n",
            spool = path_str(&spool),
            cert = path_str(&pki.cert),
            key = path_str(&pki.key),
        ),
    );
    let mut command = Command::new("/usr/sbin/exim4");
    command.arg("-bdf").arg("-C").arg(&config);
    let _exim = Server::start(
        "exim",
        command,
        dir.clone(),
        Ready::Tcp(&[with_tls, without_tls]),
    )
    .await;
    let tls_addr = format!("127.0.0.1:{with_tls}");
    let ca = path_str(&pki.ca);

    let plain = run(smtp(&tls_addr, json!({})), GENEROUS).await;
    ok(&plain);
    assert!(plain.phases.first_byte.is_some() && plain.phases.tls.is_none());

    let secured = json!({ "starttls": true, "ca_file": ca, "helo_name": "probe-1.example.net" });
    let secured = run(smtp(&tls_addr, secured), GENEROUS).await;
    ok(&secured);
    assert!(
        secured.phases.tls.is_some() && secured.tls.is_some(),
        "{secured:?}"
    );

    let untrusted = run(smtp(&tls_addr, json!({ "starttls": true })), GENEROUS).await;
    failed(&untrusted, Reason::Tls);
    let insecure = json!({ "starttls": true, "tls_insecure": true });
    ok(&run(smtp(&tls_addr, insecure), GENEROUS).await);

    let no_offer = smtp(
        format!("127.0.0.1:{without_tls}"),
        json!({ "starttls": true }),
    );
    let detail = failed(&run(no_offer, GENEROUS).await, Reason::Tls);
    assert!(detail.contains("does not offer STARTTLS"), "{detail}");
}

#[tokio::test]
async fn smtp_hostile_and_refusing_peers() {
    let (addr, _) = tcp_peer(b"554 5.3.2 no service for you\r\n", never).await;
    let detail = fails_early(smtp(addr.to_string(), json!({})), Reason::Status).await;
    assert!(detail.contains("554"), "{detail}");

    let (addr, _) = tcp_peer(b"220 mx ESMTP\r\n", |l| {
        l.starts_with("EHLO").then_some(b"550 go away\r\n")
    })
    .await;
    fails_early(smtp(addr.to_string(), json!({})), Reason::Status).await;

    let (addr, _) = tcp_peer(b"* OK IMAP4rev1 ready\r\n", never).await;
    let detail = fails_early(smtp(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("not an SMTP reply"), "{detail}");

    // Inconsistent codes within one multi-line reply.
    let (addr, _) = tcp_peer(b"220 mx ESMTP\r\n", |l| {
        l.starts_with("EHLO")
            .then_some(b"250-mx\r\n251 PIPELINING\r\n")
    })
    .await;
    fails_early(smtp(addr.to_string(), json!({})), Reason::Protocol).await;

    let (addr, _) = tcp_peer(b"220-mx ESMTP\r\n220 still gree", never).await;
    fails_at_deadline(smtp(addr.to_string(), json!({})), Reason::Timeout).await;

    let (addr, rx) = endless_peer(b"220 ").await;
    let detail = fails_early(smtp(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("longer than"), "{detail}");
    hung_up(rx).await;

    let (addr, clients) = tcp_peer(b"", never).await;
    let probe = smtp(addr.to_string(), json!({ "source_address": "127.0.0.2" }));
    run(probe, Duration::from_millis(300)).await;
    assert_eq!(clients.lock().unwrap()[0].ip().to_string(), "127.0.0.2");
}

#[test]
fn smtp_validation() {
    let text = issues_of(smtp(
        "mx.example.net:25",
        json!({ "helo_name": "bad name\r\nMAIL FROM:<>", "tls_insecure": true }),
    ));
    assert_eq!(
        text,
        "targets[0].probe.helo_name: `bad name\\r\\nMAIL FROM:<>` is not a domain name or address literal\n\
         targets[0].probe: `ca_file` and `tls_insecure` need starttls = true or tls = \"implicit\""
    );
    let both = json!({ "starttls": true, "tls_insecure": true, "ca_file": "/etc/ssl/ca.pem" });
    assert_eq!(
        issues_of(smtp("mx.example.net:25", both)),
        "targets[0].probe.tls_insecure: set `ca_file` or `tls_insecure`, not both"
    );
}

// ---------------------------------------------------------------------------------------
// icmp
// ---------------------------------------------------------------------------------------

fn icmp(extra: Value) -> Value {
    with(json!({ "type": "icmp", "host": "127.0.0.1" }), extra)
}

#[tokio::test]
async fn icmp_echo_to_loopback() {
    let one = run(icmp(json!({})), GENEROUS).await;
    ok(&one);
    let p = one.phases;
    assert!(
        p.dns.is_some() && p.connect.is_some() && p.rtt.is_some(),
        "{p:?}"
    );
    assert!(p.rtt.unwrap() < Duration::from_secs(1), "{p:?}");

    ok(&run(
        icmp(json!({ "count": 3, "source_address": "127.0.0.1" })),
        GENEROUS,
    )
    .await);

    // An address not on this host cannot be the source.
    let foreign = run(icmp(json!({ "source_address": "192.0.2.1" })), GENEROUS).await;
    failed(&foreign, Reason::Internal);
}

/// Without CAP_NET_RAW (and, on a machine whose ping_group_range excludes root's group,
/// without ping sockets), the probe says how to fix it. The test runs itself again under
/// `setpriv`, with CAP_NET_RAW dropped from the bounding set.
#[tokio::test]
async fn icmp_without_privileges_tells_the_operator_what_to_do() {
    const CHILD: &str = "TOCSIN_TEST_ICMP_UNPRIVILEGED";
    if std::env::var_os(CHILD).is_some() {
        let result = run(icmp(json!({})), GENEROUS).await;
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
        let mut bounds = range.split_whitespace().map(|n| n.parse::<i64>().unwrap());
        let (low, high) = (bounds.next().unwrap(), bounds.next().unwrap());
        if low <= 0 && 0 <= high {
            ok(&result); // ping sockets are allowed for gid 0: no privilege needed
        } else {
            let detail = failed(&result, Reason::Internal);
            assert!(
                detail.contains("ping_group_range") && detail.contains("CAP_NET_RAW"),
                "{detail}"
            );
        }
        return;
    }
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "icmp_without_privileges_tells_the_operator_what_to_do",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn icmp_validation() {
    assert_eq!(
        issues_of(json!({ "type": "icmp", "host": "127.0.0.1:7", "count": 0 })),
        "targets[0].probe.host: `127.0.0.1:7` is not a host name or IP address\n\
         targets[0].probe.count: must be at least 1"
    );
}
