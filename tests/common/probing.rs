//! Helpers for the probe tests: probe tables as JSON, run against real peers.

use std::time::Duration;

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
