//! `/metrics` at scale: for each `[metrics] per_target` choice, the size of one scrape
//! (plain and gzip), its series and the time to render and to gzip it, as ratios to `all`
//! (every per-target series, as before the choice existed) measured in the same run; and
//! what a probe's result costs the metrics.
//!
//! `cargo bench --bench metrics_scale -- [TARGETS] [RENDERS]` (defaults 100 000 and 9).
//! The topology: 4 services × 8 regions × 3 platforms (96 groups), the targets spread
//! over them; every target probed once (10–200 ms), 1 % of them down.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

use tocsin::config::{self, ConfigSource};
use tocsin::detector::TargetState;
use tocsin::metrics::{Metrics, MetricsSpec, PerTarget};
use tocsin::probe::{Phases, ProbeResult, Reason};

/// The daemon's allocator (src/main.rs), so rendering costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: [&str; 4] = ["voice", "data", "voicemail", "web"];
const REGIONS: [&str; 8] = [
    "north", "south", "east", "west", "centre", "coast", "mountain", "islands",
];
const PLATFORMS: usize = 3;

fn topology_toml(targets: usize) -> String {
    let mut toml = String::new();
    for service in SERVICES {
        writeln!(toml, "[[services]]\nid = \"{service}\"\n").unwrap();
    }
    let mut groups = Vec::new();
    for service in SERVICES {
        for region in REGIONS {
            for p in 0..PLATFORMS {
                let id = format!("{service}-{region}-{p}");
                writeln!(
                    toml,
                    "[[groups]]\nid = \"{id}\"\nservice = \"{service}\"\nregion = \"{region}\"\n\
                     platform = \"{service}-{p}\"\nsubscribers = 10000\n"
                )
                .unwrap();
                groups.push(id);
            }
        }
    }
    for t in 0..targets {
        let group = &groups[t % groups.len()];
        writeln!(
            toml,
            "[[targets]]\nid = \"{group}-{t:06}\"\ngroups = [\"{group}\"]\n\
             probe = {{ type = \"http\", url = \"http://10.0.{}.{}/health\" }}\n",
            t / 250 % 256,
            t % 250 + 1
        )
        .unwrap();
    }
    toml
}

struct Figures {
    bytes: usize,
    gzip_bytes: usize,
    series: usize,
    render: Duration,
    gzip: Duration,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Renders `renders` times (median time), and gzips the text as the router does: at the
/// fastest level from 256 KiB up (on the blocking pool), at flate2's default level below
/// (its `CompressionLayer`).
fn measure(metrics: &Metrics, renders: usize) -> Figures {
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..renders {
        let start = Instant::now();
        text = black_box(metrics.render());
        times.push(start.elapsed());
    }
    let mut gzip_times = Vec::new();
    let mut gzip_bytes = 0;
    for _ in 0..renders.div_ceil(3) {
        let start = Instant::now();
        let level = if text.len() >= 256 * 1024 {
            flate2::Compression::fast()
        } else {
            flate2::Compression::default()
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
        encoder.write_all(text.as_bytes()).unwrap();
        gzip_bytes = black_box(encoder.finish().unwrap()).len();
        gzip_times.push(start.elapsed());
    }
    Figures {
        bytes: text.len(),
        gzip_bytes,
        series: text.lines().filter(|l| !l.starts_with('#')).count(),
        render: median(times),
        gzip: median(gzip_times),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let targets = numbers.first().copied().unwrap_or(100_000);
    let renders = numbers.get(1).copied().unwrap_or(9).max(1);

    let settings = config::load(&ConfigSource::Inline(topology_toml(targets))).expect("valid");
    let topology = &settings.topology;
    let metrics = Metrics::new();
    let rows = metrics.set_targets(topology, "local");
    let down = |i: usize, per_cent: usize| i % 100 < per_cent;

    // The probe path: one result into a row and its group's and service's aggregates.
    let results: Vec<ProbeResult> = (0..rows.len())
        .map(|i| {
            if down(i, 1) {
                ProbeResult::failure(Reason::Timeout, "", Duration::from_secs(5))
            } else {
                let latency = Duration::from_millis(10 + (i as u64 * 7919) % 190);
                ProbeResult::success(latency, Phases::default())
            }
        })
        .collect();
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for (row, result) in rows.iter().zip(&results) {
            metrics.record_probe(black_box(row), black_box(result));
        }
    }
    let per_probe = start.elapsed() / (rounds * rows.len().max(1)) as u32;

    let states = |per_cent: usize| {
        for (i, row) in rows.iter().enumerate() {
            row.set_state(if down(i, per_cent) {
                TargetState::Down
            } else {
                TargetState::Up
            });
        }
    };
    let mut runs = Vec::new();
    for (name, per_target, per_cent) in [
        ("all", PerTarget::All, 1),
        ("not_up, 1 % down", PerTarget::NotUp, 1),
        ("not_up, 10 % down", PerTarget::NotUp, 10),
        ("off", PerTarget::Off, 1),
    ] {
        states(per_cent);
        metrics.configure(&MetricsSpec { per_target });
        runs.push((name, measure(&metrics, renders)));
    }

    println!(
        "/metrics at {targets} targets, {} groups, {} services; median of {renders} renders",
        topology.groups.len(),
        topology.services.len()
    );
    println!("record_probe: {} ns per result", per_probe.as_nanos());
    let base = &runs[0].1;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "{:<18} {:>12} {:>10} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "per_target",
        "bytes",
        "÷ all",
        "gzip",
        "÷ all",
        "series",
        "÷ all",
        "render",
        "÷ all",
        "gzip",
        "÷ all"
    );
    for (name, f) in &runs {
        println!(
            "{name:<18} {:>12} {:>10.4} {:>10} {:>9.4} {:>10} {:>9.4} {:>7.1}ms {:>9.4} {:>7.1}ms {:>9.4}",
            f.bytes,
            ratio(f.bytes as f64, base.bytes as f64),
            f.gzip_bytes,
            ratio(f.gzip_bytes as f64, base.gzip_bytes as f64),
            f.series,
            ratio(f.series as f64, base.series as f64),
            f.render.as_secs_f64() * 1e3,
            ratio(f.render.as_secs_f64(), base.render.as_secs_f64()),
            f.gzip.as_secs_f64() * 1e3,
            ratio(f.gzip.as_secs_f64(), base.gzip.as_secs_f64()),
        );
    }
}
