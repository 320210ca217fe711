//! `[metrics] per_target` on the running daemon: for each choice `/metrics` passes
//! `promtool check metrics`, writes the per-target series it promises and no others, and
//! always the per-group and per-service aggregates; gzip when asked; a reload switches.

mod common;

use std::io::Read;

use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Daemon, Target, temp_dir, wait_for};

const GROUP: &str = r#"service="voicemail",region="paris",platform="vm-a",vantage="default""#;

/// Target `ok` answers, `dead` is a closed port; both in one group.
fn config(dir: &std::path::Path, per_target: &str, ok: &Target) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    TestConfig::new(dir)
        .instant_thresholds()
        .admin_token()
        .body(&format!(
            r#"
[metrics]
per_target = "{per_target}"

[[services]]
id = "voicemail"

[[groups]]
id = "vm-paris"
service = "voicemail"
region = "paris"
platform = "vm-a"
subscribers = 1000

[[targets]]
id = "ok"
groups = ["vm-paris"]
probe = {{ type = "http", url = "{}" }}

[[targets]]
id = "dead"
groups = ["vm-paris"]
probe = {{ type = "http", url = "http://{closed}/" }}
"#,
            ok.url()
        ))
        .to_string()
}

/// Starts the daemon on `per_target` and waits until `ok` is up and `dead` down.
async fn start(dir: &std::path::Path, per_target: &str, ok: &Target) -> (Daemon, String) {
    let daemon = Daemon::start(config(dir, per_target, ok), dir).await;
    let settled = |text: &str| {
        ["up", "down"].iter().all(|state| {
            text.contains(&format!(
                "tocsin_group_targets{{{GROUP},state=\"{state}\"}} 1"
            ))
        })
    };
    wait_for("ok up and dead down", || async {
        settled(&daemon.metrics().await)
    })
    .await;
    let text = daemon.metrics().await;
    (daemon, text)
}

/// The targets that have a series of family `name`.
fn targets_of(text: &str, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| Some(l.split("target=\"").nth(1)?.split('"').next()?.to_string()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn assert_aggregates(text: &str) {
    for family in [
        format!("tocsin_group_probes_total{{{GROUP},result=\"success\"}}"),
        format!("tocsin_group_probes_total{{{GROUP},result=\"failure\"}}"),
        format!("tocsin_group_probe_failures_total{{{GROUP},reason=\"connect_refused\"}}"),
        format!("tocsin_group_probe_duration_seconds_bucket{{{GROUP},le=\"+Inf\"}}"),
        format!("tocsin_group_probe_duration_seconds_count{{{GROUP}}}"),
        "tocsin_service_probes_total{service=\"voicemail\",vantage=\"default\",result=\"success\"}"
            .to_string(),
        "tocsin_service_probe_duration_seconds_sum{service=\"voicemail\",vantage=\"default\"}"
            .to_string(),
        "tocsin_service_targets{service=\"voicemail\",vantage=\"default\",state=\"down\"} 1"
            .to_string(),
    ] {
        assert!(text.contains(&family), "{family} missing from:\n{text}");
    }
}

const GAUGES: [&str; 3] = [
    "tocsin_probe_success",
    "tocsin_probe_duration_seconds",
    "tocsin_target_state",
];
const COUNTERS: [&str; 2] = ["tocsin_probes_total", "tocsin_probe_failures_total"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_writes_every_per_target_series_and_gzips_when_asked() {
    let dir = temp_dir();
    let ok = Target::start().await;
    let (daemon, text) = start(dir.path(), "all", &ok).await;
    for name in GAUGES.iter().chain(&["tocsin_probes_total"]) {
        assert_eq!(targets_of(&text, name), ["dead", "ok"], "{name}");
    }
    assert_eq!(targets_of(&text, "tocsin_probe_failures_total"), ["dead"]);
    assert_aggregates(&text);
    common::assert_promtool_accepts(&text);

    let response = reqwest::Client::new()
        .get(daemon.url("/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert!(
        compressed.len() * 3 < plain.len(),
        "{} gzip bytes for {}",
        compressed.len(),
        plain.len()
    );
    common::assert_promtool_accepts(&plain);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_up_writes_only_the_gauges_of_targets_not_up() {
    let dir = temp_dir();
    let ok = Target::start().await;
    let (daemon, text) = start(dir.path(), "not_up", &ok).await;
    for name in GAUGES {
        assert_eq!(targets_of(&text, name), ["dead"], "{name}");
    }
    for name in COUNTERS {
        assert!(!text.contains(&format!("{name}{{")), "{name} in:\n{text}");
    }
    assert_aggregates(&text);
    common::assert_promtool_accepts(&text);

    // `ok` failing appears, and goes again once it is up.
    ok.set_status(503);
    wait_for("ok's gauges", || async {
        targets_of(&daemon.metrics().await, "tocsin_probe_success") == ["dead", "ok"]
    })
    .await;
    ok.set_status(200);
    wait_for("ok's gauges to go", || async {
        targets_of(&daemon.metrics().await, "tocsin_probe_success") == ["dead"]
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_writes_only_aggregates_and_a_reload_brings_the_targets_back() {
    let dir = temp_dir();
    let ok = Target::start().await;
    let (daemon, text) = start(dir.path(), "off", &ok).await;
    assert!(
        !text.contains("target=\""),
        "a per-target series in:\n{text}"
    );
    assert_aggregates(&text);
    common::assert_promtool_accepts(&text);

    std::fs::write(
        dir.path().join("tocsin.toml"),
        config(dir.path(), "all", &ok),
    )
    .unwrap();
    let reload = reqwest::Client::new()
        .post(daemon.url("/-/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let text = daemon.metrics().await;
    assert_eq!(targets_of(&text, "tocsin_probes_total"), ["dead", "ok"]);
    daemon.stop().await;
}
