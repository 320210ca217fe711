//! The scheduler's global bound on probes in flight, seen from a real server: two targets
//! whose first runs fall within a few milliseconds of each other overlap without the
//! bound and never with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tocsin::clock::Clock;
use tocsin::metrics::Metrics;
use tocsin::probe::{ProbeConfig, Prober};
use tocsin::scheduler::{self, SchedulerContext, start_offset};
use tocsin::topology::{Target, TargetLabels, Topology};
use tocsin::validation::Issues;

const INTERVAL: Duration = Duration::from_secs(1);

/// Accepts connections, never answers, and records how many were open at once.
struct Peer {
    address: String,
    accepted: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

async fn silent_peer() -> Peer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (a, m) = (Arc::clone(&accepted), Arc::clone(&most_at_once));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now_open, Ordering::SeqCst);
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                // Until the prober gives up and closes.
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Peer {
        address,
        accepted,
        most_at_once,
    }
}

/// Two target ids whose first runs are less than 20 ms apart.
fn neighbours() -> (String, String) {
    let ids: Vec<String> = (0..5000).map(|i| format!("edge-{i}")).collect();
    let mut by_offset: Vec<(Duration, &String)> = ids
        .iter()
        .map(|id| (start_offset(id, INTERVAL), id))
        .collect();
    by_offset.sort();
    let pair = by_offset
        .windows(2)
        // Leave room before the first run so both tasks are spawned by then.
        .find(|w| {
            w[0].0 > Duration::from_millis(200) && w[1].0 - w[0].0 < Duration::from_millis(20)
        })
        .expect("5000 ids over one second have close neighbours");
    (pair[0].1.clone(), pair[1].1.clone())
}

fn target(id: &str, address: &str) -> Target {
    let probe: ProbeConfig = serde_json::from_value(serde_json::json!({
        "type": "tcp", "address": address, "expect_regex": "never sent"
    }))
    .unwrap();
    Target {
        id: id.to_string(),
        groups: vec![],
        interval: INTERVAL,
        timeout: Duration::from_millis(300),
        failure_threshold: 1,
        success_threshold: 1,
        degraded_latency: Duration::from_secs(1),
        probe: probe.build("probe", &mut Issues::default()).unwrap(),
        labels: TargetLabels {
            service: String::new(),
            region: String::new(),
            platform: String::new(),
        },
        vantages: Vec::new(),
        depends_on: Vec::new(),
    }
}

/// Runs both targets with `permits` probes allowed in flight until the peer has seen four
/// probes; returns the most connections it had open at once and the lag recorded.
async fn run_with(permits: usize) -> (usize, f64) {
    let peer = silent_peer().await;
    let (a, b) = neighbours();
    let topology = Arc::new(Topology {
        targets: vec![target(&a, &peer.address), target(&b, &peer.address)],
        ..Topology::default()
    });
    let (reports, mut results) = mpsc::channel(16);
    let metrics = Arc::new(Metrics::new());
    let ctx = SchedulerContext {
        prober: Prober::new().unwrap(),
        in_flight: Arc::new(Semaphore::new(permits)),
        reports,
        metrics: Arc::clone(&metrics),
        clock: Clock::system(),
        assignment: tocsin::cluster::shard::Assignment::alone("test", "default").fixed(),
        epoch: tokio::time::Instant::now(),
    };
    let tracker = TaskTracker::new();
    let token = CancellationToken::new();
    scheduler::spawn(&topology, &ctx, &tracker, &token, ctx.epoch);
    for _ in 0..4 {
        let report = tokio::time::timeout(Duration::from_secs(30), results.recv())
            .await
            .expect("probes report")
            .unwrap();
        assert!(!report.result.is_ok(), "the peer never answers");
    }
    token.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(peer.accepted.load(Ordering::SeqCst) >= 4);
    (
        peer.most_at_once.load(Ordering::SeqCst),
        metrics.scheduler_lag.get_sample_sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_in_flight_are_bounded() {
    let (unbounded, _) = run_with(16).await;
    assert_eq!(unbounded, 2, "without the bound the two probes overlap");
    let (bounded, lag) = run_with(1).await;
    assert_eq!(bounded, 1, "with one permit they never do");
    assert!(
        lag >= 0.2,
        "the second probe waited for the first (lag {lag}s), and the lag histogram saw it"
    );
}
