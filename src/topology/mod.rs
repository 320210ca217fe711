//! Who is behind what: services, groups of subscribers, targets, maintenance windows.
//!
//! A target watches one or more groups; a group is the subscribers of one service behind
//! one platform in one region. Subscribers are counted per group, so two targets watching
//! the same users never count them twice. [`config`] holds the `[[services]]`,
//! `[[groups]]`, `[[targets]]`, `[[maintenances]]` and `[defaults]` tables and builds a
//! [`Topology`] from them.

pub mod config;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::probe::ProbeSpec;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceClass {
    Telephony,
    Internet,
    #[default]
    Feature,
}

/// What a group or target depends on (`depends_on`): while it is down, their failures
/// join its incident instead of opening their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// Index into [`Topology::groups`].
    Group(usize),
    /// Index into [`Topology::targets`].
    Target(usize),
}

/// How a group's targets combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Down when any of its targets is down.
    #[default]
    Any,
    /// Down only when all of its targets are down.
    All,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub subscribers: u64,
    pub class: ServiceClass,
    /// Indexes into [`Topology::groups`].
    pub groups: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    /// Index into [`Topology::services`].
    pub service: usize,
    pub platform: Option<String>,
    pub region: Option<String>,
    pub subscribers: u64,
    pub mode: GroupMode,
    /// Indexes into [`Topology::targets`].
    pub targets: Vec<usize>,
    /// While one of these is down, this group's failure is theirs.
    pub depends_on: Vec<Dependency>,
}

/// A target with its effective settings (defaults applied) and validated probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    /// Indexes into [`Topology::groups`].
    pub groups: Vec<usize>,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub degraded_latency: Duration,
    pub probe: ProbeSpec,
    /// Metric label values, resolved once.
    pub labels: TargetLabels,
    /// The vantages that probe it; empty: every vantage.
    pub vantages: Vec<String>,
    /// While one of these is down, this target's failure is theirs.
    pub depends_on: Vec<Dependency>,
}

impl Target {
    /// Whether `vantage` probes this target.
    pub fn probed_from(&self, vantage: &str) -> bool {
        self.vantages.is_empty() || self.vantages.iter().any(|v| v == vantage)
    }
}

/// `service`, `region` and `platform` label values; comma-joined when the target watches
/// groups of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLabels {
    pub service: String,
    pub region: String,
    pub platform: String,
}

#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Indexes into [`Topology::services`].
    pub services: Vec<usize>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub summary: String,
}

/// A maintenance window registered through the API (`POST /api/v1/maintenances`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub id: String,
    pub services: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub summary: String,
}

#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub services: Vec<Service>,
    pub groups: Vec<Group>,
    pub targets: Vec<Target>,
    pub maintenances: Vec<Maintenance>,
    /// `defaults.quorum`: vantages that must agree; 0 for a majority of those voting.
    pub quorum: u32,
    /// Where each id is, for the lookups the incident engine makes on every update.
    pub ids: Ids,
}

/// Positions by id of a topology's services, groups and targets, built on the first
/// lookup. An index that no longer covers its list (the topology grew since, as while it
/// is built) is not used: the lookup scans instead.
#[derive(Debug, Clone, Default)]
pub struct Ids(OnceLock<IdMaps>);

#[derive(Debug, Clone)]
struct IdMaps {
    services: HashMap<String, usize>,
    groups: HashMap<String, usize>,
    targets: HashMap<String, usize>,
}

/// The first position of each id, as a scan finds it.
fn positions<'a>(ids: impl ExactSizeIterator<Item = &'a String>) -> HashMap<String, usize> {
    let mut map = HashMap::with_capacity(ids.len());
    for (i, id) in ids.enumerate() {
        map.entry(id.clone()).or_insert(i);
    }
    map
}

/// `id`'s position from `map` when it covers all `len` entries of the list.
fn look_up(map: &HashMap<String, usize>, len: usize, id: &str) -> Option<Option<usize>> {
    (map.len() == len).then(|| map.get(id).copied())
}

impl Topology {
    pub fn service_index(&self, id: &str) -> Option<usize> {
        look_up(&self.id_maps().services, self.services.len(), id)
            .unwrap_or_else(|| self.services.iter().position(|s| s.id == id))
    }

    pub fn group_index(&self, id: &str) -> Option<usize> {
        look_up(&self.id_maps().groups, self.groups.len(), id)
            .unwrap_or_else(|| self.groups.iter().position(|g| g.id == id))
    }

    pub fn target_index(&self, id: &str) -> Option<usize> {
        look_up(&self.id_maps().targets, self.targets.len(), id)
            .unwrap_or_else(|| self.targets.iter().position(|t| t.id == id))
    }

    /// Builds the index of ids now, so that the first lookup does not wait for it.
    pub fn index(&self) {
        self.id_maps();
    }

    fn id_maps(&self) -> &IdMaps {
        self.ids.0.get_or_init(|| IdMaps {
            services: positions(self.services.iter().map(|s| &s.id)),
            groups: positions(self.groups.iter().map(|g| &g.id)),
            targets: positions(self.targets.iter().map(|t| &t.id)),
        })
    }

    /// The id a dependency is configured by.
    pub fn dependency_id(&self, d: Dependency) -> &str {
        match d {
            Dependency::Group(g) => &self.groups[g].id,
            Dependency::Target(t) => &self.targets[t].id,
        }
    }

    /// The services a dependency's failure shows in, whose incident its dependents join.
    pub fn dependency_services(&self, d: Dependency) -> Vec<usize> {
        match d {
            Dependency::Group(g) => vec![self.groups[g].service],
            Dependency::Target(t) => self.targets[t]
                .groups
                .iter()
                .map(|&g| self.groups[g].service)
                .collect(),
        }
    }

    /// This topology with windows from the API added (services no longer configured are
    /// left out).
    pub fn with_windows(&self, windows: &[MaintenanceWindow]) -> Topology {
        let mut topology = self.clone();
        for w in windows {
            topology.maintenances.push(Maintenance {
                services: w
                    .services
                    .iter()
                    .filter_map(|s| self.service_index(s))
                    .collect(),
                starts_at: w.starts_at,
                ends_at: w.ends_at,
                summary: w.summary.clone(),
            });
        }
        topology
    }

    /// Whether a maintenance window covers the service at `at`.
    pub fn in_maintenance(&self, service: usize, at: Timestamp) -> bool {
        self.maintenances
            .iter()
            .any(|m| m.services.contains(&service) && m.starts_at <= at && at < m.ends_at)
    }
}
