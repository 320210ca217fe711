//! `tocsin replay` (SPEC §12): the engine's [`Core`] on recorded JSON lines, in the input's
//! time, with no network. Output: one JSON line per alert event that would be sent, then a
//! summary of every incident. Nothing is written unless the whole input is valid.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::AlertType;
use crate::clock::Timestamp;
use crate::config::Settings;
use crate::engine::{Core, TICK, alert_type};
use crate::incident::{Change, Changes, Incident, IncidentBook, IncidentView};
use crate::probe::{Phases, ProbeResult, Reason};

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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    at: Timestamp,
    target: Option<String>,
    ok: Option<bool>,
    reason: Option<Reason>,
    latency_ms: Option<f64>,
    /// Accepted for compatibility with multi-vantage recordings; one vantage is replayed.
    #[serde(rename = "vantage")]
    _vantage: Option<String>,
    change: Option<ChangeLine>,
    acknowledge: Option<String>,
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
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let at = line.at;
    crate::clock::check_input_time(at)?;
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
    /// Shortest `repeat_interval` among the receivers: reminders in replay time.
    reminder_every: Option<chrono::Duration>,
    last_notified: HashMap<String, Timestamp>,
    events: usize,
}

impl Replay {
    fn emit(&mut self, changes: Changes, now: Timestamp) {
        for inc in changes.changed {
            self.incidents.insert(inc.id.clone(), inc);
        }
        for (kind, inc) in changes.events {
            self.write_event(alert_type(kind), &inc, now);
        }
    }

    fn write_event(&mut self, kind: AlertType, inc: &Incident, now: Timestamp) {
        let view = inc.view(now);
        let line = serde_json::to_string(&EventLine {
            kind,
            at: now,
            incident: &view,
        })
        .expect("events serialize");
        self.out.push(line);
        self.events += 1;
        self.last_notified.insert(inc.id.clone(), now);
    }

    /// Runs the clock from `from` to `to` in engine ticks, while time can change anything.
    fn advance(&mut self, from: Timestamp, to: Timestamp) {
        let step = chrono::Duration::from_std(TICK).expect("tick fits");
        let mut now = from + step;
        while now <= to && self.core.is_active() {
            let changes = self.core.tick(now);
            self.emit(changes, now);
            self.remind(now);
            now += step;
        }
    }

    fn remind(&mut self, now: Timestamp) {
        let Some(every) = self.reminder_every else {
            return;
        };
        let due: Vec<Incident> = self
            .core
            .open_incidents()
            .iter()
            .filter(|i| {
                self.last_notified
                    .get(&i.id)
                    .is_some_and(|last| now - *last >= every)
            })
            .cloned()
            .collect();
        for inc in due {
            self.write_event(AlertType::Reminder, &inc, now);
        }
    }
}

/// Replays `input` against `settings`, writing events and the summary to `output` only
/// once every line has been read and applied.
pub fn run(
    settings: Settings,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<Totals, ReplayError> {
    let settings = Arc::new(settings);
    let targets: HashMap<String, usize> = settings
        .topology
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    let reminder_every = settings
        .receivers
        .iter()
        .filter_map(|r| r.repeat_interval)
        .min()
        .and_then(|d| chrono::Duration::from_std(d).ok());
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
                Arc::clone(&settings),
                HashMap::new(),
                IncidentBook::default(),
                at,
            ),
            incidents: BTreeMap::new(),
            out: Vec::new(),
            reminder_every,
            last_notified: HashMap::new(),
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
                let observed = r.core.observe(index, at, &result, at);
                r.emit(observed.changes, at);
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
