//! The writer thread: every write the engine and the deliverers queue goes through one
//! thread that commits them in batches, one transaction each, so nothing blocking runs on
//! the async runtime and a batch of state changes is stored (or not) as a whole. One
//! instance owns a SQLite file, so fences are not checked. A batch that fails (a full
//! disk, an I/O error) is tried again, with backoff, until it is committed: what is queued
//! behind it waits, so writes land in order and with the times they were made.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::rollups::{write_rollups, write_vantage_rollups};
use super::time_text;
use crate::store::health::{Backoff, Health};
use crate::store::write::{Batch, Outcome, Queued, Refused, Write, Writes, status_str};
use crate::store::{StoreError, Subscription};

/// The writer thread: blocks for one write, then takes everything queued behind it and
/// commits the batch in one transaction, retrying it until it is. Ends when every handle
/// is gone (then a batch still failing is given up: nobody is left to wait for it).
pub(super) fn write_loop(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
) {
    // One instance owns the file: no fence is checked, none is ever refused.
    let mut refused = Refused::default();
    while let Some(batch) = Batch::blocking_next(&mut rx) {
        let mut backoff = Backoff::default();
        while let Err(e) = write_batch(&mut conn, &batch.writes) {
            let pause = backoff.next();
            health.write_failed(&e, pause);
            if rx.is_closed() {
                tracing::error!(
                    writes = batch.writes.list.len(),
                    "the store closed while its writes were failing: they are lost"
                );
                return;
            }
            std::thread::sleep(pause);
        }
        health.write_ok();
        batch.finish(Outcome::Committed, &mut refused);
    }
}

/// Writes a batch in one transaction.
fn write_batch(conn: &mut Connection, writes: &Writes) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for (write, _) in &writes.list {
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
                    "INSERT INTO incident (id, seq, status, services, body, onset_unix,
                        resolved_unix)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                        services = excluded.services, body = excluded.body,
                        onset_unix = excluded.onset_unix,
                        resolved_unix = excluded.resolved_unix",
                    params![
                        inc.id,
                        inc.seq as i64,
                        status_str(inc.status),
                        services,
                        serde_json::to_string(&inc)?,
                        inc.onset_at.timestamp(),
                        inc.resolved_at.map(|t| t.timestamp()),
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
                        time_text(*queued_at),
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
                state: Some(state),
            } => {
                tx.execute(
                    "INSERT INTO route (receiver, incident, last_sent, last_update, update_pending)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (receiver, incident) DO UPDATE SET last_sent = excluded.last_sent,
                        last_update = excluded.last_update,
                        update_pending = excluded.update_pending",
                    params![
                        receiver,
                        incident,
                        time_text(state.last_sent),
                        state.last_update.map(time_text),
                        state.update_pending
                    ],
                )?;
            }
            Write::Route {
                receiver,
                incident,
                state: None,
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
            Write::Rollups(minute) => write_rollups(&tx, minute)?,
            Write::PruneRollups { minutes, rollups } => {
                tx.execute("DELETE FROM rollup_minute WHERE start < ?1", [minutes])?;
                tx.execute("DELETE FROM rollup_hour WHERE start < ?1", [rollups])?;
                tx.execute("DELETE FROM rollup_day WHERE start < ?1", [rollups])?;
                tx.execute(
                    "DELETE FROM vantage_rollup_minute WHERE start < ?1",
                    [minutes],
                )?;
            }
            Write::VantageState(v) => {
                tx.execute(
                    "INSERT INTO vantage_state (target, vantage, state, since, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (target, vantage) DO UPDATE SET state = excluded.state,
                        since = excluded.since, updated_at = excluded.updated_at",
                    params![
                        v.target,
                        v.vantage,
                        v.state.as_str(),
                        time_text(v.since),
                        time_text(chrono::Utc::now())
                    ],
                )?;
            }
            Write::VantageRollups { vantage, minute } => {
                write_vantage_rollups(&tx, vantage, minute)?
            }
            Write::Subscribe {
                subscription: sub,
                confirm_hash,
                unsubscribe_hash,
            } => {
                tx.execute(
                    "INSERT INTO subscription
                        (id, confirm_hash, unsubscribe_hash, confirmed, created_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        sub.id,
                        confirm_hash,
                        unsubscribe_hash,
                        sub.confirmed,
                        sub.created_at.timestamp(),
                        serde_json::to_string(&sub)?
                    ],
                )?;
            }
            Write::ConfirmSubscription(id) => {
                let body: Option<String> = tx
                    .query_row("SELECT body FROM subscription WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(body) = body {
                    let mut sub: Subscription = serde_json::from_str(&body)?;
                    sub.confirmed = true;
                    tx.execute(
                        "UPDATE subscription SET confirmed = TRUE, confirm_hash = NULL, body = ?2
                         WHERE id = ?1",
                        params![id, serde_json::to_string(&sub)?],
                    )?;
                }
            }
            Write::Unsubscribe(id) => {
                tx.execute(
                    "DELETE FROM subscription_notice WHERE subscription = ?1",
                    [id],
                )?;
                tx.execute("DELETE FROM subscription WHERE id = ?1", [id])?;
            }
            Write::ExpireUnconfirmed(before) => {
                tx.execute(
                    "DELETE FROM subscription_notice WHERE subscription IN
                        (SELECT id FROM subscription WHERE NOT confirmed AND created_at < ?1)",
                    [before],
                )?;
                tx.execute(
                    "DELETE FROM subscription WHERE NOT confirmed AND created_at < ?1",
                    [before],
                )?;
            }
            Write::Notices {
                subscriptions,
                body,
                at,
            } => {
                for id in subscriptions {
                    tx.execute(
                        "INSERT INTO subscription_notice (subscription, queued_at, due_at, body)
                         SELECT id, ?2, ?2, ?3 FROM subscription WHERE id = ?1",
                        params![id, at, body],
                    )?;
                }
            }
            Write::NoticeDone(seq) => {
                tx.execute("DELETE FROM subscription_notice WHERE seq = ?1", [seq])?;
            }
            Write::SaveSession { hash, session, now } => {
                tx.execute("DELETE FROM console_session WHERE expires_at <= ?1", [now])?;
                tx.execute(
                    "INSERT INTO console_session (hash, expires_at, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (hash) DO UPDATE SET expires_at = ?2, body = ?3",
                    params![
                        hash,
                        session.expires_at.timestamp(),
                        serde_json::to_string(&session)?
                    ],
                )?;
            }
            Write::DeleteSession(hash) => {
                tx.execute("DELETE FROM console_session WHERE hash = ?1", [hash])?;
            }
            Write::NoticeRetry { seq, due, attempts } => {
                tx.execute(
                    "UPDATE subscription_notice SET due_at = ?2, attempts = ?3 WHERE seq = ?1",
                    params![seq, due, attempts],
                )?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::health::reason;
    use crate::store::sqlite::schema::{connect, migrate};

    /// A real "database or disk is full" (SQLite's page limit standing in for the disk):
    /// the batch fails whole, is counted as `disk_full`, and the same batch, tried again
    /// once there is room, lands in full.
    #[test]
    fn a_full_database_fails_the_batch_whole_and_takes_it_once_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&dir.path().join("tocsin.db")).unwrap();
        migrate(&mut conn).unwrap();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let writes = Writes {
            list: (0..100)
                .map(|i| {
                    let write = Write::Target {
                        id: format!("t{i}"),
                        detector: "x".repeat(4096),
                    };
                    (write, None)
                })
                .collect(),
            fences: Vec::new(),
        };
        let error = write_batch(&mut conn, &writes).unwrap_err();
        assert_eq!(reason(&error), "disk_full", "{error}");
        let count = |conn: &Connection| -> i64 {
            conn.query_row("SELECT COUNT(*) FROM target_state", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&conn), 0, "nothing of a failed batch is kept");
        conn.pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        write_batch(&mut conn, &writes).unwrap();
        assert_eq!(count(&conn), 100);
    }
}
