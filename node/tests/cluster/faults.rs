//! Faults on a leader: kill -9, a partition, a pause, a stalled disk, lost stores, an
//! oversized turn. Nothing acknowledged is lost and no two agents run for one session.

use super::common::{collect_turn, done_content};
use super::harness::*;
use futures::StreamExt;
use shoal_client::Client;
use shoal_protocol::transcript::{Event, Role};
use std::path::Path;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_kill_of_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client
        .create_conversation(Some("ha".into()), None)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        let text = format!("before {i}");
        assert_eq!(
            send_ok(&client, conv.id, &text).await,
            format!("echo: {text}")
        );
        acked.push(text);
    }
    let (leader, client) = cluster.kill_leader(conv.id.shard.0).await;
    // The SDK retries (same request ids) through the election; nothing acknowledged is lost.
    for i in 0..5 {
        let text = format!("after {i}");
        assert_eq!(
            send_ok(&client, conv.id, &text).await,
            format!("echo: {text}")
        );
        acked.push(text);
    }
    let new_leader = cluster.leader_of(conv.id.shard.0, Some(&leader)).await;
    assert_ne!(new_leader, leader);
    let detail = client.get_conversation(conv.id).await.unwrap();
    let users: Vec<&str> = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(users, acked.iter().map(String::as_str).collect::<Vec<_>>());
    // The killed node comes back and catches up.
    cluster.spawn(cluster.index_of(&leader)).await;
    cluster.wait_all_led().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_peers_stops_its_agents() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        client_l,
        // Kept to the end: dropping the stream would cancel the turn.
        turn: _turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    assert!(alive(pid));
    // Cut the leader off: its two peers stop answering (SIGSTOP), so no quorum acks.
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::STOP);
    }
    // Without quorum acks the lease runs out and the leader kills its agent by itself.
    let killed = tokio::time::timeout(WAIT, exited(pid)).await;
    // And it cannot commit: a new conversation on the isolated leader's shard fails.
    let cannot_commit = tokio::time::timeout(
        Duration::from_secs(15),
        client_l.send(conv.id, "while cut off"),
    )
    .await;
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::CONT);
    }
    killed.expect("the cut-off leader kills its agent process");
    match cannot_commit {
        Err(_) => {}
        Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("a leader without quorum accepted a message"),
    }
    // Healed: the cluster serves the conversation again (the SDK retries through the
    // election that follows).
    let client = Client::connect(&cluster.profile).await.unwrap();
    assert_echo(
        &send_once_healed(&client, conv.id, "healed").await,
        "healed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leaders_agents_are_killed_by_its_watchdog() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    // The leader itself stops running: it cannot fence anything. Its watchdog, a
    // separate process, sees the lease run out without a renewal and kills the agent,
    // before another node could take the shard over.
    cluster.signal(li, rustix::process::Signal::STOP);
    let killed = tokio::time::timeout(WAIT, exited(pid)).await;
    cluster.signal(li, rustix::process::Signal::CONT);
    killed.expect("the paused leader's watchdog kills its agent");
    drop(turn);
    let client = Client::connect(&cluster.profile).await.unwrap();
    assert_echo(&send_ok(&client, conv.id, "resumed").await, "resumed");
}

/// The leader's disk stalls: every flush waits, so openraft's core blocks inside an
/// append and stops publishing metrics, while the rest of the node runs on. The lease
/// must lapse from the last evidence (not be re-derived from stale metrics), so the
/// leader kills its agent before a new leader can start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_storage_stalls_stops_its_agents_before_a_new_leader_starts_one() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        leader,
        li,
        turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    let first = pid;
    cluster
        .admin(li)
        .await
        .inject_fault(shoal_protocol::admin::Fault::StallStorage { ms: 20_000 })
        .await
        .expect("the stall is injected");
    // Another node takes the shard over. Once it hosts, the stalled node must not: its
    // lease lapsed with the last evidence, however often it looked at stale metrics.
    let shard = usize::from(conv.id.shard.0);
    let new_leader = cluster.leader_of(conv.id.shard.0, Some(&leader)).await;
    let ni = cluster.index_of(&new_leader);
    let admin_n = cluster.admin(ni).await;
    eventually("the new leader hosts the shard", || async {
        admin_n.shards().await.ok()?[shard]
            .hosted_here
            .then_some(())
    })
    .await;
    let stalled_view = cluster.admin(li).await.shards().await.unwrap();
    assert!(
        !stalled_view[shard].hosted_here,
        "invariant 2: {leader} (storage stalled) still hosts shard {shard} while {new_leader} does"
    );
    let client_n = Client::connect(&cluster.profile_for(ni)).await.unwrap();
    assert_echo(
        &send_ok(&client_n, conv.id, "after the stall").await,
        "after the stall",
    );
    let pids = cluster.agent_pids();
    let log = std::fs::read_to_string(&cluster.agent_log).unwrap_or_default();
    assert!(pids.len() >= 2, "a second agent on the new leader: {log}");
    // Later agents run (or ran) on the new leader now; the first must already be gone.
    assert!(
        !alive(first),
        "invariant 2: the stalled leader's agent {first} still runs while {new_leader} runs its own: {log}"
    );
    drop(turn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wiped_store_is_reseeded_by_snapshot() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    // Enough writes that the shard snapshots (every 16 entries) and purges its log.
    for i in 0..12 {
        send_ok(&client, conv.id, &format!("m{i}")).await;
    }
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let wiped = (cluster.index_of(&leader) + 1) % 3;
    cluster.kill9(wiped).await;
    let store: &Path = &cluster.procs[wiped].node.data_dir.join("store");
    std::fs::remove_dir_all(store).unwrap();
    cluster.spawn(wiped).await;
    // Wait until the wiped node has applied the shard again.
    let admin = cluster.admin(wiped).await;
    let target = cluster.admin((wiped + 1) % 3).await.shards().await.unwrap()
        [usize::from(conv.id.shard.0)]
    .applied_index
    .unwrap();
    eventually("the wiped node catches up", || async {
        let shards = admin.shards().await.ok()?;
        (shards[usize::from(conv.id.shard.0)].applied_index >= Some(target)).then_some(())
    })
    .await;
    // It came back as a new Raft member (a new store generation) and replaces its old
    // self as a voter by a membership change.
    cluster.wait_voters_replaced(conv.id.shard.0).await;
    // Now the wiped node's copy is needed: kill the third node (not the wiped one).
    let third = (0..3)
        .find(|i| *i != wiped && cluster.procs[*i].node.name != leader)
        .unwrap();
    cluster.kill9(third).await;
    let client = Client::connect(&cluster.profile_for(wiped)).await.unwrap();
    // The SDK retries through the election this kill may cause.
    let detail = client
        .get_conversation(conv.id)
        .await
        .expect("served by the leader and the reseeded node");
    let users = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .count();
    assert_eq!(users, 12, "nothing lost");
}

/// The combination that lost acknowledged writes: one replica lags (down while writes
/// commit), another loses its store, the leader dies. An empty voter granting votes let
/// the lagging replica become leader without the committed writes. A node whose store
/// was lost is a new Raft member, so the lagging one cannot win: the shard waits for the
/// replica that has the writes, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_and_a_lagging_one_cannot_elect_a_leader_without_committed_writes() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    let shard = conv.id.shard.0;
    send_ok(&client, conv.id, "before").await;
    let leader = cluster.leader_of(shard, None).await;
    let li = cluster.index_of(&leader);
    let lagging = (li + 1) % 3;
    let wiped = (li + 2) % 3;
    // The lagging replica misses these (the leader and `wiped` acknowledge them).
    cluster.kill9(lagging).await;
    let client_l = Client::connect(&cluster.profile_for(li)).await.unwrap();
    for i in 0..5 {
        send_ok(&client_l, conv.id, &format!("acked {i}")).await;
    }
    // `wiped` loses its store and comes back empty; then the leader dies.
    cluster.kill9(wiped).await;
    std::fs::remove_dir_all(cluster.procs[wiped].node.data_dir.join("store")).unwrap();
    cluster.spawn(wiped).await;
    cluster.kill9(li).await;
    cluster.spawn(lagging).await;
    // Only the lagging replica and the empty one run. Whatever they answer, it must not
    // be a transcript without the acknowledged writes.
    let client_a = Client::connect(&cluster.profile_for(lagging))
        .await
        .unwrap();
    let served =
        tokio::time::timeout(Duration::from_secs(15), client_a.get_conversation(conv.id)).await;
    if let Ok(Ok(detail)) = served {
        let users = detail
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .count();
        assert_eq!(
            users,
            6,
            "invariant 1: a leader without the committed writes was elected: {:?}",
            detail
                .messages
                .iter()
                .map(|m| &m.content)
                .collect::<Vec<_>>()
        );
    }
    // The replica with the writes returns: all of them are there, and the new store's
    // member replaces the old voter.
    cluster.spawn(li).await;
    let detail = client_a
        .get_conversation(conv.id)
        .await
        .expect("served once a replica with the log is back");
    let users = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .count();
    assert_eq!(users, 6, "nothing acknowledged is lost");
    cluster.wait_voters_replaced(shard).await;
}

/// A turn whose tool output grows past any log entry: it is stopped at
/// `limits.turn_buffer_bytes_max` (256 KiB here, so the first 1 MiB output is refused
/// and no big entry loads a busy test machine) with a clear error, and the shard keeps
/// replicating. (Tool output was not counted, and a checkpoint larger than a peer frame
/// could never be replicated: the shard stopped committing anything.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_with_huge_tool_output_fails_cleanly_and_the_shard_goes_on() {
    let cluster = TestCluster::start_with(3, |config| {
        config.limits.turn_buffer_bytes_max = std::num::NonZeroU64::new(256 * 1024).unwrap();
    })
    .await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    // Nine tool calls of 1 MiB each: more than a peer frame (8 MiB).
    let mut turn = client.send(conv.id, "/bigtool 1024 9").await.unwrap();
    let mut errors = Vec::new();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(frame) = turn.next().await {
            match frame {
                Ok(frame) => match frame.event {
                    Event::Error { message } => errors.push(message),
                    Event::Done { message, .. } => return Some(message),
                    _ => {}
                },
                Err(e) => panic!("the turn's stream broke: {e}"),
            }
        }
        None
    })
    .await
    .expect("the big turn ends in time")
    .expect("the big turn ends with done");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("limits.turn_buffer_bytes_max")),
        "the error names the limit: {errors:?}; ended {:?} {:?} with {} parts",
        ended.status,
        ended.error,
        ended.parts.len()
    );
    assert_ne!(
        ended.status,
        shoal_protocol::transcript::MessageStatus::Complete
    );
    // The shard still commits: the next turn of the same conversation works.
    let next = client.send(conv.id, "after the big turn").await.unwrap();
    let frames = collect_turn(next).await;
    assert_eq!(
        done_content(&frames),
        "echo: after the big turn",
        "{:?}",
        frames.iter().map(|f| &f.event).collect::<Vec<_>>()
    );
}
