//! Probes: one file per protocol behind a closed enum, like blackbox_exporter's `prober/`.
//!
//! Each protocol has a `*ProbeConfig` (what the TOML says, strict) that validates into a
//! `*Spec` (parsed URLs, compiled regexes), so a running probe can never hold an invalid
//! config. [`Prober`] holds what probes share at run time (TLS client settings) and runs a
//! spec against a deadline. A failed probe is a [`ProbeResult`] carrying one [`Reason`].

mod conn;
pub mod diameter;
pub mod dns;
pub mod gtp;
pub mod http;
pub mod http_decode;
pub mod icmp;
pub mod imap;
pub mod radius;
pub mod sip;
pub mod sip_digest;
pub mod sip_locate;
pub mod smtp;
pub mod target;
pub mod tcp;
pub mod tls;
mod udp;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::Issues;

/// Most bytes a probe reads from a peer unless configured otherwise: more is a failure,
/// not an allocation.
pub const DEFAULT_MAX_READ_BYTES: u64 = 1024 * 1024;

/// The `probe = { type = "…", … }` table of a target.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProbeConfig {
    Http(http::HttpProbeConfig),
    Tcp(tcp::TcpProbeConfig),
    Tls(tls::TlsProbeConfig),
    Dns(dns::DnsProbeConfig),
    Sip(sip::SipProbeConfig),
    Imap(imap::ImapProbeConfig),
    Smtp(smtp::SmtpProbeConfig),
    Icmp(icmp::IcmpProbeConfig),
    Diameter(diameter::DiameterProbeConfig),
    Gtp(gtp::GtpProbeConfig),
    Radius(radius::RadiusProbeConfig),
}

impl ProbeConfig {
    /// Validates into a runnable spec, recording every problem under `path`.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ProbeSpec> {
        match self {
            ProbeConfig::Http(c) => c
                .build(path, issues)
                .map(|spec| ProbeSpec::Http(Box::new(spec))),
            ProbeConfig::Tcp(c) => c.build(path, issues).map(ProbeSpec::Tcp),
            ProbeConfig::Tls(c) => c.build(path, issues).map(ProbeSpec::Tls),
            ProbeConfig::Dns(c) => c.build(path, issues).map(ProbeSpec::Dns),
            ProbeConfig::Sip(c) => c.build(path, issues).map(ProbeSpec::Sip),
            ProbeConfig::Imap(c) => c.build(path, issues).map(ProbeSpec::Imap),
            ProbeConfig::Smtp(c) => c.build(path, issues).map(ProbeSpec::Smtp),
            ProbeConfig::Icmp(c) => c.build(path, issues).map(ProbeSpec::Icmp),
            ProbeConfig::Diameter(c) => c.build(path, issues).map(ProbeSpec::Diameter),
            ProbeConfig::Gtp(c) => c.build(path, issues).map(ProbeSpec::Gtp),
            ProbeConfig::Radius(c) => c.build(path, issues).map(ProbeSpec::Radius),
        }
    }
}

/// A validated probe, ready to run.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Http(Box<http::HttpSpec>),
    Tcp(tcp::TcpSpec),
    Tls(tls::TlsSpec),
    Dns(dns::DnsSpec),
    Sip(sip::SipSpec),
    Imap(imap::ImapSpec),
    Smtp(smtp::SmtpSpec),
    Icmp(icmp::IcmpSpec),
    Diameter(diameter::DiameterSpec),
    Gtp(gtp::GtpSpec),
    Radius(radius::RadiusSpec),
}

impl ProbeSpec {
    /// The `probe` label value.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Tls(_) => "tls",
            ProbeSpec::Dns(_) => "dns",
            ProbeSpec::Sip(_) => "sip",
            ProbeSpec::Imap(_) => "imap",
            ProbeSpec::Smtp(_) => "smtp",
            ProbeSpec::Icmp(_) => "icmp",
            ProbeSpec::Diameter(_) => "diameter",
            ProbeSpec::Gtp(_) => "gtp",
            ProbeSpec::Radius(_) => "radius",
        }
    }
}

/// A regex error in one line: the crate's message ends with the useful `error: …` line.
pub(crate) fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty());
    let last = last.unwrap_or(&text);
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// Why a probe failed: the closed set of SPEC §4, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Dns,
    ConnectRefused,
    ConnectTimeout,
    Tls,
    Timeout,
    Status,
    Assertion,
    Protocol,
    Auth,
    Internal,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Dns,
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::Tls,
        Reason::Timeout,
        Reason::Status,
        Reason::Assertion,
        Reason::Protocol,
        Reason::Auth,
        Reason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::Assertion => "assertion",
            Reason::Protocol => "protocol",
            Reason::Auth => "auth",
            Reason::Internal => "internal",
        }
    }
}

/// Time spent in each phase, where the protocol has it (summed over redirects); `total` is
/// the whole run. Durations, not offsets, so they map onto blackbox's per-phase series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Phases {
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub dns: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub connect: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub tls: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub first_byte: Option<Duration>,
    /// ICMP echo round trip (blackbox's `rtt` phase; `dns` and `connect` are its `resolve`
    /// and `setup`).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub rtt: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub total: Option<Duration>,
}

mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// One probe run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// `None` on success.
    pub failure: Option<Failure>,
    pub latency: Duration,
    pub phases: Phases,
    /// What the TLS handshake showed, when there was one (the last one, after redirects).
    pub tls: Option<tls::TlsInfo>,
    /// The final HTTP status, when an answer came (blackbox's `probe_http_status_code`).
    pub http_status: Option<u16>,
    /// What the peer told about itself, where the protocol tells it.
    pub peer: PeerInfo,
    /// A success the peer itself qualifies, and why: it restarted recently (GTP restart
    /// counter), it is draining (SIP 503 with Retry-After). The target is degraded.
    pub degraded: Option<String>,
}

/// A peer's own account of itself: who it is (Diameter's Origin-Host and Product-Name)
/// and when it last restarted (GTP's restart counter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub identity: Option<String>,
    pub restart_counter: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    /// A short human explanation (never a metric label).
    pub detail: String,
}

impl ProbeResult {
    pub fn success(latency: Duration, phases: Phases) -> Self {
        Self {
            failure: None,
            latency,
            phases,
            tls: None,
            http_status: None,
            peer: PeerInfo::default(),
            degraded: None,
        }
    }

    pub fn failure(reason: Reason, detail: impl Into<String>, latency: Duration) -> Self {
        Self {
            failure: Some(Failure {
                reason,
                detail: detail.into(),
            }),
            latency,
            phases: Phases::default(),
            tls: None,
            http_status: None,
            peer: PeerInfo::default(),
            degraded: None,
        }
    }

    /// A failure with the phases completed before it, as data for `/probe`.
    pub(crate) fn failed(failure: Failure, latency: Duration, phases: Phases) -> Self {
        Self {
            failure: Some(failure),
            latency,
            phases,
            tls: None,
            http_status: None,
            peer: PeerInfo::default(),
            degraded: None,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }

    /// A success whose certificate chain expires within the probe's `cert_expiry_warning`:
    /// the target is degraded (SPEC §4), like a slow success.
    pub fn cert_expiring(&self) -> bool {
        self.is_ok() && self.tls.as_ref().is_some_and(|t| t.expiring)
    }

    /// A success the peer qualifies ([`ProbeResult::degraded`]): degraded too.
    pub fn peer_degraded(&self) -> bool {
        self.is_ok() && self.degraded.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    #[error("cannot load the system's CA certificates: {0}")]
    SystemRoots(#[from] rustls::Error),
}

/// What probes share at run time.
#[derive(Debug, Clone)]
pub struct Prober {
    tls: tls::TlsClients,
}

/// Slack past the deadline before the outer guard cuts a probe that ignores its deadline.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

impl Prober {
    pub fn new() -> Result<Self, ProberError> {
        Ok(Self {
            tls: tls::TlsClients::new()?,
        })
    }

    /// Runs one probe. It returns by `timeout` (plus a small grace) whatever the peer does.
    pub async fn run(&self, spec: &ProbeSpec, timeout: Duration) -> ProbeResult {
        let start = Instant::now();
        let deadline = start + timeout;
        let run = async {
            match spec {
                ProbeSpec::Http(s) => http::run(&self.tls, s, deadline).await,
                ProbeSpec::Tcp(s) => tcp::run(&self.tls, s, deadline).await,
                ProbeSpec::Tls(s) => tls::run(&self.tls, s, deadline).await,
                ProbeSpec::Dns(s) => dns::run(s, deadline).await,
                ProbeSpec::Sip(s) => sip::run(&self.tls, s, deadline).await,
                ProbeSpec::Imap(s) => imap::run(&self.tls, s, deadline).await,
                ProbeSpec::Smtp(s) => smtp::run(&self.tls, s, deadline).await,
                ProbeSpec::Icmp(s) => icmp::run(s, deadline).await,
                ProbeSpec::Diameter(s) => diameter::run(&self.tls, s, deadline).await,
                ProbeSpec::Gtp(s) => gtp::run(s, deadline).await,
                ProbeSpec::Radius(s) => radius::run(s, deadline).await,
            }
        };
        match tokio::time::timeout_at(deadline + DEADLINE_GRACE, run).await {
            Ok(result) => result,
            Err(_) => ProbeResult::failure(
                Reason::Timeout,
                format!("no answer within {}", humantime::format_duration(timeout)),
                start.elapsed(),
            ),
        }
    }
}
