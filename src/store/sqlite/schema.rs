//! The SQLite schema, as migrations, and how a connection is opened (WAL, relaxed fsync,
//! busy timeout).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;
use crate::store::migrate::{Migration, next};

/// In order; a released migration is never edited, a change is a new one. The first uses
/// `IF NOT EXISTS` because databases made before versioning already have its tables.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: "
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
CREATE TABLE IF NOT EXISTS rollup_minute (
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
CREATE INDEX IF NOT EXISTS rollup_minute_start ON rollup_minute (start);
CREATE TABLE IF NOT EXISTS rollup_hour (
    kind INTEGER NOT NULL, id TEXT NOT NULL, start INTEGER NOT NULL,
    probes INTEGER NOT NULL, failures INTEGER NOT NULL,
    latency_sum REAL NOT NULL, latency_max REAL NOT NULL, histogram BLOB NOT NULL,
    observed REAL NOT NULL, downtime REAL NOT NULL, maintenance REAL NOT NULL, worst INTEGER,
    PRIMARY KEY (kind, id, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_hour_start ON rollup_hour (start);
CREATE TABLE IF NOT EXISTS rollup_day (
    kind INTEGER NOT NULL, id TEXT NOT NULL, start INTEGER NOT NULL,
    probes INTEGER NOT NULL, failures INTEGER NOT NULL,
    latency_sum REAL NOT NULL, latency_max REAL NOT NULL, histogram BLOB NOT NULL,
    observed REAL NOT NULL, downtime REAL NOT NULL, maintenance REAL NOT NULL, worst INTEGER,
    PRIMARY KEY (kind, id, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollup_day_start ON rollup_day (start);
",
    },
    Migration {
        version: 2,
        name: "vantages",
        sql: "
CREATE TABLE vantage_state (
    target      TEXT NOT NULL,
    vantage     TEXT NOT NULL,
    state       TEXT NOT NULL,  -- unknown | up | degraded | down
    since       TEXT NOT NULL,  -- RFC 3339 UTC
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (target, vantage)
);
CREATE INDEX vantage_state_updated ON vantage_state (updated_at);
CREATE TABLE vantage_rollup_minute (
    vantage      TEXT NOT NULL,
    target       TEXT NOT NULL,
    start        INTEGER NOT NULL,
    probes       INTEGER NOT NULL,
    failures     INTEGER NOT NULL,
    latency_sum  REAL NOT NULL,
    latency_max  REAL NOT NULL,
    observed     REAL NOT NULL,
    downtime     REAL NOT NULL,
    PRIMARY KEY (vantage, target, start)
) WITHOUT ROWID;
CREATE INDEX vantage_rollup_minute_start ON vantage_rollup_minute (start);
",
    },
    // Routing keeps, per receiver and incident, when the last opened or updated went out
    // (`update_interval` counts from it; NULL: rows from before, not waiting) and whether
    // an update waits for that interval.
    Migration {
        version: 3,
        name: "update_interval",
        sql: "
ALTER TABLE route ADD COLUMN last_update TEXT;
ALTER TABLE route ADD COLUMN update_pending INTEGER NOT NULL DEFAULT 0;
",
    },
    // Service rollups count subscriber time, for availability weighted by subscribers:
    // subscribers × watched seconds, and affected subscribers × seconds. Rows from before
    // have 0 and no availability figure.
    Migration {
        version: 4,
        name: "subscriber_time",
        sql: "
ALTER TABLE rollup_minute ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE rollup_minute ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;
ALTER TABLE rollup_day ADD COLUMN user_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE rollup_day ADD COLUMN user_seconds_lost REAL NOT NULL DEFAULT 0;
",
    },
    // The database's epoch, in the ids of its incidents (see `Restored::epoch`): drawn
    // at random for a new database; empty for one that already has incidents, whose ids
    // keep their form.
    Migration {
        version: 5,
        name: "epoch",
        sql: "
CREATE TABLE store_epoch (epoch TEXT NOT NULL);
INSERT INTO store_epoch (epoch)
    SELECT CASE WHEN EXISTS (SELECT 1 FROM incident) THEN '' ELSE lower(hex(randomblob(4))) END;
",
    },
    // The status page's subscriptions (the only place their addresses are kept) and the
    // notices queued for them; times are Unix seconds.
    Migration {
        version: 6,
        name: "subscriptions",
        sql: "
CREATE TABLE subscription (
    id                TEXT PRIMARY KEY,
    confirm_hash      TEXT UNIQUE,
    unsubscribe_hash  TEXT NOT NULL UNIQUE,
    confirmed         BOOLEAN NOT NULL,
    created_at        INTEGER NOT NULL,
    body              TEXT NOT NULL
);
CREATE TABLE subscription_notice (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription  TEXT NOT NULL REFERENCES subscription (id) ON DELETE CASCADE,
    queued_at     INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    body          TEXT NOT NULL
);
CREATE INDEX subscription_notice_due ON subscription_notice (due_at);
",
    },
    // The NOC console's sessions, under the SHA-256 of their ids; times are Unix seconds.
    Migration {
        version: 7,
        name: "console_sessions",
        sql: "
CREATE TABLE console_session (
    hash        TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX console_session_expires ON console_session (expires_at);
",
    },
    // When each incident began and ended, as Unix seconds beside its body: the page's
    // history reads the incidents of its window without parsing every body ever stored.
    Migration {
        version: 8,
        name: "incident_span",
        sql: "
ALTER TABLE incident ADD COLUMN onset_unix INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incident ADD COLUMN resolved_unix INTEGER;
UPDATE incident SET
    onset_unix = COALESCE(CAST(strftime('%s', json_extract(body, '$.onset_at')) AS INTEGER), 0),
    resolved_unix = CAST(strftime('%s', json_extract(body, '$.resolved_at')) AS INTEGER);
CREATE INDEX incident_resolved ON incident (resolved_unix);
",
    },
];

/// Applies the migrations `conn`'s database lacks, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version     INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            applied_at  TEXT NOT NULL
        )",
    )?;
    loop {
        // IMMEDIATE: another process opening the same file waits rather than racing.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let Some(migration) = next(MIGRATIONS, current)? else {
            return Ok(());
        };
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                migration.version,
                migration.name,
                super::time_text(chrono::Utc::now())
            ],
        )?;
        tx.commit()?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "sqlite schema migrated"
        );
    }
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}
