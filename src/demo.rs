//! `tocsin demo`: simulated voicemail, data and voice endpoints on loopback, an embedded
//! configuration that watches them, and a scripted outage (platform vm-a fails in every
//! region right after an update, ~3% of voicemail subscribers). Alerts arrive on a
//! built-in webhook sink and are logged. The monitor itself is [`crate::app::run`], the
//! same code path as `tocsin run`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppError};
use crate::config::{self, ConfigError, ConfigSource};

pub const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the simulated endpoints: {0}")]
    Simulator(std::io::Error),
    #[error("the embedded configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("--speed must be a positive number")]
    Speed,
    #[error(transparent)]
    App(#[from] AppError),
}

/// Platforms the simulator currently fails.
type Failing = Arc<RwLock<HashSet<String>>>;

/// Runs the demo, serving the monitor on `listener`; `speed` accelerates the scenario
/// (2.0 plays it twice as fast).
pub async fn run(
    listener: TcpListener,
    speed: f64,
    shutdown: CancellationToken,
) -> Result<(), DemoError> {
    if !(speed.is_finite() && speed > 0.0) {
        return Err(DemoError::Speed);
    }
    let scaled = |secs: f64| Duration::from_secs_f64(secs / speed);
    let failing: Failing = Arc::default();
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Simulator)?;
    let voice = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Simulator)?;
    let http_addr = http.local_addr().map_err(DemoError::Simulator)?;
    let voice_addr = voice.local_addr().map_err(DemoError::Simulator)?;
    tokio::spawn(serve_http(http, Arc::clone(&failing), shutdown.clone()));
    tokio::spawn(serve_voice(voice, shutdown.clone()));

    // A fresh state directory per run: the database and the admin token.
    let state = std::env::temp_dir().join(format!("tocsin-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).map_err(DemoError::Simulator)?;
    let token = crate::event::new_event_id();
    std::fs::write(state.join("admin.token"), &token).map_err(DemoError::Simulator)?;
    let toml = demo_config(http_addr, voice_addr, &state, speed);
    let source = ConfigSource::Inline(toml);
    let settings = config::load(&source)?;

    let monitor = listener.local_addr().map_err(DemoError::Simulator)?;
    tracing::info!(
        "demo: status page on http://{monitor}/ — the outage starts in {:?}",
        scaled(20.0)
    );
    let script = Script {
        failing,
        monitor,
        token,
    };
    tokio::spawn(script.play(
        [
            (scaled(15.0), Step::RegisterUpdate),
            (scaled(20.0), Step::Fail),
            (scaled(140.0), Step::Recover),
        ],
        shutdown.clone(),
    ));
    let result = app::run(source, settings, listener, shutdown).await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(result?)
}

enum Step {
    /// The operator registers the update through the API, as a deploy pipeline would.
    RegisterUpdate,
    Fail,
    Recover,
}

/// The scripted outage: an update on vm-a, then vm-a fails everywhere, then recovers.
struct Script {
    failing: Failing,
    monitor: SocketAddr,
    token: String,
}

impl Script {
    async fn play(self, steps: [(Duration, Step); 3], shutdown: CancellationToken) {
        let start = tokio::time::Instant::now();
        for (at, step) in steps {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(start + at) => {}
            }
            match step {
                Step::RegisterUpdate => self.register_update().await,
                Step::Fail => {
                    tracing::warn!("demo: platform vm-a stops answering in every region");
                    self.failing
                        .write()
                        .expect("not poisoned")
                        .insert("vm-a".into());
                }
                Step::Recover => {
                    tracing::info!("demo: platform vm-a is back");
                    self.failing.write().expect("not poisoned").remove("vm-a");
                }
            }
        }
    }

    async fn register_update(&self) {
        let change = serde_json::json!({
            "id": "chg-42",
            "platform": "vm-a",
            "service": "voicemail",
            "summary": "messaging platform software update",
        });
        let sent = reqwest::Client::new()
            .post(format!("http://{}/api/v1/changes", self.monitor))
            .bearer_auth(&self.token)
            .json(&change)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!("demo: software update chg-42 registered on voicemail platform vm-a")
            }
            Ok(r) => tracing::error!(status = %r.status(), "demo: registering the update failed"),
            Err(e) => tracing::error!(error = %e, "demo: registering the update failed"),
        }
    }
}

async fn serve_http(listener: TcpListener, failing: Failing, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/vm/{platform}/{region}", get(voicemail))
        .route("/data/{region}", get(|| async { "data session ok" }))
        .route("/sink", post(sink))
        .with_state(failing);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}

async fn voicemail(
    State(failing): State<Failing>,
    Path((platform, _region)): Path<(String, String)>,
) -> (StatusCode, &'static str) {
    if failing.read().expect("not poisoned").contains(&platform) {
        (StatusCode::SERVICE_UNAVAILABLE, "mailbox store unavailable")
    } else {
        (StatusCode::OK, "mailbox store ready")
    }
}

/// The built-in webhook sink: logs each alert event it receives.
async fn sink(body: axum::body::Bytes) -> StatusCode {
    match serde_json::from_slice::<crate::event::AlertEvent>(&body) {
        Ok(crate::event::AlertEvent { incident: None, .. }) => StatusCode::NO_CONTENT,
        Ok(event) => {
            let inc = event.incident.as_ref().expect("matched above");
            let cause = inc
                .suspected_cause
                .as_ref()
                .map(|c| {
                    format!(
                        ", most likely caused by {} registered {} before onset",
                        c.change_id,
                        humantime::format_duration(Duration::from_secs(c.lag_seconds))
                    )
                })
                .unwrap_or_default();
            tracing::warn!(
                "ALERT {} {}: {} {}, {} subscribers at peak ({:.1}%), {} user-minutes, scope {}, platforms [{}], regions [{}]{cause}",
                serde_json::to_value(event.kind)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?"),
                inc.id,
                inc.services.join("+"),
                inc.severity.as_str(),
                inc.peak_affected,
                inc.per_service
                    .values()
                    .map(|s| s.peak_share)
                    .fold(0.0, f64::max)
                    * 100.0,
                inc.user_minutes,
                serde_json::to_value(inc.scope)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?"),
                inc.platforms.join(", "),
                inc.regions.join(", "),
            );
            StatusCode::NO_CONTENT
        }
        Err(e) => {
            tracing::error!(error = %e, "demo sink: unreadable alert");
            StatusCode::BAD_REQUEST
        }
    }
}

/// A voice edge that answers every connection with a SIP status line.
async fn serve_voice(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        if let Ok((mut stream, _)) = accepted {
            tokio::spawn(async move {
                let _ = stream.write_all(b"SIP/2.0 200 OK\r\n\r\n").await;
            });
        }
    }
}

/// The embedded configuration: three services of 30 M subscribers in four regions.
pub fn demo_config(
    http: SocketAddr,
    voice: SocketAddr,
    state: &std::path::Path,
    speed: f64,
) -> String {
    // Intervals shrink with speed down to 100 ms; the timeout stays below the interval.
    let millis = |secs: f64| ((secs * 1000.0) / speed).max(100.0).round() as u64;
    let interval = millis(5.0);
    let timeout = millis(2.0).min(interval / 2);
    let mut out = format!(
        r#"[server]
page_title = "Example Telecom status (demo)"
admin_token_file = "{token}"

[storage]
sqlite = "{db}"

[vantage]
name = "demo"

[defaults]
interval = "{interval}ms"
timeout = "{timeout}ms"
failure_threshold = 3
success_threshold = 2
degraded_latency = "{degraded}ms"
resolve_after = "{resolve}ms"

[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 30_000_000
class = "feature"

[[services]]
id = "data"
name = "Mobile data"
subscribers = 30_000_000
class = "internet"

[[services]]
id = "voice"
name = "Voice calls"
subscribers = 30_000_000
class = "telephony"

[[receivers]]
name = "demo-sink"
type = "webhook"
url = "http://{http}/sink"
min_severity = "sev4"
update_interval = "{update}ms"
"#,
        db = state
            .join("tocsin.db")
            .display()
            .to_string()
            .replace('\\', "\\\\"),
        token = state
            .join("admin.token")
            .display()
            .to_string()
            .replace('\\', "\\\\"),
        degraded = timeout * 3 / 4,
        resolve = millis(60.0),
        // Scaled like the rest: the regions joining show as updates within the outage.
        update = millis(10.0),
    );
    for region in REGIONS {
        for (platform, subscribers) in [("vm-a", 225_000), ("vm-b", 7_275_000)] {
            out.push_str(&format!(
                r#"
[[groups]]
id = "{platform}-{region}"
service = "voicemail"
platform = "{platform}"
region = "{region}"
subscribers = {subscribers}

[[targets]]
id = "{platform}-{region}-store"
groups = ["{platform}-{region}"]
probe = {{ type = "http", url = "http://{http}/vm/{platform}/{region}", body_contains = "ready" }}
"#
            ));
        }
        out.push_str(&format!(
            r#"
[[groups]]
id = "data-{region}"
service = "data"
platform = "pgw-1"
region = "{region}"
subscribers = 7_500_000

[[targets]]
id = "data-{region}-gw"
groups = ["data-{region}"]
probe = {{ type = "http", url = "http://{http}/data/{region}" }}

[[groups]]
id = "voice-{region}"
service = "voice"
platform = "ims-1"
region = "{region}"
subscribers = 7_500_000

[[targets]]
id = "voice-{region}-edge"
groups = ["voice-{region}"]
probe = {{ type = "tcp", address = "{voice}", expect_regex = "^SIP/2\\.0 200" }}
"#
        ));
    }
    out
}
