//! The engine: the one task that owns detection and incident state.
//!
//! It takes [`ProbeReport`]s from the scheduler and commands from the API, feeds the pure
//! [`Core`] (detectors and incident book) with wall time, and fans out: store writes, alert
//! events, metrics, and a [`Snapshot`] published on a `watch` channel for the HTTP side.
//! Nobody else touches this state, so there are no locks.

pub(crate) mod cluster;
mod pure;
mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alert::ReceiverSpec;
use crate::alert::outbox::{Deliveries, Outbox};
use crate::alert::routing::{Routed, Routing};
use crate::clock::{Clock, Timestamp};
use crate::incident::{
    BookUpdate, Change, EventKind, Incident, IncidentBook, IncidentSpec, IncidentView, Severity,
    service_status,
};
use crate::metrics::{Metrics, TargetMetrics};
use crate::probe::{ProbeResult, missed_heartbeat};
use crate::rollup::{OpenMinute, Rollups};
use crate::scheduler::ProbeReport;
use crate::store::{Restored, StorageSpec, Store};
use crate::topology::{MaintenanceWindow, Topology};
pub use cluster::{ClusterView, Identity};
use cluster::{Clustered, News};
pub use pure::{Core, LastResult};
use snapshot::TargetLive;
pub use snapshot::{GroupView, ServiceView, Snapshot, TargetView};

/// What the engine runs on: its part of the configuration, replaced whole on a reload.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// The `vantage` label of this instance's series.
    pub vantage: String,
    /// The topology the schedulers run (without the API's maintenance windows).
    pub topology: Arc<Topology>,
    pub incidents: IncidentSpec,
    pub receivers: Vec<ReceiverSpec>,
    /// Retention of rollups.
    pub storage: StorageSpec,
}

/// How often open incidents are re-measured, resolved when quiet, and the snapshot renewed.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a stop waits for the store to take the last writes.
const FINAL_FLUSH: Duration = Duration::from_secs(10);

/// Most reports taken from the queue in one go.
const REPORT_BATCH: usize = 256;

/// Least time between two snapshots renewed for reports. In a storm batches come by the
/// hundred a second and a snapshot walks every target and open incident: renewed for each,
/// they kept the runtime threads from starting probes on time. A transition after a quiet
/// spell, and an incident opening or resolving, are published at once; alerts never wait
/// for this (they go out as incidents settle).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Messages other than probe reports.
pub(crate) enum Control {
    /// A validated new configuration, with what its deliverers need.
    Reconfigure(Arc<EngineSpec>, Deliveries),
    /// From the cluster's membership task.
    Cluster(News),
    /// A change registered through the API (already stored).
    RecordChange(Change),
    /// A maintenance window registered through the API (already stored).
    AddMaintenance(MaintenanceWindow),
    /// A result posted for a push target (`POST /api/v1/targets/{id}/results`), checked
    /// against the snapshot's topology; dropped if a reload removed the target meanwhile.
    Pushed {
        target: String,
        at: Timestamp,
        result: ProbeResult,
    },
    /// `POST /api/v1/incidents/{id}/acknowledge`; answers `None` for no such open incident.
    Acknowledge {
        id: String,
        by: Option<String>,
        reply: oneshot::Sender<Option<IncidentView>>,
    },
    /// A step an operator adds to an open incident's timeline from the console: with
    /// `public`, a customer-facing update (sent to receivers at once); answers `None` for
    /// no such open incident.
    Annotate {
        id: String,
        event: &'static str,
        message: String,
        public: Option<String>,
        reply: oneshot::Sender<Option<IncidentView>>,
    },
}

pub(crate) struct Engine {
    core: Core,
    /// As loaded: its topology is the one the schedulers run; the core's adds the API's
    /// maintenance windows.
    spec: Arc<EngineSpec>,
    windows: Vec<MaintenanceWindow>,
    store: Store,
    routing: Routing,
    outbox: Outbox,
    deliveries: Deliveries,
    /// `Some` in a cluster: this instance's vantage and leadership.
    cluster: Option<Clustered>,
    metrics: Arc<Metrics>,
    /// When the snapshot was last renewed, and when it is due again, stale since a batch.
    published: Instant,
    publish_due: Option<Instant>,
    target_metrics: Vec<Arc<TargetMetrics>>,
    /// User-minutes already added to the counter, per (incident, service).
    counted_minutes: HashMap<(String, String), f64>,
    rollups: Rollups,
    clock: Clock,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl Engine {
    /// Builds the engine from stored state; the first snapshot is published at once.
    /// In a cluster (`cluster` given), it starts as a follower and ignores the stored
    /// target states: its verdicts come from the vantages.
    pub fn new(
        spec: Arc<EngineSpec>,
        mut restored: Restored,
        store: Store,
        deliveries: Deliveries,
        cluster: Option<Clustered>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> (Engine, watch::Receiver<Arc<Snapshot>>) {
        let outbox = if cluster.is_some() {
            restored.detectors.clear();
            Outbox::idle()
        } else {
            deliveries.start()
        };
        let now = clock.now();
        let mut counted_minutes = HashMap::new();
        for inc in &restored.open_incidents {
            for (service, f) in inc.figures(now).per_service {
                counted_minutes.insert((inc.id.clone(), service), f.user_minutes);
            }
        }
        let routing = Routing::new(
            spec.receivers.iter().map(ReceiverSpec::policy),
            &restored.routes,
        );
        let mut book = IncidentBook::restore(restored.open_incidents, restored.last_seq)
            .in_epoch(restored.epoch);
        book.remember(restored.history, restored.changes);
        let windows = restored.maintenances;
        let core = Core::new(
            with_windows(&spec.topology, &windows),
            spec.incidents.clone(),
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
            cluster: None,
        }));
        let mut engine = Engine {
            core,
            spec,
            windows,
            store,
            routing,
            outbox,
            deliveries,
            cluster,
            target_metrics: Vec::new(),
            counted_minutes,
            rollups: Rollups::default(),
            clock,
            snapshot: tx,
            metrics,
            published: Instant::now(),
            publish_due: None,
        };
        engine.label_targets(None);
        (engine, rx)
    }

    /// Gives the current targets their series, dropping those of `old`'s services that are
    /// gone.
    fn label_targets(&mut self, old: Option<&Topology>) {
        let topology = Arc::clone(self.core.topology());
        if let Some(old) = old {
            for s in &old.services {
                if topology.service_index(&s.id).is_none() {
                    self.metrics.forget_service(&s.id);
                }
            }
        }
        self.target_metrics = self.metrics.set_targets(&topology, &self.spec.vantage);
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
                    self.miss_heartbeats(now);
                    // Verdicts contradicted by another vantage settle with time.
                    self.recount(now);
                    let changes = self.core.tick(now);
                    self.apply(changes, now);
                    self.rollups.tick(
                        now,
                        self.core.topology(),
                        self.core.groups(),
                        self.core.detectors().iter().map(|d| d.state()),
                    );
                    self.save_rollups(now);
                    // Waiting updates and reminders that fell due.
                    if self.leads() {
                        let due = self.routing.tick(self.core.open_incidents(), now);
                        self.enqueue(due, now);
                    }
                    self.publish(now);
                }
                _ = tokio::time::sleep_until(self.publish_due.unwrap_or(self.published)), if self.publish_due.is_some() => {
                    self.publish(self.clock.now());
                }
                received = reports.recv_many(&mut batch, REPORT_BATCH), if reports_open => {
                    if received == 0 {
                        reports_open = false; // every scheduler is gone: shutting down
                        continue;
                    }
                    // At most one snapshot per batch, and per PUBLISH_EVERY: when ten
                    // thousand targets go down together, the HTTP side sees tens, not 10 000.
                    let mut changed = false;
                    for report in batch.drain(..) {
                        changed |= self.on_report(report);
                    }
                    if changed {
                        let now = self.clock.now();
                        // The quorum and the incidents once per batch (of the targets whose
                        // votes or states changed), not once per transition.
                        self.recount(now);
                        let news = self.settle(now);
                        let due = self.published + PUBLISH_EVERY;
                        if news || Instant::now() >= due {
                            self.publish(now);
                        } else {
                            self.publish_due.get_or_insert(due);
                        }
                    }
                }
            }
        }
        // In a cluster the vantages' verdicts are stored as they change; the core's are
        // the quorum of those.
        if self.cluster.is_none() {
            for (t, d) in self
                .core
                .topology()
                .targets
                .iter()
                .zip(self.core.detectors())
            {
                self.store.save_target(&t.id, d);
            }
        }
        self.rollups.close();
        self.save_rollups(self.clock.now());
        // Failing writes are retried for ever; a stop waits for them only so long.
        match tokio::time::timeout(FINAL_FLUSH, self.store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final store flush failed"),
            Err(_) => tracing::error!(
                waited = ?FINAL_FLUSH,
                "store writes still failing at shutdown: what they hold is lost"
            ),
        }
        self.outbox.stop();
    }

    fn on_control(&mut self, message: Control) {
        let now = self.clock.now();
        match message {
            Control::Reconfigure(spec, deliveries) => {
                let old = Arc::clone(self.core.topology());
                self.routing = Routing::new(
                    spec.receivers.iter().map(ReceiverSpec::policy),
                    &self.routing.marks(),
                );
                self.deliveries = deliveries;
                let outbox = if self.leads() {
                    self.deliveries.start()
                } else {
                    Outbox::idle()
                };
                std::mem::replace(&mut self.outbox, outbox).stop();
                if let Some(c) = self.cluster.as_mut() {
                    c.remap(&old, &spec.topology);
                }
                self.spec = spec;
                let changes = self.core.reconfigure(
                    with_windows(&self.spec.topology, &self.windows),
                    self.spec.incidents.clone(),
                    now,
                );
                self.label_targets(Some(&old));
                self.apply(changes, now);
            }
            Control::AddMaintenance(window) => {
                self.windows
                    .retain(|w| w.id != window.id && w.ends_at > now);
                self.windows.push(window);
                let changes = self.core.reconfigure(
                    with_windows(&self.spec.topology, &self.windows),
                    self.spec.incidents.clone(),
                    now,
                );
                self.apply(changes, now);
            }
            Control::Pushed { target, at, result } => {
                let topology = Arc::clone(&self.spec.topology);
                match topology.target_index(&target) {
                    Some(index) if topology.targets[index].probe.pushed().is_some() => {
                        self.on_result(index, at, &result);
                    }
                    _ => {
                        tracing::info!(target_id = %target, "pushed result dropped: no such push target since a reload")
                    }
                }
            }
            Control::RecordChange(change) => {
                let changes = self.core.record_change(change, now);
                self.apply(changes, now);
            }
            Control::Cluster(news) => self.on_news(news, now),
            Control::Acknowledge { id, by, reply } if !self.leads() => {
                // The leader's book is the one stored; a follower's is not.
                tracing::info!(incident = %id, by = by.as_deref(), "acknowledgement refused: not the leader");
                let _ = reply.send(None);
            }
            Control::Acknowledge { id, by, reply } => {
                let acknowledged = self.core.acknowledge(&id, by.as_deref(), now);
                if let Some(inc) = &acknowledged {
                    tracing::info!(incident = %inc.id, by = by.as_deref(), "incident acknowledged");
                    self.store.save_incident(inc);
                    // Receivers that act on it (PagerDuty acknowledges) hear of it.
                    let routed = self.routing.acknowledged(&inc.view(now), now);
                    self.enqueue(routed, now);
                }
                let _ = reply.send(acknowledged.map(|i| i.view(now)));
            }
            Control::Annotate { id, reply, .. } if !self.leads() => {
                tracing::info!(incident = %id, "console step refused: not the leader");
                let _ = reply.send(None);
            }
            Control::Annotate {
                id,
                event,
                message,
                public,
                reply,
            } => {
                let announce = public.is_some();
                let noted = self.core.annotate(&id, event, message, public, now);
                if let Some(inc) = &noted {
                    tracing::info!(incident = %inc.id, event, "console step noted");
                    self.store.save_incident(inc);
                    if announce {
                        let routed = self.routing.posted(&inc.view(now), now);
                        self.enqueue(routed, now);
                    }
                }
                let _ = reply.send(noted.map(|i| i.view(now)));
            }
        }
        self.settle(now);
        self.publish(now);
    }

    /// Evaluates incidents after the targets' changes of a batch, and acts on what changed;
    /// true when an incident opened or resolved (the snapshot should say so at once).
    fn settle(&mut self, now: Timestamp) -> bool {
        let changes = self.core.settle(now);
        let news = changes
            .events
            .iter()
            .any(|(kind, _)| matches!(kind, EventKind::Opened | EventKind::Resolved));
        self.apply(changes, now);
        news
    }

    /// Takes one probe run; true when a target changed state (the snapshot is stale).
    fn on_report(&mut self, report: ProbeReport) -> bool {
        if !Arc::ptr_eq(&report.topology, &self.spec.topology) {
            return false; // from a configuration that has been replaced
        }
        self.on_result(report.target, report.started_at, &report.result)
    }

    /// Feeds a missed heartbeat for each push target whose result is overdue at `now`, at
    /// the time it fell due. In a cluster, only an instance that has been sent the target's
    /// results misses them: it records them as its vantage's, as it does pushed results.
    fn miss_heartbeats(&mut self, now: Timestamp) {
        while let Some((index, due)) = self.core.next_heartbeat().filter(|&(_, d)| d <= now) {
            let pushed_here = self.cluster.as_ref().is_none_or(|c| c.has_results(index));
            if !pushed_here {
                self.core.postpone_heartbeat(index);
                continue;
            }
            let target = &self.core.topology().targets[index];
            let grace = target
                .probe
                .pushed()
                .map_or_else(Default::default, |p| p.grace);
            let result = missed_heartbeat(target.interval, grace);
            self.on_result(index, due, &result);
        }
    }

    /// Takes one result of target `index` (probed, pushed or a missed heartbeat), started
    /// at `started_at`; true when a target changed state (the snapshot is stale).
    fn on_result(&mut self, index: usize, started_at: Timestamp, result: &ProbeResult) -> bool {
        let now = self.clock.now();
        if let Some(cause) = result.local() {
            // This host could not make the attempt: nothing is known of the target, so its
            // detector, series and rollups do not hear of it. `/readyz` fails meanwhile.
            let target = &self.core.topology().targets[index];
            if self.metrics.record_local_error(cause, now) {
                tracing::warn!(
                    target_id = %target.id,
                    cause = cause.as_str(),
                    detail = result.failure.as_ref().map(|f| f.detail.as_str()),
                    "probes cannot run for a reason of this host; no verdict on their targets"
                );
            }
            return false;
        }
        self.metrics
            .record_probe(&self.target_metrics[index], result);
        self.rollups
            .record(self.core.topology(), index, started_at, result);
        self.save_rollups(now);
        if self.cluster.is_some() {
            return self.observe_locally(index, started_at, result, now);
        }
        let Some(transition) = self.core.observe(index, started_at, result) else {
            return false;
        };
        let target = &self.core.topology().targets[index];
        tracing::info!(
            target_id = %target.id,
            from = transition.from.as_str(),
            to = transition.to.as_str(),
            since = %transition.since,
            reason = result.failure.as_ref().map(|f| f.reason.as_str()),
            "target state changed"
        );
        self.target_metrics[index].set_state(transition.to);
        self.store
            .save_target(&target.id, &self.core.detectors()[index]);
        true
    }

    /// Whether this instance runs incidents and alerts: alone, or leading its cluster.
    fn leads(&self) -> bool {
        self.cluster.as_ref().is_none_or(Clustered::leads)
    }

    /// Persists changed incidents, then alerts on their events once stored. A follower's
    /// book only tracks the leader's (it is replaced on taking the lead): nothing of it
    /// is stored or sent.
    fn apply(&mut self, changes: BookUpdate, now: Timestamp) {
        if !self.leads() {
            return;
        }
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
            let routed = self.routing.route(kind, &view, now);
            self.enqueue(routed, now);
        }
    }

    /// Queues deliveries in the outbox, in the same store batch as the incidents, and wakes
    /// the deliverers once committed.
    fn enqueue(&mut self, routed: Routed, now: Timestamp) {
        for mark in &routed.marks {
            self.store.route(&mark.receiver, &mark.incident, mark.state);
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
            match &self.cluster {
                // Every vantage keeps its own target rows; service rows are the leader's.
                Some(c) => {
                    if c.leads() {
                        self.store.save_rollups(minute.clone());
                    }
                    self.store.save_vantage_rollups(&c.me.vantage, minute);
                }
                None => self.store.save_rollups(minute),
            }
        }
        let storage = &self.spec.storage;
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
        (self.published, self.publish_due) = (Instant::now(), None);
        let topo = Arc::clone(self.core.topology());
        let groups = self.core.groups();
        // Service and incident series come from the leader only.
        let leads = self.leads();
        let services: Vec<ServiceView> = topo
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let st = service_status(&topo, i, groups, now);
                if leads {
                    self.metrics
                        .set_service(&s.id, st.status, st.affected, st.share);
                }
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
        let stored = self.cluster.as_ref().and_then(Clustered::stored_open);
        let open_incidents: Vec<IncidentView> = match stored {
            // Newest first, as the store lists them.
            Some(stored) => stored.iter().map(|i| i.view(now)).collect(),
            None => {
                let open: Vec<Incident> = self.core.open_incidents().to_vec();
                for severity in Severity::ALL {
                    let n = open.iter().filter(|i| i.severity == severity).count();
                    self.metrics
                        .incidents_open
                        .with_label_values(&[severity.as_str()])
                        .set(n as i64);
                }
                for inc in &open {
                    self.count_user_minutes(inc, now);
                }
                let mut views: Vec<IncidentView> = open.iter().map(|i| i.view(now)).collect();
                views.reverse();
                views
            }
        };

        self.snapshot.send_replace(Arc::new(Snapshot {
            generated_at: now,
            services,
            topology: Arc::clone(&topo),
            groups: self.core.groups().to_vec(),
            targets,
            open_incidents,
            open_minute: self.rollups.open_minute(),
            cluster: self.cluster.as_ref().map(|c| Arc::new(c.view(&topo))),
        }));
    }
}

/// `topology` with the API's maintenance windows added.
fn with_windows(topology: &Arc<Topology>, windows: &[MaintenanceWindow]) -> Arc<Topology> {
    if windows.is_empty() {
        Arc::clone(topology)
    } else {
        Arc::new(topology.with_windows(windows))
    }
}
