//! The book of open incidents: opens, joins, recovers, reopens and resolves them as group
//! health and time change, and says what each update did ([`BookUpdate`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::IncidentSpec;
use super::cause::{self, Change, PastIncident};
use super::model::{
    EventKind, GroupImpact, Impact, Incident, IncidentStatus, Period, Scope, ServiceEntry,
    Severity, chrono_duration,
};
use super::status::{ComponentStatus, GroupStatus, Health, ServiceImpact, service_status};
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::format;
use crate::topology::{Dependency, Topology};

/// What an update of the book did: events to alert on, and incidents to persist.
#[derive(Debug, Default)]
pub struct BookUpdate {
    pub events: Vec<(EventKind, Incident)>,
    /// Every incident that changed (including those with events), latest state.
    pub changed: Vec<Incident>,
}

impl BookUpdate {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

/// The open incidents and the id sequence. Owned by the engine task alone.
#[derive(Debug, Clone)]
pub struct IncidentBook {
    open: Vec<Incident>,
    next_seq: u64,
    /// The store's epoch, in every new id ([`Incident::id_in`]).
    epoch: String,
    /// Registered changes of the last 72 h, for suspected causes.
    changes: Vec<Change>,
    /// Incidents of the last 30 days, for recurrence.
    history: Vec<PastIncident>,
    /// Services failing outside every open incident that may still join one, and when
    /// each was first seen so (`group_wait`).
    waiting: HashMap<String, Timestamp>,
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
            epoch: String::new(),
            changes: Vec::new(),
            history: Vec::new(),
            waiting: HashMap::new(),
        }
    }

    /// Gives new incidents ids in `epoch` (see [`Incident::id_in`]).
    pub fn in_epoch(mut self, epoch: String) -> Self {
        self.epoch = epoch;
        self
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
            inc.note_public(
                now,
                "acknowledged",
                format!("acknowledged{who}"),
                "The cause has been identified and is being worked on.".to_string(),
            );
        }
        Some(inc.clone())
    }

    /// Adds an operator's step to open incident `id`'s timeline: with `public`, a
    /// customer-facing update; without, a note for operators. `None` for no such open
    /// incident.
    pub fn annotate(
        &mut self,
        id: &str,
        event: &str,
        message: String,
        public: Option<String>,
        now: Timestamp,
    ) -> Option<Incident> {
        let inc = self.open.iter_mut().find(|i| i.id == id)?;
        match public {
            Some(text) => inc.note_public(now, event, message, text),
            None => inc.note(now, event, message),
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
    /// `target_state` tells whether a target that others depend on is down.
    pub fn update(
        &mut self,
        topology: &Topology,
        groups: &[GroupStatus],
        target_state: &dyn Fn(usize) -> TargetState,
        settings: &IncidentSpec,
        now: Timestamp,
    ) -> BookUpdate {
        let statuses: Vec<ServiceImpact> = (0..topology.services.len())
            .map(|s| service_status(topology, s, groups, now))
            .collect();
        let before: Vec<_> = self
            .open
            .iter()
            .map(|i| (i.headline(), i.clone()))
            .collect();
        let mut opened: BTreeSet<String> = BTreeSet::new();
        // Groups that failed since the last update are part of their incidents before
        // failing services look for a related one.
        for inc in &mut self.open {
            inc.track_groups(topology, groups);
        }

        // Services that start failing join the incident of a dependency that is down, a
        // related open incident, or open a new one. One held by a dependency whose
        // incident is not open yet waits for the services that may open it; if none does,
        // it goes the usual way.
        let mut held: Vec<(usize, Dependency)> = Vec::new();
        for (si, status) in statuses.iter().enumerate() {
            if !self.starts_failing(topology, si, status) {
                continue;
            }
            match held_by(topology, groups, target_state, si) {
                Some(d) => held.push((si, d)),
                None => {
                    opened.extend(self.open_or_join(topology, groups, settings, si, status, now))
                }
            }
        }
        loop {
            let before_pass = held.len();
            held.retain(|&(si, d)| {
                !self.join_dependency(topology, groups, si, d, &statuses[si], now)
            });
            if held.len() == before_pass {
                break;
            }
        }
        for (si, _) in held {
            if self.starts_failing(topology, si, &statuses[si]) {
                opened.extend(self.open_or_join(
                    topology,
                    groups,
                    settings,
                    si,
                    &statuses[si],
                    now,
                ));
            }
        }

        // A service waits only while it still fails outside every open incident.
        let done: Vec<String> = self
            .waiting
            .keys()
            .filter(|id| {
                !topology
                    .service_index(id)
                    .is_some_and(|si| self.starts_failing(topology, si, &statuses[si]))
            })
            .cloned()
            .collect();
        for id in done {
            self.waiting.remove(&id);
        }

        let mut changes = BookUpdate::default();
        let past: Vec<PastIncident> = self
            .history
            .iter()
            .cloned()
            .chain(self.open.iter().map(PastIncident::of))
            .collect();
        for inc in &mut self.open {
            let mut changed = false;
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
                    inc.note_step(
                        now,
                        "recovered",
                        message,
                        Some("The service is working again; we are monitoring it.".to_string()),
                    );
                    changed = true;
                }
                (IncidentStatus::Monitoring, true) => {
                    inc.status = IncidentStatus::Investigating;
                    inc.monitoring_at = None;
                    inc.impact_end_at = None;
                    inc.note_step(
                        now,
                        "reopened",
                        "failing again".to_string(),
                        Some("The problem is back; we are investigating.".to_string()),
                    );
                    changed = true;
                }
                _ => {}
            }
            let just_opened = opened.contains(&inc.id);
            inc.reassess(topology, &settings.reporting, now, just_opened);
            changed |= inc.look_back(&self.changes, &past, now);
            let affected = inc.most_affected_now().map_or(0, |(_, n)| n);
            if just_opened {
                inc.announced_affected = Some(affected);
                changes.events.push((EventKind::Opened, inc.clone()));
                changes.changed.push(inc.clone());
                continue;
            }
            let (headline, old) = before
                .iter()
                .find(|(_, old)| old.id == inc.id)
                .expect("every open incident not opened now existed before");
            // Stored by an earlier version: what it announced is unknown, and taking the
            // figure of now is better than announcing growth from nothing.
            inc.announced_affected.get_or_insert(affected);
            let after = inc.headline();
            let step = inc.step(headline, &after, settings.affected_change);
            let stepped = step.is_some();
            if let Some((event, message, public)) = step {
                inc.note_step(now, event, message, Some(public));
            }
            if stepped || *headline != after {
                inc.announced_affected = Some(affected);
                changes.events.push((EventKind::Updated, inc.clone()));
            }
            if changed || old != inc {
                changes.changed.push(inc.clone());
            }
        }
        changes
    }

    /// Whether service `si` fails now and is in no open incident yet.
    fn starts_failing(&self, topology: &Topology, si: usize, status: &ServiceImpact) -> bool {
        let id = &topology.services[si].id;
        status.status.is_failing() && !self.open.iter().any(|i| i.services.contains_key(id))
    }

    /// Service `si`, failing, joins the open incident of dependency `d`; false when that
    /// dependency is in no open incident.
    fn join_dependency(
        &mut self,
        topology: &Topology,
        groups: &[GroupStatus],
        si: usize,
        d: Dependency,
        status: &ServiceImpact,
        now: Timestamp,
    ) -> bool {
        let services: Vec<&str> = topology
            .dependency_services(d)
            .into_iter()
            .map(|s| topology.services[s].id.as_str())
            .collect();
        let Some(inc) = self
            .open
            .iter_mut()
            .find(|i| services.iter().any(|s| i.services.contains_key(*s)))
        else {
            return false;
        };
        let service = &topology.services[si];
        let through = topology.dependency_id(d).to_string();
        let onset = failing_onset(topology, groups, si, now);
        inc.services.insert(
            service.id.clone(),
            ServiceEntry {
                name: service.name.clone(),
                subscribers: service.subscribers,
                component_status: status.status,
                class: service.class,
                through: Some(through.clone()),
            },
        );
        inc.onset_at = inc.onset_at.min(onset);
        inc.track_groups(topology, groups);
        let message = format!(
            "{} joined through `{through}`, which it depends on: {}",
            service.name,
            describe(status)
        );
        let public = format!("{} is also affected: {}.", service.name, tell(status));
        inc.note_public(now, "service_joined", message, public);
        true
    }

    /// Service `si`, failing, joins a related open incident (close in time, sharing a
    /// platform or region) or opens a new one, whose id it returns.
    fn open_or_join(
        &mut self,
        topology: &Topology,
        groups: &[GroupStatus],
        settings: &IncidentSpec,
        si: usize,
        status: &ServiceImpact,
        now: Timestamp,
    ) -> Option<String> {
        let service = &topology.services[si];
        let failing: Vec<usize> = service
            .groups
            .iter()
            .copied()
            .filter(|&g| groups[g].health != Health::Ok)
            .collect();
        let onset = failing_onset(topology, groups, si, now);
        let related = self.open.iter().position(|inc| {
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
            through: None,
        };
        match related {
            None if self.waits(&service.id, onset, settings, now) => None,
            Some(i) => {
                let inc = &mut self.open[i];
                inc.services.insert(service.id.clone(), entry);
                inc.onset_at = inc.onset_at.min(onset);
                // Tracked now so that services failing in this same update can
                // correlate with this service's groups.
                inc.track_groups(topology, groups);
                let message = format!("{} joined: {}", service.name, describe(status));
                let public = format!("{} is also affected: {}.", service.name, tell(status));
                inc.note_public(now, "service_joined", message, public);
                None
            }
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let mut inc = Incident {
                    id: Incident::id_in(&self.epoch, seq),
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
                    announced_affected: None,
                    timeline: Vec::new(),
                    steps_omitted: 0,
                };
                inc.track_groups(topology, groups);
                let message = format!("{}: {}", service.name, describe(status));
                let public = format!(
                    "We are investigating a problem with {}: {}.",
                    service.name,
                    tell(status)
                );
                inc.note_public(now, "opened", message, public);
                let id = inc.id.clone();
                self.open.push(inc);
                Some(id)
            }
        }
    }

    /// Whether service `id`, failing since `onset` and related to no open incident, waits
    /// before opening its own: an open incident close enough in time may still come to
    /// share a platform or region with it, as an outage spreading over the probe interval
    /// shows more of itself. With nothing open it never waits: the first alert goes out at
    /// once.
    fn waits(
        &mut self,
        id: &str,
        onset: Timestamp,
        settings: &IncidentSpec,
        now: Timestamp,
    ) -> bool {
        let window = chrono_duration(settings.correlation_window);
        if settings.group_wait.is_zero()
            || !self
                .open
                .iter()
                .any(|inc| (onset - inc.onset_at).abs() <= window)
        {
            return false;
        }
        let since = *self.waiting.entry(id.to_string()).or_insert(now);
        now - since < chrono_duration(settings.group_wait)
    }

    /// Resolves incidents that stayed quiet for `resolve_after`.
    pub fn tick(&mut self, settings: &IncidentSpec, now: Timestamp) -> BookUpdate {
        // What look-backs can still need, with room for incidents that stay open for days.
        let keep_history = chrono_duration(cause::RECURRENCE_WINDOW * 2);
        let keep_changes = chrono_duration(cause::MAX_LAG * 3);
        self.history.retain(|p| now - p.onset_at <= keep_history);
        self.changes.retain(|c| now - c.at <= keep_changes);
        let mut changes = BookUpdate::default();
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
            let public = format!(
                "This incident is resolved; the service was affected for {}.",
                format::duration(figures.duration)
            );
            inc.note_public(now, "resolved", message, public);
            self.history.push(PastIncident::of(&inc));
            changes.events.push((EventKind::Resolved, inc.clone()));
            changes.changed.push(inc);
        }
        changes
    }
}

/// The dependency service `si`'s failure is part of: every failing group of it is held
/// by one that is down, through its own `depends_on` or that of each of its failing
/// targets. The first such dependency; `None` when some failure is the service's own.
fn held_by(
    topology: &Topology,
    groups: &[GroupStatus],
    target_state: &dyn Fn(usize) -> TargetState,
    si: usize,
) -> Option<Dependency> {
    let is_down = |d: &&Dependency| match **d {
        Dependency::Group(g) => groups[g].health == Health::Down,
        Dependency::Target(t) => target_state(t) == TargetState::Down,
    };
    let mut first = None;
    for &g in &topology.services[si].groups {
        if groups[g].health == Health::Ok {
            continue;
        }
        let group = &topology.groups[g];
        let by = match group.depends_on.iter().find(is_down) {
            Some(&d) => d,
            None => {
                let mut failing = group
                    .targets
                    .iter()
                    .filter(|&&t| {
                        matches!(target_state(t), TargetState::Down | TargetState::Degraded)
                    })
                    .peekable();
                failing.peek()?;
                let mut by = None;
                for &t in failing {
                    let d = *topology.targets[t].depends_on.iter().find(is_down)?;
                    by.get_or_insert(d);
                }
                by?
            }
        };
        first.get_or_insert(by);
    }
    first
}

/// When service `si`'s current failure began: the earliest onset of its failing groups.
fn failing_onset(
    topology: &Topology,
    groups: &[GroupStatus],
    si: usize,
    now: Timestamp,
) -> Timestamp {
    topology.services[si]
        .groups
        .iter()
        .filter(|&&g| groups[g].health != Health::Ok)
        .map(|&g| groups[g].since)
        .min()
        .unwrap_or(now)
}

/// The customers' words for a service's impact.
fn tell(status: &ServiceImpact) -> String {
    match status.status {
        ComponentStatus::DegradedPerformance => "it is slower than usual".to_string(),
        ComponentStatus::MajorOutage => "most subscribers cannot use it".to_string(),
        _ => format!(
            "about {} of subscribers cannot use it",
            format::percent(status.share)
        ),
    }
}

fn describe(status: &ServiceImpact) -> String {
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

// === Aligning an incident with group health ===

impl Incident {
    /// Aligns the periods of the incident's groups with their current health.
    /// A reload may remove a service or group: it stops counting at `now` and no longer
    /// keeps the incident open.
    pub(super) fn close_unconfigured(&mut self, topology: &Topology, now: Timestamp) -> bool {
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

    pub(super) fn track_groups(&mut self, topology: &Topology, groups: &[GroupStatus]) -> bool {
        let mut changed = false;
        // Where each group already tracked is in `self.groups`, by topology index: one
        // pass, not a scan per group (an outage can take in tens of thousands).
        let mut tracked: HashMap<usize, usize> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((topology.group_index(&g.group)?, i)))
            .collect();
        for service in self.services.keys().cloned().collect::<Vec<_>>() {
            let Some(si) = topology.service_index(&service) else {
                continue;
            };
            for &gi in &topology.services[si].groups {
                let group = &topology.groups[gi];
                let status = groups[gi];
                let entry = match (tracked.get(&gi), status.health) {
                    (Some(&i), _) => &mut self.groups[i],
                    (None, Health::Ok) => continue,
                    (None, _) => {
                        tracked.insert(gi, self.groups.len());
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
}
