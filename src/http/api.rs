//! `/api/v1`: status, service history and incidents. Open incidents come from the live
//! snapshot (figures measured to now), past ones from the store.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::extract::{JsonBody, PathParams, QueryParams};
use super::{ApiError, AppState, authorize};
use crate::alert::subscribers::announce_maintenance;
use crate::clock::{Timestamp, check_input_time};
use crate::engine::{ClusterView, Control, GroupView, ServiceView, TargetView};
use crate::incident::{Change, IncidentStatus, IncidentView};
use crate::rollup::{ServiceHistory, Uptime};
use crate::store::IncidentFilter;
use crate::topology::{MaintenanceWindow, Topology};

#[derive(Serialize)]
pub struct StatusResponse {
    pub generated_at: crate::clock::Timestamp,
    pub services: Vec<ServiceStatus>,
    pub groups: Vec<GroupView>,
    pub targets: Vec<TargetView>,
}

/// A service as `/api/v1/status` shows it: the live view and its uptime figures
/// (`availability`, `operational_time`, `observed_since`).
#[derive(Serialize)]
pub struct ServiceStatus {
    #[serde(flatten)]
    pub view: ServiceView,
    #[serde(flatten)]
    pub uptime: Uptime,
}

/// Built and written on the blocking pool: at 100 000 targets the document is tens of
/// megabytes, and the runtime threads start the probes.
pub async fn status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snap = state.snapshot.borrow().clone();
    let mut uptimes = uptimes(&state).await?;
    let written = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&StatusResponse {
            generated_at: snap.generated_at,
            services: snap
                .services
                .iter()
                .map(|s| ServiceStatus {
                    uptime: uptimes.remove(&s.id).unwrap_or_default(),
                    view: s.clone(),
                })
                .collect(),
            groups: snap.group_views(),
            targets: snap.target_views(),
        })
    })
    .await
    .map_err(|_| ApiError::unavailable("shutting down"))?
    .map_err(|e| ApiError::internal(format!("writing the status: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], written).into_response())
}

/// `GET /api/v1/cluster`: members, vantages, the leader and its token, as this instance
/// last read them; 404 when it runs alone (no cluster).
pub async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterView>, ApiError> {
    let snap = state.snapshot.borrow().clone();
    match &snap.cluster {
        Some(view) => Ok(Json(ClusterView::clone(view))),
        None => Err(ApiError::not_found(
            "this instance runs alone: a cluster needs storage.postgres",
        )),
    }
}

/// Uptime over 24h, 7d, 30d and 90d by service id, up to the last engine tick (services
/// without data are missing).
pub(crate) async fn uptimes(state: &AppState) -> Result<HashMap<String, Uptime>, ApiError> {
    let open = state.snapshot.borrow().open_minute.clone();
    Ok(state.store.uptimes(state.clock.now(), open).await?)
}

/// `GET /api/v1/services/{id}/history`: the last 90 days (uptime, worst status, incidents)
/// and 24 hours of response times.
pub async fn service_history(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<ServiceHistory>, ApiError> {
    if state.site.borrow().topology.service_index(&id).is_none() {
        return Err(ApiError::not_found(format!("no service `{id}`")));
    }
    let open = state.snapshot.borrow().open_minute.clone();
    Ok(Json(
        state
            .store
            .service_history(id, state.clock.now(), open)
            .await?,
    ))
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
    QueryParams(q): QueryParams<IncidentQuery>,
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
    PathParams(id): PathParams<String>,
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
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    body: Option<JsonBody<AcknowledgeRequest>>,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(&state, &headers)?;
    let by = body.and_then(|JsonBody(b)| b.by);
    Ok(Json(acknowledge_as(&state, id, by).await?))
}

/// Acknowledges open incident `id` on behalf of `by`, for the API and the console alike:
/// `409` when it is resolved or open on another instance (a cluster's leader alone
/// changes incidents), `404` when there is none.
pub(crate) async fn acknowledge_as(
    state: &AppState,
    id: String,
    by: Option<String>,
) -> Result<IncidentView, ApiError> {
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
        Ok(Some(view)) => Ok(view),
        Ok(None) => match state.store.incident(id.clone()).await? {
            Some(inc) if inc.status == IncidentStatus::Resolved => {
                Err(ApiError::conflict(format!("incident `{id}` is resolved")))
            }
            Some(_) => Err(ApiError::conflict(format!(
                "incident `{id}` is open on the cluster's leader, not on this instance: \
                 acknowledge it there"
            ))),
            None => Err(ApiError::not_found(format!("no incident `{id}`"))),
        },
        Err(_) => Err(ApiError::unavailable("shutting down")),
    }
}

/// `POST /api/v1/changes` body: `{id?, platform?, service?, summary, at?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub(crate) id: Option<String>,
    pub(crate) platform: Option<String>,
    pub(crate) service: Option<String>,
    pub(crate) summary: String,
    pub(crate) at: Option<Timestamp>,
}

impl ChangeRequest {
    /// The change this body registers, or why it is refused; `now` when no `at` is given.
    /// With the deserialization, the parser the `api_bodies` fuzz target drives.
    pub fn into_change(self, now: Timestamp) -> Result<Change, String> {
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|v| v.trim().is_empty());
        if self.summary.trim().is_empty() {
            return Err("summary must not be empty".into());
        }
        if blank(&self.id) || blank(&self.platform) || blank(&self.service) {
            return Err("id, platform and service must not be empty when given".into());
        }
        if let Some(at) = self.at {
            check_input_time(at).map_err(|e| format!("at: {e}"))?;
            if !(now - CHANGE_MAX_AGE..=now + CHANGE_MAX_AHEAD).contains(&at) {
                return Err(format!(
                    "at: must be within the last 90 days and at most 1 hour ahead of now ({})",
                    api_time(now)
                ));
            }
        }
        Ok(Change {
            id: self.id.unwrap_or_else(|| random_id("chg-")),
            platform: self.platform,
            service: self.service,
            summary: self.summary,
            at: self.at.unwrap_or(now),
        })
    }
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
    QueryParams(q): QueryParams<ChangeQuery>,
) -> Result<Json<ChangeList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok(Json(ChangeList {
        changes: state.store.changes(limit).await?,
    }))
}

/// How far back a change may be dated: further than the 72 h a change stays a suspect is
/// history, and further still a typo (a year 1 `at`).
const CHANGE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(90);
/// How far ahead a change may be dated: clock skew between the deployer and tocsin.
const CHANGE_MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// `201` with a new change; `200` with the stored one when the id exists with the same
/// content (a retry: one without `at` matches any `at`); `409` when it exists otherwise.
pub async fn register_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<ChangeRequest>, ApiError>,
) -> Result<(StatusCode, Json<Change>), ApiError> {
    authorize(&state, &headers)?;
    let JsonBody(request) = body?;
    let (status, change) = store_change(&state, request).await?;
    Ok((status, Json(change)))
}

/// Registers the change `request` describes, for the API and the console alike: the status
/// says whether it was new (`201`) or the retry of a stored one (`200`).
pub(crate) async fn store_change(
    state: &AppState,
    request: ChangeRequest,
) -> Result<(StatusCode, Change), ApiError> {
    let explicit_id = request.id.is_some();
    let dated = request.at.is_some();
    let change = request
        .into_change(state.clock.now())
        .map_err(ApiError::bad_request)?;
    let _writing = state.writes.lock().await;
    if explicit_id && let Some(stored) = state.store.change(change.id.clone()).await? {
        let same = stored.platform == change.platform
            && stored.service == change.service
            && stored.summary == change.summary
            && (!dated || change.at == stored.at);
        return if same {
            Ok((StatusCode::OK, stored))
        } else {
            Err(ApiError::conflict(format!(
                "change `{}` exists with other content; use another id",
                change.id
            )))
        };
    }
    state.store.save_change(&change);
    state.store.flush().await?;
    state
        .engine
        .send(Control::RecordChange(change.clone()))
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    Ok((StatusCode::CREATED, change))
}

/// A time as the API writes it in messages.
fn api_time(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `prefix` and 10 random base32 characters.
fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut id = String::from(prefix);
    for _ in 0..10 {
        id.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    id
}

/// A maintenance window as the API lists it.
#[derive(Serialize)]
pub struct MaintenanceView {
    pub id: String,
    pub services: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub summary: String,
    /// `scheduled | in_progress | completed` (the Statuspage names).
    pub status: &'static str,
    /// `config` or `api`.
    pub source: &'static str,
}

#[derive(Serialize)]
pub struct MaintenanceList {
    pub maintenances: Vec<MaintenanceView>,
}

fn window_status(starts_at: Timestamp, ends_at: Timestamp, now: Timestamp) -> &'static str {
    if now < starts_at {
        "scheduled"
    } else if now < ends_at {
        "in_progress"
    } else {
        "completed"
    }
}

/// Every maintenance window, from the config (ids `config-N`) and the API, by start.
pub(crate) async fn all_maintenances(state: &AppState) -> Result<Vec<MaintenanceWindow>, ApiError> {
    let site = state.site.borrow().clone();
    let topology = &site.topology;
    let mut list: Vec<MaintenanceWindow> = topology
        .maintenances
        .iter()
        .enumerate()
        .map(|(i, m)| MaintenanceWindow {
            id: format!("config-{i}"),
            services: m
                .services
                .iter()
                .map(|&s| topology.services[s].id.clone())
                .collect(),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            summary: m.summary.clone(),
        })
        .collect();
    list.extend(state.store.maintenances().await?);
    list.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
    Ok(list)
}

pub async fn maintenances(
    State(state): State<AppState>,
) -> Result<Json<MaintenanceList>, ApiError> {
    let now = state.clock.now();
    let maintenances = all_maintenances(&state)
        .await?
        .into_iter()
        .map(|w| MaintenanceView {
            status: window_status(w.starts_at, w.ends_at, now),
            source: if w.id.starts_with("config-") {
                "config"
            } else {
                "api"
            },
            id: w.id,
            services: w.services,
            starts_at: w.starts_at,
            ends_at: w.ends_at,
            summary: w.summary,
        })
        .collect();
    Ok(Json(MaintenanceList { maintenances }))
}

/// `POST /api/v1/maintenances` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub(crate) id: Option<String>,
    pub(crate) services: Vec<String>,
    pub(crate) starts_at: Timestamp,
    pub(crate) ends_at: Timestamp,
    #[serde(default)]
    pub(crate) summary: String,
}

/// How far ahead a maintenance may start: further is a typo, or an attempt to silence a
/// service by scheduling it in the distant future and letting it be forgotten.
const MAINTENANCE_MAX_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(365);
/// Longest maintenance window: a month silences a service long enough for any planned work;
/// a longer one is an outage nobody would be told about.
const MAINTENANCE_MAX_LENGTH: chrono::TimeDelta = chrono::TimeDelta::days(31);

impl MaintenanceRequest {
    /// The window this body adds at `now`, or every reason it is refused, `; `-separated.
    /// With the deserialization, the parser the `api_bodies` fuzz target drives.
    pub fn into_window(
        self,
        topology: &Topology,
        now: Timestamp,
    ) -> Result<MaintenanceWindow, String> {
        let mut problems = Vec::new();
        if self.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            problems.push("id: must not be empty when given".to_string());
        }
        if self
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("config-"))
        {
            problems.push(
                "id: `config-` ids are the configuration's [[maintenances]]; choose another"
                    .to_string(),
            );
        }
        if self.services.is_empty() {
            problems.push("services: must name at least one service".to_string());
        }
        for (i, s) in self.services.iter().enumerate() {
            if topology.service_index(s).is_none() {
                problems.push(format!("services[{i}]: unknown service `{s}`"));
            }
        }
        for (key, t) in [("starts_at", self.starts_at), ("ends_at", self.ends_at)] {
            if let Err(e) = check_input_time(t) {
                problems.push(format!("{key}: {e}"));
            }
        }
        if self.starts_at > now + MAINTENANCE_MAX_AHEAD {
            problems.push(format!(
                "starts_at: must be at most 365 days ahead of now ({})",
                api_time(now)
            ));
        }
        if self.ends_at <= self.starts_at {
            problems.push("ends_at: must be after starts_at".to_string());
        } else if self.ends_at - self.starts_at > MAINTENANCE_MAX_LENGTH {
            problems.push("ends_at: a window lasts at most 31 days".to_string());
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(MaintenanceWindow {
            id: self.id.unwrap_or_else(|| random_id("mnt-")),
            services: self.services,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            summary: self.summary,
        })
    }
}

/// `201` with a new window; `200` with the stored one when the id exists with the same
/// content; `409` when it exists otherwise.
pub async fn add_maintenance(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<JsonBody<MaintenanceRequest>, ApiError>,
) -> Result<(StatusCode, Json<MaintenanceWindow>), ApiError> {
    authorize(&state, &headers)?;
    let JsonBody(request) = body?;
    let (status, window) = store_maintenance(&state, request).await?;
    Ok((status, Json(window)))
}

/// Adds the window `request` describes and announces it to subscribers, for the API and
/// the console alike; the status as [`store_change`]'s.
pub(crate) async fn store_maintenance(
    state: &AppState,
    request: MaintenanceRequest,
) -> Result<(StatusCode, MaintenanceWindow), ApiError> {
    let site = state.site.borrow().clone();
    let explicit_id = request.id.is_some();
    let window = request
        .into_window(&site.topology, state.clock.now())
        .map_err(ApiError::bad_request)?;
    let _writing = state.writes.lock().await;
    if explicit_id
        && let Some(stored) = state
            .store
            .maintenances()
            .await?
            .into_iter()
            .find(|w| w.id == window.id)
    {
        let same = stored.services == window.services
            && stored.starts_at == window.starts_at
            && stored.ends_at == window.ends_at
            && stored.summary == window.summary;
        return if same {
            Ok((StatusCode::OK, stored))
        } else {
            Err(ApiError::conflict(format!(
                "maintenance `{}` exists with other content; use another id",
                window.id
            )))
        };
    }
    state.store.save_maintenance(&window);
    state.store.flush().await?;
    state
        .engine
        .send(Control::AddMaintenance(window.clone()))
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    if site.subscriptions.is_some() {
        let names = site
            .topology
            .services
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        announce_maintenance(&state.store, &window, &names, state.clock.now()).await?;
        state.notices.notify_waiters();
    }
    Ok((StatusCode::CREATED, window))
}
