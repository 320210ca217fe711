//! The incident as JSON: the one shape used by the API, webhooks and replay.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    ComponentStatus, Impact, Incident, IncidentStatus, Recurrence, RuleOutcome, Scope, Severity,
    SuspectedCause, TimelineEntry,
};
use crate::clock::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: String,
    pub status: IncidentStatus,
    pub services: Vec<String>,
    pub platforms: Vec<String>,
    pub regions: Vec<String>,
    pub scope: Scope,
    pub platform_concentrated: bool,
    pub severity: Severity,
    pub impact: Impact,
    pub onset_at: Timestamp,
    pub detected_at: Timestamp,
    pub impact_end_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub time_to_detect_seconds: u64,
    pub duration_seconds: u64,
    /// Subscribers affected at the time of the view (0 once the impact is over), of the
    /// most affected service. Defaults to 0 in events queued by earlier versions.
    #[serde(default)]
    pub affected: u64,
    pub peak_affected: u64,
    pub user_minutes: u64,
    pub conservative_user_minutes: u64,
    pub per_service: BTreeMap<String, ServiceFiguresView>,
    /// Regulatory rule sets by name, each with its status (`not_met`, `met`,
    /// `met_needs_review`), the rule that fired, `met_at` and the deadlines. Always an
    /// object from [`Incident::view`]; `Option` only so that older serialized views (where
    /// it was null) still read.
    pub reporting: Option<BTreeMap<String, RuleOutcome>>,
    /// The groups and targets (ids) whose outage other services of it failed through
    /// (`depends_on`); left out when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caused_by: Vec<String>,
    /// The change suspected of causing it.
    pub suspected_cause: Option<SuspectedCause>,
    /// Incidents on the same service and platform over 30 days; null when no
    /// platform is known.
    pub recurrence: Option<Recurrence>,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceFiguresView {
    pub name: String,
    pub component_status: ComponentStatus,
    #[serde(default)]
    pub affected: u64,
    pub peak_affected: u64,
    pub peak_share: f64,
    pub user_minutes: u64,
    /// The dependency (group or target id) this service failed through; left out for a
    /// service failing in its own right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
}

impl IncidentView {
    /// The services failing in their own right: those receivers are routed by. A service
    /// that failed through a dependency is inhibited, as Alertmanager inhibits an alert
    /// whose cause already alerts.
    pub fn own_services(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| self.per_service.get(*s).is_none_or(|f| f.through.is_none()))
            .cloned()
            .collect()
    }
}

impl Incident {
    /// The JSON view; figures of an open incident are measured to `now`.
    pub fn view(&self, now: Timestamp) -> IncidentView {
        let figures = self.figures(now);
        IncidentView {
            id: self.id.clone(),
            status: self.status,
            services: self.services.keys().cloned().collect(),
            platforms: self.labels(|g| g.platform.as_ref()),
            regions: self.labels(|g| g.region.as_ref()),
            scope: self.scope,
            platform_concentrated: self.platform_concentrated,
            severity: self.severity,
            impact: self.impact,
            onset_at: self.onset_at,
            detected_at: self.detected_at,
            impact_end_at: self.impact_end_at,
            resolved_at: self.resolved_at,
            time_to_detect_seconds: figures.time_to_detect.as_secs(),
            duration_seconds: figures.duration.as_secs(),
            affected: figures.affected,
            peak_affected: figures.peak_affected,
            user_minutes: figures.user_minutes.round() as u64,
            conservative_user_minutes: figures.conservative_user_minutes.round() as u64,
            per_service: figures
                .per_service
                .iter()
                .map(|(id, f)| {
                    let entry = &self.services[id];
                    (
                        id.clone(),
                        ServiceFiguresView {
                            name: entry.name.clone(),
                            component_status: entry.component_status,
                            affected: f.affected,
                            peak_affected: f.peak_affected,
                            peak_share: f.peak_share,
                            user_minutes: f.user_minutes.round() as u64,
                            through: entry.through.clone(),
                        },
                    )
                })
                .collect(),
            reporting: Some(self.reporting.clone()),
            caused_by: self
                .services
                .values()
                .filter_map(|s| s.through.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            suspected_cause: self.suspected_cause.clone(),
            recurrence: self.recurrence,
            timeline: self.timeline.clone(),
        }
    }
}
