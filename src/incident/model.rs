//! The incident itself: its statuses, the groups it touched with their periods, its
//! timeline, and the figures derived from those periods (duration, peak affected,
//! user-minutes), measured to `now` while it is open.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cause::{Recurrence, SuspectedCause};
use super::reporting::RuleOutcome;
use super::status::{ComponentStatus, Health, ratio};
use crate::clock::Timestamp;
use crate::topology::ServiceClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

/// Ordered from least to most severe, so `max` raises severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Sev4,
    Sev3,
    Sev2,
    Sev1,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Sev1,
        Severity::Sev2,
        Severity::Sev3,
        Severity::Sev4,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "sev1",
            Severity::Sev2 => "sev2",
            Severity::Sev3 => "sev3",
            Severity::Sev4 => "sev4",
        }
    }
}

/// Statuspage incident impact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    None,
    Minor,
    Major,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Localized,
    Regional,
    Distributed,
    National,
}

/// One stretch of a group being down or degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub health: Health,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

/// A group that was down or degraded during the incident, with what it was at the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupImpact {
    pub group: String,
    pub service: String,
    pub platform: Option<String>,
    pub region: Option<String>,
    pub subscribers: u64,
    pub periods: Vec<Period>,
}

impl GroupImpact {
    /// In a period of this health that has not ended.
    pub(super) fn is_now(&self, health: Health) -> bool {
        self.periods
            .last()
            .is_some_and(|p| p.health == health && p.end.is_none())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    pub event: String,
    /// For the operator: figures, rules, causes.
    pub message: String,
    /// What customers are told at this step (status page, Statuspage API, feed); `None`
    /// for an operator-only step (a rule met, a suspected cause, a severity raised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_message: Option<String>,
}

/// What an incident knows of one of its services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub name: String,
    pub subscribers: u64,
    pub component_status: ComponentStatus,
    /// For reporting rules: a `feature` service's outage needs review. Incidents stored
    /// before it existed read as `feature` until the next update refreshes it.
    #[serde(default)]
    pub class: ServiceClass,
    /// The group or target (id) this service failed through: it joined the incident of a
    /// dependency that was down, and its own receivers are not alerted. `None` for a
    /// service failing in its own right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub seq: u64,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub impact: Impact,
    pub scope: Scope,
    pub platform_concentrated: bool,
    pub onset_at: Timestamp,
    pub detected_at: Timestamp,
    pub impact_end_at: Option<Timestamp>,
    pub monitoring_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub services: BTreeMap<String, ServiceEntry>,
    pub groups: Vec<GroupImpact>,
    #[serde(default)]
    pub suspected_cause: Option<SuspectedCause>,
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// When an operator acknowledged it (status `identified`).
    #[serde(default)]
    pub acknowledged_at: Option<Timestamp>,
    /// Reporting rule sets by name; a met one stays met.
    #[serde(default)]
    pub reporting: BTreeMap<String, RuleOutcome>,
    /// Subscribers affected as the last `incident.opened` or `incident.updated` said: growth
    /// and recovery are measured from it, so that many small steps add up to news. `None`
    /// in incidents stored before it existed, until the next update takes the current figure.
    #[serde(default)]
    pub announced_affected: Option<u64>,
    pub timeline: Vec<TimelineEntry>,
    /// Growth and recovery steps left out of the timeline to keep it bounded: the count
    /// its `steps_omitted` entry gives.
    #[serde(default)]
    pub steps_omitted: u32,
}

/// Timeline events of growth, recovery and flapping, bounded by [`Incident::note_step`].
const STEP_EVENTS: [&str; 4] = ["grown", "recovering", "recovered", "reopened"];

/// Step entries kept at each end of the timeline: 16 first, 16 latest.
const STEPS_KEPT: usize = 16;

const OMITTED: &str = "steps_omitted";

/// What `update` and `tick` tell the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Opened,
    Updated,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "incident.opened",
            EventKind::Updated => "incident.updated",
            EventKind::Resolved => "incident.resolved",
        }
    }
}

/// Figures derived from the periods, measured to `now` while open.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub duration: Duration,
    pub time_to_detect: Duration,
    /// Affected now (0 once the impact is over), of the most affected service.
    pub affected: u64,
    pub peak_affected: u64,
    pub user_minutes: f64,
    pub conservative_user_minutes: f64,
    pub per_service: BTreeMap<String, ServiceFigures>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFigures {
    /// Subscribers of the service's groups down now.
    pub affected: u64,
    pub peak_affected: u64,
    pub peak_share: f64,
    pub user_minutes: f64,
    /// Longest time the degraded share stayed at or above 1%.
    pub degraded_1pct: Duration,
}

impl Incident {
    pub fn id_for(seq: u64) -> String {
        format!("inc-{seq:06}")
    }

    /// The id of incident `seq` of the database with `epoch`: `inc-000042-3fa9c2d1`, or
    /// [`Incident::id_for`] when the epoch is empty (a database older than epochs).
    pub fn id_in(epoch: &str, seq: u64) -> String {
        if epoch.is_empty() {
            Self::id_for(seq)
        } else {
            format!("inc-{seq:06}-{epoch}")
        }
    }

    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }

    /// An operator-only timeline step.
    pub(super) fn note(&mut self, at: Timestamp, event: &str, message: String) {
        self.timeline.push(TimelineEntry {
            at,
            event: event.to_string(),
            message,
            public_message: None,
        });
    }

    /// A timeline step customers are told of too, in their words.
    pub(super) fn note_public(
        &mut self,
        at: Timestamp,
        event: &str,
        message: String,
        public: String,
    ) {
        self.timeline.push(TimelineEntry {
            at,
            event: event.to_string(),
            message,
            public_message: Some(public),
        });
    }

    /// Notes a step of an incident that grows, recovers or flaps ([`STEP_EVENTS`]). An
    /// incident flapping for days would take thousands of them, so the timeline keeps the
    /// first and the latest [`STEPS_KEPT`] and counts those in between in one
    /// `steps_omitted` entry, placed where the first omitted step was.
    pub(super) fn note_step(
        &mut self,
        at: Timestamp,
        event: &str,
        message: String,
        public: Option<String>,
    ) {
        self.timeline.push(TimelineEntry {
            at,
            event: event.to_string(),
            message,
            public_message: public,
        });
        let steps: Vec<usize> = (0..self.timeline.len())
            .filter(|&i| STEP_EVENTS.contains(&self.timeline[i].event.as_str()))
            .collect();
        if steps.len() <= 2 * STEPS_KEPT {
            return;
        }
        let oldest_of_latest = steps[STEPS_KEPT];
        let omitted = self.timeline.remove(oldest_of_latest);
        self.steps_omitted += 1;
        let marker = match self.timeline.iter().position(|e| e.event == OMITTED) {
            Some(i) => i,
            None => {
                self.timeline.insert(
                    oldest_of_latest,
                    TimelineEntry {
                        at: omitted.at,
                        event: OMITTED.to_string(),
                        message: String::new(),
                        public_message: None,
                    },
                );
                oldest_of_latest
            }
        };
        let last = omitted
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.timeline[marker].message = format!(
            "{} growth and recovery steps omitted, the last at {last}",
            self.steps_omitted
        );
    }

    /// End of the impact as far as figures go.
    pub(super) fn measure_end(&self, now: Timestamp) -> Timestamp {
        self.impact_end_at.unwrap_or(now).max(self.onset_at)
    }

    pub fn figures(&self, now: Timestamp) -> Figures {
        let end = self.measure_end(now);
        let duration = to_std(end - self.onset_at);
        let mut per_service = BTreeMap::new();
        for (id, entry) in &self.services {
            let down = steps(self.periods_of(id, Health::Down, end));
            let degraded = steps(self.periods_of(id, Health::Degraded, end));
            let peak = down.iter().map(|s| s.2).max().unwrap_or(0);
            let user_minutes = down
                .iter()
                .map(|(a, b, w)| *w as f64 * minutes(*b - *a))
                .sum();
            let threshold = (entry.subscribers as f64 * 0.01).ceil().max(1.0) as u64;
            let degraded_1pct = longest_run(&degraded, threshold);
            per_service.insert(
                id.clone(),
                ServiceFigures {
                    affected: self.subscribers_now(id, Health::Down),
                    peak_affected: peak,
                    peak_share: ratio(peak, entry.subscribers),
                    user_minutes,
                    degraded_1pct,
                },
            );
        }
        // A person subscribed to several services is one person: the incident's figures
        // are those of its most affected service (reporting rules work per service anyway).
        let affected = per_service.values().map(|f| f.affected).max().unwrap_or(0);
        let peak_affected = per_service
            .values()
            .map(|f| f.peak_affected)
            .max()
            .unwrap_or(0);
        let user_minutes = per_service
            .values()
            .map(|f| f.user_minutes)
            .fold(0.0, f64::max);
        Figures {
            duration,
            time_to_detect: to_std(self.detected_at - self.onset_at),
            affected,
            peak_affected,
            user_minutes,
            conservative_user_minutes: peak_affected as f64 * duration.as_secs_f64() / 60.0,
            per_service,
        }
    }

    /// Subscribers of `service`'s groups in a period of this health that has not ended.
    pub(super) fn subscribers_now(&self, service: &str, health: Health) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.service == service && g.is_now(health))
            .map(|g| g.subscribers)
            .sum()
    }

    /// `[start, end)` spans with weights for one service and health, clipped at `end`.
    pub(super) fn periods_of<'a>(
        &'a self,
        service: &'a str,
        health: Health,
        end: Timestamp,
    ) -> impl Iterator<Item = (Timestamp, Timestamp, u64)> + 'a {
        self.groups
            .iter()
            .filter(move |g| g.service == service)
            .flat_map(move |g| {
                g.periods
                    .iter()
                    .filter(move |p| p.health == health)
                    .map(move |p| (p.start, p.end.unwrap_or(end).min(end), g.subscribers))
            })
            .filter(|(a, b, _)| b > a)
    }

    pub(super) fn affected_groups(&self) -> impl Iterator<Item = &GroupImpact> {
        self.groups
            .iter()
            .filter(|g| g.periods.iter().any(|p| p.health == Health::Down))
    }

    /// Every platform (or region) with a down or degraded group during the incident.
    pub(super) fn labels(&self, pick: impl Fn(&GroupImpact) -> Option<&String>) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .groups
            .iter()
            .filter(|g| !g.periods.is_empty())
            .filter_map(pick)
            .collect();
        set.into_iter().cloned().collect()
    }

    pub(super) fn last_period_end(&self) -> Option<Timestamp> {
        self.groups
            .iter()
            .flat_map(|g| g.periods.iter())
            .filter_map(|p| p.end)
            .max()
    }
}

// === Time arithmetic ===

pub(super) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

pub(super) fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

pub(super) fn minutes(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 60_000.0
}

/// The step function of summed weights over `[start, end)` spans: `(from, to, total)`.
pub(super) fn steps(
    spans: impl Iterator<Item = (Timestamp, Timestamp, u64)>,
) -> Vec<(Timestamp, Timestamp, u64)> {
    let mut edges: Vec<(Timestamp, i128)> = Vec::new();
    for (a, b, w) in spans {
        edges.push((a, i128::from(w)));
        edges.push((b, -i128::from(w)));
    }
    edges.sort_by_key(|e| e.0);
    let mut out = Vec::new();
    let mut level: i128 = 0;
    let mut i = 0;
    while i < edges.len() {
        let at = edges[i].0;
        while i < edges.len() && edges[i].0 == at {
            level += edges[i].1;
            i += 1;
        }
        if let Some(&(next, _)) = edges.get(i)
            && level > 0
        {
            out.push((at, next, level as u64));
        }
    }
    out
}

/// Longest contiguous time the step function stays at or above `threshold`.
pub(super) fn longest_run(steps: &[(Timestamp, Timestamp, u64)], threshold: u64) -> Duration {
    let mut best = chrono::Duration::zero();
    let mut run: Option<(Timestamp, Timestamp)> = None;
    for &(a, b, w) in steps {
        if w < threshold {
            run = None;
            continue;
        }
        run = match run {
            Some((start, end)) if end == a => Some((start, b)),
            _ => Some((a, b)),
        };
        if let Some((start, end)) = run {
            best = best.max(end - start);
        }
    }
    to_std(best)
}
