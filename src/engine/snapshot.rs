//! What the HTTP side sees of the engine: a [`Snapshot`] renewed every tick and after a
//! batch of reports that changed something, and the views the API serializes from it.

use std::sync::Arc;

use serde::Serialize;

use super::LastResult;
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::incident::{ComponentStatus, GroupStatus, Health, IncidentView};
use crate::rollup::OpenMinute;
use crate::topology::Topology;

/// What the HTTP side sees; renewed every [`super::TICK`] and after a batch of reports
/// that changed something.
///
/// Groups and targets are kept as their live state beside the shared topology (no string is
/// copied per target): with ten thousand targets a snapshot stays near 100 bytes a target.
/// [`Snapshot::group_views`] and [`Snapshot::target_views`] join them when asked.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generated_at: Timestamp,
    pub services: Vec<ServiceView>,
    pub(super) topology: Arc<Topology>,
    /// In [`Topology::groups`] order.
    pub(super) groups: Vec<GroupStatus>,
    /// In [`Topology::targets`] order.
    pub(super) targets: Vec<TargetLive>,
    /// Open incidents, newest first.
    pub open_incidents: Vec<IncidentView>,
    /// Service time of the minute not yet in the store, for live uptime figures.
    pub open_minute: OpenMinute,
    /// In a cluster: members, vantages, the leader (`GET /api/v1/cluster`).
    pub cluster: Option<Arc<super::ClusterView>>,
}

#[derive(Debug, Clone)]
pub(super) struct TargetLive {
    pub(super) state: TargetState,
    pub(super) since: Option<Timestamp>,
    pub(super) last_result: Option<LastResult>,
}

impl Snapshot {
    /// The topology the engine runs, with the API's maintenance windows.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    /// When target `id`'s last result was taken, if it has one.
    pub fn last_result_at(&self, id: &str) -> Option<Timestamp> {
        let index = self.topology.target_index(id)?;
        Some(self.targets.get(index)?.last_result.as_ref()?.at)
    }

    pub fn group_views(&self) -> Vec<GroupView> {
        let topo = &self.topology;
        topo.groups
            .iter()
            .zip(&self.groups)
            .map(|(g, st)| GroupView {
                id: g.id.clone(),
                service: topo.services[g.service].id.clone(),
                platform: g.platform.clone(),
                region: g.region.clone(),
                subscribers: g.subscribers,
                health: st.health,
                since: st.since,
            })
            .collect()
    }

    pub fn target_views(&self) -> Vec<TargetView> {
        let topo = &self.topology;
        topo.targets
            .iter()
            .zip(&self.targets)
            .map(|(t, live)| TargetView {
                id: t.id.clone(),
                probe: t.probe.kind(),
                groups: t
                    .groups
                    .iter()
                    .map(|&g| topo.groups[g].id.clone())
                    .collect(),
                state: live.state,
                since: live.since,
                last_result: live.last_result.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub subscribers: u64,
    pub affected: u64,
    pub degraded: u64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub id: String,
    pub service: String,
    pub platform: Option<String>,
    pub region: Option<String>,
    pub subscribers: u64,
    pub health: Health,
    pub since: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub id: String,
    pub probe: &'static str,
    pub groups: Vec<String>,
    pub state: TargetState,
    pub since: Option<Timestamp>,
    pub last_result: Option<LastResult>,
}
