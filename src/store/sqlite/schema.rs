//! The SQLite schema and how a connection is opened (WAL, relaxed fsync, busy timeout).

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The tables as first released; [`MIGRATIONS`] change them since, so that an existing
/// database and a new one end up alike.
pub(super) const SCHEMA: &str = "
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

/// Changes since [`SCHEMA`], in order; `PRAGMA user_version` counts those applied, and
/// each runs once, in the transaction that records it.
const MIGRATIONS: &[&str] = &[
    // 1. Routing keeps, per receiver and incident, when the last opened or updated went
    //    out (`update_interval` counts from it; NULL: rows from before, not waiting) and
    //    whether an update waits for that interval.
    "ALTER TABLE route ADD COLUMN last_update TEXT;
     ALTER TABLE route ADD COLUMN update_pending INTEGER NOT NULL DEFAULT 0;",
    // 2. Service rollups count subscriber time (availability weighted by subscribers):
    //    subscribers × watched seconds, and affected subscribers × seconds; 0 in rows from
    //    before, which then have no availability figure.
    "ALTER TABLE rollup_minute ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
     ALTER TABLE rollup_minute ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;
     ALTER TABLE rollup_hour ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
     ALTER TABLE rollup_hour ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;
     ALTER TABLE rollup_day ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
     ALTER TABLE rollup_day ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;",
];

/// Applies the migrations the database has not had yet.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (version, sql) in (1..).zip(MIGRATIONS).skip_while(|(v, _)| *v <= applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

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

/// Creates what is missing and brings the database to the current schema.
pub(super) fn create(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    for resolution in ["minute", "hour", "day"] {
        conn.execute_batch(&rollup_schema(resolution))?;
    }
    migrate(conn)
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
