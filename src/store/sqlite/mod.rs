//! SQLite store: WAL, one writer thread batching writes in transactions, reads on the
//! blocking pool, from a second connection. The database file is checked every
//! [`FILE_CHECK`] against the one opened: removed or replaced under the running daemon,
//! what tocsin stores would vanish at the next restart, so the store reports it.
//!
//! * `schema`: migrations and connection settings;
//! * `writer`: the writer thread and its batches;
//! * `rollups`: rollup rows, written and read.

mod rollups;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use rollups::{read_history, read_uptimes};
use schema::{connect, migrate};
use writer::write_loop;

use super::cluster::parse_state;
use super::health::Health;
use super::write::Queued;
use super::{
    ConsoleSession, IncidentFilter, Notice, Pending, Reported, Restored, RouteState, StoreError,
    Subscription, TokenKind, VantageMinute, VantageState,
};
use crate::clock::Timestamp;
use crate::incident::{Change, Incident, PastIncident};
use crate::rollup::{OpenMinute, ServiceHistory, Uptime};
use crate::topology::MaintenanceWindow;

/// Reads of a SQLite store, on their own connection.
#[derive(Clone)]
pub struct Reader {
    conn: Arc<Mutex<Connection>>,
}

/// How often the database file is compared with the one opened.
pub const FILE_CHECK: Duration = Duration::from_secs(5);

/// Opens (creating when needed) the database, migrates it, reads what a restart resumes
/// from and starts the writer thread on `writes` and the check of the file.
pub(super) async fn open(
    path: PathBuf,
    writes: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
) -> Result<(Reader, Restored), StoreError> {
    let watched = path.clone();
    let writer_health = Arc::clone(&health);
    let (reader, restored, opened) =
        tokio::task::spawn_blocking(move || open_blocking(&path, writes, writer_health))
            .await
            .expect("store open does not panic")?;
    tokio::spawn(watch_file(watched, opened, Arc::downgrade(&health)));
    Ok((reader, restored))
}

/// The device and inode of the file at `path`: what stays the same while it is the file
/// opened, whatever is written to it.
fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Compares the file at `path` with the one opened every [`FILE_CHECK`], until the store
/// is gone.
async fn watch_file(path: PathBuf, opened: (u64, u64), health: Weak<Health>) {
    let mut every = tokio::time::interval(FILE_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(health) = health.upgrade() else {
            return;
        };
        let p = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || identity(&p)).await else {
            return; // the runtime is shutting down
        };
        let shown = path.display();
        let lost = match now {
            Ok(id) if id == opened => None,
            Ok(_) => Some(format!(
                "database file {shown} was replaced by another file"
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("database file {shown} was removed"))
            }
            Err(e) => Some(format!("database file {shown} cannot be checked: {e}")),
        };
        health.file_checked(lost);
    }
}

fn open_blocking(
    path: &Path,
    writes: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
) -> Result<(Reader, Restored, (u64, u64)), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut writer = connect(path)?;
    migrate(&mut writer)?;
    let restored = restore(&writer)?;
    let reader = connect(path)?;
    let opened = identity(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    std::thread::Builder::new()
        .name("tocsin-store".into())
        .spawn(move || write_loop(writer, writes, health))
        .expect("spawning the store thread");
    Ok((
        Reader {
            conn: Arc::new(Mutex::new(reader)),
        },
        restored,
        opened,
    ))
}

impl Reader {
    pub(super) async fn pending(
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

    pub(super) async fn subscription_by_token(
        &self,
        kind: TokenKind,
        hash: String,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = match kind {
            TokenKind::Confirm => "SELECT body FROM subscription WHERE confirm_hash = ?1",
            TokenKind::Unsubscribe => "SELECT body FROM subscription WHERE unsubscribe_hash = ?1",
        };
        self.read(move |conn| {
            let body: Option<String> = conn.query_row(sql, [&hash], |r| r.get(0)).optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    pub(super) async fn session(
        &self,
        hash: String,
        now: i64,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM console_session WHERE hash = ?1 AND expires_at > ?2",
                    params![hash, now],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    pub(super) async fn confirmed_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT body FROM subscription WHERE confirmed ORDER BY created_at, id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn due_notices(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<(Vec<Notice>, Option<Timestamp>), StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT n.seq, n.queued_at, n.attempts, n.body, s.body
                 FROM subscription_notice n JOIN subscription s ON s.id = n.subscription
                 WHERE n.due_at <= ?1 ORDER BY n.seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, queued_at, attempts, body, sub) = row?;
                out.push(Notice {
                    seq,
                    subscription: serde_json::from_str(&sub)?,
                    body,
                    queued_at: super::utc(queued_at),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                });
            }
            let next: Option<i64> = conn.query_row(
                "SELECT MIN(due_at) FROM subscription_notice WHERE due_at > ?1",
                [now],
                |r| r.get(0),
            )?;
            Ok((out, next.map(super::utc)))
        })
        .await
    }

    pub(super) async fn maintenances(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        self.read(|conn| read_maintenances(conn, None)).await
    }

    pub(super) async fn changes(&self, limit: usize) -> Result<Vec<Change>, StoreError> {
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

    pub(super) async fn change(&self, id: String) -> Result<Option<Change>, StoreError> {
        self.read(move |conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM change WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    pub(super) async fn incidents(
        &self,
        filter: IncidentFilter,
    ) -> Result<Vec<Incident>, StoreError> {
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

    pub(super) async fn incident(&self, id: String) -> Result<Option<Incident>, StoreError> {
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

    pub(super) async fn uptimes(
        &self,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<HashMap<String, Uptime>, StoreError> {
        self.read(move |conn| read_uptimes(conn, now, open)).await
    }

    pub(super) async fn services_history(
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
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// What vantages publish, read back.
impl Reader {
    pub(super) async fn vantage_states(
        &self,
        since: Timestamp,
    ) -> Result<Vec<Reported>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT target, vantage, state, since, updated_at FROM vantage_state
                 WHERE updated_at > ?1 ORDER BY updated_at, target, vantage",
            )?;
            let rows = stmt.query_map([time_text(since)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (target, vantage, state, since, updated_at) = row?;
                out.push(Reported {
                    state: VantageState {
                        target,
                        vantage,
                        state: parse_state(&state)?,
                        since: parse_time(&since)?,
                    },
                    updated_at: parse_time(&updated_at)?,
                });
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn vantage_minutes(
        &self,
        start: i64,
    ) -> Result<Vec<VantageMinute>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT vantage, target, start, probes, failures, latency_sum, latency_max,
                    observed, downtime
                 FROM vantage_rollup_minute WHERE start >= ?1 ORDER BY start, vantage, target",
            )?;
            let rows = stmt.query_map([start], |r| {
                Ok(VantageMinute {
                    vantage: r.get(0)?,
                    target: r.get(1)?,
                    start: r.get(2)?,
                    probes: r.get::<_, i64>(3)? as u64,
                    failures: r.get::<_, i64>(4)? as u64,
                    latency_sum: r.get(5)?,
                    latency_max: r.get(6)?,
                    observed: r.get(7)?,
                    down: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
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
    restored.epoch = conn.query_row("SELECT epoch FROM store_epoch", [], |r| r.get(0))?;
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
    let mut stmt = conn
        .prepare("SELECT receiver, incident, last_sent, last_update, update_pending FROM route")?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })? {
        let (receiver, incident, last_sent, last_update, update_pending) = row?;
        let state = RouteState {
            last_sent: parse_time(&last_sent)?,
            last_update: last_update.as_deref().map(parse_time).transpose()?,
            update_pending,
        };
        restored.routes.push((receiver, incident, state));
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

pub(super) fn time_text(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub(super) fn parse_time(text: &str) -> Result<Timestamp, StoreError> {
    text.parse()
        .map_err(|e: chrono::ParseError| StoreError::Time(e.to_string()))
}
