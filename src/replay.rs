//! `tocsin replay`: the engine's [`Core`] on recorded JSON lines, in the input's
//! time, with no network. Output: one JSON line per alert event that would be sent, then a
//! summary of every incident. Nothing is written unless the whole input is valid.
//!
//! The events go through the daemon's routing, as for one receiver that takes every
//! incident (see `stream_policy`): updates are held by `update_interval` and reminders
//! fall due exactly as a receiver would see them.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::routing::{Policy, Routed, Routing};
use crate::alert::{DEFAULT_UPDATE_INTERVAL, ReceiverSpec};
use crate::clock::Timestamp;
use crate::config::Settings;
use crate::engine::{Core, TICK};
use crate::event::AlertType;
use crate::incident::{BookUpdate, Change, Incident, IncidentBook, IncidentView, Severity};
use crate::probe::{Phases, ProbeResult, Reason, missed_heartbeat};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("cannot read the input: {0}")]
    Read(std::io::Error),
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
}

/// One input line: a result, a change or an acknowledgement.
struct Line {
    at: Timestamp,
    target: Option<String>,
    ok: Option<bool>,
    reason: Option<Reason>,
    latency_ms: Option<f64>,
    change: Option<ChangeLine>,
    acknowledge: Option<String>,
}

/// The keys of an input line; `vantage` is accepted for multi-vantage recordings (one
/// vantage is replayed).
const LINE_KEYS: [&str; 8] = [
    "at",
    "target",
    "ok",
    "reason",
    "latency_ms",
    "vantage",
    "change",
    "acknowledge",
];

/// A well-formed line, read straight into its fields. The keys are [`LINE_KEYS`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WellFormed<'a> {
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    target: Option<String>,
    ok: Option<bool>,
    reason: Option<Reason>,
    latency_ms: Option<f64>,
    #[serde(rename = "vantage")]
    _vantage: Option<serde::de::IgnoredAny>,
    change: Option<ChangeLine>,
    acknowledge: Option<String>,
}

impl Line {
    /// Reads one line. A well-formed one is decoded once, into its fields; any other is
    /// read again as a JSON value, to name the field at fault (`` `at`: not an RFC 3339
    /// time ``): errors are rare, and the second pass costs nothing until one comes.
    fn parse(text: &str) -> Result<Line, String> {
        if let Ok(line) = serde_json::from_str::<WellFormed>(text)
            && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&line.at)
        {
            return Ok(Line {
                at: at.to_utc(),
                target: line.target,
                ok: line.ok,
                reason: line.reason,
                latency_ms: line.latency_ms,
                change: line.change,
                acknowledge: line.acknowledge,
            });
        }
        Self::parse_naming_the_fault(text)
    }

    fn parse_naming_the_fault(text: &str) -> Result<Line, String> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("column {}: not JSON ({})", e.column(), json_error(&e)))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err("not a JSON object".to_string());
        };
        if let Some(key) = map.keys().find(|k| !LINE_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "`{key}`: unknown field, expected one of {}",
                LINE_KEYS.join(", ")
            ));
        }
        let at = match map.remove("at") {
            None => return Err("`at`: missing".to_string()),
            Some(serde_json::Value::String(text)) => chrono::DateTime::parse_from_rfc3339(&text)
                .map_err(|_| format!("`at`: `{text}` is not an RFC 3339 time"))?
                .to_utc(),
            Some(other) => return Err(format!("`at`: {other} is not an RFC 3339 time")),
        };
        Ok(Line {
            at,
            target: field(&mut map, "target")?,
            ok: field(&mut map, "ok")?,
            reason: field(&mut map, "reason")?,
            latency_ms: field(&mut map, "latency_ms")?,
            change: field(&mut map, "change")?,
            acknowledge: field(&mut map, "acknowledge")?,
        })
    }
}

/// The optional field `key`, its error named after it.
fn field<T: serde::de::DeserializeOwned>(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<T>, String> {
    match map.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| format!("`{key}`: {}", json_error(&e))),
    }
}

/// serde_json's message without its position, which is within the line, not the file.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeLine {
    id: String,
    platform: Option<String>,
    service: Option<String>,
    summary: String,
}

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    kind: AlertType,
    at: Timestamp,
    incident: &'a IncidentView,
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    incidents: Vec<IncidentView>,
}

/// One input line, checked on its own.
#[derive(Debug)]
pub struct Entry {
    pub at: Timestamp,
    pub kind: EntryKind,
}

#[derive(Debug)]
pub enum EntryKind {
    /// A probe result for the target with this id.
    Result {
        target: String,
        result: ProbeResult,
    },
    Change(Change),
    /// Acknowledges the open incident with this id.
    Acknowledge(String),
}

/// Parses one non-blank input line, with every check that needs no other line. The
/// parser entry point of the `replay` fuzz target.
pub fn parse_line(text: &str) -> Result<Entry, String> {
    let line = Line::parse(text)?;
    let at = line.at;
    crate::clock::check_input_time(at).map_err(|e| format!("`at`: {e}"))?;
    let kind = match (line.target, line.change, line.acknowledge) {
        (Some(target), None, None) => {
            let ok = line.ok.ok_or("a result needs `ok`")?;
            let latency =
                Duration::try_from_secs_f64(line.latency_ms.unwrap_or(0.0).max(0.0) / 1000.0)
                    .map_err(|_| "`latency_ms` is out of range")?;
            let result = if ok {
                ProbeResult::success(latency, Phases::default())
            } else {
                ProbeResult::failure(line.reason.unwrap_or(Reason::Internal), "", latency)
            };
            EntryKind::Result { target, result }
        }
        (None, Some(c), None) => {
            if line.ok.is_some() || line.reason.is_some() || line.latency_ms.is_some() {
                return Err("a change line has no result fields".to_string());
            }
            EntryKind::Change(Change {
                id: c.id,
                platform: c.platform,
                service: c.service,
                summary: c.summary,
                at,
            })
        }
        (None, None, Some(id)) => EntryKind::Acknowledge(id),
        _ => {
            return Err("expected exactly one of `target`, `change` or `acknowledge`".to_string());
        }
    };
    Ok(Entry { at, kind })
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub lines: usize,
    pub events: usize,
    pub incidents: usize,
}

struct Replay {
    core: Core,
    /// Every incident seen, latest state, by id.
    incidents: BTreeMap<String, Incident>,
    /// Output lines, held until the input has been read to the end.
    out: Vec<String>,
    /// The one stream's routing.
    routing: Routing,
    events: usize,
}

impl Replay {
    fn emit(&mut self, changes: BookUpdate, now: Timestamp) {
        for inc in changes.changed {
            self.incidents.insert(inc.id.clone(), inc);
        }
        for (kind, inc) in changes.events {
            let routed = self.routing.route(kind, &inc.view(now), now);
            self.write(routed);
        }
    }

    fn write(&mut self, routed: Routed) {
        for d in routed.deliveries {
            // Routing of incident events only: every delivery has its incident.
            let Some(incident) = &d.event.incident else {
                continue;
            };
            let line = serde_json::to_string(&EventLine {
                kind: d.event.kind,
                at: d.event.occurred_at,
                incident,
            })
            .expect("events serialize");
            self.out.push(line);
            self.events += 1;
        }
    }

    /// Runs the clock from `from` to `to` in engine ticks, while time can change anything;
    /// push targets miss their heartbeats on the way, at the times they fall due.
    fn advance(&mut self, from: Timestamp, to: Timestamp) {
        let step = chrono::Duration::from_std(TICK).expect("tick fits");
        let mut now = from + step;
        loop {
            self.miss_heartbeats(now.min(to));
            if now > to {
                break;
            }
            if self.core.is_active() {
                let changes = self.core.tick(now);
                self.emit(changes, now);
                let due = self.routing.tick(self.core.open_incidents(), now);
                self.write(due);
                now += step;
                continue;
            }
            // Quiet until the next heartbeat falls due, if one does before `to`: on to the
            // first tick at or after it.
            match self.core.next_heartbeat().filter(|&(_, due)| due <= to) {
                Some((_, due)) if due > now => {
                    let steps = (due - now)
                        .num_milliseconds()
                        .div_euclid(step.num_milliseconds());
                    now += step * i32::try_from(steps).unwrap_or(i32::MAX);
                    if now < due {
                        now += step;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    /// Feeds a missed heartbeat for each push target whose result was due by `until`.
    fn miss_heartbeats(&mut self, until: Timestamp) {
        while let Some((index, due)) = self.core.next_heartbeat().filter(|&(_, d)| d <= until) {
            let target = &self.core.topology().targets[index];
            let grace = target
                .probe
                .pushed()
                .map_or_else(Default::default, |p| p.grace);
            let result = missed_heartbeat(target.interval, grace);
            self.core.observe(index, due, &result);
            let changes = self.core.settle(due);
            self.emit(changes, due);
        }
    }
}

/// The one stream replay prints: what a receiver taking every incident and every
/// resolution would be sent, with the shortest `repeat_interval` and the shortest
/// `update_interval` of the configured receivers (the most events any of them can get),
/// or the default `update_interval` when none is configured.
fn stream_policy(receivers: &[ReceiverSpec]) -> Policy {
    Policy {
        name: "replay".to_string(),
        min_severity: Severity::Sev4,
        send_resolved: true,
        services: Vec::new(),
        resend_every: receivers.iter().filter_map(|r| r.repeat_interval).min(),
        update_interval: receivers
            .iter()
            .map(|r| r.update_interval)
            .min()
            .unwrap_or(DEFAULT_UPDATE_INTERVAL),
        vantage_events: false,
    }
}

/// Replays `input` against `settings`, writing events and the summary to `output` only
/// once every line has been read and applied.
pub fn run(
    settings: Settings,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<Totals, ReplayError> {
    let targets: HashMap<String, usize> = settings
        .topology
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let mut replay: Option<Replay> = None;
    let mut last_at: Option<Timestamp> = None;
    let mut lines = 0;
    for (n, text) in input.lines().enumerate() {
        let line_no = n + 1;
        let text = text.map_err(ReplayError::Read)?;
        if text.trim().is_empty() {
            continue;
        }
        lines += 1;
        let bad = |message: String| ReplayError::Line {
            line: line_no,
            message,
        };
        let Entry { at, kind } = parse_line(&text).map_err(bad)?;
        if let Some(last) = last_at
            && at < last
        {
            return Err(bad(format!("{at} is before the previous line ({last})")));
        }
        let r = replay.get_or_insert_with(|| Replay {
            core: Core::new(
                Arc::clone(&settings.topology),
                settings.incidents.clone(),
                HashMap::new(),
                IncidentBook::default(),
                at,
            ),
            incidents: BTreeMap::new(),
            out: Vec::new(),
            routing: Routing::new([stream_policy(&settings.receivers)], &[]),
            events: 0,
        });
        if let Some(last) = last_at {
            r.advance(last, at);
        }
        last_at = Some(at);
        match kind {
            EntryKind::Result { target, result } => {
                let index = *targets
                    .get(&target)
                    .ok_or_else(|| bad(format!("unknown target `{target}`")))?;
                // Each recorded result is settled on its own: a line is one moment.
                r.core.observe(index, at, &result);
                let changes = r.core.settle(at);
                r.emit(changes, at);
            }
            EntryKind::Change(change) => {
                let changes = r.core.record_change(change, at);
                r.emit(changes, at);
            }
            EntryKind::Acknowledge(id) => {
                let inc = r
                    .core
                    .acknowledge(&id, None, at)
                    .ok_or_else(|| bad(format!("no open incident `{id}` to acknowledge")))?;
                r.incidents.insert(inc.id.clone(), inc);
            }
        }
    }

    let Some(r) = replay else {
        serde_json::to_writer(
            &mut output,
            &SummaryLine {
                kind: "summary",
                incidents: vec![],
            },
        )
        .map_err(|e| ReplayError::Write(e.into()))?;
        writeln!(output).map_err(ReplayError::Write)?;
        return Ok(Totals::default());
    };
    let end = last_at.expect("at least one line");
    let summary = SummaryLine {
        kind: "summary",
        incidents: r.incidents.values().map(|i| i.view(end)).collect(),
    };
    for line in &r.out {
        output
            .write_all(line.as_bytes())
            .map_err(ReplayError::Write)?;
        output.write_all(b"\n").map_err(ReplayError::Write)?;
    }
    serde_json::to_writer(&mut output, &summary).map_err(|e| ReplayError::Write(e.into()))?;
    writeln!(output).map_err(ReplayError::Write)?;
    output.flush().map_err(ReplayError::Write)?;
    Ok(Totals {
        lines,
        events: r.events,
        incidents: summary.incidents.len(),
    })
}
