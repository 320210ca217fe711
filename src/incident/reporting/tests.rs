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
    // An incident is measured from onset to impact end.
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
fn build(toml: &str) -> Result<ReportingSpec, Vec<String>> {
    let file =
        crate::config::read(&crate::config::ConfigSource::Inline(toml.to_string())).expect("loads");
    let mut issues = Issues::default();
    file.reporting
        .build("reporting", &mut issues)
        .ok_or_else(|| issues.iter().map(ToString::to_string).collect())
}

#[test]
fn default_is_every_built_in_rule_set() {
    assert_eq!(build("[reporting]").unwrap(), ReportingSpec::default());
    let mut issues = Issues::default();
    let built = ReportingConfig::default().build("reporting", &mut issues);
    assert_eq!(built, Some(ReportingSpec::default()));
    assert_eq!(
        ReportingSpec::default()
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
