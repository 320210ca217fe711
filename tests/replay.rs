//! `tocsin replay` end to end.
//!
//! * Scenarios: tests/fixtures/replay/NAME.toml + NAME.jsonl (inputs written by
//!   `generate.py` there). Each test asserts the exact alert events (type, time, status,
//!   severity, impact, scope, services) and the figures of the final summary.
//! * Bad input, through the real binary: exit 1, the line number on stderr, nothing on
//!   stdout, and no output file with `--output`.
//! * Properties of the incident model on random result streams, through replay
//!   and through the engine's core directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{Value, json};

use tocsin::config::{self, ConfigSource, Settings};
use tocsin::engine::{Core, TICK};
use tocsin::incident::{BookUpdate, EventKind, Impact, Incident, IncidentBook, Severity};
use tocsin::probe::{Phases, ProbeResult, Reason};
use tocsin::replay::Totals;

// === Harness ===

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay")
        .join(name)
}

fn load(name: &str) -> Settings {
    let path = fixture(&format!("{name}.toml"));
    config::load(&ConfigSource::File(path.clone()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a replay printed: the alert events, then the summary's incidents.
struct Replayed {
    events: Vec<Value>,
    incidents: Vec<Value>,
    totals: Totals,
    raw: Vec<u8>,
}

impl Replayed {
    /// One line per event, compact enough to read in a failed assertion.
    fn headlines(&self) -> Vec<String> {
        self.events.iter().map(headline).collect()
    }

    /// `type at affected/peak_affected regions`: how an incident's size was announced.
    fn sizes(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| {
                let i = &e["incident"];
                format!(
                    "{} {} {}/{} {}",
                    e["type"].as_str().unwrap(),
                    e["at"].as_str().unwrap(),
                    i["affected"],
                    i["peak_affected"],
                    i["regions"].as_array().unwrap().len()
                )
            })
            .collect()
    }

    fn only_incident(&self) -> &Value {
        assert_eq!(
            self.incidents.len(),
            1,
            "one incident: {:#?}",
            self.incidents
        );
        &self.incidents[0]
    }
}

fn headline(event: &Value) -> String {
    let i = &event["incident"];
    let services: Vec<&str> = i["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let mut line = format!(
        "{} {} {} {} {}/{}/{} {}",
        event["type"].as_str().unwrap(),
        event["at"].as_str().unwrap(),
        i["id"].as_str().unwrap(),
        i["status"].as_str().unwrap(),
        i["severity"].as_str().unwrap(),
        i["impact"].as_str().unwrap(),
        i["scope"].as_str().unwrap(),
        services.join(","),
    );
    // Reporting rule sets that are met: `review` for met_needs_review,
    // `+critical` for ofcom's critical level.
    if let Some(reporting) = i["reporting"].as_object() {
        for (name, outcome) in reporting {
            let status = match outcome["status"].as_str().unwrap() {
                "not_met" => continue,
                "met_needs_review" => "review",
                other => other,
            };
            let critical = if outcome["critical"] == true {
                "+critical"
            } else {
                ""
            };
            line.push_str(&format!(" {name}={status}{critical}"));
        }
    }
    line
}

fn replay(settings: Settings, input: impl std::io::BufRead) -> Replayed {
    let mut raw = Vec::new();
    let totals = tocsin::replay::run(settings, input, &mut raw).expect("valid input replays");
    let text = std::str::from_utf8(&raw).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["type"], "summary", "the last line is the summary");
    for e in &lines {
        assert!(e["type"].as_str().unwrap().starts_with("incident."), "{e}");
        assert!(e["at"].is_string() && e["incident"].is_object(), "{e}");
    }
    Replayed {
        events: lines,
        incidents: summary["incidents"].as_array().unwrap().clone(),
        totals,
        raw,
    }
}

fn replay_scenario(name: &str) -> Replayed {
    let input = File::open(fixture(&format!("{name}.jsonl"))).unwrap();
    replay(load(name), BufReader::new(input))
}

/// A scenario with more configuration after its own (a receiver, say).
fn replay_scenario_with(name: &str, more: &str) -> Replayed {
    let toml = std::fs::read_to_string(fixture(&format!("{name}.toml"))).unwrap();
    let settings = config::load(&ConfigSource::Inline(format!("{toml}\n{more}")))
        .unwrap_or_else(|e| panic!("{name} with {more}: {e}"));
    let input = File::open(fixture(&format!("{name}.jsonl"))).unwrap();
    replay(settings, BufReader::new(input))
}

/// The timeline's `(at, event, message)` of the given kinds.
fn messages(incident: &Value, kinds: &[&str]) -> Vec<(String, String, String)> {
    incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| kinds.contains(&t["event"].as_str().unwrap()))
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap().to_string();
            (field("at"), field("event"), field("message"))
        })
        .collect()
}

/// The timeline's event kinds, in order, restricted to `kinds`.
fn timeline(incident: &Value, kinds: &[&str]) -> Vec<(String, String)> {
    incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| kinds.contains(&t["event"].as_str().unwrap()))
        .map(|t| {
            (
                t["at"].as_str().unwrap().to_string(),
                t["event"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const LIFECYCLE: &[&str] = &[
    "opened",
    "acknowledged",
    "recovered",
    "reopened",
    "resolved",
];

// === Scenarios ===

/// vm-a (900 000 of 30 000 000 voicemail subscribers, 225 000 in each of 4 regions) fails
/// everywhere for 4 hours, 20 minutes after change chg-42 on vm-a.
///
/// The four probes are spread over the 60 s interval (offsets 0, 10, 20 and 30 s): each
/// region fails from 14:00:00 + offset for exactly 4 h, and detection backdates each down
/// period to its first failure and its end to the first success of the recovery. So every
/// region counts 225 000 × 240 min and user_minutes is exactly 216 000 000. The incident
/// itself runs from the first failure anywhere (14:00:00, north) to the last recovery
/// (18:00:30, west): 4 h 30 s, so conservative_user_minutes = 900 000 × 240.5 =
/// 216 450 000, the regulators' "potentially affected" upper bound.
#[test]
fn single_platform_failing_in_every_region() {
    let r = replay_scenario("platform-every-region");
    assert_eq!(
        r.headlines(),
        [
            // North's third failure: one region, 225 000 of its 7 500 000 → localized;
            // 225 000 ≥ 100 000 affected → sev2 and ofcom (for review: voicemail is a
            // feature service); partial outage → major.
            "incident.opened 2026-07-05T14:02:00Z inc-000001 investigating sev2/major/localized voicemail ofcom=review",
            // South's third failure (14:02:10): 2 of the 4 regions → distributed; east and
            // west follow 10 and 20 s later. The minute of update_interval after the opening
            // makes it one update, with the latest state: 900 000 in 4 regions.
            "incident.updated 2026-07-05T14:03:00Z inc-000001 investigating sev2/major/distributed voicemail ofcom=review",
            // 30 minutes after the onset (and ≥ 900 000 user-minutes long before).
            "incident.updated 2026-07-05T14:30:00Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            // 1 000 000 user-hours: 900 000 × 66m40s after the mean onset 14:00:15.
            "incident.updated 2026-07-05T15:06:55Z inc-000001 investigating sev2/major/distributed voicemail eu_enisa=review fcc_nors=review ofcom=review",
            // ofcom's critical level, 3 000 000 user-hours: 200 minutes after 14:00:15.
            "incident.updated 2026-07-05T17:20:15Z inc-000001 investigating sev2/major/distributed voicemail eu_enisa=review fcc_nors=review ofcom=review+critical",
            // North back (its second success): 675 000 affected, 25% fewer than announced,
            // a partial recovery. South, east and west follow within 30 s: the update that
            // waits for update_interval goes out with the latest state, the impact over.
            "incident.updated 2026-07-05T18:01:00Z inc-000001 investigating sev2/major/distributed voicemail eu_enisa=review fcc_nors=review ofcom=review+critical",
            "incident.updated 2026-07-05T18:02:00Z inc-000001 monitoring sev2/major/distributed voicemail eu_enisa=review fcc_nors=review ofcom=review+critical",
            // Last recovery 18:01:30 (west's second success) + resolve_after 5m.
            "incident.resolved 2026-07-05T18:06:30Z inc-000001 resolved sev2/major/distributed voicemail eu_enisa=review fcc_nors=review ofcom=review+critical",
        ]
    );
    assert_eq!(
        r.totals,
        Totals {
            lines: 1401,
            events: 8,
            incidents: 1
        }
    );

    // Known from the first alert on: the suspect, measured to the detection time.
    let opened = &r.events[0]["incident"];
    assert_eq!(
        opened["suspected_cause"],
        json!({"change_id": "chg-42", "lag_seconds": 1200, "confidence": "high"})
    );
    assert_eq!(opened["onset_at"], "2026-07-05T14:00:00Z");
    assert_eq!(opened["duration_seconds"], 120);
    assert_eq!(opened["peak_affected"], 225_000);
    assert_eq!(opened["user_minutes"], 450_000);
    assert_eq!(opened["impact_end_at"], Value::Null);

    let inc = r.only_incident();
    assert_eq!(inc["id"], "inc-000001");
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["services"], json!(["voicemail"]));
    assert_eq!(inc["platforms"], json!(["vm-a"]));
    assert_eq!(inc["regions"], json!(["east", "north", "south", "west"]));
    assert_eq!(inc["scope"], "distributed");
    assert_eq!(inc["platform_concentrated"], true);
    assert_eq!(inc["severity"], "sev2");
    assert_eq!(inc["impact"], "major");
    assert_eq!(inc["onset_at"], "2026-07-05T14:00:00Z");
    assert_eq!(inc["detected_at"], "2026-07-05T14:02:00Z");
    assert_eq!(inc["impact_end_at"], "2026-07-05T18:00:30Z");
    assert_eq!(inc["resolved_at"], "2026-07-05T18:06:30Z");
    assert_eq!(inc["time_to_detect_seconds"], 120);
    assert_eq!(inc["duration_seconds"], 4 * 3600 + 30);
    assert_eq!(inc["peak_affected"], 900_000);
    assert_eq!(inc["user_minutes"], 216_000_000);
    assert_eq!(inc["conservative_user_minutes"], 216_450_000);
    let vm = &inc["per_service"]["voicemail"];
    assert_eq!(vm["peak_affected"], 900_000);
    assert_eq!(vm["peak_share"], 0.03);
    assert_eq!(vm["user_minutes"], 216_000_000);
    assert_eq!(
        inc["suspected_cause"],
        json!({"change_id": "chg-42", "lag_seconds": 1200, "confidence": "high"})
    );
    assert_eq!(inc["recurrence"], json!({"count_30d": 1, "chronic": false}));
    let fcc = &inc["reporting"]["fcc_nors"];
    assert_eq!(fcc["status"], "met_needs_review");
    assert_eq!(fcc["met_at"], "2026-07-05T14:30:00Z");
    assert_eq!(fcc["notify_by"], "2026-07-05T16:30:00Z");
    assert_eq!(
        timeline(inc, LIFECYCLE),
        entries(&[
            ("2026-07-05T14:02:00Z", "opened"),
            ("2026-07-05T18:01:30Z", "recovered"),
            ("2026-07-05T18:06:30Z", "resolved"),
        ])
    );
}

/// Voicemail platform vm-a (90 000 subscribers in each of 10 regions, 3% of 30 000 000)
/// fails in one more region every 5 minutes, from 14:00 (north) to 14:45 (capital), and
/// comes back everywhere at 15:00. Probes run every 60 s, 5 s apart from one region to
/// the next, so region i is down at its third failure, 14:02:00 + 5m05s × i.
///
/// Before, the alerts stopped at 540 000 in 6 regions (14:30, a rule met) while the outage
/// went on to 900 000 in 10: now every new region is an update as it joins.
#[test]
fn an_outage_that_grows_is_announced_as_it_grows() {
    let r = replay_scenario("growing-outage");
    assert_eq!(
        r.sizes(),
        [
            "incident.opened 2026-07-10T14:02:00Z 90000/90000 1",
            "incident.updated 2026-07-10T14:07:05Z 180000/180000 2",
            "incident.updated 2026-07-10T14:12:10Z 270000/270000 3",
            "incident.updated 2026-07-10T14:17:15Z 360000/360000 4",
            "incident.updated 2026-07-10T14:22:20Z 450000/450000 5",
            "incident.updated 2026-07-10T14:27:25Z 540000/540000 6",
            // fcc_nors: 30 minutes (and 540 000 × 30 ≥ 900 000 user-minutes).
            "incident.updated 2026-07-10T14:30:00Z 540000/540000 6",
            "incident.updated 2026-07-10T14:32:30Z 630000/630000 7",
            "incident.updated 2026-07-10T14:37:35Z 720000/720000 8",
            "incident.updated 2026-07-10T14:42:40Z 810000/810000 9",
            "incident.updated 2026-07-10T14:47:45Z 900000/900000 10",
            // The probes see the recovery region by region, from 15:01:00 (north's second
            // success) to 15:01:45: 630 000 left at 15:01:10 is a partial recovery; the
            // update after it waits for update_interval and finds the impact over.
            "incident.updated 2026-07-10T15:01:10Z 630000/900000 10",
            "incident.updated 2026-07-10T15:02:10Z 0/900000 10",
            // Last recovery 15:01:45 + resolve_after 5m.
            "incident.resolved 2026-07-10T15:06:45Z 0/900000 10",
        ]
    );
    assert_eq!(
        r.headlines(),
        [
            // One region wholly down: regional; 90 000 (0.3%) is sev3.
            "incident.opened 2026-07-10T14:02:00Z inc-000001 investigating sev3/major/regional voicemail",
            // 180 000 ≥ 100 000: sev2, ofcom (for review: a feature service).
            "incident.updated 2026-07-10T14:07:05Z inc-000001 investigating sev2/major/regional voicemail ofcom=review",
            "incident.updated 2026-07-10T14:12:10Z inc-000001 investigating sev2/major/regional voicemail ofcom=review",
            "incident.updated 2026-07-10T14:17:15Z inc-000001 investigating sev2/major/regional voicemail ofcom=review",
            // Half of the 10 regions: distributed.
            "incident.updated 2026-07-10T14:22:20Z inc-000001 investigating sev2/major/distributed voicemail ofcom=review",
            "incident.updated 2026-07-10T14:27:25Z inc-000001 investigating sev2/major/distributed voicemail ofcom=review",
            "incident.updated 2026-07-10T14:30:00Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T14:32:30Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T14:37:35Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T14:42:40Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T14:47:45Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T15:01:10Z inc-000001 investigating sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.updated 2026-07-10T15:02:10Z inc-000001 monitoring sev2/major/distributed voicemail fcc_nors=review ofcom=review",
            "incident.resolved 2026-07-10T15:06:45Z inc-000001 resolved sev2/major/distributed voicemail fcc_nors=review ofcom=review",
        ]
    );
    let last_growth = &r.events[10]["incident"];
    assert_eq!(
        last_growth["regions"],
        json!([
            "capital", "centre", "coast", "east", "hills", "islands", "lakes", "north", "south",
            "west"
        ])
    );
    assert_eq!(last_growth["per_service"]["voicemail"]["peak_share"], 0.03);

    // The timeline tells how it unfolded, for the incident page and the post-mortem.
    let inc = r.only_incident();
    let step = |at: &str, event: &str, message: &str| {
        (at.to_string(), event.to_string(), message.to_string())
    };
    assert_eq!(
        messages(
            inc,
            &["opened", "grown", "recovering", "recovered", "resolved"]
        ),
        [
            step(
                "2026-07-10T14:02:00Z",
                "opened",
                "Voicemail: 90000 subscribers affected (0.3%)"
            ),
            step(
                "2026-07-10T14:07:05Z",
                "grown",
                "region south joined: 180000 subscribers affected (0.6%) in 2 regions"
            ),
            step(
                "2026-07-10T14:12:10Z",
                "grown",
                "region east joined: 270000 subscribers affected (0.9%) in 3 regions"
            ),
            step(
                "2026-07-10T14:17:15Z",
                "grown",
                "region west joined: 360000 subscribers affected (1.2%) in 4 regions"
            ),
            step(
                "2026-07-10T14:22:20Z",
                "grown",
                "region centre joined: 450000 subscribers affected (1.5%) in 5 regions"
            ),
            step(
                "2026-07-10T14:27:25Z",
                "grown",
                "region coast joined: 540000 subscribers affected (1.8%) in 6 regions"
            ),
            step(
                "2026-07-10T14:32:30Z",
                "grown",
                "region lakes joined: 630000 subscribers affected (2.1%) in 7 regions"
            ),
            step(
                "2026-07-10T14:37:35Z",
                "grown",
                "region hills joined: 720000 subscribers affected (2.4%) in 8 regions"
            ),
            step(
                "2026-07-10T14:42:40Z",
                "grown",
                "region islands joined: 810000 subscribers affected (2.7%) in 9 regions"
            ),
            step(
                "2026-07-10T14:47:45Z",
                "grown",
                "region capital joined: 900000 subscribers affected (3.0%) in 10 regions"
            ),
            step(
                "2026-07-10T15:01:10Z",
                "recovering",
                "recovering from 900000: 630000 subscribers affected (2.1%) in 7 regions"
            ),
            step(
                "2026-07-10T15:01:20Z",
                "recovering",
                "recovering from 630000: 450000 subscribers affected (1.5%) in 5 regions"
            ),
            step(
                "2026-07-10T15:01:30Z",
                "recovering",
                "recovering from 450000: 270000 subscribers affected (0.9%) in 3 regions"
            ),
            step(
                "2026-07-10T15:01:35Z",
                "recovering",
                "recovering from 270000: 180000 subscribers affected (0.6%) in 2 regions"
            ),
            step(
                "2026-07-10T15:01:40Z",
                "recovering",
                "recovering from 180000: 90000 subscribers affected (0.3%) in 1 region"
            ),
            step(
                "2026-07-10T15:01:45Z",
                "recovered",
                "impact over; resolving after 5m without failures"
            ),
            step(
                "2026-07-10T15:06:45Z",
                "resolved",
                "resolved after 1h 45s of impact"
            ),
        ]
    );
    assert_eq!(inc["peak_affected"], 900_000);
    assert_eq!(inc["affected"], 0);
    assert_eq!(inc["onset_at"], "2026-07-10T14:00:00Z");
    assert_eq!(inc["impact_end_at"], "2026-07-10T15:00:45Z");
}

/// The same outage for a receiver with `update_interval = "10m"`: at most one update every
/// 10 minutes, each with the state of when it goes out (the regions that joined meanwhile
/// are in it), and the opening and the resolution not held back.
#[test]
fn a_longer_update_interval_coalesces_the_growth_into_the_latest_state() {
    let r = replay_scenario_with(
        "growing-outage",
        r#"
[[receivers]]
name = "management"
type = "webhook"
url = "http://127.0.0.1:9/hooks/tocsin"
update_interval = "10m"
"#,
    );
    assert_eq!(
        r.sizes(),
        [
            "incident.opened 2026-07-10T14:02:00Z 90000/90000 1",
            // South joined at 14:07:05; the update waits until 10 minutes after the opening.
            "incident.updated 2026-07-10T14:12:00Z 180000/180000 2",
            // East (14:12:10) and west (14:17:15).
            "incident.updated 2026-07-10T14:22:00Z 360000/360000 4",
            "incident.updated 2026-07-10T14:32:00Z 540000/540000 6",
            "incident.updated 2026-07-10T14:42:00Z 720000/720000 8",
            "incident.updated 2026-07-10T14:52:00Z 900000/900000 10",
            "incident.updated 2026-07-10T15:02:00Z 0/900000 10",
            "incident.resolved 2026-07-10T15:06:45Z 0/900000 10",
        ]
    );
}

/// Data, voice and voicemail fail in both regions within 25 s (a shared transport): one
/// incident that the other services join, national from the start.
#[test]
fn multi_service_national_outage() {
    let r = replay_scenario("national-multi-service");
    assert_eq!(
        r.headlines(),
        [
            // data-north down: half of data → major_outage → national, sev1, critical.
            "incident.opened 2026-07-06T09:01:00Z inc-000001 investigating sev1/critical/national data ofcom=met",
            // Voice fails 10 s later in the same regions, voicemail 20 s later: they join, no
            // second incident; one update a minute (update_interval) after the opening.
            "incident.updated 2026-07-06T09:02:00Z inc-000001 investigating sev1/critical/national data,voice,voicemail ofcom=met",
            // Data: 1 000 000 user-hours (20M × 3 min after its mean onset 09:00:02.5),
            // then 3 000 000 (ofcom critical), then 30 minutes (fcc_nors).
            "incident.updated 2026-07-06T09:03:03Z inc-000001 investigating sev1/critical/national data,voice,voicemail eu_enisa=met ofcom=met",
            "incident.updated 2026-07-06T09:09:03Z inc-000001 investigating sev1/critical/national data,voice,voicemail eu_enisa=met ofcom=met+critical",
            "incident.updated 2026-07-06T09:30:00Z inc-000001 investigating sev1/critical/national data,voice,voicemail eu_enisa=met fcc_nors=met ofcom=met+critical",
            // The recovery, one target every 5 s: 9 000 000 still affected at 09:45:40 is
            // news (a partial recovery); the next update waits a minute and finds it over.
            "incident.updated 2026-07-06T09:45:40Z inc-000001 investigating sev1/critical/national data,voice,voicemail eu_enisa=met fcc_nors=met ofcom=met+critical",
            "incident.updated 2026-07-06T09:46:40Z inc-000001 monitoring sev1/critical/national data,voice,voicemail eu_enisa=met fcc_nors=met ofcom=met+critical",
            // Last recovery (vm-a-south's second success 09:45:55) + 5m.
            "incident.resolved 2026-07-06T09:50:55Z inc-000001 resolved sev1/critical/national data,voice,voicemail eu_enisa=met fcc_nors=met ofcom=met+critical",
        ]
    );
    let inc = r.only_incident();
    assert_eq!(inc["services"], json!(["data", "voice", "voicemail"]));
    assert_eq!(inc["scope"], "national");
    assert_eq!(inc["severity"], "sev1");
    assert_eq!(inc["impact"], "critical");
    assert_eq!(inc["regions"], json!(["north", "south"]));
    assert_eq!(inc["platforms"], json!(["ims-1", "pgw-1", "pgw-2", "vm-a"]));
    assert_eq!(inc["platform_concentrated"], false);
    assert_eq!(inc["onset_at"], "2026-07-06T09:00:00Z");
    assert_eq!(inc["impact_end_at"], "2026-07-06T09:45:25Z");
    assert_eq!(inc["duration_seconds"], 45 * 60 + 25);
    // The most affected service gives the incident's figures (a person is counted once).
    assert_eq!(inc["peak_affected"], 20_000_000);
    assert_eq!(inc["user_minutes"], 20_000_000u64 * 45);
    assert_eq!(inc["conservative_user_minutes"], 908_333_333); // 20M × 2725 s / 60
    for (service, peak, minutes) in [
        ("data", 20_000_000u64, 20_000_000u64 * 45),
        ("voice", 18_500_000, 18_500_000 * 45),
        ("voicemail", 6_000_000, 6_000_000 * 45),
    ] {
        let s = &inc["per_service"][service];
        assert_eq!(s["peak_affected"], peak, "{service}");
        assert_eq!(s["peak_share"], 1.0, "{service}");
        assert_eq!(s["user_minutes"], minutes, "{service}");
    }
    assert_eq!(inc["suspected_cause"], Value::Null);
}

/// The core DNS resolver fails at 10:00 for 20 minutes; voicemail (north, vm-a), data
/// (south, pgw-1) and voice (east, ims-1) depend on it and fail with it. They share no
/// region or platform, so only `depends_on` puts them together: one incident caused by
/// the core group, the three services in it through `core-dns` (voice through the
/// resolver target its handset depends on). Voice's handset pushes a result a minute and
/// is silent from 10:00 to 10:20: three missed heartbeats (due 10:00:35, 10:01:35,
/// 10:02:35, failure_threshold 3) take it down.
#[test]
fn core_dns_failure_gives_one_incident_caused_by_the_core_group() {
    let r = replay_scenario("core-dependency");
    assert_eq!(
        r.headlines(),
        [
            // The resolver's third failure: the core group is down.
            "incident.opened 2026-07-11T10:01:00Z inc-000001 investigating sev1/critical/national core",
            // Voicemail (10:01:10) and data (10:01:20) join; one update a minute.
            "incident.updated 2026-07-11T10:02:00Z inc-000001 investigating sev1/critical/national core,data,voicemail ofcom=met",
            // Voice's third missed heartbeat (10:00:35, 10:02:05, 10:03:35).
            "incident.updated 2026-07-11T10:03:35Z inc-000001 investigating sev1/critical/national core,data,voice,voicemail ofcom=met",
            "incident.updated 2026-07-11T10:06:20Z inc-000001 investigating sev1/critical/national core,data,voice,voicemail eu_enisa=met ofcom=met",
            "incident.updated 2026-07-11T10:18:20Z inc-000001 investigating sev1/critical/national core,data,voice,voicemail eu_enisa=met ofcom=met+critical",
            // The handset's second result after its silence (10:21:05) + 5m.
            "incident.resolved 2026-07-11T10:26:05Z inc-000001 resolved sev1/critical/national core,data,voice,voicemail eu_enisa=met ofcom=met+critical",
        ]
    );
    let inc = r.only_incident();
    assert_eq!(inc["caused_by"], json!(["core-dns"]));
    assert_eq!(
        inc["services"],
        json!(["core", "data", "voice", "voicemail"])
    );
    assert_eq!(inc["per_service"]["core"].get("through"), None);
    for (service, peak) in [
        ("voicemail", 3_000_000),
        ("data", 10_000_000),
        ("voice", 9_000_000),
    ] {
        let s = &inc["per_service"][service];
        assert_eq!(s["through"], "core-dns", "{service}");
        assert_eq!(s["peak_affected"], peak, "{service}");
    }
    let joined = messages(inc, &["service_joined"]);
    assert_eq!(joined.len(), 3);
    assert!(
        joined
            .iter()
            .all(|(_, _, m)| m.contains("through `core-dns`")),
        "{joined:?}"
    );

    // The same input without `depends_on`: nothing else relates the four services, and
    // each opens its own incident.
    let toml = std::fs::read_to_string(fixture("core-dependency.toml")).unwrap();
    let token = fixture("sim-east.token");
    let independent: String = toml
        .lines()
        .filter(|l| !l.starts_with("depends_on"))
        .map(|l| {
            l.replace(
                "\"sim-east.token\"",
                &format!("{:?}", token.display().to_string()),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let settings = config::load(&ConfigSource::Inline(independent)).unwrap();
    let input = File::open(fixture("core-dependency.jsonl")).unwrap();
    let separate = replay(settings, BufReader::new(input));
    assert_eq!(separate.incidents.len(), 4, "{:#?}", separate.headlines());
}

/// A target that flaps for half an hour (never 3 failures in a row), then fails for real
/// with a lone success and one brief two-success recovery inside the outage, then flaps
/// again: one incident, one `incident.opened`, reopened once without a new alert.
#[test]
fn flapping_target_gives_one_incident() {
    let r = replay_scenario("flapping");
    assert_eq!(
        r.headlines(),
        [
            "incident.opened 2026-07-07T10:36:00Z inc-000001 investigating sev2/major/distributed data ofcom=met",
            // 30 minutes after the onset, just as the final recovery begins.
            "incident.updated 2026-07-07T11:05:00Z inc-000001 investigating sev2/major/distributed data fcc_nors=met ofcom=met",
            "incident.resolved 2026-07-07T11:10:30Z inc-000001 resolved sev2/major/distributed data fcc_nors=met ofcom=met",
        ]
    );
    let opened = r
        .events
        .iter()
        .filter(|e| e["type"] == "incident.opened")
        .count();
    assert_eq!(opened, 1);
    let inc = r.only_incident();
    assert_eq!(
        timeline(inc, LIFECYCLE),
        entries(&[
            ("2026-07-07T10:36:00Z", "opened"),
            // Two successes at 10:55:00 and 10:55:30: up, impact over…
            ("2026-07-07T10:55:30Z", "recovered"),
            // …but failing again from 10:56:00, within resolve_after: the same incident.
            ("2026-07-07T10:57:00Z", "reopened"),
            ("2026-07-07T11:05:30Z", "recovered"),
            ("2026-07-07T11:10:30Z", "resolved"),
        ])
    );
    assert_eq!(inc["onset_at"], "2026-07-07T10:35:00Z");
    assert_eq!(inc["impact_end_at"], "2026-07-07T11:05:00Z");
    assert_eq!(inc["duration_seconds"], 30 * 60);
    // Affected 10:35–10:55 and 10:56–11:05 (the minute up in between is not counted):
    // 400 000 × 29 min; the conservative figure counts the whole 30 min.
    assert_eq!(inc["user_minutes"], 400_000 * 29);
    assert_eq!(inc["conservative_user_minutes"], 400_000 * 30);
    assert_eq!(inc["peak_affected"], 400_000);
    assert_eq!(inc["per_service"]["data"]["peak_share"], 0.02);
}

/// Slow answers only (3.5 s against degraded_latency 2 s) for 20 minutes: a degradation
/// incident, sev4 and minor, with nobody counted as affected.
#[test]
fn degradation_only_event() {
    let r = replay_scenario("degradation");
    assert_eq!(
        r.headlines(),
        [
            // 1 000 000 degraded: ofcom's 100 000, for review only (only degradation).
            "incident.opened 2026-07-08T12:01:00Z inc-000001 investigating sev4/minor/localized web ofcom=review",
            "incident.resolved 2026-07-08T12:25:30Z inc-000001 resolved sev4/minor/localized web ofcom=review",
        ]
    );
    assert_eq!(
        r.events[0]["incident"]["per_service"]["web"]["component_status"],
        "degraded_performance"
    );
    let inc = r.only_incident();
    assert_eq!(inc["severity"], "sev4");
    assert_eq!(inc["impact"], "minor");
    assert_eq!(inc["onset_at"], "2026-07-08T12:00:00Z");
    assert_eq!(inc["impact_end_at"], "2026-07-08T12:20:00Z");
    assert_eq!(inc["duration_seconds"], 20 * 60);
    assert_eq!(inc["peak_affected"], 0);
    assert_eq!(inc["user_minutes"], 0);
    assert_eq!(inc["conservative_user_minutes"], 0);
    assert_eq!(inc["platform_concentrated"], false);
    assert_eq!(inc["per_service"]["web"]["peak_affected"], 0);
    assert_eq!(inc["per_service"]["web"]["peak_share"], 0.0);
    // Degraded groups still name where it happened.
    assert_eq!(inc["platforms"], json!(["cdn-1"]));
    assert_eq!(inc["regions"], json!(["fr"]));
}

/// Acknowledged 19 minutes in (→ identified); receivers with repeat_interval 4h and 1h:
/// a reminder one hour (of the input's clock) after the last event while open, then the
/// resolution.
#[test]
fn acknowledge_and_reminders() {
    let r = replay_scenario("acknowledge-reminders");
    assert_eq!(
        r.headlines(),
        [
            "incident.opened 2026-07-09T20:01:00Z inc-000001 investigating sev1/critical/national voice ofcom=met",
            // 9M affected: 1M user-hours at 20:06:40, 3M (ofcom critical) at 20:20:00 (the
            // tick at 20:20:00 runs before the acknowledge line of the same second), 30
            // minutes at 20:30:00.
            "incident.updated 2026-07-09T20:06:40Z inc-000001 investigating sev1/critical/national voice eu_enisa=met ofcom=met",
            "incident.updated 2026-07-09T20:20:00Z inc-000001 investigating sev1/critical/national voice eu_enisa=met ofcom=met+critical",
            "incident.updated 2026-07-09T20:30:00Z inc-000001 identified sev1/critical/national voice eu_enisa=met fcc_nors=met ofcom=met+critical",
            // Every hour after the last event.
            "incident.reminder 2026-07-09T21:30:00Z inc-000001 identified sev1/critical/national voice eu_enisa=met fcc_nors=met ofcom=met+critical",
            "incident.reminder 2026-07-09T22:30:00Z inc-000001 identified sev1/critical/national voice eu_enisa=met fcc_nors=met ofcom=met+critical",
            "incident.resolved 2026-07-09T22:35:30Z inc-000001 resolved sev1/critical/national voice eu_enisa=met fcc_nors=met ofcom=met+critical",
        ]
    );
    let inc = r.only_incident();
    assert_eq!(
        timeline(inc, LIFECYCLE),
        entries(&[
            ("2026-07-09T20:01:00Z", "opened"),
            ("2026-07-09T20:20:00Z", "acknowledged"),
            ("2026-07-09T22:30:30Z", "recovered"),
            ("2026-07-09T22:35:30Z", "resolved"),
        ])
    );
    assert_eq!(inc["duration_seconds"], 150 * 60);
    assert_eq!(inc["user_minutes"], 9_000_000u64 * 150);
}

/// The binary writes what the library does, to stdout or to `--output`.
#[test]
fn binary_output_matches_the_library() {
    let expected = replay_scenario("degradation").raw;
    let out = tocsin_replay(
        &fixture("degradation.toml"),
        &fixture("degradation.jsonl"),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, expected);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let out = tocsin_replay(
        &fixture("degradation.toml"),
        &fixture("degradation.jsonl"),
        Some(&path),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), expected);
    assert_eq!(files_in(dir.path()), ["events.jsonl"]);
}

// === Bad input ===

fn tocsin_replay(config: &Path, input: &Path, output: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tocsin"));
    cmd.arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(input)
        .env_remove("RUST_LOG");
    if let Some(o) = output {
        cmd.arg("--output").arg(o);
    }
    cmd.output().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const OK_1: &str = r#"{"at":"2026-07-08T12:00:00Z","target":"www","ok":true,"latency_ms":90}"#;
const OK_2: &str = r#"{"at":"2026-07-08T12:00:30Z","target":"www","ok":true,"latency_ms":95}"#;

#[test]
fn bad_input_exits_1_naming_the_line_and_writes_nothing() {
    // A complete degradation incident first, so that a late bad line has events to lose.
    let incident = std::fs::read_to_string(fixture("degradation.jsonl")).unwrap();
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "malformed JSON",
            format!(
                "{OK_1}\n{OK_2}\n{{\"at\":\"2026-07-08T12:01:00Z\",\"target\":\"www\",\"ok\":tru}}\n"
            ),
            3,
            "expected",
        ),
        (
            "truncated last line",
            format!("{OK_1}\n{}", &OK_2[..40]),
            2,
            "EOF",
        ),
        (
            "unknown target",
            format!("{OK_1}\n{}\n", OK_2.replace("www", "ww")),
            2,
            "unknown target `ww`",
        ),
        (
            "time going backwards",
            format!("{OK_1}\n{OK_2}\n{OK_1}\n"),
            3,
            "before the previous line",
        ),
        (
            "both target and change",
            format!(
                "{OK_1}\n{}\n",
                r#"{"at":"2026-07-08T12:00:30Z","target":"www","ok":true,"change":{"id":"chg-1","summary":"x"}}"#
            ),
            2,
            "exactly one of",
        ),
        (
            "result without ok",
            format!(
                "{OK_1}\n{}\n",
                r#"{"at":"2026-07-08T12:00:30Z","target":"www"}"#
            ),
            2,
            "needs `ok`",
        ),
        (
            "acknowledging no open incident",
            format!(
                "{OK_1}\n{}\n",
                r#"{"at":"2026-07-08T12:00:30Z","acknowledge":"inc-000001"}"#
            ),
            2,
            "no open incident `inc-000001`",
        ),
        (
            "latency beyond any duration",
            format!(
                "{OK_1}\n{}\n",
                r#"{"at":"2026-07-08T12:00:30Z","target":"www","ok":true,"latency_ms":1e300}"#
            ),
            2,
            "latency_ms",
        ),
        (
            "unknown field",
            format!("{OK_1}\n{}\n", OK_2.replace("latency_ms", "latency")),
            2,
            "`latency`: unknown field",
        ),
        (
            "a time that is not RFC 3339",
            format!(
                "{OK_1}\n{}\n",
                r#"{"at":"2026-07-08 12:00:30","target":"www","ok":true}"#
            ),
            2,
            "`at`: `2026-07-08 12:00:30` is not an RFC 3339 time",
        ),
        (
            "bad line after a whole incident",
            format!(
                "{incident}{}\n",
                r#"{"at":"2026-07-08T12:40:00Z","target":"www","ok":"yes"}"#
            ),
            101,
            "`ok`: invalid type: string \"yes\", expected a boolean",
        ),
    ];
    let config = fixture("degradation.toml");
    for (name, input, line, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let input_path = dir.path().join("input.jsonl");
        std::fs::write(&input_path, &input).unwrap();
        let output = dir.path().join("events.jsonl");
        for out_arg in [None, Some(output.as_path())] {
            let out = tocsin_replay(&config, &input_path, out_arg);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
            assert!(
                stderr.contains(&format!("line {line}:")),
                "{name}: stderr names line {line}: {stderr}"
            );
            assert!(stderr.contains(message), "{name}: `{message}` in {stderr}");
            assert!(
                !stderr.contains("at line 1 column"),
                "{name}: one location only: {stderr}"
            );
            assert!(
                out.stdout.is_empty(),
                "{name}: nothing on stdout, got {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(
                files_in(dir.path()),
                ["input.jsonl"],
                "{name}: no output file, not even a partial one"
            );
        }
    }
}

#[test]
fn empty_input_gives_an_empty_summary() {
    const EMPTY: &[u8] = b"{\"type\":\"summary\",\"incidents\":[]}\n";
    for input in ["", "\n\n  \n"] {
        let r = replay(load("degradation"), input.as_bytes());
        assert_eq!(r.raw, EMPTY);
        assert_eq!(r.totals, Totals::default());

        let dir = tempfile::tempdir().unwrap();
        let input_path = dir.path().join("input.jsonl");
        std::fs::write(&input_path, input).unwrap();
        let out = tocsin_replay(&fixture("degradation.toml"), &input_path, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, EMPTY);
        let path = dir.path().join("events.jsonl");
        let out = tocsin_replay(&fixture("degradation.toml"), &input_path, Some(&path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&path).unwrap(), EMPTY);
    }
}

// === Properties on random result streams ===

/// Three services over shared platforms and regions: a target watching groups of two
/// services, a mode `all` group, and a service (voice) that shares nothing with the others.
const PROP_CONFIG: &str = r#"
[defaults]
interval = "30s"
failure_threshold = 3
success_threshold = 2
degraded_latency = "2s"
resolve_after = "2m"

[incidents]
correlation_window = "15m"

[[services]]
id = "voicemail"
subscribers = 10_000_000

[[services]]
id = "data"
class = "internet"

[[services]]
id = "voice"
class = "telephony"
subscribers = 5_000_000

[[groups]]
id = "vm-a-north"
service = "voicemail"
platform = "vm-a"
region = "north"
subscribers = 300_000

[[groups]]
id = "vm-a-south"
service = "voicemail"
platform = "vm-a"
region = "south"
subscribers = 300_000

[[groups]]
id = "vm-b-north"
service = "voicemail"
platform = "vm-b"
region = "north"
subscribers = 6_000_000
mode = "all"

[[groups]]
id = "data-north"
service = "data"
platform = "pgw-1"
region = "north"
subscribers = 4_000_000

[[groups]]
id = "data-south"
service = "data"
platform = "pgw-2"
region = "south"
subscribers = 4_000_000

[[groups]]
id = "voice-east"
service = "voice"
platform = "ims-1"
region = "east"
subscribers = 2_000_000

[[targets]]
id = "vm-a-north-imap"
groups = ["vm-a-north"]
probe = { type = "tcp", address = "vm-a.north.example.net:993" }

[[targets]]
id = "vm-a-south-imap"
groups = ["vm-a-south"]
probe = { type = "tcp", address = "vm-a.south.example.net:993" }

[[targets]]
id = "vm-b-north-1"
groups = ["vm-b-north"]
probe = { type = "tcp", address = "vm-b-1.north.example.net:993" }

[[targets]]
id = "north-access"
groups = ["vm-b-north", "data-north"]
probe = { type = "tcp", address = "access.north.example.net:443" }

[[targets]]
id = "data-south-http"
groups = ["data-south"]
probe = { type = "http", url = "https://pgw-2.south.example.net/health" }

[[targets]]
id = "voice-east-sip"
groups = ["voice-east"]
probe = { type = "tcp", address = "sbc.east.example.net:5060" }
"#;

const PROP_TARGETS: [&str; 6] = [
    "vm-a-north-imap",
    "vm-a-south-imap",
    "vm-b-north-1",
    "north-access",
    "data-south-http",
    "voice-east-sip",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fast,
    Slow,
    Fail,
}

/// What one target does during a block of rounds.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    Silent,
    Steady(Kind),
    /// Fails and succeeds alternately, starting with a failure when `true`.
    Flap(bool),
}

#[derive(Debug, Clone)]
struct Block {
    /// Quiet seconds before the block.
    pause: i64,
    rounds: i64,
    /// Seconds between rounds; the targets of a round are spread over it.
    gap: i64,
    patterns: Vec<Pattern>,
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        2 => Just(Pattern::Silent),
        4 => Just(Pattern::Steady(Kind::Fast)),
        3 => Just(Pattern::Steady(Kind::Fail)),
        1 => Just(Pattern::Steady(Kind::Slow)),
        2 => any::<bool>().prop_map(Pattern::Flap),
    ]
}

fn blocks() -> impl Strategy<Value = Vec<Block>> {
    let block = (
        0i64..=240,
        1i64..=8,
        1i64..=60,
        proptest::collection::vec(pattern(), PROP_TARGETS.len()),
    )
        .prop_map(|(pause, rounds, gap, patterns)| Block {
            pause,
            rounds,
            gap,
            patterns,
        });
    proptest::collection::vec(block, 1..=12)
}

fn prop_start() -> DateTime<Utc> {
    "2026-07-05T00:00:00Z".parse().unwrap()
}

/// The results of the blocks, in time order, then every target fast for long enough that
/// everything recovers (2 successes) and `resolve_after` (2m) passes: 8 rounds 30 s apart.
fn expand(blocks: &[Block]) -> Vec<(DateTime<Utc>, usize, Kind)> {
    let n = PROP_TARGETS.len() as i64;
    let mut out = Vec::new();
    let mut t = 0i64;
    for b in blocks {
        t += b.pause;
        for round in 0..b.rounds {
            for (i, p) in b.patterns.iter().enumerate() {
                let kind = match *p {
                    Pattern::Silent => continue,
                    Pattern::Steady(k) => k,
                    Pattern::Flap(first_fails) if (round % 2 == 0) == first_fails => Kind::Fail,
                    Pattern::Flap(_) => Kind::Fast,
                };
                out.push((t + i as i64 * b.gap / n, i, kind));
            }
            t += b.gap;
        }
    }
    t += 30;
    for _ in 0..8 {
        for i in 0..PROP_TARGETS.len() {
            out.push((t, i, Kind::Fast));
        }
        t += 30;
    }
    out.sort_by_key(|&(t, i, _)| (t, i));
    out.into_iter()
        .map(|(t, i, k)| (prop_start() + chrono::Duration::seconds(t), i, k))
        .collect()
}

fn to_jsonl(stream: &[(DateTime<Utc>, usize, Kind)]) -> String {
    let mut s = String::new();
    for (at, i, kind) in stream {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let target = PROP_TARGETS[*i];
        let line = match kind {
            Kind::Fast => json!({"at": at, "target": target, "ok": true, "latency_ms": 100}),
            Kind::Slow => json!({"at": at, "target": target, "ok": true, "latency_ms": 3500}),
            Kind::Fail => {
                json!({"at": at, "target": target, "ok": false, "reason": "timeout", "latency_ms": 5000})
            }
        };
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

fn rank(value: &Value, order: &[&str]) -> usize {
    let s = value.as_str().unwrap();
    order
        .iter()
        .position(|o| *o == s)
        .unwrap_or_else(|| panic!("unexpected value {s}"))
}

const SEVERITIES: [&str; 4] = ["sev4", "sev3", "sev2", "sev1"];
const IMPACTS: [&str; 4] = ["none", "minor", "major", "critical"];

/// Whether to check user_minutes ≤ conservative_user_minutes (see
/// [`backdated_failure_before_the_onset_moves_the_onset`] for why it does not hold yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Checked,
    Unchecked,
}

/// The properties, on what replay printed.
fn check_replay(r: &Replayed, bound: Bound) -> Result<(), TestCaseError> {
    let mut by_incident: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &r.events {
        let inc = &e["incident"];
        let um = inc["user_minutes"].as_u64().unwrap();
        let cum = inc["conservative_user_minutes"].as_u64().unwrap();
        prop_assert!(
            bound == Bound::Unchecked || um <= cum,
            "user_minutes {um} > conservative {cum}: {}",
            headline(e)
        );
        by_incident
            .entry(inc["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    let summary: BTreeMap<String, &Value> = r
        .incidents
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i))
        .collect();
    prop_assert_eq!(
        summary.keys().collect::<Vec<_>>(),
        by_incident.keys().collect::<Vec<_>>(),
        "every incident is announced and summarized"
    );

    // Per service: [joined, resolved) of each incident that had it.
    let mut spans: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for (id, events) in &by_incident {
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        prop_assert_eq!(
            kinds[0],
            "incident.opened",
            "{} starts opened: {:?}",
            id,
            kinds
        );
        prop_assert_eq!(
            *kinds.last().unwrap(),
            "incident.resolved",
            "{} is resolved once all is up for resolve_after: {:?}",
            id,
            kinds
        );
        prop_assert_eq!(kinds.iter().filter(|k| **k == "incident.opened").count(), 1);
        prop_assert_eq!(
            kinds.iter().filter(|k| **k == "incident.resolved").count(),
            1
        );
        prop_assert_eq!(&summary[id]["status"], "resolved");
        let mut views: Vec<&Value> = events.iter().map(|e| &e["incident"]).collect();
        views.push(summary[id]);
        for w in views.windows(2) {
            prop_assert!(
                rank(&w[1]["severity"], &SEVERITIES) >= rank(&w[0]["severity"], &SEVERITIES),
                "{} severity decreased: {} → {}",
                id,
                w[0]["severity"],
                w[1]["severity"]
            );
            prop_assert!(
                rank(&w[1]["impact"], &IMPACTS) >= rank(&w[0]["impact"], &IMPACTS),
                "{} impact decreased: {} → {}",
                id,
                w[0]["impact"],
                w[1]["impact"]
            );
        }
        let um = summary[id]["user_minutes"].as_u64().unwrap();
        let cum = summary[id]["conservative_user_minutes"].as_u64().unwrap();
        prop_assert!(
            bound == Bound::Unchecked || um <= cum,
            "{id}: final user_minutes {um} > conservative {cum}"
        );
        let resolved_at = events.last().unwrap()["at"].as_str().unwrap().to_string();
        let mut joined: BTreeMap<String, String> = BTreeMap::new();
        for e in events {
            for s in e["incident"]["services"].as_array().unwrap() {
                joined
                    .entry(s.as_str().unwrap().to_string())
                    .or_insert_with(|| e["at"].as_str().unwrap().to_string());
            }
        }
        for (service, from) in joined {
            spans
                .entry(service)
                .or_default()
                .push((from, resolved_at.clone(), id.clone()));
        }
    }
    // RFC 3339 UTC times with whole seconds compare as strings.
    for (service, mut list) in spans {
        list.sort();
        for w in list.windows(2) {
            prop_assert!(
                w[1].0 >= w[0].1,
                "{} is in {} from {} while {} is open until {}",
                service,
                w[1].2,
                w[1].0,
                w[0].2,
                w[0].1
            );
        }
    }
    Ok(())
}

fn result_of(kind: Kind) -> ProbeResult {
    match kind {
        Kind::Fast => ProbeResult::success(Duration::from_millis(100), Phases::default()),
        Kind::Slow => ProbeResult::success(Duration::from_millis(3500), Phases::default()),
        Kind::Fail => ProbeResult::failure(Reason::Timeout, "", Duration::from_secs(5)),
    }
}

/// What the core says at every step, not only at alert events.
struct CoreWatch {
    bound: Bound,
    /// Severity and impact last seen, per incident.
    severity: HashMap<String, (Severity, Impact)>,
    opened: BTreeSet<String>,
    resolved: BTreeSet<String>,
}

impl CoreWatch {
    fn changes(&mut self, changes: &BookUpdate) -> Result<(), TestCaseError> {
        for (kind, inc) in &changes.events {
            match kind {
                EventKind::Opened => {
                    prop_assert!(
                        self.opened.insert(inc.id.clone()),
                        "{} opened twice",
                        inc.id
                    )
                }
                EventKind::Resolved => {
                    prop_assert!(self.opened.contains(&inc.id), "{} never opened", inc.id);
                    prop_assert!(
                        self.resolved.insert(inc.id.clone()),
                        "{} resolved twice",
                        inc.id
                    );
                }
                EventKind::Updated => {
                    prop_assert!(self.opened.contains(&inc.id), "{} never opened", inc.id);
                    prop_assert!(
                        !self.resolved.contains(&inc.id),
                        "{} updated after resolved",
                        inc.id
                    );
                }
            }
        }
        Ok(())
    }

    fn state(&mut self, core: &Core, now: DateTime<Utc>) -> Result<(), TestCaseError> {
        let mut services = BTreeSet::new();
        for inc in core.open_incidents() {
            if self.bound == Bound::Checked {
                self.figures(inc, now)?;
            }
            let before = self
                .severity
                .insert(inc.id.clone(), (inc.severity, inc.impact));
            prop_assert!(
                before.is_none_or(|(s, i)| s <= inc.severity && i <= inc.impact),
                "{} at {now}: severity/impact {:?} → {:?}",
                inc.id,
                before,
                (inc.severity, inc.impact)
            );
            for s in inc.services.keys() {
                prop_assert!(
                    services.insert(s.clone()),
                    "{s} is in two open incidents at {now}"
                );
            }
        }
        Ok(())
    }

    /// user_minutes ≤ conservative_user_minutes, for the incident and each of its services.
    fn figures(&self, inc: &Incident, now: DateTime<Utc>) -> Result<(), TestCaseError> {
        let f = inc.figures(now);
        prop_assert!(
            f.user_minutes <= f.conservative_user_minutes * (1.0 + 1e-12) + 1e-6,
            "{} at {now}: user_minutes {} > conservative {}",
            inc.id,
            f.user_minutes,
            f.conservative_user_minutes
        );
        let minutes = f.duration.as_secs_f64() / 60.0;
        for (s, sf) in &f.per_service {
            prop_assert!(
                sf.user_minutes <= sf.peak_affected as f64 * minutes * (1.0 + 1e-12) + 1e-6,
                "{} at {now}: {s} user_minutes {} > its peak {} × {minutes} min",
                inc.id,
                sf.user_minutes,
                sf.peak_affected
            );
        }
        Ok(())
    }
}

/// Drives the core as replay does (a tick every second between results while anything
/// can change with time), checking the state after every step.
fn check_core(
    settings: Arc<Settings>,
    stream: &[(DateTime<Utc>, usize, Kind)],
    bound: Bound,
) -> Result<(), TestCaseError> {
    let tick = chrono::Duration::from_std(TICK).unwrap();
    let first = stream[0].0;
    let mut core = Core::new(
        Arc::clone(&settings.topology),
        settings.incidents.clone(),
        HashMap::new(),
        IncidentBook::default(),
        first,
    );
    let mut watch = CoreWatch {
        bound,
        severity: HashMap::new(),
        opened: BTreeSet::new(),
        resolved: BTreeSet::new(),
    };
    let mut last = first;
    for &(at, target, kind) in stream {
        let mut now = last + tick;
        while now <= at && core.is_active() {
            let changes = core.tick(now);
            watch.changes(&changes)?;
            watch.state(&core, now)?;
            now += tick;
        }
        last = at;
        core.observe(target, at, &result_of(kind));
        watch.changes(&core.settle(at))?;
        watch.state(&core, at)?;
    }
    prop_assert!(
        core.open_incidents().is_empty(),
        "still open after everything was up for resolve_after: {:?}",
        core.open_incidents()
            .iter()
            .map(|i| (&i.id, i.status))
            .collect::<Vec<_>>()
    );
    prop_assert_eq!(&watch.opened, &watch.resolved);
    Ok(())
}

fn prop_settings() -> Settings {
    config::load(&ConfigSource::Inline(PROP_CONFIG.to_string())).expect("property config")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Severity and impact never decrease, every incident is opened once and resolved
    /// once everything is up for resolve_after, no service is in two incidents at once.
    #[test]
    fn replay_properties_hold_on_random_streams(blocks in blocks()) {
        let stream = expand(&blocks);
        let r = replay(prop_settings(), to_jsonl(&stream).as_bytes());
        prop_assert_eq!(r.totals.lines, stream.len());
        check_replay(&r, Bound::Unchecked)?;
    }

    /// The same, on the core's open incidents after every result and every tick.
    #[test]
    fn core_invariants_hold_at_every_step(blocks in blocks()) {
        let stream = expand(&blocks);
        check_core(Arc::new(prop_settings()), &stream, Bound::Unchecked)?;
    }

    /// user_minutes ≤ conservative_user_minutes at every event and every step.
    #[test]
    fn user_minutes_never_exceed_conservative(blocks in blocks()) {
        let stream = expand(&blocks);
        let r = replay(prop_settings(), to_jsonl(&stream).as_bytes());
        check_replay(&r, Bound::Checked)?;
        check_core(Arc::new(prop_settings()), &stream, Bound::Checked)?;
    }
}

/// onset_at is the first failure, and conservative_user_minutes = peak × duration
/// bounds user_minutes. vm-a-north (probed every 15 s) fails from 14:00:00 and is down at
/// 14:00:30: the incident opens with onset 14:00:00. vm-a-south (probed every 60 s) failed
/// first, at 13:59:30, and is down at 14:01:30, backdated to 13:59:30. Its down period is
/// counted from 13:59:30 but the incident's onset stays 14:00:00: at 14:01:30 user_minutes
/// is 300 000 × 1.5 + 300 000 × 2 = 1 050 000, above conservative 600 000 × 1.5 = 900 000.
#[test]
fn backdated_failure_before_the_onset_moves_the_onset() {
    let input = [
        r#"{"at":"2026-07-05T13:59:00Z","target":"vm-a-north-imap","ok":true,"latency_ms":100}"#,
        r#"{"at":"2026-07-05T13:59:00Z","target":"vm-a-south-imap","ok":true,"latency_ms":100}"#,
        r#"{"at":"2026-07-05T13:59:30Z","target":"vm-a-south-imap","ok":false}"#,
        r#"{"at":"2026-07-05T14:00:00Z","target":"vm-a-north-imap","ok":false}"#,
        r#"{"at":"2026-07-05T14:00:15Z","target":"vm-a-north-imap","ok":false}"#,
        r#"{"at":"2026-07-05T14:00:30Z","target":"vm-a-north-imap","ok":false}"#,
        r#"{"at":"2026-07-05T14:00:30Z","target":"vm-a-south-imap","ok":false}"#,
        r#"{"at":"2026-07-05T14:01:30Z","target":"vm-a-south-imap","ok":false}"#,
    ]
    .join("\n");
    let r = replay(prop_settings(), input.as_bytes());
    let inc = r.only_incident();
    assert_eq!(inc["onset_at"], "2026-07-05T13:59:30Z", "the first failure");
    let um = inc["user_minutes"].as_u64().unwrap();
    let cum = inc["conservative_user_minutes"].as_u64().unwrap();
    assert!(um <= cum, "user_minutes {um} > conservative {cum}");
}
