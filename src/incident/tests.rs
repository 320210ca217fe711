//! Unit tests of the incident engine , driven with explicit timestamps: a small
//! hand-built topology, group health set by hand, `update` and `tick` at chosen times.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use std::time::Duration;

use super::*;
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::topology::{Group, GroupMode, Maintenance, Service, ServiceClass, Topology};

// === Helpers ===

/// `"14:00:30"` → 2026-07-05T14:00:30Z, the day every test happens on.
fn t(hms: &str) -> Timestamp {
    format!("2026-07-05T{hms}Z").parse().expect("valid time")
}

fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

fn settings() -> IncidentSpec {
    IncidentSpec {
        correlation_window: mins(15),
        group_wait: Duration::from_secs(30),
        affected_change: 0.25,
        resolve_after: mins(5),
        reporting: ReportingSpec::default(),
    }
}

/// Relative comparison of figures computed in floating point.
fn assert_close(actual: f64, expected: f64) {
    let tolerance = 1e-9 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "expected {expected}, got {actual}"
    );
}

/// Builds a topology by hand; groups have no targets (the engine works on group health).
#[derive(Default)]
struct Topo(Topology);

impl Topo {
    fn service(mut self, id: &str, subscribers: u64) -> Self {
        self.0.services.push(Service {
            id: id.to_string(),
            name: id.to_string(),
            subscribers,
            class: ServiceClass::Feature,
            groups: Vec::new(),
        });
        self
    }

    /// A group of `service` on `platform` in `region` (`""` for none).
    fn group(
        mut self,
        id: &str,
        service: &str,
        platform: &str,
        region: &str,
        subscribers: u64,
    ) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let si = self
            .0
            .service_index(service)
            .expect("declare the service first");
        let gi = self.0.groups.len();
        self.0.services[si].groups.push(gi);
        self.0.groups.push(Group {
            id: id.to_string(),
            service: si,
            platform: opt(platform),
            region: opt(region),
            subscribers,
            mode: GroupMode::Any,
            targets: Vec::new(),
            depends_on: Vec::new(),
        });
        self
    }

    /// Makes the group declared last depend on group `on`.
    fn depends_on(mut self, on: &str) -> Self {
        let d = self
            .0
            .group_index(on)
            .expect("declare the dependency first");
        let last = self.0.groups.last_mut().expect("declare the group first");
        last.depends_on.push(crate::topology::Dependency::Group(d));
        self
    }

    /// Sets the class of the service declared last (`feature` by default).
    fn class(mut self, class: ServiceClass) -> Self {
        self.0
            .services
            .last_mut()
            .expect("declare the service first")
            .class = class;
        self
    }

    fn maintenance(mut self, service: &str, from: &str, to: &str) -> Self {
        let si = self
            .0
            .service_index(service)
            .expect("declare the service first");
        self.0.maintenances.push(Maintenance {
            services: vec![si],
            starts_at: t(from),
            ends_at: t(to),
            summary: "planned work".to_string(),
        });
        self
    }

    fn build(mut self) -> Topology {
        // Indexed while it grew: index the finished lists.
        self.0.ids = Default::default();
        self.0
    }
}

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// The spec's voicemail: 30 000 000 subscribers, platform vm-a serving 225 000 in each of
/// four regions (900 000 = 3%), platform vm-b the rest.
fn voicemail() -> Topology {
    let mut topo = Topo::default().service("voicemail", 30_000_000);
    for r in REGIONS {
        topo = topo
            .group(&format!("vm-a-{r}"), "voicemail", "vm-a", r, 225_000)
            .group(&format!("vm-b-{r}"), "voicemail", "vm-b", r, 7_275_000);
    }
    topo.build()
}

/// One service of 10 000 subscribers: group `g` (1 000, platform p, north) and `h`
/// (9 000, platform p, south).
fn simple() -> Topology {
    Topo::default()
        .service("voicemail", 10_000)
        .group("g", "voicemail", "p", "north", 1_000)
        .group("h", "voicemail", "p", "south", 9_000)
        .build()
}

/// The group health, the book, and the clock readings the tests choose.
struct Sim {
    topo: Topology,
    groups: Vec<GroupStatus>,
    book: IncidentBook,
    settings: IncidentSpec,
}

impl Sim {
    fn new(topo: Topology) -> Self {
        let ok = GroupStatus {
            health: Health::Ok,
            since: t("12:00:00"),
        };
        Self {
            groups: vec![ok; topo.groups.len()],
            topo,
            book: IncidentBook::restore(Vec::new(), 0),
            settings: settings(),
        }
    }

    fn set(&mut self, group: &str, health: Health, since: &str) {
        let gi = self
            .topo
            .group_index(group)
            .unwrap_or_else(|| panic!("no group {group}"));
        self.groups[gi] = GroupStatus {
            health,
            since: t(since),
        };
    }

    fn down(&mut self, group: &str, since: &str) {
        self.set(group, Health::Down, since);
    }

    fn degrade(&mut self, group: &str, since: &str) {
        self.set(group, Health::Degraded, since);
    }

    fn recover(&mut self, group: &str, since: &str) {
        self.set(group, Health::Ok, since);
    }

    fn update(&mut self, now: &str) -> BookUpdate {
        self.book.update(
            &self.topo,
            &self.groups,
            &|_| TargetState::Unknown,
            &self.settings,
            t(now),
        )
    }

    fn tick(&mut self, now: &str) -> BookUpdate {
        self.book.tick(&self.settings, t(now))
    }

    /// The one open incident.
    fn only(&self) -> &Incident {
        let open = self.book.open();
        assert_eq!(open.len(), 1, "open incidents: {:?}", ids(open));
        &open[0]
    }

    fn service_status(&self, service: &str, at: &str) -> ServiceImpact {
        let si = self.topo.service_index(service).expect("known service");
        service_status(&self.topo, si, &self.groups, t(at))
    }
}

fn events(changes: &BookUpdate) -> Vec<(EventKind, String)> {
    changes
        .events
        .iter()
        .map(|(kind, inc)| (*kind, inc.id.clone()))
        .collect()
}

fn ids(incidents: &[Incident]) -> Vec<&str> {
    incidents.iter().map(|i| i.id.as_str()).collect()
}

fn timeline(inc: &Incident) -> Vec<&str> {
    inc.timeline.iter().map(|e| e.event.as_str()).collect()
}

fn services(inc: &Incident) -> Vec<&str> {
    inc.services.keys().map(String::as_str).collect()
}

fn opened(id: &str) -> (EventKind, String) {
    (EventKind::Opened, id.to_string())
}

fn updated(id: &str) -> (EventKind, String) {
    (EventKind::Updated, id.to_string())
}

fn resolved(id: &str) -> (EventKind, String) {
    (EventKind::Resolved, id.to_string())
}

// === §5 group health, §6.1 component status ===

#[test]
fn group_health_combines_targets_per_mode() {
    use GroupMode::{All, Any};
    use TargetState::{Degraded, Down, Unknown, Up};
    let cases: &[(GroupMode, &[TargetState], Health)] = &[
        (Any, &[], Health::Ok),
        (Any, &[Up, Up], Health::Ok),
        (Any, &[Up, Down], Health::Down),
        (Any, &[Up, Degraded], Health::Degraded),
        (Any, &[Degraded, Down], Health::Down),
        (Any, &[Unknown], Health::Ok),
        (Any, &[Unknown, Unknown], Health::Ok),
        (Any, &[Unknown, Down], Health::Down),
        (Any, &[Unknown, Degraded], Health::Degraded),
        (All, &[], Health::Ok),
        (All, &[Up, Up], Health::Ok),
        (All, &[Down, Down], Health::Down),
        (All, &[Down], Health::Down),
        (All, &[Degraded, Degraded], Health::Degraded),
        (All, &[Down, Degraded], Health::Degraded),
        // One replica lost out of two: not down, the redundancy is degraded.
        (All, &[Down, Up], Health::Degraded),
        // No data is never an outage: an unknown target keeps an `all` group from down.
        (All, &[Down, Unknown], Health::Degraded),
        (All, &[Unknown, Unknown], Health::Ok),
        (All, &[Unknown], Health::Ok),
    ];
    for (mode, states, expected) in cases {
        assert_eq!(
            Health::of_group(*mode, states.iter().copied()),
            *expected,
            "{mode:?} {states:?}"
        );
    }
}

#[test]
fn service_status_follows_component_rules() {
    use ComponentStatus::*;
    // data: 1 000 subscribers in groups of 500, 300 and 200.
    let topo = || {
        Topo::default()
            .service("data", 1_000)
            .group("g500", "data", "p", "north", 500)
            .group("g300", "data", "p", "south", 300)
            .group("g200", "data", "p", "east", 200)
            .build()
    };
    // (down groups, degraded groups, status, affected, degraded, share)
    type Row = (
        &'static [&'static str],
        &'static [&'static str],
        ComponentStatus,
        u64,
        u64,
        f64,
    );
    let cases: &[Row] = &[
        (&[], &[], Operational, 0, 0, 0.0),
        (&["g200"], &[], PartialOutage, 200, 0, 0.2),
        (&["g300"], &[], PartialOutage, 300, 0, 0.3),
        (&["g500"], &[], MajorOutage, 500, 0, 0.5),
        (&["g300", "g200"], &[], MajorOutage, 500, 0, 0.5),
        (&["g500", "g300", "g200"], &[], MajorOutage, 1_000, 0, 1.0),
        (&[], &["g200"], DegradedPerformance, 0, 200, 0.0),
        (&[], &["g500", "g300"], DegradedPerformance, 0, 800, 0.0),
        // Degraded subscribers are kept apart from affected ones.
        (&["g200"], &["g300"], PartialOutage, 200, 300, 0.2),
        (&["g500"], &["g300"], MajorOutage, 500, 300, 0.5),
    ];
    for (down, degraded, status, affected, degraded_subs, share) in cases {
        let mut sim = Sim::new(topo());
        for g in *down {
            sim.down(g, "14:00:00");
        }
        for g in *degraded {
            sim.degrade(g, "14:00:00");
        }
        let got = sim.service_status("data", "14:01:00");
        let label = format!("down {down:?}, degraded {degraded:?}");
        assert_eq!(got.status, *status, "{label}");
        assert_eq!(got.affected, *affected, "{label}");
        assert_eq!(got.degraded, *degraded_subs, "{label}");
        assert_close(got.share, *share);
    }
}

#[test]
fn maintenance_window_sets_under_maintenance_and_opens_nothing() {
    let topo = Topo::default()
        .service("voicemail", 1_000)
        .group("vm", "voicemail", "vm-a", "north", 800)
        .service("voice", 1_000)
        .group("sbc", "voice", "sbc", "east", 800)
        .maintenance("voicemail", "14:00:00", "16:00:00")
        .build();
    let mut sim = Sim::new(topo);
    sim.down("vm", "14:10:00");

    // Inside the window: under_maintenance whatever the health, figures still computed.
    for at in ["14:00:00", "14:10:30", "15:59:59"] {
        let status = sim.service_status("voicemail", at);
        assert_eq!(status.status, ComponentStatus::UnderMaintenance, "{at}");
        assert_eq!(status.affected, 800, "{at}");
    }
    let changes = sim.update("14:10:30");
    assert!(changes.events.is_empty());
    assert!(changes.is_empty());
    assert!(sim.book.open().is_empty());
    let changes = sim.update("15:30:00");
    assert!(changes.events.is_empty());
    assert!(sim.book.open().is_empty());

    // The window covers only its own services.
    sim.down("sbc", "15:00:00");
    assert_eq!(
        sim.service_status("voice", "15:00:30").status,
        ComponentStatus::MajorOutage
    );
    assert_eq!(events(&sim.update("15:00:30")), vec![opened("inc-000001")]);
    assert_eq!(services(sim.only()), ["voice"]);

    // The window is half-open: at its end the still-down voicemail fails for real.
    assert_eq!(
        sim.service_status("voicemail", "16:00:00").status,
        ComponentStatus::MajorOutage
    );
    let changes = sim.update("16:00:00");
    assert_eq!(events(&changes), vec![opened("inc-000002")]);
    assert_eq!(services(&sim.book.open()[1]), ["voicemail"]);
}

// === §6.2 opening ===

#[test]
fn incident_opens_when_service_leaves_operational() {
    let mut sim = Sim::new(simple());
    assert!(
        sim.update("13:59:00").is_empty(),
        "operational opens nothing"
    );
    assert!(sim.book.open().is_empty());

    sim.down("g", "14:00:00");
    let changes = sim.update("14:00:30");
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
    assert_eq!(ids(&changes.changed), ["inc-000001"]);

    let inc = sim.only();
    assert_eq!(inc.id, "inc-000001");
    assert_eq!(inc.seq, 1);
    assert_eq!(inc.status, IncidentStatus::Investigating);
    assert_eq!(
        inc.onset_at,
        t("14:00:00"),
        "onset backdated to the group's since"
    );
    assert_eq!(inc.detected_at, t("14:00:30"), "detected when seen");
    assert_eq!(inc.impact_end_at, None);
    assert_eq!(inc.resolved_at, None);
    assert_eq!(services(inc), ["voicemail"]);
    assert_eq!(
        inc.services["voicemail"].component_status,
        ComponentStatus::PartialOutage
    );
    assert_eq!(timeline(inc), ["opened"]);
    assert_eq!(inc.timeline[0].at, t("14:00:30"));
    assert_eq!(inc.groups.len(), 1);
    assert_eq!(inc.groups[0].group, "g");
    assert_eq!(
        inc.groups[0].periods,
        [Period {
            health: Health::Down,
            start: t("14:00:00"),
            end: None
        }]
    );

    // The same state again: no event, nothing to persist, still one incident.
    for now in ["14:01:00", "14:05:00", "14:30:00"] {
        let changes = sim.update(now);
        assert!(changes.events.is_empty(), "{now}: {:?}", events(&changes));
        assert!(changes.is_empty(), "{now}");
    }
    assert_eq!(sim.only().timeline.len(), 1);
}

#[test]
fn onset_is_the_earliest_failing_group() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:03:00");
    sim.down("h", "14:01:00");
    sim.update("14:04:00");
    let inc = sim.only();
    assert_eq!(inc.onset_at, t("14:01:00"));
    assert_eq!(
        inc.figures(t("14:04:00")).time_to_detect,
        Duration::from_secs(180)
    );
}

#[test]
fn degraded_service_opens_a_sev4_minor_incident() {
    let mut sim = Sim::new(simple());
    sim.degrade("g", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    let inc = sim.only();
    assert_eq!(
        inc.services["voicemail"].component_status,
        ComponentStatus::DegradedPerformance
    );
    assert_eq!(inc.severity, Severity::Sev4);
    assert_eq!(inc.impact, Impact::Minor);
    assert_eq!(inc.figures(t("14:00:30")).peak_affected, 0);
    assert_eq!(inc.view(t("14:00:30")).regions, ["north"]);
}

// === §6.3 figures ===

#[test]
fn voicemail_platform_failing_in_every_region() {
    let mut sim = Sim::new(voicemail());
    for r in REGIONS {
        sim.down(&format!("vm-a-{r}"), "14:00:00");
    }
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    let inc = sim.only();
    assert_eq!(inc.scope, Scope::Distributed, "4 of 4 regions");
    assert!(
        inc.platform_concentrated,
        "vm-a holds all affected subscribers"
    );
    assert_eq!(inc.severity, Severity::Sev2, "3% is >= 1% and < 25%");
    assert_eq!(inc.impact, Impact::Major, "partial outage");

    // Four hours later, still open: figures measured to now.
    let f = inc.figures(t("18:00:00"));
    assert_eq!(f.duration, Duration::from_secs(4 * 3600));
    assert_eq!(f.time_to_detect, Duration::from_secs(30));
    assert_eq!(f.peak_affected, 900_000);
    assert_close(f.per_service["voicemail"].peak_share, 0.03);
    assert_close(f.user_minutes, 216_000_000.0);
    assert_close(f.conservative_user_minutes, 216_000_000.0);
    assert_close(f.per_service["voicemail"].user_minutes, 216_000_000.0);

    let v = inc.view(t("18:00:00"));
    assert_eq!(v.user_minutes, 216_000_000);
    assert_eq!(v.conservative_user_minutes, 216_000_000);
    assert_eq!(v.duration_seconds, 14_400);
    assert_eq!(v.platforms, ["vm-a"]);
    assert_eq!(v.regions, ["east", "north", "south", "west"]);
}

#[test]
fn user_minutes_integrate_affected_over_time() {
    // vm-a fails region by region, ten minutes apart.
    let mut sim = Sim::new(voicemail());
    for (r, since) in REGIONS
        .iter()
        .zip(["14:00:00", "14:10:00", "14:20:00", "14:30:00"])
    {
        sim.down(&format!("vm-a-{r}"), since);
        sim.update(since);
    }
    let inc = sim.only();
    assert_eq!(inc.onset_at, t("14:00:00"));
    assert_eq!(inc.groups.len(), 4);
    let f = inc.figures(t("15:00:00"));
    assert_eq!(f.duration, mins(60));
    assert_eq!(f.peak_affected, 900_000);
    // ∫ affected dt = 225 000 × (60 + 50 + 40 + 30) minutes.
    assert_close(f.user_minutes, 225_000.0 * 180.0);
    // The regulators' figure: peak × duration.
    assert_close(f.conservative_user_minutes, 900_000.0 * 60.0);

    // Figures at an earlier instant only count what had happened then.
    let early = inc.figures(t("14:15:00"));
    assert_eq!(early.peak_affected, 450_000);
    assert_close(early.user_minutes, 225_000.0 * (15.0 + 5.0));
}

#[test]
fn peak_counts_only_groups_down_at_the_same_time() {
    // g (1 000) down 14:00–14:10, h (9 000) down 14:05–14:20: peak 10 000 at 14:05–14:10.
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    sim.down("h", "14:05:00");
    sim.update("14:05:30");
    sim.recover("g", "14:10:00");
    sim.update("14:10:30");
    let f = sim.only().figures(t("14:20:00"));
    assert_eq!(f.peak_affected, 10_000);
    assert_close(f.user_minutes, 1_000.0 * 10.0 + 9_000.0 * 15.0);

    // Now the same groups without overlap: the peak is the larger group alone.
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    sim.recover("g", "14:05:00");
    sim.down("h", "14:05:00");
    sim.update("14:05:30");
    let f = sim.only().figures(t("14:20:00"));
    assert_eq!(f.peak_affected, 9_000);
    assert_close(f.user_minutes, 1_000.0 * 5.0 + 9_000.0 * 15.0);
}

#[test]
fn figures_grow_while_open_and_freeze_at_impact_end() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    let at = |sim: &Sim, now: &str| sim.only().view(t(now));
    assert_eq!(at(&sim, "14:10:00").duration_seconds, 600);
    assert_eq!(at(&sim, "14:20:00").duration_seconds, 1_200);
    assert_eq!(at(&sim, "14:20:00").user_minutes, 20_000);

    sim.recover("g", "14:15:00");
    sim.update("14:15:30");
    for now in ["14:15:30", "14:20:00", "18:00:00"] {
        let v = at(&sim, now);
        assert_eq!(v.duration_seconds, 900, "{now}");
        assert_eq!(v.user_minutes, 15_000, "{now}");
        assert_eq!(v.conservative_user_minutes, 15_000, "{now}");
        assert_eq!(v.time_to_detect_seconds, 30, "{now}");
    }
}

// === §6.4 scope ===

/// data, 1 000 subscribers in five regions of 200: in north, south, east and west a small
/// group `x-a` (20, platform pa) and a large `x-b` (180, pb); in center `c-a` and `c-b`
/// (100 each).
fn five_regions() -> Topology {
    let mut topo = Topo::default().service("data", 1_000);
    for r in ["n", "s", "e", "w"] {
        topo = topo.group(&format!("{r}-a"), "data", "pa", r, 20).group(
            &format!("{r}-b"),
            "data",
            "pb",
            r,
            180,
        );
    }
    topo.group("c-a", "data", "pa", "c", 100)
        .group("c-b", "data", "pb", "c", 100)
        .build()
}

#[test]
fn scope_rules() {
    use Scope::*;
    // (down groups, scope, platform_concentrated)
    let cases: &[(&[&str], Scope, bool)] = &[
        // One region, 10% of it: localized.
        (&["n-a"], Localized, true),
        // One region with exactly half of its subscribers affected: regional.
        (&["c-a"], Regional, true),
        // One region, 90% of it.
        (&["n-b"], Regional, true),
        // Two regions of five: regional, not yet distributed.
        (&["n-a", "s-a"], Regional, true),
        // Three of five regions: at least half.
        (&["n-a", "s-a", "e-a"], Distributed, true),
        // Three regions, 38%: distributed, not national; pb holds 360 of 380.
        (&["n-b", "s-b", "e-a"], Distributed, true),
        // pb holds 180 of 220 affected: not concentrated.
        (&["n-b", "s-a", "e-a"], Distributed, false),
        // Exactly half of the service: national.
        (&["n-b", "s-b", "c-a", "n-a", "s-a"], National, false),
        (&["n-b", "s-b", "e-b"], National, true),
        // pb holds 180 of 200 affected: exactly 90%.
        (&["n-a", "n-b"], Regional, true),
        // pb 180 of 300: not concentrated.
        (&["n-b", "c-a"], Regional, false),
    ];
    for (down, scope, concentrated) in cases {
        let mut sim = Sim::new(five_regions());
        for g in *down {
            sim.down(g, "14:00:00");
        }
        sim.update("14:00:30");
        let inc = sim.only();
        assert_eq!(inc.scope, *scope, "{down:?}");
        assert_eq!(inc.platform_concentrated, *concentrated, "{down:?}");
    }
}

#[test]
fn degraded_groups_do_not_widen_scope() {
    let mut sim = Sim::new(five_regions());
    sim.down("n-a", "14:00:00");
    for g in ["s-b", "e-b", "w-b"] {
        sim.degrade(g, "14:00:00");
    }
    sim.update("14:00:30");
    let inc = sim.only();
    assert_eq!(inc.scope, Scope::Localized);
    // … but they are listed: regions with a down or degraded group.
    assert_eq!(inc.view(t("14:00:30")).regions, ["e", "n", "s", "w"]);
    assert_eq!(inc.view(t("14:00:30")).platforms, ["pa", "pb"]);
}

// === §6.5 severity and impact ===

/// `svc` with `subscribers`, group `hit` of `hit` subscribers in r1 and the rest in r2.
fn two_regions(subscribers: u64, hit: u64) -> Topology {
    Topo::default()
        .service("svc", subscribers)
        .group("hit", "svc", "p", "r1", hit)
        .group("rest", "svc", "p", "r2", subscribers - hit)
        .build()
}

#[test]
fn severity_rules() {
    use Severity::*;
    // (service subscribers, group subscribers, group health, severity)
    let cases: &[(u64, u64, Health, Severity)] = &[
        (10_000_000, 2_500_000, Health::Down, Sev1),
        (10_000_000, 5_000_000, Health::Down, Sev1),
        (10_000_000, 2_499_999, Health::Down, Sev2),
        // Share exactly 1%, far below 100 000 subscribers.
        (1_000_000, 10_000, Health::Down, Sev2),
        (1_000_000, 9_999, Health::Down, Sev3),
        // 100 000 affected, a 0.33% share.
        (30_000_000, 100_000, Health::Down, Sev2),
        (30_000_000, 99_999, Health::Down, Sev3),
        (1_000, 1, Health::Down, Sev3),
        // Degradation alone, however wide, is sev4 when it starts.
        (1_000, 900, Health::Degraded, Sev4),
    ];
    for (subscribers, hit, health, severity) in cases {
        let mut sim = Sim::new(two_regions(*subscribers, *hit));
        sim.set("hit", *health, "14:00:00");
        sim.update("14:00:30");
        assert_eq!(
            sim.only().severity,
            *severity,
            "{hit} of {subscribers} {health:?}"
        );
    }
}

#[test]
fn degradation_of_one_percent_for_30_minutes_is_sev3() {
    // 10 of 1 000 degraded (1%): sev4, then sev3 once it has lasted 30 minutes.
    let mut sim = Sim::new(two_regions(1_000, 10));
    sim.degrade("hit", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    assert_eq!(sim.only().severity, Severity::Sev4);
    assert!(sim.update("14:29:59").events.is_empty());
    assert_eq!(sim.only().severity, Severity::Sev4);

    let changes = sim.update("14:30:00");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(inc.severity, Severity::Sev3);
    assert_eq!(inc.impact, Impact::Minor);
    assert_eq!(timeline(inc), ["opened", "severity_raised"]);
    assert_eq!(inc.timeline[1].at, t("14:30:00"));

    // 9 of 1 000 (0.9%) stays sev4 however long.
    let mut sim = Sim::new(two_regions(1_000, 9));
    sim.degrade("hit", "14:00:00");
    sim.update("14:00:30");
    assert!(sim.update("18:00:00").events.is_empty());
    assert_eq!(sim.only().severity, Severity::Sev4);
}

#[test]
fn severity_impact_and_scope_never_decrease_while_open() {
    // 600 of 1 000 down: national, sev1, critical. Then most of it comes back.
    let topo = Topo::default()
        .service("data", 1_000)
        .group("big", "data", "p", "north", 590)
        .group("small", "data", "p", "south", 10)
        .group("rest", "data", "p", "east", 400)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("big", "14:00:00");
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    let expect = |inc: &Incident| {
        assert_eq!(inc.scope, Scope::National);
        assert_eq!(inc.severity, Severity::Sev1);
        assert_eq!(inc.impact, Impact::Critical);
    };
    expect(sim.only());

    // A partial recovery (600 → 10 affected) is news; the headline stays.
    sim.recover("big", "14:10:00");
    let changes = sim.update("14:10:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(
        inc.services["data"].component_status,
        ComponentStatus::PartialOutage,
        "10 of 1 000 still down"
    );
    expect(inc);

    // Down to degradation only: still the worst seen.
    sim.recover("small", "14:20:00");
    sim.degrade("rest", "14:20:00");
    assert_eq!(events(&sim.update("14:20:30")), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(timeline(inc), ["opened", "recovering", "recovering"]);
    assert_eq!(
        inc.services["data"].component_status,
        ComponentStatus::DegradedPerformance
    );
    expect(inc);
}

#[test]
fn impact_maps_worst_component_status() {
    // (down, degraded, impact) on simple(): g is 10%, h 90%.
    let cases: &[(&[&str], &[&str], Impact)] = &[
        (&[], &["g"], Impact::Minor),
        (&["g"], &[], Impact::Major),
        (&["g"], &["h"], Impact::Major),
        (&["h"], &[], Impact::Critical),
    ];
    for (down, degraded, impact) in cases {
        let mut sim = Sim::new(simple());
        for g in *down {
            sim.down(g, "14:00:00");
        }
        for g in *degraded {
            sim.degrade(g, "14:00:00");
        }
        sim.update("14:00:30");
        assert_eq!(
            sim.only().impact,
            *impact,
            "down {down:?} degraded {degraded:?}"
        );
    }
}

/// Three services of 1 000 on a shared platform `core`; in each, group `x-n` (100, north)
/// and `x-s` (900, south).
fn three_services() -> Topology {
    let mut topo = Topo::default();
    for s in ["voice", "voicemail", "data"] {
        topo = topo
            .service(s, 1_000)
            .group(&format!("{s}-n"), s, "core", "north", 100)
            .group(&format!("{s}-s"), s, "core", "south", 900);
    }
    topo.build()
}

#[test]
fn impact_raised_by_breadth_of_partial_outages() {
    let mut sim = Sim::new(three_services());
    sim.down("voice-n", "14:00:00");
    sim.update("14:00:30");
    let inc = sim.only();
    assert_eq!(
        (inc.impact, inc.severity, inc.scope),
        (Impact::Major, Severity::Sev2, Scope::Distributed),
        "one region of two"
    );

    // voicemail joins degraded: the services set changes.
    sim.degrade("voicemail-n", "14:01:00");
    assert_eq!(events(&sim.update("14:01:30")), vec![updated("inc-000001")]);
    assert_eq!(sim.only().impact, Impact::Major);

    // Two services partial: major (already), nothing else moves, so no event.
    sim.down("voicemail-n", "14:02:00");
    let changes = sim.update("14:02:30");
    assert!(changes.events.is_empty(), "{:?}", events(&changes));
    assert!(!changes.is_empty(), "new periods are persisted");
    assert_eq!(sim.only().impact, Impact::Major);

    // data joins degraded, then goes partial: three partial services make it critical.
    sim.degrade("data-n", "14:03:00");
    assert_eq!(events(&sim.update("14:03:30")), vec![updated("inc-000001")]);
    assert_eq!(sim.only().impact, Impact::Major);
    sim.down("data-n", "14:04:00");
    let changes = sim.update("14:04:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(services(inc), ["data", "voice", "voicemail"]);
    assert_eq!(inc.impact, Impact::Critical, "impact alone changed");
    assert_eq!(
        (inc.severity, inc.scope),
        (Severity::Sev2, Scope::Distributed)
    );
    for entry in inc.services.values() {
        assert_eq!(entry.component_status, ComponentStatus::PartialOutage);
    }
}

// === incident.updated ===

#[test]
fn updated_event_only_when_headline_changes() {
    // data, 10 000 000: north has n1 (20 000), n2 (30 000), n3 (50 000); three other
    // regions the rest.
    let topo = Topo::default()
        .service("data", 10_000_000)
        .group("n1", "data", "p1", "north", 20_000)
        .group("n2", "data", "p1", "north", 30_000)
        .group("n3", "data", "p3", "north", 50_000)
        .group("s", "data", "p4", "south", 3_300_000)
        .group("e", "data", "p4", "east", 3_300_000)
        .group("w", "data", "p4", "west", 3_300_000)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("n1", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    let headline = |sim: &Sim| {
        let inc = sim.only();
        (inc.severity, inc.impact, inc.scope)
    };
    assert_eq!(
        headline(&sim),
        (Severity::Sev3, Impact::Major, Scope::Localized)
    );

    // Nothing changes.
    let changes = sim.update("14:05:00");
    assert!(changes.events.is_empty() && changes.is_empty());

    // A group of a platform and region already in degrades: tracked and persisted, but
    // nothing is news.
    sim.degrade("n2", "14:06:00");
    let changes = sim.update("14:06:30");
    assert!(changes.events.is_empty(), "{:?}", events(&changes));
    assert_eq!(ids(&changes.changed), ["inc-000001"]);

    // Half of north down: scope alone becomes regional.
    sim.down("n2", "14:07:00");
    let changes = sim.update("14:07:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    assert_eq!(
        headline(&sim),
        (Severity::Sev3, Impact::Major, Scope::Regional)
    );
    assert_eq!(
        changes.events[0].1.scope,
        Scope::Regional,
        "event carries the new state"
    );

    // 100 000 affected: severity becomes sev2, and ofcom is met (needs review: the
    // service is of class feature); both noted in the timeline, one event.
    sim.down("n3", "14:08:00");
    let changes = sim.update("14:08:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    assert_eq!(
        headline(&sim),
        (Severity::Sev2, Impact::Major, Scope::Regional)
    );
    // 20 000 → 50 000 → 100 000 affected, and platform p3: growth steps.
    assert_eq!(
        timeline(sim.only()),
        ["opened", "grown", "rule_met", "severity_raised", "grown"]
    );
    assert_eq!(
        sim.only().reporting["ofcom"].status,
        RuleStatus::MetNeedsReview
    );

    // One group recovers: nothing decreases, no event.
    sim.recover("n1", "14:09:00");
    let changes = sim.update("14:09:30");
    assert!(changes.events.is_empty(), "{:?}", events(&changes));
    assert_eq!(ids(&changes.changed), ["inc-000001"]);
}

#[test]
fn a_change_of_affected_subscribers_is_material_from_the_fraction_on() {
    use super::assess::{Movement, material_change};
    let grown = Some(Movement::Grown);
    let fallen = Some(Movement::Fallen);
    // 25%, growing: just under, at, over.
    assert_eq!(material_change(100_000, 124_999, 0.25), None);
    assert_eq!(material_change(100_000, 125_000, 0.25), grown);
    assert_eq!(material_change(100_000, 125_001, 0.25), grown);
    // Falling (a partial recovery): likewise.
    assert_eq!(material_change(100_000, 75_001, 0.25), None);
    assert_eq!(material_change(100_000, 75_000, 0.25), fallen);
    assert_eq!(material_change(100_000, 74_999, 0.25), fallen);
    assert_eq!(material_change(100_000, 100_000, 0.25), None);
    // Exact where a float product is not: 10% of 90 000 is 9 000.
    assert_eq!(material_change(90_000, 99_000, 0.1), grown);
    assert_eq!(material_change(90_000, 98_999, 0.1), None);
    // From nobody, anyone is growth.
    assert_eq!(material_change(0, 1, 0.25), grown);
    assert_eq!(material_change(0, 0, 0.25), None);
    // A fraction of 1 or more: a fall counts once nobody is left.
    assert_eq!(material_change(100, 299, 2.0), None);
    assert_eq!(material_change(100, 300, 2.0), grown);
    assert_eq!(material_change(100, 1, 2.0), None);
    assert_eq!(material_change(100, 0, 2.0), fallen);
    assert_eq!(material_change(100, 0, 10.0), fallen);
}

/// Data, 1 000 000 subscribers, half of them behind `base` (national, sev1, critical from
/// the start, so only the figures and the labels can change); every group on platform p
/// in north unless named otherwise.
fn saturated() -> Topology {
    Topo::default()
        .service("data", 1_000_000)
        .group("base", "data", "p", "north", 500_000)
        .group("under", "data", "p", "north", 124_999)
        .group("one", "data", "p", "north", 1)
        .group("big", "data", "p", "north", 200_000)
        .group("south", "data", "p", "south", 1_000)
        .group("other", "data", "q", "north", 1_000)
        .service("voice", 1_000_000)
        .group("voice", "voice", "p", "north", 1_000)
        .build()
}

#[test]
fn growth_and_partial_recovery_are_news_from_the_announced_figure() {
    let mut sim = Sim::new(saturated());
    sim.down("base", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    assert_eq!(sim.only().announced_affected, Some(500_000));
    let headline = |sim: &Sim| {
        let inc = sim.only();
        (inc.severity, inc.impact, inc.scope)
    };
    let saturated = (Severity::Sev1, Impact::Critical, Scope::National);
    assert_eq!(headline(&sim), saturated);

    // +124 999: just under 25% of what was announced.
    sim.down("under", "14:01:00");
    assert!(sim.update("14:01:30").events.is_empty());
    // +1: 625 000 is 25% more than the 500 000 announced, though only 1 more than the
    // last update saw: steps add up.
    sim.down("one", "14:02:00");
    let changes = sim.update("14:02:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    assert_eq!(changes.events[0].1.announced_affected, Some(625_000));
    assert_eq!(changes.events[0].1.view(t("14:02:30")).affected, 625_000);
    let last = sim.only().timeline.last().unwrap().clone();
    assert_eq!((last.at, last.event.as_str()), (t("14:02:30"), "grown"));
    assert_eq!(
        last.message,
        "grown from 500000: 625000 subscribers affected (62.5%) in 1 region"
    );

    // −125 000: 20% of 625 000, not yet news; −200 000 more: 52%, a partial recovery.
    sim.down("big", "14:03:00");
    sim.update("14:03:30"); // 825 000: +32%
    assert_eq!(sim.only().announced_affected, Some(825_000));
    sim.recover("under", "14:04:00");
    sim.recover("one", "14:04:00");
    assert!(sim.update("14:04:30").events.is_empty(), "−15%");
    sim.recover("big", "14:05:00");
    let changes = sim.update("14:05:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(inc.announced_affected, Some(500_000));
    assert_eq!(headline(&sim), saturated, "nothing decreases");
    let last = inc.timeline.last().unwrap();
    assert_eq!(last.event, "recovering");
    assert_eq!(
        last.message,
        "recovering from 825000: 500000 subscribers affected (50.0%) in 1 region"
    );
    assert_eq!(
        timeline(inc),
        ["opened", "rule_met", "grown", "grown", "recovering"],
        "the timeline shows how it unfolded"
    );

    // The last group back is the end of the impact, not a step: the resolution says it.
    sim.recover("base", "14:06:00");
    assert!(sim.update("14:06:30").events.is_empty());
    assert_eq!(sim.only().status, IncidentStatus::Monitoring);
    assert_eq!(timeline(sim.only()).last(), Some(&"recovered"));
}

#[test]
fn a_new_region_platform_or_service_is_news() {
    let mut sim = Sim::new(saturated());
    sim.down("base", "14:00:00");
    sim.update("14:00:30");

    sim.down("south", "14:01:00");
    let changes = sim.update("14:01:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")], "a region");
    assert_eq!(
        sim.only().timeline.last().unwrap().message,
        "region south joined: 501000 subscribers affected (50.1%) in 2 regions"
    );

    sim.down("other", "14:02:00");
    let changes = sim.update("14:02:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")], "a platform");
    assert_eq!(
        sim.only().timeline.last().unwrap().message,
        "platform q joined: 502000 subscribers affected (50.2%) in 2 regions"
    );

    // A degraded group names its region and platform too.
    let mut sim = Sim::new(saturated());
    sim.down("base", "14:00:00");
    sim.update("14:00:30");
    sim.degrade("south", "14:01:00");
    sim.degrade("other", "14:01:00");
    let changes = sim.update("14:01:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    assert_eq!(
        sim.only().timeline.last().unwrap().message,
        "region south and platform q joined: 500000 subscribers affected (50.0%) in 1 region, \
         2000 degraded"
    );

    // A service, on the same platform and region: it joins, nothing else is new.
    sim.down("voice", "14:02:00");
    let changes = sim.update("14:02:30");
    assert_eq!(events(&changes), vec![updated("inc-000001")], "a service");
    assert_eq!(services(sim.only()), ["data", "voice"]);
    assert_eq!(timeline(sim.only()).last(), Some(&"service_joined"));

    // The threshold is configurable.
    let mut sim = Sim::new(saturated());
    sim.settings.affected_change = 1.0;
    sim.down("base", "14:00:00");
    sim.update("14:00:30");
    sim.down("under", "14:01:00");
    sim.down("one", "14:01:00");
    sim.down("big", "14:01:00");
    assert!(sim.update("14:01:30").events.is_empty(), "+65% < 100%");
}

/// A part of the outage that flaps for a long time: every flap is news, but the timeline
/// keeps the first and the latest 16 steps and counts the rest.
#[test]
fn the_timeline_of_a_flapping_incident_stays_bounded() {
    let topo = Topo::default()
        .service("data", 100_000)
        .group("steady", "data", "p", "north", 1_000)
        .group("flapping", "data", "p", "north", 1_000)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("steady", "14:00:00");
    sim.down("flapping", "14:00:00");
    sim.update("14:00:30");
    let at = |minute: u32| t(&format!("{:02}:{:02}:00", 14 + minute / 60, minute % 60));
    let hms = |ts: Timestamp| ts.format("%H:%M:%S").to_string();
    for cycle in 0..40 {
        let (up, down) = (at(1 + 2 * cycle), at(2 + 2 * cycle));
        sim.recover("flapping", &hms(up));
        assert_eq!(events(&sim.update(&hms(up))), vec![updated("inc-000001")]);
        sim.down("flapping", &hms(down));
        assert_eq!(events(&sim.update(&hms(down))), vec![updated("inc-000001")]);
    }
    let inc = sim.only();
    assert_eq!(
        inc.timeline.len(),
        1 + 32 + 1,
        "opened, 32 steps, one count"
    );
    assert_eq!(inc.steps_omitted, 80 - 32);
    let kept: Vec<Timestamp> = inc
        .timeline
        .iter()
        .filter(|e| e.event == "grown" || e.event == "recovering")
        .map(|e| e.at)
        .collect();
    assert_eq!(
        kept[..16],
        (1..=16).map(at).collect::<Vec<_>>()[..],
        "the first"
    );
    assert_eq!(
        kept[16..],
        (65..=80).map(at).collect::<Vec<_>>()[..],
        "the latest"
    );
    let omitted = &inc.timeline[17];
    assert_eq!(omitted.event, "steps_omitted");
    assert_eq!(omitted.at, at(17), "where the first omitted step was");
    assert_eq!(
        omitted.message,
        "48 growth and recovery steps omitted, the last at 2026-07-05T15:04:00Z"
    );
}

// === §6.2 recovery, resolution, reopening ===

#[test]
fn recovery_moves_to_monitoring_with_backdated_impact_end() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.down("h", "14:00:00");
    sim.update("14:00:30");

    // Partly back, the rest degraded: still failing.
    sim.recover("g", "14:10:00");
    sim.degrade("h", "14:12:00");
    sim.update("14:12:30");
    assert_eq!(sim.only().status, IncidentStatus::Investigating);
    assert_eq!(sim.only().impact_end_at, None);
    assert_eq!(
        sim.only().timeline[1].message,
        "recovering from 10000: 0 subscribers affected (0.0%), 9000 degraded",
        "nobody down any more is a recovery step"
    );

    sim.recover("h", "14:20:00");
    let changes = sim.update("14:20:30");
    assert_eq!(ids(&changes.changed), ["inc-000001"]);
    assert!(
        changes.events.iter().all(|(k, _)| *k == EventKind::Updated),
        "recovery neither opens nor resolves: {:?}",
        events(&changes)
    );
    let inc = sim.only();
    assert_eq!(inc.status, IncidentStatus::Monitoring);
    assert_eq!(
        inc.impact_end_at,
        Some(t("14:20:00")),
        "first success, backdated"
    );
    assert_eq!(inc.monitoring_at, Some(t("14:20:30")));
    assert_eq!(inc.resolved_at, None);
    assert_eq!(timeline(inc), ["opened", "recovering", "recovered"]);
    assert_eq!(
        inc.figures(t("15:00:00")).duration,
        mins(20),
        "duration = impact end − onset"
    );
    assert_eq!(
        inc.services["voicemail"].component_status,
        ComponentStatus::Operational
    );

    // Quiet updates while monitoring change nothing.
    assert!(sim.update("14:21:00").is_empty());
}

#[test]
fn tick_resolves_after_resolve_after() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");

    // Ticks never resolve an incident still failing.
    assert!(sim.tick("18:00:00").is_empty());
    assert_eq!(sim.only().status, IncidentStatus::Investigating);

    sim.recover("g", "14:20:00");
    sim.update("14:20:30");
    assert!(sim.tick("14:21:00").is_empty());
    assert!(sim.tick("14:25:29").is_empty(), "5m not yet over");
    assert_eq!(sim.only().status, IncidentStatus::Monitoring);

    let changes = sim.tick("14:25:30");
    assert_eq!(events(&changes), vec![resolved("inc-000001")]);
    assert_eq!(ids(&changes.changed), ["inc-000001"]);
    let inc = &changes.events[0].1;
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(!inc.is_open());
    assert_eq!(inc.resolved_at, Some(t("14:25:30")));
    assert_eq!(inc.impact_end_at, Some(t("14:20:00")));
    assert_eq!(timeline(inc), ["opened", "recovered", "resolved"]);
    assert_eq!(inc.view(t("20:00:00")).duration_seconds, 1_200);

    assert!(
        sim.book.open().is_empty(),
        "resolved incidents leave the book"
    );
    assert!(sim.book.get("inc-000001").is_none());
    assert!(sim.tick("14:40:00").is_empty(), "resolved once");
    assert!(sim.update("14:41:00").is_empty());

    // A later failure is a new incident.
    sim.down("g", "15:00:00");
    assert_eq!(events(&sim.update("15:00:30")), vec![opened("inc-000002")]);
}

#[test]
fn refailure_while_monitoring_reopens_the_same_incident() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    sim.recover("g", "14:20:00");
    sim.update("14:20:30");
    assert_eq!(sim.only().status, IncidentStatus::Monitoring);

    sim.down("g", "14:23:00");
    let changes = sim.update("14:23:30");
    assert!(
        !changes.events.iter().any(|(k, _)| *k == EventKind::Opened),
        "no new incident: {:?}",
        events(&changes)
    );
    assert_eq!(ids(&changes.changed), ["inc-000001"]);
    let inc = sim.only();
    assert_eq!(inc.id, "inc-000001");
    assert_eq!(inc.status, IncidentStatus::Investigating);
    assert_eq!(inc.impact_end_at, None);
    assert_eq!(inc.monitoring_at, None);
    assert_eq!(inc.onset_at, t("14:00:00"));
    assert_eq!(timeline(inc), ["opened", "recovered", "reopened"]);

    // The old monitoring deadline no longer applies.
    assert!(sim.tick("14:25:30").is_empty());
    assert_eq!(sim.only().status, IncidentStatus::Investigating);

    // Final recovery: impact ends at the last recovery; the gap is not counted.
    sim.recover("g", "14:40:00");
    sim.update("14:40:30");
    let inc = sim.only();
    assert_eq!(inc.impact_end_at, Some(t("14:40:00")));
    let f = inc.figures(t("15:00:00"));
    assert_eq!(f.duration, mins(40));
    assert_close(f.user_minutes, 1_000.0 * (20.0 + 17.0));
    assert_close(f.conservative_user_minutes, 1_000.0 * 40.0);
    assert_eq!(events(&sim.tick("14:45:30")), vec![resolved("inc-000001")]);
}

// === §6.2 correlation ===

#[test]
fn correlation_joins_within_window_sharing_platform_or_region() {
    // (platform, region, since of the second service's failure, joins)
    let cases: &[(&str, &str, &str, bool)] = &[
        ("p1", "r2", "14:05:00", true),
        ("p2", "r1", "14:05:00", true),
        ("p1", "r1", "14:15:00", true),
        ("p2", "r2", "14:05:00", false),
        ("", "", "14:05:00", false),
        ("p1", "r1", "14:15:01", false),
        ("p1", "r2", "14:40:00", false),
        // A failure that started shortly before the incident's onset is close too.
        ("p2", "r1", "13:55:00", true),
    ];
    for (platform, region, since, joins) in cases {
        let topo = Topo::default()
            .service("a", 1_000)
            .group("a1", "a", "p1", "r1", 100)
            .service("b", 1_000)
            .group("b1", "b", platform, region, 100)
            .build();
        let mut sim = Sim::new(topo);
        sim.down("a1", "14:00:00");
        sim.update("14:00:30");
        sim.down("b1", since);
        let changes = sim.update("14:40:30");
        let label = format!("{platform:?} {region:?} {since}");
        if *joins {
            assert_eq!(events(&changes), vec![updated("inc-000001")], "{label}");
            let inc = sim.only();
            assert_eq!(services(inc), ["a", "b"], "{label}");
            // A new platform or region that came with b is a growth step besides.
            let grown = if platform == &"p2" || region == &"r2" {
                &["grown"][..]
            } else {
                &[]
            };
            assert_eq!(
                timeline(inc),
                [&["opened", "service_joined"][..], grown].concat(),
                "{label}"
            );
            assert_eq!(inc.onset_at, t("14:00:00").min(t(since)), "{label}");
            assert_eq!(inc.groups.len(), 2, "{label}");
        } else {
            // Close enough in time to become related, b waits `group_wait` first.
            let close = (t(since) - t("14:00:00")).abs() <= chrono::Duration::minutes(15);
            let later = sim.update("14:41:00");
            let (at_once, waited) = if close {
                (vec![], vec![opened("inc-000002")])
            } else {
                (vec![opened("inc-000002")], vec![])
            };
            assert_eq!(events(&changes), at_once, "{label}");
            assert_eq!(events(&later), waited, "{label}");
            let open = sim.book.open();
            assert_eq!(ids(open), ["inc-000001", "inc-000002"], "{label}");
            assert_eq!(services(&open[0]), ["a"], "{label}");
            assert_eq!(services(&open[1]), ["b"], "{label}");
            assert_eq!(open[1].onset_at, t(since), "{label}");
        }
    }
}

#[test]
fn a_service_failing_apart_waits_to_join_as_the_outage_spreads() {
    // Two services over two platforms × two regions, and one on a platform and region of
    // its own.
    let mut topo = Topo::default().service("a", 1_000).service("b", 1_000);
    for (p, r) in [("p1", "r1"), ("p1", "r2"), ("p2", "r1"), ("p2", "r2")] {
        topo = topo.group(&format!("a-{p}-{r}"), "a", p, r, 100).group(
            &format!("b-{p}-{r}"),
            "b",
            p,
            r,
            100,
        );
    }
    let topo = topo
        .service("c", 1_000)
        .group("c1", "c", "p3", "r3", 100)
        .build();
    let mut sim = Sim::new(topo);
    // Nothing is open: the first failure opens at once.
    sim.down("a-p1-r1", "14:00:00");
    assert_eq!(events(&sim.update("14:00:00")), vec![opened("inc-000001")]);
    // b's first failing group shares nothing with the incident yet, nor does c's.
    sim.down("b-p2-r2", "14:00:02");
    sim.down("c1", "14:00:02");
    let changes = sim.update("14:00:02");
    assert!(changes.events.iter().all(|(k, _)| *k != EventKind::Opened));
    assert_eq!(services(sim.only()), ["a"]);
    // The outage reaches a's groups on b's platform: b joins, c still waits.
    sim.down("a-p2-r2", "14:00:04");
    assert_eq!(events(&sim.update("14:00:04")), vec![updated("inc-000001")]);
    assert_eq!(services(sim.only()), ["a", "b"]);
    assert!(timeline(sim.only()).contains(&"service_joined"));
    assert!(sim.update("14:00:31").events.is_empty());
    // c's wait is over: its failure is its own.
    assert_eq!(events(&sim.update("14:00:32")), vec![opened("inc-000002")]);
    let open = sim.book.open();
    assert_eq!(services(&open[1]), ["c"]);
    assert_eq!(open[1].onset_at, t("14:00:02"));
    assert_eq!(open[1].detected_at, t("14:00:32"));
}

#[test]
fn a_service_that_recovers_while_waiting_waits_anew_when_it_fails_again() {
    let topo = Topo::default()
        .service("a", 1_000)
        .group("a1", "a", "p1", "r1", 100)
        .service("b", 1_000)
        .group("b1", "b", "p2", "r2", 100)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("a1", "14:00:00");
    sim.update("14:00:00");
    sim.down("b1", "14:00:02");
    sim.update("14:00:02");
    sim.recover("b1", "14:00:10");
    sim.update("14:00:10");
    // Failing again, it waits `group_wait` from now, not from its first failure.
    sim.down("b1", "14:01:00");
    assert_eq!(events(&sim.update("14:01:00")), vec![]);
    assert_eq!(events(&sim.update("14:01:30")), vec![opened("inc-000002")]);
}

#[test]
fn without_group_wait_a_service_failing_apart_opens_at_once() {
    let topo = Topo::default()
        .service("a", 1_000)
        .group("a1", "a", "p1", "r1", 100)
        .service("b", 1_000)
        .group("b1", "b", "p2", "r2", 100)
        .build();
    let mut sim = Sim::new(topo);
    sim.settings.group_wait = Duration::ZERO;
    sim.down("a1", "14:00:00");
    sim.down("b1", "14:00:00");
    assert_eq!(
        events(&sim.update("14:00:00")),
        vec![opened("inc-000001"), opened("inc-000002")]
    );
}

#[test]
fn services_failing_together_share_one_incident() {
    // voice and voicemail both fail at 14:00 on the shared platform, seen in one update.
    let mut sim = Sim::new(three_services());
    sim.down("voice-n", "14:00:00");
    sim.down("voicemail-n", "14:00:00");
    let changes = sim.update("14:00:30");
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
    let inc = sim.only();
    assert_eq!(services(inc), ["voice", "voicemail"]);
    assert_eq!(timeline(inc), ["opened", "service_joined"]);
    assert_eq!(inc.groups.len(), 2);
}

#[test]
fn joined_services_figures_and_regions() {
    // voicemail and voice, 1 000 000 each over four regions, share the platform `ims`.
    let mut topo = Topo::default()
        .service("voicemail", 1_000_000)
        .service("voice", 1_000_000);
    for r in REGIONS {
        topo = topo
            .group(&format!("vm-{r}"), "voicemail", "ims", r, 5_000)
            .group(&format!("vm-big-{r}"), "voicemail", "vm-a", r, 245_000)
            .group(&format!("voice-{r}"), "voice", "ims", r, 10_000)
            .group(&format!("sbc-{r}"), "voice", "sbc", r, 240_000);
    }
    let mut sim = Sim::new(topo.build());
    sim.down("vm-north", "14:00:00");
    sim.update("14:00:30");
    let inc = sim.only();
    assert_eq!(
        (inc.scope, inc.severity),
        (Scope::Localized, Severity::Sev3)
    );

    // voice fails in another region: joins through the platform; two regions now.
    sim.down("voice-south", "14:05:00");
    assert_eq!(events(&sim.update("14:05:30")), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(services(inc), ["voice", "voicemail"]);
    assert_eq!(
        inc.scope,
        Scope::Regional,
        "two regions across the incident"
    );
    assert_eq!(inc.severity, Severity::Sev2, "voice lost 1%");
    assert!(inc.platform_concentrated);
    let v = inc.view(t("14:10:00"));
    assert_eq!(v.platforms, ["ims"]);
    assert_eq!(v.regions, ["north", "south"]);
    // Per service figures; the incident's are those of the most affected service.
    assert_eq!(v.per_service["voicemail"].peak_affected, 5_000);
    assert_eq!(v.per_service["voicemail"].user_minutes, 50_000);
    assert_eq!(v.per_service["voice"].peak_affected, 10_000);
    assert_eq!(v.per_service["voice"].user_minutes, 50_000);
    assert_close(v.per_service["voice"].peak_share, 0.01);
    assert_eq!(v.peak_affected, 10_000);
    assert_eq!(v.duration_seconds, 600);
    assert_eq!(v.conservative_user_minutes, 100_000);
}

// === ids and restore ===

#[test]
fn ids_are_sequential_and_zero_padded() {
    assert_eq!(Incident::id_for(1), "inc-000001");
    assert_eq!(Incident::id_for(123), "inc-000123");
    assert_eq!(Incident::id_in("", 123), "inc-000123");
    assert_eq!(Incident::id_in("3fa9c2d1", 123), "inc-000123-3fa9c2d1");
    // Three unrelated failures (no shared platform or region) make three incidents.
    let topo = Topo::default()
        .service("a", 100)
        .group("a1", "a", "pa", "ra", 10)
        .service("b", 100)
        .group("b1", "b", "pb", "rb", 10)
        .service("c", 100)
        .group("c1", "c", "pc", "rc", 10)
        .build();
    let mut sim = Sim::new(topo);
    for (g, at) in [("a1", "14:00:00"), ("b1", "14:01:00"), ("c1", "14:02:00")] {
        sim.down(g, at);
        sim.update(at);
    }
    // b and c waited `group_wait` to join a related incident; none formed.
    sim.update("14:01:30");
    sim.update("14:02:30");
    assert_eq!(
        ids(sim.book.open()),
        ["inc-000001", "inc-000002", "inc-000003"]
    );
    let seqs: Vec<u64> = sim.book.open().iter().map(|i| i.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(
        sim.book.get("inc-000002").map(|i| services(i)),
        Some(vec!["b"])
    );
}

#[test]
fn default_book_starts_at_inc_000001() {
    let topo = simple();
    let mut groups = vec![
        GroupStatus {
            health: Health::Ok,
            since: t("12:00:00"),
        };
        2
    ];
    groups[0] = GroupStatus {
        health: Health::Down,
        since: t("14:00:00"),
    };
    let mut book = IncidentBook::default();
    let changes = book.update(
        &topo,
        &groups,
        &|_| TargetState::Unknown,
        &settings(),
        t("14:00:30"),
    );
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
}

#[test]
fn restore_continues_sequence_without_reannouncing() {
    let mut sim = Sim::new(three_services());
    sim.down("voice-n", "14:00:00");
    sim.update("14:00:30");
    let saved = sim.book.open().to_vec();

    // A restart: the stored open incident and the highest sequence used (7).
    let mut sim = Sim {
        book: IncidentBook::restore(saved.clone(), 7),
        ..Sim::new(three_services())
    };
    sim.down("voice-n", "14:00:00");
    let changes = sim.update("14:02:00");
    assert!(changes.events.is_empty(), "{:?}", events(&changes));
    assert!(changes.is_empty());
    assert_eq!(sim.book.open(), saved.as_slice());

    // Stored severity, impact and scope are never lowered, even when the figures alone
    // would give less (e.g. rules changed between versions).
    let raise: [fn(&mut Incident); 3] = [
        |i| i.severity = Severity::Sev1,
        |i| i.impact = Impact::Critical,
        |i| (i.scope, i.severity) = (Scope::National, Severity::Sev1),
    ];
    for raise in raise {
        let mut stored = saved.clone();
        raise(&mut stored[0]);
        let mut kept = Sim {
            book: IncidentBook::restore(stored.clone(), 7),
            ..Sim::new(three_services())
        };
        kept.down("voice-n", "14:00:00");
        assert!(kept.update("14:02:00").events.is_empty());
        let (inc, was) = (kept.only(), &stored[0]);
        assert_eq!(
            (inc.severity, inc.impact, inc.scope),
            (was.severity, was.impact, was.scope)
        );
    }

    // The next incident continues the sequence.
    let topo = Topo::default()
        .service("other", 100)
        .group("o1", "other", "px", "rx", 10)
        .build();
    let mut other = Sim {
        book: IncidentBook::restore(saved, 7),
        ..Sim::new(topo)
    };
    other.down("o1", "14:03:00");
    // It might still join the restored incident, so it waits `group_wait` first.
    assert!(other.update("14:03:30").events.is_empty());
    assert_eq!(
        events(&other.update("14:04:00")),
        vec![opened("inc-000008")]
    );

    // The restored incident carries on: recovery and resolution.
    sim.recover("voice-n", "14:10:00");
    sim.update("14:10:30");
    assert_eq!(sim.only().status, IncidentStatus::Monitoring);
    assert_eq!(sim.only().impact_end_at, Some(t("14:10:00")));
    assert_eq!(events(&sim.tick("14:15:30")), vec![resolved("inc-000001")]);
}

// === §6.8 view ===

#[test]
fn view_has_spec_field_names() {
    let mut sim = Sim::new(voicemail());
    for r in ["north", "south"] {
        sim.down(&format!("vm-a-{r}"), "14:00:00");
    }
    sim.update("14:00:30");
    // Two more regions a moment later: 900 000 from 14:00 in the spec's example.
    for r in ["east", "west"] {
        sim.down(&format!("vm-a-{r}"), "14:00:00");
    }
    sim.update("14:00:40");
    // The engine updates every second; the one at 14:30 finds fcc_nors met.
    sim.update("14:30:00");

    let v = serde_json::to_value(sim.only().view(t("14:30:00"))).expect("serializes");
    let keys: BTreeSet<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "id",
        "status",
        "services",
        "platforms",
        "regions",
        "scope",
        "platform_concentrated",
        "severity",
        "impact",
        "onset_at",
        "detected_at",
        "impact_end_at",
        "resolved_at",
        "time_to_detect_seconds",
        "duration_seconds",
        "affected",
        "peak_affected",
        "user_minutes",
        "conservative_user_minutes",
        "per_service",
        "reporting",
        "suspected_cause",
        "recurrence",
        "timeline",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);

    assert_eq!(v["id"], "inc-000001");
    assert_eq!(v["status"], "investigating");
    assert_eq!(v["services"], json!(["voicemail"]));
    assert_eq!(v["platforms"], json!(["vm-a"]));
    assert_eq!(v["regions"], json!(["east", "north", "south", "west"]));
    assert_eq!(v["scope"], "distributed");
    assert_eq!(v["platform_concentrated"], true);
    assert_eq!(v["severity"], "sev2");
    assert_eq!(v["impact"], "major");
    assert_eq!(v["onset_at"], "2026-07-05T14:00:00Z");
    assert_eq!(v["detected_at"], "2026-07-05T14:00:30Z");
    assert_eq!(v["impact_end_at"], Value::Null);
    assert_eq!(v["resolved_at"], Value::Null);
    assert_eq!(v["time_to_detect_seconds"], 30);
    assert_eq!(v["duration_seconds"], 1_800);
    assert_eq!(v["affected"], 900_000);
    assert_eq!(v["peak_affected"], 900_000);
    assert_eq!(v["user_minutes"], 27_000_000);
    assert_eq!(v["conservative_user_minutes"], 27_000_000);
    let vm = &v["per_service"]["voicemail"];
    assert_eq!(vm["component_status"], "partial_outage");
    assert_eq!(vm["affected"], 900_000);
    assert_eq!(vm["peak_affected"], 900_000);
    assert_eq!(vm["peak_share"], json!(0.03));
    assert_eq!(vm["user_minutes"], 27_000_000);
    // The reference's example incident, plus the review reason and the later report deadlines.
    assert_eq!(
        v["reporting"]["fcc_nors"],
        json!({"status": "met_needs_review", "rule": "≥30m and ≥900000 user-minutes",
               "service": "voicemail", "review": "voicemail is a feature service",
               "met_at": "2026-07-05T14:30:00Z", "notify_by": "2026-07-05T16:30:00Z",
               "initial_report_by": "2026-07-08T14:30:00Z",
               "final_report_by": "2026-08-04T14:30:00Z"})
    );
    assert_eq!(v["reporting"]["ofcom"]["status"], "met_needs_review");
    assert_eq!(v["reporting"]["ofcom"]["met_at"], "2026-07-05T14:00:00Z");
    assert_eq!(v["reporting"]["eu_enisa"]["status"], "not_met");
    assert_eq!(v["reporting"]["eu_enisa"]["met_at"], Value::Null);
    assert_eq!(v["suspected_cause"], Value::Null);
    assert_eq!(v["recurrence"], json!({"count_30d": 1, "chronic": false}));
    let first = &v["timeline"][0];
    assert_eq!(first["at"], "2026-07-05T14:00:30Z");
    assert_eq!(first["event"], "opened");
    assert!(first["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[test]
fn view_of_a_resolved_incident() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    sim.recover("g", "14:30:00");
    sim.update("14:30:30");
    let changes = sim.tick("14:35:30");
    let v = serde_json::to_value(changes.events[0].1.view(t("16:00:00"))).expect("serializes");
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["impact_end_at"], "2026-07-05T14:30:00Z");
    assert_eq!(v["resolved_at"], "2026-07-05T14:35:30Z");
    assert_eq!(v["duration_seconds"], 1_800);
    assert_eq!(v["user_minutes"], 30_000);
    assert_eq!(
        v["per_service"]["voicemail"]["component_status"],
        "operational"
    );
    let events: Vec<&str> = v["timeline"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["event"].as_str().expect("string"))
        .collect();
    assert_eq!(events, ["opened", "recovered", "resolved"]);
}

#[test]
fn a_reload_removing_the_failing_service_lets_the_incident_resolve() {
    let mut sim = Sim::new(simple());
    sim.down("g", "14:00:00");
    sim.update("14:01:00");
    let id = sim.only().id.clone();

    // The new configuration no longer has the voicemail service.
    sim.topo = Topo::default().service("web", 10).build();
    sim.groups = vec![];
    let changes = sim.update("14:10:00");
    assert!(
        events(&changes).is_empty(),
        "no alert for a configuration change"
    );
    let inc = sim.only();
    assert_eq!(inc.status, IncidentStatus::Monitoring);
    assert_eq!(inc.groups[0].periods[0].end, Some(t("14:10:00")));
    assert_eq!(inc.figures(t("15:00:00")).duration, mins(10));
    assert_eq!(events(&sim.tick("14:15:00")), vec![resolved(&id)]);
}

// === §6.6 reporting rules, in the incident ===

/// `voice` (telephony, 10 000 000 subscribers): group `small` (40 000 = 0.4%, north) and
/// `rest`, both on platform `ims`.
fn voice(class: ServiceClass) -> Topology {
    Topo::default()
        .service("voice", 10_000_000)
        .class(class)
        .group("small", "voice", "ims", "north", 40_000)
        .group("rest", "voice", "ims", "south", 9_960_000)
        .build()
}

fn statuses(inc: &Incident) -> Vec<(&str, RuleStatus)> {
    inc.reporting
        .iter()
        .map(|(name, o)| (name.as_str(), o.status))
        .collect()
}

#[test]
fn a_rule_met_while_open_is_an_update_in_the_timeline_and_raises_severity() {
    // 40 000 down from 14:00: sev3 (0.4%, under 100 000); fcc_nors needs 30 minutes
    // (40 000 × 30m = 1 200 000 user-minutes by then).
    let mut sim = Sim::new(voice(ServiceClass::Telephony));
    sim.down("small", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    let inc = sim.only();
    assert_eq!(inc.severity, Severity::Sev3);
    assert_eq!(
        statuses(inc),
        [
            ("eu_enisa", RuleStatus::NotMet),
            ("fcc_nors", RuleStatus::NotMet),
            ("ofcom", RuleStatus::NotMet)
        ],
        "evaluated from the start"
    );
    assert_eq!(timeline(inc), ["opened"]);

    // Quiet updates up to 29m59s: nothing.
    for now in ["14:10:00", "14:29:59"] {
        let changes = sim.update(now);
        assert!(changes.events.is_empty(), "{now}: {:?}", events(&changes));
        assert!(changes.is_empty(), "{now}");
    }

    // 30 minutes: fcc_nors met, severity raised to sev2 by it, one incident.updated.
    let changes = sim.update("14:30:00");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    assert_eq!(ids(&changes.changed), ["inc-000001"]);
    let inc = sim.only();
    assert_eq!(inc.severity, Severity::Sev2, "a met rule is sev2");
    assert_eq!(timeline(inc), ["opened", "rule_met", "severity_raised"]);
    let entry = &inc.timeline[1];
    assert_eq!(entry.at, t("14:30:00"));
    assert_eq!(
        entry.message,
        "fcc_nors met: ≥30m and ≥900000 user-minutes on voice, met at 2026-07-05T14:30:00Z; \
         notify by 2026-07-05T16:30:00Z"
    );
    let fcc = &inc.reporting["fcc_nors"];
    assert_eq!(fcc.status, RuleStatus::Met);
    assert_eq!(fcc.met_at, Some(t("14:30:00")));
    assert_eq!(fcc.notify_by, Some(t("16:30:00")));
    assert_eq!(fcc.service.as_deref(), Some("voice"));
    assert_eq!(fcc.review, None);
    assert_eq!(
        changes.events[0].1.reporting["fcc_nors"].status,
        RuleStatus::Met
    );

    // Once met, stays met and announced once.
    assert!(sim.update("14:31:00").events.is_empty());
    sim.recover("small", "14:40:00");
    sim.update("14:40:30");
    let changes = sim.tick("14:45:30");
    assert_eq!(events(&changes), vec![resolved("inc-000001")]);
    let done = &changes.events[0].1;
    assert_eq!(done.reporting["fcc_nors"].status, RuleStatus::Met);
    assert_eq!(done.reporting["fcc_nors"].met_at, Some(t("14:30:00")));
    assert_eq!(
        timeline(done),
        [
            "opened",
            "rule_met",
            "severity_raised",
            "recovered",
            "resolved"
        ]
    );
    let v = serde_json::to_value(done.view(t("20:00:00"))).unwrap();
    assert_eq!(v["reporting"]["fcc_nors"]["status"], "met");
    assert_eq!(v["reporting"]["ofcom"]["status"], "not_met");
    assert_eq!(v["reporting"]["ofcom"]["critical"], false);
}

#[test]
fn met_at_is_when_the_rule_became_true_not_when_it_was_seen() {
    // Updates only when the input says something (replay): the rule is found at 16:00,
    // but it became true at 14:30, and its deadline follows from then.
    let mut sim = Sim::new(voice(ServiceClass::Telephony));
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    let changes = sim.update("16:00:00");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    let fcc = &inc.reporting["fcc_nors"];
    assert_eq!(fcc.met_at, Some(t("14:30:00")));
    assert_eq!(fcc.notify_by, Some(t("16:30:00")));
    assert_eq!(inc.timeline[1].event, "rule_met");
    assert_eq!(inc.timeline[1].at, t("16:00:00"), "noted when seen");

    // Seen only at recovery: the figures end at the impact's end, the rule is still found.
    let mut sim = Sim::new(voice(ServiceClass::Telephony));
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    sim.recover("small", "14:31:00");
    assert_eq!(events(&sim.update("18:00:00")), vec![updated("inc-000001")]);
    let inc = sim.only();
    assert_eq!(inc.status, IncidentStatus::Monitoring);
    assert_eq!(inc.reporting["fcc_nors"].met_at, Some(t("14:30:00")));
    assert_eq!(
        timeline(inc),
        ["opened", "recovered", "rule_met", "severity_raised"]
    );

    // Recovered at 14:29:59: never met, however late it is seen.
    let mut sim = Sim::new(voice(ServiceClass::Telephony));
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    sim.recover("small", "14:29:59");
    sim.update("18:00:00");
    let inc = sim.only();
    assert_eq!(inc.reporting["fcc_nors"].status, RuleStatus::NotMet);
    assert_eq!(inc.severity, Severity::Sev3);
}

#[test]
fn needs_review_is_announced_but_does_not_raise_severity() {
    // (class, down or degraded, status, severity at 14:30)
    let cases: &[(ServiceClass, Health, RuleStatus, Severity)] = &[
        (
            ServiceClass::Telephony,
            Health::Down,
            RuleStatus::Met,
            Severity::Sev2,
        ),
        (
            ServiceClass::Internet,
            Health::Down,
            RuleStatus::Met,
            Severity::Sev2,
        ),
        (
            ServiceClass::Feature,
            Health::Down,
            RuleStatus::MetNeedsReview,
            Severity::Sev3,
        ),
        // Degradation only: 0.4% degraded for 30m is sev4 (under 1%), fcc_nors needs review.
        (
            ServiceClass::Telephony,
            Health::Degraded,
            RuleStatus::MetNeedsReview,
            Severity::Sev4,
        ),
    ];
    for (class, health, status, severity) in cases {
        let label = format!("{class:?} {health:?}");
        let mut sim = Sim::new(voice(*class));
        sim.set("small", *health, "14:00:00");
        sim.update("14:00:30");
        let changes = sim.update("14:30:00");
        assert_eq!(events(&changes), vec![updated("inc-000001")], "{label}");
        let inc = sim.only();
        assert_eq!(inc.reporting["fcc_nors"].status, *status, "{label}");
        assert_eq!(inc.severity, *severity, "{label}");
        assert_eq!(timeline(inc)[1], "rule_met", "{label}");
    }

    // A feature service needing review, then a telephony service of the same incident
    // meeting the rule for real: raised to met, announced again, sev2.
    let topo = Topo::default()
        .service("voicemail", 10_000_000)
        .group("vm", "voicemail", "ims", "north", 40_000)
        .group("vm-rest", "voicemail", "ims", "south", 9_960_000)
        .service("voice", 10_000_000)
        .class(ServiceClass::Telephony)
        .group("sbc", "voice", "ims", "north", 40_000)
        .group("sbc-rest", "voice", "ims", "south", 9_960_000)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("vm", "14:00:00");
    sim.update("14:00:30");
    sim.down("sbc", "14:10:00");
    sim.update("14:10:30");
    sim.update("14:30:00");
    let inc = sim.only();
    assert_eq!(inc.reporting["fcc_nors"].status, RuleStatus::MetNeedsReview);
    assert_eq!(
        inc.reporting["fcc_nors"].service.as_deref(),
        Some("voicemail")
    );
    assert_eq!(inc.severity, Severity::Sev3);
    assert!(sim.update("14:39:59").events.is_empty());
    let changes = sim.update("14:40:00");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let inc = sim.only();
    let fcc = &inc.reporting["fcc_nors"];
    assert_eq!(fcc.status, RuleStatus::Met);
    assert_eq!(fcc.service.as_deref(), Some("voice"));
    assert_eq!(fcc.met_at, Some(t("14:40:00")), "voice's own 30 minutes");
    assert_eq!(inc.severity, Severity::Sev2);
    assert_eq!(
        timeline(inc),
        [
            "opened",
            "service_joined",
            "rule_met",
            "rule_met",
            "severity_raised"
        ]
    );
}

#[test]
fn ofcom_and_enisa_in_the_incident() {
    // 1 000 000 of 10 000 000 voice subscribers (10%): ofcom met at once, in the
    // opening event; fcc_nors after 30m; eu_enisa at 1 000 000 user-hours after 1h (before
    // its 10% row's 2h); ofcom critical after 3h.
    let topo = Topo::default()
        .service("voice", 10_000_000)
        .class(ServiceClass::Telephony)
        .group("big", "voice", "ims", "north", 1_000_000)
        .group("rest", "voice", "ims", "south", 9_000_000)
        .build();
    let mut sim = Sim::new(topo);
    sim.down("big", "14:00:00");
    let changes = sim.update("14:00:30");
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
    let inc = &changes.events[0].1;
    assert_eq!(inc.reporting["ofcom"].status, RuleStatus::Met);
    assert_eq!(inc.reporting["ofcom"].met_at, Some(t("14:00:00")));
    assert_eq!(
        timeline(inc),
        ["opened", "rule_met"],
        "noted, no extra event"
    );
    assert_eq!(inc.severity, Severity::Sev2);

    // fcc_nors at 30 minutes, eu_enisa at 1h.
    assert_eq!(events(&sim.update("14:30:00")), vec![updated("inc-000001")]);
    assert_eq!(sim.only().reporting["fcc_nors"].status, RuleStatus::Met);
    assert!(sim.update("14:59:59").events.is_empty());
    assert_eq!(events(&sim.update("15:00:00")), vec![updated("inc-000001")]);
    let enisa = &sim.only().reporting["eu_enisa"];
    assert_eq!(enisa.met_at, Some(t("15:00:00")));
    assert_eq!(enisa.rule.as_deref(), Some("≥1000000 user-hours"));
    assert_eq!(
        enisa.notify_by,
        Some(t("15:00:00") + chrono::Duration::hours(24))
    );

    // Critical: a change of the ofcom result, announced.
    assert!(sim.update("16:59:59").events.is_empty());
    let changes = sim.update("17:00:00");
    assert_eq!(events(&changes), vec![updated("inc-000001")]);
    let ofcom = &sim.only().reporting["ofcom"];
    assert_eq!(ofcom.critical, Some(true));
    assert_eq!(ofcom.critical_at, Some(t("17:00:00")));
    assert_eq!(ofcom.met_at, Some(t("14:00:00")));
    assert_eq!(
        ofcom.notify_by,
        Some(t("20:00:00")),
        "3 hours after critical"
    );
    let last = sim.only().timeline.last().unwrap();
    assert_eq!(last.event, "rule_met");
    assert!(
        last.message.contains("critical since 2026-07-05T17:00:00Z"),
        "{}",
        last.message
    );
}

#[test]
fn only_configured_rule_sets_and_custom_rules() {
    let mut sim = Sim::new(voice(ServiceClass::Internet));
    sim.settings.reporting = ReportingSpec {
        rule_sets: vec![
            reporting::RuleSet::Ofcom,
            reporting::RuleSet::Custom(reporting::CustomRule {
                name: "internal".to_string(),
                min_duration: Some(mins(10)),
                min_share: None,
                min_affected: Some(40_000),
                min_user_hours: None,
                notify_within: Some(mins(60)),
            }),
        ],
    };
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    assert_eq!(
        statuses(sim.only()),
        [
            ("internal", RuleStatus::NotMet),
            ("ofcom", RuleStatus::NotMet)
        ]
    );
    assert_eq!(events(&sim.update("14:10:00")), vec![updated("inc-000001")]);
    let internal = &sim.only().reporting["internal"];
    assert_eq!(internal.status, RuleStatus::Met);
    assert_eq!(internal.rule.as_deref(), Some("≥10m and ≥40000 affected"));
    assert_eq!(internal.notify_by, Some(t("15:10:00")));
    assert_eq!(
        sim.only().severity,
        Severity::Sev2,
        "a custom rule counts too"
    );

    // A reload dropping both: the met one stays, the one not met goes.
    sim.settings.reporting = ReportingSpec { rule_sets: vec![] };
    sim.update("14:11:00");
    assert_eq!(statuses(sim.only()), [("internal", RuleStatus::Met)]);
    let v = serde_json::to_value(sim.only().view(t("14:11:00"))).unwrap();
    assert_eq!(v["reporting"].as_object().unwrap().len(), 1);

    // No rule set at all: an empty object, never null.
    let mut sim = Sim::new(simple());
    sim.settings.reporting = ReportingSpec { rule_sets: vec![] };
    sim.down("g", "14:00:00");
    sim.update("14:00:30");
    let v = serde_json::to_value(sim.only().view(t("14:00:30"))).unwrap();
    assert_eq!(v["reporting"], json!({}));
}

#[test]
fn incidents_stored_before_reporting_still_load_and_are_not_reannounced() {
    let mut sim = Sim::new(voice(ServiceClass::Telephony));
    sim.down("small", "14:00:00");
    sim.update("14:00:30");
    // As stored by an earlier version: no `reporting`, no service `class`.
    let mut stored = serde_json::to_value(sim.only()).unwrap();
    stored.as_object_mut().unwrap().remove("reporting");
    stored.as_object_mut().unwrap().remove("announced_affected");
    stored.as_object_mut().unwrap().remove("steps_omitted");
    stored["services"]["voice"]
        .as_object_mut()
        .unwrap()
        .remove("class");
    let old: Incident = serde_json::from_value(stored).expect("loads");
    assert!(old.reporting.is_empty());
    assert_eq!(old.announced_affected, None);
    assert_eq!(old.services["voice"].class, ServiceClass::Feature);
    assert_eq!(old.view(t("14:01:00")).reporting, Some(BTreeMap::new()));

    let mut sim = Sim {
        book: IncidentBook::restore(vec![old], 1),
        ..Sim::new(voice(ServiceClass::Telephony))
    };
    sim.down("small", "14:00:00");
    let changes = sim.update("14:02:00");
    assert!(changes.events.is_empty(), "{:?}", events(&changes));
    assert_eq!(
        ids(&changes.changed),
        ["inc-000001"],
        "evaluated, persisted"
    );
    let inc = sim.only();
    assert_eq!(
        inc.services["voice"].class,
        ServiceClass::Telephony,
        "refreshed"
    );
    assert_eq!(inc.reporting.len(), 3);
    assert_eq!(timeline(inc), ["opened"]);
    assert_eq!(
        inc.announced_affected,
        inc.most_affected_now().map(|(_, n)| n),
        "the current figure is taken as announced, silently"
    );
}

// === Dependencies ===

/// A core DNS group in no region or platform, and three services that depend on it, each
/// in a region of its own: nothing but the dependency relates them.
fn core_and_dependents() -> Topology {
    Topo::default()
        .service("core", 1)
        .group("core-dns", "core", "", "", 1)
        .service("voicemail", 1_000)
        .group("vm", "voicemail", "vm-a", "north", 1_000)
        .depends_on("core-dns")
        .service("data", 5_000)
        .group("pgw", "data", "pgw-a", "south", 5_000)
        .depends_on("core-dns")
        .service("voice", 8_000)
        .group("ims", "voice", "ims-a", "east", 8_000)
        .depends_on("core-dns")
        .build()
}

#[test]
fn dependents_of_a_down_dependency_join_its_incident_in_one_update() {
    let mut sim = Sim::new(core_and_dependents());
    // All fail together, the dependents listed before the dependency's service would be
    // reached in index order: they wait for it.
    sim.down("vm", "14:00:10");
    sim.down("pgw", "14:00:10");
    sim.down("ims", "14:00:20");
    sim.down("core-dns", "14:00:00");
    let changes = sim.update("14:00:30");
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
    let inc = sim.only();
    assert_eq!(services(inc), vec!["core", "data", "voice", "voicemail"]);
    assert_eq!(inc.services["core"].through, None);
    for s in ["data", "voice", "voicemail"] {
        assert_eq!(inc.services[s].through.as_deref(), Some("core-dns"), "{s}");
    }
    let view = inc.view(t("14:01:00"));
    assert_eq!(view.caused_by, vec!["core-dns"]);
    assert_eq!(view.own_services(), vec!["core"]);
    assert_eq!(view.per_service["voice"].affected, 8_000);
    assert_eq!(
        view.per_service["voice"].through.as_deref(),
        Some("core-dns")
    );
}

#[test]
fn a_dependent_failing_later_joins_and_one_failing_alone_opens_its_own() {
    let mut sim = Sim::new(core_and_dependents());
    sim.down("core-dns", "14:00:00");
    assert_eq!(events(&sim.update("14:00:30")), vec![opened("inc-000001")]);
    sim.down("vm", "14:02:00");
    let changes = sim.update("14:02:10");
    assert!(changes.events.iter().all(|(k, _)| *k != EventKind::Opened));
    let inc = sim.only();
    assert!(timeline(inc).contains(&"service_joined"));
    assert_eq!(
        inc.services["voicemail"].through.as_deref(),
        Some("core-dns")
    );
    // Once the dependency is up again, a dependent's new failure is its own.
    sim.recover("core-dns", "14:05:00");
    sim.recover("vm", "14:05:00");
    sim.update("14:05:00");
    sim.tick("14:11:00");
    assert!(sim.book.open().is_empty());
    sim.down("ims", "14:20:00");
    assert_eq!(events(&sim.update("14:20:10")), vec![opened("inc-000002")]);
    assert_eq!(sim.only().services["voice"].through, None);
}

/// Voicemail's group `vm` has two targets; only `vm-a` depends on the core `resolver`.
fn target_dependencies() -> Topology {
    use crate::topology::config::{
        DefaultsConfig, GroupConfig, ServiceConfig, Tables, TargetConfig, build,
    };
    let services: Vec<ServiceConfig> =
        serde_json::from_value(json!([{"id": "core"}, {"id": "voicemail"}])).unwrap();
    let groups: Vec<GroupConfig> = serde_json::from_value(json!([
        {"id": "vm", "service": "voicemail", "subscribers": 1000}
    ]))
    .unwrap();
    let tcp = |address: &str| json!({"type": "tcp", "address": address});
    let targets: Vec<TargetConfig> = serde_json::from_value(json!([
        {"id": "resolver", "service": "core", "probe": tcp("dns.example.net:53")},
        {"id": "vm-a", "groups": ["vm"], "depends_on": ["resolver"], "probe": tcp("a.example.net:143")},
        {"id": "vm-b", "groups": ["vm"], "probe": tcp("b.example.net:143")},
    ]))
    .unwrap();
    let mut issues = crate::validation::Issues::default();
    let tables = Tables {
        defaults: &DefaultsConfig::default(),
        services: &services,
        groups: &groups,
        targets,
        maintenances: &[],
    };
    let topo = build(tables, &mut issues);
    assert!(issues.is_empty(), "{issues}");
    topo
}

#[test]
fn a_group_is_held_only_while_each_of_its_failing_targets_depends_on_one_down() {
    let topo = target_dependencies();
    let down = |ids: &'static [&'static str]| {
        let topo = topo.clone();
        move |t: usize| {
            if ids.contains(&topo.targets[t].id.as_str()) {
                TargetState::Down
            } else {
                TargetState::Up
            }
        }
    };
    let groups_down = |ids: &[&str]| -> Vec<GroupStatus> {
        topo.groups
            .iter()
            .map(|g| GroupStatus {
                health: if ids.contains(&g.id.as_str()) {
                    Health::Down
                } else {
                    Health::Ok
                },
                since: t("14:00:00"),
            })
            .collect()
    };
    // The resolver and vm-a down: voicemail fails through the resolver.
    let mut book = IncidentBook::default();
    let groups = groups_down(&["resolver", "vm"]);
    let changes = book.update(
        &topo,
        &groups,
        &down(&["resolver", "vm-a"]),
        &settings(),
        t("14:00:30"),
    );
    assert_eq!(events(&changes), vec![opened("inc-000001")]);
    assert_eq!(
        book.open()[0].services["voicemail"].through.as_deref(),
        Some("resolver")
    );
    // vm-b down too, which depends on nothing: voicemail's failure is its own.
    let mut book = IncidentBook::default();
    let update = |book: &mut IncidentBook, now: &str| {
        let changes = book.update(
            &topo,
            &groups,
            &down(&["resolver", "vm-a", "vm-b"]),
            &settings(),
            t(now),
        );
        events(&changes)
    };
    assert_eq!(update(&mut book, "14:00:30"), vec![opened("inc-000001")]);
    // Unrelated to the resolver's incident, it opens its own after `group_wait`.
    assert_eq!(update(&mut book, "14:01:00"), vec![opened("inc-000002")]);
    assert!(book.open().iter().all(|i| i.services.len() == 1));
}
