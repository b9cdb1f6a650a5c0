use super::*;
use proptest::prelude::*;

const NOW_MS: u64 = 10_000_000;
const GRACE_MS: u64 = 30_000;
const REPLICAS: usize = 3;
const SHARD_COUNT: u16 = 64;

fn n(index: u32) -> RaftId {
    raft_id(&format!("n{index}"))
}

fn up(id: RaftId) -> MemberState {
    MemberState {
        id,
        alive: true,
        down_since_ms: None,
        draining: false,
    }
}

fn down_for(id: RaftId, down_ms: u64) -> MemberState {
    MemberState {
        id,
        alive: false,
        down_since_ms: Some(NOW_MS - down_ms),
        draining: false,
    }
}

fn draining(id: RaftId) -> MemberState {
    MemberState {
        draining: true,
        ..up(id)
    }
}

fn set(ids: &[RaftId]) -> BTreeSet<RaftId> {
    ids.iter().copied().collect()
}

fn shard(id: u16, voters: &[RaftId], learners: &[RaftId], leader: RaftId) -> ShardState {
    ShardState {
        shard: id,
        voters: set(voters),
        learners: set(learners),
        leader: Some(leader),
        changing: false,
        pin: Pin::default(),
    }
}

fn run(me: RaftId, members: &[MemberState], shards: &[ShardState]) -> Vec<Action> {
    let leaders: BTreeMap<u16, RaftId> = shards
        .iter()
        .filter_map(|s| s.leader.map(|leader| (s.shard, leader)))
        .collect();
    plan(&PlanInput {
        me,
        now_ms: NOW_MS,
        replicas: REPLICAS,
        grace_ms: GRACE_MS,
        members,
        shards,
        led: &leader_counts(&leaders),
        balance: true,
    })
}

#[test]
fn raft_id_is_pinned_and_distinct() {
    assert_eq!(raft_id("n1"), 0xb315_74c3_e541_da8e);
    assert_eq!(raft_id("node-a"), 0x547b_9887_e6e8_cdef);
    assert_eq!(rendezvous_weight(7, 42), 0xabce_24b5_57da_3c2f);
    let ids: BTreeSet<RaftId> = (1..=100).map(n).collect();
    assert_eq!(ids.len(), 100, "raft ids of n1..n100 collide");
}

#[test]
fn rendezvous_is_deterministic_and_distinct() {
    let nodes: Vec<RaftId> = (1..=10).map(n).collect();
    for shard in 0..SHARD_COUNT {
        let picked = rendezvous(shard, nodes.iter().copied(), REPLICAS);
        let reversed = rendezvous(shard, nodes.iter().rev().copied(), REPLICAS);
        assert_eq!(
            picked, reversed,
            "shard {shard}: order of candidates matters"
        );
        assert_eq!(set(&picked).len(), REPLICAS, "shard {shard}: {picked:?}");
        let weights: Vec<u64> = picked
            .iter()
            .map(|id| rendezvous_weight(shard, *id))
            .collect();
        assert!(
            weights.is_sorted_by(|a, b| a >= b),
            "shard {shard}: not by weight"
        );
    }
    assert_eq!(rendezvous(3, [n(1), n(2)], REPLICAS).len(), 2);
    assert_eq!(rendezvous(3, [n(1), n(1), n(2)], REPLICAS).len(), 2);
    assert!(rendezvous(3, [], REPLICAS).is_empty());
}

#[test]
fn rendezvous_removal_moves_only_the_removed_members_placements() {
    let nodes: Vec<RaftId> = (1..=10).map(n).collect();
    let removed = n(4);
    for shard in 0..1024 {
        let before = rendezvous(shard, nodes.iter().copied(), REPLICAS);
        let after = rendezvous(
            shard,
            nodes.iter().copied().filter(|id| *id != removed),
            REPLICAS,
        );
        let kept: Vec<RaftId> = before.iter().copied().filter(|id| *id != removed).collect();
        if before.contains(&removed) {
            assert!(
                kept.iter().all(|id| after.contains(id)),
                "shard {shard}: {before:?} -> {after:?} moved more than the removed member"
            );
        } else {
            assert_eq!(
                before, after,
                "shard {shard} changed without holding the member"
            );
        }
    }
}

#[test]
fn rendezvous_addition_moves_about_one_nth() {
    let nodes: Vec<RaftId> = (1..=10).map(n).collect();
    let added = n(11);
    let mut moved = 0usize;
    for shard in 0..1024 {
        let before = set(&rendezvous(shard, nodes.iter().copied(), REPLICAS));
        let after = set(&rendezvous(
            shard,
            nodes.iter().copied().chain([added]),
            REPLICAS,
        ));
        let new: Vec<&RaftId> = after.difference(&before).collect();
        assert!(
            new.iter().all(|id| **id == added),
            "shard {shard}: placements moved between old members"
        );
        moved += new.len();
    }
    // Expected 1024 * 3 / 11 ≈ 279 of the 3072 placements.
    let expected = 1024 * REPLICAS / 11;
    assert!(
        moved > expected / 2 && moved < expected * 3 / 2,
        "adding one member to ten moved {moved} placements, expected about {expected}"
    );
}

#[test]
fn rendezvous_spreads_replicas() {
    // Each of 5 nodes should hold about 3/5 = 60% of the 64 shards.
    let nodes: Vec<RaftId> = (1..=5).map(n).collect();
    let mut held: BTreeMap<RaftId, usize> = BTreeMap::new();
    let mut first: BTreeMap<RaftId, usize> = BTreeMap::new();
    for shard in 0..SHARD_COUNT {
        let picked = rendezvous(shard, nodes.iter().copied(), REPLICAS);
        for id in &picked {
            *held.entry(*id).or_insert(0) += 1;
        }
        if let Some(top) = picked.first() {
            *first.entry(*top).or_insert(0) += 1;
        }
    }
    let shards = usize::from(SHARD_COUNT);
    for id in &nodes {
        let count = held.get(id).copied().unwrap_or(0);
        assert!(
            count * 100 >= shards * 45 && count * 100 <= shards * 75,
            "node {id:#x} holds {count} of {shards} shards, expected 45%..75%"
        );
        let top = first.get(id).copied().unwrap_or(0);
        assert!(
            top * 100 >= shards * 5 && top * 100 <= shards * 40,
            "node {id:#x} is first choice for {top} of {shards} shards, expected 5%..40%"
        );
    }
}

/// One row of the single-round plan table.
struct Case {
    name: &'static str,
    me: RaftId,
    members: Vec<MemberState>,
    shards: Vec<ShardState>,
    expected: Vec<Action>,
}

#[test]
fn plan_table() {
    let (n1, n2, n3, n4) = (n(1), n(2), n(3), n(4));
    let healthy = vec![up(n1), up(n2), up(n3)];
    let three = [n1, n2, n3];
    let best_of_n2_n3 = rendezvous(0, [n2, n3], 1)[0];
    let cases = vec![
        Case {
            name: "healthy 3-node shard",
            me: n1,
            members: healthy.clone(),
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
        Case {
            name: "no gossip yet",
            me: n1,
            members: vec![],
            shards: vec![shard(0, &[n1], &[], n1)],
            expected: vec![],
        },
        Case {
            name: "voter down within grace",
            me: n1,
            members: vec![up(n1), up(n2), down_for(n3, GRACE_MS - 1)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
        Case {
            name: "voter down past grace, spare: add the spare as learner",
            me: n1,
            members: vec![up(n1), up(n2), down_for(n3, GRACE_MS), up(n4)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![Action::AddLearner { shard: 0, node: n4 }],
        },
        Case {
            name: "voter down past grace, learner caught up: swap it in",
            me: n1,
            members: vec![up(n1), up(n2), down_for(n3, GRACE_MS), up(n4)],
            shards: vec![shard(0, &three, &[n4], n1)],
            expected: vec![Action::SetVoters {
                shard: 0,
                voters: set(&[n1, n2, n4]),
            }],
        },
        Case {
            name: "voter down past grace, no spare: keep 3 voters",
            me: n1,
            members: vec![up(n1), up(n2), down_for(n3, GRACE_MS * 10)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
        Case {
            name: "two voters dead, no spare: nothing can keep quorum",
            me: n1,
            members: vec![up(n1), down_for(n2, GRACE_MS), down_for(n3, GRACE_MS)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
        Case {
            name: "draining leader hands over",
            me: n1,
            members: vec![draining(n1), up(n2), up(n3)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![Action::TransferLeader {
                shard: 0,
                to: best_of_n2_n3,
                why: TransferWhy::Drain,
            }],
        },
        Case {
            name: "draining voter with a spare: add the spare",
            me: n1,
            members: vec![up(n1), up(n2), draining(n3), up(n4)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![Action::AddLearner { shard: 0, node: n4 }],
        },
        Case {
            name: "draining voter with a caught-up spare: swap",
            me: n1,
            members: vec![up(n1), up(n2), draining(n3), up(n4)],
            shards: vec![shard(0, &three, &[n4], n1)],
            expected: vec![Action::SetVoters {
                shard: 0,
                voters: set(&[n1, n2, n4]),
            }],
        },
        Case {
            name: "draining voter without a spare stays (replicas alive floor)",
            me: n1,
            members: vec![up(n1), up(n2), draining(n3)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
        Case {
            name: "unknown voter counts as gone",
            me: n1,
            members: vec![up(n1), up(n2), up(n4)],
            shards: vec![shard(0, &three, &[n4], n1)],
            expected: vec![Action::SetVoters {
                shard: 0,
                voters: set(&[n1, n2, n4]),
            }],
        },
        Case {
            name: "dead surplus voter removed",
            me: n1,
            members: vec![up(n1), up(n2), up(n3), down_for(n4, GRACE_MS)],
            shards: vec![shard(0, &[n1, n2, n3, n4], &[], n1)],
            expected: vec![Action::SetVoters {
                shard: 0,
                voters: set(&three),
            }],
        },
        Case {
            name: "suspect surplus voter kept",
            me: n1,
            members: vec![up(n1), up(n2), up(n3), down_for(n4, 1)],
            shards: vec![shard(0, &[n1, n2, n3, n4], &[], n1)],
            expected: vec![],
        },
        Case {
            name: "not my shard / changing shard",
            me: n1,
            members: vec![up(n1), up(n2), down_for(n3, GRACE_MS), up(n4)],
            shards: vec![
                shard(0, &three, &[], n2),
                ShardState {
                    changing: true,
                    ..shard(1, &three, &[], n1)
                },
            ],
            expected: vec![],
        },
        Case {
            name: "me missing from gossip is still alive",
            me: n1,
            members: vec![up(n2), up(n3)],
            shards: vec![shard(0, &three, &[], n1)],
            expected: vec![],
        },
    ];
    for case in cases {
        let actual = run(case.me, &case.members, &case.shards);
        assert_eq!(actual, case.expected, "case: {}", case.name);
    }
}

#[test]
fn blip_with_a_spare_moves_nothing() {
    let (n1, n2, n3, n4) = (n(1), n(2), n(3), n(4));
    let stays = set(&[n1, n2, n3]);
    let mut checked = 0;
    for id in 0..SHARD_COUNT {
        if set(&rendezvous(id, [n1, n2, n3, n4], REPLICAS)) != stays {
            continue;
        }
        let members = [up(n1), up(n2), down_for(n3, GRACE_MS - 1), up(n4)];
        let actions = run(n1, &members, &[shard(id, &[n1, n2, n3], &[], n1)]);
        assert_eq!(actions, vec![], "shard {id}: a blip moved replicas");
        checked += 1;
    }
    assert!(checked > 0, "no shard keeps n1..n3 among n1..n4");
}

#[test]
fn leader_outside_desired_transfers_before_removal() {
    let (n1, n2, n3, n4) = (n(1), n(2), n(3), n(4));
    let members = [up(n1), up(n2), up(n3), up(n4)];
    let id = (0..SHARD_COUNT)
        .find(|s| !rendezvous(*s, [n1, n2, n3, n4], REPLICAS).contains(&n1))
        .expect("some shard excludes n1");
    let desired = rendezvous(id, [n1, n2, n3, n4], REPLICAS);
    let actions = run(n1, &members, &[shard(id, &[n1, n2, n3, n4], &[], n1)]);
    assert_eq!(
        actions,
        vec![Action::TransferLeader {
            shard: id,
            to: desired[0],
            why: TransferWhy::Placement,
        }]
    );
}

/// A cluster model that applies every node's plan each round, like the real reconcilers would.
struct Sim {
    members: Vec<MemberState>,
    shards: BTreeMap<u16, ShardState>,
}

impl Sim {
    fn new(nodes: &[RaftId], voters: &[RaftId], leader: impl Fn(u16) -> RaftId) -> Self {
        Self {
            members: nodes.iter().map(|id| up(*id)).collect(),
            shards: (0..SHARD_COUNT)
                .map(|id| (id, shard(id, voters, &[], leader(id))))
                .collect(),
        }
    }

    fn alive(&self, id: RaftId) -> bool {
        self.members.iter().any(|m| m.id == id && m.alive)
    }

    fn leaders(&self) -> BTreeMap<u16, RaftId> {
        self.shards
            .iter()
            .filter_map(|(id, s)| s.leader.map(|leader| (*id, leader)))
            .collect()
    }

    fn live_majority(&self, voters: &BTreeSet<RaftId>) -> bool {
        voters.iter().filter(|id| self.alive(**id)).count() * 2 > voters.len()
    }

    /// One round; returns how many actions were applied.
    fn step(&mut self) -> usize {
        // Raft elects a new leader where the old one died.
        for state in self.shards.values_mut() {
            let leader_alive = state
                .leader
                .is_some_and(|l| self.members.iter().any(|m| m.id == l && m.alive));
            if !leader_alive {
                state.leader = state
                    .voters
                    .iter()
                    .copied()
                    .find(|v| self.members.iter().any(|m| m.id == *v && m.alive));
            }
        }
        let leaders = self.leaders();
        let mut actions = Vec::new();
        for member in self.members.iter().filter(|m| m.alive) {
            let mine: Vec<ShardState> = self
                .shards
                .values()
                .filter(|s| s.leader == Some(member.id))
                .cloned()
                .collect();
            actions.extend(plan(&PlanInput {
                me: member.id,
                now_ms: NOW_MS,
                replicas: REPLICAS,
                grace_ms: GRACE_MS,
                members: &self.members,
                shards: &mine,
                led: &leader_counts(&leaders),
                balance: true,
            }));
        }
        for action in &actions {
            self.apply(action);
        }
        actions.len()
    }

    fn apply(&mut self, action: &Action) {
        let shard_id = match action {
            Action::AddLearner { shard, .. }
            | Action::SetVoters { shard, .. }
            | Action::TransferLeader { shard, .. } => *shard,
        };
        let alive: BTreeSet<RaftId> = self
            .members
            .iter()
            .filter(|m| m.alive)
            .map(|m| m.id)
            .collect();
        let majority = match action {
            Action::SetVoters { voters, .. } => self.live_majority(voters),
            _ => true,
        };
        let state = self
            .shards
            .get_mut(&shard_id)
            .expect("planned shard exists");
        match action {
            Action::AddLearner { node, .. } => {
                assert!(alive.contains(node), "{action:?}: learner is down");
                state.learners.insert(*node);
            }
            Action::SetVoters { voters, .. } => {
                assert!(majority, "{action:?}: no live majority");
                assert!(
                    state.leader.is_some_and(|l| voters.contains(&l)),
                    "{action:?}: removes the leader {:?}",
                    state.leader
                );
                state.voters = voters.clone();
                state.learners.retain(|l| !voters.contains(l));
            }
            Action::TransferLeader { to, .. } => {
                assert!(state.voters.contains(to), "{action:?}: target not a voter");
                assert!(alive.contains(to), "{action:?}: target is down");
                state.leader = Some(*to);
            }
        }
    }

    fn converged(&self) -> bool {
        self.shards
            .iter()
            .all(|(id, s)| s.voters == set(&desired_replicas(*id, &self.members, REPLICAS)))
    }

    /// Runs rounds until no node plans anything; returns the rounds used.
    fn run_to_fixpoint(&mut self, rounds_max: usize) -> usize {
        for round in 1..=rounds_max {
            if self.step() == 0 {
                return round;
            }
        }
        panic!("no fixpoint after {rounds_max} rounds");
    }
}

#[test]
fn joining_node_gets_a_share() {
    let nodes: Vec<RaftId> = (1..=3).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes, |id| nodes[usize::from(id) % 3]);
    sim.members.push(up(n(4)));
    let converged_at = (1..=10).find(|_| {
        sim.step();
        sim.converged()
    });
    assert!(
        converged_at.is_some(),
        "voters did not reach D within 10 rounds"
    );
    sim.run_to_fixpoint(100);
    assert!(sim.converged(), "fixpoint differs from D");
    let counts = leader_counts(&sim.leaders());
    let held = sim
        .shards
        .values()
        .filter(|s| s.voters.contains(&n(4)))
        .count();
    assert!(held > 0, "n4 holds no replica");
    let target = usize::from(SHARD_COUNT).div_ceil(4);
    assert!(
        counts.values().all(|c| *c <= target) && counts.len() == 4,
        "leaders unbalanced: {counts:?}"
    );
}

#[test]
fn dead_node_is_replaced() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes[..3], |id| nodes[usize::from(id) % 3]);
    sim.run_to_fixpoint(100);
    assert!(sim.converged(), "healthy 4-node cluster does not match D");
    sim.members[0] = down_for(nodes[0], GRACE_MS);
    sim.run_to_fixpoint(100);
    assert!(sim.converged(), "did not converge after n1 died");
    assert!(sim.shards.values().all(|s| !s.voters.contains(&nodes[0])));
}

#[test]
fn draining_node_is_emptied() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes[..3], |id| nodes[usize::from(id) % 3]);
    sim.members[0] = draining(nodes[0]);
    sim.run_to_fixpoint(100);
    assert!(sim.converged(), "did not converge while n1 drains");
    assert!(
        sim.shards
            .values()
            .all(|s| !s.voters.contains(&nodes[0]) && s.leader != Some(nodes[0])),
        "n1 still holds a voter seat or a leadership"
    );
}

#[test]
fn leadership_balances() {
    let nodes: Vec<RaftId> = (1..=3).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes, |_| nodes[0]);
    sim.run_to_fixpoint(200);
    let counts = leader_counts(&sim.leaders());
    let target = usize::from(SHARD_COUNT).div_ceil(3);
    assert!(
        counts.len() == 3 && counts.values().all(|c| *c <= target),
        "leaders unbalanced: {counts:?}"
    );
}

/// After a restart, a node leads nothing and the other two lead everything: it gets its
/// share back in a few rounds, and no round gives any node more than its share.
#[test]
fn a_restarted_node_gets_its_share_back_in_a_few_rounds() {
    let nodes: Vec<RaftId> = (1..=3).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes, |id| nodes[usize::from(id) % 2]);
    let target = usize::from(SHARD_COUNT).div_ceil(3);
    let mut rounds = 0;
    while sim.step() > 0 {
        rounds += 1;
        let counts = leader_counts(&sim.leaders());
        assert!(
            counts.get(&nodes[2]).copied().unwrap_or(0) <= target,
            "round {rounds} overfilled the restarted node: {counts:?}"
        );
        assert!(rounds <= 3, "not balanced after 3 rounds: {counts:?}");
    }
    let counts = leader_counts(&sim.leaders());
    assert!(
        counts.len() == 3 && counts.values().all(|c| *c <= target),
        "leaders unbalanced: {counts:?}"
    );
}

/// Two overloaded nodes fill two underloaded ones in the same round from the same
/// counts: each takes its part of each deficit, so neither underloaded node ends above
/// its share.
#[test]
fn overloaded_nodes_share_the_deficits_out() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    // n1 and n2 lead 26 each, n4 12, n3 none (64 shards: the share is 16).
    let mut sim = Sim::new(&nodes, &nodes, |id| match id {
        0..26 => nodes[0],
        26..52 => nodes[1],
        _ => nodes[3],
    });
    let target = usize::from(SHARD_COUNT).div_ceil(4);
    let balanced = (1..=6).find(|round| {
        sim.step();
        let counts = leader_counts(&sim.leaders());
        assert!(
            [nodes[2], nodes[3]]
                .iter()
                .all(|id| counts.get(id).copied().unwrap_or(0) <= target),
            "round {round} overfilled a node: {counts:?}"
        );
        counts.len() == 4 && counts.values().all(|c| *c <= target)
    });
    assert!(
        balanced.is_some(),
        "not balanced after 6 rounds: {:?}",
        leader_counts(&sim.leaders())
    );
}

/// A random plan input, owning its data.
#[derive(Debug, Clone)]
struct Scenario {
    me: RaftId,
    now_ms: u64,
    replicas: usize,
    grace_ms: u64,
    members: Vec<MemberState>,
    shards: Vec<ShardState>,
    leaders: BTreeMap<u16, RaftId>,
}

const IDS_MAX: u64 = 6;

fn arb_time_ms() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..200_000, 1 => any::<u64>()]
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (1..=IDS_MAX).prop_flat_map(|me| {
        let member = (
            prop::bool::weighted(0.7),
            prop::option::of(arb_time_ms()),
            prop::bool::weighted(0.2),
        );
        let leader = prop_oneof![3 => Just(Some(me)), 1 => prop::option::of(1..=IDS_MAX)];
        let pin = (
            prop::option::weighted(0.2, 1..=IDS_MAX),
            prop::collection::vec(1..=IDS_MAX, 0..=3),
        )
            .prop_map(|(leader, replicas)| Pin { leader, replicas });
        let state = (
            0u16..12,
            prop::collection::btree_set(1..=IDS_MAX, 0..=6),
            prop::collection::btree_set(1..=IDS_MAX, 0..=4),
            leader,
            prop::bool::weighted(0.2),
            pin,
        )
            .prop_map(
                |(shard, voters, learners, leader, changing, pin)| ShardState {
                    shard,
                    voters,
                    learners,
                    leader,
                    changing,
                    pin,
                },
            );
        (
            arb_time_ms(),
            0usize..=5,
            0u64..50_000,
            prop::collection::btree_map(1..=IDS_MAX, member, 2..=IDS_MAX as usize),
            prop::collection::vec(state, 0..10),
            prop::collection::btree_map(0u16..32, 1..=IDS_MAX, 0..20),
        )
            .prop_map(
                move |(now_ms, replicas, grace_ms, members, shards, leaders)| Scenario {
                    me,
                    now_ms,
                    replicas,
                    grace_ms,
                    members: members
                        .into_iter()
                        .map(|(id, (alive, down_since_ms, draining))| MemberState {
                            id,
                            alive,
                            down_since_ms,
                            draining,
                        })
                        .collect(),
                    shards,
                    leaders,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn plan_is_safe(s in arb_scenario()) {
        let input = PlanInput {
            me: s.me,
            now_ms: s.now_ms,
            replicas: s.replicas,
            grace_ms: s.grace_ms,
            members: &s.members,
            shards: &s.shards,
            led: &leader_counts(&s.leaders),
            balance: true,
        };
        let actions = plan(&input);
        prop_assert_eq!(&actions, &plan(&input), "plan is not deterministic");

        let alive = |id: RaftId| id == s.me || s.members.iter().any(|m| m.id == id && m.alive);
        let mut first: BTreeMap<u16, &ShardState> = BTreeMap::new();
        for state in &s.shards {
            first.entry(state.shard).or_insert(state);
        }
        let mut touched = BTreeSet::new();
        for action in &actions {
            let id = match action {
                Action::AddLearner { shard, .. }
                | Action::SetVoters { shard, .. }
                | Action::TransferLeader { shard, .. } => *shard,
            };
            prop_assert!(touched.insert(id), "two actions for shard {}", id);
            let state = first.get(&id).copied();
            prop_assert!(
                state.is_some_and(|st| st.leader == Some(s.me) && !st.changing),
                "{:?} on a shard I don't lead or that is changing", action
            );
            let Some(state) = state else { continue };
            match action {
                Action::AddLearner { node, .. } => {
                    prop_assert!(alive(*node), "{:?}: learner is down", action);
                    prop_assert!(!state.voters.contains(node) && !state.learners.contains(node));
                }
                Action::SetVoters { voters, .. } => {
                    let live = voters.iter().filter(|id| alive(**id)).count();
                    prop_assert!(live * 2 > voters.len(), "{:?}: no live majority", action);
                    prop_assert!(
                        !state.voters.contains(&s.me) || voters.contains(&s.me),
                        "{:?}: removes me while I lead", action
                    );
                    prop_assert!(voters.difference(&state.voters).count() <= 1);
                    prop_assert!(state.voters.difference(voters).count() <= 1);
                    prop_assert!(voters != &state.voters);
                }
                Action::TransferLeader { to, .. } => {
                    prop_assert!(*to != s.me && alive(*to) && state.voters.contains(to),
                        "{:?}: bad target", action);
                }
            }
        }
    }
}

mod pins;
