//! Quorum across vantages, and impaired vantages.
//!
//! Each vantage publishes its own verdict on each of its targets. A target is `down` when
//! at least `quorum` voting vantages say so (by default a majority of those voting, a tie
//! counting as down), `degraded` likewise (down votes count as degraded too), else `up`;
//! the onset is the earliest among the agreeing vantages. A vantage that sees most of its
//! targets fail while the others see them fine is impaired: its path is broken, not the
//! targets, and it does not vote until it recovers.
//!
//! A verdict some voting vantage contradicts (or that a vantage expected to vote has not
//! voted on yet) waits `settle` after it is first seen: the targets of a vantage whose
//! path broke go down one by one over an interval, and the wait lets that vantage be found
//! impaired before its first few votes page anyone. A unanimous verdict applies at once.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::detector::TargetState;

/// One vantage's verdict on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote<'a> {
    pub vantage: &'a str,
    pub state: TargetState,
    /// Onset of the state, as the vantage's detector backdated it.
    pub since: Timestamp,
    /// When this verdict was first seen, for `settle`.
    pub seen_at: Timestamp,
}

/// What the votes add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub state: TargetState,
    pub since: Timestamp,
}

/// What [`combine`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The verdict in effect from now.
    pub verdict: Option<Verdict>,
    /// When another verdict waits to settle: the time it would apply if the votes stay.
    pub waits_until: Option<Timestamp>,
}

impl Decision {
    fn now(verdict: Option<Verdict>) -> Decision {
        Decision {
            verdict,
            waits_until: None,
        }
    }
}

/// How many agreeing vantages make a verdict when `quorum` is configured as given (0: a
/// majority, rounding a tie towards failing) and `voting` vantages vote.
pub fn needed(quorum: u32, voting: usize) -> usize {
    if quorum == 0 {
        voting.div_ceil(2)
    } else {
        quorum as usize
    }
}

/// Combines the votes of the voting vantages (silent and impaired ones left out by the
/// caller; `unknown` votes are ignored). `expected`: how many vantages should vote.
/// `previous` is the verdict in effect, kept while a contradicted verdict settles; `None`
/// when nobody votes.
pub fn combine(
    votes: &[Vote<'_>],
    expected: usize,
    quorum: u32,
    settle: Duration,
    previous: Option<Verdict>,
    now: Timestamp,
) -> Decision {
    let voting: Vec<&Vote<'_>> = votes
        .iter()
        .filter(|v| v.state != TargetState::Unknown)
        .collect();
    if voting.is_empty() {
        return Decision::now(None);
    }
    let need = needed(quorum, voting.len()).max(1);
    let levels: [(TargetState, &[TargetState]); 2] = [
        (TargetState::Down, &[TargetState::Down]),
        (
            TargetState::Degraded,
            &[TargetState::Down, TargetState::Degraded],
        ),
    ];
    for (state, counted) in levels {
        let mut agreeing: Vec<&&Vote<'_>> = voting
            .iter()
            .filter(|v| counted.contains(&v.state))
            .collect();
        if agreeing.len() < need {
            continue;
        }
        if previous.is_some_and(|p| p.state == state) {
            return Decision::now(previous);
        }
        if agreeing.len() < voting.len().max(expected) {
            agreeing.sort_by_key(|v| v.seen_at);
            let settled = agreeing[need - 1].seen_at + settle;
            if now < settled {
                return Decision {
                    verdict: previous,
                    waits_until: Some(settled),
                };
            }
        }
        let since = agreeing.iter().map(|v| v.since).min().expect("need >= 1");
        return Decision::now(Some(Verdict { state, since }));
    }
    let since = voting
        .iter()
        .filter(|v| v.state == TargetState::Up)
        .map(|v| v.since)
        .max()
        .unwrap_or(now);
    Decision::now(match previous {
        Some(p) if p.state == TargetState::Up => Some(p),
        _ => Some(Verdict {
            state: TargetState::Up,
            since,
        }),
    })
}

fn failing(state: TargetState) -> bool {
    matches!(state, TargetState::Down | TargetState::Degraded)
}

/// One target's part in finding impaired vantages: for each vantage that knows the
/// target's state, whether it sees it failing while a strict majority of the other
/// vantages that know see it fine. Nothing when fewer than two vantages know: there is
/// nothing to compare.
pub fn compare<V: Copy>(verdicts: &[(V, TargetState)]) -> Vec<(V, bool)> {
    let known: Vec<(V, bool)> = verdicts
        .iter()
        .filter(|(_, s)| *s != TargetState::Unknown)
        .map(|&(v, s)| (v, failing(s)))
        .collect();
    if known.len() < 2 {
        return Vec::new();
    }
    let failing_count = known.iter().filter(|(_, f)| *f).count();
    let others = known.len() - 1;
    known
        .into_iter()
        .map(|(vantage, fails)| {
            let others_fine = others - (failing_count - usize::from(fails));
            (vantage, fails && others_fine * 2 > others)
        })
        .collect()
}

/// Whether a vantage fails alone: on most of the `compared` targets ([`compare`]), it
/// alone sees them fail (`alone`).
pub fn fails_alone(compared: usize, alone: usize) -> bool {
    alone * 2 > compared
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetState::{Degraded, Down, Unknown, Up};
    use std::collections::{BTreeMap, BTreeSet};

    /// The vantages [`compare`] and [`fails_alone`] find impaired over `targets`.
    fn impaired<'a>(targets: &[Vec<(&'a str, TargetState)>]) -> BTreeSet<&'a str> {
        let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for verdicts in targets {
            for (vantage, alone) in compare(verdicts) {
                let entry = tally.entry(vantage).or_default();
                entry.0 += 1;
                entry.1 += usize::from(alone);
            }
        }
        tally
            .into_iter()
            .filter(|(_, (compared, alone))| fails_alone(*compared, *alone))
            .map(|(v, _)| v)
            .collect()
    }

    fn at(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn vote(vantage: &str, state: TargetState, since: i64) -> Vote<'_> {
        Vote {
            vantage,
            state,
            since: at(since),
            seen_at: at(since),
        }
    }

    const SETTLE: Duration = Duration::from_secs(10);

    /// The verdict alone; the wait is checked where it matters.
    fn combine(
        votes: &[Vote<'_>],
        expected: usize,
        quorum: u32,
        settle: Duration,
        previous: Option<Verdict>,
        now: Timestamp,
    ) -> Option<Verdict> {
        super::combine(votes, expected, quorum, settle, previous, now).verdict
    }

    fn verdict(state: TargetState, since: i64) -> Option<Verdict> {
        Some(Verdict {
            state,
            since: at(since),
        })
    }

    #[test]
    fn majority_by_default_and_a_tie_is_down() {
        assert_eq!(needed(0, 1), 1);
        assert_eq!(needed(0, 2), 1);
        assert_eq!(needed(0, 3), 2);
        assert_eq!(needed(0, 4), 2);
        assert_eq!(needed(2, 5), 2);
    }

    #[test]
    fn unanimous_down_applies_at_once_with_the_earliest_onset() {
        let votes = [vote("a", Down, 5), vote("b", Down, 3)];
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(6)),
            verdict(Down, 3)
        );
    }

    #[test]
    fn a_contradicted_verdict_waits_to_settle() {
        let votes = [vote("a", Down, 5), vote("b", Up, 0)];
        // A tie is down, but only once it has settled.
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(6)),
            verdict(Up, 0)
        );
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(15)),
            verdict(Down, 5)
        );
        // Until then it says when the wait ends, so that a recount knows to look again.
        let waiting = super::combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(6));
        assert_eq!(waiting.waits_until, Some(at(15)));
        let settled = super::combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(15));
        assert_eq!(settled.waits_until, None);
    }

    #[test]
    fn a_verdict_waits_for_a_vantage_yet_to_vote() {
        let votes = [vote("a", Down, 5)];
        assert_eq!(combine(&votes, 2, 0, SETTLE, None, at(6)), None);
        assert_eq!(
            combine(&votes, 2, 0, SETTLE, None, at(15)),
            verdict(Down, 5)
        );
    }

    #[test]
    fn a_minority_is_not_down() {
        let votes = [vote("a", Down, 5), vote("b", Up, 0), vote("c", Up, 0)];
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(100)),
            verdict(Up, 0)
        );
        // Unless the quorum asks for one vantage only.
        assert_eq!(
            combine(&votes, votes.len(), 1, SETTLE, verdict(Up, 0), at(100)),
            verdict(Down, 5)
        );
    }

    #[test]
    fn a_configured_quorum_larger_than_the_voters_is_never_reached() {
        let votes = [vote("a", Down, 5)];
        assert_eq!(
            combine(&votes, votes.len(), 2, SETTLE, None, at(100)),
            verdict(Up, 0).map(|v| Verdict {
                since: at(100),
                ..v
            })
        );
    }

    #[test]
    fn down_votes_count_towards_degraded() {
        let votes = [vote("a", Down, 5), vote("b", Degraded, 7), vote("c", Up, 0)];
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Up, 0), at(100)),
            verdict(Degraded, 5)
        );
    }

    #[test]
    fn unknown_votes_do_not_count_and_nobody_voting_is_no_verdict() {
        assert_eq!(
            combine(&[vote("a", Unknown, 0)], 1, 0, SETTLE, None, at(1)),
            None
        );
        // An unknown vote is no vote: alone, `a` decides (once `b`, expected, has had the
        // time to vote).
        let votes = [vote("a", Down, 5), vote("b", Unknown, 0)];
        assert_eq!(combine(&votes, 1, 0, SETTLE, None, at(6)), verdict(Down, 5));
        assert_eq!(combine(&votes, 2, 0, SETTLE, None, at(6)), None);
        assert_eq!(
            combine(&votes, 2, 0, SETTLE, None, at(15)),
            verdict(Down, 5)
        );
    }

    #[test]
    fn recovery_takes_the_latest_recovery() {
        let votes = [vote("a", Up, 50), vote("b", Up, 60)];
        assert_eq!(
            combine(&votes, votes.len(), 0, SETTLE, verdict(Down, 5), at(61)),
            verdict(Up, 60)
        );
    }

    fn row<'a>(verdicts: &[(&'a str, TargetState)]) -> Vec<(&'a str, TargetState)> {
        verdicts.to_vec()
    }

    #[test]
    fn a_vantage_failing_alone_on_most_targets_is_impaired() {
        let targets = [
            row(&[("paris", Down), ("lyon", Up)]),
            row(&[("paris", Down), ("lyon", Up)]),
            row(&[("paris", Up), ("lyon", Up)]),
        ];
        assert_eq!(impaired(&targets), BTreeSet::from(["paris"]));
    }

    #[test]
    fn a_real_outage_impairs_nobody() {
        let targets = [
            row(&[("paris", Down), ("lyon", Down)]),
            row(&[("paris", Down), ("lyon", Down)]),
        ];
        assert!(impaired(&targets).is_empty());
    }

    #[test]
    fn a_few_targets_failing_from_one_vantage_is_not_impairment() {
        let targets = [
            row(&[("paris", Down), ("lyon", Up)]),
            row(&[("paris", Up), ("lyon", Up)]),
            row(&[("paris", Up), ("lyon", Up)]),
        ];
        assert!(impaired(&targets).is_empty());
    }

    #[test]
    fn one_vantage_alone_cannot_be_compared() {
        let targets = [
            row(&[("paris", Down)]),
            row(&[("paris", Down), ("lyon", Unknown)]),
        ];
        assert!(impaired(&targets).is_empty());
    }

    #[test]
    fn the_others_must_mostly_see_the_target_fine() {
        // Two of three see it down: not paris's path alone.
        let targets = [row(&[("paris", Down), ("lyon", Down), ("nice", Up)])];
        assert!(impaired(&targets).is_empty());
    }
}
