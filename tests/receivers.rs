//! Receivers against real peers: a real Alertmanager lists the alert and sees it resolve;
//! Exim takes the e-mails over STARTTLS and implicit TLS with AUTH and delivers them to a
//! Maildir, read back here; Slack, PagerDuty, Teams and Opsgenie payloads checked against
//! their documented fields by loopback servers; a command receiver's program gets the
//! events on stdin; Standard Webhooks signatures checked by the reference Python library;
//! events pending at `kill -9` are delivered after the restart.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use tokio::sync::mpsc;

use common::mail::Mail;
use common::servers::{Exim, SMTP_PASSWORD, SMTP_USER};
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

/// One POST a recorder got.
struct Recorded {
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Recordings = mpsc::UnboundedReceiver<Recorded>;

/// Records every POST to any path, answering 202 (as Teams Workflows and Opsgenie do).
async fn recorder() -> (String, Recordings) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().fallback(post(
        move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Recorded {
                    uri,
                    headers,
                    body: body.to_vec(),
                });
                StatusCode::ACCEPTED
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut Recordings) -> Recorded {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .unwrap()
}

async fn next_json(rx: &mut Recordings) -> serde_json::Value {
    next(rx).await.json()
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
    let Recorded { headers, body, .. } = next(&mut hook).await;
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

/// The incident's id, from the first delivery of the first receiver (`inc-000001-…`).
fn incident_id_in(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.starts_with("inc-000001-"))
        .unwrap_or_else(|| panic!("no incident id in {text}"))
        .to_string()
}

async fn acknowledge(daemon: &Daemon, id: &str) {
    let acked = reqwest::Client::new()
        .post(daemon.url(&format!("/api/v1/incidents/{id}/acknowledge")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "by": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
}

// ---------------------------------------------------------------------------------------
// email: Exim on loopback, the mails read back from its Maildir
// ---------------------------------------------------------------------------------------

/// The mails delivered, each once, once at least `n` are, to both recipients (Exim
/// delivers a copy to each).
async fn wait_mails(exim: &Exim, n: usize, what: &str) -> Vec<Mail> {
    wait_for(what, || async { exim.delivered().len() >= 2 * n }).await;
    let mut mails: Vec<Mail> = exim.delivered().iter().map(|m| Mail::parse(m)).collect();
    let mut seen = std::collections::HashSet::new();
    mails.retain(|m| seen.insert(m.header("message-id").to_string()));
    mails
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_through_exim_form_one_thread_per_incident() {
    let exim = Exim::start(false).await;
    let dir = temp_dir();
    let target = Target::start().await;
    let password = write(dir.path(), "smtp.password", &format!("{SMTP_PASSWORD}\n"));
    let wrong = write(dir.path(), "wrong.password", "not the password\n");
    let receiver = |name: &str, port: u16, tls: &str, password: &std::path::Path| {
        format!(
            r#"
[[receivers]]
name = "{name}"
type = "email"
server = "127.0.0.1:{port}"
tls = "{tls}"
ca_file = "{ca}"
username = "{SMTP_USER}"
password_file = "{password}"
from = "tocsin <tocsin@status.example.net>"
to = ["noc@example.net", "Duty Manager <duty@example.net>"]
"#,
            ca = path_str(&exim.pki.ca),
            password = path_str(password),
        )
    };
    let receivers = receiver("mail-starttls", exim.submission, "starttls", &password)
        + &receiver("mail-implicit", exim.implicit, "implicit", &password)
        + &receiver("mail-refused", exim.submission, "starttls", &wrong);
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);
    let opened = wait_mails(&exim, 2, "two opening mails").await;
    let id = incident_id_in(&opened[0].subject());
    acknowledge(&daemon, &id).await;
    wait_mails(&exim, 4, "two update mails").await;
    target.set_status(200);
    let all = wait_mails(&exim, 6, "two resolution mails").await;
    // Exim refuses the wrong password for good (535): those events are dropped, not retried.
    wait_for("the refused receiver's three events dropped", || async {
        let metrics = daemon.metrics().await;
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "mail-refused"), ("result", "dropped")],
        ) == 3.0
    })
    .await;
    let metrics = daemon.metrics().await;
    daemon.stop().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "mail-refused"), ("result", "retried")],
        ),
        0.0,
        "{metrics}"
    );
    // Six mails, each delivered once to each of the two recipients.
    assert_eq!(all.len(), 6, "{}", exim.log());
    assert_eq!(exim.delivered().len(), 12, "{}", exim.log());
    // Both ports were used, each over TLS and with AUTH (P=esmtpsa: ESMTP, TLS, AUTH).
    let log = exim.log();
    assert_eq!(log.matches("P=esmtpsa").count(), 6, "{log}");
    assert!(log.contains("535 Incorrect authentication data"), "{log}");
    assert!(log.contains(&format!("A=plain:{SMTP_USER}")), "{log}");

    for receiver in ["mail-starttls", "mail-implicit"] {
        let root = format!("<{id}.{receiver}@status.example.net>");
        let thread: Vec<&Mail> = all
            .iter()
            .filter(|m| {
                m.header("message-id") == root
                    || m.has("references") && m.header("references") == root
            })
            .collect();
        assert_eq!(thread.len(), 3, "{receiver}: {}", exim.log());
        let kind = |word: &str| {
            let found: Vec<&&Mail> = thread
                .iter()
                .filter(|m| m.subject().contains(&format!("{id} {word}:")))
                .collect();
            assert_eq!(found.len(), 1, "{receiver}: one `{word}` mail");
            *found[0]
        };
        let (first, update, last) = (kind("opened"), kind("updated"), kind("resolved"));
        assert_eq!(first.header("message-id"), root);
        assert!(!first.has("in-reply-to") && !first.has("references"));
        for reply in [update, last] {
            assert_eq!(reply.header("in-reply-to"), root);
            assert_eq!(reply.header("references"), root);
            let own = reply.header("message-id");
            assert!(
                own.starts_with("<evt_") && own.ends_with(&format!(".{id}@status.example.net>")),
                "{own}"
            );
        }
        for mail in [first, update, last] {
            assert_eq!(mail.header("from"), "tocsin <tocsin@status.example.net>");
            let to = mail.header("to");
            assert!(
                to == "noc@example.net, \"Duty Manager\" <duty@example.net>",
                "{to}"
            );
            assert_eq!(mail.header("mime-version"), "1.0");
        }
        let subject = first.subject();
        assert!(
            subject.starts_with(&format!("[sev2] {id} opened: Voicemail — 100 subscribers")),
            "{subject}"
        );
        let link = format!("https://status.example.net/incidents/{id}");
        let parts = first.parts();
        assert_eq!(parts.len(), 2, "a text and an HTML part");
        let (text_type, text) = &parts[0];
        let (html_type, html) = &parts[1];
        assert!(
            text_type.starts_with("text/plain; charset=utf-8"),
            "{text_type}"
        );
        assert!(
            html_type.starts_with("text/html; charset=utf-8"),
            "{html_type}"
        );
        assert!(text.starts_with(&subject), "{text}");
        for line in [
            "Status:          investigating",
            "Severity:        sev2",
            "Scope:           localized",
            "Platforms:       vm-a",
            "Peak affected:   100",
            &format!("Details: {link}"),
        ] {
            assert!(text.contains(line), "`{line}` missing from:\n{text}");
        }
        assert!(
            text.contains(
                "Service:         Voicemail (voicemail): 100 affected now, 100 at peak (10%)"
            ),
            "{text}"
        );
        assert!(html.contains(&format!("<a href=\"{link}\">")), "{html}");
        assert!(
            html.contains("<tr><th align=\"left\">Peak affected</th><td>100</td></tr>"),
            "{html}"
        );
        let (_, acked) = &update.parts()[0];
        assert!(acked.contains("Status:          identified"), "{acked}");
        let (_, resolved) = &last.parts()[0];
        assert!(resolved.contains("Resolved:"), "{resolved}");
    }
}

// ---------------------------------------------------------------------------------------
// msteams and opsgenie: documented payloads checked by loopback servers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_cards_and_the_opsgenie_alert_lifecycle() {
    let dir = temp_dir();
    let target = Target::start().await;
    let (teams_url, mut teams) = recorder().await;
    let (opsgenie_url, mut opsgenie) = recorder().await;
    let teams_file = write(
        dir.path(),
        "teams.url",
        &format!("{teams_url}workflows/abc?sig=x"),
    );
    let key = write(
        dir.path(),
        "opsgenie.key",
        "eb243592-faa2-4ba2-a551q-1afdf565c889\n",
    );
    let receivers = format!(
        r#"
[[receivers]]
name = "teams"
type = "msteams"
url_file = "{teams}"
[[receivers]]
name = "genie"
type = "opsgenie"
url = "{opsgenie_url}"
api_key_file = "{key}"
repeat_interval = "1s"
"#,
        teams = path_str(&teams_file),
        key = path_str(&key),
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    target.set_status(503);

    let card_message = next(&mut teams).await;
    assert_eq!(card_message.uri.path(), "/workflows/abc");
    assert_eq!(card_message.uri.query(), Some("sig=x"));
    let message = card_message.json();
    assert_eq!(message["type"], "message");
    let attachment = &message["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    let title = &card["body"][0];
    assert_eq!(title["type"], "TextBlock");
    assert_eq!(title["color"], "Attention");
    assert_eq!(title["wrap"], true);
    let id = incident_id_in(title["text"].as_str().unwrap());
    let facts = &card["body"][1];
    assert_eq!(facts["type"], "FactSet");
    let fact = |name: &str| {
        facts["facts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["title"] == name)
            .unwrap_or_else(|| panic!("no fact {name}: {facts}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(fact("Services"), "Voicemail");
    assert_eq!(fact("Severity"), "sev2");
    assert_eq!(fact("Subscribers"), "100 now, 100 at peak (10%)");
    assert_eq!(fact("Platforms"), "vm-a");
    let link = format!("https://status.example.net/incidents/{id}");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["actions"][0]["url"], link.as_str());

    let create = next(&mut opsgenie).await;
    assert_eq!(create.uri.path(), "/v2/alerts");
    assert_eq!(
        create.headers["authorization"],
        "GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889"
    );
    assert_eq!(create.headers["content-type"], "application/json");
    let alert = create.json();
    assert_eq!(alert["alias"], id.as_str());
    assert_eq!(alert["priority"], "P2");
    assert_eq!(alert["source"], "tocsin");
    assert_eq!(alert["entity"], "voicemail");
    let text = alert["message"].as_str().unwrap();
    assert!(text.chars().count() <= 130, "{text}");
    assert!(
        text.starts_with(&format!("[sev2] {id} opened: Voicemail")),
        "{text}"
    );
    assert!(
        alert["description"].as_str().unwrap().ends_with(&link),
        "{alert}"
    );
    assert_eq!(
        alert["tags"],
        serde_json::json!(["tocsin", "sev2", "localized", "voicemail"])
    );
    let details = alert["details"].as_object().unwrap();
    assert!(details.values().all(|v| v.is_string()), "{alert}");
    assert_eq!(details["incident_id"], id.as_str());
    assert_eq!(details["peak_affected"], "100");
    assert_eq!(details["link"], link.as_str());

    // Reminders (every second here) add notes to the alert.
    let alias_path = |action: &str| format!("/v2/alerts/{id}/{action}");
    let note = next(&mut opsgenie).await;
    assert_eq!(note.uri.path(), alias_path("notes"));
    assert_eq!(note.uri.query(), Some("identifierType=alias"));
    let body = note.json();
    assert_eq!(body["source"], "tocsin");
    assert!(
        body["note"].as_str().unwrap().contains("still open"),
        "{body}"
    );

    acknowledge(&daemon, &id).await;
    let ack = loop {
        let request = next(&mut opsgenie).await;
        if request.uri.path() != alias_path("notes") {
            break request;
        }
    };
    assert_eq!(ack.uri.path(), alias_path("acknowledge"));
    assert_eq!(ack.uri.query(), Some("identifierType=alias"));
    assert!(ack.json()["note"].as_str().unwrap().contains(&id));
    let acked_card = loop {
        let card = next_json(&mut teams).await;
        if card["attachments"][0]["content"]["body"][0]["text"]
            .as_str()
            .unwrap()
            .contains("updated")
        {
            break card;
        }
    };
    assert!(
        acked_card["attachments"][0]["content"]["body"][1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["title"] == "Status" && f["value"] == "identified"),
        "{acked_card}"
    );

    target.set_status(200);
    // Reminders go on until the resolution: acknowledgements while `identified`, notes
    // once `monitoring`.
    let close = loop {
        let request = next(&mut opsgenie).await;
        if ![alias_path("acknowledge"), alias_path("notes")]
            .contains(&request.uri.path().to_string())
        {
            break request;
        }
    };
    assert_eq!(close.uri.path(), alias_path("close"));
    assert!(
        close.json()["note"].as_str().unwrap().contains("resolved"),
        "{}",
        close.json()
    );
    let resolved = loop {
        let card = next_json(&mut teams).await;
        let content = &card["attachments"][0]["content"]["body"][0];
        if content["text"].as_str().unwrap().contains("resolved") {
            break content.clone();
        }
    };
    assert_eq!(resolved["color"], "Good");
    daemon.stop().await;
}

// ---------------------------------------------------------------------------------------
// command: a program gets each event on stdin
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_receiver_gets_each_event_on_stdin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let target = Target::start().await;
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    // Refuses its first event once with EX_TEMPFAIL: the outbox retries it. Each event is
    // written aside, then renamed, so that the test never reads half of one.
    let script = write(
        dir.path(),
        "page.sh",
        "#!/bin/sh\n\
         set -e\n\
         out=\"$1\"\n\
         [ \"$2\" = 'two words' ]\n\
         if [ ! -e \"$out/refused\" ]; then : > \"$out/refused\"; echo busy >&2; exit 75; fi\n\
         cat > \"$out/$TOCSIN_EVENT_ID.part\"\n\
         mv \"$out/$TOCSIN_EVENT_ID.part\" \"$out/$TOCSIN_EVENT_ID.$TOCSIN_EVENT_TYPE.json\"\n\
         echo \"paged $TOCSIN_INCIDENT_ID\"\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let receivers = format!(
        "[[receivers]]\nname = \"pager\"\ntype = \"command\"\ncommand = [\"{}\", \"{}\", \"two words\"]\n",
        path_str(&script),
        path_str(&events),
    );
    let daemon = Daemon::start(&config(dir.path(), &target, &receivers), dir.path()).await;
    let received = || -> Vec<(String, serde_json::Value)> {
        let mut files: Vec<_> = std::fs::read_dir(&events)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (
                    name,
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap(),
                )
            })
            .collect()
    };
    target.set_status(503);
    wait_for("the opening through the command", || async {
        received()
            .iter()
            .any(|(name, _)| name.ends_with(".incident.opened.json"))
    })
    .await;
    target.set_status(200);
    wait_for("the resolution through the command", || async {
        received()
            .iter()
            .any(|(name, _)| name.ends_with(".incident.resolved.json"))
    })
    .await;
    let metrics = daemon.metrics().await;
    daemon.stop().await;
    for (name, event) in received() {
        assert_eq!(
            name,
            format!(
                "{}.{}.json",
                event["id"].as_str().unwrap(),
                event["type"].as_str().unwrap()
            )
        );
        let id = event["incident"]["id"].as_str().unwrap();
        assert!(id.starts_with("inc-000001-"), "{event}");
        assert_eq!(
            event["incident"]["services"],
            serde_json::json!(["voicemail"])
        );
    }
    let count = |result| {
        metric_sum(
            &metrics,
            "tocsin_alert_deliveries_total",
            &[("receiver", "pager"), ("result", result)],
        )
    };
    assert_eq!(count("retried"), 1.0, "{metrics}");
    assert!(count("delivered") >= 2.0, "{metrics}");
    assert_eq!(count("dropped"), 0.0, "{metrics}");
}
