//! Hostile clients of tocsin's own listener (issue 14): idle sockets up to the process's
//! descriptor limit must not turn into a false outage, a slowloris must not hold up
//! shutdown, and a probe that cannot run for a reason of this host gives no verdict.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::test_config::TestConfig;
use common::{InProcess, PATIENCE, Receiver, Target, json, metric_sum, temp_dir, wait_for};

/// `tocsin run` as a child process, optionally under a descriptor limit (`ulimit -n`, soft
/// and hard), its JSON log kept for the test to read.
struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Process {
    fn start(config: &Path, fd_limit: Option<u32>) -> Process {
        let mut command = match fd_limit {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "ulimit -n \"$0\" && exec \"$@\"", &limit.to_string()])
                    .arg(env!("CARGO_BIN_EXE_tocsin"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_tocsin")),
        };
        let mut child = command
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
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(listen) = v["fields"]["listen"].as_str() {
                    let _ = tx.send(listen.parse::<SocketAddr>().unwrap());
                }
                lines.lock().unwrap().push(v);
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the daemon logs its listen address");
        Process { child, addr, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The first log line whose message contains `text`.
    fn logged(&self, text: &str) -> Option<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .cloned()
    }

    /// The exit code if the process exits within `bound`; `Err(elapsed)` if it does not.
    fn exit_within(&mut self, bound: Duration) -> Result<Option<i32>, Duration> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Ok(status.code());
            }
            if start.elapsed() > bound {
                return Err(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The inodes of the sockets the kernel has for TCP connections from `clients` to
/// `server` (server side), from `/proc/net/tcp`.
fn server_side_inodes(server: SocketAddr, clients: &HashSet<u16>) -> HashSet<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let address = |field: &str| -> Option<(Ipv4Addr, u16)> {
        let (ip, port) = field.split_once(':')?;
        // The address is the raw network-order word printed as a host-order number.
        let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_le_bytes());
        Some((ip, u16::from_str_radix(port, 16).ok()?))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = address(fields.get(1)?)?;
            let remote = address(fields.get(2)?)?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            let from_a_client = remote.0 == Ipv4Addr::LOCALHOST && clients.contains(&remote.1);
            (SocketAddr::from(local) == server && from_a_client && inode != 0).then_some(inode)
        })
        .collect()
}

/// How many of `inodes` are open descriptors of process `pid`: the connections it has
/// accepted (a connection still in the listen backlog has no descriptor).
fn held_by(pid: u32, inodes: &HashSet<u64>) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}

fn accepted(daemon: &Process, clients: &[TcpStream]) -> usize {
    let ports: HashSet<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    held_by(daemon.pid(), &server_side_inodes(daemon.addr, &ports))
}

/// A local client opening more idle connections than the daemon has descriptors: the
/// listener takes what its cap allows and leaves the rest waiting in the backlog (or to the
/// kernel, which drops SYNs past it), the probes keep their reserve and keep reaching the
/// targets, and nothing is paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_descriptor_limit_page_no_false_outage() {
    const FD_LIMIT: u32 = 256;
    const IDLE: usize = 300;
    let dir = temp_dir();
    let targets = [
        Target::start().await,
        Target::start().await,
        Target::start().await,
    ];
    let mut receiver = Receiver::start().await;
    // Probes with room to spare on a loaded machine: only running out of descriptors
    // would fail them.
    let mut config = TestConfig::new(dir.path())
        .server("listen", "\"127.0.0.1:0\"")
        .default("interval", "\"250ms\"")
        .default("timeout", "\"200ms\"")
        .body(&format!(
            "[[services]]\nid = \"voice\"\nsubscribers = 1000\n\
             [[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"{}\"",
            receiver.url()
        ));
    for (i, t) in targets.iter().enumerate() {
        config = config.body(&format!(
            "[[targets]]\nid = \"t{i}\"\nservice = \"voice\"\nsubscribers = 100\n\
             probe = {{ type = \"http\", url = \"{}\" }}",
            t.url()
        ));
    }
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut daemon = Process::start(&path, Some(FD_LIMIT));
    // Without keep-alive: the test's own requests hold none of the daemon's slots.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let status = || async {
        let response = client.get(daemon.url("/api/v1/status")).send().await.ok()?;
        response.json::<serde_json::Value>().await.ok()
    };
    let all_up = |status: &serde_json::Value| {
        status["targets"]
            .as_array()
            .is_some_and(|t| t.len() == 3 && t.iter().all(|t| t["state"] == "up"))
    };
    wait_for("every target up", || async {
        status().await.is_some_and(|s| all_up(&s))
    })
    .await;
    // All at once; a connection the kernel cannot queue either is given up after a while.
    let mut connecting = tokio::task::JoinSet::new();
    let addr = daemon.addr;
    for _ in 0..IDLE {
        connecting.spawn(tokio::time::timeout(
            Duration::from_secs(3),
            TcpStream::connect(addr),
        ));
    }
    let mut idle = Vec::new();
    while let Some(done) = connecting.join_next().await {
        if let Ok(Ok(Ok(stream))) = done {
            idle.push(stream);
        }
    }
    let probes_go_on = |more: usize| {
        let before: Vec<usize> = targets.iter().map(Target::hits).collect();
        let targets = &targets;
        move || {
            let done = targets
                .iter()
                .zip(&before)
                .all(|(t, before)| t.hits() >= before + more);
            async move { done }
        }
    };
    wait_for("probes to keep reaching every target", probes_go_on(10)).await;

    // The listener's cap fits under the limit with the probes' reserve, and the daemon
    // said so naming the key; it took no more than that, the rest waited.
    let warning = daemon
        .logged("server.max_connections")
        .expect("a warning names server.max_connections when the limit cannot hold it");
    assert_eq!(warning["level"], "WARN", "{warning}");
    let cap = warning["fields"]["max_connections"].as_u64().unwrap() as usize;
    assert!(cap > 0 && cap < FD_LIMIT as usize / 2, "{warning}");
    assert!(idle.len() > cap, "only {} connected", idle.len());
    wait_for("the daemon to accept connections up to its cap", || async {
        accepted(&daemon, &idle) >= cap
    })
    .await;
    wait_for("probes to go on at the cap", probes_go_on(5)).await;
    assert!(accepted(&daemon, &idle) <= cap, "more than {cap} accepted");
    drop(idle);

    wait_for("the listener to serve again", || async {
        status().await.is_some_and(|s| all_up(&s))
    })
    .await;
    assert!(daemon.running());
    let incidents: serde_json::Value = client
        .get(daemon.url("/api/v1/incidents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(incidents["incidents"], serde_json::json!([]));
    let metrics = client
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_sum(
            &metrics,
            "tocsin_probe_failures_total",
            &[("reason", "internal")]
        ),
        0.0
    );
    assert_eq!(
        metric_sum(&metrics, "tocsin_probe_local_errors_total", &[]),
        0.0,
        "the reserve kept every probe in descriptors"
    );
    assert_eq!(
        client
            .get(daemon.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(receiver.drain().is_empty(), "nothing was alerted");
}

/// A client sending its request head one byte a second: SIGTERM still ends the process
/// within `server.shutdown_timeout` (5 s by default) and a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_does_not_hold_up_shutdown() {
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    const MARGIN: Duration = Duration::from_secs(5);
    let dir = temp_dir();
    let target = Target::start().await;
    let config = TestConfig::new(dir.path())
        .server("listen", "\"127.0.0.1:0\"")
        .body(&format!(
            "[[services]]\nid = \"web\"\n[[targets]]\nid = \"www\"\nservice = \"web\"\n\
             probe = {{ type = \"http\", url = \"{}\" }}",
            target.url()
        ));
    let path = dir.path().join("tocsin.toml");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut daemon = Process::start(&path, None);
    wait_for("the daemon to serve", || async {
        reqwest::get(daemon.url("/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let stream = TcpStream::connect(daemon.addr).await.unwrap();
    let clients = [stream];
    wait_for("the daemon to accept the connection", || async {
        accepted(&daemon, &clients) == 1
    })
    .await;
    let [mut stream] = clients;
    let (first, mut sent) = tokio::sync::oneshot::channel();
    let mut first = Some(first);
    let dribble = tokio::spawn(async move {
        let head = b"GET /api/v1/status HTTP/1.1\r\nHost: tocsin\r\nX-Slow: ";
        // One byte a second, for at most a minute: far longer than the bound below.
        for byte in head.iter().chain(std::iter::repeat(&b'a')).take(60) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            if let Some(first) = first.take() {
                let _ = first.send(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    (&mut sent).await.unwrap();

    daemon.signal("TERM");
    let exit = daemon.exit_within(SHUTDOWN_TIMEOUT + MARGIN);
    dribble.abort();
    match exit {
        Ok(code) => assert_eq!(code, Some(0), "SIGTERM is a clean exit"),
        Err(after) => panic!("still running {after:?} after SIGTERM"),
    }
}

/// A probe that cannot run for a reason of this host (here a source address the host does
/// not have: `EADDRNOTAVAIL` on bind) yields no verdict: the target stays `unknown`, no
/// incident opens, the local error is counted, and `/readyz` says why it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_failing_for_a_local_reason_gives_no_verdict() {
    let dir = temp_dir();
    let target = Target::start().await;
    let toml = TestConfig::new(dir.path())
        .instant_thresholds()
        .body(&format!(
            r#"
[[services]]
id = "web"
[[targets]]
id = "healthy"
service = "web"
probe = {{ type = "http", url = "{url}" }}
[[targets]]
id = "unbindable"
service = "web"
probe = {{ type = "http", url = "{url}", source_address = "192.0.2.1" }}
"#,
            url = target.url()
        ));
    let app = InProcess::start(toml, dir.path()).await;
    let metrics = || async { app.request("GET", "/metrics", None, None).await.2 };
    wait_for("several probes of each target", || async {
        let m = metrics().await;
        metric_sum(&m, "tocsin_probes_total", &[("target", "healthy")]) >= 5.0
    })
    .await;
    let (_, _, body) = app.request("GET", "/api/v1/status", None, None).await;
    let status = json(&body);
    let state = |id: &str| {
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("healthy"), "up");
    assert_eq!(state("unbindable"), "unknown", "no verdict: {status}");
    let (_, _, body) = app.request("GET", "/api/v1/incidents", None, None).await;
    assert_eq!(json(&body)["incidents"], serde_json::json!([]));

    let m = metrics().await;
    assert!(
        metric_sum(
            &m,
            "tocsin_probe_local_errors_total",
            &[("reason", "source_address")]
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "tocsin_probes_total", &[("target", "unbindable")]),
        0.0,
        "a probe that could not run is not a run of the target"
    );
    let (code, _, body) = app.request("GET", "/readyz", None, None).await;
    assert_eq!(code, 503);
    assert!(body.contains("source_address"), "{body}");
    app.stop().await;
}
