//! `GET /probe?module=&target=`: a blackbox_exporter-compatible one-shot probe, so a
//! Prometheus already set up for the multi-target exporter pattern can point at tocsin.
//! Modules come from `[modules.NAME]`: a probe table without its target, and a timeout.
//! Each request gets a fresh registry, as blackbox does; tocsin's own series stay on
//! `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AppState;
use crate::config::Issues;
use crate::probe::{ProbeResult, target};

/// `[modules.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// A probe table (`type` and options) without the key the target fills.
    pub probe: Map<String, Value>,
    /// Upper bound on one probe; Prometheus' scrape timeout may shorten it.
    #[serde(default = "default_module_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_module_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A validated module.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    pub probe: Map<String, Value>,
    pub timeout: Duration,
}

impl ModuleConfig {
    /// Checks the module by building it against a placeholder target.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<Module> {
        if self.timeout.is_zero() {
            issues.push(format!("{path}.timeout"), "must be greater than zero");
            return None;
        }
        let placeholder = match self.probe.get("type").and_then(Value::as_str) {
            Some("icmp") => "127.0.0.1",
            _ => "127.0.0.1:1",
        };
        if let Err(errors) =
            target::build(&format!("{path}.probe"), self.probe.clone(), placeholder)
        {
            for line in errors.lines() {
                match line.split_once(": ") {
                    Some((key, message)) => issues.push(key, message),
                    None => issues.push(format!("{path}.probe"), line),
                }
            }
            return None;
        }
        Some(Module {
            probe: self.probe.clone(),
            timeout: self.timeout,
        })
    }
}

pub fn build_modules(
    modules: &BTreeMap<String, ModuleConfig>,
    issues: &mut Issues,
) -> BTreeMap<String, Module> {
    modules
        .iter()
        .filter_map(|(name, m)| Some((name.clone(), m.build(&format!("modules.{name}"), issues)?)))
        .collect()
}

#[derive(Deserialize)]
pub struct ProbeQuery {
    module: Option<String>,
    target: Option<String>,
}

/// Blackbox subtracts this from Prometheus' scrape timeout so the answer arrives in time.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

pub async fn probe(
    State(state): State<AppState>,
    Query(query): Query<ProbeQuery>,
    headers: HeaderMap,
) -> Response {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message).into_response();
    let Some(target) = query.target.filter(|t| !t.is_empty()) else {
        return bad("Target parameter is missing".into());
    };
    let name = query.module.unwrap_or_else(|| "http_2xx".to_string());
    let settings = state.settings.borrow().clone();
    let Some(module) = settings.modules.get(&name) else {
        return bad(format!("Unknown module \"{name}\""));
    };
    let spec = match target::build(
        &format!("modules.{name}.probe"),
        module.probe.clone(),
        &target,
    ) {
        Ok(spec) => spec,
        Err(errors) => return bad(errors),
    };
    let scrape_timeout = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s).saturating_sub(SCRAPE_TIMEOUT_OFFSET));
    let timeout = match scrape_timeout {
        Some(t) if !t.is_zero() => t.min(module.timeout),
        _ => module.timeout,
    };
    let kind = spec.kind();
    let result = state.prober.run(&spec, timeout).await;
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        render(kind, &result, timeout),
    )
        .into_response()
}

/// The blackbox_exporter series for one result.
pub fn render(kind: &str, result: &ProbeResult, timeout: Duration) -> String {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, value: f64| {
        let g = Gauge::with_opts(Opts::new(name, help)).expect("valid name");
        g.set(value);
        registry.register(Box::new(g)).expect("unique name");
    };
    let phases = |name: &str, help: &str, values: &[(&str, Option<Duration>)]| {
        let g = GaugeVec::new(Opts::new(name, help), &["phase"]).expect("valid name");
        for (phase, d) in values {
            g.with_label_values(&[phase])
                .set(d.map_or(0.0, |d| d.as_secs_f64()));
        }
        registry.register(Box::new(g)).expect("unique name");
    };
    let p = &result.phases;
    gauge(
        "probe_success",
        "Displays whether or not the probe was a success",
        f64::from(u8::from(result.is_ok())),
    );
    gauge(
        "probe_duration_seconds",
        "Returns how long the probe took to complete in seconds",
        result.latency.as_secs_f64(),
    );
    gauge(
        "probe_timeout_seconds",
        "Returns how long the probe had to complete in seconds",
        timeout.as_secs_f64(),
    );
    if let Some(dns) = p.dns {
        gauge(
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds",
            dns.as_secs_f64(),
        );
    }
    match kind {
        "http" => {
            let before = [p.dns, p.connect, p.tls, p.first_byte]
                .iter()
                .flatten()
                .sum::<Duration>();
            let transfer = p.total.map(|t| t.saturating_sub(before));
            phases(
                "probe_http_duration_seconds",
                "Duration of http request by phase, summed over all redirects",
                &[
                    ("resolve", p.dns),
                    ("connect", p.connect),
                    ("tls", p.tls),
                    ("processing", p.first_byte),
                    ("transfer", transfer),
                ],
            );
            gauge(
                "probe_http_status_code",
                "Response HTTP status code",
                f64::from(result.http_status.unwrap_or(0)),
            );
            gauge(
                "probe_http_ssl",
                "Indicates if SSL was used for the final redirect",
                f64::from(u8::from(result.tls.is_some())),
            );
        }
        "dns" => phases(
            "probe_dns_duration_seconds",
            "Duration of DNS request by phase",
            &[
                ("resolve", p.dns),
                ("connect", p.connect),
                ("request", p.first_byte),
            ],
        ),
        "icmp" => phases(
            "probe_icmp_duration_seconds",
            "Duration of icmp request by phase",
            &[("resolve", p.dns), ("setup", p.connect), ("rtt", p.rtt)],
        ),
        "diameter" => phases(
            "probe_diameter_duration_seconds",
            "Duration of the Diameter exchange by phase; processing is up to the CEA",
            &[
                ("resolve", p.dns),
                ("connect", p.connect),
                ("tls", p.tls),
                ("processing", p.first_byte),
            ],
        ),
        "gtp" | "radius" => phases(
            &format!("probe_{kind}_duration_seconds"),
            &format!("Duration of the {kind} request by phase; rtt includes retransmissions"),
            &[("resolve", p.dns), ("rtt", p.first_byte)],
        ),
        _ => {}
    }
    if let Some(counter) = result.peer.restart_counter {
        gauge(
            "probe_gtp_restart_counter",
            "Restart counter (Recovery IE) of the GTP peer; changes() shows its restarts",
            f64::from(counter),
        );
    }
    if let Some(tls) = &result.tls {
        gauge(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            tls.earliest_expiry.timestamp() as f64,
        );
        let version = GaugeVec::new(
            Opts::new(
                "probe_tls_version_info",
                "Returns the TLS version used or NaN when unknown",
            ),
            &["version"],
        )
        .expect("valid name");
        version.with_label_values(&[tls.version]).set(1.0);
        registry.register(Box::new(version)).expect("unique name");
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}
