//! Regulatory reporting rules: `fcc_nors`, `eu_enisa`, `ofcom` and the
//! `[[reporting.custom]]` rules of the configuration.
//!
//! Pure. Each rule set is evaluated per service on that service's step function of
//! affected subscribers over time (the same one the figures come from), and
//! `met_at` is the simulated instant the rule became true on that function — not the time
//! the engine happened to look — so that replay and post-mortems give the exact time and
//! the deadlines that follow from it. The incident keeps the strongest result per rule set
//! (see `Incident::assess_reporting` in the parent module); once met, a rule set stays met.
//!
//! docs/incident-model.md explains every threshold, deadline and choice made here.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::clock::Timestamp;
use crate::topology::ServiceClass;
use crate::validation::Issues;

// === Configuration ===

/// The built-in rule sets, by their configuration and JSON name.
pub const FCC_NORS: &str = "fcc_nors";
pub const EU_ENISA: &str = "eu_enisa";
pub const OFCOM: &str = "ofcom";
pub const BUILT_IN: [&str; 3] = [FCC_NORS, EU_ENISA, OFCOM];

/// `[reporting]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingConfig {
    /// Built-in rule sets to evaluate. Default: all of them. Also accepted as one
    /// comma-separated string, so that `TOCSIN__REPORTING__RULES=fcc_nors,ofcom` works.
    #[serde(default = "default_rules", deserialize_with = "list_or_string")]
    pub rules: Vec<String>,
    /// `[[reporting.custom]]`.
    #[serde(default)]
    pub custom: Vec<CustomRuleConfig>,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        Self {
            rules: default_rules(),
            custom: Vec::new(),
        }
    }
}

fn default_rules() -> Vec<String> {
    BUILT_IN.iter().map(|s| s.to_string()).collect()
}

fn list_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "expected an array of rule set names, or one string of them separated by commas"
    )]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(v) => v,
        ListOrString::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// One `[[reporting.custom]]` rule: every criterion given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleConfig {
    /// The rule set's name in `reporting` of the incident JSON.
    pub name: String,
    /// The service's outage lasted at least this long.
    #[serde(default, with = "humantime_serde")]
    pub min_duration: Option<Duration>,
    /// Peak share of the service's subscribers affected, in (0, 1].
    #[serde(default)]
    pub min_share: Option<f64>,
    /// Peak subscribers affected.
    #[serde(default)]
    pub min_affected: Option<u64>,
    /// Integrated user-hours (∫ affected dt).
    #[serde(default)]
    pub min_user_hours: Option<f64>,
    /// Notification deadline after the rule is met; without it `notify_by` is null.
    #[serde(default, with = "humantime_serde")]
    pub notify_within: Option<Duration>,
}

/// The validated `[reporting]`: the rule sets to evaluate, in configuration order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportingSpec {
    pub rule_sets: Vec<RuleSet>,
}

impl Default for ReportingSpec {
    /// Every built-in rule set, no custom rule.
    fn default() -> Self {
        Self {
            rule_sets: vec![RuleSet::FccNors, RuleSet::EuEnisa, RuleSet::Ofcom],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleSet {
    FccNors,
    EuEnisa,
    Ofcom,
    Custom(CustomRule),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomRule {
    pub name: String,
    pub min_duration: Option<Duration>,
    pub min_share: Option<f64>,
    pub min_affected: Option<u64>,
    pub min_user_hours: Option<f64>,
    pub notify_within: Option<Duration>,
}

impl ReportingConfig {
    /// Validates into [`ReportingSpec`], recording every problem under `path`.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ReportingSpec> {
        let before = issues.len();
        let mut rule_sets = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, name) in self.rules.iter().enumerate() {
            let key = format!("{path}.rules[{i}]");
            if let Some(first) = seen.insert(name.as_str(), i) {
                issues.push(
                    key,
                    format!("`{name}` listed twice (first at {path}.rules[{first}])"),
                );
                continue;
            }
            match name.as_str() {
                FCC_NORS => rule_sets.push(RuleSet::FccNors),
                EU_ENISA => rule_sets.push(RuleSet::EuEnisa),
                OFCOM => rule_sets.push(RuleSet::Ofcom),
                _ => issues.push(
                    key,
                    format!(
                        "unknown rule set `{name}` (known: {}; define others under [[reporting.custom]])",
                        BUILT_IN.join(", ")
                    ),
                ),
            }
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in self.custom.iter().enumerate() {
            let at = format!("{path}.custom[{i}]");
            if c.name.trim().is_empty() {
                issues.push(format!("{at}.name"), "must not be empty");
            } else if BUILT_IN.contains(&c.name.as_str()) {
                issues.push(
                    format!("{at}.name"),
                    format!("`{}` is a built-in rule set; choose another name", c.name),
                );
            } else if let Some(first) = names.insert(c.name.as_str(), i) {
                issues.push(
                    format!("{at}.name"),
                    format!(
                        "duplicate name `{}` (first at {path}.custom[{first}])",
                        c.name
                    ),
                );
            }
            if c.min_duration.is_none()
                && c.min_share.is_none()
                && c.min_affected.is_none()
                && c.min_user_hours.is_none()
            {
                issues.push(
                    at.clone(),
                    "set at least one of min_duration, min_share, min_affected, min_user_hours",
                );
            }
            if c.min_duration.is_some_and(|d| d.is_zero()) {
                issues.push(format!("{at}.min_duration"), "must be greater than zero");
            }
            if c.min_share.is_some_and(|s| !(s > 0.0 && s <= 1.0)) {
                issues.push(
                    format!("{at}.min_share"),
                    "must be between 0 and 1 (greater than 0, at most 1)",
                );
            }
            if c.min_affected == Some(0) {
                issues.push(format!("{at}.min_affected"), "must be at least 1");
            }
            if c.min_user_hours
                .is_some_and(|h| !(h > 0.0 && h.is_finite()))
            {
                issues.push(format!("{at}.min_user_hours"), "must be greater than zero");
            }
            if c.notify_within.is_some_and(|d| d.is_zero()) {
                issues.push(format!("{at}.notify_within"), "must be greater than zero");
            }
            rule_sets.push(RuleSet::Custom(CustomRule {
                name: c.name.clone(),
                min_duration: c.min_duration,
                min_share: c.min_share,
                min_affected: c.min_affected,
                min_user_hours: c.min_user_hours,
                notify_within: c.notify_within,
            }));
        }
        (issues.len() == before).then_some(ReportingSpec { rule_sets })
    }
}

// === Thresholds and deadlines ===

const MINUTE: i128 = 60 * 1_000_000_000;
const HOUR: i128 = 60 * MINUTE;

/// 47 CFR §4.9: an outage of at least 30 minutes …
pub const FCC_MIN_DURATION: Duration = Duration::from_secs(30 * 60);
/// … that potentially affects at least 900 000 user minutes (§4.7(e): duration × end
/// users potentially affected, i.e. `conservative_user_minutes`).
pub const FCC_MIN_USER_MINUTES: u64 = 900_000;
/// §4.9: notification within 120 minutes of discovering a reportable outage …
pub const FCC_NOTIFY_WITHIN: Duration = Duration::from_secs(120 * 60);
/// … the initial communications outage report within 72 hours …
pub const FCC_INITIAL_REPORT_WITHIN: Duration = Duration::from_secs(72 * 3600);
/// … and the final report within 30 days.
pub const FCC_FINAL_REPORT_WITHIN: Duration = Duration::from_secs(30 * 86400);

/// ENISA Article 13a thresholds: more than `hours` with at least `percent` % of the
/// service's subscribers affected.
pub const ENISA_ROWS: [(u64, u64); 5] = [(1, 15), (2, 10), (4, 5), (6, 2), (8, 1)];
/// … or 1 000 000 user hours, whatever the share (guideline v2.1 onwards).
pub const ENISA_USER_HOURS: u64 = 1_000_000;
/// NIS2 Art. 23(4) (which replaced EECC Art. 40 reporting for telecom providers):
/// early warning within 24 h, incident notification within 72 h, final report one month
/// after the notification.
pub const ENISA_NOTIFY_WITHIN: Duration = Duration::from_secs(24 * 3600);
pub const ENISA_INITIAL_REPORT_WITHIN: Duration = Duration::from_secs(72 * 3600);
pub const ENISA_FINAL_REPORT_WITHIN: Duration = Duration::from_secs((72 + 30 * 24) * 3600);

/// Ofcom: 100 000 end customers affected, for any duration …
pub const OFCOM_MIN_AFFECTED: u64 = 100_000;
/// … `critical` from 3 000 000 user hours lost.
pub const OFCOM_CRITICAL_USER_HOURS: u64 = 3_000_000;
/// Critical incidents are reported within 3 hours, others within 72 hours.
pub const OFCOM_CRITICAL_NOTIFY_WITHIN: Duration = Duration::from_secs(3 * 3600);
pub const OFCOM_NOTIFY_WITHIN: Duration = Duration::from_secs(72 * 3600);

// === Outcomes ===

/// Ordered from weakest to strongest, so `max` keeps the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    NotMet,
    /// The thresholds are met, but only for a `feature` service or only counting degraded
    /// subscribers: a person decides whether it is reportable.
    MetNeedsReview,
    Met,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::NotMet => "not_met",
            RuleStatus::MetNeedsReview => "met_needs_review",
            RuleStatus::Met => "met",
        }
    }
}

impl fmt::Display for RuleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule set's result for an incident: stored with the incident and rendered as is in
/// `reporting` of the incident JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub status: RuleStatus,
    /// The rule that fired, in words: `≥30m and ≥900000 user-minutes`.
    pub rule: Option<String>,
    /// The service it fired on.
    pub service: Option<String>,
    /// The instant the rule became true on the service's figures.
    pub met_at: Option<Timestamp>,
    /// The (first) notification deadline.
    pub notify_by: Option<Timestamp>,
    /// Why `met_needs_review` rather than `met`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// Later reports, where the rule set has them (fcc_nors, eu_enisa).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_report_by: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_report_by: Option<Timestamp>,
    /// ofcom only: whether the incident reached the `critical` level, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_at: Option<Timestamp>,
}

impl RuleSet {
    pub fn name(&self) -> &str {
        match self {
            RuleSet::FccNors => FCC_NORS,
            RuleSet::EuEnisa => EU_ENISA,
            RuleSet::Ofcom => OFCOM,
            RuleSet::Custom(c) => &c.name,
        }
    }

    /// The outcome of a rule set that is not met.
    pub fn not_met(&self) -> RuleOutcome {
        RuleOutcome {
            status: RuleStatus::NotMet,
            rule: None,
            service: None,
            met_at: None,
            notify_by: None,
            review: None,
            initial_report_by: None,
            final_report_by: None,
            critical: matches!(self, RuleSet::Ofcom).then_some(false),
            critical_at: None,
        }
    }

    /// Fills in the deadlines that follow from `met_at` (and `critical_at`).
    pub fn with_deadlines(&self, mut o: RuleOutcome) -> RuleOutcome {
        if o.status == RuleStatus::NotMet {
            return self.not_met();
        }
        // A custom `notify_within` may reach past the last timestamp: no deadline then.
        let after = |d: Duration| {
            o.met_at
                .and_then(|m| m.checked_add_signed(chrono_duration(d)))
        };
        let (notify, initial, last) = match self {
            RuleSet::FccNors => (
                after(FCC_NOTIFY_WITHIN),
                after(FCC_INITIAL_REPORT_WITHIN),
                after(FCC_FINAL_REPORT_WITHIN),
            ),
            RuleSet::EuEnisa => (
                after(ENISA_NOTIFY_WITHIN),
                after(ENISA_INITIAL_REPORT_WITHIN),
                after(ENISA_FINAL_REPORT_WITHIN),
            ),
            RuleSet::Ofcom => {
                let critical = o
                    .critical_at
                    .map(|c| c + chrono_duration(OFCOM_CRITICAL_NOTIFY_WITHIN));
                let normal = after(OFCOM_NOTIFY_WITHIN);
                let notify = match (normal, critical) {
                    (Some(n), Some(c)) => Some(n.min(c)),
                    (n, c) => n.or(c),
                };
                (notify, None, None)
            }
            RuleSet::Custom(c) => (c.notify_within.and_then(after), None, None),
        };
        o.notify_by = notify;
        o.initial_report_by = initial;
        o.final_report_by = last;
        if matches!(self, RuleSet::Ofcom) {
            o.critical = Some(o.critical_at.is_some());
        }
        o
    }

    /// The rule set's outcome for an incident: the strongest over its services (then the
    /// earliest), each service's step functions measured to the incident's measure end.
    /// (ofcom) `critical_at` is the earliest among the results of that same status, on
    /// whichever service.
    pub fn evaluate(&self, services: &[ServiceSeries<'_>]) -> RuleOutcome {
        let mut hits: Vec<Hit> = Vec::new();
        for s in services {
            let hard = self.first_met(s.down, s.subscribers);
            hits.extend(hard.map(|(at, rule, critical_at)| {
                let (status, review) = match s.class {
                    ServiceClass::Feature => (
                        RuleStatus::MetNeedsReview,
                        Some(format!("{} is a feature service", s.id)),
                    ),
                    ServiceClass::Telephony | ServiceClass::Internet => (RuleStatus::Met, None),
                };
                Hit {
                    status,
                    at,
                    rule,
                    service: s.id.to_string(),
                    review,
                    critical_at,
                }
            }));
            if s.impaired != s.down {
                let soft = self.first_met(s.impaired, s.subscribers);
                hits.extend(soft.map(|(at, rule, critical_at)| Hit {
                    status: RuleStatus::MetNeedsReview,
                    at,
                    rule,
                    service: s.id.to_string(),
                    review: Some("met only counting degraded subscribers".to_string()),
                    critical_at,
                }));
            }
        }
        let critical_at = |status: RuleStatus| {
            hits.iter()
                .filter(|h| h.status == status)
                .filter_map(|h| h.critical_at)
                .min()
        };
        let Some(best) = hits
            .iter()
            .reduce(|best, hit| if hit.beats(best) { hit } else { best })
        else {
            return self.not_met();
        };
        self.with_deadlines(RuleOutcome {
            status: best.status,
            rule: Some(best.rule.clone()),
            service: Some(best.service.clone()),
            met_at: Some(best.at),
            notify_by: None,
            review: best.review.clone(),
            initial_report_by: None,
            final_report_by: None,
            critical: None,
            critical_at: critical_at(best.status),
        })
    }

    /// On one step function: when the rule first held, the rule in words, and (ofcom)
    /// when the critical level was reached.
    fn first_met(
        &self,
        steps: &[Step],
        subscribers: u64,
    ) -> Option<(Timestamp, String, Option<Timestamp>)> {
        match self {
            RuleSet::FccNors => {
                let duration = nanos(FCC_MIN_DURATION);
                let user_minutes = i128::from(FCC_MIN_USER_MINUTES) * MINUTE;
                scan(steps, subscribers, &[], |s| {
                    let d = reach(s.duration, 1, duration, false, s.len)?;
                    let peak = i128::from(s.peak);
                    let u = reach(peak * s.duration, peak, user_minutes, false, s.len)?;
                    Some(d.max(u))
                })
                .map(|at| (at, fcc_rule(), None))
            }
            RuleSet::EuEnisa => {
                let shares: Vec<(u64, u64)> = ENISA_ROWS.iter().map(|&(_, p)| (p, 100)).collect();
                let user_hours = i128::from(ENISA_USER_HOURS) * HOUR;
                let mut fired = String::new();
                let at = scan(steps, subscribers, &shares, |s| {
                    let rows = ENISA_ROWS.iter().enumerate().filter_map(|(i, &(h, p))| {
                        let slope = i128::from(s.at_or_above[i]);
                        reach(s.above[i], slope, i128::from(h) * HOUR, true, s.len)
                            .map(|t| (t, format!(">{h}h at or above {p}% of subscribers")))
                    });
                    let hours = reach(s.user, i128::from(s.level), user_hours, false, s.len)
                        .map(|t| (t, format!("≥{ENISA_USER_HOURS} user-hours")));
                    // The earliest; on a tie the first row (the order above).
                    let (t, rule) = rows
                        .chain(hours)
                        .reduce(|a, b| if b.0 < a.0 { b } else { a })?;
                    fired = rule;
                    Some(t)
                })?;
                Some((at, fired, None))
            }
            RuleSet::Ofcom => {
                let at = scan(steps, subscribers, &[], |s| {
                    (s.peak >= OFCOM_MIN_AFFECTED).then_some(0)
                })?;
                let critical = i128::from(OFCOM_CRITICAL_USER_HOURS) * HOUR;
                let critical_at = scan(steps, subscribers, &[], |s| {
                    reach(s.user, i128::from(s.level), critical, false, s.len)
                });
                Some((at, format!("≥{OFCOM_MIN_AFFECTED} affected"), critical_at))
            }
            RuleSet::Custom(c) => {
                let user_time = c.min_user_hours.map(|h| (h * HOUR as f64).ceil() as i128);
                scan(steps, subscribers, &[], |s| {
                    let mut t = 0;
                    if let Some(d) = c.min_duration {
                        t = t.max(reach(s.duration, 1, nanos(d), false, s.len)?);
                    }
                    if let Some(share) = c.min_share
                        && super::status::ratio(s.peak, subscribers) < share
                    {
                        return None;
                    }
                    if let Some(n) = c.min_affected
                        && s.peak < n
                    {
                        return None;
                    }
                    if let Some(u) = user_time {
                        t = t.max(reach(s.user, i128::from(s.level), u, false, s.len)?);
                    }
                    Some(t)
                })
                .map(|at| (at, c.describe(), None))
            }
        }
    }
}

fn fcc_rule() -> String {
    format!(
        "≥{} and ≥{FCC_MIN_USER_MINUTES} user-minutes",
        humantime::format_duration(FCC_MIN_DURATION)
    )
}

impl CustomRule {
    /// `≥2h and ≥5% and ≥10000 affected and ≥50000 user-hours`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.min_duration {
            parts.push(format!("≥{}", humantime::format_duration(d)));
        }
        if let Some(s) = self.min_share {
            parts.push(format!("≥{}% of subscribers", percent(s)));
        }
        if let Some(n) = self.min_affected {
            parts.push(format!("≥{n} affected"));
        }
        if let Some(h) = self.min_user_hours {
            parts.push(format!("≥{h} user-hours"));
        }
        parts.join(" and ")
    }
}

/// `0.07` → `7`, `0.005` → `0.5`: a share as a percentage without float noise.
fn percent(share: f64) -> String {
    let text = format!("{:.6}", share * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A candidate result: one rule set, one service, one step function.
struct Hit {
    status: RuleStatus,
    at: Timestamp,
    rule: String,
    service: String,
    review: Option<String>,
    critical_at: Option<Timestamp>,
}

impl Hit {
    /// Stronger status first, then earlier.
    fn beats(&self, other: &Hit) -> bool {
        self.status > other.status || (self.status == other.status && self.at < other.at)
    }
}

// === Evaluation on step functions ===

/// `[from, to)` with the subscribers affected meanwhile; see `super::steps`.
pub type Step = (Timestamp, Timestamp, u64);

/// What a rule set looks at for one service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSeries<'a> {
    pub id: &'a str,
    pub class: ServiceClass,
    pub subscribers: u64,
    /// Subscribers of down groups over time.
    pub down: &'a [Step],
    /// Subscribers of down or degraded groups over time.
    pub impaired: &'a [Step],
}

/// The figures at the start of one span of the step function, and how they grow in it.
/// Times are in nanoseconds, user time in subscriber·nanoseconds: integers, so that a
/// threshold is met exactly where it is, not a rounding error away.
struct Span {
    len: i128,
    level: u64,
    /// The peak so far, this span included (it applies from the span's first instant).
    peak: u64,
    /// Since the service's first affected instant, gaps included (the incident's duration).
    duration: i128,
    /// ∫ affected dt before this span.
    user: i128,
    /// Time spent at or above each tracked share before this span …
    above: Vec<i128>,
    /// … and whether this span counts for it.
    at_or_above: Vec<bool>,
}

/// Walks the spans in time order; `check` answers with the offset into the span at which
/// the rule first holds. Between spans (no one affected) nothing grows, so a rule can only
/// become true inside a span. `shares` are `(numerator, denominator)` fractions of
/// `subscribers` whose time at or above is tracked.
fn scan(
    steps: &[Step],
    subscribers: u64,
    shares: &[(u64, u64)],
    mut check: impl FnMut(&Span) -> Option<i128>,
) -> Option<Timestamp> {
    let first = steps.first()?.0;
    let mut peak = 0;
    let mut user = 0i128;
    let mut above = vec![0i128; shares.len()];
    for &(a, b, level) in steps {
        peak = peak.max(level);
        let span = Span {
            len: nanos_between(a, b),
            level,
            peak,
            duration: nanos_between(first, a),
            user,
            at_or_above: shares
                .iter()
                .map(|&(n, d)| {
                    u128::from(level) * u128::from(d) >= u128::from(n) * u128::from(subscribers)
                })
                .collect(),
            above,
        };
        if let Some(t) = check(&span) {
            return Some(a + chrono::Duration::nanoseconds(t.min(i128::from(i64::MAX)) as i64));
        }
        user += i128::from(level) * span.len;
        above = span.above;
        for (acc, counts) in above.iter_mut().zip(&span.at_or_above) {
            if *counts {
                *acc += span.len;
            }
        }
    }
    None
}

/// The first offset in `[0, len]` at which `q + slope·t` reaches `c` (`≥`), or, when
/// `strict`, the instant from which it exceeds `c` (the infimum of the times where `> c`
/// holds: a rule "more than 4h" is met at 4h sharp, though it holds only just after).
fn reach(q: i128, slope: i128, c: i128, strict: bool, len: i128) -> Option<i128> {
    if q > c || (q >= c && !strict) {
        return Some(0);
    }
    if slope <= 0 {
        return None;
    }
    let need = c - q;
    let t = (need + slope - 1) / slope;
    let exact = need % slope == 0;
    let ok = if strict && exact { t < len } else { t <= len };
    ok.then_some(t)
}

fn nanos(d: Duration) -> i128 {
    d.as_nanos().min(i128::MAX as u128) as i128
}

fn nanos_between(a: Timestamp, b: Timestamp) -> i128 {
    (b - a)
        .num_nanoseconds()
        .map_or(i128::from(i64::MAX), i128::from)
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests;
