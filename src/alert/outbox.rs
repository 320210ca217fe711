//! Delivery from the durable outbox: one task per receiver sends that receiver's queued
//! events in order and removes each only after a 2xx (or when it is refused for good, or
//! older than `max_retry_age`). The rows live in the store, so a restart resumes them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::subscribers::{NoticeDeliverer, deliver_notices};
use super::{ReceiverKind, ReceiverSpec, SendContext, SendError, backoff};
use crate::clock::Clock;
use crate::event::AlertType;
use crate::metrics::Metrics;
use crate::store::{Pending, Store};

/// Rows read from the store at a time.
const BATCH: usize = 64;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Handle to one configuration's deliverers.
pub struct Outbox {
    wake: Arc<Notify>,
    token: CancellationToken,
}

/// What starting one configuration's deliverers takes, kept so that the engine starts them
/// when it may send: always for one instance, on taking the lead in a cluster.
#[derive(Clone)]
pub struct Deliveries {
    pub receivers: Vec<ReceiverSpec>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub external_url: Option<Url>,
    pub tracker: TaskTracker,
    /// Wakes the subscribers' notice deliverer: the fan-out and the API queue notices.
    pub notices: Arc<Notify>,
}

impl Deliveries {
    pub fn start(&self) -> Outbox {
        Outbox::start(
            &self.receivers,
            &self.store,
            &self.metrics,
            self.clock,
            self.external_url.clone(),
            &self.tracker,
            &self.notices,
        )
    }
}

impl Outbox {
    /// No deliverers: a follower's, which must not send.
    pub fn idle() -> Outbox {
        Outbox {
            wake: Arc::new(Notify::new()),
            token: CancellationToken::new(),
        }
    }

    /// Starts one deliverer per receiver, and the subscribers' notice deliverer when they
    /// are enabled; what is already queued goes out at once.
    pub fn start(
        receivers: &[ReceiverSpec],
        store: &Store,
        metrics: &Arc<Metrics>,
        clock: Clock,
        external_url: Option<Url>,
        tracker: &TaskTracker,
        notices: &Arc<Notify>,
    ) -> Outbox {
        store.discard_receivers_except(receivers.iter().map(|r| r.name.clone()).collect());
        // Redirects are not followed: on a 301 or 302 a client turns the POST into a GET
        // without its body, and the event would count as delivered while nobody got it.
        let http = reqwest::Client::builder()
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the alert HTTP client builds with default settings");
        let wake = Arc::new(Notify::new());
        let token = CancellationToken::new();
        for spec in receivers {
            let deliverer = Deliverer {
                spec: spec.clone(),
                store: store.clone(),
                http: http.clone(),
                metrics: Arc::clone(metrics),
                clock,
                external_url: external_url.clone(),
                wake: Arc::clone(&wake),
                token: token.clone(),
                sent: VecDeque::new(),
                notices: Arc::clone(notices),
            };
            tracker.spawn(deliverer.run());
            if let ReceiverKind::Subscribers(subscriptions) = &spec.kind {
                tracker.spawn(deliver_notices(NoticeDeliverer {
                    spec: subscriptions.clone(),
                    store: store.clone(),
                    http: http.clone(),
                    clock,
                    external_url: external_url.clone(),
                    wake: Arc::clone(notices),
                    token: token.clone(),
                }));
            }
        }
        Outbox { wake, token }
    }

    /// Tells every deliverer that new rows are committed.
    pub fn wake(&self) -> impl Fn() + Send + 'static {
        let wake = Arc::clone(&self.wake);
        move || wake.notify_waiters()
    }

    /// Stops the deliverers; what they have not sent stays queued.
    pub fn stop(&self) {
        self.token.cancel();
    }
}

struct Deliverer {
    spec: ReceiverSpec,
    store: Store,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    clock: Clock,
    external_url: Option<Url>,
    wake: Arc<Notify>,
    token: CancellationToken,
    /// When the last sends went out, for `max_per_minute`.
    sent: VecDeque<Instant>,
    notices: Arc<Notify>,
}

impl Deliverer {
    async fn run(mut self) {
        let pending_gauge = self
            .metrics
            .alert_outbox_pending
            .with_label_values(&[self.spec.name.as_str()]);
        loop {
            // Registered before reading, so a wake-up between the read and the wait is kept.
            let wake = Arc::clone(&self.wake);
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let (batch, total) = match self.store.pending(self.spec.name.clone(), BATCH).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(receiver = %self.spec.name, error = %e, "cannot read the outbox");
                    if self.pause(Duration::from_secs(1)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            pending_gauge.set(total as i64);
            if batch.is_empty() {
                tokio::select! {
                    _ = self.token.cancelled() => return,
                    _ = woken => continue,
                }
            }
            for (i, row) in batch.iter().enumerate() {
                if self.rate_limited() {
                    if superseded(row, &batch[i + 1..]) {
                        tracing::info!(receiver = %self.spec.name, event = %row.event.id, "rate cap: coalesced into a later event");
                        self.count("coalesced");
                        if self.settle(row).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let wait = self.sent[0] + RATE_WINDOW - Instant::now();
                    if self.pause(wait).await.is_err() {
                        return;
                    }
                }
                if self.deliver(row).await.is_err() || self.settle(row).await.is_err() {
                    return;
                }
                pending_gauge.dec();
            }
        }
    }

    fn rate_limited(&mut self) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| t.elapsed() >= RATE_WINDOW)
        {
            self.sent.pop_front();
        }
        self.sent.len() >= self.spec.max_per_minute as usize
    }

    fn count(&self, result: &str) {
        self.metrics
            .alert_deliveries
            .with_label_values(&[self.spec.name.as_str(), result])
            .inc();
    }

    /// Sleeps unless cancelled; `Err` means stop.
    async fn pause(&self, d: Duration) -> Result<(), ()> {
        tokio::select! {
            _ = self.token.cancelled() => Err(()),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    async fn settle(&self, row: &Pending) -> Result<(), ()> {
        self.store.settle(row.seq).await.map_err(|e| {
            tracing::error!(receiver = %self.spec.name, error = %e, "cannot settle an outbox row");
        })
    }

    /// Sends one event until delivered, refused, or too old; `Err` means stop.
    async fn deliver(&mut self, row: &Pending) -> Result<(), ()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let cx = SendContext {
                http: &self.http,
                timeout: self.spec.timeout,
                now: self.clock.now(),
                external_url: self.external_url.as_ref(),
                receiver: &self.spec.name,
                store: Some(&self.store),
            };
            // A receiver that never answers must not hold up shutdown.
            let result = tokio::select! {
                _ = self.token.cancelled() => return Err(()),
                result = self.spec.kind.send(&row.event, &cx) => result,
            };
            self.sent.push_back(Instant::now());
            let event = &row.event.id;
            match result {
                Ok(()) => {
                    if matches!(self.spec.kind, ReceiverKind::Subscribers(_)) {
                        self.notices.notify_waiters();
                    }
                    self.count("delivered");
                    tracing::debug!(receiver = %self.spec.name, %event, "alert delivered");
                    return Ok(());
                }
                Err(SendError::Permanent(why)) => {
                    self.count("dropped");
                    tracing::error!(receiver = %self.spec.name, %event, %why, "alert refused by the receiver; dropped");
                    return Ok(());
                }
                Err(SendError::Transient(why)) => {
                    let age = (self.clock.now() - row.queued_at)
                        .to_std()
                        .unwrap_or_default();
                    if age >= self.spec.max_retry_age {
                        self.count("dropped");
                        tracing::error!(receiver = %self.spec.name, %event, %why, "alert too old to retry; dropped");
                        return Ok(());
                    }
                    self.count("retried");
                    let delay = backoff(attempt);
                    tracing::warn!(receiver = %self.spec.name, %event, %why, retry_in = ?delay, "alert delivery failed");
                    self.pause(delay).await?;
                }
            }
        }
    }
}

/// Whether a later queued event of the same incident carries newer news, so this one can
/// be left out under the rate cap. Openings and resolutions are never left out.
fn superseded(row: &Pending, later: &[Pending]) -> bool {
    matches!(row.event.kind, AlertType::Updated | AlertType::Reminder)
        && later.iter().any(|l| {
            l.event.incident.as_ref().map(|i| &i.id) == row.event.incident.as_ref().map(|i| &i.id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AlertEvent;

    fn pending(seq: i64, kind: AlertType, incident: &str) -> Pending {
        let mut view: serde_json::Value = serde_json::json!({
            "id": incident, "status": "investigating", "services": [], "platforms": [],
            "regions": [], "scope": "localized", "platform_concentrated": false,
            "severity": "sev3", "impact": "minor", "onset_at": "2026-07-05T14:00:00Z",
            "detected_at": "2026-07-05T14:00:00Z", "impact_end_at": null, "resolved_at": null,
            "time_to_detect_seconds": 0, "duration_seconds": 0, "peak_affected": 0,
            "user_minutes": 0, "conservative_user_minutes": 0, "per_service": {},
            "reporting": null, "suspected_cause": null, "recurrence": null, "timeline": []
        });
        view["id"] = incident.into();
        Pending {
            seq,
            event: AlertEvent {
                kind,
                id: format!("evt_{seq}"),
                occurred_at: "2026-07-05T14:00:00Z".parse().unwrap(),
                incident: serde_json::from_value(view).unwrap(),
                vantage: None,
            },
            queued_at: "2026-07-05T14:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn only_updates_and_reminders_with_newer_news_are_coalesced() {
        let later = [
            pending(5, AlertType::Updated, "inc-1"),
            pending(6, AlertType::Resolved, "inc-2"),
        ];
        assert!(superseded(&pending(1, AlertType::Updated, "inc-1"), &later));
        assert!(superseded(
            &pending(2, AlertType::Reminder, "inc-1"),
            &later
        ));
        assert!(!superseded(&pending(3, AlertType::Opened, "inc-1"), &later));
        assert!(!superseded(
            &pending(4, AlertType::Resolved, "inc-1"),
            &later
        ));
        assert!(!superseded(
            &pending(1, AlertType::Updated, "inc-3"),
            &later
        ));
    }
}
