//! Operator pins: a pinned replica set and leader are reached and then left alone; a pin
//! on a node that cannot hold the shard falls back to automatic placement.

use super::*;

/// A settled 4-node cluster, 3 replicas per shard.
fn settled(nodes: &[RaftId]) -> Sim {
    let mut sim = Sim::new(nodes, &nodes[..3], |id| nodes[usize::from(id) % 3]);
    sim.run_to_fixpoint(100);
    assert!(sim.converged());
    sim
}

#[test]
fn a_pinned_replica_move_is_carried_out_and_stays() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    let mut sim = settled(&nodes);
    let before = sim.shards[&0].voters.clone();
    let to = *nodes.iter().find(|id| !before.contains(id)).unwrap();
    let from = *before.iter().next().unwrap();
    let pinned: Vec<RaftId> = before
        .iter()
        .copied()
        .filter(|id| *id != from)
        .chain([to])
        .collect();
    sim.shards.get_mut(&0).unwrap().pin = Pin {
        leader: None,
        replicas: pinned.clone(),
    };
    sim.run_to_fixpoint(100);
    let state = &sim.shards[&0];
    assert_eq!(state.voters, set(&pinned), "the move did not happen");
    assert!(state.learners.is_empty());
    // The other shards are untouched by shard 0's pin.
    assert!(
        sim.shards
            .iter()
            .filter(|(id, _)| **id != 0)
            .all(|(id, s)| s.voters == set(&desired_replicas(*id, &sim.members, REPLICAS)))
    );
}

#[test]
fn a_pinned_leader_leads_and_balance_leaves_it_there() {
    let nodes: Vec<RaftId> = (1..=3).map(n).collect();
    let mut sim = Sim::new(&nodes, &nodes, |id| nodes[usize::from(id) % 3]);
    sim.run_to_fixpoint(100);
    // Far more than n1's share: balance alone would move most of them away.
    for id in 0..40 {
        sim.shards.get_mut(&id).unwrap().pin.leader = Some(nodes[0]);
    }
    sim.run_to_fixpoint(200);
    for id in 0..40 {
        assert_eq!(sim.shards[&id].leader, Some(nodes[0]), "shard {id}");
    }
    // Cleared: balance evens the leaderships out again.
    for id in 0..40 {
        sim.shards.get_mut(&id).unwrap().pin = Pin::default();
    }
    sim.run_to_fixpoint(200);
    let target = usize::from(SHARD_COUNT).div_ceil(3);
    let counts = leader_counts(&sim.leaders());
    assert!(counts.values().all(|c| *c <= target), "{counts:?}");
}

#[test]
fn a_pinned_leader_outside_the_replicas_becomes_one_first() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    let mut sim = settled(&nodes);
    let outside = *nodes
        .iter()
        .find(|id| !sim.shards[&5].voters.contains(id))
        .unwrap();
    sim.shards.get_mut(&5).unwrap().pin.leader = Some(outside);
    sim.run_to_fixpoint(100);
    let state = &sim.shards[&5];
    assert_eq!(state.leader, Some(outside));
    assert_eq!(state.voters.len(), REPLICAS);
    assert!(state.voters.contains(&outside));
}

#[test]
fn a_pin_on_a_draining_or_dead_node_falls_back_to_automatic_placement() {
    let nodes: Vec<RaftId> = (1..=4).map(n).collect();
    let mut sim = settled(&nodes);
    sim.shards.get_mut(&0).unwrap().pin = Pin {
        leader: Some(nodes[0]),
        replicas: vec![nodes[0]],
    };
    sim.run_to_fixpoint(100);
    assert_eq!(sim.shards[&0].leader, Some(nodes[0]));
    sim.members[0] = draining(nodes[0]);
    sim.run_to_fixpoint(100);
    let state = &sim.shards[&0];
    assert!(!state.voters.contains(&nodes[0]), "{state:?}");
    assert_ne!(state.leader, Some(nodes[0]));
    assert_eq!(state.voters.len(), REPLICAS);
}
