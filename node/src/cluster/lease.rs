//! The leader lease, sans I/O: whether this node may run a shard's side effects now.
//!
//! Inputs are [`Observation`]s — what one Raft metrics value said, stamped with the
//! instant it was *received* — and `now`; the output is a [`LeaseState`]: hosting or
//! not, how long agents may run (for the watchdog) and when to look again.
//!
//! The rule (ARCHITECTURE.md, "Single activation"):
//! * hosting needs leadership in the current term, `settle` (one heartbeat, a margin)
//!   since leadership was first observed in that term, and quorum-ack evidence younger
//!   than `lease`. A previous leader's lease has already run out when anyone is elected
//!   (the argument is at [`crate::cluster::Cluster::votes_open`]);
//! * the evidence is `received_at − millis_since_quorum_ack`, fixed when the value
//!   arrives. It is never re-derived from an old value at a later `now`: when values stop
//!   arriving (openraft's core blocked on a stalled flush or a long apply), the lease runs
//!   out at the last evidence plus `lease`;
//! * a single voter cannot be outvoted: it hosts as soon as it leads, without a deadline.
//!
//! `received_at` is at or after the instant openraft computed the age, so the evidence
//! can be later than the real ack by the channel's delivery delay (microseconds). The
//! margin that covers it is structural: followers refuse votes for
//! `election_timeout_max > lease` after hearing from a leader, a restarted node takes
//! part in no election for `lease + heartbeat`, and a new leader waits `settle` more
//! before it hosts.

use super::Hosting;
use crate::raft::ShardRaft;
use crate::watchdog::Deadline;
use openraft::ServerState;
use shoal_protocol::ShardId;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What one Raft metrics value says about this node's leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When the value was received (not when it is looked at).
    pub received_at: Instant,
    /// This node is leader and names itself as leader.
    pub leading: bool,
    /// The Raft term of the value.
    pub term: u64,
    /// This node is the shard's only voter.
    pub sole_voter: bool,
    /// Age of the newest quorum-acknowledged heartbeat or append, as of the value.
    pub millis_since_quorum_ack: Option<u64>,
}

/// The lease's answer at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether the shard may be hosted here now.
    pub hosting: Hosting,
    /// How long agents may run (told to the watchdog).
    pub deadline: Deadline,
    /// The next instant the answer changes without a new observation.
    pub wake: Option<Instant>,
}

/// Leadership of one term as observed so far.
#[derive(Debug, Clone, Copy)]
struct Leadership {
    term: u64,
    since: Instant,
    sole_voter: bool,
    /// The newest quorum ack seen in this term.
    acked_at: Option<Instant>,
}

/// One shard's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    lease: Duration,
    settle: Duration,
    leadership: Option<Leadership>,
}

impl Lease {
    /// A lease of `lease`, hosting only `settle` after leadership begins.
    pub fn new(lease: Duration, settle: Duration) -> Lease {
        Lease {
            lease,
            settle,
            leadership: None,
        }
    }

    /// Takes in one metrics value.
    pub fn observe(&mut self, o: Observation) {
        if !o.leading {
            self.leadership = None;
            return;
        }
        let leadership = match self.leadership {
            Some(l) if l.term == o.term => self.leadership.insert(l),
            _ => self.leadership.insert(Leadership {
                term: o.term,
                since: o.received_at,
                sole_voter: o.sole_voter,
                acked_at: None,
            }),
        };
        leadership.sole_voter = o.sole_voter;
        if let Some(ms) = o.millis_since_quorum_ack {
            let acked = o.received_at.checked_sub(Duration::from_millis(ms));
            // Evidence only moves forward: an older ack never shortens a newer one.
            leadership.acked_at = leadership.acked_at.max(acked);
        }
    }

    /// Takes in a quorum's acceptance of a quiet shard's beats sent at `sent_at` by the
    /// leader of `term` ([`super::quiet`]): evidence like an acknowledged heartbeat's, for
    /// that term only.
    pub fn observe_ack(&mut self, term: u64, sent_at: Instant) {
        if let Some(l) = self.leadership.as_mut()
            && l.term == term
        {
            l.acked_at = l.acked_at.max(Some(sent_at));
        }
    }

    /// The answer at `now`.
    pub fn state(&self, now: Instant) -> LeaseState {
        let inactive = |wake| LeaseState {
            hosting: Hosting::Inactive,
            deadline: Deadline::None,
            wake,
        };
        let Some(l) = self.leadership else {
            return inactive(None);
        };
        if l.sole_voter {
            return LeaseState {
                hosting: Hosting::Active { term: l.term },
                deadline: Deadline::Forever,
                wake: None,
            };
        }
        let settled_at = l.since + self.settle;
        if now < settled_at {
            return inactive(Some(settled_at));
        }
        match l.acked_at.map(|a| a + self.lease) {
            Some(until) if now < until => LeaseState {
                hosting: Hosting::Active { term: l.term },
                deadline: Deadline::at(until),
                wake: Some(until),
            },
            // No fresh evidence: wait for the next observation.
            _ => inactive(None),
        }
    }

    /// Until when the shard may be hosted, as of `now` (`None`: not hosting).
    pub fn active_until(&self, now: Instant) -> Option<Instant> {
        let state = self.state(now);
        match (state.hosting, state.wake) {
            (Hosting::Active { .. }, Some(until)) => Some(until),
            (Hosting::Active { .. }, None) => Some(now + Duration::from_secs(u32::MAX.into())),
            _ => None,
        }
    }
}

/// Drives one shard's [`Lease`] from its Raft metrics and its quiet beats' evidence
/// ([`super::quiet`]): each value is observed once, stamped with the instant it arrived;
/// between values only the clock moves.
pub(super) async fn run(
    shard: ShardId,
    raft: ShardRaft,
    me: u64,
    (lease, settle): (Duration, Duration),
    mut evidence: watch::Receiver<Option<(u64, Instant)>>,
    hosting: watch::Sender<Hosting>,
    watchdog: crate::watchdog::Watchdog,
) {
    let mut metrics = raft.metrics();
    let mut core = Lease::new(lease, settle);
    let mut fresh = true;
    loop {
        if fresh {
            let received_at = Instant::now();
            // Read the few fields needed without cloning the whole value (this runs on
            // every metrics publish of every shard).
            let observation = {
                let m = metrics.borrow_and_update();
                let mut voters = m.membership_config.membership().voter_ids();
                Observation {
                    received_at,
                    leading: m.state == ServerState::Leader && m.current_leader == Some(me),
                    term: m.current_term,
                    sole_voter: voters.next() == Some(me) && voters.next().is_none(),
                    millis_since_quorum_ack: m.millis_since_quorum_ack,
                }
            };
            core.observe(observation);
            if let Some((term, sent_at)) = *evidence.borrow_and_update() {
                core.observe_ack(term, sent_at);
            }
        }
        let state = core.state(Instant::now());
        // Before the hosting change: the watchdog must know a lease before the agents
        // it guards are registered with it.
        watchdog.lease(shard.0, state.deadline);
        hosting.send_if_modified(|h| {
            if *h != state.hosting {
                tracing::info!(%shard, state = ?state.hosting, "shard hosting changed");
                *h = state.hosting;
                true
            } else {
                false
            }
        });
        let wake = async {
            match state.wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        fresh = tokio::select! {
            r = metrics.changed() => if r.is_err() { break } else { true },
            r = evidence.changed() => if r.is_err() { break } else { true },
            _ = wake => false,
        };
    }
    hosting.send_replace(Hosting::Inactive);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(300);
    const SETTLE: Duration = Duration::from_millis(400);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn leading(at: Instant, term: u64, ack_age_ms: Option<u64>) -> Observation {
        Observation {
            received_at: at,
            leading: true,
            term,
            sole_voter: false,
            millis_since_quorum_ack: ack_age_ms,
        }
    }

    #[test]
    fn a_new_leader_waits_settle_then_hosts_while_acks_are_fresh() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        lease.observe(leading(t0, 2, Some(0)));
        let early = lease.state(t0 + ms(100));
        assert_eq!(early.hosting, Hosting::Inactive);
        assert_eq!(early.wake, Some(t0 + SETTLE));
        // Heartbeats keep arriving every 100 ms.
        for i in 1..=5 {
            lease.observe(leading(t0 + ms(100 * i), 2, Some(0)));
        }
        let now = t0 + ms(520);
        assert_eq!(lease.state(now).hosting, Hosting::Active { term: 2 });
        assert_eq!(lease.active_until(now), Some(t0 + ms(500) + LEASE));
    }

    #[test]
    fn the_lease_lapses_when_metrics_stop_arriving() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        for i in 0..=5 {
            lease.observe(leading(t0 + ms(100 * i), 2, Some(10)));
        }
        let last_ack = t0 + ms(490);
        assert_eq!(
            lease.state(t0 + ms(600)).hosting,
            Hosting::Active { term: 2 }
        );
        // Nothing more arrives (the core is blocked). However often it is asked, the
        // answer never extends past the last evidence.
        for late in [700, 789, 790, 1_000, 10_000] {
            let now = t0 + ms(late);
            let state = lease.state(now);
            if now < last_ack + LEASE {
                assert_eq!(state.hosting, Hosting::Active { term: 2 });
                assert_eq!(state.wake, Some(last_ack + LEASE));
            } else {
                assert_eq!(state.hosting, Hosting::Inactive, "at {late} ms");
                assert_eq!(state.deadline, Deadline::None);
                assert_eq!(state.wake, None);
            }
        }
    }

    #[test]
    fn a_stale_value_received_late_carries_its_own_age() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        lease.observe(leading(t0, 2, Some(0)));
        // The core was blocked: the next value says the last ack is 900 ms old.
        lease.observe(leading(t0 + ms(1_000), 2, Some(900)));
        assert_eq!(lease.state(t0 + ms(1_000)).hosting, Hosting::Inactive);
        // An older ack never moves evidence backwards either.
        lease.observe(leading(t0 + ms(1_100), 2, Some(0)));
        lease.observe(leading(t0 + ms(1_150), 2, Some(500)));
        assert_eq!(
            lease.active_until(t0 + ms(1_200)),
            Some(t0 + ms(1_100) + LEASE)
        );
    }

    #[test]
    fn no_quorum_ack_yet_means_no_hosting() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        lease.observe(leading(t0, 2, None));
        lease.observe(leading(t0 + ms(500), 2, None));
        assert_eq!(lease.state(t0 + ms(500)).hosting, Hosting::Inactive);
    }

    #[test]
    fn losing_leadership_or_a_new_term_starts_over() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        lease.observe(leading(t0, 2, Some(0)));
        lease.observe(leading(t0 + ms(450), 2, Some(0)));
        assert!(lease.active_until(t0 + ms(450)).is_some());
        // A new term: settle again, old evidence does not count.
        lease.observe(leading(t0 + ms(500), 3, None));
        assert_eq!(lease.state(t0 + ms(500)).hosting, Hosting::Inactive);
        lease.observe(leading(t0 + ms(600), 3, Some(0)));
        assert_eq!(lease.state(t0 + ms(700)).hosting, Hosting::Inactive);
        assert_eq!(
            lease.state(t0 + ms(900)).hosting,
            Hosting::Inactive,
            "ack at 600 + lease 300 ends exactly when settle ends"
        );
        lease.observe(leading(t0 + ms(880), 3, Some(0)));
        assert_eq!(
            lease.state(t0 + ms(900)).hosting,
            Hosting::Active { term: 3 }
        );
        // Not leading any more: nothing, at once.
        lease.observe(Observation {
            leading: false,
            ..leading(t0 + ms(950), 3, Some(0))
        });
        assert_eq!(lease.state(t0 + ms(950)).hosting, Hosting::Inactive);
        assert_eq!(lease.active_until(t0 + ms(950)), None);
    }

    #[test]
    fn a_sole_voter_hosts_at_once_without_deadline() {
        let t0 = Instant::now();
        let mut lease = Lease::new(LEASE, SETTLE);
        lease.observe(Observation {
            sole_voter: true,
            ..leading(t0, 1, None)
        });
        let state = lease.state(t0 + ms(10_000));
        assert_eq!(state.hosting, Hosting::Active { term: 1 });
        assert_eq!(state.deadline, Deadline::Forever);
        assert_eq!(state.wake, None);
    }
}
