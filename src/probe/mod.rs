//! Probes: one file per protocol behind a closed enum, like blackbox_exporter's `prober/`.
//!
//! Each protocol has a `*ProbeConfig` (what the TOML says, strict) that validates into a
//! `*Spec` (parsed URLs, compiled regexes), so a running probe can never hold an invalid
//! config. [`Prober`] holds what probes share at run time (HTTP clients) and runs a spec
//! against a deadline. A failed probe is a [`ProbeResult`] carrying one [`Reason`].

pub mod http;
pub mod tcp;

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
}

impl ProbeConfig {
    /// Validates into a runnable spec, recording every problem under `path`.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ProbeSpec> {
        match self {
            ProbeConfig::Http(c) => c
                .build(path, issues)
                .map(|spec| ProbeSpec::Http(Box::new(spec))),
            ProbeConfig::Tcp(c) => c.build(path, issues).map(ProbeSpec::Tcp),
        }
    }
}

/// A validated probe, ready to run.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    Http(Box<http::HttpSpec>),
    Tcp(tcp::TcpSpec),
}

impl ProbeSpec {
    /// The `probe` label value.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
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

/// Time spent in each phase, where the protocol has it.
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
        }
    }

    pub fn is_ok(&self) -> bool {
        self.failure.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// What probes share at run time.
#[derive(Debug, Clone)]
pub struct Prober {
    http: http::HttpClients,
}

/// Slack past the deadline before the outer guard cuts a probe that ignores its deadline.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

impl Prober {
    pub fn new() -> Result<Self, ProberError> {
        Ok(Self {
            http: http::HttpClients::new()?,
        })
    }

    /// Runs one probe. It returns by `timeout` (plus a small grace) whatever the peer does.
    pub async fn run(&self, spec: &ProbeSpec, timeout: Duration) -> ProbeResult {
        let start = Instant::now();
        let deadline = start + timeout;
        let run = async {
            match spec {
                ProbeSpec::Http(s) => http::run(&self.http, s, deadline).await,
                ProbeSpec::Tcp(s) => tcp::run(s, deadline).await,
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
