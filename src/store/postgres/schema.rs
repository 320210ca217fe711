//! The PostgreSQL schema, as migrations. Times are `timestamptz` (microseconds), rollup
//! starts Unix seconds as in SQLite, records JSON text.

use deadpool_postgres::Client;

use crate::store::StoreError;
use crate::store::migrate::{Migration, next};

/// In order; a released migration is never edited, a change is a new one.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: "
CREATE TABLE target_state (
    target     TEXT PRIMARY KEY,
    detector   TEXT NOT NULL    -- the detector as JSON
);
CREATE TABLE incident (
    id         TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL UNIQUE,
    status     TEXT NOT NULL,
    services   TEXT[] NOT NULL,
    body       TEXT NOT NULL    -- the incident as JSON
);
CREATE INDEX incident_status ON incident (status);
CREATE TABLE change (
    id         TEXT PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX change_at ON change (at);
CREATE TABLE outbox (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver   TEXT NOT NULL,
    queued_at  TIMESTAMPTZ NOT NULL,
    body       TEXT NOT NULL    -- the AlertEvent as JSON
);
CREATE INDEX outbox_receiver ON outbox (receiver, seq);
CREATE TABLE maintenance (
    id         TEXT PRIMARY KEY,
    ends_at    TIMESTAMPTZ NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE route (
    receiver   TEXT NOT NULL,
    incident   TEXT NOT NULL,
    last_sent  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (receiver, incident)
);
CREATE TABLE rollup_minute (
    kind         SMALLINT NOT NULL,          -- 0 target, 1 service
    id           TEXT NOT NULL,
    start        BIGINT NOT NULL,            -- Unix seconds, UTC
    probes       BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    latency_sum  DOUBLE PRECISION NOT NULL,  -- seconds, successful probes
    latency_max  DOUBLE PRECISION NOT NULL,
    histogram    BYTEA NOT NULL,             -- rollup::Histogram::to_bytes
    observed     DOUBLE PRECISION NOT NULL,  -- seconds
    downtime     DOUBLE PRECISION NOT NULL,
    maintenance  DOUBLE PRECISION NOT NULL,
    worst        SMALLINT,                   -- rollup::status_rank; NULL for targets
    PRIMARY KEY (kind, id, start)
);
CREATE INDEX rollup_minute_start ON rollup_minute (start);
CREATE TABLE rollup_hour (LIKE rollup_minute INCLUDING ALL);
CREATE TABLE rollup_day (LIKE rollup_minute INCLUDING ALL);
",
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: "
CREATE TABLE cluster_member (
    instance_id  TEXT PRIMARY KEY,
    vantage      TEXT NOT NULL,
    lease_until  TIMESTAMPTZ NOT NULL
);
CREATE TABLE leader_lease (
    scope        TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    token        BIGINT NOT NULL,            -- the fencing token: only ever increases
    lease_until  TIMESTAMPTZ NOT NULL
);
CREATE TABLE vantage_state (
    target       TEXT NOT NULL,
    vantage      TEXT NOT NULL,
    state        TEXT NOT NULL,              -- unknown | up | degraded | down
    since        TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (target, vantage)
);
CREATE INDEX vantage_state_updated ON vantage_state (updated_at);
CREATE TABLE vantage_rollup_minute (
    vantage      TEXT NOT NULL,
    target       TEXT NOT NULL,
    start        BIGINT NOT NULL,
    probes       BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    latency_sum  DOUBLE PRECISION NOT NULL,
    latency_max  DOUBLE PRECISION NOT NULL,
    observed     DOUBLE PRECISION NOT NULL,
    downtime     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (vantage, target, start)
);
CREATE INDEX vantage_rollup_minute_start ON vantage_rollup_minute (start);
",
    },
    // Routing keeps when the last opened or updated went out to a receiver and whether an
    // update waits for its `update_interval`.
    Migration {
        version: 3,
        name: "update_interval",
        sql: "
ALTER TABLE route ADD COLUMN last_update TIMESTAMPTZ;
ALTER TABLE route ADD COLUMN update_pending BOOLEAN NOT NULL DEFAULT false;
",
    },
    // Service rollups count subscriber time, for availability weighted by subscribers.
    Migration {
        version: 4,
        name: "subscriber_time",
        sql: "
ALTER TABLE rollup_minute ADD COLUMN user_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE rollup_minute ADD COLUMN user_seconds_lost DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN user_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE rollup_hour ADD COLUMN user_seconds_lost DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE rollup_day ADD COLUMN user_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE rollup_day ADD COLUMN user_seconds_lost DOUBLE PRECISION NOT NULL DEFAULT 0;
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
    SELECT CASE WHEN EXISTS (SELECT 1 FROM incident) THEN '' ELSE substr(md5(random()::TEXT || clock_timestamp()::TEXT), 1, 8) END;
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
    created_at        BIGINT NOT NULL,
    body              TEXT NOT NULL
);
CREATE TABLE subscription_notice (
    seq           BIGSERIAL PRIMARY KEY,
    subscription  TEXT NOT NULL REFERENCES subscription (id) ON DELETE CASCADE,
    queued_at     BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
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
    expires_at  BIGINT NOT NULL,
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
ALTER TABLE incident ADD COLUMN onset_unix BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN resolved_unix BIGINT;
UPDATE incident SET
    onset_unix = COALESCE(FLOOR(EXTRACT(EPOCH FROM (body::jsonb ->> 'onset_at')::timestamptz)), 0),
    resolved_unix = FLOOR(EXTRACT(EPOCH FROM (body::jsonb ->> 'resolved_at')::timestamptz));
CREATE INDEX incident_resolved ON incident (resolved_unix);
",
    },
];

/// Serializes instances migrating the same database ("tocsin" in ASCII).
const MIGRATION_LOCK: i64 = 0x746f_6373_696e;

/// Applies the migrations the database lacks, each in its own transaction.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    loop {
        let tx = client.transaction().await?;
        // Instances starting together would race to create the same tables: the first
        // migrates, the others wait here and then find nothing left to do. The lock is the
        // transaction's, so it ends with it whatever becomes of the session; it guards
        // only this (leadership is a lease row, see `cluster`).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     BIGINT PRIMARY KEY,
                name        TEXT NOT NULL,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        let Some(migration) = next(MIGRATIONS, current)? else {
            tx.commit().await?;
            return Ok(());
        };
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "postgres schema migrated"
        );
    }
}
