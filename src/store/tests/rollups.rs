//! Rollups written and read back: minutes added into hour and day rows (histograms
//! merged), uptime windows, history, retention.

use super::{Kind, TestDb, incident, t};
use crate::incident::ComponentStatus;
use crate::rollup::{ClosedMinute, Counters, OpenMinute, Row, Seconds, ServiceHistory, Subject};
use std::collections::HashMap;

on_both_backends!(
    minutes_add_up_into_hour_and_day_rows_and_read_back,
    uptime_windows_read_each_stretch_once_at_the_coarsest_resolution,
    retention_removes_old_rows_and_keeps_recent_ones,
    history_lists_the_incidents_touching_each_day,
);

fn service(id: &str, latencies: &[f64], failures: u64, time: Seconds) -> Row {
    let mut counters = Counters {
        probes: latencies.len() as u64 + failures,
        failures,
        time,
        ..Counters::default()
    };
    for &l in latencies {
        counters.latency_sum += l;
        counters.latency_max = counters.latency_max.max(l);
        counters.latency.record(l);
    }
    Row {
        subject: Subject::Service,
        id: id.to_string(),
        counters,
    }
}

/// One subscriber's time: its user-seconds are the watched seconds, those lost the down
/// ones, so availability and operational time read the same.
fn seconds(observed: f64, down: f64, maintenance: f64) -> Seconds {
    Seconds {
        observed,
        down,
        maintenance,
        user: observed - maintenance,
        user_lost: down,
    }
}

fn minute(start: &str, rows: Vec<Row>) -> ClosedMinute {
    ClosedMinute {
        start: t(start).timestamp(),
        rows,
    }
}

async fn count(db: &TestDb, table: &str, start: &str) -> i64 {
    let start = t(start).timestamp();
    db.scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE start = {start}"
    ))
    .await
}

async fn minutes_add_up_into_hour_and_day_rows_and_read_back(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let mut before_midnight = service("voicemail", &[0.1], 1, seconds(60.0, 30.0, 0.0));
    before_midnight.counters.worst = Some(ComponentStatus::MajorOutage);
    let mut first_part = service("voicemail", &[0.2, 0.2, 0.4], 0, seconds(60.0, 0.0, 0.0));
    first_part.counters.worst = Some(ComponentStatus::DegradedPerformance);
    let mut second_part = service("voicemail", &[0.8], 0, seconds(20.0, 0.0, 20.0));
    second_part.counters.worst = Some(ComponentStatus::Operational);
    let target = Row {
        subject: Subject::Target,
        id: "voicemail".into(), // same id, other subject: kept apart
        counters: Counters {
            probes: 7,
            time: seconds(60.0, 60.0, 0.0),
            ..Counters::default()
        },
    };
    store.save_rollups(minute("2026-03-01T23:59:00Z", vec![before_midnight]));
    store.save_rollups(minute("2026-03-02T00:01:00Z", vec![first_part, target]));
    // The rest of the same minute, as after a restart.
    store.save_rollups(minute("2026-03-02T00:01:00Z", vec![second_part]));
    store.flush().await.unwrap();
    assert_eq!(count(&db, "rollup_minute", "2026-03-02T00:01:00Z").await, 2);
    assert_eq!(count(&db, "rollup_hour", "2026-03-02T00:00:00Z").await, 2);
    assert_eq!(count(&db, "rollup_day", "2026-03-01T00:00:00Z").await, 1);

    let now = t("2026-03-02T00:05:30Z");
    let history = store
        .service_history("voicemail".into(), now, OpenMinute::default())
        .await
        .unwrap();
    assert_eq!(history.days.len(), 90);
    let today = &history.days[89];
    assert_eq!(today.date.to_string(), "2026-03-02");
    assert_eq!(today.observed_seconds, 80.0);
    assert_eq!(today.maintenance_seconds, 20.0);
    assert_eq!(today.operational_time, Some(1.0));
    assert_eq!(today.availability, Some(1.0));
    assert_eq!(
        today.worst_status,
        Some(ComponentStatus::DegradedPerformance)
    );
    let yesterday = &history.days[88];
    assert_eq!(yesterday.date.to_string(), "2026-03-01");
    assert_eq!(yesterday.operational_time, Some(0.5));
    assert_eq!(yesterday.availability, Some(0.5));
    assert_eq!(yesterday.worst_status, Some(ComponentStatus::MajorOutage));
    assert!(
        history.days[..88]
            .iter()
            .all(|d| d.availability.is_none() && d.worst_status.is_none())
    );

    assert_eq!(history.latency.len(), 24);
    let hour = &history.latency[23];
    assert_eq!(hour.start, t("2026-03-02T00:00:00Z"));
    assert_eq!((hour.probes, hour.failures), (4, 0));
    assert!((hour.avg_seconds.unwrap() - 0.4).abs() < 1e-9);
    assert_eq!(hour.max_seconds, Some(0.8));
    let p95 = hour.p95_seconds.unwrap();
    assert!(
        (p95 / 0.8 - 1.0).abs() <= 0.0906,
        "p95 {p95} from merged histograms"
    );
    let last_hour = &history.latency[22];
    assert_eq!((last_hour.probes, last_hour.failures), (2, 1));
    assert_eq!(history.latency[0].probes, 0);
    assert_eq!(history.latency[0].avg_seconds, None);

    let open = OpenMinute {
        start: Some(t("2026-03-02T00:05:00Z").timestamp()),
        services: HashMap::from([(
            "voicemail".to_string(),
            (seconds(10.0, 10.0, 0.0), Some(ComponentStatus::MajorOutage)),
        )]),
    };
    let uptimes = store.uptimes(now, open.clone()).await.unwrap();
    let expected = 1.0 - (30.0 + 10.0) / (60.0 + 80.0 - 20.0 + 10.0);
    let vm = &uptimes["voicemail"];
    for window in [
        vm.operational_time.last_24h,
        vm.operational_time.last_90d,
        vm.availability.last_24h,
        vm.availability.last_90d,
    ] {
        assert!((window.unwrap() - expected).abs() < 1e-9, "{window:?}");
    }
    // The first stored hour is yesterday's 23:00.
    assert_eq!(vm.observed_since, Some(t("2026-03-01T23:00:00Z")));
    // Today's cell counts the open minute as the figures beside it do.
    let history = store
        .service_history("voicemail".into(), now, open)
        .await
        .unwrap();
    let today = &history.days[89];
    assert_eq!(today.observed_seconds, 90.0);
    assert_eq!(today.worst_status, Some(ComponentStatus::MajorOutage));
    assert!(!uptimes.contains_key("web"));
}

async fn uptime_windows_read_each_stretch_once_at_the_coarsest_resolution(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    // Down for one minute 3 days ago (in the 7d window, not the 24h one), and for one
    // minute 12 minutes ago (in both, read from minute rows).
    for (start, down) in [
        ("2026-02-27T08:30:00Z", 60.0),
        ("2026-03-02T09:48:00Z", 60.0),
        ("2026-03-02T09:49:00Z", 0.0),
    ] {
        store.save_rollups(minute(
            start,
            vec![service("web", &[], 0, seconds(60.0, down, 0.0))],
        ));
    }
    store.flush().await.unwrap();
    let now = t("2026-03-02T10:00:10Z");
    let uptimes = store.uptimes(now, OpenMinute::default()).await.unwrap();
    let web = uptimes["web"].operational_time;
    assert_eq!(web.last_24h, Some(0.5));
    assert_eq!(web.last_7d, Some(1.0 - 120.0 / 180.0));
    assert_eq!(web.last_90d, web.last_7d);
    assert_eq!(
        uptimes["web"].availability, web,
        "one subscriber: the same figures"
    );
}

async fn retention_removes_old_rows_and_keeps_recent_ones(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let row = || vec![service("web", &[0.01], 0, seconds(60.0, 0.0, 0.0))];
    store.save_rollups(minute("2025-01-01T12:00:00Z", row()));
    store.save_rollups(minute("2026-03-02T07:00:00Z", row()));
    store.save_rollups(minute("2026-03-02T09:40:00Z", row()));
    let hour = std::time::Duration::from_secs(3600);
    store.prune_rollups(t("2026-03-02T10:00:00Z"), hour, 30 * 24 * hour);
    store.flush().await.unwrap();

    assert_eq!(count(&db, "rollup_minute", "2026-03-02T09:40:00Z").await, 1);
    assert_eq!(count(&db, "rollup_minute", "2026-03-02T07:00:00Z").await, 0);
    assert_eq!(count(&db, "rollup_hour", "2026-03-02T07:00:00Z").await, 1);
    assert_eq!(count(&db, "rollup_day", "2026-03-02T00:00:00Z").await, 1);
    assert_eq!(count(&db, "rollup_minute", "2025-01-01T12:00:00Z").await, 0);
    assert_eq!(count(&db, "rollup_hour", "2025-01-01T12:00:00Z").await, 0);
    assert_eq!(count(&db, "rollup_day", "2025-01-01T00:00:00Z").await, 0);
}

async fn history_lists_the_incidents_touching_each_day(kind: Kind) {
    let db = TestDb::new(kind).await;
    drop(db.open().await);
    // A database from before the span columns (version 7): incidents with a body only,
    // which the migration reads the span from.
    db.execute(
        "DROP INDEX incident_resolved; ALTER TABLE incident DROP COLUMN onset_unix;
         ALTER TABLE incident DROP COLUMN resolved_unix;
         DELETE FROM schema_migrations WHERE version >= 8",
    )
    .await;
    let incidents = [
        // Across midnight into the first of March.
        (
            "inc-1",
            &["voicemail"][..],
            "2026-02-28T23:50:00Z",
            Some("2026-03-01T00:10:00.250Z"),
        ),
        // Still open.
        (
            "inc-2",
            &["voicemail", "web"],
            "2026-03-02T00:01:00.5Z",
            None,
        ),
        (
            "inc-3",
            &["web"],
            "2026-03-01T05:00:00Z",
            Some("2026-03-01T06:00:00Z"),
        ),
        // Over before the 90 days.
        (
            "inc-0",
            &["voicemail"],
            "2025-06-01T00:00:00Z",
            Some("2025-06-01T01:00:00Z"),
        ),
    ];
    for (seq, (id, services, onset, resolved)) in incidents.iter().enumerate() {
        let mut inc = incident(id, seq as u64, services, t(onset));
        inc.resolved_at = resolved.map(t);
        let body = serde_json::to_string(&inc).unwrap();
        let services = match kind {
            Kind::Sqlite => format!("',{},'", services.join(",")),
            Kind::Postgres => format!("ARRAY['{}']", services.join("','")),
        };
        db.execute(&format!(
            "INSERT INTO incident (id, seq, status, services, body)
             VALUES ('{id}', {seq}, 'resolved', {services}, '{body}')"
        ))
        .await;
    }
    let (store, _) = db.open().await;
    // And one written since, resolved on the last day.
    let mut since = incident("inc-4", 9, &["web"], t("2026-03-02T08:00:00Z"));
    since.resolved_at = Some(t("2026-03-02T09:00:00Z"));
    store.save_incident(&since);
    store.flush().await.unwrap();
    let now = t("2026-03-02T12:00:00Z");
    let all = store
        .services_history(
            vec!["voicemail".into(), "web".into()],
            now,
            OpenMinute::default(),
        )
        .await
        .unwrap();
    let ids = |h: &ServiceHistory, i: usize| h.days[i].incidents.join(",");
    let (vm, web) = (&all[0], &all[1]);
    assert_eq!(
        (vm.service.as_str(), web.service.as_str()),
        ("voicemail", "web")
    );
    assert_eq!(ids(vm, 87), "inc-1"); // 2026-02-28
    assert_eq!(ids(vm, 88), "inc-1");
    assert_eq!(ids(vm, 89), "inc-2");
    assert_eq!(ids(web, 88), "inc-3");
    assert_eq!(ids(web, 89), "inc-2,inc-4");
    assert!(vm.days[..87].iter().all(|d| d.incidents.is_empty()));
}
