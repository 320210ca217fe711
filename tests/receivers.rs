//! Receivers against real peers: a real Alertmanager lists the alert and sees it resolve;
//! Slack and PagerDuty payloads; Standard Webhooks signatures checked by the reference
//! Python library; events pending at `kill -9` are delivered after the restart.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::mpsc;

use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, PATIENCE, Target, metric_sum, path_str, temp_dir, wait_for, write};

fn config(dir: &std::path::Path, target: &Target, receivers: &str) -> TestConfig {
    TestConfig::new(dir)
        .server("external_url", "\"https://status.example.net/\"")
        .admin_token()
        .instant_thresholds()
        .default("resolve_after", "\"300ms\"")
        .body(&format!(
            r#"
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 1000
[[targets]]
id = "vm-a"
service = "voicemail"
platform = "vm-a"
subscribers = 100
probe = {{ type = "http", url = "{url}" }}
{receivers}
"#,
            url = target.url(),
        ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Alertmanager on loopback, killed on drop.
struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let dir = temp_dir();
        let config = write(
            dir.path(),
            "alertmanager.yml",
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", path_str(&config)))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!("--storage.path={}", path_str(dir.path())))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager is installed by the README's test command");
        let am = Alertmanager {
            child,
            addr,
            _dir: dir,
        };
        wait_for("Alertmanager to be ready", || async {
            reqwest::get(format!("http://{addr}/-/ready"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        am
    }

    async fn alerts(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("http://{}/api/v2/alerts", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_lists_the_alert_then_sees_it_resolved() {
    let am = Alertmanager::start().await;
    let dir = temp_dir();
    let target = Target::start().await;
    let receivers = format!(
        "[[receivers]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://{}\"\n",
        am.addr
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);
    wait_for("Alertmanager to list the alert", || async {
        !am.alerts().await.is_empty()
    })
    .await;
    let alerts = am.alerts().await;
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["alertname"], "TocsinIncident");
    let id = alert["labels"]["incident_id"].as_str().unwrap();
    assert!(id.starts_with("inc-000001-"), "{id}");
    assert_eq!(alert["labels"]["service"], "voicemail");
    assert_eq!(alert["labels"]["severity"], "sev2");
    assert_eq!(alert["labels"]["scope"], "localized");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(
        alert["generatorURL"],
        format!("https://status.example.net/incidents/{id}")
    );
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("Voicemail")
    );

    target.set_status(200);
    wait_for("Alertmanager to see the alert resolved", || async {
        am.alerts().await.is_empty()
    })
    .await;
    let metrics = daemon.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "am"), ("result", "delivered")]
        ) >= 2.0
    );
    daemon.stop().await;
}

/// Records every JSON body POSTed to it.
async fn recorder() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body.to_vec()));
                StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next_json(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>) -> serde_json::Value {
    let (_, body) = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_pagerduty_payloads() {
    let dir = temp_dir();
    let target = Target::start().await;
    let (slack_url, mut slack) = recorder().await;
    let (pd_url, mut pagerduty) = recorder().await;
    let key = write(dir.path(), "pd.key", "R0UT1NGKEY0123456789abcdefABCDEF\n");
    let slack_url_file = write(dir.path(), "slack.url", &slack_url);
    let receivers = format!(
        r#"
[[receivers]]
name = "chat"
type = "slack"
url_file = "{slack}"
[[receivers]]
name = "pager"
type = "pagerduty"
url = "{pd_url}"
routing_key_file = "{key}"
"#,
        slack = path_str(&slack_url_file),
        key = path_str(&key),
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);

    let message = next_json(&mut slack).await;
    let text = message["text"].as_str().unwrap();
    // The first incident of this database: its number, then the database's epoch.
    let id = text
        .split_whitespace()
        .find(|w| w.starts_with("inc-000001-"))
        .unwrap_or_else(|| panic!("no incident id in {text}"))
        .to_string();
    assert!(
        text.contains(&format!("[sev2] {id} opened: Voicemail")),
        "{text}"
    );
    assert!(text.contains("100 subscribers at peak (10.0%)"), "{text}");
    assert!(
        text.contains(&format!(
            "<https://status.example.net/incidents/{id}|details>"
        )),
        "{text}"
    );

    let trigger = next_json(&mut pagerduty).await;
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY0123456789abcdefABCDEF");
    assert_eq!(trigger["dedup_key"], id.as_str());
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(trigger["payload"]["source"], "tocsin");
    assert_eq!(trigger["payload"]["component"], "voicemail");
    assert_eq!(trigger["payload"]["custom_details"]["peak_affected"], 100);
    assert_eq!(
        trigger["links"][0]["href"],
        format!("https://status.example.net/incidents/{id}")
    );

    let acked = reqwest::Client::new()
        .post(daemon.url(&format!("/api/v1/incidents/{id}/acknowledge")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let ack = next_json(&mut pagerduty).await;
    assert_eq!(ack["event_action"], "acknowledge");
    assert_eq!(ack["dedup_key"], id.as_str());
    assert!(ack.get("payload").is_none());

    target.set_status(200);
    let resolve = next_json(&mut pagerduty).await;
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], id.as_str());
    loop {
        let m = next_json(&mut slack).await;
        if m["text"].as_str().unwrap().contains("resolved") {
            assert!(
                m["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(":large_green_circle:")
            );
            break;
        }
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_the_reference_library() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = temp_dir();
    let target = Target::start().await;
    let (url, mut hook) = recorder().await;
    let secret_file = write(dir.path(), "hook.secret", secret);
    let receivers = format!(
        "[[receivers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{url}\"\nsecret_file = \"{}\"\n",
        path_str(&secret_file)
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);
    let (headers, body) = tokio::time::timeout(PATIENCE, hook.recv())
        .await
        .expect("a signed delivery")
        .unwrap();
    daemon.stop().await;

    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    let body_file = write(dir.path(), "body.json", std::str::from_utf8(&body).unwrap());
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, body_path, msg_id, ts, sig = sys.argv[1:6]
body = open(body_path, "rb").read()
headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}
payload = Webhook(secret).verify(body, headers)
assert payload["id"] == msg_id, payload["id"]
try:
    Webhook(secret).verify(body + b" ", headers)
except Exception:
    print("verified")
else:
    sys.exit("a tampered body verified")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(path_str(&body_file))
        .arg(header("webhook-id"))
        .arg(header("webhook-timestamp"))
        .arg(header("webhook-signature"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "standardwebhooks refused the signature (installed by the README's test command):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified");
}

/// A webhook receiver that fails with 503 until `up` is set; reports every event id seen
/// with the status it answered.
async fn switchable_receiver() -> (
    String,
    Arc<AtomicBool>,
    mpsc::UnboundedReceiver<(String, String, u16)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&up);
    let app = Router::new().route(
        "/",
        post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            let up = flag.load(Ordering::SeqCst);
            async move {
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let status = if up { 204 } else { 503 };
                let _ = tx.send((
                    event["id"].as_str().unwrap().to_string(),
                    event["type"].as_str().unwrap().to_string(),
                    status,
                ));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, up, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pending_at_kill_9_are_delivered_after_the_restart() {
    let dir = temp_dir();
    let (url, up, mut seen) = switchable_receiver().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        TestConfig::new(dir.path())
            .server("listen", &format!("\"127.0.0.1:{}\"", free_port()))
            .default("failure_threshold", "1")
            .body(&format!(
                r#"
[[services]]
id = "voice"
subscribers = 10
[[targets]]
id = "edge"
service = "voice"
probe = {{ type = "http", url = "http://{closed}/" }}
[[receivers]]
name = "noc"
type = "webhook"
url = "{url}"
"#,
            ))
            .to_string(),
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = run();
    // The receiver refuses the opening at least once: it is pending when the daemon dies.
    let (opened_id, kind, status) = tokio::time::timeout(PATIENCE, seen.recv())
        .await
        .expect("a first attempt")
        .unwrap();
    assert_eq!((kind.as_str(), status), ("incident.opened", 503));
    first.kill().unwrap();
    first.wait().unwrap();

    up.store(true, Ordering::SeqCst);
    let mut second = run();
    let delivered = loop {
        let (id, kind, status) = tokio::time::timeout(PATIENCE, seen.recv())
            .await
            .expect("the pending event after the restart")
            .unwrap();
        if status == 204 {
            break (id, kind);
        }
    };
    assert_eq!(
        delivered,
        (opened_id.clone(), "incident.opened".to_string())
    );
    second.kill().unwrap();
    second.wait().unwrap();
    let later: Vec<_> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    assert!(
        later
            .iter()
            .all(|(id, kind, _)| kind != "incident.opened" || *id == opened_id),
        "a second incident.opened: {later:?}"
    );
}
