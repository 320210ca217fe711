//! The configuration a daemon test runs on: the store in the test's directory, probes fast
//! (every 100 ms, 80 ms timeout), and whatever the test adds. Keys a test does not set keep
//! the daemon's defaults.

use std::fmt;
use std::path::Path;

use super::{path_str, write};

/// The token written by [`TestConfig::admin_token`].
pub const ADMIN_TOKEN: &str = "s3cret-token";

pub struct TestConfig {
    /// The `[storage]` key naming the database, with its value.
    db: String,
    server: Vec<(String, String)>,
    defaults: Vec<(String, String)>,
    body: String,
    dir: std::path::PathBuf,
}

impl TestConfig {
    pub fn new(dir: &Path) -> TestConfig {
        TestConfig {
            db: format!("sqlite = \"{}\"", path_str(&dir.join("tocsin.db"))),
            server: Vec::new(),
            defaults: vec![
                ("interval".into(), "\"100ms\"".into()),
                ("timeout".into(), "\"80ms\"".into()),
            ],
            body: String::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// Stores in the PostgreSQL database at `url` instead, named by `storage.postgres_file`
    /// (relative: the file is `pg.url` beside the configuration).
    pub fn postgres(mut self, url: &str) -> TestConfig {
        write(&self.dir, "pg.url", url);
        self.db = "postgres_file = \"pg.url\"".into();
        self
    }

    /// Sets `[server] key = value` (`value` as TOML: strings quoted).
    pub fn server(mut self, key: &str, value: &str) -> TestConfig {
        self.server.push((key.into(), value.into()));
        self
    }

    /// Writes [`ADMIN_TOKEN`] to `admin.token` and points `server.admin_token_file` at it.
    pub fn admin_token(self) -> TestConfig {
        let file = write(&self.dir, "admin.token", &format!("{ADMIN_TOKEN}\n"));
        let value = format!("\"{}\"", path_str(&file));
        self.server("admin_token_file", &value)
    }

    /// Sets (or replaces) `[defaults] key = value` (`value` as TOML).
    pub fn default(mut self, key: &str, value: &str) -> TestConfig {
        self.defaults.retain(|(k, _)| k != key);
        self.defaults.push((key.into(), value.into()));
        self
    }

    /// `failure_threshold = 1`, `success_threshold = 1`: one result changes a target's state.
    pub fn instant_thresholds(self) -> TestConfig {
        self.default("failure_threshold", "1")
            .default("success_threshold", "1")
    }

    /// Services, groups, targets, receivers…: TOML after the tables above.
    pub fn body(mut self, toml: &str) -> TestConfig {
        self.body.push_str(toml);
        self.body.push('\n');
        self
    }
}

impl fmt::Display for TestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.server.is_empty() {
            writeln!(f, "[server]")?;
            for (k, v) in &self.server {
                writeln!(f, "{k} = {v}")?;
            }
        }
        writeln!(f, "[storage]\n{}\n[defaults]", self.db)?;
        for (k, v) in &self.defaults {
            writeln!(f, "{k} = {v}")?;
        }
        f.write_str(&self.body)
    }
}
