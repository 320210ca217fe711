//! An outage storm: every HTTP target of a national topology fails in the same second,
//! then recovers, against a real `tocsin run` (a child process on loopback).
//!
//! `benches/storm.sh [TARGETS] [ROUNDS] [INTERVAL_S]` (default 10 000 targets, 3 storms,
//! every 5 s) runs `cargo bench --bench storm -- TARGETS ROUNDS INTERVAL_S` and prints one
//! `name: value` line per figure: each storm's figures beside the steady state's, measured
//! in the same run, and their ratio. Under `cargo test` it runs one storm of 40 targets
//! every 1 s on the debug build, and checks only that the storm did what it claims (one
//! incident, opened and delivered).
//!
//! The topology: 20 services × 10 regions × 5 platforms (1 000 groups; fewer when there
//! are fewer targets), targets spread evenly over the groups, the default thresholds,
//! `resolve_after = "10s"`, one webhook receiver on loopback with `update_interval = "0s"`
//! (every event goes out at once, so the outbox's drain is seen). This process serves the
//! targets (200, or 503 during a storm) and the webhook, reads the daemon's JSON log, asks
//! for `/` and `/api/v1/status` one after the other all along, and samples the daemon's CPU
//! and RSS from `/proc`.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, post};
use chrono::{DateTime, Utc};

const SERVICES: usize = 20;
const REGIONS: usize = 10;
const PLATFORMS: usize = 5;
const RESOLVE_AFTER: Duration = Duration::from_secs(10);
/// Failures that make a target down (the default `failure_threshold`).
const FAILURE_THRESHOLD: u32 = 3;
/// The steady window before the first storm.
const STEADY_WINDOW: Duration = Duration::from_secs(10);
/// Running before the steady window, when benching: past the first minute's rollups and
/// the runtime threads' first heaps, the steady figures (RSS above all) are those of a
/// daemon that has run a while, not of one just started. `TOCSIN_STORM_WARM_UP` (seconds)
/// shortens it for a smoke run.
fn warm_up() -> Duration {
    let seconds = std::env::var("TOCSIN_STORM_WARM_UP")
        .ok()
        .map(|s| {
            s.parse()
                .expect("TOCSIN_STORM_WARM_UP is a number of seconds")
        })
        .unwrap_or(70);
    Duration::from_secs(seconds)
}
/// How long memory may take to come back after a storm before the bench says it did not.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// What the bench is in, for the samples taken along the way.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Phase {
    Warming = 0,
    Steady = 1,
    Storm = 2,
    Recovery = 3,
    /// After a storm's recovery, until the next: steady again, but not the baseline.
    Between = 4,
}

impl Phase {
    fn of(v: u8) -> Phase {
        match v {
            1 => Phase::Steady,
            2 => Phase::Storm,
            3 => Phase::Recovery,
            4 => Phase::Between,
            _ => Phase::Warming,
        }
    }
}

/// What this process saw, with wall times (the daemon's log has wall times too).
#[derive(Default)]
struct Seen {
    /// Webhook deliveries: arrival, event type, incident id.
    deliveries: Vec<(DateTime<Utc>, String, String)>,
    /// Log lines of interest: time, message, `event` or `to` field.
    log: Vec<(DateTime<Utc>, String, String)>,
    /// Page and API answers: phase, path, latency.
    requests: Vec<(Phase, &'static str, Duration)>,
    /// RSS samples: phase, KiB.
    rss: Vec<(Instant, Phase, u64)>,
}

struct Bench {
    failing: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    seen: Arc<Mutex<Seen>>,
}

impl Bench {
    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse::<usize>().expect("TARGETS and ROUNDS are numbers"));
    let targets = args.next().unwrap_or(if benching { 10_000 } else { 40 });
    let rounds = args.next().unwrap_or(if benching { 3 } else { 1 }).max(1);
    let interval = Duration::from_secs(args.next().unwrap_or(if benching { 5 } else { 1 }) as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(
        targets,
        rounds,
        interval.max(Duration::from_secs(1)),
        benching,
    ));
}

async fn run(targets: usize, rounds: usize, interval: Duration, benching: bool) {
    let bench = Bench {
        failing: Arc::new(AtomicBool::new(false)),
        phase: Arc::new(AtomicU8::new(Phase::Warming as u8)),
        seen: Arc::new(Mutex::new(Seen::default())),
    };
    let target_addr = serve(target_server(Arc::clone(&bench.failing))).await;
    let sink_addr = serve(webhook_sink(Arc::clone(&bench.seen))).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let groups = write_config(dir.path(), targets, interval, port, target_addr, sink_addr);
    let mut daemon = Daemon::start(&dir.path().join("storm.toml"), Arc::clone(&bench.seen));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    all_up(&client, &base, targets).await;
    println!(
        "targets: {targets} http at {}s over {SERVICES} services, {groups} groups \
         ({SERVICES} × {REGIONS} × {PLATFORMS} when there are enough targets)",
        interval.as_secs()
    );
    println!("tocsin: {}", daemon.binary.display());
    // Long enough for every target to reach its threshold, and for the incident after.
    let storm_window = interval * (FAILURE_THRESHOLD + 1) + Duration::from_secs(5);

    let load = PageLoad::start(
        base.clone(),
        Arc::clone(&bench.phase),
        Arc::clone(&bench.seen),
    );
    let sampler = tokio::spawn(sample_rss(
        daemon.pid(),
        Arc::clone(&bench.phase),
        Arc::clone(&bench.seen),
    ));

    if benching {
        tokio::time::sleep(warm_up()).await;
    }
    bench.set_phase(Phase::Steady);
    let steady = Window::measure(&client, &base, daemon.pid(), STEADY_WINDOW).await;
    let mut storms = Vec::new();
    for round in 0..rounds {
        let failed_at = Utc::now();
        bench.failing.store(true, Ordering::SeqCst);
        bench.set_phase(Phase::Storm);
        let window = Window::measure(&client, &base, daemon.pid(), storm_window).await;
        bench.failing.store(false, Ordering::SeqCst);
        let recovered_at = Instant::now();
        let recovered = Utc::now();
        bench.set_phase(Phase::Recovery);
        // Resolved: every incident the storm opened has been resolved at the sink.
        wait_until(
            "the storm's incidents resolved",
            // Up, then `resolve_after`: a few intervals when they are long.
            Duration::from_secs(180).max(interval * 6),
            || {
                let seen = Arc::clone(&bench.seen);
                async move { open_after(&seen.lock().unwrap().deliveries, failed_at).is_empty() }
            },
        )
        .await;
        // The check under `cargo test` does not wait for memory.
        let settled = if benching {
            wait_for_memory(&bench.seen, recovered_at).await
        } else {
            None
        };
        all_up(&client, &base, targets).await;
        storms.push(Storm {
            round,
            failed_at,
            recovered,
            recovered_at,
            window,
            settled,
        });
        bench.set_phase(Phase::Between);
    }
    load.stop();
    sampler.abort();
    daemon.stop();

    let seen = bench.seen.lock().unwrap();
    report(&steady, &storms, &seen, benching);
}

/// What one storm did.
struct Storm {
    round: usize,
    failed_at: DateTime<Utc>,
    /// When the targets answered 200 again.
    recovered: DateTime<Utc>,
    recovered_at: Instant,
    window: Window,
    /// From the recovery to RSS back within 5 % of its steady peak; `None` when it was
    /// not within [`SETTLE_LIMIT`].
    settled: Option<Duration>,
}

/// Counters read at both ends of a window, and `/metrics` render times at its end.
struct Window {
    seconds: f64,
    cpu_seconds: f64,
    probes: f64,
    skipped: f64,
    lag: Vec<(f64, f64)>,
    metrics_ms: f64,
    metrics_bytes: usize,
}

impl Window {
    async fn measure(client: &reqwest::Client, base: &str, pid: u32, length: Duration) -> Window {
        let text0 = scrape(client, base).await;
        let cpu0 = cpu_seconds(pid);
        let started = Instant::now();
        tokio::time::sleep(length).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu1 = cpu_seconds(pid);
        let rendering = Instant::now();
        let text1 = scrape(client, base).await;
        let metrics_ms = rendering.elapsed().as_secs_f64() * 1000.0;
        let lag0 = buckets(&text0);
        let lag = buckets(&text1)
            .into_iter()
            .map(|(le, c)| {
                let before = lag0.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1);
                (le, c - before)
            })
            .collect();
        Window {
            seconds,
            cpu_seconds: cpu1 - cpu0,
            probes: sum(&text1, "tocsin_probes_total{", None)
                - sum(&text0, "tocsin_probes_total{", None),
            skipped: sum(&text1, "tocsin_scheduler_skipped_total", None)
                - sum(&text0, "tocsin_scheduler_skipped_total", None),
            lag,
            metrics_ms,
            metrics_bytes: text1.len(),
        }
    }

    fn lag_quantile(&self, q: f64) -> f64 {
        let total = self.lag.last().map_or(0.0, |b| b.1);
        self.lag
            .iter()
            .find(|(_, c)| total > 0.0 && *c >= q * total)
            .map_or(f64::NAN, |b| b.0)
    }

    fn missed_percent(&self) -> f64 {
        100.0 * self.skipped / (self.skipped + self.probes).max(1.0)
    }
}

fn report(steady: &Window, storms: &[Storm], seen: &Seen, benching: bool) {
    let latencies = |phase: Phase, path: &str| {
        let mut v: Vec<f64> = seen
            .requests
            .iter()
            .filter(|(p, r, _)| *p == phase && *r == path)
            .map(|(_, _, d)| d.as_secs_f64() * 1000.0)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let rss_peak = |phase: Phase| {
        seen.rss
            .iter()
            .filter(|(_, p, _)| *p == phase)
            .map(|s| s.2)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    };
    let mut queued = Vec::new();
    let mut delivered = Vec::new();
    for storm in storms {
        let next = storms
            .get(storm.round + 1)
            .map_or(DateTime::<Utc>::MAX_UTC, |s| s.failed_at);
        let of_storm = |at: &DateTime<Utc>| *at >= storm.failed_at && *at < next;
        let log: Vec<_> = seen.log.iter().filter(|l| of_storm(&l.0)).collect();
        let deliveries: Vec<_> = seen.deliveries.iter().filter(|d| of_storm(&d.0)).collect();
        let threshold = log
            .iter()
            .find(|l| l.1 == "target state changed" && l.2 == "down")
            .map(|l| l.0);
        let first_queued = log
            .iter()
            .find(|l| l.1 == "incident event" && l.2 == "incident.opened")
            .map(|l| l.0);
        let first_delivered = deliveries
            .iter()
            .find(|d| d.1 == "incident.opened")
            .map(|d| d.0);
        let ms = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| {
            Some((b? - a?).num_microseconds()? as f64 / 1000.0)
        };
        let incidents = deliveries
            .iter()
            .filter(|d| d.1 == "incident.opened")
            .count();
        // The outbox, as far as this process can see it: events queued (the engine's
        // `incident event` lines) minus events delivered, over time.
        let mut marks: Vec<(DateTime<Utc>, i64)> = log
            .iter()
            .filter(|l| l.1 == "incident event")
            .map(|l| (l.0, 1))
            .chain(deliveries.iter().map(|d| (d.0, -1)))
            .collect();
        marks.sort();
        // Drained: the last time during the failure that nothing queued was undelivered.
        let (mut depth, mut peak, mut drained) = (0i64, 0i64, None);
        for (at, step) in marks.iter().filter(|m| m.0 < storm.recovered) {
            depth += step;
            peak = peak.max(depth);
            if depth <= 0 {
                drained = Some(*at);
            }
        }
        let drain = ms(first_queued, drained);
        let r = storm.round;
        let w = &storm.window;
        println!(
            "storm_{r}_threshold_to_queued_ms: {}",
            figure(ms(threshold, first_queued))
        );
        println!(
            "storm_{r}_threshold_to_delivered_ms: {}",
            figure(ms(threshold, first_delivered))
        );
        println!(
            "storm_{r}_failure_to_threshold_ms: {}",
            figure(ms(Some(storm.failed_at), threshold))
        );
        println!(
            "storm_{r}_transitions_down: {}",
            log.iter()
                .filter(|l| l.1 == "target state changed" && l.2 == "down")
                .count()
        );
        println!("storm_{r}_incidents: {incidents}");
        println!("storm_{r}_events_delivered: {}", deliveries.len());
        println!("storm_{r}_outbox_peak_depth: {peak}");
        println!(
            "storm_{r}_outbox_drain_ms: {} (first event queued to nothing undelivered, during the failure)",
            figure(drain)
        );
        let after = |s: u64| {
            let at = storm.recovered_at + Duration::from_secs(s);
            seen.rss.iter().find(|sample| sample.0 >= at).map_or_else(
                || "-".to_string(),
                |sample| format!("{:.1}", sample.2 as f64 / 1024.0),
            )
        };
        println!(
            "storm_{r}_rss_after_recovery_mib: 10s {} 30s {} 60s {} (steady peak {:.1})",
            after(10),
            after(30),
            after(60),
            rss_peak(Phase::Steady)
        );
        println!(
            "storm_{r}_settled_s: {}",
            storm.settled.map_or_else(
                || if benching {
                    "not within 60 s"
                } else {
                    "not measured"
                }
                .to_string(),
                |d| format!("{:.1}", d.as_secs_f64())
            )
        );
        println!(
            "storm_{r}_cpu_cores: {:.2} (steady {:.2}, ratio {:.1})",
            w.cpu_seconds / w.seconds,
            steady.cpu_seconds / steady.seconds,
            (w.cpu_seconds / w.seconds) / (steady.cpu_seconds / steady.seconds)
        );
        println!(
            "storm_{r}_missed_percent: {:.3} (steady {:.3})",
            w.missed_percent(),
            steady.missed_percent()
        );
        println!(
            "storm_{r}_lag_p99_le_s: {} (steady {})",
            w.lag_quantile(0.99),
            steady.lag_quantile(0.99)
        );
        println!(
            "storm_{r}_metrics_render_ms: {:.1} (steady {:.1}, {} bytes)",
            w.metrics_ms, steady.metrics_ms, w.metrics_bytes
        );
        if let (Some(q), Some(d)) = (ms(threshold, first_queued), ms(threshold, first_delivered)) {
            queued.push(q);
            delivered.push(d);
        }
        if !benching {
            assert_eq!(incidents, 1, "one correlated outage is one incident");
            assert!(first_delivered.is_some(), "the incident was delivered");
        }
    }
    queued.sort_by(f64::total_cmp);
    delivered.sort_by(f64::total_cmp);
    let p50 = |v: &[f64]| v.get(v.len().saturating_sub(1) / 2).copied();
    println!(
        "first_alert_queued_ms_p50: {} max: {}",
        figure(p50(&queued)),
        figure(queued.last().copied())
    );
    println!(
        "first_alert_delivered_ms_p50: {} max: {}",
        figure(p50(&delivered)),
        figure(delivered.last().copied())
    );
    for (path, name) in [("/", "page"), ("/api/v1/status", "status_api")] {
        let calm = latencies(Phase::Steady, path);
        let storm = latencies(Phase::Storm, path);
        let p99 = |v: &[f64]| {
            v.get((v.len() as f64 * 0.99) as usize)
                .or(v.last())
                .copied()
        };
        let (c, s) = (p99(&calm), p99(&storm));
        println!(
            "{name}_p99_ms: steady {} storm {} ratio {} ({} and {} requests)",
            figure(c),
            figure(s),
            figure(c.zip(s).map(|(c, s)| s / c)),
            calm.len(),
            storm.len()
        );
    }
    println!(
        "rss_peak_mib: steady {:.1} storm {:.1} recovery {:.1}",
        rss_peak(Phase::Steady),
        rss_peak(Phase::Storm),
        rss_peak(Phase::Recovery)
    );
}

fn figure(v: Option<f64>) -> String {
    v.map_or("none".to_string(), |v| format!("{v:.1}"))
}

/// Incidents opened at the sink since `since` and not resolved yet.
fn open_after(deliveries: &[(DateTime<Utc>, String, String)], since: DateTime<Utc>) -> Vec<String> {
    let mut open = Vec::new();
    for (_, kind, id) in deliveries.iter().filter(|d| d.0 >= since) {
        match kind.as_str() {
            "incident.opened" => open.push(id.clone()),
            "incident.resolved" => open.retain(|o| o != id),
            _ => {}
        }
    }
    open
}

/// Waits until RSS is within 5 % of its steady peak; how long that took after `since`.
async fn wait_for_memory(seen: &Mutex<Seen>, since: Instant) -> Option<Duration> {
    let steady = {
        let seen = seen.lock().unwrap();
        seen.rss
            .iter()
            .filter(|s| s.1 == Phase::Steady)
            .map(|s| s.2)
            .max()?
    };
    loop {
        // The first sample since the recovery back within 5 % of the steady peak, even when
        // it is older than the latest: the wait for the incidents to resolve comes first.
        let back = seen
            .lock()
            .unwrap()
            .rss
            .iter()
            .find(|(at, _, kib)| *at >= since && (*kib as f64) <= steady as f64 * 1.05)
            .map(|(at, _, _)| *at);
        if let Some(at) = back {
            return Some(at - since);
        }
        if since.elapsed() > SETTLE_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asks for the page and the status API one after the other until stopped, from a thread
/// of its own: on the runtime that serves the targets and the webhook, its timings would
/// include that runtime's queue.
struct PageLoad {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PageLoad {
    fn start(base: String, phase: Arc<AtomicU8>, seen: Arc<Mutex<Seen>>) -> PageLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(page_load(base, phase, seen, stopping));
        });
        PageLoad { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the page load thread ends");
    }
}

async fn page_load(
    base: String,
    phase: Arc<AtomicU8>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    while !stop.load(Ordering::SeqCst) {
        for path in ["/", "/api/v1/status"] {
            let p = Phase::of(phase.load(Ordering::SeqCst));
            let started = Instant::now();
            let ok = match client.get(format!("{base}{path}")).send().await {
                Ok(r) => r.bytes().await.is_ok(),
                Err(_) => false,
            };
            let took = started.elapsed();
            if ok && p == Phase::of(phase.load(Ordering::SeqCst)) {
                seen.lock().unwrap().requests.push((p, path, took));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn sample_rss(pid: u32, phase: Arc<AtomicU8>, seen: Arc<Mutex<Seen>>) {
    loop {
        if let Some(kib) = rss_kib(pid) {
            let p = Phase::of(phase.load(Ordering::SeqCst));
            seen.lock().unwrap().rss.push((Instant::now(), p, kib));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every path answers 200, or 503 while `failing`.
fn target_server(failing: Arc<AtomicBool>) -> Router {
    Router::new().fallback(any(move || {
        let failing = Arc::clone(&failing);
        async move {
            if failing.load(Ordering::Relaxed) {
                (StatusCode::SERVICE_UNAVAILABLE, "down\n")
            } else {
                (StatusCode::OK, "ok\n")
            }
        }
    }))
}

fn webhook_sink(seen: Arc<Mutex<Seen>>) -> Router {
    Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let at = Utc::now();
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let kind = event["type"].as_str().unwrap_or("").to_string();
                let id = event["incident"]["id"].as_str().unwrap_or("").to_string();
                seen.lock().unwrap().deliveries.push((at, kind, id));
                StatusCode::NO_CONTENT
            }
        }),
    )
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// The national topology with `targets` targets; returns the number of groups.
fn write_config(
    dir: &Path,
    targets: usize,
    interval: Duration,
    port: u16,
    target: SocketAddr,
    sink: SocketAddr,
) -> usize {
    let groups = targets.clamp(1, SERVICES * REGIONS * PLATFORMS);
    let mut f = String::new();
    f.push_str(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\nsqlite = \"{}\"\n\
         [defaults]\ninterval = \"{}s\"\ntimeout = \"800ms\"\nresolve_after = \"{}s\"\n\
         failure_threshold = {FAILURE_THRESHOLD}\n\n",
        dir.join("storm.db").display(),
        interval.as_secs(),
        RESOLVE_AFTER.as_secs()
    ));
    let services = groups.min(SERVICES);
    for s in 0..services {
        f.push_str(&format!(
            "[[services]]\nid = \"svc{s:02}\"\nsubscribers = 1000000\n"
        ));
    }
    // Group g: service g % 20, region (g / 20) % 10, platform g / 200; so that a small
    // topology still spans services first, then regions.
    let per_group = 1_000_000 / (REGIONS * PLATFORMS) as u64;
    for g in 0..groups {
        let (s, r, p) = (
            g % SERVICES,
            (g / SERVICES) % REGIONS,
            g / (SERVICES * REGIONS),
        );
        f.push_str(&format!(
            "[[groups]]\nid = \"g{g:04}\"\nservice = \"svc{s:02}\"\nregion = \"region{r}\"\n\
             platform = \"platform{p}\"\nsubscribers = {per_group}\n"
        ));
    }
    for t in 0..targets {
        f.push_str(&format!(
            "[[targets]]\nid = \"t{t:06}\"\ngroups = [\"g{:04}\"]\n\
             probe = {{ type = \"http\", url = \"http://{target}/t{t}\" }}\n",
            t % groups
        ));
    }
    f.push_str(&format!(
        "[[receivers]]\nname = \"noc\"\ntype = \"webhook\"\nurl = \"http://{sink}/hook\"\n\
         update_interval = \"0s\"\nsend_resolved = true\n"
    ));
    let mut file = std::fs::File::create(dir.join("storm.toml")).expect("the config file");
    file.write_all(f.as_bytes()).expect("the config written");
    groups
}

struct Daemon {
    child: Child,
    binary: PathBuf,
}

impl Daemon {
    /// Starts `tocsin run` with its JSON log read into `seen`.
    fn start(config: &Path, seen: Arc<Mutex<Seen>>) -> Daemon {
        // `cargo bench` builds the binary with the bench's profile; TOCSIN_BIN runs another
        // (an older build, for a before/after in the same run).
        let binary = std::env::var_os("TOCSIN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tocsin")));
        let mut child = Command::new(&binary)
            .args([
                "--log-format",
                "json",
                "--log-level",
                "info",
                "run",
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tocsin starts");
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || read_log(stderr, &seen));
        Daemon { child, binary }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Keeps the lines the figures need: targets going down, incident events.
fn read_log(stderr: impl std::io::Read, seen: &Mutex<Seen>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let message = v["fields"]["message"].as_str().unwrap_or("");
        let detail = match message {
            "target state changed" => v["fields"]["to"].as_str(),
            "incident event" => v["fields"]["event"].as_str(),
            _ => continue,
        };
        let Some(at) = v["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        seen.lock().unwrap().log.push((
            at.with_timezone(&Utc),
            message.to_string(),
            detail.unwrap_or("").to_string(),
        ));
    }
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The sum of the samples of a family whose line starts with `prefix` (and holds `with`).
fn sum(text: &str, prefix: &str, with: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && with.is_none_or(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `tocsin_scheduler_lag_seconds` buckets: (le, cumulative count).
fn buckets(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| l.starts_with("tocsin_scheduler_lag_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|x| x.parse::<f64>().ok()).sum()
    });
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until every target is up (the steady state a storm starts from).
async fn all_up(client: &reqwest::Client, base: &str, targets: usize) {
    wait_until("every target up", Duration::from_secs(300), || async {
        let text = scrape(client, base).await;
        sum(&text, "tocsin_target_state{", Some("state=\"up\"")) >= targets as f64
    })
    .await;
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
