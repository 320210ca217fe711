//! SQLite store: WAL, one writer thread batching writes in transactions, reads on the
//! blocking pool. Holds target detector states and incidents (open and past).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::alert::AlertEvent;
use crate::clock::Timestamp;
use crate::detector::Detector;
use crate::incident::{Change, Incident, IncidentStatus, PastIncident};
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
            Write::Flush(done) => after.push(Box::new(move || {
                let _ = done.send(());
            })),
            Write::Then(f) => after.push(f),
        }
    }
    tx.commit()?;
    Ok(())
}
