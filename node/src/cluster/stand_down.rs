//! Replicas that were removed stop campaigning.
//!
//! A node removed from a shard's Raft group often never learns it: the leader stops
//! sending to it before it has the change that removed it. Its Raft instance then still
//! counts itself a voter, hears no leader, and campaigns every election timeout for
//! ever — refused every time (the others follow a leader), but each campaign is a vote
//! request to every old peer, and a drained node with a spare member to move to can be
//! left with dozens of such groups.
//!
//! [`StandDown`] watches each group: one that has known no leader for
//! [`STAND_DOWN_AFTER_ELECTIONS`] election timeouts while gossip says another alive
//! member leads the shard stops campaigning (openraft's `elect(false)`). It campaigns
//! again as soon as it hears a leader (it was added back) or gossip names no other
//! leader (the shard needs an election, and this node may be a voter of it). A real
//! voter cut off from a live leader stands down too, which costs nothing: its campaigns
//! could not win while the others follow that leader, and it still votes.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Election timeouts (max) without a leader before a group stands down.
pub const STAND_DOWN_AFTER_ELECTIONS: u32 = 5;

/// What one group should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stop campaigning.
    StandDown,
    /// Campaign again.
    Resume,
}

/// The groups' leaderless spells and which groups stood down (sans I/O: the caller
/// observes Raft and gossip and applies the changes).
#[derive(Debug)]
pub struct StandDown {
    after: Duration,
    leaderless_since: HashMap<u16, Instant>,
    down: BTreeSet<u16>,
}

impl StandDown {
    /// Groups stand down after `election_timeout_max` × [`STAND_DOWN_AFTER_ELECTIONS`].
    pub fn new(election_timeout_max: Duration) -> Self {
        Self {
            after: election_timeout_max * STAND_DOWN_AFTER_ELECTIONS,
            leaderless_since: HashMap::new(),
            down: BTreeSet::new(),
        }
    }

    /// One observation of `shard`'s group: whether Raft here knows a leader (this node
    /// included) and whether gossip says another alive member leads it.
    pub fn observe(
        &mut self,
        shard: u16,
        has_leader: bool,
        other_leads: bool,
        now: Instant,
    ) -> Option<Change> {
        if has_leader || !other_leads {
            self.leaderless_since.remove(&shard);
            return self.down.remove(&shard).then_some(Change::Resume);
        }
        let since = *self.leaderless_since.entry(shard).or_insert(now);
        (now.duration_since(since) >= self.after && self.down.insert(shard))
            .then_some(Change::StandDown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_a_leader_here_stands_down_only_while_another_leads_it() {
        let t0 = Instant::now();
        let mut s = StandDown::new(Duration::from_millis(800));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // An election: leaderless for a moment, then a leader.
        assert_eq!(s.observe(7, false, true, at(0)), None);
        assert_eq!(s.observe(7, false, true, at(3_000)), None);
        assert_eq!(s.observe(7, true, true, at(3_500)), None);
        // Removed: never a leader here while n2 leads it.
        assert_eq!(s.observe(7, false, true, at(4_000)), None);
        assert_eq!(s.observe(7, false, true, at(7_999)), None);
        assert_eq!(
            s.observe(7, false, true, at(8_000)),
            Some(Change::StandDown)
        );
        assert_eq!(s.observe(7, false, true, at(9_000)), None, "once");
        // No one else leads it any more: campaign again.
        assert_eq!(s.observe(7, false, false, at(9_500)), Some(Change::Resume));
        assert_eq!(s.observe(7, false, false, at(20_000)), None);
        // Stood down again, then added back: a leader is heard.
        assert_eq!(s.observe(7, false, true, at(21_000)), None);
        assert_eq!(
            s.observe(7, false, true, at(25_000)),
            Some(Change::StandDown)
        );
        assert_eq!(s.observe(7, true, true, at(25_500)), Some(Change::Resume));
        // Shards are independent.
        assert_eq!(s.observe(8, false, true, at(25_500)), None);
    }
}
