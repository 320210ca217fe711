//! Persistence. SQLite is the embedded default ([`sqlite`]); writes go through one writer
//! thread, so nothing blocking ever runs on the async runtime.

pub mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::validation::Issues;

pub use sqlite::{IncidentFilter, Pending, Restored, RouteState, Store, StoreError};

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite database file; created when missing.
    #[serde(default = "default_sqlite")]
    pub sqlite: PathBuf,
    /// How long per-minute rollups are kept (they stand in for raw results).
    #[serde(default = "default_raw_retention", with = "humantime_serde")]
    pub raw_retention: Duration,
    /// How long per-hour and per-day rollups are kept.
    #[serde(default = "default_rollup_retention", with = "humantime_serde")]
    pub rollup_retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            sqlite: default_sqlite(),
            raw_retention: default_raw_retention(),
            rollup_retention: default_rollup_retention(),
        }
    }
}

fn default_sqlite() -> PathBuf {
    PathBuf::from("/var/lib/tocsin/tocsin.db")
}
fn default_raw_retention() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_rollup_retention() -> Duration {
    Duration::from_secs(400 * 86400)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    pub sqlite: PathBuf,
    pub raw_retention: Duration,
    pub rollup_retention: Duration,
}

impl StorageConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<StorageSpec> {
        let before = issues.len();
        if self.sqlite.as_os_str().is_empty() {
            issues.push(format!("{path}.sqlite"), "must not be empty");
        }
        if self.rollup_retention < self.raw_retention {
            issues.push(
                format!("{path}.rollup_retention"),
                "must not be shorter than raw_retention",
            );
        }
        if issues.len() > before {
            return None;
        }
        Some(StorageSpec {
            sqlite: self.sqlite.clone(),
            raw_retention: self.raw_retention,
            rollup_retention: self.rollup_retention,
        })
    }
}
