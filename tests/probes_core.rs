//! The core-network probes (`diameter`, `gtp`, `radius`) against real peers on loopback.
//!
//! freeDiameter (`freediameterd`), osmo-ggsn's `gtp-echo-responder` (`osmo-ggsn`) and
//! FreeRADIUS (`freeradius`) are started here, each with its own configuration in a
//! temporary directory, on free ports of 127.0.0.1 (the GTP responder has a fixed port, so
//! each test gives it its own 127.0.0.x), waited for, and stopped when the test drops
//! them; no system instance is used. Hostile peers (garbage, huge or endless messages,
//! silence) are sockets started by the tests. `.ci/test` installs the Debian packages;
//! `common::servers` starts and stops them (Exim too, shared with the e-mail receiver's
//! test).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use tocsin::detector::Observation;
use tocsin::probe::{Prober, Reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

mod common;
use common::probing::{
    GENEROUS, SHORT, failed, fails_at_deadline, fails_early, free_port, issues_of, ok, path_str,
    run, spec, with, write,
};
use common::servers::{Exim, Pki, Ready, SMTP_PASSWORD, Server, shared_dir};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A TCP peer that reads what the probe sends first, answers `answer`, then holds the
/// connection until the probe closes it.
async fn blob_peer(answer: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if stream.read(&mut buf).await.is_err() || stream.write_all(&answer).await.is_err()
                {
                    return;
                }
                while matches!(stream.read(&mut buf).await, Ok(1..)) {}
            });
        }
    });
    addr
}

/// A TCP peer that writes `chunk` forever once the probe has sent something; reports the
/// bytes written when the probe hangs up.
async fn endless_peer(chunk: Vec<u8>) -> (SocketAddr, tokio::sync::oneshot::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let mut sent = 0u64;
        while stream.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
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
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes sent");
}

/// A UDP peer: `answer(n, request)` gives the datagrams to send back for the n-th request
/// (from 0). Records each request and when it arrived.
type UdpLog = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

async fn udp_peer(answer: fn(usize, &[u8]) -> Vec<Vec<u8>>) -> (SocketAddr, UdpLog) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let log: UdpLog = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let mut n = 0;
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let request = buf[..len].to_vec();
            seen.lock().unwrap().push((Instant::now(), request.clone()));
            for datagram in answer(n, &request) {
                let _ = socket.send_to(&datagram, from).await;
            }
            n += 1;
        }
    });
    (addr, log)
}

/// `options` as a TOML value (JSON strings are TOML basic strings).
fn toml_value(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Runs `options` against `target` through `GET /probe?module=core&target=` of a daemon
/// started in-process, and returns the blackbox-style metrics it renders.
async fn module_metrics(options: Value, target: &str) -> String {
    let dir = common::temp_dir();
    let config = common::test_config::TestConfig::new(dir.path()).body(&format!(
        "[modules.core]\nprobe = {}\ntimeout = \"{}s\"",
        toml_value(&options),
        GENEROUS.as_secs()
    ));
    let app = common::InProcess::start(config, dir.path()).await;
    let target: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let (status, _, body) = app
        .request(
            "GET",
            &format!("/probe?module=core&target={target}"),
            None,
            None,
        )
        .await;
    app.stop().await;
    assert_eq!(status, 200, "{body}");
    body
}

// ---------------------------------------------------------------------------------------
// diameter: freeDiameter
// ---------------------------------------------------------------------------------------

const FD_IDENTITY: &str = "hss.test.invalid";
const FD_REALM: &str = "test.invalid";
/// The one peer identity the whitelist admits.
const PROBE_IDENTITY: &str = "probe.test.invalid";

struct FreeDiameter {
    port: u16,
    tls_port: u16,
    pki: Pki,
    _daemon: Server,
}

impl FreeDiameter {
    /// freeDiameterd admitting `probe.test.invalid` only (acl_wl), plain on `port` and TLS
    /// from the first byte on `tls_port`, mutual TLS with our CA. Without `relay`, it
    /// supports no application at all.
    async fn start(relay: bool) -> FreeDiameter {
        let dir = shared_dir();
        let d = dir.path();
        let pki = Pki::new(d, FD_IDENTITY, PROBE_IDENTITY);
        let (port, tls_port) = (free_port(), free_port());
        // ALLOW_IPSEC: a peer on the plain port that offers no in-band TLS is admitted.
        let acl = write(d, "acl_wl.conf", &format!("ALLOW_IPSEC {PROBE_IDENTITY}\n"));
        let config = write(
            d,
            "freeDiameter.conf",
            &format!(
                "Identity = \"{FD_IDENTITY}\";\nRealm = \"{FD_REALM}\";\n\
                 Port = {port};\nSecPort = {tls_port};\nListenOn = \"127.0.0.1\";\n\
                 No_SCTP;\nNo_IPv6;\n{relay}\
                 TLS_Cred = \"{cert}\", \"{key}\";\nTLS_CA = \"{ca}\";\n\
                 LoadExtension = \"/usr/lib/freeDiameter/acl_wl.fdx\" : \"{acl}\";\n",
                relay = if relay { "" } else { "NoRelay;\n" },
                cert = path_str(&pki.cert),
                key = path_str(&pki.key),
                ca = path_str(&pki.ca),
                acl = path_str(&acl),
            ),
        );
        let mut command = Command::new("/usr/bin/freeDiameterd");
        command.arg("-c").arg(&config);
        let daemon =
            Server::start("freeDiameterd", command, dir, Ready::Tcp(&[port, tls_port])).await;
        FreeDiameter {
            port,
            tls_port,
            pki,
            _daemon: daemon,
        }
    }

    fn probe(&self, extra: Value) -> Value {
        diameter(format!("127.0.0.1:{}", self.port), extra)
    }

    fn tls_probe(&self, extra: Value) -> Value {
        let tls = json!({
            "tls": true,
            "ca_file": path_str(&self.pki.ca),
            "tls_cert_file": path_str(&self.pki.client_cert),
            "tls_key_file": path_str(&self.pki.client_key),
        });
        diameter(format!("127.0.0.1:{}", self.tls_port), with(tls, extra))
    }
}

fn diameter(address: impl Into<String>, extra: Value) -> Value {
    with(
        json!({ "type": "diameter", "address": address.into(),
                "origin_host": PROBE_IDENTITY, "origin_realm": FD_REALM }),
        extra,
    )
}

#[tokio::test]
async fn diameter_capabilities_and_watchdog_against_freediameter() {
    let fd = FreeDiameter::start(true).await;
    let plain = run(fd.probe(json!({})), GENEROUS).await;
    ok(&plain);
    let p = plain.phases;
    assert!(
        p.connect.is_some() && p.first_byte.is_some() && p.total.is_some(),
        "{p:?}"
    );
    let identity = plain.peer.identity.clone().unwrap_or_default();
    assert!(
        identity.starts_with(FD_IDENTITY) && identity.contains("freeDiameter"),
        "Origin-Host and Product-Name of the CEA: {identity}"
    );

    // Relaying, freeDiameter accepts any application.
    let apps = json!({ "auth_application_ids": [4, 16777238] });
    ok(&run(fd.probe(apps), GENEROUS).await);

    // TLS from the first byte, with the client certificate RFC 6733 §13 asks for.
    let tls = run(fd.tls_probe(json!({})), GENEROUS).await;
    ok(&tls);
    assert!(tls.phases.tls.is_some() && tls.tls.is_some(), "{tls:?}");

    let metrics = module_metrics(
        json!({ "type": "diameter", "origin_host": PROBE_IDENTITY, "origin_realm": FD_REALM }),
        &format!("127.0.0.1:{}", fd.port),
    )
    .await;
    assert!(metrics.contains("probe_success 1"), "{metrics}");
    assert!(
        metrics.contains("probe_diameter_duration_seconds{phase=\"processing\"}"),
        "{metrics}"
    );

    // One probe after another: each said goodbye (DPR), so none is refused as a duplicate.
    for _ in 0..3 {
        ok(&run(fd.probe(json!({})), GENEROUS).await);
    }
}

#[tokio::test]
async fn diameter_refusals_from_freediameter() {
    let fd = FreeDiameter::start(true).await;
    // An identity the peer was not configured for.
    let stranger = fd.probe(json!({ "origin_host": "stranger.test.invalid" }));
    let detail = fails_early(stranger, Reason::Protocol).await;
    assert!(
        detail.contains("3010") && detail.contains("UNKNOWN_PEER"),
        "{detail}"
    );

    // No client certificate: freeDiameter ends the TLS session the handshake began.
    let anonymous = diameter(
        format!("127.0.0.1:{}", fd.tls_port),
        json!({ "tls": true, "ca_file": path_str(&fd.pki.ca) }),
    );
    let detail = fails_early(anonymous, Reason::Protocol).await;
    assert!(detail.contains("connection closed"), "{detail}");
    // The system's CAs did not sign the server's certificate.
    let wrong_ca = diameter(
        format!("127.0.0.1:{}", fd.tls_port),
        json!({ "tls": true, "tls_cert_file": path_str(&fd.pki.client_cert),
                "tls_key_file": path_str(&fd.pki.client_key) }),
    );
    failed(&run(wrong_ca, GENEROUS).await, Reason::Tls);

    let no_relay = FreeDiameter::start(false).await;
    let apps = no_relay.probe(json!({ "auth_application_ids": [4] }));
    let detail = fails_early(apps, Reason::Protocol).await;
    assert!(detail.contains("5010"), "{detail}");

    // Stopped: nothing listens any more.
    let address = fd.probe(json!({}));
    drop(fd);
    fails_early(address, Reason::ConnectRefused).await;
}

/// A Diameter answer to the probe's first request: its command and identifiers, the
/// Result-Code given.
fn diameter_answer(command: u32, result_code: u32, length_override: Option<u32>) -> Vec<u8> {
    let mut m = vec![1, 0, 0, 0, 0];
    m.extend_from_slice(&command.to_be_bytes()[1..]);
    m.extend_from_slice(&[0; 12]); // application 0; ids patched by the peer below
    // Result-Code AVP
    m.extend_from_slice(&268u32.to_be_bytes());
    m.push(0x40);
    m.extend_from_slice(&12u32.to_be_bytes()[1..]);
    m.extend_from_slice(&result_code.to_be_bytes());
    let length = length_override.unwrap_or(m.len() as u32);
    m[1..4].copy_from_slice(&length.to_be_bytes()[1..]);
    m
}

#[tokio::test]
async fn diameter_hostile_peers() {
    let addr = blob_peer(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()).await;
    let detail = fails_early(diameter(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("not a Diameter message"), "{detail}");

    // A header declaring 16 MiB: refused from the header, nothing allocated or awaited.
    let addr = blob_peer(diameter_answer(257, 2001, Some(0xff_ff_f0))).await;
    let detail = fails_early(diameter(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("more than 65536"), "{detail}");

    // Half a message, then silence.
    let mut half = diameter_answer(257, 2001, Some(64));
    half.truncate(24);
    let addr = blob_peer(half).await;
    fails_at_deadline(diameter(addr.to_string(), json!({})), Reason::Timeout).await;

    // Well-formed answers that are not ours (other identifiers), forever.
    let mut stray = diameter_answer(257, 2001, None);
    stray.resize(60 * 1024, 0);
    let avp_end = 32;
    let padding_avp = (stray.len() - avp_end) as u32;
    stray[avp_end..avp_end + 4].copy_from_slice(&999u32.to_be_bytes());
    stray[avp_end + 5..avp_end + 8].copy_from_slice(&padding_avp.to_be_bytes()[1..]);
    let length = (stray.len() as u32).to_be_bytes();
    stray[1..4].copy_from_slice(&length[1..]);
    let (addr, rx) = endless_peer(stray).await;
    fails_early(diameter(addr.to_string(), json!({})), Reason::Protocol).await;
    hung_up(rx).await;

    // An answer with our identifiers' place empty: not ours, and then the peer closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(&diameter_answer(257, 2001, None)).await;
    });
    let detail = fails_early(diameter(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("connection closed"), "{detail}");
}

#[test]
fn diameter_validation() {
    assert_eq!(
        issues_of(diameter(
            "hss.example.net",
            json!({ "origin_host": "bad host", "origin_realm": "", "ca_file": "/x" })
        )),
        "targets[0].probe.address: `hss.example.net` is not host:port\n\
         targets[0].probe.origin_host: `bad host` is not a DiameterIdentity (FQDN)\n\
         targets[0].probe.origin_realm: `` is not a DiameterIdentity (FQDN)\n\
         targets[0].probe: `sni`, `ca_file`, `tls_insecure`, `tls_cert_file` and `tls_key_file` need tls = true"
    );
    assert_eq!(
        issues_of(diameter(
            "hss.example.net:5658",
            json!({ "tls": true, "tls_cert_file": "/etc/tocsin/probe.pem" })
        )),
        "targets[0].probe: set both `tls_cert_file` and `tls_key_file`, or neither"
    );
    spec(diameter(
        "[::1]:3868",
        json!({ "auth_application_ids": [4] }),
    ));
}

// ---------------------------------------------------------------------------------------
// gtp: osmo-ggsn's gtp-echo-responder
// ---------------------------------------------------------------------------------------

/// `gtp-echo-responder` (osmo-ggsn) on `ip`:2123, answering GTPv1-C and GTPv2-C Echo
/// Requests with restart counter `recovery`. Its port is fixed, so each test uses its own
/// loopback address.
async fn gtp_responder(ip: &str, recovery: u8) -> Server {
    let mut command = Command::new("/usr/bin/gtp-echo-responder");
    command.args(["-l", ip, "-R", &recovery.to_string()]);
    let ready = Ready::Probe(gtp(format!("{ip}:2123"), json!({})));
    Server::start("gtp-echo-responder", command, shared_dir(), ready).await
}

fn gtp(address: impl Into<String>, extra: Value) -> Value {
    with(json!({ "type": "gtp", "address": address.into() }), extra)
}

#[tokio::test]
async fn gtp_echo_v1_and_v2_against_osmo_ggsn() {
    let _responder = gtp_responder("127.0.0.21", 7).await;
    for version in [1, 2] {
        let result = run(
            gtp("127.0.0.21:2123", json!({ "version": version })),
            GENEROUS,
        )
        .await;
        ok(&result);
        assert_eq!(result.peer.restart_counter, Some(7), "{result:?}");
        assert_eq!(result.degraded, None);
        assert!(result.phases.first_byte.is_some(), "{result:?}");
    }
    let metrics = module_metrics(json!({ "type": "gtp", "version": 1 }), "127.0.0.21:2123").await;
    assert!(metrics.contains("probe_success 1"), "{metrics}");
    assert!(metrics.contains("probe_gtp_restart_counter 7"), "{metrics}");
    assert!(
        metrics.contains("probe_gtp_duration_seconds{phase=\"rtt\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn gtp_restart_counter_change_is_degraded() {
    let probe = spec(gtp("127.0.0.22:2123", json!({ "restart_hold": "1h" })));
    let prober = Prober::new().unwrap();
    let before = gtp_responder("127.0.0.22", 7).await;
    let first = prober.run(&probe, GENEROUS).await;
    ok(&first);
    assert_eq!(Observation::of(&first, GENEROUS), Observation::Fast);
    let again = prober.run(&probe, GENEROUS).await;
    assert_eq!(again.degraded, None, "same counter");
    drop(before);

    // The peer comes back with a new counter: it restarted, its sessions are gone.
    let _after = gtp_responder("127.0.0.22", 8).await;
    let restarted = prober.run(&probe.clone(), GENEROUS).await;
    ok(&restarted);
    assert_eq!(restarted.peer.restart_counter, Some(8));
    let why = restarted.degraded.as_deref().unwrap_or_default();
    assert!(why.contains("restart counter 7, now 8"), "{restarted:?}");
    assert_eq!(Observation::of(&restarted, GENEROUS), Observation::Slow);
    // Still within restart_hold: degraded, though the counter no longer changes.
    let next = prober.run(&probe, GENEROUS).await;
    assert_eq!(Observation::of(&next, GENEROUS), Observation::Slow);
}

/// An Echo Response to a v2 request, with its sequence number plus `shift`.
fn gtp_v2_response(request: &[u8], shift: u32, recovery: u8) -> Vec<u8> {
    let seq = u32::from_be_bytes([0, request[4], request[5], request[6]]).wrapping_add(shift);
    let mut m = vec![0x40, 2, 0, 9];
    m.extend_from_slice(&seq.to_be_bytes()[1..]);
    m.extend_from_slice(&[0, 3, 0, 1, 0, recovery]);
    m
}

#[tokio::test]
async fn gtp_silent_peer_times_out_after_n3_retransmissions() {
    let (addr, log) = udp_peer(|_, _| vec![]).await;
    let probe = gtp(addr.to_string(), json!({ "t3": "300ms", "n3": 2 }));
    let started = Instant::now();
    let detail = fails_early(probe, Reason::Timeout).await;
    assert!(detail.contains("3 requests"), "{detail}");
    // Three sends, T3 apart, then one more T3 of waiting.
    assert!(started.elapsed() >= Duration::from_millis(880), "early");
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3, "one request and n3 = 2 retransmissions");
    assert!(
        log.iter().all(|(_, r)| r == &log[0].1),
        "same message each time"
    );
    for i in 1..3 {
        let gap = log[i].0 - log[i - 1].0;
        assert!(gap >= Duration::from_millis(280), "gap {i}: {gap:?}");
    }
}

#[tokio::test]
async fn gtp_stray_and_garbage_answers() {
    // Another sequence number first (a late answer to someone else): ignored.
    let (addr, _) = udp_peer(|_, r| vec![gtp_v2_response(r, 1, 9), gtp_v2_response(r, 0, 4)]).await;
    let result = run(gtp(addr.to_string(), json!({})), GENEROUS).await;
    ok(&result);
    assert_eq!(
        result.peer.restart_counter,
        Some(4),
        "the matching one counts"
    );

    // Only a wrong sequence number: never ours.
    let (addr, _) = udp_peer(|_, r| vec![gtp_v2_response(r, 1, 9)]).await;
    let probe = gtp(addr.to_string(), json!({ "t3": "200ms", "n3": 1 }));
    fails_early(probe, Reason::Timeout).await;

    let (addr, _) = udp_peer(|_, _| vec![b"HELLO THERE".to_vec()]).await;
    let probe = gtp(addr.to_string(), json!({ "t3": "200ms", "n3": 1 }));
    let detail = fails_early(probe, Reason::Protocol).await;
    assert!(detail.contains("not an Echo Response"), "{detail}");

    // A v2 answer claiming an IE longer than the datagram.
    let (addr, _) = udp_peer(|_, r| {
        let mut m = gtp_v2_response(r, 0, 1);
        m[10] = 0xff;
        vec![m]
    })
    .await;
    let probe = gtp(addr.to_string(), json!({ "t3": "200ms", "n3": 0 }));
    fails_early(probe, Reason::Protocol).await;

    // The peer speaks only the other version.
    let (addr, _) = udp_peer(|_, r| vec![vec![0x40, 3, 0, 4, r[4], r[5], r[6], 0]]).await;
    let detail = fails_early(gtp(addr.to_string(), json!({})), Reason::Protocol).await;
    assert!(detail.contains("does not support GTPv2"), "{detail}");

    let port = free_port();
    let closed = gtp(format!("127.0.0.1:{port}"), json!({}));
    fails_early(closed, Reason::ConnectRefused).await;
}

#[test]
fn gtp_validation() {
    assert_eq!(
        issues_of(gtp(
            "pgw.example.net",
            json!({ "version": 3, "t3": "0s", "n3": 11, "source_address": "x" })
        )),
        "targets[0].probe.address: `pgw.example.net` is not host:port\n\
         targets[0].probe.version: must be 1 or 2\n\
         targets[0].probe.t3: must be more than 0s\n\
         targets[0].probe.n3: must be at most 10\n\
         targets[0].probe.source_address: `x` is not an IP address"
    );
    spec(gtp("[::1]:2152", json!({ "version": 1 })));
}

// ---------------------------------------------------------------------------------------
// radius: FreeRADIUS
// ---------------------------------------------------------------------------------------

const RADIUS_SECRET: &str = "t0csin-shared";
const RADIUS_USER: &str = "probe";
const RADIUS_PASSWORD: &str = "a long PAP password, over sixteen bytes";

struct FreeRadius {
    auth: u16,
    acct: u16,
    dir: Arc<TempDir>,
    _daemon: Server,
}

impl FreeRadius {
    /// `freeradius -X` from a configuration of its own: auth and acct listeners on
    /// 127.0.0.1, one client (127.0.0.1, `RADIUS_SECRET`), Status-Server answered, and one
    /// user in a `files` users file checked by PAP.
    async fn start() -> FreeRadius {
        let dir = shared_dir();
        let d = path_str(dir.path());
        let (auth, acct) = (free_port(), free_port());
        write(
            dir.path(),
            "users",
            &format!("{RADIUS_USER} Cleartext-Password := \"{RADIUS_PASSWORD}\"\n"),
        );
        write(
            dir.path(),
            "dictionary",
            "$INCLUDE /usr/share/freeradius/dictionary\n",
        );
        write(
            dir.path(),
            "radiusd.conf",
            &format!(
                r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/radiusd.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 1024
hostname_lookups = no
log {{
  destination = stderr
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
client probe {{
  ipaddr = 127.0.0.1
  secret = {RADIUS_SECRET}
}}
modules {{
  always ok {{
    rcode = ok
  }}
  pap {{
  }}
  files {{
    filename = {d}/users
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {auth}
  }}
  listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {acct}
  }}
  authorize {{
    files
    pap
  }}
  authenticate {{
    pap
  }}
  accounting {{
    ok
  }}
}}
"#
            ),
        );
        let mut command = Command::new("/usr/sbin/freeradius");
        command.arg("-X").arg("-d").arg(dir.path());
        let ready = Ready::Log("Ready to process requests");
        let daemon = Server::start("freeradius", command, dir.clone(), ready).await;
        FreeRadius {
            auth,
            acct,
            dir,
            _daemon: daemon,
        }
    }

    fn file(&self, name: &str, content: &str) -> String {
        path_str(&write(self.dir.path(), name, content))
    }

    fn status(&self, acct: bool, secret: &str) -> Value {
        let port = if acct { self.acct } else { self.auth };
        let service = if acct { "acct" } else { "auth" };
        json!({ "type": "radius", "address": format!("127.0.0.1:{port}"),
                "service": service, "secret_file": self.file("secret", secret) })
    }

    fn login(&self, password: &str) -> Value {
        with(
            self.status(false, &format!("{RADIUS_SECRET}\n")),
            json!({ "username": RADIUS_USER,
                    "password_file": self.file("password", password) }),
        )
    }
}

#[tokio::test]
async fn radius_status_server_and_login_against_freeradius() {
    let radius = FreeRadius::start().await;
    let auth = run(radius.status(false, RADIUS_SECRET), GENEROUS).await;
    ok(&auth);
    assert!(auth.phases.first_byte.is_some(), "{auth:?}");
    ok(&run(radius.status(true, RADIUS_SECRET), GENEROUS).await);
    ok(&run(radius.login(RADIUS_PASSWORD), GENEROUS).await);
    let secret = radius.file("secret", RADIUS_SECRET);
    let module = json!({ "type": "radius", "service": "acct", "secret_file": secret });
    let metrics = module_metrics(module, &format!("127.0.0.1:{}", radius.acct)).await;
    assert!(metrics.contains("probe_success 1"), "{metrics}");
    assert!(
        metrics.contains("probe_radius_duration_seconds{phase=\"rtt\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn radius_refusals_from_freeradius() {
    let radius = FreeRadius::start().await;
    let detail = fails_early(radius.login("not the password"), Reason::Auth).await;
    assert!(detail.starts_with("Access-Reject"), "{detail}");

    // FreeRADIUS drops a request whose Message-Authenticator it cannot verify, without a
    // word: the probe can only time out, and says why that may be.
    let wrong = radius.status(false, "not-the-secret");
    let detail = fails_at_deadline(wrong, Reason::Timeout).await;
    assert!(detail.contains("shared secret"), "{detail}");

    // Built while its secret file exists: the file goes with the server's directory.
    let stopped = spec(radius.status(true, RADIUS_SECRET));
    drop(radius);
    let result = Prober::new().unwrap().run(&stopped, GENEROUS).await;
    failed(&result, Reason::ConnectRefused);
}

/// An answer to a RADIUS request: `code`, the request's identifier (plus `id_shift`), and
/// a Response Authenticator made with `secret`.
fn radius_answer(request: &[u8], code: u8, id_shift: u8, secret: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut answer = vec![code, request[1].wrapping_add(id_shift), 0, 20];
    let authenticator = Md5::new()
        .chain_update(&answer[..4])
        .chain_update(&request[4..20])
        .chain_update(secret)
        .finalize();
    answer.extend_from_slice(&authenticator);
    answer
}

#[tokio::test]
async fn radius_hostile_peers() {
    let secret_file = write(
        &std::env::temp_dir(),
        &format!("tocsin-radius-{}.secret", std::process::id()),
        RADIUS_SECRET,
    );
    let probe = |addr: SocketAddr| {
        json!({ "type": "radius", "address": addr.to_string(),
                "secret_file": path_str(&secret_file) })
    };

    // The first two requests lost, the third answered; an answer for another
    // identifier is not ours.
    let (addr, log) = udp_peer(|n, r| match n {
        0 | 1 => vec![],
        _ => vec![
            radius_answer(r, 3, 1, RADIUS_SECRET.as_bytes()),
            radius_answer(r, 2, 0, RADIUS_SECRET.as_bytes()),
        ],
    })
    .await;
    ok(&run(probe(addr), GENEROUS).await);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "two retransmissions");
    assert!(log.iter().all(|(_, r)| r == &log[0].1), "identical packets");
    // Sent at 0, 1 s and 3 s (doubling); measured from the first, so a late wake-up of
    // the peer for the middle one does not matter.
    let span = log[2].0 - log[0].0;
    assert!(span >= Duration::from_millis(2700), "doubling: {span:?}");

    // An answer signed with another secret.
    let (addr, _) = udp_peer(|_, r| vec![radius_answer(r, 2, 0, b"other")]).await;
    let detail = fails_early(probe(addr), Reason::Protocol).await;
    assert!(detail.contains("authenticator"), "{detail}");

    let (addr, _) = udp_peer(|_, _| vec![b"HELLO THERE, this is not RADIUS".to_vec()]).await;
    let detail = fails_at_deadline(probe(addr), Reason::Protocol).await;
    assert!(detail.contains("not a RADIUS packet"), "{detail}");

    // An accounting port asked on the auth service: the wrong kind of answer.
    let (addr, _) = udp_peer(|_, r| vec![radius_answer(r, 5, 0, RADIUS_SECRET.as_bytes())]).await;
    let detail = fails_early(probe(addr), Reason::Protocol).await;
    assert!(detail.contains("code 5"), "{detail}");
    let _ = std::fs::remove_file(&secret_file);
}

#[test]
fn radius_validation() {
    let secret = "tests/fixtures/config/files/imap.password";
    assert_eq!(
        issues_of(json!({ "type": "radius", "address": "aaa.example.net",
                          "secret_file": "/nonexistent/tocsin/secret", "nas_identifier": "" })),
        "targets[0].probe.address: `aaa.example.net` is not host:port\n\
         targets[0].probe.secret_file: cannot read /nonexistent/tocsin/secret: No such file or directory (os error 2)\n\
         targets[0].probe.nas_identifier: must be 1 to 253 bytes"
    );
    assert_eq!(
        issues_of(json!({ "type": "radius", "address": "aaa.example.net:1813",
                          "secret_file": secret, "service": "acct",
                          "username": "probe", "password_file": secret })),
        "targets[0].probe.username: an Access-Request goes to an auth port, not service = \"acct\""
    );
    assert_eq!(
        issues_of(json!({ "type": "radius", "address": "aaa.example.net:1812",
                          "secret_file": secret, "username": "probe" })),
        "targets[0].probe: set both `username` and `password_file`, or neither"
    );
    spec(json!({ "type": "radius", "address": "[::1]:1812", "secret_file": secret }));
}

// ---------------------------------------------------------------------------------------
// sip register: Kamailio with digest authentication
// ---------------------------------------------------------------------------------------

const SIP_PASSWORD: &str = "s3cret sip password";

/// Kamailio on udp and tcp 127.0.0.1:`port`, challenging REGISTERs with `algorithm` and
/// checking them against one plaintext password (auth's `pv_auth_check`), keeping
/// bindings in memory (usrloc, registrar). The user `drain` gets 503 with Retry-After,
/// for REGISTER and OPTIONS.
async fn kamailio(algorithm: &str) -> (u16, Server) {
    let dir = shared_dir();
    let port = free_port();
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
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="/usr/lib/{arch}-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("auth", "algorithm", "{algorithm}")
request_route {{
    if ($fU == "drain") {{
        append_to_reply("Retry-After: 120\r\n");
        sl_send_reply("503", "Draining");
        exit;
    }}
    if (method == "REGISTER") {{
        if (!pv_auth_check("$fd", "{SIP_PASSWORD}", "0", "1")) {{
            auth_challenge("$fd", "1");
            exit;
        }}
        consume_credentials();
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (method == "OPTIONS") {{
        options_reply();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#,
            arch = std::env::consts::ARCH,
        ),
    );
    let mut command = Command::new("/usr/sbin/kamailio");
    command
        .args(["-DD", "-E", "-m", "32", "-M", "8", "-f"])
        .arg(&cfg)
        .arg("-Y")
        .arg(dir.path());
    let daemon = Server::start("kamailio", command, dir.clone(), Ready::Tcp(&[port])).await;
    (port, daemon)
}

fn register(port: u16, transport: &str, user: &str, password: &str, extra: Value) -> Value {
    let file = write(
        &std::env::temp_dir(),
        &format!(
            "tocsin-sip-{}-{}.password",
            std::process::id(),
            fastrand::u32(..)
        ),
        password,
    );
    with(
        json!({ "type": "sip", "method": "register",
                "uri": format!("sip:127.0.0.1:{port};transport={transport}"),
                "username": user, "password_file": path_str(&file) }),
        extra,
    )
}

#[tokio::test]
async fn sip_register_with_digest_against_kamailio() {
    for algorithm in ["MD5", "SHA-256"] {
        let (port, daemon) = kamailio(algorithm).await;
        for transport in ["udp", "tcp"] {
            let result = run(
                register(port, transport, "alice", SIP_PASSWORD, json!({})),
                GENEROUS,
            )
            .await;
            ok(&result);
            assert_eq!(result.degraded, None);
        }
        let log = daemon.output();
        assert!(
            !log.contains("ERROR"),
            "Kamailio saw something wrong ({algorithm}):\n{log}"
        );
    }
}

#[tokio::test]
async fn sip_register_refusals_and_draining_against_kamailio() {
    let (port, _daemon) = kamailio("SHA-256").await;
    let wrong = register(port, "udp", "alice", "not the password", json!({}));
    let detail = fails_early(wrong, Reason::Auth).await;
    assert!(detail.contains("401"), "{detail}");

    // No password: challenged, nothing to answer with.
    let probe = json!({ "type": "sip", "method": "register", "username": "alice",
                        "uri": format!("sip:127.0.0.1:{port}") });
    fails_early(probe.clone(), Reason::Auth).await;
    // ...unless the operator counts a challenge as a sign of life.
    ok(&run(with(probe, json!({ "alive_codes": [401, 407] })), GENEROUS).await);

    // 503 with Retry-After: draining, degraded rather than down; for OPTIONS too.
    let drain = run(
        register(port, "tcp", "drain", SIP_PASSWORD, json!({})),
        GENEROUS,
    )
    .await;
    ok(&drain);
    let why = drain.degraded.clone().unwrap_or_default();
    assert!(why.contains("503") && why.contains("120"), "{drain:?}");
    assert_eq!(Observation::of(&drain, GENEROUS), Observation::Slow);
    let options = json!({ "type": "sip", "uri": format!("sip:127.0.0.1:{port}"),
                          "from": "sip:drain@probe.example.net" });
    let drain = run(options, GENEROUS).await;
    ok(&drain);
    assert!(drain.degraded.is_some(), "{drain:?}");
}

#[test]
fn sip_register_validation() {
    assert_eq!(
        issues_of(
            json!({ "type": "sip", "method": "register", "uri": "sip:127.0.0.1",
                          "alive_codes": [100], "password_file": "/nonexistent" })
        ),
        "targets[0].probe.alive_codes[0]: `100` is not a final SIP status (200-699)\n\
         targets[0].probe.password_file: needs `username`\n\
         targets[0].probe.username: `register` needs a user name"
    );
}

// ---------------------------------------------------------------------------------------
// smtp submission: Exim with implicit TLS and AUTH
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn smtp_implicit_tls_and_auth_against_exim() {
    let exim = Exim::start(false).await;
    for implicit in [true, false] {
        let result = run(exim.probe(implicit, SMTP_PASSWORD), GENEROUS).await;
        ok(&result);
        assert!(
            result.tls.is_some() && result.phases.tls.is_some(),
            "{result:?}"
        );
        let detail = fails_early(exim.probe(implicit, "wrong"), Reason::Auth).await;
        assert!(detail.contains("535"), "{detail}");
    }
    // Implicit TLS without a login: banner, EHLO, QUIT inside TLS.
    let bare = json!({ "type": "smtp", "address": format!("127.0.0.1:{}", exim.implicit),
                       "tls": "implicit", "tls_insecure": true });
    ok(&run(bare, GENEROUS).await);
    // Plain SMTP to the TLS port: no banner comes, Exim waits for a ClientHello.
    let plain = json!({ "type": "smtp", "address": format!("127.0.0.1:{}", exim.implicit) });
    failed(&run(plain, SHORT).await, Reason::Timeout);

    let login_only = Exim::start(true).await;
    ok(&run(login_only.probe(false, SMTP_PASSWORD), GENEROUS).await);
    fails_early(login_only.probe(true, "wrong"), Reason::Auth).await;
}

#[test]
fn smtp_auth_validation() {
    let pw = "tests/fixtures/config/files/imap.password";
    assert_eq!(
        issues_of(json!({ "type": "smtp", "address": "mx.example.net:587",
                          "username": "u", "password_file": pw })),
        "targets[0].probe.username: AUTH would send the password in clear: set tls = \"starttls\" or \"implicit\""
    );
    assert_eq!(
        issues_of(json!({ "type": "smtp", "address": "mx.example.net:465",
                          "tls": "implicit", "starttls": true })),
        "targets[0].probe.starttls: set `tls` or `starttls`, not both"
    );
}

#[tokio::test]
async fn tcp_with_tls_against_exim() {
    let exim = Exim::start(false).await;
    let address = format!("127.0.0.1:{}", exim.implicit);
    let ca = path_str(&exim.pki.ca);
    let probe = json!({ "type": "tcp", "address": address, "tls": true, "ca_file": ca,
                        "send": "EHLO probe.example.net\r\n", "expect_regex": "(?m)^250[- ]" });
    let result = run(probe.clone(), GENEROUS).await;
    ok(&result);
    assert!(
        result.phases.tls.is_some() && result.tls.is_some(),
        "{result:?}"
    );
    assert!(result.phases.first_byte.is_some(), "{result:?}");

    // The certificate names localhost, not this name.
    let wrong_name = with(probe.clone(), json!({ "sni": "mx.example.net" }));
    failed(&run(wrong_name, GENEROUS).await, Reason::Tls);
    let untrusted = json!({ "type": "tcp", "address": address, "tls": true });
    failed(&run(untrusted, GENEROUS).await, Reason::Tls);
    let insecure = json!({ "type": "tcp", "address": address, "tls": true,
                           "tls_insecure": true, "expect_regex": "^220 " });
    ok(&run(insecure, GENEROUS).await);
    assert_eq!(
        issues_of(json!({ "type": "tcp", "address": address, "tls_insecure": true })),
        "targets[0].probe: `sni`, `ca_file` and `tls_insecure` need tls = true"
    );
}

// ---------------------------------------------------------------------------------------
// http: decompression
// ---------------------------------------------------------------------------------------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An HTTP/1.1 server answering every request with `body` as `Content-Encoding: gzip`
/// when the request asked for gzip, plain otherwise. Records the requests' heads.
async fn gzip_server(body: Vec<u8>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let compressed = gzip(&body);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, compressed, seen) = (body.clone(), compressed.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                let gzipped = head.contains("accept-encoding: gzip");
                let (payload, encoding) = if gzipped {
                    (compressed, "Content-Encoding: gzip\r\n")
                } else {
                    (body, "")
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&payload).await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn http_decodes_gzip_and_bounds_the_decoded_body() {
    let (addr, heads) = gzip_server(b"{\"status\": \"ready\"}".to_vec()).await;
    let url = format!("http://{addr}/health");
    let probe = json!({ "type": "http", "url": url, "accept_encoding": ["gzip"],
                        "json_path": "$.status", "json_equals": "ready" });
    ok(&run(probe, GENEROUS).await);
    assert!(heads.lock().unwrap()[0].contains("accept-encoding: gzip"));
    // Without accept_encoding nothing is asked for, and the plain body passes too.
    let plain = json!({ "type": "http", "url": url, "body_contains": "ready" });
    ok(&run(plain, GENEROUS).await);
    assert!(!heads.lock().unwrap()[1].contains("accept-encoding"));

    // 4 MiB of zeros: some 4 KiB on the wire, past max_body_bytes once decoded.
    let (addr, _) = gzip_server(vec![0u8; 4 * 1024 * 1024]).await;
    let bomb = json!({ "type": "http", "url": format!("http://{addr}/"),
                       "accept_encoding": ["gzip", "deflate"], "max_body_bytes": 65536 });
    let detail = fails_early(bomb, Reason::Assertion).await;
    assert!(
        detail.contains("decoded body larger than max_body_bytes"),
        "{detail}"
    );
    // Even unchecked, the decoded size counts: the default 1 MiB limit.
    let unchecked = json!({ "type": "http", "url": format!("http://{addr}/"),
                            "accept_encoding": ["gzip"] });
    fails_early(unchecked, Reason::Assertion).await;

    assert_eq!(
        issues_of(
            json!({ "type": "http", "url": "http://x/", "accept_encoding": ["gzip"],
                          "headers": { "Accept-Encoding": "br" } })
        ),
        "targets[0].probe.accept_encoding: set `accept_encoding` or an Accept-Encoding header, not both"
    );
}

// ---------------------------------------------------------------------------------------
// sip: RFC 3263 location through a real dnsmasq
// ---------------------------------------------------------------------------------------

/// dnsmasq on a free port of 127.0.0.1 with only the records given; no upstream, no
/// hosts file: nothing leaves loopback.
async fn dnsmasq(records: &[String]) -> (SocketAddr, Server) {
    let port = free_port();
    let mut command = Command::new("/usr/sbin/dnsmasq");
    command
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
        ])
        .arg(format!("--port={port}"))
        .args(records);
    let daemon = Server::start("dnsmasq", command, shared_dir(), Ready::Tcp(&[port])).await;
    (SocketAddr::from(([127, 0, 0, 1], port)), daemon)
}

#[tokio::test]
async fn sip_locates_servers_by_naptr_and_srv() {
    let (port, _kamailio) = kamailio("MD5").await;
    let dead = free_port();
    let (dns, _dnsmasq) = dnsmasq(&[
        // voice.test: TCP by NAPTR; the first server by priority is not there.
        "--naptr-record=voice.test,10,10,s,SIP+D2T,,_sip._tcp.voice.test".into(),
        format!("--srv-host=_sip._tcp.voice.test,dead.voice.test,{dead},0,0"),
        format!("--srv-host=_sip._tcp.voice.test,sbc.voice.test,{port},10,0"),
        "--host-record=dead.voice.test,127.0.0.1".into(),
        "--host-record=sbc.voice.test,127.0.0.1".into(),
        // udp.test: no NAPTR, an SRV record for UDP.
        format!("--srv-host=_sip._udp.udp.test,sbc.udp.test,{port},0,0"),
        "--host-record=sbc.udp.test,127.0.0.1".into(),
        "--address=/nothing.test/".into(),
    ])
    .await;
    let dns_server = json!({ "dns_server": dns.to_string() });

    let tcp = run(
        with(
            json!({ "type": "sip", "uri": "sip:voice.test" }),
            dns_server.clone(),
        ),
        GENEROUS,
    )
    .await;
    ok(&tcp);
    assert!(
        tcp.phases.connect.is_some(),
        "over TCP, as the NAPTR says: {tcp:?}"
    );
    assert!(tcp.phases.dns.is_some(), "{tcp:?}");

    let udp = json!({ "type": "sip", "uri": "sip:udp.test;transport=udp" });
    let udp = run(with(udp, dns_server.clone()), GENEROUS).await;
    ok(&udp);
    assert!(udp.phases.connect.is_none(), "over UDP: {udp:?}");

    // A registration, located the same way.
    let located = register(0, "tcp", "alice", SIP_PASSWORD, dns_server.clone());
    let located = with(located, json!({ "uri": "sip:voice.test" }));
    ok(&run(located, GENEROUS).await);

    let nothing = with(
        json!({ "type": "sip", "uri": "sip:nothing.test" }),
        dns_server.clone(),
    );
    let detail = fails_early(nothing, Reason::Dns).await;
    assert!(detail.contains("no NAPTR, SRV or address"), "{detail}");

    // Only a domain without a port is located.
    assert_eq!(
        issues_of(
            json!({ "type": "sip", "uri": "sip:voice.test:5060", "dns_server": dns.to_string() })
        ),
        "targets[0].probe.dns_server: applies only to a uri whose host is a domain without a port (RFC 3263)"
    );
}
