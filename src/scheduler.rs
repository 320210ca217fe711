//! The scheduler: runs every target's probe on its own interval.
//!
//! One clock task per configuration keeps every target's next run in a heap and spawns a
//! task for each run when it is due. Each target runs on a grid of its interval anchored at
//! the daemon's start plus a stable offset (a hash of the id), so ten thousand targets do
//! not fire at second 0 and a reload leaves a target that stays on the runs it had. A
//! global semaphore bounds probes in flight; [`Prober::run`] enforces each deadline.
//! The scheduler knows nothing of incidents: it sends [`ProbeReport`]s to the engine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, Timestamp, instant_after};
use crate::cluster::shard::Assignment;
use crate::metrics::Metrics;
use crate::probe::{ProbeResult, Prober};
use crate::topology::Topology;

/// One probe run, as the engine receives it.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Index into the topology's targets.
    pub target: usize,
    /// The topology the index refers to; reports from a replaced topology are dropped.
    pub topology: Arc<Topology>,
    pub started_at: Timestamp,
    pub result: ProbeResult,
}

/// What every target task shares.
#[derive(Clone)]
pub struct SchedulerContext {
    pub prober: Prober,
    pub in_flight: Arc<Semaphore>,
    pub reports: mpsc::Sender<ProbeReport>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Which targets this instance probes; a run of any other is skipped.
    pub assignment: watch::Receiver<Arc<Assignment>>,
    /// Where every target's grid is anchored (the daemon's start), the same for each
    /// configuration it runs.
    pub epoch: Instant,
}

/// Starts the clock of `topology`: one task that sleeps until the next due target and
/// spawns its probe. A task per probe run rather than one per target: a probe's future is
/// about 9 KB (hyper and rustls state), which a parked per-target task would hold all the
/// time; a target between runs costs an entry in a heap. Runs planned before `from` are not
/// made: the clock of the configuration before made them. Everything stops when `token` is
/// cancelled.
pub fn spawn(
    topology: &Arc<Topology>,
    ctx: &SchedulerContext,
    tracker: &TaskTracker,
    token: &CancellationToken,
    from: Instant,
) {
    tracker.spawn(run_clock(
        Arc::clone(topology),
        Arc::new(ctx.clone()),
        tracker.clone(),
        token.clone(),
        from,
    ));
}

/// Offset of a target's first run within its interval: a hash of its id (FNV-1a), so it
/// stays the same across restarts and reloads.
pub fn start_offset(target_id: &str, interval: Duration) -> Duration {
    let hash = target_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let nanos = interval.as_nanos().clamp(1, u128::from(u64::MAX)) as u64;
    Duration::from_nanos(hash % nanos)
}

/// A target's first run in a clock that takes over at `from`: the first slot of its grid
/// (`epoch` plus its offset, every `interval`) not before `from`.
fn first_run(epoch: Instant, id: &str, interval: Duration, from: Instant) -> Instant {
    let first = instant_after(epoch, start_offset(id, interval));
    if first >= from {
        first
    } else {
        next_run(first, interval, from)
    }
}

/// The first planned run of `interval`'s grid (anchored at `planned`) that is not before
/// `now`: a run that could not start in time is skipped, not made up for with a burst.
fn next_run(planned: Instant, interval: Duration, now: Instant) -> Instant {
    let next = instant_after(planned, interval);
    if next >= now {
        return next;
    }
    let behind = now.duration_since(next).as_nanos();
    let step = interval.as_nanos().max(1);
    let steps = behind.div_ceil(step);
    instant_after(
        next,
        Duration::from_nanos(u64::try_from(steps * step).unwrap_or(u64::MAX)),
    )
}

async fn run_clock(
    topology: Arc<Topology>,
    ctx: Arc<SchedulerContext>,
    tracker: TaskTracker,
    token: CancellationToken,
    from: Instant,
) {
    let running: Arc<[AtomicBool]> = topology
        .targets
        .iter()
        .map(|_| AtomicBool::new(false))
        .collect();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = topology
        .targets
        .iter()
        .enumerate()
        // Push targets report through the API; the engine keeps their heartbeat.
        .filter(|(_, t)| t.probe.pushed().is_none())
        .map(|(i, t)| Reverse((first_run(ctx.epoch, &t.id, t.interval, from), i)))
        .collect();
    while let Some(&Reverse((next, _))) = due.peek() {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let now = Instant::now();
        while let Some(&Reverse((planned, index))) = due.peek() {
            if planned > now {
                break;
            }
            due.pop();
            let target = &topology.targets[index];
            due.push(Reverse((next_run(planned, target.interval, now), index)));
            // Another member of the vantage probes it (or another vantage only).
            if !ctx.assignment.borrow().probes(target) {
                continue;
            }
            // A run still going skips this turn: it waited for a permit or for room in the
            // report queue (an overloaded instance), or overran by its deadline's grace.
            if running[index].swap(true, Ordering::AcqRel) {
                ctx.metrics.scheduler_skipped.inc();
                continue;
            }
            tracker.spawn(run_probe(
                Arc::clone(&topology),
                index,
                planned,
                Arc::clone(&ctx),
                Arc::clone(&running),
                token.clone(),
            ));
        }
    }
}

/// One run of one target, from its planned start to its report.
async fn run_probe(
    topology: Arc<Topology>,
    index: usize,
    planned: Instant,
    ctx: Arc<SchedulerContext>,
    running: Arc<[AtomicBool]>,
    token: CancellationToken,
) {
    let _done = RunningFlag(&running[index]);
    let target = &topology.targets[index];
    let permit = tokio::select! {
        _ = token.cancelled() => return,
        permit = ctx.in_flight.acquire() => match permit {
            Ok(p) => p,
            Err(_) => return,
        },
    };
    let started = Instant::now();
    ctx.metrics
        .scheduler_lag
        .observe(started.saturating_duration_since(planned).as_secs_f64());
    ctx.metrics.probes_in_flight.inc();
    let result = tokio::select! {
        _ = token.cancelled() => {
            ctx.metrics.probes_in_flight.dec();
            return;
        }
        // Boxed: a probe's state (~9 KB) exists only while it runs, not while its task
        // waits for a permit, so an overloaded machine queues small tasks.
        result = Box::pin(ctx.prober.run(&target.probe, target.timeout)) => result,
    };
    ctx.metrics.probes_in_flight.dec();
    drop(permit);
    let report = ProbeReport {
        target: index,
        topology: Arc::clone(&topology),
        started_at: ctx.clock.at(started),
        result,
    };
    let _ = ctx.reports.send(report).await;
}

/// Clears a target's running flag however its run ends (report sent, cancelled, panicked).
struct RunningFlag<'a>(&'a AtomicBool);

impl Drop for RunningFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_within_the_interval() {
        let interval = Duration::from_secs(30);
        let offsets: Vec<Duration> = (0..200)
            .map(|i| start_offset(&format!("target-{i}"), interval))
            .collect();
        assert!(offsets.iter().all(|o| *o < interval));
        // Spread: each third of the interval gets a fair share of the 200 first runs.
        for third in 0..3u32 {
            let lo = interval * third / 3;
            let hi = interval * (third + 1) / 3;
            let n = offsets.iter().filter(|o| **o >= lo && **o < hi).count();
            assert!(n > 40, "third {third} has only {n} of 200 targets");
        }
        assert_eq!(
            start_offset("vm-a-north-imap", interval),
            start_offset("vm-a-north-imap", interval)
        );
    }

    #[test]
    fn a_late_run_skips_to_the_next_slot_of_its_grid() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        // On time: the next slot.
        assert_eq!(next_run(t0, second, t0), t0 + second);
        assert_eq!(next_run(t0, second, t0 + second), t0 + second);
        // 2.5 intervals late: slots 1 and 2 are gone, slot 3 is next.
        assert_eq!(
            next_run(t0, second, t0 + Duration::from_millis(2500)),
            t0 + 3 * second
        );
        // Exactly on a later slot: that slot.
        assert_eq!(next_run(t0, second, t0 + 4 * second), t0 + 4 * second);
        // An interval past what an Instant holds (humantime reads "500000000000y"): far
        // away, not a panic.
        assert!(next_run(t0, Duration::MAX, t0) > t0 + 1000 * second);
    }

    #[test]
    fn a_reloaded_clock_keeps_each_target_on_its_grid() {
        let epoch = Instant::now();
        let interval = Duration::from_secs(30);
        let offset = start_offset("kept", interval);
        // At the start: the offset itself.
        assert_eq!(first_run(epoch, "kept", interval, epoch), epoch + offset);
        // Taking over 100 s later: the next slot of the same grid, not a new phase.
        let from = epoch + Duration::from_secs(100);
        let first = first_run(epoch, "kept", interval, from);
        assert!(first >= from && first < from + interval);
        assert_eq!((first - epoch - offset).as_nanos() % interval.as_nanos(), 0);
        // A slot exactly at the takeover is still made.
        let slot = epoch + offset + 4 * interval;
        assert_eq!(first_run(epoch, "kept", interval, slot), slot);
    }

    /// A run that outlasts its interval makes the clock skip the runs planned meanwhile
    /// (counted), and the schedule resumes on its grid; a healthy target beside it keeps
    /// every run. Virtual time: the silent peer's timeout elapses without waiting.
    #[tokio::test(start_paused = true)]
    async fn a_run_outlasting_its_interval_skips_the_runs_planned_meanwhile() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed); // refused at once: a run that takes no time
        let toml = format!(
            "[[services]]\nid = \"web\"\n\
             [[targets]]\nid = \"slow\"\nservice = \"web\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             probe = {{ type = \"http\", url = \"http://{}/\" }}\n\
             [[targets]]\nid = \"quick\"\nservice = \"web\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             probe = {{ type = \"tcp\", address = \"127.0.0.1:{closed_port}\" }}\n",
            silent.local_addr().unwrap()
        );
        let settings =
            crate::config::load(&crate::config::ConfigSource::Inline(toml)).expect("valid");
        let mut topology = (*settings.topology).clone();
        // Longer than the interval, which validation refuses in a file: here it stands
        // for any run that overruns (an overloaded machine, a report queue full).
        topology.targets[0].timeout = Duration::from_millis(2500);
        let topology = Arc::new(topology);
        let metrics = Arc::new(Metrics::new());
        let (reports, mut received) = mpsc::channel(64);
        let ctx = SchedulerContext {
            prober: Prober::new().unwrap(),
            in_flight: Arc::new(Semaphore::new(8)),
            reports,
            metrics: Arc::clone(&metrics),
            clock: Clock::system(),
            assignment: crate::cluster::shard::Assignment::alone("test", "default").fixed(),
            epoch: Instant::now(),
        };
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        spawn(&topology, &ctx, &tracker, &token, ctx.epoch);

        let start = Instant::now();
        let mut runs = [Vec::new(), Vec::new()];
        while Instant::now() < start + Duration::from_secs(10) {
            tokio::select! {
                Some(report) = received.recv() => runs[report.target].push(report.result),
                _ = tokio::time::sleep_until(start + Duration::from_secs(10)) => {}
            }
        }
        token.cancel();
        tracker.close();
        tracker.wait().await;

        // quick: a run every second, all ten of them.
        assert_eq!(runs[1].len(), 10, "{:?}", runs[1]);
        // slow: each run takes 2.55 s (timeout and grace), so it runs every third second
        // (3 or 4 runs in 10 s) and the two runs planned in between are skipped.
        let slow = &runs[0];
        assert!((3..=4).contains(&slow.len()), "{} slow runs", slow.len());
        assert!(
            slow.iter().all(
                |r| r.failure.as_ref().map(|f| f.reason) == Some(crate::probe::Reason::Timeout)
            )
        );
        let skipped = metrics.scheduler_skipped.get();
        assert!((5..=8).contains(&skipped), "{skipped} runs skipped");
    }
}
