//! Why and how often (SPEC §6.7): the change suspected of causing an incident, and how
//! many incidents hit the same service and platform in the last 30 days.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Incident;
use crate::clock::Timestamp;

/// A registered software update, deploy or configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub platform: Option<String>,
    pub service: Option<String>,
    pub summary: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    High,
    Low,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectedCause {
    pub change_id: String,
    pub lag_seconds: u64,
    pub confidence: Confidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// Incidents on a same service and platform in the 30 days up to this one's onset,
    /// this one included.
    pub count_30d: u32,
    /// Three or more.
    pub chronic: bool,
}

/// A change this close before the onset is a likely cause.
pub const HIGH_CONFIDENCE_LAG: Duration = Duration::from_secs(2 * 3600);
/// Beyond this, a change is not considered at all.
pub const MAX_LAG: Duration = Duration::from_secs(72 * 3600);
pub const RECURRENCE_WINDOW: Duration = Duration::from_secs(30 * 86400);
pub const CHRONIC_COUNT: u32 = 3;

/// The most recent change before the onset on an affected platform, or on an affected
/// service when the change names no platform, within 72 h.
pub fn suspect(changes: &[Change], incident: &Incident) -> Option<SuspectedCause> {
    let platforms: Vec<&String> = incident
        .groups
        .iter()
        .filter(|g| !g.periods.is_empty())
        .filter_map(|g| g.platform.as_ref())
        .collect();
    changes
        .iter()
        .filter(|c| match (&c.platform, &c.service) {
            (Some(p), _) => platforms.contains(&p),
            (None, Some(s)) => incident.services.contains_key(s),
            (None, None) => false,
        })
        .filter_map(|c| {
            let lag = (incident.onset_at - c.at).to_std().ok()?;
            (lag <= MAX_LAG).then_some((lag, c))
        })
        .min_by_key(|(lag, _)| *lag)
        .map(|(lag, c)| SuspectedCause {
            change_id: c.id.clone(),
            lag_seconds: lag.as_secs(),
            confidence: if lag <= HIGH_CONFIDENCE_LAG {
                Confidence::High
            } else {
                Confidence::Low
            },
        })
}

/// What recurrence needs to remember of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastIncident {
    pub id: String,
    pub onset_at: Timestamp,
    /// (service, platform) pairs that had a down or degraded group.
    pub footprint: Vec<(String, String)>,
}

impl PastIncident {
    pub fn of(incident: &Incident) -> Self {
        let mut footprint: Vec<(String, String)> = incident
            .groups
            .iter()
            .filter(|g| !g.periods.is_empty())
            .filter_map(|g| Some((g.service.clone(), g.platform.clone()?)))
            .collect();
        footprint.sort();
        footprint.dedup();
        PastIncident {
            id: incident.id.clone(),
            onset_at: incident.onset_at,
            footprint,
        }
    }
}

/// Counts the incidents sharing a (service, platform) with `incident` whose onset falls in
/// the 30 days up to its onset, itself included. `None` when it names no platform.
pub fn recurrence(history: &[PastIncident], incident: &Incident) -> Option<Recurrence> {
    let me = PastIncident::of(incident);
    if me.footprint.is_empty() {
        return None;
    }
    let window = chrono::Duration::from_std(RECURRENCE_WINDOW).expect("30 days fits");
    let earlier = history
        .iter()
        .filter(|p| p.id != me.id)
        .filter(|p| p.onset_at <= me.onset_at && me.onset_at - p.onset_at <= window)
        .filter(|p| p.footprint.iter().any(|f| me.footprint.contains(f)))
        .count() as u32;
    let count_30d = earlier + 1;
    Some(Recurrence {
        count_30d,
        chronic: count_30d >= CHRONIC_COUNT,
    })
}
