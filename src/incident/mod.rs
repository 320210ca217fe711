//! The incident engine: group health → component status per service → incidents with
//! figures, scope, severity and a timeline.
//!
//! Pure: it takes group health and a time, never reads the clock, never does I/O. The
//! [`IncidentBook`] holds the open incidents; [`IncidentBook::update`] runs after any group
//! change and [`IncidentBook::tick`] resolves incidents whose quiet time has passed.
//!
//! * `status`: group health and per-service impact at one moment;
//! * `model`: the incident, its periods, timeline and figures;
//! * `assess`: scope, severity, impact, reporting rules, suspected cause;
//! * `book`: the open incidents and how each update changes them;
//! * [`cause`], [`reporting`]: changes and recurrence, regulatory rule sets;
//! * `view`: the incident as JSON.

mod assess;
mod book;
pub mod cause;
mod model;
pub mod reporting;
mod status;
mod view;

use std::time::Duration;

use serde::Deserialize;

use crate::validation::Issues;

pub use book::{BookUpdate, IncidentBook};
pub use cause::{Change, PastIncident, Recurrence, SuspectedCause};
pub use model::{
    EventKind, Figures, GroupImpact, Impact, Incident, IncidentStatus, Period, Scope, ServiceEntry,
    ServiceFigures, Severity, TimelineEntry,
};
pub use reporting::{ReportingConfig, ReportingSpec, RuleOutcome, RuleStatus};
pub use status::{ComponentStatus, GroupStatus, Health, ServiceImpact, service_status};
pub use view::{IncidentView, ServiceFiguresView};

/// `[incidents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Services failing this close to an open incident's onset, sharing a platform or a
    /// region with it, join that incident.
    #[serde(default = "default_correlation_window", with = "humantime_serde")]
    pub correlation_window: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            correlation_window: default_correlation_window(),
        }
    }
}

fn default_correlation_window() -> Duration {
    Duration::from_secs(15 * 60)
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSpec {
    pub correlation_window: Duration,
    pub resolve_after: Duration,
    /// `[reporting]`: the rule sets evaluated on every incident.
    pub reporting: ReportingSpec,
}

impl Default for IncidentSpec {
    /// The defaults of the configuration: 15m, 5m, every built-in rule set.
    fn default() -> Self {
        Self {
            correlation_window: default_correlation_window(),
            resolve_after: Duration::from_secs(5 * 60),
            reporting: ReportingSpec::default(),
        }
    }
}

impl IncidentsConfig {
    /// Builds the incident spec from `[incidents]`, `resolve_after` of `[defaults]` and
    /// `[reporting]` (validated under the key path `reporting`).
    pub fn build(
        &self,
        resolve_after: Duration,
        reporting: &ReportingConfig,
        issues: &mut Issues,
    ) -> Option<IncidentSpec> {
        let reporting = reporting.build("reporting", issues)?;
        Some(IncidentSpec {
            correlation_window: self.correlation_window,
            resolve_after,
            reporting,
        })
    }
}

#[cfg(test)]
mod tests;
