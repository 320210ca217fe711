//! `imap` probe: log in and SELECT a mailbox, the check behind visual voicemail. The few
//! commands needed (STARTTLS, LOGIN, SELECT, LOGOUT) are written by hand (RFC 3501).

use std::net::IpAddr;
use std::path::PathBuf;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::conn::{self, Lines, Step, fail};
use super::result::{Phases, ProbeResult, Reason, TlsInfo};
use super::sanitize::{Secrets, peer_text};
use super::tls::{self, TlsClients, Trust};
use crate::validation::{Issues, Secret, read_secret_file};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapProbeConfig {
    /// `host:port`; IPv6 literals in brackets.
    pub address: String,
    /// `implicit` (port 993, the default), `starttls` or `none`.
    #[serde(default)]
    pub tls: ImapTls,
    /// Login name.
    pub username: String,
    /// File holding the password (surrounding white space trimmed).
    pub password_file: PathBuf,
    /// Mailbox to SELECT after login.
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Local IP to connect from (multi-homed probe hosts).
    #[serde(default)]
    pub source_address: Option<String>,
    /// PEM file of the CAs to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (lab endpoints).
    #[serde(default)]
    pub tls_insecure: bool,
}

fn default_mailbox() -> String {
    "INBOX".to_string()
}

/// How the session gets encrypted. Implicit by default, so that a password never crosses
/// the network in clear unless the operator asks for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapTls {
    #[default]
    Implicit,
    Starttls,
    None,
}

/// A validated IMAP probe.
#[derive(Debug, Clone)]
pub struct ImapSpec {
    pub address: String,
    pub tls: ImapTls,
    /// Server name and trust; set unless `tls = "none"`.
    pub tls_client: Option<(ServerName<'static>, Trust)>,
    pub username: String,
    pub password: Secret,
    /// The password in every form a detail must not show it in.
    pub secrets: Secrets,
    pub mailbox: String,
    pub source_address: Option<IpAddr>,
}

impl ImapProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ImapSpec> {
        let before = issues.len();
        let host = match conn::check_host_port(&self.address) {
            Ok(()) => self.address.rsplit_once(':').map(|(host, _)| host),
            Err(e) => {
                issues.push(format!("{path}.address"), e);
                None
            }
        };
        if self.username.is_empty() {
            issues.push(format!("{path}.username"), "must not be empty");
        }
        let password = match read_secret_file(&self.password_file) {
            Ok(p) => Some(Secret::new(p)),
            Err(e) => {
                issues.push(format!("{path}.password_file"), e);
                None
            }
        };
        if self.mailbox.is_empty() {
            issues.push(format!("{path}.mailbox"), "must not be empty");
        }
        let source_address = conn::source_address(self.source_address.as_deref(), path, issues);
        let tls_client = if self.tls == ImapTls::None {
            if self.ca_file.is_some() || self.tls_insecure {
                issues.push(
                    path.to_string(),
                    "`ca_file` and `tls_insecure` need tls = \"implicit\" or \"starttls\"",
                );
            }
            None
        } else {
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
        };
        if issues.len() > before {
            return None;
        }
        let password = password?;
        Some(ImapSpec {
            address: self.address.clone(),
            tls: self.tls,
            tls_client,
            username: self.username.clone(),
            secrets: Secrets::new([password.expose()]),
            password,
            mailbox: self.mailbox.clone(),
            source_address,
        })
    }
}

pub async fn run(clients: &TlsClients, spec: &ImapSpec, deadline: Instant) -> ProbeResult {
    let start = Instant::now();
    let mut phases = Phases::default();
    let mut tls_info = None;
    let outcome = session(clients, spec, deadline, start, &mut phases, &mut tls_info).await;
    conn::finish(start, outcome, phases, tls_info)
}

async fn session(
    clients: &TlsClients,
    spec: &ImapSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
    tls_info: &mut Option<TlsInfo>,
) -> Step<()> {
    let stream = conn::open(&spec.address, spec.source_address, deadline, start, phases).await?;
    let Some((name, trust)) = &spec.tls_client else {
        let mut lines = Lines::new(stream);
        let greeting = greeting(&mut lines, spec, deadline, start, phases).await?;
        return authenticated(lines, spec, greeting, deadline).await;
    };
    let config = clients.config(trust, false);
    if spec.tls == ImapTls::Implicit {
        let tls_start = Instant::now();
        let (stream, info) = tls::handshake(config, name.clone(), stream, None, deadline).await?;
        phases.tls = Some(tls_start.elapsed());
        *tls_info = Some(info);
        let mut lines = Lines::new(stream);
        let greeting = greeting(&mut lines, spec, deadline, start, phases).await?;
        return authenticated(lines, spec, greeting, deadline).await;
    }
    let mut lines = Lines::new(stream);
    let greeting = greeting(&mut lines, spec, deadline, start, phases).await?;
    if greeting == Greeting::Preauth {
        // RFC 3501 §6.2.1: STARTTLS is only valid before authentication.
        return Err(fail(
            Reason::Tls,
            "the server pre-authenticated the session, so STARTTLS is impossible",
        ));
    }
    let tls_start = Instant::now();
    let (status, text) = command(&mut lines, spec, "t1", "STARTTLS", &[], deadline).await?;
    if status != Status::Ok {
        return Err(fail(
            Reason::Tls,
            format!("STARTTLS refused: {status:?} {text}"),
        ));
    }
    let stream = lines.into_stream_for_tls()?;
    let (stream, info) = tls::handshake(config, name.clone(), stream, None, deadline).await?;
    phases.tls = Some(tls_start.elapsed());
    *tls_info = Some(info);
    authenticated(Lines::new(stream), spec, greeting, deadline).await
}

/// How the server opened the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    Ok,
    /// Already authenticated (RFC 3501 §7.1.4): LOGIN is skipped.
    Preauth,
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    spec: &ImapSpec,
    deadline: Instant,
    start: Instant,
    phases: &mut Phases,
) -> Step<Greeting> {
    let line = lines.line(deadline, "the IMAP greeting").await?;
    phases.first_byte = Some(start.elapsed());
    parse_greeting(&line, &spec.secrets)
}

/// Parses the greeting line (without its CRLF). A parser entry point of its own, for the
/// `imap` fuzz target: it sees everything the server sends before LOGIN.
pub fn parse_greeting(line: &[u8], secrets: &Secrets) -> Step<Greeting> {
    let upper = line.to_ascii_uppercase();
    if upper.starts_with(b"* OK") {
        Ok(Greeting::Ok)
    } else if upper.starts_with(b"* PREAUTH") {
        Ok(Greeting::Preauth)
    } else if upper.starts_with(b"* BYE") {
        Err(fail(
            Reason::Status,
            format!(
                "the server refused the session: {}",
                peer_text(line, secrets)
            ),
        ))
    } else {
        Err(fail(
            Reason::Protocol,
            format!("not an IMAP greeting: `{}`", peer_text(line, secrets)),
        ))
    }
}

/// LOGIN (unless pre-authenticated), SELECT, then a courteous LOGOUT.
async fn authenticated<S: AsyncRead + AsyncWrite + Unpin>(
    mut lines: Lines<S>,
    spec: &ImapSpec,
    greeting: Greeting,
    deadline: Instant,
) -> Step<()> {
    if greeting == Greeting::Ok {
        let args = [spec.username.as_bytes(), spec.password.expose().as_bytes()];
        let (status, text) = command(&mut lines, spec, "t2", "LOGIN", &args, deadline).await?;
        match status {
            Status::Ok => {}
            Status::No => return Err(fail(Reason::Auth, format!("LOGIN refused: {text}"))),
            Status::Bad => return Err(fail(Reason::Protocol, format!("LOGIN: BAD {text}"))),
        }
    }
    let args = [spec.mailbox.as_bytes()];
    let (status, text) = command(&mut lines, spec, "t3", "SELECT", &args, deadline).await?;
    match status {
        Status::Ok => {}
        Status::No => {
            return Err(fail(
                Reason::Status,
                format!("SELECT {} refused: {text}", spec.mailbox),
            ));
        }
        Status::Bad => return Err(fail(Reason::Protocol, format!("SELECT: BAD {text}"))),
    }
    // The check is done; a server that fumbles LOGOUT does not fail it.
    let _ = command(&mut lines, spec, "t4", "LOGOUT", &[], deadline).await;
    lines.shutdown(deadline).await;
    Ok(())
}

/// How the server completed a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// One line the server sent while a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `* …`: untagged data, which the probe skips.
    Untagged,
    /// `+ …`: a continuation request.
    Continuation,
    /// `TAG OK|NO|BAD text`: the command's completion, its text sanitized for a detail.
    Done(Status, String),
}

/// Parses one line (without its CRLF) read while the command `name` tagged `tag` runs.
/// A parser entry point of its own, for the `imap` fuzz target; every quote of the line
/// in an error goes through [`peer_text`] with the probe's `secrets`.
pub fn parse_line(line: &[u8], tag: &str, name: &str, secrets: &Secrets) -> Step<ServerLine> {
    if line.starts_with(b"* ") {
        return Ok(ServerLine::Untagged);
    }
    if line.starts_with(b"+") {
        return Ok(ServerLine::Continuation);
    }
    let Some(rest) = line
        .strip_prefix(tag.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
    else {
        return Err(fail(
            Reason::Protocol,
            format!(
                "unexpected line after {name}: `{}`",
                peer_text(line, secrets)
            ),
        ));
    };
    let (word, text) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], &rest[space + 1..]),
        None => (rest, &b""[..]),
    };
    let status = match word.to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        _ => {
            return Err(fail(
                Reason::Protocol,
                format!("bad completion of {name}: `{}`", peer_text(line, secrets)),
            ));
        }
    };
    Ok(ServerLine::Done(status, peer_text(text, secrets)))
}

/// Sends `tag name args…` and reads until the tagged completion, skipping untagged data.
/// Each argument goes as a quoted string when it can (printable ASCII), otherwise as a
/// synchronizing literal (RFC 3501 §4.3), so no byte of a password can break the syntax.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    spec: &ImapSpec,
    tag: &str,
    name: &str,
    args: &[&[u8]],
    deadline: Instant,
) -> Step<(Status, String)> {
    let mut pending = format!("{tag} {name}").into_bytes();
    for arg in args {
        pending.push(b' ');
        if arg.iter().all(|b| (0x20..=0x7e).contains(b)) {
            pending.push(b'"');
            for &b in *arg {
                if b == b'"' || b == b'\\' {
                    pending.push(b'\\');
                }
                pending.push(b);
            }
            pending.push(b'"');
        } else {
            pending.extend_from_slice(format!("{{{}}}\r\n", arg.len()).as_bytes());
            lines.send(&pending, deadline, name).await?;
            if let Some(done) = completion(lines, spec, tag, deadline, name, true).await? {
                return Ok(done);
            }
            pending = arg.to_vec();
        }
    }
    pending.extend_from_slice(b"\r\n");
    lines.send(&pending, deadline, name).await?;
    match completion(lines, spec, tag, deadline, name, false).await? {
        Some(done) => Ok(done),
        None => Err(fail(
            Reason::Protocol,
            format!("unexpected continuation request after {name}"),
        )),
    }
}

/// Reads until the tagged completion (`Some`) or, when `continuation`, a `+` request
/// (`None`).
async fn completion<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut Lines<S>,
    spec: &ImapSpec,
    tag: &str,
    deadline: Instant,
    name: &str,
    continuation: bool,
) -> Step<Option<(Status, String)>> {
    let waiting_for = format!("the answer to {name}");
    loop {
        let line = lines.line(deadline, &waiting_for).await?;
        match parse_line(&line, tag, name, &spec.secrets)? {
            ServerLine::Untagged => {}
            ServerLine::Continuation if continuation => return Ok(None),
            ServerLine::Continuation => {}
            ServerLine::Done(status, text) => return Ok(Some((status, text))),
        }
    }
}
