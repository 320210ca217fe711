//! Rendezvous (highest random weight) hashing: each target goes to the member with the
//! highest score of (member, target). When a member leaves, only its targets move (each
//! to its next-highest member); when one joins, it takes only the targets it now wins.

use crate::topology::Target;

/// Which targets this instance probes: those configured for its vantage that it wins
/// among the live members of that vantage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub instance_id: String,
    pub vantage: String,
    /// Live members of the vantage, this instance included.
    pub peers: Vec<String>,
}

impl Assignment {
    /// An instance alone in its vantage (before its first heartbeat, or without a cluster).
    pub fn alone(instance_id: &str, vantage: &str) -> Assignment {
        Assignment {
            instance_id: instance_id.to_string(),
            vantage: vantage.to_string(),
            peers: vec![instance_id.to_string()],
        }
    }

    /// A receiver that always holds this assignment (its sender is gone).
    pub fn fixed(self) -> tokio::sync::watch::Receiver<std::sync::Arc<Assignment>> {
        tokio::sync::watch::channel(std::sync::Arc::new(self)).1
    }

    pub fn probes(&self, target: &Target) -> bool {
        target.probed_from(&self.vantage)
            && owner(&target.id, &self.peers).is_none_or(|o| o == self.instance_id)
    }
}

/// The member of `members` that probes `target`; `None` when there is none.
pub fn owner<'a, S: AsRef<str>>(target: &str, members: &'a [S]) -> Option<&'a str> {
    members
        .iter()
        .map(AsRef::as_ref)
        .max_by_key(|m| (score(m, target), *m))
}

/// A stable 64-bit score: FNV-1a over member, a separator and target, then a finalizer
/// (splitmix64) so that members differing by one character do not score alike.
fn score(member: &str, target: &str) -> u64 {
    let fnv = member
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(target.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let mut z = fnv.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<String> {
        (0..1000).map(|i| format!("target-{i}")).collect()
    }

    #[test]
    fn no_member_owns_nothing() {
        assert_eq!(owner::<&str>("t", &[]), None);
    }

    #[test]
    fn every_member_gets_a_fair_share() {
        let members = ["paris-a", "paris-b", "paris-c"];
        let mut counts = [0; 3];
        for t in targets() {
            let o = owner(&t, &members).unwrap();
            counts[members.iter().position(|m| *m == o).unwrap()] += 1;
        }
        for c in counts {
            assert!((250..420).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn the_order_of_members_does_not_matter() {
        for t in targets() {
            assert_eq!(owner(&t, &["a", "b", "c"]), owner(&t, &["c", "a", "b"]));
        }
    }

    #[test]
    fn only_a_leaving_members_targets_move() {
        let before = ["a", "b", "c"];
        let after = ["a", "c"];
        let mut moved = 0;
        for t in targets() {
            let (was, is) = (owner(&t, &before).unwrap(), owner(&t, &after).unwrap());
            if was == "b" {
                moved += 1;
            } else {
                assert_eq!(was, is, "{t} moved though its member stayed");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn a_joining_member_only_takes_targets() {
        for t in targets() {
            let (was, is) = (
                owner(&t, &["a", "b"]).unwrap(),
                owner(&t, &["a", "b", "d"]).unwrap(),
            );
            assert!(is == was || is == "d");
        }
    }
}
