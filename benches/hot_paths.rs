//! Criterion micro-benchmarks of the hot paths (issue 8): one probe round trip, a detector
//! step, the engine core on results, `/metrics` rendering and replay throughput.
//!
//! `cargo bench --bench hot_paths` measures; `cargo bench --bench hot_paths -- --test` runs
//! each benchmark once (the CI smoke test). The network is loopback only: the probe
//! benchmarks start their own servers on 127.0.0.1. There are no timing assertions; the
//! only assertions check that each workload does what it claims (probes succeed, incidents
//! open and resolve), so a figure never silently measures a failure path.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta};
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use serde_json::{Map, Value};
use tocsin::clock::Timestamp;
use tocsin::config::{self, ConfigSource, Settings};
use tocsin::detector::{Detector, Observation, TargetState, Thresholds};
use tocsin::engine::Core;
use tocsin::incident::{ComponentStatus, IncidentBook};
use tocsin::metrics::Metrics;
use tocsin::probe::{Phases, ProbeResult, ProbeSpec, Prober, Reason, adhoc};

/// The daemon's allocator (src/main.rs), so allocation-heavy paths cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Probe deadline: far above a loopback round trip, so only a broken server reaches it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Targets per group in the generated topologies (groups fail as a whole in the scenarios).
const TARGETS_PER_GROUP: usize = 10;
/// Probe interval of the generated topologies; results are spread evenly over it.
const INTERVAL: Duration = Duration::from_secs(30);
const SERVICES: [&str; 4] = ["voice", "data", "voicemail", "web"];
const REGIONS: [&str; 8] = [
    "north", "south", "east", "west", "centre", "coast", "mountain", "islands",
];

fn t0() -> Timestamp {
    "2026-07-05T00:00:00Z".parse().expect("a valid timestamp")
}

fn ok_result() -> ProbeResult {
    ProbeResult::success(Duration::from_millis(42), Phases::default())
}

fn failed_result() -> ProbeResult {
    ProbeResult::failure(
        Reason::Timeout,
        "no answer within 5s",
        Duration::from_secs(5),
    )
}

/// A topology of `targets` HTTP targets in groups of [`TARGETS_PER_GROUP`] over four
/// services, eight regions and a few platforms, like a mid-size operator's; `resolve_after`
/// is short so the scenarios see incidents resolve within minutes of input time.
fn settings(targets: usize) -> Settings {
    let mut toml = String::from(
        "[defaults]\ninterval = \"30s\"\ntimeout = \"5s\"\nfailure_threshold = 3\n\
         success_threshold = 2\ndegraded_latency = \"2s\"\nresolve_after = \"1m\"\n\n\
         [[receivers]]\nname = \"noc\"\ntype = \"webhook\"\n\
         url = \"https://noc.example.net/hooks/tocsin\"\nrepeat_interval = \"10m\"\n\n",
    );
    for service in SERVICES {
        writeln!(toml, "[[services]]\nid = \"{service}\"\n").unwrap();
    }
    for g in 0..targets.div_ceil(TARGETS_PER_GROUP) {
        let service = SERVICES[g % SERVICES.len()];
        let region = REGIONS[(g / SERVICES.len()) % REGIONS.len()];
        let platform = format!("{service}-{}", g % 3);
        writeln!(
            toml,
            "[[groups]]\nid = \"g{g}\"\nservice = \"{service}\"\nplatform = \"{platform}\"\n\
             region = \"{region}\"\nsubscribers = 100000\n"
        )
        .unwrap();
    }
    for t in 0..targets {
        writeln!(
            toml,
            "[[targets]]\nid = \"t{t}\"\ngroups = [\"g{}\"]\n\
             probe = {{ type = \"http\", url = \"http://127.0.0.1:9/health/t{t}\" }}\n",
            t / TARGETS_PER_GROUP
        )
        .unwrap();
    }
    config::load(&ConfigSource::Inline(toml)).expect("the generated config is valid")
}

// === probe ===

/// A loopback HTTP/1.1 server on its own thread: reads a request head, answers `200 OK`
/// with a Content-Length and closes. One connection at a time is enough: the benchmark
/// sends one probe at a time, each on a fresh connection.
fn http_server() -> SocketAddr {
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
        Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // A client that never finishes its request must not stall the next ones.
            let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
            let mut len = 0;
            while let Ok(n @ 1..) = stream.read(&mut buf[len..]) {
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                    let _ = stream.write_all(RESPONSE);
                    break;
                }
            }
        }
    });
    addr
}

/// A loopback listener that accepts and closes: what a `tcp` probe without `send` needs.
/// Counts what it accepted, for [`TcpServer::wait`].
fn tcp_server() -> TcpServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
            count.fetch_add(1, Ordering::Release);
        }
    });
    TcpServer { addr, accepted }
}

struct TcpServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

/// Most connections the client may be ahead of the accept thread: below std's listen
/// backlog of 128.
const MAX_LEAD: u64 = 64;

impl TcpServer {
    /// A `tcp` probe is done at the handshake, before the server accepts. Unbounded, the
    /// client outruns an accept thread descheduled by other load, the listen backlog
    /// overflows and each dropped SYN costs a 1 s retransmission (seen here: a 2 ms mean
    /// over a 25 µs median). So the client waits while it is `MAX_LEAD` ahead.
    fn wait(&self, connected: u64) {
        let give_up = Instant::now() + PROBE_TIMEOUT;
        while connected.saturating_sub(self.accepted.load(Ordering::Acquire)) > MAX_LEAD
            && Instant::now() < give_up
        {
            std::thread::yield_now();
        }
    }
}

/// A probe as `tocsin probe --type KIND TARGET` builds it.
fn probe_spec(kind: &str, target: &str) -> ProbeSpec {
    probe_spec_with(kind, target, &[])
}

/// [`probe_spec`] with extra options.
fn probe_spec_with(kind: &str, target: &str, options: &[(&str, Value)]) -> ProbeSpec {
    let mut table = Map::from_iter([("type".to_string(), Value::from(kind))]);
    for (key, value) in options {
        table.insert(key.to_string(), value.clone());
    }
    adhoc::build("probe", table, target).expect("a valid probe")
}

/// A minimal Diameter peer on its own thread: answers every request (CER, DWR, DPR) with
/// Result-Code 2001, one connection at a time, and closes after the DPA.
fn diameter_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
            let mut head = [0u8; 20];
            while stream.read_exact(&mut head).is_ok() {
                let length = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
                let mut rest = vec![0u8; length.saturating_sub(20)];
                if stream.read_exact(&mut rest).is_err() {
                    break;
                }
                let mut answer = head.to_vec();
                answer[4] = 0; // an answer: R cleared
                for (code, data) in [(268u32, &2001u32.to_be_bytes()[..]), (264, b"bench.peer")] {
                    answer.extend_from_slice(&code.to_be_bytes());
                    answer.push(0x40);
                    answer.extend_from_slice(&(8 + data.len() as u32).to_be_bytes()[1..]);
                    answer.extend_from_slice(data);
                    answer.resize(answer.len().div_ceil(4) * 4, 0);
                }
                let len = (answer.len() as u32).to_be_bytes();
                answer[1..4].copy_from_slice(&len[1..]);
                let command = u32::from_be_bytes([0, head[5], head[6], head[7]]);
                if stream.write_all(&answer).is_err() || command == 282 {
                    break;
                }
            }
        }
    });
    addr
}

/// A UDP responder on its own thread: `answer` turns each request into its reply.
fn udp_server(answer: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = socket.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&answer(&buf[..n]), from);
        }
    });
    addr
}

/// A GTPv2 Echo Response to `request`, restart counter 1.
fn gtp_echo_response(request: &[u8]) -> Vec<u8> {
    let mut m = vec![0x40, 2, 0, 9];
    m.extend_from_slice(&request[4..7]);
    m.extend_from_slice(&[0, 3, 0, 1, 0, 1]);
    m
}

/// The shared secret of the RADIUS benchmark.
const RADIUS_SECRET: &str = "bench-secret";

/// An Access-Accept to `request`, signed with [`RADIUS_SECRET`].
fn radius_accept(request: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut answer = vec![2, request[1], 0, 20];
    let authenticator = Md5::new()
        .chain_update(&answer[..4])
        .chain_update(&request[4..20])
        .chain_update(RADIUS_SECRET)
        .finalize();
    answer.extend_from_slice(&authenticator);
    answer
}

/// One probe, fresh connection, against a real server: wall time of the whole round trip
/// (client and server halves; the server runs on the other core). Issue 8 states its
/// target as CPU per probe, which `benches/scale.sh` measures from /proc.
fn probe(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let prober = Prober::new().expect("TLS client settings");
    let tcp = tcp_server();
    let secret = std::env::temp_dir().join(format!("tocsin-bench-{}.secret", std::process::id()));
    std::fs::write(&secret, RADIUS_SECRET).expect("write the RADIUS secret");
    let identity = [
        ("origin_host", Value::from("probe.bench.invalid")),
        ("origin_realm", Value::from("bench.invalid")),
    ];
    let probes = [
        (
            "http_round_trip",
            probe_spec("http", &format!("http://{}/health", http_server())),
            None,
        ),
        (
            "tcp_connect",
            probe_spec("tcp", &tcp.addr.to_string()),
            Some(&tcp),
        ),
        (
            "diameter_cer_dwr_dpr",
            probe_spec_with("diameter", &diameter_server().to_string(), &identity),
            None,
        ),
        (
            "gtp_echo",
            probe_spec("gtp", &udp_server(gtp_echo_response).to_string()),
            None,
        ),
        (
            "radius_status_server",
            probe_spec_with(
                "radius",
                &udp_server(radius_accept).to_string(),
                &[("secret_file", Value::from(secret.to_str().expect("UTF-8")))],
            ),
            None,
        ),
    ];
    let _ = std::fs::remove_file(&secret);
    let mut group = c.benchmark_group("probe");
    group.throughput(Throughput::Elements(1));
    for (name, spec, server) in &probes {
        let first = runtime.block_on(prober.run(spec, PROBE_TIMEOUT));
        assert!(
            first.is_ok(),
            "{name}: the loopback probe must succeed: {first:?}"
        );
        let connected = Cell::new(1u64);
        let failures = Cell::new(0u64);
        group.bench_function(*name, |b| {
            // One block_on per batch of iterations, as criterion's async support does.
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let result = prober.run(black_box(spec), PROBE_TIMEOUT).await;
                        if result.is_ok() {
                            connected.set(connected.get() + 1);
                        } else {
                            failures.set(failures.get() + 1);
                        }
                        if let Some(server) = server {
                            server.wait(connected.get());
                        }
                        black_box(result);
                    }
                    start.elapsed()
                })
            })
        });
        if failures.get() > 0 {
            eprintln!(
                "probe/{name}: {} probes failed while measured; the figure is mixed",
                failures.get()
            );
        }
    }
    group.finish();
}

// === detector ===

/// One result through [`Observation::of`] and [`Detector::observe`], as the engine does
/// for every result.
fn detector(c: &mut Criterion) {
    let thresholds = Thresholds {
        failure: 3,
        success: 2,
        degraded_latency: Duration::from_secs(2),
    };
    let spacing = TimeDelta::from_std(INTERVAL).expect("fits");
    let ok = ok_result();
    let failed = failed_result();
    let mut group = c.benchmark_group("detector");

    // The common case: an up target answering fast, no transition.
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("step", "steady_up"), |b| {
        let mut detector = Detector::default();
        let mut at = t0();
        b.iter(|| {
            at += spacing;
            let observation = Observation::of(black_box(&ok), thresholds.degraded_latency);
            black_box(detector.observe(observation, at, &thresholds))
        })
    });

    // Failure, failure, failure (down), success, success (up): two transitions per cycle.
    let cycle = [&failed, &failed, &failed, &ok, &ok];
    group.throughput(Throughput::Elements(cycle.len() as u64));
    group.bench_function(BenchmarkId::new("step", "down_up_cycle_of_5"), |b| {
        let mut detector = Detector::default();
        detector.observe(Observation::Fast, t0(), &thresholds);
        let mut at = t0();
        b.iter(|| {
            for result in cycle {
                at += spacing;
                let observation = Observation::of(black_box(result), thresholds.degraded_latency);
                black_box(detector.observe(observation, at, &thresholds));
            }
        })
    });
    group.finish();
}

// === engine ===

/// Which results of the outage scenario fail: every tenth group, in rounds 2 to 5.
fn scenario_fails(target: usize, round: usize) -> bool {
    (target / TARGETS_PER_GROUP).is_multiple_of(10) && (2..6).contains(&round)
}

/// Rounds in the outage scenario: down at round 4, up at 7, resolved a minute later.
const SCENARIO_ROUNDS: usize = 12;

/// Every target probed `SCENARIO_ROUNDS` times, results spread over the interval like the
/// scheduler spreads them, with the engine's one-second tick while anything is open; a
/// tenth of the groups go down, recover and their incidents resolve. Returns the events.
fn outage_scenario(core: &mut Core) -> usize {
    let targets = core.topology().targets.len();
    let spacing = TimeDelta::from_std(INTERVAL).expect("fits") / targets as i32;
    let tick = TimeDelta::seconds(1);
    let (ok, failed) = (ok_result(), failed_result());
    let start = t0();
    let mut next_tick = start + tick;
    let mut events = 0;
    for round in 0..SCENARIO_ROUNDS {
        for index in 0..targets {
            let at = start + spacing * (round * targets + index) as i32;
            while next_tick <= at {
                if core.is_active() {
                    events += core.tick(next_tick).events.len();
                }
                next_tick += tick;
            }
            let result = if scenario_fails(index, round) {
                &failed
            } else {
                &ok
            };
            core.observe(index, at, result);
            events += core.settle(at).events.len();
        }
    }
    events
}

fn fresh_core(settings: &Arc<Settings>) -> Core {
    Core::new(
        Arc::clone(&settings.topology),
        settings.incidents.clone(),
        HashMap::new(),
        IncidentBook::default(),
        t0(),
    )
}

/// [`Core::observe`]: the detector step plus group health, and [`Core::settle`]: the
/// incident book when a group's health changed. The outage scenario settles after every
/// result, as `tocsin replay` does; the engine task settles once per batch of results.
fn engine(c: &mut Criterion) {
    const TARGETS: usize = 1_000;
    let settings = Arc::new(settings(TARGETS));
    let mut group = c.benchmark_group("engine");

    // The common case: all targets up, results ok, no transition.
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("observe", "steady_1000_targets"), |b| {
        let mut core = fresh_core(&settings);
        let ok = ok_result();
        let spacing = TimeDelta::from_std(INTERVAL).expect("fits") / TARGETS as i32;
        let mut at = t0();
        for index in 0..TARGETS {
            at += spacing;
            core.observe(index, at, &ok);
        }
        let mut index = 0;
        b.iter(|| {
            at += spacing;
            index = (index + 1) % TARGETS;
            black_box(core.observe(index, at, &ok))
        })
    });

    // Incidents open, recover and resolve: a fresh core per run (setup not timed).
    let mut check = fresh_core(&settings);
    let events = outage_scenario(&mut check);
    assert!(events > 0, "the outage scenario must open incidents");
    assert!(
        check.open_incidents().is_empty(),
        "the outage scenario must resolve its incidents"
    );
    let observations = (SCENARIO_ROUNDS * TARGETS) as u64;
    group.throughput(Throughput::Elements(observations));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.bench_function(
        BenchmarkId::new("observe", "outage_scenario_1000_targets"),
        |b| {
            b.iter_batched(
                || fresh_core(&settings),
                |mut core| black_box(outage_scenario(&mut core)),
                BatchSize::SmallInput,
            )
        },
    );
    group.finish();
    eprintln!(
        "engine/observe/outage_scenario_1000_targets: {observations} results, {events} alert events"
    );
}

// === metrics ===

/// `GET /metrics`: the registry's families and the per-target table as text. Issue 8's
/// target: 10 000 targets in < 50 ms.
fn metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(30);
    for targets in [1_000, 10_000] {
        let settings = settings(targets);
        let metrics = Metrics::new();
        let rows = metrics.set_targets(&settings.topology, "local");
        let (ok, failed) = (ok_result(), failed_result());
        // One target in fifty failing, so failure-reason series exist as in real life.
        for (i, row) in rows.iter().enumerate() {
            let down = i.is_multiple_of(50);
            metrics.record_probe(row, if down { &failed } else { &ok });
            row.set_state(if down {
                TargetState::Down
            } else {
                TargetState::Up
            });
        }
        for service in SERVICES {
            metrics.set_service(service, ComponentStatus::Operational, 0, 0.0);
        }
        let bytes = metrics.render().len();
        eprintln!("metrics/render/{targets}: {bytes} bytes of text");
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(BenchmarkId::new("render", targets), |b| {
            b.iter(|| black_box(metrics.render()))
        });
    }
    group.finish();
}

// === replay ===

/// `tocsin replay` input: `rounds` results of every target spread over the interval, a
/// registered change, and two outages (three groups, then one) that open incidents.
fn replay_input(settings: &Settings, rounds: usize) -> String {
    let targets = settings.topology.targets.len();
    let spacing = TimeDelta::from_std(INTERVAL).expect("fits") / targets as i32;
    let fails = |target: usize, round: usize| {
        let group = target / TARGETS_PER_GROUP;
        ([0, 3, 5].contains(&group) && (20..26).contains(&round))
            || (group == 7 && (60..70).contains(&round))
    };
    let mut out = String::new();
    for round in 0..rounds {
        for index in 0..targets {
            let at = (t0() + spacing * (round * targets + index) as i32)
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            if round == 19 && index == 0 {
                writeln!(
                    out,
                    r#"{{"at":"{at}","change":{{"id":"chg-1","platform":"voice-0","summary":"upgrade"}}}}"#
                )
                .unwrap();
            }
            let id = &settings.topology.targets[index].id;
            if fails(index, round) {
                writeln!(
                    out,
                    r#"{{"at":"{at}","target":"{id}","ok":false,"reason":"timeout","latency_ms":5000}}"#
                )
            } else {
                let latency = 20 + (round * 7 + index) % 60;
                writeln!(
                    out,
                    r#"{{"at":"{at}","target":"{id}","ok":true,"latency_ms":{latency}}}"#
                )
            }
            .unwrap();
        }
    }
    out
}

/// [`tocsin::replay::run`] on 10 000 in-memory lines (100 targets × 100 rounds): JSON
/// decoding plus the engine core, output to a sink.
fn replay(c: &mut Criterion) {
    let settings = settings(100);
    let input = replay_input(&settings, 100);
    let lines = input.lines().count();
    let totals = tocsin::replay::run(settings.clone(), input.as_bytes(), std::io::sink())
        .expect("the generated input replays");
    assert!(
        totals.events > 0 && totals.incidents > 0,
        "the replay input must open incidents"
    );
    eprintln!(
        "replay/throughput: {lines} lines, {} events, {} incidents",
        totals.events, totals.incidents
    );
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(lines as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.bench_function("throughput", |b| {
        b.iter_batched(
            || settings.clone(),
            |settings| {
                tocsin::replay::run(settings, black_box(input.as_bytes()), std::io::sink())
                    .expect("replays")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(hot_paths, probe, detector, engine, metrics, replay);
criterion_main!(hot_paths);
