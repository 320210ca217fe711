//! SQLite store: WAL, one writer thread batching writes in transactions, reads on the
//! blocking pool. Holds target detector states, incidents (open and past), changes,
//! maintenance windows, the alert outbox, routing state and rollups.
//!
//! * `schema`: tables and connection settings;
//! * `writer`: the writer thread and its batches;
//! * `rollups`: rollup rows, written and read.

mod rollups;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use rollups::{SECONDS_SUMS, observed_since, read_history, seconds_at, table};
use schema::connect;
use writer::{Write, write_loop};

use crate::clock::Timestamp;
use crate::detector::Detector;
use crate::event::AlertEvent;
use crate::incident::{Change, Incident, PastIncident};
use crate::rollup::{
    ClosedMinute, HistogramError, OpenMinute, Resolution, Seconds, ServiceHistory, Subject,
    UPTIME_WINDOWS, Uptime, cover,
};
use crate::topology::MaintenanceWindow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
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
}

/// What a restart resumes from.
#[derive(Debug, Default)]
pub struct Restored {
    pub detectors: HashMap<String, Detector>,
    pub open_incidents: Vec<Incident>,
    /// Highest incident sequence number ever used (0 when none).
    pub last_seq: u64,
    /// Resolved incidents of the last 60 days, for recurrence.
    pub history: Vec<PastIncident>,
    /// Changes of the last 9 days, for suspected causes.
    pub changes: Vec<Change>,
    /// (receiver, incident, last sent): which receivers heard of which open incidents.
    pub routes: Vec<(String, String, Timestamp)>,
    /// Maintenance windows registered through the API that have not ended.
    pub maintenances: Vec<MaintenanceWindow>,
}

/// An alert event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event: AlertEvent,
    pub queued_at: Timestamp,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::UnboundedSender<Write>,
    reader: Arc<Mutex<Connection>>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// `Some(true)` open only, `Some(false)` resolved only.
    pub open: Option<bool>,
    pub service: Option<String>,
    pub limit: usize,
}

impl Store {
    /// Opens (creating when needed) the database and reads what a restart resumes from.
    pub async fn open(path: PathBuf) -> Result<(Store, Restored), StoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .expect("store open does not panic")
    }

    fn open_blocking(path: &Path) -> Result<(Store, Restored), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let writer = connect(path)?;
        schema::create(&writer)?;
        let restored = restore(&writer)?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("tocsin-store".into())
            .spawn(move || write_loop(writer, rx))
            .expect("spawning the store thread");
        Ok((
            Store {
                writes: tx,
                reader: Arc::new(Mutex::new(reader)),
            },
            restored,
        ))
    }

    pub fn save_target(&self, id: &str, detector: &Detector) {
        let detector = serde_json::to_string(detector).expect("detector serializes");
        let _ = self.writes.send(Write::Target {
            id: id.to_string(),
            detector,
        });
    }

    /// Queues an alert event for a receiver; it stays until [`Store::settle`].
    pub fn enqueue(&self, receiver: &str, event: &AlertEvent, queued_at: Timestamp) {
        let _ = self.writes.send(Write::Enqueue {
            receiver: receiver.to_string(),
            event: Box::new(event.clone()),
            queued_at,
        });
    }

    /// Removes a delivered (or abandoned) event from the outbox, once committed.
    pub async fn settle(&self, seq: i64) -> Result<(), StoreError> {
        self.writes
            .send(Write::Settle(seq))
            .map_err(|_| StoreError::Closed)?;
        self.flush().await
    }

    /// Records that `receiver` heard of `incident` (or forgets it with `None`).
    pub fn route(&self, receiver: &str, incident: &str, last_sent: Option<Timestamp>) {
        let _ = self.writes.send(Write::Route {
            receiver: receiver.to_string(),
            incident: incident.to_string(),
            last_sent,
        });
    }

    /// Drops what is queued for receivers no longer configured.
    pub fn discard_receivers_except(&self, names: Vec<String>) {
        let _ = self.writes.send(Write::DiscardReceiversExcept(names));
    }

    /// The oldest `limit` events queued for `receiver`, and how many are queued in all.
    pub async fn pending(
        &self,
        receiver: String,
        limit: usize,
    ) -> Result<(Vec<Pending>, usize), StoreError> {
        self.read(move |conn| {
            let total: i64 = conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE receiver = ?1",
                [&receiver],
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare(
                "SELECT seq, queued_at, body FROM outbox WHERE receiver = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![receiver, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, queued_at, body) = row?;
                out.push(Pending {
                    seq,
                    event: serde_json::from_str(&body)?,
                    queued_at: parse_time(&queued_at)?,
                });
            }
            Ok((out, total as usize))
        })
        .await
    }

    pub fn save_maintenance(&self, window: &MaintenanceWindow) {
        let _ = self.writes.send(Write::Maintenance(window.clone()));
    }

    /// Maintenance windows registered through the API, by start.
    pub async fn maintenances(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.read(|conn| read_maintenances(conn, None)).await
    }

    pub fn save_change(&self, change: &Change) {
        let _ = self.writes.send(Write::Change(change.clone()));
    }

    /// Registered changes, newest first.
    pub async fn changes(&self, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare("SELECT body FROM change ORDER BY at DESC, id LIMIT ?1")?;
            let rows = stmt.query_map([limit as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    /// The change registered with `id`.
    pub async fn change(&self, id: String) -> Result<Option<Change>, StoreError> {
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM change WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    pub fn save_incident(&self, incident: &Incident) {
        let _ = self
            .writes
            .send(Write::Incident(Box::new(incident.clone())));
    }

    /// Runs `f` on the store thread once every write queued before it is committed (or
    /// has failed): how the engine makes sure an incident is stored before it is alerted.
    pub fn after_commit(&self, f: impl FnOnce() + Send + 'static) {
        if let Err(mpsc::error::SendError(Write::Then(f))) =
            self.writes.send(Write::Then(Box::new(f)))
        {
            f();
        }
    }

    /// Waits until every write sent before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(Write::Flush(tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub async fn incidents(&self, filter: IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT body FROM incident WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            match filter.open {
                Some(true) => sql.push_str(" AND status != 'resolved'"),
                Some(false) => sql.push_str(" AND status = 'resolved'"),
                None => {}
            }
            if let Some(service) = &filter.service {
                sql.push_str(" AND services LIKE ?1 ESCAPE '\\'");
                let escaped = service
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                args.push(format!("%,{escaped},%"));
            }
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", filter.limit));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn incident(&self, id: String) -> Result<Option<Incident>, StoreError> {
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM incident WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    /// Adds a closed minute into its minute, hour and day rows.
    pub fn save_rollups(&self, minute: ClosedMinute) {
        let _ = self.writes.send(Write::Rollups(minute));
    }

    /// Deletes minute rows that start more than `raw_retention` before `now`, and hour and
    /// day rows more than `rollup_retention` before.
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
        let _ = self.writes.send(Write::PruneRollups {
            minutes: before(raw_retention),
            rollups: before(rollup_retention),
        });
    }

    /// Uptime of every service with data, over each of [`UPTIME_WINDOWS`] ending now: the
    /// stored rows before the open minute, at the coarsest resolution that fits (whole days
    /// from day rows, their edges from hour rows, the edges of those from minute rows; see
    /// [`cover`]), plus the open minute itself. Precise to the minute while minute rows are
    /// kept (`raw_retention`); a window starting earlier misses its first part-hour.
    pub async fn uptimes(
        &self,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<HashMap<String, Uptime>, StoreError> {
        self.read(move |conn| {
            let end = open
                .start
                .unwrap_or_else(|| Resolution::Minute.floor(now.timestamp()));
            let mut sums: HashMap<String, [Seconds; 4]> = HashMap::new();
            for (w, window) in UPTIME_WINDOWS.into_iter().enumerate() {
                for (resolution, from, to) in cover(end - window, end) {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT id, {SECONDS_SUMS} FROM {}
                         WHERE kind = ?1 AND start >= ?2 AND start < ?3 GROUP BY id",
                        table(resolution)
                    ))?;
                    let rows = stmt.query_map(params![Subject::Service.code(), from, to], |r| {
                        Ok((r.get::<_, String>(0)?, seconds_at(r, 1)?))
                    })?;
                    for row in rows {
                        let (id, seconds) = row?;
                        sums.entry(id).or_default()[w].add(seconds);
                    }
                }
                for (id, (seconds, _)) in &open.services {
                    sums.entry(id.clone()).or_default()[w].add(*seconds);
                }
            }
            let since = observed_since(conn, end - UPTIME_WINDOWS[3], &open)?;
            Ok(sums
                .into_iter()
                .map(|(id, windows)| {
                    let since = since.get(&id).copied();
                    (id, Uptime::of(&windows, since))
                })
                .collect())
        })
        .await
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
        self.read(move |conn| read_history(conn, &services, now, &open))
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn restore(conn: &Connection) -> Result<Restored, StoreError> {
    let mut restored = Restored::default();
    let mut stmt = conn.prepare("SELECT target, detector FROM target_state")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (id, detector) = row?;
        restored
            .detectors
            .insert(id, serde_json::from_str(&detector)?);
    }
    let mut stmt =
        conn.prepare("SELECT body FROM incident WHERE status != 'resolved' ORDER BY seq")?;
    for body in stmt.query_map([], |r| r.get::<_, String>(0))? {
        restored.open_incidents.push(serde_json::from_str(&body?)?);
    }
    let last: Option<i64> = conn.query_row("SELECT MAX(seq) FROM incident", [], |r| r.get(0))?;
    restored.last_seq = last.unwrap_or(0) as u64;
    let now = chrono::Utc::now();
    let mut stmt =
        conn.prepare("SELECT body FROM incident WHERE status = 'resolved' ORDER BY seq")?;
    for body in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let incident: Incident = serde_json::from_str(&body?)?;
        if now - incident.onset_at <= chrono::Duration::days(60) {
            restored.history.push(PastIncident::of(&incident));
        }
    }
    let since =
        (now - chrono::Duration::days(9)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut stmt = conn.prepare("SELECT body FROM change WHERE at >= ?1 ORDER BY at")?;
    for body in stmt.query_map([since], |r| r.get::<_, String>(0))? {
        restored.changes.push(serde_json::from_str(&body?)?);
    }
    restored.maintenances = read_maintenances(conn, Some(now))?;
    let mut stmt = conn.prepare("SELECT receiver, incident, last_sent FROM route")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (receiver, incident, last_sent) = row?;
        restored
            .routes
            .push((receiver, incident, parse_time(&last_sent)?));
    }
    Ok(restored)
}

/// Windows by start; with `ending_after`, only those that end after it.
fn read_maintenances(
    conn: &Connection,
    ending_after: Option<Timestamp>,
) -> Result<Vec<MaintenanceWindow>, StoreError> {
    let after = ending_after.map(time_text).unwrap_or_default();
    let mut stmt = conn.prepare("SELECT body FROM maintenance WHERE ends_at > ?1")?;
    let mut out: Vec<MaintenanceWindow> = Vec::new();
    for body in stmt.query_map([after], |r| r.get::<_, String>(0))? {
        out.push(serde_json::from_str(&body?)?);
    }
    out.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
    Ok(out)
}

pub(super) fn utc(unix: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(unix, 0).expect("a stored start is a valid time")
}

pub(super) fn time_text(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub(super) fn parse_time(text: &str) -> Result<Timestamp, StoreError> {
    text.parse()
        .map_err(|e: chrono::ParseError| StoreError::Time(e.to_string()))
}

#[cfg(test)]
mod tests;
