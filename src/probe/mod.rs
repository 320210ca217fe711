//! Probes: one file per protocol behind a closed enum, like blackbox_exporter's `prober/`.
//!
//! Each protocol has a `*ProbeConfig` (what the TOML says, strict) that validates into a
//! `*Spec` (parsed URLs, compiled regexes), so a running probe can never hold an invalid
//! config. [`Prober`] holds what probes share at run time (TLS client settings) and runs a
//! spec against a deadline. A failed probe is a [`ProbeResult`] carrying one [`Reason`].

pub mod adhoc;
mod conn;
mod dns;
mod http;
mod icmp;
mod imap;
pub mod module;
mod result;
mod sip;
mod smtp;
mod tcp;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

pub(crate) use http::{LOOP_HEADER, loop_marker};
pub use result::{Failure, LocalCause, Phases, ProbeResult, Reason, TlsInfo};

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
}

impl ProbeConfig {
    /// The files this probe reads (`ca_file`, `password_file`), so that relative ones can
    /// be taken from the configuration file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            ProbeConfig::Http(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Tls(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Sip(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Smtp(c) => c.ca_file.iter_mut().collect(),
            ProbeConfig::Imap(c) => c.ca_file.iter_mut().chain([&mut c.password_file]).collect(),
            ProbeConfig::Tcp(_) | ProbeConfig::Dns(_) | ProbeConfig::Icmp(_) => Vec::new(),
        }
    }

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
}

impl ProbeSpec {
    /// The host this probe reaches: a name, or an IP literal (IPv6 without brackets).
    pub fn host(&self) -> String {
        let without_port =
            |address: &str| address[..address.rfind(':').unwrap_or(address.len())].to_string();
        let host = match self {
            ProbeSpec::Http(s) => s.url.host_str().unwrap_or_default().to_string(),
            ProbeSpec::Tcp(tcp::TcpSpec { address, .. })
            | ProbeSpec::Tls(tls::TlsSpec { address, .. })
            | ProbeSpec::Imap(imap::ImapSpec { address, .. })
            | ProbeSpec::Smtp(smtp::SmtpSpec { address, .. }) => without_port(address),
            ProbeSpec::Dns(s) => s.server.ip().to_string(),
            ProbeSpec::Icmp(s) => s.host.clone(),
            ProbeSpec::Sip(s) => s.host.clone(),
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
        let deadline = start + timeout;
        let run = async {
            match spec {
                ProbeSpec::Http(s) => http::run(&self.tls, s, deadline).await,
                ProbeSpec::Tcp(s) => tcp::run(s, deadline).await,
                ProbeSpec::Tls(s) => tls::run(&self.tls, s, deadline).await,
                ProbeSpec::Dns(s) => dns::run(s, deadline).await,
                ProbeSpec::Sip(s) => sip::run(&self.tls, s, deadline).await,
                ProbeSpec::Imap(s) => imap::run(&self.tls, s, deadline).await,
                ProbeSpec::Smtp(s) => smtp::run(&self.tls, s, deadline).await,
                ProbeSpec::Icmp(s) => icmp::run(s, deadline).await,
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
