//! How big an incident is in the terms operators and regulators use: scope, severity and
//! impact (never lowered while open), reporting rule sets, the suspected cause and
//! recurrence. Methods of [`Incident`] that the book calls after each update.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::cause::{self, Change, PastIncident};
use super::model::{
    Figures, Impact, Incident, IncidentStatus, Scope, ServiceEntry, Severity, steps,
};
use super::reporting::{self, ReportingSpec, RuleOutcome, RuleStatus};
use super::status::{ComponentStatus, Health, ratio};
use crate::clock::Timestamp;
use crate::format;
use crate::topology::Topology;

impl Incident {
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

    /// Scope, from the figures and the topology's regions.
    pub(super) fn compute_scope(&self, topology: &Topology, figures: &Figures) -> Scope {
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

    /// Severity; `rule_met`: a reporting rule set has status `met` (not `met_needs_review`,
    /// which waits for a person's judgement).
    pub(super) fn compute_severity(
        &self,
        figures: &Figures,
        scope: Scope,
        rule_met: bool,
    ) -> Severity {
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

    pub(super) fn compute_impact(&self) -> Impact {
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
    pub(super) fn reassess(
        &mut self,
        topology: &Topology,
        reporting: &ReportingSpec,
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

    /// Evaluates the configured rule sets on each service's step functions,
    /// measured to `now` while the impact lasts, and keeps per rule set the strongest
    /// result seen: once met, a rule set stays met, even if a reload drops it. A rule set
    /// newly met, raised from `met_needs_review` to `met`, or (ofcom) newly critical is
    /// noted in the timeline as `rule_met`.
    pub(super) fn assess_reporting(&mut self, settings: &ReportingSpec, now: Timestamp) {
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
    pub(super) fn look_back(
        &mut self,
        changes: &[Change],
        past: &[PastIncident],
        now: Timestamp,
    ) -> bool {
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
    /// once met (a first evaluation finding nothing is no news); platforms and regions
    /// only ever grow, so a change is one joining.
    pub(super) fn headline(&self) -> Headline {
        Headline {
            severity: self.severity,
            impact: self.impact,
            scope: self.scope,
            services: self.services.keys().cloned().collect(),
            platforms: self.labels(|g| g.platform.as_ref()),
            regions: self.labels(|g| g.region.as_ref()),
            reporting: self
                .reporting
                .iter()
                .filter(|(_, o)| o.status != RuleStatus::NotMet)
                .map(|(name, o)| (name.clone(), o.status, o.critical == Some(true)))
                .collect(),
        }
    }

    /// The most affected service now, with its subscribers of groups down: the figure
    /// announcements carry and compare (`affected` of the view). Needs no step functions,
    /// so it is cheap enough for every tick.
    pub(super) fn most_affected_now(&self) -> Option<(&String, u64)> {
        self.services
            .keys()
            .map(|id| (id, self.subscribers_now(id, Health::Down)))
            .max_by_key(|(_, n)| *n)
    }

    /// The growth or recovery step from `before` to `after` (the headlines at the start and
    /// the end of an update) and from the last announced figure, if any is news: platforms
    /// or regions joined, or the affected subscribers grown or fallen by `affected_change`
    /// of the announced figure while the impact lasts (a full recovery is the resolution's
    /// news). Returns the timeline event (`grown` or `recovering`), its message and what
    /// customers are told.
    pub(super) fn step(
        &self,
        before: &Headline,
        after: &Headline,
        affected_change: f64,
    ) -> Option<(&'static str, String, String)> {
        let announced = self.announced_affected?;
        let most = self.most_affected_now();
        let affected = most.map_or(0, |(_, n)| n);
        let impacting = matches!(
            self.status,
            IncidentStatus::Investigating | IncidentStatus::Identified
        );
        let change = impacting
            .then(|| material_change(announced, affected, affected_change))
            .flatten();
        let joined = |old: &[String], new: &[String], one: &str, many: &str| {
            let added: Vec<&str> = new
                .iter()
                .filter(|l| !old.contains(l))
                .map(String::as_str)
                .collect();
            match added.len() {
                0 => None,
                1 => Some(format!("{one} {}", added[0])),
                _ => Some(format!("{many} {}", added.join(", "))),
            }
        };
        let added: Vec<String> = [
            joined(&before.regions, &after.regions, "region", "regions"),
            joined(&before.platforms, &after.platforms, "platform", "platforms"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if added.is_empty() && change.is_none() {
            return None;
        }
        let what = match (added.is_empty(), change) {
            (false, _) => format!("{} joined", added.join(" and ")),
            (true, Some(Movement::Grown)) => format!("grown from {announced}"),
            (true, _) => format!("recovering from {announced}"),
        };
        let event = match change {
            Some(Movement::Fallen) => "recovering",
            _ => "grown",
        };
        // The figure is the most affected service's; with several services, say which.
        let (name, share) = most
            .map(|(id, n)| {
                let entry = &self.services[id];
                let name = (self.services.len() > 1).then(|| format!("{} ", entry.name));
                (name, ratio(n, entry.subscribers))
            })
            .unwrap_or((None, 0.0));
        let regions: BTreeSet<&str> = self
            .groups
            .iter()
            .filter(|g| g.is_now(Health::Down))
            .filter_map(|g| g.region.as_deref())
            .collect();
        let mut message = format!(
            "{what}: {affected} {}subscribers affected ({:.1}%)",
            name.clone().unwrap_or_default(),
            share * 100.0
        );
        match regions.len() {
            0 => {}
            1 => message.push_str(" in 1 region"),
            n => message.push_str(&format!(" in {n} regions")),
        }
        // Degraded subscribers are not affected, but a recovery that leaves them slow is
        // not over.
        let degraded = self
            .services
            .keys()
            .map(|s| self.subscribers_now(s, Health::Degraded))
            .max()
            .unwrap_or(0);
        if degraded > 0 {
            message.push_str(&format!(", {degraded} degraded"));
        }
        let service = name.map_or(String::new(), |n| format!(" of {}", n.trim_end()));
        let public = match event {
            "recovering" => format!(
                "Service is coming back: about {} of subscribers{service} are still affected.",
                format::percent(share)
            ),
            _ => format!(
                "The problem has spread: about {} of subscribers{service} are affected.",
                format::percent(share)
            ),
        };
        Some((event, message, public))
    }
}

/// Which way the affected subscribers moved, when by enough to be news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Movement {
    Grown,
    Fallen,
}

/// Whether `now` differs from `announced` by at least `fraction` of it: grown by that
/// much, or fallen by that much (by all of it at most, so with a fraction of 1 or more a
/// fall counts once nobody is left affected). Anything from nobody is growth. In parts per
/// million, so that a threshold of exactly 25% is met at exactly 25%.
pub(super) fn material_change(announced: u64, now: u64, fraction: f64) -> Option<Movement> {
    let ppm = (fraction * 1e6).round() as u128;
    let (announced, now) = (u128::from(announced), u128::from(now));
    if now > announced && (now - announced) * 1_000_000 >= ppm * announced {
        Some(Movement::Grown)
    } else if now < announced && (announced - now) * 1_000_000 >= ppm.min(1_000_000) * announced {
        Some(Movement::Fallen)
    } else {
        None
    }
}

/// What alerts care about, compared before and after each update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Headline {
    severity: Severity,
    impact: Impact,
    scope: Scope,
    services: Vec<String>,
    platforms: Vec<String>,
    regions: Vec<String>,
    reporting: Vec<(String, RuleStatus, bool)>,
}

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
