//! Rollup rows: adding closed minutes into minute, hour and day rows, and the reads the
//! status page makes of them (uptime windows, a service's 90 days and 24 hours).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, utc};
use crate::clock::Timestamp;
use crate::rollup::{
    ClosedMinute, Counters, DAY, DayHistory, HOUR, Histogram, LatencyPoint, OpenMinute, Resolution,
    Seconds, ServiceHistory, Subject, status_from_rank, status_rank,
};

pub(super) fn table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Minute => "rollup_minute",
        Resolution::Hour => "rollup_hour",
        Resolution::Day => "rollup_day",
    }
}

/// Days in [`ServiceHistory::days`].
const HISTORY_DAYS: i64 = 90;

/// An incident as far as a service's history needs it.
#[derive(serde::Deserialize)]
struct IncidentSpan {
    id: String,
    onset_at: Timestamp,
    resolved_at: Option<Timestamp>,
    services: HashMap<String, serde::de::IgnoredAny>,
}

/// The columns of [`Seconds`], in the order [`seconds_at`] reads them.
const SECONDS: &str = "observed, downtime, maintenance, user_seconds, user_seconds_lost";

/// Their sums, for grouped reads.
pub(super) const SECONDS_SUMS: &str = "SUM(observed), SUM(downtime), SUM(maintenance), \
     SUM(user_seconds), SUM(user_seconds_lost)";

/// [`Seconds`] from the five columns starting at `first`.
pub(super) fn seconds_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Seconds> {
    Ok(Seconds {
        observed: row.get(first)?,
        down: row.get(first + 1)?,
        maintenance: row.get(first + 2)?,
        user: row.get(first + 3)?,
        user_lost: row.get(first + 4)?,
    })
}

/// By service, the start of its first hour with watched time from `from` on, or the open
/// minute's start for a service with nothing stored yet.
pub(super) fn observed_since(
    conn: &Connection,
    from: i64,
    open: &OpenMinute,
) -> Result<HashMap<String, Timestamp>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, MIN(start) FROM rollup_hour
         WHERE kind = ?1 AND start >= ?2 AND observed > 0 GROUP BY id",
    )?;
    let mut since = HashMap::new();
    for row in stmt.query_map(
        params![Subject::Service.code(), Resolution::Hour.floor(from)],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )? {
        let (id, start) = row?;
        since.insert(id, utc(start.max(from)));
    }
    if let Some(start) = open.start {
        for id in open.services.keys() {
            since.entry(id.clone()).or_insert(utc(start));
        }
    }
    Ok(since)
}

pub(super) fn read_history(
    conn: &Connection,
    services: &[String],
    now: Timestamp,
    open: &OpenMinute,
) -> Result<Vec<ServiceHistory>, StoreError> {
    let today = Resolution::Day.floor(now.timestamp());
    let first_day = today - (HISTORY_DAYS - 1) * DAY;
    let first_hour = Resolution::Hour.floor(now.timestamp()) - 23 * HOUR;
    // The incident table has no time column: every body is read, once for all services.
    let mut spans = Vec::new();
    let mut stmt = conn.prepare("SELECT body FROM incident ORDER BY seq")?;
    for body in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let span: IncidentSpan = serde_json::from_str(&body?)?;
        if span.resolved_at.is_none_or(|t| t.timestamp() >= first_day) {
            spans.push(span);
        }
    }
    let mut days = conn.prepare_cached(&format!(
        "SELECT start, worst, {SECONDS} FROM rollup_day WHERE kind = ?1 AND id = ?2 AND start >= ?3"
    ))?;
    let mut hours = conn.prepare_cached(
        "SELECT start, probes, failures, latency_sum, latency_max, histogram FROM rollup_hour
         WHERE kind = ?1 AND id = ?2 AND start >= ?3",
    )?;
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        let key = (Subject::Service.code(), service);
        let mut stored: HashMap<i64, (Seconds, Option<i64>)> = HashMap::new();
        for row in days.query_map(params![key.0, key.1, first_day], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                seconds_at(r, 2)?,
                r.get::<_, Option<i64>>(1)?,
            ))
        })? {
            let (start, seconds, worst) = row?;
            stored.insert(start, (seconds, worst));
        }
        // Today includes the open minute, as the uptime figures beside it do.
        if let Some((seconds, worst)) = open.services.get(service)
            && open.start.is_some_and(|s| s >= today)
        {
            let (stored_seconds, stored_worst) = stored.entry(today).or_default();
            stored_seconds.add(*seconds);
            *stored_worst = (*stored_worst).max(worst.map(status_rank));
        }
        let mine: Vec<&IncidentSpan> = spans
            .iter()
            .filter(|s| s.services.contains_key(service))
            .collect();
        let days = (0..HISTORY_DAYS)
            .map(|i| {
                let start = first_day + i * DAY;
                let (seconds, worst) = stored.get(&start).copied().unwrap_or_default();
                DayHistory {
                    date: utc(start).date_naive(),
                    availability: seconds.availability(),
                    operational_time: seconds.operational_time(),
                    worst_status: worst.and_then(status_from_rank),
                    observed_seconds: seconds.observed,
                    downtime_seconds: seconds.down,
                    maintenance_seconds: seconds.maintenance,
                    incidents: mine
                        .iter()
                        .filter(|s| {
                            s.onset_at.timestamp() < start + DAY
                                && s.resolved_at.unwrap_or(now).timestamp() >= start
                        })
                        .map(|s| s.id.clone())
                        .collect(),
                }
            })
            .collect();
        let mut stored: HashMap<i64, Counters> = HashMap::new();
        for row in hours.query_map(params![key.0, key.1, first_hour], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })? {
            let (start, probes, failures, latency_sum, latency_max, histogram) = row?;
            let counters = Counters {
                probes: probes as u64,
                failures: failures as u64,
                latency_sum,
                latency_max,
                latency: Histogram::from_bytes(&histogram)?,
                ..Counters::default()
            };
            stored.insert(start, counters);
        }
        let latency = (0..24)
            .map(|i| {
                let start = first_hour + i * HOUR;
                LatencyPoint::of(start, stored.get(&start).unwrap_or(&Counters::default()))
            })
            .collect();
        out.push(ServiceHistory {
            service: service.clone(),
            days,
            latency,
        });
    }
    Ok(out)
}

/// Adds each row into its minute, hour and day rows: sums add, maxima and the worst status
/// keep the larger, histograms add bucket by bucket (merged here: SQL cannot).
pub(super) fn write_rollups(tx: &Connection, minute: &ClosedMinute) -> Result<(), StoreError> {
    for resolution in Resolution::ALL {
        let table = table(resolution);
        let start = resolution.floor(minute.start);
        let mut existing = tx.prepare_cached(&format!(
            "SELECT histogram FROM {table} WHERE kind = ?1 AND id = ?2 AND start = ?3"
        ))?;
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO {table} (kind, id, start, probes, failures, latency_sum, latency_max,
                histogram, observed, downtime, maintenance, worst, user_seconds,
                user_seconds_lost)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (kind, id, start) DO UPDATE SET
                probes = probes + excluded.probes,
                failures = failures + excluded.failures,
                latency_sum = latency_sum + excluded.latency_sum,
                latency_max = MAX(latency_max, excluded.latency_max),
                histogram = excluded.histogram,
                observed = observed + excluded.observed,
                downtime = downtime + excluded.downtime,
                maintenance = maintenance + excluded.maintenance,
                worst = NULLIF(MAX(COALESCE(worst, -1), COALESCE(excluded.worst, -1)), -1),
                user_seconds = user_seconds + excluded.user_seconds,
                user_seconds_lost = user_seconds_lost + excluded.user_seconds_lost"
        ))?;
        for row in &minute.rows {
            let kind = row.subject.code();
            let c = &row.counters;
            let mut histogram = c.latency.clone();
            let stored: Option<Vec<u8>> = existing
                .query_row(params![kind, row.id, start], |r| r.get(0))
                .optional()?;
            if let Some(bytes) = stored {
                // A damaged row must not make the batch (incidents, alerts) fail with it.
                match Histogram::from_bytes(&bytes) {
                    Ok(h) => histogram.merge(&h),
                    Err(e) => tracing::warn!(error = %e, table, id = %row.id, start,
                        "replacing a damaged latency histogram"),
                }
            }
            upsert.execute(params![
                kind,
                row.id,
                start,
                c.probes as i64,
                c.failures as i64,
                c.latency_sum,
                c.latency_max,
                histogram.to_bytes(),
                c.time.observed,
                c.time.down,
                c.time.maintenance,
                c.worst.map(status_rank),
                c.time.user,
                c.time.user_lost,
            ])?;
        }
    }
    Ok(())
}
