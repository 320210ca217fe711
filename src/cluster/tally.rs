//! The leader's count of every vantage's verdicts: what each vantage said of each target,
//! which vantages are impaired, and the quorum in effect per target.
//!
//! A recount looks only at the targets whose votes changed since the last one and those
//! whose verdict waits to settle; the impairment counts are kept up to date vote by vote.
//! Everything is counted again only when what a vote means changes: the live vantages,
//! the vantages failing alone, or the configuration. So the leader's work grows with
//! transitions, not with (target, vantage) pairs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::vote::{self, Verdict, Vote};
use crate::clock::Timestamp;
use crate::detector::TargetState;
use crate::topology::Topology;

/// A vantage, by its index in [`Tally::names`].
type VantageId = u16;

/// Every vantage's verdicts and the quorum they add up to.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Part of how long a contradicted verdict waits: two heartbeats for the verdicts to
    /// be read (plus two intervals of the target for its vantages' detectors to spread).
    heartbeat: Duration,
    /// How long a suspect vantage waits to be reported impaired: as a contradicted verdict
    /// of the slowest target. Set with the configuration, not worked out at each recount.
    impaired_after: chrono::TimeDelta,
    /// Vantage names; a vote names its vantage by index.
    names: Vec<String>,
    /// Target index by id, in the configuration in effect.
    index: HashMap<String, usize>,
    /// Every vantage's verdict, by target index (few vantages each).
    votes: Vec<Vec<(VantageId, Seen)>>,
    /// Votes on targets this configuration does not have (yet), by id: they apply if a
    /// reload adds the target (its vantages publish a verdict only when it changes).
    elsewhere: HashMap<String, Vec<(VantageId, Seen)>>,
    /// The quorum in effect, by target index.
    verdicts: Vec<Option<Verdict>>,
    /// Targets whose votes changed since the last recount.
    changed: Vec<usize>,
    /// Targets whose verdict waits to settle: looked at again at every recount.
    waiting: BTreeSet<usize>,
    /// Whether the next recount must look at every target.
    everything: bool,
    /// The live vantages the impairment counts are over, by [`VantageId`].
    live: Vec<bool>,
    /// Per vantage: targets compared with other vantages, and of them those it alone sees
    /// failing ([`vote::compare`]).
    compared: Vec<(usize, usize)>,
    /// Vantages failing alone at the last recount: they do not vote.
    failing_alone: BTreeSet<VantageId>,
    /// Vantages failing alone, since when. They do not vote at once (a broken path must
    /// not page while it is being found out); they are reported `impaired` once it has
    /// held for the settle time (a vantage whose detectors merely flip a moment before the
    /// others' is not).
    suspects: BTreeMap<String, Timestamp>,
    /// Suspects that have held for the settle time: `impaired`.
    impaired: BTreeSet<String>,
}

/// What a recount changed.
#[derive(Debug, Default, PartialEq)]
pub struct Recount {
    /// (target index, its new verdict), in target order.
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
    pub fn new(topology: &Topology, heartbeat: Duration) -> Tally {
        let mut tally = Tally {
            heartbeat,
            impaired_after: chrono::TimeDelta::zero(),
            names: Vec::new(),
            index: HashMap::new(),
            votes: Vec::new(),
            elsewhere: HashMap::new(),
            verdicts: Vec::new(),
            changed: Vec::new(),
            waiting: BTreeSet::new(),
            everything: true,
            live: Vec::new(),
            compared: Vec::new(),
            failing_alone: BTreeSet::new(),
            suspects: BTreeMap::new(),
            impaired: BTreeSet::new(),
        };
        tally.adopt(topology, Vec::new());
        tally
    }

    /// Follows a new configuration: votes and verdicts stay with their target ids.
    pub fn remap(&mut self, old: &Topology, new: &Topology) {
        let verdicts: Vec<(String, Option<Verdict>)> = old
            .targets
            .iter()
            .zip(&self.verdicts)
            .map(|(t, v)| (t.id.clone(), *v))
            .collect();
        for (t, votes) in old.targets.iter().zip(std::mem::take(&mut self.votes)) {
            if !votes.is_empty() {
                self.elsewhere.insert(t.id.clone(), votes);
            }
        }
        self.adopt(new, verdicts);
    }

    /// Indexes `topology`'s targets, taking their votes and `verdicts` (by id).
    fn adopt(&mut self, topology: &Topology, verdicts: Vec<(String, Option<Verdict>)>) {
        let mut verdicts: HashMap<String, Option<Verdict>> = verdicts.into_iter().collect();
        self.index = topology
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        self.votes = topology
            .targets
            .iter()
            .map(|t| self.elsewhere.remove(&t.id).unwrap_or_default())
            .collect();
        self.verdicts = topology
            .targets
            .iter()
            .map(|t| verdicts.remove(&t.id).flatten())
            .collect();
        let slowest = topology
            .targets
            .iter()
            .map(|t| t.interval)
            .max()
            .unwrap_or_default();
        self.impaired_after = chrono::TimeDelta::from_std(slowest * 2 + self.heartbeat * 2)
            .unwrap_or(chrono::TimeDelta::MAX);
        self.changed.clear();
        self.waiting.clear();
        self.everything = true;
        // The impairment counts are of the targets gone too: counted again at the recount.
        self.live.iter_mut().for_each(|l| *l = false);
        self.compared.iter_mut().for_each(|c| *c = (0, 0));
    }

    fn vantage_id(&mut self, name: &str) -> VantageId {
        if let Some(id) = self.names.iter().position(|n| n == name) {
            return id as VantageId;
        }
        self.names.push(name.to_string());
        self.live.push(false);
        self.compared.push((0, 0));
        (self.names.len() - 1) as VantageId
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
        let vantage = self.vantage_id(vantage);
        let fresh = Seen {
            state,
            since,
            seen_at: now,
        };
        let Some(&index) = self.index.get(target) else {
            let votes = self.elsewhere.entry(target.to_string()).or_default();
            put(votes, vantage, fresh);
            return;
        };
        if self.votes[index]
            .iter()
            .any(|(v, s)| *v == vantage && s.state == state && s.since == since)
        {
            return;
        }
        self.count(index, -1);
        put(&mut self.votes[index], vantage, fresh);
        self.count(index, 1);
        self.changed.push(index);
    }

    /// Adds (`sign` 1) or takes back (-1) target `index`'s part in the impairment counts.
    fn count(&mut self, index: usize, sign: isize) {
        let live: Vec<(VantageId, TargetState)> = self.votes[index]
            .iter()
            .filter(|(v, _)| self.live[usize::from(*v)])
            .map(|(v, s)| (*v, s.state))
            .collect();
        for (vantage, alone) in vote::compare(&live) {
            let entry = &mut self.compared[usize::from(vantage)];
            entry.0 = entry.0.wrapping_add_signed(sign);
            entry.1 = entry.1.wrapping_add_signed(sign * isize::from(alone));
        }
    }

    /// Brings impaired vantages and the quorum of the targets that need it up to date over
    /// the `live` vantages; returns the targets whose verdict changed, and the vantages
    /// found impaired (`true`) or recovered.
    pub fn recount(
        &mut self,
        topology: &Topology,
        live: &BTreeSet<String>,
        now: Timestamp,
    ) -> Recount {
        for name in live {
            self.vantage_id(name);
        }
        let live_now: Vec<bool> = self.names.iter().map(|n| live.contains(n)).collect();
        if live_now != self.live {
            self.live = live_now;
            self.compared.iter_mut().for_each(|c| *c = (0, 0));
            for index in 0..self.votes.len() {
                self.count(index, 1);
            }
            self.everything = true;
        }
        let failing_alone: BTreeSet<VantageId> = self
            .compared
            .iter()
            .enumerate()
            .filter(|(_, (compared, alone))| vote::fails_alone(*compared, *alone))
            .map(|(v, _)| v as VantageId)
            .collect();
        if failing_alone != self.failing_alone {
            self.failing_alone = failing_alone;
            self.everything = true;
        }
        let alone: BTreeSet<&String> = self
            .failing_alone
            .iter()
            .map(|&v| &self.names[usize::from(v)])
            .collect();
        self.suspects.retain(|v, _| alone.contains(v));
        for v in alone {
            self.suspects.entry(v.clone()).or_insert(now);
        }
        let impaired: BTreeSet<String> = self
            .suspects
            .iter()
            .filter(|(_, since)| now - **since >= self.impaired_after)
            .map(|(v, _)| v.clone())
            .collect();

        let look_at: Vec<usize> = if std::mem::take(&mut self.everything) {
            self.changed.clear();
            (0..topology.targets.len()).collect()
        } else {
            let mut some: Vec<usize> = std::mem::take(&mut self.changed);
            some.extend(&self.waiting);
            some.sort_unstable();
            some.dedup();
            some
        };
        let mut changed = Vec::new();
        for i in look_at {
            let t = &topology.targets[i];
            let votes: Vec<Vote<'_>> = self.votes[i]
                .iter()
                .filter(|(v, _)| self.live[usize::from(*v)] && !self.failing_alone.contains(v))
                .map(|(v, s)| Vote {
                    vantage: &self.names[usize::from(*v)],
                    state: s.state,
                    since: s.since,
                    seen_at: s.seen_at,
                })
                .collect();
            let expected = live.iter().filter(|v| t.probed_from(v)).count();
            let decision = vote::combine(
                &votes,
                expected,
                topology.quorum,
                t.interval * 2 + self.heartbeat * 2,
                self.verdicts[i],
                now,
            );
            if decision.waits_until.is_some() {
                self.waiting.insert(i);
            } else {
                self.waiting.remove(&i);
            }
            if decision.verdict != self.verdicts[i] {
                self.verdicts[i] = decision.verdict;
                changed.push((i, decision.verdict));
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

    /// Every vantage that has voted (or been live).
    pub fn voters(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// Sets `vantage`'s verdict among `votes`.
fn put(votes: &mut Vec<(VantageId, Seen)>, vantage: VantageId, seen: Seen) {
    match votes.iter_mut().find(|(v, _)| *v == vantage) {
        Some((_, s)) => *s = seen,
        None => votes.push((vantage, seen)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::detector::TargetState::{Degraded, Down, Unknown, Up};

    fn at(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    /// `targets` targets probed every second from every vantage.
    pub(crate) fn topology(targets: usize) -> Topology {
        let mut toml =
            String::from("[storage]\nsqlite = \"unused.db\"\n[[services]]\nid = \"web\"\n");
        for i in 0..targets {
            toml.push_str(&format!(
                "[[targets]]\nid = \"t{i}\"\nservice = \"web\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
                 probe = {{ type = \"tcp\", address = \"127.0.0.1:9\" }}\n"
            ));
        }
        let settings = crate::config::load(&crate::config::ConfigSource::Inline(toml)).unwrap();
        (*settings.topology).clone()
    }

    fn live(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    const HEARTBEAT: Duration = Duration::from_secs(1);

    #[test]
    fn a_vantage_failing_alone_stops_voting_at_once_and_is_impaired_once_it_holds() {
        let topo = topology(3);
        let both = live(&["lyon", "paris"]);
        let mut tally = Tally::new(&topo, HEARTBEAT);
        for t in &topo.targets {
            tally.record(&t.id, "paris", Up, at(0), at(0));
            tally.record(&t.id, "lyon", Down, at(1), at(1));
        }
        let first = tally.recount(&topo, &both, at(1));
        assert_eq!(first.verdicts.len(), 3);
        assert!(first.verdicts.iter().all(|(_, v)| v.unwrap().state == Up));
        assert!(first.vantages.is_empty(), "not reported yet");
        assert!(!tally.is_impaired("lyon"));
        // Settle: two intervals (1 s) plus two heartbeats (1 s).
        let later = tally.recount(&topo, &both, at(5));
        assert!(later.verdicts.is_empty(), "still up");
        assert_eq!(later.vantages, [("lyon".to_string(), true)]);
        assert!(tally.is_impaired("lyon"));
        // Lyon sees them fine again: it recovers and votes.
        for t in &topo.targets {
            tally.record(&t.id, "lyon", Up, at(6), at(6));
        }
        let back = tally.recount(&topo, &both, at(6));
        assert_eq!(back.vantages, [("lyon".to_string(), false)]);
    }

    #[test]
    fn an_outage_seen_from_every_vantage_is_down_with_the_earliest_onset() {
        let topo = topology(2);
        let mut tally = Tally::new(&topo, HEARTBEAT);
        for t in &topo.targets {
            tally.record(&t.id, "paris", Down, at(3), at(4));
            tally.record(&t.id, "lyon", Down, at(2), at(4));
        }
        let r = tally.recount(&topo, &live(&["lyon", "paris"]), at(4));
        let down = Some(Verdict {
            state: Down,
            since: at(2),
        });
        assert_eq!(r.verdicts, [(0, down), (1, down)]);
    }

    #[test]
    fn a_silent_vantage_does_not_vote() {
        let topo = topology(1);
        let mut tally = Tally::new(&topo, HEARTBEAT);
        tally.record("t0", "paris", Up, at(0), at(0));
        tally.record("t0", "lyon", Down, at(1), at(1));
        let r = tally.recount(&topo, &live(&["paris"]), at(100));
        let up = Some(Verdict {
            state: Up,
            since: at(0),
        });
        assert_eq!(r.verdicts, [(0, up)]);
        assert!(tally.voters().any(|v| v == "lyon"));
    }

    #[test]
    fn a_contradicted_verdict_applies_once_settled_without_new_votes() {
        let topo = topology(4);
        let both = live(&["lyon", "paris"]);
        let mut tally = Tally::new(&topo, HEARTBEAT);
        for t in &topo.targets {
            tally.record(&t.id, "paris", Up, at(0), at(0));
            tally.record(&t.id, "lyon", Up, at(0), at(0));
        }
        tally.recount(&topo, &both, at(0));
        // One target down from lyon only: a tie is down, once it has settled.
        tally.record("t0", "lyon", Down, at(10), at(10));
        assert!(tally.recount(&topo, &both, at(10)).verdicts.is_empty());
        assert!(tally.recount(&topo, &both, at(12)).verdicts.is_empty());
        let settled = tally.recount(&topo, &both, at(14));
        assert_eq!(
            settled.verdicts,
            [(
                0,
                Some(Verdict {
                    state: Down,
                    since: at(10)
                })
            )]
        );
    }

    #[test]
    fn votes_follow_their_target_through_a_reload() {
        let small = topology(1);
        let big = topology(2);
        let both = live(&["lyon", "paris"]);
        let mut tally = Tally::new(&small, HEARTBEAT);
        // Votes on a target the leader's configuration does not have yet.
        for v in ["paris", "lyon"] {
            tally.record("t0", v, Up, at(0), at(0));
            tally.record("t1", v, Down, at(1), at(1));
        }
        assert_eq!(tally.recount(&small, &both, at(2)).verdicts.len(), 1);
        tally.remap(&small, &big);
        let r = tally.recount(&big, &both, at(2));
        let down = Some(Verdict {
            state: Down,
            since: at(1),
        });
        assert_eq!(r.verdicts, [(1, down)], "t0 keeps its verdict, t1 gets one");
    }

    /// The recount that looks only at what changed decides exactly what a count of
    /// everything decides, through votes, vantages coming and going, and settling.
    #[test]
    fn counting_what_changed_agrees_with_counting_everything() {
        let topo = topology(12);
        let vantages = ["lyon", "nice", "paris"];
        let states = [Up, Up, Up, Down, Down, Degraded, Unknown];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut quick = Tally::new(&topo, HEARTBEAT);
        let mut full = Tally::new(&topo, HEARTBEAT);
        let mut live_now = live(&vantages);
        for step in 0..2_000 {
            let now = at(step);
            for _ in 0..rng.usize(0..6) {
                let target = format!("t{}", rng.usize(0..topo.targets.len()));
                let vantage = vantages[rng.usize(0..vantages.len())];
                let state = states[rng.usize(0..states.len())];
                let since = at(step - rng.i64(0..3));
                quick.record(&target, vantage, state, since, now);
                full.record(&target, vantage, state, since, now);
            }
            if rng.usize(0..50) == 0 {
                live_now = vantages
                    .iter()
                    .filter(|_| rng.bool())
                    .map(|v| v.to_string())
                    .collect();
            }
            full.remap(&topo, &topo);
            assert_eq!(
                quick.recount(&topo, &live_now, now),
                full.recount(&topo, &live_now, now),
                "step {step}"
            );
        }
    }
}
