//! Rollup rows in PostgreSQL: a closed minute is added into its minute, hour and day rows
//! a few statements per resolution, whatever the number of targets; reads for the status
//! page.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};

use super::{execute, query};
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

fn table(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Minute => "rollup_minute",
        Resolution::Hour => "rollup_hour",
        Resolution::Day => "rollup_day",
    }
}

fn kind(subject: Subject) -> i16 {
    subject.code() as i16
}

/// Adds each row into its minute, hour and day rows: sums add, maxima and the worst status
/// keep the larger, histograms add bucket by bucket (merged here: SQL cannot). Rows of a
/// closed minute have distinct (subject, id).
///
/// Missing rows are first made empty, then all are locked and merged alike, so that two
/// instances adding into the same hour cannot lose each other's histogram.
pub(super) async fn write_rollups(
    tx: &Transaction<'_>,
    minute: &ClosedMinute,
) -> Result<(), StoreError> {
    let rows = &minute.rows;
    let kinds: Vec<i16> = rows.iter().map(|r| kind(r.subject)).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let counter =
        |f: fn(&Counters) -> i64| -> Vec<i64> { rows.iter().map(|r| f(&r.counters)).collect() };
    let float =
        |f: fn(&Counters) -> f64| -> Vec<f64> { rows.iter().map(|r| f(&r.counters)).collect() };
    let worst: Vec<Option<i16>> = rows
        .iter()
        .map(|r| r.counters.worst.map(|s| status_rank(s) as i16))
        .collect();
    for resolution in Resolution::ALL {
        let table = table(resolution);
        let start = resolution.floor(minute.start);
        execute(
            tx,
            &format!(
                "INSERT INTO {table} (kind, id, start, probes, failures, latency_sum,
                    latency_max, histogram, observed, downtime, maintenance)
                 SELECT k, i, $3, 0, 0, 0, 0, '', 0, 0, 0
                 FROM unnest($1::SMALLINT[], $2::TEXT[]) AS u(k, i)
                 ON CONFLICT DO NOTHING"
            ),
            &[&kinds, &ids, &start],
        )
        .await?;
        let stored = query(
            tx,
            &format!(
                "SELECT kind, id, histogram FROM {table}
                 WHERE start = $3 AND (kind, id) IN (SELECT * FROM unnest($1::SMALLINT[], $2::TEXT[]))
                 ORDER BY kind, id FOR UPDATE"
            ),
            &[&kinds, &ids, &start],
        )
        .await?;
        let stored: HashMap<(i16, &str), &[u8]> = stored
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        let histograms: Vec<Vec<u8>> = rows
            .iter()
            .map(|row| {
                let mut histogram = row.counters.latency.clone();
                let bytes = stored.get(&(kind(row.subject), row.id.as_str()));
                // A damaged row must not make the batch (incidents, alerts) fail with it.
                match bytes.map(|b| Histogram::from_bytes(b)) {
                    Some(Ok(h)) => histogram.merge(&h),
                    Some(Err(e)) => tracing::warn!(error = %e, table, id = %row.id, start,
                        "replacing a damaged latency histogram"),
                    None => {}
                }
                histogram.to_bytes()
            })
            .collect();
        execute(
            tx,
            &format!(
                "UPDATE {table} AS r SET
                    probes = r.probes + u.probes,
                    failures = r.failures + u.failures,
                    latency_sum = r.latency_sum + u.latency_sum,
                    latency_max = GREATEST(r.latency_max, u.latency_max),
                    histogram = u.histogram,
                    observed = r.observed + u.observed,
                    downtime = r.downtime + u.downtime,
                    maintenance = r.maintenance + u.maintenance,
                    worst = NULLIF(GREATEST(COALESCE(r.worst, -1), COALESCE(u.worst, -1)), -1),
                    user_seconds = r.user_seconds + u.user_seconds,
                    user_seconds_lost = r.user_seconds_lost + u.user_seconds_lost
                 FROM unnest($1::SMALLINT[], $2::TEXT[], $4::BIGINT[], $5::BIGINT[],
                    $6::FLOAT8[], $7::FLOAT8[], $8::BYTEA[], $9::FLOAT8[], $10::FLOAT8[],
                    $11::FLOAT8[], $12::SMALLINT[], $13::FLOAT8[], $14::FLOAT8[])
                    AS u(kind, id, probes, failures, latency_sum, latency_max, histogram,
                        observed, downtime, maintenance, worst, user_seconds,
                        user_seconds_lost)
                 WHERE r.kind = u.kind AND r.id = u.id AND r.start = $3"
            ),
            &[
                &kinds,
                &ids,
                &start,
                &counter(|c| c.probes as i64),
                &counter(|c| c.failures as i64),
                &float(|c| c.latency_sum),
                &float(|c| c.latency_max),
                &histograms,
                &float(|c| c.time.observed),
                &float(|c| c.time.down),
                &float(|c| c.time.maintenance),
                &worst,
                &float(|c| c.time.user),
                &float(|c| c.time.user_lost),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Adds the target rows of `minute` into `vantage`'s minute rows, in one statement.
pub(super) async fn write_vantage_rollups(
    tx: &Transaction<'_>,
    vantage: &str,
    minute: &ClosedMinute,
) -> Result<(), StoreError> {
    let rows: Vec<_> = minute
        .rows
        .iter()
        .filter(|r| r.subject == Subject::Target)
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let counter =
        |f: fn(&Counters) -> i64| -> Vec<i64> { rows.iter().map(|r| f(&r.counters)).collect() };
    let float =
        |f: fn(&Counters) -> f64| -> Vec<f64> { rows.iter().map(|r| f(&r.counters)).collect() };
    execute(
        tx,
        "INSERT INTO vantage_rollup_minute AS r (vantage, target, start, probes, failures,
            latency_sum, latency_max, observed, downtime)
         SELECT $1, * FROM unnest($2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[],
            $6::FLOAT8[], $7::FLOAT8[], $8::FLOAT8[], $9::FLOAT8[])
         ON CONFLICT (vantage, target, start) DO UPDATE SET
            probes = r.probes + excluded.probes,
            failures = r.failures + excluded.failures,
            latency_sum = r.latency_sum + excluded.latency_sum,
            latency_max = GREATEST(r.latency_max, excluded.latency_max),
            observed = r.observed + excluded.observed,
            downtime = r.downtime + excluded.downtime",
        &[
            &vantage,
            &ids,
            &vec![minute.start; ids.len()],
            &counter(|c| c.probes as i64),
            &counter(|c| c.failures as i64),
            &float(|c| c.latency_sum),
            &float(|c| c.latency_max),
            &float(|c| c.time.observed),
            &float(|c| c.time.down),
        ],
    )
    .await?;
    Ok(())
}

/// Service time per service in each of the reads uptime figures take.
pub(super) async fn read_uptimes(
    client: &impl GenericClient,
    now: Timestamp,
    open: OpenMinute,
) -> Result<HashMap<String, Uptime>, StoreError> {
    let mut sums = UptimeSums::default();
    let reads = uptime_reads(now, &open);
    for read in &reads {
        let rows = query(
            client,
            &format!(
                "SELECT id, {SECONDS_SUMS} FROM {}
                 WHERE kind = $1 AND start >= $2 AND start < $3 GROUP BY id",
                table(read.resolution)
            ),
            &[&kind(Subject::Service), &read.from, &read.to],
        )
        .await?;
        for row in rows {
            sums.add(read.window, row.get(0), seconds_at(&row, 1));
        }
    }
    // Since when each service has data, within the longest window.
    let from = reads.iter().map(|r| r.from).min().unwrap_or(0);
    let mut since = HashMap::new();
    for row in query(
        client,
        "SELECT id, MIN(start) FROM rollup_hour
         WHERE kind = $1 AND start >= $2 AND observed > 0 GROUP BY id",
        &[&kind(Subject::Service), &Resolution::Hour.floor(from)],
    )
    .await?
    {
        let start: i64 = row.get(1);
        since.insert(row.get(0), utc(start.max(from)));
    }
    Ok(sums.finish(open, since))
}

/// [`Seconds`] from the [`SECONDS_COLUMNS`] starting at `first` (sums are NULL-free: rows
/// exist for every group).
fn seconds_at(row: &tokio_postgres::Row, first: usize) -> Seconds {
    seconds([
        row.get(first),
        row.get(first + 1),
        row.get(first + 2),
        row.get(first + 3),
        row.get(first + 4),
    ])
}

/// Histories of `services`: the incidents once, then the day and hour rows of all the
/// services in one query each.
pub(super) async fn read_history(
    client: &impl GenericClient,
    services: &[String],
    now: Timestamp,
    open: &OpenMinute,
) -> Result<Vec<ServiceHistory>, StoreError> {
    let window = HistoryWindow::ending(now);
    let spans: Vec<IncidentSpan> = query(
        client,
        "SELECT id, onset_unix, resolved_unix, services FROM incident
         WHERE resolved_unix IS NULL OR resolved_unix >= $1 ORDER BY seq",
        &[&window.first_day],
    )
    .await?
    .iter()
    .map(|r| IncidentSpan {
        id: r.get(0),
        onset: r.get(1),
        resolved: r.get(2),
        services: r.get(3),
    })
    .collect();
    let service = kind(Subject::Service);
    let mut days: HashMap<String, HashMap<i64, (Seconds, Option<i64>)>> = HashMap::new();
    for row in query(
        client,
        &format!(
            "SELECT id, start, worst, {SECONDS_COLUMNS} FROM rollup_day
             WHERE kind = $1 AND id = ANY ($2) AND start >= $3"
        ),
        &[&service, &services, &window.first_day],
    )
    .await?
    {
        let seconds = seconds_at(&row, 3);
        let worst: Option<i16> = row.get(2);
        days.entry(row.get(0))
            .or_default()
            .insert(row.get(1), (seconds, worst.map(i64::from)));
    }
    let mut hours: HashMap<String, HashMap<i64, Counters>> = HashMap::new();
    for row in query(
        client,
        "SELECT id, start, probes, failures, latency_sum, latency_max, histogram FROM rollup_hour
         WHERE kind = $1 AND id = ANY ($2) AND start >= $3",
        &[&service, &services, &window.first_hour],
    )
    .await?
    {
        let counters = Counters {
            probes: row.get::<_, i64>(2) as u64,
            failures: row.get::<_, i64>(3) as u64,
            latency_sum: row.get(4),
            latency_max: row.get(5),
            latency: Histogram::from_bytes(row.get(6))?,
            ..Counters::default()
        };
        hours
            .entry(row.get(0))
            .or_default()
            .insert(row.get(1), counters);
    }
    let no_hours = HashMap::new();
    Ok(services
        .iter()
        .map(|s| {
            let days = days.remove(s).unwrap_or_default();
            window.history(s, &spans, days, hours.get(s).unwrap_or(&no_hours), open)
        })
        .collect())
}
