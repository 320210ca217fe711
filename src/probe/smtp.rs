//! `smtp` probe: the 220 banner, EHLO, optionally STARTTLS (with a verified handshake and
//! a second EHLO inside it) or TLS from the first byte (submissions, RFC 8314, port 465),
//! optionally AUTH PLAIN or LOGIN (RFC 4954, submission on 587), QUIT (RFC 5321, RFC
//! 3207). No mail is sent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::conn::{self, Lines, Step, fail};
use super::result::{Phases, ProbeResult, Reason, TlsInfo};
use super::sanitize::excerpt;
use super::tls::{self, TlsClients, Trust};
use crate::validation::{Issues, Secret, read_secret_file};

/// Lines accepted in one multi-line reply; real EHLO replies have about a dozen.
const MAX_REPLY_LINES: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpProbeConfig {
    /// `host:port`; IPv6 literals in brackets.
    pub address: String,
    /// Upgrade with STARTTLS after EHLO and verify the certificate (`tls = "starttls"`).
    #[serde(default)]
    pub starttls: bool,
    /// `none` (the default), `starttls`, or `implicit`: TLS from the first byte (465).
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// Log in with AUTH PLAIN (or LOGIN, when only that is offered) as this user; needs TLS.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (surrounding white space trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Name given in EHLO; default `tocsin.localdomain`.
    #[serde(default)]
    pub helo_name: Option<String>,
    /// Local IP to connect from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
    /// PEM file of the CAs to trust instead of the system's (with `starttls`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (with `starttls`; lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
}

/// How the session gets encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Implicit,
}

/// A validated SMTP probe.
#[derive(Debug, Clone)]
pub struct SmtpSpec {
    pub address: String,
    pub tls_mode: SmtpTls,
    /// Server name and trust; set unless `tls_mode` is `None`.
    pub starttls: Option<(ServerName<'static>, Trust)>,
    pub helo_name: String,
    /// User name and password for AUTH.
    pub login: Option<(String, Secret)>,
    pub source_address: Option<IpAddr>,
}

impl SmtpProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<SmtpSpec> {
        let before = issues.len();
        let host = match conn::check_host_port(&self.address) {
            Ok(()) => self.address.rsplit_once(':').map(|(host, _)| host),
            Err(e) => {
                issues.push(format!("{path}.address"), e);
                None
            }
        };
        let helo_name = self
            .helo_name
            .clone()
            .unwrap_or_else(|| "tocsin.localdomain".to_string());
        if !valid_helo_name(&helo_name) {
            issues.push(
                format!("{path}.helo_name"),
                format!(
                    "`{}` is not a domain name or address literal",
                    helo_name.escape_debug()
                ),
            );
        }
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        let tls_mode = match (self.tls, self.starttls) {
            (Some(SmtpTls::Starttls) | None, true) => SmtpTls::Starttls,
            (Some(_), true) => {
                issues.push(
                    format!("{path}.starttls"),
                    "set `tls` or `starttls`, not both",
                );
                SmtpTls::Starttls
            }
            (mode, false) => mode.unwrap_or_default(),
        };
        let login = login(
            self.username.as_deref(),
            self.password_file.as_deref(),
            tls_mode,
            path,
            issues,
        );
        let starttls = if tls_mode != SmtpTls::None {
            let name = host.and_then(|host| {
                let name = tls::server_name(host);
                if name.is_none() {
                    issues.push(
                        format!("{path}.address"),
                        format!("`{host}` is not a valid TLS server name"),
                    );
                }
                name
            });
            let trust = tls::trust(self.ca_file.as_deref(), self.tls_insecure, path, issues);
            name.zip(trust)
        } else {
            if self.ca_file.is_some() || self.tls_insecure {
                issues.push(
                    path.to_string(),
                    "`ca_file` and `tls_insecure` need starttls = true or tls = \"implicit\"",
                );
            }
            None
        };
        if issues.len() > before {
            return None;
        }
        Some(SmtpSpec {
            address: self.address.clone(),
            tls_mode,
            starttls,
            helo_name,
            login,
            source_address,
        })
    }
}

/// RFC 5321 §4.1.1.1: a domain (letters, digits, `-`, `.`) or an address literal in `[]`.
fn valid_helo_name(name: &str) -> bool {
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'));
    }
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

pub async fn run(clients: &TlsClients, spec: &SmtpSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut tls_info = None;
    let outcome = session(clients, spec, deadline, start, &mut phases, &mut tls_info).await;
    conn::finish(start, outcome, phases, tls_info)
}

async fn session(
    clients: &TlsClients,
    spec: &SmtpSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
) -> Step<()> {
    let stream = conn::open(&spec.address, spec.source_address, deadline, start, phases).await?;
    if let (SmtpTls::Implicit, Some((name, trust))) = (spec.tls_mode, &spec.starttls) {
        let tls_start = Instant::now();
        let config = clients.config(trust, false);
        let (stream, info) = tls::handshake(config, name.clone(), stream, None, deadline).await?;
        phases.tls = Some(tls_start.elapsed());
        *tls_info = Some(info);
        let mut lines = Lines::new(stream);
        let banner = reply(&mut lines, deadline, "the banner").await?;
        phases.first_byte = Some(start.elapsed());
        expect(&banner, 220, "banner")?;
        let offer = ehlo(&mut lines, spec, deadline).await?;
        authenticate(&mut lines, spec, &offer, deadline).await?;
        return quit(lines, deadline).await;
    }
    let mut lines = Lines::new(stream);

    let banner = reply(&mut lines, deadline, "the banner").await?;
    phases.first_byte = Some(start.elapsed());
    expect(&banner, 220, "banner")?;
    let offer = ehlo(&mut lines, spec, deadline).await?;
    let Some((name, trust)) = &spec.starttls else {
        return quit(lines, deadline).await;
    };
    let offers_starttls = offer.text.iter().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers_starttls {
        return Err(fail(Reason::Tls, "the server does not offer STARTTLS"));
    }
    let tls_start = Instant::now();
    lines.send(b"STARTTLS\r\n", deadline, "STARTTLS").await?;
    let answer = reply(&mut lines, deadline, "the answer to STARTTLS").await?;
    if answer.code != 220 {
        return Err(fail(
            Reason::Tls,
            format!("STARTTLS refused: {}", answer.summary()),
        ));
    }
    let stream = lines.into_stream_for_tls()?;
    let config = clients.config(trust, false);
    let (stream, info) = tls::handshake(config, name.clone(), stream, None, deadline).await?;
    phases.tls = Some(tls_start.elapsed());
    *tls_info = Some(info);
    // RFC 3207 §4.2: forget what was learnt in clear; EHLO again inside TLS.
    let mut lines = Lines::new(stream);
    let offer = ehlo(&mut lines, spec, deadline).await?;
    authenticate(&mut lines, spec, &offer, deadline).await?;
    quit(lines, deadline).await
}

/// AUTH PLAIN (RFC 4616), or LOGIN when only that is offered; 535 is `auth`.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    spec: &SmtpSpec,
    offer: &Reply,
    deadline: Instant,
) -> Step<()> {
    let Some((user, password)) = &spec.login else {
        return Ok(());
    };
    let mechanisms: Vec<String> = offer
        .text
        .iter()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let keyword = words.next()?;
            keyword
                .eq_ignore_ascii_case("AUTH")
                .then(|| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    let answer = if mechanisms.iter().any(|m| m == "PLAIN") {
        let token = BASE64.encode(format!("\0{user}\0{}", password.expose()));
        let command = format!("AUTH PLAIN {token}\r\n");
        lines
            .send(command.as_bytes(), deadline, "AUTH PLAIN")
            .await?;
        reply(lines, deadline, "the answer to AUTH PLAIN").await?
    } else if mechanisms.iter().any(|m| m == "LOGIN") {
        lines
            .send(b"AUTH LOGIN\r\n", deadline, "AUTH LOGIN")
            .await?;
        let mut answer = reply(lines, deadline, "the answer to AUTH LOGIN").await?;
        for secret in [user.as_str(), password.expose()] {
            if answer.code != 334 {
                break;
            }
            let line = format!("{}\r\n", BASE64.encode(secret));
            lines.send(line.as_bytes(), deadline, "AUTH LOGIN").await?;
            answer = reply(lines, deadline, "the answer to AUTH LOGIN").await?;
        }
        answer
    } else {
        return Err(fail(
            Reason::Auth,
            format!(
                "the server offers no AUTH PLAIN or LOGIN (offers: {})",
                if mechanisms.is_empty() {
                    "none".to_string()
                } else {
                    mechanisms.join(" ")
                }
            ),
        ));
    };
    match answer.code {
        235 => Ok(()),
        // RFC 4954 §6: 535 credentials invalid, 534 mechanism too weak, 454 temporary.
        534 | 535 => Err(fail(Reason::Auth, format!("AUTH: {}", answer.summary()))),
        _ => expect(&answer, 235, "AUTH"),
    }
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    spec: &SmtpSpec,
    deadline: Instant,
) -> Step<Reply> {
    let command = format!("EHLO {}\r\n", spec.helo_name);
    lines.send(command.as_bytes(), deadline, "EHLO").await?;
    let answer = reply(lines, deadline, "the answer to EHLO").await?;
    expect(&answer, 250, "EHLO")?;
    Ok(answer)
}

async fn quit<S: AsyncRead + AsyncWrite + Unpin>(
    mut lines: Lines<S>,
    deadline: Instant,
) -> Step<()> {
    lines.send(b"QUIT\r\n", deadline, "QUIT").await?;
    let answer = reply(&mut lines, deadline, "the answer to QUIT").await?;
    expect(&answer, 221, "QUIT")?;
    lines.shutdown(deadline).await;
    Ok(())
}

/// One reply, possibly multi-line (`250-…` lines then `250 …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and separator (lossy UTF-8, unsanitized).
    pub text: Vec<String>,
}

impl Reply {
    /// The code and the first line's text, sanitized for a detail.
    fn summary(&self) -> String {
        let first = self.text.first().map_or("", String::as_str);
        format!("{} {}", self.code, excerpt(first.as_bytes()))
    }
}

/// A reply with `code` passes; another 2xx/3xx is a protocol slip, 4xx/5xx a refusal.
fn expect(reply: &Reply, code: u16, what: &str) -> Step<()> {
    match reply.code {
        c if c == code => Ok(()),
        400..=599 => Err(fail(Reason::Status, format!("{what}: {}", reply.summary()))),
        _ => Err(fail(
            Reason::Protocol,
            format!("{what}: expected {code}, got {}", reply.summary()),
        )),
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    deadline: Instant,
    waiting_for: &str,
) -> Step<Reply> {
    let mut reply = ReplyLines::default();
    loop {
        let line = lines.line(deadline, waiting_for).await?;
        if let Some(done) = reply.push(&line)? {
            return Ok(done);
        }
    }
}

/// The lines of one reply read so far.
#[derive(Default)]
struct ReplyLines {
    code: Option<u16>,
    text: Vec<String>,
}

impl ReplyLines {
    /// Takes one line (without its CRLF): the reply once this line completes it.
    fn push(&mut self, line: &[u8]) -> Step<Option<Reply>> {
        let garbage = || {
            fail(
                Reason::Protocol,
                format!("not an SMTP reply line: `{}`", excerpt(line)),
            )
        };
        let digits = line.get(..3).ok_or_else(garbage)?;
        if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
            return Err(garbage());
        }
        let this: u16 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(garbage)?;
        if *self.code.get_or_insert(this) != this {
            return Err(fail(
                Reason::Protocol,
                format!("reply codes differ within one reply: `{}`", excerpt(line)),
            ));
        }
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(garbage()),
        };
        self.text
            .push(String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned());
        if last {
            return Ok(Some(Reply {
                code: this,
                text: std::mem::take(&mut self.text),
            }));
        }
        if self.text.len() >= MAX_REPLY_LINES {
            return Err(fail(
                Reason::Protocol,
                format!("a reply of more than {MAX_REPLY_LINES} lines"),
            ));
        }
        Ok(None)
    }
}

/// Parses `bytes` as a server's side of a session: complete replies, in order, up to the
/// first error (a trailing incomplete reply is left out). The parser entry point of the
/// `smtp` fuzz target, through the same line parser the probe reads replies with.
#[cfg(any(fuzzing, test))]
pub fn parse_replies(bytes: &[u8]) -> Step<Vec<Reply>> {
    let mut replies = Vec::new();
    let mut reply = ReplyLines::default();
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            break; // no line end: not a line yet
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(done) = reply.push(line)? {
            replies.push(done);
            reply = ReplyLines::default();
        }
    }
    Ok(replies)
}

/// AUTH's `username` and `password_file` (of a probe or a mailer): both or neither, and
/// never over a connection without TLS.
pub fn login(
    username: Option<&str>,
    password_file: Option<&Path>,
    tls: SmtpTls,
    path: &str,
    issues: &mut Issues,
) -> Option<(String, Secret)> {
    match (username, password_file) {
        (None, None) => None,
        (Some(user), Some(file)) => {
            if user.is_empty() {
                issues.push(format!("{path}.username"), "must not be empty");
            }
            if tls == SmtpTls::None {
                issues.push(
                    format!("{path}.username"),
                    "AUTH would send the password in clear: set tls = \"starttls\" or \"implicit\"",
                );
            }
            read_secret_file(file)
                .map(|p| (user.to_string(), Secret::new(p)))
                .map_err(|e| issues.push(format!("{path}.password_file"), e))
                .ok()
        }
        _ => {
            issues.push(
                path.to_string(),
                "set both `username` and `password_file`, or neither",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names() {
        for good in ["tocsin.localdomain", "probe-1", "[127.0.0.1]", "[IPv6:::1]"] {
            assert!(valid_helo_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "bad name",
            "x\r\nMAIL FROM:<>",
            "[]",
            "é.example",
        ] {
            assert!(!valid_helo_name(bad), "{bad}");
        }
    }

    #[test]
    fn replies_are_parsed_and_quoted_sanitized() {
        let replies =
            parse_replies(b"220 mx ready\r\n250-mx\r\n250-STARTTLS\r\n250 OK\r\n221").unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[1].code, 250);
        assert_eq!(replies[1].text, ["mx", "STARTTLS", "OK"]);
        let refused = Reply {
            code: 554,
            text: vec![format!("\x1b[2J{}", "x".repeat(500))],
        };
        let summary = refused.summary();
        assert!(summary.starts_with("554  [2Jxxx"), "{summary}");
        assert!(summary.chars().count() <= 4 + crate::probe::sanitize::MAX_EXCERPT_CHARS);
        let err = parse_replies(b"250-a\r\n251 b\r\n").unwrap_err();
        assert_eq!(err.reason, Reason::Protocol);
        assert!(
            parse_replies(b"\x1b]0;pwned\x07\r\n")
                .unwrap_err()
                .detail
                .contains("` ]0;pwned `")
        );
    }
}
