//! Helpers for the probe tests: probe tables as JSON, run against real peers.

use std::net::UdpSocket as StdUdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tocsin::probe::{ProbeConfig, ProbeResult, ProbeSpec, Prober, Reason};
use tocsin::validation::Issues;

/// A probe table (`{"type": …}`) validated into a spec; panics on any issue.
pub fn spec(probe: Value) -> ProbeSpec {
    let config: ProbeConfig = serde_json::from_value(probe).unwrap();
    let mut issues = Issues::default();
    let spec = config.build("targets[0].probe", &mut issues);
    assert!(issues.is_empty(), "unexpected issues: {issues}");
    spec.unwrap()
}

/// Validation messages for a probe table, one per line.
pub fn issues_of(probe: Value) -> String {
    let config: ProbeConfig = serde_json::from_value(probe).unwrap();
    let mut issues = Issues::default();
    let spec = config.build("targets[0].probe", &mut issues);
    assert!(spec.is_none(), "an invalid probe must not build");
    issues.to_string()
}

pub async fn run(probe: Value, timeout: Duration) -> ProbeResult {
    Prober::new().unwrap().run(&spec(probe), timeout).await
}

/// `base` with extra keys merged in.
pub fn with(mut base: Value, extra: Value) -> Value {
    let map = base.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        map.insert(k.clone(), v.clone());
    }
    base
}

/// Asserts a failure with `reason`; returns its detail.
#[track_caller]
pub fn failed(result: &ProbeResult, reason: Reason) -> String {
    let failure = result
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected {reason:?}, the probe succeeded: {result:?}"));
    assert_eq!(failure.reason, reason, "{result:?}");
    failure.detail.clone()
}

#[track_caller]
pub fn ok(result: &ProbeResult) {
    assert!(result.is_ok(), "expected success: {result:?}");
}

/// Deadline for probes that are expected to finish on their own.
pub const GENEROUS: Duration = Duration::from_secs(10);
/// Deadline for probes that are expected to time out.
pub const SHORT: Duration = Duration::from_secs(2);
/// How late past its deadline a probe may return on a noisy machine.
pub const MARGIN: Duration = Duration::from_secs(1);

/// Runs a probe expected to fail with `reason` at its SHORT deadline, not before, not late.
pub async fn fails_at_deadline(probe: Value, reason: Reason) -> String {
    let started = Instant::now();
    let result = run(probe, SHORT).await;
    let elapsed = started.elapsed();
    let detail = failed(&result, reason);
    assert!(elapsed < SHORT + MARGIN, "returned {elapsed:?}: {result:?}");
    assert!(
        elapsed >= SHORT - Duration::from_millis(100),
        "gave up early ({elapsed:?})"
    );
    detail
}

/// Runs a probe expected to fail with `reason` well before its GENEROUS deadline.
pub async fn fails_early(probe: Value, reason: Reason) -> String {
    let started = Instant::now();
    let result = run(probe, GENEROUS).await;
    let detail = failed(&result, reason);
    assert!(started.elapsed() < GENEROUS / 2, "{result:?}");
    detail
}

/// A port of 127.0.0.1 free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if StdUdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}
