//! `icmp` probe: echo request, echo reply. The socket is an unprivileged ping socket
//! (`SOCK_DGRAM`, allowed by `net.ipv4.ping_group_range`) when the kernel grants one, a raw
//! socket (CAP_NET_RAW) otherwise; surge-ping picks between them.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};
use tokio::time::Instant;

use super::conn;
use super::result::{Phases, ProbeResult, Reason, SocketCall};
use crate::validation::Issues;

/// Echo payload: small, and recognisable in a packet capture.
const PAYLOAD: &[u8] = b"tocsin icmp probe";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpProbeConfig {
    /// Host name or IP address (no port).
    pub host: String,
    /// Echo requests sent at most, one after the other, each allowed an equal share of the
    /// time left; the first reply ends the probe successfully.
    #[serde(default = "default_count")]
    pub count: u16,
    /// Local IP to send from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
}

fn default_count() -> u16 {
    1
}

/// A validated ICMP probe.
#[derive(Debug, Clone)]
pub struct IcmpSpec {
    pub host: String,
    pub count: u16,
    pub source_address: Option<IpAddr>,
}

impl IcmpProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<IcmpSpec> {
        let before = issues.len();
        let name_like = !self.host.is_empty()
            && self
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if self.host.parse::<IpAddr>().is_err() && !name_like {
            issues.push(
                format!("{path}.host"),
                format!(
                    "`{}` is not a host name or IP address",
                    self.host.escape_debug()
                ),
            );
        }
        if self.count == 0 {
            issues.push(format!("{path}.count"), "must be at least 1");
        }
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        if issues.len() > before {
            return None;
        }
        Some(IcmpSpec {
            host: self.host.clone(),
            count: self.count,
            source_address,
        })
    }
}

pub async fn run(spec: &IcmpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();

    let target = match spec.host.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            let address = format!("{}:0", spec.host);
            match conn::resolve(&address, spec.source_address, deadline).await {
                Ok(addr) => addr.ip(),
                Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
            }
        }
    };
    phases.dns = Some(start.elapsed());

    let setup_start = Instant::now();
    let mut config = Config::builder().kind(if target.is_ipv4() { ICMP::V4 } else { ICMP::V6 });
    if let Some(ip) = spec.source_address {
        config = config.bind(SocketAddr::new(ip, 0));
    }
    let client = match Client::new(&config.build()) {
        Ok(client) => client,
        Err(e) => {
            let call = match spec.source_address {
                Some(_) => SocketCall::Bind,
                None => SocketCall::Open,
            };
            let failure = conn::socket_fail(Reason::Internal, socket_error(&e), &e, call);
            return ProbeResult::failed(failure, start.elapsed(), phases);
        }
    };
    phases.connect = Some(setup_start.elapsed());

    let mut pinger = client
        .pinger(target, PingIdentifier(fastrand::u16(..)))
        .await;
    for seq in 0..spec.count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        pinger.timeout(left / u32::from(spec.count - seq));
        match pinger.ping(PingSequence(seq), PAYLOAD).await {
            Ok((_, rtt)) => {
                phases.rtt = Some(rtt);
                let total = start.elapsed();
                phases.total = Some(total);
                return ProbeResult::success(total, phases);
            }
            Err(SurgeError::Timeout { .. }) => {}
            Err(SurgeError::IOError(e)) => {
                let failure = conn::socket_fail(
                    Reason::ConnectRefused,
                    format!("echo request to {target}: {e}"),
                    &e,
                    SocketCall::Open,
                );
                return ProbeResult::failed(failure, start.elapsed(), Phases::default());
            }
            Err(e) => {
                return ProbeResult::failure(
                    Reason::Internal,
                    format!("echo request to {target}: {e}"),
                    start.elapsed(),
                );
            }
        }
    }
    ProbeResult::failure(
        Reason::Timeout,
        format!(
            "no echo reply from {target} to {} request(s) before the deadline",
            spec.count
        ),
        start.elapsed(),
    )
}

/// The operator's two ways out when the kernel refuses both kinds of ICMP socket.
fn socket_error(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        "cannot open an ICMP socket: allow unprivileged ping sockets for tocsin's group \
         (sysctl net.ipv4.ping_group_range, e.g. \"0 2147483647\") or grant CAP_NET_RAW \
         (AmbientCapabilities=CAP_NET_RAW in the systemd unit)"
            .to_string()
    } else {
        format!("cannot open an ICMP socket: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_error_names_both_remedies() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = socket_error(&e);
        assert!(
            text.contains("ping_group_range") && text.contains("CAP_NET_RAW"),
            "{text}"
        );
    }
}
