//! What the status page reads from rollups, computed the same way whichever database the
//! rows come from: each backend fetches rows, these functions turn them into uptime
//! figures and service histories.

use std::collections::HashMap;

use crate::clock::Timestamp;
use crate::rollup::{
    Counters, DAY, DayHistory, HOUR, LatencyPoint, OpenMinute, Resolution, Seconds, ServiceHistory,
    UPTIME_WINDOWS, Uptime, cover, status_from_rank,
};

use super::StoreError;

/// Days in [`ServiceHistory::days`].
const HISTORY_DAYS: i64 = 90;

/// An incident as far as a service's history needs it.
#[derive(serde::Deserialize)]
pub(super) struct IncidentSpan {
    id: String,
    onset_at: Timestamp,
    resolved_at: Option<Timestamp>,
    services: HashMap<String, serde::de::IgnoredAny>,
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

    /// The incidents (stored bodies, by sequence) that touch the window. The incident
    /// table has no time column: every body is read, once for all services.
    pub fn spans(
        &self,
        bodies: impl IntoIterator<Item = Result<String, StoreError>>,
    ) -> Result<Vec<IncidentSpan>, StoreError> {
        let mut spans = Vec::new();
        for body in bodies {
            let span: IncidentSpan = serde_json::from_str(&body?)?;
            if span
                .resolved_at
                .is_none_or(|t| t.timestamp() >= self.first_day)
            {
                spans.push(span);
            }
        }
        Ok(spans)
    }

    /// One service's history from its day rows (start → seconds, worst status rank) and
    /// hour rows (start → counters) inside the window.
    pub fn history(
        &self,
        service: &str,
        spans: &[IncidentSpan],
        days: &HashMap<i64, (Seconds, Option<i64>)>,
        hours: &HashMap<i64, Counters>,
    ) -> ServiceHistory {
        let mine: Vec<&IncidentSpan> = spans
            .iter()
            .filter(|s| s.services.contains_key(service))
            .collect();
        let days = (0..HISTORY_DAYS)
            .map(|i| {
                let start = self.first_day + i * DAY;
                let (seconds, worst) = days.get(&start).copied().unwrap_or_default();
                DayHistory {
                    date: super::utc(start).date_naive(),
                    uptime: seconds.uptime(),
                    worst_status: worst.and_then(status_from_rank),
                    observed_seconds: seconds.observed,
                    downtime_seconds: seconds.down,
                    maintenance_seconds: seconds.maintenance,
                    incidents: mine
                        .iter()
                        .filter(|s| {
                            s.onset_at.timestamp() < start + DAY
                                && s.resolved_at.unwrap_or(self.now).timestamp() >= start
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

    pub fn finish(mut self, open: OpenMinute) -> HashMap<String, Uptime> {
        for (id, seconds) in open.services {
            for window in self.0.entry(id).or_default() {
                window.add(seconds);
            }
        }
        self.0
            .into_iter()
            .map(|(id, windows)| (id, Uptime::of(&windows)))
            .collect()
    }
}
