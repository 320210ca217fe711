//! Prometheus metrics: one registry for the families with few series, and a
//! compact table for the per-target families.
//!
//! Ten thousand targets are eighty thousand per-target series. As children of the
//! `prometheus` crate's vectors they cost ~5 KB per target (each child keeps its own label
//! pairs) and every scrape rebuilds them as protobuf messages. So the per-target families
//! live in a table of their own: a row per target with its label text escaped once and a few
//! atomics, written straight into the text format. The probe path touches only atomics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::incident::{ComponentStatus, Severity};
use crate::probe::{LocalCause, ProbeResult, Reason};
use crate::topology::Target;

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

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        let mut text = String::from_utf8(out).expect("the text format is UTF-8");
        self.targets.render(&mut text);
        text
    }

    /// Makes `targets` the targets with series. A target whose labels are unchanged keeps
    /// its row (its counters go on); the series of a target that is gone are dropped.
    pub fn set_targets(&self, targets: &[Target], vantage: &str) -> Vec<Arc<TargetMetrics>> {
        let mut rows = self.targets.rows.write().expect("metrics lock");
        let mut previous: HashMap<Box<str>, Arc<TargetMetrics>> = rows
            .drain(..)
            .map(|row| (row.labels.clone(), row))
            .collect();
        *rows = targets
            .iter()
            .map(|t| {
                let labels = target_labels(t, vantage);
                previous
                    .remove(&labels)
                    .unwrap_or_else(|| Arc::new(TargetMetrics::new(labels)))
            })
            .collect();
        rows.clone()
    }

    pub fn record_probe(&self, t: &TargetMetrics, result: &ProbeResult) {
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
    let values = [
        ("target", target.id.as_str()),
        ("service", target.labels.service.as_str()),
        ("region", target.labels.region.as_str()),
        ("platform", target.labels.platform.as_str()),
        ("probe", target.probe.kind()),
        ("vantage", vantage),
    ];
    let mut text = String::new();
    for (i, (name, value)) in values.into_iter().enumerate() {
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
    fn new(labels: Box<str>) -> Self {
        Self {
            labels,
            success: AtomicU8::new(0),
            duration: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            state: AtomicU8::new(0),
            failures: Default::default(),
        }
    }

    pub fn set_state(&self, state: TargetState) {
        let index = TargetState::ALL
            .iter()
            .position(|s| *s == state)
            .expect("ALL lists every state");
        self.state.store(index as u8, Ordering::Relaxed);
    }
}

/// The rows of the configured targets, in configuration order.
#[derive(Default)]
struct TargetTable {
    rows: RwLock<Vec<Arc<TargetMetrics>>>,
}

impl TargetTable {
    /// Appends the per-target families in the text format (version 0.0.4).
    fn render(&self, out: &mut String) {
        // Held while rendering: only a reload writes it; probes touch the rows' atomics.
        let rows = self.rows.read().expect("metrics lock");
        // About 110 bytes per line, eight lines per target.
        out.reserve(rows.len() * 8 * (rows.first().map_or(0, |r| r.labels.len()) + 40));
        family(
            out,
            "tocsin_probe_success",
            "gauge",
            "Whether the last probe succeeded (1) or failed (0).",
        );
        for row in rows.iter() {
            sample(
                out,
                "tocsin_probe_success",
                row,
                "",
                "",
                row.success.load(Ordering::Relaxed),
            );
        }
        family(
            out,
            "tocsin_probe_duration_seconds",
            "gauge",
            "Duration of the last probe.",
        );
        for row in rows.iter() {
            let seconds = f64::from_bits(row.duration.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "tocsin_probe_duration_seconds{{{}}} {seconds}",
                row.labels
            );
        }
        family(
            out,
            "tocsin_probes_total",
            "counter",
            "Probes run, by result.",
        );
        for row in rows.iter() {
            let ok = row.succeeded.load(Ordering::Relaxed);
            let failed = row.failed.load(Ordering::Relaxed);
            sample(out, "tocsin_probes_total", row, "result", "success", ok);
            sample(out, "tocsin_probes_total", row, "result", "failure", failed);
        }
        family(
            out,
            "tocsin_probe_failures_total",
            "counter",
            "Failed probes, by reason.",
        );
        for row in rows.iter() {
            for (reason, count) in Reason::ALL.iter().zip(&row.failures) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    sample(
                        out,
                        "tocsin_probe_failures_total",
                        row,
                        "reason",
                        reason.as_str(),
                        count,
                    );
                }
            }
        }
        family(
            out,
            "tocsin_target_state",
            "gauge",
            "Target state after thresholds (one-hot).",
        );
        for row in rows.iter() {
            let current = usize::from(row.state.load(Ordering::Relaxed));
            for (i, state) in TargetState::ALL.iter().enumerate() {
                let value = u64::from(i == current);
                sample(
                    out,
                    "tocsin_target_state",
                    row,
                    "state",
                    state.as_str(),
                    value,
                );
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One line: `name{labels[,extra="value"]} count`.
fn sample(
    out: &mut String,
    name: &str,
    row: &TargetMetrics,
    extra: &str,
    value: &str,
    count: impl std::fmt::Display,
) {
    out.push_str(name);
    out.push('{');
    out.push_str(&row.labels);
    if !extra.is_empty() {
        let _ = write!(out, ",{extra}=\"{value}\"");
    }
    let _ = writeln!(out, "}} {count}");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{self, ConfigSource};
    use crate::probe::Phases;

    fn targets(ids: &[&str]) -> Vec<Target> {
        let mut toml = String::from("[[services]]\nid = \"web\"\n");
        for id in ids {
            toml += &format!(
                "[[targets]]\nid = {id:?}\nservice = \"web\"\nprobe = {{ type = \"tcp\", address = \"127.0.0.1:1\" }}\n"
            );
        }
        let settings = config::load(&ConfigSource::Inline(toml)).expect("valid");
        settings.topology.targets.clone()
    }

    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect()
    }

    #[test]
    fn target_series_carry_escaped_labels_and_counts() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&targets(&["a\"b\\c"]), "paris");
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
    fn every_reason_counts_under_its_own_label() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&targets(&["t"]), "local");
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

    #[test]
    fn a_reload_keeps_the_counts_of_unchanged_targets_and_drops_removed_ones() {
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&targets(&["kept", "removed"]), "local");
        for row in rows.iter() {
            metrics.record_probe(
                row,
                &ProbeResult::success(Duration::ZERO, Phases::default()),
            );
        }
        metrics.set_targets(&targets(&["kept", "added"]), "local");
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
