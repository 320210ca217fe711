//! What one probe run yields: a [`ProbeResult`] (ok, or a [`Failure`] with one [`Reason`]),
//! its latency and [`Phases`], and what a TLS handshake showed. The vocabulary every other
//! layer reads; nothing here does I/O.
//!
//! A failure may be *local* ([`LocalCause`]): this host could not make the attempt (out of
//! descriptors, memory or ports). That says nothing about the target, so it is a property
//! of the failure beside its reason, never a reason of its own: the engine gives no verdict
//! on it, and the reasons stay what they are, a closed set about targets.

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
    /// A push target's result did not arrive within `interval + grace`.
    MissedHeartbeat,
    /// A push probe reported a failure without naming a reason.
    Reported,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
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
        Reason::MissedHeartbeat,
        Reason::Reported,
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
            Reason::MissedHeartbeat => "missed_heartbeat",
            Reason::Reported => "reported",
        }
    }
}

/// Why this host, not the target, made a probe fail: a closed set, used as the `reason`
/// label of `tocsin_probe_local_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalCause {
    /// Out of file descriptors: `EMFILE` (this process) or `ENFILE` (the system).
    FileDescriptors,
    /// Out of kernel memory for sockets: `ENOBUFS`, `ENOMEM`.
    Memory,
    /// No local port or address to connect from: `EADDRNOTAVAIL` or `EAGAIN` on connect,
    /// `EADDRINUSE` binding an ephemeral port.
    Ports,
    /// The configured `source_address` is not an address of this host (`EADDRNOTAVAIL`
    /// binding it).
    SourceAddress,
}

/// The socket call an error came from: the same errno means different things in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketCall {
    /// `socket()`, and whatever opens descriptors without a peer (a resolver's sockets).
    Open,
    /// `bind()` to a source address (port 0: the kernel picks the port).
    Bind,
    /// `connect()`, which picks the ephemeral port when nothing was bound.
    Connect,
}

impl LocalCause {
    pub const ALL: [LocalCause; 4] = [
        LocalCause::FileDescriptors,
        LocalCause::Memory,
        LocalCause::Ports,
        LocalCause::SourceAddress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LocalCause::FileDescriptors => "fds",
            LocalCause::Memory => "memory",
            LocalCause::Ports => "ports",
            LocalCause::SourceAddress => "source_address",
        }
    }

    /// The local cause of `error` from `call`, if it is one; `None` for everything that
    /// may be the network's or the peer's doing.
    pub(crate) fn of(error: &std::io::Error, call: SocketCall) -> Option<LocalCause> {
        let errno = error.raw_os_error()?;
        match errno {
            libc::EMFILE | libc::ENFILE => Some(LocalCause::FileDescriptors),
            libc::ENOBUFS | libc::ENOMEM => Some(LocalCause::Memory),
            libc::EADDRNOTAVAIL if call == SocketCall::Bind => Some(LocalCause::SourceAddress),
            libc::EADDRNOTAVAIL | libc::EAGAIN if call == SocketCall::Connect => {
                Some(LocalCause::Ports)
            }
            libc::EADDRINUSE if call == SocketCall::Bind => Some(LocalCause::Ports),
            _ => None,
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
    /// Set when this host, not the target, failed the attempt: no verdict on the target.
    pub local: Option<LocalCause>,
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
                local: None,
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

    /// Why this host could not make the attempt, when that is why it failed.
    pub fn local(&self) -> Option<LocalCause> {
        self.failure.as_ref().and_then(|f| f.local)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn local_causes_are_the_hosts_errors_only() {
        use SocketCall::*;
        assert_eq!(
            LocalCause::of(&os(libc::EMFILE), Open),
            Some(LocalCause::FileDescriptors)
        );
        assert_eq!(
            LocalCause::of(&os(libc::ENFILE), Open),
            Some(LocalCause::FileDescriptors)
        );
        assert_eq!(
            LocalCause::of(&os(libc::ENOBUFS), Connect),
            Some(LocalCause::Memory)
        );
        assert_eq!(
            LocalCause::of(&os(libc::EADDRNOTAVAIL), Bind),
            Some(LocalCause::SourceAddress)
        );
        assert_eq!(
            LocalCause::of(&os(libc::EADDRNOTAVAIL), Connect),
            Some(LocalCause::Ports)
        );
        assert_eq!(
            LocalCause::of(&os(libc::EAGAIN), Connect),
            Some(LocalCause::Ports)
        );
        // What a peer or the network does is never local.
        for errno in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
        ] {
            assert_eq!(LocalCause::of(&os(errno), Connect), None, "{errno}");
        }
        assert_eq!(
            LocalCause::of(&std::io::Error::other("no os error"), Open),
            None
        );
    }
}
