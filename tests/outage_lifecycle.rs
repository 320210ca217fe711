//! End to end: a real HTTP target goes down → after `failure_threshold` failures an
//! incident opens with a backdated onset → a signed webhook arrives → a restart does not
//! announce it again → the target recovers → `incident.resolved` after `resolve_after`.

mod common;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use common::test_config::TestConfig;
use common::{Daemon, Receiver, Target, metric_sum, path_str, temp_dir, wait_for, write};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const INTERVAL_MS: i64 = 200;

fn config(dir: &std::path::Path, target: &Target, receiver: &Receiver) -> TestConfig {
    let secret = write(dir, "hook.secret", &format!("{SECRET}\n"));
    TestConfig::new(dir)
        .default("interval", &format!("\"{INTERVAL_MS}ms\""))
        .default("timeout", "\"150ms\"")
        .default("failure_threshold", "3")
        .default("success_threshold", "2")
        .default("resolve_after", "\"1s\"")
        .body(&format!(
            r#"
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 30_000_000

[[groups]]
id = "vm-a-north"
service = "voicemail"
platform = "vm-a"
region = "north"
subscribers = 900_000

[[targets]]
id = "vm-a-north-http"
groups = ["vm-a-north"]
probe = {{ type = "http", url = "{url}", body_contains = "ready" }}

[[receivers]]
name = "noc"
type = "webhook"
url = "{hook}"
secret_file = "{secret}"
min_severity = "sev3"
"#,
            url = target.url(),
            hook = receiver.url(),
            secret = path_str(&secret),
        ))
}

/// Checks the Standard Webhooks signature with an HMAC computed here, not by tocsin.
fn assert_signed(delivery: &common::Delivery) {
    let header = |name: &str| delivery.headers[name].to_str().unwrap().to_string();
    let id = header("webhook-id");
    let timestamp = header("webhook-timestamp");
    assert_eq!(id, delivery.event["id"].as_str().unwrap());
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&delivery.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(header("webhook-signature"), expected);
    let age = Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "timestamp {age}s old");
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_opens_alerts_survives_restart_and_resolves() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    let toml = config(dir.path(), &target, &receiver);
    let daemon = Daemon::start(&toml, dir.path()).await;

    wait_for("the target to be up", || async {
        let status = daemon.get_json("/api/v1/status").await;
        status["targets"][0]["state"] == "up"
    })
    .await;
    assert_eq!(
        daemon.get_json("/api/v1/incidents").await["incidents"],
        serde_json::json!([])
    );

    let failed_at = Utc::now();
    target.set_status(503);
    let opened = receiver.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    assert_signed(&opened);
    let incident = &opened.event["incident"];
    let id = incident["id"].as_str().unwrap().to_string();
    // The first of this database: its number, and the database's epoch.
    assert!(id.starts_with("inc-000001-"), "{id}");
    assert_eq!(incident["status"], "investigating");
    assert_eq!(incident["services"], serde_json::json!(["voicemail"]));
    assert_eq!(incident["platforms"], serde_json::json!(["vm-a"]));
    assert_eq!(incident["peak_affected"], 900_000);
    assert_eq!(incident["per_service"]["voicemail"]["peak_share"], 0.03);
    assert_eq!(incident["severity"], "sev2", "3% of the base is sev2");
    // Backdated onset: the first of the three failures, two intervals before detection.
    let onset = time(&incident["onset_at"]);
    let detected = time(&incident["detected_at"]);
    // A probe in flight when the server turned to 503 started before it, at most one
    // timeout before.
    assert!(
        onset >= failed_at - chrono::Duration::milliseconds(150),
        "onset {onset} before the failure {failed_at}"
    );
    assert!(
        (detected - onset).num_milliseconds() >= 2 * INTERVAL_MS - 20,
        "onset {onset} not backdated from detection {detected}"
    );
    let api = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(api["id"], id.as_str());
    assert_eq!(api["onset_at"], incident["onset_at"]);

    // Restart while the outage goes on: the incident stays open and is not announced again.
    daemon.stop().await;
    let daemon = Daemon::start(&toml, dir.path()).await;
    wait_for("several failed probes after the restart", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_probes_total",
            &[("result", "failure")],
        ) >= 4.0
    })
    .await;
    let open = daemon.get_json("/api/v1/incidents?status=open").await;
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(open["incidents"][0]["id"], id.as_str());
    assert_eq!(open["incidents"][0]["onset_at"], incident["onset_at"]);

    let recovered_at = Utc::now();
    target.set_status(200);
    let resolved = loop {
        let delivery = receiver.next().await;
        // A redelivery of the same event is allowed (at least once); a new one is not.
        assert!(
            delivery.kind() != "incident.opened" || delivery.event["id"] == opened.event["id"],
            "announced twice: {:?}",
            delivery.event
        );
        if delivery.kind() == "incident.resolved" {
            break delivery;
        }
    };
    assert_signed(&resolved);
    let incident = &resolved.event["incident"];
    assert_eq!(incident["id"], id.as_str());
    assert_eq!(incident["status"], "resolved");
    let impact_end = time(&incident["impact_end_at"]);
    let resolved_at = time(&incident["resolved_at"]);
    assert!(impact_end >= recovered_at);
    assert!(
        (resolved_at - impact_end).num_milliseconds() >= 1000,
        "resolve_after is 1s"
    );
    assert!(incident["duration_seconds"].as_u64().unwrap() >= 1);
    assert!(incident["user_minutes"].as_u64().unwrap() > 0);
    let events: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"opened"));
    assert_eq!(events.last(), Some(&"resolved"));
    assert!(events.contains(&"recovered"));

    let resolved_list = daemon.get_json("/api/v1/incidents?status=resolved").await;
    assert_eq!(resolved_list["incidents"][0]["id"], id.as_str());
    let metrics = daemon.metrics().await;
    assert_eq!(metric_sum(&metrics, "tocsin_incidents_open", &[]), 0.0);
    assert!(
        metric_sum(
            &metrics,
            "tocsin_incident_user_seconds_total",
            &[("service", "voicemail")]
        ) > 0.0
    );
    daemon.stop().await;
    assert!(
        receiver
            .drain()
            .iter()
            .all(|d| d.kind() != "incident.opened" || d.event["id"] == opened.event["id"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_severity_filters_and_unsigned_when_no_secret() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    // A 10-subscriber group of a 30 M service: a sev3 outage. One receiver takes sev2 and
    // worse, the other everything, unsigned.
    let toml = TestConfig::new(dir.path())
        .instant_thresholds()
        .default("resolve_after", "\"200ms\"")
        .body(&format!(
            r#"
[[services]]
id = "web"
subscribers = 30_000_000
[[targets]]
id = "www"
service = "web"
subscribers = 10
probe = {{ type = "http", url = "{url}" }}
[[receivers]]
name = "pager"
type = "webhook"
url = "{hook}?who=pager"
min_severity = "sev2"
[[receivers]]
name = "log"
type = "webhook"
url = "{hook}?who=log"
send_resolved = false
"#,
            url = target.url(),
            hook = receiver.url(),
        ));
    let daemon = Daemon::start(&toml, dir.path()).await;
    target.set_status(500);
    let opened = receiver.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    assert_eq!(opened.event["incident"]["severity"], "sev3");
    assert!(!opened.headers.contains_key("webhook-signature"));
    target.set_status(200);
    wait_for("the incident to resolve", || async {
        let list = daemon.get_json("/api/v1/incidents?status=resolved").await;
        !list["incidents"].as_array().unwrap().is_empty()
    })
    .await;
    // The sink had its chance: wait until every queued delivery was attempted.
    wait_for("deliveries to finish", || async {
        metric_sum(&daemon.metrics().await, "tocsin_alert_outbox_pending", &[]) == 0.0
    })
    .await;
    let metrics = daemon.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "log"), ("result", "delivered")]
        ),
        1.0,
        "only `opened` for the log receiver (send_resolved = false)"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "pager")]
        ),
        0.0,
        "a sev3 incident never reaches a sev2 receiver"
    );
    assert!(receiver.drain().is_empty());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_rising_above_min_severity_is_announced_then_reminded() {
    let dir = temp_dir();
    let small = Target::start().await;
    let large = Target::start().await;
    let mut receiver = Receiver::start().await;
    // Group a holds 0.5% of the base (sev3), group b 2% (sev2).
    let toml = TestConfig::new(dir.path())
        .instant_thresholds()
        .body(&format!(
            r#"
[[services]]
id = "voicemail"
subscribers = 1000
[[groups]]
id = "a"
service = "voicemail"
platform = "vm-a"
subscribers = 5
[[groups]]
id = "b"
service = "voicemail"
platform = "vm-a"
subscribers = 20
[[targets]]
id = "a"
groups = ["a"]
probe = {{ type = "http", url = "{small}" }}
[[targets]]
id = "b"
groups = ["b"]
probe = {{ type = "http", url = "{large}" }}
[[receivers]]
name = "all"
type = "webhook"
url = "{hook}?who=all"
[[receivers]]
name = "pager"
type = "webhook"
url = "{hook}?who=pager"
min_severity = "sev2"
repeat_interval = "1s"
"#,
            small = small.url(),
            large = large.url(),
            hook = receiver.url(),
        ));
    let daemon = Daemon::start(&toml, dir.path()).await;
    small.set_status(503);
    let first = receiver.next().await;
    assert_eq!(first.query.as_deref(), Some("who=all"));
    assert_eq!(first.kind(), "incident.opened");
    assert_eq!(first.event["incident"]["severity"], "sev3");

    large.set_status(503);
    let mut pager = Vec::new();
    while pager.len() < 2 {
        let d = receiver.next().await;
        if d.query.as_deref() == Some("who=pager") {
            pager.push(d);
        } else {
            assert_eq!(
                d.kind(),
                "incident.updated",
                "the rise is an update for `all`"
            );
            assert_eq!(d.event["incident"]["severity"], "sev2");
        }
    }
    assert_eq!(
        pager[0].kind(),
        "incident.opened",
        "first news for the pager"
    );
    assert_eq!(pager[0].event["incident"]["severity"], "sev2");
    assert_eq!(pager[1].kind(), "incident.reminder");
    assert_eq!(
        pager[1].event["incident"]["id"],
        pager[0].event["incident"]["id"]
    );
    assert_ne!(
        pager[1].event["id"], pager[0].event["id"],
        "each event has its own id"
    );
    daemon.stop().await;
}
