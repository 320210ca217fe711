//! The store's behaviour, written once and run against both backends: SQLite in a
//! temporary directory, and a fresh database on a real PostgreSQL (see
//! `tests/common/postgres.rs`). What only PostgreSQL has (leases, fences, membership,
//! reconnecting) is tested on it alone, in `cluster`.

#[path = "../../../tests/common/postgres.rs"]
mod pg;

/// Runs each named `async fn(Kind)` of the calling module as one test per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(crate::store::tests::Kind::Sqlite).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(crate::store::tests::Kind::Postgres).await
            })*
        }
    };
}

mod cluster;
mod rollups;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::SubsecRound;

use super::*;
use crate::detector::{Observation, TargetState, Thresholds};
use crate::event::{AlertType, new_event_id};
use crate::incident::{
    ComponentStatus, GroupImpact, Health, Impact, IncidentStatus, Period, Scope, ServiceEntry,
    Severity,
};
use crate::rollup::{Counters, Resolution, Row, Seconds, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sqlite,
    Postgres,
}

/// Where a test's store lives.
enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl TestDb {
    async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => TestDb::Sqlite(tempfile::tempdir().unwrap()),
            Kind::Postgres => TestDb::Postgres(pg::fresh_database(None).await),
        }
    }

    fn spec(&self) -> StorageSpec {
        let backend = match self {
            TestDb::Sqlite(dir) => Backend::Sqlite(dir.path().join("tocsin.db")),
            TestDb::Postgres(url) => Backend::Postgres(PostgresUrl::parse(url).unwrap()),
        };
        StorageSpec {
            backend,
            raw_retention: Duration::from_secs(48 * 3600),
            rollup_retention: Duration::from_secs(400 * 86400),
        }
    }

    async fn open(&self) -> (Store, Restored) {
        Store::open(&self.spec()).await.unwrap()
    }

    /// One integer (a count, a maximum) from `sql`, straight from the database.
    async fn scalar(&self, sql: &str) -> i64 {
        match self {
            TestDb::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("tocsin.db")).unwrap();
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            TestDb::Postgres(url) => {
                let client = pg_client(url).await;
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// Runs `sql` straight on the database.
    async fn execute(&self, sql: &str) {
        match self {
            TestDb::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("tocsin.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            TestDb::Postgres(url) => pg_client(url).await.batch_execute(sql).await.unwrap(),
        }
    }
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A receiver told of an incident at `at`, by an opening or update, nothing waiting.
fn sent(at: Timestamp) -> Option<RouteState> {
    Some(RouteState {
        last_sent: at,
        last_update: Some(at),
        update_pending: false,
    })
}

/// `seconds` before now, to the second (PostgreSQL keeps microseconds).
fn ago(seconds: i64) -> Timestamp {
    chrono::Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(seconds)
}

fn incident(id: &str, seq: u64, services: &[&str], onset: Timestamp) -> Incident {
    Incident {
        id: id.into(),
        seq,
        status: IncidentStatus::Investigating,
        severity: Severity::Sev3,
        impact: Impact::Major,
        scope: Scope::Localized,
        platform_concentrated: false,
        onset_at: onset,
        detected_at: onset,
        impact_end_at: None,
        monitoring_at: None,
        resolved_at: None,
        services: services
            .iter()
            .map(|s| {
                let entry = ServiceEntry {
                    name: s.to_string(),
                    subscribers: 1000,
                    component_status: ComponentStatus::PartialOutage,
                    class: Default::default(),
                    through: None,
                };
                (s.to_string(), entry)
            })
            .collect(),
        groups: vec![GroupImpact {
            group: "g".into(),
            service: services[0].into(),
            platform: Some("vm-a".into()),
            region: None,
            subscribers: 10,
            periods: vec![Period {
                health: Health::Down,
                start: onset,
                end: None,
            }],
        }],
        suspected_cause: None,
        recurrence: None,
        acknowledged_at: None,
        reporting: BTreeMap::new(),
        announced_affected: None,
        steps_omitted: 0,
        timeline: vec![],
    }
}

fn resolved(mut inc: Incident, at: Timestamp) -> Incident {
    inc.status = IncidentStatus::Resolved;
    inc.resolved_at = Some(at);
    inc
}

fn event(inc: &Incident, at: Timestamp) -> AlertEvent {
    AlertEvent {
        kind: AlertType::Opened,
        id: new_event_id(),
        occurred_at: at,
        incident: Some(inc.view(at)),
        vantage: None,
    }
}

fn window(id: &str, starts_at: Timestamp, ends_at: Timestamp) -> MaintenanceWindow {
    MaintenanceWindow {
        id: id.into(),
        services: vec!["web".into()],
        starts_at,
        ends_at,
        summary: format!("window {id}"),
    }
}

fn change(id: &str, at: Timestamp) -> Change {
    Change {
        id: id.into(),
        platform: Some("vm-a".into()),
        service: None,
        summary: format!("change {id}"),
        at,
    }
}

/// A detector one failure (at `at`) into a streak: what a restart must resume mid-way.
fn mid_streak(at: Timestamp) -> Detector {
    let mut detector = Detector::default();
    let thresholds = Thresholds {
        failure: 3,
        success: 2,
        degraded_latency: Duration::from_secs(2),
    };
    detector.observe(Observation::Failure, at, &thresholds);
    detector
}

on_both_backends!(
    a_restart_resumes_from_what_was_stored,
    the_outbox_keeps_order_and_settles,
    incidents_are_listed_by_status_and_service,
    maintenances_and_changes_are_listed,
    migrations_apply_once_and_a_newer_schema_is_refused,
    vantage_states_and_minutes_are_kept_per_vantage,
    routing_state_round_trips_and_older_rows_read_as_not_waiting,
    a_database_keeps_the_epoch_it_was_created_with,
    subscriptions_confirm_queue_retry_and_delete_with_their_address,
    console_sessions_outlive_a_restart_until_they_expire_or_end,
);

/// A console session is found by its hash from any handle on the database (another
/// instance, or this one after a restart) until it expires or is deleted; saving one
/// forgets those already expired.
async fn console_sessions_outlive_a_restart_until_they_expire_or_end(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let now = ago(0).trunc_subsecs(0);
    let session = |user: &str, lasts: i64| ConsoleSession {
        user: user.into(),
        role: "operator".into(),
        created_at: now,
        expires_at: now + chrono::Duration::seconds(lasts),
    };
    store.save_session("h-alice", &session("alice", 3600), now);
    store.save_session("h-bob", &session("bob", 60), now);
    store.flush().await.unwrap();
    drop(store);

    let (store, _) = db.open().await;
    assert_eq!(
        store.session("h-alice".into(), now).await.unwrap(),
        Some(session("alice", 3600))
    );
    assert_eq!(store.session("h-nobody".into(), now).await.unwrap(), None);
    let later = now + chrono::Duration::seconds(120);
    assert_eq!(store.session("h-bob".into(), later).await.unwrap(), None);
    store.save_session("h-carol", &session("carol", 3600), later);
    store.delete_session("h-alice");
    store.flush().await.unwrap();
    assert_eq!(store.session("h-alice".into(), now).await.unwrap(), None);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM console_session").await,
        1,
        "bob's expired session went when carol's was saved"
    );
}

fn subscription(id: &str, email: &str, at: Timestamp) -> Subscription {
    Subscription {
        id: id.into(),
        channel: Channel::Email(email.into()),
        services: vec!["voicemail".into()],
        created_at: at,
        confirmed: false,
    }
}

/// A subscription is found by its tokens' hashes, confirmed, sent notices that can be put
/// off and settled; deleting it deletes its address and what was queued for it, and
/// unconfirmed ones expire.
async fn subscriptions_confirm_queue_retry_and_delete_with_their_address(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let now = ago(0);
    store.subscribe(
        &subscription("sub_a", "a@example.net", now),
        Some("ca".into()),
        "ua".into(),
    );
    store.subscribe(
        &subscription("sub_b", "b@example.net", ago(7200)),
        Some("cb".into()),
        "ub".into(),
    );
    store.flush().await.unwrap();
    let found = store
        .subscription_by_token(TokenKind::Confirm, "ca".into())
        .await
        .unwrap();
    assert_eq!(found.map(|s| s.id), Some("sub_a".to_string()));
    assert!(
        store
            .subscription_by_token(TokenKind::Confirm, "ua".into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.confirmed_subscriptions().await.unwrap().is_empty());

    store.confirm_subscription("sub_a");
    // Notices for an unknown subscription are not kept.
    store.queue_notices(
        vec!["sub_a".into(), "sub_gone".into()],
        "{\"n\":1}".into(),
        now,
    );
    store.queue_notices(vec!["sub_a".into()], "{\"n\":2}".into(), now);
    store.flush().await.unwrap();
    let confirmed = store.confirmed_subscriptions().await.unwrap();
    assert_eq!(confirmed.len(), 1);
    assert!(confirmed[0].confirmed);
    assert!(
        store
            .subscription_by_token(TokenKind::Confirm, "ca".into())
            .await
            .unwrap()
            .is_none(),
        "a confirmation link works once"
    );
    let (due, next) = store.due_notices(now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(),
        ["{\"n\":1}", "{\"n\":2}"]
    );
    assert_eq!(
        due[0].subscription.channel,
        Channel::Email("a@example.net".into())
    );
    assert_eq!(next, None);

    let later = now + chrono::Duration::seconds(30);
    store.notice_retry(due[0].seq, later, 1);
    store.notice_done(due[1].seq);
    store.flush().await.unwrap();
    let (due_now, next) = store.due_notices(now, 10).await.unwrap();
    assert!(due_now.is_empty());
    assert_eq!(next, Some(later));
    let (due_later, _) = store.due_notices(later, 10).await.unwrap();
    assert_eq!(due_later.len(), 1);
    assert_eq!(due_later[0].attempts, 1);

    // sub_b was never confirmed and is older than an hour.
    store.expire_unconfirmed(ago(3600));
    store.unsubscribe("sub_a");
    store.flush().await.unwrap();
    assert_eq!(db.scalar("SELECT COUNT(*) FROM subscription").await, 0);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM subscription_notice").await,
        0
    );
    assert!(
        store
            .subscription_by_token(TokenKind::Unsubscribe, "ua".into())
            .await
            .unwrap()
            .is_none()
    );
}

/// A new database draws an epoch and keeps it; another database has another, so the ids
/// of a database made anew (the old one lost) never repeat. One that had incidents before
/// epochs keeps the empty epoch: its ids keep their form.
async fn a_database_keeps_the_epoch_it_was_created_with(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, first) = db.open().await;
    assert_eq!(first.epoch.len(), 8, "{:?}", first.epoch);
    assert!(first.epoch.chars().all(|c| c.is_ascii_hexdigit()));
    store.save_incident(&incident("inc-000001", 1, &["voicemail"], ago(60)));
    store.flush().await.unwrap();
    drop(store);
    assert_eq!(db.open().await.1.epoch, first.epoch);
    let other = TestDb::new(kind).await;
    assert_ne!(other.open().await.1.epoch, first.epoch);

    // Back to version 4, as a database from before epochs (and what came after).
    db.execute(
        "DROP TABLE store_epoch; DROP TABLE subscription_notice; DROP TABLE subscription;
         DROP TABLE console_session; DROP INDEX incident_resolved;
         ALTER TABLE incident DROP COLUMN onset_unix;
         ALTER TABLE incident DROP COLUMN resolved_unix;
         DELETE FROM schema_migrations WHERE version >= 5",
    )
    .await;
    assert_eq!(
        db.open().await.1.epoch,
        "",
        "a database with incidents before epochs"
    );
}

/// What routing keeps per receiver and incident survives a restart; a row stored before
/// `update_interval` was kept (no `last_update`) reads as nothing waiting.
async fn routing_state_round_trips_and_older_rows_read_as_not_waiting(kind: Kind) {
    let db = TestDb::new(kind).await;
    drop(db.open().await);
    db.execute(
        "INSERT INTO route (receiver, incident, last_sent)
         VALUES ('noc', 'inc-1', '2026-07-05T14:00:00Z')",
    )
    .await;
    let (store, restored) = db.open().await;
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
    let (_store, restored) = db.open().await;
    let mut routes = restored.routes;
    routes.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        routes,
        [
            ("noc".to_string(), "inc-1".to_string(), waiting),
            ("noc".to_string(), "inc-2".to_string(), before),
        ]
    );
}

async fn a_restart_resumes_from_what_was_stored(kind: Kind) {
    let db = TestDb::new(kind).await;
    let now = ago(0);
    let ago = |seconds: i64| now - chrono::Duration::seconds(seconds);
    let (store, restored) = db.open().await;
    assert!(restored.open_incidents.is_empty() && restored.detectors.is_empty());
    assert_eq!(restored.last_seq, 0);

    let detector = mid_streak(ago(30));
    store.save_target("www", &detector);
    let past = resolved(incident("inc-1", 1, &["web"], ago(7200)), ago(3600));
    let long_past = resolved(
        incident("inc-0", 7, &["web"], ago(70 * 86400)),
        ago(69 * 86400),
    );
    let open = incident("inc-2", 8, &["web", "voicemail"], ago(600));
    for inc in [&past, &long_past, &open] {
        store.save_incident(inc);
    }
    let opened = event(&open, ago(590));
    store.enqueue("noc", &opened, ago(590));
    store.route("noc", "inc-2", sent(ago(590)));
    store.route("noc", "inc-1", sent(ago(3600)));
    store.route("noc", "inc-1", None);
    store.save_change(&change("recent", ago(86400)));
    store.save_change(&change("old", ago(10 * 86400)));
    store.save_maintenance(&window("ended", ago(7200), ago(3600)));
    store.save_maintenance(&window("coming", ago(-3600), ago(-7200)));
    store.flush().await.unwrap();
    drop(store);

    let (store, restored) = db.open().await;
    assert_eq!(
        restored.detectors,
        HashMap::from([("www".into(), detector)])
    );
    assert_eq!(restored.open_incidents, vec![open]);
    assert_eq!(restored.last_seq, 8, "the highest sequence ever used");
    assert_eq!(
        restored.history,
        vec![PastIncident::of(&past)],
        "resolved in the last 60 days"
    );
    assert_eq!(restored.changes, vec![change("recent", ago(86400))]);
    assert_eq!(
        restored.routes,
        vec![("noc".into(), "inc-2".into(), sent(ago(590)).unwrap())]
    );
    assert_eq!(
        restored.maintenances,
        vec![window("coming", ago(-3600), ago(-7200))]
    );
    let (pending, total) = store.pending("noc".into(), 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(pending[0].event, opened);
    assert_eq!(pending[0].queued_at, ago(590));
}

async fn the_outbox_keeps_order_and_settles(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let inc = incident("inc-1", 1, &["web"], ago(60));
    let events: Vec<AlertEvent> = (0..3).map(|i| event(&inc, ago(50 - i))).collect();
    for e in &events {
        store.enqueue("a", e, e.occurred_at);
    }
    store.enqueue("b", &events[0], ago(50));
    store.route("b", "inc-1", sent(ago(50)));
    store.flush().await.unwrap();

    let (first, total) = store.pending("a".into(), 2).await.unwrap();
    assert_eq!(total, 3);
    let ids = |p: &[Pending]| p.iter().map(|p| p.event.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), [events[0].id.clone(), events[1].id.clone()]);
    store.settle(first[0].seq).await.unwrap();
    let (rest, total) = store.pending("a".into(), 10).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(ids(&rest), [events[1].id.clone(), events[2].id.clone()]);
    assert!(rest[0].seq < rest[1].seq);

    store.discard_receivers_except(vec!["a".into()]);
    store.flush().await.unwrap();
    assert_eq!(store.pending("b".into(), 10).await.unwrap().1, 0);
    assert_eq!(store.pending("a".into(), 10).await.unwrap().1, 2);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM route WHERE receiver = 'b'")
            .await,
        0
    );
}

async fn incidents_are_listed_by_status_and_service(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let one = resolved(incident("inc-1", 1, &["web"], ago(900)), ago(800));
    let two = incident("inc-2", 2, &["web", "voicemail"], ago(700));
    let three = incident("inc-3", 3, &["a_b"], ago(600));
    let four = incident("inc-4", 4, &["axb"], ago(500));
    for inc in [&one, &two, &three, &four] {
        store.save_incident(inc);
    }
    store.flush().await.unwrap();
    let list = |open: Option<bool>, service: Option<&str>, limit: usize| {
        let store = store.clone();
        let filter = IncidentFilter {
            open,
            service: service.map(str::to_string),
            limit,
        };
        async move {
            let found = store.incidents(filter).await.unwrap();
            found.into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, None, 10).await,
        ["inc-4", "inc-3", "inc-2", "inc-1"]
    );
    assert_eq!(list(None, None, 2).await, ["inc-4", "inc-3"]);
    assert_eq!(
        list(Some(true), None, 10).await,
        ["inc-4", "inc-3", "inc-2"]
    );
    assert_eq!(list(Some(false), None, 10).await, ["inc-1"]);
    assert_eq!(list(None, Some("web"), 10).await, ["inc-2", "inc-1"]);
    assert_eq!(list(Some(true), Some("voicemail"), 10).await, ["inc-2"]);
    assert_eq!(list(None, Some("a_b"), 10).await, ["inc-3"], "no wildcard");
    assert_eq!(list(None, Some("voice"), 10).await, Vec::<String>::new());
    assert_eq!(store.incident("inc-2".into()).await.unwrap(), Some(two));
    assert_eq!(store.incident("inc-9".into()).await.unwrap(), None);
}

async fn maintenances_and_changes_are_listed(kind: Kind) {
    let db = TestDb::new(kind).await;
    let (store, _) = db.open().await;
    let later = window("later", ago(-7200), ago(-9000));
    let sooner = window("sooner", ago(-3600), ago(-5400));
    store.save_maintenance(&later);
    store.save_maintenance(&sooner);
    let mut moved = sooner.clone();
    moved.summary = "moved".into();
    store.save_maintenance(&moved);
    for (id, at) in [("c1", ago(300)), ("c3", ago(100)), ("c2", ago(200))] {
        store.save_change(&change(id, at));
    }
    store.flush().await.unwrap();
    assert_eq!(store.maintenances().await.unwrap(), vec![moved, later]);
    let ids = |changes: Vec<Change>| changes.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(ids(store.changes(2).await.unwrap()), ["c3", "c2"]);
    assert_eq!(ids(store.changes(10).await.unwrap()), ["c3", "c2", "c1"]);
}

async fn migrations_apply_once_and_a_newer_schema_is_refused(kind: Kind) {
    let db = TestDb::new(kind).await;
    if kind == Kind::Postgres {
        // Instances starting together: each migration still runs once.
        let spec = db.spec();
        let (a, b) = tokio::join!(Store::open(&spec), Store::open(&spec));
        drop((a.unwrap(), b.unwrap()));
    }
    drop(db.open().await);
    drop(db.open().await);
    let applied = db.scalar("SELECT COUNT(*) FROM schema_migrations").await;
    let versions = db
        .scalar("SELECT COUNT(DISTINCT version) FROM schema_migrations")
        .await;
    assert_eq!(applied, versions, "each migration is recorded once");
    assert_eq!(
        db.scalar("SELECT MAX(version) FROM schema_migrations")
            .await,
        applied,
        "versions 1..=n"
    );

    db.execute(
        "INSERT INTO schema_migrations (version, name, applied_at)
         VALUES (999, 'from a newer tocsin', '2030-01-01T00:00:00Z')",
    )
    .await;
    match Store::open(&db.spec()).await {
        Err(StoreError::SchemaTooNew { found, known }) => {
            assert_eq!((found, known), (999, applied));
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

async fn vantage_states_and_minutes_are_kept_per_vantage(kind: Kind) {
    let db = TestDb::new(kind).await;
    let now = ago(0);
    let ago = |seconds: i64| now - chrono::Duration::seconds(seconds);
    let (store, _) = db.open().await;
    let state = |vantage: &str, state: TargetState, since: Timestamp| VantageState {
        target: "www".into(),
        vantage: vantage.into(),
        state,
        since,
    };
    store.save_vantage_state(state("paris-1", TargetState::Up, ago(600)));
    store.save_vantage_state(state("lyon-1", TargetState::Up, ago(590)));
    store.flush().await.unwrap();
    let first = store.vantage_states(Timestamp::UNIX_EPOCH).await.unwrap();
    assert_eq!(first.len(), 2);
    let seen = first.iter().map(|r| r.updated_at).max().unwrap();

    // Two transitions in one batch: the last one stands.
    store.save_vantage_state(state("paris-1", TargetState::Degraded, ago(70)));
    store.save_vantage_state(state("paris-1", TargetState::Down, ago(60)));
    store.flush().await.unwrap();
    let since = store.vantage_states(seen).await.unwrap();
    assert_eq!(
        since.iter().map(|r| r.state.clone()).collect::<Vec<_>>(),
        [state("paris-1", TargetState::Down, ago(60))]
    );
    assert!(since[0].updated_at > seen);
    let all = store.vantage_states(Timestamp::UNIX_EPOCH).await.unwrap();
    assert_eq!(all.len(), 2, "one row per target and vantage");

    let start = Resolution::Minute.floor(ago(120).timestamp());
    let minute = |probes: u64, failures: u64, latency: f64| ClosedMinute {
        start,
        rows: vec![
            Row {
                subject: Subject::Target,
                id: "www".into(),
                counters: Counters {
                    probes,
                    failures,
                    latency_sum: latency,
                    latency_max: latency,
                    time: Seconds {
                        observed: 30.0,
                        down: 10.0,
                        ..Seconds::default()
                    },
                    ..Default::default()
                },
            },
            Row {
                subject: Subject::Service,
                id: "web".into(),
                counters: Default::default(),
            },
        ],
    };
    store.save_vantage_rollups("paris-1", minute(2, 1, 0.25));
    store.save_vantage_rollups("paris-1", minute(3, 0, 0.5));
    store.save_vantage_rollups("lyon-1", minute(1, 1, 0.0));
    store.flush().await.unwrap();
    let rows = store.vantage_minutes(start).await.unwrap();
    assert_eq!(
        rows,
        vec![
            VantageMinute {
                vantage: "lyon-1".into(),
                target: "www".into(),
                start,
                probes: 1,
                failures: 1,
                latency_sum: 0.0,
                latency_max: 0.0,
                observed: 30.0,
                down: 10.0,
            },
            VantageMinute {
                vantage: "paris-1".into(),
                target: "www".into(),
                start,
                probes: 5,
                failures: 1,
                latency_sum: 0.75,
                latency_max: 0.5,
                observed: 60.0,
                down: 20.0,
            },
        ],
        "service rows are not a vantage's"
    );
    assert!(store.vantage_minutes(start + 60).await.unwrap().is_empty());
    store.prune_rollups(
        chrono::Utc::now(),
        Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    store.flush().await.unwrap();
    assert!(store.vantage_minutes(0).await.unwrap().is_empty());
}

/// SQLite files made before versioned migrations keep their data.
#[tokio::test]
async fn a_sqlite_file_from_before_migrations_is_adopted() {
    let db = TestDb::new(Kind::Sqlite).await;
    db.execute(
        "CREATE TABLE target_state (target TEXT PRIMARY KEY, detector TEXT NOT NULL);
         CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, receiver TEXT NOT NULL,
            queued_at TEXT NOT NULL, body TEXT NOT NULL);",
    )
    .await;
    let detector = mid_streak(ago(30));
    let json = serde_json::to_string(&detector).unwrap();
    db.execute(&format!(
        "INSERT INTO target_state VALUES ('www', '{json}')"
    ))
    .await;
    let (_, restored) = db.open().await;
    assert_eq!(restored.detectors["www"], detector);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM schema_migrations").await,
        db.scalar("SELECT MAX(version) FROM schema_migrations")
            .await
    );
}
