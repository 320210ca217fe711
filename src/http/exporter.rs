//! `GET /probe?module=&target=`: a blackbox_exporter-compatible one-shot probe, so a
//! Prometheus already set up for the multi-target exporter pattern can point at tocsin.
//! Modules come from `[modules.NAME]` ([`crate::probe::module`]): a probe table without its
//! target, and a timeout.
//! Each request gets a fresh registry, as blackbox does; tocsin's own series stay on
//! `/metrics`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use serde::Deserialize;

use super::AppState;
use crate::probe::{ProbeResult, adhoc};

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
    let site = state.site.borrow().clone();
    let Some(module) = site.modules.get(&name) else {
        return bad(format!("Unknown module \"{name}\""));
    };
    let spec = match adhoc::build(
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
        _ => {}
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
