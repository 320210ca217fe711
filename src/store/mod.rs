//! Persistence: target detector states, incidents (open and past), changes, maintenance
//! windows, the alert outbox, routing state, rollups, what vantages report, the
//! status page's subscriptions with the notices queued for them, and the NOC console's
//! sessions. SQLite is
//! the embedded default ([`sqlite`]); several instances share a PostgreSQL ([`postgres`]),
//! which also holds the cluster's leases ([`Cluster`]).
//!
//! The [`Store`] handle is the same for both: writes are queued to one writer per store
//! (a thread for SQLite, a task for PostgreSQL) that commits whatever is queued as one
//! transaction, in order; reads go to the backend. Nothing blocking runs on the async
//! runtime.
//!
//! * `cluster`: the fence, the cluster handle, what vantages publish;
//! * `config`: `[storage]`;
//! * `write`: what the writers receive, batches, fences and hooks;
//! * `health`: failing writes and a lost database file, for `/readyz` and the metrics;
//! * `history`: uptime and service histories from rollup rows, for either backend;
//! * `migrate`: the versioned schema both backends apply on open.

mod cluster;
mod config;
mod health;
mod history;
mod migrate;
pub mod postgres;
pub mod sqlite;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::clock::Timestamp;
use crate::detector::Detector;
use crate::event::AlertEvent;
use crate::incident::{Change, Incident, PastIncident};
use crate::rollup::{ClosedMinute, HistogramError, OpenMinute, ServiceHistory, Uptime};
use crate::topology::MaintenanceWindow;

pub use cluster::{Reported, VantageMinute, VantageState};
pub use config::{Backend, PostgresUrl, StorageConfig, StorageSpec};
use health::Health;
pub use postgres::Cluster;
pub use write::Fence;
use write::{Hook, Queued, Write};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the store has shut down")]
    Closed,
    #[error("stored time is not RFC 3339: {0}")]
    Time(String),
    #[error("stored latency histogram: {0}")]
    Histogram(#[from] HistogramError),
    #[error("stored target state {0:?} is not one of unknown, up, degraded, down")]
    State(String),
    #[error(
        "the database schema is at version {found}, newer than this tocsin knows \
         (version {known}): run a tocsin at least as new as the one that migrated it"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A leader write made under a token the database no longer accepts: another instance
    /// leads `scope` now (or the lease ran out). The writes made under it were not stored.
    #[error("leader writes refused: token {token} no longer holds the {scope:?} lease")]
    Fenced { scope: String, token: i64 },
}

/// What a restart resumes from.
#[derive(Debug, Default)]
pub struct Restored {
    pub detectors: HashMap<String, Detector>,
    pub open_incidents: Vec<Incident>,
    /// Highest incident sequence number ever used (0 when none).
    pub last_seq: u64,
    /// Drawn at random when the database is created and kept in it: incident ids carry it,
    /// so that a database lost and made anew never reuses an id (nor a PagerDuty
    /// `dedup_key`) receivers have seen. Empty in databases that had incidents before it
    /// was kept: their ids stay as they were.
    pub epoch: String,
    /// Resolved incidents of the last 60 days, for recurrence.
    pub history: Vec<PastIncident>,
    /// Changes of the last 9 days, for suspected causes.
    pub changes: Vec<Change>,
    /// (receiver, incident, state): which receivers heard of which open incidents.
    pub routes: Vec<(String, String, RouteState)>,
    /// Maintenance windows registered through the API that have not ended.
    pub maintenances: Vec<MaintenanceWindow>,
}

/// What routing remembers of one receiver and one open incident, kept so that a restart
/// neither repeats an alert nor loses one that waits for the receiver's `update_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteState {
    /// The last event of any kind sent: reminders count from it.
    pub last_sent: Timestamp,
    /// The last `incident.opened` or `incident.updated` sent: the next update waits for
    /// `update_interval` after it. `None` in rows stored before it was kept: not waiting.
    pub last_update: Option<Timestamp>,
    /// An update was accepted and waits for `update_interval`; the incident's state when
    /// it goes out is sent, so only the fact is kept.
    pub update_pending: bool,
}

/// An alert event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event: AlertEvent,
    pub queued_at: Timestamp,
}

/// A subscription to the public updates, as stored. The address lives only here: deleting
/// the subscription deletes it, and the notices queued for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    pub id: String,
    pub channel: Channel,
    /// Service ids; every service when empty.
    pub services: Vec<String>,
    pub created_at: Timestamp,
    /// Double opt-in: nothing but the confirmation is sent until the link is followed.
    pub confirmed: bool,
}

/// Where a subscriber's notices go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "address", rename_all = "snake_case")]
pub enum Channel {
    Email(String),
    Webhook(String),
}

/// Which of a subscription's two tokens a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Confirm,
    Unsubscribe,
}

/// A notice waiting for its subscriber.
#[derive(Debug, Clone)]
pub struct Notice {
    pub seq: i64,
    pub subscription: Subscription,
    /// The public payload (JSON), rendered when it was queued.
    pub body: String,
    pub queued_at: Timestamp,
    pub attempts: u32,
}

/// A NOC console session, kept in the store so that it outlives a restart and every
/// instance of a cluster knows it. It is stored under the SHA-256 of its id: a leaked
/// database opens no session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsoleSession {
    pub user: String,
    /// `viewer` or `operator`.
    pub role: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// `Some(true)` open only, `Some(false)` resolved only.
    pub open: Option<bool>,
    pub service: Option<String>,
    pub limit: usize,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::UnboundedSender<Queued>,
    /// The fence leader writes are queued under; `None`: unfenced (one instance).
    fence: Arc<Mutex<Option<Arc<Fence>>>>,
    reader: Reader,
    health: Arc<Health>,
}

#[derive(Clone)]
enum Reader {
    Sqlite(sqlite::Reader),
    Postgres(postgres::Reader),
}

/// Calls the same read on whichever backend the store has.
macro_rules! read {
    ($store:expr, $reader:ident => $call:expr) => {
        match &$store.reader {
            Reader::Sqlite($reader) => $call.await,
            Reader::Postgres($reader) => $call.await,
        }
    };
}

impl Store {
    /// Opens (creating or migrating when needed) the database of `spec` and reads what a
    /// restart resumes from.
    pub async fn open(spec: &StorageSpec) -> Result<(Store, Restored), StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let (reader, restored) = match &spec.backend {
            Backend::Sqlite(path) => {
                let (reader, restored) =
                    sqlite::open(path.clone(), rx, Arc::clone(&health)).await?;
                (Reader::Sqlite(reader), restored)
            }
            Backend::Postgres(url) => {
                let (reader, restored) = postgres::open(url, rx, Arc::clone(&health)).await?;
                (Reader::Postgres(reader), restored)
            }
        };
        let store = Store {
            writes: tx,
            fence: Arc::default(),
            reader,
            health,
        };
        Ok((store, restored))
    }

    /// Why the store cannot keep what it is given (writes failing, the database file
    /// removed or replaced), while it cannot: `/readyz` fails with it.
    pub fn problem(&self) -> Option<String> {
        self.health.problem()
    }

    /// Counts failed writes and a lost database file in `errors` (label `reason`).
    pub fn count_errors_in(&self, errors: prometheus::IntCounterVec) {
        self.health.count_in(errors);
    }

    fn send(&self, write: Write) {
        let fence = if write.is_leader_write() {
            self.current_fence()
        } else {
            None
        };
        let _ = self.writes.send(Queued::Write(write, fence));
    }

    fn current_fence(&self) -> Option<Arc<Fence>> {
        self.fence.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn save_target(&self, id: &str, detector: &Detector) {
        let detector = serde_json::to_string(detector).expect("detector serializes");
        self.send(Write::Target {
            id: id.to_string(),
            detector,
        });
    }

    /// Queues an alert event for a receiver; it stays until [`Store::settle`].
    pub fn enqueue(&self, receiver: &str, event: &AlertEvent, queued_at: Timestamp) {
        self.send(Write::Enqueue {
            receiver: receiver.to_string(),
            event: Box::new(event.clone()),
            queued_at,
        });
    }

    /// Removes a delivered (or abandoned) event from the outbox, once committed.
    pub async fn settle(&self, seq: i64) -> Result<(), StoreError> {
        self.send(Write::Settle(seq));
        self.flush().await
    }

    /// Records what `receiver` heard of `incident` (or forgets it with `None`).
    pub fn route(&self, receiver: &str, incident: &str, state: Option<RouteState>) {
        self.send(Write::Route {
            receiver: receiver.to_string(),
            incident: incident.to_string(),
            state,
        });
    }

    /// Drops what is queued for receivers no longer configured.
    pub fn discard_receivers_except(&self, names: Vec<String>) {
        self.send(Write::DiscardReceiversExcept(names));
    }

    /// Stores a new subscription with the hashes of its tokens (`None`: confirmed already).
    pub fn subscribe(
        &self,
        subscription: &Subscription,
        confirm_hash: Option<String>,
        unsubscribe_hash: String,
    ) {
        self.send(Write::Subscribe {
            subscription: Box::new(subscription.clone()),
            confirm_hash,
            unsubscribe_hash,
        });
    }

    pub fn confirm_subscription(&self, id: &str) {
        self.send(Write::ConfirmSubscription(id.to_string()));
    }

    /// Deletes a subscription, its address and what is queued for it.
    pub fn unsubscribe(&self, id: &str) {
        self.send(Write::Unsubscribe(id.to_string()));
    }

    /// Deletes the subscriptions created before `before` and never confirmed.
    pub fn expire_unconfirmed(&self, before: Timestamp) {
        self.send(Write::ExpireUnconfirmed(before.timestamp()));
    }

    /// Queues one notice (`body`, JSON) per subscription id.
    pub fn queue_notices(&self, subscriptions: Vec<String>, body: String, at: Timestamp) {
        self.send(Write::Notices {
            subscriptions,
            body,
            at: at.timestamp(),
        });
    }

    /// Stores a console session under `hash` (of its id), and forgets those expired at `now`.
    pub fn save_session(&self, hash: &str, session: &ConsoleSession, now: Timestamp) {
        self.send(Write::SaveSession {
            hash: hash.to_string(),
            session: Box::new(session.clone()),
            now: now.timestamp(),
        });
    }

    /// Ends the session stored under `hash` (a logout).
    pub fn delete_session(&self, hash: &str) {
        self.send(Write::DeleteSession(hash.to_string()));
    }

    /// The session stored under `hash`, unless it has expired at `now`.
    pub async fn session(
        &self,
        hash: String,
        now: Timestamp,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        read!(self, r => r.session(hash, now.timestamp()))
    }

    /// Removes a notice sent (or given up on).
    pub fn notice_done(&self, seq: i64) {
        self.send(Write::NoticeDone(seq));
    }

    /// Puts a notice off until `due`, after `attempts` failed attempts.
    pub fn notice_retry(&self, seq: i64, due: Timestamp, attempts: u32) {
        self.send(Write::NoticeRetry {
            seq,
            due: due.timestamp(),
            attempts,
        });
    }

    pub fn save_maintenance(&self, window: &MaintenanceWindow) {
        self.send(Write::Maintenance(window.clone()));
    }

    pub fn save_change(&self, change: &Change) {
        self.send(Write::Change(change.clone()));
    }

    pub fn save_incident(&self, incident: &Incident) {
        self.send(Write::Incident(Box::new(incident.clone())));
    }

    /// Adds a closed minute into its minute, hour and day rows.
    pub fn save_rollups(&self, minute: ClosedMinute) {
        self.send(Write::Rollups(minute));
    }

    /// Deletes minute rows (of every vantage too) that start more than `raw_retention`
    /// before `now`, and hour and day rows more than `rollup_retention` before.
    pub fn prune_rollups(
        &self,
        now: Timestamp,
        raw_retention: std::time::Duration,
        rollup_retention: std::time::Duration,
    ) {
        let before = |d: std::time::Duration| {
            now.timestamp()
                .saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        };
        self.send(Write::PruneRollups {
            minutes: before(raw_retention),
            rollups: before(rollup_retention),
        });
    }

    /// Runs `f` on the writer once every write queued before it is committed (failed
    /// writes are retried until they are): how the engine makes sure an incident is stored
    /// before it is alerted. Not
    /// run when leader writes before it were refused, nor when queued under a fence the
    /// writer has seen refused ([`StoreError::Fenced`]).
    pub fn after_commit(&self, f: impl FnOnce() + Send + 'static) {
        let hook = Queued::Hook(Hook::Then(Box::new(f)), self.current_fence());
        if let Err(mpsc::error::SendError(Queued::Hook(Hook::Then(f), _))) = self.writes.send(hook)
        {
            f();
        }
    }

    /// Waits until every write sent before this call is committed (for as long as failed
    /// writes take to be retried into the database); [`StoreError::Fenced`] when leader writes of its batch were refused, or the
    /// fence in effect has been seen refused.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(Queued::Hook(Hook::Flush(tx), self.current_fence()))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The oldest `limit` events queued for `receiver`, and how many are queued in all.
    pub async fn pending(
        &self,
        receiver: String,
        limit: usize,
    ) -> Result<(Vec<Pending>, usize), StoreError> {
        read!(self, r => r.pending(receiver, limit))
    }

    /// The subscription whose `kind` token hashes to `hash`.
    pub async fn subscription_by_token(
        &self,
        kind: TokenKind,
        hash: String,
    ) -> Result<Option<Subscription>, StoreError> {
        read!(self, r => r.subscription_by_token(kind, hash))
    }

    /// The confirmed subscriptions, oldest first.
    pub async fn confirmed_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        read!(self, r => r.confirmed_subscriptions())
    }

    /// Up to `limit` notices due at `now`, oldest first, and when the next one not yet due
    /// is.
    pub async fn due_notices(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Notice>, Option<Timestamp>), StoreError> {
        read!(self, r => r.due_notices(now.timestamp(), limit))
    }

    /// Maintenance windows registered through the API, by start.
    pub async fn maintenances(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        read!(self, r => r.maintenances())
    }

    /// Registered changes, newest first.
    pub async fn changes(&self, limit: usize) -> Result<Vec<Change>, StoreError> {
        read!(self, r => r.changes(limit))
    }

    /// The change registered with `id`.
    pub async fn change(&self, id: String) -> Result<Option<Change>, StoreError> {
        read!(self, r => r.change(id))
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        read!(self, r => r.incidents(filter))
    }

    pub async fn incident(&self, id: String) -> Result<Option<Incident>, StoreError> {
        read!(self, r => r.incident(id))
    }

    /// Uptime of every service with data, over each of [`crate::rollup::UPTIME_WINDOWS`]
    /// ending now: the stored rows before the open minute, at the coarsest resolution
    /// that fits, plus the open minute itself. Precise to the minute while minute rows are
    /// kept (`raw_retention`); a window starting earlier misses its first part-hour.
    pub async fn uptimes(
        &self,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<HashMap<String, Uptime>, StoreError> {
        read!(self, r => r.uptimes(now, open))
    }

    /// One service's last 90 days and 24 hours (see [`ServiceHistory`]): stored rows, and
    /// for today the open minute too.
    pub async fn service_history(
        &self,
        service: String,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<ServiceHistory, StoreError> {
        let mut one = self.services_history(vec![service], now, open).await?;
        Ok(one.pop().expect("one history per service asked for"))
    }

    /// [`Store::service_history`] of several services in one read, in the order given: a
    /// page showing them all scans the incidents once.
    pub async fn services_history(
        &self,
        services: Vec<String>,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<Vec<ServiceHistory>, StoreError> {
        read!(self, r => r.services_history(services, now, open))
    }
}

pub(crate) fn utc(unix: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(unix, 0).expect("a stored start is a valid time")
}

#[cfg(test)]
mod tests;
