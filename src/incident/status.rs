//! Group and service status at one moment: a group's health from its targets, a service's
//! affected subscribers, share and Statuspage component status.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::topology::{GroupMode, Topology};

/// A group's health, from its targets and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Degraded,
    Down,
}

impl Health {
    /// Combines target states by the group's mode. Unknown targets count as not failing.
    pub fn of_group(mode: GroupMode, states: impl Iterator<Item = TargetState>) -> Health {
        let (mut total, mut down, mut degraded) = (0, 0, 0);
        for s in states {
            total += 1;
            match s {
                TargetState::Down => down += 1,
                TargetState::Degraded => degraded += 1,
                TargetState::Up | TargetState::Unknown => {}
            }
        }
        match mode {
            GroupMode::Any if down > 0 => Health::Down,
            GroupMode::Any if degraded > 0 => Health::Degraded,
            GroupMode::All if total > 0 && down == total => Health::Down,
            GroupMode::All if down + degraded > 0 => Health::Degraded,
            _ => Health::Ok,
        }
    }
}

/// A group's health and since when (backdated like target transitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatus {
    pub health: Health,
    pub since: Timestamp,
}

/// Statuspage component status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl ComponentStatus {
    pub const ALL: [ComponentStatus; 5] = [
        ComponentStatus::Operational,
        ComponentStatus::DegradedPerformance,
        ComponentStatus::PartialOutage,
        ComponentStatus::MajorOutage,
        ComponentStatus::UnderMaintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::UnderMaintenance => "under_maintenance",
        }
    }

    /// Whether this status opens or keeps an incident going.
    pub fn is_failing(self) -> bool {
        matches!(
            self,
            ComponentStatus::DegradedPerformance
                | ComponentStatus::PartialOutage
                | ComponentStatus::MajorOutage
        )
    }
}

/// One service's impact at a point in time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceImpact {
    pub status: ComponentStatus,
    /// Subscribers of down groups.
    pub affected: u64,
    /// Subscribers of degraded groups (kept apart from `affected`).
    pub degraded: u64,
    pub share: f64,
}

pub fn service_status(
    topology: &Topology,
    service: usize,
    groups: &[GroupStatus],
    at: Timestamp,
) -> ServiceImpact {
    let svc = &topology.services[service];
    let (mut affected, mut degraded) = (0u64, 0u64);
    for &g in &svc.groups {
        match groups[g].health {
            Health::Down => affected += topology.groups[g].subscribers,
            Health::Degraded => degraded += topology.groups[g].subscribers,
            Health::Ok => {}
        }
    }
    let share = ratio(affected, svc.subscribers);
    let status = if topology.in_maintenance(service, at) {
        ComponentStatus::UnderMaintenance
    } else if share >= 0.5 {
        ComponentStatus::MajorOutage
    } else if affected > 0 {
        ComponentStatus::PartialOutage
    } else if degraded > 0 {
        ComponentStatus::DegradedPerformance
    } else {
        ComponentStatus::Operational
    };
    ServiceImpact {
        status,
        affected,
        degraded,
        share,
    }
}

pub(super) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
