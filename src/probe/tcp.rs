//! `tcp` probe: connect, optionally TLS, optionally send a line and wait for an expected
//! answer (inside TLS when there is TLS).

use std::net::IpAddr;
use std::path::PathBuf;

use regex::bytes::Regex;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::tls::{self, TlsClients, Trust};
use super::{DEFAULT_MAX_READ_BYTES, Phases, ProbeResult, Reason, conn, regex_error};
use crate::config::Issues;

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
        if let Err(message) = check_host_port(&self.address) {
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
            let trust = conn::trust(self.ca_file.as_deref(), self.tls_insecure, path, issues);
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

/// Checks `host:port` syntax without resolving anything.
pub fn check_host_port(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` is not host:port"));
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("`{address}` has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("`{address}`: put IPv6 addresses in brackets"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{address}` has no valid port")),
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
                Err(_) => {
                    return ProbeResult::failure(
                        Reason::Timeout,
                        format!("expected /{expect}/ not seen before the deadline"),
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
                        format!("connection closed before /{expect}/ was seen"),
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
                            format!("read {DEFAULT_MAX_READ_BYTES} bytes without /{expect}/"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_syntax() {
        assert!(check_host_port("vm-a.example.net:993").is_ok());
        assert!(check_host_port("[::1]:5060").is_ok());
        assert!(check_host_port("::1:5060").is_err());
        assert!(check_host_port("example.net").is_err());
        assert!(check_host_port("example.net:0").is_err());
        assert!(check_host_port(":80").is_err());
    }
}
