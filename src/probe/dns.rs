//! `dns` probe: one query to a chosen server over UDP or TCP, then rcode and answer checks.
//!
//! The transport is ours (hickory-proto only encodes and decodes), so the deadline, the
//! `source_address` and the difference between "no answer" (`timeout`) and "an answer that
//! is not DNS" (`protocol`) stay exact. Phases: `connect` (TCP only), `first_byte` from the
//! query sent to the answer read (blackbox's `request`), `total`. The server is an address,
//! so there is no `dns` phase.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use regex::Regex;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::conn::{self, fail};
use super::result::{Failure, Phases, ProbeResult, Reason, SocketCall};
use super::sanitize::excerpt;
use crate::validation::{Issues, regex_error};

/// Response codes by their RFC names (RFC 1035, RFC 2136), for `valid_rcodes` and details.
const RCODES: [(&str, u16); 11] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
];

/// Largest DNS message over UDP; what a datagram can carry, so nothing is cut.
const MAX_UDP_MESSAGE: usize = 65_535;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsProbeConfig {
    /// The resolver or authoritative server to ask, `ip:port` (`[::1]:53` for IPv6).
    pub server: String,
    /// The name to look up.
    pub name: String,
    /// `A` (default), `AAAA`, `MX`, `SOA`, `TXT`, …
    #[serde(default)]
    pub record_type: Option<String>,
    /// `udp` (default) or `tcp`.
    #[serde(default)]
    pub transport: Transport,
    /// Accepted response codes by name; default `["NOERROR"]`.
    #[serde(default)]
    pub valid_rcodes: Vec<String>,
    /// At least one answer record, in zone-file form (`name TTL IN A 192.0.2.1`), must match.
    #[serde(default)]
    pub answer_regex: Option<String>,
    /// Local IP to send from.
    #[serde(default)]
    pub source_address: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DnsSpec {
    pub server: SocketAddr,
    pub name: Name,
    pub record_type: RecordType,
    pub transport: Transport,
    pub valid_rcodes: Vec<u16>,
    pub answer_regex: Option<Regex>,
    pub source_address: Option<IpAddr>,
}

impl DnsProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<DnsSpec> {
        let before = issues.len();
        let server = self.server.parse::<SocketAddr>().ok().or_else(|| {
            issues.push(
                format!("{path}.server"),
                format!("`{}` is not ip:port", self.server),
            );
            None
        });
        let name = match Name::from_utf8(&self.name) {
            Ok(name) if !self.name.is_empty() => Some(name),
            Ok(_) => {
                issues.push(format!("{path}.name"), "must not be empty");
                None
            }
            Err(e) => {
                issues.push(format!("{path}.name"), format!("`{}`: {e}", self.name));
                None
            }
        };
        let type_name = self.record_type.as_deref().unwrap_or("A");
        let record_type = RecordType::from_str(&type_name.to_ascii_uppercase())
            .ok()
            .or_else(|| {
                issues.push(
                    format!("{path}.record_type"),
                    format!("unknown record type `{type_name}`"),
                );
                None
            });
        let mut valid_rcodes = Vec::new();
        for (i, rcode) in self.valid_rcodes.iter().enumerate() {
            match RCODES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(rcode))
            {
                Some((_, code)) => valid_rcodes.push(*code),
                None => issues.push(
                    format!("{path}.valid_rcodes[{i}]"),
                    format!("unknown response code `{rcode}` (NOERROR, NXDOMAIN, SERVFAIL, …)"),
                ),
            }
        }
        if valid_rcodes.is_empty() {
            valid_rcodes.push(0);
        }
        let answer_regex = self
            .answer_regex
            .as_ref()
            .and_then(|r| match Regex::new(r) {
                Ok(re) => Some(re),
                Err(e) => {
                    issues.push(format!("{path}.answer_regex"), regex_error(&e));
                    None
                }
            });
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        if let (Some(server), Some(source)) = (server, source_address)
            && server.is_ipv4() != source.is_ipv4()
        {
            issues.push(
                format!("{path}.source_address"),
                format!("{source} cannot reach {server}: not the same address family"),
            );
        }
        if issues.len() > before {
            return None;
        }
        Some(DnsSpec {
            server: server?,
            name: name?,
            record_type: record_type?,
            transport: self.transport,
            valid_rcodes,
            answer_regex,
            source_address,
        })
    }
}

fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("rcode {code}"), |(name, _)| name.to_string())
}

pub async fn run(spec: &DnsSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let outcome = ask(spec, deadline, &mut phases)
        .await
        .and_then(|answer| check_answer(spec, &answer));
    let total = start.elapsed();
    phases.total = Some(total);
    match outcome {
        Ok(()) => ProbeResult::success(total, phases),
        Err(failure) => ProbeResult::failed(failure, total, phases),
    }
}

/// Sends the query and returns the server's answer to it: over UDP, then over TCP when
/// the UDP answer came truncated (RFC 7766 §5), both within the one deadline.
async fn ask(spec: &DnsSpec, deadline: Instant, phases: &mut Phases) -> Result<Message, Failure> {
    let id = fastrand::u16(..);
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(spec.name.clone(), spec.record_type));
    let query = query
        .to_vec()
        .map_err(|e| fail(Reason::Internal, format!("encoding the query: {e}")))?;
    if spec.transport == Transport::Udp
        && let Some(answer) = over_udp(spec, &query, id, deadline, phases).await?
    {
        return Ok(answer);
    }
    over_tcp(spec, &query, id, deadline, phases).await
}

/// What a message from the server is to our query.
#[derive(Debug)]
pub enum Verdict {
    /// The answer to our question.
    Answer(Box<Message>),
    /// The answer to our question, cut to fit a datagram (TC=1): ask again over TCP.
    Truncated,
    /// Another id: a late answer to an earlier query, or a spoofed one.
    NotOurs,
}

/// Checks one message from the server against our query (`id`, and the spec's question).
/// Another id is [`Verdict::NotOurs`]; a message that is not DNS, not a response, or for
/// another question (name, type or class; the name in any case, since a server may keep
/// or change the case of the name asked, as 0x20 randomization relies on) is `protocol`.
/// The parser entry point of the `dns` fuzz target.
pub fn classify(spec: &DnsSpec, id: u16, bytes: &[u8]) -> Result<Verdict, Failure> {
    let message = Message::from_vec(bytes).map_err(|e| {
        fail(
            Reason::Protocol,
            format!("unparsable answer: {}", excerpt(e.to_string().as_bytes())),
        )
    })?;
    let meta = &message.metadata;
    if meta.id != id {
        return Ok(Verdict::NotOurs);
    }
    if meta.message_type != MessageType::Response || meta.op_code != OpCode::Query {
        return Err(fail(
            Reason::Protocol,
            "the answer is not a response to a query",
        ));
    }
    let mut name = spec.name.clone();
    name.set_fqdn(true);
    let ours = |q: &Query| {
        q.name() == &name && q.query_type() == spec.record_type && q.query_class() == DNSClass::IN
    };
    // A server refusing a query it cannot parse may leave the question out (FORMERR).
    let question_ok = match message.queries.as_slice() {
        [q] => ours(q),
        [] => meta.response_code != ResponseCode::NoError,
        _ => false,
    };
    if !question_ok {
        let asked: Vec<String> = message
            .queries
            .iter()
            .map(|q| format!("{} {} {}", q.name(), q.query_class(), q.query_type()))
            .collect();
        return Err(fail(
            Reason::Protocol,
            format!(
                "the answer is for another question (`{}`), not {name} IN {}",
                excerpt(asked.join(", ").as_bytes()),
                spec.record_type
            ),
        ));
    }
    if meta.truncation {
        return Ok(Verdict::Truncated);
    }
    Ok(Verdict::Answer(Box::new(message)))
}

/// One datagram out; the first datagram back with the query's id decides: the answer,
/// `None` when it came truncated, or a failure. Datagrams with other ids are skipped.
async fn over_udp(
    spec: &DnsSpec,
    query: &[u8],
    id: u16,
    deadline: Instant,
    phases: &mut Phases,
) -> Result<Option<Message>, Failure> {
    let local = match (spec.source_address, spec.server) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        (None, SocketAddr::V6(_)) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| {
        conn::socket_fail(
            Reason::Internal,
            format!("cannot bind {local}: {e}"),
            &e,
            SocketCall::Bind,
        )
    })?;
    socket.connect(spec.server).await.map_err(|e| {
        conn::socket_fail(
            Reason::Internal,
            format!("{}: {e}", spec.server),
            &e,
            SocketCall::Connect,
        )
    })?;
    let sent = Instant::now();
    socket
        .send(query)
        .await
        .map_err(|e| fail(Reason::Internal, format!("send to {}: {e}", spec.server)))?;
    let mut buf = vec![0u8; MAX_UDP_MESSAGE];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => {
                return Err(fail(
                    Reason::Timeout,
                    format!("no answer from {} before the deadline", spec.server),
                ));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(fail(
                    Reason::ConnectRefused,
                    format!("{}: {e}", spec.server),
                ));
            }
            Ok(Err(e)) => return Err(fail(Reason::Protocol, format!("receive: {e}"))),
            Ok(Ok(n)) => n,
        };
        match classify(spec, id, &buf[..n])? {
            Verdict::NotOurs => continue,
            Verdict::Truncated => return Ok(None),
            Verdict::Answer(message) => {
                phases.first_byte = Some(sent.elapsed());
                return Ok(Some(*message));
            }
        }
    }
}

/// RFC 1035 §4.2.2: each message prefixed with its two-byte length, which also bounds it.
/// One query per connection, so any other id is a broken server, not a late answer.
async fn over_tcp(
    spec: &DnsSpec,
    query: &[u8],
    id: u16,
    deadline: Instant,
    phases: &mut Phases,
) -> Result<Message, Failure> {
    let step = Instant::now();
    let mut stream = conn::connect(spec.server, spec.source_address, deadline).await?;
    phases.connect = Some(step.elapsed());
    let sent = Instant::now();
    let exchange = async {
        let length = u16::try_from(query.len()).unwrap_or(u16::MAX);
        stream.write_all(&length.to_be_bytes()).await?;
        stream.write_all(query).await?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => {
            return Err(fail(
                Reason::Timeout,
                format!(
                    "no complete answer from {} before the deadline",
                    spec.server
                ),
            ));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(fail(
                Reason::Protocol,
                "connection closed before a complete answer",
            ));
        }
        Ok(Err(e)) => return Err(fail(Reason::Protocol, format!("{}: {e}", spec.server))),
        Ok(Ok(answer)) => answer,
    };
    phases.first_byte = Some(sent.elapsed());
    match classify(spec, id, &answer)? {
        Verdict::Answer(message) => Ok(*message),
        Verdict::Truncated => Err(fail(Reason::Protocol, "a truncated answer over TCP")),
        Verdict::NotOurs => Err(fail(Reason::Protocol, "the answer's id is not the query's")),
    }
}

/// Checks the answer's rcode and, with `answer_regex`, its records. With [`classify`],
/// the parser entry point of the `dns` fuzz target.
pub fn check_answer(spec: &DnsSpec, answer: &Message) -> Result<(), Failure> {
    let rcode = u16::from(answer.metadata.response_code);
    if !spec.valid_rcodes.contains(&rcode) {
        return Err(fail(
            Reason::Status,
            format!(
                "{} for {} {}",
                rcode_name(rcode),
                spec.name,
                spec.record_type
            ),
        ));
    }
    if let Some(re) = &spec.answer_regex {
        let records: Vec<String> = answer.answers.iter().map(ToString::to_string).collect();
        if !records.iter().any(|r| re.is_match(r)) {
            return Err(fail(
                Reason::Assertion,
                format!(
                    "no answer record matches /{re}/ (got `{}`)",
                    excerpt(records.join("; ").as_bytes())
                ),
            ));
        }
    }
    Ok(())
}
