//! `diameter` probe: the base-protocol heartbeat of RFC 6733 that every Diameter node
//! (HSS, PCRF, OCS, DRA) answers. Over TCP, or TLS from the first byte (port 5658): a
//! Capabilities-Exchange-Request, then a Device-Watchdog-Request; both answers must carry
//! Result-Code 2001. The connection is then closed the way §5.4 asks, with a
//! Disconnect-Peer-Request, so the peer does not count it as a transport failure.
//!
//! Messages are framed by their declared length, which is capped before anything is
//! allocated; [`parse_message`] is the parser entry point (kept `pub` for fuzzing).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::conn::{self, DEFAULT_MAX_READ_BYTES, Step, fail};
use super::result::{Phases, ProbeResult, Reason, TlsInfo};
use super::sanitize::excerpt;
use super::tls::{self, TlsClients, Trust};
use crate::validation::Issues;

/// Largest message accepted. A CEA lists a few dozen applications at most; a peer
/// declaring more is broken or hostile, and is refused before its body is read.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Messages of the peer's own (requests, stray answers) skipped while waiting for ours.
const MAX_STRAY_MESSAGES: usize = 16;
/// How long the DPA is waited for once the probe has its verdict.
const DPA_WAIT: Duration = Duration::from_millis(500);

const HEADER_BYTES: usize = 20;
const FLAG_REQUEST: u8 = 0x80;
const FLAG_ERROR: u8 = 0x20;
const AVP_VENDOR: u8 = 0x80;
const AVP_MANDATORY: u8 = 0x40;

/// RFC 6733 command codes of the base protocol.
const CAPABILITIES_EXCHANGE: u32 = 257;
const DEVICE_WATCHDOG: u32 = 280;
const DISCONNECT_PEER: u32 = 282;

/// RFC 6733 AVP codes used here.
mod avp {
    pub const HOST_IP_ADDRESS: u32 = 257;
    pub const AUTH_APPLICATION_ID: u32 = 258;
    pub const VENDOR_ID: u32 = 266;
    pub const PRODUCT_NAME: u32 = 269;
    pub const ORIGIN_HOST: u32 = 264;
    pub const RESULT_CODE: u32 = 268;
    pub const DISCONNECT_CAUSE: u32 = 273;
    pub const ORIGIN_STATE_ID: u32 = 278;
    pub const ERROR_MESSAGE: u32 = 281;
    pub const ORIGIN_REALM: u32 = 296;
}

const DIAMETER_SUCCESS: u32 = 2001;
/// Disconnect-Cause DO_NOT_WANT_TO_TALK_TO_YOU: a probe expects no traffic after it.
const DO_NOT_WANT_TO_TALK_TO_YOU: u32 = 2;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiameterProbeConfig {
    /// `host:port`: 3868 for TCP, 5658 for TLS; IPv6 literals in brackets.
    pub address: String,
    /// Our DiameterIdentity (Origin-Host), as the peer is configured to know it.
    pub origin_host: String,
    /// Our realm (Origin-Realm).
    pub origin_realm: String,
    /// Auth-Application-Id values advertised in the CER (4 Credit-Control, 16777251 S6a,
    /// 16777238 Gx, …); none by default, which base-protocol peers accept.
    #[serde(default)]
    pub auth_application_ids: Vec<u32>,
    /// TLS from the first byte (RFC 6733 §13, port 5658).
    #[serde(default)]
    pub tls: bool,
    /// Server name sent in the handshake and checked against the certificate; default the
    /// host of `address`.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM file of the CAs to trust instead of the system's (with `tls`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (with `tls`; lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
    /// PEM certificate chain presented to the peer (with `tls`): RFC 6733 §13 has Diameter
    /// nodes authenticate each other, and most peers refuse a client without one.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Local IP to connect from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
}

/// A validated Diameter probe.
#[derive(Debug, Clone)]
pub struct DiameterSpec {
    pub address: String,
    pub origin_host: String,
    pub origin_realm: String,
    pub auth_application_ids: Vec<u32>,
    /// Server name and trust; set with `tls`.
    pub tls: Option<(ServerName<'static>, Trust)>,
    pub source_address: Option<IpAddr>,
}

impl DiameterProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<DiameterSpec> {
        let before = issues.len();
        let host = match conn::check_host_port(&self.address) {
            Ok(()) => self.address.rsplit_once(':').map(|(host, _)| host),
            Err(e) => {
                issues.push(format!("{path}.address"), e);
                None
            }
        };
        for (key, value) in [
            ("origin_host", &self.origin_host),
            ("origin_realm", &self.origin_realm),
        ] {
            if !valid_identity(value) {
                issues.push(
                    format!("{path}.{key}"),
                    format!(
                        "`{}` is not a DiameterIdentity (FQDN)",
                        value.escape_debug()
                    ),
                );
            }
        }
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        let tls = if self.tls {
            let name = match (&self.sni, host) {
                (Some(sni), _) => tls::server_name(sni).or_else(|| {
                    issues.push(format!("{path}.sni"), format!("`{sni}` is not a DNS name"));
                    None
                }),
                (None, Some(host)) => tls::server_name(host).or_else(|| {
                    issues.push(
                        format!("{path}.address"),
                        format!("`{host}` is not a valid TLS server name; set `sni`"),
                    );
                    None
                }),
                (None, None) => None,
            };
            let (ca, insecure) = (self.ca_file.as_deref(), self.tls_insecure);
            let trust = match (&self.tls_cert_file, &self.tls_key_file) {
                (None, None) => tls::trust(ca, insecure, path, issues),
                (Some(cert), Some(key)) => {
                    tls::client_with_identity(ca, insecure, cert, key, path, issues)
                }
                _ => {
                    issues.push(
                        path.to_string(),
                        "set both `tls_cert_file` and `tls_key_file`, or neither",
                    );
                    None
                }
            };
            name.zip(trust)
        } else {
            let tls_keys = [
                self.sni.is_some(),
                self.ca_file.is_some(),
                self.tls_insecure,
                self.tls_cert_file.is_some(),
                self.tls_key_file.is_some(),
            ];
            if tls_keys.contains(&true) {
                issues.push(
                    path.to_string(),
                    "`sni`, `ca_file`, `tls_insecure`, `tls_cert_file` and `tls_key_file` need tls = true",
                );
            }
            None
        };
        if issues.len() > before {
            return None;
        }
        Some(DiameterSpec {
            address: self.address.clone(),
            origin_host: self.origin_host.clone(),
            origin_realm: self.origin_realm.clone(),
            auth_application_ids: self.auth_application_ids.clone(),
            tls,
            source_address,
        })
    }
}

/// RFC 6733 §4.3.1: a DiameterIdentity is an FQDN (letters, digits, `-`, `.`).
fn valid_identity(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Why bytes are not a Diameter message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} bytes, shorter than a Diameter header")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("declared length {declared} but {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("AVP {code} at offset {at} has a bad length")]
    AvpLength { code: u32, at: usize },
    #[error("AVP {code} is not a valid {kind}")]
    AvpValue { code: u32, kind: &'static str },
}

/// What the probe reads from a Diameter message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub command: u32,
    pub application_id: u32,
    pub request: bool,
    /// The E bit: a protocol error answer.
    pub error: bool,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
    pub result_code: Option<u32>,
    pub origin_host: Option<String>,
    pub product_name: Option<String>,
    pub error_message: Option<String>,
}

/// Parses one whole message (header and AVPs). The parser entry point: every AVP length is
/// checked against the message, nothing is allocated beyond the strings it keeps.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    if bytes.len() < HEADER_BYTES {
        return Err(ParseError::Short(bytes.len()));
    }
    if bytes[0] != 1 {
        return Err(ParseError::Version(bytes[0]));
    }
    let declared = u24(&bytes[1..4]);
    if declared != bytes.len() || !declared.is_multiple_of(4) {
        return Err(ParseError::Length {
            declared,
            actual: bytes.len(),
        });
    }
    let flags = bytes[4];
    let mut message = Message {
        command: u24(&bytes[5..8]) as u32,
        application_id: u32_at(bytes, 8),
        request: flags & FLAG_REQUEST != 0,
        error: flags & FLAG_ERROR != 0,
        hop_by_hop: u32_at(bytes, 12),
        end_to_end: u32_at(bytes, 16),
        ..Message::default()
    };
    let mut at = HEADER_BYTES;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 8 {
            return Err(ParseError::AvpLength { code: 0, at });
        }
        let code = u32_at(rest, 0);
        let avp_flags = rest[4];
        let length = u24(&rest[5..8]);
        let header = if avp_flags & AVP_VENDOR != 0 { 12 } else { 8 };
        let padded = length.div_ceil(4) * 4;
        if length < header || padded > rest.len() {
            return Err(ParseError::AvpLength { code, at });
        }
        let data = &rest[header..length];
        // Only base-protocol AVPs count; a vendor's AVP of the same code is another AVP.
        if avp_flags & AVP_VENDOR == 0 {
            let text = |kind| {
                std::str::from_utf8(data)
                    .map(str::to_string)
                    .map_err(|_| ParseError::AvpValue { code, kind })
            };
            match code {
                avp::RESULT_CODE => {
                    let value: [u8; 4] = data.try_into().map_err(|_| ParseError::AvpValue {
                        code,
                        kind: "Unsigned32",
                    })?;
                    message.result_code.get_or_insert(u32::from_be_bytes(value));
                }
                avp::ORIGIN_HOST if message.origin_host.is_none() => {
                    message.origin_host = Some(text("DiameterIdentity")?);
                }
                avp::PRODUCT_NAME if message.product_name.is_none() => {
                    message.product_name = Some(text("UTF8String")?);
                }
                avp::ERROR_MESSAGE if message.error_message.is_none() => {
                    message.error_message = Some(text("UTF8String")?);
                }
                _ => {}
            }
        }
        at += padded;
    }
    Ok(message)
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A request being encoded: header first, AVPs appended, length patched at the end.
struct Request(Vec<u8>);

impl Request {
    fn new(command: u32, hop_by_hop: u32, end_to_end: u32) -> Self {
        let mut b = Vec::with_capacity(256);
        b.push(1);
        b.extend_from_slice(&[0, 0, 0]);
        b.push(FLAG_REQUEST);
        b.extend_from_slice(&command.to_be_bytes()[1..]);
        b.extend_from_slice(&0u32.to_be_bytes()); // the base protocol's application
        b.extend_from_slice(&hop_by_hop.to_be_bytes());
        b.extend_from_slice(&end_to_end.to_be_bytes());
        Self(b)
    }

    fn avp(mut self, code: u32, mandatory: bool, data: &[u8]) -> Self {
        let length = 8 + data.len();
        self.0.extend_from_slice(&code.to_be_bytes());
        self.0.push(if mandatory { AVP_MANDATORY } else { 0 });
        self.0
            .extend_from_slice(&(length as u32).to_be_bytes()[1..]);
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(4) * 4, 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let length = (self.0.len() as u32).to_be_bytes();
        self.0[1..4].copy_from_slice(&length[1..]);
        self.0
    }
}

/// RFC 6733 §4.3.1 Address: a two-byte address family (IANA), then the address.
fn address_avp(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => [&[0, 1][..], &v4.octets()].concat(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => [&[0, 1][..], &v4.octets()].concat(),
            None => [&[0, 2][..], &v6.octets()].concat(),
        },
    }
}

/// The identifiers of one probe's requests: hop-by-hop ids count up from a random start,
/// end-to-end ids carry the low bits of the start time as §3 suggests.
struct Ids {
    hop_by_hop: u32,
    end_to_end: u32,
    origin_state: u32,
}

impl Ids {
    fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as u32;
        Self {
            hop_by_hop: fastrand::u32(..),
            end_to_end: (now << 20) | fastrand::u32(..1 << 20),
            origin_state: now,
        }
    }

    fn next(&mut self) -> (u32, u32) {
        let ids = (self.hop_by_hop, self.end_to_end);
        self.hop_by_hop = self.hop_by_hop.wrapping_add(1);
        self.end_to_end = self.end_to_end.wrapping_add(1);
        ids
    }
}

fn cer(spec: &DiameterSpec, local: IpAddr, ids: &mut Ids) -> (Vec<u8>, (u32, u32)) {
    let id = ids.next();
    let mut r = Request::new(CAPABILITIES_EXCHANGE, id.0, id.1)
        .avp(avp::ORIGIN_HOST, true, spec.origin_host.as_bytes())
        .avp(avp::ORIGIN_REALM, true, spec.origin_realm.as_bytes())
        .avp(avp::HOST_IP_ADDRESS, true, &address_avp(local))
        .avp(avp::VENDOR_ID, true, &0u32.to_be_bytes())
        .avp(avp::PRODUCT_NAME, false, b"tocsin")
        .avp(avp::ORIGIN_STATE_ID, true, &ids.origin_state.to_be_bytes());
    for app in &spec.auth_application_ids {
        r = r.avp(avp::AUTH_APPLICATION_ID, true, &app.to_be_bytes());
    }
    (r.finish(), id)
}

fn dwr(spec: &DiameterSpec, ids: &mut Ids) -> (Vec<u8>, (u32, u32)) {
    let id = ids.next();
    let r = Request::new(DEVICE_WATCHDOG, id.0, id.1)
        .avp(avp::ORIGIN_HOST, true, spec.origin_host.as_bytes())
        .avp(avp::ORIGIN_REALM, true, spec.origin_realm.as_bytes())
        .avp(avp::ORIGIN_STATE_ID, true, &ids.origin_state.to_be_bytes());
    (r.finish(), id)
}

fn dpr(spec: &DiameterSpec, ids: &mut Ids) -> (Vec<u8>, (u32, u32)) {
    let id = ids.next();
    let r = Request::new(DISCONNECT_PEER, id.0, id.1)
        .avp(avp::ORIGIN_HOST, true, spec.origin_host.as_bytes())
        .avp(avp::ORIGIN_REALM, true, spec.origin_realm.as_bytes())
        .avp(
            avp::DISCONNECT_CAUSE,
            true,
            &DO_NOT_WANT_TO_TALK_TO_YOU.to_be_bytes(),
        );
    (r.finish(), id)
}

/// The name of a Result-Code, for the failure detail (RFC 6733 §7.1).
fn result_name(code: u32) -> &'static str {
    match code {
        2001 => "DIAMETER_SUCCESS",
        3001 => "DIAMETER_COMMAND_UNSUPPORTED",
        3002 => "DIAMETER_UNABLE_TO_DELIVER",
        3003 => "DIAMETER_REALM_NOT_SERVED",
        3004 => "DIAMETER_TOO_BUSY",
        3008 => "DIAMETER_INVALID_HDR_BITS",
        3009 => "DIAMETER_INVALID_AVP_BITS",
        3010 => "DIAMETER_UNKNOWN_PEER",
        5001 => "DIAMETER_AVP_UNSUPPORTED",
        5004 => "DIAMETER_INVALID_AVP_VALUE",
        5005 => "DIAMETER_MISSING_AVP",
        5009 => "DIAMETER_AVP_OCCURS_TOO_MANY_TIMES",
        5010 => "DIAMETER_NO_COMMON_APPLICATION",
        5011 => "DIAMETER_UNSUPPORTED_VERSION",
        5012 => "DIAMETER_UNABLE_TO_COMPLY",
        5014 => "DIAMETER_INVALID_AVP_LENGTH",
        5017 => "DIAMETER_NO_COMMON_SECURITY",
        _ => "",
    }
}

/// A stream of framed messages, each bounded by [`MAX_MESSAGE_BYTES`] and all of them by
/// [`DEFAULT_MAX_READ_BYTES`].
struct Framed<S> {
    stream: S,
    read: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    async fn send(&mut self, bytes: &[u8], deadline: Instant, what: &str) -> Step<()> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Err(_) => Err(fail(
                Reason::Timeout,
                format!("sending the {what} timed out"),
            )),
            Ok(Err(e)) => Err(fail(Reason::Protocol, format!("sending the {what}: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8], deadline: Instant, what: &str) -> Step<()> {
        match tokio::time::timeout_at(deadline, self.stream.read_exact(buf)).await {
            Err(_) => Err(fail(
                Reason::Timeout,
                format!("no complete {what} before the deadline"),
            )),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(fail(
                Reason::Protocol,
                format!("connection closed while waiting for the {what}"),
            )),
            Ok(Err(e)) => Err(fail(
                Reason::Protocol,
                format!("read while waiting for the {what}: {e}"),
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The next whole message, parsed.
    async fn message(&mut self, deadline: Instant, what: &str) -> Step<Message> {
        let mut head = [0u8; HEADER_BYTES];
        self.read_exact(&mut head, deadline, what).await?;
        if head[0] != 1 {
            return Err(fail(
                Reason::Protocol,
                format!("not a Diameter message: `{}`", excerpt(&head)),
            ));
        }
        let length = u24(&head[1..4]);
        if length > MAX_MESSAGE_BYTES {
            return Err(fail(
                Reason::Protocol,
                format!("a message of {length} bytes, more than {MAX_MESSAGE_BYTES}"),
            ));
        }
        if length < HEADER_BYTES {
            return Err(fail(
                Reason::Protocol,
                format!("a message length of {length} bytes"),
            ));
        }
        self.read += length as u64;
        if self.read > DEFAULT_MAX_READ_BYTES {
            return Err(fail(
                Reason::Protocol,
                format!("read more than {DEFAULT_MAX_READ_BYTES} bytes waiting for the {what}"),
            ));
        }
        let mut bytes = vec![0u8; length];
        bytes[..HEADER_BYTES].copy_from_slice(&head);
        self.read_exact(&mut bytes[HEADER_BYTES..], deadline, what)
            .await?;
        parse_message(&bytes).map_err(|e| fail(Reason::Protocol, format!("the {what}: {e}")))
    }

    /// Our answer to `command` with identifiers `id`, skipping a few messages that are
    /// not (the peer's own watchdog, say).
    async fn answer(
        &mut self,
        command: u32,
        id: (u32, u32),
        deadline: Instant,
        what: &str,
    ) -> Step<Message> {
        for _ in 0..=MAX_STRAY_MESSAGES {
            let m = self.message(deadline, what).await?;
            if !m.request && m.command == command && (m.hop_by_hop, m.end_to_end) == id {
                return Ok(m);
            }
        }
        Err(fail(
            Reason::Protocol,
            format!("{MAX_STRAY_MESSAGES} other messages and no {what}"),
        ))
    }
}

/// An answer passes with Result-Code 2001; anything else is the peer refusing us.
fn check(answer: &Message, what: &str) -> Step<()> {
    match answer.result_code {
        Some(DIAMETER_SUCCESS) => Ok(()),
        Some(code) => {
            let mut detail = format!("{what} Result-Code {code}");
            let name = result_name(code);
            if !name.is_empty() {
                detail.push_str(&format!(" ({name})"));
            }
            if let Some(text) = &answer.error_message {
                detail.push_str(&format!(": {}", excerpt(text.as_bytes())));
            }
            Err(fail(Reason::Protocol, detail))
        }
        None => Err(fail(
            Reason::Protocol,
            format!("{what} without Result-Code"),
        )),
    }
}

pub async fn run(clients: &TlsClients, spec: &DiameterSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut tls_info = None;
    let mut peer = None;
    let outcome = session(
        clients,
        spec,
        deadline,
        start,
        &mut phases,
        &mut tls_info,
        &mut peer,
    )
    .await;
    let mut result = conn::finish(start, outcome, phases, tls_info);
    result.peer.identity = peer;
    result
}

async fn session(
    clients: &TlsClients,
    spec: &DiameterSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
    peer: &mut Option<String>,
) -> Step<()> {
    let stream = conn::open(&spec.address, spec.source_address, deadline, start, phases).await?;
    let local = stream
        .local_addr()
        .map_err(|e| fail(Reason::Internal, format!("local address: {e}")))?;
    let Some((name, trust)) = &spec.tls else {
        return exchange(stream, spec, local, deadline, start, phases, peer).await;
    };
    let tls_start = Instant::now();
    let config = clients.config(trust, false);
    let (stream, info) = tls::handshake(config, name.clone(), stream, None, deadline).await?;
    phases.tls = Some(tls_start.elapsed());
    *tls_info = Some(info);
    exchange(stream, spec, local, deadline, start, phases, peer).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    spec: &DiameterSpec,
    local: SocketAddr,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
    peer: &mut Option<String>,
) -> Step<()> {
    let mut framed = Framed { stream, read: 0 };
    let mut ids = Ids::new();
    let (request, id) = cer(spec, local.ip(), &mut ids);
    framed.send(&request, deadline, "CER").await?;
    let cea = framed
        .answer(CAPABILITIES_EXCHANGE, id, deadline, "CEA")
        .await?;
    phases.first_byte = Some(start.elapsed());
    *peer = describe(&cea);
    check(&cea, "CEA")?;

    let (request, id) = dwr(spec, &mut ids);
    framed.send(&request, deadline, "DWR").await?;
    let dwa = framed.answer(DEVICE_WATCHDOG, id, deadline, "DWA").await?;
    check(&dwa, "DWA")?;

    // §5.4: say goodbye, so the peer neither logs a transport failure nor waits for us.
    // The verdict is in: a peer slow to answer or closing at once costs nothing more.
    let (request, id) = dpr(spec, &mut ids);
    let briefly = deadline.min(Instant::now() + DPA_WAIT);
    if framed.send(&request, briefly, "DPR").await.is_ok() {
        let _ = framed.answer(DISCONNECT_PEER, id, briefly, "DPA").await;
    }
    let _ = tokio::time::timeout_at(briefly, framed.stream.shutdown()).await;
    Ok(())
}

/// `Origin-Host (Product-Name)` of a CEA, for `tocsin probe` and the logs.
fn describe(cea: &Message) -> Option<String> {
    let host = cea.origin_host.as_deref().map(|h| excerpt(h.as_bytes()));
    let product = cea.product_name.as_deref().map(|p| excerpt(p.as_bytes()));
    match (host, product) {
        (Some(h), Some(p)) => Some(format!("{h} ({p})")),
        (Some(h), None) => Some(h),
        (None, Some(p)) => Some(format!("({p})")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DiameterSpec {
        DiameterSpec {
            address: "127.0.0.1:3868".into(),
            origin_host: "probe.example.net".into(),
            origin_realm: "example.net".into(),
            auth_application_ids: vec![4],
            tls: None,
            source_address: None,
        }
    }

    #[test]
    fn a_request_parses_back() {
        let mut ids = Ids::new();
        let (bytes, id) = cer(&spec(), "127.0.0.1".parse().unwrap(), &mut ids);
        assert_eq!(bytes.len() % 4, 0);
        let m = parse_message(&bytes).unwrap();
        assert!(m.request && !m.error);
        assert_eq!(m.command, CAPABILITIES_EXCHANGE);
        assert_eq!((m.hop_by_hop, m.end_to_end), id);
        assert_eq!(m.origin_host.as_deref(), Some("probe.example.net"));
        assert_eq!(m.product_name.as_deref(), Some("tocsin"));
        let (_, next) = dwr(&spec(), &mut ids);
        assert_ne!(next, id, "each request has its own identifiers");
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut ids = Ids::new();
        let (good, _) = dwr(&spec(), &mut ids);
        assert!(matches!(
            parse_message(&good[..12]),
            Err(ParseError::Short(12))
        ));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(parse_message(&v2), Err(ParseError::Version(2)));
        assert!(matches!(
            parse_message(&good[..good.len() - 4]),
            Err(ParseError::Length { .. })
        ));
        // An AVP claiming more bytes than the message has.
        let mut long = good.clone();
        long[HEADER_BYTES + 7] = 0xff;
        assert!(matches!(
            parse_message(&long),
            Err(ParseError::AvpLength { .. })
        ));
        // A Result-Code that is not four bytes.
        let bad = Request::new(DEVICE_WATCHDOG, 1, 1)
            .avp(avp::RESULT_CODE, true, &[0, 0, 7])
            .finish();
        assert!(matches!(
            parse_message(&bad),
            Err(ParseError::AvpValue { .. })
        ));
    }

    #[test]
    fn identities() {
        for good in ["probe.example.net", "hss-1", "a.b-c.d"] {
            assert!(valid_identity(good), "{good}");
        }
        for bad in ["", "a..b", "bad name", "x\0y", "é.example"] {
            assert!(!valid_identity(bad), "{bad}");
        }
    }
}
