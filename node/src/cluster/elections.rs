//! Earlier elections after a leader goes silent.
//!
//! openraft 0.9 starts a follower's election only after `election_timeout_max` (the
//! time it refuses votes after hearing from a leader, its "leader lease") *plus* a random
//! election timeout: 1.2–1.6 s of silence with the default timings. But the other
//! followers grant votes as soon as `election_timeout_max` has passed since they last
//! heard from the leader. So here each follower watches, per shard, when it last heard
//! from a leader, and campaigns itself once the silence passes `election_timeout_max`
//! plus a per-shard random part of `election_timeout_min / 2` (so the followers of one
//! shard do not all campaign at once). A kill -9 of a leader then costs about
//! `election_timeout_max` before a new one is elected, not up to twice that.
//!
//! Safety is openraft's, unchanged: this only starts a campaign earlier; who may vote
//! for whom, and when, is still decided by openraft's rules (and the old leader's lease
//! has run out by the time anyone grants a vote, see
//! [`crate::cluster::Cluster::votes_open`]).

use super::Cluster;
use openraft::ServerState;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When one shard last heard from a leader, in milliseconds since [`Contact::epoch`].
#[derive(Debug)]
pub struct Contact {
    epoch: Instant,
    last_ms: AtomicU64,
    /// This shard's random addition to the silence that starts a campaign.
    jitter: Duration,
}

impl Contact {
    /// A contact "now" (a node that just started waits a whole silence first).
    pub fn new(jitter: Duration) -> Self {
        Contact {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            jitter,
        }
    }

    /// Records that a leader was heard from now.
    pub fn heard(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// When a leader was last heard from.
    pub fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Whether a follower that last heard from its leader at `last` should campaign at
/// `now`, having last campaigned at `campaigned` (`None`: not since that contact).
pub fn should_campaign(
    last: Instant,
    campaigned: Option<Instant>,
    now: Instant,
    silence: Duration,
) -> bool {
    let since = campaigned.filter(|c| *c > last).unwrap_or(last);
    now.saturating_duration_since(since) >= silence
}

/// Watches every shard of `cluster` every `tick` until the cluster is dropped.
pub async fn run(cluster: Weak<Cluster>, silence: Duration, tick: Duration) {
    let mut campaigned: Vec<Option<Instant>> = Vec::new();
    let mut metrics = Vec::new();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if metrics.len() != cluster.groups().len() {
            metrics = cluster.groups().iter().map(|g| g.raft.metrics()).collect();
            campaigned = vec![None; metrics.len()];
        }
        let now = Instant::now();
        let shards = cluster
            .groups()
            .iter()
            .zip(&metrics)
            .zip(campaigned.iter_mut());
        for ((group, metrics), campaigned) in shards {
            let eligible = {
                let m = metrics.borrow();
                let (mut voters, mut voter) = (0, false);
                for id in m.membership_config.membership().voter_ids() {
                    voters += 1;
                    voter |= id == cluster.me;
                }
                m.state == ServerState::Follower
                    && m.current_leader.is_some()
                    && voters > 1
                    && voter
            };
            let last = group.contact.last();
            if !eligible || !should_campaign(last, *campaigned, now, silence + group.contact.jitter)
            {
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
        assert!(!should_campaign(t0, None, t0 + ms(799), silence));
        assert!(should_campaign(t0, None, t0 + ms(800), silence));
        // Campaigned at 800: not again until another silence has passed.
        let c = Some(t0 + ms(800));
        assert!(!should_campaign(t0, c, t0 + ms(1_000), silence));
        assert!(should_campaign(t0, c, t0 + ms(1_600), silence));
        // A leader heard after the campaign starts the count again.
        assert!(!should_campaign(t0 + ms(1_200), c, t0 + ms(1_700), silence));
    }

    #[tokio::test(start_paused = true)]
    async fn contact_keeps_the_latest_instant() {
        let contact = Contact::new(ms(0));
        let start = contact.last();
        tokio::time::advance(ms(300)).await;
        contact.heard();
        assert_eq!(contact.last(), start + ms(300));
    }
}
