//! Sans-I/O shard placement: where each shard's replicas should live, and the reconciler's plan
//! for getting them there.
//!
//! Placement is rendezvous (highest-random-weight) hashing over the cluster members, so a member
//! joining or leaving only moves the replicas that member gains or loses. The reconciler
//! ([`plan`]) runs on every node, once per round, for the shards that node leads. It compares each
//! shard's Raft membership with the desired replica set and issues at most one change per shard:
//! add a missing replica as a learner, promote a learner (swapping out a gone voter), drop a
//! surplus voter, or hand leadership away before the leader itself would be removed, and
//! once the voters are right, hand leadership to an operator's pinned leader. A last step
//! evens out how many shards each node leads (a shard pinned to a leader is left out).
//!
//! An operator's [`Pin`] puts its nodes first in a shard's desired replicas; a pinned node
//! that is down or draining is skipped, so a pin never keeps a shard on a node that
//! cannot hold it.
//!
//! Everything here is pure: membership, Raft state and the time (`now_ms`) come in as values and
//! [`Action`]s come out, so the same input always yields the same plan.
//!
//! Safety rules the plan keeps, whatever the input:
//! * only shards this node leads and that have no membership change in flight get actions;
//! * a voter set it proposes has a live majority, and differs from the current one by at most one
//!   added and one removed voter;
//! * it never removes the leader (itself): it transfers leadership first;
//! * a voter that is down for less than the grace period is never removed (no churn on a blip),
//!   and an alive voter is removed only while more than `replicas` voters are alive.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use ring::digest::{Context, SHA256};

/// A node's id in every shard's Raft group; derived from the node's name and its store's
/// generation by [`raft_id_of`].
pub type RaftId = u64;

/// Leadership balance transfers one node plans per round at most. Each costs its shard
/// a pause of about an election timeout, so a restarted node gets its share back in a
/// few rounds without pausing a large part of the cluster at once.
pub const BALANCE_MOVES_MAX: usize = 8;

/// Domain prefix hashed before a node name, so node ids cannot collide with other hashed ids.
const RAFT_ID_DOMAIN: &[u8] = b"shoal-node:";

/// Stable 64-bit id of a node name (first 8 bytes of SHA-256("shoal-node:" + name), big endian):
/// the id of a store of [`crate::shard::store::GENERATION_LEGACY`].
#[must_use]
pub fn raft_id(name: &str) -> RaftId {
    sha256_prefix_u64(&[RAFT_ID_DOMAIN, name.as_bytes()])
}

/// The Raft id of node `name` on a store of `generation`: a new store (lost, deleted or
/// moved aside) is a new Raft member, never the old voter with an empty log.
/// `SHA-256("shoal-node:" + name + "/" + generation BE)`; the legacy generation keeps
/// [`raft_id`].
#[must_use]
pub fn raft_id_of(name: &str, generation: u64) -> RaftId {
    if generation == crate::shard::store::GENERATION_LEGACY {
        return raft_id(name);
    }
    sha256_prefix_u64(&[
        RAFT_ID_DOMAIN,
        name.as_bytes(),
        b"/",
        &generation.to_be_bytes(),
    ])
}

/// What membership (gossip) says about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The member's Raft id.
    pub id: RaftId,
    /// Whether gossip currently considers the member alive.
    pub alive: bool,
    /// When the member was first seen down (ignored while `alive`); `None` while down means
    /// "down since forever".
    pub down_since_ms: Option<u64>,
    /// The operator asked this member to give up its replicas and leaderships.
    pub draining: bool,
}

/// Rendezvous (highest-random-weight) hashing: the `replicas` members with the highest
/// weight(shard, id) among `candidates`, ordered by weight descending. Weight = first 8 bytes of
/// SHA-256(shard BE ++ id BE). Fewer candidates than replicas → all of them. Duplicate candidates
/// count once; equal weights are ordered by ascending id.
#[must_use]
pub fn rendezvous(
    shard: u16,
    candidates: impl IntoIterator<Item = RaftId>,
    replicas: usize,
) -> Vec<RaftId> {
    let unique: BTreeSet<RaftId> = candidates.into_iter().collect();
    let mut weighted: Vec<(Reverse<u64>, RaftId)> = unique
        .into_iter()
        .map(|id| (Reverse(rendezvous_weight(shard, id)), id))
        .collect();
    weighted.sort_unstable();
    weighted.truncate(replicas);
    weighted.into_iter().map(|(_, id)| id).collect()
}

/// The desired replica set of a shard: rendezvous over alive, non-draining members.
///
/// [`plan`] additionally keeps members that are down for less than the grace period as
/// candidates, so that a short blip does not move replicas.
#[must_use]
pub fn desired_replicas(shard: u16, members: &[MemberState], replicas: usize) -> Vec<RaftId> {
    rendezvous(
        shard,
        members
            .iter()
            .filter(|m| m.alive && !m.draining)
            .map(|m| m.id),
        replicas,
    )
}

/// A shard's desired replicas under an operator's pin: the pinned `candidates`
/// (leader-to-be first), then rendezvous over the other candidates, `replicas` in all.
#[must_use]
pub fn desired_with_pin(
    shard: u16,
    candidates: &BTreeSet<RaftId>,
    pin: &Pin,
    replicas: usize,
) -> Vec<RaftId> {
    let mut desired: Vec<RaftId> = Vec::with_capacity(replicas);
    for id in pin.leader.iter().chain(&pin.replicas) {
        if desired.len() < replicas && candidates.contains(id) && !desired.contains(id) {
            desired.push(*id);
        }
    }
    let others = candidates
        .iter()
        .copied()
        .filter(|id| !desired.contains(id));
    let rest = rendezvous(shard, others, replicas - desired.len());
    desired.extend(rest);
    desired
}

/// One shard's Raft membership as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardState {
    /// The shard id (0..shard_count).
    pub shard: u16,
    /// Current voters of the shard's Raft group.
    pub voters: BTreeSet<RaftId>,
    /// Current learners (non-voting replicas catching up).
    pub learners: BTreeSet<RaftId>,
    /// Current Raft leader, if known.
    pub leader: Option<RaftId>,
    /// A membership change is in flight (joint config or uncommitted): plan nothing for this shard.
    pub changing: bool,
    /// The operator's pin, in Raft ids (names no member has are left out).
    pub pin: Pin,
}

/// An operator's pin of a shard ([`shoal_protocol::admin::ShardPin`]) in Raft ids: the
/// pinned nodes come first in the shard's desired replicas, leader-to-be first, and a
/// pinned leader is handed the leadership. A pinned node that is down or draining is
/// skipped (automatic placement fills its slot), so a pin never holds a shard hostage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    /// The node that should lead.
    pub leader: Option<RaftId>,
    /// The nodes that should hold replicas.
    pub replicas: Vec<RaftId>,
}

/// One change the reconciler wants applied to a shard's Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add `node` as a learner (it gets the log / a snapshot) before it can become a voter.
    AddLearner {
        /// The shard to change.
        shard: u16,
        /// The node to add as a learner.
        node: RaftId,
    },
    /// Replace the voter set with `voters` (openraft change_membership, joint consensus underneath).
    SetVoters {
        /// The shard to change.
        shard: u16,
        /// The complete new voter set.
        voters: BTreeSet<RaftId>,
    },
    /// Ask `to` (a caught-up voter) to take leadership of the shard.
    TransferLeader {
        /// The shard whose leadership moves.
        shard: u16,
        /// The voter that should become leader.
        to: RaftId,
        /// Why: a needed move waits for running turns (bounded), a balance move only
        /// happens between turns.
        why: TransferWhy,
    },
}

/// Why a leadership transfer is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferWhy {
    /// This node is draining.
    Drain,
    /// This node is no longer a desired replica of the shard.
    Placement,
    /// Leaderships are evened out across nodes.
    Balance,
    /// An operator pinned the shard's leadership to the target.
    Pinned,
}

/// Everything one reconciler round looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// This node's id. It is always considered alive (it is running this code), even when it is
    /// missing from `members` or gossip still reports it down.
    pub me: RaftId,
    /// Current time, in the same clock as `MemberState::down_since_ms`.
    pub now_ms: u64,
    /// Desired number of voters per shard; 0 plans nothing.
    pub replicas: usize,
    /// How long a member must be down before its replicas are moved.
    pub grace_ms: u64,
    /// Membership as gossip sees it; empty means "no gossip yet" and plans nothing. If an id
    /// appears more than once, the last entry wins.
    pub members: &'a [MemberState],
    /// The shards this node leads (others are ignored). If a shard appears more than once, only
    /// its first entry is used.
    pub shards: &'a [ShardState],
    /// How many shards each node leads as far as this node knows (for leadership
    /// balance): see [`leader_counts`]. A node holds replicas of some shards only, so the
    /// reconciler takes the other nodes' counts from what they gossip.
    pub led: &'a BTreeMap<RaftId, usize>,
    /// Whether a leadership balance transfer may be planned this round (the reconciler
    /// holds balance back for a while after any transfer, so several leaders acting on
    /// each other's stale counts do not bounce leaderships around).
    pub balance: bool,
}

/// The reconciler's decisions for one round (deterministic for equal input).
///
/// At most one action per shard, in ascending shard order, followed by at most
/// [`BALANCE_MOVES_MAX`] leadership balance transfers (of other shards). See the module
/// documentation for the safety rules.
#[must_use]
pub fn plan(input: &PlanInput<'_>) -> Vec<Action> {
    if input.members.is_empty() || input.replicas == 0 {
        return Vec::new();
    }
    let view = View::new(input);

    let mut by_shard: BTreeMap<u16, &ShardState> = BTreeMap::new();
    for state in input.shards {
        by_shard.entry(state.shard).or_insert(state);
    }
    let mine: Vec<(&ShardState, Vec<RaftId>)> = by_shard
        .into_values()
        .filter(|state| state.leader == Some(input.me) && !state.changing)
        .map(|state| (state, view.desired(state)))
        .collect();

    let mut actions = Vec::new();
    let mut acted = BTreeSet::new();
    for (state, desired) in &mine {
        if let Some(action) = view.plan_shard(state, desired) {
            acted.insert(state.shard);
            actions.push(action);
        }
    }
    if input.balance {
        actions.extend(view.balance(&mine, &acted, input.led));
    }
    actions
}

/// How many shards each node leads.
#[must_use]
pub fn leader_counts(leaders: &BTreeMap<u16, RaftId>) -> BTreeMap<RaftId, usize> {
    let mut counts = BTreeMap::new();
    for leader in leaders.values() {
        *counts.entry(*leader).or_insert(0) += 1;
    }
    counts
}

/// The rendezvous weight of `id` for `shard`.
fn rendezvous_weight(shard: u16, id: RaftId) -> u64 {
    sha256_prefix_u64(&[&shard.to_be_bytes(), &id.to_be_bytes()])
}

/// The first 8 bytes, big endian, of SHA-256 over the concatenation of `parts`.
fn sha256_prefix_u64(parts: &[&[u8]]) -> u64 {
    let mut context = Context::new(&SHA256);
    for part in parts {
        context.update(part);
    }
    let digest = context.finish();
    let mut prefix = [0u8; 8];
    for (dst, src) in prefix.iter_mut().zip(digest.as_ref()) {
        *dst = *src;
    }
    u64::from_be_bytes(prefix)
}

/// A member's state as far as placement cares, in the order voters are removed (first = first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Health {
    /// Down for at least the grace period, unknown, or down while draining: gone, not alive.
    Dead,
    /// Alive but draining: gone, though it still counts toward a quorum.
    Draining,
    /// Alive and not draining.
    Alive,
    /// Down for less than the grace period: kept where it is.
    Suspect,
}

impl Health {
    /// Counts toward a live majority.
    fn is_alive(self) -> bool {
        matches!(self, Self::Alive | Self::Draining)
    }

    /// Its replicas should move elsewhere.
    fn is_gone(self) -> bool {
        matches!(self, Self::Dead | Self::Draining)
    }

    /// May hold replicas: a candidate for the desired set.
    fn is_placeable(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

/// Membership digested once per round.
struct View {
    me: RaftId,
    replicas: usize,
    health: BTreeMap<RaftId, Health>,
}

impl View {
    fn new(input: &PlanInput<'_>) -> Self {
        let mut health = BTreeMap::new();
        for member in input.members {
            let down_ms = member
                .down_since_ms
                .map_or(u64::MAX, |since| input.now_ms.saturating_sub(since));
            let state = match (member.alive, member.draining) {
                (true, true) => Health::Draining,
                (true, false) => Health::Alive,
                (false, true) => Health::Dead,
                (false, false) if down_ms >= input.grace_ms => Health::Dead,
                (false, false) => Health::Suspect,
            };
            health.insert(member.id, state);
        }
        // This code runs on `me`, so `me` is alive whatever gossip says about it.
        let me_draining = input
            .members
            .iter()
            .rev()
            .find(|m| m.id == input.me)
            .is_some_and(|m| m.draining);
        let me_state = if me_draining {
            Health::Draining
        } else {
            Health::Alive
        };
        health.insert(input.me, me_state);
        Self {
            me: input.me,
            replicas: input.replicas,
            health,
        }
    }

    fn health(&self, id: RaftId) -> Health {
        self.health.get(&id).copied().unwrap_or(Health::Dead)
    }

    /// D: [`desired_with_pin`] over the members that may hold replicas (alive or within
    /// grace, not draining).
    fn desired(&self, state: &ShardState) -> Vec<RaftId> {
        let placeable: BTreeSet<RaftId> = self
            .health
            .iter()
            .filter(|(_, health)| health.is_placeable())
            .map(|(id, _)| *id)
            .collect();
        desired_with_pin(state.shard, &placeable, &state.pin, self.replicas)
    }

    fn has_live_majority(&self, voters: &BTreeSet<RaftId>) -> bool {
        let alive = voters
            .iter()
            .filter(|id| self.health(**id).is_alive())
            .count();
        alive * 2 > voters.len()
    }

    fn plan_shard(&self, state: &ShardState, desired: &[RaftId]) -> Option<Action> {
        if self.health(self.me) == Health::Draining
            && let Some(to) = self.drain_target(state, desired)
        {
            return Some(Action::TransferLeader {
                shard: state.shard,
                to,
                why: TransferWhy::Drain,
            });
        }
        self.add_learner(state, desired)
            .or_else(|| self.promote_learner(state, desired))
            .or_else(|| self.remove_voter(state, desired))
            .or_else(|| self.pinned_leader(state))
    }

    /// Rule 8: once the voters are settled, hand the leadership to the pinned leader if
    /// it is an alive voter.
    fn pinned_leader(&self, state: &ShardState) -> Option<Action> {
        let to = state.pin.leader?;
        (to != self.me && state.voters.contains(&to) && self.health(to) == Health::Alive).then_some(
            Action::TransferLeader {
                shard: state.shard,
                to,
                why: TransferWhy::Pinned,
            },
        )
    }

    /// Rule 1: the first alive desired node that is neither voter nor learner becomes a learner.
    fn add_learner(&self, state: &ShardState, desired: &[RaftId]) -> Option<Action> {
        desired
            .iter()
            .copied()
            .find(|id| {
                self.health(*id).is_alive()
                    && !state.voters.contains(id)
                    && !state.learners.contains(id)
            })
            .map(|node| Action::AddLearner {
                shard: state.shard,
                node,
            })
    }

    /// Rule 2: promote the first alive desired learner, swapping out one gone voter if the voter
    /// count would otherwise exceed `replicas`.
    fn promote_learner(&self, state: &ShardState, desired: &[RaftId]) -> Option<Action> {
        for learner in desired {
            if !state.learners.contains(learner)
                || state.voters.contains(learner)
                || !self.health(*learner).is_alive()
            {
                continue;
            }
            let mut voters = state.voters.clone();
            voters.insert(*learner);
            if voters.len() > self.replicas
                && let Some(gone) = self
                    .removal_order(state)
                    .into_iter()
                    .find(|id| self.health(*id).is_gone())
            {
                voters.remove(&gone);
            }
            if self.has_live_majority(&voters) {
                return Some(Action::SetVoters {
                    shard: state.shard,
                    voters,
                });
            }
        }
        None
    }

    /// Rule 3: drop one voter outside the desired set, or hand leadership away if the voter to
    /// drop is this node.
    fn remove_voter(&self, state: &ShardState, desired: &[RaftId]) -> Option<Action> {
        let count = state.voters.len();
        let alive = state
            .voters
            .iter()
            .filter(|id| self.health(**id).is_alive())
            .count();
        let desired_all_voters = desired.iter().all(|id| state.voters.contains(id));
        let may_remove = |id: RaftId| match self.health(id) {
            Health::Dead => count > self.replicas,
            // Removing an alive voter must leave at least `replicas` alive voters.
            Health::Draining => alive > self.replicas,
            Health::Alive => desired_all_voters && alive > self.replicas,
            Health::Suspect => false,
        };
        let without = |id: RaftId| {
            let mut voters = state.voters.clone();
            voters.remove(&id);
            voters
        };

        for id in self.removal_order(state) {
            if desired.contains(&id) || !may_remove(id) {
                continue;
            }
            let voters = without(id);
            if self.has_live_majority(&voters) {
                return Some(Action::SetVoters {
                    shard: state.shard,
                    voters,
                });
            }
        }

        let me = self.me;
        if state.voters.contains(&me)
            && !desired.contains(&me)
            && may_remove(me)
            && self.has_live_majority(&without(me))
        {
            return self
                .desired_voter(state, desired)
                .map(|to| Action::TransferLeader {
                    shard: state.shard,
                    to,
                    why: TransferWhy::Placement,
                });
        }
        None
    }

    /// Voters other than me, in the order they should be removed: dead, draining, alive,
    /// suspect; lowest rendezvous weight first within each.
    fn removal_order(&self, state: &ShardState) -> Vec<RaftId> {
        let mut order: Vec<(Health, u64, RaftId)> = state
            .voters
            .iter()
            .copied()
            .filter(|id| *id != self.me)
            .map(|id| (self.health(id), rendezvous_weight(state.shard, id), id))
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, _, id)| id).collect()
    }

    /// The best alive, non-draining voter in the desired set (highest rendezvous weight).
    fn desired_voter(&self, state: &ShardState, desired: &[RaftId]) -> Option<RaftId> {
        desired.iter().copied().find(|id| {
            *id != self.me && state.voters.contains(id) && self.health(*id) == Health::Alive
        })
    }

    /// Rule 7: where a draining leader sends the shard: the best desired voter, else the alive,
    /// non-draining voter with the highest rendezvous weight.
    fn drain_target(&self, state: &ShardState, desired: &[RaftId]) -> Option<RaftId> {
        self.desired_voter(state, desired).or_else(|| {
            state
                .voters
                .iter()
                .copied()
                .filter(|id| *id != self.me && self.health(*id) == Health::Alive)
                .max_by_key(|id| (rendezvous_weight(state.shard, *id), Reverse(*id)))
        })
    }

    /// Rule 6: if this node leads more than its share, hand its lowest untouched shards
    /// to alive desired voters that lead fewer than their share, least-loaded first, at
    /// most [`BALANCE_MOVES_MAX`] per round. Every overloaded node plans from the same
    /// counts in the same round, so each fills only its part of a node's deficit (the
    /// deficit divided among the overloaded nodes, at least one): together they fill it
    /// without piling onto it.
    fn balance(
        &self,
        mine: &[(&ShardState, Vec<RaftId>)],
        acted: &BTreeSet<u16>,
        led: &BTreeMap<RaftId, usize>,
    ) -> Vec<Action> {
        if self.health(self.me) != Health::Alive {
            return Vec::new();
        }
        let alive: Vec<RaftId> = self
            .health
            .iter()
            .filter(|(_, health)| **health == Health::Alive)
            .map(|(id, _)| *id)
            .collect();
        let target = led.values().sum::<usize>().div_ceil(alive.len().max(1));
        let load = |id: RaftId| led.get(&id).copied().unwrap_or(0);
        let excess = load(self.me).saturating_sub(target).min(BALANCE_MOVES_MAX);
        let overloaded = alive.iter().filter(|id| load(**id) > target).count().max(1);
        // How many this node may give `id`: its part of `id`'s deficit.
        let room = |id: RaftId| match target.saturating_sub(load(id)) {
            0 => 0,
            deficit => (deficit / overloaded).max(1),
        };
        let mut given: BTreeMap<RaftId, usize> = BTreeMap::new();
        let got =
            |given: &BTreeMap<RaftId, usize>, id: RaftId| given.get(&id).copied().unwrap_or(0);
        let mut moves = Vec::new();
        // A shard pinned to its leader stays.
        let candidates = mine
            .iter()
            .filter(|(state, _)| !acted.contains(&state.shard) && state.pin.leader.is_none());
        for (state, desired) in candidates {
            if moves.len() == excess {
                break;
            }
            let to = state
                .voters
                .iter()
                .copied()
                .filter(|id| {
                    *id != self.me
                        && self.health(*id) == Health::Alive
                        && desired.contains(id)
                        && got(&given, *id) < room(*id)
                })
                .min_by_key(|id| (load(*id) + got(&given, *id), *id));
            if let Some(to) = to {
                *given.entry(to).or_default() += 1;
                moves.push(Action::TransferLeader {
                    shard: state.shard,
                    to,
                    why: TransferWhy::Balance,
                });
            }
        }
        moves
    }
}

#[cfg(test)]
mod tests;
