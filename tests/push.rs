//! Results pushed from the field: a real client posts to the daemon on loopback with each
//! target's own token; the results make states, incidents and metrics as probed ones do,
//! and silence past `interval + grace` is a `missed_heartbeat` failure.

mod common;

use common::test_config::TestConfig;
use common::{Daemon, metric_sum, temp_dir, wait_for, write};
use serde_json::{Value, json};

const NORTH_TOKEN: &str = "north-handset-token";
const SOUTH_TOKEN: &str = "south-handset-token";

fn config(dir: &std::path::Path) -> TestConfig {
    write(dir, "north.token", &format!("{NORTH_TOKEN}\n"));
    write(dir, "south.token", SOUTH_TOKEN);
    TestConfig::new(dir).body(
        r#"
[[services]]
id = "voice"
[[targets]]
id = "sim-north"
service = "voice"
region = "north"
interval = "400ms"
timeout = "100ms"
probe = { type = "push", token_file = "north.token", grace = "200ms" }
[[targets]]
id = "sim-south"
service = "voice"
region = "south"
interval = "1h"
probe = { type = "push", token_file = "south.token" }
"#,
    )
}

async fn post(daemon: &Daemon, target: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(daemon.url(&format!("/api/v1/targets/{target}/results")))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn target(daemon: &Daemon, id: &str) -> Value {
    let status = daemon.get_json("/api/v1/status").await;
    status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_results_drive_states_incidents_metrics_and_heartbeats() {
    let dir = temp_dir();
    let daemon = Daemon::start(config(dir.path()), dir.path()).await;
    let ok = r#"{"ok": true, "latency_ms": 120}"#;

    // Who may post: the target's own token only.
    assert_eq!(post(&daemon, "sim-north", None, ok).await.0, 401);
    let (status, body) = post(&daemon, "sim-north", Some("guess"), ok).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = post(&daemon, "sim-north", Some(SOUTH_TOKEN), ok).await;
    assert_eq!(status, 403, "another target's token: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another target")
    );
    assert_eq!(post(&daemon, "nowhere", Some(NORTH_TOKEN), ok).await.0, 404);
    // What may be posted: a known shape, a time near now, a bounded body.
    let unknown = r#"{"ok": true, "colour": "red"}"#;
    assert_eq!(
        post(&daemon, "sim-north", Some(NORTH_TOKEN), unknown)
            .await
            .0,
        400
    );
    let old = r#"{"ok": true, "at": "2020-01-01T00:00:00Z"}"#;
    let (status, body) = post(&daemon, "sim-north", Some(NORTH_TOKEN), old).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("at:"),
        "{body}"
    );
    let huge = format!(r#"{{"ok": false, "detail": "{}"}}"#, "x".repeat(8 * 1024));
    assert_eq!(
        post(&daemon, "sim-north", Some(NORTH_TOKEN), &huge).await.0,
        413
    );

    // Two successes (success_threshold 2): up, with the pushed latency.
    for _ in 0..2 {
        let (status, body) = post(&daemon, "sim-north", Some(NORTH_TOKEN), ok).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["target"], "sim-north");
    }
    wait_for("sim-north up", || async {
        target(&daemon, "sim-north").await["state"] == "up"
    })
    .await;
    let north = target(&daemon, "sim-north").await;
    assert_eq!(north["probe"], "push");
    assert_eq!(north["last_result"]["latency_seconds"], 0.12);

    // Three failures (failure_threshold 3): down, an incident on voice, the reason counted.
    let fail = r#"{"ok": false, "reason": "timeout", "detail": "no answer from the IMS"}"#;
    for _ in 0..3 {
        assert_eq!(
            post(&daemon, "sim-north", Some(NORTH_TOKEN), fail).await.0,
            202
        );
    }
    wait_for("an incident on voice", || async {
        let open = daemon.get_json("/api/v1/incidents?status=open").await;
        open["incidents"][0]["services"] == json!(["voice"])
    })
    .await;
    let metrics = daemon.metrics().await;
    let labels = [("target", "sim-north"), ("reason", "timeout")];
    assert!(metric_sum(&metrics, "tocsin_probe_failures_total", &labels) >= 3.0);

    // Back up, then silence: missed heartbeats take it down again.
    for _ in 0..2 {
        assert_eq!(
            post(&daemon, "sim-north", Some(NORTH_TOKEN), ok).await.0,
            202
        );
    }
    wait_for("sim-north down on missed heartbeats", || async {
        let north = target(&daemon, "sim-north").await;
        north["state"] == "down" && north["last_result"]["reason"] == "missed_heartbeat"
    })
    .await;
    let metrics = daemon.metrics().await;
    let labels = [("target", "sim-north"), ("reason", "missed_heartbeat")];
    assert!(metric_sum(&metrics, "tocsin_probe_failures_total", &labels) >= 3.0);
    // The scheduler never ran a push target (that would be an `internal` failure), and
    // the target with an hour's interval has missed nothing.
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_probe_failures_total",
            &[("reason", "internal")]
        ),
        0.0
    );
    assert_eq!(target(&daemon, "sim-south").await["state"], "unknown");
    daemon.stop().await;
}
