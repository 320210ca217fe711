//! The writer task: commits what is queued as one transaction, in order. Leader writes
//! carry a fence, checked in the same transaction against the lease row; a batch that
//! fails (the database unreachable, out of space) is retried, on a new connection, until
//! it lands, so that nothing accepted is lost.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use tokio::sync::mpsc;

use super::rollups::{write_rollups, write_vantage_rollups};
use super::{execute, query};
use crate::store::health::{Backoff, Health};
use crate::store::write::{Batch, Fence, Outcome, Queued, Refused, Write, Writes, status_str};
use crate::store::{StoreError, Subscription};

/// Holds while `holder` leads `scope` with `token`. `FOR SHARE` keeps the row as it is
/// until this transaction ends: a successor's takeover waits for the commit, so it reads
/// (restores) everything the former leader stored, and nothing lands after it.
const FENCE_CHECK: &str = "SELECT 1 FROM leader_lease
    WHERE scope = $1 AND holder = $2 AND token = $3 AND lease_until > now() FOR SHARE";

/// Ends when every handle is gone (then a batch still failing is given up: nobody is
/// left to wait for it).
pub(super) async fn write_loop(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
) {
    let mut refused = Refused::default();
    while let Some(batch) = Batch::next(&mut rx).await {
        let Some(outcome) = commit(&pool, &batch.writes, &health, &rx).await else {
            tracing::error!(
                writes = batch.writes.list.len(),
                "the store closed while its writes were failing: they are lost"
            );
            return;
        };
        batch.finish(outcome, &mut refused);
    }
}

/// Commits `batch`, retrying with backoff whatever the error (the database restarting,
/// the network, a full disk); writes queued meanwhile wait behind it. `None` when the
/// store closed while it was failing.
async fn commit(
    pool: &Pool,
    writes: &Writes,
    health: &Health,
    rx: &mpsc::UnboundedReceiver<Queued>,
) -> Option<Outcome> {
    let mut backoff = Backoff::default();
    loop {
        match write_batch(pool, writes).await {
            Ok(stale) => {
                health.write_ok();
                return Some(stale.map_or(Outcome::Committed, Outcome::Fenced));
            }
            Err(e) => {
                let pause = backoff.next();
                health.write_failed(&e, pause);
                if rx.is_closed() {
                    return None;
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Writes a batch in one transaction; the writes made under a fence that no longer holds
/// are left out, and that fence returned.
async fn write_batch(pool: &Pool, writes: &Writes) -> Result<Option<Arc<Fence>>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut stale = Vec::new();
    for fence in &writes.fences {
        let held = query(
            &tx,
            FENCE_CHECK,
            &[&fence.scope, &fence.holder, &fence.token],
        )
        .await?;
        if held.is_empty() {
            stale.push(Arc::clone(fence));
        }
    }
    // Target states and vantage states are only ever replaced, so each batch writes the
    // last of each in one statement: at a mass outage (or a shutdown) that is one round
    // trip, not one per target.
    let mut targets = Latest::default();
    let mut states = Latest::default();
    for (write, fence) in &writes.list {
        if fence.as_ref().is_some_and(|f| stale.contains(f)) {
            continue;
        }
        match write {
            Write::Target { id, detector } => targets.put(id.clone(), (id, detector)),
            Write::VantageState(v) => states.put(format!("{}\n{}", v.target, v.vantage), v),
            other => write_one(&tx, other).await?,
        }
    }
    if !targets.is_empty() {
        let (ids, detectors): (Vec<&str>, Vec<&str>) = targets
            .into_values()
            .into_iter()
            .map(|(id, d)| (id.as_str(), d.as_str()))
            .unzip();
        execute(
            &tx,
            "INSERT INTO target_state (target, detector)
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[])
             ON CONFLICT (target) DO UPDATE SET detector = excluded.detector",
            &[&ids, &detectors],
        )
        .await?;
    }
    if !states.is_empty() {
        let states = states.into_values();
        let column = |f: fn(&crate::store::VantageState) -> &str| -> Vec<&str> {
            states.iter().map(|v| f(v)).collect()
        };
        let since: Vec<_> = states.iter().map(|v| v.since).collect();
        execute(
            &tx,
            "INSERT INTO vantage_state (target, vantage, state, since, updated_at)
             SELECT t, v, s, at, now()
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TIMESTAMPTZ[]) AS u(t, v, s, at)
             ON CONFLICT (target, vantage) DO UPDATE SET state = excluded.state,
                since = excluded.since, updated_at = excluded.updated_at",
            &[
                &column(|v| &v.target),
                &column(|v| &v.vantage),
                &column(|v| v.state.as_str()),
                &since,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(stale.into_iter().next())
}

/// The last value put under each key, in the order keys were first put.
struct Latest<T> {
    index: HashMap<String, usize>,
    values: Vec<T>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest {
            index: HashMap::new(),
            values: Vec::new(),
        }
    }
}

impl<T> Latest<T> {
    fn put(&mut self, key: String, value: T) {
        match self.index.get(&key) {
            Some(&i) => self.values[i] = value,
            None => {
                self.index.insert(key, self.values.len());
                self.values.push(value);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn into_values(self) -> Vec<T> {
        self.values
    }
}

async fn write_one(tx: &Transaction<'_>, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Target { .. } | Write::VantageState(_) => {
            unreachable!("written together by write_batch")
        }
        Write::Incident(inc) => {
            let services: Vec<&str> = inc.services.keys().map(String::as_str).collect();
            execute(
                tx,
                "INSERT INTO incident (id, seq, status, services, body, onset_unix,
                    resolved_unix)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                    services = excluded.services, body = excluded.body,
                    onset_unix = excluded.onset_unix, resolved_unix = excluded.resolved_unix",
                &[
                    &inc.id,
                    &(inc.seq as i64),
                    &status_str(inc.status),
                    &services,
                    &serde_json::to_string(&inc)?,
                    &inc.onset_at.timestamp(),
                    &inc.resolved_at.map(|t| t.timestamp()),
                ],
            )
            .await?;
        }
        Write::Change(change) => {
            execute(
                tx,
                "INSERT INTO change (id, at, body) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at, body = excluded.body",
                &[&change.id, &change.at, &serde_json::to_string(&change)?],
            )
            .await?;
        }
        Write::Maintenance(w) => {
            execute(
                tx,
                "INSERT INTO maintenance (id, ends_at, body) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at, body = excluded.body",
                &[&w.id, &w.ends_at, &serde_json::to_string(&w)?],
            )
            .await?;
        }
        Write::Enqueue {
            receiver,
            event,
            queued_at,
        } => {
            execute(
                tx,
                "INSERT INTO outbox (receiver, queued_at, body) VALUES ($1, $2, $3)",
                &[receiver, queued_at, &serde_json::to_string(&event)?],
            )
            .await?;
        }
        Write::Settle(seq) => {
            execute(tx, "DELETE FROM outbox WHERE seq = $1", &[seq]).await?;
        }
        Write::Route {
            receiver,
            incident,
            state: Some(state),
        } => {
            execute(
                tx,
                "INSERT INTO route (receiver, incident, last_sent, last_update, update_pending)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (receiver, incident) DO UPDATE SET last_sent = excluded.last_sent,
                    last_update = excluded.last_update,
                    update_pending = excluded.update_pending",
                &[
                    receiver,
                    incident,
                    &state.last_sent,
                    &state.last_update,
                    &state.update_pending,
                ],
            )
            .await?;
        }
        Write::Route {
            receiver,
            incident,
            state: None,
        } => {
            execute(
                tx,
                "DELETE FROM route WHERE receiver = $1 AND incident = $2",
                &[receiver, incident],
            )
            .await?;
        }
        Write::DiscardReceiversExcept(names) => {
            let dropped = execute(
                tx,
                "DELETE FROM outbox WHERE receiver <> ALL ($1::TEXT[])",
                &[names],
            )
            .await?;
            execute(
                tx,
                "DELETE FROM route WHERE receiver <> ALL ($1::TEXT[])",
                &[names],
            )
            .await?;
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "alerts queued for receivers no longer configured were dropped"
                );
            }
        }
        Write::Rollups(minute) => write_rollups(tx, minute).await?,
        Write::PruneRollups { minutes, rollups } => {
            for (table, before) in [
                ("rollup_minute", minutes),
                ("rollup_hour", rollups),
                ("rollup_day", rollups),
                ("vantage_rollup_minute", minutes),
            ] {
                execute(
                    tx,
                    &format!("DELETE FROM {table} WHERE start < $1"),
                    &[before],
                )
                .await?;
            }
        }
        Write::VantageRollups { vantage, minute } => {
            write_vantage_rollups(tx, vantage, minute).await?
        }
        Write::Subscribe {
            subscription: sub,
            confirm_hash,
            unsubscribe_hash,
        } => {
            execute(
                tx,
                "INSERT INTO subscription
                    (id, confirm_hash, unsubscribe_hash, confirmed, created_at, body)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &sub.id,
                    confirm_hash,
                    unsubscribe_hash,
                    &sub.confirmed,
                    &sub.created_at.timestamp(),
                    &serde_json::to_string(&sub)?,
                ],
            )
            .await?;
        }
        Write::ConfirmSubscription(id) => {
            let rows = query(tx, "SELECT body FROM subscription WHERE id = $1", &[id]).await?;
            if let Some(row) = rows.first() {
                let mut sub: Subscription = serde_json::from_str(row.get::<_, &str>(0))?;
                sub.confirmed = true;
                execute(
                    tx,
                    "UPDATE subscription SET confirmed = TRUE, confirm_hash = NULL, body = $2
                     WHERE id = $1",
                    &[id, &serde_json::to_string(&sub)?],
                )
                .await?;
            }
        }
        Write::Unsubscribe(id) => {
            execute(
                tx,
                "DELETE FROM subscription_notice WHERE subscription = $1",
                &[id],
            )
            .await?;
            execute(tx, "DELETE FROM subscription WHERE id = $1", &[id]).await?;
        }
        Write::ExpireUnconfirmed(before) => {
            execute(
                tx,
                "DELETE FROM subscription_notice WHERE subscription IN
                    (SELECT id FROM subscription WHERE NOT confirmed AND created_at < $1)",
                &[before],
            )
            .await?;
            execute(
                tx,
                "DELETE FROM subscription WHERE NOT confirmed AND created_at < $1",
                &[before],
            )
            .await?;
        }
        Write::Notices {
            subscriptions,
            body,
            at,
        } => {
            for id in subscriptions {
                execute(
                    tx,
                    "INSERT INTO subscription_notice (subscription, queued_at, due_at, body)
                     SELECT id, $2, $2, $3 FROM subscription WHERE id = $1",
                    &[id, at, body],
                )
                .await?;
            }
        }
        Write::NoticeDone(seq) => {
            execute(tx, "DELETE FROM subscription_notice WHERE seq = $1", &[seq]).await?;
        }
        Write::SaveSession { hash, session, now } => {
            execute(
                tx,
                "DELETE FROM console_session WHERE expires_at <= $1",
                &[now],
            )
            .await?;
            execute(
                tx,
                "INSERT INTO console_session (hash, expires_at, body) VALUES ($1, $2, $3)
                 ON CONFLICT (hash) DO UPDATE SET expires_at = $2, body = $3",
                &[
                    hash,
                    &session.expires_at.timestamp(),
                    &serde_json::to_string(&session)?,
                ],
            )
            .await?;
        }
        Write::DeleteSession(hash) => {
            execute(tx, "DELETE FROM console_session WHERE hash = $1", &[hash]).await?;
        }
        Write::NoticeRetry { seq, due, attempts } => {
            execute(
                tx,
                "UPDATE subscription_notice SET due_at = $2, attempts = $3 WHERE seq = $1",
                &[seq, due, &i64::from(*attempts)],
            )
            .await?;
        }
    }
    Ok(())
}
