//! Alerts: routing per receiver, a durable outbox, and one file per receiver type.
//!
//! The engine turns incident events into deliveries with `routing::Routing` (pure:
//! `min_severity`, `send_resolved`, announcements, `update_interval`, reminders) and writes
//! them to the outbox in the store, in the same transaction as the incident. `outbox` runs
//! one deliverer per receiver that sends the receiver's rows in order and deletes each only
//! after a 2xx, retrying with exponential backoff and jitter. `subscribers` is the status
//! page's subscriptions: a receiver of its own that fans out to a queue per subscriber. A dead receiver delays
//! neither another receiver nor probing, and a restart (even `kill -9`) loses nothing.

mod alertmanager;
mod command;
mod email;
mod msteams;
mod opsgenie;
pub(crate) mod outbox;
mod pagerduty;
pub(crate) mod routing;
mod slack;
pub(crate) mod subscribers;
mod webhook;

pub use alertmanager::AlertmanagerSpec;
pub use command::CommandSpec;
pub use email::{EmailSpec, Mailer, MailerConfig, parse_mailbox};
pub use msteams::MsteamsSpec;
pub use opsgenie::{OpsgenieRegion, OpsgenieSpec};
pub use pagerduty::PagerdutySpec;
pub use slack::SlackSpec;
pub use subscribers::{SubscriptionsConfig, SubscriptionsSpec};
pub use webhook::WebhookSpec;

use crate::incident::IncidentView;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::clock::Timestamp;
use crate::event::{AlertEvent, AlertType};
use crate::incident::Severity;
use crate::probe::SmtpTls;
use crate::validation::{Issues, read_secret_file};

/// `[[receivers]]`. Fields that only some types use are checked per type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ReceiverType,
    /// Where to POST (Alertmanager: its base URL). Or `url_file`, for URLs that embed a
    /// secret (Slack).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// `webhook` only: Standard Webhooks signing secret (`whsec_…`), read from this file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `pagerduty` only: the Events API v2 integration key, read from this file.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// Least severe incident sent (`sev4` sends everything).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Reminder while an incident stays open; none when unset.
    #[serde(default, with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// `incident.updated` of one incident at most this often (Alertmanager's
    /// `group_interval`): a burst of changes becomes one update with the latest state.
    #[serde(default = "default_update_interval", with = "humantime_serde")]
    pub update_interval: Duration,
    /// Per-attempt timeout.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Give up on an event this long after it was queued.
    #[serde(default = "default_max_retry_age", with = "humantime_serde")]
    pub max_retry_age: Duration,
    /// Rate cap; beyond it updates and reminders of one incident are coalesced into the
    /// latest (openings and resolutions are never dropped).
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
    /// Only incidents touching one of these services (ids); every incident when empty.
    #[serde(default)]
    pub services: Vec<String>,
    /// `webhook` only: also `vantage.impaired` and `vantage.recovered` (in a cluster).
    #[serde(default)]
    pub vantage_events: bool,
    /// `email` only: the SMTP server, `host` or `host:port`.
    #[serde(default)]
    pub server: Option<String>,
    /// `email` only: `starttls` (the default), `implicit` (TLS from the first byte) or
    /// `none`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// `email` only: AUTH user name; with `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// `email` only: the SMTP password, read from this file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `email` only: PEM of the CAs to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `email` only: the `From` address.
    #[serde(default)]
    pub from: Option<String>,
    /// `email` only: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// `opsgenie` only: the API key (of an API integration), read from this file.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// `opsgenie` only: `us` (the default) or `eu`, the instance of the account.
    #[serde(default)]
    pub region: Option<OpsgenieRegion>,
    /// `command` only: the program and its arguments, run without a shell.
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverType {
    Webhook,
    Alertmanager,
    Slack,
    Pagerduty,
    Email,
    Msteams,
    Opsgenie,
    Command,
}

fn default_min_severity() -> Severity {
    Severity::Sev4
}
fn default_true() -> bool {
    true
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_retry_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_per_minute() -> u32 {
    30
}
fn default_update_interval() -> Duration {
    DEFAULT_UPDATE_INTERVAL
}

/// The default `update_interval`; replay's too when no receiver is configured.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);

/// A validated receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSpec {
    pub name: String,
    pub kind: ReceiverKind,
    pub min_severity: Severity,
    pub send_resolved: bool,
    pub repeat_interval: Option<Duration>,
    pub update_interval: Duration,
    pub timeout: Duration,
    pub max_retry_age: Duration,
    pub max_per_minute: u32,
    /// Empty means every service.
    pub services: Vec<String>,
    pub vantage_events: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Webhook(WebhookSpec),
    Alertmanager(AlertmanagerSpec),
    Slack(SlackSpec),
    Pagerduty(PagerdutySpec),
    Email(EmailSpec),
    Msteams(MsteamsSpec),
    Opsgenie(OpsgenieSpec),
    Command(CommandSpec),
    /// `[subscriptions]`: the fan-out to the status page's subscribers.
    Subscribers(SubscriptionsSpec),
}

impl ReceiverSpec {
    /// What routing needs of this receiver.
    pub(crate) fn policy(&self) -> routing::Policy {
        routing::Policy {
            name: self.name.clone(),
            min_severity: self.min_severity,
            send_resolved: self.send_resolved,
            services: self.services.clone(),
            resend_every: self.resend_every(),
            update_interval: self.update_interval,
            vantage_events: self.vantage_events,
        }
    }

    /// How often an open incident is sent again: the reminder interval, and for
    /// Alertmanager at most every minute (it resolves alerts not re-sent within its
    /// `resolve_timeout`, 5 min by default).
    fn resend_every(&self) -> Option<Duration> {
        match self.kind {
            ReceiverKind::Alertmanager(_) => Some(
                self.repeat_interval
                    .unwrap_or(Duration::MAX)
                    .min(alertmanager::RESEND_EVERY),
            ),
            _ => self.repeat_interval,
        }
    }
}

/// What every sender needs besides the event.
pub struct SendContext<'a> {
    pub http: &'a reqwest::Client,
    pub timeout: Duration,
    pub now: Timestamp,
    /// `server.external_url`, for links back to the incident.
    pub external_url: Option<&'a Url>,
    /// The receiver's name, for logs and e-mail threads.
    pub receiver: &'a str,
    /// Where the subscribers' fan-out queues its notices.
    pub(crate) store: Option<&'a crate::store::Store>,
}

impl ReceiverKind {
    pub async fn send(&self, event: &AlertEvent, cx: &SendContext<'_>) -> Result<(), SendError> {
        let incident = || {
            event.incident.as_ref().ok_or_else(|| {
                SendError::Permanent("only webhook receivers take vantage events".into())
            })
        };
        match self {
            ReceiverKind::Webhook(s) => s.send(event, cx).await,
            ReceiverKind::Alertmanager(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Slack(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Pagerduty(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Email(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Msteams(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Opsgenie(s) => s.send(event, incident()?, cx).await,
            ReceiverKind::Command(s) => s.send(event, cx).await,
            ReceiverKind::Subscribers(s) => s.send(event, incident()?, cx).await,
        }
    }
}

/// Link to an incident's page, when `server.external_url` is set.
pub fn incident_link(external_url: Option<&Url>, id: &str) -> Option<String> {
    external_url.and_then(|base| base.join(&format!("incidents/{id}")).ok().map(String::from))
}

impl ReceiverConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ReceiverSpec> {
        let before = issues.len();
        if self.name.trim().is_empty() {
            issues.push(format!("{path}.name"), "must not be empty");
        }
        let url = match (&self.url, &self.url_file) {
            (Some(_), Some(_)) => {
                issues.push(path.to_string(), "set `url` or `url_file`, not both");
                None
            }
            (None, None) => None,
            (Some(u), None) => parse_url(u, &format!("{path}.url"), issues),
            (None, Some(file)) => match read_secret_file(file) {
                Ok(u) => parse_url(&u, &format!("{path}.url_file"), issues),
                Err(e) => {
                    issues.push(format!("{path}.url_file"), e);
                    None
                }
            },
        };
        let url_given = self.url.is_some() || self.url_file.is_some();
        let takes_url = !matches!(self.kind, ReceiverType::Email | ReceiverType::Command);
        let needs_url =
            takes_url && !matches!(self.kind, ReceiverType::Pagerduty | ReceiverType::Opsgenie);
        if needs_url && !url_given {
            issues.push(format!("{path}.url"), "missing (or set `url_file`)");
        }
        if !takes_url && url_given {
            let key = if self.url.is_some() {
                "url"
            } else {
                "url_file"
            };
            issues.push(
                format!("{path}.{key}"),
                format!("not for receivers of type `{}`", type_name(self.kind)),
            );
        }
        let only_for = |key: &str, given: bool, allowed: ReceiverType, issues: &mut Issues| {
            if given && self.kind != allowed {
                issues.push(
                    format!("{path}.{key}"),
                    format!("only for receivers of type `{}`", type_name(allowed)),
                );
            }
        };
        use ReceiverType::{Command, Email, Opsgenie};
        for (key, given, allowed) in [
            ("server", self.server.is_some(), Email),
            ("tls", self.tls.is_some(), Email),
            ("username", self.username.is_some(), Email),
            ("password_file", self.password_file.is_some(), Email),
            ("ca_file", self.ca_file.is_some(), Email),
            ("from", self.from.is_some(), Email),
            ("to", !self.to.is_empty(), Email),
            ("api_key_file", self.api_key_file.is_some(), Opsgenie),
            ("region", self.region.is_some(), Opsgenie),
            ("command", self.command.is_some(), Command),
        ] {
            only_for(key, given, allowed, issues);
        }
        only_for(
            "secret_file",
            self.secret_file.is_some(),
            ReceiverType::Webhook,
            issues,
        );
        only_for(
            "vantage_events",
            self.vantage_events,
            ReceiverType::Webhook,
            issues,
        );
        only_for(
            "routing_key_file",
            self.routing_key_file.is_some(),
            ReceiverType::Pagerduty,
            issues,
        );
        if self.timeout.is_zero() {
            issues.push(format!("{path}.timeout"), "must be greater than zero");
        }
        if self.max_retry_age.is_zero() {
            issues.push(format!("{path}.max_retry_age"), "must be greater than zero");
        }
        if self.repeat_interval.is_some_and(|r| r.is_zero()) {
            issues.push(
                format!("{path}.repeat_interval"),
                "must be greater than zero",
            );
        }
        if self.max_per_minute == 0 {
            issues.push(format!("{path}.max_per_minute"), "must be at least 1");
        }
        let kind = match self.kind {
            ReceiverType::Webhook => {
                webhook::WebhookSpec::build(url, self.secret_file.as_deref(), path, issues)
                    .map(ReceiverKind::Webhook)
            }
            ReceiverType::Alertmanager => url
                .map(|base| ReceiverKind::Alertmanager(alertmanager::AlertmanagerSpec::new(base))),
            ReceiverType::Slack => url.map(|url| ReceiverKind::Slack(slack::SlackSpec { url })),
            ReceiverType::Pagerduty => {
                pagerduty::PagerdutySpec::build(url, self.routing_key_file.as_deref(), path, issues)
                    .map(ReceiverKind::Pagerduty)
            }
            ReceiverType::Email => {
                let mailer = MailerConfig {
                    server: self.server.clone(),
                    tls: self.tls,
                    username: self.username.clone(),
                    password_file: self.password_file.clone(),
                    ca_file: self.ca_file.clone(),
                    from: self.from.clone(),
                };
                EmailSpec::build(&mailer, &self.to, path, issues).map(ReceiverKind::Email)
            }
            ReceiverType::Msteams => url.map(|url| ReceiverKind::Msteams(MsteamsSpec { url })),
            ReceiverType::Opsgenie => {
                OpsgenieSpec::build(url, self.region, self.api_key_file.as_deref(), path, issues)
                    .map(ReceiverKind::Opsgenie)
            }
            ReceiverType::Command => {
                CommandSpec::build(self.command.as_deref(), path, issues).map(ReceiverKind::Command)
            }
        };
        if issues.len() > before {
            return None;
        }
        Some(ReceiverSpec {
            name: self.name.clone(),
            kind: kind?,
            min_severity: self.min_severity,
            send_resolved: self.send_resolved,
            repeat_interval: self.repeat_interval,
            update_interval: self.update_interval,
            timeout: self.timeout,
            max_retry_age: self.max_retry_age,
            max_per_minute: self.max_per_minute,
            services: self.services.clone(),
            vantage_events: self.vantage_events,
        })
    }
}

fn type_name(kind: ReceiverType) -> &'static str {
    match kind {
        ReceiverType::Webhook => "webhook",
        ReceiverType::Alertmanager => "alertmanager",
        ReceiverType::Slack => "slack",
        ReceiverType::Pagerduty => "pagerduty",
        ReceiverType::Email => "email",
        ReceiverType::Msteams => "msteams",
        ReceiverType::Opsgenie => "opsgenie",
        ReceiverType::Command => "command",
    }
}

fn parse_url(text: &str, path: &str, issues: &mut Issues) -> Option<Url> {
    match Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        Ok(u) => {
            issues.push(
                path,
                format!("scheme `{}` is not http or https", u.scheme()),
            );
            None
        }
        Err(e) => {
            issues.push(path, e.to_string());
            None
        }
    }
}

/// Outcome of one delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: network error, timeout, 5xx, 408, 429, a redirect.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: other 4xx.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn network(e: reqwest::Error) -> Self {
        SendError::Transient(e.without_url().to_string())
    }
}

/// 2xx is delivered; 408, 429 and 5xx are worth retrying; any other status is final. A
/// redirect (not followed) is retried too: it says the receiver's `url` is out of date, and
/// the events wait, until `max_retry_age`, for a reload that fixes it.
pub fn classify_status(status: reqwest::StatusCode) -> Result<(), SendError> {
    let code = status.as_u16();
    match code {
        200..=299 => Ok(()),
        300..=399 => Err(SendError::Transient(format!(
            "HTTP {code}: the receiver redirects (not followed): set its url to where it points"
        ))),
        408 | 429 | 500..=599 => Err(SendError::Transient(format!("HTTP {code}"))),
        _ => Err(SendError::Permanent(format!("HTTP {code}"))),
    }
}

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Delay before retry number `attempt` (1-based): doubling from 1 s up to 5 min, with
/// jitter over the upper half so that receivers coming back are not hit in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    base / 2 + base.mul_f64(fastrand::f64() / 2.0)
}

/// A time for people and string fields: `2026-07-05T14:00:30Z`, to the second.
pub(crate) fn utc_seconds(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A unit enum's JSON name (`localized`, `investigating`), for text.
pub(crate) fn word(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A one-line human summary of an incident, for chat and pager receivers.
pub fn summary_line(event: &AlertEvent, inc: &IncidentView) -> String {
    let names: Vec<&str> = inc.per_service.values().map(|s| s.name.as_str()).collect();
    let share = inc
        .per_service
        .values()
        .map(|s| s.peak_share)
        .fold(0.0, f64::max);
    let what = match event.kind {
        AlertType::Resolved => "resolved",
        AlertType::Reminder => "still open",
        AlertType::Opened => "opened",
        AlertType::Updated => "updated",
        AlertType::VantageImpaired | AlertType::VantageRecovered => "changed",
    };
    let mut line = format!(
        "[{}] {} {what}: {} — {} subscribers at peak ({:.1}%), {} scope",
        inc.severity.as_str(),
        inc.id,
        names.join(", "),
        inc.peak_affected,
        share * 100.0,
        word(&inc.scope),
    );
    if !inc.platforms.is_empty() {
        line.push_str(&format!(", platforms {}", inc.platforms.join(", ")));
    }
    if !inc.regions.is_empty() {
        line.push_str(&format!(", regions {}", inc.regions.join(", ")));
    }
    if let Some(cause) = &inc.suspected_cause {
        line.push_str(&format!(
            "; suspected cause {} ({} before onset)",
            cause.change_id,
            humantime::format_duration(Duration::from_secs(cause.lag_seconds))
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(500) && first <= BACKOFF_FIRST);
            let fourth = backoff(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            let late = backoff(40);
            assert!(late >= BACKOFF_MAX / 2 && late <= BACKOFF_MAX);
        }
    }

    #[test]
    fn retry_classes() {
        use reqwest::StatusCode;
        assert!(classify_status(StatusCode::NO_CONTENT).is_ok());
        assert!(classify_status(StatusCode::ACCEPTED).is_ok());
        for code in [301, 302, 307, 308, 408, 429, 500, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                classify_status(status),
                Err(SendError::Transient(_))
            ));
        }
        for code in [400, 401, 404, 410, 413] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                classify_status(status),
                Err(SendError::Permanent(_))
            ));
        }
    }
}
