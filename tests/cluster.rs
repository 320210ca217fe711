//! Several real `tocsin` processes sharing one PostgreSQL, over two vantages (`paris`,
//! `lyon`), probing loopback HTTP targets and alerting a loopback webhook: the leader
//! killed mid-incident, a prober killed, one vantage's path broken, the leader paused past
//! its lease, PostgreSQL restarted under load. Leases are short (1.5 s, heartbeat 250 ms)
//! so that each failure plays out in seconds; every wait polls the API with a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::console;
use common::test_config::{ADMIN_TOKEN, TestConfig};
use common::{Delivery, PATIENCE, Receiver, Target, metric_sum, postgres, temp_dir, wait_for};
use serde_json::Value;

const LEASE: Duration = Duration::from_millis(1500);
const HEARTBEAT: Duration = Duration::from_millis(250);

/// One `tocsin run` process, in a directory of its own.
struct Node {
    child: Child,
    addr: SocketAddr,
    vantage: &'static str,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(
        db: &str,
        vantage: &'static str,
        targets: &[(&str, String)],
        receiver: &Receiver,
    ) -> Node {
        Node::start_with(db, vantage, targets, receiver, None, "")
    }

    /// [`Node::start`] probing every `interval` instead of the tests' 100 ms (with the
    /// default lease), and with more configuration (TOML) after the targets.
    fn start_with(
        db: &str,
        vantage: &'static str,
        targets: &[(&str, String)],
        receiver: &Receiver,
        interval: Option<Duration>,
        more: &str,
    ) -> Node {
        let dir = temp_dir();
        let mut config = TestConfig::new(dir.path());
        // The tests' short lease, or with a slow interval the daemon's default (10 s).
        let mut lease = format!(
            "lease = \"{}ms\"\nheartbeat = \"{}ms\"",
            LEASE.as_millis(),
            HEARTBEAT.as_millis()
        );
        if let Some(every) = interval {
            config = config.default("interval", &format!("\"{}ms\"", every.as_millis()));
            lease.clear();
        }
        let mut config = config
            .postgres(db)
            .admin_token()
            .server("listen", "\"127.0.0.1:0\"")
            .default("failure_threshold", "2")
            .default("success_threshold", "1")
            .default("resolve_after", "\"1s\"")
            .body(&format!(
                "[vantage]\nname = \"{vantage}\"\n[cluster]\n{lease}\n[page]\nshow_vantages = true"
            ))
            .body(&format!(
                "[[services]]\nid = \"voice\"\nsubscribers = {}",
                (targets.len() as u64 * 10).max(1000)
            ));
        for (id, url) in targets {
            config = config.body(&format!(
                "[[targets]]\nid = \"{id}\"\nservice = \"voice\"\nsubscribers = 10\n\
                 probe = {{ type = \"http\", url = \"{url}\" }}"
            ));
        }
        config = config.body(more).body(&format!(
            "[[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"{}\"\nvantage_events = true",
            receiver.url()
        ));
        let path = dir.path().join("tocsin.toml");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tocsin"))
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
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
        Node {
            child,
            addr,
            vantage,
            _dir: dir,
        }
    }

    /// `GET path` as JSON; `None` when the process does not answer in time (killed,
    /// stopped) or answers an error.
    async fn get(&self, path: &str) -> Option<Value> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let response = client
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    async fn cluster(&self) -> Option<Value> {
        self.get("/api/v1/cluster").await
    }

    async fn leads(&self) -> bool {
        self.cluster()
            .await
            .is_some_and(|c| c["instance"]["leader"] == true)
    }

    async fn metrics(&self) -> String {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        match client
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one node among `nodes` (not `except`) that says it leads, once one does.
async fn wait_for_leader(nodes: &[Node], except: &[usize]) -> usize {
    let mut found = None;
    let deadline = Instant::now() + PATIENCE;
    while found.is_none() {
        for (i, n) in nodes.iter().enumerate() {
            if !except.contains(&i) && n.leads().await {
                found = Some(i);
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    found.unwrap()
}

async fn wait_for_members(node: &Node, n: usize) {
    wait_for(&format!("{n} live members"), || async {
        node.cluster()
            .await
            .is_some_and(|c| c["members"].as_array().is_some_and(|m| m.len() == n))
    })
    .await;
}

/// Reads deliveries until one of `kind` arrives; returns all read.
async fn until(receiver: &mut Receiver, kind: &str) -> Vec<Delivery> {
    until_within(receiver, kind, PATIENCE).await
}

/// As [`until`], waiting up to `patience` for each delivery.
async fn until_within(receiver: &mut Receiver, kind: &str, patience: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    loop {
        let d = receiver.next_within(patience).await;
        let done = d.kind() == kind;
        got.push(d);
        if done {
            return got;
        }
    }
}

/// Each event kind of an incident went out with one event id only: delivered again after
/// a failover is fine (receivers deduplicate on the id), a new id is a second alert.
fn assert_no_event_twice(deliveries: &[Delivery]) {
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for d in deliveries {
        let kind = d.kind().to_string();
        if kind == "incident.updated" {
            continue; // each update is an event of its own
        }
        ids.entry((kind, d.event["incident"]["id"].to_string()))
            .or_default()
            .insert(d.event["id"].to_string());
    }
    for (key, ids) in ids {
        assert_eq!(ids.len(), 1, "{key:?} sent with several event ids: {ids:?}");
    }
}

/// Distinct `incident.opened` events (by event id) among `deliveries`.
fn opened_events(deliveries: &[Delivery]) -> usize {
    deliveries
        .iter()
        .filter(|d| d.kind() == "incident.opened")
        .map(|d| d.event["id"].to_string())
        .collect::<BTreeSet<_>>()
        .len()
}

async fn stored_incidents(db: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one("SELECT COUNT(*) FROM incident", &[])
        .await
        .unwrap()
        .get(0)
}

/// Starts paris ×2 and lyon ×1 on `targets` and waits until each sees the three members.
async fn three_nodes(db: &str, targets: &[(&str, String)], receiver: &Receiver) -> Vec<Node> {
    three_nodes_every(db, targets, receiver, None).await
}

/// As [`three_nodes`], probing every `interval`.
async fn three_nodes_every(
    db: &str,
    targets: &[(&str, String)],
    receiver: &Receiver,
    interval: Option<Duration>,
) -> Vec<Node> {
    let nodes = vec![
        Node::start_with(db, "paris", targets, receiver, interval, ""),
        Node::start_with(db, "paris", targets, receiver, interval, ""),
        Node::start_with(db, "lyon", targets, receiver, interval, ""),
    ];
    for n in &nodes {
        wait_for_members(n, 3).await;
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_incident_keeps_the_incident() {
    let db = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let (a, b) = (Target::start().await, Target::start().await);
    let nodes = three_nodes(&db, &[("a", a.url()), ("b", b.url())], &receiver).await;
    let leader = wait_for_leader(&nodes, &[]).await;
    let token = nodes[leader].cluster().await.unwrap()["leader"]["token"]
        .as_i64()
        .unwrap();

    a.set_status(500);
    let mut seen = until(&mut receiver, "incident.opened").await;
    let id = seen.last().unwrap().event["incident"]["id"].clone();

    let killed = Instant::now();
    nodes[leader].signal("KILL");
    let next = wait_for_leader(&nodes, &[leader]).await;
    let failover = killed.elapsed();
    assert!(
        failover < LEASE + 4 * HEARTBEAT,
        "a new leader took {failover:?} (lease {LEASE:?})"
    );
    let view = nodes[next].cluster().await.unwrap();
    assert!(view["leader"]["token"].as_i64().unwrap() > token, "{view}");
    let open = nodes[next]
        .get("/api/v1/incidents?status=open")
        .await
        .unwrap();
    assert_eq!(open["incidents"][0]["id"], id, "the same incident goes on");

    a.set_status(200);
    seen.extend(until(&mut receiver, "incident.resolved").await);
    assert!(
        seen.iter().all(|d| d.event["incident"]["id"] == id),
        "one incident"
    );
    // At least once: the opening may come again (same event id) if the kill beat the
    // record of its delivery; never as a second event.
    assert_eq!(
        opened_events(&seen),
        1,
        "announced again after the failover"
    );
    assert_no_event_twice(&seen);
    assert_eq!(stored_incidents(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_probers_targets_are_taken_over_within_a_lease() {
    let db = postgres::fresh_database(None).await;
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    let ids: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    let targets: Vec<(&str, String)> = ids.iter().map(|id| (id.as_str(), target.url())).collect();
    let nodes = three_nodes(&db, &targets, &receiver).await;
    // The two paris members split its six targets.
    let view = nodes[0].cluster().await.unwrap();
    let paris: Vec<&Value> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["vantage"] == "paris")
        .collect();
    assert_eq!(paris.len(), 2);
    assert_eq!(
        paris
            .iter()
            .map(|m| m["targets"].as_u64().unwrap())
            .sum::<u64>(),
        6,
        "{view}"
    );

    let killed = Instant::now();
    nodes[0].signal("KILL");
    let survivor = &nodes[1];
    let probes = |text: &str, id: &str| {
        metric_sum(
            text,
            "tocsin_probes_total",
            &[("target", id), ("vantage", "paris")],
        )
    };
    let before = survivor.metrics().await;
    let before: Vec<f64> = ids.iter().map(|id| probes(&before, id)).collect();
    wait_for("every paris target probed by the survivor", || async {
        let now = survivor.metrics().await;
        ids.iter()
            .zip(&before)
            .all(|(id, was)| probes(&now, id) >= was + 2.0)
    })
    .await;
    let taken = killed.elapsed();
    assert!(
        taken < LEASE + 4 * HEARTBEAT + Duration::from_millis(500),
        "targets taken over after {taken:?} (lease {LEASE:?})"
    );
    let view = survivor.cluster().await.unwrap();
    let paris: Vec<&Value> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["vantage"] == "paris")
        .collect();
    assert_eq!(paris.len(), 1, "{view}");
    assert_eq!(paris[0]["targets"], 6);
    assert_eq!(nodes[2].vantage, "lyon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_path_from_one_vantage_impairs_it_and_pages_nobody() {
    let db = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let target = Target::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ids = ["t0", "t1", "t2", "t3"];
    let fine: Vec<(&str, String)> = ids.iter().map(|id| (*id, target.url())).collect();
    // From lyon the same targets are behind a broken path.
    let broken: Vec<(&str, String)> = ids
        .iter()
        .map(|id| (*id, format!("http://{closed}/health")))
        .collect();
    let nodes = [
        Node::start(&db, "paris", &fine, &receiver),
        Node::start(&db, "paris", &fine, &receiver),
        Node::start(&db, "lyon", &broken, &receiver),
    ];
    for n in &nodes {
        wait_for_members(n, 3).await;
    }
    let leader = wait_for_leader(&nodes, &[]).await;
    wait_for("lyon impaired", || async {
        let Some(view) = nodes[leader].cluster().await else {
            return false;
        };
        view["vantages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "lyon" && v["status"] == "impaired")
    })
    .await;
    let metrics = nodes[leader].metrics().await;
    let status = |vantage, status| {
        metric_sum(
            &metrics,
            "tocsin_vantage_status",
            &[("vantage", vantage), ("status", status)],
        )
    };
    assert_eq!(status("lyon", "impaired"), 1.0);
    assert_eq!(status("paris", "ok"), 1.0);
    let page = reqwest::get(format!("http://{}/", nodes[leader].addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Impaired: its own path fails"), "{page}");
    // The console of a follower shows what each vantage says of each target, from the
    // store: lyon down (with its minutes' failures once written), paris up.
    let follower = (leader + 1) % nodes.len();
    let cookie = console::cookie_value(
        &console::login(nodes[follower].addr, "", ADMIN_TOKEN)
            .await
            .unwrap(),
    );
    let targets = console::client()
        .get(format!("http://{}/noc/targets", nodes[follower].addr))
        .header("cookie", format!("tocsin_noc={cookie}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, target_table) = targets.split_once("<h2>Targets</h2>").unwrap();
    for id in ids {
        let row = target_table
            .split("<tr>")
            .find(|r| r.starts_with(&format!("<td>{id}</td>")))
            .unwrap_or_else(|| panic!("{id} listed: {targets}"));
        assert!(
            row.contains("lyon: DOWN since") && row.contains("paris: up since"),
            "{row}"
        );
    }
    // Lyon sees every target down, paris up: the quorum without lyon says up.
    for _ in 0..10 {
        let s = nodes[leader].get("/api/v1/status").await.unwrap();
        for t in s["targets"].as_array().unwrap() {
            assert_eq!(t["state"], "up", "{t}");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
    let sent: Vec<String> = receiver
        .drain()
        .iter()
        .map(|d| format!("{} {}", d.kind(), d.event["vantage"]["name"]))
        .collect();
    assert_eq!(
        sent,
        ["vantage.impaired \"lyon\""],
        "one vantage event, no incident"
    );
    assert_eq!(stored_incidents(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_steps_down_and_rejoins() {
    let db = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let a = Target::start().await;
    let nodes = three_nodes(&db, &[("a", a.url())], &receiver).await;
    let old = wait_for_leader(&nodes, &[]).await;
    let old_token = nodes[old].cluster().await.unwrap()["leader"]["token"]
        .as_i64()
        .unwrap();

    nodes[old].signal("STOP");
    let next = wait_for_leader(&nodes, &[old]).await;
    a.set_status(500);
    let mut seen = until(&mut receiver, "incident.opened").await;
    let id = seen.last().unwrap().event["incident"]["id"].clone();

    nodes[old].signal("CONT");
    wait_for("the paused leader to follow", || async {
        nodes[old]
            .cluster()
            .await
            .is_some_and(|c| c["instance"]["leader"] == false)
    })
    .await;
    wait_for_members(&nodes[next], 3).await;
    let view = nodes[old].cluster().await.unwrap();
    assert!(
        view["leader"]["token"].as_i64().unwrap() > old_token,
        "{view}"
    );
    // It shows the leader's incident, as a follower.
    wait_for("the follower to show the incident", || async {
        nodes[old]
            .get("/api/v1/incidents?status=open")
            .await
            .is_some_and(|v| v["incidents"][0]["id"] == id)
    })
    .await;
    // Only the leader changes incidents: the follower says where to acknowledge.
    let id = id.as_str().unwrap();
    let refused = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/incidents/{id}/acknowledge",
            nodes[old].addr
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body = refused.text().await.unwrap();
    assert!(body.contains("open on the cluster's leader"), "{body}");

    a.set_status(200);
    seen.extend(until(&mut receiver, "incident.resolved").await);
    assert_eq!(opened_events(&seen), 1);
    assert_no_event_twice(&seen);
    assert_eq!(stored_incidents(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_nothing() {
    let server = postgres::Server::start();
    let db = postgres::fresh_database(Some(&server)).await;
    let mut receiver = Receiver::start().await;
    let a = Target::start().await;
    let b = Target::start().await;
    let nodes = three_nodes(&db, &[("a", a.url()), ("b", b.url())], &receiver).await;
    wait_for_leader(&nodes, &[]).await;

    server.stop();
    // Both vantages see it fail while the database is away.
    a.set_status(500);
    tokio::time::sleep(LEASE * 2).await;
    server.start_again();

    let seen = until(&mut receiver, "incident.opened").await;
    assert_eq!(
        seen.last().unwrap().event["incident"]["services"][0],
        "voice"
    );
    for n in &nodes {
        wait_for_members(n, 3).await;
    }
    let (client, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let states: Vec<(String, String)> = client
        .query(
            "SELECT vantage, state FROM vantage_state WHERE target = 'a' ORDER BY vantage",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        states,
        [
            ("lyon".to_string(), "down".to_string()),
            ("paris".into(), "down".into())
        ]
    );
    assert_eq!(stored_incidents(&db).await, 1);
}

/// The failover figure of `docs/scale.md`: ten leader kills, each killed node replaced
/// before the next. `cargo test --test cluster failover_time -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute), not a check"]
async fn failover_time_over_ten_leader_kills() {
    let db = postgres::fresh_database(None).await;
    let receiver = Receiver::start().await;
    let a = Target::start().await;
    let targets = [("a", a.url())];
    let mut nodes = three_nodes(&db, &targets, &receiver).await;
    let mut times = Vec::new();
    for _ in 0..10 {
        let leader = wait_for_leader(&nodes, &[]).await;
        let killed = Instant::now();
        nodes[leader].signal("KILL");
        wait_for_leader(&nodes, &[leader]).await;
        times.push(killed.elapsed());
        let vantage = nodes[leader].vantage;
        nodes[leader] = Node::start(&db, vantage, &targets, &receiver);
        for n in &nodes {
            wait_for_members(n, 3).await;
        }
    }
    times.sort();
    let median = (times[4] + times[5]) / 2;
    println!(
        "failover over {} leader kills (lease {LEASE:?}, heartbeat {HEARTBEAT:?}): \
         median {median:?}, max {:?}, all {times:?}",
        times.len(),
        times[times.len() - 1]
    );
    assert!(times[times.len() - 1] < LEASE + 4 * HEARTBEAT);
}

/// Commits and rows written in database `db` so far, by PostgreSQL's statistics (which
/// backends flush within a second or so of their transactions).
async fn database_writes(db: &str) -> (i64, i64) {
    let (client, connection) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The database-load figures of `docs/scale.md`: commits and rows per second while
/// targets × 2 vantages are probed with no change, then per target transition. By default
/// 20 targets every 100 ms for 20 s; `TOCSIN_LOAD_TARGETS`, `TOCSIN_LOAD_INTERVAL_MS` and
/// `TOCSIN_LOAD_WINDOW_S` change them.
/// `cargo test --test cluster database_load -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute), not a check"]
async fn database_load_per_probe_and_per_transition() {
    let setting = |name: &str, default: u64| -> u64 {
        std::env::var(name).map_or(default, |v| v.parse().expect("a number"))
    };
    let targets_n = setting("TOCSIN_LOAD_TARGETS", 20) as usize;
    let interval = Duration::from_millis(setting("TOCSIN_LOAD_INTERVAL_MS", 100));
    let window = Duration::from_secs(setting("TOCSIN_LOAD_WINDOW_S", 20));
    let db = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let target = Target::start().await;
    let ids: Vec<String> = (0..targets_n).map(|i| format!("t{i}")).collect();
    let targets: Vec<(&str, String)> = ids.iter().map(|id| (id.as_str(), target.url())).collect();
    let nodes = three_nodes_every(&db, &targets, &receiver, Some(interval)).await;
    let leader = wait_for_leader(&nodes, &[]).await;
    let probes = |text: &str| metric_sum(text, "tocsin_probes_total", &[]);
    let all_probes = async || {
        let mut n = 0.0;
        for node in &nodes {
            n += probes(&node.metrics().await);
        }
        n
    };
    // Steady: every target up from both vantages (its first round of probes done).
    tokio::time::sleep(Duration::from_secs(3) + interval * 2).await;
    let ((c0, r0), p0) = (database_writes(&db).await, all_probes().await);
    tokio::time::sleep(window).await;
    let ((c1, r1), p1) = (database_writes(&db).await, all_probes().await);
    let secs = window.as_secs_f64();
    println!(
        "steady, {} instances: {:.0} probes/s, {:.1} commits/s, {:.1} rows/s ({:.4} rows per probe)",
        nodes.len(),
        (p1 - p0) / secs,
        (c1 - c0) as f64 / secs,
        (r1 - r0) as f64 / secs,
        (r1 - r0) as f64 / (p1 - p0),
    );
    // Every target down then up again from both vantages: 4 transitions per target, and one
    // incident opened and resolved.
    let before = database_writes(&db).await;
    let started = Instant::now();
    // Detectors need `failure_threshold` intervals, and a slow interval is longer than a
    // delivery's usual patience.
    let within = PATIENCE + interval * 4;
    target.set_status(500);
    until_within(&mut receiver, "incident.opened", within).await;
    target.set_status(200);
    until_within(&mut receiver, "incident.resolved", within).await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = database_writes(&db).await;
    let steady_rows = (r1 - r0) as f64 / secs;
    let steady_commits = (c1 - c0) as f64 / secs;
    let spent = took.as_secs_f64() + 3.0;
    let transitions = (targets_n * 2 * 2) as f64;
    println!(
        "{transitions} vantage transitions (and one incident) over {spent:.1} s: {:.2} rows and {:.2} commits per transition above steady",
        ((after.1 - before.1) as f64 - steady_rows * spent) / transitions,
        ((after.0 - before.0) as f64 - steady_commits * spent) / transitions,
    );
    assert!(nodes[leader].leads().await);
}

/// A result pushed to one instance is its vantage's result: paris takes the handset's
/// results and, once they stop, misses its heartbeats, while lyon, never sent one, casts
/// no vote on it. The leader opens the incident on paris' verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_result_is_the_receiving_vantages_and_so_is_its_silence() {
    let db = postgres::fresh_database(None).await;
    let mut receiver = Receiver::start().await;
    let tokens = temp_dir();
    let token = common::write(tokens.path(), "sim.token", "handset-token\n");
    let push = format!(
        "[[targets]]\nid = \"sim\"\nservice = \"voice\"\nsubscribers = 10\ninterval = \"600ms\"\n\
         probe = {{ type = \"push\", token_file = \"{}\", grace = \"200ms\" }}",
        common::path_str(&token)
    );
    let nodes = vec![
        Node::start_with(&db, "paris", &[], &receiver, None, &push),
        Node::start_with(&db, "lyon", &[], &receiver, None, &push),
    ];
    for n in &nodes {
        wait_for_members(n, 2).await;
    }
    let leader = wait_for_leader(&nodes, &[]).await;
    let post = || async {
        reqwest::Client::new()
            .post(format!(
                "http://{}/api/v1/targets/sim/results",
                nodes[0].addr
            ))
            .bearer_auth("handset-token")
            .json(&serde_json::json!({"ok": true, "latency_ms": 90}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Pushed while the leader is up: up by paris' vote (lyon live but silent on it).
    wait_for("sim up on the leader", || async {
        assert_eq!(post().await, 202);
        let status = nodes[leader].get("/api/v1/status").await;
        status.is_some_and(|s| s["targets"][0]["state"] == "up")
    })
    .await;
    // Silence: paris misses two heartbeats (failure_threshold 2), the incident opens.
    let opened = until(&mut receiver, "incident.opened").await;
    let incident = &opened.last().unwrap().event["incident"];
    assert_eq!(incident["services"], serde_json::json!(["voice"]));
    let (client, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let votes: Vec<(String, String)> = client
        .query(
            "SELECT vantage, state FROM vantage_state WHERE target = 'sim'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(votes, [("paris".to_string(), "down".to_string())]);
    let status = nodes[0].get("/api/v1/status").await.unwrap();
    assert_eq!(
        status["targets"][0]["last_result"]["reason"],
        "missed_heartbeat"
    );
}
