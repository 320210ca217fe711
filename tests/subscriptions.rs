//! Subscriptions to the status page, end to end on the real app (in-process): subscribe by
//! e-mail (Exim on loopback, mails read back from its Maildir) and by webhook (a loopback
//! receiver checking the Standard Webhooks signature), confirm, receive an incident and a
//! maintenance announcement with nothing operator-only in them, unsubscribe, receive
//! nothing more.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use common::mail::Mail;
use common::servers::{Exim, SMTP_PASSWORD, SMTP_USER};
use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{InProcess, Receiver, Target, json, path_str, temp_dir, wait_for, write};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The path and query of the first link in `mail` under the external URL to `path`.
fn link(mail: &Mail, path: &str) -> String {
    let text = mail.text();
    let prefix = format!("https://status.example.net{path}");
    let start = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    link.trim_start_matches("https://status.example.net")
        .to_string()
}

/// The mails delivered to `to` so far.
fn mails_to(exim: &Exim, to: &str) -> Vec<Mail> {
    exim.delivered()
        .iter()
        .map(|m| Mail::parse(m))
        .filter(|m| m.header("to").contains(to))
        .collect()
}

async fn wait_mails(exim: &Exim, to: &str, n: usize, what: &str) -> Vec<Mail> {
    wait_for(what, || async { mails_to(exim, to).len() >= n }).await;
    mails_to(exim, to)
}

/// Checks the Standard Webhooks signature of a delivery with [`SECRET`].
fn assert_signed(d: &common::Delivery) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let header = |name: &str| d.headers.get(name).unwrap().to_str().unwrap().to_string();
    let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&d.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(header("webhook-signature"), expected);
}

/// Nothing an operator alone sees: no platform, region, figure or cause.
fn assert_public(text: &str) {
    for word in [
        "vm-a",
        "platform",
        "region",
        "suspected",
        "peak_affected",
        "user_minutes",
        "reporting",
        "severity",
    ] {
        assert!(
            !text.contains(word),
            "`{word}` in a subscriber notice:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_confirm_receive_unsubscribe_receive_nothing() {
    let exim = Exim::start(false).await;
    let dir = temp_dir();
    let target = Target::start().await;
    let mut hooks = Receiver::start().await;
    let password = write(dir.path(), "smtp.password", &format!("{SMTP_PASSWORD}\n"));
    let secret = write(dir.path(), "subscriptions.secret", SECRET);
    let config = TestConfig::new(dir.path())
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
[[services]]
id = "data"
name = "Mobile data"
subscribers = 1000
[[targets]]
id = "vm-a"
service = "voicemail"
platform = "vm-a"
subscribers = 100
probe = {{ type = "http", url = "{url}" }}
[[targets]]
id = "data-a"
service = "data"
subscribers = 100
probe = {{ type = "tcp", address = "{addr}" }}

[subscriptions]
enabled = true
server = "127.0.0.1:{port}"
tls = "starttls"
ca_file = "{ca}"
username = "{SMTP_USER}"
password_file = "{password}"
from = "Example status <status@status.example.net>"
secret_file = "{secret}"
max_per_address_per_hour = 3
"#,
            url = target.url(),
            addr = target
                .url()
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap(),
            port = exim.submission,
            ca = path_str(&exim.pki.ca),
            password = path_str(&password),
            secret = path_str(&secret),
        ));
    let app = InProcess::start(config, dir.path()).await;

    // The page offers the form, without script.
    let (status, _, page) = app.request("GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<form method="post" action="/subscriptions">"#));
    assert!(page.contains(r#"name="service" value="voicemail""#));
    assert!(!page.contains("<script"));

    // Alice by the API (voicemail), Bob by the form (data only), two webhooks (all).
    let (status, _, body) = app
        .request(
            "POST",
            "/api/v1/subscriptions",
            None,
            Some(json!({"email": "alice@example.net", "services": ["voicemail"]})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(json(&body)["status"], "pending");
    let (status, _, body) = app
        .raw(
            "POST",
            "/subscriptions",
            None,
            Some("application/x-www-form-urlencoded"),
            b"email=bob%40example.net&service=data".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Check your inbox"));
    let webhook = |who: &str| json!({"webhook": format!("{}?who={who}", hooks.url())});
    let (status, _, one) = app
        .request("POST", "/api/v1/subscriptions", None, Some(webhook("one")))
        .await;
    assert_eq!(status, 201, "{one}");
    let one = json(&one);
    assert_eq!(one["status"], "active");
    let (status, _, _) = app
        .request(
            "POST",
            "/api/v1/subscriptions",
            None,
            Some(webhook("carol")),
        )
        .await;
    assert_eq!(status, 201);
    // Bad requests are the API's JSON errors.
    for bad in [
        json!({"email": "not an address"}),
        json!({"webhook": "ftp://example.net/"}),
        json!({"email": "a@example.net", "services": ["nope"]}),
        json!({"email": "a@example.net", "webhook": "https://example.net/"}),
    ] {
        let (status, content_type, _) = app
            .request("POST", "/api/v1/subscriptions", None, Some(bad))
            .await;
        assert_eq!(status, 400);
        assert!(content_type.starts_with("application/json"));
    }

    // Double opt-in: a confirmation mail each; an unknown token confirms nothing.
    let alice_confirm = wait_mails(&exim, "alice@example.net", 1, "Alice's confirmation").await;
    let bob_confirm = wait_mails(&exim, "bob@example.net", 1, "Bob's confirmation").await;
    assert!(alice_confirm[0].header("subject").contains("Confirm"));
    let (status, _, _) = app
        .request("GET", "/subscriptions/confirm?token=forged", None, None)
        .await;
    assert_eq!(status, 404);
    for mail in [&alice_confirm[0], &bob_confirm[0]] {
        let (status, _, page) = app
            .request("GET", &link(mail, "/subscriptions/confirm"), None, None)
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Subscription confirmed"));
    }
    // The per-address limit: a fourth request for Alice within the hour is refused.
    for expected in [202, 202, 429] {
        let (status, _, _) = app
            .request(
                "POST",
                "/api/v1/subscriptions",
                None,
                Some(json!({"email": "Alice@example.net"})),
            )
            .await;
        assert_eq!(status.as_u16(), expected);
    }
    wait_mails(&exim, "lice@example.net", 3, "two more confirmations").await;

    // Maintenance announced to the subscribers of its service.
    let starts = chrono::Utc::now() + chrono::Duration::days(30);
    let ends = starts + chrono::Duration::hours(1);
    let (status, _, body) = app
        .request(
            "POST",
            "/api/v1/maintenances",
            Some(ADMIN_TOKEN),
            Some(json!({
                "services": ["voicemail"],
                "starts_at": starts.to_rfc3339(),
                "ends_at": ends.to_rfc3339(),
                "summary": "Voicemail platform upgrade",
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut announced = Vec::new();
    while announced.len() < 2 {
        let d = hooks.next().await;
        assert_eq!(d.kind(), "maintenance.announced");
        assert_signed(&d);
        assert_eq!(d.event["maintenance"]["services"][0]["name"], "Voicemail");
        announced.push(d.query.clone().unwrap());
    }
    let alice = wait_mails(&exim, "alice@example.net", 2, "Alice's announcement").await;
    assert!(alice[1].header("subject").contains("Planned maintenance"));

    // An incident on voicemail: Alice and both webhooks hear of it, Bob does not.
    target.set_status(503);
    let alice = wait_mails(&exim, "alice@example.net", 3, "Alice's incident mail").await;
    let opened = &alice[2];
    assert!(
        opened.header("subject").contains("Voicemail"),
        "{}",
        opened.header("subject")
    );
    assert!(
        opened
            .header("list-unsubscribe")
            .contains("/subscriptions/unsubscribe?token=")
    );
    assert!(opened.text().contains("We are") || opened.text().contains("investigating"));
    assert_public(&opened.text());
    let mut opened_hooks = Vec::new();
    while opened_hooks.len() < 2 {
        let d = hooks.next().await;
        if d.kind() != "incident.opened" {
            continue;
        }
        assert_signed(&d);
        assert_public(&String::from_utf8(d.body.clone()).unwrap());
        let inc = &d.event["incident"];
        assert_eq!(inc["services"][0]["id"], "voicemail");
        assert!(inc["name"].as_str().unwrap().starts_with("Voicemail"));
        assert!(
            inc["url"]
                .as_str()
                .unwrap()
                .starts_with("https://status.example.net/incidents/")
        );
        opened_hooks.push(d);
    }

    // Alice unsubscribes by her mail's link, webhook `one` by its URL (one-click POST).
    let (status, _, page) = app
        .request(
            "GET",
            &link(opened, "/subscriptions/unsubscribe"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Unsubscribed"));
    let one_url = one["unsubscribe_url"].as_str().unwrap();
    let one_path = one_url.trim_start_matches("https://status.example.net");
    let from_payload = opened_hooks
        .iter()
        .find(|d| d.query.as_deref() == Some("who=one"))
        .unwrap();
    assert_eq!(from_payload.event["unsubscribe_url"], one_url);
    let (status, _, _) = app.raw("POST", one_path, None, None, Vec::new()).await;
    assert_eq!(status, 200);
    let (status, _, _) = app.request("GET", one_path, None, None).await;
    assert_eq!(status, 404, "already deleted");

    // The resolution reaches Carol, who stayed; nobody who left gets anything.
    let before = exim.delivered().len();
    target.set_status(200);
    let resolved = loop {
        let d = hooks.next().await;
        if d.kind() == "incident.resolved" {
            break d;
        }
        assert_ne!(d.query.as_deref(), Some("who=one"), "after unsubscribing");
    };
    assert_eq!(resolved.query.as_deref(), Some("who=carol"));
    assert_eq!(resolved.event["incident"]["status"], "resolved");
    let late: Vec<Value> = hooks.drain().iter().map(|d| d.event.clone()).collect();
    assert!(
        late.iter().all(|e| e["type"] != "incident.resolved"),
        "{late:?}"
    );
    assert_eq!(exim.delivered().len(), before, "{}", exim.log());
    assert_eq!(mails_to(&exim, "alice@example.net").len(), 3);
    assert_eq!(mails_to(&exim, "bob@example.net").len(), 1, "data only");
    app.stop().await;
}

/// A webhook subscriber on loopback that answers the status the test sets and passes on
/// the events it accepts.
struct Flaky {
    url: String,
    status: Arc<AtomicU16>,
    attempts: Arc<AtomicUsize>,
    accepted: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Flaky {
    async fn start(status: u16) -> Flaky {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(status));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (s, a) = (Arc::clone(&status), Arc::clone(&attempts));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (s, a, tx) = (Arc::clone(&s), Arc::clone(&a), tx.clone());
                async move {
                    a.fetch_add(1, Ordering::SeqCst);
                    let code = s.load(Ordering::SeqCst);
                    if code < 300 {
                        let _ = tx.send(serde_json::from_slice::<Value>(&body).unwrap());
                    }
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Flaky {
            url,
            status,
            attempts,
            accepted: rx,
        }
    }
}

/// A notice the subscriber refuses (503) is retried with backoff, and one still queued at
/// a restart is sent by the next run: notices are kept in the store, not in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_subscriber_is_retried_and_a_restart_loses_nothing() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut hook = Flaky::start(503).await;
    let secret = write(dir.path(), "subscriptions.secret", SECRET);
    // No mail is sent here: the SMTP server is never reached.
    let config = || {
        TestConfig::new(dir.path())
            .server("external_url", "\"https://status.example.net/\"")
            .instant_thresholds()
            .default("resolve_after", "\"1h\"")
            .body(&format!(
                r#"
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 1000
[[targets]]
id = "vm-a"
service = "voicemail"
subscribers = 100
probe = {{ type = "http", url = "{url}" }}

[subscriptions]
enabled = true
server = "127.0.0.1:1"
tls = "none"
from = "status@status.example.net"
secret_file = "{secret}"
"#,
                url = target.url(),
                secret = path_str(&secret),
            ))
    };
    let app = InProcess::start(config(), dir.path()).await;
    let (status, _, body) = app
        .request(
            "POST",
            "/api/v1/subscriptions",
            None,
            Some(json!({"webhook": hook.url, "services": ["voicemail"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    target.set_status(503);
    wait_for("a retry of the refused notice", || async {
        hook.attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    app.stop().await;

    // The subscriber comes back while tocsin is down; the next run sends the notice.
    hook.status.store(204, Ordering::SeqCst);
    let app = InProcess::start(config(), dir.path()).await;
    let event = tokio::time::timeout(common::PATIENCE, hook.accepted.recv())
        .await
        .expect("the queued notice after the restart")
        .unwrap();
    assert_eq!(event["type"], "incident.opened");
    assert_eq!(event["incident"]["services"][0]["id"], "voicemail");
    app.stop().await;
    assert!(hook.accepted.try_recv().is_err(), "sent once");
}
