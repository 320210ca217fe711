//! `GET /probe?module=&target=`: a blackbox_exporter-compatible one-shot probe, so a
//! Prometheus already set up for the multi-target exporter pattern can point at tocsin.
//! Modules come from `[modules.NAME]` ([`crate::probe::module`]): a probe table without its
//! target, and a timeout.
//! Each request gets a fresh registry, as blackbox does; tocsin's own series stay on
//! `/metrics`.
//!
//! Whoever reaches the listener can make tocsin probe, so `/probe` is bounded: its runs
//! take permits of the scheduler's in-flight bound and have a cap of their own
//! (`[exporter] max_concurrent`), a request that tocsin's own http probe made (a redirect
//! back into `/probe`) is refused as a loop, and `[exporter]` may name the targets allowed
//! and a bearer token. Errors are plain text, as blackbox's are.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use serde::Deserialize;

use super::AppState;
use crate::probe::module::ModuleSpec;
use crate::probe::{LOOP_HEADER, ProbeResult, ProbeSpec, adhoc, loop_marker};
use crate::validation::{Issues, read_secret_file};

/// `[exporter]`: who may make tocsin probe what through `/probe`. The defaults leave it open
/// to anyone who reaches the listener, as blackbox_exporter is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// `/probe` runs at once; one more is answered 503 at once.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Host names (`*.example.net` for its subdomains) and IP networks (`192.0.2.0/24`, a
    /// bare address for itself) that `/probe` may be asked to probe; empty: any.
    #[serde(default)]
    pub allowed_targets: Vec<String>,
    /// Bearer token `/probe` requires; unset: none.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            max_concurrent: default_max_concurrent(),
            allowed_targets: Vec::new(),
            token_file: None,
        }
    }
}

fn default_max_concurrent() -> usize {
    32
}

/// `[exporter]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterSpec {
    pub max_concurrent: usize,
    /// `None`: any target.
    pub allowed_targets: Option<Vec<Allowed>>,
    pub token: Option<String>,
}

impl Default for ExporterSpec {
    fn default() -> Self {
        ExporterConfig::default()
            .build("exporter", &mut Issues::default())
            .expect("the defaults are valid")
    }
}

/// One entry of `allowed_targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// `*.example.net`: any name ending in `.example.net` (not `example.net` itself).
    Subdomains(String),
    /// An address and a prefix length (host bits zero).
    Network(IpAddr, u8),
}

impl Allowed {
    fn parse(entry: &str) -> Result<Allowed, String> {
        if let Some((ip, prefix)) = entry.split_once('/') {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("`{entry}`: `{ip}` is not an IP address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{entry}`: the prefix length must be 0 to {max}"))?;
            if network(ip, prefix) != ip {
                return Err(format!(
                    "`{entry}` has host bits set (the network is {}/{prefix})",
                    network(ip, prefix)
                ));
            }
            return Ok(Allowed::Network(ip, prefix));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Ok(Allowed::Network(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        let name = entry.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(base) => (true, base.to_string()),
            None => (false, name),
        };
        let valid = !base.is_empty()
            && base.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !valid {
            return Err(format!(
                "`{entry}` is not a host name, `*.` and a domain, or an IP network"
            ));
        }
        Ok(if wildcard {
            Allowed::Subdomains(base)
        } else {
            Allowed::Name(base)
        })
    }

    fn allows(&self, host: &str) -> bool {
        match (self, host.parse::<IpAddr>()) {
            (Allowed::Network(net, prefix), Ok(ip)) => {
                net.is_ipv4() == ip.is_ipv4() && network(ip, *prefix) == *net
            }
            (Allowed::Name(name), Err(_)) => *name == normal_name(host),
            (Allowed::Subdomains(base), Err(_)) => normal_name(host)
                .strip_suffix(base.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            _ => false,
        }
    }
}

fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `ip` with the bits past `prefix` cleared.
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

impl ExporterConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ExporterSpec> {
        let before = issues.len();
        if self.max_concurrent == 0 {
            issues.push(format!("{path}.max_concurrent"), "must be at least 1");
        }
        let mut allowed = Vec::new();
        for (i, entry) in self.allowed_targets.iter().enumerate() {
            match Allowed::parse(entry) {
                Ok(a) => allowed.push(a),
                Err(e) => issues.push(format!("{path}.allowed_targets[{i}]"), e),
            }
        }
        let token = match &self.token_file {
            None => None,
            Some(file) => match read_secret_file(file) {
                Ok(t) => Some(t),
                Err(e) => {
                    issues.push(format!("{path}.token_file"), e);
                    None
                }
            },
        };
        if issues.len() > before {
            return None;
        }
        Some(ExporterSpec {
            max_concurrent: self.max_concurrent,
            allowed_targets: (!allowed.is_empty()).then_some(allowed),
            token,
        })
    }
}

/// `/probe` runs in progress, against `max_concurrent` (read from the current
/// configuration, so a reload changes it for the next request).
#[derive(Debug, Default)]
pub struct ExporterSlots(AtomicUsize);

/// One slot, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl ExporterSlots {
    fn take(&self, max: usize) -> Option<Slot<'_>> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.0))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a probe in `tocsin_probes_in_flight` while it lives (a dropped request too).
struct Running<'a>(&'a prometheus::IntGauge);

impl<'a> Running<'a> {
    fn start(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Running(gauge)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Blackbox subtracts this from Prometheus' scrape timeout so the answer arrives in time.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// What a `GET /probe` asks for, checked.
#[derive(Debug)]
pub struct ProbeRequest {
    /// The `target` parameter as given.
    pub target: String,
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
        target: target.into_owned(),
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

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

pub async fn probe(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if headers.get(LOOP_HEADER) == Some(loop_marker()) {
        return text(
            StatusCode::LOOP_DETECTED,
            "Loop detected: this request comes from this tocsin's own probe",
        );
    }
    let site = state.site.borrow().clone();
    let exporter = &site.exporter;
    if let Some(expected) = exporter.token.as_deref() {
        use subtle::ConstantTimeEq;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => return text(StatusCode::UNAUTHORIZED, "Bearer token required"),
            Some(given) if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => {
                return text(StatusCode::FORBIDDEN, "Wrong bearer token");
            }
            Some(_) => {}
        }
    }
    let request = match probe_request(&site.modules, query.as_deref(), &headers) {
        Ok(request) => request,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let ProbeRequest {
        target,
        kind,
        spec,
        timeout,
    } = request;
    if let Some(allowed) = &exporter.allowed_targets
        && !allowed.iter().any(|a| a.allows(&spec.host()))
    {
        return text(
            StatusCode::FORBIDDEN,
            format!("Target \"{target}\" is not in exporter.allowed_targets"),
        );
    }
    let Some(_slot) = state.exporter_slots.take(exporter.max_concurrent) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Too many probes at once (exporter.max_concurrent = {})",
                exporter.max_concurrent
            ),
        );
    };
    let Ok(_permit) = state.in_flight.try_acquire() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Every probe slot is in use (probes in flight at their bound)",
        );
    };
    let result = {
        let _running = Running::start(&state.metrics.probes_in_flight);
        state.prober.run(&spec, timeout).await
    };
    if let Some(cause) = result.local() {
        // No verdict on the target: a failed scrape (`up` 0), not `probe_success` 0.
        state.metrics.record_local_error(cause, state.clock.now());
        let detail = result.failure.as_ref().map_or("", |f| f.detail.as_str());
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Probe not run, for a reason of this host ({}): {detail}",
                cause.as_str()
            ),
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Vec<Allowed> {
        entries.iter().map(|e| Allowed::parse(e).unwrap()).collect()
    }

    fn allows(list: &[Allowed], host: &str) -> bool {
        list.iter().any(|a| a.allows(host))
    }

    #[test]
    fn allowed_targets_match_names_subdomains_and_networks() {
        let list = allowed(&[
            "www.Example.net.",
            "*.lab.example.net",
            "192.0.2.0/24",
            "2001:db8::1",
        ]);
        assert!(allows(&list, "www.example.net"));
        assert!(allows(&list, "WWW.example.net."));
        assert!(!allows(&list, "example.net"));
        assert!(allows(&list, "vm-a.lab.example.net"));
        assert!(
            !allows(&list, "lab.example.net"),
            "the wildcard is for subdomains"
        );
        assert!(!allows(&list, "evillab.example.net"));
        assert!(allows(&list, "192.0.2.77"));
        assert!(!allows(&list, "192.0.3.1"));
        assert!(allows(&list, "2001:db8::1"));
        assert!(!allows(&list, "2001:db8::2"));
        assert!(!allows(&list, "::ffff:192.0.2.1"), "no family mixing");
        let any_v4 = allowed(&["0.0.0.0/0"]);
        assert!(allows(&any_v4, "203.0.113.9"));
        assert!(!allows(&any_v4, "::1"));
    }

    #[test]
    fn bad_entries_are_refused_with_their_path() {
        let config = ExporterConfig {
            max_concurrent: 0,
            allowed_targets: vec!["10.1.2.3/8".into(), "10.0.0.0/33".into(), "a b".into()],
            token_file: None,
        };
        let mut issues = Issues::default();
        assert!(config.build("exporter", &mut issues).is_none());
        let text = issues.to_string();
        assert!(
            text.contains("exporter.max_concurrent: must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("exporter.allowed_targets[0]: `10.1.2.3/8` has host bits set (the network is 10.0.0.0/8)"),
            "{text}"
        );
        assert!(
            text.contains(
                "exporter.allowed_targets[1]: `10.0.0.0/33`: the prefix length must be 0 to 32"
            ),
            "{text}"
        );
        assert!(
            text.contains("exporter.allowed_targets[2]: `a b` is not a host name"),
            "{text}"
        );
    }

    #[test]
    fn slots_stop_at_the_cap_and_come_back() {
        let slots = ExporterSlots::default();
        let a = slots.take(2).unwrap();
        let _b = slots.take(2).unwrap();
        assert!(slots.take(2).is_none());
        drop(a);
        assert!(slots.take(2).is_some());
    }
}
