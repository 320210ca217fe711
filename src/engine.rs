//! The engine: the one task that owns detection and incident state.
//!
//! It takes [`ProbeReport`]s from the scheduler, feeds the pure [`Detector`]s and
//! [`IncidentBook`], and fans out: store writes, alert events, metrics, and a
//! [`Snapshot`] published on a `watch` channel for the HTTP side. Nobody else touches
//! this state, so there are no locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertEvent, AlertType, Alerts, new_event_id};
use crate::clock::{Clock, Timestamp};
use crate::config::Settings;
use crate::detector::{Detector, Observation, TargetState, Thresholds};
use crate::incident::{
    ComponentStatus, EventKind, GroupStatus, Health, Incident, IncidentBook, IncidentView,
    service_status,
};
use crate::metrics::{Metrics, TargetMetrics};
use crate::probe::Reason;
use crate::scheduler::ProbeReport;
use crate::store::{Restored, Store};
use crate::topology::{GroupMode, Topology};

/// How often open incidents are re-measured, resolved when quiet, and the snapshot renewed.
pub const TICK: Duration = Duration::from_secs(1);

/// What the HTTP side sees; renewed every [`TICK`] and after every change.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub generated_at: Timestamp,
    pub services: Vec<ServiceView>,
    pub groups: Vec<GroupView>,
    pub targets: Vec<TargetView>,
    /// Open incidents, newest first.
    #[serde(skip)]
    pub open_incidents: Vec<IncidentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub subscribers: u64,
    pub affected: u64,
    pub degraded: u64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub id: String,
    pub service: String,
    pub platform: Option<String>,
    pub region: Option<String>,
    pub subscribers: u64,
    pub health: Health,
    pub since: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub id: String,
    pub probe: &'static str,
    pub groups: Vec<String>,
    pub state: TargetState,
    pub since: Option<Timestamp>,
    pub last_result: Option<LastResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastResult {
    pub at: Timestamp,
    pub ok: bool,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub latency_seconds: f64,
}

/// Messages other than probe reports.
pub enum Control {
    /// A validated new configuration, with the receivers already restarted for it.
    Reconfigure(Arc<Settings>, Alerts),
}

pub struct Engine {
    settings: Arc<Settings>,
    detectors: Vec<Detector>,
    last_results: Vec<Option<LastResult>>,
    groups: Vec<GroupStatus>,
    book: IncidentBook,
    store: Store,
    alerts: Alerts,
    metrics: Arc<Metrics>,
    target_metrics: Vec<TargetMetrics>,
    /// User-minutes already added to the counter, per (incident, service).
    counted_minutes: HashMap<(String, String), f64>,
    clock: Clock,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl Engine {
    /// Builds the engine from stored state; the first snapshot is published at once.
    pub fn new(
        settings: Arc<Settings>,
        restored: Restored,
        store: Store,
        alerts: Alerts,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> (Engine, watch::Receiver<Arc<Snapshot>>) {
        let now = clock.now();
        let mut counted_minutes = HashMap::new();
        for inc in &restored.open_incidents {
            for (service, f) in inc.figures(now).per_service {
                counted_minutes.insert((inc.id.clone(), service), f.user_minutes);
            }
        }
        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            generated_at: now,
            services: Vec::new(),
            groups: Vec::new(),
            targets: Vec::new(),
            open_incidents: Vec::new(),
        }));
        let mut engine = Engine {
            detectors: Vec::new(),
            last_results: Vec::new(),
            groups: Vec::new(),
            book: IncidentBook::restore(restored.open_incidents, restored.last_seq),
            store,
            alerts,
            target_metrics: Vec::new(),
            counted_minutes,
            clock,
            snapshot: tx,
            settings: Arc::clone(&settings),
            metrics,
        };
        engine.adopt(settings, restored.detectors);
        (engine, rx)
    }

    fn topology(&self) -> &Arc<Topology> {
        &self.settings.topology
    }

    /// Takes a topology, keeping the detector state of targets that stay.
    fn adopt(&mut self, settings: Arc<Settings>, mut previous: HashMap<String, Detector>) {
        for old in self.target_metrics.drain(..) {
            self.metrics.forget_target(&old);
        }
        for s in &self.settings.topology.services {
            if settings.topology.service_index(&s.id).is_none() {
                self.metrics.forget_service(&s.id);
            }
        }
        self.settings = settings;
        let topo = Arc::clone(self.topology());
        self.detectors = topo
            .targets
            .iter()
            .map(|t| previous.remove(&t.id).unwrap_or_default())
            .collect();
        self.last_results = vec![None; topo.targets.len()];
        self.target_metrics = topo
            .targets
            .iter()
            .map(|t| self.metrics.target(t, &self.settings.vantage))
            .collect();
        for (tm, d) in self.target_metrics.iter().zip(&self.detectors) {
            tm.set_state(d.state());
        }
        let now = self.clock.now();
        self.groups = (0..topo.groups.len())
            .map(|g| group_from_detectors(&topo, g, &self.detectors, now))
            .collect();
    }

    /// Runs until `token` is cancelled, then saves detector state and flushes the store.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<ProbeReport>,
        mut control: mpsc::Receiver<Control>,
        token: CancellationToken,
    ) {
        self.reassess();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                // A new configuration goes first: reports of its targets may follow it.
                biased;
                _ = token.cancelled() => break,
                Some(message) = control.recv() => match message {
                    Control::Reconfigure(settings, alerts) => {
                        let detectors = std::mem::take(&mut self.detectors);
                        let previous = self
                            .topology()
                            .targets
                            .iter()
                            .map(|t| t.id.clone())
                            .zip(detectors)
                            .collect();
                        self.alerts = alerts;
                        self.adopt(settings, previous);
                        self.reassess();
                    }
                },
                Some(report) = reports.recv() => self.on_report(report),
                _ = tick.tick() => self.on_tick(),
            }
        }
        for (t, d) in self.topology().targets.iter().zip(&self.detectors) {
            self.store.save_target(&t.id, d);
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    fn on_report(&mut self, report: ProbeReport) {
        if !Arc::ptr_eq(&report.topology, self.topology()) {
            return; // from a configuration that has been replaced
        }
        let topo = Arc::clone(self.topology());
        let index = report.target;
        let target = &topo.targets[index];
        let result = &report.result;
        self.metrics
            .record_probe(&self.target_metrics[index], result);
        self.last_results[index] = Some(LastResult {
            at: report.started_at,
            ok: result.is_ok(),
            reason: result.failure.as_ref().map(|f| f.reason),
            detail: result.failure.as_ref().map(|f| f.detail.clone()),
            latency_seconds: result.latency.as_secs_f64(),
        });
        let thresholds = Thresholds {
            failure: target.failure_threshold,
            success: target.success_threshold,
            degraded_latency: target.degraded_latency,
        };
        let observation = Observation::of(result, target.degraded_latency);
        let Some(transition) =
            self.detectors[index].observe(observation, report.started_at, &thresholds)
        else {
            return;
        };
        tracing::info!(
            target_id = %target.id,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            since = %transition.since,
            reason = result.failure.as_ref().map(|f| f.reason.as_str()),
            "target state changed"
        );
        self.target_metrics[index].set_state(transition.to);
        self.store.save_target(&target.id, &self.detectors[index]);
        let mut changed = false;
        for &g in &target.groups {
            let health = Health::of_group(
                topo.groups[g].mode,
                topo.groups[g]
                    .targets
                    .iter()
                    .map(|&t| self.detectors[t].state()),
            );
            if health != self.groups[g].health {
                self.groups[g] = GroupStatus {
                    health,
                    since: transition.since,
                };
                changed = true;
            }
        }
        if changed {
            self.reassess();
        }
    }

    fn on_tick(&mut self) {
        let now = self.clock.now();
        let changes = self.book.tick(&self.settings.incidents, now);
        self.apply(changes, now);
        // Maintenance windows open and close with time, not with results.
        self.reassess();
    }

    /// Recomputes service status and incidents from the current group health.
    fn reassess(&mut self) {
        let now = self.clock.now();
        let topo = Arc::clone(self.topology());
        let changes = self
            .book
            .update(&topo, &self.groups, &self.settings.incidents, now);
        self.apply(changes, now);
        self.publish(now);
    }

    fn apply(&mut self, changes: crate::incident::Changes, now: Timestamp) {
        for inc in &changes.changed {
            self.store.save_incident(inc);
        }
        for (kind, inc) in changes.events {
            let view = inc.view(now);
            tracing::info!(
                incident = %inc.id,
                event = kind.as_str(),
                severity = inc.severity.as_str(),
                services = ?view.services,
                peak_affected = view.peak_affected,
                "incident event"
            );
            if kind == EventKind::Opened {
                for service in inc.services.keys() {
                    self.metrics
                        .incidents_total
                        .with_label_values(&[service.as_str(), inc.severity.as_str()])
                        .inc();
                }
            }
            if kind == EventKind::Resolved {
                self.count_user_minutes(&inc, now);
                self.counted_minutes.retain(|(id, _), _| *id != inc.id);
            }
            let event = AlertEvent {
                kind: match kind {
                    EventKind::Opened => AlertType::Opened,
                    EventKind::Updated => AlertType::Updated,
                    EventKind::Resolved => AlertType::Resolved,
                },
                id: new_event_id(),
                occurred_at: now,
                incident: view,
            };
            // Stored first: a crash after an alert never leaves an incident unknown to the
            // next start, which would announce it a second time.
            let alerts = self.alerts.clone();
            self.store.after_commit(move || alerts.dispatch(&event));
        }
    }

    /// Adds the growth of each service's user-minutes since last counted.
    fn count_user_minutes(&mut self, inc: &Incident, now: Timestamp) {
        for (service, f) in inc.figures(now).per_service {
            let seen = self
                .counted_minutes
                .entry((inc.id.clone(), service.clone()))
                .or_insert(0.0);
            if f.user_minutes > *seen {
                self.metrics
                    .incident_user_seconds
                    .with_label_values(&[service.as_str()])
                    .inc_by((f.user_minutes - *seen) * 60.0);
                *seen = f.user_minutes;
            }
        }
    }

    fn publish(&mut self, now: Timestamp) {
        let topo = Arc::clone(self.topology());
        let services: Vec<ServiceView> = topo
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let st = service_status(&topo, i, &self.groups, now);
                self.metrics
                    .set_service(&s.id, st.status, st.affected, st.share);
                ServiceView {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    status: st.status,
                    subscribers: s.subscribers,
                    affected: st.affected,
                    degraded: st.degraded,
                    share: st.share,
                }
            })
            .collect();
        let open: Vec<Incident> = self.book.open().to_vec();
        for severity in crate::incident::Severity::ALL {
            let n = open.iter().filter(|i| i.severity == severity).count();
            self.metrics
                .incidents_open
                .with_label_values(&[severity.as_str()])
                .set(n as i64);
        }
        for inc in &open {
            self.count_user_minutes(inc, now);
        }
        let mut open_incidents: Vec<IncidentView> = open.iter().map(|i| i.view(now)).collect();
        open_incidents.reverse();
        let snapshot = Snapshot {
            generated_at: now,
            services,
            groups: topo
                .groups
                .iter()
                .zip(&self.groups)
                .map(|(g, st)| GroupView {
                    id: g.id.clone(),
                    service: topo.services[g.service].id.clone(),
                    platform: g.platform.clone(),
                    region: g.region.clone(),
                    subscribers: g.subscribers,
                    health: st.health,
                    since: st.since,
                })
                .collect(),
            targets: topo
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| TargetView {
                    id: t.id.clone(),
                    probe: t.probe.kind(),
                    groups: t
                        .groups
                        .iter()
                        .map(|&g| topo.groups[g].id.clone())
                        .collect(),
                    state: self.detectors[i].state(),
                    since: self.detectors[i].since(),
                    last_result: self.last_results[i].clone(),
                })
                .collect(),
            open_incidents,
        };
        self.snapshot.send_replace(Arc::new(snapshot));
    }
}

/// A group's status rebuilt from its targets' detectors (at start and after a reload):
/// the onset is the earliest (mode `any`) or latest (mode `all`) `since` of its failing
/// targets.
fn group_from_detectors(
    topo: &Topology,
    g: usize,
    detectors: &[Detector],
    now: Timestamp,
) -> GroupStatus {
    let group = &topo.groups[g];
    let health = Health::of_group(
        group.mode,
        group.targets.iter().map(|&t| detectors[t].state()),
    );
    let wanted = match health {
        Health::Down => TargetState::Down,
        Health::Degraded => TargetState::Degraded,
        Health::Ok => return GroupStatus { health, since: now },
    };
    let sinces = group
        .targets
        .iter()
        .map(|&t| &detectors[t])
        .filter(|d| d.state() == wanted || d.state() == TargetState::Down)
        .filter_map(Detector::since);
    let since = match group.mode {
        GroupMode::Any => sinces.min(),
        GroupMode::All => sinces.max(),
    };
    GroupStatus {
        health,
        since: since.unwrap_or(now),
    }
}
