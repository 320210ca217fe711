//! The configuration file: TOML through the `config` crate, `TOCSIN__…` environment
//! overrides, strict deserialization, then validation into runtime [`Settings`].
//!
//! Each component keeps its own config struct next to its code (`http::ServerConfig`,
//! `scheduler::TargetConfig`, `alert::ReceiverConfig`, …); this module only assembles them.
//! Validation (`validate`) reports every problem at once, each with its key path.

mod validate;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::alert::{ReceiverConfig, ReceiverSpec};
use crate::http::{ServerConfig, ServerSettings};
use crate::incident::{IncidentSettings, IncidentsConfig, ReportingConfig};
use crate::scheduler::{DefaultsConfig, TargetConfig};
use crate::store::{StorageConfig, StorageSettings};
use crate::topology::{GroupConfig, MaintenanceConfig, ServiceConfig, Topology};

/// The file as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub vantage: VantageConfig,
    #[serde(default)]
    pub defaults: DefaultsConfig,
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub maintenances: Vec<MaintenanceConfig>,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    pub incidents: IncidentsConfig,
    #[serde(default)]
    pub reporting: ReportingConfig,
    #[serde(default)]
    pub modules: std::collections::BTreeMap<String, crate::http::exporter::ModuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VantageConfig {
    /// Where this instance probes from; the `vantage` label.
    #[serde(default = "default_vantage")]
    pub name: String,
}

impl Default for VantageConfig {
    fn default() -> Self {
        Self {
            name: default_vantage(),
        }
    }
}

fn default_vantage() -> String {
    "default".to_string()
}

/// Everything the daemon runs on, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    /// `[modules.*]`: probe templates for `GET /probe`.
    pub modules: std::collections::BTreeMap<String, crate::http::exporter::Module>,
    pub storage: StorageSettings,
    pub vantage: String,
    pub topology: Arc<Topology>,
    pub receivers: Vec<ReceiverSpec>,
    pub incidents: IncidentSettings,
}

/// Where the configuration comes from; kept so that a reload reads the same place again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// An embedded TOML document (the demo).
    Inline(String),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Inline(_) => f.write_str("<embedded>"),
        }
    }
}

/// One validation problem: `targets[3].probe.url: relative URL without a base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<Issue>);

impl Issues {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter()
    }
}

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, is not TOML, or does not fit the schema (unknown key, bad type).
    #[error("{}", dotted_key_paths(&.0.to_string()))]
    Load(#[from] ::config::ConfigError),
    /// The file fits the schema but its values do not hold together.
    #[error("{0}")]
    Invalid(Issues),
}

/// The `config` crate writes `targets[0]probe.type`; people read `targets[0].probe.type`.
fn dotted_key_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 4);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
        {
            out.push('.');
        }
    }
    out
}

/// Reads, deserializes and validates the configuration. Relative `*_file` paths are
/// taken from the configuration file's directory, not the working directory.
pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
    let mut file = read(source)?;
    if let ConfigSource::File(path) = source
        && let Some(dir) = path.parent()
    {
        file.anchor_files(dir);
    }
    validate::validate(&file).map_err(ConfigError::Invalid)
}

impl FileConfig {
    /// Makes relative `*_file` paths relative to `dir`.
    fn anchor_files(&mut self, dir: &std::path::Path) {
        let anchor = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut()
                && path.is_relative()
            {
                *path = dir.join(&*path);
            }
        };
        anchor(&mut self.server.admin_token_file);
        for r in &mut self.receivers {
            anchor(&mut r.secret_file);
            anchor(&mut r.url_file);
        }
    }
}

/// Reads and deserializes, with `TOCSIN__SECTION__KEY` environment overrides.
pub fn read(source: &ConfigSource) -> Result<FileConfig, ConfigError> {
    use ::config::{Environment, File, FileFormat};
    let builder = ::config::Config::builder();
    let builder = match source {
        ConfigSource::File(path) => builder.add_source(
            File::from(path.as_path())
                .format(FileFormat::Toml)
                .required(true),
        ),
        ConfigSource::Inline(text) => builder.add_source(File::from_str(text, FileFormat::Toml)),
    };
    let merged = builder
        .add_source(
            Environment::with_prefix("TOCSIN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?;
    Ok(merged.try_deserialize()?)
}

/// `humantime` rendering for messages: `5s`, `1m 30s`.
pub(crate) fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
