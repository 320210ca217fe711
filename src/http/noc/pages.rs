//! The console's pages: the incident board (`/noc`), one incident (`/noc/incidents/{id}`)
//! and the targets view (`/noc/targets`). They only read: the snapshot, the store, the
//! configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{
    AppState, Found, Role, Session, auth, cause_verdict, countdown, find_incident, page, timeline,
    utc, word,
};
use crate::detector::TargetState;
use crate::engine::cluster::VantageStatus;
use crate::engine::{ClusterView, GroupView, TargetView};
use crate::format;
use crate::http::extract::{PathParams, QueryParams};
use crate::incident::cause::Confidence;
use crate::incident::public::{escape, incident_name};
use crate::incident::{Health, IncidentStatus, IncidentView, RuleStatus};
use crate::store::IncidentFilter;
use crate::topology::Topology;

/// Resolved incidents the board lists below the open ones.
const RECENT: usize = 10;

/// `GET /noc`: open incidents first (then the latest resolved ones), the region × service
/// grid, the vantages in a cluster, and the forms for changes and maintenances.
pub async fn board(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = auth::current(&state, &headers).await else {
        return auth::no_session(true);
    };
    let snap = state.snapshot.borrow().clone();
    let site = state.site.borrow().clone();
    let now = state.clock.now();
    let mut out = String::with_capacity(32 * 1024);
    out.push_str("<h1>Incident board</h1>");
    let _ = write!(
        out,
        r#"<h2>Open incidents ({})</h2>"#,
        snap.open_incidents.len()
    );
    if snap.open_incidents.is_empty() {
        out.push_str(r#"<p class="muted">No open incident.</p>"#);
    }
    for view in &snap.open_incidents {
        incident_card(&mut out, view, now, true);
    }
    grid(&mut out, &site.topology, &snap.group_views());
    if let Some(cluster) = &snap.cluster {
        vantages(&mut out, cluster);
    }
    let resolved = state
        .store
        .incidents(IncidentFilter {
            open: Some(false),
            service: None,
            limit: RECENT,
        })
        .await
        .unwrap_or_default();
    let _ = write!(out, "<h2>Recently resolved</h2>");
    if resolved.is_empty() {
        out.push_str(r#"<p class="muted">None.</p>"#);
    }
    for inc in &resolved {
        incident_card(&mut out, &inc.view(now), now, true);
    }
    if session.role == Role::Operator {
        change_form(&mut out, &session, None);
        maintenance_form(&mut out, &session, &site.topology);
    }
    page(
        &state,
        StatusCode::OK,
        "Incident board",
        Some(&session),
        &out,
    )
}

/// One incident's figures: services with affected and share, scope, severity, impact,
/// duration, user-minutes, each regime's status and deadlines, the suspected cause and
/// recurrence.
fn incident_card(out: &mut String, view: &IncidentView, now: crate::clock::Timestamp, link: bool) {
    let class = if view.status == IncidentStatus::Resolved {
        "resolved".to_string()
    } else {
        view.severity.as_str().to_string()
    };
    let name = escape(&incident_name(view));
    let title = if link {
        format!(
            r#"<a href="/noc/incidents/{id}">{id}</a> — {name}"#,
            id = escape(&view.id)
        )
    } else {
        format!("{} — {name}", escape(&view.id))
    };
    let status = word(&view.status);
    let _ = write!(
        out,
        r#"<section class="card {class}"><h3>{title}</h3><p><b>{status}</b> · {severity} · impact {impact} · scope {scope}{concentrated} · started {onset}</p><ul class="figures">"#,
        severity = view.severity.as_str(),
        impact = word(&view.impact),
        scope = word(&view.scope),
        concentrated = if view.platform_concentrated {
            " (one platform)"
        } else {
            ""
        },
        onset = utc(view.onset_at),
    );
    for s in view.per_service.values() {
        let _ = write!(
            out,
            "<li>{name}<b>{affected} affected now, {peak} at peak ({share})</b></li>",
            name = escape(&s.name),
            affected = format::count(s.affected),
            peak = format::count(s.peak_affected),
            share = format::percent(s.peak_share),
        );
    }
    let _ = write!(
        out,
        "<li>Duration<b>{}</b></li><li>User-minutes<b>{}</b></li><li>Conservative user-minutes<b>{}</b></li>",
        format::duration(Duration::from_secs(view.duration_seconds)),
        format::count(view.user_minutes),
        format::count(view.conservative_user_minutes),
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
    match &view.suspected_cause {
        Some(cause) => {
            let verdict = match cause_verdict(view) {
                Some((word, _)) => format!(", {word} by an operator"),
                None => String::new(),
            };
            let _ = write!(
                out,
                "<li>Suspected cause<b>change {id}, {lag} before onset, {confidence} confidence{verdict}</b></li>",
                id = escape(&cause.change_id),
                lag = format::duration(Duration::from_secs(cause.lag_seconds)),
                confidence = match cause.confidence {
                    Confidence::High => "high",
                    Confidence::Low => "low",
                },
            );
        }
        None => out.push_str("<li>Suspected cause<b>none registered</b></li>"),
    }
    if let Some(r) = &view.recurrence {
        let chronic = if r.chronic {
            r#" <span class="flag">CHRONIC</span>"#
        } else {
            ""
        };
        let _ = write!(
            out,
            "<li>Incidents here in 30 days<b>{}{chronic}</b></li>",
            r.count_30d
        );
    }
    out.push_str("</ul>");
    reporting_table(out, view, now);
    out.push_str("</section>");
}

/// Per regime: its status, the rule that fired, and a countdown to each deadline.
fn reporting_table(out: &mut String, view: &IncidentView, now: crate::clock::Timestamp) {
    let Some(reporting) = view.reporting.as_ref().filter(|r| !r.is_empty()) else {
        return;
    };
    out.push_str(
        "<table><tr><th>Regime</th><th>Status</th><th>Notification</th><th>Initial report</th><th>Final report</th></tr>",
    );
    for (regime, outcome) in reporting {
        let status = match outcome.status {
            RuleStatus::NotMet => "not met".to_string(),
            RuleStatus::Met => "MET".to_string(),
            RuleStatus::MetNeedsReview => "MET, needs review".to_string(),
        };
        let mut detail = String::new();
        if let Some(rule) = &outcome.rule {
            let _ = write!(detail, "<br><span class=\"muted\">{}</span>", escape(rule));
        }
        if let Some(review) = &outcome.review {
            let _ = write!(
                detail,
                "<br><span class=\"muted\">review: {}</span>",
                escape(review)
            );
        }
        if outcome.critical == Some(true) {
            detail.push_str(r#"<br><span class="flag">critical</span>"#);
        }
        let deadline = |due: Option<crate::clock::Timestamp>| match due {
            Some(due) => countdown(outcome.met_at, due, now),
            None => "—".to_string(),
        };
        let draft = if outcome.status == RuleStatus::NotMet {
            String::new()
        } else {
            format!(
                r#"<br><a href="/noc/incidents/{id}/notifications/{r}.txt">draft</a> · <a href="/noc/incidents/{id}/notifications/{r}.json">JSON</a>"#,
                id = escape(&view.id),
                r = escape(regime),
            )
        };
        let _ = write!(
            out,
            "<tr><td>{regime}{draft}</td><td>{status}{detail}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            deadline(outcome.notify_by),
            deadline(outcome.initial_report_by),
            deadline(outcome.final_report_by),
            regime = escape(regime),
        );
    }
    out.push_str("</table>");
}

/// Subscribers of down groups by region and service, now: a table whose cells say the
/// count and share in words, shaded as well (never by colour alone).
fn grid(out: &mut String, topology: &Topology, groups: &[crate::engine::GroupView]) {
    let regions: BTreeSet<&str> = groups
        .iter()
        .map(|g| g.region.as_deref().unwrap_or("—"))
        .collect();
    let mut cells: BTreeMap<(&str, &str), (u64, u64, u64)> = BTreeMap::new();
    for g in groups {
        let cell = cells
            .entry((g.service.as_str(), g.region.as_deref().unwrap_or("—")))
            .or_default();
        cell.2 += g.subscribers;
        match g.health {
            Health::Down => cell.0 += g.subscribers,
            Health::Degraded => cell.1 += g.subscribers,
            Health::Ok => {}
        }
    }
    out.push_str(
        "<h2>Affected subscribers by region and service</h2><table class=\"grid\"><tr><th>Service</th>",
    );
    for r in &regions {
        let _ = write!(out, "<th>{}</th>", escape(r));
    }
    out.push_str("</tr>");
    for service in &topology.services {
        let _ = write!(out, "<tr><th>{}</th>", escape(&service.name));
        for r in &regions {
            match cells.get(&(service.id.as_str(), *r)) {
                None => out.push_str(r#"<td class="muted">·</td>"#),
                Some(&(down, degraded, total)) => {
                    let share = if total == 0 {
                        0.0
                    } else {
                        down as f64 / total as f64
                    };
                    let (class, text) = if down > 0 {
                        (
                            if share >= 0.5 { "cell2" } else { "cell1" },
                            format!(
                                "DOWN {} ({} of {})",
                                format::count(down),
                                format::percent(share),
                                format::count(total)
                            ),
                        )
                    } else if degraded > 0 {
                        ("cell1", format!("degraded {}", format::count(degraded)))
                    } else {
                        ("cell0", "ok".to_string())
                    };
                    let _ = write!(out, r#"<td class="n {class}">{}</td>"#, escape(&text));
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// The cluster's vantages and whether each votes.
fn vantages(out: &mut String, cluster: &ClusterView) {
    out.push_str(
        "<h2>Vantages</h2><table><tr><th>Vantage</th><th>Status</th><th>Members</th><th>Targets</th></tr>",
    );
    for v in &cluster.vantages {
        let status = match v.status {
            VantageStatus::Ok => "ok",
            VantageStatus::Impaired => "IMPAIRED (does not vote)",
            VantageStatus::Silent => "SILENT (no live member)",
        };
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{status}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            escape(&v.name),
            v.members,
            v.targets
        );
    }
    out.push_str("</table>");
}

/// Registers a change; from an incident's page, the step lands in its timeline too.
fn change_form(out: &mut String, session: &Session, incident: Option<&str>) {
    let hidden = incident
        .map(|id| {
            format!(
                r#"<input type="hidden" name="incident" value="{}">"#,
                escape(id)
            )
        })
        .unwrap_or_default();
    let _ = write!(
        out,
        r#"<h2>Register a change</h2><form method="post" action="/noc/changes">{csrf}{hidden}
<p><label>Summary <input name="summary" required maxlength="500" size="50"></label>
<label>Platform <input name="platform" maxlength="100"></label>
<label>Service <input name="service" maxlength="100"></label>
<label>At (UTC, empty: now) <input name="at" type="datetime-local" step="1"></label>
<button type="submit">Register change</button></p></form>"#,
        csrf = session.csrf_field(),
    );
}

fn maintenance_form(out: &mut String, session: &Session, topology: &Topology) {
    let _ = write!(
        out,
        r#"<h2>Schedule a maintenance</h2><form method="post" action="/noc/maintenances">{csrf}<fieldset><legend>Services</legend>"#,
        csrf = session.csrf_field(),
    );
    for s in &topology.services {
        let _ = write!(
            out,
            r#"<label><input type="checkbox" name="service" value="{}"> {}</label>"#,
            escape(&s.id),
            escape(&s.name)
        );
    }
    out.push_str(
        r#"</fieldset><p><label>Starts (UTC) <input name="starts_at" type="datetime-local" required></label>
<label>Ends (UTC) <input name="ends_at" type="datetime-local" required></label>
<label>Summary <input name="summary" maxlength="500" size="40"></label>
<button type="submit">Schedule</button></p></form>"#,
    );
}

/// `GET /noc/incidents/{id}`: the card, the timeline with who did what, the actions, and
/// the links to the drafts and the post-mortem.
pub async fn incident(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = auth::current(&state, &headers).await else {
        return auth::no_session(true);
    };
    let Some(Found { view, .. }) = find_incident(&state, &id).await else {
        let body = format!(
            r#"<h1>No incident {}</h1><p><a href="/noc">Back to the board</a></p>"#,
            escape(&id)
        );
        return page(
            &state,
            StatusCode::NOT_FOUND,
            "No such incident",
            Some(&session),
            &body,
        );
    };
    let now = state.clock.now();
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<p><a href="/noc">← Incident board</a> · <a href="/noc/incidents/{id}/postmortem">Post-mortem</a> · <a href="/incidents/{id}">Public page</a></p>"#,
        id = escape(&view.id)
    );
    incident_card(&mut out, &view, now, false);
    let open = view.status != IncidentStatus::Resolved;
    if open && session.role == Role::Operator {
        actions(&mut out, &view, &session);
    }
    timeline(&mut out, &view);
    page(
        &state,
        StatusCode::OK,
        &format!("{} {}", view.id, incident_name(&view)),
        Some(&session),
        &out,
    )
}

fn actions(out: &mut String, view: &IncidentView, session: &Session) {
    let id = escape(&view.id);
    let csrf = session.csrf_field();
    out.push_str("<h2>Actions</h2>");
    if view.status == IncidentStatus::Investigating {
        let _ = write!(
            out,
            r#"<form method="post" action="/noc/incidents/{id}/acknowledge">{csrf}<button type="submit">Acknowledge</button> <span class="muted">as {user}: status becomes identified</span></form>"#,
            user = escape(&session.user),
        );
    }
    let _ = write!(
        out,
        r#"<form method="post" action="/noc/incidents/{id}/updates">{csrf}<p><label for="update-text">Customer-facing update (shown on the public page, sent to subscribers)</label>
<textarea id="update-text" name="text" required maxlength="2000"></textarea><button type="submit">Post update</button></p></form>"#
    );
    if let Some(cause) = &view.suspected_cause {
        let _ = write!(
            out,
            r#"<form method="post" action="/noc/incidents/{id}/cause">{csrf}<p>Suspected cause: change {change}
<button type="submit" name="verdict" value="confirmed">Confirm cause</button>
<button type="submit" name="verdict" value="rejected">Reject cause</button></p></form>"#,
            change = escape(&cause.change_id),
        );
    }
    change_form(out, session, Some(&view.id));
}

/// `GET /noc/targets?service=&region=&platform=&state=`: the groups' health and every
/// target's state, reason and last result, filtered.
#[derive(Debug, Default, Deserialize)]
pub struct TargetFilter {
    #[serde(default)]
    service: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    state: String,
}

pub async fn targets(
    State(state): State<AppState>,
    headers: HeaderMap,
    filter: Result<QueryParams<TargetFilter>, crate::http::ApiError>,
) -> Response {
    let Some(session) = auth::current(&state, &headers).await else {
        return auth::no_session(true);
    };
    let filter = filter.map(|QueryParams(f)| f).unwrap_or_default();
    let snap = state.snapshot.borrow().clone();
    let site = state.site.borrow().clone();
    let topology = snap.topology();
    let views = snap.target_views();
    let vantage = &site.vantage;
    let mut values: [BTreeSet<String>; 3] = Default::default();
    for t in &topology.targets {
        for (i, label) in [&t.labels.service, &t.labels.region, &t.labels.platform]
            .into_iter()
            .enumerate()
        {
            values[i].extend(
                label
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            );
        }
    }
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(r#"<h1>Targets</h1><form method="get" action="/noc/targets"><p>"#);
    for (i, (key, current)) in [
        ("service", &filter.service),
        ("region", &filter.region),
        ("platform", &filter.platform),
    ]
    .into_iter()
    .enumerate()
    {
        select(&mut out, key, current, values[i].iter().map(String::as_str));
    }
    select(
        &mut out,
        "state",
        &filter.state,
        ["down", "degraded", "up", "unknown"].into_iter(),
    );
    out.push_str(
        r#"<button type="submit">Filter</button> <a href="/noc/targets">all</a></p></form>"#,
    );
    groups_table(&mut out, topology, &snap.group_views(), &views, &filter);
    // In a cluster, what each vantage says of each target, from the store.
    let by_vantage = match &snap.cluster {
        Some(_) => match vantage_results(&state.store, snap.generated_at).await {
            Ok(results) => Some(results),
            Err(e) => {
                let _ = write!(
                    out,
                    r#"<p class="muted">The vantages' results could not be read: {}.</p>"#,
                    escape(&e.to_string())
                );
                None
            }
        },
        None => None,
    };
    out.push_str("<h2>Targets</h2><table><tr><th>Target</th><th>State</th><th>Since</th><th>Service</th><th>Region</th><th>Platform</th><th>Probe</th><th>Last result</th><th>Vantage</th></tr>");
    let has = |list: &str, wanted: &str| wanted.is_empty() || list.split(',').any(|v| v == wanted);
    let mut shown = 0;
    for (t, v) in topology.targets.iter().zip(&views) {
        if !(has(&t.labels.service, &filter.service)
            && has(&t.labels.region, &filter.region)
            && has(&t.labels.platform, &filter.platform)
            && (filter.state.is_empty() || v.state.as_str() == filter.state))
        {
            continue;
        }
        shown += 1;
        let last = match &v.last_result {
            None => "none yet".to_string(),
            Some(r) if r.ok => format!(
                "ok in {} at {}",
                format::latency(r.latency_seconds),
                utc(r.at)
            ),
            Some(r) => format!(
                "FAILED ({}{}) at {}",
                r.reason.map_or("failure", |reason| reason.as_str()),
                r.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default(),
                utc(r.at)
            ),
        };
        let state_word = match v.state.as_str() {
            "down" => "DOWN",
            "degraded" => "degraded",
            other => other,
        };
        let _ = write!(
            out,
            "<tr><td>{id}</td><td>{state_word}</td><td>{since}</td><td>{service}</td><td>{region}</td><td>{platform}</td><td>{probe}</td><td>{last}</td><td>{vantage}</td></tr>",
            id = escape(&t.id),
            since = v.since.map(utc).unwrap_or_default(),
            service = escape(&t.labels.service),
            region = escape(&t.labels.region),
            platform = escape(&t.labels.platform),
            probe = escape(v.probe),
            last = escape(&last),
            vantage = match &by_vantage {
                Some(results) => results
                    .get(&t.id)
                    .map(|r| r
                        .iter()
                        .map(|line| escape(line))
                        .collect::<Vec<_>>()
                        .join("<br>"))
                    .unwrap_or_else(|| "no vantage has reported".to_string()),
                None => escape(vantage),
            },
        );
    }
    let _ = write!(
        out,
        r#"</table><p class="muted">{shown} of {} targets.</p>"#,
        topology.targets.len()
    );
    page(&state, StatusCode::OK, "Targets", Some(&session), &out)
}

/// Each vantage's verdict on each target, with its latest stored minute (probes,
/// failures, mean latency), by target id: one line per vantage.
async fn vantage_results(
    store: &crate::store::Store,
    now: crate::clock::Timestamp,
) -> Result<BTreeMap<String, Vec<String>>, crate::store::StoreError> {
    let states = store
        .vantage_states(crate::clock::Timestamp::UNIX_EPOCH)
        .await?;
    // The minute rows of the last few minutes: the latest of each (target, vantage).
    let recent = (now - chrono::Duration::minutes(3)).timestamp();
    let mut minutes: BTreeMap<(String, String), crate::store::VantageMinute> = BTreeMap::new();
    for m in store.vantage_minutes(recent).await? {
        let key = (m.target.clone(), m.vantage.clone());
        if minutes.get(&key).is_none_or(|old| old.start < m.start) {
            minutes.insert(key, m);
        }
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for reported in states {
        let v = reported.state;
        let word = match v.state {
            TargetState::Down => "DOWN",
            other => other.as_str(),
        };
        let mut line = format!("{}: {word} since {}", v.vantage, utc(v.since));
        if let Some(m) = minutes.get(&(v.target.clone(), v.vantage.clone())) {
            let mean = if m.probes > 0 {
                format!(
                    ", mean {}",
                    format::latency(m.latency_sum / m.probes as f64)
                )
            } else {
                String::new()
            };
            let _ = write!(
                line,
                "; minute of {}: {} probes, {} failed{mean}",
                utc(chrono::DateTime::from_timestamp(m.start, 0).unwrap_or(now)),
                m.probes,
                m.failures
            );
        }
        out.entry(v.target).or_default().push(line);
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    Ok(out)
}

/// The groups the filter selects (a group's state is its health: `up` for ok), with the
/// subscribers behind each and how many of its targets are down.
fn groups_table(
    out: &mut String,
    topology: &Topology,
    groups: &[GroupView],
    targets: &[TargetView],
    filter: &TargetFilter,
) {
    let is = |value: Option<&String>, wanted: &str| {
        wanted.is_empty() || value.is_some_and(|v| v == wanted)
    };
    out.push_str("<h2>Groups</h2><table><tr><th>Group</th><th>State</th><th>Since</th><th>Service</th><th>Region</th><th>Platform</th><th>Subscribers</th><th>Targets down</th></tr>");
    let mut shown = 0;
    for (g, view) in topology.groups.iter().zip(groups) {
        let state = match view.health {
            Health::Ok => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        };
        if !(is(Some(&view.service), &filter.service)
            && is(view.region.as_ref(), &filter.region)
            && is(view.platform.as_ref(), &filter.platform)
            && (filter.state.is_empty() || filter.state == state))
        {
            continue;
        }
        shown += 1;
        let down = g
            .targets
            .iter()
            .filter(|&&t| targets[t].state == TargetState::Down)
            .count();
        let since = if view.health == Health::Ok {
            String::new()
        } else {
            utc(view.since)
        };
        let _ = write!(
            out,
            "<tr><td>{id}</td><td>{word}</td><td>{since}</td><td>{service}</td><td>{region}</td><td>{platform}</td><td>{subscribers}</td><td>{down} of {total}</td></tr>",
            id = escape(&view.id),
            word = if state == "down" { "DOWN" } else { state },
            service = escape(&view.service),
            region = escape(view.region.as_deref().unwrap_or("")),
            platform = escape(view.platform.as_deref().unwrap_or("")),
            subscribers = format::count(view.subscribers),
            total = g.targets.len(),
        );
    }
    let _ = write!(
        out,
        r#"</table><p class="muted">{shown} of {} groups.</p>"#,
        topology.groups.len()
    );
}

fn select<'a>(out: &mut String, name: &str, current: &str, values: impl Iterator<Item = &'a str>) {
    let _ = write!(
        out,
        r#"<label>{name} <select name="{name}"><option value="">any</option>"#
    );
    for v in values {
        let selected = if v == current { " selected" } else { "" };
        let _ = write!(
            out,
            r#"<option value="{v}"{selected}>{v}</option>"#,
            v = escape(v)
        );
    }
    out.push_str("</select></label> ");
}
