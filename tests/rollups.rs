//! Rollups in a real run: live uptime figures in `/api/v1/status` during an outage (the
//! availability weighted by subscribers, the time-based figure beside it), today's cell of
//! the history agreeing with them from the first second, and the history kept across a
//! restart.

mod common;

use common::test_config::TestConfig;
use common::{Daemon, Target, temp_dir, wait_for};
use serde_json::Value;

/// `web`: 100 subscribers, 97 behind `www` and 3 behind `edge`.
fn config(dir: &std::path::Path, www: &Target, edge: &Target) -> TestConfig {
    TestConfig::new(dir)
        .default("failure_threshold", "2")
        .body(&format!(
            r#"
[[services]]
id = "web"
subscribers = 100
[[targets]]
id = "www"
service = "web"
subscribers = 97
probe = {{ type = "http", url = "{www}" }}
[[targets]]
id = "edge"
service = "web"
subscribers = 3
probe = {{ type = "http", url = "{edge}" }}
"#,
            www = www.url(),
            edge = edge.url(),
        ))
}

fn ratio(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a ratio, got {v}"))
}

async fn web(daemon: &Daemon) -> Value {
    daemon.get_json("/api/v1/status").await["services"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_drops_during_an_outage_and_history_survives_a_restart() {
    let dir = temp_dir();
    let www = Target::start().await;
    let target = Target::start().await;
    let toml = config(dir.path(), &www, &target);
    let daemon = Daemon::start(&toml, dir.path()).await;

    wait_for("a full availability while the targets answer", || async {
        web(&daemon).await["availability"]["24h"].as_f64() == Some(1.0)
    })
    .await;
    // From the first seconds, before any minute is stored: today's cell has data, and the
    // figures say since when they count.
    let fresh = web(&daemon).await;
    assert!(fresh["observed_since"].is_string(), "{fresh}");
    let history = daemon.get_json("/api/v1/services/web/history").await;
    assert_eq!(
        history["days"][89]["availability"], 1.0,
        "{}",
        history["days"][89]
    );

    target.set_status(500);
    wait_for("the outage", || async {
        web(&daemon).await["status"] == "partial_outage"
    })
    .await;
    wait_for("availability below 1", || async {
        web(&daemon).await["availability"]["24h"]
            .as_f64()
            .is_some_and(|u| u < 1.0)
    })
    .await;
    let service = web(&daemon).await;
    // 3 % of the subscribers lost service: the availability loses at most 3 %, while the
    // service spent a large share of its short life in partial outage.
    let available = ratio(&service["availability"]["24h"]);
    let operational = ratio(&service["operational_time"]["24h"]);
    assert!((0.97..1.0).contains(&available), "{service}");
    assert!(operational < available, "{service}");
    for window in ["7d", "30d", "90d"] {
        let u = ratio(&service["availability"][window]);
        assert!((0.97..1.0).contains(&u), "{window}: {service}");
    }
    let today = &daemon.get_json("/api/v1/services/web/history").await["days"][89];
    let cell = ratio(&today["availability"]);
    assert!((0.97..1.0).contains(&cell), "{today}");
    assert!(ratio(&today["operational_time"]) < cell, "{today}");

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
        recent.iter().any(|d| d["worst_status"] == "partial_outage"),
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
