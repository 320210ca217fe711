//! The status page an operator's customers look at: `GET /` and `GET /incidents/{id}`.
//! Server-rendered, no JavaScript, no external assets (inline CSS and SVG),
//! auto-refreshing, readable on a phone; status is never told by colour alone (text labels
//! and symbols too). Everything that comes from config or the API is escaped.
//!
//! It shows what customers need: services, status, the share affected, regions, times and
//! the customer-facing updates. Subscriber counts, platforms, suspected causes and
//! regulatory detail are the operator's, shown only when `[page]` says so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;
use serde::Deserialize;

use super::extract::PathParams;
use super::{ApiError, AppState, SiteSpec, api};
use crate::clock::Timestamp;
use crate::engine::cluster::VantageStatus;
use crate::engine::{ClusterView, Snapshot};
use crate::format;
use crate::incident::public::{escape, incident_name, public_updates};
use crate::incident::{ComponentStatus, Incident, IncidentStatus, IncidentView};
use crate::rollup::{ServiceHistory, Uptime};
use crate::store::IncidentFilter;
use crate::topology::MaintenanceWindow;
use crate::validation::Issues;

/// `[page]`: what the public status page, its feed and the Statuspage API show. The
/// defaults are for an operator's customers: shares and regions, no counts, platforms,
/// causes or regulatory detail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    /// IANA time zone the page writes times in (`Europe/Paris`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The regions an incident touches.
    #[serde(default = "default_true")]
    pub show_regions: bool,
    /// Subscriber counts and user-minutes beside the shares.
    #[serde(default)]
    pub show_subscriber_counts: bool,
    /// The platforms an incident touches.
    #[serde(default)]
    pub show_platforms: bool,
    /// The suspected cause (a registered change) and how often the service failed lately.
    #[serde(default)]
    pub show_causes: bool,
    /// Regulatory reporting: rules met, review reasons, deadlines.
    #[serde(default)]
    pub show_reporting: bool,
    /// In a cluster: each vantage's status (an impaired one does not vote).
    #[serde(default)]
    pub show_vantages: bool,
}

impl Default for PageConfig {
    fn default() -> Self {
        Self {
            time_zone: default_time_zone(),
            show_regions: true,
            show_subscriber_counts: false,
            show_platforms: false,
            show_causes: false,
            show_reporting: false,
            show_vantages: false,
        }
    }
}

fn default_time_zone() -> String {
    "UTC".to_string()
}
fn default_true() -> bool {
    true
}

/// `[page]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSpec {
    pub time_zone: Tz,
    pub show_regions: bool,
    pub show_subscriber_counts: bool,
    pub show_platforms: bool,
    pub show_causes: bool,
    pub show_reporting: bool,
    pub show_vantages: bool,
}

impl Default for PageSpec {
    fn default() -> Self {
        PageConfig::default()
            .build("page", &mut Issues::default())
            .expect("the defaults are valid")
    }
}

impl PageConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<PageSpec> {
        let time_zone = match self.time_zone.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                issues.push(
                    format!("{path}.time_zone"),
                    format!(
                        "unknown time zone `{}` (an IANA name such as `Europe/Paris` or `UTC`)",
                        self.time_zone
                    ),
                );
                return None;
            }
        };
        Some(PageSpec {
            time_zone,
            show_regions: self.show_regions,
            show_subscriber_counts: self.show_subscriber_counts,
            show_platforms: self.show_platforms,
            show_causes: self.show_causes,
            show_reporting: self.show_reporting,
            show_vantages: self.show_vantages,
        })
    }
}

impl PageSpec {
    /// One readable format for every time the page shows: `1 Dec 2026, 14:05 CET`.
    pub fn time(&self, t: Timestamp) -> String {
        t.with_timezone(&self.time_zone)
            .format("%-d %b %Y, %H:%M %Z")
            .to_string()
    }

    /// A day as the uptime bar's cells name it: `1 Dec`.
    fn day(&self, date: chrono::NaiveDate) -> String {
        date.format("%-d %b").to_string()
    }
}

/// `investigating` → `Investigating`.
fn status_word(status: &str) -> String {
    let mut chars = status.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// How far back "past incidents" goes.
const PAST_DAYS: i64 = 14;

const STYLE: &str = r#"
:root{--ok:#1a7f37;--minor:#9a6700;--major:#c2410c;--critical:#b91c1c;--maint:#1d4ed8;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff}
*{box-sizing:border-box}body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
a{color:#0550ae}.muted{color:var(--muted)}
.banner{padding:1rem 1.25rem;border-radius:.5rem;font-weight:600;color:#fff;font-size:1.1rem}
.banner.none{background:var(--ok)}.banner.minor{background:var(--minor)}.banner.major{background:var(--major)}.banner.critical{background:var(--critical)}.banner.maintenance{background:var(--maint)}
.services{list-style:none;padding:0;margin:0;border:1px solid var(--line);border-radius:.5rem}
.services li{padding:.75rem 1rem;border-top:1px solid var(--line);display:flex;flex-wrap:wrap;gap:.25rem 1rem;justify-content:space-between}
.services li:first-child{border-top:0}.name{font-weight:600}
figure{margin:.25rem 0 0;flex-basis:100%}figure svg{width:100%;height:24px;display:block}.chart svg{height:40px}
figcaption{display:flex;justify-content:space-between;font-size:.8rem}
.status{font-weight:600}.operational{color:var(--ok)}.degraded_performance{color:var(--minor)}.partial_outage{color:var(--major)}.major_outage{color:var(--critical)}.under_maintenance{color:var(--maint)}
.incident{border:1px solid var(--line);border-left:.35rem solid var(--major);border-radius:.5rem;padding:.75rem 1rem;margin:.75rem 0}
.incident.critical{border-left-color:var(--critical)}.incident.minor{border-left-color:var(--minor)}.incident.resolved{border-left-color:var(--ok)}
.incident h3{margin:0 0 .25rem;font-size:1.05rem}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(11rem,1fr));gap:.5rem;margin:.5rem 0;padding:0;list-style:none}
.figures li{background:#f6f8fa;border-radius:.4rem;padding:.4rem .6rem}.figures b{display:block;font-size:1.05rem}
.timeline{list-style:none;padding:0;margin:.5rem 0 0}.timeline li{padding:.2rem 0}.timeline time{color:var(--muted);font-variant-numeric:tabular-nums;margin-right:.5rem}
footer{margin:2rem 0 1rem;color:var(--muted);font-size:.9rem}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117}.figures li{background:#151b23}a{color:#4493f8}}
"#;

/// The subscription form: a plain POST, no script.
fn subscribe_form(out: &mut String, services: &[crate::topology::Service]) {
    out.push_str(
        r#"<h2 id="subscribe">Get updates</h2><form method="post" action="/subscriptions">
<p><label>E-mail address <input type="email" name="email" required maxlength="254" autocomplete="email"></label></p>
<fieldset><legend>Services (none ticked: all)</legend>"#,
    );
    for s in services {
        let _ = write!(
            out,
            r#"<label><input type="checkbox" name="service" value="{}"> {}</label> "#,
            escape(&s.id),
            escape(&s.name)
        );
    }
    out.push_str(
        r#"</fieldset><p><button type="submit">Subscribe</button> <span class="muted">We send a confirmation link first; every mail has an unsubscribe link.</span></p></form>"#,
    );
}

pub(super) fn head(out: &mut String, title: &str, refresh: bool) {
    let refresh = if refresh {
        r#"<meta http-equiv="refresh" content="30">"#
    } else {
        ""
    };
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title}</title><link rel="alternate" type="application/atom+xml" title="Incident history" href="/history.atom">
<style>{STYLE}</style></head><body>"#,
        title = escape(title),
    );
}

fn status_label(status: ComponentStatus) -> (&'static str, &'static str) {
    match status {
        ComponentStatus::Operational => ("✓", "Operational"),
        ComponentStatus::DegradedPerformance => ("◐", "Degraded performance"),
        ComponentStatus::PartialOutage => ("▲", "Partial outage"),
        ComponentStatus::MajorOutage => ("✕", "Major outage"),
        ComponentStatus::UnderMaintenance => ("⚙", "Under maintenance"),
    }
}

fn impact_class(view: &IncidentView) -> &'static str {
    if view.status == IncidentStatus::Resolved {
        return "resolved";
    }
    match view.impact {
        crate::incident::Impact::Critical => "critical",
        crate::incident::Impact::Major => "major",
        _ => "minor",
    }
}

/// How long it has lasted: "resolved after 2 min", "ongoing for 25 min".
fn how_long(view: &IncidentView) -> String {
    let d = format::duration(Duration::from_secs(view.duration_seconds));
    match view.status {
        IncidentStatus::Resolved => format!("resolved after {d}"),
        IncidentStatus::Monitoring => format!("service restored after {d}"),
        _ => format!("ongoing for {d}"),
    }
}

/// One incident: its name, status and what customers need of its figures, and optionally
/// its updates.
fn incident_section(out: &mut String, view: &IncidentView, page: &PageSpec, updates: bool) {
    let status = match view.status {
        IncidentStatus::Investigating => "Investigating",
        IncidentStatus::Identified => "Identified",
        IncidentStatus::Monitoring => "Monitoring",
        IncidentStatus::Resolved => "Resolved",
    };
    let _ = write!(
        out,
        r#"<section class="incident {class}"><h3><a href="/incidents/{id}">{name}</a></h3>
<p><span class="status">{status}</span> · started {onset} · {how_long}</p><ul class="figures">"#,
        class = impact_class(view),
        id = escape(&view.id),
        name = escape(&incident_name(view)),
        onset = escape(&page.time(view.onset_at)),
        how_long = how_long(view),
    );
    for s in view.per_service.values() {
        let mut figure = format!("{} of subscribers at worst", format::percent(s.peak_share));
        if page.show_subscriber_counts {
            figure.push_str(&format!(" ({})", format::count(s.peak_affected)));
        }
        let _ = write!(
            out,
            "<li>{}<b>{}</b></li>",
            escape(&s.name),
            escape(&figure)
        );
    }
    if page.show_subscriber_counts {
        let _ = write!(
            out,
            "<li>User-minutes<b>{}</b></li>",
            format::count(view.user_minutes)
        );
    }
    if page.show_regions && !view.regions.is_empty() {
        let _ = write!(
            out,
            "<li>Regions<b>{}</b></li>",
            escape(&view.regions.join(", "))
        );
    }
    if page.show_platforms && !view.platforms.is_empty() {
        let _ = write!(
            out,
            "<li>Platforms<b>{}</b></li>",
            escape(&view.platforms.join(", "))
        );
    }
    out.push_str("</ul>");
    if updates {
        updates_list(out, view, page);
    }
    out.push_str("</section>");
}

/// The customer-facing updates, newest first.
fn updates_list(out: &mut String, view: &IncidentView, page: &PageSpec) {
    out.push_str(r#"<ol class="timeline" reversed>"#);
    for update in public_updates(view).iter().rev() {
        let _ = write!(
            out,
            r#"<li><time datetime="{}">{}</time><b>{}</b> — {}</li>"#,
            update.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            escape(&page.time(update.at)),
            status_word(update.status),
            escape(&update.text)
        );
    }
    out.push_str("</ol>");
}

/// Where probes run from and whether each vantage votes: the operator's view.
fn vantages(out: &mut String, cluster: &ClusterView) {
    out.push_str(r#"<h2>Vantages</h2><ul class="vantages">"#);
    for v in &cluster.vantages {
        let (symbol, label) = match v.status {
            VantageStatus::Ok => ("✓", "OK"),
            VantageStatus::Impaired => ("!", "Impaired: its own path fails, it does not vote"),
            VantageStatus::Silent => ("?", "Silent: no live member"),
        };
        let _ = write!(
            out,
            r#"<li><span class="name">{}</span><span class="status {}">{symbol} {label}</span><span class="muted">{} members, {} targets</span></li>"#,
            escape(&v.name),
            v.status.as_str(),
            v.members,
            v.targets,
        );
    }
    out.push_str("</ul>");
}

pub async fn index(State(state): State<AppState>) -> Response {
    let snap = state.snapshot.borrow().clone();
    let site = state.site.borrow().clone();
    let now = state.clock.now();
    let past = state
        .store
        .incidents(IncidentFilter {
            open: Some(false),
            service: None,
            limit: 50,
        })
        .await
        .unwrap_or_default();
    let windows = api::all_maintenances(&state).await.unwrap_or_default();
    let ids: Vec<String> = snap.services.iter().map(|s| s.id.clone()).collect();
    let histories = state
        .store
        .services_history(ids, now, snap.open_minute.clone())
        .await
        .unwrap_or_default();
    let uptimes = api::uptimes(&state).await.unwrap_or_default();
    // Thousands of services make megabytes of markup: the runtime threads start the probes.
    let render = move || render_index(&snap, &site, now, &past, &windows, &histories, &uptimes);
    match tokio::task::spawn_blocking(render).await {
        Ok(page) => Html(page).into_response(),
        Err(_) => ApiError::unavailable("shutting down").into_response(),
    }
}

/// The page, from what was read of the snapshot and the store.
fn render_index(
    snap: &Snapshot,
    site: &SiteSpec,
    now: Timestamp,
    past: &[Incident],
    windows: &[MaintenanceWindow],
    histories: &[ServiceHistory],
    uptimes: &HashMap<String, Uptime>,
) -> String {
    let (title, page) = (&site.server.page_title, &site.page);
    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, title, true);
    let worst = snap.services.iter().map(|s| s.status).max();
    let (class, banner) = match worst {
        Some(ComponentStatus::MajorOutage) => ("critical", "Major outage"),
        Some(ComponentStatus::PartialOutage) => ("major", "Partial outage"),
        Some(ComponentStatus::DegradedPerformance) => ("minor", "Degraded performance"),
        Some(ComponentStatus::UnderMaintenance) => ("maintenance", "Maintenance in progress"),
        _ => ("none", "All systems operational"),
    };
    let _ = write!(
        out,
        r#"<header><h1>{}</h1><p class="banner {class}" role="status">{banner}</p></header><main>"#,
        escape(title)
    );

    if !snap.open_incidents.is_empty() {
        out.push_str("<h2>Current incidents</h2>");
        for view in &snap.open_incidents {
            incident_section(&mut out, view, page, true);
        }
    }

    out.push_str(r#"<h2>Services</h2><ul class="services">"#);
    for (i, s) in snap.services.iter().enumerate() {
        let (symbol, label) = status_label(s.status);
        let degraded_share = if s.subscribers == 0 {
            0.0
        } else {
            s.degraded as f64 / s.subscribers as f64
        };
        let (share, count, what) = match s.status {
            ComponentStatus::PartialOutage | ComponentStatus::MajorOutage => {
                (s.share, s.affected, "affected")
            }
            ComponentStatus::DegradedPerformance => (degraded_share, s.degraded, "slowed down"),
            _ => (0.0, 0, ""),
        };
        let detail = if what.is_empty() {
            String::new()
        } else if page.show_subscriber_counts {
            format!(
                "{} of subscribers {what} ({})",
                format::percent(share),
                format::count(count)
            )
        } else {
            format!("{} of subscribers {what}", format::percent(share))
        };
        let _ = write!(
            out,
            r#"<li><span class="name">{name}</span><span class="status {class}">{symbol} {label}</span><span class="muted">{detail}</span>"#,
            name = escape(&s.name),
            class = s.status.as_str(),
        );
        if let Some(history) = histories.get(i) {
            uptime_bar(&mut out, &s.name, history, uptimes.get(&s.id), page, now);
            latency_chart(&mut out, &s.name, history);
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    if let Some(cluster) = snap.cluster.as_ref().filter(|_| page.show_vantages) {
        vantages(&mut out, cluster);
    }

    let upcoming: Vec<_> = windows.iter().filter(|w| w.ends_at > now).collect();
    if !upcoming.is_empty() {
        out.push_str("<h2>Maintenance</h2><ul>");
        for w in upcoming {
            let when = if w.starts_at <= now {
                "in progress"
            } else {
                "scheduled"
            };
            let names: Vec<&str> = w
                .services
                .iter()
                .map(|id| {
                    snap.services
                        .iter()
                        .find(|s| s.id == *id)
                        .map_or(id.as_str(), |s| s.name.as_str())
                })
                .collect();
            let _ = write!(
                out,
                "<li><b>{}</b> — {} ({when}: {} to {})</li>",
                escape(if w.summary.is_empty() {
                    "Planned maintenance"
                } else {
                    &w.summary
                }),
                escape(&names.join(", ")),
                escape(&page.time(w.starts_at)),
                escape(&page.time(w.ends_at)),
            );
        }
        out.push_str("</ul>");
    }

    let cutoff = now - chrono::Duration::days(PAST_DAYS);
    let recent: Vec<_> = past
        .iter()
        .filter(|i| i.resolved_at.is_some_and(|r| r >= cutoff))
        .collect();
    let _ = write!(out, "<h2>Past incidents ({PAST_DAYS} days)</h2>");
    if recent.is_empty() {
        out.push_str(r#"<p class="muted">No incidents.</p>"#);
    }
    for inc in recent {
        incident_section(&mut out, &inc.view(now), page, false);
    }
    if site.subscriptions.is_some() {
        subscribe_form(&mut out, &site.topology.services);
    }
    let _ = write!(
        out,
        r#"</main><footer>Updated {} · <a href="/history.atom">Atom feed</a> · <a href="/api/v2/summary.json">Statuspage API</a></footer></body></html>"#,
        escape(&page.time(snap.generated_at))
    );
    out
}

pub async fn incident(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Response {
    let now = state.clock.now();
    let live = state
        .snapshot
        .borrow()
        .open_incidents
        .iter()
        .find(|v| v.id == id)
        .cloned();
    let view = match live {
        Some(v) => v,
        None => match state.store.incident(id.clone()).await {
            Ok(Some(inc)) => inc.view(now),
            _ => {
                let mut out = String::new();
                head(&mut out, "Incident not found", false);
                let _ = write!(
                    out,
                    r#"<h1>No incident {}</h1><p><a href="/">Back to the status page</a></p></body></html>"#,
                    escape(&id)
                );
                return (StatusCode::NOT_FOUND, Html(out)).into_response();
            }
        },
    };
    let site = state.site.borrow().clone();
    let (title, page) = (&site.server.page_title, &site.page);
    let mut out = String::with_capacity(8 * 1024);
    head(
        &mut out,
        &format!("{} — {}", incident_name(&view), title),
        view.status != IncidentStatus::Resolved,
    );
    let _ = write!(
        out,
        r#"<p><a href="/">← {}</a></p><h1>{}</h1><main>"#,
        escape(title),
        escape(&incident_name(&view))
    );
    incident_section(&mut out, &view, page, false);
    out.push_str(r#"<h2>Details</h2><ul class="figures">"#);
    let _ = write!(
        out,
        "<li>Started<b>{}</b></li><li>Detected<b>{}</b></li>",
        escape(&page.time(view.onset_at)),
        escape(&page.time(view.detected_at)),
    );
    if let Some(end) = view.impact_end_at {
        let _ = write!(
            out,
            "<li>Service restored<b>{}</b></li>",
            escape(&page.time(end))
        );
    }
    if let Some(resolved) = view.resolved_at {
        let _ = write!(
            out,
            "<li>Resolved<b>{}</b></li>",
            escape(&page.time(resolved))
        );
    }
    if page.show_subscriber_counts {
        let _ = write!(
            out,
            "<li>Conservative user-minutes<b>{}</b></li>",
            format::count(view.conservative_user_minutes)
        );
    }
    if page.show_causes {
        if let Some(cause) = &view.suspected_cause {
            let confidence = match cause.confidence {
                crate::incident::cause::Confidence::High => "high",
                crate::incident::cause::Confidence::Low => "low",
            };
            let _ = write!(
                out,
                "<li>Suspected cause<b>change {} ({} before it started, {confidence} confidence)</b></li>",
                escape(&cause.change_id),
                format::duration(Duration::from_secs(cause.lag_seconds)),
            );
        }
        // The count includes this incident: the page says how many came before it.
        if let Some(r) = &view.recurrence {
            let _ = write!(
                out,
                "<li>Earlier incidents here in 30 days<b>{}{}</b></li>",
                r.count_30d.saturating_sub(1),
                if r.chronic { " (chronic)" } else { "" }
            );
        }
    }
    out.push_str("</ul>");
    if let Some(reporting) = view.reporting.as_ref().filter(|_| page.show_reporting) {
        out.push_str("<h2>Regulatory reporting</h2><ul>");
        for (rule, outcome) in reporting {
            let mut line = format!(
                "<li><b>{}</b>: {}",
                escape(rule),
                escape(&outcome.status.as_str().replace('_', " "))
            );
            if let Some(text) = &outcome.rule {
                line.push_str(&format!(" — {}", escape(text)));
            }
            if let Some(review) = &outcome.review {
                line.push_str(&format!(" (review: {})", escape(review)));
            }
            if let Some(by) = outcome.notify_by {
                line.push_str(&format!(" — notify by {}", escape(&page.time(by))));
            }
            line.push_str("</li>");
            out.push_str(&line);
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Updates</h2>");
    updates_list(&mut out, &view, page);
    out.push_str("</main><footer><a href=\"/\">Status page</a></footer></body></html>");
    Html(out).into_response()
}

/// One cell per day for 90 days, coloured by the day's worst status, each with a tooltip
/// (date, availability, incidents); the 90-day availability is written out, with the day
/// the data starts when that is less than 90 days ago.
fn uptime_bar(
    out: &mut String,
    name: &str,
    history: &ServiceHistory,
    uptime: Option<&Uptime>,
    page: &PageSpec,
    now: Timestamp,
) {
    let figure = match uptime.and_then(|u| u.availability.last_90d) {
        None => "no data yet".to_string(),
        Some(a) => {
            let since = uptime
                .and_then(|u| u.observed_since)
                .filter(|since| now - *since < chrono::Duration::days(89));
            match since {
                Some(since) => format!(
                    "{} available since {}",
                    format::availability(a),
                    page.day(since.with_timezone(&page.time_zone).date_naive())
                ),
                None => format!("{} available", format::availability(a)),
            }
        }
    };
    let _ = write!(
        out,
        r#"<figure class="bar"><svg viewBox="0 0 {w} 24" preserveAspectRatio="none" role="img" aria-label="{name}: 90 days, {figure}">"#,
        w = history.days.len() * 4,
        name = escape(name),
        figure = escape(&figure),
    );
    for (i, day) in history.days.iter().enumerate() {
        let colour = match day.worst_status {
            None => "#d1d9e0",
            Some(ComponentStatus::Operational) => "#1a7f37",
            Some(ComponentStatus::DegradedPerformance) => "#d4a72c",
            Some(ComponentStatus::PartialOutage) => "#e16f24",
            Some(ComponentStatus::MajorOutage) => "#b91c1c",
            Some(ComponentStatus::UnderMaintenance) => "#1d4ed8",
        };
        let mut tip = match (day.availability, day.worst_status) {
            (Some(a), _) => format!(
                "{}: {} available",
                page.day(day.date),
                format::availability(a)
            ),
            (None, Some(ComponentStatus::UnderMaintenance)) => {
                format!("{}: planned maintenance", page.day(day.date))
            }
            (None, _) => format!("{}: no data", page.day(day.date)),
        };
        if day.downtime_seconds >= 1.0 {
            tip.push_str(&format!(
                ", {} of outage",
                format::duration(Duration::from_secs_f64(day.downtime_seconds))
            ));
        }
        if !day.incidents.is_empty() {
            tip.push_str(&format!(", incidents {}", day.incidents.join(", ")));
        }
        let _ = write!(
            out,
            r#"<rect x="{x}" width="3" height="24" rx="1" fill="{colour}"><title>{tip}</title></rect>"#,
            x = i * 4,
            tip = escape(&tip),
        );
    }
    let _ = write!(
        out,
        r#"</svg><figcaption class="muted"><span>90 days ago</span><span>{}</span><span>today</span></figcaption></figure>"#,
        escape(&figure)
    );
}

/// The last 24 hours of response time: average and p95 per hour, as an inline SVG, each
/// hour with data a point (a line needs two, and a fresh install has one).
fn latency_chart(out: &mut String, name: &str, history: &ServiceHistory) {
    let points: Vec<(usize, f64, f64)> = history
        .latency
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.avg_seconds?, p.p95_seconds.or(p.avg_seconds)?)))
        .collect();
    let Some(last) = points.last() else {
        return;
    };
    let top = points
        .iter()
        .map(|p| p.2)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let hours = history.latency.len().max(2) - 1;
    let (h, x_step) = (40.0, 10);
    let y = |v: f64| h - 3.0 - v / top * (h - 6.0);
    let line = |pick: fn(&(usize, f64, f64)) -> f64| {
        points
            .iter()
            .map(|p| format!("{},{:.1}", p.0 * x_step, y(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut dots = String::new();
    for p in &points {
        let _ = write!(
            dots,
            r##"<circle cx="{}" cy="{:.1}" r="2" fill="#0550ae"/>"##,
            p.0 * x_step,
            y(p.1)
        );
    }
    let _ = write!(
        out,
        r##"<figure class="chart"><svg viewBox="-3 0 {vw} 40" preserveAspectRatio="none" role="img" aria-label="{name}: response time over 24 hours, last hour average {avg}, p95 {p95}"><polyline fill="none" stroke="#8c959f" stroke-width="1" points="{p95_line}"/><polyline fill="none" stroke="#0550ae" stroke-width="1.5" points="{avg_line}"/>{dots}</svg><figcaption class="muted">Response time, 24 h: average {avg} (blue), p95 {p95} (grey), scale 0–{max}</figcaption></figure>"##,
        vw = hours * x_step + 6,
        name = escape(name),
        avg = format::latency(last.1),
        p95 = format::latency(last.2),
        max = format::latency(top),
        p95_line = line(|p| p.2),
        avg_line = line(|p| p.1),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_the_page_time_zone_without_seconds() {
        let mut config = PageConfig {
            time_zone: "Europe/Paris".into(),
            ..PageConfig::default()
        };
        let page = config.build("page", &mut Issues::default()).unwrap();
        let at: Timestamp = "2026-12-01T13:05:42.190461124Z".parse().unwrap();
        assert_eq!(page.time(at), "1 Dec 2026, 14:05 CET");
        assert_eq!(PageSpec::default().time(at), "1 Dec 2026, 13:05 UTC");
        config.time_zone = "Mars/Olympus".into();
        let mut issues = Issues::default();
        assert!(config.build("page", &mut issues).is_none());
        assert_eq!(
            issues.to_string(),
            "page.time_zone: unknown time zone `Mars/Olympus` (an IANA name such as \
             `Europe/Paris` or `UTC`)"
        );
    }
}
