//! The engine's pure core: detectors, group health and the incident book for one
//! configuration. It takes results, changes and acknowledgements with their times and
//! returns what changed; it never reads the clock and does no I/O. The live engine drives
//! it with wall time, `tocsin replay` with the recorded input's time, so both behave alike.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Timestamp;
use crate::detector::{Detector, Observation, TargetState, Thresholds, Transition};
use crate::incident::{
    BookUpdate, Change, GroupStatus, Health, Incident, IncidentBook, IncidentSpec,
};
use crate::probe::{ProbeResult, Reason};
use crate::topology::{GroupMode, Topology};

/// The last result of a target, as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastResult {
    pub at: Timestamp,
    pub ok: bool,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub latency_seconds: f64,
}

pub struct Core {
    topology: Arc<Topology>,
    incidents: IncidentSpec,
    detectors: Vec<Detector>,
    last_results: Vec<Option<LastResult>>,
    groups: Vec<GroupStatus>,
    book: IncidentBook,
    /// When each push target's next result is due (`interval + grace` after its last one,
    /// or after the start); `None` for probed targets.
    heartbeats: Vec<Option<Timestamp>>,
    /// The push targets' indexes: what [`Core::next_heartbeat`] looks at, so that a
    /// topology without push targets costs nothing.
    pushed: Vec<usize>,
    /// A group's health changed since incidents were last evaluated: [`Core::settle`]
    /// has work to do.
    unsettled: bool,
}

impl Core {
    /// Starts from stored detector states (by target id) and incident book.
    pub fn new(
        topology: Arc<Topology>,
        incidents: IncidentSpec,
        detectors: HashMap<String, Detector>,
        book: IncidentBook,
        now: Timestamp,
    ) -> Self {
        let mut core = Core {
            topology: Arc::clone(&topology),
            incidents,
            detectors: Vec::new(),
            last_results: Vec::new(),
            groups: Vec::new(),
            book,
            heartbeats: Vec::new(),
            pushed: Vec::new(),
            unsettled: false,
        };
        core.adopt(topology, detectors, HashMap::new(), now);
        core
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    pub fn incidents(&self) -> &IncidentSpec {
        &self.incidents
    }

    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    pub fn last_results(&self) -> &[Option<LastResult>] {
        &self.last_results
    }

    pub fn groups(&self) -> &[GroupStatus] {
        &self.groups
    }

    pub fn open_incidents(&self) -> &[Incident] {
        self.book.open()
    }

    /// Whether time alone can change something: an open incident, or a failing group
    /// (a maintenance window may end under it).
    pub fn is_active(&self) -> bool {
        !self.book.open().is_empty() || self.groups.iter().any(|g| g.health != Health::Ok)
    }

    /// Switches to a new configuration, keeping the detector state of targets that stay.
    pub fn reconfigure(
        &mut self,
        topology: Arc<Topology>,
        incidents: IncidentSpec,
        now: Timestamp,
    ) -> BookUpdate {
        self.incidents = incidents;
        let detectors = std::mem::take(&mut self.detectors);
        let results = std::mem::take(&mut self.last_results);
        let heartbeats = std::mem::take(&mut self.heartbeats);
        let ids: Vec<String> = self
            .topology()
            .targets
            .iter()
            .map(|t| t.id.clone())
            .collect();
        let previous: HashMap<String, Detector> = ids.iter().cloned().zip(detectors).collect();
        let due: HashMap<String, Timestamp> = ids
            .iter()
            .cloned()
            .zip(heartbeats)
            .filter_map(|(id, due)| Some((id, due?)))
            .collect();
        let mut previous_results: HashMap<String, Option<LastResult>> =
            ids.into_iter().zip(results).collect();
        self.adopt(topology, previous, due, now);
        for (t, slot) in self.topology.targets.iter().zip(&mut self.last_results) {
            *slot = previous_results.remove(&t.id).flatten();
        }
        self.update(now)
    }

    fn adopt(
        &mut self,
        topology: Arc<Topology>,
        mut previous: HashMap<String, Detector>,
        due: HashMap<String, Timestamp>,
        now: Timestamp,
    ) {
        self.topology = topology;
        let topo = Arc::clone(self.topology());
        self.detectors = topo
            .targets
            .iter()
            .map(|t| previous.remove(&t.id).unwrap_or_default())
            .collect();
        self.last_results = vec![None; topo.targets.len()];
        self.heartbeats = topo
            .targets
            .iter()
            .map(|t| {
                let push = t.probe.pushed()?;
                Some(
                    due.get(&t.id)
                        .copied()
                        .unwrap_or_else(|| later(now, t.interval + push.grace)),
                )
            })
            .collect();
        self.pushed = (0..topo.targets.len())
            .filter(|&i| self.heartbeats[i].is_some())
            .collect();
        self.groups = (0..topo.groups.len())
            .map(|g| group_from_detectors(&topo, g, &self.detectors, now))
            .collect();
    }

    /// Feeds one result of target `index`, started at `at`, and returns the target's
    /// transition. Incidents are evaluated by the next [`Core::settle`], once for every
    /// result of a batch: ten thousand targets failing together are one evaluation, not
    /// ten thousand.
    pub fn observe(
        &mut self,
        index: usize,
        at: Timestamp,
        result: &ProbeResult,
    ) -> Option<Transition> {
        let topo = Arc::clone(self.topology());
        let target = &topo.targets[index];
        self.record_result(index, at, result);
        let thresholds = Thresholds {
            failure: target.failure_threshold,
            success: target.success_threshold,
            degraded_latency: target.degraded_latency,
        };
        let observation = Observation::of(result, target.degraded_latency);
        let transition = self.detectors[index].observe(observation, at, &thresholds)?;
        self.regroup(index, transition);
        Some(transition)
    }

    /// The push target whose result is due first, with when; the caller feeds
    /// [`missed_heartbeat`](crate::probe::missed_heartbeat) at that time once it has passed.
    pub fn next_heartbeat(&self) -> Option<(usize, Timestamp)> {
        self.pushed
            .iter()
            .filter_map(|&i| Some((i, self.heartbeats[i]?)))
            .min_by_key(|&(i, due)| (due, i))
    }

    /// Moves push target `index`'s due time one `interval + grace` on without a result:
    /// an instance of a cluster that was never sent its results has none to miss.
    pub fn postpone_heartbeat(&mut self, index: usize) {
        let target = &self.topology.targets[index];
        if let (Some(push), Some(due)) = (target.probe.pushed(), &mut self.heartbeats[index]) {
            *due = later(*due, target.interval + push.grace);
        }
    }

    /// Keeps target `index`'s last result for the status API, without detecting; a push
    /// target's next result is due `interval + grace` after it.
    pub fn record_result(&mut self, index: usize, at: Timestamp, result: &ProbeResult) {
        let target = &self.topology.targets[index];
        if let (Some(push), Some(due)) = (target.probe.pushed(), &mut self.heartbeats[index]) {
            *due = (*due).max(later(at, target.interval + push.grace));
        }
        self.last_results[index] = Some(LastResult {
            at,
            ok: result.is_ok(),
            reason: result.failure.as_ref().map(|f| f.reason),
            detail: result.failure.as_ref().map(|f| f.detail.clone()),
            latency_seconds: result.latency.as_secs_f64(),
        });
    }

    /// Replaces the incident book with the one a new leader restored from the store.
    pub fn replace_book(&mut self, book: IncidentBook) {
        self.book = book;
    }

    /// Takes target `index`'s state as decided elsewhere (the quorum of vantages) at
    /// `now`: the leader of several instances feeds verdicts, not results. `None`: nobody
    /// votes. Like [`Core::observe`], it leaves incidents to [`Core::settle`].
    pub fn set_verdict(
        &mut self,
        index: usize,
        verdict: Option<(TargetState, Timestamp)>,
        now: Timestamp,
    ) -> Option<Transition> {
        let (to, since) = verdict.unwrap_or((TargetState::Unknown, now));
        let from = self.detectors[index].state();
        if from == to {
            return None;
        }
        self.detectors[index] = Detector::decided(to, since);
        let transition = Transition {
            from,
            to,
            since,
            at: now,
        };
        self.regroup(index, transition);
        Some(transition)
    }

    /// Re-evaluates the groups of target `index` after its `transition`.
    fn regroup(&mut self, index: usize, transition: Transition) {
        let topo = Arc::clone(self.topology());
        let target = &topo.targets[index];
        for &g in &target.groups {
            let health = Health::of_group(
                topo.groups[g].mode,
                topo.groups[g]
                    .targets
                    .iter()
                    .map(|&t| self.detectors[t].state()),
            );
            if health != self.groups[g].health {
                self.groups[g] = GroupStatus {
                    health,
                    since: transition.since,
                };
                self.unsettled = true;
            }
        }
    }

    /// Evaluates incidents at `now` if a group's health changed since they last were.
    pub fn settle(&mut self, now: Timestamp) -> BookUpdate {
        if self.unsettled {
            self.update(now)
        } else {
            BookUpdate::default()
        }
    }

    /// Re-evaluates incidents against the current group health.
    pub fn update(&mut self, now: Timestamp) -> BookUpdate {
        self.unsettled = false;
        let topo = Arc::clone(self.topology());
        let detectors = &self.detectors;
        let target_state = |t: usize| detectors[t].state();
        self.book
            .update(&topo, &self.groups, &target_state, &self.incidents, now)
    }

    /// What time alone does: resolves quiet incidents, re-measures open ones, opens or
    /// closes maintenance windows.
    pub fn tick(&mut self, now: Timestamp) -> BookUpdate {
        let mut changes = self.book.tick(&self.incidents, now);
        let updated = self.update(now);
        changes.events.extend(updated.events);
        changes.changed.extend(updated.changed);
        changes
    }

    pub fn record_change(&mut self, change: Change, now: Timestamp) -> BookUpdate {
        self.book.record_change(change);
        self.update(now)
    }

    pub fn acknowledge(&mut self, id: &str, by: Option<&str>, now: Timestamp) -> Option<Incident> {
        self.book.acknowledge(id, by, now)
    }

    /// See [`IncidentBook::annotate`].
    pub fn annotate(
        &mut self,
        id: &str,
        event: &str,
        message: String,
        public: Option<String>,
        now: Timestamp,
    ) -> Option<Incident> {
        self.book.annotate(id, event, message, public, now)
    }
}

/// `at` plus `d`, saturating at the end of time (never a due time that stays due).
fn later(at: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(Timestamp::MAX_UTC)
}

/// A group's status rebuilt from its targets' detectors (at start and after a reload):
/// the onset is the earliest (mode `any`) or latest (mode `all`) `since` of its failing
/// targets.
fn group_from_detectors(
    topo: &Topology,
    g: usize,
    detectors: &[Detector],
    now: Timestamp,
) -> GroupStatus {
    let group = &topo.groups[g];
    let health = Health::of_group(
        group.mode,
        group.targets.iter().map(|&t| detectors[t].state()),
    );
    let wanted = match health {
        Health::Down => TargetState::Down,
        Health::Degraded => TargetState::Degraded,
        Health::Ok => return GroupStatus { health, since: now },
    };
    let sinces = group
        .targets
        .iter()
        .map(|&t| &detectors[t])
        .filter(|d| d.state() == wanted || d.state() == TargetState::Down)
        .filter_map(Detector::since);
    let since = match group.mode {
        GroupMode::Any => sinces.min(),
        GroupMode::All => sinces.max(),
    };
    GroupStatus {
        health,
        since: since.unwrap_or(now),
    }
}
