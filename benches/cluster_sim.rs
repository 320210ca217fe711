//! What the leader of a cluster does with many (target, vantage) pairs, simulated without
//! the database or the network: the quorum tally and the engine's core, driven by
//! synthetic verdicts the way the membership task and the engine feed them.
//!
//! `cargo bench --bench cluster_sim -- [PAIRS] [VANTAGES]` (default 1 000 000 pairs over 2
//! vantages, targets every 30 s) prints one `name: value` line per figure; under
//! `cargo test` it runs on 2 000 pairs. No assertion is
//! on a figure; the only checks make sure each phase does what it claims (the outage opens
//! an incident, every target is up again after it).

use std::alloc::System;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tocsin::clock::Timestamp;
use tocsin::cluster::tally::Tally;
use tocsin::config::{self, ConfigSource, Settings};
use tocsin::detector::TargetState;
use tocsin::engine::Core;
use tocsin::incident::IncidentBook;

/// Counts the bytes held, so that a phase's memory is what it keeps, not what the process
/// happened to map. (The system allocator underneath, not the daemon's mimalloc: the
/// bytes asked for are the same.)
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn held_mib(region: &Region<'_, System>) -> f64 {
    let change = region.change();
    (change.bytes_allocated as f64 - change.bytes_deallocated as f64
        + change.bytes_reallocated as f64)
        / (1024.0 * 1024.0)
}

const INTERVAL: Duration = Duration::from_secs(30);
/// The default `cluster.heartbeat`: a third of the default 10 s lease.
const HEARTBEAT: Duration = Duration::from_millis(3333);
const TARGETS_PER_GROUP: usize = 10;
const SERVICES: [&str; 4] = ["voice", "data", "voicemail", "web"];
/// Steady recounts timed (the median is printed).
const STEADY_RUNS: usize = 5;
/// Heartbeats that each bring the leader one target's change, seen from every vantage.
const TRICKLE: usize = 20;

fn t0() -> Timestamp {
    "2026-07-05T00:00:00Z".parse().expect("a valid timestamp")
}

/// `targets` TCP targets in groups of ten over four services, probed from every vantage.
fn settings(targets: usize) -> Settings {
    let mut toml = format!(
        "[storage]\nsqlite = \"unused.db\"\n[defaults]\ninterval = \"{}s\"\ntimeout = \"5s\"\n\
         failure_threshold = 3\nresolve_after = \"1m\"\n\n",
        INTERVAL.as_secs()
    );
    for service in SERVICES {
        writeln!(toml, "[[services]]\nid = \"{service}\"\n").unwrap();
    }
    for g in 0..targets.div_ceil(TARGETS_PER_GROUP) {
        let service = SERVICES[g % SERVICES.len()];
        writeln!(
            toml,
            "[[groups]]\nid = \"g{g}\"\nservice = \"{service}\"\nregion = \"r{}\"\n\
             subscribers = 10000\n",
            g % 50
        )
        .unwrap();
    }
    for t in 0..targets {
        writeln!(
            toml,
            "[[targets]]\nid = \"t{t}\"\ngroups = [\"g{}\"]\n\
             probe = {{ type = \"tcp\", address = \"127.0.0.1:9\" }}\n",
            t / TARGETS_PER_GROUP
        )
        .unwrap();
    }
    config::load(&ConfigSource::Inline(toml)).expect("the generated config is valid")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// The leader's state: the tally and the core it feeds.
struct Leader {
    tally: Tally,
    core: Core,
    live: BTreeSet<String>,
    vantages: Vec<String>,
    topology: Arc<tocsin::topology::Topology>,
}

impl Leader {
    /// One poll's verdicts recorded, the quorum recounted and its changes applied to the
    /// core, as `Engine::on_news` does.
    fn poll(&mut self, votes: &[(usize, TargetState, Timestamp)], now: Timestamp) -> Polled {
        let started = Instant::now();
        for &(index, state, since) in votes {
            let id = &self.topology.targets[index].id;
            for v in &self.vantages {
                self.tally.record(id, v, state, since, now);
            }
        }
        let recount = self.tally.recount(&self.topology, &self.live, now);
        let tally = started.elapsed();
        let started = Instant::now();
        for (index, verdict) in &recount.verdicts {
            self.core
                .set_verdict(*index, verdict.map(|v| (v.state, v.since)), now);
        }
        let events = self.core.settle(now).events.len();
        Polled {
            transitions: recount.verdicts.len(),
            events,
            tally,
            core: started.elapsed(),
        }
    }
}

/// What one poll did, and where its time went.
#[derive(Default)]
struct Polled {
    /// Targets whose quorum changed.
    transitions: usize,
    /// Incident events.
    events: usize,
    /// Recording the votes and recounting.
    tally: Duration,
    /// The core taking the new verdicts (groups, incidents).
    core: Duration,
}

impl std::ops::AddAssign for Polled {
    fn add_assign(&mut self, other: Polled) {
        self.transitions += other.transitions;
        self.events += other.events;
        self.tally += other.tally;
        self.core += other.core;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this without it, as
    // a check that each phase still does what it claims, on a few pairs.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse::<usize>().expect("PAIRS and VANTAGES are numbers"));
    let pairs = args
        .next()
        .unwrap_or(if benching { 1_000_000 } else { 2_000 });
    let vantages = args.next().unwrap_or(2).max(1);
    let targets = (pairs / vantages).max(TARGETS_PER_GROUP);

    let settings = settings(targets);
    let names: Vec<String> = (0..vantages).map(|v| format!("v{v}")).collect();
    let region = Region::new(GLOBAL);
    let mut leader = Leader {
        tally: Tally::new(&settings.topology, HEARTBEAT),
        core: Core::new(
            Arc::clone(&settings.topology),
            settings.incidents.clone(),
            HashMap::new(),
            IncidentBook::default(),
            t0(),
        ),
        live: names.iter().cloned().collect(),
        vantages: names,
        topology: Arc::clone(&settings.topology),
    };
    let state_mib = held_mib(&region);

    // The first poll after start: every vantage's verdict on every target.
    let mut now = t0() + TimeDelta::seconds(60);
    let all_up: Vec<(usize, TargetState, Timestamp)> =
        (0..targets).map(|i| (i, TargetState::Up, t0())).collect();
    let region = Region::new(GLOBAL);
    let first = leader.poll(&all_up, now);
    let votes_mib = held_mib(&region);
    assert_eq!(first.transitions, targets, "every target gets a verdict");

    // Nothing changes: what the engine's tick recounts every second.
    let mut steady = Vec::new();
    for _ in 0..STEADY_RUNS {
        now += TimeDelta::seconds(1);
        let polled = leader.poll(&[], now);
        assert_eq!(polled.transitions, 0);
        let started = Instant::now();
        leader.core.tick(now);
        steady.push((polled.tally, started.elapsed()));
    }
    let steady_tally = median(steady.iter().map(|s| s.0).collect());
    let steady_core = median(steady.iter().map(|s| s.1).collect());

    // One target's change per heartbeat, seen by every vantage at once (it applies
    // without settling).
    let mut trickle = Polled::default();
    for k in 0..TRICKLE {
        now += TimeDelta::from_std(HEARTBEAT).expect("fits");
        let index = targets - 1 - k * TARGETS_PER_GROUP;
        trickle += leader.poll(&[(index, TargetState::Down, now)], now);
    }
    assert_eq!(trickle.transitions, TRICKLE);

    // A platform of 1 % of the targets down from every vantage, in one poll; then back.
    let outage: Vec<usize> = (0..(targets / 100).max(1)).collect();
    now += TimeDelta::from_std(HEARTBEAT).expect("fits");
    let down: Vec<_> = outage
        .iter()
        .map(|&i| (i, TargetState::Down, now))
        .collect();
    let mass_down = leader.poll(&down, now);
    assert_eq!(mass_down.transitions, outage.len());
    assert!(mass_down.events > 0 && !leader.core.open_incidents().is_empty());
    now += TimeDelta::seconds(120);
    let up: Vec<_> = outage.iter().map(|&i| (i, TargetState::Up, now)).collect();
    let mass_up = leader.poll(&up, now);
    assert_eq!(mass_up.transitions, outage.len());

    let per_second = 1.0 + 1.0 / HEARTBEAT.as_secs_f64();
    let rollup_rows = pairs as f64 / 60.0;
    println!("pairs: {}", targets * vantages);
    println!("targets: {targets}");
    println!("vantages: {vantages}");
    println!("state_mib: {state_mib:.1}");
    println!("votes_mib: {votes_mib:.1}");
    println!(
        "votes_bytes_per_pair: {:.0}",
        votes_mib * 1024.0 * 1024.0 / (targets * vantages) as f64
    );
    let per = |d: Duration, n: usize| ms(d) / n as f64;
    println!("first_poll_tally_ms: {:.1}", ms(first.tally));
    println!("first_poll_core_ms: {:.1}", ms(first.core));
    println!("steady_recount_ms: {:.3}", ms(steady_tally));
    println!("steady_core_tick_ms: {:.3}", ms(steady_core));
    println!(
        "trickle_tally_ms_per_transition: {:.3}",
        per(trickle.tally, TRICKLE)
    );
    println!(
        "trickle_core_ms_per_transition: {:.3}",
        per(trickle.core, TRICKLE)
    );
    for (name, polled) in [("outage", &mass_down), ("recovery", &mass_up)] {
        println!(
            "{name}_tally_ms_per_transition: {:.4}",
            per(polled.tally, polled.transitions)
        );
        println!(
            "{name}_core_ms_per_transition: {:.4}",
            per(polled.core, polled.transitions)
        );
    }
    println!(
        "idle_leader_core_share: {:.3}",
        (ms(steady_tally) * per_second + ms(steady_core)) / 1000.0
    );
    println!("rollup_rows_per_second: {rollup_rows:.0}");
}
