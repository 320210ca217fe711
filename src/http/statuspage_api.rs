//! `/api/v2/*.json`: the Atlassian Statuspage public API v2 shapes, so existing widgets and
//! aggregators read tocsin like any Statuspage page. Services are the components.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::clock::Timestamp;
use crate::engine::{ServiceView, Snapshot};
use crate::incident::public::{incident_name, public_updates};
use crate::incident::{ComponentStatus, Impact, IncidentStatus, IncidentView};
use crate::store::IncidentFilter;

/// Statuspage lists this many recent incidents.
const RECENT_INCIDENTS: usize = 50;

#[derive(Serialize)]
pub struct Page {
    pub id: String,
    pub name: String,
    pub url: String,
    pub time_zone: &'static str,
    pub updated_at: Timestamp,
}

#[derive(Serialize)]
pub struct Status {
    pub indicator: &'static str,
    pub description: &'static str,
}

#[derive(Serialize, Clone)]
pub struct Component {
    pub id: String,
    pub name: String,
    pub status: ComponentStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub position: usize,
    pub description: Option<String>,
    pub showcase: bool,
    pub start_date: Option<String>,
    pub group_id: Option<String>,
    pub page_id: String,
    pub group: bool,
    pub only_show_if_degraded: bool,
}

#[derive(Serialize)]
pub struct AffectedComponent {
    pub code: String,
    pub name: String,
    pub old_status: ComponentStatus,
    pub new_status: ComponentStatus,
}

#[derive(Serialize)]
pub struct IncidentUpdate {
    pub id: String,
    pub status: &'static str,
    pub body: String,
    pub incident_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub display_at: Timestamp,
    pub affected_components: Vec<AffectedComponent>,
    pub deliver_notifications: bool,
    pub custom_tweet: Option<String>,
    pub tweet_id: Option<String>,
}

#[derive(Serialize)]
pub struct Incident {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub monitoring_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub impact: &'static str,
    pub shortlink: String,
    pub started_at: Timestamp,
    pub page_id: String,
    pub incident_updates: Vec<IncidentUpdate>,
    pub components: Vec<Component>,
    /// Scheduled maintenances only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<Timestamp>,
}

#[derive(Serialize)]
pub struct Summary {
    pub page: Page,
    pub status: Status,
    pub components: Vec<Component>,
    pub incidents: Vec<Incident>,
    pub scheduled_maintenances: Vec<Incident>,
}

#[derive(Serialize)]
pub struct StatusOnly {
    pub page: Page,
    pub status: Status,
}

#[derive(Serialize)]
pub struct Components {
    pub page: Page,
    pub components: Vec<Component>,
}

#[derive(Serialize)]
pub struct Incidents {
    pub page: Page,
    pub incidents: Vec<Incident>,
}

#[derive(Serialize)]
pub struct ScheduledMaintenances {
    pub page: Page,
    pub scheduled_maintenances: Vec<Incident>,
}

/// What every v2 document is built from.
struct Context {
    page: Page,
    snapshot: std::sync::Arc<Snapshot>,
    base: String,
    started: Timestamp,
}

fn context(state: &AppState) -> Context {
    let snapshot = state.snapshot.borrow().clone();
    let site = state.site.borrow().clone();
    let base = state.base_url(&site);
    Context {
        page: Page {
            id: site.vantage.clone(),
            name: site.server.page_title.clone(),
            url: base.clone(),
            time_zone: "Etc/UTC",
            updated_at: snapshot.generated_at,
        },
        started: state.started,
        snapshot,
        base,
    }
}

impl Context {
    fn component(&self, position: usize, s: &ServiceView) -> Component {
        Component {
            id: s.id.clone(),
            name: s.name.clone(),
            status: s.status,
            created_at: self.started,
            updated_at: self.snapshot.generated_at,
            position: position + 1,
            description: None,
            showcase: true,
            start_date: None,
            group_id: None,
            page_id: self.page.id.clone(),
            group: false,
            only_show_if_degraded: false,
        }
    }

    fn components(&self) -> Vec<Component> {
        self.snapshot
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| self.component(i, s))
            .collect()
    }

    fn status(&self) -> Status {
        let worst_component = self
            .snapshot
            .services
            .iter()
            .map(|s| s.status)
            .filter(|s| s.is_failing())
            .max();
        let worst_impact = self
            .snapshot
            .open_incidents
            .iter()
            .map(|i| i.impact)
            .max()
            .unwrap_or(Impact::None);
        let from_components = match worst_component {
            Some(ComponentStatus::MajorOutage) => Impact::Critical,
            Some(ComponentStatus::PartialOutage) => Impact::Major,
            Some(_) => Impact::Minor,
            None => Impact::None,
        };
        let in_maintenance = self
            .snapshot
            .services
            .iter()
            .any(|s| s.status == ComponentStatus::UnderMaintenance);
        match worst_impact.max(from_components) {
            Impact::Critical => Status {
                indicator: "critical",
                description: "Major Service Outage",
            },
            Impact::Major => Status {
                indicator: "major",
                description: "Partial System Outage",
            },
            Impact::Minor => Status {
                indicator: "minor",
                description: "Partially Degraded Service",
            },
            Impact::None if in_maintenance => Status {
                indicator: "maintenance",
                description: "Service Under Maintenance",
            },
            Impact::None => Status {
                indicator: "none",
                description: "All Systems Operational",
            },
        }
    }

    fn incident(&self, view: &IncidentView) -> Incident {
        let components: Vec<Component> = self
            .snapshot
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| view.services.contains(&s.id))
            .map(|(i, s)| self.component(i, s))
            .collect();
        // The customer-facing updates: this API is as public as the page.
        let mut updates: Vec<IncidentUpdate> = public_updates(view)
            .into_iter()
            .enumerate()
            .map(|(i, update)| IncidentUpdate {
                id: format!("{}-{}", view.id, i + 1),
                status: update.status,
                body: update.text,
                incident_id: view.id.clone(),
                created_at: update.at,
                updated_at: update.at,
                display_at: update.at,
                affected_components: Vec::new(),
                deliver_notifications: true,
                custom_tweet: None,
                tweet_id: None,
            })
            .collect();
        if let Some(first) = updates.first_mut() {
            first.affected_components = view
                .per_service
                .iter()
                .map(|(id, s)| AffectedComponent {
                    code: id.clone(),
                    name: s.name.clone(),
                    old_status: ComponentStatus::Operational,
                    new_status: s.component_status,
                })
                .collect();
        }
        updates.reverse();
        let monitoring_at = view
            .timeline
            .iter()
            .rev()
            .find(|e| e.event == "recovered")
            .filter(|_| view.impact_end_at.is_some())
            .map(|e| e.at);
        Incident {
            id: view.id.clone(),
            name: incident_name(view),
            status: match view.status {
                IncidentStatus::Investigating => "investigating",
                IncidentStatus::Identified => "identified",
                IncidentStatus::Monitoring => "monitoring",
                IncidentStatus::Resolved => "resolved",
            },
            created_at: view.detected_at,
            updated_at: view
                .timeline
                .last()
                .map(|e| e.at)
                .unwrap_or(view.detected_at),
            monitoring_at,
            resolved_at: view.resolved_at,
            impact: impact_name(view.impact),
            shortlink: format!("{}/incidents/{}", self.base, view.id),
            started_at: view.onset_at,
            page_id: self.page.id.clone(),
            incident_updates: updates,
            components,
            scheduled_for: None,
            scheduled_until: None,
        }
    }
}

fn impact_name(impact: Impact) -> &'static str {
    match impact {
        Impact::None => "none",
        Impact::Minor => "minor",
        Impact::Major => "major",
        Impact::Critical => "critical",
    }
}

async fn recent(state: &AppState, ctx: &Context) -> Result<Vec<Incident>, ApiError> {
    let now = state.clock.now();
    let stored = state
        .store
        .incidents(IncidentFilter {
            open: None,
            service: None,
            limit: RECENT_INCIDENTS,
        })
        .await?;
    Ok(stored
        .iter()
        .map(|inc| {
            let live = ctx.snapshot.open_incidents.iter().find(|v| v.id == inc.id);
            match live {
                Some(view) => ctx.incident(view),
                None => ctx.incident(&inc.view(now)),
            }
        })
        .collect())
}

fn unresolved(ctx: &Context) -> Vec<Incident> {
    ctx.snapshot
        .open_incidents
        .iter()
        .map(|v| ctx.incident(v))
        .collect()
}

async fn maintenances(state: &AppState, ctx: &Context) -> Result<Vec<Incident>, ApiError> {
    let now = state.clock.now();
    let windows = super::api::all_maintenances(state).await?;
    Ok(windows
        .into_iter()
        .filter(|w| w.ends_at > now)
        .map(|w| {
            let status = if now < w.starts_at {
                "scheduled"
            } else {
                "in_progress"
            };
            let components: Vec<Component> = ctx
                .snapshot
                .services
                .iter()
                .enumerate()
                .filter(|(_, s)| w.services.contains(&s.id))
                .map(|(i, s)| ctx.component(i, s))
                .collect();
            Incident {
                name: if w.summary.is_empty() {
                    "Planned maintenance".to_string()
                } else {
                    w.summary.clone()
                },
                status,
                created_at: w.starts_at,
                updated_at: w.starts_at,
                monitoring_at: None,
                resolved_at: None,
                impact: "maintenance",
                shortlink: ctx.base.clone(),
                started_at: w.starts_at,
                page_id: ctx.page.id.clone(),
                incident_updates: vec![IncidentUpdate {
                    id: format!("{}-1", w.id),
                    status,
                    body: w.summary.clone(),
                    incident_id: w.id.clone(),
                    created_at: w.starts_at,
                    updated_at: w.starts_at,
                    display_at: w.starts_at,
                    affected_components: Vec::new(),
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                }],
                components,
                scheduled_for: Some(w.starts_at),
                scheduled_until: Some(w.ends_at),
                id: w.id,
            }
        })
        .collect())
}

pub async fn summary(State(state): State<AppState>) -> Result<Json<Summary>, ApiError> {
    let ctx = context(&state);
    let scheduled_maintenances = maintenances(&state, &ctx).await?;
    Ok(Json(Summary {
        status: ctx.status(),
        components: ctx.components(),
        incidents: unresolved(&ctx),
        scheduled_maintenances,
        page: ctx.page,
    }))
}

pub async fn status(State(state): State<AppState>) -> Json<StatusOnly> {
    let ctx = context(&state);
    Json(StatusOnly {
        status: ctx.status(),
        page: ctx.page,
    })
}

pub async fn components(State(state): State<AppState>) -> Json<Components> {
    let ctx = context(&state);
    Json(Components {
        components: ctx.components(),
        page: ctx.page,
    })
}

pub async fn incidents(State(state): State<AppState>) -> Result<Json<Incidents>, ApiError> {
    let ctx = context(&state);
    let incidents = recent(&state, &ctx).await?;
    Ok(Json(Incidents {
        incidents,
        page: ctx.page,
    }))
}

pub async fn unresolved_incidents(State(state): State<AppState>) -> Json<Incidents> {
    let ctx = context(&state);
    Json(Incidents {
        incidents: unresolved(&ctx),
        page: ctx.page,
    })
}

pub async fn scheduled_maintenances(
    State(state): State<AppState>,
) -> Result<Json<ScheduledMaintenances>, ApiError> {
    let ctx = context(&state);
    let scheduled_maintenances = maintenances(&state, &ctx).await?;
    Ok(Json(ScheduledMaintenances {
        scheduled_maintenances,
        page: ctx.page,
    }))
}

/// `scheduled-maintenances/upcoming.json`: windows not started yet.
pub async fn upcoming_maintenances(
    State(state): State<AppState>,
) -> Result<Json<ScheduledMaintenances>, ApiError> {
    filtered_maintenances(&state, "scheduled").await
}

/// `scheduled-maintenances/active.json`: windows in progress.
pub async fn active_maintenances(
    State(state): State<AppState>,
) -> Result<Json<ScheduledMaintenances>, ApiError> {
    filtered_maintenances(&state, "in_progress").await
}

async fn filtered_maintenances(
    state: &AppState,
    status: &str,
) -> Result<Json<ScheduledMaintenances>, ApiError> {
    let ctx = context(state);
    let scheduled_maintenances = maintenances(state, &ctx)
        .await?
        .into_iter()
        .filter(|m| m.status == status)
        .collect();
    Ok(Json(ScheduledMaintenances {
        scheduled_maintenances,
        page: ctx.page,
    }))
}
