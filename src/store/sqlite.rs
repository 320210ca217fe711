//! SQLite store: WAL, one writer thread batching writes in transactions, reads on the
//! blocking pool. Holds target detector states, incidents (open and past) and rollups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::alert::AlertEvent;
use crate::clock::Timestamp;
use crate::detector::Detector;
use crate::incident::{Change, Incident, IncidentStatus, PastIncident};
use crate::rollup::{
    ClosedMinute, Counters, DAY, DayHistory, HOUR, Histogram, HistogramError, LatencyPoint,
    OpenMinute, Resolution, Seconds, ServiceHistory, Subject, UPTIME_WINDOWS, Uptime, cover,
    status_from_rank, status_rank,
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

enum Write {
    Target {
        id: String,
        detector: String,
    },
    Incident(Box<Incident>),
    Change(Change),
    Maintenance(MaintenanceWindow),
    Enqueue {
        receiver: String,
        event: Box<AlertEvent>,
        queued_at: Timestamp,
    },
    Settle(i64),
    Route {
        receiver: String,
        incident: String,
        last_sent: Option<Timestamp>,
    },
    DiscardReceiversExcept(Vec<String>),
    Rollups(ClosedMinute),
    /// Deletes minute rows starting before `minutes`, hour and day rows before `rollups`.
    PruneRollups {
        minutes: i64,
        rollups: i64,
    },
    Flush(oneshot::Sender<()>),
    /// Runs once every write queued before it is committed.
    Then(Box<dyn FnOnce() + Send>),
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS target_state (
    target     TEXT PRIMARY KEY,
    detector   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incident (
    id         TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    status     TEXT NOT NULL,
    services   TEXT NOT NULL,   -- ',voicemail,data,' for filtering
    body       TEXT NOT NULL    -- the incident as JSON
);
CREATE INDEX IF NOT EXISTS incident_status ON incident (status);
CREATE TABLE IF NOT EXISTS change (
    id         TEXT PRIMARY KEY,
    at         TEXT NOT NULL,   -- RFC 3339 UTC, sorts as time
    body       TEXT NOT NULL    -- the change as JSON
);
CREATE INDEX IF NOT EXISTS change_at ON change (at);
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver   TEXT NOT NULL,
    queued_at  TEXT NOT NULL,
    body       TEXT NOT NULL    -- the AlertEvent as JSON
);
CREATE INDEX IF NOT EXISTS outbox_receiver ON outbox (receiver, seq);
CREATE TABLE IF NOT EXISTS maintenance (
    id         TEXT PRIMARY KEY,
    ends_at    TEXT NOT NULL,
    body       TEXT NOT NULL    -- the window as JSON
);
CREATE TABLE IF NOT EXISTS route (
    receiver   TEXT NOT NULL,
    incident   TEXT NOT NULL,
    last_sent  TEXT NOT NULL,
    PRIMARY KEY (receiver, incident)
);
";

/// One rollup table per resolution (`minute`, `hour`, `day`), all of the same shape.
fn rollup_schema(resolution: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS rollup_{resolution} (
    kind         INTEGER NOT NULL,  -- 0 target, 1 service
    id           TEXT NOT NULL,
    start        INTEGER NOT NULL,  -- Unix seconds, UTC
    probes       INTEGER NOT NULL,
    failures     INTEGER NOT NULL,
    latency_sum  REAL NOT NULL,     -- seconds, successful probes
    latency_max  REAL NOT NULL,
    histogram    BLOB NOT NULL,     -- rollup::Histogram::to_bytes
    observed     REAL NOT NULL,     -- seconds
    downtime     REAL NOT NULL,
    maintenance  REAL NOT NULL,
    worst        INTEGER,           -- rollup::status_rank; NULL for targets
    PRIMARY KEY (kind, id, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_{resolution}_start ON rollup_{resolution} (start);
"
    )
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
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
        writer.execute_batch(SCHEMA)?;
        for resolution in ["minute", "hour", "day"] {
            writer.execute_batch(&rollup_schema(resolution))?;
        }
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
                        "SELECT id, SUM(observed), SUM(downtime), SUM(maintenance) FROM {}
                         WHERE kind = ?1 AND start >= ?2 AND start < ?3 GROUP BY id",
                        table(resolution)
                    ))?;
                    let rows = stmt.query_map(params![Subject::Service.code(), from, to], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            Seconds {
                                observed: r.get(1)?,
                                down: r.get(2)?,
                                maintenance: r.get(3)?,
                            },
                        ))
                    })?;
                    for row in rows {
                        let (id, seconds) = row?;
                        sums.entry(id).or_default()[w].add(seconds);
                    }
                }
                for (id, seconds) in &open.services {
                    sums.entry(id.clone()).or_default()[w].add(*seconds);
                }
            }
            Ok(sums
                .into_iter()
                .map(|(id, windows)| (id, Uptime::of(&windows)))
                .collect())
        })
        .await
    }

    /// One service's last 90 days and 24 hours (see [`ServiceHistory`]). From stored rows
    /// only, so it lags the live status by up to a minute.
    pub async fn service_history(
        &self,
        service: String,
        now: Timestamp,
    ) -> Result<ServiceHistory, StoreError> {
        let mut one = self.services_history(vec![service], now).await?;
        Ok(one.pop().expect("one history per service asked for"))
    }

    /// [`Store::service_history`] of several services in one read, in the order given: a
    /// page showing them all scans the incidents once.
    pub async fn services_history(
        &self,
        services: Vec<String>,
        now: Timestamp,
    ) -> Result<Vec<ServiceHistory>, StoreError> {
        self.read(move |conn| read_history(conn, &services, now))
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

fn table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Minute => "rollup_minute",
        Resolution::Hour => "rollup_hour",
        Resolution::Day => "rollup_day",
    }
}

/// Days in [`ServiceHistory::days`].
const HISTORY_DAYS: i64 = 90;

/// An incident as far as a service's history needs it.
#[derive(serde::Deserialize)]
struct IncidentSpan {
    id: String,
    onset_at: Timestamp,
    resolved_at: Option<Timestamp>,
    services: HashMap<String, serde::de::IgnoredAny>,
}

fn read_history(
    conn: &Connection,
    services: &[String],
    now: Timestamp,
) -> Result<Vec<ServiceHistory>, StoreError> {
    let today = Resolution::Day.floor(now.timestamp());
    let first_day = today - (HISTORY_DAYS - 1) * DAY;
    let first_hour = Resolution::Hour.floor(now.timestamp()) - 23 * HOUR;
    // The incident table has no time column: every body is read, once for all services.
    let mut spans = Vec::new();
    let mut stmt = conn.prepare("SELECT body FROM incident ORDER BY seq")?;
    for body in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let span: IncidentSpan = serde_json::from_str(&body?)?;
        if span.resolved_at.is_none_or(|t| t.timestamp() >= first_day) {
            spans.push(span);
        }
    }
    let mut days = conn.prepare_cached(
        "SELECT start, observed, downtime, maintenance, worst FROM rollup_day
         WHERE kind = ?1 AND id = ?2 AND start >= ?3",
    )?;
    let mut hours = conn.prepare_cached(
        "SELECT start, probes, failures, latency_sum, latency_max, histogram FROM rollup_hour
         WHERE kind = ?1 AND id = ?2 AND start >= ?3",
    )?;
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        let key = (Subject::Service.code(), service);
        let mut stored: HashMap<i64, (Seconds, Option<i64>)> = HashMap::new();
        for row in days.query_map(params![key.0, key.1, first_day], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Seconds {
                    observed: r.get(1)?,
                    down: r.get(2)?,
                    maintenance: r.get(3)?,
                },
                r.get::<_, Option<i64>>(4)?,
            ))
        })? {
            let (start, seconds, worst) = row?;
            stored.insert(start, (seconds, worst));
        }
        let mine: Vec<&IncidentSpan> = spans
            .iter()
            .filter(|s| s.services.contains_key(service))
            .collect();
        let days = (0..HISTORY_DAYS)
            .map(|i| {
                let start = first_day + i * DAY;
                let (seconds, worst) = stored.get(&start).copied().unwrap_or_default();
                DayHistory {
                    date: utc(start).date_naive(),
                    uptime: seconds.uptime(),
                    worst_status: worst.and_then(status_from_rank),
                    observed_seconds: seconds.observed,
                    downtime_seconds: seconds.down,
                    maintenance_seconds: seconds.maintenance,
                    incidents: mine
                        .iter()
                        .filter(|s| {
                            s.onset_at.timestamp() < start + DAY
                                && s.resolved_at.unwrap_or(now).timestamp() >= start
                        })
                        .map(|s| s.id.clone())
                        .collect(),
                }
            })
            .collect();
        let mut stored: HashMap<i64, Counters> = HashMap::new();
        for row in hours.query_map(params![key.0, key.1, first_hour], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })? {
            let (start, probes, failures, latency_sum, latency_max, histogram) = row?;
            let counters = Counters {
                probes: probes as u64,
                failures: failures as u64,
                latency_sum,
                latency_max,
                latency: Histogram::from_bytes(&histogram)?,
                ..Counters::default()
            };
            stored.insert(start, counters);
        }
        let latency = (0..24)
            .map(|i| {
                let start = first_hour + i * HOUR;
                LatencyPoint::of(start, stored.get(&start).unwrap_or(&Counters::default()))
            })
            .collect();
        out.push(ServiceHistory {
            service: service.clone(),
            days,
            latency,
        });
    }
    Ok(out)
}

/// Adds each row into its minute, hour and day rows: sums add, maxima and the worst status
/// keep the larger, histograms add bucket by bucket (merged here: SQL cannot).
fn write_rollups(tx: &Connection, minute: &ClosedMinute) -> Result<(), StoreError> {
    for resolution in Resolution::ALL {
        let table = table(resolution);
        let start = resolution.floor(minute.start);
        let mut existing = tx.prepare_cached(&format!(
            "SELECT histogram FROM {table} WHERE kind = ?1 AND id = ?2 AND start = ?3"
        ))?;
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO {table} (kind, id, start, probes, failures, latency_sum, latency_max,
                histogram, observed, downtime, maintenance, worst)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (kind, id, start) DO UPDATE SET
                probes = probes + excluded.probes,
                failures = failures + excluded.failures,
                latency_sum = latency_sum + excluded.latency_sum,
                latency_max = MAX(latency_max, excluded.latency_max),
                histogram = excluded.histogram,
                observed = observed + excluded.observed,
                downtime = downtime + excluded.downtime,
                maintenance = maintenance + excluded.maintenance,
                worst = NULLIF(MAX(COALESCE(worst, -1), COALESCE(excluded.worst, -1)), -1)"
        ))?;
        for row in &minute.rows {
            let kind = row.subject.code();
            let c = &row.counters;
            let mut histogram = c.latency.clone();
            let stored: Option<Vec<u8>> = existing
                .query_row(params![kind, row.id, start], |r| r.get(0))
                .optional()?;
            if let Some(bytes) = stored {
                // A damaged row must not make the batch (incidents, alerts) fail with it.
                match Histogram::from_bytes(&bytes) {
                    Ok(h) => histogram.merge(&h),
                    Err(e) => tracing::warn!(error = %e, table, id = %row.id, start,
                        "replacing a damaged latency histogram"),
                }
            }
            upsert.execute(params![
                kind,
                row.id,
                start,
                c.probes as i64,
                c.failures as i64,
                c.latency_sum,
                c.latency_max,
                histogram.to_bytes(),
                c.time.observed,
                c.time.down,
                c.time.maintenance,
                c.worst.map(status_rank),
            ])?;
        }
    }
    Ok(())
}

fn utc(unix: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(unix, 0).expect("a stored start is a valid time")
}

fn time_text(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn parse_time(text: &str) -> Result<Timestamp, StoreError> {
    text.parse()
        .map_err(|e: chrono::ParseError| StoreError::Time(e.to_string()))
}

fn status_str(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::Investigating => "investigating",
        IncidentStatus::Identified => "identified",
        IncidentStatus::Monitoring => "monitoring",
        IncidentStatus::Resolved => "resolved",
    }
}

/// The writer thread: blocks for one write, then takes everything queued behind it and
/// commits the batch in one transaction.
fn write_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let mut after = Vec::new();
        if let Err(e) = write_batch(&mut conn, batch, &mut after) {
            tracing::error!(error = %e, "store write failed");
        }
        for then in after {
            then();
        }
    }
}

/// Writes a batch in one transaction; what must wait for the commit goes into `after`.
fn write_batch(
    conn: &mut Connection,
    batch: Vec<Write>,
    after: &mut Vec<Box<dyn FnOnce() + Send>>,
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for write in batch {
        match write {
            Write::Target { id, detector } => {
                tx.execute(
                    "INSERT INTO target_state (target, detector) VALUES (?1, ?2)
                     ON CONFLICT (target) DO UPDATE SET detector = excluded.detector",
                    params![id, detector],
                )?;
            }
            Write::Incident(inc) => {
                let services = format!(
                    ",{},",
                    inc.services.keys().cloned().collect::<Vec<_>>().join(",")
                );
                tx.execute(
                    "INSERT INTO incident (id, seq, status, services, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                        services = excluded.services, body = excluded.body",
                    params![
                        inc.id,
                        inc.seq as i64,
                        status_str(inc.status),
                        services,
                        serde_json::to_string(&inc)?
                    ],
                )?;
            }
            Write::Change(change) => {
                tx.execute(
                    "INSERT INTO change (id, at, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at, body = excluded.body",
                    params![
                        change.id,
                        change
                            .at
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                        serde_json::to_string(&change)?
                    ],
                )?;
            }
            Write::Maintenance(w) => {
                tx.execute(
                    "INSERT INTO maintenance (id, ends_at, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at, body = excluded.body",
                    params![w.id, time_text(w.ends_at), serde_json::to_string(&w)?],
                )?;
            }
            Write::Enqueue {
                receiver,
                event,
                queued_at,
            } => {
                tx.execute(
                    "INSERT INTO outbox (receiver, queued_at, body) VALUES (?1, ?2, ?3)",
                    params![
                        receiver,
                        time_text(queued_at),
                        serde_json::to_string(&event)?
                    ],
                )?;
            }
            Write::Settle(seq) => {
                tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
            }
            Write::Route {
                receiver,
                incident,
                last_sent: Some(at),
            } => {
                tx.execute(
                    "INSERT INTO route (receiver, incident, last_sent) VALUES (?1, ?2, ?3)
                     ON CONFLICT (receiver, incident) DO UPDATE SET last_sent = excluded.last_sent",
                    params![receiver, incident, time_text(at)],
                )?;
            }
            Write::Route {
                receiver,
                incident,
                last_sent: None,
            } => {
                tx.execute(
                    "DELETE FROM route WHERE receiver = ?1 AND incident = ?2",
                    params![receiver, incident],
                )?;
            }
            Write::DiscardReceiversExcept(names) => {
                let keep = serde_json::to_string(&names)?;
                let dropped = tx.execute(
                    "DELETE FROM outbox WHERE receiver NOT IN (SELECT value FROM json_each(?1))",
                    [&keep],
                )?;
                tx.execute(
                    "DELETE FROM route WHERE receiver NOT IN (SELECT value FROM json_each(?1))",
                    [&keep],
                )?;
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "alerts queued for receivers no longer configured were dropped"
                    );
                }
            }
            Write::Rollups(minute) => write_rollups(&tx, &minute)?,
            Write::PruneRollups { minutes, rollups } => {
                tx.execute("DELETE FROM rollup_minute WHERE start < ?1", [minutes])?;
                tx.execute("DELETE FROM rollup_hour WHERE start < ?1", [rollups])?;
                tx.execute("DELETE FROM rollup_day WHERE start < ?1", [rollups])?;
            }
            Write::Flush(done) => after.push(Box::new(move || {
                let _ = done.send(());
            })),
            Write::Then(f) => after.push(f),
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::ComponentStatus;
    use crate::rollup::Row;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn service(id: &str, latencies: &[f64], failures: u64, time: Seconds) -> Row {
        let mut counters = Counters {
            probes: latencies.len() as u64 + failures,
            failures,
            time,
            ..Counters::default()
        };
        for &l in latencies {
            counters.latency_sum += l;
            counters.latency_max = counters.latency_max.max(l);
            counters.latency.record(l);
        }
        Row {
            subject: Subject::Service,
            id: id.to_string(),
            counters,
        }
    }

    fn seconds(observed: f64, down: f64, maintenance: f64) -> Seconds {
        Seconds {
            observed,
            down,
            maintenance,
        }
    }

    fn minute(start: &str, rows: Vec<Row>) -> ClosedMinute {
        ClosedMinute {
            start: t(start).timestamp(),
            rows,
        }
    }

    async fn count(store: &Store, table: &'static str, start: &str) -> i64 {
        let start = t(start).timestamp();
        store
            .read(move |c| {
                Ok(c.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE start = ?1"),
                    [start],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn minutes_add_up_into_hour_and_day_rows_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
        let mut before_midnight = service("voicemail", &[0.1], 1, seconds(60.0, 30.0, 0.0));
        before_midnight.counters.worst = Some(ComponentStatus::MajorOutage);
        let mut first_part = service("voicemail", &[0.2, 0.2, 0.4], 0, seconds(60.0, 0.0, 0.0));
        first_part.counters.worst = Some(ComponentStatus::DegradedPerformance);
        let mut second_part = service("voicemail", &[0.8], 0, seconds(20.0, 0.0, 20.0));
        second_part.counters.worst = Some(ComponentStatus::Operational);
        let target = Row {
            subject: Subject::Target,
            id: "voicemail".into(), // same id, other subject: kept apart
            counters: Counters {
                probes: 7,
                time: seconds(60.0, 60.0, 0.0),
                ..Counters::default()
            },
        };
        store.save_rollups(minute("2026-03-01T23:59:00Z", vec![before_midnight]));
        store.save_rollups(minute("2026-03-02T00:01:00Z", vec![first_part, target]));
        // The rest of the same minute, as after a restart.
        store.save_rollups(minute("2026-03-02T00:01:00Z", vec![second_part]));
        store.flush().await.unwrap();
        assert_eq!(
            count(&store, "rollup_minute", "2026-03-02T00:01:00Z").await,
            2
        );
        assert_eq!(
            count(&store, "rollup_hour", "2026-03-02T00:00:00Z").await,
            2
        );
        assert_eq!(count(&store, "rollup_day", "2026-03-01T00:00:00Z").await, 1);

        let now = t("2026-03-02T00:05:30Z");
        let history = store
            .service_history("voicemail".into(), now)
            .await
            .unwrap();
        assert_eq!(history.days.len(), 90);
        let today = &history.days[89];
        assert_eq!(today.date.to_string(), "2026-03-02");
        assert_eq!(today.observed_seconds, 80.0);
        assert_eq!(today.maintenance_seconds, 20.0);
        assert_eq!(today.uptime, Some(1.0));
        assert_eq!(
            today.worst_status,
            Some(ComponentStatus::DegradedPerformance)
        );
        let yesterday = &history.days[88];
        assert_eq!(yesterday.date.to_string(), "2026-03-01");
        assert_eq!(yesterday.uptime, Some(0.5));
        assert_eq!(yesterday.worst_status, Some(ComponentStatus::MajorOutage));
        assert!(
            history.days[..88]
                .iter()
                .all(|d| d.uptime.is_none() && d.worst_status.is_none())
        );

        assert_eq!(history.latency.len(), 24);
        let hour = &history.latency[23];
        assert_eq!(hour.start, t("2026-03-02T00:00:00Z"));
        assert_eq!((hour.probes, hour.failures), (4, 0));
        assert!((hour.avg_seconds.unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(hour.max_seconds, Some(0.8));
        let p95 = hour.p95_seconds.unwrap();
        assert!(
            (p95 / 0.8 - 1.0).abs() <= 0.0906,
            "p95 {p95} from merged histograms"
        );
        let last_hour = &history.latency[22];
        assert_eq!((last_hour.probes, last_hour.failures), (2, 1));
        assert_eq!(history.latency[0].probes, 0);
        assert_eq!(history.latency[0].avg_seconds, None);

        let open = OpenMinute {
            start: Some(t("2026-03-02T00:05:00Z").timestamp()),
            services: HashMap::from([("voicemail".to_string(), seconds(10.0, 10.0, 0.0))]),
        };
        let uptimes = store.uptimes(now, open).await.unwrap();
        let expected = 1.0 - (30.0 + 10.0) / (60.0 + 80.0 - 20.0 + 10.0);
        for window in [uptimes["voicemail"].last_24h, uptimes["voicemail"].last_90d] {
            assert!((window.unwrap() - expected).abs() < 1e-9, "{window:?}");
        }
        assert!(!uptimes.contains_key("web"));
    }

    #[tokio::test]
    async fn uptime_windows_read_each_stretch_once_at_the_coarsest_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
        // Down for one minute 3 days ago (in the 7d window, not the 24h one), and for one
        // minute 12 minutes ago (in both, read from minute rows).
        for (start, down) in [
            ("2026-02-27T08:30:00Z", 60.0),
            ("2026-03-02T09:48:00Z", 60.0),
            ("2026-03-02T09:49:00Z", 0.0),
        ] {
            store.save_rollups(minute(
                start,
                vec![service("web", &[], 0, seconds(60.0, down, 0.0))],
            ));
        }
        store.flush().await.unwrap();
        let now = t("2026-03-02T10:00:10Z");
        let uptimes = store.uptimes(now, OpenMinute::default()).await.unwrap();
        let web = uptimes["web"];
        assert_eq!(web.last_24h, Some(0.5));
        assert_eq!(web.last_7d, Some(1.0 - 120.0 / 180.0));
        assert_eq!(web.last_90d, web.last_7d);
    }

    #[tokio::test]
    async fn retention_removes_old_rows_and_keeps_recent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
        let row = || vec![service("web", &[0.01], 0, seconds(60.0, 0.0, 0.0))];
        store.save_rollups(minute("2025-01-01T12:00:00Z", row()));
        store.save_rollups(minute("2026-03-02T07:00:00Z", row()));
        store.save_rollups(minute("2026-03-02T09:40:00Z", row()));
        let hour = std::time::Duration::from_secs(3600);
        store.prune_rollups(t("2026-03-02T10:00:00Z"), hour, 30 * 24 * hour);
        store.flush().await.unwrap();

        assert_eq!(
            count(&store, "rollup_minute", "2026-03-02T09:40:00Z").await,
            1
        );
        assert_eq!(
            count(&store, "rollup_minute", "2026-03-02T07:00:00Z").await,
            0
        );
        assert_eq!(
            count(&store, "rollup_hour", "2026-03-02T07:00:00Z").await,
            1
        );
        assert_eq!(count(&store, "rollup_day", "2026-03-02T00:00:00Z").await, 1);
        assert_eq!(
            count(&store, "rollup_minute", "2025-01-01T12:00:00Z").await,
            0
        );
        assert_eq!(
            count(&store, "rollup_hour", "2025-01-01T12:00:00Z").await,
            0
        );
        assert_eq!(count(&store, "rollup_day", "2025-01-01T00:00:00Z").await, 0);
    }

    #[tokio::test]
    async fn history_lists_the_incidents_touching_each_day() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
        let incidents = [
            // Across midnight into the first of March.
            r#"{"id":"inc-1","onset_at":"2026-02-28T23:50:00Z","resolved_at":"2026-03-01T00:10:00Z","services":{"voicemail":{}}}"#,
            // Still open.
            r#"{"id":"inc-2","onset_at":"2026-03-02T00:01:00Z","resolved_at":null,"services":{"voicemail":{},"web":{}}}"#,
            r#"{"id":"inc-3","onset_at":"2026-03-01T05:00:00Z","resolved_at":"2026-03-01T06:00:00Z","services":{"web":{}}}"#,
            // Over before the 90 days.
            r#"{"id":"inc-0","onset_at":"2025-06-01T00:00:00Z","resolved_at":"2025-06-01T01:00:00Z","services":{"voicemail":{}}}"#,
        ];
        store
            .read(move |c| {
                for (seq, body) in incidents.iter().enumerate() {
                    c.execute(
                        "INSERT INTO incident (id, seq, status, services, body)
                         VALUES (?1, ?2, 'resolved', '', ?3)",
                        params![format!("x{seq}"), seq as i64, body],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let now = t("2026-03-02T12:00:00Z");
        let all = store
            .services_history(vec!["voicemail".into(), "web".into()], now)
            .await
            .unwrap();
        let ids = |h: &ServiceHistory, i: usize| h.days[i].incidents.join(",");
        let (vm, web) = (&all[0], &all[1]);
        assert_eq!(
            (vm.service.as_str(), web.service.as_str()),
            ("voicemail", "web")
        );
        assert_eq!(ids(vm, 87), "inc-1"); // 2026-02-28
        assert_eq!(ids(vm, 88), "inc-1");
        assert_eq!(ids(vm, 89), "inc-2");
        assert_eq!(ids(web, 88), "inc-3");
        assert_eq!(ids(web, 89), "inc-2");
        assert!(vm.days[..87].iter().all(|d| d.incidents.is_empty()));
    }
}
