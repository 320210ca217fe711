//! Why and how often: the change suspected of causing an incident, and how
//! many incidents hit the same service and platform in the last 30 days.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Incident;
use crate::clock::Timestamp;

/// A registered software update, deploy or configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub platform: Option<String>,
    pub service: Option<String>,
    pub summary: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    High,
    Low,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectedCause {
    pub change_id: String,
    pub lag_seconds: u64,
    pub confidence: Confidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// Incidents on a same service and platform in the 30 days up to this one's onset,
    /// this one included.
    pub count_30d: u32,
    /// Three or more.
    pub chronic: bool,
}

/// A change this close before the onset is a likely cause.
pub const HIGH_CONFIDENCE_LAG: Duration = Duration::from_secs(2 * 3600);
/// Beyond this, a change is not considered at all.
pub const MAX_LAG: Duration = Duration::from_secs(72 * 3600);
pub const RECURRENCE_WINDOW: Duration = Duration::from_secs(30 * 86400);
pub const CHRONIC_COUNT: u32 = 3;

/// The most recent change before the onset on an affected platform, or on an affected
/// service when the change names no platform, within 72 h.
pub fn suspect(changes: &[Change], incident: &Incident) -> Option<SuspectedCause> {
    let platforms: Vec<&String> = incident
        .groups
        .iter()
        .filter(|g| !g.periods.is_empty())
        .filter_map(|g| g.platform.as_ref())
        .collect();
    changes
        .iter()
        .filter(|c| match (&c.platform, &c.service) {
            (Some(p), _) => platforms.contains(&p),
            (None, Some(s)) => incident.services.contains_key(s),
            (None, None) => false,
        })
        .filter_map(|c| {
            let lag = (incident.onset_at - c.at).to_std().ok()?;
            (lag <= MAX_LAG).then_some((lag, c))
        })
        .min_by_key(|(lag, _)| *lag)
        .map(|(lag, c)| SuspectedCause {
            change_id: c.id.clone(),
            lag_seconds: lag.as_secs(),
            confidence: if lag <= HIGH_CONFIDENCE_LAG {
                Confidence::High
            } else {
                Confidence::Low
            },
        })
}

/// What recurrence needs to remember of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastIncident {
    pub id: String,
    pub onset_at: Timestamp,
    /// (service, platform) pairs that had a down or degraded group.
    pub footprint: Vec<(String, String)>,
}

impl PastIncident {
    pub fn of(incident: &Incident) -> Self {
        let mut footprint: Vec<(String, String)> = incident
            .groups
            .iter()
            .filter(|g| !g.periods.is_empty())
            .filter_map(|g| Some((g.service.clone(), g.platform.clone()?)))
            .collect();
        footprint.sort();
        footprint.dedup();
        PastIncident {
            id: incident.id.clone(),
            onset_at: incident.onset_at,
            footprint,
        }
    }
}

/// Counts the incidents sharing a (service, platform) with `incident` whose onset falls in
/// the 30 days up to its onset, itself included. `None` when it names no platform.
pub fn recurrence(history: &[PastIncident], incident: &Incident) -> Option<Recurrence> {
    let me = PastIncident::of(incident);
    if me.footprint.is_empty() {
        return None;
    }
    let window = chrono::Duration::from_std(RECURRENCE_WINDOW).expect("30 days fits");
    let earlier = history
        .iter()
        .filter(|p| p.id != me.id)
        .filter(|p| p.onset_at <= me.onset_at && me.onset_at - p.onset_at <= window)
        .filter(|p| p.footprint.iter().any(|f| me.footprint.contains(f)))
        .count() as u32;
    let count_30d = earlier + 1;
    Some(Recurrence {
        count_30d,
        chronic: count_30d >= CHRONIC_COUNT,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::incident::{
        ComponentStatus, GroupImpact, Health, Impact, IncidentStatus, Period, Scope, ServiceEntry,
        Severity,
    };

    fn t(s: &str) -> Timestamp {
        format!("2026-07-05T{s}Z").parse().unwrap()
    }

    fn day(d: u32, hms: &str) -> Timestamp {
        format!("2026-07-{d:02}T{hms}Z").parse().unwrap()
    }

    fn incident(id: &str, onset: Timestamp, service: &str, platform: Option<&str>) -> Incident {
        Incident {
            id: id.into(),
            seq: 1,
            status: IncidentStatus::Investigating,
            severity: Severity::Sev3,
            impact: Impact::Major,
            scope: Scope::Localized,
            platform_concentrated: false,
            onset_at: onset,
            detected_at: onset,
            impact_end_at: None,
            monitoring_at: None,
            resolved_at: None,
            services: BTreeMap::from([(
                service.to_string(),
                ServiceEntry {
                    name: service.into(),
                    subscribers: 1000,
                    component_status: ComponentStatus::PartialOutage,
                    class: Default::default(),
                    through: None,
                },
            )]),
            groups: vec![GroupImpact {
                group: "g".into(),
                service: service.into(),
                platform: platform.map(Into::into),
                region: None,
                subscribers: 10,
                periods: vec![Period {
                    health: Health::Down,
                    start: onset,
                    end: None,
                }],
            }],
            suspected_cause: None,
            recurrence: None,
            acknowledged_at: None,
            reporting: BTreeMap::new(),
            announced_affected: None,
            timeline: vec![],
            steps_omitted: 0,
        }
    }

    fn change(id: &str, at: Timestamp, platform: Option<&str>, service: Option<&str>) -> Change {
        Change {
            id: id.into(),
            platform: platform.map(Into::into),
            service: service.map(Into::into),
            summary: "update".into(),
            at,
        }
    }

    #[test]
    fn confidence_by_lag_at_the_boundaries() {
        let inc = incident("inc-1", t("14:00:00"), "voicemail", Some("vm-a"));
        let onset = inc.onset_at;
        let cases = [
            (chrono::Duration::zero(), Some(Confidence::High)),
            (chrono::Duration::hours(2), Some(Confidence::High)),
            (
                chrono::Duration::hours(2) + chrono::Duration::seconds(1),
                Some(Confidence::Low),
            ),
            (chrono::Duration::hours(72), Some(Confidence::Low)),
            (
                chrono::Duration::hours(72) + chrono::Duration::seconds(1),
                None,
            ),
            // After the onset: not a cause.
            (chrono::Duration::seconds(-1), None),
        ];
        for (lag, expected) in cases {
            let changes = [change("chg", onset - lag, Some("vm-a"), None)];
            let got = suspect(&changes, &inc);
            assert_eq!(got.as_ref().map(|s| s.confidence), expected, "lag {lag}");
            if let Some(s) = got {
                assert_eq!(s.lag_seconds as i64, lag.num_seconds());
            }
        }
    }

    #[test]
    fn scope_of_a_change_and_the_closest_one_wins() {
        let inc = incident("inc-1", t("14:00:00"), "voicemail", Some("vm-a"));
        let changes = [
            change(
                "other-platform",
                t("13:59:00"),
                Some("vm-b"),
                Some("voicemail"),
            ),
            change("service-wide", t("13:30:00"), None, Some("voicemail")),
            change("platform-old", t("12:00:00"), Some("vm-a"), None),
            change("unscoped", t("13:59:30"), None, None),
            change("other-service", t("13:59:30"), None, Some("data")),
        ];
        let s = suspect(&changes, &inc).unwrap();
        // A change naming a platform counts only for that platform, even if it names the
        // service too; one without a platform counts for its service.
        assert_eq!(s.change_id, "service-wide");
        assert_eq!(s.lag_seconds, 1800);
        assert_eq!(s.confidence, Confidence::High);
    }

    #[test]
    fn chronic_at_the_third_incident_within_30_days() {
        let history = vec![
            PastIncident::of(&incident(
                "inc-1",
                day(1, "10:00:00"),
                "voicemail",
                Some("vm-a"),
            )),
            // Another platform: not the same problem.
            PastIncident::of(&incident(
                "inc-2",
                day(2, "10:00:00"),
                "voicemail",
                Some("vm-b"),
            )),
            PastIncident::of(&incident(
                "inc-3",
                day(10, "10:00:00"),
                "voicemail",
                Some("vm-a"),
            )),
        ];
        let third = incident("inc-4", day(20, "10:00:00"), "voicemail", Some("vm-a"));
        assert_eq!(
            recurrence(&history, &third),
            Some(Recurrence {
                count_30d: 3,
                chronic: true
            })
        );
        // 30 days and one second after inc-1, only inc-3 is in the window.
        let later = incident("inc-5", day(31, "10:00:01"), "voicemail", Some("vm-a"));
        assert_eq!(
            recurrence(&history, &later),
            Some(Recurrence {
                count_30d: 2,
                chronic: false
            })
        );
        // Exactly 30 days after inc-1: still in.
        let edge = incident("inc-6", day(31, "10:00:00"), "voicemail", Some("vm-a"));
        assert_eq!(recurrence(&history, &edge).unwrap().count_30d, 3);
        // An incident is not counted twice when it is in the history itself.
        let mut with_self = history.clone();
        with_self.push(PastIncident::of(&third));
        assert_eq!(recurrence(&with_self, &third).unwrap().count_30d, 3);
        // No platform known: no recurrence.
        assert_eq!(
            recurrence(
                &history,
                &incident("inc-7", day(20, "10:00:00"), "web", None)
            ),
            None
        );
    }
}
