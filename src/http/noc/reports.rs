//! What goes to regulators and into the post-mortem: a notification draft per met regime
//! (`/noc/incidents/{id}/notifications/{regime}.txt` or `.json`), with the fields the
//! regulation asks for filled from the incident's figures, and a printable post-mortem page
//! (`/noc/incidents/{id}/postmortem`) with the timeline, the figures and a graph of the
//! affected subscribers over time.
//!
//! A draft is a starting point a person checks and sends: tocsin files nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppState, Found, auth, cause_verdict, find_incident, page, timeline, utc, word};
use crate::clock::Timestamp;
use crate::format;
use crate::http::extract::PathParams;
use crate::incident::cause::Confidence;
use crate::incident::public::{escape, incident_name};
use crate::incident::reporting::{EU_ENISA, FCC_NORS, OFCOM};
use crate::incident::{Health, Incident, IncidentView, RuleOutcome, RuleStatus};

/// A regulator notification draft: the figures every regime asks for, under the names of
/// this one's form in the text rendering.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    pub regime: String,
    /// The regime's own name for the filing.
    pub filing: &'static str,
    pub incident_id: String,
    /// `met` or `met_needs_review`.
    pub status: RuleStatus,
    pub rule: Option<String>,
    pub review: Option<String>,
    pub met_at: Option<Timestamp>,
    pub notification_due: Option<Timestamp>,
    pub initial_report_due: Option<Timestamp>,
    pub final_report_due: Option<Timestamp>,
    pub onset_at: Timestamp,
    pub detected_at: Timestamp,
    pub impact_end_at: Option<Timestamp>,
    pub duration_seconds: u64,
    pub description: String,
    pub services_affected: Vec<AffectedService>,
    /// Regions touched and the scope word (`distributed`, `national` …).
    pub geographic_area: GeographicArea,
    pub peak_affected: u64,
    /// ∫ affected dt.
    pub user_minutes: u64,
    /// Peak affected × duration: the FCC's "potentially affected" user-minutes.
    pub conservative_user_minutes: u64,
    pub user_hours: u64,
    pub cause_category: String,
    /// ofcom: whether the critical level was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AffectedService {
    pub id: String,
    pub name: String,
    pub peak_affected: u64,
    pub peak_share: f64,
    pub user_minutes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeographicArea {
    pub regions: Vec<String>,
    pub scope: String,
}

/// The cause category the forms ask for: known when an operator confirmed the suspected
/// change, otherwise under investigation (with the suspect named).
fn cause_category(view: &IncidentView, change_summary: Option<&str>) -> String {
    let Some(cause) = &view.suspected_cause else {
        return "Undetermined (under investigation)".to_string();
    };
    let about = change_summary
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match cause_verdict(view).map(|(word, _)| word) {
        Some("confirmed") => format!(
            "Procedural / software change: change {}{about}, confirmed",
            cause.change_id
        ),
        Some(_) => "Undetermined (the suspected change was ruled out)".to_string(),
        None => format!(
            "Undetermined (under investigation); suspected: change {}{about}, {} before onset, {} confidence",
            cause.change_id,
            format::duration(Duration::from_secs(cause.lag_seconds)),
            match cause.confidence {
                Confidence::High => "high",
                Confidence::Low => "low",
            }
        ),
    }
}

/// The draft of `regime` for `view`, or `None` when the regime is not met (nothing to
/// notify).
pub fn draft(view: &IncidentView, regime: &str, change_summary: Option<&str>) -> Option<Draft> {
    let outcome: &RuleOutcome = view.reporting.as_ref()?.get(regime)?;
    if outcome.status == RuleStatus::NotMet {
        return None;
    }
    let filing = match regime {
        FCC_NORS => "FCC NORS notification (47 CFR Part 4)",
        EU_ENISA => "NIS2 / ENISA incident notification",
        OFCOM => "Ofcom incident report",
        _ => "Incident notification",
    };
    let services: Vec<AffectedService> = view
        .per_service
        .iter()
        .map(|(id, s)| AffectedService {
            id: id.clone(),
            name: s.name.clone(),
            peak_affected: s.peak_affected,
            peak_share: s.peak_share,
            user_minutes: s.user_minutes,
        })
        .collect();
    let description = format!(
        "{}: {} subscribers affected at peak ({}), {} regions ({}), for {}{}.",
        incident_name(view),
        view.peak_affected,
        services
            .iter()
            .map(|s| format!("{} of {}", format::percent(s.peak_share), s.name))
            .collect::<Vec<_>>()
            .join(", "),
        view.regions.len(),
        word(&view.scope),
        format::duration(Duration::from_secs(view.duration_seconds)),
        if view.impact_end_at.is_none() {
            " so far (ongoing)"
        } else {
            ""
        },
    );
    Some(Draft {
        regime: regime.to_string(),
        filing,
        incident_id: view.id.clone(),
        status: outcome.status,
        rule: outcome.rule.clone(),
        review: outcome.review.clone(),
        met_at: outcome.met_at,
        notification_due: outcome.notify_by,
        initial_report_due: outcome.initial_report_by,
        final_report_due: outcome.final_report_by,
        onset_at: view.onset_at,
        detected_at: view.detected_at,
        impact_end_at: view.impact_end_at,
        duration_seconds: view.duration_seconds,
        description,
        services_affected: services,
        geographic_area: GeographicArea {
            regions: view.regions.clone(),
            scope: word(&view.scope),
        },
        peak_affected: view.peak_affected,
        user_minutes: view.user_minutes,
        conservative_user_minutes: view.conservative_user_minutes,
        user_hours: view.user_minutes / 60,
        cause_category: cause_category(view, change_summary),
        critical: outcome.critical,
    })
}

impl Draft {
    /// The draft as text, its fields named as the regime's form names them.
    pub fn text(&self) -> String {
        let when = |t: Option<Timestamp>| t.map(utc).unwrap_or_else(|| "—".to_string());
        let services = self
            .services_affected
            .iter()
            .map(|s| {
                format!(
                    "{} ({} subscribers at peak, {})",
                    s.name,
                    s.peak_affected,
                    format::percent(s.peak_share)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let area = format!(
            "{} ({})",
            if self.geographic_area.regions.is_empty() {
                "not known".to_string()
            } else {
                self.geographic_area.regions.join(", ")
            },
            self.geographic_area.scope
        );
        let mut rows: Vec<(&str, String)> = vec![
            ("Incident", self.incident_id.clone()),
            (
                "Status",
                match self.status {
                    RuleStatus::MetNeedsReview => format!(
                        "threshold met, needs review: {}",
                        self.review.as_deref().unwrap_or("")
                    ),
                    _ => "threshold met".to_string(),
                },
            ),
            ("Rule", self.rule.clone().unwrap_or_default()),
            ("Threshold met at", when(self.met_at)),
            ("Notification due", when(self.notification_due)),
        ];
        if self.initial_report_due.is_some() {
            rows.push(("Initial report due", when(self.initial_report_due)));
        }
        if self.final_report_due.is_some() {
            rows.push(("Final report due", when(self.final_report_due)));
        }
        let duration = format::duration(Duration::from_secs(self.duration_seconds));
        match self.regime.as_str() {
            FCC_NORS => rows.extend([
                ("Date and time of onset", utc(self.onset_at)),
                ("Date and time discovered", utc(self.detected_at)),
                ("Outage restored", when(self.impact_end_at)),
                ("Duration", duration),
                ("Brief description of the outage", self.description.clone()),
                ("Services affected", services),
                ("Geographic area affected", area),
                (
                    "Number of users potentially affected",
                    self.peak_affected.to_string(),
                ),
                (
                    "User minutes (potentially affected × duration)",
                    self.conservative_user_minutes.to_string(),
                ),
                ("User minutes (measured)", self.user_minutes.to_string()),
                ("Cause category", self.cause_category.clone()),
            ]),
            EU_ENISA => rows.extend([
                ("Start of the incident", utc(self.onset_at)),
                ("Detected", utc(self.detected_at)),
                ("End of the incident", when(self.impact_end_at)),
                ("Duration", duration),
                ("Description", self.description.clone()),
                ("Services affected", services),
                ("Geographic spread", area),
                ("Users affected", self.peak_affected.to_string()),
                ("User-hours lost", self.user_hours.to_string()),
                ("Root cause category", self.cause_category.clone()),
            ]),
            OFCOM => rows.extend([
                ("Incident start", utc(self.onset_at)),
                ("Incident end", when(self.impact_end_at)),
                ("Duration", duration),
                ("Summary", self.description.clone()),
                ("Services affected", services),
                ("Locations", area),
                ("End customers affected", self.peak_affected.to_string()),
                ("User hours lost", self.user_hours.to_string()),
                (
                    "Critical",
                    if self.critical == Some(true) {
                        "yes (3 000 000 user hours reached)".to_string()
                    } else {
                        "no".to_string()
                    },
                ),
                ("Root cause", self.cause_category.clone()),
            ]),
            _ => rows.extend([
                ("Onset", utc(self.onset_at)),
                ("End", when(self.impact_end_at)),
                ("Duration", duration),
                ("Description", self.description.clone()),
                ("Services affected", services),
                ("Geographic area", area),
                (
                    "Subscribers affected at peak",
                    self.peak_affected.to_string(),
                ),
                ("User minutes", self.user_minutes.to_string()),
                ("Cause", self.cause_category.clone()),
            ]),
        }
        let mut text = format!(
            "DRAFT — {} — check every field before filing\n\n",
            self.filing
        );
        for (label, value) in rows {
            let _ = writeln!(text, "{label}: {value}");
        }
        text
    }
}

/// `GET /noc/incidents/{id}/notifications/{regime}.txt` (or `.json`).
pub async fn notification(
    State(state): State<AppState>,
    PathParams((id, file)): PathParams<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(_session) = auth::current(&state, &headers).await else {
        return auth::no_session(true);
    };
    let (regime, json) = match (file.strip_suffix(".txt"), file.strip_suffix(".json")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "a draft is REGIME.txt or REGIME.json\n",
            )
                .into_response();
        }
    };
    let Some(Found { view, .. }) = find_incident(&state, &id).await else {
        return (StatusCode::NOT_FOUND, "no such incident\n").into_response();
    };
    let summary = match &view.suspected_cause {
        Some(c) => state
            .store
            .change(c.change_id.clone())
            .await
            .ok()
            .flatten()
            .map(|c| c.summary),
        None => None,
    };
    let Some(draft) = draft(&view, regime, summary.as_deref()) else {
        return (
            StatusCode::NOT_FOUND,
            "that regime is not evaluated or not met for this incident: nothing to notify\n",
        )
            .into_response();
    };
    let mut response = if json {
        axum::Json(&draft).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            draft.text(),
        )
            .into_response()
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Subscribers of down groups over time, per service: `(at, affected)` steps from the
/// incident's group periods, measured to `end`.
pub fn affected_over_time(
    inc: &Incident,
    end: Timestamp,
) -> BTreeMap<String, Vec<(Timestamp, u64)>> {
    let mut out = BTreeMap::new();
    for service in inc.services.keys() {
        let mut edges: Vec<(Timestamp, i128)> = Vec::new();
        for g in inc.groups.iter().filter(|g| &g.service == service) {
            for p in g.periods.iter().filter(|p| p.health == Health::Down) {
                let stop = p.end.unwrap_or(end).min(end);
                if stop > p.start {
                    edges.push((p.start, i128::from(g.subscribers)));
                    edges.push((stop, -i128::from(g.subscribers)));
                }
            }
        }
        edges.sort_by_key(|e| e.0);
        let mut level = 0i128;
        let mut steps: Vec<(Timestamp, u64)> = Vec::new();
        for (at, delta) in edges {
            level += delta;
            match steps.last_mut() {
                Some(last) if last.0 == at => last.1 = level.max(0) as u64,
                _ => steps.push((at, level.max(0) as u64)),
            }
        }
        out.insert(service.clone(), steps);
    }
    out
}

/// The step graph as inline SVG: one line per service, a time axis from onset to `end`,
/// the peak written out (the figure is in the text as well, for print and screen readers).
fn graph(
    series: &BTreeMap<String, Vec<(Timestamp, u64)>>,
    names: &BTreeMap<String, String>,
    start: Timestamp,
    end: Timestamp,
) -> String {
    let (w, h, pad) = (800.0, 220.0, 40.0);
    let span = (end - start).num_seconds().max(1) as f64;
    let top = series
        .values()
        .flat_map(|s| s.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = |t: Timestamp| pad + (t - start).num_seconds() as f64 / span * (w - 2.0 * pad);
    let y = |v: u64| h - pad - v as f64 / top * (h - 2.0 * pad);
    let dashes = ["", "6 3", "2 2", "8 2 2 2"];
    let mut svg = format!(
        r##"<figure><svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="Affected subscribers over time, peak {peak}" xmlns="http://www.w3.org/2000/svg">
<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#59636e"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{base}" stroke="#59636e"/>
<text x="{pad}" y="{label_y}" font-size="11">{from}</text><text x="{right}" y="{label_y}" font-size="11" text-anchor="end">{to}</text>
<text x="{pad_in}" y="{pad}" font-size="11">{peak}</text>"##,
        peak = format::count(top as u64),
        base = h - pad,
        right = w - pad,
        label_y = h - pad + 15.0,
        pad_in = pad + 4.0,
        from = utc(start),
        to = utc(end),
    );
    let mut legend = Vec::new();
    for (i, (service, steps)) in series.iter().enumerate() {
        let mut points = Vec::new();
        let mut level = 0;
        points.push(format!("{:.1},{:.1}", x(start), y(0)));
        for &(at, value) in steps {
            points.push(format!("{:.1},{:.1}", x(at), y(level)));
            points.push(format!("{:.1},{:.1}", x(at), y(value)));
            level = value;
        }
        points.push(format!("{:.1},{:.1}", x(end), y(level)));
        let dash = dashes[i % dashes.len()];
        let _ = write!(
            svg,
            r##"<polyline fill="none" stroke="#0550ae" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"##,
            points.join(" ")
        );
        let name = names.get(service).map_or(service.as_str(), String::as_str);
        legend.push(format!(
            "{} ({})",
            escape(name),
            if dash.is_empty() { "solid" } else { "dashed" }
        ));
    }
    let _ = write!(
        svg,
        "</svg><figcaption>Subscribers of down groups over time: {}. Scale 0–{}.</figcaption></figure>",
        legend.join(", "),
        format::count(top as u64)
    );
    svg
}

/// `GET /noc/incidents/{id}/postmortem`: figures, reporting, the graph and the timeline,
/// laid out to print (the browser's "Save as PDF").
pub async fn postmortem(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = auth::current(&state, &headers).await else {
        return auth::no_session(true);
    };
    let Some(Found { view, stored }) = find_incident(&state, &id).await else {
        return (StatusCode::NOT_FOUND, "no such incident\n").into_response();
    };
    let now = state.clock.now();
    let end = view.impact_end_at.unwrap_or(now);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<p class="noprint"><a href="/noc/incidents/{id}">← {id}</a></p><h1>Post-mortem: {id} — {name}</h1><ul class="figures">"#,
        id = escape(&view.id),
        name = escape(&incident_name(&view)),
    );
    let figures = [
        ("Onset", utc(view.onset_at)),
        ("Detected", utc(view.detected_at)),
        (
            "Time to detect",
            format::duration(Duration::from_secs(view.time_to_detect_seconds)),
        ),
        (
            "Impact ended",
            view.impact_end_at
                .map(utc)
                .unwrap_or_else(|| "ongoing".into()),
        ),
        (
            "Duration",
            format::duration(Duration::from_secs(view.duration_seconds)),
        ),
        ("Peak affected", format::count(view.peak_affected)),
        ("User-minutes", format::count(view.user_minutes)),
        (
            "Conservative user-minutes",
            format::count(view.conservative_user_minutes),
        ),
        (
            "Severity / impact",
            format!("{} / {}", view.severity.as_str(), word(&view.impact)),
        ),
        ("Scope", word(&view.scope)),
        ("Regions", view.regions.join(", ")),
        ("Platforms", view.platforms.join(", ")),
    ];
    for (label, value) in figures {
        let _ = write!(out, "<li>{label}<b>{}</b></li>", escape(&value));
    }
    out.push_str("</ul>");
    if let Some(cause) = &view.suspected_cause {
        let verdict = cause_verdict(&view).map_or("not yet judged", |(w, _)| w);
        let _ = write!(
            out,
            "<p>Suspected cause: change {} ({} before onset), {verdict}.</p>",
            escape(&cause.change_id),
            format::duration(Duration::from_secs(cause.lag_seconds)),
        );
    }
    if let Some(reporting) = &view.reporting {
        out.push_str("<h2>Regulatory reporting</h2><ul>");
        for (regime, o) in reporting {
            let due = o
                .notify_by
                .map(|t| format!(", notification due {}", utc(t)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li><b>{}</b>: {}{}</li>",
                escape(regime),
                o.status.as_str(),
                escape(&due)
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("<h2>Affected subscribers over time</h2>");
    match &stored {
        Some(inc) => {
            let names = view
                .per_service
                .iter()
                .map(|(id, s)| (id.clone(), s.name.clone()))
                .collect();
            out.push_str(&graph(
                &affected_over_time(inc, end),
                &names,
                view.onset_at,
                end.max(view.onset_at + chrono::TimeDelta::seconds(1)),
            ));
        }
        None => out.push_str(r#"<p class="muted">Not stored yet: reload in a moment.</p>"#),
    }
    timeline(&mut out, &view);
    page(
        &state,
        StatusCode::OK,
        &format!("Post-mortem {}", view.id),
        Some(&session),
        &out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, ConfigSource};
    use crate::incident::reporting::{
        ENISA_FINAL_REPORT_WITHIN, ENISA_INITIAL_REPORT_WITHIN, ENISA_NOTIFY_WITHIN,
        FCC_FINAL_REPORT_WITHIN, FCC_INITIAL_REPORT_WITHIN, FCC_MIN_DURATION, FCC_NOTIFY_WITHIN,
    };

    /// The seed-like voicemail outage, replayed: platform vm-a (900 000 of 30 000 000
    /// subscribers) down in all four regions for about 4 hours.
    fn seed_outage() -> IncidentView {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/replay");
        let settings =
            config::load(&ConfigSource::File(dir.join("platform-every-region.toml"))).unwrap();
        let input = std::fs::File::open(dir.join("platform-every-region.jsonl")).unwrap();
        let mut output = Vec::new();
        crate::replay::run(settings, std::io::BufReader::new(input), &mut output).unwrap();
        let last = output
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(last).unwrap();
        serde_json::from_value(summary["incidents"][0].clone()).unwrap()
    }

    fn at(t: Timestamp, d: Duration) -> Timestamp {
        t + chrono::Duration::from_std(d).unwrap()
    }

    #[test]
    fn the_fcc_draft_of_the_seed_outage_carries_its_figures_and_deadlines() {
        let view = seed_outage();
        let draft = draft(&view, FCC_NORS, Some("messaging platform update")).unwrap();
        let subscribers = 30_000_000u64;
        let peak = 4 * 225_000;
        assert_eq!(draft.peak_affected, peak);
        assert_eq!(draft.services_affected.len(), 1);
        let voicemail = &draft.services_affected[0];
        assert_eq!(
            (voicemail.id.as_str(), voicemail.name.as_str()),
            ("voicemail", "Voicemail")
        );
        assert!((voicemail.peak_share - peak as f64 / subscribers as f64).abs() < 1e-9);
        assert_eq!(
            draft.geographic_area.regions,
            ["east", "north", "south", "west"]
        );
        assert_eq!(draft.geographic_area.scope, "distributed");
        // About 4 hours at 900 000: the measured user-minutes are the integral, the
        // conservative ones peak × duration, both as the incident has them.
        let duration = draft.duration_seconds;
        assert!(
            (4 * 3600 - 120..=4 * 3600 + 120).contains(&duration),
            "{duration}"
        );
        assert_eq!(draft.user_minutes, view.user_minutes);
        let measured = draft.user_minutes as f64;
        assert!((measured - peak as f64 * duration as f64 / 60.0).abs() / measured < 0.01);
        assert_eq!(
            draft.conservative_user_minutes,
            (peak as f64 * duration as f64 / 60.0).round() as u64
        );
        // Met 30 minutes after the onset (900 000 user-minutes come after one minute), for
        // review (voicemail is a feature service); the deadlines follow from it.
        assert_eq!(draft.status, RuleStatus::MetNeedsReview);
        let met = draft.met_at.unwrap();
        assert_eq!(met, at(view.onset_at, FCC_MIN_DURATION));
        assert_eq!(draft.notification_due, Some(at(met, FCC_NOTIFY_WITHIN)));
        assert_eq!(
            draft.initial_report_due,
            Some(at(met, FCC_INITIAL_REPORT_WITHIN))
        );
        assert_eq!(
            draft.final_report_due,
            Some(at(met, FCC_FINAL_REPORT_WITHIN))
        );
        assert!(
            draft
                .cause_category
                .contains("suspected: change chg-42 (messaging platform update)")
        );
        let text = draft.text();
        for line in [
            format!("Date and time of onset: {}", utc(view.onset_at)),
            format!("Notification due: {}", utc(at(met, FCC_NOTIFY_WITHIN))),
            "Geographic area affected: east, north, south, west (distributed)".to_string(),
            format!("Number of users potentially affected: {peak}"),
            format!(
                "User minutes (potentially affected × duration): {}",
                draft.conservative_user_minutes
            ),
            "Services affected: Voicemail (900000 subscribers at peak, 3.0%)".to_string(),
        ] {
            assert!(text.contains(&line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_enisa_draft_has_its_own_deadlines_and_user_hours() {
        let view = seed_outage();
        let draft = draft(&view, EU_ENISA, None).unwrap();
        let met = draft.met_at.unwrap();
        assert_eq!(draft.notification_due, Some(at(met, ENISA_NOTIFY_WITHIN)));
        assert_eq!(
            draft.initial_report_due,
            Some(at(met, ENISA_INITIAL_REPORT_WITHIN))
        );
        assert_eq!(
            draft.final_report_due,
            Some(at(met, ENISA_FINAL_REPORT_WITHIN))
        );
        assert_eq!(draft.user_hours, view.user_minutes / 60);
        assert!(
            draft
                .text()
                .contains(&format!("User-hours lost: {}", view.user_minutes / 60))
        );
        assert!(draft.cause_category.starts_with("Undetermined"));
        assert_eq!(super::draft(&view, "no_such_regime", None), None);
    }

    #[test]
    fn the_graph_steps_follow_the_groups_periods() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let inc: Incident = serde_json::from_value(serde_json::json!({
            "id": "inc-000001", "seq": 1, "status": "resolved", "severity": "sev2",
            "impact": "major", "scope": "regional", "platform_concentrated": true,
            "onset_at": "2026-07-05T14:00:00Z", "detected_at": "2026-07-05T14:01:00Z",
            "impact_end_at": "2026-07-05T15:00:00Z", "monitoring_at": null,
            "resolved_at": "2026-07-05T15:05:00Z",
            "services": {"voicemail": {"name": "Voicemail", "subscribers": 1000,
                                       "component_status": "partial_outage"}},
            "groups": [
                {"group": "n", "service": "voicemail", "platform": "a", "region": "n",
                 "subscribers": 100, "periods": [{"health": "down", "start": "2026-07-05T14:00:00Z", "end": "2026-07-05T15:00:00Z"}]},
                {"group": "s", "service": "voicemail", "platform": "a", "region": "s",
                 "subscribers": 50, "periods": [{"health": "down", "start": "2026-07-05T14:10:00Z", "end": "2026-07-05T14:40:00Z"}]}
            ],
            "timeline": []
        }))
        .unwrap();
        let steps = affected_over_time(&inc, t("2026-07-05T15:00:00Z"));
        assert_eq!(
            steps["voicemail"],
            [
                (t("2026-07-05T14:00:00Z"), 100),
                (t("2026-07-05T14:10:00Z"), 150),
                (t("2026-07-05T14:40:00Z"), 100),
                (t("2026-07-05T15:00:00Z"), 0),
            ]
        );
        let names = BTreeMap::from([("voicemail".to_string(), "<Voicemail>".to_string())]);
        let svg = graph(
            &steps,
            &names,
            t("2026-07-05T14:00:00Z"),
            t("2026-07-05T15:00:00Z"),
        );
        assert!(svg.contains("&lt;Voicemail&gt; (solid)"));
        assert!(svg.contains("aria-label=\"Affected subscribers over time, peak 150\""));
    }
}
