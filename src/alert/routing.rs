//! Which receiver gets which event, and when reminders are due. Pure: events and times in,
//! deliveries and state changes (to persist) out.

use std::collections::HashMap;
use std::sync::Arc;

use super::ReceiverSpec;
use crate::clock::Timestamp;
use crate::event::{AlertEvent, AlertType, new_event_id};
use crate::incident::IncidentView;

/// One event for one receiver, ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub receiver: String,
    pub event: AlertEvent,
}

/// Routing state to persist: a receiver heard of an incident (last sent then), or forgot it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub receiver: String,
    pub incident: String,
    pub last_sent: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub struct Routed {
    pub deliveries: Vec<Delivery>,
    pub marks: Vec<Mark>,
}

struct Route {
    spec: Arc<ReceiverSpec>,
    /// Incidents this receiver has been told about, with when it last heard.
    announced: HashMap<String, Timestamp>,
}

pub struct Routing {
    routes: Vec<Route>,
}

impl Routing {
    /// `marks` are the persisted (receiver, incident, last sent) of earlier runs.
    pub fn new(specs: &[ReceiverSpec], marks: &[(String, String, Timestamp)]) -> Self {
        let routes = specs
            .iter()
            .map(|spec| Route {
                announced: marks
                    .iter()
                    .filter(|(r, _, _)| *r == spec.name)
                    .map(|(_, incident, at)| (incident.clone(), *at))
                    .collect(),
                spec: Arc::new(spec.clone()),
            })
            .collect();
        Routing { routes }
    }

    /// The persisted state, for a new `Routing` after a reload.
    pub fn marks(&self) -> Vec<(String, String, Timestamp)> {
        self.routes
            .iter()
            .flat_map(|r| {
                r.announced
                    .iter()
                    .map(|(id, at)| (r.spec.name.clone(), id.clone(), *at))
            })
            .collect()
    }

    /// Routes one incident event: `min_severity` filters; the first event that qualifies
    /// announces the incident to the receiver as `incident.opened`; a resolution goes only
    /// to receivers that heard of the incident and want resolutions.
    pub fn route(&mut self, kind: AlertType, incident: &IncidentView, now: Timestamp) -> Routed {
        let mut out = Routed::default();
        for route in &mut self.routes {
            let name = &route.spec.name;
            let kind = match kind {
                AlertType::Resolved => {
                    if route.announced.remove(&incident.id).is_none() {
                        continue;
                    }
                    out.marks.push(mark(name, &incident.id, None));
                    if !route.spec.send_resolved {
                        continue;
                    }
                    AlertType::Resolved
                }
                _ if incident.severity < route.spec.min_severity => continue,
                _ if !route.spec.covers(&incident.services) => continue,
                _ if !route.announced.contains_key(&incident.id) => AlertType::Opened,
                other => other,
            };
            if kind != AlertType::Resolved {
                route.announced.insert(incident.id.clone(), now);
                out.marks.push(mark(name, &incident.id, Some(now)));
            }
            out.deliveries.push(delivery(name, kind, incident, now));
        }
        out
    }

    /// Reminders due at `now` for the open incidents; forgets incidents no longer open.
    pub fn remind(&mut self, open: &[IncidentView], now: Timestamp) -> Routed {
        let mut out = Routed::default();
        for route in &mut self.routes {
            let name = &route.spec.name;
            route.announced.retain(|id, _| {
                let still_open = open.iter().any(|i| i.id == *id);
                if !still_open {
                    out.marks.push(mark(name, id, None));
                }
                still_open
            });
            let Some(every) = route
                .spec
                .resend_every()
                .and_then(|e| chrono::Duration::from_std(e).ok())
            else {
                continue;
            };
            for incident in open {
                let Some(last) = route.announced.get_mut(&incident.id) else {
                    continue;
                };
                if now - *last >= every {
                    *last = now;
                    out.marks.push(mark(name, &incident.id, Some(now)));
                    out.deliveries
                        .push(delivery(name, AlertType::Reminder, incident, now));
                }
            }
        }
        out
    }
}

fn mark(receiver: &str, incident: &str, last_sent: Option<Timestamp>) -> Mark {
    Mark {
        receiver: receiver.to_string(),
        incident: incident.to_string(),
        last_sent,
    }
}

fn delivery(receiver: &str, kind: AlertType, incident: &IncidentView, now: Timestamp) -> Delivery {
    Delivery {
        receiver: receiver.to_string(),
        event: AlertEvent {
            kind,
            id: new_event_id(),
            occurred_at: now,
            incident: incident.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alert::alertmanager::AlertmanagerSpec;
    use crate::alert::webhook::WebhookSpec;
    use crate::alert::{ReceiverKind, ReceiverSpec};
    use crate::incident::Severity;

    fn t(s: &str) -> Timestamp {
        format!("2026-07-05T{s}Z").parse().unwrap()
    }

    fn spec(name: &str, min: Severity, resolved: bool, repeat: Option<u64>) -> ReceiverSpec {
        ReceiverSpec {
            name: name.into(),
            kind: ReceiverKind::Webhook(WebhookSpec {
                url: "http://127.0.0.1:9/".parse().unwrap(),
                key: None,
            }),
            min_severity: min,
            send_resolved: resolved,
            repeat_interval: repeat.map(Duration::from_secs),
            timeout: Duration::from_secs(1),
            max_retry_age: Duration::from_secs(60),
            max_per_minute: 30,
            services: vec![],
        }
    }

    fn view(id: &str, severity: &str) -> IncidentView {
        serde_json::from_value(serde_json::json!({
            "id": id, "status": "investigating", "services": ["voicemail"],
            "platforms": [], "regions": [], "scope": "localized",
            "platform_concentrated": false, "severity": severity, "impact": "major",
            "onset_at": "2026-07-05T14:00:00Z", "detected_at": "2026-07-05T14:00:30Z",
            "impact_end_at": null, "resolved_at": null, "time_to_detect_seconds": 30,
            "duration_seconds": 0, "peak_affected": 1, "user_minutes": 0,
            "conservative_user_minutes": 0, "per_service": {}, "reporting": null,
            "suspected_cause": null, "recurrence": null, "timeline": []
        }))
        .unwrap()
    }

    fn kinds(routed: &Routed) -> Vec<(&str, AlertType)> {
        routed
            .deliveries
            .iter()
            .map(|d| (d.receiver.as_str(), d.event.kind))
            .collect()
    }

    #[test]
    fn min_severity_announcement_and_resolution() {
        let mut routing = Routing::new(
            &[
                spec("all", Severity::Sev4, true, None),
                spec("pager", Severity::Sev2, true, None),
                spec("quiet", Severity::Sev4, false, None),
            ],
            &[],
        );
        let sev3 = view("inc-1", "sev3");
        let opened = routing.route(AlertType::Opened, &sev3, t("14:00:30"));
        assert_eq!(
            kinds(&opened),
            [("all", AlertType::Opened), ("quiet", AlertType::Opened)]
        );

        // Rising to sev2: an update for those who know, the first news for the pager.
        let sev2 = view("inc-1", "sev2");
        let updated = routing.route(AlertType::Updated, &sev2, t("14:05:00"));
        assert_eq!(
            kinds(&updated),
            [
                ("all", AlertType::Updated),
                ("pager", AlertType::Opened),
                ("quiet", AlertType::Updated)
            ]
        );
        let ids: Vec<&str> = updated
            .deliveries
            .iter()
            .map(|d| d.event.id.as_str())
            .collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2],
            "one event id per delivery"
        );

        let resolved = routing.route(AlertType::Resolved, &sev2, t("15:00:00"));
        assert_eq!(
            kinds(&resolved),
            [("all", AlertType::Resolved), ("pager", AlertType::Resolved)],
            "`quiet` has send_resolved = false"
        );
        assert_eq!(
            resolved.marks.len(),
            3,
            "every receiver forgets the incident"
        );
        assert!(resolved.marks.iter().all(|m| m.last_sent.is_none()));
        assert!(routing.marks().is_empty());

        // A resolution of an incident a receiver never heard of is not sent.
        let unknown = routing.route(AlertType::Resolved, &view("inc-2", "sev4"), t("15:00:00"));
        assert!(unknown.deliveries.is_empty());
    }

    #[test]
    fn reminders_follow_the_interval_and_alertmanager_is_resent_every_minute() {
        let mut am = spec("am", Severity::Sev4, true, None);
        am.kind = ReceiverKind::Alertmanager(AlertmanagerSpec::new(
            "http://127.0.0.1:9093".parse().unwrap(),
        ));
        let mut routing = Routing::new(&[spec("noc", Severity::Sev4, true, Some(3600)), am], &[]);
        let inc = view("inc-1", "sev2");
        routing.route(AlertType::Opened, &inc, t("14:00:00"));
        let open = [inc.clone()];
        assert!(kinds(&routing.remind(&open, t("14:00:59"))).is_empty());
        assert_eq!(
            kinds(&routing.remind(&open, t("14:01:00"))),
            [("am", AlertType::Reminder)]
        );
        assert_eq!(
            kinds(&routing.remind(&open, t("15:00:00"))),
            [("noc", AlertType::Reminder), ("am", AlertType::Reminder)]
        );
        // Gone from the open list: forgotten, no more reminders.
        let forgotten = routing.remind(&[], t("16:00:00"));
        assert!(forgotten.deliveries.is_empty());
        assert_eq!(forgotten.marks.len(), 2);
    }

    #[test]
    fn a_services_filter_keeps_other_services_out() {
        let mut voice_only = spec("voice-team", Severity::Sev4, true, None);
        voice_only.services = vec!["voice".into()];
        let mut routing = Routing::new(&[voice_only], &[]);
        let voicemail = view("inc-1", "sev2");
        assert!(
            routing
                .route(AlertType::Opened, &voicemail, t("14:00:00"))
                .deliveries
                .is_empty()
        );
        let mut both = view("inc-2", "sev2");
        both.services = vec!["voice".into(), "voicemail".into()];
        assert_eq!(
            kinds(&routing.route(AlertType::Opened, &both, t("14:00:00"))),
            [("voice-team", AlertType::Opened)]
        );
    }

    #[test]
    fn persisted_marks_survive_a_restart() {
        let specs = [spec("noc", Severity::Sev4, true, None)];
        let mut routing = Routing::new(&specs, &[]);
        let inc = view("inc-1", "sev3");
        routing.route(AlertType::Opened, &inc, t("14:00:00"));
        let mut restarted = Routing::new(&specs, &routing.marks());
        let again = restarted.route(AlertType::Updated, &inc, t("14:10:00"));
        assert_eq!(
            kinds(&again),
            [("noc", AlertType::Updated)],
            "no second opened"
        );
    }
}
