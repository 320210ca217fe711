//! What the request/response probes over UDP share (`gtp`, `radius`): a socket connected to
//! the peer, and one transaction retransmitted on a schedule until an answer of ours comes,
//! the schedule ends or the deadline passes.
//!
//! The socket is connected, so the kernel drops datagrams from anyone but the peer and an
//! ICMP port unreachable comes back as `connect_refused`. A datagram that is not the
//! protocol is remembered: if nothing of ours follows, the peer is broken (`protocol`), not
//! away (`timeout`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::conn::{self, Step, fail};
use super::result::{Failure, Phases, Reason, SocketCall};

/// Largest datagram read; what UDP can carry, so nothing is cut.
const MAX_DATAGRAM: usize = 65_535;

/// When to send again.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Schedule {
    /// Every `interval`, `retransmissions` times, then wait one more `interval` (GTP's T3
    /// and N3).
    Fixed {
        interval: Duration,
        retransmissions: u32,
    },
    /// From `first`, doubling up to `cap`, until the deadline (RFC 3261 timer E, RFC 5080
    /// §2.2.1).
    Doubling { first: Duration, cap: Duration },
}

/// What a datagram from the peer is to the transaction.
pub(crate) enum Verdict<T> {
    /// The answer: the transaction is over.
    Ours(T),
    /// Well-formed, but not ours (another sequence number, a request of the peer's).
    Stray,
    /// Not the protocol; the text says why.
    Garbage(String),
}

/// Resolves `address` and connects a UDP socket to it, from `source` when given; records
/// the `dns` phase.
pub(crate) async fn connect(
    address: &str,
    source: Option<IpAddr>,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<UdpSocket> {
    let peer = conn::resolve(address, source, deadline).await?;
    phases.dns = Some(start.elapsed());
    connect_to(peer, source).await
}

/// A UDP socket connected to `peer`, bound to `source` when given.
pub(crate) async fn connect_to(peer: SocketAddr, source: Option<IpAddr>) -> Step<UdpSocket> {
    let local = match source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if peer.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
        None => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| {
        conn::socket_fail(
            Reason::Internal,
            format!("bind to {local}: {e}"),
            &e,
            SocketCall::Bind,
        )
    })?;
    socket.connect(peer).await.map_err(|e| {
        conn::socket_fail(
            Reason::ConnectRefused,
            format!("{peer}: {e}"),
            &e,
            SocketCall::Connect,
        )
    })?;
    Ok(socket)
}

/// Sends `request` on `schedule` and feeds every datagram to `judge` until it says ours.
/// Records `first_byte`, from the first send to the answer. `what` names the answer.
pub(crate) async fn transact<T>(
    socket: &UdpSocket,
    request: &[u8],
    schedule: Schedule,
    deadline: Instant,
    phases: &mut Phases,
    what: &str,
    mut judge: impl FnMut(&[u8]) -> Verdict<T>,
) -> Step<T> {
    let sent_at = Instant::now();
    send(socket, request).await?;
    let mut sends = 1u32;
    let (mut interval, mut last_send_due) = match schedule {
        Schedule::Fixed {
            interval,
            retransmissions,
        } => (interval, Some(retransmissions)),
        Schedule::Doubling { first, .. } => (first, None),
    };
    let mut next = sent_at + interval;
    let mut garbage: Option<String> = None;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let until = next.min(deadline);
        match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
            Err(_) => {
                let exhausted = last_send_due == Some(0);
                if until >= deadline || exhausted {
                    return Err(match garbage {
                        Some(g) => fail(Reason::Protocol, g),
                        None if exhausted => {
                            fail(Reason::Timeout, format!("no {what} to {sends} requests"))
                        }
                        None => fail(
                            Reason::Timeout,
                            format!("no {what} to {sends} requests before the deadline"),
                        ),
                    });
                }
                send(socket, request).await?;
                sends += 1;
                match schedule {
                    Schedule::Fixed { .. } => {
                        last_send_due = last_send_due.map(|n| n - 1);
                    }
                    Schedule::Doubling { cap, .. } => interval = (interval * 2).min(cap),
                }
                next += interval;
            }
            Ok(Err(e)) => return Err(transport_error(socket, &e)),
            Ok(Ok(n)) => match judge(&buf[..n]) {
                Verdict::Ours(answer) => {
                    phases.first_byte = Some(sent_at.elapsed());
                    return Ok(answer);
                }
                Verdict::Stray => {}
                Verdict::Garbage(why) => garbage = Some(why),
            },
        }
    }
}

async fn send(socket: &UdpSocket, request: &[u8]) -> Step<()> {
    match socket.send(request).await {
        Ok(_) => Ok(()),
        Err(e) => Err(transport_error(socket, &e)),
    }
}

fn transport_error(socket: &UdpSocket, error: &std::io::Error) -> Failure {
    let peer = socket
        .peer_addr()
        .map_or_else(|_| "the peer".to_string(), |p| p.to_string());
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => fail(
            Reason::ConnectRefused,
            format!("{peer}: port unreachable ({error})"),
        ),
        _ => fail(Reason::Protocol, format!("{peer}: {error}")),
    }
}
