//! The HTTP side: metrics, health, the JSON API, the status page and the Statuspage API.
//!
//! Handlers read the engine's [`Snapshot`] from a `watch` channel and past incidents from
//! the store; they never touch engine state. [`router`] builds the whole app, which
//! `app::App::router` hands to tests that drive it without a socket.
//!
//! * `api`: the native JSON API (`/api/v1`);
//! * `status_page`: the HTML status page and incident pages;
//! * `statuspage_api`: the Atlassian Statuspage v2 documents (`/api/v2`);
//! * `feeds`: badges and the Atom history;
//! * `subscriptions`: subscribing to the status page, confirming, unsubscribing;
//! * `noc`: the operators' console (`/noc`): login and sessions, the incident board,
//!   actions, regulator notification drafts and post-mortems, the targets view;
//! * `push`: results posted by field probes for `push` targets;
//! * `exporter`: the blackbox-compatible `/probe` and `[exporter]`;
//! * `error`: the JSON error shape; `extract`: extractors whose rejections take it;
//! * `compress`: gzip of large bodies off the runtime threads;
//! * `server`: the listener, with its connection limits and bounded shutdown.

pub mod api;
mod compress;
mod error;
mod exporter;
mod extract;
mod feeds;
mod noc;
mod push;
mod server;
mod status_page;
mod statuspage_api;
mod subscriptions;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use url::Url;

use crate::alert::SubscriptionsSpec;
use crate::alert::subscribers::HourlyLimit;
use crate::clock::{Clock, Timestamp};
use crate::engine::{Control, Snapshot};
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::probe::module::ModuleSpec;
use crate::store::Store;
use crate::topology::Topology;
use crate::validation::{Issues, read_secret_file};

pub use error::ApiError;
pub use exporter::{ExporterConfig, ExporterSpec};
pub use noc::hash_password;
pub use server::ListenerSpec;
pub(crate) use server::serve;

/// The parsers of API bodies and `/probe` requests, for the fuzz targets in `fuzz/` only
/// (`--cfg fuzzing`): no part of the library's API.
#[cfg(fuzzing)]
pub mod parsers {
    pub use super::api::{ChangeRequest, MaintenanceRequest};
    pub use super::exporter::probe_request;
    pub use super::push::PushedResult;
}
pub use status_page::{PageConfig, PageSpec};

use exporter::ExporterSlots;

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
    /// The NOC console's users: `name:role:argon2 hash` lines (roles `viewer`, `operator`).
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a request head.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open without a request.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Requests one connection may carry before tocsin closes it.
    #[serde(default = "default_max_requests_per_connection")]
    pub max_requests_per_connection: u64,
    /// How long requests in progress get to finish on shutdown.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            page_title: default_page_title(),
            external_url: None,
            admin_token_file: None,
            users_file: None,
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_requests_per_connection: default_max_requests_per_connection(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".to_string()
}
fn default_page_title() -> String {
    "Service status".to_string()
}
fn default_max_connections() -> usize {
    1024
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_requests_per_connection() -> u64 {
    1000
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub listen: SocketAddr,
    pub page_title: String,
    pub external_url: Option<Url>,
    pub admin_token: Option<String>,
    /// The console's users (`server.users_file`); none when unset.
    pub users: Vec<noc::ConsoleUser>,
    /// Read when the listener starts: changes need a restart.
    pub listener: ListenerSpec,
}

impl ServerConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ServerSpec> {
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
        let users = match &self.users_file {
            None => Vec::new(),
            Some(file) => match std::fs::read_to_string(file) {
                Ok(text) => match noc::parse_users(&text) {
                    Ok(users) => users,
                    Err(problems) => {
                        for problem in problems {
                            issues.push(format!("{path}.users_file"), problem);
                        }
                        Vec::new()
                    }
                },
                Err(e) => {
                    issues.push(
                        format!("{path}.users_file"),
                        format!("cannot read {}: {e}", file.display()),
                    );
                    Vec::new()
                }
            },
        };
        if self.max_connections == 0 {
            issues.push(format!("{path}.max_connections"), "must be at least 1");
        }
        if self.max_requests_per_connection == 0 {
            issues.push(
                format!("{path}.max_requests_per_connection"),
                "must be at least 1",
            );
        }
        for (key, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if value.is_zero() {
                issues.push(format!("{path}.{key}"), "must be greater than zero");
            }
        }
        if issues.len() > before {
            return None;
        }
        Some(ServerSpec {
            listen: listen?,
            page_title: self.page_title.clone(),
            external_url,
            admin_token,
            users,
            listener: ListenerSpec {
                max_connections: self.max_connections,
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                max_requests_per_connection: self.max_requests_per_connection,
                shutdown_timeout: self.shutdown_timeout,
            },
        })
    }
}

/// What the HTTP side serves from the configuration, replaced whole on a reload.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub server: ServerSpec,
    /// `[modules.*]`: probe templates for `GET /probe`.
    pub modules: BTreeMap<String, ModuleSpec>,
    /// This instance's vantage (the Statuspage page id).
    pub vantage: String,
    /// As configured, without the API's maintenance windows.
    pub topology: Arc<Topology>,
    /// `[page]`: what the public page shows.
    pub page: PageSpec,
    /// `[exporter]`: who may make `/probe` probe what.
    pub exporter: ExporterSpec,
    /// `[subscriptions]`, when enabled.
    pub subscriptions: Option<SubscriptionsSpec>,
}

/// A reload request from `POST /-/reload`; answered with the validation errors, if any.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    pub site: watch::Receiver<Arc<SiteSpec>>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Commands for the engine (changes, acknowledgements).
    pub engine: mpsc::Sender<Control>,
    /// Runs `/probe` requests.
    pub prober: Prober,
    /// The scheduler's bound on probes in flight, which `/probe` runs count against.
    pub in_flight: Arc<Semaphore>,
    /// `/probe` runs in progress, against `[exporter] max_concurrent`.
    pub exporter_slots: Arc<ExporterSlots>,
    /// Held by the write endpoints that create by id, from looking the id up to storing,
    /// so that two requests with one id cannot both create it.
    pub writes: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the subscribers' notice deliverer after a maintenance announcement is queued.
    pub notices: Arc<tokio::sync::Notify>,
    /// Subscription requests per address (hashed) and hour.
    pub subscribe_limit: Arc<std::sync::Mutex<HourlyLimit>>,
    /// Console login attempts per name and hour.
    pub login_limit: Arc<std::sync::Mutex<HourlyLimit>>,
    /// When this process started (Statuspage `created_at` of components).
    pub started: Timestamp,
    /// True once the store is open and the schedulers run.
    pub ready: watch::Receiver<bool>,
    /// The address actually listened on, once serving (`server.listen` may say port 0, or
    /// the demo may listen elsewhere).
    pub listening: Arc<OnceLock<SocketAddr>>,
    pub clock: Clock,
}

impl AppState {
    /// Where links in public documents point: `server.external_url`, else the address
    /// listened on. No trailing slash.
    pub(crate) fn base_url(&self, site: &SiteSpec) -> String {
        match &site.server.external_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => {
                let address = self.listening.get().copied().unwrap_or(site.server.listen);
                format!("http://{address}")
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page::index))
        .route("/incidents/{id}", get(status_page::incident))
        .route("/badge/{file}", get(feeds::badge))
        .route("/history.atom", get(feeds::history))
        .route("/metrics", get(metrics))
        .route("/probe", get(exporter::probe))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/-/reload", post(reload))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/cluster", get(api::cluster))
        .route("/api/v1/services/{id}/history", get(api::service_history))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/incidents/{id}", get(api::incident))
        .route("/api/v1/incidents/{id}/acknowledge", post(api::acknowledge))
        .route(
            "/api/v1/changes",
            get(api::changes).post(api::register_change),
        )
        .route(
            "/api/v1/targets/{id}/results",
            post(push::post_result).layer(DefaultBodyLimit::max(push::MAX_BODY_BYTES)),
        )
        .route(
            "/api/v1/maintenances",
            get(api::maintenances).post(api::add_maintenance),
        )
        .route("/api/v1/subscriptions", post(subscriptions::subscribe_json))
        .route("/subscriptions", post(subscriptions::subscribe_form))
        .route("/subscriptions/confirm", get(subscriptions::confirm))
        .route(
            "/subscriptions/unsubscribe",
            get(subscriptions::unsubscribe).post(subscriptions::unsubscribe),
        )
        .route("/api/v2/summary.json", get(statuspage_api::summary))
        .route("/api/v2/status.json", get(statuspage_api::status))
        .route("/api/v2/components.json", get(statuspage_api::components))
        .route("/api/v2/incidents.json", get(statuspage_api::incidents))
        .route(
            "/api/v2/incidents/unresolved.json",
            get(statuspage_api::unresolved_incidents),
        )
        .route(
            "/api/v2/scheduled-maintenances.json",
            get(statuspage_api::scheduled_maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/upcoming.json",
            get(statuspage_api::upcoming_maintenances),
        )
        .route(
            "/api/v2/scheduled-maintenances/active.json",
            get(statuspage_api::active_maintenances),
        )
        .merge(noc::routes())
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::method_not_allowed("this path does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(compress::gzip_large_bodies))
        // The page with 90-day bars is mostly repeated markup: gzip cuts it about tenfold.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

/// Largest request body read: the API's bodies are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Written and gzipped on the blocking pool as it is sent: at 100 000 targets the text is
/// ~100 MB, and the runtime threads start the probes.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Response {
    let metrics = Arc::clone(&state.metrics);
    compress::streamed(&headers, prometheus::TEXT_FORMAT, move |sink| {
        metrics.render_to(sink)
    })
}

/// Ready once the store is open and the schedulers run, while the store keeps what it is
/// given, and while no probe has failed for a reason of this host within
/// [`crate::metrics::LOCAL_ERROR_HOLD`]: such an instance cannot tell its targets' health.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    if !*state.ready.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    if let Some(problem) = state.store.problem() {
        // A monitor that cannot store its incidents would lose them, and the next restart
        // would forget or repeat them.
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response();
    }
    match state.metrics.recent_local_error(state.clock.now()) {
        Some((at, cause)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "probes cannot run for a reason of this host ({}), last at {}: \
                 see tocsin_probe_local_errors_total and the log\n",
                cause.as_str(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )
            .into_response(),
        None => (StatusCode::OK, "ready\n").into_response(),
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
    let site = state.site.borrow().clone();
    let Some(expected) = site.server.admin_token.as_deref() else {
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
