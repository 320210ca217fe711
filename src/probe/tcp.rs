//! `tcp` probe: connect, optionally TLS, optionally send a line and wait for an expected
//! answer (inside TLS when there is TLS).

use std::net::IpAddr;
use std::path::PathBuf;

use regex::bytes::Regex;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::conn::{self, DEFAULT_MAX_READ_BYTES};
use super::result::{Phases, ProbeResult, Reason};
use super::sanitize::excerpt;
use super::tls::{self, TlsClients, Trust};
use crate::validation::{Issues, regex_error};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeConfig {
    /// `host:port`; IPv6 literals in brackets (`[::1]:5060`).
    pub address: String,
    /// Bytes to send once connected (TOML escapes such as `\r\n` apply).
    #[serde(default)]
    pub send: Option<String>,
    /// The peer's answer must match this regular expression before the deadline.
    #[serde(default)]
    pub expect_regex: Option<String>,
    /// Local IP to connect from.
    #[serde(default)]
    pub source_address: Option<String>,
    /// TLS handshake after connect; `send` and `expect_regex` then go through TLS.
    #[serde(default)]
    pub tls: bool,
    /// Server name for the handshake (with `tls`); default the host of `address`.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM file of the CAs to trust instead of the system's (with `tls`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (with `tls`; lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
}

#[derive(Debug, Clone)]
pub struct TcpSpec {
    pub address: String,
    pub send: Option<Vec<u8>>,
    pub expect: Option<Regex>,
    pub source_address: Option<IpAddr>,
    /// Server name and trust; set with `tls`.
    pub tls: Option<(ServerName<'static>, Trust)>,
}

impl TcpProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<TcpSpec> {
        let before = issues.len();
        if let Err(message) = conn::check_host_port(&self.address) {
            issues.push(format!("{path}.address"), message);
        }
        let expect = self
            .expect_regex
            .as_ref()
            .and_then(|r| match Regex::new(r) {
                Ok(re) => Some(re),
                Err(e) => {
                    issues.push(format!("{path}.expect_regex"), regex_error(&e));
                    None
                }
            });
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        let tls = if self.tls {
            let host = self.address.rsplit_once(':').map(|(host, _)| host);
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
            let trust = tls::trust(self.ca_file.as_deref(), self.tls_insecure, path, issues);
            name.zip(trust)
        } else {
            if self.sni.is_some() || self.ca_file.is_some() || self.tls_insecure {
                issues.push(
                    path.to_string(),
                    "`sni`, `ca_file` and `tls_insecure` need tls = true",
                );
            }
            None
        };
        if issues.len() > before {
            return None;
        }
        Some(TcpSpec {
            address: self.address.clone(),
            send: self.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect,
            source_address,
            tls,
        })
    }
}

pub async fn run(clients: &TlsClients, spec: &TcpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();

    let addr = match conn::resolve(&spec.address, spec.source_address, deadline).await {
        Ok(addr) => addr,
        Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
    };
    phases.dns = Some(start.elapsed());

    let connect_start = Instant::now();
    let stream = match conn::connect(addr, spec.source_address, deadline).await {
        Ok(stream) => stream,
        Err(f) => return ProbeResult::failed(f, start.elapsed(), phases),
    };
    phases.connect = Some(connect_start.elapsed());
    let Some((name, trust)) = &spec.tls else {
        return converse(stream, spec, deadline, start, phases).await;
    };
    let tls_start = Instant::now();
    let config = clients.config(trust, false);
    match tls::handshake(config, name.clone(), stream, None, deadline).await {
        Ok((stream, info)) => {
            phases.tls = Some(tls_start.elapsed());
            let mut result = converse(stream, spec, deadline, start, phases).await;
            result.tls = Some(info);
            result
        }
        Err(f) => ProbeResult::failed(f, start.elapsed(), phases),
    }
}

/// `send`, then `expect_regex`, over the connection (plain or TLS).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    spec: &TcpSpec,
    deadline: Instant,
    start: Instant,
    mut phases: Phases,
) -> ProbeResult {
    let connected = Instant::now();
    if let Some(payload) = &spec.send {
        // Flushed too: TLS holds written bytes until then.
        let write = async {
            stream.write_all(payload).await?;
            stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Err(_) => {
                return ProbeResult::failure(Reason::Timeout, "send timed out", start.elapsed());
            }
            Ok(Err(e)) => {
                return ProbeResult::failure(
                    Reason::Protocol,
                    format!("send: {e}"),
                    start.elapsed(),
                );
            }
            Ok(Ok(())) => {}
        }
    }

    if let Some(expect) = &spec.expect {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut first_byte = None;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                // Something came but not what was expected: that is the answer (a 400 to a
                // request, a wrong banner), not a timeout.
                Err(_) if !received.is_empty() => {
                    return ProbeResult::failure(
                        Reason::Assertion,
                        format!(
                            "expected /{expect}/ not seen before the deadline{}",
                            received_so_far(&received)
                        ),
                        start.elapsed(),
                    );
                }
                Err(_) => {
                    return ProbeResult::failure(
                        Reason::Timeout,
                        format!("nothing received before the deadline (expected /{expect}/)"),
                        start.elapsed(),
                    );
                }
                Ok(Err(e)) => {
                    return ProbeResult::failure(
                        Reason::Protocol,
                        format!("read: {e}"),
                        start.elapsed(),
                    );
                }
                Ok(Ok(0)) => {
                    return ProbeResult::failure(
                        Reason::Assertion,
                        format!(
                            "connection closed before /{expect}/ was seen{}",
                            received_so_far(&received)
                        ),
                        start.elapsed(),
                    );
                }
                Ok(Ok(n)) => {
                    first_byte.get_or_insert_with(|| connected.elapsed());
                    received.extend_from_slice(&chunk[..n]);
                    if expect.is_match(&received) {
                        break;
                    }
                    if received.len() as u64 > DEFAULT_MAX_READ_BYTES {
                        return ProbeResult::failure(
                            Reason::Assertion,
                            format!(
                                "read {DEFAULT_MAX_READ_BYTES} bytes without /{expect}/{}",
                                received_so_far(&received)
                            ),
                            start.elapsed(),
                        );
                    }
                }
            }
        }
        phases.first_byte = first_byte;
    }
    let total = start.elapsed();
    phases.total = Some(total);
    ProbeResult::success(total, phases)
}

/// What the peer did say, for an operator wondering why the answer did not match.
fn received_so_far(received: &[u8]) -> String {
    if received.is_empty() {
        " (nothing received)".to_string()
    } else {
        format!(" (received `{}`)", excerpt(received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_received_is_quoted_sanitized() {
        assert_eq!(received_so_far(b""), " (nothing received)");
        let quoted = received_so_far(format!("-ERR\r\n{}", "z".repeat(900)).as_bytes());
        assert!(quoted.starts_with(" (received `-ERR  zzz"), "{quoted}");
        assert!(quoted.chars().count() < 230, "{quoted}");
    }
}
