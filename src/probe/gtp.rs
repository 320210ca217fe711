//! `gtp` probe: the path-management Echo of GTP, which every SGSN, GGSN, SGW, PGW and UPF
//! answers on GTP-C (port 2123; version 1, TS 29.060, or 2, TS 29.274) and GTP-U (port
//! 2152; version 1, TS 29.281). The request is retransmitted every `t3` up to `n3` times,
//! as the specifications' T3-RESPONSE and N3-REQUESTS do; only a response with our sequence
//! number counts.
//!
//! The response's Recovery IE is the peer's restart counter. A changed counter means the
//! peer restarted and dropped its sessions even though it answers again, so the results of
//! the next `restart_hold` are degraded. The last counter seen lives in the spec, behind an
//! `Arc` shared by its clones: one memory per configured target, forgotten when the
//! configuration is reloaded. `/probe` builds a spec per request and so never sees a
//! change; there `probe_gtp_restart_counter` with PromQL's `changes()` does the same.
//!
//! [`parse_echo_response`] is the parser entry point (kept `pub` for fuzzing).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::conn::{self, Step, fail};
use super::result::{Phases, ProbeResult, Reason};
use super::sanitize::excerpt;
use super::udp::{self, Schedule, Verdict};
use crate::validation::Issues;

/// Most retransmissions accepted in `n3`: more only delays the verdict past any timeout.
const MAX_N3: u32 = 10;

const ECHO_REQUEST: u8 = 1;
const ECHO_RESPONSE: u8 = 2;
/// GTPv1 and v2: the peer does not speak the version of our request.
const VERSION_NOT_SUPPORTED: u8 = 3;
/// Recovery IE type: TV in GTPv1, TLIV in GTPv2.
const RECOVERY_V1: u8 = 14;
const RECOVERY_V2: u8 = 3;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GtpProbeConfig {
    /// `host:port`: 2123 for GTP-C, 2152 for GTP-U; IPv6 literals in brackets.
    pub address: String,
    /// GTP version: 2 (GTPv2-C, the default) or 1 (GTPv1-C, and GTP-U).
    #[serde(default = "default_version")]
    pub version: u8,
    /// Wait for a response before sending again (T3-RESPONSE); default 1s.
    #[serde(default = "default_t3", with = "humantime_serde")]
    pub t3: Duration,
    /// Retransmissions after the first request (N3-REQUESTS); default 2, at most 10.
    #[serde(default = "default_n3")]
    pub n3: u32,
    /// How long after a restart-counter change the results stay degraded; default 10m.
    #[serde(default = "default_restart_hold", with = "humantime_serde")]
    pub restart_hold: Duration,
    /// Local IP to send from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
}

fn default_version() -> u8 {
    2
}

fn default_t3() -> Duration {
    Duration::from_secs(1)
}

fn default_n3() -> u32 {
    2
}

fn default_restart_hold() -> Duration {
    Duration::from_secs(600)
}

/// A validated GTP probe.
#[derive(Debug, Clone)]
pub struct GtpSpec {
    pub address: String,
    pub version: u8,
    pub t3: Duration,
    pub n3: u32,
    pub restart_hold: Duration,
    pub source_address: Option<IpAddr>,
    /// The last restart counter seen, shared by the spec's clones.
    last_restart: Arc<Mutex<Option<LastRestart>>>,
}

#[derive(Debug, Clone, Copy)]
struct LastRestart {
    counter: u8,
    /// When the counter last changed, and from what.
    changed_at: Option<Instant>,
    before: Option<u8>,
}

impl GtpProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<GtpSpec> {
        let before = issues.len();
        if let Err(e) = conn::check_host_port(&self.address) {
            issues.push(format!("{path}.address"), e);
        }
        if !matches!(self.version, 1 | 2) {
            issues.push(format!("{path}.version"), "must be 1 or 2");
        }
        if self.t3.is_zero() {
            issues.push(format!("{path}.t3"), "must be more than 0s");
        }
        if self.n3 > MAX_N3 {
            issues.push(format!("{path}.n3"), format!("must be at most {MAX_N3}"));
        }
        let source_address =
            super::conn::source_address(self.source_address.as_deref(), path, issues);
        if issues.len() > before {
            return None;
        }
        Some(GtpSpec {
            address: self.address.clone(),
            version: self.version,
            t3: self.t3,
            n3: self.n3,
            restart_hold: self.restart_hold,
            source_address,
            last_restart: Arc::default(),
        })
    }
}

/// An Echo Request with sequence number `sequence` (16 bits used in v1, 24 in v2).
fn echo_request(version: u8, sequence: u32) -> Vec<u8> {
    match version {
        1 => {
            // Version 1, protocol type GTP, S flag: the sequence number is present.
            let mut m = vec![0x32, ECHO_REQUEST, 0, 4, 0, 0, 0, 0];
            m.extend_from_slice(&(sequence as u16).to_be_bytes());
            m.extend_from_slice(&[0, 0]); // N-PDU number, no extension header
            m
        }
        _ => {
            // Version 2, no piggybacking, no TEID (path management).
            let mut m = vec![0x40, ECHO_REQUEST, 0, 9];
            m.extend_from_slice(&sequence.to_be_bytes()[1..]);
            m.push(0);
            // Recovery IE, mandatory in a v2 Echo Request: ours is 0, we keep no state.
            m.extend_from_slice(&[RECOVERY_V2, 0, 1, 0, 0]);
            m
        }
    }
}

/// Why bytes are not a GTP Echo Response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0} bytes, shorter than a GTP header")]
    Short(usize),
    #[error("GTP version {0}")]
    Version(u8),
    #[error("not GTP (protocol type GTP')")]
    GtpPrime,
    #[error("declared length {declared} but {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("message type {0}, not an Echo Response")]
    MessageType(u8),
    #[error("a v1 message without a sequence number")]
    NoSequence,
    #[error("a truncated {0}")]
    Truncated(&'static str),
}

/// What the probe reads from an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// An Echo Response: its sequence number and restart counter, when it carried one.
    Echo { sequence: u32, recovery: Option<u8> },
    /// Version Not Supported Indication: the peer does not speak our version.
    VersionNotSupported,
}

/// Parses one datagram as the answer to an Echo Request. The parser entry point: every
/// length is checked against the datagram.
pub fn parse_echo_response(bytes: &[u8]) -> Result<Answer, ParseError> {
    let first = *bytes.first().ok_or(ParseError::Short(0))?;
    match first >> 5 {
        1 => parse_v1(bytes),
        2 => parse_v2(bytes),
        v => Err(ParseError::Version(v)),
    }
}

fn message_type(bytes: &[u8], header: usize, declared: usize) -> Result<u8, ParseError> {
    if bytes.len() < header {
        return Err(ParseError::Short(bytes.len()));
    }
    if declared != bytes.len() {
        return Err(ParseError::Length {
            declared,
            actual: bytes.len(),
        });
    }
    match bytes[1] {
        ECHO_RESPONSE => Ok(ECHO_RESPONSE),
        VERSION_NOT_SUPPORTED => Ok(VERSION_NOT_SUPPORTED),
        other => Err(ParseError::MessageType(other)),
    }
}

fn parse_v1(bytes: &[u8]) -> Result<Answer, ParseError> {
    if bytes.len() < 8 {
        return Err(ParseError::Short(bytes.len()));
    }
    let flags = bytes[0];
    if flags & 0x10 == 0 {
        return Err(ParseError::GtpPrime);
    }
    let declared = 8 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if message_type(bytes, 8, declared)? == VERSION_NOT_SUPPORTED {
        return Ok(Answer::VersionNotSupported);
    }
    // The S flag: the optional four bytes (sequence, N-PDU, next extension) are there.
    if flags & 0x02 == 0 || bytes.len() < 12 {
        return Err(ParseError::NoSequence);
    }
    let sequence = u32::from(u16::from_be_bytes([bytes[8], bytes[9]]));
    let mut at = 12;
    // Extension headers: a length in 4-byte units, the content, the next type.
    let mut next_extension = if flags & 0x04 != 0 { bytes[11] } else { 0 };
    while next_extension != 0 {
        let units = usize::from(*bytes.get(at).ok_or(ParseError::Truncated("extension"))?);
        if units == 0 || at + units * 4 > bytes.len() {
            return Err(ParseError::Truncated("extension header"));
        }
        next_extension = bytes[at + units * 4 - 1];
        at += units * 4;
    }
    let mut recovery = None;
    while at < bytes.len() {
        match bytes[at] {
            RECOVERY_V1 => {
                let value = *bytes
                    .get(at + 1)
                    .ok_or(ParseError::Truncated("Recovery IE"))?;
                recovery.get_or_insert(value);
                at += 2;
            }
            // TLV IEs (Private Extension): a two-byte length follows the type.
            t if t >= 128 => {
                let len = bytes
                    .get(at + 1..at + 3)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                    .ok_or(ParseError::Truncated("IE"))?;
                at += 3 + len;
                if at > bytes.len() {
                    return Err(ParseError::Truncated("IE"));
                }
            }
            // A TV IE whose length only its type tells: none belongs in an Echo Response.
            _ => break,
        }
    }
    Ok(Answer::Echo { sequence, recovery })
}

fn parse_v2(bytes: &[u8]) -> Result<Answer, ParseError> {
    if bytes.len() < 4 {
        return Err(ParseError::Short(bytes.len()));
    }
    let flags = bytes[0];
    let declared = 4 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    // With a TEID (T flag) the header is 12 bytes, without it 8.
    let header = if flags & 0x08 != 0 { 12 } else { 8 };
    if message_type(bytes, header, declared)? == VERSION_NOT_SUPPORTED {
        return Ok(Answer::VersionNotSupported);
    }
    let seq_at = header - 4;
    let sequence = u32::from_be_bytes([0, bytes[seq_at], bytes[seq_at + 1], bytes[seq_at + 2]]);
    let mut at = header;
    let mut recovery = None;
    while at < bytes.len() {
        let ie = bytes.get(at..at + 4).ok_or(ParseError::Truncated("IE"))?;
        let len = usize::from(u16::from_be_bytes([ie[1], ie[2]]));
        let value = bytes
            .get(at + 4..at + 4 + len)
            .ok_or(ParseError::Truncated("IE"))?;
        if ie[0] == RECOVERY_V2 && ie[3] & 0x0f == 0 && recovery.is_none() {
            recovery = Some(*value.first().ok_or(ParseError::Truncated("Recovery IE"))?);
        }
        at += 4 + len;
    }
    Ok(Answer::Echo { sequence, recovery })
}

impl GtpSpec {
    /// Records `counter`; says whether the peer restarted within `restart_hold`, and the
    /// counter it had before.
    fn restarted(&self, counter: u8, now: Instant) -> Option<u8> {
        let mut last = self
            .last_restart
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (changed_at, before) = match *last {
            Some(prev) if prev.counter != counter => (Some(now), Some(prev.counter)),
            Some(prev) => (prev.changed_at, prev.before),
            None => (None, None),
        };
        *last = Some(LastRestart {
            counter,
            changed_at,
            before,
        });
        before.filter(|_| changed_at.is_some_and(|at| now.duration_since(at) < self.restart_hold))
    }
}

pub async fn run(spec: &GtpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let outcome = echo(spec, deadline, start, &mut phases).await;
    let total = start.elapsed();
    match outcome {
        Ok(recovery) => {
            phases.total = Some(total);
            let mut result = ProbeResult::success(total, phases);
            if let Some(counter) = recovery {
                result.peer.restart_counter = Some(counter);
                result.degraded = spec.restarted(counter, Instant::now()).map(|before| {
                    format!("the peer restarted: restart counter {before}, now {counter}")
                });
            }
            result
        }
        Err(failure) => ProbeResult::failed(failure, total, phases),
    }
}

async fn echo(
    spec: &GtpSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Option<u8>> {
    let socket = udp::connect(&spec.address, spec.source_address, deadline, start, phases).await?;
    let mask = if spec.version == 1 { 0xffff } else { 0xff_ffff };
    let sequence = fastrand::u32(..) & mask;
    let request = echo_request(spec.version, sequence);
    let schedule = Schedule::Fixed {
        interval: spec.t3,
        retransmissions: spec.n3,
    };
    let version = spec.version;
    udp::transact(
        &socket,
        &request,
        schedule,
        deadline,
        phases,
        "Echo Response",
        |datagram| match parse_echo_response(datagram) {
            Ok(Answer::Echo {
                sequence: s,
                recovery,
            }) if s == sequence && datagram[0] >> 5 == version => Verdict::Ours(Ok(recovery)),
            Ok(Answer::VersionNotSupported) => Verdict::Ours(Err(fail(
                Reason::Protocol,
                format!("the peer does not support GTPv{version}"),
            ))),
            Ok(_) => Verdict::Stray,
            Err(e) => Verdict::Garbage(format!(
                "not an Echo Response ({e}): `{}`",
                excerpt(&datagram[..datagram.len().min(32)])
            )),
        },
    )
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_their_versions() {
        let v1 = echo_request(1, 0x1234);
        assert_eq!(v1.len(), 12);
        let mut answer = v1.clone();
        answer[1] = ECHO_RESPONSE;
        answer[3] = 6;
        answer.extend_from_slice(&[RECOVERY_V1, 7]);
        assert_eq!(
            parse_echo_response(&answer),
            Ok(Answer::Echo {
                sequence: 0x1234,
                recovery: Some(7)
            })
        );

        let mut v2 = echo_request(2, 0xabcdef);
        v2[1] = ECHO_RESPONSE;
        v2[12] = 42;
        assert_eq!(
            parse_echo_response(&v2),
            Ok(Answer::Echo {
                sequence: 0xabcdef,
                recovery: Some(42)
            })
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        let mut v2 = echo_request(2, 1);
        v2[1] = ECHO_RESPONSE;
        assert!(matches!(
            parse_echo_response(&v2[..10]),
            Err(ParseError::Length { .. })
        ));
        let mut long_ie = v2.clone();
        long_ie[10] = 0xff;
        assert_eq!(
            parse_echo_response(&long_ie),
            Err(ParseError::Truncated("IE"))
        );
        let request = echo_request(1, 1);
        assert_eq!(
            parse_echo_response(&request),
            Err(ParseError::MessageType(ECHO_REQUEST))
        );
        assert_eq!(parse_echo_response(b""), Err(ParseError::Short(0)));
        assert_eq!(
            parse_echo_response(b"\x60\x02\x00\x00"),
            Err(ParseError::Version(3))
        );
    }

    #[test]
    fn a_changed_counter_holds_degraded() {
        let mut issues = Issues::default();
        let config = GtpProbeConfig {
            address: "127.0.0.1:2123".into(),
            version: 2,
            t3: default_t3(),
            n3: default_n3(),
            restart_hold: Duration::from_secs(60),
            source_address: None,
        };
        let spec = config.build("p", &mut issues).unwrap();
        let clone = spec.clone();
        let t = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            spec.restarted(5, t),
            None,
            "the first counter seen is no change"
        );
        assert_eq!(spec.restarted(5, t + s(1)), None);
        assert_eq!(clone.restarted(6, t + s(2)), Some(5), "clones share");
        assert_eq!(spec.restarted(6, t + s(61)), Some(5));
        assert_eq!(spec.restarted(6, t + s(62)), None, "hold over");
    }
}
