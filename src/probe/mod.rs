//! Probes: one file per protocol behind a closed enum, like blackbox_exporter's `prober/`.
//!
//! Each protocol has a `*ProbeConfig` (what the TOML says, strict) that validates into a
//! `*Spec` (parsed URLs, compiled regexes), so a running probe can never hold an invalid
//! config. [`Prober`] holds what probes share at run time (TLS client settings) and runs a
//! spec against a deadline. A failed probe is a [`ProbeResult`] carrying one [`Reason`].

pub mod adhoc;
mod conn;
mod diameter;
mod dns;
mod gtp;
mod http;
mod http_decode;
mod icmp;
mod imap;
pub mod module;
mod push;
mod radius;
mod result;
pub(crate) mod sanitize;
mod sip;
mod sip_digest;
mod sip_locate;
mod smtp;
mod tcp;
mod tls;
mod udp;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub(crate) use http::{LOOP_HEADER, loop_marker};
pub use push::{PushSpec, missed_heartbeat};
pub use result::{Failure, LocalCause, PeerInfo, Phases, ProbeResult, Reason, TlsInfo};
/// How an SMTP session is encrypted; the `email` receiver's `tls` too.
pub use smtp::{SmtpTls, login as smtp_login};

/// The parsers of what peers send, for the fuzz targets in `fuzz/` only (cargo fuzz builds
/// with `--cfg fuzzing`): no part of the library's API.
#[cfg(fuzzing)]
pub mod parsers {
    pub use super::diameter::parse_message as parse_diameter_message;
    pub use super::dns::{DnsProbeConfig, DnsSpec, Verdict, check_answer, classify};
    pub use super::gtp::parse_echo_response as parse_gtp_echo_response;
    pub use super::imap::{ServerLine, parse_greeting, parse_line as parse_imap_line};
    pub use super::radius::parse_packet as parse_radius_packet;
    pub use super::sanitize::{MAX_EXCERPT_CHARS, Secrets};
    pub use super::sip::parse_message as parse_sip_message;
    pub use super::sip_digest::{authorization as sip_authorization, parse_challenge};
    pub use super::smtp::parse_replies as parse_smtp_replies;
}
use crate::clock::instant_after;

use crate::validation::Issues;

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
    Push(push::PushProbeConfig),
}

impl ProbeConfig {
    /// The files this probe reads (`ca_file`, `password_file`), so that relative ones can
    /// be taken from the configuration file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            ProbeConfig::Http(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Tcp(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Tls(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Sip(c) => c.ca_file.iter_mut().chain(&mut c.password_file).collect(),
            ProbeConfig::Smtp(c) => c.ca_file.iter_mut().chain(&mut c.password_file).collect(),
            ProbeConfig::Imap(c) => c.ca_file.iter_mut().chain([&mut c.password_file]).collect(),
            ProbeConfig::Diameter(c) => c
                .ca_file
                .iter_mut()
                .chain(&mut c.tls_cert_file)
                .chain(&mut c.tls_key_file)
                .collect(),
            ProbeConfig::Radius(c) => [&mut c.secret_file]
                .into_iter()
                .chain(&mut c.password_file)
                .collect(),
            ProbeConfig::Push(c) => vec![&mut c.token_file],
            ProbeConfig::Dns(_) | ProbeConfig::Icmp(_) | ProbeConfig::Gtp(_) => Vec::new(),
        }
    }

    /// Validates into a runnable spec, recording every problem under `path`.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ProbeSpec> {
        match self {
            ProbeConfig::Http(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Http),
            ProbeConfig::Tcp(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Tcp),
            ProbeConfig::Tls(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Tls),
            ProbeConfig::Dns(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Dns),
            ProbeConfig::Sip(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Sip),
            ProbeConfig::Imap(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Imap),
            ProbeConfig::Smtp(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Smtp),
            ProbeConfig::Icmp(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Icmp),
            ProbeConfig::Diameter(c) => {
                c.build(path, issues).map(Box::new).map(ProbeSpec::Diameter)
            }
            ProbeConfig::Gtp(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Gtp),
            ProbeConfig::Radius(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Radius),
            ProbeConfig::Push(c) => c.build(path, issues).map(Box::new).map(ProbeSpec::Push),
        }
    }
}

/// A validated probe, ready to run. Every variant boxed: a topology holds one per target,
/// and an enum is as large as its largest variant.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Http(Box<http::HttpSpec>),
    Tcp(Box<tcp::TcpSpec>),
    Tls(Box<tls::TlsSpec>),
    Dns(Box<dns::DnsSpec>),
    Sip(Box<sip::SipSpec>),
    Imap(Box<imap::ImapSpec>),
    Smtp(Box<smtp::SmtpSpec>),
    Icmp(Box<icmp::IcmpSpec>),
    Diameter(Box<diameter::DiameterSpec>),
    Gtp(Box<gtp::GtpSpec>),
    Radius(Box<radius::RadiusSpec>),
    /// Results come from the field through the API; the scheduler never runs it.
    Push(Box<push::PushSpec>),
}

impl ProbeSpec {
    /// The host this probe reaches: a name, or an IP literal (IPv6 without brackets).
    pub fn host(&self) -> String {
        let without_port =
            |address: &str| address[..address.rfind(':').unwrap_or(address.len())].to_string();
        let host = match self {
            ProbeSpec::Http(s) => s.url.host_str().unwrap_or_default().to_string(),
            ProbeSpec::Tcp(s) => without_port(&s.address),
            ProbeSpec::Tls(s) => without_port(&s.address),
            ProbeSpec::Imap(s) => without_port(&s.address),
            ProbeSpec::Smtp(s) => without_port(&s.address),
            ProbeSpec::Diameter(s) => without_port(&s.address),
            ProbeSpec::Gtp(s) => without_port(&s.address),
            ProbeSpec::Radius(s) => without_port(&s.address),
            ProbeSpec::Dns(s) => s.server.ip().to_string(),
            ProbeSpec::Icmp(s) => s.host.clone(),
            ProbeSpec::Sip(s) => s.host.clone(),
            ProbeSpec::Push(_) => String::new(),
        };
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    }

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
            ProbeSpec::Push(_) => "push",
        }
    }

    /// The push probe's settings, for a target whose results are pushed to it.
    pub fn pushed(&self) -> Option<&PushSpec> {
        match self {
            ProbeSpec::Push(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// The credentials this probe sends, which its failure details must never show.
    fn secrets(&self) -> &sanitize::Secrets {
        static NONE: sanitize::Secrets = sanitize::Secrets::NONE;
        match self {
            ProbeSpec::Http(s) => &s.secrets,
            ProbeSpec::Imap(s) => &s.secrets,
            _ => &NONE,
        }
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
        let deadline = instant_after(start, timeout);
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
                // The scheduler leaves push targets out; `/probe` cannot name one.
                ProbeSpec::Push(_) => ProbeResult::failure(
                    Reason::Internal,
                    "a push target is not probed: its results are posted to it",
                    Duration::ZERO,
                ),
            }
        };
        let mut result =
            match tokio::time::timeout_at(instant_after(deadline, DEADLINE_GRACE), run).await {
                Ok(result) => result,
                Err(_) => ProbeResult::failure(
                    Reason::Timeout,
                    format!("no answer within {}", humantime::format_duration(timeout)),
                    start.elapsed(),
                ),
            };
        // Each quote of a peer is sanitized where it is made; this last pass holds the
        // published detail to the same rules whatever path built it (an error message
        // of a library, say).
        if let Some(failure) = &mut result.failure {
            failure.detail = sanitize::detail(&failure.detail, spec.secrets());
        }
        result
    }
}
