//! tocsin: a health monitor that tells the truth about outages.
//!
//! # Data flow
//!
//! ```text
//! config ──► scheduler ──► probe::{http, tcp, tls, dns, icmp, sip, imap, smtp}
//!                              │ ProbeReport
//!                              ▼
//!                           engine ─┬─► detector   (results → target states)
//!                          (pure)   ├─► incident   (group/service status → incidents)
//!                                   └─► rollup     (results → minute/hour/day aggregates)
//!                              │ events, writes, snapshots
//!       ┌───────────────┬──────┴─────────────┬───────────────────────┐
//!       ▼               ▼                    ▼                       ▼
//!    metrics   alert::{routing, outbox,   store::{sqlite, http::{api, status_page,
//!              webhook, alertmanager,     postgres}      statuspage_api,
//!              slack, pagerduty, email,                         exporter, feeds,
//!              msteams, opsgenie,                               subscriptions, noc}
//!              command, subscribers}
//! ```
//!
//! Results of `push` targets come from probes in the field instead, posted to `http`, which
//! hands them to the engine as the scheduler's would be.
//!
//! # Layers
//!
//! From the bottom up. A module imports only modules of lower layers; `tests/layers.rs`
//! reads this list and the `crate::` paths of `src/` and fails when one does not.
//!
//! 1. [`clock`], [`validation`], `format`: shared vocabulary: wall time from tokio's clock;
//!    the validation [`validation::Issues`] every config reports into, secret files; how
//!    figures are written for people.
//! 2. [`probe`]: one file per protocol behind the closed [`probe::ProbeSpec`] enum; what a
//!    run yields ([`probe::ProbeResult`], one [`probe::Reason`] per failure, a
//!    [`probe::LocalCause`] when this host could not make the attempt) is data, never an
//!    `Err`; `[modules.*]` templates for `/probe`.
//! 3. [`topology`]: who is behind what: services, groups of subscribers, targets, and the
//!    tables of the file that build it.
//! 4. [`detector`]: pure per-target state machine (thresholds, backdated onset).
//! 5. [`cluster`]: pure decisions of several instances: rendezvous hashing of targets
//!    over a vantage's members, quorum across vantages, impaired vantages; `[cluster]`.
//! 6. [`incident`]: pure incident engine (component status, figures, severity, scope,
//!    reporting rules, suspected cause) and what the public sees of an incident.
//! 7. `rollup`: pure per-minute/hour/day aggregates of results and service status time
//!    (uptime, response times).
//! 8. `event`: the alert event queued for receivers.
//! 9. [`metrics`]: the Prometheus registry and the compact per-target series.
//! 10. `store`: persistence (SQLite, or a PostgreSQL several instances share, with the
//!     cluster's leases), one writer per store.
//! 11. [`alert`]: routing, the durable outbox and one file per receiver type; the status
//!     page's subscribers, with their own queue of notices.
//! 12. [`scheduler`]: one clock task spawning a task per probe run, a bound on probes in
//!     flight, a hard deadline each; it sends `ProbeReport`s.
//! 13. [`engine`]: the one task that owns detector and incident state around its pure
//!     [`engine::Core`]; it persists, alerts, counts and publishes snapshots.
//! 14. `http`: the API, the status page and its subscriptions, the Statuspage documents,
//!     `/probe`, `/metrics`, the results field probes post for `push` targets, the NOC
//!     console (`/noc`: sessions, the incident board, actions, regulator drafts), and the
//!     listener that serves them within its limits.
//! 15. [`config`]: the file (the `config` crate, `TOCSIN__…` overrides) assembled from every
//!     component's config and validated into [`config::Settings`], every problem at once,
//!     each with its line.
//! 16. `notify`: systemd readiness, reload, stop and watchdog notifications.
//! 17. [`app`]: wiring, reload and graceful shutdown.
//! 18. [`replay`], [`demo`]: the engine's core on recorded results; the self-contained demo.
//!
//! # Glossary
//!
//! * **service**: what a customer buys and feels (`voicemail`, `data`); has a subscriber base.
//! * **group**: subscribers of one service behind one platform in one region, with a count.
//! * **target**: one probed endpoint; belongs to one or more groups. A **push target** is
//!   not probed: probes in the field post its results, and silence past `interval + grace`
//!   is a `missed_heartbeat` failure.
//! * **dependency**: a group or target another lists in `depends_on`; while it is down, the
//!   other's failure joins its incident and the other's receivers are not alerted.
//! * **vantage**: where probes run from; one instance, or several that split its targets.
//! * **member**: an instance of a cluster (several instances sharing one PostgreSQL); the
//!   **leader** is the one member that runs incidents and sends alerts.
//! * **result**: one probe run: ok or a failure reason, latency, phase timings.
//! * **target state**: `unknown | up | degraded | down`, after thresholds.
//! * **component status**: per service, the Statuspage enum (`operational` … `major_outage`,
//!   `under_maintenance`).
//! * **incident**: one outage as users feel it, possibly across several services.
//! * **change**: a software update, deploy or configuration change, registered through the
//!   API; the suspected cause of incidents that follow it.
//! * **receiver**: where alerts go.
//! * **NOC console**: the operators' pages under `/noc`, behind a login (the admin token,
//!   or a **console user** of `server.users_file`, `viewer` or `operator`); a **session**
//!   is the cookie a login gives, kept in the store.
//! * **`*Config` / `*Spec`**: a table as the file writes it / what it validated into; the
//!   whole validated file is [`config::Settings`].

#![forbid(unsafe_code)]

pub mod clock;
pub(crate) mod format;
pub mod validation;

pub mod probe;

pub mod topology;

pub mod detector;

pub mod cluster;

pub mod incident;

pub(crate) mod rollup;

pub(crate) mod event;

pub mod metrics;

pub(crate) mod store;

pub mod alert;

pub mod scheduler;

pub mod engine;

pub(crate) mod http;

pub mod config;

pub(crate) mod notify;

pub mod app;

pub mod demo;
pub mod replay;

/// The parsers of untrusted input, for the fuzz targets in `fuzz/` only (cargo fuzz builds
/// with `--cfg fuzzing`).
#[cfg(fuzzing)]
pub use http::parsers as http_parsers;
