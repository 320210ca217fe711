//! The leader's count of every vantage's verdicts: what each vantage said of each target,
//! which vantages are impaired, and the quorum in effect per target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::vote::{self, Verdict, Vote};
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::topology::Topology;

/// Every vantage's verdicts and the quorum they add up to.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Part of how long a contradicted verdict waits: two heartbeats for the verdicts to
    /// be read (plus two intervals of the target for its vantages' detectors to spread).
    heartbeat: Duration,
    /// Every vantage's verdict by target id, then vantage.
    votes: HashMap<String, BTreeMap<String, Seen>>,
    /// The quorum in effect, by target index.
    verdicts: Vec<Option<Verdict>>,
    /// Vantages that see most of their targets fail alone, since when. They do not vote at
    /// once (a broken path must not page while it is being found out); they are reported
    /// `impaired` once it has held for the settle time (a vantage whose detectors merely
    /// flip a moment before the others' is not).
    suspects: BTreeMap<String, Timestamp>,
    /// Suspects that have held for the settle time: `impaired`.
    impaired: BTreeSet<String>,
}

/// What a recount changed.
#[derive(Debug, Default, PartialEq)]
pub struct Recount {
    /// (target index, its new verdict).
    pub verdicts: Vec<(usize, Option<Verdict>)>,
    /// (vantage, impaired now).
    pub vantages: Vec<(String, bool)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    state: TargetState,
    since: Timestamp,
    seen_at: Timestamp,
}

impl Tally {
    pub fn new(targets: usize, heartbeat: Duration) -> Tally {
        Tally {
            heartbeat,
            votes: HashMap::new(),
            verdicts: vec![None; targets],
            suspects: BTreeMap::new(),
            impaired: BTreeSet::new(),
        }
    }

    /// Follows a new configuration: verdicts stay with their target ids.
    pub fn remap(&mut self, old: &Topology, new: &Topology) {
        let mut by_id: HashMap<&str, Option<Verdict>> = old
            .targets
            .iter()
            .zip(&self.verdicts)
            .map(|(t, v)| (t.id.as_str(), *v))
            .collect();
        self.verdicts = new
            .targets
            .iter()
            .map(|t| by_id.remove(t.id.as_str()).flatten())
            .collect();
    }

    /// Records `vantage`'s verdict on `target`, seen at `now`; `seen_at` stays when it is
    /// the same verdict again.
    pub fn record(
        &mut self,
        target: &str,
        vantage: &str,
        state: TargetState,
        since: Timestamp,
        now: Timestamp,
    ) {
        let seen = self
            .votes
            .entry(target.to_string())
            .or_default()
            .entry(vantage.to_string())
            .or_insert(Seen {
                state,
                since,
                seen_at: now,
            });
        if seen.state != state || seen.since != since {
            *seen = Seen {
                state,
                since,
                seen_at: now,
            };
        }
    }

    /// How long a suspect vantage waits to be reported impaired: as a contradicted verdict.
    fn settle(&self, topology: &Topology) -> chrono::TimeDelta {
        let interval = topology
            .targets
            .iter()
            .map(|t| t.interval)
            .max()
            .unwrap_or_default();
        chrono::TimeDelta::from_std(interval * 2 + self.heartbeat * 2)
            .unwrap_or(chrono::TimeDelta::MAX)
    }

    /// Recomputes impaired vantages and every target's quorum over the `live` vantages;
    /// returns the targets whose verdict changed, and the vantages found impaired (`true`)
    /// or recovered.
    pub fn recount(
        &mut self,
        topology: &Topology,
        live: &BTreeSet<String>,
        now: Timestamp,
    ) -> Recount {
        let table: Vec<Vec<(&str, TargetState)>> = topology
            .targets
            .iter()
            .map(|t| {
                self.votes
                    .get(&t.id)
                    .map(|by| {
                        by.iter()
                            .filter(|(v, _)| live.contains(*v))
                            .map(|(v, s)| (v.as_str(), s.state))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let failing_alone: BTreeSet<String> = vote::impaired(&table)
            .into_iter()
            .map(str::to_string)
            .collect();
        self.suspects.retain(|v, _| failing_alone.contains(v));
        for v in &failing_alone {
            self.suspects.entry(v.clone()).or_insert(now);
        }
        let settle = self.settle(topology);
        let impaired: BTreeSet<String> = self
            .suspects
            .iter()
            .filter(|(_, since)| now - **since >= settle)
            .map(|(v, _)| v.clone())
            .collect();
        let mut changed = Vec::new();
        for (i, t) in topology.targets.iter().enumerate() {
            let votes: Vec<Vote<'_>> = self
                .votes
                .get(&t.id)
                .into_iter()
                .flatten()
                .filter(|(v, _)| live.contains(*v) && !failing_alone.contains(*v))
                .map(|(v, s)| Vote {
                    vantage: v,
                    state: s.state,
                    since: s.since,
                    seen_at: s.seen_at,
                })
                .collect();
            let expected = live.iter().filter(|v| t.probed_from(v)).count();
            let verdict = vote::combine(
                &votes,
                expected,
                topology.quorum,
                t.interval * 2 + self.heartbeat * 2,
                self.verdicts[i],
                now,
            );
            if verdict != self.verdicts[i] {
                self.verdicts[i] = verdict;
                changed.push((i, verdict));
            }
        }
        let mut vantages = Vec::new();
        for v in impaired.difference(&self.impaired) {
            vantages.push((v.clone(), true));
        }
        for v in self.impaired.difference(&impaired) {
            vantages.push((v.clone(), false));
        }
        self.impaired = impaired;
        Recount {
            verdicts: changed,
            vantages,
        }
    }

    pub fn is_impaired(&self, vantage: &str) -> bool {
        self.impaired.contains(vantage)
    }

    /// Every vantage that has voted.
    pub fn voters(&self) -> BTreeSet<&str> {
        self.votes
            .values()
            .flat_map(|by| by.keys().map(String::as_str))
            .collect()
    }
}
