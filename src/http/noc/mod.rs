//! The NOC console, `/noc`: the operators' view of who is affected where, how big it is
//! in the regulators' terms, when each report is due and what most likely caused it, and
//! the forms to act on it.
//!
//! Server-rendered like the status page, with no external assets, usable without
//! JavaScript (one small inline script counts the deadlines down), every name from the
//! configuration or the API escaped. Pages send a `Content-Security-Policy` that allows
//! that one script by its hash and nothing else.
//!
//! * `auth`: users, login, sessions, CSRF tokens, logout;
//! * `pages`: the incident board, an incident's page, the targets view;
//! * `actions`: the forms' POST handlers (operators only, CSRF-checked);
//! * `reports`: regulator notification drafts and the post-mortem page.

mod actions;
mod auth;
mod pages;
mod reports;

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::clock::Timestamp;
use crate::incident::public::escape;
use crate::incident::{Incident, IncidentView};
pub use auth::{ConsoleUser, Role, Session, hash_password, parse_users};

/// The console's routes, merged into the app's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/noc", get(pages::board))
        .route("/noc/login", get(auth::login_form).post(auth::login))
        .route("/noc/logout", post(auth::logout))
        .route("/noc/targets", get(pages::targets))
        .route("/noc/incidents/{id}", get(pages::incident))
        .route(
            "/noc/incidents/{id}/acknowledge",
            post(actions::acknowledge),
        )
        .route("/noc/incidents/{id}/updates", post(actions::post_update))
        .route("/noc/incidents/{id}/cause", post(actions::judge_cause))
        .route("/noc/incidents/{id}/postmortem", get(reports::postmortem))
        .route(
            "/noc/incidents/{id}/notifications/{file}",
            get(reports::notification),
        )
        .route("/noc/changes", post(actions::register_change))
        .route("/noc/maintenances", post(actions::schedule_maintenance))
}

const STYLE: &str = r#"
:root{--ok:#1a7f37;--amber:#9a6700;--red:#b91c1c;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--panel:#f6f8fa}
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);max-width:80rem;margin:0 auto;padding:.75rem 1rem}
h1{font-size:1.4rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}h3{font-size:1.05rem;margin:0 0 .3rem}
a{color:#0550ae}.muted{color:var(--muted)}nav{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;border-bottom:1px solid var(--line);padding-bottom:.5rem}
nav form{margin-left:auto}table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:var(--panel)}td.n{text-align:right;font-variant-numeric:tabular-nums}
.card{border:1px solid var(--line);border-left:.4rem solid var(--amber);border-radius:.4rem;padding:.6rem .8rem;margin:.6rem 0}.card.resolved{border-left-color:var(--ok)}.card.sev1{border-left-color:var(--red)}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:.4rem;list-style:none;padding:0;margin:.4rem 0}.figures li{background:var(--panel);border-radius:.3rem;padding:.3rem .5rem}.figures b{display:block}
.due{font-weight:600;font-variant-numeric:tabular-nums}.due.ok{color:var(--ok)}.due.amber{color:var(--amber)}.due.red{color:var(--red)}
.flag{font-weight:600;color:var(--red)}.problem{color:var(--red);font-weight:600}
form.inline{display:inline}fieldset{border:1px solid var(--line);border-radius:.3rem;margin:.5rem 0}label{margin-right:.6rem}
textarea{width:100%;min-height:4rem}.cell0{background:#fff}.cell1{background:#fde68a}.cell2{background:#fca5a5}
@media print{nav,form,.noprint{display:none}body{max-width:none}}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117;--panel:#151b23}a{color:#4493f8}.cell0{background:transparent}.cell1{background:#5c4a0b}.cell2{background:#6b1d1d}}
"#;

/// Counts deadlines down between page loads, to the second: each `time.due` element's text
/// and colour class from its `datetime` and `data-from` (when the window opened). Without
/// it the server's figures stand, as of the page's load.
const SCRIPT: &str = r#"(function(){function p(n){return(n<10?"0":"")+n}function f(s){var a=Math.floor(Math.abs(s)),d=Math.floor(a/86400),t=p(Math.floor(a%86400/3600))+":"+p(Math.floor(a%3600/60))+":"+p(a%60);return d?d+" d "+t:t}
function tick(){var now=Date.now();document.querySelectorAll("time.due").forEach(function(e){var due=Date.parse(e.getAttribute("datetime")),from=Date.parse(e.dataset.from),left=(due-now)/1000,frac=(due-now)/Math.max(due-from,1),c,l;
if(left<=0){c="red";l="OVERDUE by "+f(left)}else if(frac<=0.15){c="red";l="URGENT: "+f(left)+" left"}else if(frac<=0.5){c="amber";l="due soon: "+f(left)+" left"}else{c="ok";l=f(left)+" left"}
e.className="due "+c;e.textContent=l})}tick();setInterval(tick,1000)})();"#;

/// The page's `Content-Security-Policy`: no external anything, styles inline, the one
/// script by its hash, forms only to this origin, no framing.
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             script-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'"
        )
    })
}

/// A whole console page: head, the navigation with the session's user and logout, `body`.
pub(crate) fn page(
    state: &AppState,
    status: StatusCode,
    title: &str,
    session: Option<&Session>,
    body: &str,
) -> Response {
    let site = state.site.borrow().clone();
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — {site_title} NOC</title><style>{STYLE}</style></head><body>"#,
        title = escape(title),
        site_title = escape(&site.server.page_title),
    );
    if let Some(s) = session {
        let _ = write!(
            out,
            r#"<nav><b>{site_title} NOC</b><a href="/noc">Incident board</a><a href="/noc/targets">Targets</a><a href="/">Public page</a>
<form method="post" action="/noc/logout" class="inline">{csrf}<span class="muted">{user} ({role})</span> <button type="submit">Log out</button></form></nav>"#,
            site_title = escape(&site.server.page_title),
            csrf = s.csrf_field(),
            user = escape(&s.user),
            role = s.role.as_str(),
        );
    }
    out.push_str("<main>");
    out.push_str(body);
    let _ = write!(out, "</main><script>{SCRIPT}</script></body></html>");
    let mut response = (status, Html(out)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `303 See Other` to `to`: where a form's POST sends the browser back.
pub(crate) fn redirect(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/noc")),
        )],
    )
        .into_response()
}

/// A form's fields, in order (a name may repeat).
pub(crate) type Form = Vec<(String, String)>;

/// The first value of `name` in `form`, trimmed; empty when missing.
pub(crate) fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.trim())
}

/// Checks a form POST: a session (401 without), its CSRF token (403 without or wrong),
/// and, when given, the role it needs (403 for a viewer). Answers the session and the
/// form's fields, or the refusal to send.
pub(crate) async fn acting(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    needs: Option<Role>,
) -> Result<(Session, Form), Response> {
    let Some(session) = auth::current(state, headers).await else {
        return Err(auth::no_session(false));
    };
    let form: Form = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !session.csrf_matches(field(&form, "csrf")) {
        tracing::warn!(user = %session.user, "console form refused: missing or wrong CSRF token");
        return Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page\n",
        )
            .into_response());
    }
    if needs == Some(Role::Operator) && session.role != Role::Operator {
        return Err(problem(
            state,
            StatusCode::FORBIDDEN,
            &session,
            "Operators only",
            "Your role (viewer) sees the console but does not act on it.",
        ));
    }
    Ok((session, form))
}

/// A page saying why something was not done, with a way back.
pub(crate) fn problem(
    state: &AppState,
    status: StatusCode,
    session: &Session,
    title: &str,
    message: &str,
) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="problem" role="alert">{}</p><p><a href="/noc">Back to the board</a></p>"#,
        escape(title),
        escape(message)
    );
    page(state, status, title, Some(session), &body)
}

/// An incident as the console shows it: the live view of an open one (figures to now),
/// and the stored record, which holds its groups' periods (for the grid and the graph).
pub(crate) struct Found {
    pub view: IncidentView,
    pub stored: Option<Incident>,
}

/// Incident `id`, open or past; `None` when there is none.
pub(crate) async fn find_incident(state: &AppState, id: &str) -> Option<Found> {
    let now = state.clock.now();
    let live = state
        .snapshot
        .borrow()
        .open_incidents
        .iter()
        .find(|v| v.id == id)
        .cloned();
    let stored = state.store.incident(id.to_string()).await.ok().flatten();
    let view = live.or_else(|| stored.as_ref().map(|i| i.view(now)))?;
    Some(Found { view, stored })
}

/// What an operator said of the suspected cause, from the timeline: the latest verdict.
pub(crate) fn cause_verdict(view: &IncidentView) -> Option<(&'static str, &str)> {
    view.timeline
        .iter()
        .rev()
        .find_map(|e| match e.event.as_str() {
            CAUSE_CONFIRMED => Some(("confirmed", e.message.as_str())),
            CAUSE_REJECTED => Some(("rejected", e.message.as_str())),
            _ => None,
        })
}

/// Timeline events of the console's actions (acknowledgements are the engine's
/// `acknowledged`).
pub(crate) const UPDATE_POSTED: &str = "update_posted";
pub(crate) const CAUSE_CONFIRMED: &str = "cause_confirmed";
pub(crate) const CAUSE_REJECTED: &str = "cause_rejected";
pub(crate) const CHANGE_REGISTERED: &str = "change_registered";
pub(crate) const MAINTENANCE_SCHEDULED: &str = "maintenance_scheduled";

/// The timeline, oldest first: each step with its operator text and, when customers were
/// told, what they read.
pub(crate) fn timeline(out: &mut String, view: &IncidentView) {
    out.push_str(
        "<h2>Timeline</h2><table><tr><th>At (UTC)</th><th>Event</th><th>Detail</th><th>Customers read</th></tr>",
    );
    for e in &view.timeline {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            utc(e.at),
            escape(&e.event),
            escape(&e.message),
            escape(e.public_message.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}

/// The snake_case JSON name of an enum value (`investigating`, `distributed`), as the
/// API writes it.
pub(crate) fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A time as the console writes it: UTC, to the second, the regulators' clock.
pub(crate) fn utc(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A deadline as a countdown element: the text and colour the script keeps current, and a
/// word (on time, due soon, urgent, overdue) so that colour is never the only signal.
pub(crate) fn countdown(from: Option<Timestamp>, due: Timestamp, now: Timestamp) -> String {
    let from = from.unwrap_or(now).min(due);
    let left = due - now;
    let window = (due - from).num_seconds().max(1) as f64;
    let fraction = left.num_seconds() as f64 / window;
    let span = crate::format::duration(left.abs().to_std().unwrap_or_default());
    let (class, label) = if left <= chrono::TimeDelta::zero() {
        ("red", format!("OVERDUE by {span}"))
    } else if fraction <= 0.15 {
        ("red", format!("URGENT: {span} left"))
    } else if fraction <= 0.5 {
        ("amber", format!("due soon: {span} left"))
    } else {
        ("ok", format!("{span} left"))
    };
    format!(
        r#"<time class="due {class}" datetime="{due}" data-from="{from}">{label}</time> <span class="muted">(by {at})</span>"#,
        due = due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        from = from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at = utc(due),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_turn_amber_then_red_and_say_so_in_words() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let from = Some(t("2026-07-05T14:30:00Z"));
        let due = t("2026-07-05T16:30:00Z");
        let at = |now: &str| countdown(from, due, t(now));
        assert!(at("2026-07-05T14:40:00Z").contains(r#"class="due ok""#));
        assert!(at("2026-07-05T14:40:00Z").contains(">1 h 50 min left<"));
        assert!(at("2026-07-05T15:40:00Z").contains("due soon: 50 min left"));
        assert!(at("2026-07-05T16:20:00Z").contains(r#"class="due red""#));
        assert!(at("2026-07-05T16:20:00Z").contains(">URGENT: 10 min left<"));
        assert!(at("2026-07-05T16:45:00Z").contains("OVERDUE by 15 min"));
        assert!(at("2026-07-05T16:45:00Z").contains("(by 2026-07-05 16:30:00 UTC)"));
    }

    #[test]
    fn the_policy_allows_the_one_inline_script_by_its_hash() {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
        assert!(policy().contains(&format!("script-src 'sha256-{hash}'")));
        assert!(policy().starts_with("default-src 'none'"));
    }
}
