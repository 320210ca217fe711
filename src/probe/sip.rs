//! `sip` probe: one RFC 3261 `OPTIONS` transaction, the SIP "ping" of SBCs, proxies and
//! voicemail servers; or a `REGISTER` with digest authentication (RFC 3261 §22, RFC 8760)
//! followed by its removal (`Expires: 0`), the check that a subscriber could attach. Over
//! UDP each request is retransmitted on timer E (T1 doubling, capped at T2) until the
//! deadline; over TCP and TLS it is sent once. Only the response of our own transaction
//! counts: same Call-ID, same CSeq, same top Via branch.
//!
//! A 503 with Retry-After is a server draining on purpose (RFC 3261 §21.5.4): the probe
//! succeeds, degraded, rather than calling the target down.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::conn::{self, Lines, Step, fail};
use super::result::{Failure, Phases, ProbeResult, Reason, SocketCall, TlsInfo};
use super::sanitize::excerpt;
use super::sip_digest::{self, Challenge};
use super::sip_locate::{self, Transport};
use super::tls::{self, TlsClients, Trust};
use super::udp;
use crate::validation::{Issues, Secret, read_secret_file};

/// RFC 3261 §17.1.1.1: first retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 §17.1.2.2: cap of the retransmission interval of a non-INVITE request.
const T2: Duration = Duration::from_secs(4);
/// Largest message head (start line and headers) accepted over TCP/TLS.
const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipProbeConfig {
    /// Request-URI, `sip:[user@]host[:port][;transport=udp|tcp|tls]` or `sips:…`. A domain
    /// without a port is located by NAPTR and SRV records (RFC 3263); otherwise the host is
    /// resolved directly.
    pub uri: String,
    /// `options` (the default) or `register`.
    #[serde(default)]
    pub method: Method,
    /// Accepted final status codes; empty means any 2xx for `options`, 200 for `register`.
    #[serde(default)]
    pub valid_status: Vec<u16>,
    /// Final status codes that are not a success but prove the peer is there and
    /// processing SIP (`[401, 403, 404, 405, 407]` for an SBC that challenges or refuses
    /// strangers): the probe succeeds on them too.
    #[serde(default)]
    pub alive_codes: Vec<u16>,
    /// Digest user name (`register`); also the user part of the default `From`/`To`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the digest password (surrounding white space trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `From` URI; default `sip:tocsin@<local address>`, `sip:<username>@<host>` for
    /// `register`.
    #[serde(default)]
    pub from: Option<String>,
    /// `To` URI; default the request URI without its parameters, `sip:<username>@<host>`
    /// for `register` (the address of record).
    #[serde(default)]
    pub to: Option<String>,
    /// Local IP to send from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
    /// `ip:port` of the DNS server asked for NAPTR, SRV and A/AAAA records when the URI's
    /// host is a domain without a port (RFC 3263); default the first of /etc/resolv.conf.
    #[serde(default)]
    pub dns_server: Option<String>,
    /// PEM file of the CAs to trust instead of the system's (TLS only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (TLS only; lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    Options,
    Register,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
        }
    }
}

/// A validated SIP probe.
#[derive(Debug, Clone)]
pub struct SipSpec {
    pub request_uri: String,
    /// `host` (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub method: Method,
    /// `None` means any 2xx.
    pub valid_status: Option<Vec<u16>>,
    pub alive_codes: Vec<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: Option<String>,
    pub to: String,
    pub source_address: Option<IpAddr>,
    /// Server name and trust, for TLS only.
    pub tls: Option<(ServerName<'static>, Trust)>,
    /// RFC 3263 location, for a domain without a port.
    pub locate: Option<Locate>,
}

/// How to locate the servers of a domain (RFC 3263).
#[derive(Debug, Clone)]
pub struct Locate {
    pub server: SocketAddr,
    /// The transport the URI names, if any.
    pub transport: Option<Transport>,
    /// A `sips:` URI.
    pub secure: bool,
}

impl SipProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<SipSpec> {
        let before = issues.len();
        let target = parse_uri(&self.uri)
            .map_err(|e| issues.push(format!("{path}.uri"), e))
            .ok();
        for (key, codes) in [
            ("valid_status", &self.valid_status),
            ("alive_codes", &self.alive_codes),
        ] {
            for (i, code) in codes.iter().enumerate() {
                if !(200..=699).contains(code) {
                    issues.push(
                        format!("{path}.{key}[{i}]"),
                        format!("`{code}` is not a final SIP status (200-699)"),
                    );
                }
            }
        }
        if let Some(name) = &self.username
            && (name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            issues.push(
                format!("{path}.username"),
                "must be a non-empty name without white space",
            );
        }
        let password = match &self.password_file {
            None => None,
            Some(_) if self.username.is_none() => {
                issues.push(format!("{path}.password_file"), "needs `username`");
                None
            }
            Some(file) => read_secret_file(file)
                .map(Secret::new)
                .map_err(|e| issues.push(format!("{path}.password_file"), e))
                .ok(),
        };
        if self.method == Method::Register && self.username.is_none() {
            issues.push(format!("{path}.username"), "`register` needs a user name");
        }
        for (key, value) in [("from", &self.from), ("to", &self.to)] {
            if let Some(v) = value
                && let Err(e) = check_header_uri(v)
            {
                issues.push(format!("{path}.{key}"), e);
            }
        }
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        let dns_server = self
            .dns_server
            .as_deref()
            .and_then(|v| match v.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    issues.push(
                        format!("{path}.dns_server"),
                        format!("`{v}` is not ip:port"),
                    );
                    None
                }
            });
        let located = target.as_ref().and_then(|t| location_wanted(&self.uri, t));
        if self.dns_server.is_some() && located.is_none() {
            issues.push(
                format!("{path}.dns_server"),
                "applies only to a uri whose host is a domain without a port (RFC 3263)",
            );
        }
        let locate = located.and_then(|(transport, secure)| {
            Some(Locate {
                server: dns_server.or_else(sip_locate::system_dns_server)?,
                transport,
                secure,
            })
        });
        // A located domain may offer TLS (SIPS+D2T) though the URI does not ask for it.
        let may_tls = locate.as_ref().is_some_and(|l| l.transport.is_none());
        let tls = match &target {
            Some(t) if t.transport == Transport::Tls || may_tls => {
                let name = tls::server_name(&t.host);
                if name.is_none() {
                    issues.push(
                        format!("{path}.uri"),
                        format!("`{}` is not a valid TLS server name", t.host),
                    );
                }
                let trust = tls::trust(self.ca_file.as_deref(), self.tls_insecure, path, issues);
                name.zip(trust)
            }
            Some(_) if self.ca_file.is_some() || self.tls_insecure => {
                issues.push(
                    path.to_string(),
                    "`ca_file` and `tls_insecure` apply only to transport=tls or sips:",
                );
                None
            }
            _ => None,
        };
        if issues.len() > before {
            return None;
        }
        let target = target?;
        let aor = match (self.method, &self.username) {
            (Method::Register, Some(user)) => {
                let scheme = if target.transport == Transport::Tls
                    && self.uri.to_ascii_lowercase().starts_with("sips:")
                {
                    "sips"
                } else {
                    "sip"
                };
                Some(format!("{scheme}:{user}@{}", target.host))
            }
            _ => None,
        };
        let to = self
            .to
            .clone()
            .or(aor.clone())
            .unwrap_or_else(|| self.uri.split(';').next().unwrap_or(&self.uri).to_string());
        let valid_status = match (self.valid_status.is_empty(), self.method) {
            (false, _) => Some(self.valid_status.clone()),
            // RFC 3261 §10.3: a registrar accepts with 200; nothing else is a binding.
            (true, Method::Register) => Some(vec![200]),
            (true, Method::Options) => None,
        };
        Some(SipSpec {
            locate,
            request_uri: self.uri.clone(),
            host: target.host,
            port: target.port,
            transport: target.transport,
            method: self.method,
            valid_status,
            alive_codes: self.alive_codes.clone(),
            username: self.username.clone(),
            password,
            from: self.from.clone().or(aor),
            to,
            source_address,
            tls,
        })
    }
}

#[derive(Debug, PartialEq)]
struct UriTarget {
    host: String,
    port: u16,
    transport: Transport,
}

/// Parses the parts of a SIP URI the probe needs (RFC 3261 §19.1.1).
fn parse_uri(uri: &str) -> Result<UriTarget, String> {
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` contains white space", uri.escape_debug()));
    }
    let lower = uri.to_ascii_lowercase();
    let (secure, rest) = if lower.starts_with("sips:") {
        (true, &uri[5..])
    } else if lower.starts_with("sip:") {
        (false, &uri[4..])
    } else {
        return Err(format!("`{uri}` is not a sip: or sips: URI"));
    };
    if rest.contains(['?', '<', '>', '"']) {
        return Err(format!("`{uri}`: headers and <>\" are not allowed"));
    }
    let mut parts = rest.split(';');
    let userhost = parts.next().unwrap_or_default();
    let mut transport = None;
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.eq_ignore_ascii_case("transport") {
            transport = Some(match value.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                "tls" => Transport::Tls,
                _ => return Err(format!("transport `{value}` is not udp, tcp or tls")),
            });
        }
    }
    let transport = match (secure, transport) {
        (true, None | Some(Transport::Tls)) => Transport::Tls,
        (true, Some(_)) => return Err(format!("`{uri}`: sips: needs transport=tls")),
        (false, t) => t.unwrap_or(Transport::Udp),
    };
    let hostport = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{uri}`: unclosed IPv6 bracket"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{uri}`: `{addr}` is not an IPv6 address"));
        }
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else if hostport.matches(':').count() > 1 {
        return Err(format!("`{uri}`: put IPv6 addresses in brackets"));
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{uri}` has no host"));
    }
    let port = match port {
        None => match transport {
            Transport::Tls => 5061,
            _ => 5060,
        },
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("`{uri}` has no valid port")),
        },
    };
    Ok(UriTarget {
        host,
        port,
        transport,
    })
}

/// For a URI whose host is a domain and has no port, RFC 3263 location: the transport the
/// URI names (if any) and whether it is `sips:`. A name of one label (`localhost`) is a
/// host, not a service domain, and is resolved as before.
fn location_wanted(uri: &str, target: &UriTarget) -> Option<(Option<Transport>, bool)> {
    let bare = target.host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() || !bare.trim_end_matches('.').contains('.') {
        return None;
    }
    let lower = uri.to_ascii_lowercase();
    let rest = lower.split_once(':').map_or("", |(_, r)| r);
    let userhost = rest.split(';').next().unwrap_or_default();
    let hostport = userhost.rsplit_once('@').map_or(userhost, |(_, h)| h);
    if hostport.contains(':') {
        return None;
    }
    let transport = lower.contains(";transport=").then_some(target.transport);
    Some((transport, lower.starts_with("sips:")))
}

/// `from` and `to` go into headers between `<>`: a URI, and nothing that could break out.
fn check_header_uri(value: &str) -> Result<(), String> {
    let lower = value.to_ascii_lowercase();
    let scheme_ok = lower.starts_with("sip:") || lower.starts_with("sips:");
    let clean = !value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
    if scheme_ok && clean && !value.ends_with(':') {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a sip: or sips: URI",
            value.escape_debug()
        ))
    }
}

/// What the requests of one probe share: RFC 3261 §10.2.4 has the REGISTERs of one
/// client keep their Call-ID and count up their CSeq.
struct Dialog {
    call_id: String,
    tag: String,
    local: SocketAddr,
    transport: Transport,
    cseq: u32,
}

impl Dialog {
    fn new(channel: &Channel) -> Self {
        Self {
            call_id: format!("{:016x}@tocsin", fastrand::u64(..)),
            tag: format!("{:08x}", fastrand::u32(..)),
            local: channel.local,
            transport: channel.transport,
            cseq: 0,
        }
    }
}

/// What identifies our transaction, and the request that carries it.
struct Transaction {
    call_id: String,
    branch: String,
    cseq: String,
    request: Vec<u8>,
}

impl Transaction {
    /// The next request of `dialog`: the probe's method, with `extra` header lines
    /// (credentials, Contact, Expires).
    fn new(spec: &SipSpec, dialog: &mut Dialog, extra: &str) -> Self {
        dialog.cseq += 1;
        let method = spec.method.as_str();
        let local = dialog.local;
        // RFC 3261 §8.1.1.7: the magic cookie marks a branch unique across time.
        let branch = format!("z9hG4bK{:016x}", fastrand::u64(..));
        let from = spec
            .from
            .clone()
            .unwrap_or_else(|| format!("sip:tocsin@{}", sent_by_host(local.ip())));
        let cseq = format!("{} {method}", dialog.cseq);
        let accept = match spec.method {
            Method::Options => "Accept: application/sdp\r\n",
            Method::Register => "",
        };
        let request = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {sent_by};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\n\
             To: <{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq}\r\n\
             {accept}{extra}\
             User-Agent: tocsin/{version}\r\n\
             Content-Length: 0\r\n\r\n",
            uri = spec.request_uri,
            transport = dialog.transport.via(),
            sent_by = SocketAddr::new(local.ip(), local.port()),
            tag = dialog.tag,
            to = spec.to,
            call_id = dialog.call_id,
            version = env!("CARGO_PKG_VERSION"),
        );
        Self {
            call_id: dialog.call_id.clone(),
            branch,
            cseq,
            request: request.into_bytes(),
        }
    }

    fn owns(&self, response: &Response) -> bool {
        response.call_id.as_deref() == Some(self.call_id.as_str())
            && response.cseq.as_deref() == Some(self.cseq.as_str())
            && response.branch.as_deref() == Some(self.branch.as_str())
    }
}

fn sent_by_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The parts of a SIP message the probe looks at.
#[derive(Debug, Default, PartialEq)]
struct Response {
    code: u16,
    reason: String,
    call_id: Option<String>,
    cseq: Option<String>,
    /// `branch` of the topmost Via.
    branch: Option<String>,
    content_length: Option<u64>,
    /// `WWW-Authenticate` (401) or `Proxy-Authenticate` (407) values.
    challenges: Vec<String>,
    retry_after: Option<u64>,
}

#[derive(Debug, PartialEq)]
enum Message {
    Response(Response),
    /// A request from the peer (a keepalive, say): not ours to answer, and not garbage.
    Request {
        content_length: Option<u64>,
    },
}

/// Parses a message head (start line and header lines, without the blank line). The error
/// says what is wrong, for the `protocol` detail.
fn parse_head(lines: &[&[u8]]) -> Result<Message, String> {
    let Some((start, headers)) = lines.split_first() else {
        return Err("empty message".into());
    };
    let start = std::str::from_utf8(start).map_err(|_| "start line is not UTF-8".to_string())?;
    let mut unfolded: Vec<String> = Vec::new();
    for line in headers {
        let line = String::from_utf8_lossy(line);
        // RFC 3261 §7.3.1: a line starting with white space continues the previous header.
        if line.starts_with([' ', '\t']) {
            match unfolded.last_mut() {
                Some(last) => last.push_str(&line),
                None => return Err("continuation line without a header".into()),
            }
        } else {
            unfolded.push(line.into_owned());
        }
    }
    let mut call_id = None;
    let mut cseq = None;
    let mut branch = None;
    let mut content_length = None;
    let mut challenges = Vec::new();
    let mut retry_after = None;
    for header in &unfolded {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("not a header: `{}`", excerpt(header.as_bytes())))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "call-id" | "i" => call_id = call_id.or(Some(value.to_string())),
            "cseq" => {
                cseq = cseq.or(Some(value.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            "via" | "v" if branch.is_none() => branch = Some(top_via_branch(value)),
            "content-length" | "l" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length `{}`", excerpt(value.as_bytes())))?;
                content_length = Some(n);
            }
            "www-authenticate" | "proxy-authenticate" if challenges.len() < 8 => {
                challenges.push(value.to_string());
            }
            // `Retry-After: 300 (maintenance);duration=…`: the seconds come first.
            "retry-after" => {
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                retry_after = digits.parse().ok();
            }
            _ => {}
        }
    }
    if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = match code.parse::<u16>() {
            Ok(c) if code.len() == 3 && (100..=699).contains(&c) => c,
            _ => return Err(format!("bad status line `{}`", excerpt(start.as_bytes()))),
        };
        Ok(Message::Response(Response {
            code,
            reason: reason.to_string(),
            call_id,
            cseq,
            branch: branch.flatten(),
            content_length,
            challenges,
            retry_after,
        }))
    } else if start.ends_with(" SIP/2.0") && start.split(' ').count() == 3 {
        Ok(Message::Request { content_length })
    } else {
        Err(format!(
            "not a SIP message: `{}`",
            excerpt(start.as_bytes())
        ))
    }
}

/// The `branch` parameter of the first value of a Via header.
fn top_via_branch(value: &str) -> Option<String> {
    let first = value.split(',').next()?;
    first.split(';').skip(1).find_map(|param| {
        let (name, v) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| v.trim().to_string())
    })
}

/// Parses one datagram: the head up to the blank line (the body is ignored).
fn parse_datagram(datagram: &[u8]) -> Result<Message, String> {
    let head_end = datagram
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the datagram")?;
    let lines: Vec<&[u8]> = datagram[..head_end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    parse_head(&lines)
}

/// Parses one message as the probe reads a datagram: the status code of a response,
/// `None` for a request from the peer. The parser entry point of the `sip` fuzz target;
/// errors quote the peer through the sanitizer, as `protocol` details do.
#[cfg(any(fuzzing, test))]
pub fn parse_message(bytes: &[u8]) -> Result<Option<u16>, String> {
    match parse_datagram(bytes)? {
        Message::Response(r) => Ok(Some(r.code)),
        Message::Request { .. } => Ok(None),
    }
}

pub async fn run(clients: &TlsClients, spec: &SipSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut tls_info = None;
    let outcome = attempt(clients, spec, deadline, start, &mut phases, &mut tls_info).await;
    let total = start.elapsed();
    let mut result = match outcome {
        Ok(degraded) => {
            phases.total = Some(total);
            let mut result = ProbeResult::success(total, phases);
            result.degraded = degraded;
            result
        }
        Err(failure) => ProbeResult::failed(failure, total, phases),
    };
    result.tls = tls_info;
    result
}

/// A success (`Some` with why it is degraded), or the failure, for a final response.
fn check_status(spec: &SipSpec, response: &Response) -> Step<Option<String>> {
    let accepted = match &spec.valid_status {
        None => (200..300).contains(&response.code),
        Some(codes) => codes.contains(&response.code),
    };
    let summary = || format!("{} {}", response.code, excerpt(response.reason.as_bytes()));
    if accepted || spec.alive_codes.contains(&response.code) {
        Ok(None)
    } else if response.code == 503
        && let Some(seconds) = response.retry_after
    {
        Ok(Some(format!(
            "{}, Retry-After {seconds}s: the server is draining",
            summary()
        )))
    } else {
        Err(fail(Reason::Status, summary()))
    }
}

async fn options(
    channel: &mut Channel,
    spec: &SipSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Option<String>> {
    let mut dialog = Dialog::new(channel);
    let transaction = Transaction::new(spec, &mut dialog, "");
    let response = channel
        .transact(&transaction, deadline, start, phases)
        .await?;
    check_status(spec, &response)
}

/// Most challenges answered in one registration or removal: one, plus one for a nonce
/// that went stale in between.
const MAX_CHALLENGES: usize = 2;

/// REGISTER, answering digest challenges, then the same with `Expires: 0` to remove the
/// binding again: a probe leaves nothing behind.
async fn register(
    channel: &mut Channel,
    spec: &SipSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Option<String>> {
    let mut dialog = Dialog::new(channel);
    let mut auth = Auth::default();
    let registered = bind(
        channel,
        spec,
        &mut dialog,
        &mut auth,
        60,
        deadline,
        start,
        phases,
    )
    .await?;
    let challenged = matches!(registered.code, 401 | 407);
    if challenged && !spec.alive_codes.contains(&registered.code) {
        return Err(fail(
            Reason::Auth,
            format!("{}: challenged, and no password_file", registered.code),
        ));
    }
    let degraded = check_status(spec, &registered)?;
    if registered.code != 200 {
        // Alive, or draining: nothing was bound, nothing to remove.
        return Ok(degraded);
    }
    let removed = bind(
        channel,
        spec,
        &mut dialog,
        &mut auth,
        0,
        deadline,
        start,
        phases,
    )
    .await?;
    if removed.code != 200 {
        return Err(fail(
            Reason::Status,
            format!(
                "registered, but the removal got {} {}",
                removed.code,
                excerpt(removed.reason.as_bytes())
            ),
        ));
    }
    Ok(degraded)
}

/// The challenge being answered, and how often its nonce was used.
#[derive(Default)]
struct Auth {
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    cnonce: String,
}

/// One REGISTER for `expires` seconds, answering up to [`MAX_CHALLENGES`] challenges.
#[allow(clippy::too_many_arguments)]
async fn bind(
    channel: &mut Channel,
    spec: &SipSpec,
    dialog: &mut Dialog,
    auth: &mut Auth,
    expires: u32,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Response> {
    let user = spec.username.as_deref().unwrap_or("tocsin");
    let contact = format!(
        "Contact: <sip:{user}@{}:{};transport={}>\r\nExpires: {expires}\r\n",
        sent_by_host(channel.local.ip()),
        channel.local.port(),
        channel.transport.via().to_ascii_lowercase(),
    );
    let mut challenges = 0;
    loop {
        let mut extra = contact.clone();
        if let Some((challenge, proxy)) = &auth.challenge {
            let password = spec.password.as_ref().map_or("", Secret::expose);
            auth.nc += 1;
            let value = sip_digest::authorization(
                challenge,
                "REGISTER",
                &spec.request_uri,
                user,
                password,
                auth.nc,
                &auth.cnonce,
            );
            let header = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            extra.push_str(&format!("{header}: {value}\r\n"));
        }
        let transaction = Transaction::new(spec, dialog, &extra);
        let response = channel
            .transact(&transaction, deadline, start, phases)
            .await?;
        if !matches!(response.code, 401 | 407) {
            return Ok(response);
        }
        let proxy = response.code == 407;
        let Some(challenge) = sip_digest::best(&response.challenges) else {
            return Err(fail(
                Reason::Protocol,
                format!(
                    "{} without a Digest challenge of MD5 or SHA-256",
                    response.code
                ),
            ));
        };
        // Challenged again right after answering a challenge of this request, and not for
        // a stale nonce: the credentials were refused. (Credentials carried over from the
        // registration may meet a registrar that wants a new nonce: answered once more.)
        let refused = challenges > 0 && !challenge.stale;
        if refused || challenges >= MAX_CHALLENGES {
            return Err(fail(
                Reason::Auth,
                format!(
                    "{} {}: credentials of `{user}` refused",
                    response.code,
                    excerpt(response.reason.as_bytes())
                ),
            ));
        }
        if spec.password.is_none() {
            // Nothing to answer with: the challenge is the final word.
            return Ok(response);
        }
        challenges += 1;
        *auth = Auth {
            challenge: Some((challenge, proxy)),
            nc: 0,
            cnonce: format!("{:016x}", fastrand::u64(..)),
        };
    }
}

/// Where the requests of one probe go: a connected UDP socket, or one TCP/TLS connection.
struct Channel {
    local: SocketAddr,
    transport: Transport,
    link: Link,
}

enum Link {
    Udp(UdpSocket, SocketAddr),
    Stream(Lines<Box<dyn Io>>),
}

/// Plain TCP or TLS, so one reader serves both.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The servers to try, in order: the URI's host and port, or what RFC 3263 finds.
async fn candidates(
    spec: &SipSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Vec<(Transport, SocketAddr)>> {
    let found = match &spec.locate {
        Some(locate) => {
            let found = sip_locate::locate(
                locate.server,
                &spec.host,
                locate.transport,
                locate.secure,
                deadline,
            )
            .await?;
            found.into_iter().map(|c| (c.transport, c.addr)).collect()
        }
        None => {
            let address = format!("{}:{}", spec.host, spec.port);
            let peer = conn::resolve(&address, spec.source_address, deadline).await?;
            vec![(spec.transport, peer)]
        }
    };
    phases.dns = Some(start.elapsed());
    Ok(found)
}

/// Runs the probe's method against each candidate until one is reachable: a refused or
/// unanswered connection moves on to the next (RFC 3263 §4.3), anything else is the verdict.
async fn attempt(
    clients: &TlsClients,
    spec: &SipSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
) -> Step<Option<String>> {
    let candidates = candidates(spec, deadline, start, phases).await?;
    let mut last = None;
    for (transport, peer) in candidates {
        let outcome = match open(clients, spec, transport, peer, deadline, phases, tls_info).await {
            Ok(mut channel) => {
                let outcome = match spec.method {
                    Method::Options => options(&mut channel, spec, deadline, start, phases).await,
                    Method::Register => register(&mut channel, spec, deadline, start, phases).await,
                };
                channel.close(deadline).await;
                outcome
            }
            Err(failure) => Err(failure),
        };
        match outcome {
            Err(f) if matches!(f.reason, Reason::ConnectRefused | Reason::ConnectTimeout) => {
                last = Some(f);
            }
            outcome => return outcome,
        }
    }
    Err(last.unwrap_or_else(|| fail(Reason::Dns, "no server to try")))
}

async fn open(
    clients: &TlsClients,
    spec: &SipSpec,
    transport: Transport,
    peer: SocketAddr,
    deadline: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
) -> Step<Channel> {
    if transport == Transport::Udp {
        let socket = udp::connect_to(peer, spec.source_address).await?;
        let local = socket
            .local_addr()
            .map_err(|e| fail(Reason::Internal, format!("local address: {e}")))?;
        return Ok(Channel {
            local,
            transport,
            link: Link::Udp(socket, peer),
        });
    }
    let connect_start = Instant::now();
    let stream = conn::connect(peer, spec.source_address, deadline).await?;
    phases.connect = Some(connect_start.elapsed());
    let local = stream
        .local_addr()
        .map_err(|e| fail(Reason::Internal, format!("local address: {e}")))?;
    let io: Box<dyn Io> = match (&spec.tls, transport) {
        (Some((name, trust)), Transport::Tls) => {
            let tls_start = Instant::now();
            let config = clients.config(trust, false);
            let (stream, info) =
                tls::handshake(config, name.clone(), stream, None, deadline).await?;
            phases.tls = Some(tls_start.elapsed());
            *tls_info = Some(info);
            Box::new(stream)
        }
        (None, Transport::Tls) => {
            return Err(fail(Reason::Internal, "TLS without a server name"));
        }
        _ => Box::new(stream),
    };
    Ok(Channel {
        local,
        transport,
        link: Link::Stream(Lines::new(io)),
    })
}

impl Channel {
    /// Our final response to `transaction`; records `first_byte` at the first response.
    async fn transact(
        &mut self,
        transaction: &Transaction,
        deadline: Instant,
        start: Instant,
        phases: &mut Phases,
    ) -> Step<Response> {
        match &mut self.link {
            Link::Udp(socket, peer) => {
                over_udp(socket, *peer, transaction, deadline, start, phases).await
            }
            Link::Stream(lines) => exchange(lines, transaction, deadline, start, phases).await,
        }
    }

    async fn close(self, deadline: Instant) {
        if let Link::Stream(lines) = self.link {
            lines.shutdown(deadline).await;
        }
    }
}

async fn over_udp(
    socket: &UdpSocket,
    peer: SocketAddr,
    transaction: &Transaction,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Response> {
    send(socket, &transaction.request, peer).await?;
    let mut interval = T1;
    let mut next_send = Instant::now() + interval;
    let mut garbage: Option<String> = None;
    let mut buf = vec![0u8; 65_535];
    loop {
        let until = next_send.min(deadline);
        match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
            Err(_) if until >= deadline => {
                // Garbage from the peer and nothing of ours: the peer is broken, not away.
                return Err(match garbage {
                    Some(g) => fail(Reason::Protocol, g),
                    None => fail(
                        Reason::Timeout,
                        format!("no response from {peer} before the deadline"),
                    ),
                });
            }
            Err(_) => {
                send(socket, &transaction.request, peer).await?;
                interval = (interval * 2).min(T2);
                next_send += interval;
            }
            Ok(Err(e)) => return Err(transport_error(peer, &e)),
            Ok(Ok(n)) => match parse_datagram(&buf[..n]) {
                Err(e) => garbage = Some(format!("unparsable reply: {e}")),
                Ok(Message::Response(r)) if transaction.owns(&r) => {
                    phases.first_byte.get_or_insert_with(|| start.elapsed());
                    if r.code >= 200 {
                        return Ok(r);
                    }
                    // §17.1.2.2: once proceeding, retransmit every T2.
                    interval = T2;
                }
                Ok(_) => {} // a stray message: another transaction's, or a request
            },
        }
    }
}

async fn send(socket: &UdpSocket, request: &[u8], peer: SocketAddr) -> Step<()> {
    match socket.send(request).await {
        Ok(_) => Ok(()),
        Err(e) => Err(transport_error(peer, &e)),
    }
}

fn transport_error(peer: SocketAddr, error: &std::io::Error) -> Failure {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => fail(
            Reason::ConnectRefused,
            format!("{peer}: port unreachable ({error})"),
        ),
        // ENOBUFS on a send is this host out of socket memory, not the peer.
        _ => conn::socket_fail(
            Reason::Protocol,
            format!("{peer}: {error}"),
            error,
            SocketCall::Open,
        ),
    }
}

/// Sends the request once (a reliable transport retransmits for us) and reads messages
/// until our final response.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    transaction: &Transaction,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Response> {
    let method = transaction.cseq.split(' ').nth(1).unwrap_or("the request");
    lines.send(&transaction.request, deadline, method).await?;
    loop {
        let mut head: Vec<Vec<u8>> = Vec::new();
        let mut head_bytes = 0;
        loop {
            let line = lines.line(deadline, "a SIP response").await?;
            // RFC 3261 §7.5: ignore CRLFs before a start line (keepalives).
            if line.is_empty() && head.is_empty() {
                continue;
            }
            if line.is_empty() {
                break;
            }
            head_bytes += line.len() + 2;
            if head_bytes > MAX_HEAD_BYTES {
                return Err(fail(
                    Reason::Protocol,
                    format!("message head longer than {MAX_HEAD_BYTES} bytes"),
                ));
            }
            head.push(line);
        }
        let refs: Vec<&[u8]> = head.iter().map(Vec::as_slice).collect();
        let message = parse_head(&refs)
            .map_err(|e| fail(Reason::Protocol, format!("unparsable reply: {e}")))?;
        let content_length = match &message {
            Message::Response(r) => r.content_length,
            Message::Request { content_length } => *content_length,
        };
        // §18.3: over a stream, Content-Length is mandatory; it frames the next message.
        let Some(body) = content_length else {
            return Err(fail(
                Reason::Protocol,
                "a message without Content-Length on a stream",
            ));
        };
        lines.skip(body, deadline, "a SIP message body").await?;
        if let Message::Response(r) = message
            && transaction.owns(&r)
        {
            phases.first_byte.get_or_insert_with(|| start.elapsed());
            if r.code >= 200 {
                return Ok(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_forms() {
        let t = |host: &str, port, transport| UriTarget {
            host: host.to_string(),
            port,
            transport,
        };
        assert_eq!(
            parse_uri("sip:sbc.example.net"),
            Ok(t("sbc.example.net", 5060, Transport::Udp))
        );
        assert_eq!(
            parse_uri("sip:ping@10.0.0.1:5070;transport=TCP;lr"),
            Ok(t("10.0.0.1", 5070, Transport::Tcp))
        );
        assert_eq!(
            parse_uri("sips:[2001:db8::1]"),
            Ok(t("[2001:db8::1]", 5061, Transport::Tls))
        );
        assert_eq!(
            parse_uri("SIP:vm.example.net;transport=tls"),
            Ok(t("vm.example.net", 5061, Transport::Tls))
        );
        for bad in [
            "http://x",
            "sip:",
            "sip:host:0",
            "sip:host:sip",
            "sip:2001:db8::1",
            "sip:[nope]",
            "sip:host;transport=sctp",
            "sips:host;transport=udp",
            "sip:host\r\nVia: x",
            "sip:host?subject=x",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_parsed_with_compact_and_folded_headers() {
        let datagram = b"SIP/2.0 200 OK\r\n\
            v: SIP/2.0/UDP 127.0.0.1:5555;branch=z9hG4bKabc;rport=5555,\r\n SIP/2.0/UDP other;branch=z9hG4bKnot\r\n\
            Via: SIP/2.0/UDP third;branch=z9hG4bKthird\r\n\
            i: 42@tocsin\r\n\
            CSeq:   1   OPTIONS\r\n\
            l: 0\r\n\r\n";
        let Ok(Message::Response(r)) = parse_datagram(datagram) else {
            panic!("not parsed");
        };
        assert_eq!(r.code, 200);
        assert_eq!(r.branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(r.call_id.as_deref(), Some("42@tocsin"));
        assert_eq!(r.cseq.as_deref(), Some("1 OPTIONS"));
        assert_eq!(r.content_length, Some(0));
    }

    #[test]
    fn parse_errors_quote_the_peer_sanitized() {
        let hostile = format!("SIP/2.0 200 OK\r\nX\x1b[2J{}\r\n\r\n", "y".repeat(1000));
        let err = parse_message(hostile.as_bytes()).unwrap_err();
        assert!(err.starts_with("not a header: `X [2Jyyy"), "{err}");
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.chars().count() < 250, "{err}");
        assert_eq!(
            parse_message(b"SIP/2.0 486 Busy Here\r\nl: 0\r\n\r\n"),
            Ok(Some(486))
        );
    }

    #[test]
    fn garbage_is_an_error_and_requests_are_not() {
        assert!(parse_datagram(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_datagram(b"SIP/2.0 2000 OK\r\n\r\n").is_err());
        assert!(parse_datagram(b"SIP/2.0 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_datagram(b"SIP/2.0 200 OK\r\nl: -1\r\n\r\n").is_err());
        assert!(parse_datagram(b"\xff\xfe\r\n\r\n").is_err());
        assert!(parse_datagram(b"SIP/2.0 200 OK").is_err(), "no end of head");
        assert_eq!(
            parse_datagram(b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n"),
            Ok(Message::Request {
                content_length: Some(0)
            })
        );
    }
}
