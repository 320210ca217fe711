//! Subscriptions to the public status page: customers get its customer-facing updates by
//! e-mail (double opt-in) or signed webhook, never the operators' detail.
//!
//! The engine routes incidents to a receiver of its own, [`RECEIVER`], through the outbox
//! like any other; "sending" to it fans the public view out to every confirmed subscription
//! of the services concerned as one queued notice each (`subscription_notice`), and
//! [`deliver_notices`] sends those, each retried with backoff on its own schedule, so one
//! dead subscriber delays nobody and a restart loses nothing.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::webhook::{decode_secret, sign};
use super::{
    Mailer, MailerConfig, ReceiverKind, ReceiverSpec, SendContext, SendError, backoff,
    classify_status, utc_seconds,
};
use crate::clock::{Clock, Timestamp};
use crate::event::{AlertEvent, AlertType, new_event_id};
use crate::incident::public::{incident_name, public_updates};
use crate::incident::{IncidentView, Severity};
use crate::probe::SmtpTls;
use crate::store::{Channel, Notice, Store, StoreError, Subscription};
use crate::topology::MaintenanceWindow;
use crate::validation::{Issues, read_secret_file};

/// The name of the receiver the engine routes subscribers' incidents to; no configured
/// receiver may take it.
pub const RECEIVER: &str = "subscriptions";

/// Per-attempt timeout of a notice or a confirmation mail.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A notice not delivered within this is given up on.
const MAX_RETRY_AGE: Duration = Duration::from_secs(24 * 3600);
/// Notices read from the store at a time.
const BATCH: usize = 64;
/// The window of `max_per_address_per_hour`.
const RATE_WINDOW: Duration = Duration::from_secs(3600);
/// Longest webhook URL and e-mail address taken.
const MAX_ADDRESS_LEN: usize = 2048;
/// How long the deliverer sleeps with nothing due: another instance of a cluster may have
/// queued notices (a maintenance announced through it), and unconfirmed subscriptions
/// expire.
const IDLE_POLL: Duration = Duration::from_secs(60);

/// `[subscriptions]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The SMTP server (`host` or `host:port`) the confirmation and notice mails go to.
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub from: Option<String>,
    /// Standard Webhooks secret (`whsec_…`) that signs subscriber webhooks and derives
    /// the unsubscribe tokens.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Subscription requests, and notices, per address and hour.
    #[serde(default = "default_max_per_address_per_hour")]
    pub max_per_address_per_hour: u32,
    /// An e-mail subscription not confirmed within this is deleted.
    #[serde(default = "default_confirm_within", with = "humantime_serde")]
    pub confirm_within: Duration,
    /// `incident.updated` of one incident at most this often.
    #[serde(default = "default_update_interval", with = "humantime_serde")]
    pub update_interval: Duration,
}

fn default_max_per_address_per_hour() -> u32 {
    5
}
fn default_confirm_within() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_update_interval() -> Duration {
    Duration::from_secs(15 * 60)
}

/// Validated `[subscriptions]`, when enabled.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionsSpec {
    pub mailer: Mailer,
    /// The decoded signing key.
    pub key: Vec<u8>,
    pub max_per_address_per_hour: u32,
    pub confirm_within: Duration,
    pub update_interval: Duration,
}

impl SubscriptionsConfig {
    /// `None` when disabled or invalid (then `issues` says why).
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<SubscriptionsSpec> {
        if !self.enabled {
            return None;
        }
        let before = issues.len();
        let mailer = MailerConfig {
            server: self.server.clone(),
            tls: self.tls,
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            from: self.from.clone(),
        }
        .build(path, issues);
        let key = match &self.secret_file {
            None => {
                issues.push(
                    format!("{path}.secret_file"),
                    "required: it signs webhooks and unsubscribe links",
                );
                None
            }
            Some(file) => read_secret_file(file)
                .and_then(|s| decode_secret(&s))
                .map_err(|e| issues.push(format!("{path}.secret_file"), e))
                .ok(),
        };
        if self.max_per_address_per_hour == 0 {
            issues.push(
                format!("{path}.max_per_address_per_hour"),
                "must be at least 1",
            );
        }
        for (name, value) in [
            ("confirm_within", self.confirm_within),
            ("update_interval", self.update_interval),
        ] {
            if value.is_zero() {
                issues.push(format!("{path}.{name}"), "must be greater than zero");
            }
        }
        if issues.len() > before {
            return None;
        }
        Some(SubscriptionsSpec {
            mailer: mailer?,
            key: key?,
            max_per_address_per_hour: self.max_per_address_per_hour,
            confirm_within: self.confirm_within,
            update_interval: self.update_interval,
        })
    }
}

impl SubscriptionsSpec {
    /// The receiver the engine routes every incident to for the subscribers; which
    /// subscriber gets what is decided at fan-out, per subscription.
    pub fn receiver(&self) -> ReceiverSpec {
        ReceiverSpec {
            name: RECEIVER.to_string(),
            kind: ReceiverKind::Subscribers(self.clone()),
            min_severity: Severity::Sev4,
            send_resolved: true,
            repeat_interval: None,
            update_interval: self.update_interval,
            timeout: SEND_TIMEOUT,
            max_retry_age: MAX_RETRY_AGE,
            max_per_minute: u32::MAX,
            services: Vec::new(),
            vantage_events: false,
        }
    }

    /// The unsubscribe token of a subscription: derived from its id with the key, so that
    /// every notice can carry it while the store keeps only its hash.
    pub fn unsubscribe_token(&self, id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(b"unsubscribe.");
        mac.update(id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Queues the public view of an incident event for every confirmed subscription of its
    /// services. Reminders are operators' business: none.
    pub async fn send(
        &self,
        event: &AlertEvent,
        inc: &IncidentView,
        cx: &SendContext<'_>,
    ) -> Result<(), SendError> {
        if !matches!(
            event.kind,
            AlertType::Opened | AlertType::Updated | AlertType::Resolved
        ) {
            return Ok(());
        }
        let store = cx
            .store
            .ok_or_else(|| SendError::Permanent("no store to queue notices in".into()))?;
        let notice = PublicNotice::incident(event, inc, cx.external_url);
        fan_out(store, &notice, &inc.services, cx.now)
            .await
            .map_err(|e| SendError::Transient(e.to_string()))
    }

    /// Sends the confirmation mail of a new e-mail subscription.
    pub async fn send_confirmation(
        &self,
        to: &str,
        title: &str,
        confirm_link: &str,
    ) -> Result<(), SendError> {
        let to = Mailbox::from_str(to).map_err(|e| SendError::Permanent(e.to_string()))?;
        let text = format!(
            "Someone, hopefully you, asked for news of {title} at this address.\n\n\
             To confirm, open this link:\n{confirm_link}\n\n\
             If you did not ask, ignore this mail: without confirmation the address is \
             deleted.\n"
        );
        let message = Message::builder()
            .from(self.mailer.from.clone())
            .to(to)
            .subject(format!("Confirm your subscription to {title}"))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
        self.mailer.send(message, SEND_TIMEOUT).await
    }
}

/// Queues `notice` for the confirmed subscriptions of any of `services`.
async fn fan_out(
    store: &Store,
    notice: &PublicNotice,
    services: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    let ids: Vec<String> = store
        .confirmed_subscriptions()
        .await?
        .into_iter()
        .filter(|s| s.services.is_empty() || s.services.iter().any(|x| services.contains(x)))
        .map(|s| s.id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let count = ids.len();
    store.queue_notices(ids, serde_json::to_string(notice)?, now);
    store.flush().await?;
    tracing::debug!(kind = notice.kind, subscribers = count, "notices queued");
    Ok(())
}

/// Queues the announcement of a maintenance window for its services' subscribers.
pub async fn announce_maintenance(
    store: &Store,
    window: &MaintenanceWindow,
    service_names: &HashMap<String, String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let notice = PublicNotice {
        kind: "maintenance.announced".to_string(),
        id: new_event_id(),
        occurred_at: now,
        incident: None,
        maintenance: Some(PublicMaintenance {
            id: window.id.clone(),
            summary: window.summary.clone(),
            services: public_services(&window.services, service_names),
            starts_at: window.starts_at,
            ends_at: window.ends_at,
        }),
    };
    fan_out(store, &notice, &window.services, now).await
}

fn public_services(ids: &[String], names: &HashMap<String, String>) -> Vec<PublicService> {
    ids.iter()
        .map(|id| PublicService {
            id: id.clone(),
            name: names.get(id).cloned().unwrap_or_else(|| id.clone()),
        })
        .collect()
}

/// What a subscriber receives: the public page's view, nothing the operators alone see.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicNotice {
    /// `incident.opened`, `incident.updated`, `incident.resolved`, `maintenance.announced`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's id, the same for every subscriber and across retries.
    pub id: String,
    pub occurred_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<PublicIncident>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<PublicMaintenance>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicIncident {
    pub id: String,
    /// "Voicemail: major outage".
    pub name: String,
    /// `investigating`, `identified`, `monitoring`, `resolved`.
    pub status: String,
    /// `none`, `minor`, `major`, `critical`.
    pub impact: String,
    pub services: Vec<PublicService>,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// The incident's page, when `server.external_url` is set.
    pub url: Option<String>,
    /// The customer-facing updates, oldest first.
    pub updates: Vec<PublicUpdateView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicService {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicUpdateView {
    pub at: Timestamp,
    pub status: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicMaintenance {
    pub id: String,
    pub summary: String,
    pub services: Vec<PublicService>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

impl PublicNotice {
    fn incident(event: &AlertEvent, inc: &IncidentView, external_url: Option<&Url>) -> Self {
        let kind = match event.kind {
            AlertType::Opened => "incident.opened",
            AlertType::Resolved => "incident.resolved",
            _ => "incident.updated",
        };
        let updates: Vec<PublicUpdateView> = public_updates(inc)
            .into_iter()
            .map(|u| PublicUpdateView {
                at: u.at,
                status: u.status.to_string(),
                text: u.text,
            })
            .collect();
        let names: HashMap<String, String> = inc
            .per_service
            .iter()
            .map(|(id, s)| (id.clone(), s.name.clone()))
            .collect();
        PublicNotice {
            kind: kind.to_string(),
            id: event.id.clone(),
            occurred_at: event.occurred_at,
            incident: Some(PublicIncident {
                id: inc.id.clone(),
                name: incident_name(inc),
                status: updates
                    .last()
                    .map_or("investigating".to_string(), |u| u.status.clone()),
                impact: super::word(&inc.impact),
                services: public_services(&inc.services, &names),
                started_at: inc.onset_at,
                resolved_at: inc.resolved_at,
                url: super::incident_link(external_url, &inc.id),
                updates,
            }),
            maintenance: None,
        }
    }

    fn subject(&self) -> String {
        match (&self.incident, &self.maintenance) {
            (Some(inc), _) => format!("{} ({})", inc.name, inc.status),
            (None, Some(m)) => format!("Planned maintenance: {}", m.summary),
            (None, None) => self.kind.clone(),
        }
    }

    fn text(&self, unsubscribe: &str) -> String {
        let mut text = String::new();
        if let Some(inc) = &self.incident {
            text.push_str(&format!("{}\n\n", inc.name));
            for u in inc.updates.iter().rev() {
                text.push_str(&format!(
                    "{} — {}\n{}\n\n",
                    utc_seconds(u.at),
                    u.status,
                    u.text
                ));
            }
            if let Some(url) = &inc.url {
                text.push_str(&format!("Details: {url}\n\n"));
            }
        }
        if let Some(m) = &self.maintenance {
            let names: Vec<&str> = m.services.iter().map(|s| s.name.as_str()).collect();
            text.push_str(&format!(
                "{}\n\nServices: {}\nFrom {} to {}\n\n",
                m.summary,
                names.join(", "),
                utc_seconds(m.starts_at),
                utc_seconds(m.ends_at)
            ));
        }
        text.push_str(&format!("-- \nTo stop these mails: {unsubscribe}\n"));
        text
    }
}

/// A fresh confirmation token: 256 random bits from the system's secure generator, URL-safe.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system's random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token: its SHA-256, hex. A leaked database leaks no link.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An e-mail address or a webhook URL as a subscriber gives it, checked.
pub fn parse_channel(email: Option<&str>, webhook: Option<&str>) -> Result<Channel, String> {
    match (email.map(str::trim), webhook.map(str::trim)) {
        (Some(_), Some(_)) => Err("give `email` or `webhook`, not both".into()),
        (None, None) => Err("give `email` or `webhook`".into()),
        (Some(text), None) => {
            if text.len() > MAX_ADDRESS_LEN {
                return Err("the address is too long".into());
            }
            let address = lettre::Address::from_str(text)
                .map_err(|e| format!("not an e-mail address: {e}"))?;
            Ok(Channel::Email(address.to_string()))
        }
        (None, Some(text)) => {
            if text.len() > MAX_ADDRESS_LEN {
                return Err("the URL is too long".into());
            }
            match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    Ok(Channel::Webhook(u.to_string()))
                }
                Ok(_) => Err("the webhook URL must be http or https".into()),
                Err(e) => Err(format!("not a URL: {e}")),
            }
        }
    }
}

/// The key a rate limit counts an address under: its hash, so that memory holds no
/// address longer than a request.
pub fn address_key(channel: &Channel) -> String {
    match channel {
        Channel::Email(a) => hash_token(&a.to_lowercase()),
        Channel::Webhook(u) => hash_token(u),
    }
}

/// Counts events per key within the last hour.
#[derive(Debug, Default)]
pub struct HourlyLimit {
    seen: HashMap<String, VecDeque<Timestamp>>,
}

impl HourlyLimit {
    /// Records an event for `key` at `now` unless `max` are already recorded within the
    /// hour before; `Err` with when the next one is allowed.
    pub fn take(&mut self, key: &str, max: u32, now: Timestamp) -> Result<(), Timestamp> {
        let window = chrono::Duration::from_std(RATE_WINDOW).expect("an hour fits");
        self.seen.retain(|_, times| {
            while times.front().is_some_and(|t| now - *t >= window) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = self.seen.entry(key.to_string()).or_default();
        if times.len() >= max as usize {
            return Err(times[0] + window);
        }
        times.push_back(now);
        Ok(())
    }
}

/// What [`deliver_notices`] runs on.
pub struct NoticeDeliverer {
    pub spec: SubscriptionsSpec,
    pub store: Store,
    pub http: reqwest::Client,
    pub clock: Clock,
    pub external_url: Option<Url>,
    pub wake: Arc<Notify>,
    pub token: CancellationToken,
}

/// Sends queued notices until cancelled: each due one in order; a failure puts that one
/// off with backoff and goes on with the others.
pub async fn deliver_notices(d: NoticeDeliverer) {
    let mut limit = HourlyLimit::default();
    loop {
        let wake = Arc::clone(&d.wake);
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let now = d.clock.now();
        let confirm_within =
            chrono::Duration::from_std(d.spec.confirm_within).unwrap_or(chrono::Duration::MAX);
        d.store.expire_unconfirmed(now - confirm_within);
        let (due, next) = match d.store.due_notices(now, BATCH).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the subscribers' notices");
                (Vec::new(), Some(now + chrono::Duration::seconds(1)))
            }
        };
        if due.is_empty() {
            let wait = next
                .and_then(|at| (at - now).to_std().ok())
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                _ = d.token.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        for notice in &due {
            let now = d.clock.now();
            let key = address_key(&notice.subscription.channel);
            if let Err(allowed) = limit.take(&key, d.spec.max_per_address_per_hour, now) {
                tracing::debug!(subscription = %notice.subscription.id, "notice held by the per-address limit");
                d.store.notice_retry(notice.seq, allowed, notice.attempts);
                continue;
            }
            let result = tokio::select! {
                _ = d.token.cancelled() => return,
                result = send_notice(&d, notice, now) => result,
            };
            match result {
                Ok(()) => d.store.notice_done(notice.seq),
                // The reasons go to debug: an SMTP answer may quote the address.
                Err(SendError::Permanent(why)) => {
                    tracing::warn!(subscription = %notice.subscription.id, "notice refused; dropped");
                    tracing::debug!(subscription = %notice.subscription.id, %why, "refusal");
                    d.store.notice_done(notice.seq);
                }
                Err(SendError::Transient(why)) => {
                    let age = (now - notice.queued_at).to_std().unwrap_or_default();
                    if age >= MAX_RETRY_AGE {
                        tracing::warn!(subscription = %notice.subscription.id, "notice too old to retry; dropped");
                        tracing::debug!(subscription = %notice.subscription.id, %why, "last failure");
                        d.store.notice_done(notice.seq);
                    } else {
                        let attempts = notice.attempts.saturating_add(1);
                        let delay = chrono::Duration::from_std(backoff(attempts))
                            .unwrap_or(chrono::Duration::MAX);
                        tracing::debug!(subscription = %notice.subscription.id, %why, "notice failed; retried");
                        d.store.notice_retry(notice.seq, now + delay, attempts);
                    }
                }
            }
        }
        if let Err(e) = d.store.flush().await {
            tracing::error!(error = %e, "cannot settle the subscribers' notices");
        }
    }
}

async fn send_notice(
    d: &NoticeDeliverer,
    notice: &Notice,
    now: Timestamp,
) -> Result<(), SendError> {
    let public: PublicNotice = serde_json::from_str(&notice.body)
        .map_err(|e| SendError::Permanent(format!("stored notice: {e}")))?;
    let sub = &notice.subscription;
    let unsubscribe = unsubscribe_link(d.external_url.as_ref(), &d.spec.unsubscribe_token(&sub.id));
    match &sub.channel {
        Channel::Email(to) => {
            let to = Mailbox::from_str(to).map_err(|e| SendError::Permanent(e.to_string()))?;
            let message = Message::builder()
                .from(d.spec.mailer.from.clone())
                .to(to)
                .subject(public.subject())
                .message_id(Some(format!(
                    "<{}.{}@{}>",
                    public.id,
                    sub.id,
                    d.spec.mailer.domain()
                )))
                .header(ContentType::TEXT_PLAIN)
                .header(ListUnsubscribe(format!("<{unsubscribe}>")))
                .body(public.text(&unsubscribe))
                .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))?;
            d.spec.mailer.send(message, SEND_TIMEOUT).await
        }
        Channel::Webhook(url) => {
            let mut body = serde_json::to_value(&public).expect("notices serialize");
            body["unsubscribe_url"] = unsubscribe.into();
            let body = serde_json::to_vec(&body).expect("notices serialize");
            let id = format!("{}.{}", public.id, sub.id);
            let timestamp = now.timestamp();
            let response = d
                .http
                .post(url)
                .timeout(SEND_TIMEOUT)
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", timestamp.to_string())
                .header(
                    "webhook-signature",
                    sign(&d.spec.key, &id, timestamp, &body),
                )
                .body(body)
                .send()
                .await
                .map_err(SendError::network)?;
            classify_status(response.status())
        }
    }
}

/// `…/subscriptions/unsubscribe?token=…` under `server.external_url` (a relative link
/// without it).
pub fn unsubscribe_link(external_url: Option<&Url>, token: &str) -> String {
    link(external_url, "subscriptions/unsubscribe", token)
}

/// `…/subscriptions/confirm?token=…`.
pub fn confirm_link(external_url: Option<&Url>, token: &str) -> String {
    link(external_url, "subscriptions/confirm", token)
}

fn link(external_url: Option<&Url>, path: &str, token: &str) -> String {
    let base = external_url.map_or(String::new(), |u| {
        u.as_str().trim_end_matches('/').to_string()
    });
    format!("{base}/{path}?token={token}")
}

/// `List-Unsubscribe` (RFC 2369), which mail clients show as an unsubscribe button.
#[derive(Clone)]
struct ListUnsubscribe(String);

impl lettre::message::header::Header for ListUnsubscribe {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// A new subscription's record and, for e-mail, its confirmation token.
pub fn new_subscription(
    channel: Channel,
    services: Vec<String>,
    now: Timestamp,
) -> (Subscription, Option<String>) {
    let email = matches!(channel, Channel::Email(_));
    let sub = Subscription {
        id: format!("sub_{}", &hash_token(&new_token())[..20]),
        channel,
        services,
        created_at: now,
        confirmed: !email,
    };
    (sub, email.then(new_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_stored_hashed() {
        let a = new_token();
        assert!(a.len() >= 43, "256 bits in base64: {a}");
        assert_ne!(a, new_token());
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), a);
    }

    #[test]
    fn channels_are_checked() {
        assert_eq!(
            parse_channel(Some(" a@example.net "), None),
            Ok(Channel::Email("a@example.net".into()))
        );
        assert!(parse_channel(Some("not an address"), None).is_err());
        assert!(parse_channel(None, Some("ftp://example.net/")).is_err());
        assert!(parse_channel(Some("a@example.net"), Some("https://x/")).is_err());
        assert!(parse_channel(None, None).is_err());
        assert!(matches!(
            parse_channel(None, Some("https://hooks.example.net/x")),
            Ok(Channel::Webhook(_))
        ));
    }

    #[test]
    fn the_hourly_limit_counts_per_key_and_frees_after_an_hour() {
        let mut limit = HourlyLimit::default();
        let t0: Timestamp = "2026-07-05T14:00:00Z".parse().unwrap();
        assert!(limit.take("a", 2, t0).is_ok());
        assert!(limit.take("a", 2, t0).is_ok());
        let next = limit.take("a", 2, t0).unwrap_err();
        assert_eq!(next, t0 + chrono::Duration::hours(1));
        assert!(limit.take("b", 2, t0).is_ok());
        assert!(limit.take("a", 2, next).is_ok());
    }
}
