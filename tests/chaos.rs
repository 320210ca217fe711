//! Chaos, as tests: what tocsin does when the ground gives way under it, and that the
//! incidents it lists and the alerts receivers get still match what happened.
//!
//! * a full disk (the real binary under a file size limit, lifted again with `prlimit`);
//! * the database file deleted under the running daemon;
//! * a receiver answering 301, 413, too slowly, or closing mid-request;
//! * a DNS resolver that is down;
//! * `kill -9` during a burst of 1 000 state changes.
//!
//! Everything is on loopback; waits poll a condition against a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::test_config::TestConfig;
use common::{Daemon, Delivery, PATIENCE, Receiver, Target, metric_sum, temp_dir, wait_for, write};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tocsin binary (debug or release, as built for the tests) on `127.0.0.1:port`,
/// killed on drop. Its log goes to a pipe, not a file: the file size limit of the full
/// disk test must not reach it.
struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Process {
    fn start(config: &Path, port: u16) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Process {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Status and body of `GET path`; `None` while nothing answers.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(self.url(path)).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    async fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).await.expect("the daemon answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.get("/metrics").await.unwrap_or_default();
        metric_sum(&text, name, labels)
    }

    async fn wait_ready(&self) {
        wait_for("the daemon to be ready", || async {
            matches!(self.get("/readyz").await, Some((200, _)))
        })
        .await;
    }

    /// Sets the process's file size limit (`prlimit --fsize`, soft limit only).
    fn limit_file_size(&self, soft: &str) {
        let done = Command::new("prlimit")
            .arg(format!("--pid={}", self.child.id()))
            .arg(format!("--fsize={soft}:"))
            .status()
            .expect("prlimit (util-linux) runs");
        assert!(done.success(), "prlimit --fsize={soft}:");
    }

    /// SIGTERM, and waits for the exit.
    async fn terminate(mut self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One service, one HTTP target on `target`, one webhook receiver at `hook`; one result
/// changes the target's state and a quiet 300 ms resolves.
fn one_target(dir: &Path, target: &Target, hook: &str) -> TestConfig {
    TestConfig::new(dir)
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
[[receivers]]
name = "noc"
type = "webhook"
url = "{hook}"
timeout = "500ms"
"#,
            url = target.url(),
        ))
}

/// Adds deliveries to `seen` until one of `kind` is among them (at once if it is).
async fn until(receiver: &mut Receiver, seen: &mut Vec<Delivery>, kind: &str) {
    while !seen.iter().any(|d| d.kind() == kind) {
        seen.push(receiver.next().await);
    }
}

/// The last delivery of `kind` in `seen`.
fn last<'a>(seen: &'a [Delivery], kind: &str) -> &'a Delivery {
    seen.iter().rev().find(|d| d.kind() == kind).unwrap()
}

/// The first webhook `incident.opened` (its incident id and event id) and the first
/// PagerDuty `dedup_key` to arrive.
async fn first_alerts(receiver: &mut Receiver) -> ((String, String), String) {
    let mut webhook = None;
    let mut pager = None;
    while webhook.is_none() || pager.is_none() {
        let d = receiver.next().await;
        if d.query.as_deref() == Some("pagerduty") {
            pager.get_or_insert(d.event["dedup_key"].as_str().unwrap().to_string());
        } else if d.kind() == "incident.opened" {
            webhook.get_or_insert((
                d.event["incident"]["id"].as_str().unwrap().to_string(),
                d.event["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    (webhook.unwrap(), pager.unwrap())
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// A full disk while an incident resolves: the writes are kept and retried in order,
/// `/readyz` fails and the failures are counted while they last; once there is room the
/// API says resolved, `incident.resolved` goes out once, `impact_end_at` is when the
/// service recovered (not when the disk did), and a restart keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_delays_the_resolution_and_loses_nothing() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    let port = free_port();
    let config = one_target(dir.path(), &target, &receiver.url())
        .server("listen", &format!("\"127.0.0.1:{port}\""));
    let path = write(dir.path(), "tocsin.toml", &config.to_string());
    let daemon = Process::start(&path, port);
    daemon.wait_ready().await;

    target.set_status(503);
    let mut seen = Vec::new();
    until(&mut receiver, &mut seen, "incident.opened").await;
    let id = last(&seen, "incident.opened").event["incident"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The disk fills: no file of the daemon's can grow past its first byte.
    daemon.limit_file_size("1");
    let recovered_at = Utc::now();
    target.set_status(200);
    wait_for("the engine to resolve the incident", || async {
        daemon.metric("tocsin_incidents_open", &[]).await == 0.0
    })
    .await;
    wait_for("/readyz to fail with the store's reason", || async {
        matches!(daemon.get("/readyz").await,
            Some((503, body)) if body.contains("store writes failing"))
    })
    .await;
    wait_for("retries to be counted", || async {
        daemon.metric("tocsin_store_errors_total", &[]).await >= 3.0
    })
    .await;
    let stored = daemon.json(&format!("/api/v1/incidents/{id}")).await;
    assert_ne!(
        stored["status"], "resolved",
        "not stored yet, so not said to be"
    );
    assert!(
        receiver
            .drain()
            .iter()
            .all(|d| d.kind() != "incident.resolved"),
        "a resolution alerted before it was stored"
    );

    let room_at = Utc::now();
    daemon.limit_file_size("unlimited");
    until(&mut receiver, &mut seen, "incident.resolved").await;
    let resolved = last(&seen, "incident.resolved");
    assert_eq!(resolved.event["incident"]["id"], id.as_str());
    let resolved_id = resolved.event["id"].clone();
    wait_for("/readyz to recover", || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    let stored = daemon.json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(stored["status"], "resolved", "{stored}");
    let end = time(&stored["impact_end_at"]);
    assert!(
        end >= recovered_at - chrono::Duration::seconds(1) && end < room_at,
        "impact_end_at {end} is not when the service recovered ({recovered_at}): {stored}"
    );
    let log = daemon.log();
    assert!(log.contains("store writes failing"), "{log}");
    assert!(log.contains("store writes recovered"), "{log}");

    daemon.terminate().await;
    let again = Process::start(&path, port);
    again.wait_ready().await;
    let stored = again.json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(stored["status"], "resolved");
    assert_eq!(
        time(&stored["impact_end_at"]),
        end,
        "kept across the restart"
    );
    let open = again.json("/api/v1/incidents?status=open").await;
    assert_eq!(open["incidents"], serde_json::json!([]));
    again.terminate().await;
    let later = receiver.drain();
    assert!(
        later.iter().all(|d| d.event["id"] == resolved_id),
        "new alerts after the restart: {:?}",
        later.iter().map(|d| &d.event).collect::<Vec<_>>()
    );
}

/// The database deleted under the running daemon: it is noticed, logged, counted and
/// `/readyz` fails; after a restart on a new database, the next outage's incident id,
/// PagerDuty `dedup_key` and webhook event id are not those receivers already have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_is_noticed_and_its_ids_are_never_reused() {
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    let key = write(dir.path(), "pd.key", "R0UT1NGKEY0123456789abcdefABCDEF\n");
    let config = one_target(dir.path(), &target, &receiver.url()).body(&format!(
        r#"
[[receivers]]
name = "pager"
type = "pagerduty"
url = "{hook}?pagerduty"
routing_key_file = "{key}"
"#,
        hook = receiver.url(),
        key = common::path_str(&key),
    ));

    let daemon = Daemon::start(&config, dir.path()).await;
    target.set_status(503);
    let ((id, event), dedup) = first_alerts(&mut receiver).await;
    assert_eq!(dedup, id);
    for file in ["tocsin.db", "tocsin.db-wal", "tocsin.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    wait_for("/readyz to say the database is gone", || async {
        let response = reqwest::get(daemon.url("/readyz")).await.unwrap();
        response.status() == 503 && response.text().await.unwrap().contains("was removed")
    })
    .await;
    let lost = metric_sum(
        &daemon.metrics().await,
        "tocsin_store_errors_total",
        &[("reason", "database_lost")],
    );
    assert_eq!(lost, 1.0, "counted once, however long it lasts");
    daemon.stop().await;

    // A new database: the same outage is announced again, under ids never seen.
    let daemon = Daemon::start(&config, dir.path()).await;
    let ((id2, event2), dedup2) = first_alerts(&mut receiver).await;
    assert_ne!(id2, id, "an incident id receivers have seen");
    assert_ne!(dedup2, dedup, "a dedup_key PagerDuty has seen");
    assert_ne!(event2, event);
    assert!(id2.starts_with("inc-000001-"), "{id2}");
    daemon.stop().await;
}

/// What the scripted receiver does with the `n`th POST (from 0).
fn scripted(n: usize) -> &'static str {
    match n {
        0 => "redirect",
        1 => "too_large",
        2 => "slow",
        3 => "cut",
        _ => "ok",
    }
}

/// One request the scripted receiver got: method, `webhook-id`, what it did.
type Seen = Arc<Mutex<Vec<(String, String, &'static str)>>>;

/// A raw HTTP/1.1 receiver on loopback that answers the POSTs it gets as [`scripted`]
/// says (and any GET, as a redirect's target would, with 200).
async fn scripted_receiver() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let posts = Arc::new(Mutex::new(0usize));
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let log = Arc::clone(&log);
            let posts = Arc::clone(&posts);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let method = head.split(' ').next().unwrap_or_default().to_string();
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("webhook-id: "))
                    .unwrap_or_default()
                    .to_string();
                let action = if method == "POST" {
                    let mut n = posts.lock().unwrap();
                    *n += 1;
                    scripted(*n - 1)
                } else {
                    "ok"
                };
                log.lock().unwrap().push((method, id, action));
                let answer: &[u8] = match action {
                    "redirect" => {
                        b"HTTP/1.1 301 Moved Permanently\r\nlocation: /moved\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    }
                    "too_large" => {
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    }
                    "slow" => {
                        // Longer than the receiver's 500 ms timeout, then nothing.
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        return;
                    }
                    // The body is not read: the connection closes under it.
                    "cut" => return,
                    _ => b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
                };
                let _ = socket.write_all(answer).await;
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

/// A receiver answering 301, then 413, then too slowly, then closing mid-request: the
/// redirect is not followed (a POST turned GET would count as delivered with nobody
/// getting it) but retried, 413 drops that event only, the timeout and the cut are
/// retried with the same event id, and each event goes out exactly as classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_receiver_is_retried_or_refused_as_it_answers() {
    let dir = temp_dir();
    let target = Target::start().await;
    let (url, seen) = scripted_receiver().await;
    let daemon = Daemon::start(&one_target(dir.path(), &target, &url), dir.path()).await;
    target.set_status(503);
    wait_for("the 413", || async { seen.lock().unwrap().len() >= 2 }).await;
    target.set_status(200);
    wait_for("a delivery", || async {
        seen.lock().unwrap().iter().any(|(_, _, a)| *a == "ok")
    })
    .await;
    let text = daemon.metrics().await;
    let count = |result| {
        metric_sum(
            &text,
            "tocsin_alert_deliveries_total",
            &[("receiver", "noc"), ("result", result)],
        )
    };
    assert_eq!(
        (count("retried"), count("dropped"), count("delivered")),
        (3.0, 1.0, 1.0)
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(method, _, _)| method == "POST"),
        "a redirect was followed: {seen:?}"
    );
    let ids: Vec<&str> = seen.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 5, "{seen:?}");
    assert_eq!(ids[0], ids[1], "the redirected event is sent again");
    assert_ne!(ids[1], ids[2], "the refused event is not sent again");
    assert_eq!(ids[2], ids[3], "a timeout is retried with the same id");
    assert_eq!(ids[3], ids[4], "a cut request is retried with the same id");
    daemon.stop().await;
}

/// A DNS probe whose resolver is down (nothing on the port: refused; a socket that never
/// answers: timeout): the target goes down with that reason. The resolver is the
/// target, so it is a verdict on it, never a local error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_that_is_down_is_a_target_down_with_the_right_reason() {
    let dir = temp_dir();
    let refused = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = TestConfig::new(dir.path())
        .instant_thresholds()
        .body(&format!(
            r#"
[[services]]
id = "dns"
subscribers = 10
[[targets]]
id = "resolver-refused"
service = "dns"
probe = {{ type = "dns", server = "{refused}", name = "example.net" }}
[[targets]]
id = "resolver-silent"
service = "dns"
probe = {{ type = "dns", server = "{silent}", name = "example.net" }}
"#,
            silent = silent.local_addr().unwrap(),
        ));
    let daemon = Daemon::start(&config, dir.path()).await;
    let reasons = || async {
        let status = daemon.get_json("/api/v1/status").await;
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_string(),
                    (
                        t["state"].as_str().unwrap().to_string(),
                        t["last_result"]["reason"].as_str().map(str::to_string),
                    ),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    wait_for("both targets down", || async {
        reasons().await.values().all(|(state, _)| state == "down")
    })
    .await;
    let seen = reasons().await;
    assert_eq!(
        seen["resolver-refused"].1.as_deref(),
        Some("connect_refused"),
        "{seen:?}"
    );
    assert_eq!(
        seen["resolver-silent"].1.as_deref(),
        Some("timeout"),
        "{seen:?}"
    );
    daemon.stop().await;
}

/// `kill -9` while 1 000 targets change state: after the restart the one outage is one
/// incident, opened once and resolved once (an event redelivered keeps its id), and
/// nothing is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_1000_state_changes_loses_and_repeats_nothing() {
    const TARGETS: usize = 1000;
    let dir = temp_dir();
    let target = Target::start().await;
    let mut receiver = Receiver::start().await;
    let port = free_port();
    // Ten groups of a hundred targets, all on one HTTP server the test switches.
    let mut body = format!("[[services]]\nid = \"voice\"\nsubscribers = {TARGETS}\n");
    for g in 0..10 {
        body.push_str(&format!(
            "[[groups]]\nid = \"g{g}\"\nservice = \"voice\"\nsubscribers = 100\n"
        ));
    }
    for i in 0..TARGETS {
        body.push_str(&format!(
            "[[targets]]\nid = \"t{i:04}\"\ngroups = [\"g{}\"]\n\
             probe = {{ type = \"http\", url = \"{}\" }}\n",
            i % 10,
            target.url()
        ));
    }
    body.push_str(&format!(
        "[[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"{}\"\n",
        receiver.url()
    ));
    // A probe every 3 s each (333 a second): what two shared cores carry in a debug build.
    let config = TestConfig::new(dir.path())
        .server("listen", &format!("\"127.0.0.1:{port}\""))
        .instant_thresholds()
        .default("interval", "\"3s\"")
        .default("timeout", "\"2s\"")
        .default("degraded_latency", "\"2s\"")
        .default("resolve_after", "\"300ms\"")
        .body(&body);
    let path = write(dir.path(), "tocsin.toml", &config.to_string());
    // How many targets are in `state`; `None` while the daemon does not answer.
    let count = |daemon: &Process, state: &'static str| {
        let url = daemon.url("/api/v1/status");
        async move {
            let response = reqwest::get(url).await.ok()?;
            let status: serde_json::Value = response.json().await.ok()?;
            let targets = status["targets"].as_array()?;
            Some(targets.iter().filter(|t| t["state"] == state).count())
        }
    };
    let down = |daemon: &Process| count(daemon, "down");

    let first = Process::start(&path, port);
    first.wait_ready().await;
    wait_for("every target up", || async {
        count(&first, "up").await == Some(TARGETS)
    })
    .await;
    target.set_status(503);
    wait_for("the burst to start", || async {
        down(&first).await.is_some_and(|n| n > 0)
    })
    .await;
    let at_kill = down(&first).await.unwrap_or_default();
    first.kill9();

    let second = Process::start(&path, port);
    second.wait_ready().await;
    wait_for("every target down", || async {
        down(&second).await == Some(TARGETS)
    })
    .await;
    let mut deliveries = Vec::new();
    until(&mut receiver, &mut deliveries, "incident.opened").await;
    target.set_status(200);
    wait_for("every target up again", || async {
        down(&second).await == Some(0)
    })
    .await;
    until(&mut receiver, &mut deliveries, "incident.resolved").await;
    let incidents = second.json("/api/v1/incidents").await;
    second.terminate().await;
    deliveries.extend(receiver.drain());

    let listed = incidents["incidents"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "one outage, one incident: {incidents}");
    assert_eq!(listed[0]["status"], "resolved");
    let mut events: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in &deliveries {
        assert_eq!(d.event["incident"]["id"], listed[0]["id"]);
        events
            .entry(d.kind().to_string())
            .or_default()
            .insert(d.event["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        events.get("incident.opened").map(BTreeSet::len),
        Some(1),
        "killed with {at_kill} of {TARGETS} down: {events:?}"
    );
    assert_eq!(events.get("incident.resolved").map(BTreeSet::len), Some(1));
}
