//! Prometheus metrics (SPEC §8): one registry, every family created once, label handles
//! of each target resolved once so the probe path does no string work on success.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::detector::TargetState;
use crate::incident::{ComponentStatus, Severity};
use crate::probe::ProbeResult;
use crate::topology::Target;

const TARGET_LABELS: [&str; 6] = [
    "target", "service", "region", "platform", "probe", "vantage",
];

/// Every tocsin series. Families are atomics: share an `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    probe_success: GaugeVec,
    probe_duration: GaugeVec,
    probes_total: IntCounterVec,
    probe_failures: IntCounterVec,
    target_state: IntGaugeVec,
    service_status: IntGaugeVec,
    service_affected: IntGaugeVec,
    service_affected_ratio: GaugeVec,
    pub incidents_open: IntGaugeVec,
    pub incidents_total: IntCounterVec,
    /// SPEC §8 names this `tocsin_incident_user_minutes_total`; promtool rejects a
    /// non-base unit, so it counts subscriber-seconds under a base-unit name.
    pub incident_user_seconds: prometheus::CounterVec,
    pub alert_deliveries: IntCounterVec,
    pub alert_outbox_pending: IntGaugeVec,
    pub scheduler_lag: Histogram,
    pub probes_in_flight: IntGauge,
    pub config_reload_ok: IntGauge,
    pub config_reload_timestamp: Gauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let target_labels = |extra: &'static [&'static str]| -> Vec<&'static str> {
            TARGET_LABELS.iter().chain(extra).copied().collect()
        };
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
            probe_success: reg!(GaugeVec::new(
                opts(
                    "tocsin_probe_success",
                    "Whether the last probe succeeded (1) or failed (0)."
                ),
                &target_labels(&[])
            )),
            probe_duration: reg!(GaugeVec::new(
                opts(
                    "tocsin_probe_duration_seconds",
                    "Duration of the last probe."
                ),
                &target_labels(&[])
            )),
            probes_total: reg!(IntCounterVec::new(
                opts("tocsin_probes_total", "Probes run, by result."),
                &target_labels(&["result"])
            )),
            probe_failures: reg!(IntCounterVec::new(
                opts("tocsin_probe_failures_total", "Failed probes, by reason."),
                &target_labels(&["reason"])
            )),
            target_state: reg!(IntGaugeVec::new(
                opts(
                    "tocsin_target_state",
                    "Target state after thresholds (one-hot)."
                ),
                &target_labels(&["state"])
            )),
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
            scheduler_lag: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "tocsin_scheduler_lag_seconds",
                    "How late probes start: actual start minus planned start."
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
                ])
            )),
            probes_in_flight: reg!(IntGauge::new(
                "tocsin_probes_in_flight",
                "Probes running now."
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
        metrics
    }

    /// The text exposition format, for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    pub fn target(&self, target: &Target, vantage: &str) -> TargetMetrics {
        let labels: Vec<String> = vec![
            target.id.clone(),
            target.labels.service.clone(),
            target.labels.region.clone(),
            target.labels.platform.clone(),
            target.probe.kind().to_string(),
            vantage.to_string(),
        ];
        let base: Vec<&str> = labels.iter().map(String::as_str).collect();
        TargetMetrics {
            success: self.probe_success.with_label_values(&base),
            duration: self.probe_duration.with_label_values(&base),
            succeeded: self.probes_total.with_label_values(&with(&base, "success")),
            failed: self.probes_total.with_label_values(&with(&base, "failure")),
            states: TargetState::ALL.map(|s| {
                self.target_state
                    .with_label_values(&with(&base, s.as_str()))
            }),
            labels,
        }
    }

    /// Drops the series of a target that is no longer configured.
    pub fn forget_target(&self, t: &TargetMetrics) {
        let base: Vec<&str> = t.labels.iter().map(String::as_str).collect();
        let _ = self.probe_success.remove_label_values(&base);
        let _ = self.probe_duration.remove_label_values(&base);
        for result in ["success", "failure"] {
            let _ = self.probes_total.remove_label_values(&with(&base, result));
        }
        for reason in crate::probe::Reason::ALL {
            let _ = self
                .probe_failures
                .remove_label_values(&with(&base, reason.as_str()));
        }
        for state in TargetState::ALL {
            let _ = self
                .target_state
                .remove_label_values(&with(&base, state.as_str()));
        }
    }

    pub fn record_probe(&self, t: &TargetMetrics, result: &ProbeResult) {
        t.duration.set(result.latency.as_secs_f64());
        match &result.failure {
            None => {
                t.success.set(1.0);
                t.succeeded.inc();
            }
            Some(f) => {
                t.success.set(0.0);
                t.failed.inc();
                let labels: Vec<&str> = t
                    .labels
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(f.reason.as_str()))
                    .collect();
                self.probe_failures.with_label_values(&labels).inc();
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Target label values plus one more.
fn with<'a>(base: &[&'a str], extra: &'a str) -> Vec<&'a str> {
    base.iter().copied().chain(std::iter::once(extra)).collect()
}

/// Label handles of one target, resolved once.
pub struct TargetMetrics {
    success: Gauge,
    duration: Gauge,
    succeeded: IntCounter,
    failed: IntCounter,
    /// In [`TargetState::ALL`] order.
    states: [IntGauge; 4],
    labels: Vec<String>,
}

impl TargetMetrics {
    pub fn set_state(&self, state: TargetState) {
        for (gauge, s) in self.states.iter().zip(TargetState::ALL) {
            gauge.set(i64::from(s == state));
        }
    }
}
