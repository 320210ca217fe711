//! What only PostgreSQL has: leadership leases and their fencing tokens, membership, and a
//! writer that outlives a database restart. Waits are bounded polls of the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Kind, TestDb, ago, event, incident, mid_streak, pg, sent};
use crate::store::postgres::cluster::Member;
use crate::store::{Backend, Fence, IncidentFilter, PostgresUrl, StorageSpec, Store, StoreError};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

/// Polls `condition` every 50 ms until it holds; panics after 20 s.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fence(holder: &str, token: i64) -> Option<Fence> {
    Some(Fence {
        scope: "leader".into(),
        holder: holder.into(),
        token,
    })
}

#[tokio::test]
async fn one_instance_wins_leadership_and_a_stale_token_is_refused() {
    let db = TestDb::new(Kind::Postgres).await;
    let ((a, _), (b, _)) = (db.open().await, db.open().await);
    let (ca, cb) = (a.cluster().unwrap(), b.cluster().unwrap());
    // Several races, each for its own scope: exactly one winner each time.
    for scope in ["leader", "s1", "s2", "s3", "s4"] {
        let (ta, tb) = tokio::join!(
            ca.acquire_or_renew_leadership(scope, "a", LONG),
            cb.acquire_or_renew_leadership(scope, "b", LONG)
        );
        match (ta.unwrap(), tb.unwrap()) {
            (Some(1), None) | (None, Some(1)) => {}
            other => panic!("{scope}: {other:?}"),
        }
    }
    let leader = ca.current_leader("leader").await.unwrap().unwrap();
    let (first, first_store, first_cluster, second, second_store, second_cluster) =
        if leader.instance_id == "a" {
            ("a", &a, &ca, "b", &b, &cb)
        } else {
            ("b", &b, &cb, "a", &a, &ca)
        };
    assert_eq!((leader.token, leader.vantage), (1, None));

    // Renewal keeps the token; the other cannot take a live lease.
    let renew = |lease| first_cluster.acquire_or_renew_leadership("leader", first, lease);
    assert_eq!(renew(LONG).await.unwrap(), Some(1));
    let take = || second_cluster.acquire_or_renew_leadership("leader", second, LONG);
    assert_eq!(take().await.unwrap(), None);

    // The leader writes under its token; then its lease runs out.
    first_store.set_fence(fence(first, 1));
    first_store.save_incident(&incident("inc-1", 1, &["web"], ago(60)));
    first_store.flush().await.unwrap();
    assert_eq!(renew(SHORT).await.unwrap(), Some(1));
    let taken = Arc::new(std::sync::Mutex::new(None));
    eventually("the lease to run out and pass to the other", || async {
        let token = take().await.unwrap();
        *taken.lock().unwrap() = token;
        token.is_some()
    })
    .await;
    assert_eq!(
        *taken.lock().unwrap(),
        Some(2),
        "a new holder: the token grows by one"
    );
    second_cluster
        .heartbeat(second, "lyon-1", LONG)
        .await
        .unwrap();
    let leader = ca.current_leader("leader").await.unwrap().unwrap();
    assert_eq!(
        (leader.instance_id.as_str(), leader.token, leader.vantage),
        (second, 2, Some("lyon-1".to_string()))
    );
    assert_eq!(renew(LONG).await.unwrap(), None, "the former leader");

    // The former leader's writes, still under token 1, are refused; the new one's land.
    first_store.save_incident(&incident("inc-2", 2, &["web"], ago(30)));
    match first_store.flush().await {
        Err(StoreError::Fenced { scope, token }) => {
            assert_eq!((scope.as_str(), token), ("leader", 1))
        }
        other => panic!("a stale token's write: {other:?}"),
    }
    second_store.set_fence(fence(second, 2));
    second_store.save_incident(&incident("inc-3", 3, &["web"], ago(20)));
    second_store.flush().await.unwrap();
    let stored = second_store
        .incidents(IncidentFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = stored.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["inc-3", "inc-1"]);

    // Stepping down ends the lease at once; the next holder gets the next token.
    assert!(second_cluster.step_down("leader", second, 2).await.unwrap());
    assert!(!second_cluster.step_down("leader", second, 2).await.unwrap());
    assert_eq!(ca.current_leader("leader").await.unwrap(), None);
    assert_eq!(renew(LONG).await.unwrap(), Some(3));
}

#[tokio::test]
async fn a_fenced_batch_is_refused_and_its_hooks_do_not_run() {
    let db = TestDb::new(Kind::Postgres).await;
    let (store, _) = db.open().await;
    let cluster = store.cluster().unwrap();
    let token = cluster
        .acquire_or_renew_leadership("leader", "me", LONG)
        .await
        .unwrap()
        .unwrap();
    store.set_fence(fence("me", token));
    let first = incident("inc-1", 1, &["web"], ago(60));
    store.save_incident(&first);
    store.enqueue("noc", &event(&first, ago(60)), ago(60));
    let woke = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&woke);
    store.after_commit(move || flag.store(true, Ordering::SeqCst));
    store.flush().await.unwrap();
    assert!(
        woke.load(Ordering::SeqCst),
        "a committed batch runs its hooks"
    );

    // Another instance takes over.
    assert!(cluster.step_down("leader", "me", token).await.unwrap());
    assert_eq!(
        cluster
            .acquire_or_renew_leadership("leader", "other", LONG)
            .await
            .unwrap(),
        Some(token + 1)
    );
    let second = incident("inc-2", 2, &["web"], ago(30));
    store.save_incident(&second);
    store.enqueue("noc", &event(&second, ago(30)), ago(30));
    store.route("noc", "inc-2", sent(ago(30)));
    let detector = mid_streak(ago(30));
    store.save_target("www", &detector); // not a leader write: stored all the same
    let woke = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&woke);
    store.after_commit(move || flag.store(true, Ordering::SeqCst));
    assert!(matches!(
        store.flush().await,
        Err(StoreError::Fenced { token: t, .. }) if t == token
    ));
    assert!(
        !woke.load(Ordering::SeqCst),
        "nothing is alerted from a fenced batch"
    );
    assert_eq!(store.incident("inc-2".into()).await.unwrap(), None);
    let (pending, total) = store.pending("noc".into(), 10).await.unwrap();
    assert_eq!(
        (
            total,
            pending[0].event.incident.as_ref().unwrap().id.as_str()
        ),
        (1, "inc-1")
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM route").await, 0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM target_state").await, 1);
    // Later hooks under the same stale fence are refused too, whatever batch they land in.
    let flag = Arc::clone(&woke);
    store.after_commit(move || flag.store(true, Ordering::SeqCst));
    assert!(matches!(
        store.flush().await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(!woke.load(Ordering::SeqCst));
}

#[tokio::test]
async fn heartbeats_list_the_live_members() {
    let db = TestDb::new(Kind::Postgres).await;
    let (store, _) = db.open().await;
    let cluster = store.cluster().unwrap();
    let ids = |members: Vec<Member>| {
        members
            .into_iter()
            .map(|m| format!("{}/{}", m.vantage, m.instance_id))
            .collect::<Vec<_>>()
    };
    let me = cluster.heartbeat("a", "paris-1", LONG).await.unwrap();
    assert_eq!(ids(me.clone()), ["paris-1/a"]);
    assert!(me[0].lease_until > chrono::Utc::now() + chrono::Duration::seconds(50));
    cluster.heartbeat("b", "lyon-1", LONG).await.unwrap();
    let all = cluster.heartbeat("c", "paris-1", SHORT).await.unwrap();
    assert_eq!(ids(all), ["lyon-1/b", "paris-1/a", "paris-1/c"]);
    eventually("c's lease to run out", || async {
        ids(cluster.heartbeat("a", "paris-1", LONG).await.unwrap()) == ["lyon-1/b", "paris-1/a"]
    })
    .await;
    cluster.leave("b").await.unwrap();
    assert_eq!(
        ids(cluster.heartbeat("a", "paris-1", LONG).await.unwrap()),
        ["paris-1/a"]
    );
    assert!(
        TestDb::new(Kind::Sqlite)
            .await
            .open()
            .await
            .0
            .cluster()
            .is_none(),
        "one SQLite instance has no cluster"
    );
}

/// PostgreSQL stops under a running writer: what is queued meanwhile is kept, and lands
/// once it is back.
#[tokio::test]
async fn writes_queued_while_postgres_restarts_land() {
    let server = tokio::task::spawn_blocking(pg::Server::start)
        .await
        .unwrap();
    let url = pg::fresh_database(Some(&server)).await;
    let spec = StorageSpec {
        backend: Backend::Postgres(PostgresUrl::parse(&url).unwrap()),
        raw_retention: Duration::from_secs(3600),
        rollup_retention: Duration::from_secs(86400),
    };
    let (store, _) = Store::open(&spec).await.unwrap();
    let first = incident("inc-1", 1, &["web"], ago(60));
    store.save_incident(&first);
    store.flush().await.unwrap();

    let server = Arc::new(server);
    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    let second = incident("inc-2", 2, &["web"], ago(30));
    store.save_incident(&second);
    let opened = event(&second, ago(30));
    store.enqueue("noc", &opened, ago(30));
    let detector = mid_streak(ago(30));
    store.save_target("www", &detector);
    // The writer is retrying now: a flush waits rather than fail.
    let flushing = {
        let store = store.clone();
        tokio::spawn(async move { store.flush().await })
    };
    assert!(
        store.incident("inc-1".into()).await.is_err(),
        "the server is down"
    );
    let s = Arc::clone(&server);
    tokio::task::spawn_blocking(move || s.start_again())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), flushing)
        .await
        .expect("the queued writes land once PostgreSQL is back")
        .unwrap()
        .unwrap();
    drop(store);

    let (store, restored) = Store::open(&spec).await.unwrap();
    assert_eq!(restored.open_incidents, vec![first, second]);
    assert_eq!(restored.detectors["www"], detector);
    assert_eq!(
        store.pending("noc".into(), 10).await.unwrap().0[0].event,
        opened
    );
    drop(store);
    drop(Arc::into_inner(server).expect("the test holds the last reference"));
}
