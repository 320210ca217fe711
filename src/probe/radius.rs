//! `radius` probe: a Status-Server (RFC 5997) to an authentication or accounting port, or
//! an Access-Request for a test user (RFC 2865, PAP), over UDP and retransmitted as RFC
//! 5080 §2.2.1 asks: the same packet, at doubling intervals, until the deadline.
//!
//! Every request carries a Message-Authenticator (HMAC-MD5 with the shared secret, RFC
//! 3579 §3.2), and the answer's Response Authenticator is verified; an answer that fails it
//! is `protocol`. A server that finds *our* authenticator wrong says nothing at all (RFC
//! 2865 §3 has it silently discard the request), so a wrong shared secret ends in `timeout`,
//! like an unreachable server; the detail says so. Access-Reject is `auth`.
//!
//! [`parse_packet`] is the parser entry point (kept `pub` for fuzzing).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use tokio::time::Instant;

use super::conn::{self, Step, fail};
use super::result::{Phases, ProbeResult, Reason};
use super::sanitize::excerpt;
use super::udp::{self, Schedule, Verdict};
use crate::validation::{Issues, Secret, read_secret_file};

/// RFC 2865 §3: the largest packet.
pub const MAX_PACKET_BYTES: usize = 4096;
const HEADER_BYTES: usize = 20;
/// RFC 2865 §5.2: a User-Password holds at most 128 bytes.
const MAX_PASSWORD_BYTES: usize = 128;
/// First retransmission interval, doubling up to [`RETRANSMIT_CAP`] (RFC 5080 §2.2.1 has 2s
/// and 16s for NASes; a probe with a few seconds of deadline needs a shorter start).
const RETRANSMIT_FIRST: Duration = Duration::from_secs(1);
const RETRANSMIT_CAP: Duration = Duration::from_secs(8);

mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const ACCESS_CHALLENGE: u8 = 11;
    pub const STATUS_SERVER: u8 = 12;
}

mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

/// Which port the probe talks to, and so which answer means alive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Authentication (1812): Access-Accept.
    #[default]
    Auth,
    /// Accounting (1813): Accounting-Response.
    Acct,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusProbeConfig {
    /// `host:port`: 1812 for authentication, 1813 for accounting; IPv6 in brackets.
    pub address: String,
    /// File holding the shared secret (surrounding white space trimmed).
    pub secret_file: PathBuf,
    /// `auth` (the default) or `acct`: the kind of port `address` is.
    #[serde(default)]
    pub service: Service,
    /// A test user: send an Access-Request with this User-Name instead of a Status-Server.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the test user's password, sent as a PAP User-Password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// NAS-Identifier sent; default `tocsin`.
    #[serde(default)]
    pub nas_identifier: Option<String>,
    /// Local IP to send from (the address the server knows as a client).
    #[serde(default)]
    pub source_address: Option<String>,
}

/// A validated RADIUS probe.
#[derive(Debug, Clone)]
pub struct RadiusSpec {
    pub address: String,
    pub secret: Secret,
    pub service: Service,
    /// User-Name and password of an Access-Request; `None` sends a Status-Server.
    pub user: Option<(String, Secret)>,
    pub nas_identifier: String,
    pub source_address: Option<IpAddr>,
}

impl RadiusProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<RadiusSpec> {
        let before = issues.len();
        if let Err(e) = conn::check_host_port(&self.address) {
            issues.push(format!("{path}.address"), e);
        }
        let secret = read_secret_file(&self.secret_file)
            .map_err(|e| issues.push(format!("{path}.secret_file"), e))
            .ok();
        let user = match (&self.username, &self.password_file) {
            (None, None) => None,
            (Some(name), Some(file)) => {
                if name.is_empty() || name.len() > 253 {
                    issues.push(format!("{path}.username"), "must be 1 to 253 bytes");
                }
                if self.service == Service::Acct {
                    issues.push(
                        format!("{path}.username"),
                        "an Access-Request goes to an auth port, not service = \"acct\"",
                    );
                }
                match read_secret_file(file) {
                    Ok(p) if p.len() > MAX_PASSWORD_BYTES => {
                        issues.push(
                            format!("{path}.password_file"),
                            format!("a PAP password is at most {MAX_PASSWORD_BYTES} bytes"),
                        );
                        None
                    }
                    Ok(p) => Some((name.clone(), Secret::new(p))),
                    Err(e) => {
                        issues.push(format!("{path}.password_file"), e);
                        None
                    }
                }
            }
            _ => {
                issues.push(
                    path.to_string(),
                    "set both `username` and `password_file`, or neither",
                );
                None
            }
        };
        let nas_identifier = self
            .nas_identifier
            .clone()
            .unwrap_or_else(|| "tocsin".to_string());
        if nas_identifier.is_empty() || nas_identifier.len() > 253 {
            issues.push(format!("{path}.nas_identifier"), "must be 1 to 253 bytes");
        }
        let source_address =
            super::conn::source_address(self.source_address.as_deref(), path, issues);
        if issues.len() > before {
            return None;
        }
        Some(RadiusSpec {
            address: self.address.clone(),
            secret: Secret::new(secret?),
            service: self.service,
            user,
            nas_identifier,
            source_address,
        })
    }
}

/// Why bytes are not a RADIUS packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} bytes, shorter than a RADIUS header")]
    Short(usize),
    #[error("declared length {declared} with {actual} bytes received")]
    Length { declared: usize, actual: usize },
    #[error("attribute {attribute} at offset {at} has a bad length")]
    Attribute { attribute: u8, at: usize },
}

/// What the probe reads from a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    /// The declared length: bytes past it are padding (RFC 2865 §3).
    pub length: usize,
    pub reply_message: Option<String>,
    /// Offset of the Message-Authenticator's 16 bytes, when there is one.
    pub message_authenticator_at: Option<usize>,
}

/// Parses one datagram. The parser entry point: every attribute length is checked against
/// the declared length, which is checked against the datagram.
pub fn parse_packet(bytes: &[u8]) -> Result<Packet, ParseError> {
    if bytes.len() < HEADER_BYTES {
        return Err(ParseError::Short(bytes.len()));
    }
    let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if !(HEADER_BYTES..=MAX_PACKET_BYTES).contains(&length) || length > bytes.len() {
        return Err(ParseError::Length {
            declared: length,
            actual: bytes.len(),
        });
    }
    let mut packet = Packet {
        code: bytes[0],
        identifier: bytes[1],
        length,
        reply_message: None,
        message_authenticator_at: None,
    };
    let mut at = HEADER_BYTES;
    while at < length {
        let attribute = bytes[at];
        let len = usize::from(
            *bytes
                .get(at + 1)
                .filter(|_| at + 1 < length)
                .ok_or(ParseError::Attribute { attribute, at })?,
        );
        if len < 2 || at + len > length {
            return Err(ParseError::Attribute { attribute, at });
        }
        let value = &bytes[at + 2..at + len];
        match attribute {
            attr::REPLY_MESSAGE if packet.reply_message.is_none() => {
                packet.reply_message = Some(String::from_utf8_lossy(value).into_owned());
            }
            attr::MESSAGE_AUTHENTICATOR => {
                if value.len() != 16 {
                    return Err(ParseError::Attribute { attribute, at });
                }
                packet.message_authenticator_at = Some(at + 2);
            }
            _ => {}
        }
        at += len;
    }
    Ok(packet)
}

fn attribute(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    out.push(kind);
    out.push((value.len() + 2) as u8);
    out.extend_from_slice(value);
}

fn hmac_md5(secret: &[u8], bytes: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// RFC 2865 §5.2: the password, zero-padded to 16-byte blocks, each XORed with
/// MD5(secret + the previous block of ciphertext, the Request Authenticator first).
fn hide_password(password: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Vec<u8> {
    let mut padded = password.to_vec();
    padded.resize(password.len().div_ceil(16).max(1) * 16, 0);
    let mut previous = authenticator.to_vec();
    for block in padded.chunks_mut(16) {
        let key = Md5::new()
            .chain_update(secret)
            .chain_update(&previous)
            .finalize();
        for (b, k) in block.iter_mut().zip(key) {
            *b ^= k;
        }
        previous = block.to_vec();
    }
    padded
}

/// The request for `spec`, with identifier `id` and Request Authenticator `authenticator`;
/// the Message-Authenticator is filled in last, over the whole packet.
fn request(spec: &RadiusSpec, id: u8, authenticator: &[u8; 16]) -> Vec<u8> {
    let code = match spec.user {
        Some(_) => code::ACCESS_REQUEST,
        None => code::STATUS_SERVER,
    };
    let mut p = vec![code, id, 0, 0];
    p.extend_from_slice(authenticator);
    if let Some((name, password)) = &spec.user {
        attribute(&mut p, attr::USER_NAME, name.as_bytes());
        let hidden = hide_password(
            password.expose().as_bytes(),
            spec.secret.expose().as_bytes(),
            authenticator,
        );
        attribute(&mut p, attr::USER_PASSWORD, &hidden);
    }
    attribute(&mut p, attr::NAS_IDENTIFIER, spec.nas_identifier.as_bytes());
    let mac_at = p.len() + 2;
    attribute(&mut p, attr::MESSAGE_AUTHENTICATOR, &[0; 16]);
    let length = (p.len() as u16).to_be_bytes();
    p[2..4].copy_from_slice(&length);
    let mac = hmac_md5(spec.secret.expose().as_bytes(), &p);
    p[mac_at..mac_at + 16].copy_from_slice(&mac);
    p
}

/// RFC 2865 §3 Response Authenticator, and the answer's Message-Authenticator when it has
/// one (RFC 3579 §3.2: computed with the Request Authenticator in place).
fn verify(packet: &Packet, bytes: &[u8], secret: &[u8], request_auth: &[u8; 16]) -> bool {
    let bytes = &bytes[..packet.length];
    let expected = Md5::new()
        .chain_update(&bytes[..4])
        .chain_update(request_auth)
        .chain_update(&bytes[HEADER_BYTES..])
        .chain_update(secret)
        .finalize();
    if bytes[4..HEADER_BYTES] != expected[..] {
        return false;
    }
    match packet.message_authenticator_at {
        None => true,
        Some(at) => {
            let mut copy = bytes.to_vec();
            copy[4..HEADER_BYTES].copy_from_slice(request_auth);
            copy[at..at + 16].fill(0);
            hmac_md5(secret, &copy)[..] == bytes[at..at + 16]
        }
    }
}

pub async fn run(spec: &RadiusSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let outcome = exchange(spec, deadline, start, &mut phases).await;
    super::conn::finish(start, outcome, phases, None)
}

async fn exchange(
    spec: &RadiusSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<()> {
    let socket = udp::connect(&spec.address, spec.source_address, deadline, start, phases).await?;
    let id = fastrand::u8(..);
    // RFC 2865 §3: the Request Authenticator must be unpredictable, as it keys the
    // password hiding and the check of the answer.
    let mut authenticator = [0u8; 16];
    secure_random()
        .fill(&mut authenticator)
        .map_err(|_| fail(Reason::Internal, "no secure random numbers"))?;
    let packet = request(spec, id, &authenticator);
    let schedule = Schedule::Doubling {
        first: RETRANSMIT_FIRST,
        cap: RETRANSMIT_CAP,
    };
    let what = match (&spec.user, spec.service) {
        (Some(_), _) => "answer to the Access-Request",
        (None, Service::Auth) => "answer to the Status-Server",
        (None, Service::Acct) => "Accounting-Response to the Status-Server",
    };
    let judged = udp::transact(&socket, &packet, schedule, deadline, phases, what, |d| {
        match parse_packet(d) {
            Err(e) => Verdict::Garbage(format!("not a RADIUS packet: {e}")),
            Ok(p) if p.identifier != id => Verdict::Stray,
            Ok(p) if !verify(&p, d, spec.secret.expose().as_bytes(), &authenticator) => Verdict::Ours(Err(fail(
                Reason::Protocol,
                "the answer's authenticator does not verify: is the shared secret the server's?",
            ))),
            Ok(p) => Verdict::Ours(judge(spec, &p)),
        }
    })
    .await;
    match judged {
        Ok(verdict) => verdict,
        Err(f) if f.reason == Reason::Timeout => Err(fail(
            Reason::Timeout,
            format!(
                "{} (a server silently drops requests whose shared secret is wrong)",
                f.detail
            ),
        )),
        Err(f) => Err(f),
    }
}

fn secure_random() -> &'static dyn rustls::crypto::SecureRandom {
    static RANDOM: std::sync::OnceLock<&'static dyn rustls::crypto::SecureRandom> =
        std::sync::OnceLock::new();
    *RANDOM.get_or_init(|| rustls::crypto::aws_lc_rs::default_provider().secure_random)
}

/// What a verified answer means.
fn judge(spec: &RadiusSpec, p: &Packet) -> Step<()> {
    let message = || {
        p.reply_message
            .as_deref()
            .map(|m| format!(": {}", excerpt(m.as_bytes())))
            .unwrap_or_default()
    };
    let expected = match spec.service {
        Service::Auth => code::ACCESS_ACCEPT,
        Service::Acct => code::ACCOUNTING_RESPONSE,
    };
    match p.code {
        c if c == expected => Ok(()),
        code::ACCESS_REJECT => Err(fail(Reason::Auth, format!("Access-Reject{}", message()))),
        code::ACCESS_CHALLENGE => Err(fail(
            Reason::Auth,
            format!(
                "Access-Challenge: the user needs more than PAP{}",
                message()
            ),
        )),
        other => Err(fail(
            Reason::Protocol,
            format!("answer code {other}, expected {expected}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<(&str, &str)>) -> RadiusSpec {
        RadiusSpec {
            address: "127.0.0.1:1812".into(),
            secret: Secret::new("xyzzy5461".into()),
            service: Service::Auth,
            user: user.map(|(u, p)| (u.to_string(), Secret::new(p.to_string()))),
            nas_identifier: "tocsin".into(),
            source_address: None,
        }
    }

    #[test]
    fn rfc_2865_section_7_1_password_hiding() {
        // The example of RFC 2865 §7.1: user "nemo", password "arctangent".
        let authenticator = [
            0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4,
            0x22, 0x7a,
        ];
        let hidden = hide_password(b"arctangent", b"xyzzy5461", &authenticator);
        assert_eq!(
            hidden,
            [
                0x0d, 0xbe, 0x70, 0x8d, 0x93, 0xd4, 0x13, 0xce, 0x31, 0x96, 0xe4, 0x3f, 0x78, 0x2a,
                0x0a, 0xee
            ]
        );
    }

    #[test]
    fn requests_carry_a_valid_message_authenticator() {
        let auth = [7u8; 16];
        for user in [None, Some(("nemo", "arctangent"))] {
            let spec = spec(user);
            let bytes = request(&spec, 9, &auth);
            let p = parse_packet(&bytes).unwrap();
            assert_eq!(p.identifier, 9);
            let at = p.message_authenticator_at.unwrap();
            let mut zeroed = bytes.clone();
            zeroed[at..at + 16].fill(0);
            assert_eq!(
                hmac_md5(spec.secret.expose().as_bytes(), &zeroed)[..],
                bytes[at..at + 16]
            );
        }
    }

    #[test]
    fn answers_are_verified() {
        let spec = spec(None);
        let request_auth = [3u8; 16];
        let mut answer = vec![code::ACCESS_ACCEPT, 9, 0, 20];
        answer.extend_from_slice(&[0; 16]);
        let ra = Md5::new()
            .chain_update(&answer[..4])
            .chain_update(request_auth)
            .chain_update(spec.secret.expose().as_bytes())
            .finalize();
        answer[4..20].copy_from_slice(&ra);
        let p = parse_packet(&answer).unwrap();
        assert!(verify(
            &p,
            &answer,
            spec.secret.expose().as_bytes(),
            &request_auth
        ));
        assert!(!verify(&p, &answer, b"other", &request_auth));
        assert!(judge(&spec, &p).is_ok());
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse_packet(&[1; 10]), Err(ParseError::Short(10)));
        let mut p = vec![2, 1, 0, 30];
        p.extend_from_slice(&[0; 16]);
        assert!(matches!(parse_packet(&p), Err(ParseError::Length { .. })));
        p.extend_from_slice(&[18, 20, b'x', b'y', 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            parse_packet(&p),
            Err(ParseError::Attribute { attribute: 18, .. })
        ));
        p[21] = 1;
        assert!(parse_packet(&p).is_err(), "a length below 2");
    }
}
