//! Per-target detection: consecutive results against thresholds, no flapping.
//!
//! Pure: results and their times in, transitions out. It never reads the clock.
//! Onsets are backdated: a target that goes down after three failures went down at the
//! first of them; one that recovers after two successes recovered at the first of those.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::probe::ProbeResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// No verdict yet: never counted as an outage.
    Unknown,
    Up,
    /// Answering, but slowly (or failing intermittently).
    Degraded,
    Down,
}

impl TargetState {
    pub const ALL: [TargetState; 4] = [
        TargetState::Up,
        TargetState::Degraded,
        TargetState::Down,
        TargetState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Unknown => "unknown",
            TargetState::Up => "up",
            TargetState::Degraded => "degraded",
            TargetState::Down => "down",
        }
    }
}

/// A target's thresholds, from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures (or slow answers) before down (or degraded).
    pub failure: u32,
    /// Consecutive successes (fast ones, from degraded) before up.
    pub success: u32,
    /// Successes slower than this count as slow.
    pub degraded_latency: Duration,
}

/// What one result says, as far as detection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Failure,
    Slow,
    Fast,
}

impl Observation {
    pub fn of(result: &ProbeResult, degraded_latency: Duration) -> Self {
        if !result.is_ok() {
            Observation::Failure
        } else if result.latency > degraded_latency
            || result.cert_expiring()
            || result.peer_degraded()
        {
            Observation::Slow
        } else {
            Observation::Fast
        }
    }
}

/// A run of consecutive results of one kind, and when it began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Streak {
    count: u32,
    first_at: Option<Timestamp>,
}

impl Streak {
    fn hit(&mut self, at: Timestamp) {
        if self.count == 0 {
            self.first_at = Some(at);
        }
        self.count = self.count.saturating_add(1);
    }

    fn reset(&mut self) {
        *self = Streak::default();
    }

    fn reached(&self, threshold: u32, fallback: Timestamp) -> Option<Timestamp> {
        (self.count >= threshold).then(|| self.first_at.unwrap_or(fallback))
    }
}

/// A change of target state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: TargetState,
    pub to: TargetState,
    /// When the new state began (backdated to the first result of the streak).
    pub since: Timestamp,
    /// When the threshold was reached (the result that decided it).
    pub at: Timestamp,
}

/// One target's detection state; serializable so a restart resumes mid-streak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detector {
    state: TargetState,
    since: Option<Timestamp>,
    /// Consecutive failures.
    failures: Streak,
    /// Consecutive failures or slow successes.
    unhealthy: Streak,
    /// Consecutive fast successes.
    healthy: Streak,
    /// Consecutive successes of any speed.
    successes: Streak,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            state: TargetState::Unknown,
            since: None,
            failures: Streak::default(),
            unhealthy: Streak::default(),
            healthy: Streak::default(),
            successes: Streak::default(),
        }
    }
}

impl Detector {
    pub fn state(&self) -> TargetState {
        self.state
    }

    /// A detector holding a verdict reached elsewhere (the quorum of the vantages' own
    /// detectors), with no streak of its own.
    pub fn decided(state: TargetState, since: Timestamp) -> Detector {
        Detector {
            state,
            since: (state != TargetState::Unknown).then_some(since),
            ..Detector::default()
        }
    }

    /// When the current state began; `None` while unknown.
    pub fn since(&self) -> Option<Timestamp> {
        self.since
    }

    /// Feeds one result; returns the transition it causes, if any.
    pub fn observe(
        &mut self,
        observation: Observation,
        at: Timestamp,
        thresholds: &Thresholds,
    ) -> Option<Transition> {
        match observation {
            Observation::Failure => {
                self.failures.hit(at);
                self.unhealthy.hit(at);
                self.healthy.reset();
                self.successes.reset();
            }
            Observation::Slow => {
                self.failures.reset();
                self.unhealthy.hit(at);
                self.healthy.reset();
                self.successes.hit(at);
            }
            Observation::Fast => {
                self.failures.reset();
                self.unhealthy.reset();
                self.healthy.hit(at);
                self.successes.hit(at);
            }
        }
        let down = self.failures.reached(thresholds.failure, at);
        let next = match self.state {
            // No verdict until a success, or enough failures to call it down.
            TargetState::Unknown => match observation {
                Observation::Failure => down.map(|since| (TargetState::Down, since)),
                Observation::Slow => Some((TargetState::Degraded, at)),
                Observation::Fast => Some((TargetState::Up, at)),
            },
            TargetState::Up => down.map(|since| (TargetState::Down, since)).or_else(|| {
                self.unhealthy
                    .reached(thresholds.failure, at)
                    .map(|since| (TargetState::Degraded, since))
            }),
            TargetState::Degraded => down.map(|since| (TargetState::Down, since)).or_else(|| {
                self.healthy
                    .reached(thresholds.success, at)
                    .map(|since| (TargetState::Up, since))
            }),
            TargetState::Down => self.successes.reached(thresholds.success, at).map(|since| {
                let to = if observation == Observation::Slow {
                    TargetState::Degraded
                } else {
                    TargetState::Up
                };
                (to, since)
            }),
        };
        let (to, since) = next?;
        let transition = Transition {
            from: self.state,
            to,
            since,
            at,
        };
        self.state = to;
        self.since = Some(since);
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::{Failure as F, Fast as K, Slow as S};
    use TargetState::*;

    const TH: Thresholds = Thresholds {
        failure: 3,
        success: 2,
        degraded_latency: Duration::from_secs(2),
    };

    fn t(second: i64) -> Timestamp {
        "2026-07-05T14:00:00Z".parse::<Timestamp>().unwrap() + chrono::Duration::seconds(second)
    }

    /// Feeds observations 30 s apart; returns every transition as (to, since, at) seconds.
    fn run(observations: &[Observation], th: &Thresholds) -> Vec<(TargetState, i64, i64)> {
        let mut d = Detector::default();
        observations
            .iter()
            .enumerate()
            .filter_map(|(i, &o)| d.observe(o, t(i as i64 * 30), th))
            .map(|tr| {
                let secs = |x: Timestamp| (x - t(0)).num_seconds();
                (tr.to, secs(tr.since), secs(tr.at))
            })
            .collect()
    }

    /// (name, observations 30 s apart, expected (to, since, at) in seconds).
    type Case<'a> = (&'a str, &'a [Observation], &'a [(TargetState, i64, i64)]);

    #[test]
    fn transitions_table() {
        let cases: &[Case] = &[
            ("first success is up", &[K], &[(Up, 0, 0)]),
            ("first slow success is degraded", &[S], &[(Degraded, 0, 0)]),
            ("failures below threshold stay unknown", &[F, F], &[]),
            (
                "down from unknown is backdated",
                &[F, F, F],
                &[(Down, 0, 60)],
            ),
            (
                "down is backdated to the first failure",
                &[K, F, F, F],
                &[(Up, 0, 0), (Down, 30, 90)],
            ),
            (
                "a success in between resets the count (no flapping)",
                &[K, F, F, K, F, F, K],
                &[(Up, 0, 0)],
            ),
            (
                "recovery is backdated to the first success",
                &[K, F, F, F, K, K],
                &[(Up, 0, 0), (Down, 30, 90), (Up, 120, 150)],
            ),
            (
                "one success does not recover",
                &[K, F, F, F, K, F, K],
                &[(Up, 0, 0), (Down, 30, 90)],
            ),
            (
                "slow successes degrade after the failure threshold",
                &[K, S, S, S, K, K],
                &[(Up, 0, 0), (Degraded, 30, 90), (Up, 120, 150)],
            ),
            (
                "mixed failures and slow answers degrade",
                &[K, F, S, F],
                &[(Up, 0, 0), (Degraded, 30, 90)],
            ),
            (
                "degraded goes down on enough failures",
                &[S, F, F, F],
                &[(Degraded, 0, 0), (Down, 30, 90)],
            ),
            (
                "a slow recovery lands in degraded",
                &[F, F, F, S, S],
                &[(Down, 0, 60), (Degraded, 90, 120)],
            ),
        ];
        for (name, observations, expected) in cases {
            assert_eq!(&run(observations, &TH), expected, "{name}");
        }
    }

    #[test]
    fn threshold_of_one_reacts_at_once() {
        let th = Thresholds {
            failure: 1,
            success: 1,
            ..TH
        };
        assert_eq!(
            run(&[K, F, K], &th),
            vec![(Up, 0, 0), (Down, 30, 30), (Up, 60, 60)]
        );
    }

    #[test]
    fn state_survives_serialization_mid_streak() {
        let mut d = Detector::default();
        d.observe(K, t(0), &TH);
        d.observe(F, t(30), &TH);
        d.observe(F, t(60), &TH);
        let mut restored: Detector =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        let tr = restored.observe(F, t(90), &TH).unwrap();
        assert_eq!((tr.to, tr.since), (Down, t(30)));
    }
}
