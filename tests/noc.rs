//! The NOC console against the running daemon.
//!
//! * Security, over HTTP: no page without a session (a redirect to the login form), no
//!   form post without one (401); a post without or with a wrong CSRF token is refused
//!   (403), and so is a viewer's; the session cookie's flags (`Secure` once the console
//!   is reached over HTTPS); wrong passwords; a service named `<script>` escaped on
//!   every page; sessions outlive a restart.
//! * Actions and reports over HTTP: the suspected cause confirmed (and the draft saying
//!   so), a maintenance from the form, the drafts as JSON and text, the login limit; a
//!   posted update reaching a webhook subscriber at once.
//! * The operator's flow in headless Chromium driven by playwright-core
//!   (`tests/noc_browser`, installed by the README's test command): log in, see the open
//!   incident and its countdown, acknowledge, register a change, post an update and find it
//!   on the public page; screenshots kept in `tests/artifacts/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::console::{client, cookie_value, csrf, form_body, login, set_cookie};
use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, Target, path_str, temp_dir, wait_for, write};

const ALICE_PASSWORD: &str = "correct horse battery staple";
const VICTOR_PASSWORD: &str = "viewer only";
const EVIL: &str = "<script>alert('x')</script>";

/// `tocsin hash-password`, the way an administrator makes a users file line.
fn hash_with_the_cli(password: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

fn config(dir: &Path, target: &Target) -> TestConfig {
    let users = format!(
        "# console users\nalice:operator:{}\nvictor:viewer:{}\n",
        hash_with_the_cli(ALICE_PASSWORD),
        tocsin::app::hash_password(VICTOR_PASSWORD),
    );
    let users = write(dir, "users", &users);
    TestConfig::new(dir)
        .server("page_title", "\"Example Telecom\"")
        .server("users_file", &format!("\"{}\"", path_str(&users)))
        .admin_token()
        .instant_thresholds()
        .body(&format!(
            r#"
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 30_000_000
class = "telephony"
[[services]]
id = "evil"
name = "{EVIL}"
subscribers = 1000
[[groups]]
id = "vm-a-north"
service = "voicemail"
platform = "vm-a"
region = "north"
subscribers = 450_000
[[groups]]
id = "vm-a-south"
service = "voicemail"
platform = "vm-a"
region = "south"
subscribers = 450_000
[[groups]]
id = "evil-group"
service = "evil"
platform = "vm-a"
region = "{EVIL}"
subscribers = 1000
[[targets]]
id = "vm-a-store"
groups = ["vm-a-north", "vm-a-south"]
probe = {{ type = "http", url = "{url}" }}
[[targets]]
id = "evil-www"
groups = ["evil-group"]
probe = {{ type = "http", url = "{url}" }}
"#,
            url = target.url(),
        ))
}

struct Browser {
    cookie: String,
}

impl Browser {
    async fn get(&self, daemon: &Daemon, path: &str) -> reqwest::Response {
        client()
            .get(daemon.url(path))
            .header("cookie", format!("tocsin_noc={}", self.cookie))
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, daemon: &Daemon, path: &str) -> String {
        let response = self.get(daemon, path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    async fn post(
        &self,
        daemon: &Daemon,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        client()
            .post(daemon.url(path))
            .header("cookie", format!("tocsin_noc={}", self.cookie))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields))
            .send()
            .await
            .unwrap()
    }
}

async fn open_incident(daemon: &Daemon) -> String {
    wait_for("both services in one open incident", || async {
        let list = daemon.get_json("/api/v1/incidents?status=open").await;
        list["incidents"][0]["services"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
    })
    .await;
    let list = daemon.get_json("/api/v1/incidents?status=open").await;
    list["incidents"][0]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_roles_cookies_and_escaping() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let anonymous = client();

    // No session: pages go to the login form, forms are refused.
    for path in [
        "/noc",
        "/noc/targets",
        "/noc/incidents/inc-000001",
        "/noc/incidents/inc-000001/postmortem",
    ] {
        let response = anonymous.get(daemon.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "GET {path}");
        assert_eq!(response.headers()["location"], "/noc/login");
    }
    let response = anonymous
        .post(daemon.url("/noc/changes"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("summary=x&csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let forged = Browser {
        cookie: "made-up".into(),
    };
    assert_eq!(forged.get(&daemon, "/noc").await.status(), 303);

    // Wrong passwords, unknown names, a login without the form's token.
    assert_eq!(login(daemon.addr, "alice", "wrong").await, Err(401));
    assert_eq!(login(daemon.addr, "nobody", ALICE_PASSWORD).await, Err(401));
    assert_eq!(login(daemon.addr, "", "not-the-token").await, Err(401));
    let response = anonymous
        .post(daemon.url("/noc/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("user", "alice"),
            ("password", ALICE_PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "no login CSRF token");

    // The cookie: HttpOnly, SameSite=Strict, under /noc, with an expiry; not Secure over
    // plain HTTP.
    let header = login(daemon.addr, "alice", ALICE_PASSWORD).await.unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/noc", "Max-Age=43200"] {
        assert!(header.contains(flag), "{flag} missing from {header}");
    }
    assert!(!header.contains("Secure"), "{header}");
    let alice = Browser {
        cookie: cookie_value(&header),
    };

    target.set_status(503);
    let id = open_incident(&daemon).await;
    let board = alice.get(&daemon, "/noc").await;
    let policy = board.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let board = board.text().await.unwrap();
    assert!(board.contains(&id));
    let token = csrf(&board);

    // A form without the token, or with another's, is refused.
    for fields in [
        vec![("summary", "x")],
        vec![("summary", "x"), ("csrf", "bm90LWl0")],
    ] {
        let response = alice.post(&daemon, "/noc/changes", &fields).await;
        assert_eq!(response.status(), 403, "{fields:?}");
    }
    let victor_header = login(daemon.addr, "victor", VICTOR_PASSWORD).await.unwrap();
    let victor = Browser {
        cookie: cookie_value(&victor_header),
    };
    let victor_token = csrf(&victor.page(&daemon, "/noc").await);
    let response = alice
        .post(
            &daemon,
            "/noc/changes",
            &[("summary", "x"), ("csrf", &victor_token)],
        )
        .await;
    assert_eq!(response.status(), 403, "another session's token");

    // A viewer sees everything and can do nothing.
    let victor_board = victor.page(&daemon, "/noc").await;
    assert!(victor_board.contains(&id));
    assert!(!victor_board.contains(r#"action="/noc/changes""#));
    let ack = format!("/noc/incidents/{id}/acknowledge");
    let response = victor.post(&daemon, &ack, &[("csrf", &victor_token)]).await;
    assert_eq!(response.status(), 403);
    let incident = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(incident["status"], "investigating");

    // The operator acts; each step is in the timeline with who did it.
    let response = alice.post(&daemon, &ack, &[("csrf", &token)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/noc/incidents/{id}")
    );
    let response = alice
        .post(
            &daemon,
            &format!("/noc/incidents/{id}/updates"),
            &[
                ("csrf", &token),
                ("text", "Engineers are restoring voicemail <now>."),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let incident = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(incident["status"], "identified");
    let steps: Vec<(String, String)> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["message"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("acknowledged".into(), "acknowledged by alice".into())),
        "{steps:?}"
    );
    assert!(
        steps.contains(&(
            "update_posted".into(),
            "customer update posted by alice".into()
        )),
        "{steps:?}"
    );
    let public = reqwest::get(daemon.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(public.contains("Engineers are restoring voicemail &lt;now&gt;."));

    // Every page escapes the names from the configuration.
    for path in [
        "/noc".to_string(),
        "/noc/targets".to_string(),
        "/noc/targets?service=evil".to_string(),
        format!("/noc/incidents/{id}"),
        format!("/noc/incidents/{id}/postmortem"),
    ] {
        let html = alice.page(&daemon, &path).await;
        assert!(!html.contains(EVIL), "{path} has the raw name");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "{path}"
        );
    }
    let targets = alice
        .page(&daemon, "/noc/targets?state=down&service=voicemail")
        .await;
    assert!(targets.contains("vm-a-store") && !targets.contains("evil-www"));
    // Its groups, down, with their subscribers and targets; the other service's are not.
    assert!(
        targets.contains("<tr><td>vm-a-north</td><td>DOWN</td>")
            && targets.contains("<td>450\u{202f}000</td><td>1 of 1</td></tr>"),
        "{targets}"
    );
    assert!(targets.contains("2 of 3 groups.") && !targets.contains("evil-group"));

    // Logging out ends the session, here and for any copy of the cookie.
    let response = alice
        .post(&daemon, "/noc/logout", &[("csrf", &token)])
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        set_cookie(&response, "tocsin_noc")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(alice.get(&daemon, "/noc").await.status(), 303);

    // A session outlives a restart: it is in the store.
    daemon.stop().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let page = victor.page(&daemon, "/noc").await;
    assert!(page.contains("victor (viewer)"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_https() {
    let dir = temp_dir();
    let target = Target::start().await;
    let toml = config(dir.path(), &target).server("external_url", "\"https://noc.example.net\"");
    let daemon = Daemon::start(&toml, dir.path()).await;
    let header = login(daemon.addr, "", ADMIN_TOKEN).await.unwrap();
    assert!(header.contains("; Secure"), "{header}");
    daemon.stop().await;
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_acts_in_a_real_browser() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    target.set_status(503);
    let id = open_incident(&daemon).await;
    wait_for("a regime met (ofcom: 900 000 affected)", || async {
        let inc = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
        inc["reporting"]["ofcom"]["status"] == "met"
    })
    .await;

    let update = "Voicemail is being restored region by region.";
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/noc_browser");
    let run = Command::new("node")
        .current_dir(&script_dir)
        .arg("flow.js")
        .arg(daemon.url(""))
        .arg(ADMIN_TOKEN)
        .arg(&id)
        .arg(update)
        .arg(artifacts())
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .expect("node runs");
    assert!(
        run.status.success(),
        "the browser flow failed (playwright-core is installed by the README's test command):\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let card = seen["incident_card"].as_str().unwrap();
    assert!(
        card.contains("900 000 at peak") || card.contains("900\u{202f}000 at peak"),
        "{card}"
    );
    assert!(card.contains("ofcom"), "{card}");
    let countdown = seen["countdown"].as_str().unwrap();
    assert!(countdown.contains("left"), "{countdown}");
    assert_eq!(seen["countdown_class"], "due ok");
    assert!(
        seen["after_acknowledge"]
            .as_str()
            .unwrap()
            .starts_with("identified")
    );
    let timeline = seen["timeline"].as_str().unwrap();
    assert!(timeline.contains("acknowledged by admin"), "{timeline}");
    assert!(
        timeline.contains("registered by admin: rollback of the messaging platform"),
        "{timeline}"
    );
    assert!(timeline.contains(update), "{timeline}");
    assert_eq!(seen["postmortem_svg"], 1);
    assert!(seen["public_page"].as_str().unwrap().contains(update));
    assert_eq!(
        seen["errors"],
        serde_json::json!([]),
        "no script or CSP errors"
    );
    for shot in [
        "noc-board.png",
        "noc-incident.png",
        "noc-postmortem.png",
        "noc-public-page.png",
    ] {
        assert!(
            artifacts().join(shot).metadata().unwrap().len() > 0,
            "{shot}"
        );
    }

    let changes = daemon.get_json("/api/v1/changes").await;
    assert_eq!(changes["changes"][0]["platform"], "vm-a");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cause_verdicts_maintenances_drafts_and_the_login_limit() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let created = client()
        .post(daemon.url("/api/v1/changes"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"id": "chg-42", "platform": "vm-a", "summary": "messaging <update>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    target.set_status(503);
    let id = open_incident(&daemon).await;
    wait_for("the change as suspected cause, ofcom met", || async {
        let inc = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
        inc["suspected_cause"]["change_id"] == "chg-42"
            && inc["reporting"]["ofcom"]["status"] == "met"
    })
    .await;
    let alice = Browser {
        cookie: cookie_value(&login(daemon.addr, "alice", ALICE_PASSWORD).await.unwrap()),
    };
    let page = alice.page(&daemon, &format!("/noc/incidents/{id}")).await;
    assert!(
        page.contains("change chg-42"),
        "the suspected cause is shown"
    );
    let token = csrf(&page);

    // The draft before and after the verdict.
    let draft = |when: &'static str| {
        let path = format!("/noc/incidents/{id}/notifications/ofcom.json");
        let alice = &alice;
        let daemon = &daemon;
        async move {
            let response = alice.get(daemon, &path).await;
            assert_eq!(response.status(), 200, "{when}");
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let before = draft("before").await;
    assert_eq!(before["regime"], "ofcom");
    assert_eq!(before["peak_affected"], 900_000);
    assert_eq!(
        before["geographic_area"]["regions"],
        serde_json::json!([EVIL, "north", "south"])
    );
    let cause = before["cause_category"].as_str().unwrap();
    assert!(
        cause.starts_with("Undetermined") && cause.contains("chg-42 (messaging <update>)"),
        "{cause}"
    );
    let response = alice
        .post(
            &daemon,
            &format!("/noc/incidents/{id}/cause"),
            &[("csrf", &token), ("verdict", "confirmed")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let after = draft("after").await;
    assert!(
        after["cause_category"]
            .as_str()
            .unwrap()
            .ends_with("confirmed"),
        "{after}"
    );
    let text = alice
        .get(
            &daemon,
            &format!("/noc/incidents/{id}/notifications/ofcom.txt"),
        )
        .await;
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    let text = text.text().await.unwrap();
    assert!(text.starts_with("DRAFT — Ofcom incident report"), "{text}");
    assert!(text.contains("End customers affected: 900000"), "{text}");
    let not_met = alice
        .get(
            &daemon,
            &format!("/noc/incidents/{id}/notifications/fcc_nors.json"),
        )
        .await;
    assert_eq!(not_met.status(), 404, "fcc_nors is not met within seconds");
    let response = alice
        .post(
            &daemon,
            &format!("/noc/incidents/{id}/cause"),
            &[("csrf", &token), ("verdict", "maybe")],
        )
        .await;
    assert_eq!(response.status(), 400);

    // A maintenance from the form: stored as from the API, noted in the open incident.
    let starts = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let ends = (chrono::Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let response = alice
        .post(
            &daemon,
            "/noc/maintenances",
            &[
                ("csrf", &token),
                ("service", "voicemail"),
                ("starts_at", &starts),
                ("ends_at", &ends),
                ("summary", "vm-a repair"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let windows = daemon.get_json("/api/v1/maintenances").await;
    assert_eq!(windows["maintenances"][0]["summary"], "vm-a repair");
    assert_eq!(
        windows["maintenances"][0]["services"],
        serde_json::json!(["voicemail"])
    );
    let response = alice
        .post(
            &daemon,
            "/noc/maintenances",
            &[
                ("csrf", &token),
                ("service", "voicemail"),
                ("starts_at", "tomorrow"),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let incident = daemon.get_json(&format!("/api/v1/incidents/{id}")).await;
    let events: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"cause_confirmed") && events.contains(&"maintenance_scheduled"),
        "{events:?}"
    );

    // 20 attempts per name and hour, then 429 even with the right password.
    for _ in 0..20 {
        assert_eq!(login(daemon.addr, "victor", "guess").await, Err(401));
    }
    assert_eq!(
        login(daemon.addr, "victor", VICTOR_PASSWORD).await,
        Err(429)
    );
    assert!(
        login(daemon.addr, "alice", ALICE_PASSWORD).await.is_ok(),
        "other names still log in"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_update_reaches_subscribers_at_once() {
    let dir = temp_dir();
    let target = Target::start().await;
    let secret = write(
        dir.path(),
        "subscriptions.secret",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    );
    let toml = config(dir.path(), &target).body(&format!(
        r#"
[subscriptions]
enabled = true
server = "127.0.0.1:1"
tls = "none"
from = "status@status.example.net"
secret_file = "{}"
"#,
        path_str(&secret)
    ));
    let daemon = Daemon::start(&toml, dir.path()).await;
    let mut hooks = common::Receiver::start().await;
    let subscribed = client()
        .post(daemon.url("/api/v1/subscriptions"))
        .json(&serde_json::json!({"webhook": hooks.url(), "services": ["voicemail"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 201);
    target.set_status(503);
    // Which of the two services fails first is a race: the subscriber (voicemail) may hear
    // of the incident from its opening or from an update; what matters is the posted text.
    let id = open_incident(&daemon).await;

    let alice = Browser {
        cookie: cookie_value(&login(daemon.addr, "alice", ALICE_PASSWORD).await.unwrap()),
    };
    let token = csrf(&alice.page(&daemon, &format!("/noc/incidents/{id}")).await);
    let text = "Engineers are on site; next update at 15:00.";
    let response = alice
        .post(
            &daemon,
            &format!("/noc/incidents/{id}/updates"),
            &[("csrf", &token), ("text", text)],
        )
        .await;
    assert_eq!(response.status(), 303);
    loop {
        let notice = hooks.next().await;
        let updates = notice.event["incident"]["updates"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if updates.iter().any(|u| u["text"] == text) {
            assert_eq!(notice.kind(), "incident.updated");
            let body = String::from_utf8(notice.body).unwrap();
            assert!(
                !body.contains("alice"),
                "who posted it is the operators' business"
            );
            break;
        }
    }
    daemon.stop().await;
}
