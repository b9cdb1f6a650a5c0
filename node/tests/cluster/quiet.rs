//! Quiet shards (`cluster.quiesce_after_ms`): an idle shard's leader stops heartbeating
//! and holds its lease from beats its followers accept. The lease must still hold while
//! quiet (a warm agent keeps running), lapse when the followers stop answering (the
//! agent is killed), and a dead leader of a quiet shard must still be replaced.

use super::harness::*;
use shoal_client::Client;
use shoal_protocol::admin::ShardPinChange;
use shoal_protocol::client::ConversationSummary;
use std::time::Duration;

/// How long a quiet shard is watched for its agent being stopped: ten leases.
const QUIET_HOLD: Duration = Duration::from_secs(3);

/// Waits until every shard is quiet on every running node.
async fn wait_all_quiet(cluster: &TestCluster) {
    let mut admins = Vec::new();
    for i in (0..cluster.procs.len()).filter(|i| cluster.procs[*i].child.is_some()) {
        admins.push(cluster.admin(i).await);
    }
    eventually("every shard quiet on every node", || async {
        for admin in &admins {
            if !admin.shards().await.ok()?.iter().all(|s| s.quiet) {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// A new conversation whose agent answered once and stays warm: the client that made
/// it, the conversation and the cluster's one agent process (as a one-element list).
async fn warm_conversation(cluster: &TestCluster) -> (Client, ConversationSummary, Vec<i32>) {
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_echo(&send_ok(&client, conv.id, "before").await, "before");
    let pids = cluster.agent_pids();
    assert_eq!(pids.len(), 1, "one agent: {pids:?}");
    (client, conv, pids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_shard_keeps_its_lease_wakes_on_a_write_and_fails_over() {
    let mut cluster = TestCluster::start(3).await;
    let (client, conv, pids) = warm_conversation(&cluster).await;
    let shard = conv.id.shard.0;
    wait_all_quiet(&cluster).await;

    // Quiet: no heartbeats, yet the leader keeps its lease from the beats, so the warm
    // agent is not stopped (a lapsed lease deactivates the shard and kills it).
    let stopped = tokio::time::timeout(QUIET_HOLD, exited(pids[0])).await;
    assert!(stopped.is_err(), "the quiet shard's agent was stopped");
    let leader = cluster.leader_of(shard, None).await;
    let admin = cluster.admin(cluster.index_of(&leader)).await;
    let info = admin.shards().await.unwrap().remove(usize::from(shard));
    assert!(
        info.quiet && info.hosted_here,
        "the leader's view: {info:?}"
    );
    let term = info.term;

    // A write wakes the shard; the same agent answers, in the same term.
    assert_echo(&send_ok(&client, conv.id, "awake").await, "awake");
    assert_eq!(cluster.agent_pids(), pids, "no new agent");
    let info = admin.shards().await.unwrap().remove(usize::from(shard));
    assert_eq!(info.term, term, "no election: {info:?}");

    // Quiet again, then the leader dies: a survivor is elected from beats' silence and
    // takes the next write.
    wait_all_quiet(&cluster).await;
    let (leader, client) = cluster.kill_leader(shard).await;
    assert_echo(
        &send_ok(&client, conv.id, "failed over").await,
        "failed over",
    );
    assert_ne!(cluster.leader_of(shard, Some(&leader)).await, leader);
}

/// One follower of a quiet shard dies (kill -9: its connections go silent, a call to it
/// waits out its whole timeout). The other follower's beats are a quorum: the leader's
/// lease must go on from them at once, not only after the dead one's call gave up (a
/// lease later, when that evidence has run out), so its warm agent keeps running and the
/// conversation keeps taking messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_shard_whose_follower_dies_keeps_its_lease() {
    let mut cluster = TestCluster::start(3).await;
    let (_, conv, pids) = warm_conversation(&cluster).await;
    let shard = conv.id.shard.0;
    let leader = cluster.leader_of(shard, None).await;
    let li = cluster.index_of(&leader);
    // Pinned where it is: after the kill the survivors rebalance the dead node's
    // leaderships, and a transfer of this shard would stop its agent for a reason of its
    // own.
    let admin = cluster.admin(li).await;
    let lead = ShardPinChange::Lead {
        node: leader.clone(),
    };
    admin.pin_shard(shard, lead).await.unwrap();
    eventually("the pin is in place", || async {
        let placement = admin.shard_placement(shard).await.ok()?;
        (placement.settled && placement.pin.is_some() && placement.leader == leader).then_some(())
    })
    .await;
    wait_all_quiet(&cluster).await;
    cluster.kill9((li + 1) % 3).await;

    let stopped = tokio::time::timeout(QUIET_HOLD, exited(pids[0])).await;
    assert!(
        stopped.is_err(),
        "the leader's lease lapsed when one follower of three died"
    );
    let client_l = Client::connect(&cluster.profile_for(li)).await.unwrap();
    assert_echo(&send_ok(&client_l, conv.id, "after").await, "after");
    assert_eq!(cluster.agent_pids(), pids, "the same agent answers");
    let info = admin.shards().await.unwrap();
    assert_eq!(
        info[usize::from(shard)].leader.as_deref(),
        Some(leader.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_leader_cut_off_from_its_peers_stops_its_agent() {
    let cluster = TestCluster::start(3).await;
    let (_, conv, pids) = warm_conversation(&cluster).await;
    wait_all_quiet(&cluster).await;
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let li = cluster.index_of(&leader);
    // The followers stop answering: no beat is accepted, so the lease is not renewed,
    // the shard wakes (its heartbeats go unanswered too) and the leader kills its agent.
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::STOP);
    }
    let killed = tokio::time::timeout(WAIT, exited(pids[0])).await;
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::CONT);
    }
    killed.expect("the cut-off quiet leader kills its agent");
    // Healed: the conversation takes messages again.
    let client = Client::connect(&cluster.profile).await.unwrap();
    assert_echo(
        &send_once_healed(&client, conv.id, "healed").await,
        "healed",
    );
}
