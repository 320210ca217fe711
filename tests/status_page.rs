//! The status page and its public APIs against the running daemon: Statuspage v2 documents
//! validated against a JSON schema written from Statuspage's documented fields (by the
//! Python `jsonschema` implementation), the page rendered by headless Chromium with a
//! screenshot kept as a test artifact, a service named `<script>` shown as text, the
//! incident page, badges and the Atom feed.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, Target, path_str, temp_dir, wait_for, write};

fn config(dir: &std::path::Path, target: &Target) -> TestConfig {
    TestConfig::new(dir)
        .server("page_title", "\"Example Telecom status\"")
        .admin_token()
        .instant_thresholds()
        .body(&format!(
            r#"
[page]
time_zone = "Europe/Paris"
# The two services fail together apart: two incidents at once, not after `group_wait`.
[incidents]
group_wait = "0s"
[[services]]
id = "voicemail"
name = "Voicemail"
subscribers = 30_000_000
[[services]]
id = "evil"
name = "<script>alert('x')</script>"
subscribers = 1
[[groups]]
id = "vm-a-north"
service = "voicemail"
platform = "vm-a"
region = "north"
subscribers = 900_000
[[targets]]
id = "vm-a-north-store"
groups = ["vm-a-north"]
probe = {{ type = "http", url = "{url}" }}
[[targets]]
id = "evil-www"
service = "evil"
probe = {{ type = "http", url = "{url}" }}
"#,
            url = target.url(),
        ))
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium as the probe of the machine's documentation sets it up.
fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = temp_dir();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", path_str(profile.path())))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium is installed by the README's test command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_apis_badge_and_feed_with_an_open_incident() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let client = reqwest::Client::new();
    let created = client
        .post(daemon.url("/api/v1/maintenances"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "services": ["evil"],
            "starts_at": chrono::Utc::now() + chrono::Duration::days(30),
            "ends_at": chrono::Utc::now() + chrono::Duration::days(30) + chrono::Duration::hours(2),
            "summary": "Core network <upgrade>",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    target.set_status(503);
    wait_for("the incident", || async {
        let list = daemon.get_json("/api/v2/incidents/unresolved.json").await;
        list["incidents"].as_array().unwrap().len() == 2
    })
    .await;

    // Every v2 document against the schema, by an independent validator.
    let schema =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statuspage/v2.schema.json");
    for doc in [
        "summary.json",
        "status.json",
        "components.json",
        "incidents.json",
        "incidents/unresolved.json",
        "scheduled-maintenances.json",
        "scheduled-maintenances/upcoming.json",
        "scheduled-maintenances/active.json",
    ] {
        let body = reqwest::get(daemon.url(&format!("/api/v2/{doc}")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let file = write(dir.path(), "doc.json", &body);
        let out = Command::new("python3")
            .args([
                "-c",
                "import json,sys,jsonschema\n\
                 jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])),\n\
                 format_checker=jsonschema.FormatChecker())\nprint('valid')",
            ])
            .arg(path_str(&schema))
            .arg(path_str(&file))
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{doc} does not match the Statuspage v2 schema:\n{}\n{body}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let summary = daemon.get_json("/api/v2/summary.json").await;
    assert_eq!(summary["page"]["name"], "Example Telecom status");
    // No external_url: links point at the address actually listened on.
    assert_eq!(summary["page"]["url"], daemon.url(""));
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["components"][0]["id"], "voicemail");
    assert_eq!(summary["components"][0]["status"], "partial_outage");
    assert_eq!(summary["components"][1]["status"], "major_outage");
    let vm = summary["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["components"][0]["id"] == "voicemail")
        .unwrap()
        .clone();
    assert_eq!(vm["name"], "Voicemail: partial outage");
    assert_eq!(vm["impact"], "major");
    assert_eq!(vm["status"], "investigating");
    assert_eq!(vm["incident_updates"][0]["status"], "investigating");
    // Updates are the customer-facing texts, not the operator's figures.
    assert_eq!(
        vm["incident_updates"][0]["body"],
        "We are investigating a problem with Voicemail: about 3.0% of subscribers cannot use it."
    );
    assert_eq!(summary["scheduled_maintenances"][0]["status"], "scheduled");
    assert_eq!(
        summary["scheduled_maintenances"][0]["name"],
        "Core network <upgrade>"
    );

    // A real Statuspage client library (statuspage.io on npm) reads the page.
    let client_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/statuspage_client");
    let read = Command::new("node")
        .current_dir(&client_dir)
        .arg("client.js")
        .arg(daemon.url(""))
        .output()
        .expect("node runs");
    assert!(
        read.status.success(),
        "the Statuspage client failed (its package is installed by the README's test command):\n{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(parsed["page"], "Example Telecom status");
    assert_eq!(parsed["indicator"], "critical");
    assert_eq!(parsed["description"], "Major Service Outage");
    assert_eq!(
        parsed["components"],
        serde_json::json!([["voicemail", "partial_outage"], ["evil", "major_outage"]])
    );
    assert_eq!(parsed["unresolved"], 2);
    assert!(
        parsed["incidents"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!([
                "Voicemail: partial outage",
                "investigating",
                "major"
            ]))
    );
    assert_eq!(
        parsed["maintenances"],
        serde_json::json!([["Core network <upgrade>", "scheduled"]])
    );
    assert_eq!(parsed["upcoming"], 1);

    // The page, rendered by a real browser.
    let url = daemon.url("/");
    let dom = chromium(&["--dump-dom"], &url);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("Current incidents"), "{dom}");
    assert!(dom.contains("Voicemail: partial outage"));
    assert!(dom.contains("3.0% of subscribers affected"), "{dom}");
    // The public page keeps the operator's detail to itself by default.
    for operator_only in [
        "900\u{202f}000",
        "vm-a",
        "sev2",
        "ofcom",
        "fcc_nors",
        "notify by",
    ] {
        assert!(
            !dom.contains(operator_only),
            "`{operator_only}` on the public page"
        );
    }
    assert!(dom.contains("Regions"), "regions are public by default");
    assert!(dom.contains("Major outage"));
    assert!(
        dom.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
        "the service name shows as text"
    );
    assert!(
        !dom.contains("<script>alert"),
        "no script element from a name"
    );
    assert!(dom.contains("Core network &lt;upgrade&gt;"));
    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let rendered = chromium(
        &[
            &format!("--screenshot={}", path_str(&shot)),
            "--window-size=1200,1600",
            "--hide-scrollbars",
        ],
        &url,
    );
    assert!(rendered.status.success());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 10_000, "a real rendering, {} bytes", png.len());
    // And at a phone's width.
    let phone = artifacts().join("status-page-phone.png");
    let _ = std::fs::remove_file(&phone);
    let rendered = chromium(
        &[
            &format!("--screenshot={}", path_str(&phone)),
            "--window-size=390,1400",
            "--hide-scrollbars",
        ],
        &url,
    );
    assert!(rendered.status.success());
    assert!(std::fs::metadata(&phone).expect("a phone screenshot").len() > 10_000);

    // Compressed for clients that accept it.
    let compressed = reqwest::Client::new()
        .get(daemon.url("/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");

    // The incident page, a badge and the feed.
    let id = vm["id"].as_str().unwrap();
    let page = reqwest::get(daemon.url(&format!("/incidents/{id}")))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Updates"));
    assert!(html.contains("We are investigating a problem with Voicemail"));
    for operator_only in ["vm-a", "ofcom", "notify by", "suspected", "user-minutes"] {
        assert!(
            !html.contains(operator_only),
            "`{operator_only}` on the incident page"
        );
    }
    // Times in the page's time zone, to the minute.
    assert!(
        html.contains(" CET") || html.contains(" CEST"),
        "Europe/Paris times"
    );
    // `<time datetime="…">` carries RFC 3339 for machines, by HTML's definition; what
    // people read does not.
    let mut shown = html.clone();
    while let Some(start) = shown.find("datetime=\"") {
        let end = shown[start + 10..]
            .find('"')
            .map_or(shown.len(), |e| start + 11 + e);
        shown.replace_range(start..end, "");
    }
    assert!(
        !shown.contains(".190") && !shown.contains("T0"),
        "no RFC 3339 for people"
    );
    assert_eq!(
        reqwest::get(daemon.url("/incidents/inc-999999"))
            .await
            .unwrap()
            .status(),
        404
    );
    let badge = reqwest::get(daemon.url("/badge/voicemail.svg"))
        .await
        .unwrap();
    assert_eq!(badge.headers()["content-type"], "image/svg+xml");
    let svg = badge.text().await.unwrap();
    assert!(svg.contains("Voicemail: partial outage"), "{svg}");
    assert_eq!(
        reqwest::get(daemon.url("/badge/nope.svg"))
            .await
            .unwrap()
            .status(),
        404
    );
    let feed = reqwest::get(daemon.url("/history.atom")).await.unwrap();
    assert_eq!(
        feed.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let xml = feed.text().await.unwrap();
    assert!(xml.starts_with("<?xml"));
    assert_eq!(xml.matches("<entry>").count(), 2);
    assert!(!xml.contains("<script>"));
    daemon.stop().await;
}
