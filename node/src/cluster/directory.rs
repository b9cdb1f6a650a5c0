//! Where a shard's leader is, for a node that holds no replica of it: every node gossips
//! which shards it leads ([`super::membership::NodeMeta::led`], a bitmap), and each node keeps
//! the leaders so learned ([`Cluster::learn_leaders`]). [`Cluster::route`] sends requests
//! there for shards Raft here knows no leader of, and the reconciler balances
//! leaderships with them.

use super::Cluster;
use super::membership::{Liveness, MembersView};
use crate::raft::PeerNode;
use shoal_protocol::ShardId;

impl Cluster {
    /// Learns which alive member leads each shard from their gossip ([`super::membership::NodeMeta::led`]),
    /// for [`Self::route`] on shards this node holds no replica of. Where two members
    /// claim a shard (one of them has not yet gossiped that it lost it), the first by
    /// name is taken: a forward to the wrong one is refused there and retried.
    pub fn learn_leaders(&self, view: &MembersView) {
        let mut leaders: Vec<Option<(u64, PeerNode)>> = vec![None; self.groups.len()];
        for m in &view.members {
            if m.liveness != Liveness::Alive || m.meta.raft_id == self.me {
                continue;
            }
            for (shard, slot) in leaders.iter_mut().enumerate() {
                if slot.is_none() && led_bit(&m.meta.led, shard) {
                    let node = PeerNode {
                        name: m.meta.name.clone(),
                        addr: m.meta.addr.to_string(),
                    };
                    *slot = Some((m.meta.raft_id, node));
                }
            }
        }
        self.gossiped_leaders.send_if_modified(|now| {
            let changed = *now != leaders;
            *now = std::mem::take(&mut leaders);
            changed
        });
    }

    /// The leader of `shard` (Raft id, node) as its members gossip it
    /// ([`Self::learn_leaders`]).
    pub fn gossiped_leader(&self, shard: ShardId) -> Option<(u64, PeerNode)> {
        self.gossiped_leaders
            .borrow()
            .get(usize::from(shard.0))
            .cloned()
            .flatten()
    }
}

/// `led` (shards) as [`super::membership::NodeMeta::led`] gossips it, for a cluster of
/// `shard_count` shards.
pub fn led_bitmap(led: &std::collections::BTreeSet<u16>, shard_count: u16) -> Vec<u8> {
    let mut bitmap = vec![0u8; usize::from(shard_count).div_ceil(8)];
    for s in led.iter().map(|s| usize::from(*s)) {
        if let Some(byte) = bitmap.get_mut(s / 8) {
            *byte |= 1 << (s % 8);
        }
    }
    bitmap
}

/// Whether `led` ([`super::membership::NodeMeta::led`]) says shard `shard` is led.
fn led_bit(led: &[u8], shard: usize) -> bool {
    led.get(shard / 8)
        .is_some_and(|b| b & (1 << (shard % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::led_bit;

    #[test]
    fn a_bitmap_names_its_shards_and_nothing_past_its_end() {
        let led = [0b0000_0101u8, 0b1000_0000];
        let set: Vec<usize> = (0..24).filter(|s| led_bit(&led, *s)).collect();
        assert_eq!(set, [0, 2, 15]);
        assert_eq!(super::led_bitmap(&[0, 2, 15].into(), 16), led);
        assert!(!led_bit(&[], 0));
    }
}
