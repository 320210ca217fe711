//! The shipped Prometheus rules and Grafana dashboard only use series tocsin exports: every
//! metric name in them must appear on a live `/metrics` once the daemon has probed, failed,
//! opened an incident and delivered an alert. Also checks the dashboard's shape for current
//! Grafana. (promtool and amtool check the rest: .ci/deploy-checks.)

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Daemon, PATIENCE, Receiver, Target, path_str, temp_dir};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL-looking identifier in `text` (colons included, so recording-rule names stay
/// whole and are not mistaken for the metric inside them).
fn identifiers(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The names of tocsin's and the process collector's series mentioned in `text`.
fn exported_names_used(text: &str) -> BTreeSet<String> {
    identifiers(text)
        .into_iter()
        .filter(|i| i.starts_with("tocsin_") || i.starts_with("process_"))
        .collect()
}

/// Recording-rule names (`level:metric:operations`) mentioned in `text`.
fn recorded_names_used(text: &str) -> BTreeSet<String> {
    let shape = regex::Regex::new(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$").unwrap();
    identifiers(text)
        .into_iter()
        .filter(|i| shape.is_match(i))
        .collect()
}

/// A rule file without its comment lines (which may name things for the reader).
fn rules_text(path: &Path) -> String {
    read(path)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("prometheus/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "recording and alerting rules: {files:?}");
    files
}

/// Every PromQL expression of the dashboard: panel targets and template queries.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            out.push(var["definition"].as_str().unwrap().to_string());
        }
    }
    out
}

/// Series names on a `/metrics` page.
fn names_on(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn the_dashboard_is_a_current_grafana_dashboard_with_a_datasource_variable() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/tocsin.json"))).expect("valid JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "panel {} must use the datasource variable",
                panel["title"]
            );
            assert!(!panel["targets"].as_array().unwrap().is_empty());
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Service status",
        "Affected subscribers",
        "Open incidents",
        "Probe latency by region",
        "Deliveries",
    ] {
        assert!(
            titles.contains(&wanted),
            "no {wanted:?} panel in {titles:?}"
        );
    }
}

#[test]
fn alert_rules_use_only_defined_recording_rules() {
    let recording = read(&deploy("prometheus/rules/tocsin.rules.yml"));
    let defined: BTreeSet<String> = recording
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_string())
        .collect();
    assert!(!defined.is_empty());
    for file in rule_files() {
        let used = recorded_names_used(&rules_text(&file));
        let undefined: Vec<_> = used.difference(&defined).collect();
        assert!(
            undefined.is_empty(),
            "{}: {undefined:?} not recorded",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_reference_only_series_on_a_live_metrics_page() {
    let mut used = BTreeSet::new();
    for file in rule_files() {
        used.extend(exported_names_used(&rules_text(&file)));
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/tocsin.json"))).unwrap();
    for query in dashboard_queries(&dashboard) {
        used.extend(exported_names_used(&query));
    }
    // Sanity: the scan finds the families the dashboard is about.
    for name in [
        "tocsin_service_status",
        "tocsin_incidents_open",
        "tocsin_scheduler_lag_seconds_bucket",
        "tocsin_alert_deliveries_total",
    ] {
        assert!(used.contains(name), "{name} not found in the deploy files");
    }

    // A failing target with a receiver: failures, an incident and a delivery make every
    // labelled family appear.
    let dir = temp_dir();
    let target = Target::start().await;
    target.set_status(503);
    let mut receiver = Receiver::start().await;
    let config = format!(
        r#"
[storage]
sqlite = "{db}"
[defaults]
interval = "100ms"
timeout = "80ms"
failure_threshold = 1
success_threshold = 1
[[services]]
id = "voicemail"
subscribers = 1000
[[targets]]
id = "vm-north"
service = "voicemail"
region = "north"
subscribers = 100
probe = {{ type = "http", url = "{url}" }}
[[receivers]]
name = "noc"
type = "webhook"
url = "{hook}"
"#,
        db = path_str(&dir.path().join("tocsin.db")),
        url = target.url(),
        hook = receiver.url(),
    );
    let daemon = Daemon::start(&config, dir.path()).await;
    assert_eq!(receiver.next().await.kind(), "incident.opened");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let exported = names_on(&daemon.metrics().await);
        let missing: Vec<&String> = used.difference(&exported).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "used in deploy/ but not on /metrics: {missing:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    daemon.stop().await;
}
