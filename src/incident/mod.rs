//! The incident engine (SPEC §6): group health → component status per service → incidents
//! with figures, scope, severity and a timeline.
//!
//! Pure: it takes group health and a time, never reads the clock, never does I/O. The
//! [`IncidentBook`] holds the open incidents; [`IncidentBook::update`] runs after any group
//! change and [`IncidentBook::tick`] resolves incidents whose quiet time has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::config::Issues;
use crate::detector::TargetState;
use crate::scheduler::DefaultsConfig;
use crate::topology::{GroupMode, ServiceClass, Topology};

pub mod cause;
pub mod reporting;
mod view;
pub use cause::{Change, PastIncident, Recurrence, SuspectedCause};
pub use reporting::{ReportingConfig, ReportingSettings, RuleOutcome, RuleStatus};
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
pub struct IncidentSettings {
    pub correlation_window: Duration,
    pub resolve_after: Duration,
    /// `[reporting]`: the rule sets evaluated on every incident (SPEC §6.6).
    pub reporting: ReportingSettings,
}

impl Default for IncidentSettings {
    /// The defaults of the configuration: 15m, 5m, every built-in rule set.
    fn default() -> Self {
        Self {
            correlation_window: default_correlation_window(),
            resolve_after: Duration::from_secs(5 * 60),
            reporting: ReportingSettings::default(),
        }
    }
}

impl IncidentsConfig {
    /// Builds the incident settings from `[incidents]`, `resolve_after` of `[defaults]` and
    /// `[reporting]` (validated under the key path `reporting`).
    pub fn build(
        &self,
        defaults: &DefaultsConfig,
        reporting: &ReportingConfig,
        _path: &str,
        issues: &mut Issues,
    ) -> Option<IncidentSettings> {
        let reporting = reporting.build("reporting", issues)?;
        Some(IncidentSettings {
            correlation_window: self.correlation_window,
            resolve_after: defaults.resolve_after,
            reporting,
        })
    }
}

// === Group and service status ===

/// A group's health, from its targets and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    Degraded,
    Down,
}

impl Health {
    /// Combines target states per SPEC §5. Unknown targets count as not failing.
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

/// One service's figures at a point in time (SPEC §6.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceStatus {
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
) -> ServiceStatus {
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
    ServiceStatus {
        status,
        affected,
        degraded,
        share,
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

// === Incident ===

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    pub event: String,
    pub message: String,
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
    /// Reporting rule sets (SPEC §6.6) by name; a met one stays met.
    #[serde(default)]
    pub reporting: BTreeMap<String, RuleOutcome>,
    pub timeline: Vec<TimelineEntry>,
}

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

/// The result of an update: events to alert on, and incidents to persist.
#[derive(Debug, Default)]
pub struct Changes {
    pub events: Vec<(EventKind, Incident)>,
    /// Every incident that changed (including those with events), latest state.
    pub changed: Vec<Incident>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// Figures derived from the periods (SPEC §6.3), measured to `now` while open.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub duration: Duration,
    pub time_to_detect: Duration,
    pub peak_affected: u64,
    pub user_minutes: f64,
    pub conservative_user_minutes: f64,
    pub per_service: BTreeMap<String, ServiceFigures>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFigures {
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

    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }

    fn note(&mut self, at: Timestamp, event: &str, message: String) {
        self.timeline.push(TimelineEntry {
            at,
            event: event.to_string(),
            message,
        });
    }

    /// End of the impact as far as figures go.
    fn measure_end(&self, now: Timestamp) -> Timestamp {
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
                    peak_affected: peak,
                    peak_share: ratio(peak, entry.subscribers),
                    user_minutes,
                    degraded_1pct,
                },
            );
        }
        // A person subscribed to several services is one person: the incident's figures
        // are those of its most affected service (reporting rules work per service anyway).
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
            peak_affected,
            user_minutes,
            conservative_user_minutes: peak_affected as f64 * duration.as_secs_f64() / 60.0,
            per_service,
        }
    }

    /// `[start, end)` spans with weights for one service and health, clipped at `end`.
    fn periods_of<'a>(
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

    fn affected_groups(&self) -> impl Iterator<Item = &GroupImpact> {
        self.groups
            .iter()
            .filter(|g| g.periods.iter().any(|p| p.health == Health::Down))
    }

    /// Every platform (or region) with a down or degraded group during the incident.
    fn labels(&self, pick: impl Fn(&GroupImpact) -> Option<&String>) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .groups
            .iter()
            .filter(|g| !g.periods.is_empty())
            .filter_map(pick)
            .collect();
        set.into_iter().cloned().collect()
    }

    fn platform_concentration(&self) -> bool {
        let mut by_platform: BTreeMap<&str, u64> = BTreeMap::new();
        let mut total = 0;
        for g in self.affected_groups() {
            total += g.subscribers;
            if let Some(p) = &g.platform {
                *by_platform.entry(p).or_default() += g.subscribers;
            }
        }
        total > 0
            && by_platform
                .values()
                .any(|&n| n as f64 >= 0.9 * total as f64)
    }

    /// Scope per SPEC §6.4, from the figures and the topology's regions.
    fn compute_scope(&self, topology: &Topology, figures: &Figures) -> Scope {
        if figures.per_service.values().any(|f| f.peak_share >= 0.5) {
            return Scope::National;
        }
        let mut affected_regions: BTreeSet<&str> = BTreeSet::new();
        let mut region_affected: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for g in self.affected_groups() {
            if let Some(r) = &g.region {
                affected_regions.insert(r);
                *region_affected.entry((&g.service, r)).or_default() += g.subscribers;
            }
        }
        for service in self.services.keys() {
            let Some(si) = topology.service_index(service) else {
                continue;
            };
            let regions: BTreeSet<&str> = topology.services[si]
                .groups
                .iter()
                .filter_map(|&g| topology.groups[g].region.as_deref())
                .collect();
            let hit = regions
                .iter()
                .filter(|r| region_affected.contains_key(&(service.as_str(), **r)))
                .count();
            if regions.len() >= 2 && hit * 2 >= regions.len() {
                return Scope::Distributed;
            }
        }
        if affected_regions.len() >= 2 {
            return Scope::Regional;
        }
        for ((service, region), affected) in &region_affected {
            let Some(si) = topology.service_index(service) else {
                continue;
            };
            let total: u64 = topology.services[si]
                .groups
                .iter()
                .map(|&g| &topology.groups[g])
                .filter(|g| g.region.as_deref() == Some(region))
                .map(|g| g.subscribers)
                .sum();
            if total > 0 && *affected * 2 >= total {
                return Scope::Regional;
            }
        }
        Scope::Localized
    }

    /// SPEC §6.5; `rule_met`: a reporting rule set has status `met` (not `met_needs_review`,
    /// which waits for a person's judgement).
    fn compute_severity(&self, figures: &Figures, scope: Scope, rule_met: bool) -> Severity {
        let f = figures.per_service.values();
        if scope == Scope::National || f.clone().any(|s| s.peak_share >= 0.25) {
            Severity::Sev1
        } else if rule_met
            || f.clone().any(|s| s.peak_share >= 0.01)
            || figures.peak_affected >= 100_000
        {
            Severity::Sev2
        } else if figures.peak_affected > 0
            || f.clone()
                .any(|s| s.degraded_1pct >= Duration::from_secs(30 * 60))
        {
            Severity::Sev3
        } else {
            Severity::Sev4
        }
    }

    fn compute_impact(&self) -> Impact {
        let statuses: Vec<ComponentStatus> =
            self.services.values().map(|s| s.component_status).collect();
        let worst = match statuses.iter().max() {
            Some(ComponentStatus::MajorOutage) => Impact::Critical,
            Some(ComponentStatus::PartialOutage) => Impact::Major,
            Some(ComponentStatus::DegradedPerformance) => Impact::Minor,
            _ => Impact::None,
        };
        let hard = statuses
            .iter()
            .filter(|s| **s >= ComponentStatus::PartialOutage)
            .count();
        let by_breadth = match hard {
            0 | 1 => Impact::None,
            2 => Impact::Major,
            _ => Impact::Critical,
        };
        worst.max(by_breadth)
    }

    /// Re-derives reporting, severity, impact and scope; they never decrease while open. A
    /// severity raise is noted in the timeline unless the incident opens in this same
    /// update; a rule set newly met always is.
    fn reassess(
        &mut self,
        topology: &Topology,
        reporting: &ReportingSettings,
        now: Timestamp,
        just_opened: bool,
    ) {
        let figures = self.figures(now);
        self.assess_reporting(reporting, now);
        let rule_met = self.reporting.values().any(|o| o.status == RuleStatus::Met);
        let scope = self.compute_scope(topology, &figures).max(self.scope);
        let severity = self
            .compute_severity(&figures, scope, rule_met)
            .max(self.severity);
        let impact = self.compute_impact().max(self.impact);
        if severity > self.severity && !just_opened {
            let message = format!(
                "severity raised from {} to {}",
                self.severity.as_str(),
                severity.as_str()
            );
            self.note(now, "severity_raised", message);
        }
        self.scope = scope;
        self.severity = severity;
        self.impact = impact;
        self.platform_concentrated = self.platform_concentration();
    }

    /// Evaluates the configured rule sets (SPEC §6.6) on each service's step functions,
    /// measured to `now` while the impact lasts, and keeps per rule set the strongest
    /// result seen: once met, a rule set stays met, even if a reload drops it. A rule set
    /// newly met, raised from `met_needs_review` to `met`, or (ofcom) newly critical is
    /// noted in the timeline as `rule_met`.
    fn assess_reporting(&mut self, settings: &ReportingSettings, now: Timestamp) {
        self.reporting.retain(|name, o| {
            o.status != RuleStatus::NotMet || settings.rule_sets.iter().any(|r| r.name() == name)
        });
        let pending: Vec<&reporting::RuleSet> = settings
            .rule_sets
            .iter()
            .filter(|r| !self.reporting.get(r.name()).is_some_and(is_final))
            .collect();
        if pending.is_empty() {
            return;
        }
        let end = self.measure_end(now);
        let series: Vec<(
            &String,
            &ServiceEntry,
            Vec<reporting::Step>,
            Vec<reporting::Step>,
        )> = self
            .services
            .iter()
            .map(|(id, entry)| {
                let down = steps(self.periods_of(id, Health::Down, end));
                let impaired = steps(
                    self.periods_of(id, Health::Down, end)
                        .chain(self.periods_of(id, Health::Degraded, end)),
                );
                (id, entry, down, impaired)
            })
            .collect();
        let services: Vec<reporting::ServiceSeries<'_>> = series
            .iter()
            .map(|(id, entry, down, impaired)| reporting::ServiceSeries {
                id,
                class: entry.class,
                subscribers: entry.subscribers,
                down,
                impaired,
            })
            .collect();
        let mut updates = Vec::new();
        for rule in pending {
            let new = rule.evaluate(&services);
            match self.reporting.get(rule.name()) {
                None => {
                    let raised = new.status != RuleStatus::NotMet;
                    updates.push((rule, new, raised));
                }
                Some(old) if new.status > old.status => {
                    let mut merged = new;
                    merged.critical_at = earliest(merged.critical_at, old.critical_at);
                    updates.push((rule, rule.with_deadlines(merged), true));
                }
                Some(old)
                    if new.status == old.status
                        && old.status != RuleStatus::NotMet
                        && old.critical_at.is_none()
                        && new.critical_at.is_some() =>
                {
                    let mut merged = old.clone();
                    merged.critical_at = new.critical_at;
                    updates.push((rule, rule.with_deadlines(merged), true));
                }
                Some(_) => {}
            }
        }
        drop(services);
        for (rule, outcome, raised) in updates {
            if raised {
                let message = describe_outcome(rule.name(), &outcome);
                self.note(now, "rule_met", message);
            }
            self.reporting.insert(rule.name().to_string(), outcome);
        }
    }

    /// Refreshes the suspected cause and recurrence; notes a new suspect in the timeline.
    fn look_back(&mut self, changes: &[Change], past: &[PastIncident], now: Timestamp) -> bool {
        let suspect = cause::suspect(changes, self);
        let recurrence = cause::recurrence(past, self);
        let changed = suspect != self.suspected_cause || recurrence != self.recurrence;
        if let Some(s) = &suspect
            && self.suspected_cause.as_ref().map(|c| &c.change_id) != Some(&s.change_id)
        {
            let message = format!(
                "suspected cause: change {} registered {} before onset ({:?} confidence)",
                s.change_id,
                humantime::format_duration(Duration::from_secs(s.lag_seconds)),
                s.confidence
            )
            .to_lowercase();
            self.note(now, "suspected_cause", message);
        }
        self.suspected_cause = suspect;
        self.recurrence = recurrence;
        changed
    }

    /// What alerts care about: a change here is an `incident.updated`. Rule sets count
    /// once met (a first evaluation finding nothing is no news).
    fn headline(&self) -> Headline {
        (
            self.severity,
            self.impact,
            self.scope,
            self.services.keys().cloned().collect(),
            self.reporting
                .iter()
                .filter(|(_, o)| o.status != RuleStatus::NotMet)
                .map(|(name, o)| (name.clone(), o.status, o.critical == Some(true)))
                .collect(),
        )
    }

    /// Aligns the periods of the incident's groups with their current health.
    /// A reload may remove a service or group: it stops counting at `now` and no longer
    /// keeps the incident open.
    fn close_unconfigured(&mut self, topology: &Topology, now: Timestamp) -> bool {
        let mut changed = false;
        for (id, entry) in self.services.iter_mut() {
            if topology.service_index(id).is_none()
                && entry.component_status != ComponentStatus::Operational
            {
                entry.component_status = ComponentStatus::Operational;
                changed = true;
            }
        }
        for g in &mut self.groups {
            let configured = topology
                .group_index(&g.group)
                .is_some_and(|gi| topology.services[topology.groups[gi].service].id == g.service);
            if let Some(open) = g.periods.last_mut().filter(|p| p.end.is_none())
                && !configured
            {
                open.end = Some(now.max(open.start));
                changed = true;
            }
        }
        changed
    }

    fn track_groups(&mut self, topology: &Topology, groups: &[GroupStatus]) -> bool {
        let mut changed = false;
        for service in self.services.keys().cloned().collect::<Vec<_>>() {
            let Some(si) = topology.service_index(&service) else {
                continue;
            };
            for &gi in &topology.services[si].groups {
                let group = &topology.groups[gi];
                let status = groups[gi];
                let existing = self.groups.iter().position(|g| g.group == group.id);
                let entry = match (existing, status.health) {
                    (Some(i), _) => &mut self.groups[i],
                    (None, Health::Ok) => continue,
                    (None, _) => {
                        self.groups.push(GroupImpact {
                            group: group.id.clone(),
                            service: service.clone(),
                            platform: group.platform.clone(),
                            region: group.region.clone(),
                            subscribers: group.subscribers,
                            periods: Vec::new(),
                        });
                        self.groups.last_mut().expect("just pushed")
                    }
                };
                let open = entry.periods.last_mut().filter(|p| p.end.is_none());
                match (open, status.health) {
                    (Some(p), h) if p.health == h => {}
                    (Some(p), h) => {
                        p.end = Some(status.since.max(p.start));
                        if h != Health::Ok {
                            entry.periods.push(Period {
                                health: h,
                                start: status.since,
                                end: None,
                            });
                        }
                        changed = true;
                    }
                    (None, Health::Ok) => {}
                    (None, h) => {
                        entry.periods.push(Period {
                            health: h,
                            start: status.since,
                            end: None,
                        });
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    fn last_period_end(&self) -> Option<Timestamp> {
        self.groups
            .iter()
            .flat_map(|g| g.periods.iter())
            .filter_map(|p| p.end)
            .max()
    }
}

// === The book of open incidents ===

/// The open incidents and the id sequence. Owned by the engine task alone.
#[derive(Debug, Clone)]
pub struct IncidentBook {
    open: Vec<Incident>,
    next_seq: u64,
    /// Registered changes of the last 72 h, for suspected causes.
    changes: Vec<Change>,
    /// Incidents of the last 30 days, for recurrence.
    history: Vec<PastIncident>,
}

impl Default for IncidentBook {
    /// An empty book whose first incident is `inc-000001`.
    fn default() -> Self {
        Self::restore(Vec::new(), 0)
    }
}

impl IncidentBook {
    /// Resumes from stored state: the open incidents and the highest sequence used.
    pub fn restore(open: Vec<Incident>, last_seq: u64) -> Self {
        Self {
            open,
            next_seq: last_seq + 1,
            changes: Vec::new(),
            history: Vec::new(),
        }
    }

    /// Adds what suspected causes and recurrence look back on: past incidents (resolved,
    /// last 30 days) and registered changes.
    pub fn remember(&mut self, history: Vec<PastIncident>, changes: Vec<Change>) {
        self.history.extend(history);
        self.changes.extend(changes);
    }

    /// Records a change; open incidents take it into account at the next update.
    pub fn record_change(&mut self, change: Change) {
        self.changes.retain(|c| c.id != change.id);
        self.changes.push(change);
    }

    /// An operator took the incident in hand: `investigating` becomes `identified`.
    /// Returns the incident to persist, or `None` when no such incident is open.
    pub fn acknowledge(&mut self, id: &str, by: Option<&str>, now: Timestamp) -> Option<Incident> {
        let inc = self.open.iter_mut().find(|i| i.id == id)?;
        if inc.acknowledged_at.is_none() {
            inc.acknowledged_at = Some(now);
            if inc.status == IncidentStatus::Investigating {
                inc.status = IncidentStatus::Identified;
            }
            let who = by.map(|b| format!(" by {b}")).unwrap_or_default();
            inc.note(now, "acknowledged", format!("acknowledged{who}"));
        }
        Some(inc.clone())
    }

    pub fn open(&self) -> &[Incident] {
        &self.open
    }

    pub fn get(&self, id: &str) -> Option<&Incident> {
        self.open.iter().find(|i| i.id == id)
    }

    /// Applies the current group health at `now`: opens, joins, recovers and reopens.
    pub fn update(
        &mut self,
        topology: &Topology,
        groups: &[GroupStatus],
        settings: &IncidentSettings,
        now: Timestamp,
    ) -> Changes {
        let statuses: Vec<ServiceStatus> = (0..topology.services.len())
            .map(|s| service_status(topology, s, groups, now))
            .collect();
        let before: Vec<_> = self
            .open
            .iter()
            .map(|i| (i.headline(), i.clone()))
            .collect();
        let mut opened: BTreeSet<String> = BTreeSet::new();

        // Services that start failing join a related open incident or open a new one.
        for (si, status) in statuses.iter().enumerate() {
            let service = &topology.services[si];
            if !status.status.is_failing()
                || self
                    .open
                    .iter()
                    .any(|i| i.services.contains_key(&service.id))
            {
                continue;
            }
            let failing: Vec<usize> = service
                .groups
                .iter()
                .copied()
                .filter(|&g| groups[g].health != Health::Ok)
                .collect();
            let onset = failing
                .iter()
                .map(|&g| groups[g].since)
                .min()
                .unwrap_or(now);
            let related = self.open.iter_mut().find(|inc| {
                let close =
                    (onset - inc.onset_at).abs() <= chrono_duration(settings.correlation_window);
                close
                    && failing.iter().any(|&g| {
                        let grp = &topology.groups[g];
                        inc.groups.iter().any(|gi| {
                            (grp.platform.is_some() && gi.platform == grp.platform)
                                || (grp.region.is_some() && gi.region == grp.region)
                        })
                    })
            });
            let entry = ServiceEntry {
                name: service.name.clone(),
                subscribers: service.subscribers,
                component_status: status.status,
                class: service.class,
            };
            match related {
                Some(inc) => {
                    inc.services.insert(service.id.clone(), entry);
                    inc.onset_at = inc.onset_at.min(onset);
                    // Tracked now so that services failing in this same update can
                    // correlate with this service's groups.
                    inc.track_groups(topology, groups);
                    let message = format!("{} joined: {}", service.name, describe(status));
                    inc.note(now, "service_joined", message);
                }
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let mut inc = Incident {
                        id: Incident::id_for(seq),
                        seq,
                        status: IncidentStatus::Investigating,
                        severity: Severity::Sev4,
                        impact: Impact::None,
                        scope: Scope::Localized,
                        platform_concentrated: false,
                        onset_at: onset,
                        detected_at: now,
                        impact_end_at: None,
                        monitoring_at: None,
                        resolved_at: None,
                        services: BTreeMap::from([(service.id.clone(), entry)]),
                        groups: Vec::new(),
                        suspected_cause: None,
                        recurrence: None,
                        acknowledged_at: None,
                        reporting: BTreeMap::new(),
                        timeline: Vec::new(),
                    };
                    inc.track_groups(topology, groups);
                    let message = format!("{}: {}", service.name, describe(status));
                    inc.note(now, "opened", message);
                    opened.insert(inc.id.clone());
                    self.open.push(inc);
                }
            }
        }

        let mut changes = Changes::default();
        let past: Vec<PastIncident> = self
            .history
            .iter()
            .cloned()
            .chain(self.open.iter().map(PastIncident::of))
            .collect();
        for inc in &mut self.open {
            let mut changed = inc.track_groups(topology, groups);
            // A group whose failure began before the onset (targets on longer intervals,
            // or a degradation that opened the incident first) moves the onset back.
            if let Some(first) = inc
                .groups
                .iter()
                .flat_map(|g| g.periods.iter().map(|p| p.start))
                .min()
                .filter(|first| *first < inc.onset_at)
            {
                inc.onset_at = first;
                changed = true;
            }
            changed |= inc.close_unconfigured(topology, now);
            for (id, entry) in inc.services.iter_mut() {
                if let Some(si) = topology.service_index(id) {
                    changed |= entry.component_status != statuses[si].status;
                    entry.component_status = statuses[si].status;
                    entry.class = topology.services[si].class;
                }
            }
            let failing = inc
                .services
                .values()
                .any(|s| s.component_status.is_failing());
            match (inc.status, failing) {
                (IncidentStatus::Investigating | IncidentStatus::Identified, false) => {
                    inc.status = IncidentStatus::Monitoring;
                    inc.monitoring_at = Some(now);
                    inc.impact_end_at = inc.last_period_end().or(Some(now));
                    let message = format!(
                        "impact over; resolving after {} without failures",
                        humantime::format_duration(settings.resolve_after)
                    );
                    inc.note(now, "recovered", message);
                    changed = true;
                }
                (IncidentStatus::Monitoring, true) => {
                    inc.status = IncidentStatus::Investigating;
                    inc.monitoring_at = None;
                    inc.impact_end_at = None;
                    inc.note(now, "reopened", "failing again".to_string());
                    changed = true;
                }
                _ => {}
            }
            let just_opened = opened.contains(&inc.id);
            inc.reassess(topology, &settings.reporting, now, just_opened);
            changed |= inc.look_back(&self.changes, &past, now);
            if just_opened {
                changes.events.push((EventKind::Opened, inc.clone()));
                changes.changed.push(inc.clone());
                continue;
            }
            let (headline, old) = before
                .iter()
                .find(|(_, old)| old.id == inc.id)
                .expect("every open incident not opened now existed before");
            if *headline != inc.headline() {
                changes.events.push((EventKind::Updated, inc.clone()));
            }
            if changed || old != inc {
                changes.changed.push(inc.clone());
            }
        }
        changes
    }

    /// Resolves incidents that stayed quiet for `resolve_after`.
    pub fn tick(&mut self, settings: &IncidentSettings, now: Timestamp) -> Changes {
        // What look-backs can still need, with room for incidents that stay open for days.
        let keep_history = chrono_duration(cause::RECURRENCE_WINDOW * 2);
        let keep_changes = chrono_duration(cause::MAX_LAG * 3);
        self.history.retain(|p| now - p.onset_at <= keep_history);
        self.changes.retain(|c| now - c.at <= keep_changes);
        let mut changes = Changes::default();
        let resolve_after = chrono_duration(settings.resolve_after);
        let mut i = 0;
        while i < self.open.len() {
            let inc = &self.open[i];
            let due = inc.status == IncidentStatus::Monitoring
                && inc.monitoring_at.is_some_and(|m| now - m >= resolve_after);
            if !due {
                i += 1;
                continue;
            }
            let mut inc = self.open.remove(i);
            inc.status = IncidentStatus::Resolved;
            inc.resolved_at = Some(now);
            let figures = inc.figures(now);
            let message = format!(
                "resolved after {} of impact",
                humantime::format_duration(Duration::from_secs(figures.duration.as_secs()))
            );
            inc.note(now, "resolved", message);
            self.history.push(PastIncident::of(&inc));
            changes.events.push((EventKind::Resolved, inc.clone()));
            changes.changed.push(inc);
        }
        changes
    }
}

type Headline = (
    Severity,
    Impact,
    Scope,
    Vec<String>,
    Vec<(String, RuleStatus, bool)>,
);

/// Nothing can make this outcome stronger: met, and (ofcom) critical.
fn is_final(o: &RuleOutcome) -> bool {
    o.status == RuleStatus::Met && o.critical != Some(false)
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The timeline message of a rule set newly met.
fn describe_outcome(name: &str, o: &RuleOutcome) -> String {
    let time = |t: Option<Timestamp>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".to_string())
    };
    let mut message = format!(
        "{name} {}: {} on {}, met at {}",
        o.status,
        o.rule.as_deref().unwrap_or("-"),
        o.service.as_deref().unwrap_or("-"),
        time(o.met_at)
    );
    if let Some(review) = &o.review {
        message.push_str(&format!(" (review: {review})"));
    }
    if o.critical == Some(true) {
        message.push_str(&format!("; critical since {}", time(o.critical_at)));
    }
    if o.notify_by.is_some() {
        message.push_str(&format!("; notify by {}", time(o.notify_by)));
    }
    message
}

fn describe(status: &ServiceStatus) -> String {
    match status.status {
        ComponentStatus::DegradedPerformance => {
            format!("{} subscribers degraded", status.degraded)
        }
        _ => format!(
            "{} subscribers affected ({:.1}%)",
            status.affected,
            status.share * 100.0
        ),
    }
}

// === Time arithmetic ===

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

fn minutes(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 60_000.0
}

/// The step function of summed weights over `[start, end)` spans: `(from, to, total)`.
fn steps(
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
fn longest_run(steps: &[(Timestamp, Timestamp, u64)], threshold: u64) -> Duration {
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

#[cfg(test)]
mod tests;
