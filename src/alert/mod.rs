//! Alerts (SPEC §9): routing per receiver, reminders, delivery with retries.
//!
//! Each receiver has two tasks: a router that filters events (`min_severity`,
//! `send_resolved`), announces an incident the first time it qualifies and sends
//! reminders; and a deliverer that sends one event at a time, in order, retrying with
//! exponential backoff and jitter. Receivers are independent of each other and of probing:
//! the engine hands events over on an unbounded channel and never waits.
//!
//! The queue is in memory for now: events pending at shutdown are lost (see README).

pub mod webhook;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::clock::{Clock, Timestamp};
use crate::config::Issues;
use crate::incident::{IncidentView, Severity};
use crate::metrics::Metrics;

/// `[[receivers]]`. Fields that only some types use are checked per type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ReceiverType,
    /// Where to POST. Or `url_file`, for URLs that embed a secret.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Standard Webhooks signing secret (`whsec_…`), read from this file.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Least severe incident sent (`sev4` sends everything).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Reminder while an incident stays open; none when unset.
    #[serde(default, with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
    /// Per-attempt timeout.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Give up on an event this long after it was first queued.
    #[serde(default = "default_max_retry_age", with = "humantime_serde")]
    pub max_retry_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverType {
    Webhook,
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

/// A validated receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSpec {
    pub name: String,
    pub kind: ReceiverKind,
    pub min_severity: Severity,
    pub send_resolved: bool,
    pub repeat_interval: Option<Duration>,
    pub timeout: Duration,
    pub max_retry_age: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverKind {
    Webhook(webhook::WebhookSpec),
}

/// Reads a `*_file` secret: trimmed, non-empty.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err("the file is empty".to_string()),
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
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
            (None, None) => {
                issues.push(format!("{path}.url"), "missing (or set `url_file`)");
                None
            }
            (Some(u), None) => parse_url(u, &format!("{path}.url"), issues),
            (None, Some(file)) => match read_secret_file(file) {
                Ok(u) => parse_url(&u, &format!("{path}.url_file"), issues),
                Err(e) => {
                    issues.push(format!("{path}.url_file"), e);
                    None
                }
            },
        };
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
        let kind = match self.kind {
            ReceiverType::Webhook => {
                webhook::WebhookSpec::build(url.clone(), self.secret_file.as_deref(), path, issues)
                    .map(ReceiverKind::Webhook)
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
            timeout: self.timeout,
            max_retry_age: self.max_retry_age,
        })
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

/// Event types of SPEC §9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertType {
    #[serde(rename = "incident.opened")]
    Opened,
    #[serde(rename = "incident.updated")]
    Updated,
    #[serde(rename = "incident.reminder")]
    Reminder,
    #[serde(rename = "incident.resolved")]
    Resolved,
}

/// One event for one receiver: `{"type", "id", "occurred_at", "incident"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Stable across retries: receivers deduplicate on it.
    pub id: String,
    pub occurred_at: Timestamp,
    pub incident: IncidentView,
}

/// A fresh event id (`evt_` + 26 random base32 characters).
pub fn new_event_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut id = String::with_capacity(30);
    id.push_str("evt_");
    for _ in 0..26 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

/// Handle the engine uses to hand events to every receiver.
#[derive(Clone, Default)]
pub struct Alerts {
    routers: Vec<mpsc::UnboundedSender<AlertEvent>>,
}

impl Alerts {
    /// Starts two tasks per receiver. `announced` are the open incidents receivers already
    /// heard of (after a restart), so they get updates rather than a second `opened`.
    pub fn start(
        receivers: &[ReceiverSpec],
        announced: &[IncidentView],
        metrics: &Arc<Metrics>,
        clock: Clock,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Alerts {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the alert HTTP client builds with default settings");
        let mut routers = Vec::new();
        for spec in receivers {
            let spec = Arc::new(spec.clone());
            let (route_tx, route_rx) = mpsc::unbounded_channel();
            let (deliver_tx, deliver_rx) = mpsc::unbounded_channel();
            let known: HashMap<String, Announced> = announced
                .iter()
                .filter(|v| v.severity >= spec.min_severity)
                .map(|v| {
                    (
                        v.id.clone(),
                        Announced {
                            latest: v.clone(),
                            last_sent: Instant::now(),
                        },
                    )
                })
                .collect();
            let pending = metrics
                .alert_outbox_pending
                .with_label_values(&[spec.name.as_str()]);
            tracker.spawn(route(
                Arc::clone(&spec),
                known,
                route_rx,
                deliver_tx,
                pending.clone(),
                clock,
                token.clone(),
            ));
            tracker.spawn(deliver(
                spec,
                http.clone(),
                deliver_rx,
                Arc::clone(metrics),
                pending,
                clock,
                token.clone(),
            ));
            routers.push(route_tx);
        }
        Alerts { routers }
    }

    /// Hands an event to every receiver; never waits.
    pub fn dispatch(&self, event: &AlertEvent) {
        for router in &self.routers {
            let _ = router.send(event.clone());
        }
    }
}

struct Announced {
    latest: IncidentView,
    last_sent: Instant,
}

/// Filters events for one receiver and emits reminders.
async fn route(
    spec: Arc<ReceiverSpec>,
    mut announced: HashMap<String, Announced>,
    mut events: mpsc::UnboundedReceiver<AlertEvent>,
    deliver: mpsc::UnboundedSender<(AlertEvent, Instant)>,
    pending: prometheus::IntGauge,
    clock: Clock,
    token: CancellationToken,
) {
    let send = |event: AlertEvent| {
        pending.inc();
        let _ = deliver.send((event, Instant::now()));
    };
    let mut reminders = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            event = events.recv() => {
                let Some(mut event) = event else { return };
                let id = event.incident.id.clone();
                match event.kind {
                    AlertType::Resolved => {
                        if announced.remove(&id).is_some() && spec.send_resolved {
                            send(event);
                        }
                    }
                    _ if event.incident.severity < spec.min_severity => {}
                    _ => {
                        // The first event that qualifies announces the incident to this
                        // receiver, whatever happened before it.
                        event.kind = if announced.contains_key(&id) {
                            event.kind
                        } else {
                            AlertType::Opened
                        };
                        announced.insert(id, Announced { latest: event.incident.clone(), last_sent: Instant::now() });
                        send(event);
                    }
                }
            }
            _ = reminders.tick(), if spec.repeat_interval.is_some() => {
                let every = spec.repeat_interval.unwrap_or(Duration::MAX);
                for entry in announced.values_mut() {
                    if entry.last_sent.elapsed() >= every {
                        entry.last_sent = Instant::now();
                        send(AlertEvent {
                            kind: AlertType::Reminder,
                            id: new_event_id(),
                            occurred_at: clock.now(),
                            incident: entry.latest.clone(),
                        });
                    }
                }
            }
        }
    }
}

/// Outcome of one delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: network error, timeout, 5xx, 408, 429.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: other 4xx.
    #[error("{0}")]
    Permanent(String),
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

/// Sends events in order, retrying each until delivered, refused, or too old.
async fn deliver(
    spec: Arc<ReceiverSpec>,
    http: reqwest::Client,
    mut queue: mpsc::UnboundedReceiver<(AlertEvent, Instant)>,
    metrics: Arc<Metrics>,
    pending: prometheus::IntGauge,
    clock: Clock,
    token: CancellationToken,
) {
    let count = |result: &str| {
        metrics
            .alert_deliveries
            .with_label_values(&[spec.name.as_str(), result])
            .inc();
    };
    while let Some((event, queued_at)) = tokio::select! {
        _ = token.cancelled() => None,
        next = queue.recv() => next,
    } {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let send = async {
                match &spec.kind {
                    ReceiverKind::Webhook(w) => {
                        w.send(&http, &event, spec.timeout, clock.now()).await
                    }
                }
            };
            // A receiver that never answers must not hold up shutdown.
            let result = tokio::select! {
                _ = token.cancelled() => return,
                result = send => result,
            };
            match result {
                Ok(()) => {
                    count("delivered");
                    tracing::debug!(receiver = %spec.name, event = %event.id, "alert delivered");
                    break;
                }
                Err(SendError::Permanent(why)) => {
                    count("dropped");
                    tracing::error!(receiver = %spec.name, event = %event.id, %why, "alert refused by the receiver; dropped");
                    break;
                }
                Err(SendError::Transient(why)) => {
                    if queued_at.elapsed() >= spec.max_retry_age {
                        count("dropped");
                        tracing::error!(receiver = %spec.name, event = %event.id, %why, "alert too old to retry; dropped");
                        break;
                    }
                    count("retried");
                    let delay = backoff(attempt);
                    tracing::warn!(receiver = %spec.name, event = %event.id, %why, retry_in = ?delay, "alert delivery failed");
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        pending.dec();
    }
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
    fn event_ids_are_unique_and_shaped() {
        let a = new_event_id();
        assert!(a.starts_with("evt_") && a.len() == 30);
        assert_ne!(a, new_event_id());
    }
}
