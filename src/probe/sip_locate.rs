//! RFC 3263 server location for the `sip` probe: a URI whose host is a domain name without
//! a port names a service, not a machine. NAPTR records pick the transports (when the URI
//! does not fix one), SRV records the servers and ports, A/AAAA records their addresses;
//! with no NAPTR the SRV names are tried directly, and with no SRV either, the domain's
//! own address and the default port (§4.2).
//!
//! All lookups go to one DNS server, `dns_server` or the first of /etc/resolv.conf, over
//! UDP, retransmitted like any probe datagram; an answer is bounded by a datagram. Only
//! domains of more than one label are located (`localhost` is resolved as a host).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use super::conn::{Step, fail};
use super::result::{Phases, Reason};
use super::udp::{self, Schedule, Verdict};

/// How SIP messages travel: what a URI or a NAPTR record chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub(super) fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// Candidates tried at most: a zone listing more servers than this is not a probe's to
/// walk through.
const MAX_CANDIDATES: usize = 8;

/// Where to send the requests: one server of the located service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The SRV target (or the domain itself), for the detail.
    pub host: String,
}

/// The first nameserver of /etc/resolv.conf, port 53.
pub fn system_dns_server() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

fn service_transport(services: &[u8]) -> Option<Transport> {
    match services.to_ascii_uppercase().as_slice() {
        b"SIP+D2U" => Some(Transport::Udp),
        b"SIP+D2T" => Some(Transport::Tcp),
        b"SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

fn srv_name(domain: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("_sip._udp.{domain}"),
        Transport::Tcp => format!("_sip._tcp.{domain}"),
        Transport::Tls => format!("_sips._tcp.{domain}"),
    }
}

/// The servers of `domain` in the order RFC 3263 has them tried. `transport` is the
/// URI's, when it names one; `secure` is a `sips:` URI (TLS only).
pub async fn locate(
    server: SocketAddr,
    domain: &str,
    transport: Option<Transport>,
    secure: bool,
    deadline: Instant,
) -> Step<Vec<Candidate>> {
    let allowed = |t: Transport| {
        transport.is_none_or(|wanted| wanted == t) && (!secure || t == Transport::Tls)
    };
    // §4.1: NAPTR, unless the URI fixes the transport.
    let mut services: Vec<(Transport, String)> = Vec::new();
    if transport.is_none() {
        let mut naptr: Vec<_> = query(server, domain, RecordType::NAPTR, deadline)
            .await?
            .into_iter()
            .filter_map(|data| match data {
                RData::NAPTR(n) if n.flags.eq_ignore_ascii_case(b"s") => {
                    let t = service_transport(&n.services)?;
                    Some((n.order, n.preference, t, n.replacement.to_ascii()))
                }
                _ => None,
            })
            .collect();
        naptr.sort_by_key(|(order, preference, ..)| (*order, *preference));
        services = naptr
            .into_iter()
            .filter(|(_, _, t, _)| allowed(*t))
            .map(|(_, _, t, name)| (t, name))
            .collect();
    }
    if services.is_empty() {
        let order = match (transport, secure) {
            (Some(t), _) => vec![t],
            (None, true) => vec![Transport::Tls],
            (None, false) => vec![Transport::Udp, Transport::Tcp, Transport::Tls],
        };
        services = order
            .into_iter()
            .map(|t| (t, srv_name(domain, t)))
            .collect();
    }
    let mut candidates = Vec::new();
    for (t, name) in services {
        let mut srv: Vec<_> = query(server, &name, RecordType::SRV, deadline)
            .await?
            .into_iter()
            .filter_map(|data| match data {
                RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
                _ => None,
            })
            .collect();
        // Lowest priority first; among equals, the heavier first (a probe wants a stable
        // order more than RFC 2782's weighted lottery).
        srv.sort_by_key(|(priority, weight, ..)| (*priority, std::cmp::Reverse(*weight)));
        for (_, _, port, target) in srv {
            // RFC 2782: a target of "." means the service is decidedly not available.
            if target == "." {
                continue;
            }
            for ip in addresses(server, &target, deadline).await? {
                candidates.push(Candidate {
                    transport: t,
                    addr: SocketAddr::new(ip, port),
                    host: target.trim_end_matches('.').to_string(),
                });
            }
        }
        if !candidates.is_empty() && transport.is_none() && !secure {
            // The first transport with servers is the one used (§4.1).
            break;
        }
    }
    if candidates.is_empty() {
        // §4.2: no SRV, the domain's own address with the transport's default port.
        let t = transport.unwrap_or(if secure {
            Transport::Tls
        } else {
            Transport::Udp
        });
        let port = if t == Transport::Tls { 5061 } else { 5060 };
        for ip in addresses(server, domain, deadline).await? {
            candidates.push(Candidate {
                transport: t,
                addr: SocketAddr::new(ip, port),
                host: domain.to_string(),
            });
        }
    }
    if candidates.is_empty() {
        return Err(fail(
            Reason::Dns,
            format!("{domain}: no NAPTR, SRV or address records"),
        ));
    }
    candidates.truncate(MAX_CANDIDATES);
    Ok(candidates)
}

async fn addresses(server: SocketAddr, name: &str, deadline: Instant) -> Step<Vec<IpAddr>> {
    let mut out = Vec::new();
    for kind in [RecordType::A, RecordType::AAAA] {
        for data in query(server, name, kind, deadline).await? {
            match data {
                RData::A(a) => out.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The answer records of one query; NXDOMAIN and an empty answer are both no records.
async fn query(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    deadline: Instant,
) -> Step<Vec<RData>> {
    let name = Name::from_str(name)
        .map_err(|e| fail(Reason::Dns, format!("`{name}` is not a domain name: {e}")))?;
    let id = fastrand::u16(..);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), kind));
    let bytes = message
        .to_vec()
        .map_err(|e| fail(Reason::Internal, format!("encoding a DNS query: {e}")))?;
    let mut phases = Phases::default();
    let socket = udp::connect(
        &server.to_string(),
        None,
        deadline,
        Instant::now(),
        &mut phases,
    )
    .await
    .map_err(|f| fail(Reason::Dns, format!("DNS server {server}: {}", f.detail)))?;
    let schedule = Schedule::Doubling {
        first: Duration::from_millis(500),
        cap: Duration::from_secs(2),
    };
    let answer = udp::transact(
        &socket,
        &bytes,
        schedule,
        deadline,
        &mut phases,
        "DNS answer",
        |datagram| match Message::from_vec(datagram) {
            Ok(m) if m.metadata.id == id && m.metadata.message_type == MessageType::Response => {
                Verdict::Ours(m)
            }
            Ok(_) => Verdict::Stray,
            Err(e) => Verdict::Garbage(format!("unparsable DNS answer: {e}")),
        },
    )
    .await
    .map_err(|f| fail(Reason::Dns, format!("{kind} {name}: {}", f.detail)))?;
    Ok(answer
        .answers
        .into_iter()
        .filter(|r| r.record_type() == kind)
        .map(|r| r.data)
        .collect())
}
