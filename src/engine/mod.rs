//! The engine: the one task that owns detection and incident state.
//!
//! It takes [`ProbeReport`]s from the scheduler and commands from the API, feeds the pure
//! [`Core`] (detectors and incident book) with wall time, and fans out: store writes, alert
//! events, metrics, and a [`Snapshot`] published on a `watch` channel for the HTTP side.
//! Nobody else touches this state, so there are no locks.

pub mod core;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use self::core::{Core, LastResult};
use crate::alert::AlertType;
use crate::alert::outbox::Outbox;
use crate::alert::routing::{Routed, Routing};
use crate::clock::{Clock, Timestamp};
use crate::config::Settings;
use crate::detector::TargetState;
use crate::incident::{
    Change, Changes, ComponentStatus, EventKind, GroupStatus, Health, Incident, IncidentBook,
    IncidentView, service_status,
};
use crate::metrics::{Metrics, TargetMetrics};
use crate::rollup::{OpenMinute, Rollups};
use crate::scheduler::ProbeReport;
use crate::store::{Restored, Store};
use crate::topology::{MaintenanceWindow, Topology};

/// How often open incidents are re-measured, resolved when quiet, and the snapshot renewed.
pub const TICK: Duration = Duration::from_secs(1);

/// Most reports taken from the queue in one go.
const REPORT_BATCH: usize = 256;

/// What the HTTP side sees; renewed every [`TICK`] and after a batch of reports that
/// changed something.
///
/// Groups and targets are kept as their live state beside the shared topology (no string is
/// copied per target): with ten thousand targets a snapshot stays near 100 bytes a target.
/// [`Snapshot::group_views`] and [`Snapshot::target_views`] join them when asked.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generated_at: Timestamp,
    pub services: Vec<ServiceView>,
    topology: Arc<Topology>,
    /// In [`Topology::groups`] order.
    groups: Vec<GroupStatus>,
    /// In [`Topology::targets`] order.
    targets: Vec<TargetLive>,
    /// Open incidents, newest first.
    pub open_incidents: Vec<IncidentView>,
    /// Service time of the minute not yet in the store, for live uptime figures.
    pub open_minute: OpenMinute,
}

#[derive(Debug, Clone)]
struct TargetLive {
    state: TargetState,
    since: Option<Timestamp>,
    last_result: Option<LastResult>,
}

impl Snapshot {
    pub fn group_views(&self) -> Vec<GroupView> {
        let topo = &self.topology;
        topo.groups
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
            .collect()
    }

    pub fn target_views(&self) -> Vec<TargetView> {
        let topo = &self.topology;
        topo.targets
            .iter()
            .zip(&self.targets)
            .map(|(t, live)| TargetView {
                id: t.id.clone(),
                probe: t.probe.kind(),
                groups: t
                    .groups
                    .iter()
                    .map(|&g| topo.groups[g].id.clone())
                    .collect(),
                state: live.state,
                since: live.since,
                last_result: live.last_result.clone(),
            })
            .collect()
    }
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

/// Messages other than probe reports.
pub enum Control {
    /// A validated new configuration, with the deliverers already started for it.
    Reconfigure(Arc<Settings>, Outbox),
    /// A change registered through the API (already stored).
    RecordChange(Change),
    /// A maintenance window registered through the API (already stored).
    AddMaintenance(MaintenanceWindow),
    /// `POST /api/v1/incidents/{id}/acknowledge`; answers `None` for no such open incident.
    Acknowledge {
        id: String,
        by: Option<String>,
        reply: oneshot::Sender<Option<IncidentView>>,
    },
}

pub struct Engine {
    core: Core,
    /// The topology the schedulers run; the core's adds the API's maintenance windows.
    scheduled: Arc<Topology>,
    windows: Vec<MaintenanceWindow>,
    store: Store,
    routing: Routing,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    target_metrics: Vec<Arc<TargetMetrics>>,
    /// User-minutes already added to the counter, per (incident, service).
    counted_minutes: HashMap<(String, String), f64>,
    rollups: Rollups,
    clock: Clock,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl Engine {
    /// Builds the engine from stored state; the first snapshot is published at once.
    pub fn new(
        settings: Arc<Settings>,
        restored: Restored,
        store: Store,
        outbox: Outbox,
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
        let routing = Routing::new(&settings.receivers, &restored.routes);
        let mut book = IncidentBook::restore(restored.open_incidents, restored.last_seq);
        book.remember(restored.history, restored.changes);
        let scheduled = Arc::clone(&settings.topology);
        let windows = restored.maintenances;
        let core = Core::new(
            with_windows(&settings, &windows),
            restored.detectors,
            book,
            now,
        );
        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            generated_at: now,
            services: Vec::new(),
            topology: Arc::new(Topology::default()),
            groups: Vec::new(),
            targets: Vec::new(),
            open_incidents: Vec::new(),
            open_minute: OpenMinute::default(),
        }));
        let mut engine = Engine {
            core,
            scheduled,
            windows,
            store,
            routing,
            outbox,
            target_metrics: Vec::new(),
            counted_minutes,
            rollups: Rollups::default(),
            clock,
            snapshot: tx,
            metrics,
        };
        engine.label_targets(None);
        (engine, rx)
    }

    /// The configuration as loaded (without the API's windows).
    fn settings(&self) -> Settings {
        let mut settings = (**self.core.settings()).clone();
        settings.topology = Arc::clone(&self.scheduled);
        settings
    }

    /// Gives the current targets their series, dropping those of `old`'s that are gone.
    fn label_targets(&mut self, old: Option<&Settings>) {
        let settings = Arc::clone(self.core.settings());
        if let Some(old) = old {
            for s in &old.topology.services {
                if settings.topology.service_index(&s.id).is_none() {
                    self.metrics.forget_service(&s.id);
                }
            }
        }
        self.target_metrics = self
            .metrics
            .set_targets(&settings.topology.targets, &settings.vantage);
        for (tm, d) in self.target_metrics.iter().zip(self.core.detectors()) {
            tm.set_state(d.state());
        }
    }

    /// Runs until `token` is cancelled, then saves detector state and flushes the store.
    pub async fn run(
        mut self,
        mut reports: mpsc::Receiver<ProbeReport>,
        mut control: mpsc::Receiver<Control>,
        token: CancellationToken,
    ) {
        let now = self.clock.now();
        let changes = self.core.update(now);
        self.apply(changes, now);
        self.publish(now);
        let mut tick = tokio::time::interval(TICK);
        let mut batch = Vec::with_capacity(REPORT_BATCH);
        let mut reports_open = true;
        loop {
            tokio::select! {
                // A new configuration goes first: reports of its targets may follow it. The
                // tick goes before reports so that a flood of them cannot starve it (it
                // feeds the watchdog).
                biased;
                _ = token.cancelled() => break,
                Some(message) = control.recv() => self.on_control(message),
                _ = tick.tick() => {
                    let now = self.clock.now();
                    let changes = self.core.tick(now);
                    self.apply(changes, now);
                    self.rollups.tick(
                        now,
                        self.core.topology(),
                        self.core.groups(),
                        self.core.detectors().iter().map(|d| d.state()),
                    );
                    self.save_rollups(now);
                    let open: Vec<IncidentView> = self
                        .core
                        .open_incidents()
                        .iter()
                        .map(|i| i.view(now))
                        .collect();
                    let reminders = self.routing.remind(&open, now);
                    self.enqueue(reminders, now);
                    self.publish(now);
                }
                received = reports.recv_many(&mut batch, REPORT_BATCH), if reports_open => {
                    if received == 0 {
                        reports_open = false; // every scheduler is gone: shutting down
                        continue;
                    }
                    // One snapshot per batch, not per transition: when ten thousand targets
                    // go down together, the HTTP side sees tens of snapshots, not 10 000.
                    let mut changed = false;
                    for report in batch.drain(..) {
                        changed |= self.on_report(report);
                    }
                    if changed {
                        self.publish(self.clock.now());
                    }
                }
            }
        }
        for (t, d) in self
            .core
            .topology()
            .targets
            .iter()
            .zip(self.core.detectors())
        {
            self.store.save_target(&t.id, d);
        }
        self.rollups.close();
        self.save_rollups(self.clock.now());
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "final store flush failed");
        }
        self.outbox.stop();
    }

    fn on_control(&mut self, message: Control) {
        let now = self.clock.now();
        match message {
            Control::Reconfigure(settings, outbox) => {
                let old = Arc::clone(self.core.settings());
                self.routing = Routing::new(&settings.receivers, &self.routing.marks());
                std::mem::replace(&mut self.outbox, outbox).stop();
                self.scheduled = Arc::clone(&settings.topology);
                let changes = self
                    .core
                    .reconfigure(with_windows(&settings, &self.windows), now);
                self.label_targets(Some(&old));
                self.apply(changes, now);
            }
            Control::AddMaintenance(window) => {
                self.windows
                    .retain(|w| w.id != window.id && w.ends_at > now);
                self.windows.push(window);
                let settings = with_windows(&self.settings(), &self.windows);
                let changes = self.core.reconfigure(settings, now);
                self.apply(changes, now);
            }
            Control::RecordChange(change) => {
                let changes = self.core.record_change(change, now);
                self.apply(changes, now);
            }
            Control::Acknowledge { id, by, reply } => {
                let acknowledged = self.core.acknowledge(&id, by.as_deref(), now);
                if let Some(inc) = &acknowledged {
                    tracing::info!(incident = %inc.id, by = by.as_deref(), "incident acknowledged");
                    self.store.save_incident(inc);
                    // Receivers that act on it (PagerDuty acknowledges) hear of it.
                    let routed = self.routing.route(AlertType::Updated, &inc.view(now), now);
                    self.enqueue(routed, now);
                }
                let _ = reply.send(acknowledged.map(|i| i.view(now)));
            }
        }
        self.publish(now);
    }

    /// Takes one result; true when a target changed state (the snapshot is stale).
    fn on_report(&mut self, report: ProbeReport) -> bool {
        if !Arc::ptr_eq(&report.topology, &self.scheduled) {
            return false; // from a configuration that has been replaced
        }
        let index = report.target;
        self.metrics
            .record_probe(&self.target_metrics[index], &report.result);
        let now = self.clock.now();
        self.rollups.record(
            self.core.topology(),
            index,
            report.started_at,
            &report.result,
        );
        self.save_rollups(now);
        let observed = self
            .core
            .observe(index, report.started_at, &report.result, now);
        let Some(transition) = observed.transition else {
            return false;
        };
        let target = &self.core.topology().targets[index];
        tracing::info!(
            target_id = %target.id,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            since = %transition.since,
            reason = report.result.failure.as_ref().map(|f| f.reason.as_str()),
            "target state changed"
        );
        self.target_metrics[index].set_state(transition.to);
        self.store
            .save_target(&target.id, &self.core.detectors()[index]);
        if !observed.changes.is_empty() {
            self.apply(observed.changes, now);
        }
        true
    }

    /// Persists changed incidents, then alerts on their events once stored.
    fn apply(&mut self, changes: Changes, now: Timestamp) {
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
            let routed = self.routing.route(alert_type(kind), &view, now);
            self.enqueue(routed, now);
        }
    }

    /// Queues deliveries in the outbox, in the same store batch as the incidents, and wakes
    /// the deliverers once committed.
    fn enqueue(&mut self, routed: Routed, now: Timestamp) {
        for mark in &routed.marks {
            self.store
                .route(&mark.receiver, &mark.incident, mark.last_sent);
        }
        if routed.deliveries.is_empty() {
            return;
        }
        for d in &routed.deliveries {
            self.store.enqueue(&d.receiver, &d.event, now);
            self.metrics
                .alert_outbox_pending
                .with_label_values(&[d.receiver.as_str()])
                .inc();
        }
        self.store.after_commit(self.outbox.wake());
    }

    /// Stores the minutes the rollups closed, one write each, and prunes old rows then.
    fn save_rollups(&mut self, now: Timestamp) {
        let closed = self.rollups.take_closed();
        if closed.is_empty() {
            return;
        }
        for minute in closed {
            self.store.save_rollups(minute);
        }
        let storage = &self.core.settings().storage;
        self.store
            .prune_rollups(now, storage.raw_retention, storage.rollup_retention);
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
        let topo = Arc::clone(self.core.topology());
        let groups = self.core.groups();
        let services: Vec<ServiceView> = topo
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let st = service_status(&topo, i, groups, now);
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
        let targets = self
            .core
            .detectors()
            .iter()
            .zip(self.core.last_results())
            .map(|(d, last)| TargetLive {
                state: d.state(),
                since: d.since(),
                last_result: last.clone(),
            })
            .collect();
        let open: Vec<Incident> = self.core.open_incidents().to_vec();
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
        self.snapshot.send_replace(Arc::new(Snapshot {
            generated_at: now,
            services,
            topology: Arc::clone(&topo),
            groups: self.core.groups().to_vec(),
            targets,
            open_incidents,
            open_minute: self.rollups.open_minute(),
        }));
    }
}

/// `settings` with the API's maintenance windows added to its topology.
fn with_windows(settings: &Settings, windows: &[MaintenanceWindow]) -> Arc<Settings> {
    let mut settings = settings.clone();
    if !windows.is_empty() {
        settings.topology = Arc::new(settings.topology.with_windows(windows));
    }
    Arc::new(settings)
}

pub fn alert_type(kind: EventKind) -> AlertType {
    match kind {
        EventKind::Opened => AlertType::Opened,
        EventKind::Updated => AlertType::Updated,
        EventKind::Resolved => AlertType::Resolved,
    }
}
