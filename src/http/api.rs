//! `/api/v1`: status and incidents. Open incidents come from the live snapshot (figures
//! measured to now), past ones from the store.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{ApiError, AppState, authorize};
use crate::clock::Timestamp;
use crate::engine::{Control, GroupView, ServiceView, TargetView};
use crate::incident::{Change, IncidentView};
use crate::store::IncidentFilter;

#[derive(Serialize)]
pub struct StatusResponse {
    pub generated_at: crate::clock::Timestamp,
    pub services: Vec<ServiceView>,
    pub groups: Vec<GroupView>,
    pub targets: Vec<TargetView>,
}

pub async fn status(State(state): State<AppState>) -> Json<StatusResponse> {
    let snap = state.snapshot.borrow().clone();
    Json(StatusResponse {
        generated_at: snap.generated_at,
        services: snap.services.clone(),
        groups: snap.groups.clone(),
        targets: snap.targets.clone(),
    })
}

#[derive(Deserialize)]
pub struct IncidentQuery {
    status: Option<String>,
    service: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct IncidentList {
    pub incidents: Vec<IncidentView>,
}

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub async fn incidents(
    State(state): State<AppState>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<IncidentList>, ApiError> {
    let open = match q.status.as_deref() {
        None => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status must be `open` or `resolved`, not `{other}`"
            )));
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let stored = state
        .store
        .incidents(IncidentFilter {
            open,
            service: q.service.clone(),
            limit,
        })
        .await?;
    let snap = state.snapshot.borrow().clone();
    let now = state.clock.now();
    let incidents = stored
        .into_iter()
        .map(|inc| live(&snap.open_incidents, &inc.id).unwrap_or_else(|| inc.view(now)))
        .collect();
    Ok(Json(IncidentList { incidents }))
}

pub async fn incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    let snap = state.snapshot.borrow().clone();
    if let Some(view) = live(&snap.open_incidents, &id) {
        return Ok(Json(view));
    }
    match state.store.incident(id.clone()).await? {
        Some(inc) => Ok(Json(inc.view(state.clock.now()))),
        None => Err(ApiError::not_found(format!("no incident `{id}`"))),
    }
}

fn live(open: &[IncidentView], id: &str) -> Option<IncidentView> {
    open.iter().find(|v| v.id == id).cloned()
}

/// `POST /api/v1/incidents/{id}/acknowledge`, optional body `{"by": "name"}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeRequest {
    by: Option<String>,
}

pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<AcknowledgeRequest>>,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(&state, &headers)?;
    let by = body.and_then(|Json(b)| b.by);
    let (reply, answer) = oneshot::channel();
    state
        .engine
        .send(Control::Acknowledge {
            id: id.clone(),
            by,
            reply,
        })
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    match answer.await {
        Ok(Some(view)) => Ok(Json(view)),
        Ok(None) => match state.store.incident(id.clone()).await? {
            Some(_) => Err(ApiError::conflict(format!("incident `{id}` is resolved"))),
            None => Err(ApiError::not_found(format!("no incident `{id}`"))),
        },
        Err(_) => Err(ApiError::unavailable("shutting down")),
    }
}

/// `POST /api/v1/changes` body: `{id?, platform?, service?, summary, at?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    id: Option<String>,
    platform: Option<String>,
    service: Option<String>,
    summary: String,
    at: Option<Timestamp>,
}

#[derive(Deserialize)]
pub struct ChangeQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct ChangeList {
    pub changes: Vec<Change>,
}

pub async fn changes(
    State(state): State<AppState>,
    Query(q): Query<ChangeQuery>,
) -> Result<Json<ChangeList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok(Json(ChangeList {
        changes: state.store.changes(limit).await?,
    }))
}

pub async fn register_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ChangeRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Change>), ApiError> {
    authorize(&state, &headers)?;
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let blank = |s: &Option<String>| s.as_deref().is_some_and(|v| v.trim().is_empty());
    if request.summary.trim().is_empty() {
        return Err(ApiError::bad_request("summary must not be empty"));
    }
    if blank(&request.id) || blank(&request.platform) || blank(&request.service) {
        return Err(ApiError::bad_request(
            "id, platform and service must not be empty when given",
        ));
    }
    let change = Change {
        id: request.id.unwrap_or_else(new_change_id),
        platform: request.platform,
        service: request.service,
        summary: request.summary,
        at: request.at.unwrap_or_else(|| state.clock.now()),
    };
    state.store.save_change(&change);
    state.store.flush().await?;
    state
        .engine
        .send(Control::RecordChange(change.clone()))
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    Ok((StatusCode::CREATED, Json(change)))
}

/// `chg-` and 10 random base32 characters.
fn new_change_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut id = String::from("chg-");
    for _ in 0..10 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}
