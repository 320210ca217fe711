//! Prometheus metrics: one registry for the families with few series, and a
//! compact table for the per-target families and their aggregates.
//!
//! Ten thousand targets are eighty thousand per-target series. As children of the
//! `prometheus` crate's vectors they cost ~5 KB per target (each child keeps its own label
//! pairs) and every scrape rebuilds them as protobuf messages. So the per-target families
//! live in a table of their own: a row per target with its label text escaped once and a few
//! atomics, written straight into the text format. The probe path touches only atomics.
//!
//! At a hundred thousand targets even that is ~100 MB a scrape, so `[metrics] per_target`
//! can keep the per-target series to the targets not up, or drop them; the aggregates per
//! group and per service, a few atomics each, are always written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::incident::{ComponentStatus, Severity};
use crate::probe::{LocalCause, ProbeResult, Reason};
use crate::topology::{Target, Topology};

/// `[metrics]`: which series `/metrics` writes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Which targets have series of their own.
    #[serde(default)]
    pub per_target: PerTarget,
}

impl MetricsConfig {
    /// Every value the file can hold is valid: the schema refused the others.
    pub fn build(&self) -> MetricsSpec {
        MetricsSpec {
            per_target: self.per_target,
        }
    }
}

/// `[metrics]`, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSpec {
    pub per_target: PerTarget,
}

/// Which targets the per-target families are written for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerTarget {
    /// Every target, every per-target family.
    #[default]
    All,
    /// Targets not `up` (unknown, degraded, down) that this instance has a result for, and
    /// only the gauges: a counter whose series comes and goes loses the increase between
    /// scrapes at each edge.
    NotUp,
    /// None: the aggregates only.
    Off,
}

impl PerTarget {
    const ALL: [PerTarget; 3] = [PerTarget::All, PerTarget::NotUp, PerTarget::Off];
}

/// The series of an instance in a cluster ([`Metrics::register_cluster`]).
#[derive(Clone)]
pub struct ClusterMetrics {
    pub leader: IntGauge,
    pub members: IntGaugeVec,
    pub leader_changes: prometheus::IntCounter,
    pub vantage_status: IntGaugeVec,
}

/// Every tocsin series. Families are atomics: share an `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    targets: TargetTable,
    /// Index into [`PerTarget::ALL`]; a reload may change it.
    per_target: AtomicU8,
    service_status: IntGaugeVec,
    service_affected: IntGaugeVec,
    service_affected_ratio: GaugeVec,
    pub incidents_open: IntGaugeVec,
    pub incidents_total: IntCounterVec,
    /// User-minutes are the regulators' unit, but promtool rejects a non-base unit: this
    /// counts subscriber-seconds under a base-unit name.
    pub incident_user_seconds: prometheus::CounterVec,
    pub alert_deliveries: IntCounterVec,
    pub alert_outbox_pending: IntGaugeVec,
    /// Failed store writes (each attempt) and database files found lost, by `reason`.
    pub store_errors: IntCounterVec,
    pub scheduler_lag: Histogram,
    pub scheduler_skipped: prometheus::IntCounter,
    pub probes_in_flight: IntGauge,
    /// Probes this host could not make, by [`LocalCause`]; and the last one, for `/readyz`.
    probe_local_errors: IntCounterVec,
    last_local_error: Mutex<Option<(Timestamp, LocalCause)>>,
    /// Connections the HTTP listener holds now.
    pub http_connections: IntGauge,
    pub config_reload_ok: IntGauge,
    pub config_reload_timestamp: Gauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definition is valid");
                registry
                    .register(Box::new(m.clone()))
                    .expect("metric names are unique");
                m
            }};
        }
        let metrics = Self {
            service_status: reg!(IntGaugeVec::new(
                opts(
                    "tocsin_service_status",
                    "Component status of each service (one-hot)."
                ),
                &["service", "status"]
            )),
            service_affected: reg!(IntGaugeVec::new(
                opts(
                    "tocsin_service_affected_subscribers",
                    "Subscribers of the service's down groups."
                ),
                &["service"]
            )),
            service_affected_ratio: reg!(GaugeVec::new(
                opts(
                    "tocsin_service_affected_ratio",
                    "Share of the service's subscribers affected (0-1)."
                ),
                &["service"]
            )),
            incidents_open: reg!(IntGaugeVec::new(
                opts("tocsin_incidents_open", "Open incidents, by severity."),
                &["severity"]
            )),
            incidents_total: reg!(IntCounterVec::new(
                opts(
                    "tocsin_incidents_total",
                    "Incidents opened, by service and severity at opening."
                ),
                &["service", "severity"]
            )),
            incident_user_seconds: reg!(prometheus::CounterVec::new(
                opts(
                    "tocsin_incident_user_seconds_total",
                    "Subscriber-seconds of impact accumulated by incidents (divide by 60 for user-minutes)."
                ),
                &["service"]
            )),
            alert_deliveries: reg!(IntCounterVec::new(
                opts(
                    "tocsin_alert_deliveries_total",
                    "Alert delivery attempts, by outcome."
                ),
                &["receiver", "result"]
            )),
            alert_outbox_pending: reg!(IntGaugeVec::new(
                opts(
                    "tocsin_alert_outbox_pending",
                    "Alert events waiting for delivery."
                ),
                &["receiver"]
            )),
            store_errors: reg!(IntCounterVec::new(
                opts(
                    "tocsin_store_errors_total",
                    "Store write attempts that failed, and database files found removed or replaced."
                ),
                &["reason"]
            )),
            scheduler_lag: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "tocsin_scheduler_lag_seconds",
                    "How late probes start: actual start minus planned start."
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ])
            )),
            scheduler_skipped: reg!(prometheus::IntCounter::new(
                "tocsin_scheduler_skipped_total",
                "Planned probe runs skipped because the target's previous run was still going."
            )),
            probes_in_flight: reg!(IntGauge::new(
                "tocsin_probes_in_flight",
                "Probes running now."
            )),
            probe_local_errors: reg!(IntCounterVec::new(
                opts(
                    "tocsin_probe_local_errors_total",
                    "Probes that could not run for a reason of this host (no verdict on the target), by cause."
                ),
                &["reason"]
            )),
            last_local_error: Mutex::new(None),
            http_connections: reg!(IntGauge::new(
                "tocsin_http_connections",
                "Connections the HTTP listener holds now."
            )),
            config_reload_ok: reg!(IntGauge::new(
                "tocsin_config_last_reload_successful",
                "Whether the last configuration load succeeded."
            )),
            config_reload_timestamp: reg!(Gauge::new(
                "tocsin_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully."
            )),
            registry,
            targets: TargetTable::default(),
            per_target: AtomicU8::new(0),
        };
        let build_info = IntGaugeVec::new(
            opts("tocsin_build_info", "tocsin build; always 1."),
            &["version"],
        )
        .expect("valid");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
            .registry
            .register(Box::new(build_info))
            .expect("unique");
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique");
        for severity in Severity::ALL {
            metrics
                .incidents_open
                .with_label_values(&[severity.as_str()]);
        }
        for cause in LocalCause::ALL {
            metrics
                .probe_local_errors
                .with_label_values(&[cause.as_str()]);
        }
        metrics
    }

    /// Counts a probe this host could not make. True when it starts a spell (none in the
    /// [`LOCAL_ERROR_HOLD`] before), so that callers log spells rather than every probe.
    pub fn record_local_error(&self, cause: LocalCause, at: Timestamp) -> bool {
        self.probe_local_errors
            .with_label_values(&[cause.as_str()])
            .inc();
        let mut last = self.last_local_error.lock().expect("metrics lock");
        let starts = last.is_none_or(|(previous, _)| !within_hold(previous, at));
        *last = Some((at, cause));
        starts
    }

    /// The cause of the last local error if it happened within [`LOCAL_ERROR_HOLD`] of
    /// `now`: while there is one, the instance is not ready.
    pub fn recent_local_error(&self, now: Timestamp) -> Option<(Timestamp, LocalCause)> {
        let last = *self.last_local_error.lock().expect("metrics lock");
        last.filter(|(at, _)| within_hold(*at, now))
    }

    /// Registers the series of an instance in a cluster (only then: one instance has no
    /// leader to report).
    pub fn register_cluster(&self) -> ClusterMetrics {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let cluster = ClusterMetrics {
            leader: IntGauge::new(
                "tocsin_cluster_leader",
                "1 on the instance that leads the cluster, else 0.",
            )
            .expect("valid"),
            members: IntGaugeVec::new(
                opts(
                    "tocsin_cluster_members",
                    "Live members of the cluster, by vantage.",
                ),
                &["vantage"],
            )
            .expect("valid"),
            leader_changes: prometheus::IntCounter::new(
                "tocsin_cluster_leader_changes_total",
                "Times this instance saw another leader (or none) take over.",
            )
            .expect("valid"),
            vantage_status: IntGaugeVec::new(
                opts(
                    "tocsin_vantage_status",
                    "1 for each vantage's status (ok, impaired, silent), else 0.",
                ),
                &["vantage", "status"],
            )
            .expect("valid"),
        };
        for c in [
            Box::new(cluster.leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cluster.members.clone()),
            Box::new(cluster.leader_changes.clone()),
            Box::new(cluster.vantage_status.clone()),
        ] {
            self.registry.register(c).expect("registered once");
        }
        cluster
    }

    /// Takes `[metrics]`, at start and on each reload.
    pub fn configure(&self, spec: &MetricsSpec) {
        let index = PerTarget::ALL
            .iter()
            .position(|p| *p == spec.per_target)
            .expect("ALL lists every choice");
        self.per_target.store(index as u8, Ordering::Relaxed);
    }

    /// The text exposition format, whole.
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.render_to(&mut |piece| text.push_str(piece));
        text
    }

    /// The text exposition format for `GET /metrics`, handed to `sink` in pieces of about
    /// [`PIECE_BYTES`] as it is written: at 100 000 targets the text is ~100 MB, which a
    /// scrape then never holds, nor allocates and frees, at once.
    pub fn render_to(&self, sink: &mut dyn FnMut(&str)) {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        let mut text = Spill {
            text: String::from_utf8(out).expect("the text format is UTF-8"),
            sink,
        };
        let per_target = PerTarget::ALL[usize::from(self.per_target.load(Ordering::Relaxed))];
        self.targets.render(&mut text, per_target);
        text.finish();
    }

    /// Makes the targets of `topology` the targets with series. A target whose labels and
    /// groups are unchanged keeps its row (its counters go on), an aggregate whose labels
    /// are unchanged keeps its counts; the series of what is gone are dropped.
    pub fn set_targets(&self, topology: &Topology, vantage: &str) -> Vec<Arc<TargetMetrics>> {
        let mut table = self.targets.table.write().expect("metrics lock");
        let table = &mut *table;
        let mut previous: HashMap<Box<str>, Arc<TargetMetrics>> = table
            .rows
            .drain(..)
            .map(|row| (row.labels.clone(), row))
            .collect();
        let mut groups = Aggregates::reusing(std::mem::take(&mut table.groups));
        let mut services = Aggregates::reusing(std::mem::take(&mut table.services));
        table.links.clear();
        for target in &topology.targets {
            let mut links = Links::default();
            for &g in &target.groups {
                let group = &topology.groups[g];
                let service = topology.services[group.service].id.as_str();
                let labels = label_text(&[
                    ("service", service),
                    ("region", group.region.as_deref().unwrap_or("")),
                    ("platform", group.platform.as_deref().unwrap_or("")),
                    ("vantage", vantage),
                ]);
                push_new(&mut links.groups, groups.index(labels));
                let labels = label_text(&[("service", service), ("vantage", vantage)]);
                push_new(&mut links.services, services.index(labels));
            }
            let aggregates: Box<[Arc<Aggregate>]> = links
                .groups
                .iter()
                .map(|&i| Arc::clone(&groups.list[i as usize]))
                .chain(
                    links
                        .services
                        .iter()
                        .map(|&i| Arc::clone(&services.list[i as usize])),
                )
                .collect();
            let labels = target_labels(target, vantage);
            let row = previous
                .remove(&labels)
                .filter(|row| {
                    row.aggregates.len() == aggregates.len()
                        && row
                            .aggregates
                            .iter()
                            .zip(&aggregates)
                            .all(|(a, b)| Arc::ptr_eq(a, b))
                })
                .unwrap_or_else(|| Arc::new(TargetMetrics::new(labels, aggregates)));
            table.rows.push(row);
            table.links.push(links);
        }
        table.groups = groups.list;
        table.services = services.list;
        table.rows.clone()
    }

    pub fn record_probe(&self, t: &TargetMetrics, result: &ProbeResult) {
        for aggregate in &t.aggregates {
            aggregate.record(result);
        }
        t.duration
            .store(result.latency.as_secs_f64().to_bits(), Ordering::Relaxed);
        match &result.failure {
            None => {
                t.success.store(1, Ordering::Relaxed);
                t.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Some(f) => {
                t.success.store(0, Ordering::Relaxed);
                t.failed.fetch_add(1, Ordering::Relaxed);
                t.failures[f.reason as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn set_service(&self, service: &str, status: ComponentStatus, affected: u64, share: f64) {
        for s in ComponentStatus::ALL {
            self.service_status
                .with_label_values(&[service, s.as_str()])
                .set(i64::from(s == status));
        }
        self.service_affected
            .with_label_values(&[service])
            .set(affected as i64);
        self.service_affected_ratio
            .with_label_values(&[service])
            .set(share);
    }

    pub fn forget_service(&self, service: &str) {
        for s in ComponentStatus::ALL {
            let _ = self
                .service_status
                .remove_label_values(&[service, s.as_str()]);
        }
        let _ = self.service_affected.remove_label_values(&[service]);
        let _ = self.service_affected_ratio.remove_label_values(&[service]);
    }
}

/// How long `/readyz` keeps failing after a probe could not run for a local reason: long
/// enough that readiness does not flap while a host runs short of descriptors or ports, and
/// a scrape every 15 s sees it.
pub const LOCAL_ERROR_HOLD: Duration = Duration::from_secs(30);

fn within_hold(at: Timestamp, now: Timestamp) -> bool {
    (now - at).to_std().unwrap_or_default() < LOCAL_ERROR_HOLD
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `target="…",service="…",region="…",platform="…",probe="…",vantage="…"`, escaped.
fn target_labels(target: &Target, vantage: &str) -> Box<str> {
    label_text(&[
        ("target", target.id.as_str()),
        ("service", target.labels.service.as_str()),
        ("region", target.labels.region.as_str()),
        ("platform", target.labels.platform.as_str()),
        ("probe", target.probe.kind()),
        ("vantage", vantage),
    ])
}

/// `name="value",…`, the values escaped for the text format.
fn label_text(values: &[(&str, &str)]) -> Box<str> {
    let mut text = String::new();
    for (i, &(name, value)) in values.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    text.into_boxed_str()
}

/// The series of one target: its label text and the values, all atomics.
pub struct TargetMetrics {
    labels: Box<str>,
    /// The aggregates its probes count in: one per distinct group labels, one per service.
    aggregates: Box<[Arc<Aggregate>]>,
    /// 1 or 0 once a probe ran (0 before).
    success: AtomicU8,
    /// f64 bits of the last probe's duration.
    duration: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Index into [`TargetState::ALL`].
    state: AtomicU8,
    /// By [`Reason`] discriminant; a reason's series appears once it has counted.
    failures: [AtomicU64; Reason::ALL.len()],
}

impl TargetMetrics {
    fn new(labels: Box<str>, aggregates: Box<[Arc<Aggregate>]>) -> Self {
        Self {
            labels,
            aggregates,
            success: AtomicU8::new(0),
            duration: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            state: AtomicU8::new(0),
            failures: Default::default(),
        }
    }

    pub fn set_state(&self, state: TargetState) {
        self.state.store(state_index(state), Ordering::Relaxed);
    }

    /// Whether this instance has had a result for the target. One that never has (probed
    /// from other vantages, or by another member of this one) stays `unknown` for good:
    /// neither `not_up` nor the counts of targets list it.
    fn has_result(&self) -> bool {
        self.succeeded.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed) > 0
    }
}

/// Upper bounds (seconds) of the aggregates' latency buckets: from a loopback answer to a
/// probe near a long timeout.
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The probes of the targets of one group labels (`service`, `region`, `platform`) or of
/// one service: counters and a latency histogram, atomics like a row.
struct Aggregate {
    labels: Box<str>,
    succeeded: AtomicU64,
    failed: AtomicU64,
    failures: [AtomicU64; Reason::ALL.len()],
    /// Successful probes by latency, one count per bucket (not cumulative); the last is
    /// `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Their latencies in microseconds: nanoseconds would wrap a u64 within a year at
    /// 10 000 probes a second.
    micros: AtomicU64,
}

impl Aggregate {
    fn new(labels: Box<str>) -> Self {
        Self {
            labels,
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Default::default(),
            buckets: Default::default(),
            micros: AtomicU64::new(0),
        }
    }

    fn record(&self, result: &ProbeResult) {
        match &result.failure {
            None => {
                self.succeeded.fetch_add(1, Ordering::Relaxed);
                let seconds = result.latency.as_secs_f64();
                let bucket = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
                self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(result.latency.as_micros()).unwrap_or(u64::MAX);
                self.micros.fetch_add(micros, Ordering::Relaxed);
            }
            Some(f) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.failures[f.reason as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The aggregates of one kind being rebuilt by [`Metrics::set_targets`]: in first-use
/// order, each taken over from the previous table when its labels are unchanged.
struct Aggregates {
    previous: HashMap<Box<str>, Arc<Aggregate>>,
    index: HashMap<Box<str>, u32>,
    list: Vec<Arc<Aggregate>>,
}

impl Aggregates {
    fn reusing(previous: Vec<Arc<Aggregate>>) -> Self {
        Self {
            previous: previous
                .into_iter()
                .map(|a| (a.labels.clone(), a))
                .collect(),
            index: HashMap::new(),
            list: Vec::new(),
        }
    }

    fn index(&mut self, labels: Box<str>) -> u32 {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        let aggregate = self
            .previous
            .remove(&labels)
            .unwrap_or_else(|| Arc::new(Aggregate::new(labels.clone())));
        let i = u32::try_from(self.list.len()).expect("fewer than 2^32 aggregates");
        self.list.push(aggregate);
        self.index.insert(labels, i);
        i
    }
}

fn push_new(list: &mut Vec<u32>, i: u32) {
    if !list.contains(&i) {
        list.push(i);
    }
}

/// Where a row counts, as indices into its table's aggregates, to count targets by state.
#[derive(Default)]
struct Links {
    groups: Vec<u32>,
    services: Vec<u32>,
}

/// The rows of the configured targets, in configuration order, and their aggregates.
#[derive(Default)]
struct TargetTable {
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Arc<TargetMetrics>>,
    /// One per row.
    links: Vec<Links>,
    groups: Vec<Arc<Aggregate>>,
    services: Vec<Arc<Aggregate>>,
}

fn state_index(state: TargetState) -> u8 {
    let index = TargetState::ALL
        .iter()
        .position(|s| *s == state)
        .expect("ALL lists every state");
    index as u8
}

impl TargetTable {
    /// Appends the per-target families `per_target` asks for, then the aggregates, in the
    /// text format (version 0.0.4).
    fn render(&self, out: &mut Spill, per_target: PerTarget) {
        let up = state_index(TargetState::Up);
        // Read under the lock, written after it: a slow scraper never holds up a reload.
        let (rows, groups, services, group_states, service_states) = {
            let table = self.table.read().expect("metrics lock");
            let rows: Vec<Arc<TargetMetrics>> = match per_target {
                PerTarget::All => table.rows.clone(),
                PerTarget::NotUp => table
                    .rows
                    .iter()
                    .filter(|r| r.state.load(Ordering::Relaxed) != up && r.has_result())
                    .cloned()
                    .collect(),
                PerTarget::Off => Vec::new(),
            };
            let mut groups = vec![[0u64; TargetState::ALL.len()]; table.groups.len()];
            let mut services = vec![[0u64; TargetState::ALL.len()]; table.services.len()];
            for (row, links) in table.rows.iter().zip(&table.links) {
                if !row.has_result() {
                    continue;
                }
                let state = usize::from(row.state.load(Ordering::Relaxed));
                for &g in &links.groups {
                    groups[g as usize][state] += 1;
                }
                for &s in &links.services {
                    services[s as usize][state] += 1;
                }
            }
            (
                rows,
                table.groups.clone(),
                table.services.clone(),
                groups,
                services,
            )
        };
        if !rows.is_empty() {
            render_rows(out, &rows, per_target == PerTarget::All);
        }
        render_aggregates(out, "tocsin_group", "group", &groups, &group_states);
        render_aggregates(out, "tocsin_service", "service", &services, &service_states);
    }
}

/// Bytes of text written before they are handed on.
pub const PIECE_BYTES: usize = 256 * 1024;

/// The text being written, handed to `sink` each time it reaches [`PIECE_BYTES`] (checked
/// after each sample) and at the end.
struct Spill<'a> {
    text: String,
    sink: &'a mut dyn FnMut(&str),
}

impl Spill<'_> {
    fn check(&mut self) {
        if self.text.len() >= PIECE_BYTES {
            (self.sink)(&self.text);
            self.text.clear();
        }
    }

    fn finish(self) {
        if !self.text.is_empty() {
            (self.sink)(&self.text);
        }
    }
}

impl std::ops::Deref for Spill<'_> {
    type Target = String;

    fn deref(&self) -> &String {
        &self.text
    }
}

impl std::ops::DerefMut for Spill<'_> {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

/// The per-target families of `rows`: the gauges, and the counters when `counters`.
fn render_rows(out: &mut Spill, rows: &[Arc<TargetMetrics>], counters: bool) {
    family(
        out,
        "tocsin_probe_success",
        "gauge",
        "Whether the last probe succeeded (1) or failed (0).",
    );
    for row in rows {
        let success = row.success.load(Ordering::Relaxed);
        sample(out, "tocsin_probe_success", &row.labels, "", "", success);
    }
    family(
        out,
        "tocsin_probe_duration_seconds",
        "gauge",
        "Duration of the last probe.",
    );
    for row in rows {
        let seconds = f64::from_bits(row.duration.load(Ordering::Relaxed));
        sample(
            out,
            "tocsin_probe_duration_seconds",
            &row.labels,
            "",
            "",
            seconds,
        );
    }
    if counters {
        family(
            out,
            "tocsin_probes_total",
            "counter",
            "Probes run, by result.",
        );
        for row in rows {
            let ok = row.succeeded.load(Ordering::Relaxed);
            let failed = row.failed.load(Ordering::Relaxed);
            let name = "tocsin_probes_total";
            sample(out, name, &row.labels, "result", "success", ok);
            sample(out, name, &row.labels, "result", "failure", failed);
        }
        let mut header = Header::new(
            "tocsin_probe_failures_total",
            "counter",
            "Failed probes, by reason.",
        );
        for row in rows {
            failures(out, &mut header, &row.labels, &row.failures);
        }
    }
    family(
        out,
        "tocsin_target_state",
        "gauge",
        "Target state after thresholds (one-hot).",
    );
    for row in rows {
        let current = usize::from(row.state.load(Ordering::Relaxed));
        for (i, state) in TargetState::ALL.iter().enumerate() {
            let value = u64::from(i == current);
            let name = "tocsin_target_state";
            sample(out, name, &row.labels, "state", state.as_str(), value);
        }
    }
}

/// The families of one kind of aggregate (`prefix` `tocsin_group` or `tocsin_service`),
/// with `states` the count of its targets with a result in each state, by index into `list`.
fn render_aggregates(
    out: &mut Spill,
    prefix: &str,
    what: &str,
    list: &[Arc<Aggregate>],
    states: &[[u64; TargetState::ALL.len()]],
) {
    if list.is_empty() {
        return;
    }
    let name = format!("{prefix}_probes_total");
    let help = format!("Probes of the {what}'s targets, by result.");
    family(out, &name, "counter", &help);
    for a in list {
        let ok = a.succeeded.load(Ordering::Relaxed);
        let failed = a.failed.load(Ordering::Relaxed);
        sample(out, &name, &a.labels, "result", "success", ok);
        sample(out, &name, &a.labels, "result", "failure", failed);
    }
    let name = format!("{prefix}_probe_failures_total");
    let help = format!("Failed probes of the {what}'s targets, by reason.");
    let mut header = Header::new(&name, "counter", &help);
    for a in list {
        failures(out, &mut header, &a.labels, &a.failures);
    }
    let name = format!("{prefix}_probe_duration_seconds");
    let help = format!("Duration of the successful probes of the {what}'s targets.");
    family(out, &name, "histogram", &help);
    let bucket = format!("{name}_bucket");
    let bounds: Vec<String> = LATENCY_BUCKETS
        .iter()
        .map(f64::to_string)
        .chain(["+Inf".to_string()])
        .collect();
    for a in list {
        let mut count = 0;
        for (le, n) in bounds.iter().zip(&a.buckets) {
            count += n.load(Ordering::Relaxed);
            sample(out, &bucket, &a.labels, "le", le, count);
        }
        let seconds = a.micros.load(Ordering::Relaxed) as f64 / 1e6;
        sample(out, &format!("{name}_sum"), &a.labels, "", "", seconds);
        sample(out, &format!("{name}_count"), &a.labels, "", "", count);
    }
    let name = format!("{prefix}_targets");
    let help = format!("Targets of the {what} probed here, by state after thresholds.");
    family(out, &name, "gauge", &help);
    for (a, counts) in list.iter().zip(states) {
        for (state, n) in TargetState::ALL.iter().zip(counts) {
            sample(out, &name, &a.labels, "state", state.as_str(), n);
        }
    }
}

/// A family's `# HELP` and `# TYPE` lines, written before its first sample: a family whose
/// series appear once they count has none before.
struct Header<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    written: bool,
}

impl<'a> Header<'a> {
    fn new(name: &'a str, kind: &'a str, help: &'a str) -> Self {
        Self {
            name,
            kind,
            help,
            written: false,
        }
    }

    fn write(&mut self, out: &mut Spill) {
        if !self.written {
            family(out, self.name, self.kind, self.help);
            self.written = true;
        }
    }
}

/// The `reason` series of `counts` that have counted.
fn failures(
    out: &mut Spill,
    header: &mut Header,
    labels: &str,
    counts: &[AtomicU64; Reason::ALL.len()],
) {
    for (reason, count) in Reason::ALL.iter().zip(counts) {
        let count = count.load(Ordering::Relaxed);
        if count > 0 {
            header.write(out);
            sample(out, header.name, labels, "reason", reason.as_str(), count);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One line: `name{labels[,extra="value"]} count`.
fn sample(
    out: &mut Spill,
    name: &str,
    labels: &str,
    extra: &str,
    value: &str,
    count: impl std::fmt::Display,
) {
    let text = &mut out.text;
    text.push_str(name);
    text.push('{');
    text.push_str(labels);
    if !extra.is_empty() {
        let _ = write!(text, ",{extra}=\"{value}\"");
    }
    let _ = writeln!(text, "}} {count}");
    out.check();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{self, ConfigSource};
    use crate::probe::Phases;

    fn topology(ids: &[&str]) -> Arc<Topology> {
        let mut toml = String::from("[[services]]\nid = \"web\"\n");
        for id in ids {
            toml += &format!(
                "[[targets]]\nid = {id:?}\nservice = \"web\"\nprobe = {{ type = \"tcp\", address = \"127.0.0.1:1\" }}\n"
            );
        }
        let settings = config::load(&ConfigSource::Inline(toml)).expect("valid");
        settings.topology
    }

    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect()
    }

    #[test]
    fn target_series_carry_escaped_labels_and_counts() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&topology(&["a\"b\\c"]), "paris");
        let second = Duration::from_millis(250);
        metrics.record_probe(&rows[0], &ProbeResult::success(second, Phases::default()));
        metrics.record_probe(&rows[0], &ProbeResult::failure(Reason::Timeout, "", second));
        metrics.record_probe(&rows[0], &ProbeResult::failure(Reason::Timeout, "", second));
        rows[0].set_state(TargetState::Down);
        let text = metrics.render();
        let labels =
            r#"target="a\"b\\c",service="web",region="",platform="",probe="tcp",vantage="paris""#;
        assert_eq!(
            lines(&text, "tocsin_probes_total"),
            [
                format!("tocsin_probes_total{{{labels},result=\"success\"}} 1"),
                format!("tocsin_probes_total{{{labels},result=\"failure\"}} 2"),
            ]
        );
        // Only reasons that happened have a series.
        assert_eq!(
            lines(&text, "tocsin_probe_failures_total"),
            [format!(
                "tocsin_probe_failures_total{{{labels},reason=\"timeout\"}} 2"
            )]
        );
        assert_eq!(
            lines(&text, "tocsin_probe_success"),
            [format!("tocsin_probe_success{{{labels}}} 0")]
        );
        assert_eq!(
            lines(&text, "tocsin_probe_duration_seconds"),
            [format!("tocsin_probe_duration_seconds{{{labels}}} 0.25")]
        );
        let states: Vec<&str> = lines(&text, "tocsin_target_state")
            .into_iter()
            .filter(|l| l.ends_with(" 1"))
            .collect();
        assert_eq!(
            states,
            [format!("tocsin_target_state{{{labels},state=\"down\"}} 1")]
        );
        assert_eq!(
            text.matches("# TYPE tocsin_probes_total counter").count(),
            1
        );
    }

    #[test]
    fn the_text_comes_in_pieces_cut_at_line_ends() {
        let ids: Vec<String> = (0..2_000).map(|i| format!("t{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&topology(&ids), "local");
        for row in &rows {
            metrics.record_probe(
                row,
                &ProbeResult::success(Duration::ZERO, Phases::default()),
            );
        }
        let mut pieces = Vec::new();
        metrics.render_to(&mut |piece| pieces.push(piece.to_string()));
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        for piece in &pieces {
            assert!(piece.ends_with('\n'));
            // A piece is handed on once a sample takes it past the size.
            let longest_line = piece.lines().map(str::len).max().unwrap_or(0);
            assert!(
                piece.len() < PIECE_BYTES + longest_line + 1,
                "{}",
                piece.len()
            );
        }
        // The same text as whole, but for the process' own figures, which move.
        let steady = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.contains("process_"))
                .map(str::to_string)
                .collect()
        };
        assert!(steady(&pieces.concat()) == steady(&metrics.render()));
    }

    #[test]
    fn every_reason_counts_under_its_own_label() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&topology(&["t"]), "local");
        for reason in Reason::ALL {
            metrics.record_probe(&rows[0], &ProbeResult::failure(reason, "", Duration::ZERO));
        }
        let text = metrics.render();
        for reason in Reason::ALL {
            let suffix = format!(",reason=\"{}\"}} 1", reason.as_str());
            assert!(
                lines(&text, "tocsin_probe_failures_total")
                    .iter()
                    .any(|l| l.ends_with(&suffix)),
                "{reason:?} missing"
            );
        }
    }

    #[test]
    fn local_errors_are_counted_by_cause_and_held_for_readiness() {
        let metrics = Metrics::new();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        assert_eq!(metrics.recent_local_error(t0), None);
        assert!(metrics.record_local_error(LocalCause::FileDescriptors, t0));
        assert!(!metrics.record_local_error(LocalCause::FileDescriptors, at(10)));
        assert_eq!(
            metrics.recent_local_error(at(39)),
            Some((at(10), LocalCause::FileDescriptors))
        );
        assert_eq!(metrics.recent_local_error(at(40)), None);
        assert!(
            metrics.record_local_error(LocalCause::Ports, at(41)),
            "a new spell"
        );
        let text = metrics.render();
        let count = |cause: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "tocsin_probe_local_errors_total{{reason=\"{cause}\"}}"
                    ))
                })
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
        };
        assert_eq!(count("fds").as_deref(), Some("2"));
        assert_eq!(count("ports").as_deref(), Some("1"));
        assert_eq!(
            count("memory").as_deref(),
            Some("0"),
            "every cause has a series"
        );
    }

    /// Targets `a` and `b` in group `paris` (voice, region fr, platform ims) and `c` in
    /// both `paris` and `lyon` (voice, fr, ims too: the same aggregate labels).
    fn grouped() -> Arc<Topology> {
        load(GROUPED)
    }

    fn load(toml: &str) -> Arc<Topology> {
        let settings = config::load(&ConfigSource::Inline(toml.into())).expect("valid");
        settings.topology
    }

    const GROUPED: &str = r#"
            [[services]]
            id = "voice"
            [[groups]]
            id = "paris"
            service = "voice"
            region = "fr"
            platform = "ims"
            subscribers = 10
            [[groups]]
            id = "lyon"
            service = "voice"
            region = "fr"
            platform = "ims"
            subscribers = 10
            [[targets]]
            id = "a"
            groups = ["paris"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
            [[targets]]
            id = "b"
            groups = ["paris"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
            [[targets]]
            id = "c"
            groups = ["paris", "lyon"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
        "#;

    /// `a` up after a 30 ms success, `b` down after a timeout, `c` still unknown after a
    /// refused connection.
    fn probed(per_target: PerTarget) -> Metrics {
        let metrics = Metrics::new();
        metrics.configure(&MetricsSpec { per_target });
        let rows = metrics.set_targets(&grouped(), "local");
        let ok = ProbeResult::success(Duration::from_millis(30), Phases::default());
        metrics.record_probe(&rows[0], &ok);
        rows[0].set_state(TargetState::Up);
        let timeout = ProbeResult::failure(Reason::Timeout, "", Duration::from_secs(5));
        metrics.record_probe(&rows[1], &timeout);
        rows[1].set_state(TargetState::Down);
        let refused = ProbeResult::failure(Reason::ConnectRefused, "", Duration::ZERO);
        metrics.record_probe(&rows[2], &refused);
        rows[2].set_state(TargetState::Unknown);
        metrics
    }

    const GROUP: &str = r#"service="voice",region="fr",platform="ims",vantage="local""#;
    const SERVICE: &str = r#"service="voice",vantage="local""#;

    fn value(text: &str, line: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn aggregates_count_each_target_once_per_group_labels_and_service() {
        for per_target in PerTarget::ALL {
            let text = probed(per_target).render();
            for (prefix, labels) in [("tocsin_group", GROUP), ("tocsin_service", SERVICE)] {
                let at = |line: String| value(&text, &line);
                let probes = format!("{prefix}_probes_total{{{labels},result=");
                assert_eq!(at(format!("{probes}\"success\"}}")).as_deref(), Some("1"));
                assert_eq!(at(format!("{probes}\"failure\"}}")).as_deref(), Some("2"));
                let failures = format!("{prefix}_probe_failures_total{{{labels},reason=");
                assert_eq!(at(format!("{failures}\"timeout\"}}")).as_deref(), Some("1"));
                assert_eq!(
                    at(format!("{failures}\"dns\"}}")),
                    None,
                    "counted reasons only"
                );
                let histogram = format!("{prefix}_probe_duration_seconds");
                let bucket = |le: &str| at(format!("{histogram}_bucket{{{labels},le=\"{le}\"}}"));
                assert_eq!(bucket("0.025").as_deref(), Some("0"));
                assert_eq!(bucket("0.05").as_deref(), Some("1"), "30 ms");
                assert_eq!(
                    bucket("+Inf").as_deref(),
                    Some("1"),
                    "the failure is not a latency"
                );
                assert_eq!(
                    at(format!("{histogram}_sum{{{labels}}}")).as_deref(),
                    Some("0.03")
                );
                assert_eq!(
                    at(format!("{histogram}_count{{{labels}}}")).as_deref(),
                    Some("1")
                );
                let targets =
                    |state: &str| at(format!("{prefix}_targets{{{labels},state=\"{state}\"}}"));
                assert_eq!(targets("up").as_deref(), Some("1"));
                assert_eq!(targets("down").as_deref(), Some("1"));
                assert_eq!(targets("unknown").as_deref(), Some("1"), "c counts once");
                assert_eq!(targets("degraded").as_deref(), Some("0"));
            }
            assert_eq!(
                text.matches("# TYPE tocsin_group_probe_duration_seconds histogram")
                    .count(),
                1
            );
        }
    }

    fn targets_with(text: &str, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = lines(text, name)
            .iter()
            .filter_map(|l| Some(l.split("target=\"").nth(1)?.split('"').next()?.to_string()))
            .collect();
        ids.dedup();
        ids
    }

    const PER_TARGET: [&str; 5] = [
        "tocsin_probe_success",
        "tocsin_probe_duration_seconds",
        "tocsin_probes_total",
        "tocsin_probe_failures_total",
        "tocsin_target_state",
    ];

    #[test]
    fn all_writes_every_family_for_every_target() {
        let text = probed(PerTarget::All).render();
        for name in PER_TARGET {
            let expected = if name == "tocsin_probe_failures_total" {
                vec!["b", "c"]
            } else {
                vec!["a", "b", "c"]
            };
            assert_eq!(targets_with(&text, name), expected, "{name}");
        }
    }

    #[test]
    fn not_up_writes_only_the_gauges_of_targets_not_up() {
        let metrics = probed(PerTarget::NotUp);
        let text = metrics.render();
        for name in [
            "tocsin_probe_success",
            "tocsin_probe_duration_seconds",
            "tocsin_target_state",
        ] {
            assert_eq!(targets_with(&text, name), ["b", "c"], "{name}");
        }
        for name in ["tocsin_probes_total", "tocsin_probe_failures_total"] {
            assert!(
                !text.contains(&format!("# TYPE {name} ")),
                "{name} is written"
            );
        }
        let duration = r#"tocsin_probe_duration_seconds{target="b",service="voice",region="fr",platform="ims",probe="tcp",vantage="local"}"#;
        assert_eq!(value(&text, duration).as_deref(), Some("5"));
        // A target's series go once it is up, and come when it leaves up.
        let rows = metrics.set_targets(&grouped(), "local");
        rows[1].set_state(TargetState::Up);
        rows[2].set_state(TargetState::Up);
        let text = metrics.render();
        for name in PER_TARGET {
            assert!(
                !text.contains(&format!("# TYPE {name} ")),
                "{name} with every target up"
            );
        }
        rows[0].set_state(TargetState::Degraded);
        assert_eq!(
            targets_with(&metrics.render(), "tocsin_target_state"),
            ["a"]
        );
    }

    #[test]
    fn targets_without_a_result_are_neither_listed_by_not_up_nor_counted() {
        let metrics = Metrics::new();
        metrics.configure(&MetricsSpec {
            per_target: PerTarget::NotUp,
        });
        let rows = metrics.set_targets(&topology(&["elsewhere"]), "local");
        rows[0].set_state(TargetState::Unknown);
        let text = metrics.render();
        assert!(!text.contains("target=\""), "{text}");
        let unknown = r#"tocsin_service_targets{service="web",vantage="local",state="unknown"}"#;
        assert_eq!(value(&text, unknown).as_deref(), Some("0"));
        let timeout = ProbeResult::failure(Reason::Timeout, "", Duration::from_secs(1));
        metrics.record_probe(&rows[0], &timeout);
        let text = metrics.render();
        assert_eq!(targets_with(&text, "tocsin_target_state"), ["elsewhere"]);
        assert_eq!(value(&text, unknown).as_deref(), Some("1"));
    }

    #[test]
    fn off_writes_no_per_target_series_and_a_reload_switches_modes() {
        let metrics = probed(PerTarget::Off);
        let text = metrics.render();
        assert!(
            !text.contains("target=\""),
            "a per-target series in:\n{text}"
        );
        assert!(text.contains("tocsin_group_probes_total{"));
        metrics.configure(&MetricsSpec::default());
        assert_eq!(
            targets_with(&metrics.render(), "tocsin_probe_success"),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn aggregates_keep_their_counts_across_a_reload_and_go_with_their_last_target() {
        let metrics = probed(PerTarget::All);
        // Paris moves to region be, c is removed (and lyon's aggregate with it).
        let without_c = &GROUPED[..GROUPED.rfind("[[targets]]").expect("c")];
        let changed = load(&without_c.replacen(r#"region = "fr""#, r#"region = "be""#, 1));
        let rows = metrics.set_targets(&changed, "local");
        assert_eq!(rows.len(), 2);
        let text = metrics.render();
        let success = format!("tocsin_service_probes_total{{{SERVICE},result=\"success\"}}");
        assert_eq!(
            value(&text, &success).as_deref(),
            Some("1"),
            "the service kept its count"
        );
        assert!(!text.contains(GROUP), "fr is gone:\n{text}");
        let moved = GROUP.replace("fr", "be");
        let success = format!("tocsin_group_probes_total{{{moved},result=\"success\"}}");
        assert_eq!(
            value(&text, &success).as_deref(),
            Some("0"),
            "a new aggregate starts at 0"
        );
        let success = r#"tocsin_probes_total{target="a",service="voice",region="be",platform="ims",probe="tcp",vantage="local",result="success"}"#;
        assert_eq!(
            value(&text, success).as_deref(),
            Some("0"),
            "a's labels changed: a new row"
        );
    }

    #[test]
    fn a_reload_keeps_the_counts_of_unchanged_targets_and_drops_removed_ones() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&topology(&["kept", "removed"]), "local");
        for row in rows.iter() {
            metrics.record_probe(
                row,
                &ProbeResult::success(Duration::ZERO, Phases::default()),
            );
        }
        metrics.set_targets(&topology(&["kept", "added"]), "local");
        let text = metrics.render();
        let successes: Vec<&str> = lines(&text, "tocsin_probes_total")
            .into_iter()
            .filter(|l| l.contains("result=\"success\""))
            .collect();
        assert_eq!(successes.len(), 2);
        assert!(
            successes
                .iter()
                .any(|l| l.contains("target=\"kept\"") && l.ends_with(" 1"))
        );
        assert!(
            successes
                .iter()
                .any(|l| l.contains("target=\"added\"") && l.ends_with(" 0"))
        );
        assert!(!text.contains("target=\"removed\""));
    }
}
