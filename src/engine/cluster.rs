//! One instance among several sharing a PostgreSQL store.
//!
//! The membership task ([`run_membership`]) renews this instance's heartbeat and the
//! leader lease every `cluster.heartbeat`, tells the schedulers which targets are theirs
//! (rendezvous hashing over the live members of the vantage), reads the verdicts every
//! vantage published and passes them to the engine. The engine keeps this instance's own
//! detectors (its vantage's verdicts, published at each transition) beside the core's,
//! which hold the quorum of every vantage. Only the leader persists incidents and
//! alerts; followers show the incidents the leader stored.
//!
//! The leader lease is counted on the local monotonic clock from before each renewal: an
//! instance that could not renew in time (the database unreachable, the process paused)
//! stops leading before the database's lease ends, and whatever it still queues carries
//! its old token, which the database refuses.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Control, Engine, with_windows};
use crate::alert::ReceiverSpec;
use crate::alert::outbox::Outbox;
use crate::alert::routing::Routing;
use crate::clock::Timestamp;
use crate::cluster::ClusterSpec;
use crate::cluster::shard::{self, Assignment};
use crate::cluster::tally::{Recount, Tally};
use crate::detector::{Detector, Transition};
use crate::event::AlertType;
use crate::incident::{Incident, IncidentBook};
use crate::metrics::ClusterMetrics;
use crate::store::postgres::cluster::{Leader, Member};
use crate::store::{Cluster, Fence, IncidentFilter, Reported, Restored, Store, VantageState};
use crate::topology::Topology;

/// The one leadership scope: the leader runs incidents and alerts for the whole cluster.
pub const LEADER_SCOPE: &str = "leader";

/// Open incidents a follower reads from the store each heartbeat, for its snapshot.
const FOLLOWER_INCIDENTS: usize = 500;

/// Who this instance is in the cluster.
#[derive(Debug, Clone)]
pub struct Identity {
    pub instance_id: String,
    pub vantage: String,
}

/// What the membership task tells the engine.
pub(crate) enum News {
    /// Read at a heartbeat.
    Poll(Box<Poll>),
    /// This instance took the lead with `token`; `restored` is the store as the former
    /// leader left it.
    Lead { token: i64, restored: Box<Restored> },
    /// This instance no longer leads.
    Follow,
}

pub(crate) struct Poll {
    pub members: Vec<Member>,
    pub leader: Option<Leader>,
    /// Verdicts stored since the last poll.
    pub votes: Vec<Reported>,
    /// Open incidents as stored (read by followers only).
    pub open: Option<Vec<Incident>>,
}

/// The engine's part of the cluster.
pub(crate) struct Clustered {
    pub me: Identity,
    metrics: ClusterMetrics,
    /// The token this instance leads with, when it does.
    leading: Option<i64>,
    /// This vantage's verdicts, from this instance's own results, by target index.
    local: Vec<Detector>,
    /// When each target last had a result here.
    local_at: Vec<Option<Timestamp>>,
    /// Every vantage's verdicts and the quorum in effect.
    tally: Tally,
    members: Vec<Member>,
    leader: Option<Leader>,
    /// Follower only: open incidents as the leader stored them.
    open: Vec<Incident>,
}

impl Clustered {
    pub fn new(
        me: Identity,
        heartbeat: std::time::Duration,
        metrics: ClusterMetrics,
        topology: &Topology,
    ) -> Clustered {
        let targets = topology.targets.len();
        metrics.leader.set(0);
        Clustered {
            me,
            metrics,
            leading: None,
            local: vec![Detector::default(); targets],
            local_at: vec![None; targets],
            tally: Tally::new(topology, heartbeat),
            members: Vec::new(),
            leader: None,
            open: Vec::new(),
        }
    }

    /// Whether this instance has a result of target `index` of its own (probed, or pushed
    /// to it).
    pub(super) fn has_results(&self, index: usize) -> bool {
        self.local_at[index].is_some()
    }

    pub fn leads(&self) -> bool {
        self.leading.is_some()
    }

    /// Follower only: the incidents to show.
    pub fn stored_open(&self) -> Option<&[Incident]> {
        (!self.leads()).then_some(self.open.as_slice())
    }

    /// Follows a new configuration: detectors and verdicts stay with their target ids.
    pub fn remap(&mut self, old: &Topology, new: &Topology) {
        let mut local: HashMap<&str, (Detector, Option<Timestamp>)> = old
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), (self.local[i].clone(), self.local_at[i])))
            .collect();
        let (mut detectors, mut at) = (Vec::new(), Vec::new());
        for t in &new.targets {
            let (d, a) = local.remove(t.id.as_str()).unwrap_or_default();
            detectors.push(d);
            at.push(a);
        }
        self.local = detectors;
        self.local_at = at;
        self.tally.remap(old, new);
    }

    /// Vantages with a live member (this one always).
    fn live_vantages(&self) -> BTreeSet<&str> {
        self.members
            .iter()
            .map(|m| m.vantage.as_str())
            .chain(std::iter::once(self.me.vantage.as_str()))
            .collect()
    }

    /// Recomputes impaired vantages and every target's quorum over the live vantages.
    fn recount(&mut self, topology: &Topology, now: Timestamp) -> Recount {
        let live: BTreeSet<String> = self
            .live_vantages()
            .into_iter()
            .map(str::to_string)
            .collect();
        self.tally.recount(topology, &live, now)
    }

    /// Every vantage known (configured, live or voting), with its status.
    fn vantage_statuses(&self, topology: &Topology) -> Vec<(String, VantageStatus)> {
        let live = self.live_vantages();
        let mut names: BTreeSet<&str> = live.clone();
        names.extend(
            topology
                .targets
                .iter()
                .flat_map(|t| t.vantages.iter().map(String::as_str)),
        );
        names.extend(self.tally.voters());
        names
            .into_iter()
            .map(|n| {
                let status = if self.tally.is_impaired(n) {
                    VantageStatus::Impaired
                } else if live.contains(n) {
                    VantageStatus::Ok
                } else {
                    VantageStatus::Silent
                };
                (n.to_string(), status)
            })
            .collect()
    }

    /// What `/api/v1/cluster` shows.
    pub fn view(&self, topology: &Topology) -> ClusterView {
        let peers = |vantage: &str| -> Vec<&str> {
            self.members
                .iter()
                .filter(|m| m.vantage == vantage)
                .map(|m| m.instance_id.as_str())
                .collect()
        };
        let members = self
            .members
            .iter()
            .map(|m| {
                let peers = peers(&m.vantage);
                MemberView {
                    instance_id: m.instance_id.clone(),
                    vantage: m.vantage.clone(),
                    lease_until: m.lease_until,
                    targets: topology
                        .targets
                        .iter()
                        .filter(|t| {
                            t.probed_from(&m.vantage)
                                && shard::owner(&t.id, &peers) == Some(m.instance_id.as_str())
                        })
                        .count(),
                }
            })
            .collect();
        let vantages = self
            .vantage_statuses(topology)
            .into_iter()
            .map(|(name, status)| VantageView {
                members: peers(&name).len(),
                targets: topology
                    .targets
                    .iter()
                    .filter(|t| t.probed_from(&name))
                    .count(),
                name,
                status,
            })
            .collect();
        ClusterView {
            instance: InstanceView {
                instance_id: self.me.instance_id.clone(),
                vantage: self.me.vantage.clone(),
                leader: self.leads(),
            },
            leader: self.leader.as_ref().map(|l| LeaderView {
                instance_id: l.instance_id.clone(),
                vantage: l.vantage.clone(),
                token: l.token,
                lease_until: l.lease_until,
            }),
            members,
            vantages,
        }
    }

    fn count(&self, topology: &Topology) {
        self.metrics.members.reset();
        for vantage in self.live_vantages() {
            let n = self.members.iter().filter(|m| m.vantage == vantage).count();
            self.metrics
                .members
                .with_label_values(&[vantage])
                .set(n as i64);
        }
        for (name, status) in self.vantage_statuses(topology) {
            for s in VantageStatus::ALL {
                self.metrics
                    .vantage_status
                    .with_label_values(&[name.as_str(), s.as_str()])
                    .set(i64::from(s == status));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VantageStatus {
    Ok,
    Impaired,
    Silent,
}

impl VantageStatus {
    const ALL: [VantageStatus; 3] = [
        VantageStatus::Ok,
        VantageStatus::Impaired,
        VantageStatus::Silent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VantageStatus::Ok => "ok",
            VantageStatus::Impaired => "impaired",
            VantageStatus::Silent => "silent",
        }
    }
}

/// `GET /api/v1/cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub instance: InstanceView,
    pub leader: Option<LeaderView>,
    pub members: Vec<MemberView>,
    pub vantages: Vec<VantageView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub instance_id: String,
    pub vantage: String,
    /// Whether this instance leads.
    pub leader: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaderView {
    pub instance_id: String,
    pub vantage: Option<String>,
    pub token: i64,
    pub lease_until: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub instance_id: String,
    pub vantage: String,
    pub lease_until: Timestamp,
    /// Targets it probes.
    pub targets: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VantageView {
    pub name: String,
    pub status: VantageStatus,
    pub members: usize,
    /// Targets configured for it.
    pub targets: usize,
}

impl Engine {
    /// This instance's own result in a cluster: its vantage's detector, published at each
    /// transition; the core's state follows the quorum, recounted once per batch of
    /// reports ([`Engine::recount`]). True when this vantage's verdict changed.
    pub(super) fn observe_locally(
        &mut self,
        index: usize,
        at: Timestamp,
        result: &crate::probe::ProbeResult,
        now: Timestamp,
    ) -> bool {
        let topology = Arc::clone(self.core.topology());
        let target = &topology.targets[index];
        self.core.record_result(index, at, result);
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        // A target taken over from another member (or probed again after a gap) starts
        // afresh: the streak it had here is stale.
        let gap =
            chrono::TimeDelta::from_std(target.interval * 3).unwrap_or(chrono::TimeDelta::MAX);
        if c.local_at[index].is_some_and(|last| at - last > gap) {
            c.local[index] = Detector::default();
        }
        c.local_at[index] = Some(at);
        let Some(transition) = c.local[index].observe(
            crate::detector::Observation::of(result, target.degraded_latency),
            at,
            &crate::detector::Thresholds {
                failure: target.failure_threshold,
                success: target.success_threshold,
                degraded_latency: target.degraded_latency,
            },
        ) else {
            return false;
        };
        let Transition {
            from, to, since, ..
        } = transition;
        tracing::info!(
            target_id = %target.id,
            vantage = %c.me.vantage,
            from = from.as_str(),
            to = to.as_str(),
            since = %since,
            reason = result.failure.as_ref().map(|f| f.reason.as_str()),
            "target state changed at this vantage"
        );
        self.target_metrics[index].set_state(to);
        let vantage = c.me.vantage.clone();
        c.tally.record(&target.id, &vantage, to, since, now);
        self.store.save_vantage_state(VantageState {
            target: target.id.clone(),
            vantage,
            state: to,
            since,
        });
        true
    }

    /// Applies the quorum's changes to the core (which opens and resolves incidents).
    pub(super) fn recount(&mut self, now: Timestamp) {
        let topology = Arc::clone(self.core.topology());
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Recount { verdicts, vantages } = c.recount(&topology, now);
        // The leader tells the receivers that ask; an impairment seen while following is
        // not announced again by a later leader (it takes the impaired set as it finds it).
        if self.leads() {
            for (vantage, impaired) in vantages {
                if impaired {
                    tracing::warn!(%vantage, "vantage impaired: most of its targets fail there only; it does not vote");
                } else {
                    tracing::info!(%vantage, "vantage recovered");
                }
                let (kind, status) = if impaired {
                    (AlertType::VantageImpaired, VantageStatus::Impaired)
                } else {
                    (AlertType::VantageRecovered, VantageStatus::Ok)
                };
                let routed = self.routing.vantage(kind, &vantage, status.as_str(), now);
                self.enqueue(routed, now);
            }
        }
        for (index, verdict) in verdicts {
            let transition = self
                .core
                .set_verdict(index, verdict.map(|v| (v.state, v.since)), now);
            if let Some(t) = transition {
                tracing::info!(
                    target_id = %topology.targets[index].id,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    since = %t.since,
                    "target state changed by quorum"
                );
            }
        }
        // Once for all the verdicts: a quorum turning thousands of targets down together
        // is one evaluation of the incidents.
        self.settle(now);
    }

    pub(super) fn on_news(&mut self, news: News, now: Timestamp) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match news {
            News::Poll(poll) => {
                let Poll {
                    members,
                    leader,
                    votes,
                    open,
                } = *poll;
                if c.leader.as_ref().map(|l| (&l.instance_id, l.token))
                    != leader.as_ref().map(|l| (&l.instance_id, l.token))
                    && c.leader.is_some()
                {
                    c.metrics.leader_changes.inc();
                }
                c.members = members;
                c.leader = leader;
                for r in votes {
                    let s = r.state;
                    c.tally.record(&s.target, &s.vantage, s.state, s.since, now);
                }
                if let Some(open) = open {
                    c.open = open;
                }
                self.recount(now);
            }
            News::Lead { token, restored } => {
                tracing::info!(token, instance = %c.me.instance_id, "leading the cluster");
                c.leading = Some(token);
                c.metrics.leader.set(1);
                self.take_over(*restored, now);
            }
            News::Follow => {
                if c.leading.take().is_some() {
                    tracing::warn!(instance = %c.me.instance_id, "no longer leading the cluster");
                }
                c.metrics.leader.set(0);
                std::mem::replace(&mut self.outbox, Outbox::idle()).stop();
            }
        }
        if let Some(c) = &self.cluster {
            c.count(self.core.topology());
        }
    }

    /// Resumes what the former leader stored: open incidents (same ids), routing state
    /// (what each receiver heard), maintenance windows; then starts delivering.
    fn take_over(&mut self, restored: Restored, now: Timestamp) {
        let Restored {
            open_incidents,
            last_seq,
            history,
            changes,
            routes,
            maintenances,
            ..
        } = restored;
        self.counted_minutes.clear();
        for inc in &open_incidents {
            for (service, f) in inc.figures(now).per_service {
                self.counted_minutes
                    .insert((inc.id.clone(), service), f.user_minutes);
            }
        }
        self.routing = Routing::new(
            self.spec.receivers.iter().map(ReceiverSpec::policy),
            &routes,
        );
        let mut book = IncidentBook::restore(open_incidents, last_seq);
        book.remember(history, changes);
        self.core.replace_book(book);
        self.windows = maintenances;
        let changes = self.core.reconfigure(
            with_windows(&self.spec.topology, &self.windows),
            self.spec.incidents.clone(),
            now,
        );
        std::mem::replace(&mut self.outbox, self.deliveries.start()).stop();
        self.apply(changes, now);
    }
}

/// The membership task: see the module's documentation. Stops (stepping down and leaving)
/// when `token` is cancelled.
pub(crate) async fn run_membership(
    cluster: Cluster,
    store: Store,
    me: Identity,
    spec: ClusterSpec,
    assignment: watch::Sender<Arc<Assignment>>,
    engine: mpsc::Sender<Control>,
    token: CancellationToken,
) {
    let call = spec.heartbeat;
    let mut leading: Option<(i64, Instant)> = None;
    let mut last_update: Option<Timestamp> = None;
    loop {
        let started = Instant::now();
        // A renewal that did not come in time: step down before the lease ends.
        if let Some((held, until)) = leading
            && started + call >= until
        {
            tracing::warn!(
                token = held,
                "could not renew the leader lease in time: stepping down"
            );
            leading = None;
            if engine.send(Control::Cluster(News::Follow)).await.is_err() {
                return;
            }
        }
        match tokio::time::timeout(
            call,
            cluster.heartbeat(&me.instance_id, &me.vantage, spec.lease),
        )
        .await
        {
            Ok(Ok(members)) => {
                let peers = members
                    .iter()
                    .filter(|m| m.vantage == me.vantage)
                    .map(|m| m.instance_id.clone())
                    .collect();
                let next = Assignment {
                    instance_id: me.instance_id.clone(),
                    vantage: me.vantage.clone(),
                    peers,
                };
                assignment.send_if_modified(|a| {
                    let changed = **a != next;
                    if changed {
                        *a = Arc::new(next);
                    }
                    changed
                });
                let votes = match tokio::time::timeout(
                    call,
                    store.vantage_states(last_update.map_or(
                        chrono::DateTime::UNIX_EPOCH,
                        // Transactions commit out of order: read a little behind.
                        |t| t - chrono::TimeDelta::seconds(5),
                    )),
                )
                .await
                {
                    Ok(Ok(votes)) => votes,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the vantages' verdicts");
                        Vec::new()
                    }
                    Err(_) => Vec::new(),
                };
                if let Some(max) = votes.iter().map(|r| r.updated_at).max() {
                    last_update = Some(last_update.map_or(max, |l| l.max(max)));
                }
                let leadership = tokio::time::timeout(
                    call,
                    cluster.acquire_or_renew_leadership(LEADER_SCOPE, &me.instance_id, spec.lease),
                )
                .await;
                let mut news = Vec::new();
                match leadership {
                    Ok(Ok(Some(held))) => {
                        if leading.map(|(t, _)| t) != Some(held) {
                            // Writes from now on carry the new token; the restore reads
                            // after every write of the former leader has committed.
                            store.set_fence(Some(Fence {
                                scope: LEADER_SCOPE.to_string(),
                                holder: me.instance_id.clone(),
                                token: held,
                            }));
                            match tokio::time::timeout(call, cluster.restore()).await {
                                Ok(Ok(restored)) => {
                                    leading = Some((held, started + spec.lease));
                                    news.push(News::Lead {
                                        token: held,
                                        restored: Box::new(restored),
                                    });
                                }
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "took the lead but cannot read the store")
                                }
                                Err(_) => {
                                    tracing::warn!("took the lead but reading the store timed out")
                                }
                            }
                        } else {
                            leading = Some((held, started + spec.lease));
                        }
                    }
                    Ok(Ok(None)) => {
                        if leading.take().is_some() {
                            news.push(News::Follow);
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leader lease"),
                    Err(_) => tracing::warn!("renewing the leader lease timed out"),
                }
                let leader =
                    match tokio::time::timeout(call, cluster.current_leader(LEADER_SCOPE)).await {
                        Ok(Ok(l)) => l,
                        _ => None,
                    };
                let open = if leading.is_none() {
                    let filter = IncidentFilter {
                        open: Some(true),
                        service: None,
                        limit: FOLLOWER_INCIDENTS,
                    };
                    match tokio::time::timeout(call, store.incidents(filter)).await {
                        Ok(Ok(open)) => Some(open),
                        _ => None,
                    }
                } else {
                    None
                };
                news.insert(
                    0,
                    News::Poll(Box::new(Poll {
                        members,
                        leader,
                        votes,
                        open,
                    })),
                );
                for n in news {
                    if engine.send(Control::Cluster(n)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster heartbeat failed"),
            Err(_) => tracing::warn!("cluster heartbeat timed out"),
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(started + call) => {}
        }
    }
    if let Some((held, _)) = leading {
        let _ = tokio::time::timeout(call, cluster.step_down(LEADER_SCOPE, &me.instance_id, held))
            .await;
    }
    let _ = tokio::time::timeout(call, cluster.leave(&me.instance_id)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tally::tests::topology;
    use crate::metrics::Metrics;

    fn at(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn member(id: &str, vantage: &str) -> Member {
        Member {
            instance_id: id.into(),
            vantage: vantage.into(),
            lease_until: at(1000),
        }
    }

    fn clustered(topology: &Topology) -> Clustered {
        let mut c = Clustered::new(
            Identity {
                instance_id: "p1".into(),
                vantage: "paris".into(),
            },
            Duration::from_secs(1),
            Metrics::new().register_cluster(),
            topology,
        );
        c.members = vec![member("l1", "lyon"), member("p1", "paris")];
        c
    }

    use std::time::Duration;

    #[test]
    fn the_view_counts_each_members_share_of_its_vantage() {
        let topo = topology(10);
        let mut c = clustered(&topo);
        c.members.push(member("p2", "paris"));
        let view = c.view(&topo);
        let paris: usize = view
            .members
            .iter()
            .filter(|m| m.vantage == "paris")
            .map(|m| m.targets)
            .sum();
        assert_eq!(paris, 10);
        let lyon = view.vantages.iter().find(|v| v.name == "lyon").unwrap();
        assert_eq!((lyon.members, lyon.targets), (1, 10));
    }
}
