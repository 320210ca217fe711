//! The SQLite schema and how a connection is opened (WAL, relaxed fsync, busy timeout).

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

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
    user_seconds REAL NOT NULL DEFAULT 0,       -- services: subscribers × watched seconds
    user_seconds_lost REAL NOT NULL DEFAULT 0,  -- services: affected subscribers × seconds
    PRIMARY KEY (kind, id, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_{resolution}_start ON rollup_{resolution} (start);
"
    )
}

/// Columns added to the rollup tables after their first release, added to a database
/// created before them (with their default: no subscriber time counted then).
const ROLLUP_COLUMNS_ADDED: [&str; 2] = [
    "user_seconds REAL NOT NULL DEFAULT 0",
    "user_seconds_lost REAL NOT NULL DEFAULT 0",
];

/// Creates what is missing: tables, indexes, and columns added since a database was made.
pub(super) fn create(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    for resolution in ["minute", "hour", "day"] {
        conn.execute_batch(&rollup_schema(resolution))?;
        let table = format!("rollup_{resolution}");
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
        let columns: Vec<String> = stmt
            .query_map([&table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for column in ROLLUP_COLUMNS_ADDED {
            let name = column.split(' ').next().expect("a column definition");
            if !columns.iter().any(|c| c == name) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column}"))?;
            }
        }
    }
    Ok(())
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
