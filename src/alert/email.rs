//! `email` receiver: one mail per event over SMTP, with a plain-text and an HTML part, the
//! incident's figures and a link to it. One incident's mails form one thread: the opening
//! has a `Message-ID` derived from the incident and the receiver, every later mail answers
//! it (`In-Reply-To`, `References`), so clients group them without tocsin keeping state.
//!
//! [`Mailer`] is the SMTP side alone (server, TLS, AUTH, `From`), built from its own keys
//! so that anything else that mails (subscriptions) sends a prepared message the same way.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::{SendContext, SendError, incident_link, summary_line, word};
use crate::event::{AlertEvent, AlertType};
use crate::format;
use crate::incident::IncidentView;
use crate::probe::SmtpTls;
use crate::validation::{Issues, Secret};

/// The SMTP keys as a file writes them, wherever they appear (a receiver's table).
#[derive(Debug, Clone)]
pub struct MailerConfig {
    /// `host` or `host:port`.
    pub server: Option<String>,
    pub tls: Option<SmtpTls>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub from: Option<String>,
}

/// A validated SMTP submission setup that sends prepared messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Mailer {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password for AUTH (PLAIN or LOGIN, whichever the server offers).
    pub login: Option<(String, Secret)>,
    /// PEM of the CAs trusted instead of the system's; checked to parse at build.
    pub ca_pem: Option<Vec<u8>>,
    pub from: Mailbox,
}

impl MailerConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<Mailer> {
        let before = issues.len();
        let tls = self.tls.unwrap_or(SmtpTls::Starttls);
        let server = match self.server.as_deref() {
            None => {
                issues.push(format!("{path}.server"), "required for email");
                None
            }
            Some(text) => parse_server(text, tls)
                .map_err(|e| issues.push(format!("{path}.server"), e))
                .ok(),
        };
        let login = crate::probe::smtp_login(
            self.username.as_deref(),
            self.password_file.as_deref(),
            tls,
            path,
            issues,
        );
        let ca_pem = match &self.ca_file {
            None => None,
            Some(_) if tls == SmtpTls::None => {
                issues.push(
                    format!("{path}.ca_file"),
                    "needs tls = \"starttls\" or \"implicit\"",
                );
                None
            }
            Some(file) => match std::fs::read(file) {
                Ok(pem) if holds_certificates(&pem) => Some(pem),
                Ok(_) => {
                    issues.push(
                        format!("{path}.ca_file"),
                        format!("{} holds no CA certificate", file.display()),
                    );
                    None
                }
                Err(e) => {
                    issues.push(
                        format!("{path}.ca_file"),
                        format!("cannot read {}: {e}", file.display()),
                    );
                    None
                }
            },
        };
        let from = match self.from.as_deref() {
            None => {
                issues.push(format!("{path}.from"), "required for email");
                None
            }
            Some(text) => parse_mailbox(text, &format!("{path}.from"), issues),
        };
        if issues.len() > before {
            return None;
        }
        let (host, port) = server?;
        Some(Mailer {
            host,
            port,
            tls,
            login,
            ca_pem,
            from: from?,
        })
    }
}

/// Whether `pem` holds certificates and nothing unreadable (lettre would take none).
fn holds_certificates(pem: &[u8]) -> bool {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    certs.is_ok_and(|c| !c.is_empty()) && Certificate::from_pem(pem).is_ok()
}

/// `host` or `host:port` (IPv6 in brackets); the port defaults to 587 for STARTTLS, 465
/// for implicit TLS and 25 without TLS.
fn parse_server(text: &str, tls: SmtpTls) -> Result<(String, u16), String> {
    let default_port = match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
    };
    let bad = || format!("`{}` is not host or host:port", text.escape_debug());
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, default_port),
            _ => (
                host,
                after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            ),
        }
    } else {
        match text.split_once(':') {
            None => (text, default_port),
            Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
        }
    };
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// `Name <user@example.net>` or `user@example.net`.
pub fn parse_mailbox(text: &str, path: &str, issues: &mut Issues) -> Option<Mailbox> {
    Mailbox::from_str(text)
        .map_err(|e| {
            issues.push(
                path,
                format!("`{}` is not an e-mail address: {e}", text.escape_debug()),
            )
        })
        .ok()
}

impl Mailer {
    /// Submits `message` to the server within `timeout`. A 5xx answer is final; anything
    /// else (4xx, network, TLS, timeout) is worth retrying.
    pub async fn send(&self, message: Message, timeout: Duration) -> Result<(), SendError> {
        let transport = self.transport(timeout)?;
        match tokio::time::timeout(timeout, transport.send(message)).await {
            Err(_) => Err(SendError::Transient(format!(
                "SMTP {}:{}: no answer within {}",
                self.host,
                self.port,
                format::duration(timeout)
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(format!(
                "SMTP {}:{}: {e}",
                self.host, self.port
            ))),
            Ok(Err(e)) => Err(SendError::Transient(format!(
                "SMTP {}:{}: {e}",
                self.host, self.port
            ))),
        }
    }

    /// The domain of `From`, for message ids.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }

    fn transport(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .timeout(Some(timeout));
        if self.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(self.host.clone());
            if let Some(pem) = &self.ca_pem {
                let ca = Certificate::from_pem(pem)
                    .map_err(|e| SendError::Permanent(format!("ca_file: {e}")))?;
                params = params
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(ca);
            }
            let params = params
                .build_rustls()
                .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))?;
            builder = builder.tls(match self.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some((user, password)) = &self.login {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(builder.build())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailSpec {
    pub mailer: Mailer,
    pub to: Vec<Mailbox>,
}

impl EmailSpec {
    pub fn build(
        mailer: &MailerConfig,
        to: &[String],
        path: &str,
        issues: &mut Issues,
    ) -> Option<EmailSpec> {
        let mailer = mailer.build(path, issues);
        if to.is_empty() {
            issues.push(
                format!("{path}.to"),
                "required for email: at least one address",
            );
        }
        let to: Vec<Option<Mailbox>> = to
            .iter()
            .enumerate()
            .map(|(i, text)| parse_mailbox(text, &format!("{path}.to[{i}]"), issues))
            .collect();
        Some(EmailSpec {
            mailer: mailer?,
            to: to.into_iter().collect::<Option<_>>()?,
        })
    }

    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        let message = self.message(event, inc, cx)?;
        self.mailer.send(message, cx.timeout).await
    }

    /// The mail for one event: threading headers, a text and an HTML part.
    pub fn message(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<Message, SendError> {
        let root = self.thread_id(inc, cx.receiver);
        let mut builder = Message::builder()
            .from(self.mailer.from.clone())
            .subject(summary_line(event, inc))
            .date(SystemTime::from(event.occurred_at));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder = if event.kind == AlertType::Opened {
            builder.message_id(Some(root))
        } else {
            // The event id is stable across retries: a retried mail is the same message.
            builder
                .message_id(Some(format!(
                    "<{}.{}@{}>",
                    event.id,
                    id_part(&inc.id),
                    self.mailer.domain()
                )))
                .in_reply_to(root.clone())
                .references(root)
        };
        let link = incident_link(cx.external_url, &inc.id);
        let facts = facts(inc);
        let part = |kind: ContentType, body: String| {
            SinglePart::builder()
                .header(kind)
                .header(ContentTransferEncoding::QuotedPrintable)
                .body(body)
        };
        let body = MultiPart::alternative()
            .singlepart(part(
                ContentType::TEXT_PLAIN,
                plain_text(event, inc, &facts, link.as_deref()),
            ))
            .singlepart(part(
                ContentType::TEXT_HTML,
                html(event, inc, &facts, link.as_deref()),
            ));
        builder
            .multipart(body)
            .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))
    }

    /// The opening's `Message-ID`, which every later mail of the incident refers to; the
    /// receiver's name in it keeps two receivers' threads apart.
    fn thread_id(&self, inc: &IncidentView, receiver: &str) -> String {
        format!(
            "<{}.{}@{}>",
            id_part(&inc.id),
            id_part(receiver),
            self.mailer.domain()
        )
    }
}

/// `text` with what a message id's left side may not hold replaced by `-`.
fn id_part(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '-',
        })
        .collect()
}

/// The incident's figures as (label, value) rows, shared by both parts.
fn facts(inc: &IncidentView) -> Vec<(&'static str, String)> {
    let list = |items: &[String]| match items.is_empty() {
        true => "—".to_string(),
        false => items.join(", "),
    };
    let mut rows = vec![
        ("Status", word(&inc.status)),
        ("Severity", inc.severity.as_str().to_string()),
        ("Impact", word(&inc.impact)),
        ("Scope", word(&inc.scope)),
    ];
    for (id, s) in &inc.per_service {
        rows.push((
            "Service",
            format!(
                "{} ({id}): {} affected now, {} at peak ({}), {} user-minutes",
                s.name,
                format::count(s.affected),
                format::count(s.peak_affected),
                format::percent(s.peak_share),
                format::count(s.user_minutes),
            ),
        ));
    }
    rows.extend([
        ("Platforms", list(&inc.platforms)),
        ("Regions", list(&inc.regions)),
        ("Affected now", format::count(inc.affected)),
        ("Peak affected", format::count(inc.peak_affected)),
        (
            "User-minutes",
            format!(
                "{} (conservative {})",
                format::count(inc.user_minutes),
                format::count(inc.conservative_user_minutes)
            ),
        ),
        ("Onset", super::utc_seconds(inc.onset_at)),
        (
            "Detected",
            format!(
                "{} ({} after onset)",
                super::utc_seconds(inc.detected_at),
                format::duration(Duration::from_secs(inc.time_to_detect_seconds))
            ),
        ),
        (
            "Duration",
            format::duration(Duration::from_secs(inc.duration_seconds)),
        ),
    ]);
    if let Some(at) = inc.resolved_at {
        rows.push(("Resolved", super::utc_seconds(at)));
    }
    if let Some(cause) = &inc.suspected_cause {
        rows.push((
            "Suspected cause",
            format!(
                "change {} ({} before onset)",
                cause.change_id,
                format::duration(Duration::from_secs(cause.lag_seconds))
            ),
        ));
    }
    rows
}

fn plain_text(
    event: &AlertEvent,
    inc: &IncidentView,
    facts: &[(&str, String)],
    link: Option<&str>,
) -> String {
    let mut text = format!("{}\n\n", summary_line(event, inc));
    for (label, value) in facts {
        let _ = writeln!(text, "{:<16} {value}", format!("{label}:"));
    }
    if let Some(link) = link {
        let _ = write!(text, "\nDetails: {link}\n");
    }
    text.push_str("\n-- \ntocsin\n");
    text
}

fn html(
    event: &AlertEvent,
    inc: &IncidentView,
    facts: &[(&str, String)],
    link: Option<&str>,
) -> String {
    let summary = escape(&summary_line(event, inc));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{summary}</title></head>\n\
         <body>\n<p><strong>{summary}</strong></p>\n<table>\n"
    );
    for (label, value) in facts {
        let _ = writeln!(
            html,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        );
    }
    html.push_str("</table>\n");
    if let Some(link) = link {
        let link = escape(link);
        let _ = writeln!(html, "<p><a href=\"{link}\">Incident details</a></p>");
    }
    html.push_str("</body></html>\n");
    html
}

/// Text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_with_and_without_ports() {
        let tls = SmtpTls::Starttls;
        assert_eq!(
            parse_server("mail.example.net", tls),
            Ok(("mail.example.net".into(), 587))
        );
        assert_eq!(
            parse_server("mail.example.net", SmtpTls::Implicit),
            Ok(("mail.example.net".into(), 465))
        );
        assert_eq!(
            parse_server("127.0.0.1:2525", tls),
            Ok(("127.0.0.1".into(), 2525))
        );
        assert_eq!(parse_server("[::1]:25", tls), Ok(("::1".into(), 25)));
        assert_eq!(parse_server("[::1]", tls), Ok(("::1".into(), 587)));
        for bad in ["", ":25", "mail:x", "mail:0", "[::1", "[::1]x", "a b:25"] {
            assert!(parse_server(bad, tls).is_err(), "{bad}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn message_id_parts_keep_only_safe_characters() {
        assert_eq!(id_part("inc-000001-3fa9c2d1"), "inc-000001-3fa9c2d1");
        assert_eq!(id_part("noc mail<@>"), "noc-mail---");
    }
}
