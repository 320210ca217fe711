//! Which receiver gets which event, and when waiting updates and reminders are due. Pure:
//! events and times in, deliveries and state changes (to persist) out.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::event::{AlertEvent, AlertType, VantageNews, new_event_id};
use crate::incident::{EventKind, Incident, IncidentView, Severity};
use crate::store::RouteState;

/// What routing needs of a receiver ([`super::ReceiverSpec::policy`]); replay routes its
/// one stream with a policy of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub min_severity: Severity,
    pub send_resolved: bool,
    /// Only incidents touching one of these services (ids); every incident when empty.
    pub services: Vec<String>,
    /// An open incident is sent again this long after the last event; never when unset.
    pub resend_every: Option<Duration>,
    /// `incident.updated` of one incident at most this often.
    pub update_interval: Duration,
    /// Also `vantage.impaired` and `vantage.recovered`.
    pub vantage_events: bool,
}

impl Policy {
    fn covers(&self, services: &[String]) -> bool {
        self.services.is_empty() || services.iter().any(|s| self.services.contains(s))
    }

    /// Whether an update may go out now: `update_interval` after the last opened or
    /// updated.
    fn update_due(&self, state: &RouteState, now: Timestamp) -> bool {
        state
            .last_update
            .is_none_or(|at| now - at >= chrono_duration(self.update_interval))
    }

    fn reminder_due(&self, state: &RouteState, now: Timestamp) -> bool {
        self.resend_every
            .is_some_and(|every| now - state.last_sent >= chrono_duration(every))
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// One event for one receiver, ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub receiver: String,
    pub event: AlertEvent,
}

/// Routing state to persist: what a receiver heard of an incident, or that it forgot it
/// (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub receiver: String,
    pub incident: String,
    pub state: Option<RouteState>,
}

#[derive(Debug, Default)]
pub struct Routed {
    pub deliveries: Vec<Delivery>,
    pub marks: Vec<Mark>,
}

struct Route {
    policy: Policy,
    /// Incidents this receiver has been told about.
    announced: HashMap<String, RouteState>,
}

pub struct Routing {
    routes: Vec<Route>,
}

impl Routing {
    /// `marks` are the persisted (receiver, incident, state) of earlier runs.
    pub fn new(
        policies: impl IntoIterator<Item = Policy>,
        marks: &[(String, String, RouteState)],
    ) -> Self {
        let routes = policies
            .into_iter()
            .map(|policy| Route {
                announced: marks
                    .iter()
                    .filter(|(r, _, _)| *r == policy.name)
                    .map(|(_, incident, state)| (incident.clone(), *state))
                    .collect(),
                policy,
            })
            .collect();
        Routing { routes }
    }

    /// A vantage found impaired, or recovered: to every receiver that asks for vantage
    /// events, once (nothing to remember: no reminder, no update).
    pub fn vantage(&self, kind: AlertType, vantage: &str, status: &str, now: Timestamp) -> Routed {
        let mut out = Routed::default();
        for route in self.routes.iter().filter(|r| r.policy.vantage_events) {
            out.deliveries.push(Delivery {
                receiver: route.policy.name.clone(),
                event: AlertEvent {
                    kind,
                    id: new_event_id(),
                    occurred_at: now,
                    incident: None,
                    vantage: Some(VantageNews {
                        name: vantage.to_string(),
                        status: status.to_string(),
                    }),
                },
            });
        }
        out
    }

    /// The persisted state, for a new `Routing` after a reload.
    pub fn marks(&self) -> Vec<(String, String, RouteState)> {
        self.routes
            .iter()
            .flat_map(|r| {
                r.announced
                    .iter()
                    .map(|(id, state)| (r.policy.name.clone(), id.clone(), *state))
            })
            .collect()
    }

    /// Routes one event of the incident engine. `min_severity` and `services` filter; the
    /// first event that qualifies announces the incident to the receiver as
    /// `incident.opened`, at once. An update goes out at once when `update_interval` has
    /// passed since the receiver's last opened or updated; otherwise it waits, and
    /// [`Routing::tick`] sends the incident as it is by then, so a burst of updates becomes
    /// one carrying the latest state. A resolution goes at once, only to receivers that
    /// heard of the incident and want resolutions; it carries the final state, so an update
    /// still waiting is dropped.
    pub fn route(&mut self, kind: EventKind, incident: &IncidentView, now: Timestamp) -> Routed {
        self.dispatch(kind, incident, now, false)
    }

    /// An operator acknowledged the incident: an update to every receiver at once, not
    /// held by `update_interval` (PagerDuty stops escalating on it). It carries the latest
    /// state, so it also stands for an update that was waiting.
    pub fn acknowledged(&mut self, incident: &IncidentView, now: Timestamp) -> Routed {
        self.dispatch(EventKind::Updated, incident, now, true)
    }

    /// An operator posted a customer-facing update: like an acknowledgement, an update to
    /// every receiver at once, so that subscribers read it without waiting.
    pub fn posted(&mut self, incident: &IncidentView, now: Timestamp) -> Routed {
        self.dispatch(EventKind::Updated, incident, now, true)
    }

    fn dispatch(
        &mut self,
        kind: EventKind,
        incident: &IncidentView,
        now: Timestamp,
        at_once: bool,
    ) -> Routed {
        let mut out = Routed::default();
        let sent = RouteState {
            last_sent: now,
            last_update: Some(now),
            update_pending: false,
        };
        for route in &mut self.routes {
            let policy = &route.policy;
            let name = &policy.name;
            if kind == EventKind::Resolved {
                if route.announced.remove(&incident.id).is_none() {
                    continue;
                }
                out.marks.push(mark(name, &incident.id, None));
                if policy.send_resolved {
                    out.deliveries
                        .push(delivery(name, AlertType::Resolved, incident, now));
                }
                continue;
            }
            // Services failing through a dependency are inhibited: only those failing in
            // their own right route the incident.
            if incident.severity < policy.min_severity || !policy.covers(&incident.own_services()) {
                continue;
            }
            let kind = match route.announced.get_mut(&incident.id) {
                None => {
                    route.announced.insert(incident.id.clone(), sent);
                    AlertType::Opened
                }
                Some(state) if at_once || policy.update_due(state, now) => {
                    *state = sent;
                    AlertType::Updated
                }
                Some(state) => {
                    if !state.update_pending {
                        state.update_pending = true;
                        out.marks.push(mark(name, &incident.id, Some(*state)));
                    }
                    continue;
                }
            };
            out.marks.push(mark(name, &incident.id, Some(sent)));
            out.deliveries.push(delivery(name, kind, incident, now));
        }
        out
    }

    /// What is due at `now` for the open incidents: waiting updates whose interval has
    /// passed (with the incident as it is now), else reminders. Forgets incidents no
    /// longer open. Views are built only for incidents with something due.
    pub fn tick(&mut self, open: &[Incident], now: Timestamp) -> Routed {
        let mut out = Routed::default();
        let mut views: Vec<Option<IncidentView>> = vec![None; open.len()];
        for route in &mut self.routes {
            let name = &route.policy.name;
            route.announced.retain(|id, _| {
                let still_open = open.iter().any(|i| i.id == *id);
                if !still_open {
                    out.marks.push(mark(name, id, None));
                }
                still_open
            });
            for (incident, view) in open.iter().zip(&mut views) {
                let Some(state) = route.announced.get_mut(&incident.id) else {
                    continue;
                };
                let kind = if state.update_pending && route.policy.update_due(state, now) {
                    state.last_update = Some(now);
                    state.update_pending = false;
                    AlertType::Updated
                } else if route.policy.reminder_due(state, now) {
                    AlertType::Reminder
                } else {
                    continue;
                };
                state.last_sent = now;
                out.marks.push(mark(name, &incident.id, Some(*state)));
                let view = view.get_or_insert_with(|| incident.view(now));
                out.deliveries.push(delivery(name, kind, view, now));
            }
        }
        out
    }
}

fn mark(receiver: &str, incident: &str, state: Option<RouteState>) -> Mark {
    Mark {
        receiver: receiver.to_string(),
        incident: incident.to_string(),
        state,
    }
}

fn delivery(receiver: &str, kind: AlertType, incident: &IncidentView, now: Timestamp) -> Delivery {
    Delivery {
        receiver: receiver.to_string(),
        event: AlertEvent {
            kind,
            id: new_event_id(),
            occurred_at: now,
            incident: Some(incident.clone()),
            vantage: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::alertmanager::AlertmanagerSpec;
    use crate::alert::{ReceiverKind, ReceiverSpec};

    fn t(s: &str) -> Timestamp {
        format!("2026-07-05T{s}Z").parse().unwrap()
    }

    fn policy(name: &str, min: Severity, resolved: bool, repeat: Option<u64>) -> Policy {
        Policy {
            name: name.into(),
            min_severity: min,
            send_resolved: resolved,
            services: vec![],
            resend_every: repeat.map(Duration::from_secs),
            update_interval: Duration::from_secs(60),
            vantage_events: name == "noc",
        }
    }

    fn incident(id: &str, severity: &str) -> Incident {
        serde_json::from_value(serde_json::json!({
            "id": id, "seq": 1, "status": "investigating", "severity": severity,
            "impact": "major", "scope": "localized", "platform_concentrated": false,
            "onset_at": "2026-07-05T14:00:00Z", "detected_at": "2026-07-05T14:00:30Z",
            "impact_end_at": null, "monitoring_at": null, "resolved_at": null,
            "services": {"voicemail": {"name": "Voicemail", "subscribers": 1000,
                                       "component_status": "partial_outage"}},
            "groups": [], "timeline": []
        }))
        .unwrap()
    }

    fn view(id: &str, severity: &str) -> IncidentView {
        incident(id, severity).view(t("14:00:30"))
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
            [
                policy("all", Severity::Sev4, true, None),
                policy("pager", Severity::Sev2, true, None),
                policy("quiet", Severity::Sev4, false, None),
            ],
            &[],
        );
        let sev3 = view("inc-1", "sev3");
        let opened = routing.route(EventKind::Opened, &sev3, t("14:00:30"));
        assert_eq!(
            kinds(&opened),
            [("all", AlertType::Opened), ("quiet", AlertType::Opened)]
        );

        // Rising to sev2: an update for those who know, the first news for the pager.
        let sev2 = view("inc-1", "sev2");
        let updated = routing.route(EventKind::Updated, &sev2, t("14:05:00"));
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

        let resolved = routing.route(EventKind::Resolved, &sev2, t("15:00:00"));
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
        assert!(resolved.marks.iter().all(|m| m.state.is_none()));
        assert!(routing.marks().is_empty());

        // A resolution of an incident a receiver never heard of is not sent.
        let unknown = routing.route(EventKind::Resolved, &view("inc-2", "sev4"), t("15:00:00"));
        assert!(unknown.deliveries.is_empty());
    }

    #[test]
    fn vantage_events_go_to_the_receivers_that_ask() {
        let routing = Routing::new(
            [
                policy("noc", Severity::Sev4, true, None),
                policy("chat", Severity::Sev4, true, None),
            ],
            &[],
        );
        let routed = routing.vantage(
            AlertType::VantageImpaired,
            "lyon-1",
            "impaired",
            t("14:00:00"),
        );
        assert_eq!(routed.deliveries.len(), 1);
        let d = &routed.deliveries[0];
        assert_eq!(d.receiver, "noc");
        assert_eq!(d.event.incident, None);
        let json = serde_json::to_value(&d.event).unwrap();
        assert_eq!(json["type"], "vantage.impaired");
        assert_eq!(
            json["vantage"],
            serde_json::json!({"name": "lyon-1", "status": "impaired"})
        );
        assert!(json.get("incident").is_none());
    }

    #[test]
    fn reminders_follow_the_interval_and_alertmanager_is_resent_every_minute() {
        let am = ReceiverSpec {
            name: "am".into(),
            kind: ReceiverKind::Alertmanager(AlertmanagerSpec::new(
                "http://127.0.0.1:9093".parse().unwrap(),
            )),
            min_severity: Severity::Sev4,
            send_resolved: true,
            repeat_interval: None,
            update_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
            max_retry_age: Duration::from_secs(60),
            max_per_minute: 30,
            services: vec![],
            vantage_events: false,
        };
        let mut routing = Routing::new(
            [policy("noc", Severity::Sev4, true, Some(3600)), am.policy()],
            &[],
        );
        let open = [incident("inc-1", "sev2")];
        routing.route(
            EventKind::Opened,
            &open[0].view(t("14:00:00")),
            t("14:00:00"),
        );
        assert!(kinds(&routing.tick(&open, t("14:00:59"))).is_empty());
        assert_eq!(
            kinds(&routing.tick(&open, t("14:01:00"))),
            [("am", AlertType::Reminder)]
        );
        assert_eq!(
            kinds(&routing.tick(&open, t("15:00:00"))),
            [("noc", AlertType::Reminder), ("am", AlertType::Reminder)]
        );
        // Gone from the open list: forgotten, no more reminders.
        let forgotten = routing.tick(&[], t("16:00:00"));
        assert!(forgotten.deliveries.is_empty());
        assert_eq!(forgotten.marks.len(), 2);
    }

    #[test]
    fn a_services_filter_keeps_other_services_out() {
        let mut voice_only = policy("voice-team", Severity::Sev4, true, None);
        voice_only.services = vec!["voice".into()];
        let mut routing = Routing::new([voice_only], &[]);
        let voicemail = view("inc-1", "sev2");
        assert!(
            routing
                .route(EventKind::Opened, &voicemail, t("14:00:00"))
                .deliveries
                .is_empty()
        );
        let mut both = view("inc-2", "sev2");
        both.services = vec!["voice".into(), "voicemail".into()];
        assert_eq!(
            kinds(&routing.route(EventKind::Opened, &both, t("14:00:00"))),
            [("voice-team", AlertType::Opened)]
        );
    }

    #[test]
    fn persisted_marks_survive_a_restart() {
        let policies = [policy("noc", Severity::Sev4, true, None)];
        let mut routing = Routing::new(policies.clone(), &[]);
        let inc = view("inc-1", "sev3");
        routing.route(EventKind::Opened, &inc, t("14:00:00"));
        let mut restarted = Routing::new(policies, &routing.marks());
        let again = restarted.route(EventKind::Updated, &inc, t("14:10:00"));
        assert_eq!(
            kinds(&again),
            [("noc", AlertType::Updated)],
            "no second opened"
        );
    }

    /// Updates inside `update_interval` wait; when it has passed, one update goes out with
    /// the incident as it is then, never an older state.
    #[test]
    fn updates_within_the_interval_wait_and_the_latest_state_goes_out() {
        let mut routing = Routing::new([policy("noc", Severity::Sev4, true, None)], &[]);
        let mut inc = incident("inc-1", "sev3");
        let opened = routing.route(EventKind::Opened, &inc.view(t("14:00:00")), t("14:00:00"));
        assert_eq!(kinds(&opened), [("noc", AlertType::Opened)]);

        inc.severity = Severity::Sev2;
        let held = routing.route(EventKind::Updated, &inc.view(t("14:00:20")), t("14:00:20"));
        assert!(held.deliveries.is_empty(), "within a minute of the opening");
        assert_eq!(held.marks.len(), 1, "the waiting update is persisted");
        assert!(held.marks[0].state.is_some_and(|s| s.update_pending));
        inc.scope = crate::incident::Scope::Regional;
        let again = routing.route(EventKind::Updated, &inc.view(t("14:00:40")), t("14:00:40"));
        assert!(again.deliveries.is_empty() && again.marks.is_empty());

        inc.severity = Severity::Sev1;
        let open = [inc];
        assert!(routing.tick(&open, t("14:00:59")).deliveries.is_empty());
        let due = routing.tick(&open, t("14:01:00"));
        assert_eq!(kinds(&due), [("noc", AlertType::Updated)]);
        let sent = &due.deliveries[0].event;
        assert_eq!(sent.occurred_at, t("14:01:00"));
        let inc = sent.incident.as_ref().unwrap();
        assert_eq!(inc.severity, Severity::Sev1, "the latest state");
        assert_eq!(inc.scope, crate::incident::Scope::Regional);
        assert!(due.marks[0].state.is_some_and(|s| !s.update_pending));
        assert!(
            routing.tick(&open, t("14:05:00")).deliveries.is_empty(),
            "once"
        );

        // The interval has passed since that update: the next one goes out at once.
        let next = routing.route(
            EventKind::Updated,
            &open[0].view(t("14:02:00")),
            t("14:02:00"),
        );
        assert_eq!(kinds(&next), [("noc", AlertType::Updated)]);
    }

    /// Openings and resolutions never wait, and a resolution drops the waiting update.
    #[test]
    fn opened_and_resolved_are_never_delayed() {
        let mut routing = Routing::new(
            [
                policy("all", Severity::Sev4, true, None),
                policy("pager", Severity::Sev2, true, None),
            ],
            &[],
        );
        let mut inc = incident("inc-1", "sev3");
        routing.route(EventKind::Opened, &inc.view(t("14:00:00")), t("14:00:00"));
        inc.severity = Severity::Sev2;
        let rise = routing.route(EventKind::Updated, &inc.view(t("14:00:10")), t("14:00:10"));
        assert_eq!(
            kinds(&rise),
            [("pager", AlertType::Opened)],
            "the pager's first news goes out at once; `all` waits"
        );
        let resolved = routing.route(EventKind::Resolved, &inc.view(t("14:00:20")), t("14:00:20"));
        assert_eq!(
            kinds(&resolved),
            [("all", AlertType::Resolved), ("pager", AlertType::Resolved)]
        );
        assert!(
            routing.tick(&[], t("14:02:00")).deliveries.is_empty(),
            "the resolution carried the final state: no update after it"
        );
    }

    #[test]
    fn an_acknowledgement_goes_at_once_and_stands_for_a_waiting_update() {
        let mut routing = Routing::new([policy("pager", Severity::Sev4, true, None)], &[]);
        let inc = incident("inc-1", "sev2");
        routing.route(EventKind::Opened, &inc.view(t("14:00:00")), t("14:00:00"));
        routing.route(EventKind::Updated, &inc.view(t("14:00:10")), t("14:00:10"));
        let acked = routing.acknowledged(&inc.view(t("14:00:20")), t("14:00:20"));
        assert_eq!(kinds(&acked), [("pager", AlertType::Updated)]);
        assert!(routing.tick(&[inc], t("14:01:30")).deliveries.is_empty());
    }

    #[test]
    fn a_zero_interval_sends_every_update() {
        let mut every = policy("every", Severity::Sev4, true, None);
        every.update_interval = Duration::ZERO;
        let mut routing = Routing::new([every], &[]);
        let inc = view("inc-1", "sev2");
        routing.route(EventKind::Opened, &inc, t("14:00:00"));
        for at in ["14:00:00", "14:00:01"] {
            let sent = routing.route(EventKind::Updated, &inc, t(at));
            assert_eq!(kinds(&sent), [("every", AlertType::Updated)]);
        }
    }

    /// A waiting update is persisted: after a restart it goes out when due, once; and the
    /// interval keeps counting from the last update sent before the restart.
    #[test]
    fn a_restart_keeps_the_waiting_update_and_the_interval() {
        let policies = [policy("noc", Severity::Sev4, true, None)];
        let mut routing = Routing::new(policies.clone(), &[]);
        let inc = incident("inc-1", "sev2");
        let open = [inc.clone()];
        routing.route(EventKind::Opened, &inc.view(t("14:00:00")), t("14:00:00"));
        routing.route(EventKind::Updated, &inc.view(t("14:00:30")), t("14:00:30"));

        let mut restarted = Routing::new(policies.clone(), &routing.marks());
        assert!(restarted.tick(&open, t("14:00:59")).deliveries.is_empty());
        assert_eq!(
            kinds(&restarted.tick(&open, t("14:01:00"))),
            [("noc", AlertType::Updated)]
        );
        let mut again = Routing::new(policies.clone(), &restarted.marks());
        assert!(
            again.tick(&open, t("14:01:01")).deliveries.is_empty(),
            "sent before the restart: not again"
        );
        let held = again.route(EventKind::Updated, &inc.view(t("14:01:30")), t("14:01:30"));
        assert!(held.deliveries.is_empty(), "a minute after the last update");

        // Rows stored before `update_interval` existed do not hold updates back.
        let old = [(
            "noc".to_string(),
            "inc-1".to_string(),
            RouteState {
                last_sent: t("14:01:00"),
                last_update: None,
                update_pending: false,
            },
        )];
        let mut upgraded = Routing::new(policies, &old);
        let sent = upgraded.route(EventKind::Updated, &inc.view(t("14:01:30")), t("14:01:30"));
        assert_eq!(kinds(&sent), [("noc", AlertType::Updated)]);
    }
}
