//! `push` probe: nothing is probed from here. A field probe (a test handset, a drive test,
//! a batch job) posts its results to `POST /api/v1/targets/{id}/results` with the target's
//! own bearer token, and a result missing for `interval + grace` counts as a failure
//! ([`Reason::MissedHeartbeat`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::result::{ProbeResult, Reason};
use crate::validation::{Issues, read_secret_file};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushProbeConfig {
    /// File holding the bearer token this target's results must carry.
    pub token_file: PathBuf,
    /// Slack past the interval before a missing result is a failure.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}

/// A validated push probe. `Debug` leaves the token out.
#[derive(Clone)]
pub struct PushSpec {
    pub token: String,
    pub grace: Duration,
}

impl std::fmt::Debug for PushSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSpec")
            .field("token", &"…")
            .field("grace", &self.grace)
            .finish()
    }
}

impl PushProbeConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<PushSpec> {
        let token = read_secret_file(&self.token_file)
            .map_err(|e| issues.push(format!("{path}.token_file"), e))
            .ok()?;
        Some(PushSpec {
            token,
            grace: self.grace,
        })
    }
}

/// The failure a missed heartbeat counts as.
pub fn missed_heartbeat(interval: Duration, grace: Duration) -> ProbeResult {
    ProbeResult::failure(
        Reason::MissedHeartbeat,
        format!(
            "no result pushed within {} (interval {} + grace {})",
            humantime::format_duration(interval + grace),
            humantime::format_duration(interval),
            humantime::format_duration(grace)
        ),
        Duration::ZERO,
    )
}
