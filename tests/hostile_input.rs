//! Hostile input at the daemon's HTTP edge: values no client should send, sent anyway,
//! against the real daemon on 127.0.0.1:0. Each must get an answer, never a dropped
//! connection from a panicking handler.

mod common;

use common::{Daemon, Target, metric_sum, path_str, temp_dir};

fn config(dir: &std::path::Path, target: &Target) -> String {
    format!(
        r#"
[storage]
sqlite = "{db}"
[defaults]
interval = "1s"
timeout = "500ms"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}

[modules.tcp_connect]
probe = {{ type = "tcp" }}
timeout = "2s"
"#,
        db = path_str(&dir.join("tocsin.db")),
        url = target.url(),
    )
}

/// `X-Prometheus-Scrape-Timeout-Seconds` is a float from the network: too large for a
/// Duration, infinite, NaN, negative or not a number, it leaves the module's timeout alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_survives_any_scrape_timeout_header() {
    let dir = temp_dir();
    let target = Target::start().await;
    let daemon = Daemon::start(&config(dir.path(), &target), dir.path()).await;
    let client = reqwest::Client::new();
    let url = daemon.url(&format!("/probe?module=tcp_connect&target={}", target.addr));
    for (value, expected) in [
        ("1e20", 2.0),
        ("1.8e308", 2.0),
        ("1e400", 2.0),
        ("18446744073709551616", 2.0),
        ("inf", 2.0),
        ("-inf", 2.0),
        ("NaN", 2.0),
        ("-1", 2.0),
        ("0", 2.0),
        ("0.5", 2.0),
        ("5e-324", 2.0),
        ("soon", 2.0),
        ("1.5", 1.0),
    ] {
        let response = client
            .get(&url)
            .header("X-Prometheus-Scrape-Timeout-Seconds", value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(response.status(), 200, "{value}");
        let text = response.text().await.unwrap();
        assert_eq!(
            metric_sum(&text, "probe_timeout_seconds", &[]),
            expected,
            "{value}: {text}"
        );
        assert_eq!(metric_sum(&text, "probe_success", &[]), 1.0, "{value}");
    }
    daemon.stop().await;
}

fn replay(toml: &str, lines: &[String]) -> Result<tocsin::replay::Totals, String> {
    let settings = tocsin::config::load(&tocsin::config::ConfigSource::Inline(toml.into()))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let input = lines.join("\n");
    tocsin::replay::run(settings, input.as_bytes(), std::io::sink()).map_err(|e| e.to_string())
}

const ONE_TARGET: &str = r#"
[defaults]
interval = "30s"
failure_threshold = 1
[[services]]
id = "voice"
class = "telephony"
[[groups]]
id = "core"
service = "voice"
subscribers = 1000
[[targets]]
id = "sbc"
groups = ["core"]
probe = { type = "tcp", address = "127.0.0.1:9" }
"#;

fn failure(at: &str) -> String {
    format!(r#"{{"at":"{at}","target":"sbc","ok":false,"reason":"timeout"}}"#)
}

/// chrono reads years past 9999 (`+262142-…`, its last year); one second later no longer
/// fits a timestamp. RFC 3339 has four-digit years, and so does every input now.
#[test]
fn replay_refuses_timestamps_past_year_9999() {
    let end = "+262142-12-31T23:59:59.5Z";
    let err = replay(ONE_TARGET, &[failure(end), failure(end)]).unwrap_err();
    assert!(err.starts_with("line 1: `at`: "), "{err}");
    assert!(err.contains("not an RFC 3339 time"), "{err}");
    let first = "-0001-01-01T00:00:00Z";
    assert!(replay(ONE_TARGET, &[failure(first)]).is_err());
    // The edges of the range still replay (successes: nothing ticks through the gap).
    let success = |at: &str| format!(r#"{{"at":"{at}","target":"sbc","ok":true}}"#);
    let totals = replay(
        ONE_TARGET,
        &[
            success("0000-01-01T00:00:00Z"),
            success("9999-12-31T23:59:59.999Z"),
        ],
    )
    .unwrap();
    assert_eq!(totals.lines, 2);
}

/// A custom rule's `notify_within` is an operator's duration, up to 500 billion years for
/// humantime: a deadline that far is past any timestamp, so it is no deadline, not a panic.
#[test]
fn a_reporting_deadline_past_the_last_timestamp_is_none() {
    let toml = format!(
        "{ONE_TARGET}\n[[reporting.custom]]\nname = \"any\"\n\
         min_affected = 1\nnotify_within = \"1000000years\"\n"
    );
    let lines = [
        failure("2026-07-05T14:00:00Z"),
        failure("2026-07-05T14:00:30Z"),
        failure("2026-07-05T14:01:00Z"),
    ];
    let totals = replay(&toml, &lines).unwrap();
    assert_eq!(totals.incidents, 1);
}

/// The write API takes timestamps from the network: past year 9999 they are refused with
/// a 400, like any other invalid value, before the engine or the store see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_api_refuses_timestamps_past_year_9999() {
    let dir = temp_dir();
    let target = Target::start().await;
    let token = common::write(dir.path(), "admin.token", "s3cret-admin-token\n");
    let toml = format!(
        "[server]\nadmin_token_file = \"{}\"\n{}",
        path_str(&token),
        config(dir.path(), &target)
    );
    let daemon = Daemon::start(&toml, dir.path()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(daemon.url(path))
            .bearer_auth("s3cret-admin-token")
            .json(&body)
            .send()
    };
    let end = "+262142-12-31T23:59:59Z";
    let change = post(
        "/api/v1/changes",
        serde_json::json!({ "summary": "far away", "at": end }),
    )
    .await
    .unwrap();
    assert_eq!(change.status(), 400);
    assert!(change.text().await.unwrap().contains("year"));
    let window = post(
        "/api/v1/maintenances",
        serde_json::json!({ "services": ["web"], "starts_at": "2026-07-05T14:00:00Z",
                            "ends_at": end }),
    )
    .await
    .unwrap();
    assert_eq!(window.status(), 400);
    // The daemon is still whole: a valid change goes through and shows up.
    let ok = post("/api/v1/changes", serde_json::json!({ "summary": "near" }))
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let changes = daemon.get_json("/api/v1/changes").await;
    assert_eq!(changes["changes"].as_array().unwrap().len(), 1, "{changes}");
    daemon.stop().await;
}

/// A timeout is the operator's duration (a module's, a target's): one too long for an
/// `Instant` is a deadline far away, not a panic when the probe starts.
#[tokio::test]
async fn a_probe_with_an_endless_timeout_runs() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let probe = serde_json::json!({ "type": "tcp", "address": address });
    let result = common::probing::run(probe, std::time::Duration::MAX).await;
    common::probing::failed(&result, tocsin::probe::Reason::ConnectRefused);
}
