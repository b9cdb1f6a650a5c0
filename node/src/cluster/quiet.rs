//! Quiet shards: the leader of an idle shard stops heartbeating it.
//!
//! Every shard's leader heartbeats each follower ten times a second, and openraft's
//! per-shard core handles each heartbeat and each reply: with 64 shards on 3 nodes an
//! idle cluster spends about 4 % of a core per node on it (docs/PERFORMANCE.md). A shard
//! whose log has not moved for `cluster.quiesce_after_ms`, with every member caught up
//! and everything applied, goes *quiet*:
//!
//! * its leader turns openraft's heartbeats off, and instead names the shard in one
//!   [`PeerRequest::QuietBeats`] per follower node per heartbeat, for all its quiet
//!   shards together: the shard, the leader's vote and its last log index;
//! * a follower accepts a beat only when it agrees: the same committed vote, the same
//!   last log index, everything applied ([`accept`]). Accepting is a promise: it records
//!   contact with the leader, and [`super::Cluster::vote_gate`] refuses every vote for the
//!   shard for `election_timeout_max` after a contact — the promise openraft's followers
//!   make after each heartbeat, kept by Shoal because no heartbeat reaches openraft now;
//! * a follower that accepted stops openraft's own election timer for the shard (it would
//!   fire, since openraft hears nothing, and its campaign would depose a live leader).
//!   It campaigns as before through [`super::elections`], which counts beats as contact:
//!   a leader silent for `election_timeout_max` is replaced as quickly as a loud one;
//! * the leader's lease takes the beats a quorum accepted as its evidence, exactly as it
//!   takes acknowledged heartbeats: their *sending* instant ([`super::lease`]), handed
//!   over as soon as the quorum is in (a dead follower's call waits out a whole lease,
//!   and is not waited for). So the lease argument is unchanged: anyone elected needs a
//!   vote from a member that accepted the newest evidence, and that member refuses for
//!   longer than the lease;
//! * anything the shard does wakes it at once: a write (openraft replicates it whatever
//!   the heartbeat setting), a beat refused or not accepted by a quorum, a membership
//!   change, a leadership transfer. A woken shard heartbeats as before and is quiet again
//!   only after another `quiesce_after_ms` without change.
//!
//! This module is the sans-I/O core ([`QuietLeader`], [`accept`], [`Round`], [`Switches`])
//! and the node's loop ([`run`]) that drives it.

use super::Cluster;
use crate::peer::{PeerError, PeerRequest};
use crate::raft::ShardRaft;
use openraft::{ServerState, Vote};
use serde::{Deserialize, Serialize};
use shoal_protocol::ShardId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most beats in one [`PeerRequest::QuietBeats`] (a node refuses more).
pub const QUIET_BEATS_MAX: usize = 1024;
/// Round results that may wait for the loop.
const ROUNDS_QUEUED_MAX: usize = 16;

/// One quiet shard's beat to one follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietBeat {
    /// The shard.
    pub shard: u16,
    /// The Raft member addressed (as in [`PeerRequest::Raft`]).
    pub target: u64,
    /// The leader's vote (committed).
    pub vote: Vote<u64>,
    /// The leader's last log index, which every member has and has applied.
    pub last_index: Option<u64>,
}

/// The switches of openraft's timers for one shard, each turned off for its own
/// reasons: a leadership transfer, a removed replica standing down
/// ([`super::stand_down`]), a quiet shard's leader or follower. openraft's heartbeat and
/// election settings follow from all of them together.
#[derive(Debug, Default)]
pub struct Switches {
    flags: Mutex<Flags>,
}

/// Why a shard's timers are off.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Handing the leadership over: silent, no campaigning.
    pub transferring: bool,
    /// Most likely no longer a replica: no campaigning.
    pub stood_down: bool,
    /// Leader of a quiet shard: no heartbeats (beats instead).
    pub quiet_leader: bool,
    /// Follower of a quiet shard, since the beat that carried this vote: no
    /// election timer (campaigns come from [`super::elections`]).
    pub quiet_follower: Option<Vote<u64>>,
}

impl Flags {
    /// Whether openraft heartbeats.
    pub fn heartbeat(&self) -> bool {
        !self.transferring && !self.quiet_leader
    }

    /// Whether openraft's election timer runs.
    pub fn elect(&self) -> bool {
        !self.transferring && !self.stood_down && self.quiet_follower.is_none()
    }

    /// Whether openraft's core ticks at all (every 1.5 heartbeats, for its election
    /// and heartbeat timers): not while the shard is quiet here, when neither runs.
    pub fn tick(&self) -> bool {
        !self.quiet_leader && self.quiet_follower.is_none()
    }
}

impl Switches {
    /// The flags now.
    pub fn flags(&self) -> Flags {
        *self.flags.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the flags and sets openraft's timers to match (only what changed).
    pub fn update(&self, raft: &ShardRaft, change: impl FnOnce(&mut Flags)) {
        let mut flags = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        let before = *flags;
        change(&mut flags);
        let config = raft.runtime_config();
        if flags.heartbeat() != before.heartbeat() {
            config.heartbeat(flags.heartbeat());
        }
        if flags.elect() != before.elect() {
            config.elect(flags.elect());
        }
        if flags.tick() != before.tick() {
            config.tick(flags.tick());
        }
    }
}

/// What a leader's metrics say, for [`QuietLeader::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    /// This node leads the shard.
    pub leading: bool,
    /// The leader's vote.
    pub vote: Vote<u64>,
    /// Voters (a single voter has no one to heartbeat).
    pub voters: usize,
    /// A joint membership (a change in flight).
    pub joint: bool,
    /// The last log index.
    pub last_index: Option<u64>,
    /// The last applied index.
    pub applied_index: Option<u64>,
    /// Every other member has replicated up to `last_index`.
    pub all_matched: bool,
}

/// One shard's quiet state on its leader (sans I/O).
#[derive(Debug, Clone)]
pub struct QuietLeader {
    after: Duration,
    /// The vote and last index seen, and since when unchanged.
    seen: Option<(Vote<u64>, Option<u64>, Instant)>,
    quiet: bool,
}

impl QuietLeader {
    /// Quiet after `after` without change.
    pub fn new(after: Duration) -> Self {
        QuietLeader {
            after,
            seen: None,
            quiet: false,
        }
    }

    /// Whether the shard is quiet.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Takes in the leader's view at `now`; returns whether the shard is quiet.
    pub fn tick(&mut self, view: &LeaderView, now: Instant) -> bool {
        if !view.leading || view.voters < 2 || view.joint {
            self.seen = None;
            self.quiet = false;
            return false;
        }
        let key = (view.vote, view.last_index);
        match self.seen {
            Some((vote, index, _)) if (vote, index) == key => {}
            _ => {
                self.seen = Some((key.0, key.1, now));
                self.quiet = false;
                return false;
            }
        }
        let settled = view.all_matched && view.applied_index == view.last_index;
        if !settled {
            self.wake(now);
            return false;
        }
        if let Some((_, _, since)) = self.seen
            && now.duration_since(since) >= self.after
        {
            self.quiet = true;
        }
        self.quiet
    }

    /// Wakes the shard (a beat was refused, or not accepted by a quorum): it heartbeats
    /// again and waits `after` before going quiet again.
    pub fn wake(&mut self, now: Instant) {
        self.quiet = false;
        if let Some(seen) = self.seen.as_mut() {
            seen.2 = now;
        }
    }
}

/// What a follower's metrics say, for [`accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerView {
    /// Its Raft state.
    pub state: ServerState,
    /// Its vote.
    pub vote: Vote<u64>,
    /// Its last log index.
    pub last_index: Option<u64>,
    /// Its last applied index.
    pub applied_index: Option<u64>,
}

/// Whether a follower agrees with a beat: it follows the beat's leader in the same
/// committed vote, holds exactly the leader's log and has applied all of it.
pub fn accept(beat: &QuietBeat, view: &FollowerView) -> Result<(), String> {
    if !beat.vote.is_committed() || view.vote != beat.vote {
        return Err(format!(
            "shard {}: this node's vote is {}, the beat's {}",
            beat.shard, view.vote, beat.vote
        ));
    }
    if view.state != ServerState::Follower {
        return Err(format!(
            "shard {}: this node is {:?}, not a follower",
            beat.shard, view.state
        ));
    }
    if view.last_index != beat.last_index || view.applied_index != beat.last_index {
        return Err(format!(
            "shard {}: this node's log ends at {:?} (applied {:?}), the leader's at {:?}",
            beat.shard, view.last_index, view.applied_index, beat.last_index
        ));
    }
    Ok(())
}

/// One round of beats for one shard: who it went to and who accepted.
#[derive(Debug, Clone)]
pub struct Round {
    /// The vote the beats carried.
    pub vote: Vote<u64>,
    /// The last log index the beats carried.
    pub last_index: Option<u64>,
    /// The voters, this node included.
    pub voters: BTreeSet<u64>,
    /// Followers that accepted.
    pub accepted: BTreeSet<u64>,
    /// A follower refused (it disagrees: the shard must wake).
    pub refused: bool,
}

impl Round {
    /// Whether a quorum of voters (this node, `me`, counts) accepted.
    pub fn quorum(&self, me: u64) -> bool {
        let yes = self
            .voters
            .iter()
            .filter(|v| **v == me || self.accepted.contains(v))
            .count();
        yes > self.voters.len() / 2
    }
}

/// A round's outcome, from its task to the loop.
struct RoundDone {
    rounds: BTreeMap<u16, Round>,
}

/// Drives quiet shards on this node until the cluster is dropped: every `heartbeat`,
/// decides which shards this node leads are quiet, sends their beats (one request per
/// follower node), hands accepted rounds to the shards' leases and wakes shards whose
/// beats were refused; and lets go of quiet followers whose leader moved on.
pub async fn run(cluster: Weak<Cluster>, heartbeat: Duration, after: Duration) {
    let (done_tx, mut done_rx) = mpsc::channel::<RoundDone>(ROUNDS_QUEUED_MAX);
    let mut leaders: Vec<QuietLeader> = Vec::new();
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            _ = tick.tick() => None,
            done = done_rx.recv() => done,
        };
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        if leaders.len() != cluster.groups().len() {
            leaders = vec![QuietLeader::new(after); cluster.groups().len()];
        }
        let now = Instant::now();
        if let Some(done) = done {
            settle_round(&cluster, &mut leaders, done, now);
            continue;
        }
        let mut beats: BTreeMap<SocketAddr, Vec<QuietBeat>> = BTreeMap::new();
        let mut rounds: BTreeMap<u16, Round> = BTreeMap::new();
        let mut cores: Vec<(u16, ShardRaft)> = Vec::new();
        for (group, leader) in cluster.groups().iter().zip(leaders.iter_mut()) {
            let flags = group.switches.flags();
            // Borrowed, not cloned: this runs for every shard every heartbeat.
            let metrics = group.raft.metrics();
            let m = metrics.borrow();
            release_follower(group, &flags, m.state, m.vote);
            let membership = m.membership_config.membership();
            let last_index = m.last_log_index;
            let all_matched = m.replication.as_ref().is_some_and(|r| {
                r.iter()
                    .filter(|(id, _)| **id != cluster.me)
                    .all(|(_, matched)| matched.map(|l| l.index) == last_index)
            });
            let view = LeaderView {
                leading: m.state == ServerState::Leader && m.current_leader == Some(cluster.me),
                vote: m.vote,
                voters: membership.voter_ids().count(),
                joint: membership.get_joint_config().len() > 1,
                last_index,
                applied_index: m.last_applied.map(|l| l.index),
                all_matched,
            };
            let quiet = leader.tick(&view, now) && !flags.transferring;
            if flags.quiet_leader != quiet {
                tracing::debug!(shard = %group.shard, quiet, "shard quiet (leader)");
                group
                    .switches
                    .update(&group.raft, |f| f.quiet_leader = quiet);
            }
            if !quiet {
                continue;
            }
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            for id in voters.iter().filter(|id| **id != cluster.me) {
                let Some(addr) = membership
                    .get_node(id)
                    .and_then(|n| n.addr.parse::<SocketAddr>().ok())
                else {
                    continue;
                };
                beats.entry(addr).or_default().push(QuietBeat {
                    shard: group.shard.0,
                    target: *id,
                    vote: m.vote,
                    last_index,
                });
            }
            cores.push((group.shard.0, group.raft.clone()));
            rounds.insert(
                group.shard.0,
                Round {
                    vote: m.vote,
                    last_index,
                    voters,
                    accepted: BTreeSet::new(),
                    refused: false,
                },
            );
        }
        if !rounds.is_empty() {
            let peers = cluster.peers.clone();
            let done_tx = done_tx.clone();
            // A round may take up to a lease: evidence older than that is no evidence.
            let timeout = cluster.lease;
            let me = cluster.me;
            let weak = Arc::downgrade(&cluster);
            tokio::spawn(async move {
                // Each shard's lease takes the round's evidence the moment a quorum has
                // accepted, not when the slowest follower answered: a dead one's call
                // waits out `timeout`, a whole lease, and evidence handed over only then
                // would have run out on arrival.
                let evidence = |shard: u16, term: u64| {
                    if let Some(cluster) = weak.upgrade()
                        && let Some(group) = cluster.group(ShardId(shard))
                    {
                        group.quiet_evidence(term, now);
                    }
                };
                let done = send_round(
                    peers,
                    cores,
                    beats,
                    rounds,
                    (heartbeat, me),
                    timeout,
                    evidence,
                )
                .await;
                let _ = done_tx.send(done).await;
            });
        }
    }
}

/// A follower lets go of a quiet shard (runs its election timer again) once its vote
/// changed, it is no longer a follower, or its leader sent a real append after the last
/// beat (the shard woke).
fn release_follower(
    group: &super::ShardGroup,
    flags: &Flags,
    state: ServerState,
    current: Vote<u64>,
) {
    let Some(vote) = flags.quiet_follower else {
        return;
    };
    if state != ServerState::Follower || current != vote || group.contact.appended_since_beat() {
        tracing::debug!(shard = %group.shard, "shard awake (follower)");
        group
            .switches
            .update(&group.raft, |f| f.quiet_follower = None);
    }
}

/// Sends one round: first asks each shard's Raft core (within `ping`) whether it still
/// holds the vote the beats carry and has committed their index — a core blocked on a stalled disk or a long
/// apply does not answer, and its shard is woken instead of beaten for, so its lease
/// lapses as it would without quiet shards; then every follower node's beats as one
/// request, all at once; collects who accepted what within `timeout`. Calls
/// `evidence(shard, term)` once per shard, as soon as a quorum (`me` counts) accepted
/// its beat (the caller knows when the round was sent: that instant is the evidence).
async fn send_round(
    peers: std::sync::Arc<crate::peer::PeerClient>,
    cores: Vec<(u16, ShardRaft)>,
    mut beats: BTreeMap<SocketAddr, Vec<QuietBeat>>,
    mut rounds: BTreeMap<u16, Round>,
    (ping, me): (Duration, u64),
    timeout: Duration,
    evidence: impl Fn(u16, u64),
) -> RoundDone {
    let pings = cores.into_iter().map(|(shard, raft)| async move {
        let state = raft.with_raft_state(|st| (*st.vote_ref(), st.committed.map(|l| l.index)));
        (shard, tokio::time::timeout(ping, state).await)
    });
    let mut stale = BTreeSet::new();
    for (shard, answer) in futures::future::join_all(pings).await {
        let Some(round) = rounds.get_mut(&shard) else {
            continue;
        };
        match answer {
            Ok(Ok((vote, committed))) if vote == round.vote && committed == round.last_index => {}
            other => {
                tracing::debug!(shard, answer = ?other.map(|r| r.is_ok()), "quiet shard's Raft core did not confirm the beat");
                round.refused = true;
                stale.insert(shard);
            }
        }
    }
    for list in beats.values_mut() {
        list.retain(|b| !stale.contains(&b.shard));
    }
    beats.retain(|_, list| !list.is_empty());
    let mut calls: futures::stream::FuturesUnordered<_> = beats
        .into_iter()
        .map(|(addr, beats)| {
            let peers = peers.clone();
            async move {
                let request = PeerRequest::QuietBeats {
                    beats: beats.clone(),
                };
                let reply = peers
                    .call::<Vec<Result<(), String>>>(addr, &request, timeout)
                    .await;
                (addr, beats, reply)
            }
        })
        .collect();
    let mut quorate = BTreeSet::new();
    while let Some((addr, beats, reply)) = futures::StreamExt::next(&mut calls).await {
        let answers = match reply {
            Ok(answers) if answers.len() == beats.len() => answers,
            Err(PeerError::Unreachable { .. } | PeerError::Timeout { .. }) => {
                // A node that is down just does not count towards a quorum.
                tracing::debug!(%addr, "quiet beats not answered");
                continue;
            }
            other => {
                // It answered, but not with one verdict per beat (a node of a version
                // without quiet shards refuses the request): every shard wakes, so that
                // node hears heartbeats again.
                tracing::debug!(%addr, reply = ?other.map(|a| a.len()), "quiet beats not understood");
                vec![Err("not understood".to_owned()); beats.len()]
            }
        };
        for (beat, answer) in beats.iter().zip(answers) {
            let Some(round) = rounds.get_mut(&beat.shard) else {
                continue;
            };
            match answer {
                Ok(()) => {
                    round.accepted.insert(beat.target);
                }
                Err(why) => {
                    tracing::debug!(shard = beat.shard, %addr, %why, "quiet beat refused");
                    round.refused = true;
                }
            }
            if round.quorum(me) && quorate.insert(beat.shard) {
                evidence(beat.shard, round.vote.leader_id().term);
            }
        }
    }
    RoundDone { rounds }
}

/// Hands a finished round to the shards: a wake-up to those a follower refused or no
/// quorum accepted (the others' leases had the evidence from [`send_round`]).
fn settle_round(cluster: &Cluster, leaders: &mut [QuietLeader], done: RoundDone, now: Instant) {
    for (shard, round) in done.rounds {
        let Some(group) = cluster.group(ShardId(shard)) else {
            continue;
        };
        if round.refused || !round.quorum(cluster.me) {
            if let Some(leader) = leaders.get_mut(usize::from(shard)) {
                leader.wake(now);
            }
            tracing::debug!(%shard, refused = round.refused, "quiet shard woken by its beats");
            group
                .switches
                .update(&group.raft, |f| f.quiet_leader = false);
        }
    }
}

/// Answers beats addressed to this node: each accepted one records contact with the
/// shard's leader (the promise [`super::Cluster::vote_gate`] keeps) and stops openraft's
/// election timer for the shard.
pub fn answer(cluster: &Cluster, beats: &[QuietBeat]) -> Vec<Result<(), String>> {
    if !cluster.quiet {
        // Without the loop that lets go of quiet followers, none may be made here.
        let off = "quiet shards are off on this node (cluster.quiesce_after_ms = 0)";
        return vec![Err(off.to_owned()); beats.len()];
    }
    if beats.len() > QUIET_BEATS_MAX {
        let refused = format!(
            "{} quiet beats in one request, {QUIET_BEATS_MAX} at most",
            beats.len()
        );
        return vec![Err(refused); beats.len()];
    }
    beats
        .iter()
        .map(|beat| {
            let group = cluster.addressed(ShardId(beat.shard), beat.target)?;
            let view = {
                let m = group.raft.metrics();
                let m = m.borrow();
                FollowerView {
                    state: m.state,
                    vote: m.vote,
                    last_index: m.last_log_index,
                    applied_index: m.last_applied.map(|l| l.index),
                }
            };
            accept(beat, &view)?;
            // Contact first: the promise holds before the answer leaves.
            group.contact.beat();
            if group.switches.flags().quiet_follower != Some(beat.vote) {
                tracing::debug!(shard = beat.shard, "shard quiet (follower)");
                group
                    .switches
                    .update(&group.raft, |f| f.quiet_follower = Some(beat.vote));
            }
            Ok(())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn view(index: u64) -> LeaderView {
        LeaderView {
            leading: true,
            vote: Vote::new_committed(3, 1),
            voters: 3,
            joint: false,
            last_index: Some(index),
            applied_index: Some(index),
            all_matched: true,
        }
    }

    #[test]
    fn a_shard_is_quiet_after_a_stretch_without_change_and_wakes_on_any() {
        let t0 = Instant::now();
        let at = |n| t0 + ms(n);
        let mut q = QuietLeader::new(ms(2_000));
        assert!(!q.tick(&view(5), at(0)));
        assert!(!q.tick(&view(5), at(1_999)));
        assert!(q.tick(&view(5), at(2_000)));
        // A write: awake at once, quiet again only a whole stretch later.
        assert!(!q.tick(&view(6), at(2_100)));
        assert!(!q.tick(&view(6), at(4_099)));
        assert!(q.tick(&view(6), at(4_100)));
        // A follower behind, or an entry not applied yet: awake.
        let behind = LeaderView {
            all_matched: false,
            ..view(6)
        };
        assert!(!q.tick(&behind, at(4_200)));
        assert!(!q.tick(&view(6), at(6_199)), "a whole stretch again");
        assert!(q.tick(&view(6), at(6_200)));
        let unapplied = LeaderView {
            applied_index: Some(5),
            ..view(6)
        };
        assert!(!q.tick(&unapplied, at(6_300)));
        // A refused beat.
        assert!(q.tick(&view(6), at(8_300)));
        q.wake(at(8_400));
        assert!(!q.quiet());
        assert!(!q.tick(&view(6), at(10_399)));
        assert!(q.tick(&view(6), at(10_400)));
        // A new term, not leading, a single voter, a membership change: never quiet.
        let new_term = LeaderView {
            vote: Vote::new_committed(4, 1),
            ..view(6)
        };
        assert!(!q.tick(&new_term, at(10_500)));
        for other in [
            LeaderView {
                leading: false,
                ..view(6)
            },
            LeaderView {
                voters: 1,
                ..view(6)
            },
            LeaderView {
                joint: true,
                ..view(6)
            },
        ] {
            let mut q = QuietLeader::new(ms(2_000));
            for n in 0..50 {
                assert!(!q.tick(&other, at(n * 1_000)), "{other:?}");
            }
        }
    }

    fn beat(index: Option<u64>) -> QuietBeat {
        QuietBeat {
            shard: 7,
            target: 2,
            vote: Vote::new_committed(3, 1),
            last_index: index,
        }
    }

    fn follower(index: Option<u64>) -> FollowerView {
        FollowerView {
            state: ServerState::Follower,
            vote: Vote::new_committed(3, 1),
            last_index: index,
            applied_index: index,
        }
    }

    #[test]
    fn a_follower_accepts_only_a_beat_it_agrees_with() {
        assert_eq!(accept(&beat(Some(9)), &follower(Some(9))), Ok(()));
        assert_eq!(accept(&beat(None), &follower(None)), Ok(()));
        let refusals = [
            // Another leader, a newer term, an uncommitted vote.
            FollowerView {
                vote: Vote::new_committed(3, 2),
                ..follower(Some(9))
            },
            FollowerView {
                vote: Vote::new_committed(4, 1),
                ..follower(Some(9))
            },
            FollowerView {
                vote: Vote::new(3, 1),
                ..follower(Some(9))
            },
            // Behind, ahead, not applied.
            follower(Some(8)),
            follower(Some(10)),
            FollowerView {
                applied_index: Some(8),
                ..follower(Some(9))
            },
            // A candidate or learner.
            FollowerView {
                state: ServerState::Candidate,
                ..follower(Some(9))
            },
            FollowerView {
                state: ServerState::Learner,
                ..follower(Some(9))
            },
        ];
        for view in refusals {
            assert!(accept(&beat(Some(9)), &view).is_err(), "{view:?}");
        }
        let uncommitted = QuietBeat {
            vote: Vote::new(3, 1),
            ..beat(Some(9))
        };
        let view = FollowerView {
            vote: Vote::new(3, 1),
            ..follower(Some(9))
        };
        assert!(accept(&uncommitted, &view).is_err());
    }

    #[test]
    fn a_round_needs_a_quorum_of_voters_counting_the_leader() {
        let round = |voters: &[u64], accepted: &[u64]| Round {
            vote: Vote::new_committed(3, 1),
            last_index: Some(9),
            voters: voters.iter().copied().collect(),
            accepted: accepted.iter().copied().collect(),
            refused: false,
        };
        assert!(round(&[1, 2, 3], &[2]).quorum(1));
        assert!(!round(&[1, 2, 3], &[]).quorum(1));
        assert!(!round(&[1, 2, 3, 4, 5], &[2]).quorum(1));
        assert!(round(&[1, 2, 3, 4, 5], &[2, 5]).quorum(1));
        // An acceptance from a non-voter does not count.
        assert!(!round(&[1, 2, 3], &[9]).quorum(1));
    }

    #[test]
    fn the_timers_follow_every_reason_together() {
        let mut f = Flags::default();
        assert!(f.heartbeat() && f.elect() && f.tick());
        f.quiet_leader = true;
        assert!(!f.heartbeat() && f.elect() && !f.tick());
        f.quiet_leader = false;
        f.quiet_follower = Some(Vote::new_committed(3, 1));
        assert!(f.heartbeat() && !f.elect() && !f.tick());
        f.stood_down = true;
        f.quiet_follower = None;
        assert!(f.heartbeat() && !f.elect() && f.tick(), "still stood down");
        f.stood_down = false;
        f.transferring = true;
        assert!(!f.heartbeat() && !f.elect() && f.tick());
    }
}
