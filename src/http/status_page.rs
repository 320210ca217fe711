//! The status page people look at: `GET /` and `GET /incidents/{id}`. Server-rendered,
//! no JavaScript, no external assets (inline CSS and SVG), auto-refreshing, readable on a
//! phone; status is never told by colour alone (text labels and symbols too). Everything
//! that comes from config or the API is escaped.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::statuspage_api::incident_name;
use super::{AppState, api};
use crate::clock::Timestamp;
use crate::incident::{ComponentStatus, IncidentStatus, IncidentView};
use crate::rollup::ServiceHistory;
use crate::store::IncidentFilter;

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

fn head(out: &mut String, title: &str, refresh: bool) {
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

fn time(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn duration(seconds: u64) -> String {
    let (h, m) = (seconds / 3600, (seconds % 3600) / 60);
    match (h, m) {
        (0, 0) => format!("{seconds} s"),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// 900000 → "900 000".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
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

/// One incident: its name, status and figures, and optionally its timeline.
fn incident_section(out: &mut String, view: &IncidentView, timeline: bool) {
    let status = serde_json::to_value(view.status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let scope = serde_json::to_value(view.scope)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let share = view
        .per_service
        .values()
        .map(|s| s.peak_share)
        .fold(0.0, f64::max);
    let _ = write!(
        out,
        r#"<section class="incident {class}"><h3><a href="/incidents/{id}">{name}</a></h3>
<p><span class="status">{status}</span> · {severity} · {scope} · since {onset}</p>
<ul class="figures"><li>Subscribers affected at peak<b>{peak} ({share:.1}%)</b></li>
<li>Duration<b>{duration}</b></li><li>User-minutes<b>{minutes}</b></li>"#,
        class = impact_class(view),
        id = escape(&view.id),
        name = escape(&incident_name(view)),
        status = escape(&status),
        severity = view.severity.as_str(),
        scope = escape(&scope),
        onset = time(view.onset_at),
        peak = grouped(view.peak_affected),
        share = share * 100.0,
        duration = duration(view.duration_seconds),
        minutes = grouped(view.user_minutes),
    );
    if !view.regions.is_empty() {
        let _ = write!(
            out,
            "<li>Regions<b>{}</b></li>",
            escape(&view.regions.join(", "))
        );
    }
    if !view.platforms.is_empty() {
        let _ = write!(
            out,
            "<li>Platforms<b>{}</b></li>",
            escape(&view.platforms.join(", "))
        );
    }
    out.push_str("</ul>");
    if timeline {
        out.push_str(r#"<ol class="timeline" reversed>"#);
        for entry in view.timeline.iter().rev() {
            let _ = write!(
                out,
                r#"<li><time datetime="{}">{}</time>{}</li>"#,
                entry.at.to_rfc3339(),
                entry.at.format("%Y-%m-%d %H:%M"),
                escape(&entry.message)
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>");
}

pub async fn index(State(state): State<AppState>) -> Response {
    let snap = state.snapshot.borrow().clone();
    let title = state.site.borrow().server.page_title.clone();
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

    let mut out = String::with_capacity(16 * 1024);
    head(&mut out, &title, true);
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
        escape(&title)
    );

    if !snap.open_incidents.is_empty() {
        out.push_str("<h2>Current incidents</h2>");
        for view in &snap.open_incidents {
            incident_section(&mut out, view, true);
        }
    }

    let ids: Vec<String> = snap.services.iter().map(|s| s.id.clone()).collect();
    let histories = state
        .store
        .services_history(ids, now)
        .await
        .unwrap_or_default();
    let uptimes = api::uptimes(&state).await.unwrap_or_default();
    out.push_str(r#"<h2>Services</h2><ul class="services">"#);
    for (i, s) in snap.services.iter().enumerate() {
        let (symbol, label) = status_label(s.status);
        let detail = match s.status {
            ComponentStatus::PartialOutage | ComponentStatus::MajorOutage => format!(
                "{} subscribers affected ({:.1}%)",
                grouped(s.affected),
                s.share * 100.0
            ),
            ComponentStatus::DegradedPerformance => {
                format!("{} subscribers degraded", grouped(s.degraded))
            }
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"<li><span class="name">{name}</span><span class="status {class}">{symbol} {label}</span><span class="muted">{detail}</span>"#,
            name = escape(&s.name),
            class = s.status.as_str(),
        );
        if let Some(history) = histories.get(i) {
            let uptime = uptimes.get(&s.id).and_then(|u| u.last_90d);
            uptime_bar(&mut out, &s.name, history, uptime);
            latency_chart(&mut out, &s.name, history);
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");

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
                time(w.starts_at),
                time(w.ends_at),
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
        incident_section(&mut out, &inc.view(now), false);
    }
    let _ = write!(
        out,
        r#"</main><footer>Updated {} · <a href="/history.atom">Atom feed</a> · <a href="/api/v2/summary.json">Statuspage API</a> · <a href="/api/v1/status">JSON</a></footer></body></html>"#,
        time(snap.generated_at)
    );
    Html(out).into_response()
}

pub async fn incident(State(state): State<AppState>, Path(id): Path<String>) -> Response {
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
    let title = state.site.borrow().server.page_title.clone();
    let mut out = String::with_capacity(8 * 1024);
    head(
        &mut out,
        &format!("{} — {}", view.id, title),
        view.status != IncidentStatus::Resolved,
    );
    let _ = write!(
        out,
        r#"<p><a href="/">← {}</a></p><h1>{}: {}</h1><main>"#,
        escape(&title),
        escape(&view.id),
        escape(&incident_name(&view))
    );
    incident_section(&mut out, &view, false);
    out.push_str(r#"<h2>Details</h2><ul class="figures">"#);
    let _ = write!(
        out,
        "<li>Detected<b>{}</b></li><li>Time to detect<b>{}</b></li>",
        time(view.detected_at),
        duration(view.time_to_detect_seconds)
    );
    if let Some(end) = view.impact_end_at {
        let _ = write!(out, "<li>Impact ended<b>{}</b></li>", time(end));
    }
    if let Some(resolved) = view.resolved_at {
        let _ = write!(out, "<li>Resolved<b>{}</b></li>", time(resolved));
    }
    let _ = write!(
        out,
        "<li>Conservative user-minutes<b>{}</b></li>",
        grouped(view.conservative_user_minutes)
    );
    if let Some(cause) = &view.suspected_cause {
        let _ = write!(
            out,
            "<li>Suspected cause<b>{} ({} before onset, {} confidence)</b></li>",
            escape(&cause.change_id),
            duration(cause.lag_seconds),
            serde_json::to_value(cause.confidence)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        );
    }
    if let Some(r) = &view.recurrence {
        let _ = write!(
            out,
            "<li>Incidents here in 30 days<b>{}{}</b></li>",
            r.count_30d,
            if r.chronic { " (chronic)" } else { "" }
        );
    }
    out.push_str("</ul><h2>Services</h2><ul class=\"services\">");
    for s in view.per_service.values() {
        let (symbol, label) = status_label(s.component_status);
        let _ = write!(
            out,
            r#"<li><span class="name">{name}</span><span class="status {class}">{symbol} {label}</span><span class="muted">peak {peak} ({share:.2}%), {minutes} user-minutes</span></li>"#,
            name = escape(&s.name),
            class = s.component_status.as_str(),
            peak = grouped(s.peak_affected),
            share = s.peak_share * 100.0,
            minutes = grouped(s.user_minutes),
        );
    }
    out.push_str("</ul>");
    if let Some(reporting) = serde_json::to_value(&view.reporting)
        .ok()
        .and_then(|v| v.as_object().cloned())
    {
        out.push_str("<h2>Regulatory reporting</h2><ul>");
        for (rule, outcome) in reporting {
            let status = outcome["status"].as_str().unwrap_or("not_met");
            let mut line = format!(
                "<li><b>{}</b>: {}",
                escape(&rule),
                escape(&status.replace('_', " "))
            );
            if let Some(text) = outcome["rule"].as_str() {
                line.push_str(&format!(" — {}", escape(text)));
            }
            if let Some(by) = outcome["notify_by"].as_str() {
                line.push_str(&format!(" — notify by {}", escape(by)));
            }
            line.push_str("</li>");
            out.push_str(&line);
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Timeline</h2><ol class=\"timeline\" reversed>");
    for entry in view.timeline.iter().rev() {
        let _ = write!(
            out,
            r#"<li><time datetime="{}">{}</time>{}</li>"#,
            entry.at.to_rfc3339(),
            entry.at.format("%Y-%m-%d %H:%M:%S"),
            escape(&entry.message)
        );
    }
    out.push_str("</ol></main><footer><a href=\"/\">Status page</a></footer></body></html>");
    Html(out).into_response()
}

/// One cell per day for 90 days, coloured by the day's worst status, each with a tooltip
/// (date, uptime, incidents); the 90-day figure is also written out.
fn uptime_bar(out: &mut String, name: &str, history: &ServiceHistory, uptime: Option<f64>) {
    let figure = uptime.map_or_else(
        || "no data".to_string(),
        |u| format!("{:.2}% uptime", u * 100.0),
    );
    let _ = write!(
        out,
        r#"<figure class="bar"><svg viewBox="0 0 {w} 24" preserveAspectRatio="none" role="img" aria-label="{name}: 90-day uptime, {figure}">"#,
        w = history.days.len() * 4,
        name = escape(name),
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
        let mut tip = match day.uptime {
            Some(u) => format!("{}: {:.2}% uptime", day.date, u * 100.0),
            None => format!("{}: no data", day.date),
        };
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
        r#"</svg><figcaption class="muted"><span>90 days ago</span><span>{figure}</span><span>today</span></figcaption></figure>"#
    );
}

/// The last 24 hours of response time: average and p95 per hour, as an inline SVG.
fn latency_chart(out: &mut String, name: &str, history: &ServiceHistory) {
    let points: Vec<(usize, f64, f64)> = history
        .latency
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.avg_seconds?, p.p95_seconds.or(p.avg_seconds)?)))
        .collect();
    if points.is_empty() {
        return;
    }
    let top = points
        .iter()
        .map(|p| p.2)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let (w, h) = (history.latency.len().max(2) - 1, 40.0);
    let line = |pick: fn(&(usize, f64, f64)) -> f64| {
        points
            .iter()
            .map(|p| format!("{},{:.1}", p.0 * 10, h - pick(p) / top * (h - 2.0)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let last = points.last().expect("not empty");
    let _ = write!(
        out,
        r##"<figure class="chart"><svg viewBox="0 0 {vw} 40" preserveAspectRatio="none" role="img" aria-label="{name}: response time over 24 hours, last hour average {avg} ms, p95 {p95} ms"><polyline fill="none" stroke="#8c959f" stroke-width="1" points="{p95_line}"/><polyline fill="none" stroke="#0550ae" stroke-width="1.5" points="{avg_line}"/></svg><figcaption class="muted">Response time, 24 h: average {avg} ms (blue), p95 {p95} ms (grey), scale 0–{max} ms</figcaption></figure>"##,
        vw = w * 10,
        name = escape(name),
        avg = (last.1 * 1000.0).round(),
        p95 = (last.2 * 1000.0).round(),
        max = (top * 1000.0).round(),
        p95_line = line(|p| p.2),
        avg_line = line(|p| p.1),
    );
}

/// HTML (and XML) escaping for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(grouped(900_000), "900\u{202f}000");
        assert_eq!(grouped(216_000_000), "216\u{202f}000\u{202f}000");
        assert_eq!(grouped(12), "12");
        assert_eq!(duration(14_400), "4 h");
        assert_eq!(duration(5_400), "1 h 30 min");
        assert_eq!(duration(30), "30 s");
    }
}
