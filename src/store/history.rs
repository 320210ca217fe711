//! What the status page reads from rollups, computed the same way whichever database the
//! rows come from: each backend fetches rows, these functions turn them into uptime
//! figures and service histories.

use std::collections::HashMap;

use crate::clock::Timestamp;
use crate::rollup::{
    Counters, DAY, DayHistory, HOUR, LatencyPoint, OpenMinute, Resolution, Seconds, ServiceHistory,
    UPTIME_WINDOWS, Uptime, cover, status_from_rank, status_rank,
};

/// Days in [`ServiceHistory::days`].
const HISTORY_DAYS: i64 = 90;

/// The columns of [`Seconds`] in a rollup row, in the order [`Seconds::from_columns`]
/// takes them, and their sums for grouped reads.
pub(super) const SECONDS_COLUMNS: &str =
    "observed, downtime, maintenance, user_seconds, user_seconds_lost";
pub(super) const SECONDS_SUMS: &str = "SUM(observed), SUM(downtime), SUM(maintenance), \
     SUM(user_seconds), SUM(user_seconds_lost)";

/// [`Seconds`] from the five values of [`SECONDS_COLUMNS`].
pub(super) fn seconds(values: [f64; 5]) -> Seconds {
    let [observed, down, maintenance, user, user_lost] = values;
    Seconds {
        observed,
        down,
        maintenance,
        user,
        user_lost,
    }
}

/// An incident as far as a service's history needs it: its row's `id`, `onset_unix`,
/// `resolved_unix` and services, never its body (an outage's body holds every group's
/// periods and can be large).
pub(super) struct IncidentSpan {
    pub id: String,
    pub onset: i64,
    pub resolved: Option<i64>,
    pub services: Vec<String>,
}

/// The stretch a history covers, ending `now`.
pub(super) struct HistoryWindow {
    pub now: Timestamp,
    /// Start of the first of the 90 days.
    pub first_day: i64,
    /// Start of the first of the 24 hours.
    pub first_hour: i64,
}

impl HistoryWindow {
    pub fn ending(now: Timestamp) -> HistoryWindow {
        let today = Resolution::Day.floor(now.timestamp());
        HistoryWindow {
            now,
            first_day: today - (HISTORY_DAYS - 1) * DAY,
            first_hour: Resolution::Hour.floor(now.timestamp()) - 23 * HOUR,
        }
    }

    /// One service's history from its day rows (start → seconds, worst status rank) and
    /// hour rows (start → counters) inside the window; today also counts the open minute,
    /// as the uptime figures beside it do.
    pub fn history(
        &self,
        service: &str,
        spans: &[IncidentSpan],
        mut days: HashMap<i64, (Seconds, Option<i64>)>,
        hours: &HashMap<i64, Counters>,
        open: &OpenMinute,
    ) -> ServiceHistory {
        let today = Resolution::Day.floor(self.now.timestamp());
        if let Some((seconds, worst)) = open.services.get(service)
            && open.start.is_some_and(|s| s >= today)
        {
            let (stored, stored_worst) = days.entry(today).or_default();
            stored.add(*seconds);
            *stored_worst = (*stored_worst).max(worst.map(status_rank));
        }
        let mine: Vec<&IncidentSpan> = spans
            .iter()
            .filter(|s| s.services.iter().any(|id| id == service))
            .collect();
        let days = (0..HISTORY_DAYS)
            .map(|i| {
                let start = self.first_day + i * DAY;
                let (seconds, worst) = days.get(&start).copied().unwrap_or_default();
                DayHistory {
                    date: super::utc(start).date_naive(),
                    availability: seconds.availability(),
                    operational_time: seconds.operational_time(),
                    worst_status: worst.and_then(status_from_rank),
                    observed_seconds: seconds.observed,
                    downtime_seconds: seconds.down,
                    maintenance_seconds: seconds.maintenance,
                    incidents: mine
                        .iter()
                        .filter(|s| {
                            s.onset < start + DAY
                                && s.resolved.unwrap_or(self.now.timestamp()) >= start
                        })
                        .map(|s| s.id.clone())
                        .collect(),
                }
            })
            .collect();
        let latency = (0..24)
            .map(|i| {
                let start = self.first_hour + i * HOUR;
                LatencyPoint::of(start, hours.get(&start).unwrap_or(&Counters::default()))
            })
            .collect();
        ServiceHistory {
            service: service.to_string(),
            days,
            latency,
        }
    }
}

/// One read of service time: sum the rows of `resolution` starting in `[from, to)` per
/// service, into window `window` of [`UPTIME_WINDOWS`].
pub(super) struct UptimeRead {
    pub window: usize,
    pub resolution: Resolution,
    pub from: i64,
    pub to: i64,
}

/// The reads uptime figures ending now take: each window's stored rows before the open
/// minute, at the coarsest resolution that fits (whole days from day rows, their edges
/// from hour rows, the edges of those from minute rows; see [`cover`]).
pub(super) fn uptime_reads(now: Timestamp, open: &OpenMinute) -> Vec<UptimeRead> {
    let end = open
        .start
        .unwrap_or_else(|| Resolution::Minute.floor(now.timestamp()));
    UPTIME_WINDOWS
        .into_iter()
        .enumerate()
        .flat_map(|(window, length)| {
            cover(end - length, end)
                .into_iter()
                .map(move |(resolution, from, to)| UptimeRead {
                    window,
                    resolution,
                    from,
                    to,
                })
        })
        .collect()
}

/// Per service, the seconds read for each window, plus the open minute in every window.
#[derive(Default)]
pub(super) struct UptimeSums(HashMap<String, [Seconds; UPTIME_WINDOWS.len()]>);

impl UptimeSums {
    pub fn add(&mut self, window: usize, service: String, seconds: Seconds) {
        self.0.entry(service).or_default()[window].add(seconds);
    }

    /// With `since`, per service, the start of its first hour with data (a service with
    /// none stored yet counts from the open minute).
    pub fn finish(
        mut self,
        open: OpenMinute,
        mut since: HashMap<String, Timestamp>,
    ) -> HashMap<String, Uptime> {
        for (id, (seconds, _)) in open.services {
            if let Some(start) = open.start {
                since.entry(id.clone()).or_insert(super::utc(start));
            }
            for window in self.0.entry(id).or_default() {
                window.add(seconds);
            }
        }
        self.0
            .into_iter()
            .map(|(id, windows)| {
                let since = since.get(&id).copied();
                (id, Uptime::of(&windows, since))
            })
            .collect()
    }
}
