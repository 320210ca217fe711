//! What one probe run yields: a [`ProbeResult`] (ok, or a [`Failure`] with one [`Reason`]),
//! its latency and [`Phases`], and what a TLS handshake showed. The vocabulary every other
//! layer reads; nothing here does I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// Why a probe failed: a closed set, used as a metric label.
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
    pub tls: Option<TlsInfo>,
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
    /// the target is degraded , like a slow success.
    pub fn cert_expiring(&self) -> bool {
        self.is_ok() && self.tls.as_ref().is_some_and(|t| t.expiring)
    }

    /// A success the peer qualifies ([`ProbeResult::degraded`]): degraded too.
    pub fn peer_degraded(&self) -> bool {
        self.is_ok() && self.degraded.is_some()
    }
}

/// What a handshake showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsInfo {
    /// `TLS 1.2` or `TLS 1.3`, as blackbox's `probe_tls_version_info` spells it.
    pub version: &'static str,
    pub cipher: String,
    /// The earliest `notAfter` over the whole presented chain, not just the leaf.
    pub earliest_expiry: Timestamp,
    /// `earliest_expiry` falls within the probe's `cert_expiry_warning`.
    pub expiring: bool,
}
