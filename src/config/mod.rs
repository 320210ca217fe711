//! The configuration file: TOML through the `config` crate, `TOCSIN__…` environment
//! overrides, strict deserialization, then validation into runtime [`Settings`].
//!
//! Each component keeps its own config struct next to its code and builds its own validated
//! `*Spec` (`http::ServerConfig`, `topology::config::TargetConfig`, `alert::ReceiverConfig`,
//! `probe::module::ModuleConfig`, …); this module only assembles them, runs the checks that
//! span components (`validate`), and hands each component its part.
//!
//! Every problem is reported at once, in file order, each with where it is and its key
//! path: `source` reads the file and the environment into one tree that knows where each
//! value comes from, `schema` deserializes it finding every structural problem (unknown
//! key, wrong type, unknown value, missing key), and the semantic checks run on what could
//! be read.

mod schema;
mod source;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::alert::{ReceiverConfig, ReceiverSpec, SubscriptionsConfig, SubscriptionsSpec};
use crate::cluster::{ClusterConfig, ClusterSpec};
use crate::engine::EngineSpec;
use crate::http::{
    ExporterConfig, ExporterSpec, PageConfig, PageSpec, ServerConfig, ServerSpec, SiteSpec,
};
use crate::incident::{IncidentSpec, IncidentsConfig, ReportingConfig};
use crate::metrics::{MetricsConfig, MetricsSpec};
use crate::probe::module::{ModuleConfig, ModuleSpec};
pub use crate::store::Backend as StorageBackend;
use crate::store::{StorageConfig, StorageSpec};
use crate::topology::Topology;
use crate::topology::config::{
    DefaultsConfig, GroupConfig, MaintenanceConfig, ServiceConfig, TargetConfig,
};
use crate::validation::{Issue, Issues};

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
    pub cluster: ClusterConfig,
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
    #[serde(default)]
    pub subscriptions: SubscriptionsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
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
    /// `[cluster]`: leases of the instances sharing a PostgreSQL store.
    pub cluster: ClusterSpec,
    pub topology: Arc<Topology>,
    /// With the subscribers' own receiver when `[subscriptions]` is enabled.
    pub receivers: Vec<ReceiverSpec>,
    pub incidents: IncidentSpec,
    /// `[subscriptions]`, when enabled.
    pub subscriptions: Option<SubscriptionsSpec>,
    /// `[metrics]`: which series `/metrics` writes.
    pub metrics: MetricsSpec,
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
            subscriptions: self.subscriptions.clone(),
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
    /// The file is missing, a directory, or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bytes that are not UTF-8: the file is refused rather than read with U+FFFD in them.
    #[error(
        "{name}:{line}: not UTF-8: byte 0x{byte:02x} at offset {offset} (column {column}); save the file as UTF-8"
    )]
    NotUtf8 {
        name: String,
        line: usize,
        column: usize,
        offset: usize,
        byte: u8,
    },
    /// Not TOML: every syntax error found, one `name:line: invalid TOML: …` line each.
    #[error("{0}")]
    Syntax(String),
    /// A `TOCSIN__…` variable that is not Unicode.
    #[error("{0}")]
    Environment(#[from] ::config::ConfigError),
    /// Values that do not fit the schema or do not hold together: every one, in file order,
    /// one `tocsin.toml:42: key.path: message` line each.
    #[error("{0}")]
    Invalid(Issues),
}

/// Reads, deserializes and validates the configuration. Relative `*_file` paths are
/// taken from the configuration file's directory, not the working directory.
///
/// When a value cannot be read, the semantic checks still run on the rest: the schema
/// report drops what they find about replaced values and numbers paths as the file does.
pub fn load(source: &ConfigSource) -> Result<Settings, ConfigError> {
    let text = source::Text::read(source)?;
    let tree = text.tree()?;
    // The tree weighs more than what is built from it (about 1 KB a target): it goes as it
    // is read, each target's nodes once that target is deserialized, and issues are placed
    // on the tree read again from the same text.
    let (file, targets, report) =
        schema::deserialize_apart::<FileConfig, TargetConfig>(tree.into_root(), "targets");
    let semantic = file.map(|mut file| {
        file.targets = targets;
        if let ConfigSource::File(path) = source
            && let Some(dir) = path.parent()
        {
            file.anchor_files(dir);
        }
        validate::validate(file)
    });
    let semantic = match semantic {
        Some(Ok(settings)) if report.is_empty() => return Ok(settings),
        Some(Err(issues)) => issues
            .into_iter()
            .filter_map(|i| report.semantic(i))
            .collect(),
        _ => Vec::new(),
    };
    Err(ConfigError::Invalid(locate(
        &text.tree()?,
        report.issues().chain(semantic),
    )))
}

/// Reads and deserializes, with `TOCSIN__SECTION__KEY` environment overrides; no semantic
/// check.
pub fn read(source: &ConfigSource) -> Result<FileConfig, ConfigError> {
    let tree = source::read(source)?;
    match schema::deserialize::<FileConfig>(&tree.root) {
        (Some(file), report) if report.is_empty() => Ok(file),
        (_, report) => Err(ConfigError::Invalid(locate(&tree, report.issues()))),
    }
}

/// Gives each issue its place and sorts them down the file (stable: issues at one place
/// keep the order they were found in).
fn locate(tree: &source::Tree, issues: impl Iterator<Item = Issue>) -> Issues {
    let mut placed: Vec<(source::Place, Issue)> = issues
        .map(|mut issue| {
            let (place, location) = tree.locate(&issue.path);
            issue.location = Some(location);
            (place, issue)
        })
        .collect();
    placed.sort_by(|(a, _), (b, _)| a.cmp(b));
    placed.into_iter().map(|(_, issue)| issue).collect()
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
        self.server.users_file.iter_mut().for_each(anchor);
        self.storage.sqlite.iter_mut().for_each(anchor);
        self.storage.postgres_file.iter_mut().for_each(anchor);
        self.exporter.token_file.iter_mut().for_each(anchor);
        for r in &mut self.receivers {
            [
                &mut r.secret_file,
                &mut r.url_file,
                &mut r.routing_key_file,
                &mut r.password_file,
                &mut r.ca_file,
                &mut r.api_key_file,
            ]
            .into_iter()
            .flatten()
            .for_each(anchor);
        }
        let s = &mut self.subscriptions;
        [&mut s.password_file, &mut s.ca_file, &mut s.secret_file]
            .into_iter()
            .flatten()
            .for_each(anchor);
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
