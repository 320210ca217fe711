//! Wiring: builds every component from [`Settings`], runs until `shutdown` is cancelled,
//! reloads on SIGHUP or `POST /-/reload`, and shuts down in order (schedulers, then the
//! engine, which flushes the store, then alert delivery, then the HTTP server). It tells
//! systemd about each step through `notify`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::outbox::Outbox;
use crate::clock::Clock;
use crate::config::{self, ConfigSource, Settings};
use crate::engine::{Control, Engine};
use crate::http::{AppState, ReloadRequest, SiteSpec, router};
use crate::metrics::Metrics;
use crate::notify;
use crate::probe::{Prober, ProberError};
use crate::scheduler::{self, SchedulerContext};
use crate::store::{Store, StoreError};

/// Probes allowed in flight at once, across all targets.
pub const MAX_PROBES_IN_FLIGHT: usize = 1024;

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
    reload_requests: mpsc::Receiver<ReloadRequest>,
    hangups: Signal,
    ready: watch::Sender<bool>,
    /// Set once [`App::serve`] knows its address.
    listening: Arc<std::sync::OnceLock<SocketAddr>>,
    engine_task: JoinHandle<()>,
    engine_token: CancellationToken,
    watchdog: Option<JoinHandle<()>>,
    watchdog_token: CancellationToken,
    alert_tracker: TaskTracker,
}

impl App {
    /// Opens the store and starts every component of `settings`.
    pub async fn start(source: ConfigSource, settings: Settings) -> Result<App, AppError> {
        let clock = Clock::system();
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new());
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
        let outbox = Outbox::start(
            &settings.receivers,
            &store,
            &metrics,
            clock,
            settings.server.external_url.clone(),
            &alert_tracker,
        );
        let (engine, snapshot) = Engine::new(
            Arc::new(settings.engine()),
            restored,
            store.clone(),
            outbox,
            Arc::clone(&metrics),
            clock,
        );
        let (report_tx, report_rx) = mpsc::channel(4096);
        let (control_tx, control_rx) = mpsc::channel(4);
        let engine_token = CancellationToken::new();
        let engine_task = tokio::spawn(engine.run(report_rx, control_rx, engine_token.clone()));
        // The engine renews its snapshot every tick: that is the watchdog's heartbeat.
        let watchdog_token = CancellationToken::new();
        let watchdog = notify::spawn_watchdog(snapshot.clone(), watchdog_token.clone());

        let scheduler_ctx = SchedulerContext {
            prober: prober.clone(),
            in_flight: Arc::new(Semaphore::new(MAX_PROBES_IN_FLIGHT)),
            reports: report_tx,
            metrics: Arc::clone(&metrics),
            clock,
        };
        let generation = Generation::start(&settings, &scheduler_ctx);

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
        };
        Ok(App {
            router,
            reloader,
            generation,
            scheduler_ctx,
            reload_requests,
            hangups,
            ready: ready_tx,
            listening,
            engine_task,
            engine_token,
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
        let server = axum::serve(listener, self.router.clone())
            .with_graceful_shutdown(http_token.clone().cancelled_owned());
        let server_task = tokio::spawn(async move { server.await });
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
        match server_task.await {
            Ok(result) => result.map_err(AppError::Serve)?,
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
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
    fn start(settings: &Settings, ctx: &SchedulerContext) -> Self {
        let tracker = TaskTracker::new();
        let token = CancellationToken::new();
        scheduler::spawn(&settings.topology, ctx, &tracker, &token);
        Generation { tracker, token }
    }

    async fn stop(self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
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
        if new.server.listen != self.current.server.listen || new.storage != self.current.storage {
            tracing::warn!("server.listen and storage changes take effect after a restart");
        }
        let outbox = Outbox::start(
            &new.receivers,
            &self.store,
            &self.metrics,
            self.clock,
            new.server.external_url.clone(),
            &self.alert_tracker,
        );
        let old = std::mem::replace(generation, Generation::start_paused());
        old.stop().await;
        if self
            .control
            .send(Control::Reconfigure(Arc::new(new.engine()), outbox))
            .await
            .is_err()
        {
            return Err("the engine has stopped".to_string());
        }
        *generation = Generation::start(&new, ctx);
        self.site.send_replace(Arc::new(new.site()));
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
