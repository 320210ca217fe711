//! `GET /probe?module=&target=`: a blackbox_exporter-compatible one-shot probe, so a
//! Prometheus already set up for the multi-target exporter pattern can point at tocsin.
//! Modules come from `[modules.NAME]` ([`crate::probe::module`]): a probe table without its
//! target, and a timeout.
//! Each request gets a fresh registry, as blackbox does; tocsin's own series stay on
//! `/metrics`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use super::AppState;
use crate::probe::module::ModuleSpec;
use crate::probe::{ProbeResult, ProbeSpec, adhoc};

/// Blackbox subtracts this from Prometheus' scrape timeout so the answer arrives in time.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// What a `GET /probe` asks for, checked.
#[derive(Debug)]
pub struct ProbeRequest {
    /// The `probe` label value.
    pub kind: &'static str,
    pub spec: ProbeSpec,
    pub timeout: Duration,
}

/// Turns the query string and headers of `GET /probe` into the probe to run, or the
/// text of the 400 answer. Everything here comes from the network (the fuzz target
/// `probe_request` drives it). As blackbox does, the first `module` and `target` count.
pub fn probe_request(
    modules: &BTreeMap<String, ModuleSpec>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<ProbeRequest, String> {
    let mut module = None;
    let mut target = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "module" => module = module.or(Some(value)),
            "target" => target = target.or(Some(value)),
            _ => {}
        }
    }
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Err("Target parameter is missing".into());
    };
    let name = module.unwrap_or(Cow::Borrowed("http_2xx"));
    let Some(module) = modules.get(name.as_ref()) else {
        return Err(format!("Unknown module \"{name}\""));
    };
    let spec = adhoc::build(
        &format!("modules.{name}.probe"),
        module.probe.clone(),
        &target,
    )?;
    let timeout = match scrape_timeout(headers) {
        Some(t) if !t.is_zero() => t.min(module.timeout),
        _ => module.timeout,
    };
    Ok(ProbeRequest {
        kind: spec.kind(),
        spec,
        timeout,
    })
}

/// Prometheus' `X-Prometheus-Scrape-Timeout-Seconds` less blackbox's offset. A float
/// from the network: NaN, infinite, zero or negative means no header; one too large for
/// a `Duration` (`1e20`) is the longest one, so the module's timeout applies.
fn scrape_timeout(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)?;
    let timeout = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
    Some(timeout.saturating_sub(SCRAPE_TIMEOUT_OFFSET))
}

pub async fn probe(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let site = state.site.borrow().clone();
    let request = match probe_request(&site.modules, query.as_deref(), &headers) {
        Ok(request) => request,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let result = state.prober.run(&request.spec, request.timeout).await;
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        render(request.kind, &result, request.timeout),
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
