//! What several instances sharing a store build on: the fence leader writes carry, the
//! PostgreSQL cluster handle, and what each vantage publishes (its verdicts at each
//! transition and its per-minute rollups), so that load grows with transitions and
//! targets per minute, not with probes per second.

use std::sync::Arc;

use super::write::{Fence, Write};
use super::{Cluster, Reader, Store, StoreError};
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::rollup::ClosedMinute;

/// One vantage's verdict on one target, as its prober publishes it at each transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VantageState {
    pub target: String,
    pub vantage: String,
    pub state: TargetState,
    /// Onset of the state (backdated to the first failure, as the detector says).
    pub since: Timestamp,
}

/// A [`VantageState`] as read back, with when it was stored (by the database's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub state: VantageState,
    pub updated_at: Timestamp,
}

/// One vantage's figures for one target over one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct VantageMinute {
    pub vantage: String,
    pub target: String,
    /// Unix seconds.
    pub start: i64,
    pub probes: u64,
    pub failures: u64,
    pub latency_sum: f64,
    pub latency_max: f64,
    /// Seconds observed, and down among them.
    pub observed: f64,
    pub down: f64,
}

impl Store {
    /// The cluster's leases and membership; `None` on SQLite (one instance).
    pub fn cluster(&self) -> Option<Cluster> {
        match &self.reader {
            Reader::Sqlite(_) => None,
            Reader::Postgres(r) => Some(r.cluster()),
        }
    }

    /// Leader writes (incidents, the outbox, routing state) queued from now on carry
    /// `fence`, and PostgreSQL refuses them unless it still holds: a paused or partitioned
    /// former leader cannot act. Keep the last fence after losing the lease (the database
    /// then refuses its writes); `None` writes unfenced, for a single instance. SQLite has
    /// one instance and checks no fence.
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner()) = fence.map(Arc::new);
    }

    /// Publishes a vantage's verdict on a target (at a transition: one row per target and
    /// vantage, replaced each time), batched with the other queued writes.
    pub fn save_vantage_state(&self, state: VantageState) {
        self.send(Write::VantageState(state));
    }

    /// Adds the target rows of a closed minute into `vantage`'s minute rows (service rows
    /// are the leader's, in [`Store::save_rollups`]).
    pub fn save_vantage_rollups(&self, vantage: &str, minute: ClosedMinute) {
        self.send(Write::VantageRollups {
            vantage: vantage.to_string(),
            minute,
        });
    }

    /// Every vantage's verdicts stored after `since` (the database's clock: pass the
    /// largest `updated_at` seen, less a few seconds, since transactions commit out of
    /// order; rows read twice are the same verdict).
    pub async fn vantage_states(&self, since: Timestamp) -> Result<Vec<Reported>, StoreError> {
        match &self.reader {
            Reader::Sqlite(r) => r.vantage_states(since).await,
            Reader::Postgres(r) => r.vantage_states(since).await,
        }
    }

    /// Every vantage's minute rows starting at or after `start` (Unix seconds).
    pub async fn vantage_minutes(&self, start: i64) -> Result<Vec<VantageMinute>, StoreError> {
        match &self.reader {
            Reader::Sqlite(r) => r.vantage_minutes(start).await,
            Reader::Postgres(r) => r.vantage_minutes(start).await,
        }
    }
}

pub(super) fn parse_state(text: &str) -> Result<TargetState, StoreError> {
    TargetState::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| StoreError::State(text.to_string()))
}
