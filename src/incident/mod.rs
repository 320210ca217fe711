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
//! * `view`: the incident as JSON;
//! * [`public`]: what customers see of it (the status page, subscribers).

mod assess;
mod book;
pub mod cause;
mod model;
pub mod public;
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
    /// A service failing while a related incident may still form waits this long to join
    /// one before it opens its own: a national outage is one incident, not one per service
    /// whose first failing group happened to share nothing with the first incident's.
    #[serde(default = "default_group_wait", with = "humantime_serde")]
    pub group_wait: Duration,
    /// An open incident whose affected subscribers grow or fall by this fraction of the
    /// last announced figure is news (`incident.updated`), like a new region, platform or
    /// service: an outage spreading one region at a time is announced as it spreads.
    #[serde(default = "default_affected_change")]
    pub affected_change: f64,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        Self {
            correlation_window: default_correlation_window(),
            group_wait: default_group_wait(),
            affected_change: default_affected_change(),
        }
    }
}

fn default_correlation_window() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_affected_change() -> f64 {
    0.25
}

/// Largest `affected_change`: growth to 11 times the announced figure.
const MAX_AFFECTED_CHANGE: f64 = 10.0;

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSpec {
    pub correlation_window: Duration,
    pub group_wait: Duration,
    /// Fraction of the last announced affected figure that makes a change news.
    pub affected_change: f64,
    pub resolve_after: Duration,
    /// `[reporting]`: the rule sets evaluated on every incident.
    pub reporting: ReportingSpec,
}

impl Default for IncidentSpec {
    /// The defaults of the configuration: 15m, 30s, 25%, 5m, every built-in rule set.
    fn default() -> Self {
        Self {
            correlation_window: default_correlation_window(),
            group_wait: default_group_wait(),
            affected_change: default_affected_change(),
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
        let reporting = reporting.build("reporting", issues);
        let change = self.affected_change;
        let mut valid = true;
        if !(change > 0.0 && change <= MAX_AFFECTED_CHANGE) {
            issues.push(
                "incidents.affected_change",
                format!(
                    "must be between 0 and {MAX_AFFECTED_CHANGE} (greater than 0, at most \
                     {MAX_AFFECTED_CHANGE}; 0.25 is 25%)"
                ),
            );
            valid = false;
        }
        if self.group_wait > self.correlation_window {
            issues.push(
                "incidents.group_wait",
                format!(
                    "must be at most correlation_window ({}): a service waits only for an \
                     incident it can still join",
                    humantime::format_duration(self.correlation_window)
                ),
            );
            valid = false;
        }
        if !valid {
            return None;
        }
        Some(IncidentSpec {
            correlation_window: self.correlation_window,
            group_wait: self.group_wait,
            affected_change: change,
            resolve_after,
            reporting: reporting?,
        })
    }
}

#[cfg(test)]
mod tests;
