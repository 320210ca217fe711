//! Rollup rows: adding closed minutes into minute, hour and day rows (and vantages' minute
//! rows), and the reads the status page makes of them (uptime windows, a service's 90 days
//! and 24 hours).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::clock::Timestamp;
use crate::rollup::{
    ClosedMinute, Counters, Histogram, OpenMinute, Resolution, Seconds, ServiceHistory, Subject,
    Uptime, status_rank,
};
use crate::store::StoreError;
use crate::store::history::{
    HistoryWindow, IncidentSpan, SECONDS_COLUMNS, SECONDS_SUMS, UptimeSums, seconds, uptime_reads,
};
use crate::store::utc;

pub(super) fn table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Minute => "rollup_minute",
        Resolution::Hour => "rollup_hour",
        Resolution::Day => "rollup_day",
    }
}

/// Service time per service in each of the reads uptime figures take.
pub(super) fn read_uptimes(
    conn: &Connection,
    now: Timestamp,
    open: OpenMinute,
) -> Result<HashMap<String, Uptime>, StoreError> {
    let mut sums = UptimeSums::default();
    let reads = uptime_reads(now, &open);
    for read in &reads {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, {SECONDS_SUMS} FROM {}
             WHERE kind = ?1 AND start >= ?2 AND start < ?3 GROUP BY id",
            table(read.resolution)
        ))?;
        let rows = stmt.query_map(params![Subject::Service.code(), read.from, read.to], |r| {
            Ok((r.get::<_, String>(0)?, seconds_at(r, 1)?))
        })?;
        for row in rows {
            let (id, seconds) = row?;
            sums.add(read.window, id, seconds);
        }
    }
    // Since when each service has data, within the longest window.
    let from = reads.iter().map(|r| r.from).min().unwrap_or(0);
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
    Ok(sums.finish(open, since))
}

/// [`Seconds`] from the [`SECONDS_COLUMNS`] starting at `first`.
fn seconds_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Seconds> {
    Ok(seconds([
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
        row.get(first + 4)?,
    ]))
}

pub(super) fn read_history(
    conn: &Connection,
    services: &[String],
    now: Timestamp,
    open: &OpenMinute,
) -> Result<Vec<ServiceHistory>, StoreError> {
    let window = HistoryWindow::ending(now);
    let mut stmt = conn.prepare_cached(
        "SELECT id, onset_unix, resolved_unix, services FROM incident
         WHERE resolved_unix IS NULL OR resolved_unix >= ?1 ORDER BY seq",
    )?;
    let spans = stmt
        .query_map([window.first_day], |r| {
            Ok(IncidentSpan {
                id: r.get(0)?,
                onset: r.get(1)?,
                resolved: r.get(2)?,
                services: r
                    .get::<_, String>(3)?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut days = conn.prepare_cached(&format!(
        "SELECT start, worst, {SECONDS_COLUMNS} FROM rollup_day
         WHERE kind = ?1 AND id = ?2 AND start >= ?3"
    ))?;
    let mut hours = conn.prepare_cached(
        "SELECT start, probes, failures, latency_sum, latency_max, histogram FROM rollup_hour
         WHERE kind = ?1 AND id = ?2 AND start >= ?3",
    )?;
    let mut out = Vec::with_capacity(services.len());
    for service in services {
        let key = (Subject::Service.code(), service);
        let mut day_rows: HashMap<i64, (Seconds, Option<i64>)> = HashMap::new();
        for row in days.query_map(params![key.0, key.1, window.first_day], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                seconds_at(r, 2)?,
                r.get::<_, Option<i64>>(1)?,
            ))
        })? {
            let (start, seconds, worst) = row?;
            day_rows.insert(start, (seconds, worst));
        }
        let mut hour_rows: HashMap<i64, Counters> = HashMap::new();
        for row in hours.query_map(params![key.0, key.1, window.first_hour], |r| {
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
            hour_rows.insert(start, counters);
        }
        out.push(window.history(service, &spans, day_rows, &hour_rows, open));
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

/// Adds the target rows of `minute` into `vantage`'s minute rows.
pub(super) fn write_vantage_rollups(
    tx: &Connection,
    vantage: &str,
    minute: &ClosedMinute,
) -> Result<(), StoreError> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO vantage_rollup_minute (vantage, target, start, probes, failures,
            latency_sum, latency_max, observed, downtime)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (vantage, target, start) DO UPDATE SET
            probes = probes + excluded.probes,
            failures = failures + excluded.failures,
            latency_sum = latency_sum + excluded.latency_sum,
            latency_max = MAX(latency_max, excluded.latency_max),
            observed = observed + excluded.observed,
            downtime = downtime + excluded.downtime",
    )?;
    for row in minute.rows.iter().filter(|r| r.subject == Subject::Target) {
        let c = &row.counters;
        upsert.execute(params![
            vantage,
            row.id,
            minute.start,
            c.probes as i64,
            c.failures as i64,
            c.latency_sum,
            c.latency_max,
            c.time.observed,
            c.time.down,
        ])?;
    }
    Ok(())
}
