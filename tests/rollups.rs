//! Rollups in a real run: live uptime figures in `/api/v1/status` during an outage, and the
//! service history the status page reads, kept across a restart.

mod common;

use common::test_config::TestConfig;
use common::{Daemon, Target, temp_dir, wait_for};
use serde_json::Value;

fn config(dir: &std::path::Path, target: &Target) -> TestConfig {
    TestConfig::new(dir)
        .default("failure_threshold", "2")
        .body(&format!(
            r#"
[[services]]
id = "web"
[[targets]]
id = "www"
service = "web"
probe = {{ type = "http", url = "{url}" }}
"#,
            url = target.url(),
        ))
}

async fn web(daemon: &Daemon) -> Value {
    daemon.get_json("/api/v1/status").await["services"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_drops_during_an_outage_and_history_survives_a_restart() {
    let dir = temp_dir();
    let target = Target::start().await;
    let toml = config(dir.path(), &target);
    let daemon = Daemon::start(&toml, dir.path()).await;

    wait_for("a full uptime while the target answers", || async {
        web(&daemon).await["uptime"]["24h"].as_f64() == Some(1.0)
    })
    .await;

    target.set_status(500);
    wait_for("the outage", || async {
        web(&daemon).await["status"] == "major_outage"
    })
    .await;
    wait_for("uptime below 1", || async {
        web(&daemon).await["uptime"]["24h"]
            .as_f64()
            .is_some_and(|u| u < 1.0)
    })
    .await;
    let uptime = web(&daemon).await["uptime"].clone();
    let day = uptime["24h"].as_f64().unwrap();
    assert!(day > 0.0 && day < 1.0, "{uptime}");
    for window in ["7d", "30d", "90d"] {
        let u = uptime[window].as_f64().unwrap();
        assert!(u > 0.0 && u < 1.0, "{window}: {uptime}");
    }

    let history = daemon.get_json("/api/v1/services/web/history").await;
    assert_eq!(history["service"], "web");
    assert_eq!(history["days"].as_array().unwrap().len(), 90);
    assert_eq!(history["latency"].as_array().unwrap().len(), 24);
    let missing = reqwest::get(daemon.url("/api/v1/services/nope/history"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let incident = daemon.get_json("/api/v1/incidents?status=open").await["incidents"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A graceful stop stores the open minute: the history has the outage without waiting
    // for a minute to end.
    daemon.stop().await;
    let daemon = Daemon::start(&toml, dir.path()).await;
    let history = daemon.get_json("/api/v1/services/web/history").await;
    let days = history["days"].as_array().unwrap();
    let recent = &days[88..]; // a run across midnight UTC spans two days
    let sum = |key: &str| recent.iter().map(|d| d[key].as_f64().unwrap()).sum::<f64>();
    assert!(sum("observed_seconds") > 0.0, "{recent:?}");
    assert!(sum("downtime_seconds") > 0.0, "{recent:?}");
    assert!(
        recent.iter().any(|d| d["worst_status"] == "major_outage"),
        "{recent:?}"
    );
    assert!(
        recent.iter().any(|d| d["incidents"]
            .as_array()
            .unwrap()
            .contains(&Value::from(incident.clone()))),
        "{recent:?}"
    );
    let latency = history["latency"].as_array().unwrap();
    let probes: u64 = latency[22..]
        .iter()
        .map(|p| p["probes"].as_u64().unwrap())
        .sum();
    let failures: u64 = latency[22..]
        .iter()
        .map(|p| p["failures"].as_u64().unwrap())
        .sum();
    assert!(
        probes > failures && failures >= 2,
        "{probes} probes, {failures} failures"
    );
    assert!(
        latency[22..]
            .iter()
            .any(|p| p["p95_seconds"].as_f64().is_some_and(|v| v > 0.0)),
        "{latency:?}"
    );
    daemon.stop().await;
}
