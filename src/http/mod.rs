//! The HTTP side (SPEC §7): metrics, health, the JSON API and the status page.
//!
//! Handlers read the engine's [`Snapshot`] from a `watch` channel and past incidents from
//! the store; they never touch engine state. [`router`] builds the whole app so tests can
//! drive it without a socket.

pub mod api;
mod error;
pub mod exporter;
mod feeds;
mod page;
mod statuspage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use url::Url;

use crate::alert::read_secret_file;
use crate::clock::Clock;
use crate::config::{Issues, Settings};
use crate::engine::Snapshot;
use crate::metrics::Metrics;
use crate::store::Store;

pub use error::ApiError;

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_page_title")]
    pub page_title: String,
    /// Public base URL, used in links inside alerts.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Bearer token for write endpoints; they answer 403 when unset.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            page_title: default_page_title(),
            external_url: None,
            admin_token_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".to_string()
}
fn default_page_title() -> String {
    "Service status".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub page_title: String,
    pub external_url: Option<Url>,
    pub admin_token: Option<String>,
}

impl ServerConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ServerSettings> {
        let before = issues.len();
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| issues.push(format!("{path}.listen"), format!("`{}`: {e}", self.listen)))
            .ok();
        let external_url = match &self.external_url {
            None => None,
            Some(u) => match Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
                Ok(url) => {
                    issues.push(
                        format!("{path}.external_url"),
                        format!("scheme `{}` is not http or https", url.scheme()),
                    );
                    None
                }
                Err(e) => {
                    issues.push(format!("{path}.external_url"), e.to_string());
                    None
                }
            },
        };
        let admin_token = match &self.admin_token_file {
            None => None,
            Some(file) => match read_secret_file(file) {
                Ok(t) => Some(t),
                Err(e) => {
                    issues.push(format!("{path}.admin_token_file"), e);
                    None
                }
            },
        };
        if issues.len() > before {
            return None;
        }
        Some(ServerSettings {
            listen: listen?,
            page_title: self.page_title.clone(),
            external_url,
            admin_token,
        })
    }
}

/// A reload request from `POST /-/reload`; answered with the validation errors, if any.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Commands for the engine (changes, acknowledgements).
    pub engine: mpsc::Sender<crate::engine::Control>,
    /// Runs `/probe` requests.
    pub prober: crate::probe::Prober,
    /// When this process started (Statuspage `created_at` of components).
    pub started: crate::clock::Timestamp,
    /// True once the store is open and the schedulers run.
    pub ready: watch::Receiver<bool>,
    pub clock: Clock,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/incidents/{id}", get(page::incident))
        .route("/badge/{file}", get(feeds::badge))
        .route("/history.atom", get(feeds::history))
        .route("/metrics", get(metrics))
        .route("/probe", get(exporter::probe))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/-/reload", post(reload))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/services/{id}/history", get(api::service_history))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/incidents/{id}", get(api::incident))
        .route("/api/v1/incidents/{id}/acknowledge", post(api::acknowledge))
        .route(
            "/api/v1/changes",
            get(api::changes).post(api::register_change),
        )
        .route(
            "/api/v1/maintenances",
            get(api::maintenances).post(api::add_maintenance),
        )
        .route("/api/v2/summary.json", get(statuspage::summary))
        .route("/api/v2/status.json", get(statuspage::status))
        .route("/api/v2/components.json", get(statuspage::components))
        .route("/api/v2/incidents.json", get(statuspage::incidents))
        .route(
            "/api/v2/incidents/unresolved.json",
            get(statuspage::unresolved_incidents),
        )
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(statuspage::scheduled_maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(statuspage::upcoming_maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(statuspage::active_maintenances),
        )
        .fallback(|| async { ApiError::not_found("no such path") })
        // The page with 90-day bars is mostly repeated markup: gzip cuts it about tenfold.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        state.metrics.render(),
    )
}

async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn reload(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&state, &headers)?;
    let (tx, rx) = oneshot::channel();
    state
        .reload
        .send(tx)
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    match rx.await {
        Ok(Ok(())) => Ok(axum::Json(serde_json::json!({"status": "reloaded"}))),
        Ok(Err(errors)) => Err(ApiError::invalid_config(errors)),
        Err(_) => Err(ApiError::unavailable("shutting down")),
    }
}

/// Bearer token check for write endpoints: 401 without, 403 wrong (or none configured).
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let settings = state.settings.borrow().clone();
    let Some(expected) = settings.server.admin_token.as_deref() else {
        return Err(ApiError::forbidden(
            "write API disabled: set server.admin_token_file",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::forbidden("wrong token"))
    }
}
