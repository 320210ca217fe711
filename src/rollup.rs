//! Rollups: what uptime bars, response-time charts and SLA figures read, so that none of
//! them has to keep or scan raw results.
//!
//! [`Rollups`] is the pure aggregator the engine feeds with every probe result (at its start
//! time) and every engine tick (the status held since the previous tick). It keeps one open
//! minute of [`Counters`] per target and per service and closes it when a result or a tick
//! falls into a later minute, in their own time rather than the wall clock's; the store then
//! adds each [`ClosedMinute`] into its minute, hour and day rows. Every figure merges by
//! addition (sums, maxima, histogram counts), so a minute written in two parts (the one open
//! at a restart) adds up instead of overwriting.
//!
//! Times are Unix seconds in UTC; days start at 00:00 UTC.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta};
use serde::Serialize;

use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::incident::{ComponentStatus, GroupStatus, ServiceImpact, service_status};
use crate::probe::ProbeResult;
use crate::topology::Topology;

pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

/// The windows of [`Uptime`], in seconds.
pub const UPTIME_WINDOWS: [i64; 4] = [DAY, 7 * DAY, 30 * DAY, 90 * DAY];

/// Latency buckets: below 1 ms, then four per doubling from 1 ms, the last one open-ended
/// (from about 185 s, beyond any probe timeout).
const BUCKETS: usize = 72;
/// Lower bound of bucket 1, in seconds.
const BASE: f64 = 0.001;
const PER_OCTAVE: f64 = 4.0;

/// A longer stall between ticks counts only its last part: the status seen at the end of a
/// stall says little about its beginning.
const MAX_GAP: TimeDelta = TimeDelta::seconds(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistogramError {
    #[error("histogram of {0} bytes is not a whole number of entries")]
    Length(usize),
    #[error("histogram bucket {0} does not exist")]
    Bucket(u8),
}

/// Latency counts in fixed logarithmic buckets: mergeable by adding counts, and a quantile
/// read from it is within 9% (2^(1/8)) of the true sample above 1 ms.
///
/// Sparse: a target's minute sees one to a few buckets, so a dense array of 72 counters
/// (576 bytes for every target, every open minute) would be mostly zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// (bucket, count > 0), by bucket.
    counts: Vec<(u8, u64)>,
}

impl Histogram {
    pub fn record(&mut self, seconds: f64) {
        self.add(bucket_of(seconds) as u8, 1);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for &(bucket, count) in &other.counts {
            self.add(bucket, count);
        }
    }

    fn add(&mut self, bucket: u8, count: u64) {
        if count == 0 {
            return;
        }
        match self.counts.binary_search_by_key(&bucket, |&(b, _)| b) {
            Ok(i) => self.counts[i].1 += count,
            Err(i) => self.counts.insert(i, (bucket, count)),
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|&(_, c)| c).sum()
    }

    /// The nearest-rank `q` quantile, as the geometric middle of its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for &(bucket, c) in &self.counts {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(usize::from(bucket)));
            }
        }
        None
    }

    /// Sparse encoding for the store: (bucket as one byte, count as u64 LE) per used bucket.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.counts.len() * 9);
        for &(bucket, count) in &self.counts {
            out.push(bucket);
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Histogram, HistogramError> {
        if !bytes.len().is_multiple_of(9) {
            return Err(HistogramError::Length(bytes.len()));
        }
        let mut h = Histogram::default();
        for entry in bytes.chunks_exact(9) {
            if usize::from(entry[0]) >= BUCKETS {
                return Err(HistogramError::Bucket(entry[0]));
            }
            h.add(
                entry[0],
                u64::from_le_bytes(entry[1..].try_into().expect("8 bytes")),
            );
        }
        Ok(h)
    }
}

fn bucket_of(seconds: f64) -> usize {
    if seconds.is_nan() || seconds < BASE {
        return 0;
    }
    let i = 1 + ((seconds / BASE).log2() * PER_OCTAVE).floor() as usize;
    i.min(BUCKETS - 1)
}

fn bucket_value(i: usize) -> f64 {
    match i {
        0 => BASE / 2.0,
        i if i == BUCKETS - 1 => BASE * ((i - 1) as f64 / PER_OCTAVE).exp2(),
        i => BASE * ((i as f64 - 0.5) / PER_OCTAVE).exp2(),
    }
}

/// Time a subject spent, in seconds, and (services) subscriber-seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Seconds {
    /// Time tocsin watched it (it was running and ticking).
    pub observed: f64,
    /// In `partial_outage` or `major_outage` (a target: `down`), outside maintenance.
    pub down: f64,
    /// Inside a maintenance window: excluded from uptime.
    pub maintenance: f64,
    /// Services: subscribers × time watched outside maintenance.
    pub user: f64,
    /// Services: affected subscribers × time (user-seconds lost), outside maintenance.
    pub user_lost: f64,
}

impl Seconds {
    pub fn add(&mut self, other: Seconds) {
        self.observed += other.observed;
        self.down += other.down;
        self.maintenance += other.maintenance;
        self.user += other.user;
        self.user_lost += other.user_lost;
    }

    /// Share of the time the subject was not down: `1 − down / (observed − maintenance)`;
    /// `None` without any watched time outside maintenance. Time tocsin did not watch
    /// (before it ran, while it was stopped) is unknown rather than up, so it is left out
    /// of the denominator.
    pub fn operational_time(&self) -> Option<f64> {
        let counted = self.observed - self.maintenance;
        (counted > 0.0).then(|| (1.0 - self.down / counted).clamp(0.0, 1.0))
    }

    /// Subscriber-weighted availability: `1 − user-seconds lost / user-seconds watched`.
    /// A 2-minute outage of 3 % of a service over a day is 99.996 %, not the 99.86 % of
    /// time the service was in partial outage. `None` without watched subscriber time
    /// (rows written before it was counted, or a target).
    pub fn availability(&self) -> Option<f64> {
        (self.user > 0.0).then(|| (1.0 - self.user_lost / self.user).clamp(0.0, 1.0))
    }
}

/// Everything a rollup row holds for one subject and one bucket of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub probes: u64,
    pub failures: u64,
    /// Latency figures are of successful probes only: a failure's latency is mostly the
    /// timeout, which says nothing about how fast the service answers.
    pub latency_sum: f64,
    pub latency_max: f64,
    pub latency: Histogram,
    pub time: Seconds,
    /// Worst component status seen (services only).
    pub worst: Option<ComponentStatus>,
}

impl Counters {
    fn record(&mut self, result: &ProbeResult) {
        self.probes += 1;
        if result.failure.is_some() {
            self.failures += 1;
            return;
        }
        let latency = result.latency.as_secs_f64();
        self.latency_sum += latency;
        self.latency_max = self.latency_max.max(latency);
        self.latency.record(latency);
    }

    /// Mean latency of successful probes.
    pub fn latency_avg(&self) -> Option<f64> {
        let successes = self.probes - self.failures;
        (successes > 0).then(|| self.latency_sum / successes as f64)
    }

    /// Estimated 95th percentile latency of successful probes (never above the maximum).
    pub fn latency_p95(&self) -> Option<f64> {
        self.latency.quantile(0.95).map(|v| v.min(self.latency_max))
    }
}

/// The store's code for a component status: its rank, so that `MAX()` keeps the worst.
pub fn status_rank(status: ComponentStatus) -> i64 {
    status as i64
}

pub fn status_from_rank(rank: i64) -> Option<ComponentStatus> {
    ComponentStatus::ALL
        .into_iter()
        .find(|&s| status_rank(s) == rank)
}

/// Whose figures a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Target,
    Service,
}

impl Subject {
    /// The store's code.
    pub fn code(self) -> i64 {
        match self {
            Subject::Target => 0,
            Subject::Service => 1,
        }
    }
}

/// The bucket sizes rows are kept at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => MINUTE,
            Resolution::Hour => HOUR,
            Resolution::Day => DAY,
        }
    }

    /// Start of the bucket holding `t`.
    pub fn floor(self, t: i64) -> i64 {
        t.div_euclid(self.seconds()) * self.seconds()
    }

    /// Start of the first bucket starting at or after `t`.
    pub fn ceil(self, t: i64) -> i64 {
        -self.floor(-t)
    }
}

/// Which rows cover `[from, to)` without overlap, coarsest first: `(resolution, first
/// start, end)`, each meaning rows with `first ≤ start < end`. Whole days go to day rows,
/// the edges to hour rows, the edges of those to minute rows; a part-minute at `from` is
/// left out (`to` is expected on a minute boundary).
pub fn cover(from: i64, to: i64) -> Vec<(Resolution, i64, i64)> {
    fn go(from: i64, to: i64, tiers: &[Resolution], out: &mut Vec<(Resolution, i64, i64)>) {
        let Some((&tier, finer)) = tiers.split_first() else {
            return;
        };
        let (a, b) = (tier.ceil(from), tier.floor(to));
        if a < b {
            out.push((tier, a, b));
            go(from, a, finer, out);
            go(b, to, finer, out);
        } else {
            go(from, to, finer, out);
        }
    }
    let mut out = Vec::new();
    go(
        from,
        to,
        &[Resolution::Day, Resolution::Hour, Resolution::Minute],
        &mut out,
    );
    out
}

/// One subject's figures for a closed minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub subject: Subject,
    pub id: String,
    pub counters: Counters,
}

/// What a minute added up to, for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedMinute {
    /// Unix seconds.
    pub start: i64,
    /// By subject, then id.
    pub rows: Vec<Row>,
}

/// The open minute's service time: with it, uptime figures and today's cell include the
/// last seconds rather than lag up to a minute behind the page.
#[derive(Debug, Clone, Default)]
pub struct OpenMinute {
    /// Unix seconds; `None` before the first result or tick.
    pub start: Option<i64>,
    /// Time and the worst status seen, by service.
    pub services: HashMap<String, (Seconds, Option<ComponentStatus>)>,
}

/// The aggregator (see the module docs).
#[derive(Debug, Default)]
pub struct Rollups {
    minute: Option<i64>,
    targets: HashMap<String, Counters>,
    services: HashMap<String, Counters>,
    last_tick: Option<Timestamp>,
    closed: Vec<ClosedMinute>,
}

impl Rollups {
    /// Counts a result of `target` (an index into `topology.targets`) started at `at`, for
    /// the target and each service it watches. A result started before the open minute
    /// (a slow probe across a boundary) counts in the open one.
    pub fn record(
        &mut self,
        topology: &Topology,
        target: usize,
        at: Timestamp,
        result: &ProbeResult,
    ) {
        self.advance(at);
        let t = &topology.targets[target];
        bucket(&mut self.targets, &t.id).record(result);
        // Each service once, even when the target watches several of its groups; no
        // allocation on this per-result path.
        let service_of = |g: &usize| topology.groups[*g].service;
        for (i, g) in t.groups.iter().enumerate() {
            let s = service_of(g);
            if t.groups[..i]
                .iter()
                .map(service_of)
                .all(|earlier| earlier != s)
            {
                bucket(&mut self.services, &topology.services[s].id).record(result);
            }
        }
    }

    /// Counts the time since the previous tick (at most `MAX_GAP`) in the status seen
    /// now (services from `groups`, targets from their `states`), split at minute
    /// boundaries. The first tick only starts the clock.
    pub fn tick(
        &mut self,
        at: Timestamp,
        topology: &Topology,
        groups: &[GroupStatus],
        states: impl IntoIterator<Item = TargetState>,
    ) {
        let from = match self.last_tick {
            Some(last) if last < at => last.max(at - MAX_GAP),
            Some(_) => return,
            None => at,
        };
        self.last_tick = Some(at);
        let services: Vec<ServiceImpact> = (0..topology.services.len())
            .map(|i| service_status(topology, i, groups, at))
            .collect();
        let targets: Vec<(TargetState, bool)> = topology
            .targets
            .iter()
            .zip(states)
            .map(|(t, state)| {
                let planned = t
                    .groups
                    .iter()
                    .all(|&g| topology.in_maintenance(topology.groups[g].service, at));
                (state, planned)
            })
            .collect();
        let mut t = from;
        while t < at {
            let next_minute =
                DateTime::from_timestamp(Resolution::Minute.floor(t.timestamp()) + MINUTE, 0)
                    .expect("a minute after a valid time");
            let end = at.min(next_minute);
            self.advance(t);
            let dt = (end - t).as_seconds_f64();
            for (s, impact) in topology.services.iter().zip(&services) {
                let c = bucket(&mut self.services, &s.id);
                c.time.observed += dt;
                match impact.status {
                    ComponentStatus::UnderMaintenance => c.time.maintenance += dt,
                    status => {
                        if matches!(
                            status,
                            ComponentStatus::PartialOutage | ComponentStatus::MajorOutage
                        ) {
                            c.time.down += dt;
                        }
                        c.time.user += s.subscribers as f64 * dt;
                        c.time.user_lost += impact.affected as f64 * dt;
                    }
                }
                c.worst = c.worst.max(Some(impact.status));
            }
            for (target, &(state, planned)) in topology.targets.iter().zip(&targets) {
                let c = bucket(&mut self.targets, &target.id);
                c.time.observed += dt;
                if planned {
                    c.time.maintenance += dt;
                } else if state == TargetState::Down {
                    c.time.down += dt;
                }
            }
            t = end;
        }
        self.advance(at);
    }

    /// Closes the open minute now (at shutdown): the store adds a later part of the same
    /// minute to it.
    pub fn close(&mut self) {
        let Some(start) = self.minute.take() else {
            return;
        };
        let mut rows: Vec<Row> = self
            .targets
            .drain()
            .map(|(id, counters)| (Subject::Target, id, counters))
            .chain(
                self.services
                    .drain()
                    .map(|(id, counters)| (Subject::Service, id, counters)),
            )
            .map(|(subject, id, counters)| Row {
                subject,
                id,
                counters,
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        rows.sort_by(|a, b| (a.subject, &a.id).cmp(&(b.subject, &b.id)));
        self.closed.push(ClosedMinute { start, rows });
    }

    /// Minutes closed since the last call, oldest first.
    pub fn take_closed(&mut self) -> Vec<ClosedMinute> {
        std::mem::take(&mut self.closed)
    }

    pub fn open_minute(&self) -> OpenMinute {
        OpenMinute {
            start: self.minute,
            services: self
                .services
                .iter()
                .map(|(id, c)| (id.clone(), (c.time, c.worst)))
                .collect(),
        }
    }

    /// Makes the minute of `at` the open one when it is later.
    fn advance(&mut self, at: Timestamp) {
        let minute = Resolution::Minute.floor(at.timestamp());
        match self.minute {
            Some(open) if open >= minute => {}
            Some(_) => {
                self.close();
                self.minute = Some(minute);
            }
            None => self.minute = Some(minute),
        }
    }
}

fn bucket<'a>(map: &'a mut HashMap<String, Counters>, id: &str) -> &'a mut Counters {
    if !map.contains_key(id) {
        map.insert(id.to_string(), Counters::default());
    }
    map.get_mut(id).expect("inserted above")
}

/// One figure over each of [`UPTIME_WINDOWS`]; `None` where there is no data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Windows {
    #[serde(rename = "24h")]
    pub last_24h: Option<f64>,
    #[serde(rename = "7d")]
    pub last_7d: Option<f64>,
    #[serde(rename = "30d")]
    pub last_30d: Option<f64>,
    #[serde(rename = "90d")]
    pub last_90d: Option<f64>,
}

impl Windows {
    fn of(windows: &[Seconds; 4], figure: fn(&Seconds) -> Option<f64>) -> Windows {
        Windows {
            last_24h: figure(&windows[0]),
            last_7d: figure(&windows[1]),
            last_30d: figure(&windows[2]),
            last_90d: figure(&windows[3]),
        }
    }
}

/// A service's uptime figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Uptime {
    /// Subscriber-weighted availability ([`Seconds::availability`]).
    pub availability: Windows,
    /// Share of the time the service was operational ([`Seconds::operational_time`]).
    pub operational_time: Windows,
    /// The start of the first hour with data in the last 90 days: a window reaching
    /// further back covers only the time since.
    pub observed_since: Option<Timestamp>,
}

impl Uptime {
    /// From the time counted over each of [`UPTIME_WINDOWS`].
    pub fn of(windows: &[Seconds; 4], observed_since: Option<Timestamp>) -> Uptime {
        Uptime {
            availability: Windows::of(windows, Seconds::availability),
            operational_time: Windows::of(windows, Seconds::operational_time),
            observed_since,
        }
    }
}

/// What the status page shows of one service's past.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHistory {
    pub service: String,
    /// The last 90 UTC days, oldest first, today (so far) last.
    pub days: Vec<DayHistory>,
    /// The last 24 hours, one point per UTC hour, oldest first, the current hour last.
    pub latency: Vec<LatencyPoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayHistory {
    pub date: NaiveDate,
    /// Subscriber-weighted availability ([`Seconds::availability`]).
    pub availability: Option<f64>,
    /// Share of the time the service was operational.
    pub operational_time: Option<f64>,
    /// `None` when tocsin did not watch the service that day.
    pub worst_status: Option<ComponentStatus>,
    pub observed_seconds: f64,
    pub downtime_seconds: f64,
    pub maintenance_seconds: f64,
    /// Incidents of the service open at some time that day, oldest first.
    pub incidents: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyPoint {
    pub start: Timestamp,
    pub probes: u64,
    pub failures: u64,
    pub avg_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

impl LatencyPoint {
    pub fn of(start: i64, c: &Counters) -> LatencyPoint {
        LatencyPoint {
            start: DateTime::from_timestamp(start, 0).expect("stored start is a valid time"),
            probes: c.probes,
            failures: c.failures,
            avg_seconds: c.latency_avg(),
            p95_seconds: c.latency_p95(),
            max_seconds: (c.probes > c.failures).then_some(c.latency_max),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{self, ConfigSource};
    use crate::incident::Health;
    use crate::probe::{Phases, Reason};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// voicemail: north (600 of 1000 subscribers, so down means major) and south; web:
    /// one target, in maintenance 00:00:10–00:00:20 on 2026-03-02.
    fn topology() -> Topology {
        let toml = r#"
            [storage]
            sqlite = "unused.db"
            [[services]]
            id = "voicemail"
            [[services]]
            id = "web"
            [[groups]]
            id = "vm-north"
            service = "voicemail"
            subscribers = 600
            [[groups]]
            id = "vm-south"
            service = "voicemail"
            subscribers = 400
            [[targets]]
            id = "vm-n"
            groups = ["vm-north"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
            [[targets]]
            id = "vm-s"
            groups = ["vm-south"]
            probe = { type = "tcp", address = "127.0.0.1:2" }
            [[targets]]
            id = "www"
            service = "web"
            probe = { type = "tcp", address = "127.0.0.1:3" }
            [[maintenances]]
            services = ["web"]
            starts_at = "2026-03-02T00:00:10Z"
            ends_at = "2026-03-02T00:00:20Z"
        "#;
        let settings = config::load(&ConfigSource::Inline(toml.into())).unwrap();
        (*settings.topology).clone()
    }

    /// Group health (vm-north, vm-south, www) and target states alike.
    struct World {
        topo: Topology,
        groups: Vec<GroupStatus>,
        states: Vec<TargetState>,
        rollups: Rollups,
    }

    impl World {
        fn new() -> Self {
            let topo = topology();
            let since = t("2026-03-01T00:00:00Z");
            World {
                groups: vec![
                    GroupStatus {
                        health: Health::Ok,
                        since
                    };
                    topo.groups.len()
                ],
                states: vec![TargetState::Up; topo.targets.len()],
                topo,
                rollups: Rollups::default(),
            }
        }

        fn set(&mut self, index: usize, health: Health) {
            self.groups[index].health = health;
            self.states[index] = match health {
                Health::Ok => TargetState::Up,
                Health::Degraded => TargetState::Degraded,
                Health::Down => TargetState::Down,
            };
        }

        /// Ticks every `step` from `from` up to and including `to`.
        fn tick_through(&mut self, from: Timestamp, to: Timestamp, step: TimeDelta) {
            let mut at = from;
            while at <= to {
                self.tick(at);
                at += step;
            }
        }

        fn tick(&mut self, at: Timestamp) {
            self.rollups
                .tick(at, &self.topo, &self.groups, self.states.iter().copied());
        }

        fn result(&mut self, target: usize, at: Timestamp, result: ProbeResult) {
            self.rollups.record(&self.topo, target, at, &result);
        }
    }

    fn ok(ms: u64) -> ProbeResult {
        ProbeResult::success(Duration::from_millis(ms), Phases::default())
    }

    fn failed() -> ProbeResult {
        ProbeResult::failure(Reason::Timeout, "no answer", Duration::from_secs(5))
    }

    fn row<'a>(minute: &'a ClosedMinute, subject: Subject, id: &str) -> &'a Counters {
        &minute
            .rows
            .iter()
            .find(|r| r.subject == subject && r.id == id)
            .unwrap_or_else(|| panic!("no row for {id}"))
            .counters
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-6,
            "{actual} is not {expected}"
        );
    }

    #[test]
    fn a_target_watching_two_groups_of_a_service_counts_once_for_it() {
        let toml = r#"
            [storage]
            sqlite = "unused.db"
            [[services]]
            id = "voicemail"
            [[services]]
            id = "data"
            [[groups]]
            id = "north"
            service = "voicemail"
            subscribers = 1
            [[groups]]
            id = "south"
            service = "voicemail"
            subscribers = 1
            [[groups]]
            id = "gw"
            service = "data"
            subscribers = 1
            [[targets]]
            id = "shared"
            groups = ["north", "south", "gw"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
        "#;
        let topo = (*config::load(&ConfigSource::Inline(toml.into()))
            .unwrap()
            .topology)
            .clone();
        let mut rollups = Rollups::default();
        rollups.record(&topo, 0, t("2026-03-02T00:00:10Z"), &ok(20));
        rollups.close();
        let closed = rollups.take_closed();
        assert_eq!(row(&closed[0], Subject::Service, "voicemail").probes, 1);
        assert_eq!(row(&closed[0], Subject::Service, "data").probes, 1);
        assert_eq!(row(&closed[0], Subject::Target, "shared").probes, 1);
    }

    #[test]
    fn minutes_close_in_their_own_time_across_midnight() {
        let mut w = World::new();
        w.tick_through(
            t("2026-03-01T23:59:30Z"),
            t("2026-03-02T00:00:05Z"),
            TimeDelta::seconds(1),
        );
        // Slow results arriving once the next minute is open count in that one.
        w.result(0, t("2026-03-01T23:59:45Z"), ok(20));
        w.result(1, t("2026-03-01T23:59:50Z"), failed());
        w.tick_through(
            t("2026-03-02T00:00:06Z"),
            t("2026-03-02T00:00:30Z"),
            TimeDelta::seconds(1),
        );
        let closed = w.rollups.take_closed();
        assert_eq!(closed.len(), 1, "{closed:?}");
        let before = &closed[0];
        assert_eq!(before.start, t("2026-03-01T23:59:00Z").timestamp());
        let vm = row(before, Subject::Service, "voicemail");
        assert_close(vm.time.observed, 30.0);
        assert_eq!(vm.worst, Some(ComponentStatus::Operational));
        assert_eq!(vm.probes, 0);
        assert_close(row(before, Subject::Target, "www").time.observed, 30.0);

        let open = w.rollups.open_minute();
        assert_eq!(open.start, Some(t("2026-03-02T00:00:00Z").timestamp()));
        assert_close(open.services["voicemail"].0.observed, 30.0);

        w.rollups.close();
        let closed = w.rollups.take_closed();
        let after = &closed[0];
        assert_eq!(after.start, t("2026-03-02T00:00:00Z").timestamp());
        let vm = row(after, Subject::Service, "voicemail");
        assert_eq!((vm.probes, vm.failures), (2, 1));
        assert_close(vm.latency_sum, 0.020);
        assert_eq!(row(after, Subject::Target, "vm-s").failures, 1);
        assert_eq!(row(after, Subject::Target, "vm-n").probes, 1);
        assert!(
            after
                .rows
                .iter()
                .all(|r| r.id != "web" || r.counters.probes == 0),
            "web saw no result"
        );
        assert!(w.rollups.take_closed().is_empty());
    }

    #[test]
    fn a_result_in_a_later_minute_closes_the_open_one() {
        let mut w = World::new();
        w.tick_through(
            t("2026-03-01T10:00:50Z"),
            t("2026-03-01T10:00:59Z"),
            TimeDelta::seconds(1),
        );
        w.result(2, t("2026-03-01T10:01:00.200Z"), ok(5));
        let closed = w.rollups.take_closed();
        assert_eq!(closed.len(), 1);
        assert_close(row(&closed[0], Subject::Service, "web").time.observed, 9.0);
        // The tick straddling the boundary counts its first part in the open minute.
        w.tick(t("2026-03-01T10:01:00.500Z"));
        w.rollups.close();
        let closed = w.rollups.take_closed();
        let web = row(&closed[0], Subject::Service, "web");
        assert_eq!(web.probes, 1);
        assert_close(web.time.observed, 1.5);
    }

    #[test]
    fn elapsed_time_is_measured_and_a_stall_counts_only_its_end() {
        let mut w = World::new();
        for at in [
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:00:00.500Z",
            "2026-03-01T10:00:02Z",
            "2026-03-01T10:00:02.250Z",
            "2026-03-01T10:00:40Z", // a 37.75 s stall
        ] {
            w.tick(t(at));
        }
        w.tick(t("2026-03-01T10:00:30Z")); // backwards: ignored
        assert_close(
            w.rollups.open_minute().services["web"].0.observed,
            2.25 + 5.0,
        );
    }

    #[test]
    fn downtime_is_partial_or_major_outage_and_maintenance_is_excluded() {
        let mut w = World::new();
        let second = TimeDelta::seconds(1);
        // A tick counts the second before it in the status seen at it. web's target is down
        // 00:00:04–00:00:15 (from 00:00:09 in maintenance, which the 00:00:10 tick sees);
        // vm-north down (major) 00:00:30–00:00:40, vm-south down (partial) 00:00:40–00:00:45,
        // vm-north degraded 00:00:45–00:00:50.
        w.tick_through(t("2026-03-02T00:00:00Z"), t("2026-03-02T00:00:04Z"), second);
        w.set(2, Health::Down);
        w.tick_through(t("2026-03-02T00:00:05Z"), t("2026-03-02T00:00:15Z"), second);
        w.set(2, Health::Ok);
        w.tick_through(t("2026-03-02T00:00:16Z"), t("2026-03-02T00:00:30Z"), second);
        w.set(0, Health::Down);
        w.tick_through(t("2026-03-02T00:00:31Z"), t("2026-03-02T00:00:40Z"), second);
        w.set(0, Health::Ok);
        w.set(1, Health::Down);
        w.tick_through(t("2026-03-02T00:00:41Z"), t("2026-03-02T00:00:45Z"), second);
        w.set(1, Health::Ok);
        w.set(0, Health::Degraded);
        w.tick_through(t("2026-03-02T00:00:46Z"), t("2026-03-02T00:00:50Z"), second);
        w.set(0, Health::Ok);
        w.tick_through(t("2026-03-02T00:00:51Z"), t("2026-03-02T00:01:00Z"), second);
        let closed = w.rollups.take_closed();
        let minute = &closed[0];

        let web = row(minute, Subject::Service, "web");
        assert_close(web.time.observed, 60.0);
        assert_close(web.time.maintenance, 10.0);
        assert_close(web.time.down, 5.0); // before the window
        assert_close(web.time.operational_time().unwrap(), 1.0 - 5.0 / 50.0);
        // web's implicit group holds its one subscriber: 5 of 50 user-seconds lost.
        assert_close(web.time.user, 50.0);
        assert_close(web.time.user_lost, 5.0);
        assert_eq!(web.worst, Some(ComponentStatus::MajorOutage));
        let www = row(minute, Subject::Target, "www");
        assert_close(www.time.maintenance, 10.0);
        assert_close(www.time.down, 5.0);

        let vm = row(minute, Subject::Service, "voicemail");
        assert_close(vm.time.maintenance, 0.0);
        assert_close(vm.time.down, 15.0); // degraded counts as up
        assert_close(vm.time.operational_time().unwrap(), 1.0 - 15.0 / 60.0);
        // 600 subscribers for 10 s, 400 for 5 s, of 1000 for 60 s; degraded loses nothing.
        assert_close(vm.time.user, 60_000.0);
        assert_close(vm.time.user_lost, 8_000.0);
        assert_close(vm.time.availability().unwrap(), 1.0 - 8_000.0 / 60_000.0);
        assert_eq!(vm.worst, Some(ComponentStatus::MajorOutage));
        assert_close(row(minute, Subject::Target, "vm-s").time.down, 5.0);
    }

    #[test]
    fn status_ranks_order_by_severity_and_round_trip() {
        // The store keeps the worst status of a row as the larger rank.
        assert!(
            status_rank(ComponentStatus::DegradedPerformance)
                > status_rank(ComponentStatus::UnderMaintenance)
        );
        for s in ComponentStatus::ALL {
            assert_eq!(status_from_rank(status_rank(s)), Some(s));
        }
        assert!(
            status_rank(ComponentStatus::MajorOutage) > status_rank(ComponentStatus::PartialOutage)
        );
        assert_eq!(status_from_rank(99), None);
    }

    #[test]
    fn uptime_is_none_without_time_outside_maintenance() {
        let all_planned = Seconds {
            observed: 60.0,
            maintenance: 60.0,
            ..Seconds::default()
        };
        assert_eq!(all_planned.operational_time(), None);
        assert_eq!(all_planned.availability(), None);
        assert_eq!(Seconds::default().operational_time(), None);
        assert_eq!(
            Uptime::of(&[Seconds::default(); 4], None),
            Uptime::default(),
            "no data, no figures"
        );
    }

    /// The example of the status page's promise: 3 % of voicemail subscribers without
    /// service for 2 minutes of a day is 99.996 % available, though the service spent
    /// 2 minutes in partial outage.
    #[test]
    fn a_short_outage_of_a_small_share_barely_dents_availability() {
        let toml = r#"
            [[services]]
            id = "voicemail"
            [[groups]]
            id = "small"
            service = "voicemail"
            subscribers = 30
            [[groups]]
            id = "rest"
            service = "voicemail"
            subscribers = 970
            [[targets]]
            id = "a"
            groups = ["small"]
            probe = { type = "tcp", address = "127.0.0.1:1" }
            [[targets]]
            id = "b"
            groups = ["rest"]
            probe = { type = "tcp", address = "127.0.0.1:2" }
        "#;
        let topo = (*config::load(&ConfigSource::Inline(toml.into()))
            .unwrap()
            .topology)
            .clone();
        let start = t("2026-03-02T00:00:00Z");
        let mut groups = vec![
            GroupStatus {
                health: Health::Ok,
                since: start,
            };
            2
        ];
        let mut rollups = Rollups::default();
        let mut day = Seconds::default();
        for s in 0..=86_400 {
            let at = start + TimeDelta::seconds(s);
            groups[0].health = if (36_000..36_120).contains(&s) {
                Health::Down
            } else {
                Health::Ok
            };
            rollups.tick(at, &topo, &groups, [TargetState::Up; 2]);
            for minute in rollups.take_closed() {
                day.add(row(&minute, Subject::Service, "voicemail").time);
            }
        }
        assert_close(day.observed, 86_400.0);
        assert_close(day.down, 120.0);
        assert_eq!(
            crate::format::availability(day.availability().unwrap()),
            "99.996%"
        );
        assert_close(day.operational_time().unwrap(), 1.0 - 120.0 / 86_400.0);
    }

    /// The true nearest-rank quantile.
    fn exact(samples: &mut [f64], q: f64) -> f64 {
        samples.sort_by(f64::total_cmp);
        let rank = (q * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    }

    #[test]
    fn p95_is_within_the_bucket_resolution() {
        let tolerance = 2f64.powf(1.0 / 8.0) - 1.0 + 1e-9;
        let uniform: Vec<f64> = (1..=1000).map(|i| i as f64 / 1000.0).collect();
        let skewed: Vec<f64> = (0..500)
            .map(|i| 0.003 * 1.013f64.powi(i) + (i % 7) as f64 * 1e-4)
            .collect();
        let two_modes: Vec<f64> = (0..200)
            .map(|i| if i % 10 == 0 { 2.5 } else { 0.040 })
            .collect();
        for mut samples in [uniform, skewed, two_modes] {
            let mut h = Histogram::default();
            samples.iter().for_each(|&s| h.record(s));
            for q in [0.5, 0.95, 0.99] {
                let (estimate, truth) = (h.quantile(q).unwrap(), exact(&mut samples, q));
                assert!(
                    (estimate / truth - 1.0).abs() <= tolerance,
                    "q{q}: estimate {estimate} vs {truth}"
                );
            }
        }
        assert_eq!(Histogram::default().quantile(0.95), None);
    }

    #[test]
    fn p95_of_counters_is_of_successes_and_never_above_the_max() {
        let mut c = Counters::default();
        for _ in 0..20 {
            c.record(&ok(92)); // the middle of its bucket is 98.7 ms
        }
        c.record(&failed());
        assert_eq!((c.probes, c.failures), (21, 1));
        assert_close(c.latency_avg().unwrap(), 0.092);
        assert_close(c.latency_max, 0.092);
        assert_close(c.latency_p95().unwrap(), 0.092);
        assert_eq!(Counters::default().latency_avg(), None);
    }

    #[test]
    fn histograms_merge_by_addition_and_round_trip_through_bytes() {
        let (mut a, mut b, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for (i, s) in [0.0001, 0.002, 0.3, 0.3, 7.0, 500.0, f64::NAN]
            .into_iter()
            .enumerate()
        {
            if i % 2 == 0 { &mut a } else { &mut b }.record(s);
            both.record(s);
        }
        a.merge(&b);
        assert_eq!(a, both);
        assert_eq!(a.count(), 7);
        assert_eq!(Histogram::from_bytes(&a.to_bytes()), Ok(a.clone()));
        // 0.0001 and NaN share the lowest bucket, 500 s is in the open-ended one.
        assert_eq!(
            a.to_bytes().len(),
            5 * 9,
            "sparse: one entry per used bucket"
        );
        assert_eq!(
            Histogram::from_bytes(&[1, 2, 3]),
            Err(HistogramError::Length(3))
        );
        assert_eq!(
            Histogram::from_bytes(&[200, 1, 0, 0, 0, 0, 0, 0, 0]),
            Err(HistogramError::Bucket(200))
        );
    }

    #[test]
    fn cover_tiles_a_window_with_the_coarsest_rows() {
        let end = t("2026-03-02T10:17:00Z").timestamp();
        let ranges = cover(end - 90 * DAY, end);
        let at = |s: &str| t(s).timestamp();
        assert_eq!(
            ranges,
            vec![
                (
                    Resolution::Day,
                    at("2025-12-03T00:00:00Z"),
                    at("2026-03-02T00:00:00Z")
                ),
                (
                    Resolution::Hour,
                    at("2025-12-02T11:00:00Z"),
                    at("2025-12-03T00:00:00Z")
                ),
                (
                    Resolution::Minute,
                    at("2025-12-02T10:17:00Z"),
                    at("2025-12-02T11:00:00Z")
                ),
                (
                    Resolution::Hour,
                    at("2026-03-02T00:00:00Z"),
                    at("2026-03-02T10:00:00Z")
                ),
                (
                    Resolution::Minute,
                    at("2026-03-02T10:00:00Z"),
                    at("2026-03-02T10:17:00Z")
                ),
            ]
        );
        // Any window: the ranges are disjoint and cover every whole minute of it.
        for (from, to) in [(end - DAY - 59, end), (end - 3599, end), (end - 60, end)] {
            let mut covered: Vec<(i64, i64)> = cover(from, to)
                .into_iter()
                .map(|(_, a, b)| (a, b))
                .collect();
            covered.sort();
            assert_eq!(covered.first().unwrap().0, Resolution::Minute.ceil(from));
            assert_eq!(covered.last().unwrap().1, to);
            assert!(covered.windows(2).all(|p| p[0].1 == p[1].0), "{covered:?}");
        }
    }
}
