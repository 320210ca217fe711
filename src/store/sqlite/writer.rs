//! The writer thread: every write the engine and the deliverers queue goes through one
//! thread that commits them in batches, one transaction each, so nothing blocking runs on
//! the async runtime and a batch of state changes is stored (or not) as a whole.

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot};

use super::rollups::write_rollups;
use super::time_text;
use super::{RouteState, StoreError};
use crate::clock::Timestamp;
use crate::event::AlertEvent;
use crate::incident::{Change, Incident, IncidentStatus};
use crate::rollup::ClosedMinute;
use crate::topology::MaintenanceWindow;

pub(super) enum Write {
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
        state: Option<RouteState>,
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
pub(super) fn write_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Write>) {
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
