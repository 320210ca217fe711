//! tocsin: a health monitor that tells the truth about outages.
//!
//! # Layout
//!
//! Data flows top to bottom; each module only knows the ones above it.
//!
//! ```text
//! config ──► scheduler ──► probe::{http, tcp, tls, dns, icmp, sip, imap, smtp}
//!                              │
//!                              ▼
//!                           engine ─┬─► detector   (results → target states)
//!                          (core)   ├─► incident   (group/service status → incidents)
//!                                   └─► rollup     (results → minute/hour/day aggregates)
//!                              │
//!       ┌───────────────┬──────┴─────────────┬───────────────────────┐
//!       ▼               ▼                    ▼                       ▼
//!    metrics   alert::{routing, outbox,   store::sqlite   http::{api, page, statuspage,
//!              webhook, alertmanager,                           exporter, feeds}
//!              slack, pagerduty}
//! ```
//!
//! * [`config`]: the TOML file (via the `config` crate, `TOCSIN__…` env overrides), strict
//!   deserialization and validation into runtime [`config::Settings`].
//! * [`scheduler`]: one clock task keeping every target's next run in a heap and spawning a
//!   task per run, start times spread over the interval, a global bound on probes in
//!   flight, a hard deadline per probe; a run still going skips its turn (counted).
//! * [`probe`]: one file per protocol behind the closed [`probe::ProbeSpec`] enum; a failed
//!   probe is data (a [`probe::Reason`]), never an `Err`.
//! * [`detector`]: pure per-target state machine (thresholds, backdated onset).
//! * [`topology`]: who is behind what: services, groups of subscribers, targets.
//! * [`incident`]: pure incident engine (component status, figures, severity, scope).
//! * [`engine`]: the one task that owns detector and incident state; it persists, alerts,
//!   updates metrics and publishes [`engine::Snapshot`]s through a `watch` channel.
//! * [`rollup`]: pure per-minute/hour/day aggregates of results and service status time,
//!   which the engine feeds and the store keeps (uptime, response times, SLA).
//! * [`metrics`], [`alert`], [`store`], [`http`]: the outputs.
//! * [`app`]: wiring, reload and graceful shutdown; [`notify`]: systemd readiness, reload,
//!   stop and watchdog notifications; [`demo`]: the self-contained demo;
//!   [`replay`]: the engine's core on recorded results, in their own time.
//!
//! # Glossary (SPEC §1)
//!
//! * **service**: what a customer buys and feels (`voicemail`, `data`); has a subscriber base.
//! * **group**: subscribers of one service behind one platform in one region, with a count.
//! * **target**: one probed endpoint; belongs to one or more groups.
//! * **vantage**: where probes run from; one tocsin instance is one vantage.
//! * **result**: one probe run: ok or a failure reason, latency, phase timings.
//! * **target state**: `unknown | up | degraded | down`, after thresholds.
//! * **component status**: per service, the Statuspage enum (`operational` … `major_outage`,
//!   `under_maintenance`).
//! * **incident**: one outage as users feel it, possibly across several services.
//! * **change**: a software update, deploy or configuration change, registered through the
//!   API; the suspected cause of incidents that follow it.
//! * **receiver**: where alerts go.

pub mod alert;
pub mod app;
pub mod clock;
pub mod config;
pub mod demo;
pub mod detector;
pub mod engine;
pub mod http;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod probe;
pub mod replay;
pub mod rollup;
pub mod scheduler;
pub mod store;
pub mod topology;
