//! Wiring: builds every component from [`Settings`], runs until `shutdown` is cancelled,
//! reloads on SIGHUP or `POST /-/reload`, and shuts down in order (schedulers, then the
//! engine, which flushes the store, then alert delivery, then the HTTP server). It tells
//! systemd about each step through `notify`.
//!
//! At start it raises the soft descriptor limit to the hard one and splits it between the
//! listener's connections and a reserve for probes, so that clients of the listener can
//! never take the descriptors probes need (and make healthy targets look down).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::outbox::Deliveries;
use crate::clock::Clock;
use crate::cluster::shard::Assignment;
use crate::config::{self, ConfigSource, Settings};
use crate::engine::cluster::{Clustered, run_membership};
use crate::engine::{Control, Engine, Identity};
use crate::http::{AppState, ListenerSpec, ReloadRequest, SiteSpec, router};
use crate::metrics::Metrics;
use crate::notify;
use crate::probe::{Prober, ProberError};
use crate::scheduler::{self, SchedulerContext};
use crate::store::{Store, StoreError};

/// Probes allowed in flight at once, across all targets and `/probe`, when the descriptor
/// limit allows (it is lowered to fit otherwise).
pub const MAX_PROBES_IN_FLIGHT: usize = 1024;

/// Descriptors one probe holds at most: its socket, and the resolver's while it resolves.
const FDS_PER_PROBE: u64 = 2;

/// Descriptors that are neither connections nor probes: the store (database, WAL, shared
/// memory), the runtime (epoll, eventfd, signal pipe), standard streams, the receivers'
/// HTTP connections, and a margin.
const FIXED_FDS: u64 = 128;

/// Fewest connections the listener is lowered to while the probes keep their whole reserve;
/// below it both are lowered.
const MIN_CONNECTIONS: u64 = 16;

/// How the descriptor limit is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FdBudget {
    max_connections: usize,
    probes_in_flight: usize,
}

/// Fits `max_connections` connections and the probes' reserve ([`MAX_PROBES_IN_FLIGHT`] ×
/// [`FDS_PER_PROBE`]) with [`FIXED_FDS`] under `limit`. When they do not fit, connections
/// give way first (probes are what tocsin is for), down to [`MIN_CONNECTIONS`]; under a
/// limit too small even for that, connections get a quarter and probes the rest.
fn fit_fds(limit: u64, max_connections: usize) -> FdBudget {
    let available = limit.saturating_sub(FIXED_FDS);
    let wanted = max_connections as u64;
    let reserve = MAX_PROBES_IN_FLIGHT as u64 * FDS_PER_PROBE;
    let (connections, probes) = if wanted + reserve <= available {
        (wanted, MAX_PROBES_IN_FLIGHT as u64)
    } else if reserve + MIN_CONNECTIONS.min(wanted) <= available {
        (available - reserve, MAX_PROBES_IN_FLIGHT as u64)
    } else {
        let connections = (available / 4).clamp(1, wanted);
        let probes = (available.saturating_sub(connections) / FDS_PER_PROBE)
            .clamp(1, MAX_PROBES_IN_FLIGHT as u64);
        (connections, probes)
    };
    FdBudget {
        max_connections: connections as usize,
        probes_in_flight: probes as usize,
    }
}

/// Raises the soft descriptor limit to the hard one and splits it ([`fit_fds`]), with a
/// warning naming the key when `server.max_connections` cannot be had.
fn descriptor_budget(max_connections: usize) -> FdBudget {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            let soft = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft);
            tracing::warn!(error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
            soft.unwrap_or(u64::MAX)
        }
    };
    let budget = fit_fds(limit, max_connections);
    if budget.max_connections < max_connections || budget.probes_in_flight < MAX_PROBES_IN_FLIGHT {
        tracing::warn!(
            limit,
            max_connections = budget.max_connections,
            probes_in_flight = budget.probes_in_flight,
            "the descriptor limit (RLIMIT_NOFILE {limit}) cannot hold server.max_connections = \
             {max_connections} beside the probes' reserve: serving at most {} connections, \
             {} probes in flight; raise LimitNOFILE or lower server.max_connections",
            budget.max_connections,
            budget.probes_in_flight,
        );
    } else {
        tracing::info!(
            limit,
            max_connections = budget.max_connections,
            probes_in_flight = budget.probes_in_flight,
            "descriptors shared between the listener and the probes"
        );
    }
    budget
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Prober(#[from] ProberError),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// The argon2 hash of a console password, as `server.users_file` takes it
/// (`tocsin hash-password`).
pub fn hash_password(password: &str) -> String {
    crate::http::hash_password(password)
}

/// Runs the daemon on `listener` until `shutdown` is cancelled. `source` is where a
/// reload reads the configuration again; `settings` is its current, validated content.
pub async fn run(
    source: ConfigSource,
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    App::start(source, settings)
        .await?
        .serve(listener, shutdown)
        .await
}

/// The daemon, started: the store open, the engine, schedulers and deliverers running, the
/// HTTP app built but not served. [`App::serve`] serves it; tests may drive
/// [`App::router`] in-process and then [`App::stop`] it.
pub struct App {
    router: Router,
    reloader: Reloader,
    generation: Generation,
    scheduler_ctx: SchedulerContext,
    /// The listener's limits, `max_connections` fitted to the descriptor limit.
    listener: ListenerSpec,
    reload_requests: mpsc::Receiver<ReloadRequest>,
    hangups: Signal,
    ready: watch::Sender<bool>,
    /// Set once [`App::serve`] knows its address.
    listening: Arc<std::sync::OnceLock<SocketAddr>>,
    engine_task: JoinHandle<()>,
    engine_token: CancellationToken,
    /// In a cluster: heartbeats and the leader lease.
    membership: Option<JoinHandle<()>>,
    membership_token: CancellationToken,
    watchdog: Option<JoinHandle<()>>,
    watchdog_token: CancellationToken,
    alert_tracker: TaskTracker,
}

impl App {
    /// Opens the store and starts every component of `settings`.
    pub async fn start(source: ConfigSource, settings: Settings) -> Result<App, AppError> {
        let clock = Clock::system();
        let settings = Arc::new(settings);
        let budget = descriptor_budget(settings.server.listener.max_connections);
        let listener = ListenerSpec {
            max_connections: budget.max_connections,
            ..settings.server.listener
        };
        let metrics = Arc::new(Metrics::new());
        metrics.configure(&settings.metrics);
        metrics.config_reload_ok.set(1);
        metrics
            .config_reload_timestamp
            .set(clock.now().timestamp() as f64);

        let (store, restored) = Store::open(&settings.storage).await?;
        store.count_errors_in(metrics.store_errors.clone());
        // Under a file size limit (RLIMIT_FSIZE) a write past it raises SIGXFSZ, which
        // would kill the daemon: with the signal caught the write fails (EFBIG) and the
        // store retries it, as on a full disk. The handler stays once installed.
        let _ = signal(SignalKind::from_raw(libc::SIGXFSZ));
        let prober = Prober::new()?;
        let hangups = signal(SignalKind::hangup()).map_err(AppError::Signal)?;

        let alert_tracker = TaskTracker::new();
        let notices = Arc::new(tokio::sync::Notify::new());
        let deliveries = Deliveries {
            receivers: settings.receivers.clone(),
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            clock,
            external_url: settings.server.external_url.clone(),
            tracker: alert_tracker.clone(),
            notices: Arc::clone(&notices),
        };
        let me = Identity {
            instance_id: instance_id(),
            vantage: settings.vantage.clone(),
        };
        let clustered = store.cluster().map(|_| {
            Clustered::new(
                me.clone(),
                settings.cluster.heartbeat,
                metrics.register_cluster(),
                &settings.topology,
            )
        });
        let (engine, snapshot) = Engine::new(
            Arc::new(settings.engine()),
            restored,
            store.clone(),
            deliveries,
            clustered,
            Arc::clone(&metrics),
            clock,
        );
        let (report_tx, report_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::channel(16);
        let (assignment_tx, assignment) =
            watch::channel(Arc::new(Assignment::alone(&me.instance_id, &me.vantage)));
        // Stopped after the engine, whose last writes carry the lease it holds.
        let membership_token = CancellationToken::new();
        let membership = store.cluster().map(|cluster| {
            tracing::info!(instance = %me.instance_id, vantage = %me.vantage, "joining the cluster");
            tokio::spawn(run_membership(
                cluster,
                store.clone(),
                me.clone(),
                settings.cluster,
                assignment_tx,
                control_tx.clone(),
                membership_token.clone(),
            ))
        });
        let engine_token = CancellationToken::new();
        let engine_task = tokio::spawn(engine.run(report_rx, control_rx, engine_token.clone()));
        // The engine renews its snapshot every tick: that is the watchdog's heartbeat.
        let watchdog_token = CancellationToken::new();
        let watchdog = notify::spawn_watchdog(snapshot.clone(), watchdog_token.clone());

        let in_flight = Arc::new(Semaphore::new(budget.probes_in_flight));
        let scheduler_ctx = SchedulerContext {
            prober: prober.clone(),
            in_flight: Arc::clone(&in_flight),
            reports: report_tx,
            metrics: Arc::clone(&metrics),
            clock,
            assignment,
            epoch: tokio::time::Instant::now(),
        };
        let generation = Generation::start(&settings, &scheduler_ctx, scheduler_ctx.epoch);

        let (site_tx, site_rx) = watch::channel(Arc::new(settings.site()));
        let (ready_tx, ready_rx) = watch::channel(true);
        let (reload_tx, reload_requests) = mpsc::channel::<ReloadRequest>(4);
        let listening = Arc::new(std::sync::OnceLock::new());
        let router = router(AppState {
            listening: Arc::clone(&listening),
            snapshot,
            site: site_rx,
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            reload: reload_tx,
            engine: control_tx.clone(),
            ready: ready_rx,
            started: clock.now(),
            prober,
            in_flight,
            exporter_slots: Arc::default(),
            writes: Arc::default(),
            notices: Arc::clone(&notices),
            subscribe_limit: Arc::default(),
            login_limit: Arc::default(),
            clock,
        });
        let reloader = Reloader {
            source,
            address: None,
            current: settings,
            metrics,
            control: control_tx,
            site: site_tx,
            clock,
            store,
            alert_tracker: alert_tracker.clone(),
            notices,
        };
        Ok(App {
            router,
            reloader,
            generation,
            scheduler_ctx,
            listener,
            reload_requests,
            hangups,
            ready: ready_tx,
            listening,
            engine_task,
            engine_token,
            membership,
            membership_token,
            watchdog,
            watchdog_token,
            alert_tracker,
        })
    }

    /// The whole HTTP app (API, pages, `/metrics`), for requests made in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` and reloads on SIGHUP or `POST /-/reload` until `shutdown` is
    /// cancelled, then stops in order.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), AppError> {
        let address = listener.local_addr().map_err(AppError::Serve)?;
        let _ = self.listening.set(address);
        let http_token = CancellationToken::new();
        let server_task = tokio::spawn(crate::http::serve(
            listener,
            self.router.clone(),
            self.listener,
            Arc::clone(&self.scheduler_ctx.metrics),
            http_token.clone(),
        ));
        self.reloader.address = Some(address);
        let settings = &self.reloader.current;
        tracing::info!(
            listen = %address,
            targets = settings.topology.targets.len(),
            services = settings.topology.services.len(),
            receivers = settings.receivers.len(),
            "tocsin running"
        );
        notify::ready(&running_status(settings, Some(address)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.hangups.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = self
                        .reloader
                        .reload(&mut self.generation, &self.scheduler_ctx)
                        .await;
                }
                Some(reply) = self.reload_requests.recv() => {
                    let result = self
                        .reloader
                        .reload(&mut self.generation, &self.scheduler_ctx)
                        .await;
                    let _ = reply.send(result);
                }
            }
        }
        self.stop().await;
        http_token.cancel();
        if let Err(e) = server_task.await {
            tracing::error!(error = %e, "HTTP server task failed");
        }
        Ok(())
    }

    /// Stops in order: schedulers, then the engine (which saves its state and flushes the
    /// store), then alert delivery; what was not delivered stays in the outbox.
    pub async fn stop(self) {
        tracing::info!("shutting down");
        notify::stopping();
        self.watchdog_token.cancel();
        if let Some(watchdog) = self.watchdog {
            let _ = watchdog.await;
        }
        self.ready.send_replace(false);
        self.generation.stop().await;
        self.engine_token.cancel();
        let _ = self.engine_task.await;
        self.membership_token.cancel();
        if let Some(membership) = self.membership {
            let _ = membership.await;
        }
        drop(self.reloader);
        self.alert_tracker.close();
        self.alert_tracker.wait().await;
    }
}

/// The scheduler tasks of one configuration.
struct Generation {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Generation {
    /// `from`: when the generation before stopped making runs.
    fn start(settings: &Settings, ctx: &SchedulerContext, from: tokio::time::Instant) -> Self {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        scheduler::spawn(&settings.topology, ctx, &tracker, &token, from);
        Generation { tracker, token }
    }

    /// Returns when it stopped making runs, for the next generation to take over from.
    async fn stop(self) -> tokio::time::Instant {
        let stopped = tokio::time::Instant::now();
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        stopped
    }
}

/// The `STATUS=` line systemd shows while tocsin runs normally.
fn running_status(settings: &Settings, address: Option<SocketAddr>) -> String {
    let mut status = format!(
        "monitoring {} targets of {} services",
        settings.topology.targets.len(),
        settings.topology.services.len()
    );
    if let Some(address) = address {
        status.push_str(&format!(", serving on {address}"));
    }
    status
}

struct Reloader {
    source: ConfigSource,
    /// Where the HTTP server listens, for the status line; `None` until it serves.
    address: Option<SocketAddr>,
    current: Arc<Settings>,
    metrics: Arc<Metrics>,
    control: mpsc::Sender<Control>,
    site: watch::Sender<Arc<SiteSpec>>,
    clock: Clock,
    store: Store,
    alert_tracker: TaskTracker,
    /// Wakes the subscribers' notice deliverer of whichever configuration runs.
    notices: Arc<tokio::sync::Notify>,
}

impl Reloader {
    /// [`Reloader::apply`] between `RELOADING=1` and `READY=1`: systemd's `reload` waits for
    /// the `READY=1`, whose status tells whether the new configuration was taken.
    async fn reload(
        &mut self,
        generation: &mut Generation,
        ctx: &SchedulerContext,
    ) -> Result<(), String> {
        notify::reloading();
        let result = self.apply(generation, ctx).await;
        match &result {
            Ok(()) => notify::ready(&format!(
                "configuration reloaded; {}",
                running_status(&self.current, self.address)
            )),
            Err(e) => notify::ready(&format!(
                "reload failed, still running the previous configuration: {}",
                e.lines().next().unwrap_or("unknown error")
            )),
        }
        result
    }

    /// Loads and applies the configuration atomically; on any error the running one stays.
    async fn apply(
        &mut self,
        generation: &mut Generation,
        ctx: &SchedulerContext,
    ) -> Result<(), String> {
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&source))
            .await
            .map_err(|e| e.to_string())?;
        let new = match loaded {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.metrics.config_reload_ok.set(0);
                for line in e.to_string().lines() {
                    tracing::error!(source = %self.source, "{line}");
                }
                tracing::error!("configuration refused; the running configuration stays");
                return Err(e.to_string());
            }
        };
        if new.server.listen != self.current.server.listen
            || new.server.listener != self.current.server.listener
            || new.storage != self.current.storage
            || new.vantage != self.current.vantage
            || new.cluster != self.current.cluster
        {
            tracing::warn!(
                "changes to server.listen, the listener's limits, [storage], [vantage] and \
                 [cluster] take effect after a restart"
            );
        }
        let deliveries = Deliveries {
            receivers: new.receivers.clone(),
            store: self.store.clone(),
            metrics: Arc::clone(&self.metrics),
            clock: self.clock,
            external_url: new.server.external_url.clone(),
            tracker: self.alert_tracker.clone(),
            notices: Arc::clone(&self.notices),
        };
        let old = std::mem::replace(generation, Generation::start_paused());
        let stopped = old.stop().await;
        if self
            .control
            .send(Control::Reconfigure(Arc::new(new.engine()), deliveries))
            .await
            .is_err()
        {
            return Err("the engine has stopped".to_string());
        }
        *generation = Generation::start(&new, ctx, stopped);
        self.site.send_replace(Arc::new(new.site()));
        self.metrics.configure(&new.metrics);
        self.current = new;
        self.metrics.config_reload_ok.set(1);
        self.metrics
            .config_reload_timestamp
            .set(self.clock.now().timestamp() as f64);
        tracing::info!(
            targets = self.current.topology.targets.len(),
            "configuration reloaded"
        );
        Ok(())
    }
}

impl Generation {
    /// A generation with no tasks, standing in while the next one is prepared.
    fn start_paused() -> Self {
        Generation {
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
        }
    }
}

/// This instance's id among the members of a cluster: host and process, unique while it
/// runs; a restarted process is a new member (the old one's lease runs out).
fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tocsin".to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_go_to_probes_first() {
        let budget = |limit, connections| {
            let b = fit_fds(limit, connections);
            (b.max_connections, b.probes_in_flight)
        };
        // A unit's LimitNOFILE=65536: everything fits.
        assert_eq!(budget(65_536, 1024), (1024, 1024));
        // The limit of the false outage, 4096: still fits (1024 + 2048 + 128).
        assert_eq!(budget(4096, 1024), (1024, 1024));
        // Connections give way to the probes' reserve.
        assert_eq!(budget(2500, 1024), (2500 - 128 - 2048, 1024));
        // Too small for the reserve: a quarter for connections, the rest for probes.
        assert_eq!(budget(256, 1024), (32, 48));
        assert_eq!(budget(2048, 1024), (480, 720));
        // Every figure fits the limit.
        for limit in [0, 1, 64, 129, 200, 256, 1000, 2200, 5000] {
            let (c, p) = budget(limit, 1024);
            assert!(c >= 1 && p >= 1, "{limit}");
            if limit > FIXED_FDS + 4 {
                assert!(
                    c as u64 + p as u64 * FDS_PER_PROBE + FIXED_FDS <= limit,
                    "{limit}"
                );
            }
        }
        assert_eq!(budget(256, 8), (8, 60), "never more than configured");
    }
}
