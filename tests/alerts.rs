//! Alert delivery: retries until the receiver recovers, with a stable event id; a receiver
//! that never answers delays neither another receiver nor probing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::mpsc;

use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, Receiver, Target, metric_sum, temp_dir, wait_for};

fn config(dir: &std::path::Path, target: &Target, receivers: &str) -> TestConfig {
    TestConfig::new(dir)
        .instant_thresholds()
        .default("resolve_after", "\"200ms\"")
        .body(&format!(
            r#"
[[services]]
id = "web"
subscribers = 1000
[[targets]]
id = "www"
service = "web"
subscribers = 100
probe = {{ type = "http", url = "{url}" }}
{receivers}
"#,
            url = target.url(),
        ))
}

/// A receiver that answers 500 to its first `failures` requests, then 204; it reports the
/// `webhook-id` of every request it sees.
async fn flaky_receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<(String, u16)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let seen = Arc::clone(&seen);
            let tx = tx.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let status = if n < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                };
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let _ = tx.send((id, status.as_u16()));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_the_same_event_id() {
    let dir = temp_dir();
    let target = Target::start().await;
    let (url, mut requests) = flaky_receiver(2).await;
    let receivers =
        format!("[[receivers]]\nname = \"flaky\"\ntype = \"webhook\"\nurl = \"{url}\"\n");
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);

    let mut attempts = Vec::new();
    while attempts.last().map(|(_, status)| *status) != Some(204) {
        let attempt = tokio::time::timeout(common::PATIENCE, requests.recv())
            .await
            .expect("timed out waiting for a delivery attempt")
            .unwrap();
        attempts.push(attempt);
    }
    let statuses: Vec<u16> = attempts.iter().map(|a| a.1).collect();
    assert_eq!(statuses, [500, 500, 204]);
    assert!(
        attempts.iter().all(|a| a.0 == attempts[0].0),
        "retries keep the event id: {attempts:?}"
    );
    let metrics = daemon.metrics().await;
    let count = |result| {
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "flaky"), ("result", result)],
        )
    };
    assert_eq!(count("retried"), 2.0);
    assert_eq!(count("delivered"), 1.0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_delays_neither_others_nor_probing() {
    let dir = temp_dir();
    let target = Target::start().await;
    // Accepts connections and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            held.push(socket);
        }
    });
    let mut healthy = Receiver::start().await;
    let receivers = format!(
        r#"
[[receivers]]
name = "stalled"
type = "webhook"
url = "http://{stalled_addr}/hook"
timeout = "1h"
[[receivers]]
name = "healthy"
type = "webhook"
url = "{}"
"#,
        healthy.url()
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);
    // If the stalled receiver held anything up, this would wait for its 1 h timeout.
    assert_eq!(healthy.next().await.kind(), "incident.opened");
    target.set_status(200);
    assert_eq!(healthy.next().await.kind(), "incident.resolved");

    let metrics = daemon.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_alert_outbox_pending",
            &[("receiver", "stalled")]
        ),
        2.0,
        "opened in flight, resolved queued behind it"
    );
    let probes = metric_sum(&metrics, "tocsin_probes_total", &[]);
    wait_for("probing to go on", || async {
        metric_sum(&daemon.metrics().await, "tocsin_probes_total", &[]) >= probes + 3.0
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_silences_then_an_outage_outlasting_it_alerts_at_its_end() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    // A receiver of another type is held by the window the same way: a command that keeps
    // each event (written aside, then renamed into place).
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let keep = r#"cat > "$1/e.part" && mv "$1/e.part" "$1/$TOCSIN_EVENT_ID.json""#;
    let receivers = format!(
        "[[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"{}\"\n\
         [[receivers]]\nname = \"script\"\ntype = \"command\"\n\
         command = [\"/bin/sh\", \"-c\", '{keep}', \"keep\", \"{}\"]\n",
        receiver.url(),
        events.display(),
    );
    let toml = config(dir.path(), &target, &receivers).admin_token();
    let daemon = Daemon::start(&toml, dir.path()).await;
    let now = chrono::Utc::now();
    let ends_at = now + chrono::Duration::seconds(2);
    let client = reqwest::Client::new();
    let created = client
        .post(daemon.url("/api/v1/maintenances"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "services": ["web"],
            "starts_at": now - chrono::Duration::seconds(1),
            "ends_at": ends_at,
            "summary": "CMS upgrade",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let refused = client
        .post(daemon.url("/api/v1/maintenances"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "services": ["nope"],
            "starts_at": now,
            "ends_at": now,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "services[0]: unknown service `nope`; ends_at: must be after starts_at"
    );
    let listed = daemon.get_json("/api/v1/maintenances").await;
    assert_eq!(listed["maintenances"][0]["status"], "in_progress");
    assert_eq!(listed["maintenances"][0]["source"], "api");

    target.set_status(503);
    wait_for(
        "the failing service to show as under maintenance",
        || async {
            let status = daemon.get_json("/api/v1/status").await;
            status["targets"][0]["state"] == "down"
                && status["services"][0]["status"] == "under_maintenance"
        },
    )
    .await;
    let opened = receiver.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    let occurred: chrono::DateTime<chrono::Utc> = opened.event["occurred_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        occurred >= ends_at,
        "alerted at {occurred}, inside the window ending {ends_at}"
    );
    let kept = || {
        std::fs::read_dir(&events)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
    };
    wait_for("the command's first event", || async { kept().is_some() }).await;
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kept().unwrap()).unwrap()).unwrap();
    assert_eq!(first["type"], "incident.opened");
    let occurred: chrono::DateTime<chrono::Utc> =
        first["occurred_at"].as_str().unwrap().parse().unwrap();
    assert!(occurred >= ends_at, "the command heard at {occurred}");
    daemon.stop().await;
}
