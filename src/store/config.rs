//! `[storage]`: which database (SQLite by default, or a PostgreSQL several instances share)
//! and how long rollups are kept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::validation::{Issues, read_secret_file};

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// SQLite database file; created when missing. The default when no other is set.
    #[serde(default)]
    pub sqlite: Option<PathBuf>,
    /// PostgreSQL connection URL (or `key=value` string).
    #[serde(default)]
    pub postgres: Option<String>,
    /// A file holding the PostgreSQL URL, which may carry a password.
    #[serde(default)]
    pub postgres_file: Option<PathBuf>,
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
            sqlite: None,
            postgres: None,
            postgres_file: None,
            raw_retention: default_raw_retention(),
            rollup_retention: default_rollup_retention(),
        }
    }
}

/// `storage.sqlite` when no database is set.
pub const DEFAULT_SQLITE: &str = "/var/lib/tocsin/tocsin.db";

fn default_raw_retention() -> Duration {
    Duration::from_secs(48 * 3600)
}
fn default_rollup_retention() -> Duration {
    Duration::from_secs(400 * 86400)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    pub backend: Backend,
    pub raw_retention: Duration,
    pub rollup_retention: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A validated PostgreSQL connection string. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    pub fn parse(text: &str) -> Result<PostgresUrl, tokio_postgres::Error> {
        text.parse::<tokio_postgres::Config>()?;
        Ok(PostgresUrl(text.to_string()))
    }

    pub fn config(&self) -> tokio_postgres::Config {
        self.0
            .parse()
            .expect("a PostgresUrl was parsed when it was made")
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.config(), f)
    }
}

impl StorageConfig {
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<StorageSpec> {
        let before = issues.len();
        let set: Vec<&str> = [
            ("sqlite", self.sqlite.is_some()),
            ("postgres", self.postgres.is_some()),
            ("postgres_file", self.postgres_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        for key in set.iter().skip(1) {
            issues.push(
                format!("{path}.{key}"),
                format!(
                    "{path}.{} is set too: set only one of sqlite, postgres and postgres_file",
                    set[0]
                ),
            );
        }
        let url = |text: &str, key: &str, issues: &mut Issues| match PostgresUrl::parse(text) {
            Ok(url) => Some(url),
            Err(e) => {
                let why = match std::error::Error::source(&e) {
                    Some(source) => format!("{e}: {source}"),
                    None => e.to_string(),
                };
                issues.push(
                    format!("{path}.{key}"),
                    format!("not a PostgreSQL URL: {why}"),
                );
                None
            }
        };
        let backend = match (&self.sqlite, &self.postgres, &self.postgres_file) {
            (_, Some(text), _) => url(text, "postgres", issues).map(Backend::Postgres),
            (_, _, Some(file)) => match read_secret_file(file) {
                Ok(text) => url(&text, "postgres_file", issues).map(Backend::Postgres),
                Err(e) => {
                    issues.push(format!("{path}.postgres_file"), e);
                    None
                }
            },
            (Some(file), ..) if file.as_os_str().is_empty() => {
                issues.push(format!("{path}.sqlite"), "must not be empty");
                None
            }
            (Some(file), ..) => Some(Backend::Sqlite(file.clone())),
            (None, None, None) => Some(Backend::Sqlite(PathBuf::from(DEFAULT_SQLITE))),
        };
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
            backend: backend?,
            raw_retention: self.raw_retention,
            rollup_retention: self.rollup_retention,
        })
    }
}
