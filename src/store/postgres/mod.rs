//! PostgreSQL store: the database several instances share. One writer task per store
//! commits what is queued as one transaction, retrying (and reconnecting) while the
//! database is unreachable; reads take a pooled connection. TLS is rustls, verifying the
//! server against the system's trust store.
//!
//! * `schema`: the migrations;
//! * `writer`: the writer task, fence checks and retries;
//! * `rollups`: rollup rows, written and read;
//! * `cluster`: members' heartbeats and leadership leases.

pub mod cluster;
mod rollups;
mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub use cluster::Cluster;

use super::cluster::parse_state;
use super::health::Health;
use super::write::Queued;
use super::{
    ConsoleSession, IncidentFilter, Notice, Pending, PostgresUrl, Reported, Restored, RouteState,
    StoreError, Subscription, TokenKind, VantageMinute, VantageState,
};
use crate::clock::Timestamp;
use crate::incident::{Change, Incident, PastIncident};
use crate::rollup::{OpenMinute, ServiceHistory, Uptime};
use crate::topology::MaintenanceWindow;

/// Connections: the writer's, and reads (HTTP, outbox, cluster) beside it.
const POOL_SIZE: usize = 8;
/// How long connecting, or waiting for a free connection, may take before a read fails.
const POOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads of a PostgreSQL store.
#[derive(Clone)]
pub struct Reader {
    pool: Pool,
}

/// Connects, migrates, reads what a restart resumes from and starts the writer task on
/// `writes`.
pub(super) async fn open(
    url: &PostgresUrl,
    writes: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
) -> Result<(Reader, Restored), StoreError> {
    let pool = pool(url)?;
    let mut client = pool.get().await?;
    schema::migrate(&mut client).await?;
    let restored = restore(&client).await?;
    drop(client);
    tokio::spawn(writer::write_loop(pool.clone(), writes, health));
    Ok((Reader { pool }, restored))
}

fn pool(url: &PostgresUrl) -> Result<Pool, StoreError> {
    let mut config = url.config();
    if config.get_application_name().is_none() {
        config.application_name("tocsin");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_TIMEOUT);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let manager = Manager::from_config(
        config,
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(POOL_TIMEOUT))
        .wait_timeout(Some(POOL_TIMEOUT))
        .build()
        .expect("a runtime is set for the pool's timeouts"))
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One statement, prepared once per connection.
async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

fn bodies<T: serde::de::DeserializeOwned>(rows: Vec<Row>) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(r.get::<_, &str>(0))?))
        .collect()
}

impl Reader {
    pub(super) async fn pending(
        &self,
        receiver: String,
        limit: usize,
    ) -> Result<(Vec<Pending>, usize), StoreError> {
        let client = self.pool.get().await?;
        let total: i64 = query(
            &client,
            "SELECT COUNT(*) FROM outbox WHERE receiver = $1",
            &[&receiver],
        )
        .await?[0]
            .get(0);
        let rows = query(
            &client,
            "SELECT seq, queued_at, body FROM outbox WHERE receiver = $1 ORDER BY seq LIMIT $2",
            &[&receiver, &(limit as i64)],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Pending {
                seq: row.get(0),
                queued_at: row.get(1),
                event: serde_json::from_str(row.get::<_, &str>(2))?,
            });
        }
        Ok((out, total as usize))
    }

    pub(super) async fn subscription_by_token(
        &self,
        kind: TokenKind,
        hash: String,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = match kind {
            TokenKind::Confirm => "SELECT body FROM subscription WHERE confirm_hash = $1",
            TokenKind::Unsubscribe => "SELECT body FROM subscription WHERE unsubscribe_hash = $1",
        };
        let client = self.pool.get().await?;
        let rows = query(&client, sql, &[&hash]).await?;
        Ok(bodies(rows)?.into_iter().next())
    }

    pub(super) async fn session(
        &self,
        hash: String,
        now: i64,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT body FROM console_session WHERE hash = $1 AND expires_at > $2",
            &[&hash, &now],
        )
        .await?;
        Ok(bodies(rows)?.into_iter().next())
    }

    pub(super) async fn confirmed_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT body FROM subscription WHERE confirmed ORDER BY created_at, id",
            &[],
        )
        .await?;
        bodies(rows)
    }

    pub(super) async fn due_notices(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<(Vec<Notice>, Option<Timestamp>), StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT n.seq, n.queued_at, n.attempts, n.body, s.body
             FROM subscription_notice n JOIN subscription s ON s.id = n.subscription
             WHERE n.due_at <= $1 ORDER BY n.seq LIMIT $2",
            &[&now, &(limit as i64)],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(Notice {
                seq: row.get(0),
                queued_at: super::utc(row.get(1)),
                attempts: u32::try_from(row.get::<_, i64>(2)).unwrap_or(u32::MAX),
                body: row.get(3),
                subscription: serde_json::from_str(row.get::<_, &str>(4))?,
            });
        }
        let next: Option<i64> = query(
            &client,
            "SELECT MIN(due_at) FROM subscription_notice WHERE due_at > $1",
            &[&now],
        )
        .await?[0]
            .get(0);
        Ok((out, next.map(super::utc)))
    }

    pub(super) async fn maintenances(&self) -> Result<Vec<MaintenanceWindow>, StoreError> {
        read_maintenances(&self.pool.get().await?, None).await
    }

    pub(super) async fn changes(&self, limit: usize) -> Result<Vec<Change>, StoreError> {
        let client = self.pool.get().await?;
        bodies(
            query(
                &client,
                "SELECT body FROM change ORDER BY at DESC, id LIMIT $1",
                &[&(limit as i64)],
            )
            .await?,
        )
    }

    pub(super) async fn change(&self, id: String) -> Result<Option<Change>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(&client, "SELECT body FROM change WHERE id = $1", &[&id]).await?;
        Ok(bodies(rows)?.pop())
    }

    pub(super) async fn incidents(
        &self,
        filter: IncidentFilter,
    ) -> Result<Vec<Incident>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT body FROM incident
             WHERE ($1::BOOLEAN IS NULL OR (status = 'resolved') <> $1)
               AND ($2::TEXT IS NULL OR $2 = ANY (services))
             ORDER BY seq DESC LIMIT $3",
            &[&filter.open, &filter.service, &(filter.limit as i64)],
        )
        .await?;
        bodies(rows)
    }

    pub(super) async fn incident(&self, id: String) -> Result<Option<Incident>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(&client, "SELECT body FROM incident WHERE id = $1", &[&id]).await?;
        Ok(bodies(rows)?.pop())
    }

    pub(super) async fn uptimes(
        &self,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<HashMap<String, Uptime>, StoreError> {
        rollups::read_uptimes(&self.pool.get().await?, now, open).await
    }

    pub(super) async fn services_history(
        &self,
        services: Vec<String>,
        now: Timestamp,
        open: OpenMinute,
    ) -> Result<Vec<ServiceHistory>, StoreError> {
        rollups::read_history(&self.pool.get().await?, &services, now, &open).await
    }
}

/// The cluster handle, and what vantages publish, read back.
impl Reader {
    pub(super) fn cluster(&self) -> Cluster {
        Cluster::new(self.pool.clone())
    }

    pub(super) async fn vantage_states(
        &self,
        since: Timestamp,
    ) -> Result<Vec<Reported>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT target, vantage, state, since, updated_at FROM vantage_state
             WHERE updated_at > $1 ORDER BY updated_at, target, vantage",
            &[&since],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Reported {
                    state: VantageState {
                        target: r.get(0),
                        vantage: r.get(1),
                        state: parse_state(r.get(2))?,
                        since: r.get(3),
                    },
                    updated_at: r.get(4),
                })
            })
            .collect()
    }

    pub(super) async fn vantage_minutes(
        &self,
        start: i64,
    ) -> Result<Vec<VantageMinute>, StoreError> {
        let client = self.pool.get().await?;
        let rows = query(
            &client,
            "SELECT vantage, target, start, probes, failures, latency_sum, latency_max,
                observed, downtime
             FROM vantage_rollup_minute WHERE start >= $1 ORDER BY start, vantage, target",
            &[&start],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| VantageMinute {
                vantage: r.get(0),
                target: r.get(1),
                start: r.get(2),
                probes: r.get::<_, i64>(3) as u64,
                failures: r.get::<_, i64>(4) as u64,
                latency_sum: r.get(5),
                latency_max: r.get(6),
                observed: r.get(7),
                down: r.get(8),
            })
            .collect())
    }
}

async fn restore(client: &impl GenericClient) -> Result<Restored, StoreError> {
    let mut restored = Restored::default();
    for row in query(client, "SELECT target, detector FROM target_state", &[]).await? {
        restored
            .detectors
            .insert(row.get(0), serde_json::from_str(row.get::<_, &str>(1))?);
    }
    restored.open_incidents = bodies(
        query(
            client,
            "SELECT body FROM incident WHERE status <> 'resolved' ORDER BY seq",
            &[],
        )
        .await?,
    )?;
    let last: Option<i64> = query(client, "SELECT MAX(seq) FROM incident", &[]).await?[0].get(0);
    restored.last_seq = last.unwrap_or(0) as u64;
    restored.epoch = query(client, "SELECT epoch FROM store_epoch", &[]).await?[0].get(0);
    let now = chrono::Utc::now();
    let resolved: Vec<Incident> = bodies(
        query(
            client,
            "SELECT body FROM incident WHERE status = 'resolved' ORDER BY seq",
            &[],
        )
        .await?,
    )?;
    restored.history = resolved
        .iter()
        .filter(|i| now - i.onset_at <= chrono::Duration::days(60))
        .map(PastIncident::of)
        .collect();
    restored.changes = bodies(
        query(
            client,
            "SELECT body FROM change WHERE at >= $1 ORDER BY at",
            &[&(now - chrono::Duration::days(9))],
        )
        .await?,
    )?;
    restored.maintenances = read_maintenances(client, Some(now)).await?;
    for row in query(
        client,
        "SELECT receiver, incident, last_sent, last_update, update_pending FROM route",
        &[],
    )
    .await?
    {
        let state = RouteState {
            last_sent: row.get(2),
            last_update: row.get(3),
            update_pending: row.get(4),
        };
        restored.routes.push((row.get(0), row.get(1), state));
    }
    Ok(restored)
}

/// Windows by start; with `ending_after`, only those that end after it.
async fn read_maintenances(
    client: &impl GenericClient,
    ending_after: Option<Timestamp>,
) -> Result<Vec<MaintenanceWindow>, StoreError> {
    let rows = query(
        client,
        "SELECT body FROM maintenance WHERE $1::TIMESTAMPTZ IS NULL OR ends_at > $1",
        &[&ending_after],
    )
    .await?;
    let mut out: Vec<MaintenanceWindow> = bodies(rows)?;
    out.sort_by(|a, b| (a.starts_at, &a.id).cmp(&(b.starts_at, &b.id)));
    Ok(out)
}
