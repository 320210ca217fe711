//! The console's forms: each a CSRF-checked POST an operator sends, done through the
//! same code as the JSON API, noted in the incident's timeline with who did it, and
//! answered with a redirect back to the page it came from.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use tokio::sync::oneshot;

use super::{
    AppState, CAUSE_CONFIRMED, CAUSE_REJECTED, CHANGE_REGISTERED, Form, MAINTENANCE_SCHEDULED,
    Role, Session, UPDATE_POSTED, acting, field, problem, redirect,
};
use crate::clock::Timestamp;
use crate::engine::Control;
use crate::http::ApiError;
use crate::http::api::{
    ChangeRequest, MaintenanceRequest, acknowledge_as, store_change, store_maintenance,
};
use crate::http::extract::PathParams;
use crate::incident::IncidentView;

/// Longest customer-facing update: a few paragraphs.
const MAX_UPDATE_CHARS: usize = 2000;

fn back(id: &str) -> String {
    format!(
        "/noc/incidents/{}",
        url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    )
}

fn refused(state: &AppState, session: &Session, error: &ApiError) -> Response {
    let (status, message) = error.parts();
    problem(state, status, session, "Not done", message)
}

/// `POST /noc/incidents/{id}/acknowledge`: → `identified`, by the session's user.
pub async fn acknowledge(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, _) = match acting(&state, &headers, &body, Some(Role::Operator)).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    match acknowledge_as(&state, id.clone(), Some(session.user.clone())).await {
        Ok(_) => redirect(&back(&id)),
        Err(e) => refused(&state, &session, &e),
    }
}

/// Adds a step to open incident `id`'s timeline through the engine.
async fn annotate(
    state: &AppState,
    id: &str,
    event: &'static str,
    message: String,
    public: Option<String>,
) -> Result<IncidentView, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .engine
        .send(Control::Annotate {
            id: id.to_string(),
            event,
            message,
            public,
            reply,
        })
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    match answer.await {
        Ok(Some(view)) => Ok(view),
        Ok(None) => Err(ApiError::conflict(format!(
            "incident `{id}` is not open here (resolved, unknown, or this instance does not lead the cluster)"
        ))),
        Err(_) => Err(ApiError::unavailable("shutting down")),
    }
}

/// `POST /noc/incidents/{id}/updates`, `text`: a customer-facing update, shown on the
/// public page and sent to subscribers at once.
pub async fn post_update(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match acting(&state, &headers, &body, Some(Role::Operator)).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let text = field(&form, "text");
    if text.is_empty() || text.chars().count() > MAX_UPDATE_CHARS {
        let e = ApiError::bad_request(format!(
            "an update needs a text of at most {MAX_UPDATE_CHARS} characters"
        ));
        return refused(&state, &session, &e);
    }
    let message = format!("customer update posted by {}", session.user);
    match annotate(&state, &id, UPDATE_POSTED, message, Some(text.to_string())).await {
        Ok(_) => {
            state.notices.notify_waiters();
            redirect(&back(&id))
        }
        Err(e) => refused(&state, &session, &e),
    }
}

/// `POST /noc/incidents/{id}/cause`, `verdict` = `confirmed` | `rejected`: what an
/// operator found of the suspected cause; the latest verdict stands.
pub async fn judge_cause(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match acting(&state, &headers, &body, Some(Role::Operator)).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let (event, word) = match field(&form, "verdict") {
        "confirmed" => (CAUSE_CONFIRMED, "confirmed"),
        "rejected" => (CAUSE_REJECTED, "rejected"),
        _ => {
            let e = ApiError::bad_request("verdict must be `confirmed` or `rejected`");
            return refused(&state, &session, &e);
        }
    };
    let live = state
        .snapshot
        .borrow()
        .open_incidents
        .iter()
        .find(|v| v.id == id)
        .and_then(|v| v.suspected_cause.clone());
    let Some(cause) = live else {
        let e = ApiError::conflict(format!(
            "incident `{id}` is not open or has no suspected cause"
        ));
        return refused(&state, &session, &e);
    };
    let message = format!(
        "suspected cause change {} {word} by {}",
        cause.change_id, session.user
    );
    match annotate(&state, &id, event, message, None).await {
        Ok(_) => redirect(&back(&id)),
        Err(e) => refused(&state, &session, &e),
    }
}

/// A `datetime-local` field (`2026-12-01T14:05`, seconds optional), taken as UTC.
fn utc_field(form: &Form, name: &str) -> Result<Option<Timestamp>, ApiError> {
    let text = field(form, name);
    if text.is_empty() {
        return Ok(None);
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| Some(t.and_utc()))
        .ok_or_else(|| ApiError::bad_request(format!("{name}: not a date and time (UTC)")))
}

fn optional(form: &Form, name: &str) -> Option<String> {
    Some(field(form, name).to_string()).filter(|v| !v.is_empty())
}

/// `POST /noc/changes`: `summary`, `platform`, `service`, `at` (UTC), and `incident`
/// when sent from an incident's page, whose timeline then notes it.
pub async fn register_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match acting(&state, &headers, &body, Some(Role::Operator)).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let at = match utc_field(&form, "at") {
        Ok(at) => at,
        Err(e) => return refused(&state, &session, &e),
    };
    let request = ChangeRequest {
        id: None,
        platform: optional(&form, "platform"),
        service: optional(&form, "service"),
        summary: field(&form, "summary").to_string(),
        at,
    };
    let change = match store_change(&state, request).await {
        Ok((_, change)) => change,
        Err(e) => return refused(&state, &session, &e),
    };
    tracing::info!(change = %change.id, by = %session.user, "change registered from the console");
    match optional(&form, "incident") {
        None => redirect("/noc"),
        Some(id) => {
            let message = format!(
                "change {} registered by {}: {}",
                change.id, session.user, change.summary
            );
            match annotate(&state, &id, CHANGE_REGISTERED, message, None).await {
                Ok(_) => redirect(&back(&id)),
                Err(e) => refused(&state, &session, &e),
            }
        }
    }
}

/// `POST /noc/maintenances`: `service` (repeated), `starts_at`, `ends_at` (UTC),
/// `summary`; announced to subscribers as one from the API is.
pub async fn schedule_maintenance(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, form) = match acting(&state, &headers, &body, Some(Role::Operator)).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal,
    };
    let times = utc_field(&form, "starts_at").and_then(|s| Ok((s, utc_field(&form, "ends_at")?)));
    let (Some(starts_at), Some(ends_at)) = (match times {
        Ok(t) => t,
        Err(e) => return refused(&state, &session, &e),
    }) else {
        let e = ApiError::bad_request("a maintenance needs a start and an end");
        return refused(&state, &session, &e);
    };
    let request = MaintenanceRequest {
        id: None,
        services: form
            .iter()
            .filter(|(k, v)| k == "service" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        starts_at,
        ends_at,
        summary: field(&form, "summary").to_string(),
    };
    match store_maintenance(&state, request).await {
        Ok((_, window)) => {
            tracing::info!(maintenance = %window.id, by = %session.user, "maintenance scheduled from the console");
            // Open incidents of those services hear of it: the window may explain them.
            let open: Vec<String> = state
                .snapshot
                .borrow()
                .open_incidents
                .iter()
                .filter(|v| v.services.iter().any(|s| window.services.contains(s)))
                .map(|v| v.id.clone())
                .collect();
            for id in open {
                let message = format!(
                    "maintenance {} of {} scheduled by {}",
                    window.id,
                    window.services.join(", "),
                    session.user
                );
                let _ = annotate(&state, &id, MAINTENANCE_SCHEDULED, message, None).await;
            }
            redirect("/noc")
        }
        Err(e) => refused(&state, &session, &e),
    }
}
