//! What the connection-based probes share: resolving and connecting from an optional source
//! address, and a line reader that bounds both line length and total bytes, so a hostile
//! peer costs at most the deadline and a fixed amount of memory. Every step fails with a
//! [`Failure`] already classified, local ([`LocalCause`]) when the host could not make the
//! attempt.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::result::{Failure, LocalCause, Phases, ProbeResult, Reason, SocketCall, TlsInfo};
use crate::validation::Issues;

/// Most bytes a probe reads from a peer unless configured otherwise: more is a failure,
/// not an allocation.
pub(crate) const DEFAULT_MAX_READ_BYTES: u64 = 1024 * 1024;

/// One step of a probe session: its value, or the classified failure that ends the probe.
pub(crate) type Step<T> = Result<T, Failure>;

pub(crate) fn fail(reason: Reason, detail: impl Into<String>) -> Failure {
    Failure {
        reason,
        detail: detail.into(),
        local: None,
    }
}

/// A failed socket call: local when the error is this host's ([`LocalCause::of`]), else
/// `reason`.
pub(crate) fn socket_fail(
    reason: Reason,
    detail: impl Into<String>,
    error: &std::io::Error,
    call: SocketCall,
) -> Failure {
    let local = LocalCause::of(error, call);
    Failure {
        reason: if local.is_some() {
            Reason::Internal
        } else {
            reason
        },
        detail: detail.into(),
        local,
    }
}

/// Longest line accepted from a peer. Real greetings and capability lists are far shorter;
/// a longer line is a broken or hostile peer, not something to buffer.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Checks `host:port` syntax without resolving anything.
pub(crate) fn check_host_port(address: &str) -> Result<(), String> {
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

/// Validates the optional `source_address` key: a local IP literal, no port.
pub(crate) fn source_address(
    value: Option<&str>,
    path: &str,
    issues: &mut Issues,
) -> Option<IpAddr> {
    let value = value?;
    match value.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            issues.push(
                format!("{path}.source_address"),
                format!("`{value}` is not an IP address"),
            );
            None
        }
    }
}

/// Resolves `host:port`, preferring an address of the source address's family (a socket
/// bound to an IPv4 address cannot reach an IPv6 peer).
pub(crate) async fn resolve(
    address: &str,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Step<SocketAddr> {
    let addrs = match tokio::time::timeout_at(deadline, tokio::net::lookup_host(address)).await {
        Err(_) => return Err(fail(Reason::Dns, format!("resolving {address} timed out"))),
        // The resolver opens sockets and files too: out of descriptors, it fails locally.
        Ok(Err(e)) => {
            return Err(socket_fail(
                Reason::Dns,
                format!("{address}: {e}"),
                &e,
                SocketCall::Open,
            ));
        }
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
    };
    let wanted = |a: &&SocketAddr| source.is_none_or(|s| s.is_ipv4() == a.is_ipv4());
    match addrs.iter().find(wanted).or(addrs.first()) {
        Some(addr) => Ok(*addr),
        None => Err(fail(Reason::Dns, format!("{address}: no address"))),
    }
}

/// Connects over TCP, from `source` when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    deadline: Instant,
) -> Step<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let socket = socket.map_err(|e| {
        socket_fail(
            Reason::Internal,
            format!("socket: {e}"),
            &e,
            SocketCall::Open,
        )
    })?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
            socket_fail(
                Reason::Internal,
                format!("bind to {ip}: {e}"),
                &e,
                SocketCall::Bind,
            )
        })?;
    }
    match tokio::time::timeout_at(deadline, socket.connect(addr)).await {
        Err(_) => Err(fail(
            Reason::ConnectTimeout,
            format!("connect to {addr} timed out"),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(fail(Reason::ConnectTimeout, format!("{addr}: {e}")))
        }
        Ok(Err(e)) => Err(socket_fail(
            Reason::ConnectRefused,
            format!("{addr}: {e}"),
            &e,
            SocketCall::Connect,
        )),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// A line-oriented session over any stream: reads lines of at most [`MAX_LINE_BYTES`] and
/// at most [`DEFAULT_MAX_READ_BYTES`] in all, each wait bounded by the deadline.
pub(crate) struct Lines<S> {
    stream: S,
    pending: Vec<u8>,
    read: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Lines<S> {
    pub(crate) fn new(stream: S) -> Self {
        Self {
            stream,
            pending: Vec::new(),
            read: 0,
        }
    }

    /// The next line without its CRLF (or bare LF). `waiting_for` names what the line
    /// should be, for the failure detail.
    pub(crate) async fn line(&mut self, deadline: Instant, waiting_for: &str) -> Step<Vec<u8>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.pending.len() > MAX_LINE_BYTES {
                return Err(fail(
                    Reason::Protocol,
                    format!(
                        "a line longer than {MAX_LINE_BYTES} bytes while waiting for {waiting_for}"
                    ),
                ));
            }
            self.fill(deadline, waiting_for).await?;
        }
    }

    /// Reads and discards exactly `n` bytes (a message body nobody needs).
    pub(crate) async fn skip(&mut self, mut n: u64, deadline: Instant, what: &str) -> Step<()> {
        loop {
            let here = n.min(self.pending.len() as u64) as usize;
            self.pending.drain(..here);
            n -= here as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill(deadline, what).await?;
        }
    }

    async fn fill(&mut self, deadline: Instant, waiting_for: &str) -> Step<()> {
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => {
                return Err(fail(
                    Reason::Timeout,
                    format!(
                        "no complete answer before the deadline while waiting for {waiting_for}"
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(fail(
                    Reason::Protocol,
                    format!("read while waiting for {waiting_for}: {e}"),
                ));
            }
            Ok(Ok(0)) => {
                return Err(fail(
                    Reason::Protocol,
                    format!("connection closed while waiting for {waiting_for}"),
                ));
            }
            Ok(Ok(n)) => n,
        };
        self.read += n as u64;
        if self.read > DEFAULT_MAX_READ_BYTES {
            return Err(fail(
                Reason::Protocol,
                format!(
                    "read more than {DEFAULT_MAX_READ_BYTES} bytes while waiting for {waiting_for}"
                ),
            ));
        }
        self.pending.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Writes `bytes` in full before the deadline.
    pub(crate) async fn send(&mut self, bytes: &[u8], deadline: Instant, what: &str) -> Step<()> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Err(_) => Err(fail(Reason::Timeout, format!("sending {what} timed out"))),
            Ok(Err(e)) => Err(fail(Reason::Protocol, format!("sending {what}: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The stream, for a TLS upgrade. Bytes the peer sent ahead of the handshake would be
    /// taken as protected when they were not (the STARTTLS injection of CVE-2011-0411), so
    /// they fail the probe.
    pub(crate) fn into_stream_for_tls(self) -> Step<S> {
        if self.pending.is_empty() {
            Ok(self.stream)
        } else {
            Err(fail(
                Reason::Protocol,
                "the server sent data before the TLS handshake",
            ))
        }
    }

    /// Closes the write side; a peer slow to acknowledge does not hold the probe.
    pub(crate) async fn shutdown(mut self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline, self.stream.shutdown()).await;
    }
}

/// Resolves and connects, recording the `dns` and `connect` phases (measured from `start`
/// and from the connect attempt).
pub(crate) async fn open(
    address: &str,
    source: Option<IpAddr>,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<TcpStream> {
    let peer = resolve(address, source, deadline).await?;
    phases.dns = Some(start.elapsed());
    let connect_start = Instant::now();
    let stream = connect(peer, source, deadline).await?;
    phases.connect = Some(connect_start.elapsed());
    Ok(stream)
}

/// The result of a session-style probe that ran from `start`: `total` is recorded on
/// success; a failure keeps the phases it completed.
pub(crate) fn finish(
    start: Instant,
    outcome: Step<()>,
    mut phases: Phases,
    tls_info: Option<TlsInfo>,
) -> ProbeResult {
    let total = start.elapsed();
    let mut result = match outcome {
        Ok(()) => {
            phases.total = Some(total);
            ProbeResult::success(total, phases)
        }
        Err(failure) => ProbeResult::failed(failure, total, phases),
    };
    result.tls = tls_info;
    result
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
