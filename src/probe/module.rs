//! `[modules.NAME]`: probe templates for the blackbox_exporter-compatible `GET /probe`, a
//! probe table without its target plus a timeout. Validated by building the probe against a
//! placeholder target, so a module that would fail for every target is refused at load.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::adhoc;
use crate::validation::Issues;

/// `[modules.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
    /// A probe table (`type` and options) without the key the target fills.
    pub probe: Map<String, Value>,
    /// Upper bound on one probe; Prometheus' scrape timeout may shorten it.
    #[serde(default = "default_module_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_module_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A validated module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    pub probe: Map<String, Value>,
    pub timeout: Duration,
}

impl ModuleConfig {
    /// Checks the module by building it against a placeholder target.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ModuleSpec> {
        if self.timeout.is_zero() {
            issues.push(format!("{path}.timeout"), "must be greater than zero");
            return None;
        }
        let placeholder = match self.probe.get("type").and_then(Value::as_str) {
            Some("icmp") => "127.0.0.1",
            _ => "127.0.0.1:1",
        };
        if let Err(errors) = adhoc::build(&format!("{path}.probe"), self.probe.clone(), placeholder)
        {
            for line in errors.lines() {
                match line.split_once(": ") {
                    Some((key, message)) => issues.push(key, message),
                    None => issues.push(format!("{path}.probe"), line),
                }
            }
            return None;
        }
        Some(ModuleSpec {
            probe: self.probe.clone(),
            timeout: self.timeout,
        })
    }
}

/// Every `[modules.*]`, validated; problems are recorded under `modules.NAME`.
pub fn build_all(
    modules: &BTreeMap<String, ModuleConfig>,
    issues: &mut Issues,
) -> BTreeMap<String, ModuleSpec> {
    modules
        .iter()
        .filter_map(|(name, m)| Some((name.clone(), m.build(&format!("modules.{name}"), issues)?)))
        .collect()
}
