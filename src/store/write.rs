//! What either backend's writer receives, in the order it was queued: writes, and hooks
//! that wait for the commit of everything queued before them. The writer takes what is
//! queued as one batch and commits it in one transaction; [`Batch::finish`] then answers
//! the hooks according to how the batch ended.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{ConsoleSession, RouteState, StoreError, Subscription, VantageState};
use crate::clock::Timestamp;
use crate::event::AlertEvent;
use crate::incident::{Change, Incident, IncidentStatus};
use crate::rollup::ClosedMinute;
use crate::topology::MaintenanceWindow;

/// The leadership a write was made under: the database refuses the write unless `holder`
/// still holds `scope` with `token` (see `Cluster::acquire_or_renew_leadership`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub scope: String,
    pub holder: String,
    pub token: i64,
}

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
    /// Deletes minute rows (and vantage minute rows) starting before `minutes`, hour and
    /// day rows before `rollups`.
    PruneRollups {
        minutes: i64,
        rollups: i64,
    },
    VantageState(VantageState),
    Subscribe {
        subscription: Box<Subscription>,
        confirm_hash: Option<String>,
        unsubscribe_hash: String,
    },
    ConfirmSubscription(String),
    Unsubscribe(String),
    /// Deletes unconfirmed subscriptions created before this Unix time.
    ExpireUnconfirmed(i64),
    Notices {
        subscriptions: Vec<String>,
        body: String,
        at: i64,
    },
    NoticeDone(i64),
    NoticeRetry {
        seq: i64,
        due: i64,
        attempts: u32,
    },
    VantageRollups {
        vantage: String,
        minute: ClosedMinute,
    },
    /// A console session under the hash of its id; sessions expired at `now` go with it.
    SaveSession {
        hash: String,
        session: Box<ConsoleSession>,
        now: i64,
    },
    DeleteSession(String),
}

impl Write {
    /// Writes only the leader makes: incidents, the outbox and routing state. They carry
    /// the store's fence, when one is set.
    pub(super) fn is_leader_write(&self) -> bool {
        matches!(
            self,
            Write::Incident(_)
                | Write::Enqueue { .. }
                | Write::Settle(_)
                | Write::Route { .. }
                | Write::DiscardReceiversExcept(_)
        )
    }
}

pub(super) enum Queued {
    Write(Write, Option<Arc<Fence>>),
    /// With the fence in effect when it was queued.
    Hook(Hook, Option<Arc<Fence>>),
}

pub(super) enum Hook {
    /// Answered once every write queued before it is committed (failed writes are retried
    /// until they are) or refused: only a refusal is an error.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Runs once every write queued before it is committed, unless they were refused.
    Then(Box<dyn FnOnce() + Send>),
}

/// How a batch ended.
pub(super) enum Outcome {
    Committed,
    /// The writes made under this (stale) fence were refused; the others were committed.
    Fenced(Arc<Fence>),
}

/// Everything queued when the writer woke up, in order.
#[derive(Default)]
pub(super) struct Batch {
    pub writes: Writes,
    hooks: Vec<(Hook, Option<Arc<Fence>>)>,
}

/// The writes of a batch, each with the fence it was queued under.
#[derive(Default)]
pub(super) struct Writes {
    pub list: Vec<(Write, Option<Arc<Fence>>)>,
    /// The distinct fences of `list`: each is checked once per transaction.
    pub fences: Vec<Arc<Fence>>,
}

/// Per scope, the highest token a writer has seen refused. Tokens only grow, so a fence
/// at or below it never holds again: hooks queued under it are answered as refused even
/// when the refused writes went in an earlier batch than theirs.
#[derive(Default)]
pub(super) struct Refused(HashMap<String, i64>);

impl Refused {
    fn record(&mut self, fence: &Fence) {
        let token = self.0.entry(fence.scope.clone()).or_insert(fence.token);
        *token = (*token).max(fence.token);
    }

    fn covers(&self, fence: &Fence) -> bool {
        self.0.get(&fence.scope).is_some_and(|&t| fence.token <= t)
    }
}

impl Batch {
    /// Waits for the first item, then takes everything queued behind it; `None` once every
    /// handle is gone.
    pub async fn next(rx: &mut mpsc::UnboundedReceiver<Queued>) -> Option<Batch> {
        let first = rx.recv().await?;
        Some(Batch::drain(first, rx))
    }

    /// [`Batch::next`] for a writer thread.
    pub fn blocking_next(rx: &mut mpsc::UnboundedReceiver<Queued>) -> Option<Batch> {
        let first = rx.blocking_recv()?;
        Some(Batch::drain(first, rx))
    }

    fn drain(first: Queued, rx: &mut mpsc::UnboundedReceiver<Queued>) -> Batch {
        let mut batch = Batch::default();
        batch.push(first);
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        batch
    }

    fn push(&mut self, queued: Queued) {
        match queued {
            Queued::Write(write, fence) => {
                let writes = &mut self.writes;
                if let Some(f) = &fence
                    && !writes.fences.iter().any(|known| known == f)
                {
                    writes.fences.push(Arc::clone(f));
                }
                writes.list.push((write, fence));
            }
            Queued::Hook(hook, fence) => self.hooks.push((hook, fence)),
        }
    }

    /// Answers the hooks. After a commit they run and flushes succeed (a batch that fails
    /// is retried, never finished as failed: nothing it holds is dropped). After a refusal,
    /// and for a hook queued under a fence seen refused, flushes learn of it and `Then`
    /// hooks are dropped: nothing is alerted from writes that were not stored.
    pub fn finish(self, outcome: Outcome, refused: &mut Refused) {
        match &outcome {
            Outcome::Committed => {}
            Outcome::Fenced(fence) => {
                tracing::warn!(
                    scope = %fence.scope,
                    token = fence.token,
                    "leader writes refused: this instance no longer holds the lease"
                );
                refused.record(fence);
            }
        }
        for (hook, fence) in self.hooks {
            let stale = match &outcome {
                Outcome::Fenced(f) => Some(f),
                _ => fence.as_ref().filter(|f| refused.covers(f)),
            };
            match (hook, stale, &outcome) {
                (Hook::Then(_), Some(_), _) => {}
                (Hook::Then(f), None, _) => f(),
                (Hook::Flush(done), Some(fence), _) => {
                    let _ = done.send(Err(StoreError::Fenced {
                        scope: fence.scope.clone(),
                        token: fence.token,
                    }));
                }
                (Hook::Flush(done), None, _) => {
                    let _ = done.send(Ok(()));
                }
            }
        }
    }
}

pub(super) fn status_str(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::Investigating => "investigating",
        IncidentStatus::Identified => "identified",
        IncidentStatus::Monitoring => "monitoring",
        IncidentStatus::Resolved => "resolved",
    }
}
