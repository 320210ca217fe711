//! Regulatory reporting rules (SPEC §6.6): `fcc_nors`, `eu_enisa`, `ofcom` and the
//! `[[reporting.custom]]` rules of the configuration.
//!
//! Pure. Each rule set is evaluated per service on that service's step function of
//! affected subscribers over time (the same one the figures of SPEC §6.3 come from), and
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
use crate::config::Issues;
use crate::topology::ServiceClass;

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
    #[serde(untagged)]
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
pub struct ReportingSettings {
    pub rule_sets: Vec<RuleSet>,
}

impl Default for ReportingSettings {
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
    /// Validates into [`ReportingSettings`], recording every problem under `path`.
    pub fn build(&self, path: &str, issues: &mut Issues) -> Option<ReportingSettings> {
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
        (issues.len() == before).then_some(ReportingSettings { rule_sets })
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
/// `reporting` of the incident JSON (SPEC §6.8).
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
                        && super::ratio(s.peak, subscribers) < share
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
    /// Since the service's first affected instant, gaps included (SPEC §6.3 duration).
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
mod tests {
    //! The rule sets on hand-made step functions, at and around every threshold.

    use super::*;

    /// `"14:00:30"` → 2026-07-05T14:00:30Z; `"+1 02:00:00"` is the next day.
    fn t(hms: &str) -> Timestamp {
        match hms.strip_prefix("+1 ") {
            Some(rest) => format!("2026-07-06T{rest}Z"),
            None => format!("2026-07-05T{hms}Z"),
        }
        .parse()
        .expect("valid time")
    }

    fn after(at: &str, secs: i64) -> Timestamp {
        t(at) + chrono::Duration::seconds(secs)
    }

    const H: i64 = 3600;
    const M: i64 = 60;

    /// One service of `subscribers`, down `level` from 14:00 for `secs`.
    fn one(level: u64, secs: i64) -> Vec<Step> {
        vec![(t("14:00:00"), after("14:00:00", secs), level)]
    }

    fn series<'a>(steps: &'a [Step], class: ServiceClass, subscribers: u64) -> ServiceSeries<'a> {
        ServiceSeries {
            id: "svc",
            class,
            subscribers,
            down: steps,
            impaired: steps,
        }
    }

    fn eval(rule: &RuleSet, steps: &[Step], subscribers: u64) -> RuleOutcome {
        rule.evaluate(&[series(steps, ServiceClass::Telephony, subscribers)])
    }

    fn custom(
        min_duration: Option<i64>,
        min_share: Option<f64>,
        min_affected: Option<u64>,
        min_user_hours: Option<f64>,
    ) -> RuleSet {
        RuleSet::Custom(CustomRule {
            name: "internal".to_string(),
            min_duration: min_duration.map(|s| Duration::from_secs(s as u64)),
            min_share,
            min_affected,
            min_user_hours,
            notify_within: Some(Duration::from_secs(H as u64)),
        })
    }

    #[test]
    fn fcc_nors_thresholds() {
        // (affected, seconds down, met_at as seconds after 14:00)
        let cases: &[(u64, i64, Option<i64>)] = &[
            // 30 000 × 30m = 900 000 user-minutes, at exactly 30 minutes.
            (30_000, 30 * M, Some(30 * M)),
            (30_000, 30 * M - 1, None),
            // 29 999 × 30m = 899 970: long enough, too few user-minutes, until 30m00.06s.
            (29_999, 30 * M, None),
            (29_999, 30 * M + 1, Some(30 * M)),
            // Far more users, still 30 minutes at least.
            (10_000_000, 29 * M + 59, None),
            (10_000_000, 30 * M, Some(30 * M)),
            // Few users: the user-minutes decide. 1 000 × 900m = 900 000.
            (1_000, 900 * M, Some(900 * M)),
            (1_000, 900 * M - 1, None),
        ];
        for &(affected, secs, met) in cases {
            let got = eval(&RuleSet::FccNors, &one(affected, secs), 100_000_000);
            let label = format!("{affected} for {secs}s");
            match met {
                None => assert_eq!(got, RuleSet::FccNors.not_met(), "{label}"),
                Some(at) => {
                    assert_eq!(got.status, RuleStatus::Met, "{label}");
                    assert!(got.met_at.is_some(), "{label}");
                    let met_at = got.met_at.unwrap();
                    // 29 999 reaches 900 000 a fraction of a second after 30m01s.
                    assert!(
                        met_at >= after("14:00:00", at) && met_at < after("14:00:00", at + 1),
                        "{label}: {met_at}"
                    );
                    assert_eq!(got.rule.as_deref(), Some("≥30m and ≥900000 user-minutes"));
                }
            }
        }
    }

    #[test]
    fn fcc_nors_user_minutes_899_999_vs_900_000() {
        // 27 204 × 1 985 s = 899 999 user-minutes exactly (33m05s, long enough).
        let got = eval(&RuleSet::FccNors, &one(27_204, 1_985), 100_000_000);
        assert_eq!(got.status, RuleStatus::NotMet);
        // One second more: 900 000 is reached at 54 000 000 / 27 204 s, to the nanosecond.
        let got = eval(&RuleSet::FccNors, &one(27_204, 1_986), 100_000_000);
        assert_eq!(got.status, RuleStatus::Met);
        let exact = t("14:00:00") + chrono::Duration::nanoseconds(1_985_002_205_559);
        assert_eq!(got.met_at, Some(exact));
        // At met_at the conservative figure is 900 000 (and a nanosecond before, less).
        let secs = (exact - t("14:00:00")).num_nanoseconds().unwrap() as f64 / 1e9;
        assert!(27_204.0 * secs / 60.0 >= 900_000.0);
        assert!(27_204.0 * (secs - 1e-9) / 60.0 < 900_000.0);
    }

    #[test]
    fn fcc_nors_deadlines() {
        let got = eval(&RuleSet::FccNors, &one(40_000, 3 * H), 100_000_000);
        assert_eq!(got.met_at, Some(t("14:30:00")));
        assert_eq!(
            got.notify_by,
            Some(t("16:30:00")),
            "120 minutes after met_at"
        );
        assert_eq!(
            got.initial_report_by,
            Some(t("14:30:00") + chrono::Duration::hours(72))
        );
        assert_eq!(
            got.final_report_by,
            Some(t("14:30:00") + chrono::Duration::days(30))
        );
        assert_eq!(got.critical, None, "ofcom only");
    }

    #[test]
    fn fcc_nors_peak_times_duration_uses_the_peak_so_far() {
        // 1 000 from 14:00, then 100 000 from 14:20: at 14:29 the conservative figure is
        // 100 000 × 29m, but only 30 minutes of duration make it reportable: 14:30.
        let steps = vec![
            (t("14:00:00"), t("14:20:00"), 1_000),
            (t("14:20:00"), t("15:00:00"), 100_000),
        ];
        let got = eval(&RuleSet::FccNors, &steps, 100_000_000);
        assert_eq!(got.met_at, Some(t("14:30:00")));
        // 1 000 for 10 minutes, then 20 000 from 14:10: the peak (20 000) times the
        // duration since 14:00 reaches 900 000 at 45 minutes, 14:45.
        let steps = vec![
            (t("14:00:00"), t("14:10:00"), 1_000),
            (t("14:10:00"), t("15:00:00"), 20_000),
        ];
        let got = eval(&RuleSet::FccNors, &steps, 100_000_000);
        assert_eq!(got.met_at, Some(t("14:45:00")));
    }

    #[test]
    fn eu_enisa_every_row() {
        // 1 000 000 subscribers; each row at its share exactly, just over and just under its
        // duration, and just under its share. User-hours stay far below 1 000 000.
        let n = 1_000_000;
        for (hours, percent) in ENISA_ROWS {
            let level = n * percent / 100;
            let h = hours as i64;
            let rule = format!(">{hours}h at or above {percent}% of subscribers");
            let over = eval(&RuleSet::EuEnisa, &one(level, h * H + M), n);
            assert_eq!(over.status, RuleStatus::Met, "{rule}");
            assert_eq!(over.rule.as_deref(), Some(rule.as_str()));
            assert_eq!(over.met_at, Some(after("14:00:00", h * H)), "{rule}");
            assert_eq!(
                over.notify_by,
                Some(after("14:00:00", h * H + 24 * H)),
                "{rule}"
            );
            // "More than": exactly the duration is not enough.
            for secs in [h * H - M, h * H - 1, h * H] {
                let under = eval(&RuleSet::EuEnisa, &one(level, secs), n);
                assert_eq!(under.status, RuleStatus::NotMet, "{rule}, {secs}s");
            }
            // One subscriber under the share (the next row needs longer).
            let below = eval(&RuleSet::EuEnisa, &one(level - 1, h * H + M), n);
            assert_eq!(below.status, RuleStatus::NotMet, "{rule}, one under");
        }
    }

    #[test]
    fn eu_enisa_five_percent_for_4h01_vs_3h59() {
        let n = 2_000_000;
        let five = one(100_000, 4 * H + M);
        assert_eq!(eval(&RuleSet::EuEnisa, &five, n).status, RuleStatus::Met);
        let short = one(100_000, 3 * H + 59 * M);
        assert_eq!(
            eval(&RuleSet::EuEnisa, &short, n).status,
            RuleStatus::NotMet
        );
    }

    #[test]
    fn eu_enisa_time_above_a_share_is_cumulative() {
        // 5% for 2h, a 3-minute gap (the incident stays open), 5% again for 2h01: 4h01 in
        // all, met 2h into the second stretch. A continuous reading would never meet it.
        let n = 1_000_000;
        let steps = vec![
            (t("14:00:00"), t("16:00:00"), 50_000),
            (t("16:03:00"), t("18:04:00"), 50_000),
        ];
        let got = eval(&RuleSet::EuEnisa, &steps, n);
        assert_eq!(got.status, RuleStatus::Met);
        assert_eq!(got.met_at, Some(t("18:03:00")));
        // Time below the share does not count: 5% for 2h, 1% for 2h01 (the 1% row needs 8h).
        let steps = vec![
            (t("14:00:00"), t("16:00:00"), 50_000),
            (t("16:00:00"), t("18:01:00"), 10_000),
        ];
        assert_eq!(
            eval(&RuleSet::EuEnisa, &steps, n).status,
            RuleStatus::NotMet
        );
        // Time at a higher share counts for a lower one: 15% for 1h, 2% for 5h01 is 6h01
        // at or above 2%.
        let steps = vec![
            (t("14:00:00"), t("15:00:00"), 150_000),
            (t("15:00:00"), t("20:01:00"), 20_000),
        ];
        let got = eval(&RuleSet::EuEnisa, &steps, n);
        assert_eq!(got.met_at, Some(t("20:00:00")));
        assert_eq!(
            got.rule.as_deref(),
            Some(">6h at or above 2% of subscribers")
        );
    }

    #[test]
    fn eu_enisa_one_million_user_hours() {
        // 500 000 of 100 000 000 (0.5%, under every row): 2h is 1 000 000 user-hours.
        let n = 100_000_000;
        let got = eval(&RuleSet::EuEnisa, &one(500_000, 2 * H), n);
        assert_eq!(got.status, RuleStatus::Met);
        assert_eq!(got.met_at, Some(t("16:00:00")));
        assert_eq!(got.rule.as_deref(), Some("≥1000000 user-hours"));
        assert_eq!(
            got.initial_report_by,
            Some(t("+1 16:00:00") + chrono::Duration::hours(48))
        );
        // 999 999.72 user-hours.
        let got = eval(&RuleSet::EuEnisa, &one(500_000, 2 * H - 1), n);
        assert_eq!(got.status, RuleStatus::NotMet);
        // The earliest criterion is the one reported: 15% of 10 000 000 (1 500 000) passes
        // 1 000 000 user-hours at 40 minutes, long before its row's hour.
        let got = eval(&RuleSet::EuEnisa, &one(1_500_000, 2 * H), 10_000_000);
        assert_eq!(got.met_at, Some(t("14:40:00")));
        assert_eq!(got.rule.as_deref(), Some("≥1000000 user-hours"));
    }

    #[test]
    fn ofcom_thresholds_and_critical() {
        let n = 60_000_000;
        let got = eval(&RuleSet::Ofcom, &one(99_999, 24 * H), n);
        assert_eq!(got, RuleSet::Ofcom.not_met());
        assert_eq!(got.critical, Some(false));
        // Any duration: met the instant 100 000 are affected.
        let got = eval(&RuleSet::Ofcom, &one(100_000, 1), n);
        assert_eq!(got.status, RuleStatus::Met);
        assert_eq!(got.met_at, Some(t("14:00:00")));
        assert_eq!(got.rule.as_deref(), Some("≥100000 affected"));
        assert_eq!(got.critical, Some(false));
        assert_eq!(
            got.notify_by,
            Some(t("14:00:00") + chrono::Duration::hours(72))
        );
        // 100 000 reached by a second group joining at 14:10.
        let steps = vec![
            (t("14:00:00"), t("14:10:00"), 60_000),
            (t("14:10:00"), t("14:20:00"), 100_000),
        ];
        assert_eq!(eval(&RuleSet::Ofcom, &steps, n).met_at, Some(t("14:10:00")));
        // Critical at 3 000 000 user-hours: 1 000 000 affected for 3h; not at 2h59m59s.
        let got = eval(&RuleSet::Ofcom, &one(1_000_000, 3 * H), n);
        assert_eq!(got.critical, Some(true));
        assert_eq!(got.critical_at, Some(t("17:00:00")));
        assert_eq!(got.notify_by, Some(t("20:00:00")), "critical: 3 hours");
        let got = eval(&RuleSet::Ofcom, &one(1_000_000, 3 * H - 1), n);
        assert_eq!((got.status, got.critical), (RuleStatus::Met, Some(false)));
    }

    #[test]
    fn feature_services_and_degradation_need_review() {
        let n = 10_000_000;
        let down = one(1_000_000, H);
        let none: Vec<Step> = Vec::new();
        // (class, down, impaired, status, review)
        type Row<'a> = (
            ServiceClass,
            &'a [Step],
            &'a [Step],
            RuleStatus,
            Option<&'a str>,
        );
        let cases: &[Row] = &[
            (ServiceClass::Telephony, &down, &down, RuleStatus::Met, None),
            (ServiceClass::Internet, &down, &down, RuleStatus::Met, None),
            (
                ServiceClass::Feature,
                &down,
                &down,
                RuleStatus::MetNeedsReview,
                Some("svc is a feature service"),
            ),
            // Only degradation: nobody down, 1 000 000 degraded.
            (
                ServiceClass::Telephony,
                &none,
                &down,
                RuleStatus::MetNeedsReview,
                Some("met only counting degraded subscribers"),
            ),
        ];
        for rule in [RuleSet::FccNors, RuleSet::EuEnisa, RuleSet::Ofcom] {
            for (class, down, impaired, status, review) in cases {
                let s = ServiceSeries {
                    id: "svc",
                    class: *class,
                    subscribers: n,
                    down,
                    impaired,
                };
                let got = rule.evaluate(&[s]);
                let label = format!("{} {class:?} {}", rule.name(), down.len());
                assert_eq!(got.status, *status, "{label}");
                assert_eq!(got.review.as_deref(), *review, "{label}");
            }
        }
        // Down and degraded together cross the line where the down alone do not: 60 000
        // down and 40 000 degraded is 100 000 impaired, for ofcom.
        let down = one(60_000, H);
        let impaired = one(100_000, H);
        let s = ServiceSeries {
            id: "svc",
            class: ServiceClass::Telephony,
            subscribers: n,
            down: &down,
            impaired: &impaired,
        };
        let got = RuleSet::Ofcom.evaluate(&[s]);
        assert_eq!(got.status, RuleStatus::MetNeedsReview);
    }

    #[test]
    fn the_incident_takes_the_strongest_then_earliest_service() {
        let early = one(200_000, H);
        let late = vec![(t("14:20:00"), t("15:00:00"), 200_000)];
        let later = vec![(t("14:40:00"), t("15:00:00"), 200_000)];
        let svc = |id, class, steps| ServiceSeries {
            id,
            class,
            subscribers: 10_000_000,
            down: steps,
            impaired: steps,
        };
        // A feature service met first, telephony later: met, from the telephony service.
        let got = RuleSet::Ofcom.evaluate(&[
            svc("voicemail", ServiceClass::Feature, &early),
            svc("voice", ServiceClass::Telephony, &later),
            svc("data", ServiceClass::Internet, &late),
        ]);
        assert_eq!(got.status, RuleStatus::Met);
        assert_eq!(got.service.as_deref(), Some("data"));
        assert_eq!(got.met_at, Some(t("14:20:00")));
        // Only feature services: needs review, the earliest.
        let got = RuleSet::Ofcom.evaluate(&[
            svc("voicemail", ServiceClass::Feature, &late),
            svc("portal", ServiceClass::Feature, &early),
        ]);
        assert_eq!(got.status, RuleStatus::MetNeedsReview);
        assert_eq!(got.service.as_deref(), Some("portal"));
        // Critical on another service than the one first met: still critical.
        let big = one(2_000_000, 2 * H);
        let got = RuleSet::Ofcom.evaluate(&[
            svc("data", ServiceClass::Internet, &early),
            svc("voice", ServiceClass::Telephony, &big),
        ]);
        assert_eq!(got.service.as_deref(), Some("data"));
        assert_eq!(
            got.critical_at,
            Some(t("15:30:00")),
            "voice: 2 000 000 × 1h30"
        );
        assert_eq!(got.critical, Some(true));
        // No service at all, or nobody affected.
        assert_eq!(RuleSet::FccNors.evaluate(&[]), RuleSet::FccNors.not_met());
        let empty: Vec<Step> = Vec::new();
        let got = RuleSet::FccNors.evaluate(&[svc("x", ServiceClass::Telephony, &empty)]);
        assert_eq!(got.status, RuleStatus::NotMet);
    }

    #[test]
    fn custom_rules_need_every_criterion_given() {
        // 1 000 000 subscribers. Rule: ≥1h, ≥2%, ≥10 000 affected, ≥15 000 user-hours.
        let rule = custom(Some(H), Some(0.02), Some(10_000), Some(15_000.0));
        let n = 1_000_000;
        // (steps, met_at as seconds after 14:00)
        let cases: Vec<(Vec<Step>, Option<i64>)> = vec![
            // 20 000 (2%): 1h gives 20 000 user-hours ≥ 15 000, so the duration decides.
            (one(20_000, 2 * H), Some(H)),
            (one(20_000, H - 1), None),
            // 19 999 is under 2% however long.
            (one(19_999, 10 * H), None),
            // 30 000 for 1h: 30 000 user-hours; duration decides.
            (one(30_000, H), Some(H)),
            // 10 000 affected is 1%: the share is missing.
            (one(10_000, 10 * H), None),
            // 20 000 for 20m then 1 000 for long: peak share 2% from 14:00, user-hours
            // 6 666.67 + 1 000 per hour: 15 000 at 14:20 + 8h20m = 22:40.
            (
                vec![
                    (t("14:00:00"), t("14:20:00"), 20_000),
                    (t("14:20:00"), t("+1 02:00:00"), 1_000),
                ],
                Some(8 * H + 40 * M),
            ),
        ];
        for (steps, met) in cases {
            let got = eval(&rule, &steps, n);
            let label = format!("{steps:?}");
            assert_eq!(got.met_at, met.map(|s| after("14:00:00", s)), "{label}");
            if met.is_some() {
                assert_eq!(got.status, RuleStatus::Met, "{label}");
                assert_eq!(
                    got.rule.as_deref(),
                    Some("≥1h and ≥2% of subscribers and ≥10000 affected and ≥15000 user-hours")
                );
                assert_eq!(
                    got.notify_by,
                    got.met_at.map(|m| m + chrono::Duration::hours(1)),
                    "notify_within"
                );
                assert_eq!(got.initial_report_by, None);
            }
        }
        // One criterion alone.
        let affected = custom(None, None, Some(5_000), None);
        assert_eq!(
            eval(&affected, &one(5_000, 1), n).met_at,
            Some(t("14:00:00"))
        );
        assert_eq!(
            eval(&affected, &one(4_999, H), n).status,
            RuleStatus::NotMet
        );
        let share = custom(None, Some(0.07), None, None);
        assert_eq!(eval(&share, &one(70_000, 1), n).status, RuleStatus::Met);
        assert_eq!(eval(&share, &one(69_999, H), n).status, RuleStatus::NotMet);
        let duration = custom(Some(15 * M), None, None, None);
        assert_eq!(
            eval(&duration, &one(1, 15 * M), n).met_at,
            Some(t("14:15:00"))
        );
        let hours = custom(None, None, None, Some(0.5));
        assert_eq!(eval(&hours, &one(1, 30 * M), n).met_at, Some(t("14:30:00")));
        assert_eq!(
            eval(&hours, &one(1, 30 * M - 1), n).status,
            RuleStatus::NotMet
        );
        // Without notify_within there is no deadline.
        let RuleSet::Custom(mut c) = duration else {
            unreachable!()
        };
        c.notify_within = None;
        let got = eval(&RuleSet::Custom(c), &one(1, H), n);
        assert_eq!((got.status, got.notify_by), (RuleStatus::Met, None));
    }

    #[test]
    fn duration_counts_gaps_like_the_incident_does() {
        // Down 14:00–14:10, back, down 14:20–14:40: 30 minutes of duration at 14:30, as
        // SPEC §6.3 measures an incident (onset to impact end).
        let steps = vec![
            (t("14:00:00"), t("14:10:00"), 100_000),
            (t("14:20:00"), t("14:40:00"), 100_000),
        ];
        let got = eval(&RuleSet::FccNors, &steps, 10_000_000);
        assert_eq!(got.met_at, Some(t("14:30:00")));
        // A rule cannot become true in a gap, where nothing grows: ≥15m holds from the
        // start of the second stretch, 14:20 (duration 20m then), not at 14:15.
        let rule = custom(Some(15 * M), None, None, None);
        let got = eval(&rule, &steps, 10_000_000);
        assert_eq!(got.met_at, Some(t("14:20:00")));
    }

    #[test]
    fn reach_is_exact() {
        // (q, slope, c, strict, len, expected)
        type Row = (i128, i128, i128, bool, i128, Option<i128>);
        let cases: &[Row] = &[
            (0, 1, 10, false, 20, Some(10)),
            (0, 1, 10, true, 20, Some(10)),
            (0, 1, 10, false, 10, Some(10)),
            // Strict: at the end of the span it only equals the threshold.
            (0, 1, 10, true, 10, None),
            (10, 1, 10, true, 5, Some(0)),
            (10, 0, 10, true, 5, None),
            (10, 0, 10, false, 5, Some(0)),
            (11, 0, 10, true, 5, Some(0)),
            (0, 3, 10, false, 4, Some(4)),
            (0, 3, 10, true, 4, Some(4)),
            (0, 3, 10, false, 3, None),
            (0, 0, 10, false, 100, None),
        ];
        for &(q, slope, c, strict, len, expected) in cases {
            assert_eq!(
                reach(q, slope, c, strict, len),
                expected,
                "{q} {slope} {c} {strict} {len}"
            );
        }
    }

    // === Configuration ===

    /// `[reporting]` read the way the daemon reads it, then validated.
    fn build(toml: &str) -> Result<ReportingSettings, Vec<String>> {
        let file = crate::config::read(&crate::config::ConfigSource::Inline(toml.to_string()))
            .expect("loads");
        let mut issues = Issues::default();
        file.reporting
            .build("reporting", &mut issues)
            .ok_or_else(|| issues.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn default_is_every_built_in_rule_set() {
        assert_eq!(build("[reporting]").unwrap(), ReportingSettings::default());
        let mut issues = Issues::default();
        let built = ReportingConfig::default().build("reporting", &mut issues);
        assert_eq!(built, Some(ReportingSettings::default()));
        assert_eq!(
            ReportingSettings::default()
                .rule_sets
                .iter()
                .map(RuleSet::name)
                .collect::<Vec<_>>(),
            BUILT_IN
        );
    }

    #[test]
    fn rules_and_custom_rules_build_in_order() {
        let got = build(
            r#"
[reporting]
rules = ["ofcom", "fcc_nors"]
[[reporting.custom]]
name = "internal"
min_duration = "2h"
min_share = 0.05
min_affected = 10000
min_user_hours = 50000
notify_within = "4h"
"#,
        )
        .unwrap();
        let names: Vec<&str> = got.rule_sets.iter().map(RuleSet::name).collect();
        assert_eq!(names, ["ofcom", "fcc_nors", "internal"]);
        let RuleSet::Custom(c) = &got.rule_sets[2] else {
            panic!("custom")
        };
        assert_eq!(c.min_duration, Some(Duration::from_secs(2 * 3600)));
        assert_eq!(c.notify_within, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(
            c.describe(),
            "≥2h and ≥5% of subscribers and ≥10000 affected and ≥50000 user-hours"
        );
        // The environment form: one comma-separated string; empty means none.
        let got = build("[reporting]\nrules = \"eu_enisa, ofcom\"").unwrap();
        assert_eq!(got.rule_sets, [RuleSet::EuEnisa, RuleSet::Ofcom]);
        assert!(
            build("[reporting]\nrules = []")
                .unwrap()
                .rule_sets
                .is_empty()
        );
        assert!(
            build("[reporting]\nrules = \"\"")
                .unwrap()
                .rule_sets
                .is_empty()
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let errors = build(
            r#"
[reporting]
rules = ["fcc_nors", "nors", "fcc_nors"]
[[reporting.custom]]
name = "ofcom"
min_share = 1.5
[[reporting.custom]]
name = ""
[[reporting.custom]]
name = "a"
min_duration = "0s"
min_share = 0.0
min_affected = 0
min_user_hours = -1.0
notify_within = "0s"
[[reporting.custom]]
name = "a"
min_affected = 1
"#,
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "reporting.rules[1]: unknown rule set `nors` (known: fcc_nors, eu_enisa, ofcom; define others under [[reporting.custom]])",
                "reporting.rules[2]: `fcc_nors` listed twice (first at reporting.rules[0])",
                "reporting.custom[0].name: `ofcom` is a built-in rule set; choose another name",
                "reporting.custom[0].min_share: must be between 0 and 1 (greater than 0, at most 1)",
                "reporting.custom[1].name: must not be empty",
                "reporting.custom[1]: set at least one of min_duration, min_share, min_affected, min_user_hours",
                "reporting.custom[2].min_duration: must be greater than zero",
                "reporting.custom[2].min_share: must be between 0 and 1 (greater than 0, at most 1)",
                "reporting.custom[2].min_affected: must be at least 1",
                "reporting.custom[2].min_user_hours: must be greater than zero",
                "reporting.custom[2].notify_within: must be greater than zero",
                "reporting.custom[3].name: duplicate name `a` (first at reporting.custom[2])",
            ]
        );
    }

    #[test]
    fn outcomes_serialize_as_in_the_spec() {
        let got = eval(&RuleSet::FccNors, &one(900_000, H), 30_000_000);
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "status": "met", "rule": "≥30m and ≥900000 user-minutes", "service": "svc",
                "met_at": "2026-07-05T14:30:00Z", "notify_by": "2026-07-05T16:30:00Z",
                "initial_report_by": "2026-07-08T14:30:00Z",
                "final_report_by": "2026-08-04T14:30:00Z"
            })
        );
        let v = serde_json::to_value(RuleSet::Ofcom.not_met()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "status": "not_met", "rule": null, "service": null, "met_at": null,
                "notify_by": null, "critical": false
            })
        );
        let back: RuleOutcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, RuleSet::Ofcom.not_met());
    }
}
