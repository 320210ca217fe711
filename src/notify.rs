//! systemd's notify protocol (sd_notify(3)) for `Type=notify` units: `READY=1` once
//! listening and scheduling, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1`,
//! and `WATCHDOG=1` fed by the engine's heartbeat.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op. A failed send is logged and
//! never stops the daemon: monitoring matters more than telling systemd about it.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::engine::TICK;

/// How long the engine may go without a heartbeat before the pings stop. The engine renews
/// its snapshot every [`TICK`]; three missed ticks is a stall, not scheduling jitter.
pub const STALL_AFTER: Duration = TICK.saturating_mul(3);

/// `READY=1` with a status line: startup is complete, or a reload has ended.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` and `MONOTONIC_USEC` in one datagram, as systemd requires; `READY=1`
/// must follow.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the configuration"),
        ]),
        Err(e) => tracing::warn!(error = %e, "cannot read CLOCK_MONOTONIC for sd_notify"),
    }
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings the systemd watchdog at half of `WATCHDOG_USEC` while `heartbeat` keeps changing
/// (the engine renews it every tick). Returns `None` when no watchdog is configured.
pub fn spawn_watchdog<T: Send + Sync + 'static>(
    heartbeat: watch::Receiver<T>,
    token: CancellationToken,
) -> Option<JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    tracing::info!(timeout = ?timeout, "systemd watchdog enabled");
    Some(tokio::spawn(feed(
        heartbeat,
        timeout / 2,
        STALL_AFTER,
        token,
        || send(&[NotifyState::Watchdog]),
    )))
}

/// Calls `ping` every `period` while the last heartbeat is younger than `stall_after`; ends
/// when `token` is cancelled or the heartbeat's sender is gone.
async fn feed<T>(
    mut heartbeat: watch::Receiver<T>,
    period: Duration,
    stall_after: Duration,
    token: CancellationToken,
    mut ping: impl FnMut(),
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_beat = Instant::now();
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            changed = heartbeat.changed() => {
                if changed.is_err() {
                    return;
                }
                last_beat = Instant::now();
                if stalled {
                    stalled = false;
                    tracing::info!("the engine is ticking again; watchdog pings resume");
                }
            }
            _ = ticks.tick() => {
                if last_beat.elapsed() < stall_after {
                    ping();
                } else if !stalled {
                    stalled = true;
                    tracing::error!(
                        since = ?last_beat.elapsed(),
                        "the engine has stalled; withholding watchdog pings so systemd restarts tocsin"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Runs `feed` with a 500 ms period and a 3 s stall bound; returns the ping counter.
    fn start(heartbeat: watch::Receiver<u64>, token: &CancellationToken) -> Arc<AtomicU32> {
        let pings = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&pings);
        tokio::spawn(feed(
            heartbeat,
            Duration::from_millis(500),
            Duration::from_secs(3),
            token.clone(),
            move || {
                counter.fetch_add(1, Ordering::SeqCst);
            },
        ));
        pings
    }

    #[tokio::test(start_paused = true)]
    async fn pings_stop_when_the_heartbeat_stalls_and_resume_with_it() {
        let (beat, heartbeat) = watch::channel(0u64);
        let token = CancellationToken::new();
        let pings = start(heartbeat, &token);

        // Beating once a second: a ping every 500 ms.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            beat.send_modify(|n| *n += 1);
        }
        let healthy = pings.load(Ordering::SeqCst);
        assert!((19..=21).contains(&healthy), "{healthy} pings in 10 s");

        // Stalled: pings go on until the beat is 3 s old, then none for the rest.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after_stall = pings.load(Ordering::SeqCst) - healthy;
        assert!(after_stall <= 6, "{after_stall} pings while stalled");
        let frozen = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(pings.load(Ordering::SeqCst), frozen, "pinged while stalled");

        // Beating again: pings resume.
        for _ in 0..4 {
            beat.send_modify(|n| *n += 1);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(pings.load(Ordering::SeqCst) >= frozen + 6);

        token.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn the_feeder_ends_with_the_engine() {
        let (beat, heartbeat) = watch::channel(0u64);
        let token = CancellationToken::new();
        let handle = tokio::spawn(feed(
            heartbeat,
            Duration::from_millis(500),
            Duration::from_secs(3),
            token,
            || {},
        ));
        drop(beat);
        tokio::time::timeout(Duration::from_secs(1), handle)
            .await
            .expect("the feeder ends when the engine drops its heartbeat")
            .unwrap();
    }
}
