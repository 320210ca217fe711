//! The real binary: reload on SIGHUP (a bad file keeps the old config probing), graceful
//! exit on SIGTERM, `kill -9` and restart without a second `incident.opened`, the same on
//! a PostgreSQL store, `/metrics` linted by `promtool check metrics`, and transparent huge pages off.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::test_config::TestConfig;
use common::{PATIENCE, Receiver, Target, metric_sum, postgres, temp_dir, wait_for};

/// `tocsin run` as a child process, its address read from its JSON log.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn start(config: &Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(listen) = v["fields"]["listen"].as_str() {
                    let _ = tx.send(listen.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the daemon logs its listen address");
        Process { child, addr }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("http://{}/api/v1/status", self.addr))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits for the exit code; panics after PATIENCE.
    fn wait(mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's configuration in `dir`, its store `dir/tocsin.db`.
fn config(dir: &Path, targets: &[(&str, String)], receiver: Option<&Receiver>) -> String {
    test_config(dir, targets, receiver).to_string()
}

fn test_config(dir: &Path, targets: &[(&str, String)], receiver: Option<&Receiver>) -> TestConfig {
    let mut out = TestConfig::new(dir)
        .server("listen", "\"127.0.0.1:0\"")
        .default("failure_threshold", "2")
        .default("success_threshold", "1")
        .body("[[services]]\nid = \"voice\"\nsubscribers = 1000");
    for (id, url) in targets {
        out = out.body(&format!(
            "[[targets]]\nid = \"{id}\"\nservice = \"voice\"\nsubscribers = 100\nprobe = {{ type = \"http\", url = \"{url}\" }}"
        ));
    }
    if let Some(r) = receiver {
        out = out.body(&format!(
            "[[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"{}\"",
            r.url()
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_file_keeps_probing_and_a_good_one_applies() {
    let dir = temp_dir();
    let target = Target::start().await;
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config(dir.path(), &[("a", target.url())], None)).unwrap();
    let daemon = Process::start(&path);
    wait_for("first probes", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_probes_total",
            &[("target", "a")],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric_sum(
            &daemon.metrics().await,
            "tocsin_config_last_reload_successful",
            &[]
        ),
        1.0
    );

    std::fs::write(
        &path,
        "[defaults]\ninterval = \"1s\"\ntimeout = \"2s\"\nbogus = 1\n",
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the failed reload to be counted", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_config_last_reload_successful",
            &[],
        ) == 0.0
    })
    .await;
    let before = metric_sum(
        &daemon.metrics().await,
        "tocsin_probes_total",
        &[("target", "a")],
    );
    wait_for("the old configuration to keep probing", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_probes_total",
            &[("target", "a")],
        ) >= before + 3.0
    })
    .await;

    std::fs::write(
        &path,
        config(
            dir.path(),
            &[("a", target.url()), ("b", target.url())],
            None,
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the new target to be probed", || async {
        let m = daemon.metrics().await;
        metric_sum(&m, "tocsin_config_last_reload_successful", &[]) == 1.0
            && metric_sum(&m, "tocsin_probes_total", &[("target", "b")]) >= 1.0
    })
    .await;
    let status = daemon.status().await;
    let ids: Vec<&str> = status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        status["targets"][0]["state"], "up",
        "state kept across the reload"
    );

    daemon.signal("TERM");
    assert_eq!(daemon.wait(), Some(0), "SIGTERM is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keep_the_incident_without_a_second_opened() {
    let dir = temp_dir();
    let mut receiver = Receiver::start().await;
    // A port with nothing listening: connection refused on every probe.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        config(
            dir.path(),
            &[("dead", format!("http://{closed}/"))],
            Some(&receiver),
        ),
    )
    .unwrap();
    let daemon = Process::start(&path);
    let opened = receiver.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    let id = opened.event["incident"]["id"].clone();
    daemon.signal("KILL");
    daemon.wait();

    let daemon = Process::start(&path);
    wait_for("failed probes after the restart", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_probe_failures_total",
            &[("reason", "connect_refused")],
        ) >= 4.0
    })
    .await;
    let open: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/incidents?status=open",
        daemon.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(open["incidents"][0]["id"], id);
    // At least once: the same event may come again if the kill beat the outbox's record of
    // its delivery (receivers deduplicate on the id), but never a new announcement.
    let opened_id = opened.event["id"].clone();
    assert!(
        receiver
            .drain()
            .iter()
            .all(|d| d.kind() != "incident.opened" || d.event["id"] == opened_id),
        "the incident was announced again after kill -9"
    );
}

/// `storage.postgres_file` on a real PostgreSQL: an outage opens an incident and alerts;
/// after a restart the incident is still open and is not announced again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_restart_keeps_the_incident_without_a_second_opened() {
    let dir = temp_dir();
    let url = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.path().join("tocsin.toml");
    let toml = test_config(
        dir.path(),
        &[("dead", format!("http://{closed}/"))],
        Some(&receiver),
    )
    .postgres(&url);
    std::fs::write(&path, toml.to_string()).unwrap();
    let daemon = Process::start(&path);
    let opened = receiver.next().await;
    assert_eq!(opened.kind(), "incident.opened");
    let id = opened.event["incident"]["id"].clone();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(), Some(0));
    assert!(
        !dir.path().join("tocsin.db").exists(),
        "nothing was stored in SQLite"
    );

    let daemon = Process::start(&path);
    wait_for("failed probes after the restart", || async {
        metric_sum(
            &daemon.metrics().await,
            "tocsin_probe_failures_total",
            &[("reason", "connect_refused")],
        ) >= 4.0
    })
    .await;
    let open: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/incidents?status=open",
        daemon.addr
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(open["incidents"][0]["id"], id);
    let again: Vec<_> = receiver
        .drain()
        .into_iter()
        .filter(|d| d.kind() == "incident.opened")
        .collect();
    assert!(
        again.is_empty(),
        "announced again after a restart: {again:?}"
    );

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stored: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM incident WHERE status <> 'resolved'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the incident is in PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let dir = temp_dir();
    let target = Target::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut receiver = Receiver::start().await;
    let path = dir.path().join("tocsin.toml");
    std::fs::write(
        &path,
        config(
            dir.path(),
            &[("ok", target.url()), ("dead", format!("http://{closed}/"))],
            Some(&receiver),
        ),
    )
    .unwrap();
    let daemon = Process::start(&path);
    receiver.next().await; // an incident exists: every family has samples
    let text = daemon.metrics().await;
    for family in [
        "tocsin_probe_success",
        "tocsin_probe_duration_seconds",
        "tocsin_probes_total",
        "tocsin_probe_failures_total",
        "tocsin_target_state",
        "tocsin_service_status",
        "tocsin_service_affected_subscribers",
        "tocsin_service_affected_ratio",
        "tocsin_incidents_open",
        "tocsin_incidents_total",
        "tocsin_incident_user_seconds_total",
        "tocsin_alert_deliveries_total",
        "tocsin_alert_outbox_pending",
        "tocsin_scheduler_lag_seconds_bucket",
        "tocsin_probes_in_flight",
        "tocsin_config_last_reload_successful",
        "tocsin_config_last_reload_success_timestamp_seconds",
        "tocsin_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing from /metrics"
        );
    }
    let response = reqwest::get(format!("http://{}/metrics", daemon.addr))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    common::assert_promtool_accepts(&text);
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_tocsin"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("tocsin {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Transparent huge pages are off for the daemon's process: with them, memory freed after an
/// outage storm's bursts stays resident inside 2 MiB pages (docs/performance.md, "Outage
/// storms").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_without_transparent_huge_pages() {
    let dir = temp_dir();
    let target = Target::start().await;
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config(dir.path(), &[("ok", target.url())], None)).unwrap();
    let daemon = Process::start(&path);
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("/proc/PID/status has THP_enabled (Linux 5.0 and later)");
    assert_eq!(thp.trim(), "0", "{status}");
}
