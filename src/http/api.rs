//! `/api/v1`: status and incidents. Open incidents come from the live snapshot (figures
//! measured to now), past ones from the store.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::engine::{GroupView, ServiceView, TargetView};
use crate::incident::IncidentView;
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
