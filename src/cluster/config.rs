//! `[cluster]`: how often an instance renews its membership, and how long a silent member
//! (or leader) keeps its lease. Used only with `storage.postgres`.

use std::time::Duration;

use serde::Deserialize;

use crate::validation::Issues;

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How often membership (and leadership) is renewed; default a third of `lease`.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// A member or leader silent this long is gone.
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    pub heartbeat: Duration,
    pub lease: Duration,
}

const DEFAULT_LEASE: Duration = Duration::from_secs(10);

impl ClusterConfig {
    /// Validates the table at `path`; `None` when it recorded a problem.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ClusterSpec> {
        let lease = self.lease.unwrap_or(DEFAULT_LEASE);
        let heartbeat = self.heartbeat.unwrap_or(lease / 3);
        let before = issues.len();
        if lease < Duration::from_millis(100) {
            issues.push(format!("{path}.lease"), "must be at least 100ms");
        }
        // A member must renew at least twice per lease, or one slow renewal loses it.
        if heartbeat.is_zero() || heartbeat * 2 > lease {
            issues.push(
                format!("{path}.heartbeat"),
                format!(
                    "must be more than zero and at most half of cluster.lease ({})",
                    humantime::format_duration(lease)
                ),
            );
        }
        (issues.len() == before).then_some(ClusterSpec { heartbeat, lease })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_defaults_to_a_third_of_the_lease() {
        let spec = ClusterConfig {
            heartbeat: None,
            lease: Some(Duration::from_secs(9)),
        }
        .build("cluster", &mut Issues::default())
        .unwrap();
        assert_eq!(spec.heartbeat, Duration::from_secs(3));
    }

    #[test]
    fn a_heartbeat_longer_than_half_the_lease_is_refused() {
        let mut issues = Issues::default();
        let spec = ClusterConfig {
            heartbeat: Some(Duration::from_secs(6)),
            lease: Some(Duration::from_secs(10)),
        }
        .build("cluster", &mut issues);
        assert!(spec.is_none());
        assert_eq!(issues.iter().next().unwrap().path, "cluster.heartbeat");
    }
}
