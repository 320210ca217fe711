//! The configuration file: TOML through the `config` crate, `TOCSIN__…` environment
//! overrides, strict deserialization, then validation into runtime [`Settings`].
//!
//! Each component keeps its own config struct next to its code and builds its own validated
//! `*Spec` (`http::ServerConfig`, `topology::config::TargetConfig`, `alert::ReceiverConfig`,
//! `probe::module::ModuleConfig`, …); this module only assembles them, runs the checks that
//! span components (`validate`), and hands each component its part. Every problem is
//! reported at once, each with its key path.

mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::alert::{ReceiverConfig, ReceiverSpec};
use crate::engine::EngineSpec;
use crate::http::{
    ExporterConfig, ExporterSpec, PageConfig, PageSpec, ServerConfig, ServerSpec, SiteSpec,
};
use crate::incident::{IncidentSpec, IncidentsConfig, ReportingConfig};
use crate::probe::module::{ModuleConfig, ModuleSpec};
use crate::store::{StorageConfig, StorageSpec};
use crate::topology::Topology;
use crate::topology::config::{
    DefaultsConfig, GroupConfig, MaintenanceConfig, ServiceConfig, TargetConfig,
};
use crate::validation::Issues;

/// The file as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub page: PageConfig,
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
    pub modules: BTreeMap<String, ModuleConfig>,
    #[serde(default)]
    pub exporter: ExporterConfig,
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

/// Everything the daemon runs on, validated. Components take their part
/// ([`Settings::engine`], [`Settings::site`]), never the whole.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSpec,
    /// `[page]`: what the public status page shows.
    pub page: PageSpec,
    /// `[modules.*]`: probe templates for `GET /probe`.
    pub modules: BTreeMap<String, ModuleSpec>,
    /// `[exporter]`: who may make `GET /probe` probe what.
    pub exporter: ExporterSpec,
    pub storage: StorageSpec,
    pub vantage: String,
    pub topology: Arc<Topology>,
    pub receivers: Vec<ReceiverSpec>,
    pub incidents: IncidentSpec,
}

impl Settings {
    /// What the engine runs on.
    pub fn engine(&self) -> EngineSpec {
        EngineSpec {
            vantage: self.vantage.clone(),
            topology: Arc::clone(&self.topology),
            incidents: self.incidents.clone(),
            receivers: self.receivers.clone(),
            storage: self.storage.clone(),
        }
    }

    /// What the HTTP side serves from the configuration.
    pub fn site(&self) -> SiteSpec {
        SiteSpec {
            server: self.server.clone(),
            modules: self.modules.clone(),
            vantage: self.vantage.clone(),
            topology: Arc::clone(&self.topology),
            page: self.page.clone(),
            exporter: self.exporter.clone(),
        }
    }
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
    /// Takes every relative path of the file (`*_file` keys, `storage.sqlite`) from `dir`,
    /// the configuration file's directory, rather than the working directory.
    fn anchor_files(&mut self, dir: &std::path::Path) {
        let anchor = |path: &mut PathBuf| {
            // An empty path stays empty, so that validation can say so.
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = dir.join(&*path);
            }
        };
        self.server.admin_token_file.iter_mut().for_each(anchor);
        self.exporter.token_file.iter_mut().for_each(anchor);
        anchor(&mut self.storage.sqlite);
        for r in &mut self.receivers {
            [&mut r.secret_file, &mut r.url_file, &mut r.routing_key_file]
                .into_iter()
                .flatten()
                .for_each(anchor);
        }
        for t in &mut self.targets {
            t.probe.paths_mut().into_iter().for_each(anchor);
        }
        for m in self.modules.values_mut() {
            for (key, value) in m.probe.iter_mut() {
                if let Some(text) = value.as_str().filter(|_| key.ends_with("_file")) {
                    let mut path = PathBuf::from(text);
                    anchor(&mut path);
                    *value = serde_json::Value::String(path.display().to_string());
                }
            }
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
