//! The store against a real SQLite file: rollups written and read back, routing state across
//! a schema migration.
use super::schema::SCHEMA;
use super::*;
use crate::incident::ComponentStatus;
use crate::rollup::{Counters, Row};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

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

async fn count(store: &Store, table: &'static str, start: &str) -> i64 {
    let start = t(start).timestamp();
    store
        .read(move |c| {
            Ok(c.query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE start = ?1"),
                [start],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn minutes_add_up_into_hour_and_day_rows_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
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
    assert_eq!(
        count(&store, "rollup_minute", "2026-03-02T00:01:00Z").await,
        2
    );
    assert_eq!(
        count(&store, "rollup_hour", "2026-03-02T00:00:00Z").await,
        2
    );
    assert_eq!(count(&store, "rollup_day", "2026-03-01T00:00:00Z").await, 1);

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

#[tokio::test]
async fn uptime_windows_read_each_stretch_once_at_the_coarsest_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
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

#[tokio::test]
async fn retention_removes_old_rows_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
    let row = || vec![service("web", &[0.01], 0, seconds(60.0, 0.0, 0.0))];
    store.save_rollups(minute("2025-01-01T12:00:00Z", row()));
    store.save_rollups(minute("2026-03-02T07:00:00Z", row()));
    store.save_rollups(minute("2026-03-02T09:40:00Z", row()));
    let hour = std::time::Duration::from_secs(3600);
    store.prune_rollups(t("2026-03-02T10:00:00Z"), hour, 30 * 24 * hour);
    store.flush().await.unwrap();

    assert_eq!(
        count(&store, "rollup_minute", "2026-03-02T09:40:00Z").await,
        1
    );
    assert_eq!(
        count(&store, "rollup_minute", "2026-03-02T07:00:00Z").await,
        0
    );
    assert_eq!(
        count(&store, "rollup_hour", "2026-03-02T07:00:00Z").await,
        1
    );
    assert_eq!(count(&store, "rollup_day", "2026-03-02T00:00:00Z").await, 1);
    assert_eq!(
        count(&store, "rollup_minute", "2025-01-01T12:00:00Z").await,
        0
    );
    assert_eq!(
        count(&store, "rollup_hour", "2025-01-01T12:00:00Z").await,
        0
    );
    assert_eq!(count(&store, "rollup_day", "2025-01-01T00:00:00Z").await, 0);
}

#[tokio::test]
async fn history_lists_the_incidents_touching_each_day() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path().join("t.db")).await.unwrap();
    let incidents = [
        // Across midnight into the first of March.
        r#"{"id":"inc-1","onset_at":"2026-02-28T23:50:00Z","resolved_at":"2026-03-01T00:10:00Z","services":{"voicemail":{}}}"#,
        // Still open.
        r#"{"id":"inc-2","onset_at":"2026-03-02T00:01:00Z","resolved_at":null,"services":{"voicemail":{},"web":{}}}"#,
        r#"{"id":"inc-3","onset_at":"2026-03-01T05:00:00Z","resolved_at":"2026-03-01T06:00:00Z","services":{"web":{}}}"#,
        // Over before the 90 days.
        r#"{"id":"inc-0","onset_at":"2025-06-01T00:00:00Z","resolved_at":"2025-06-01T01:00:00Z","services":{"voicemail":{}}}"#,
    ];
    store
        .read(move |c| {
            for (seq, body) in incidents.iter().enumerate() {
                c.execute(
                    "INSERT INTO incident (id, seq, status, services, body)
                     VALUES (?1, ?2, 'resolved', '', ?3)",
                    params![format!("x{seq}"), seq as i64, body],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
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
    assert_eq!(ids(web, 89), "inc-2");
    assert!(vm.days[..87].iter().all(|d| d.incidents.is_empty()));
}

/// A database of the version before `update_interval`: its routing rows read back as not
/// waiting, the new columns are added once, and what is written after survives a restart.
#[tokio::test]
async fn routing_state_of_an_earlier_version_migrates_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO route (receiver, incident, last_sent) VALUES ('noc', 'inc-1', ?1)",
            ["2026-07-05T14:00:00Z"],
        )
        .unwrap();
    }
    let (store, restored) = Store::open(path.clone()).await.unwrap();
    let before = RouteState {
        last_sent: t("2026-07-05T14:00:00Z"),
        last_update: None,
        update_pending: false,
    };
    assert_eq!(
        restored.routes,
        [("noc".to_string(), "inc-1".to_string(), before)]
    );
    let waiting = RouteState {
        last_sent: t("2026-07-05T14:05:00Z"),
        last_update: Some(t("2026-07-05T14:05:00Z")),
        update_pending: true,
    };
    store.route("noc", "inc-1", Some(waiting));
    store.route("noc", "inc-2", Some(before));
    store.route("pager", "inc-1", Some(waiting));
    store.route("pager", "inc-1", None);
    store.flush().await.unwrap();
    drop(store);

    let (_store, restored) = Store::open(path.clone()).await.unwrap();
    let mut routes = restored.routes;
    routes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        routes,
        [
            ("noc".to_string(), "inc-1".to_string(), waiting),
            ("noc".to_string(), "inc-2".to_string(), before),
        ]
    );
    let version: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "each migration once");
}
