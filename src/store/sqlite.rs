//! SQLite store: WAL, one writer thread batching writes in transactions, reads on the
//! blocking pool. Holds target detector states and incidents (open and past).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::detector::Detector;
use crate::incident::{Change, Incident, IncidentStatus, PastIncident};

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
}

enum Write {
    Target {
        id: String,
        detector: String,
    },
    Incident(Box<Incident>),
    Change(Change),
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
    Ok(restored)
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
            Write::Flush(done) => after.push(Box::new(move || {
                let _ = done.send(());
            })),
            Write::Then(f) => after.push(f),
        }
    }
    tx.commit()?;
    Ok(())
}
