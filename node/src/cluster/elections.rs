//! Earlier elections after a leader goes silent.
//!
//! openraft 0.9 starts a follower's election only after `election_timeout_max` (the
//! time it refuses votes after hearing from a leader, its "leader lease") *plus* a random
//! election timeout: 1.2–1.6 s of silence with the default timings. But the other
//! followers grant votes as soon as `election_timeout_max` has passed since they last
//! heard from the leader. So here each follower watches, per shard, when it last heard
//! from a leader, and campaigns itself once the silence passes `election_timeout_max`
//! (plus one heartbeat-coalescing window, see [`crate::cluster::Cluster::start`]) plus
//! its [`stagger`]: the voters of a shard take turns in an order that differs per
//! shard, one slot of `election_timeout_min / 2 / voters` each, so two followers never
//! campaign at the same moment and split the vote (which costs another whole election
//! timeout). A kill -9 of a leader then costs about `election_timeout_max` before a new
//! one is elected, not up to twice that.
//!
//! Safety is unchanged: this only starts a campaign earlier; who may vote for whom, and
//! when, is still decided by openraft's rules and [`crate::cluster::Cluster::vote_gate`]
//! (and the old leader's lease has run out by the time anyone grants a vote, see
//! [`crate::cluster::Cluster::votes_open`]). A quiet shard's beats ([`super::quiet`])
//! count as hearing from its leader.

use super::Cluster;
use openraft::ServerState;
use shoal_protocol::ShardId;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When one shard last heard from a leader, in milliseconds since [`Contact::epoch`]:
/// by an append (or snapshot) openraft accepted, or by a quiet shard's beat
/// ([`super::quiet`]).
#[derive(Debug)]
pub struct Contact {
    epoch: Instant,
    last_ms: AtomicU64,
    append_ms: AtomicU64,
    beat_ms: AtomicU64,
}

impl Contact {
    /// A contact "now" (a node that just started waits a whole silence first).
    pub fn now() -> Self {
        Contact {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            append_ms: AtomicU64::new(0),
            beat_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records that the leader's append (or heartbeat, or snapshot) was accepted now.
    pub fn heard(&self) {
        let ms = self.elapsed_ms();
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
        self.append_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Records that a quiet shard's beat was accepted now.
    pub fn beat(&self) {
        let ms = self.elapsed_ms();
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
        self.beat_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether an append was accepted after the last beat (the shard woke).
    pub fn appended_since_beat(&self) -> bool {
        self.append_ms.load(Ordering::Relaxed) > self.beat_ms.load(Ordering::Relaxed)
    }

    /// When a leader was last heard from.
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// When a follower that last heard from its leader at `last` campaigns, having last
/// campaigned at `campaigned` (`None`: not since that contact): a whole `silence` after
/// the later of the two.
pub fn campaign_at(last: Instant, campaigned: Option<Instant>, silence: Duration) -> Instant {
    campaigned.filter(|c| *c > last).unwrap_or(last) + silence
}

/// A voter's place in `shard`'s campaign order: the same on every node and every run,
/// different per shard.
fn order_key(shard: ShardId, id: u64) -> u64 {
    (id ^ u64::from(shard.0).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// How much longer than the others `me` waits before campaigning for `shard`: its rank
/// among `voters` in the shard's campaign order times a slot of `span / voters`, plus a
/// part of the first half of that slot (so equal ranks on diverging views still differ).
pub fn stagger(me: u64, shard: ShardId, voters: &[u64], span: Duration) -> Duration {
    let key = order_key(shard, me);
    let rank = voters
        .iter()
        .filter(|id| **id != me && order_key(shard, **id) < key)
        .count() as u64;
    let slot = span.as_millis() as u64 / (voters.len().max(1) as u64);
    let within = (key >> 32) % (slot / 2).max(1);
    Duration::from_millis(rank * slot + within)
}

/// Watches every shard of `cluster` until the cluster is dropped, waking at the next
/// shard's campaign time (at least every `tick`). `span` bounds the [`stagger`].
pub async fn run(cluster: Weak<Cluster>, silence: Duration, span: Duration, tick: Duration) {
    let mut campaigned: Vec<Option<Instant>> = Vec::new();
    let mut metrics = Vec::new();
    let mut voters = Vec::new();
    let mut wake = Instant::now() + tick;
    loop {
        tokio::time::sleep_until(wake).await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if metrics.len() != cluster.groups().len() {
            metrics = cluster.groups().iter().map(|g| g.raft.metrics()).collect();
            campaigned = vec![None; metrics.len()];
        }
        let now = Instant::now();
        wake = now + tick;
        let shards = cluster
            .groups()
            .iter()
            .zip(&metrics)
            .zip(campaigned.iter_mut());
        for ((group, metrics), campaigned) in shards {
            {
                let m = metrics.borrow();
                voters.clear();
                voters.extend(m.membership_config.membership().voter_ids());
                let eligible = m.state == ServerState::Follower
                    && m.current_leader.is_some()
                    && voters.len() > 1
                    && voters.contains(&cluster.me);
                if !eligible {
                    continue;
                }
            }
            let last = group.contact.last();
            let wait = silence + stagger(cluster.me, group.shard, &voters, span);
            let at = campaign_at(last, *campaigned, wait);
            if at > now {
                wake = wake.min(at);
                continue;
            }
            *campaigned = Some(now);
            tracing::info!(shard = %group.shard, silent_ms = now.duration_since(last).as_millis() as u64, "the shard's leader is silent: campaigning");
            let raft = group.raft.clone();
            tokio::spawn(async move {
                if let Err(e) = raft.trigger().elect().await {
                    tracing::debug!(error = %e, "campaign not started");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_follower_campaigns_once_per_silence() {
        let t0 = Instant::now();
        let silence = ms(800);
        assert_eq!(campaign_at(t0, None, silence), t0 + ms(800));
        // Campaigned at 800: not again until another silence has passed.
        let c = Some(t0 + ms(800));
        assert_eq!(campaign_at(t0, c, silence), t0 + ms(1_600));
        // A leader heard after the campaign starts the count again.
        assert_eq!(campaign_at(t0 + ms(1_200), c, silence), t0 + ms(2_000));
    }

    #[test]
    fn the_voters_of_a_shard_campaign_in_turn() {
        let voters = [0x11, 0x2222, 0x3333_3333];
        let span = ms(200);
        for shard in 0..64 {
            let mut waits: Vec<Duration> = voters
                .iter()
                .map(|me| stagger(*me, ShardId(shard), &voters, span))
                .collect();
            assert!(waits.iter().all(|w| *w < span), "shard {shard}: {waits:?}");
            waits.sort();
            // One slot (66 ms) each, in its first half: at least 33 ms apart.
            for pair in waits.windows(2) {
                assert!(pair[1] - pair[0] >= ms(33), "shard {shard}: {waits:?}");
            }
        }
        // The order differs between shards: every voter is first somewhere.
        let firsts: std::collections::BTreeSet<u64> = (0..64)
            .map(|shard| {
                *voters
                    .iter()
                    .min_by_key(|me| stagger(**me, ShardId(shard), &voters, span))
                    .unwrap()
            })
            .collect();
        assert_eq!(firsts.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn contact_keeps_the_latest_instant() {
        let contact = Contact::now();
        let start = contact.last();
        tokio::time::advance(ms(300)).await;
        contact.heard();
        assert_eq!(contact.last(), start + ms(300));
        // A beat is contact too; an append after it means the shard woke.
        tokio::time::advance(ms(100)).await;
        contact.beat();
        assert_eq!(contact.last(), start + ms(400));
        assert!(!contact.appended_since_beat());
        tokio::time::advance(ms(100)).await;
        contact.heard();
        assert!(contact.appended_since_beat());
    }
}
