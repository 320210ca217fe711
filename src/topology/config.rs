//! The topology's tables as written: `[[services]]`, `[[groups]]`, `[[targets]]`,
//! `[[maintenances]]` and the per-target `[defaults]`, and the step that builds them into a
//! [`Topology`] (effective settings applied, references resolved, every problem recorded).

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use serde::Deserialize;

use super::{
    Dependency, Group, GroupMode, Ids, Maintenance, Service, ServiceClass, Target, TargetLabels,
    Topology,
};
use crate::clock::Timestamp;
use crate::probe::ProbeConfig;
use crate::validation::{Issues, human};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub id: String,
    /// Display name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Subscriber base; defaults to the sum of its groups' subscribers.
    #[serde(default)]
    pub subscribers: Option<u64>,
    /// Used by reporting rules.
    #[serde(default)]
    pub class: ServiceClass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub subscribers: u64,
    #[serde(default)]
    pub mode: GroupMode,
    /// Groups or targets (by id) whose outage this group's failure is part of.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub services: Vec<String>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    #[serde(default)]
    pub summary: String,
}

/// `[defaults]`: per-target keys of the same name override these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    #[serde(default = "default_degraded_latency", with = "humantime_serde")]
    pub degraded_latency: Duration,
    /// Quiet time before an incident is resolved; global (incidents span targets).
    #[serde(default = "default_resolve_after", with = "humantime_serde")]
    pub resolve_after: Duration,
    /// Vantages that must agree a target is down (or degraded); 0: a majority of those
    /// voting, a tie counting as down.
    #[serde(default)]
    pub quorum: u32,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            degraded_latency: default_degraded_latency(),
            resolve_after: default_resolve_after(),
            quorum: 0,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    2
}
fn default_degraded_latency() -> Duration {
    Duration::from_secs(2)
}
fn default_resolve_after() -> Duration {
    Duration::from_secs(300)
}

/// `[[targets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub id: String,
    /// Groups this target watches. Or use the `service` shorthand.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Shorthand: an implicit group of its own in this service.
    #[serde(default)]
    pub service: Option<String>,
    /// With `service` only: the implicit group's region.
    #[serde(default)]
    pub region: Option<String>,
    /// With `service` only: the implicit group's platform.
    #[serde(default)]
    pub platform: Option<String>,
    /// With `service` only: the implicit group's subscribers (default 1).
    #[serde(default)]
    pub subscribers: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub success_threshold: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub degraded_latency: Option<Duration>,
    /// The vantages that probe this target; default every vantage.
    #[serde(default)]
    pub vantages: Option<Vec<String>>,
    /// Groups or targets (by id) whose outage this target's failure is part of.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Boxed, most of a target's size: it goes with its target as the topology is built,
    /// where the list's own memory goes back only a quarter at a time.
    pub probe: Box<ProbeConfig>,
}

/// The tables [`build`] reads; the targets it takes, a large list that it gives back as
/// it builds them.
pub struct Tables<'a> {
    pub defaults: &'a DefaultsConfig,
    pub services: &'a [ServiceConfig],
    pub groups: &'a [GroupConfig],
    pub targets: Vec<TargetConfig>,
    pub maintenances: &'a [MaintenanceConfig],
}

/// Where a built group or target is written: `groups[2]`, `targets[7]` (an implicit group
/// at its target). An index rather than the path: there is one per target.
#[derive(Debug, Clone, Copy)]
enum Written {
    Group(usize),
    Target(usize),
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Written::Group(i) => write!(f, "groups[{i}]"),
            Written::Target(i) => write!(f, "targets[{i}]"),
        }
    }
}

/// A `depends_on` as written, of the built group or target `node`; only those that list
/// something are kept (most targets list nothing).
struct DependsOn<'a> {
    node: Dependency,
    at: Written,
    ids: Cow<'a, [String]>,
}

/// Builds the topology, recording every problem under its key path. The result is only
/// used when no problem was recorded.
pub fn build(file: Tables<'_>, issues: &mut Issues) -> Topology {
    check_defaults(file.defaults, issues);
    let mut topo = Topology {
        quorum: file.defaults.quorum,
        ..Topology::default()
    };
    let mut service_ids = HashMap::new();
    for (i, s) in file.services.iter().enumerate() {
        unique(&mut service_ids, s.id.as_str(), "services", i, issues);
        if s.subscribers == Some(0) {
            issues.push(format!("services[{i}].subscribers"), "must be at least 1");
        }
        topo.services.push(Service {
            id: s.id.clone(),
            name: s.name.clone().unwrap_or_else(|| s.id.clone()),
            subscribers: s.subscribers.unwrap_or(0),
            class: s.class,
            groups: Vec::new(),
        });
    }

    let mut group_ids = HashMap::new();
    let mut depends_on: Vec<DependsOn<'_>> = Vec::new();
    for (i, g) in file.groups.iter().enumerate() {
        unique(&mut group_ids, g.id.as_str(), "groups", i, issues);
        if g.subscribers == 0 {
            issues.push(format!("groups[{i}].subscribers"), "must be at least 1");
        }
        let Some(service) = topo.service_index(&g.service) else {
            issues.push(
                format!("groups[{i}].service"),
                format!("unknown service `{}`", g.service),
            );
            continue;
        };
        if !g.depends_on.is_empty() {
            depends_on.push(DependsOn {
                node: Dependency::Group(topo.groups.len()),
                at: Written::Group(i),
                ids: Cow::Borrowed(&g.depends_on),
            });
        }
        topo.groups.push(Group {
            id: g.id.clone(),
            service,
            platform: g.platform.clone(),
            region: g.region.clone(),
            subscribers: g.subscribers,
            mode: g.mode,
            targets: Vec::new(),
            depends_on: Vec::new(),
        });
    }

    // Only groups declared under `[[groups]]` can be listed in `targets[].groups`; the
    // implicit groups of `service` targets are their own.
    let explicit_groups: HashMap<String, usize> = topo
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id.clone(), i))
        .rev() // the first of a duplicated id, as a scan finds it
        .collect();
    // Every target has a place, and a `service` one an implicit group: no growth slack to
    // give back, nor a large list copied as it grows.
    topo.targets.reserve_exact(file.targets.len());
    topo.groups
        .reserve_exact(file.targets.iter().filter(|t| t.service.is_some()).count());
    let d = file.defaults;
    // Owned ids: each target goes once it is built, the topology taking its strings.
    let mut target_ids: HashMap<String, usize> = HashMap::with_capacity(file.targets.len());
    for (i, t) in give_back(file.targets).enumerate() {
        let path = format!("targets[{i}]");
        unique(&mut target_ids, t.id.clone(), "targets", i, issues);
        let interval = t.interval.unwrap_or(d.interval);
        let timeout = t.timeout.unwrap_or(d.timeout);
        let failure_threshold = t.failure_threshold.unwrap_or(d.failure_threshold);
        let success_threshold = t.success_threshold.unwrap_or(d.success_threshold);
        let timing = Timing {
            interval,
            timeout,
            failure_threshold,
            success_threshold,
        };
        check_timing(
            &path,
            &timing,
            |key| match key {
                "interval" => t.interval.is_some(),
                "timeout" => t.timeout.is_some(),
                "failure_threshold" => t.failure_threshold.is_some(),
                _ => t.success_threshold.is_some(),
            },
            issues,
        );
        if t.degraded_latency.is_some_and(|d| d.is_zero()) {
            issues.push(
                format!("{path}.degraded_latency"),
                "must be greater than zero",
            );
        }
        let probe = t.probe.build(&format!("{path}.probe"), issues);

        let mut groups = Vec::new();
        match (&t.service, t.groups.is_empty()) {
            (Some(_), false) => {
                issues.push(path.clone(), "set either `groups` or `service`, not both");
            }
            (None, true) => {
                issues.push(path.clone(), "set `groups` or `service`");
            }
            (None, false) => {
                for key in ["region", "platform", "subscribers"] {
                    let set = match key {
                        "region" => t.region.is_some(),
                        "platform" => t.platform.is_some(),
                        _ => t.subscribers.is_some(),
                    };
                    if set {
                        issues.push(
                            format!("{path}.{key}"),
                            "only allowed with the `service` shorthand; set it on the group",
                        );
                    }
                }
                for (j, gid) in t.groups.iter().enumerate() {
                    match explicit_groups.get(gid).copied() {
                        Some(g) if !groups.contains(&g) => groups.push(g),
                        Some(_) => issues.push(
                            format!("{path}.groups[{j}]"),
                            format!("group `{gid}` listed twice"),
                        ),
                        // Declared, but its own problem (an unknown service) is reported.
                        None if group_ids.contains_key(gid.as_str()) => {}
                        None => issues.push(
                            format!("{path}.groups[{j}]"),
                            format!("unknown group `{gid}`"),
                        ),
                    }
                }
            }
            (Some(sid), true) => match topo.service_index(sid) {
                None => issues.push(
                    format!("{path}.service"),
                    format!("unknown service `{sid}`"),
                ),
                Some(service) => {
                    if let Some(&first) = group_ids.get(t.id.as_str()) {
                        issues.push(
                            format!("{path}.id"),
                            format!(
                                "its implicit group clashes with the group at {}",
                                Written::Group(first)
                            ),
                        );
                    }
                    if t.subscribers == Some(0) {
                        issues.push(format!("{path}.subscribers"), "must be at least 1");
                    }
                    topo.groups.push(Group {
                        id: t.id.clone(),
                        service,
                        platform: t.platform,
                        region: t.region,
                        subscribers: t.subscribers.unwrap_or(1),
                        mode: GroupMode::Any,
                        targets: Vec::new(),
                        depends_on: Vec::new(),
                    });
                    groups.push(topo.groups.len() - 1);
                }
            },
        }
        if t.vantages.as_ref().is_some_and(Vec::is_empty) {
            issues.push(
                format!("{path}.vantages"),
                "must name at least one vantage (leave it out for every vantage)",
            );
        }
        let vantages = t.vantages.unwrap_or_default();
        for (j, v) in vantages.iter().enumerate() {
            if v.is_empty() {
                issues.push(format!("{path}.vantages[{j}]"), "must not be empty");
            }
        }
        let Some(probe) = probe else { continue };
        let index = topo.targets.len();
        for &g in &groups {
            topo.groups[g].targets.push(index);
        }
        let labels = labels(&topo, &groups);
        topo.targets.push(Target {
            id: t.id,
            groups,
            interval,
            timeout,
            failure_threshold,
            success_threshold,
            degraded_latency: t.degraded_latency.unwrap_or(d.degraded_latency),
            probe,
            labels,
            vantages,
            depends_on: Vec::new(),
        });
        if !t.depends_on.is_empty() {
            depends_on.push(DependsOn {
                node: Dependency::Target(index),
                at: Written::Target(i),
                ids: Cow::Owned(t.depends_on),
            });
        }
    }
    resolve_dependencies(&mut topo, &depends_on, &group_ids, &target_ids, issues);
    // An entry a target: gone before the topology's own index of ids is built.
    drop(target_ids);

    for (gi, g) in topo.groups.iter().enumerate() {
        topo.services[g.service].groups.push(gi);
    }
    for (i, s) in topo.services.iter_mut().enumerate() {
        let of_groups: u64 = s.groups.iter().map(|&g| topo.groups[g].subscribers).sum();
        if s.subscribers == 0 {
            s.subscribers = of_groups;
        } else if s.subscribers < of_groups {
            issues.push(
                format!("services[{i}].subscribers"),
                format!(
                    "{} is fewer than its groups hold ({of_groups}): the share affected could exceed 100%",
                    s.subscribers
                ),
            );
        }
    }

    for (i, m) in file.maintenances.iter().enumerate() {
        let path = format!("maintenances[{i}]");
        if m.ends_at <= m.starts_at {
            issues.push(format!("{path}.ends_at"), "must be after starts_at");
        }
        if m.services.is_empty() {
            issues.push(format!("{path}.services"), "must name at least one service");
        }
        let mut services = Vec::new();
        for (j, sid) in m.services.iter().enumerate() {
            match topo.service_index(sid) {
                Some(s) => services.push(s),
                None => issues.push(
                    format!("{path}.services[{j}]"),
                    format!("unknown service `{sid}`"),
                ),
            }
        }
        topo.maintenances.push(Maintenance {
            services,
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            summary: m.summary.clone(),
        });
    }
    // Built by pushing: give back the growth slack (up to half of a large topology).
    topo.targets.shrink_to_fit();
    topo.groups.shrink_to_fit();
    // Lookups while building indexed lists still growing: index the finished ones, now
    // rather than at the first incident.
    topo.ids = Ids::default();
    topo.index();
    topo
}

/// Resolves every `depends_on` to groups (first) or targets, reporting unknown ids, a
/// group or target depending on itself (or on a group it is in, or a target of its own),
/// and cycles, each under its key path.
fn resolve_dependencies(
    topo: &mut Topology,
    depends_on: &[DependsOn<'_>],
    group_ids: &HashMap<&str, usize>,
    target_ids: &HashMap<String, usize>,
    issues: &mut Issues,
) {
    let resolve =
        |topo: &Topology, own: Dependency, path: Written, ids: &[String], issues: &mut Issues| {
            let mut out = Vec::new();
            for (j, id) in ids.iter().enumerate() {
                let at = format!("{path}.depends_on[{j}]");
                let found = topo
                    .group_index(id)
                    .map(Dependency::Group)
                    .or_else(|| topo.target_index(id).map(Dependency::Target));
                let Some(d) = found else {
                    // Declared, but not built: its own problem is reported.
                    if !group_ids.contains_key(id.as_str()) && !target_ids.contains_key(id.as_str())
                    {
                        issues.push(at, format!("unknown group or target `{id}`"));
                    }
                    continue;
                };
                let itself = match (own, d) {
                    _ if own == d => Some("depends on itself".to_string()),
                    (Dependency::Target(t), Dependency::Group(g))
                        if topo.targets[t].groups.contains(&g) =>
                    {
                        Some(format!("depends on itself: it is a target of group `{id}`"))
                    }
                    (Dependency::Group(g), Dependency::Target(t))
                        if topo.groups[g].targets.contains(&t) =>
                    {
                        Some(format!("depends on itself: `{id}` is one of its targets"))
                    }
                    _ => None,
                };
                if let Some(message) = itself {
                    issues.push(at, message);
                } else if out.contains(&d) {
                    issues.push(at, format!("`{id}` listed twice"));
                } else {
                    out.push(d);
                }
            }
            out
        };
    for d in depends_on {
        let deps = resolve(topo, d.node, d.at, &d.ids, issues);
        match d.node {
            Dependency::Group(g) => topo.groups[g].depends_on = deps,
            Dependency::Target(t) => topo.targets[t].depends_on = deps,
        }
    }
    for mut cycle in dependency_cycles(topo) {
        // Reported where it is written: at a node whose `depends_on` holds its next one (a
        // group leads to its targets too, which it does not list).
        let listed = |i: usize| {
            let next = cycle[(i + 1) % cycle.len()];
            match cycle[i] {
                Dependency::Group(g) => topo.groups[g].depends_on.contains(&next),
                Dependency::Target(_) => true,
            }
        };
        let first = (0..cycle.len()).find(|&i| listed(i)).unwrap_or(0);
        cycle.rotate_left(first);
        let path = depends_on
            .iter()
            .find(|d| d.node == cycle[0])
            .map(|d| d.at)
            .expect("a cycle starts at a node whose depends_on lists the next");
        let names: Vec<String> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&d| format!("`{}`", topo.dependency_id(d)))
            .collect();
        issues.push(
            format!("{path}.depends_on"),
            format!("dependency cycle: {}", names.join(" → ")),
        );
    }
}

/// The cycles of the dependency graph, each once: a group leads to what it depends on and
/// to its targets (its failure is theirs), a target to what it depends on.
fn dependency_cycles(topo: &Topology) -> Vec<Vec<Dependency>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let node = |d: Dependency| match d {
        Dependency::Group(g) => g,
        Dependency::Target(t) => topo.groups.len() + t,
    };
    let next = |d: Dependency| -> Vec<Dependency> {
        match d {
            Dependency::Group(g) => {
                let group = &topo.groups[g];
                let members = group.targets.iter().map(|&t| Dependency::Target(t));
                group.depends_on.iter().copied().chain(members).collect()
            }
            Dependency::Target(t) => topo.targets[t].depends_on.clone(),
        }
    };
    let mut marks = vec![Mark::New; topo.groups.len() + topo.targets.len()];
    let mut cycles = Vec::new();
    let starts = (0..topo.groups.len())
        .map(Dependency::Group)
        .chain((0..topo.targets.len()).map(Dependency::Target));
    for start in starts {
        if marks[node(start)] != Mark::New {
            continue;
        }
        // Iterative depth-first search: the path, and each node's successors left.
        let mut path: Vec<(Dependency, Vec<Dependency>)> = vec![(start, next(start))];
        marks[node(start)] = Mark::OnPath;
        while let Some((d, left)) = path.last_mut() {
            let d = *d;
            let Some(n) = left.pop() else {
                marks[node(d)] = Mark::Done;
                path.pop();
                continue;
            };
            match marks[node(n)] {
                Mark::New => {
                    marks[node(n)] = Mark::OnPath;
                    path.push((n, next(n)));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|(p, _)| *p == n).expect("on the path");
                    cycles.push(path[from..].iter().map(|(p, _)| *p).collect());
                }
                Mark::Done => {}
            }
        }
    }
    cycles
}

fn check_defaults(d: &DefaultsConfig, issues: &mut Issues) {
    let timing = Timing {
        interval: d.interval,
        timeout: d.timeout,
        failure_threshold: d.failure_threshold,
        success_threshold: d.success_threshold,
    };
    check_timing("defaults", &timing, |_| true, issues);
    if d.resolve_after.is_zero() {
        issues.push("defaults.resolve_after", "must be greater than zero");
    }
    if d.degraded_latency.is_zero() {
        issues.push("defaults.degraded_latency", "must be greater than zero");
    }
}

/// Effective timing of `[defaults]` or of one target.
struct Timing {
    interval: std::time::Duration,
    timeout: std::time::Duration,
    failure_threshold: u32,
    success_threshold: u32,
}

/// Checks `timing`, reporting only problems that involve a key `own` says is set at `path`
/// (a value a target merely inherits is reported once, under `defaults`).
fn check_timing(path: &str, timing: &Timing, own: impl Fn(&str) -> bool, issues: &mut Issues) {
    let Timing {
        interval,
        timeout,
        failure_threshold,
        success_threshold,
    } = *timing;
    if interval.is_zero() && own("interval") {
        issues.push(format!("{path}.interval"), "must be greater than zero");
    }
    if timeout.is_zero() {
        if own("timeout") {
            issues.push(format!("{path}.timeout"), "must be greater than zero");
        }
    } else if timeout >= interval && !interval.is_zero() && (own("timeout") || own("interval")) {
        issues.push(
            format!("{path}.timeout"),
            format!(
                "{} must be shorter than the interval ({})",
                human(timeout),
                human(interval)
            ),
        );
    }
    if failure_threshold < 1 && own("failure_threshold") {
        issues.push(format!("{path}.failure_threshold"), "must be at least 1");
    }
    if success_threshold < 1 && own("success_threshold") {
        issues.push(format!("{path}.success_threshold"), "must be at least 1");
    }
}

/// Records `id`, at index `i` of `table` (`targets`), reporting a duplicate.
fn unique<K: Borrow<str> + Eq + Hash>(
    seen: &mut HashMap<K, usize>,
    id: K,
    table: &str,
    i: usize,
    issues: &mut Issues,
) {
    let text = id.borrow();
    if text.trim().is_empty() {
        issues.push(format!("{table}[{i}].id"), "must not be empty");
    } else if let Some(first) = seen.get(text) {
        issues.push(
            format!("{table}[{i}].id"),
            format!("duplicate id `{text}` (first at {table}[{first}])"),
        );
    } else {
        seen.insert(id, i);
    }
}

/// `items` in order, the list's memory given back as it empties: taken from the back of
/// the list reversed, which moves to a list of its size each time it is down to three
/// quarters (a new list: `shrink_to_fit` may keep a block shrunk by less than half).
fn give_back<T>(mut items: Vec<T>) -> impl Iterator<Item = T> {
    items.reverse();
    std::iter::from_fn(move || {
        let item = items.pop()?;
        if items.len() < items.capacity() / 4 * 3 {
            let mut fitted = Vec::with_capacity(items.len());
            fitted.append(&mut items);
            items = fitted;
        }
        Some(item)
    })
}

fn labels(topo: &Topology, groups: &[usize]) -> TargetLabels {
    let join = |values: Vec<&str>| {
        let mut v: Vec<&str> = values.into_iter().filter(|s| !s.is_empty()).collect();
        v.sort_unstable();
        v.dedup();
        v.join(",")
    };
    TargetLabels {
        service: join(
            groups
                .iter()
                .map(|&g| topo.services[topo.groups[g].service].id.as_str())
                .collect(),
        ),
        region: join(
            groups
                .iter()
                .filter_map(|&g| topo.groups[g].region.as_deref())
                .collect(),
        ),
        platform: join(
            groups
                .iter()
                .filter_map(|&g| topo.groups[g].platform.as_deref())
                .collect(),
        ),
    }
}
