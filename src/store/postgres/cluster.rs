//! The cluster's shared rows: a heartbeat row per instance and a lease row per leadership
//! scope, each read and written by one statement.
//!
//! Every time here is the database's (`now()`): instances' clocks can disagree by seconds
//! (a missing NTP sync, a step), and a lease written by one clock and judged by another
//! would let a fast clock take a live lease, or a slow one keep a dead one. One server's
//! clock orders them all. Calls hold no session state (no advisory lock), so a caller may
//! wrap any of them in a timeout: an abandoned call leaves nothing behind but what its
//! statement committed, and the next call reads that.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::{execute, query};
use crate::clock::Timestamp;
use crate::store::{Restored, StoreError};

/// A live member: its lease has not run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance_id: String,
    pub vantage: String,
    pub lease_until: Timestamp,
}

/// Who holds a leadership lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub instance_id: String,
    /// From the holder's heartbeat row; `None` when it has none (or it ran out).
    pub vantage: Option<String>,
    pub token: i64,
    pub lease_until: Timestamp,
}

/// Handle to the cluster's rows in a PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pool: Pool,
}

impl Cluster {
    pub(super) fn new(pool: Pool) -> Cluster {
        Cluster { pool }
    }

    /// Renews `instance_id`'s membership until `lease` from now and returns the live
    /// members (itself included), by vantage then id. Members silent for a day are
    /// forgotten.
    pub async fn heartbeat(
        &self,
        instance_id: &str,
        vantage: &str,
        lease: Duration,
    ) -> Result<Vec<Member>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "WITH gone AS (
                DELETE FROM cluster_member WHERE lease_until < now() - INTERVAL '1 day'
            ), me AS (
                INSERT INTO cluster_member (instance_id, vantage, lease_until)
                VALUES ($1, $2, now() + make_interval(secs => $3))
                ON CONFLICT (instance_id) DO UPDATE
                    SET vantage = excluded.vantage, lease_until = excluded.lease_until
                RETURNING instance_id, vantage, lease_until
            )
            SELECT instance_id, vantage, lease_until FROM me
            UNION ALL
            SELECT instance_id, vantage, lease_until FROM cluster_member
            WHERE lease_until > now() AND instance_id <> $1
            ORDER BY vantage, instance_id",
            &[&instance_id, &vantage, &lease.as_secs_f64()],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| Member {
                instance_id: r.get(0),
                vantage: r.get(1),
                lease_until: r.get(2),
            })
            .collect())
    }

    /// Ends `instance_id`'s membership now (a clean shutdown), so that its targets move
    /// without waiting for the lease.
    pub async fn leave(&self, instance_id: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        execute(
            &client,
            "DELETE FROM cluster_member WHERE instance_id = $1",
            &[&instance_id],
        )
        .await?;
        Ok(())
    }

    /// Takes `scope`'s lease for `instance_id`, or renews it, until `lease` from now, in
    /// one conditional upsert: it updates the row only where the lease has run out or
    /// `instance_id` already holds it. Returns the fencing token when `instance_id` leads,
    /// `None` when another does. The token grows by one at each acquisition (a new holder,
    /// or the same one after its lease ran out, so that writes queued before the gap stay
    /// refused); a renewal keeps it.
    ///
    /// Count the lease from before the call, on the local monotonic clock, and stop
    /// leading when it ends without a renewal: the database's `lease_until` is in its
    /// clock, not yours.
    pub async fn acquire_or_renew_leadership(
        &self,
        scope: &str,
        instance_id: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "INSERT INTO leader_lease AS l (scope, holder, token, lease_until)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3))
             ON CONFLICT (scope) DO UPDATE SET
                holder = excluded.holder,
                token = CASE WHEN l.holder = excluded.holder AND l.lease_until > now()
                             THEN l.token ELSE l.token + 1 END,
                lease_until = excluded.lease_until
             WHERE l.holder = excluded.holder OR l.lease_until <= now()
             RETURNING token",
            &[&scope, &instance_id, &lease.as_secs_f64()],
        )
        .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Ends `instance_id`'s lease of `scope` now, if it still holds it with `token`; true
    /// when it did. The row stays: the next holder's token must be greater.
    pub async fn step_down(
        &self,
        scope: &str,
        instance_id: &str,
        token: i64,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let ended = execute(
            &client,
            "UPDATE leader_lease SET lease_until = now()
             WHERE scope = $1 AND holder = $2 AND token = $3 AND lease_until > now()",
            &[&scope, &instance_id, &token],
        )
        .await?;
        Ok(ended > 0)
    }

    /// What a new leader resumes from (open incidents, routing state, history): read once
    /// its lease is taken, so after every write of the former leader committed.
    pub async fn restore(&self) -> Result<Restored, StoreError> {
        let client = self.pool.get().await?;
        super::restore(&client).await
    }

    /// The holder of `scope`'s lease, if it has not run out.
    pub async fn current_leader(&self, scope: &str) -> Result<Option<Leader>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT l.holder, m.vantage, l.token, l.lease_until
             FROM leader_lease l
             LEFT JOIN cluster_member m ON m.instance_id = l.holder AND m.lease_until > now()
             WHERE l.scope = $1 AND l.lease_until > now()",
            &[&scope],
        )
        .await?;
        Ok(rows.first().map(|r| Leader {
            instance_id: r.get(0),
            vantage: r.get(1),
            token: r.get(2),
            lease_until: r.get(3),
        }))
    }
}
