//! Admin actions across the cluster: actors listed from every member, a turn cancelled
//! and a conversation evicted from a node that does not host them.

use super::harness::*;
use futures::StreamExt;
use shoal_client::Client;
use shoal_protocol::transcript::{Event, MessageStatus};
use shoal_protocol::{ConversationId, ShardId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_are_listed_cluster_wide_and_evicted_or_cancelled_from_any_node() {
    let mut cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        leader,
        li,
        mut turn,
        ..
    } = cluster.long_turn_on_leader().await;
    // A second conversation with one follower.
    let client = Client::connect(&cluster.profile).await.unwrap();
    let other = client.create_conversation(None, None).await.unwrap();
    send_ok(&client, other.id, "hi").await;
    let other_leader = cluster.leader_of(other.id.shard.0, None).await;
    let watcher = Client::connect(&cluster.profile).await.unwrap();
    let mut follow = watcher.follow(other.id, None);
    tokio::time::timeout(WAIT, async {
        while let Some(frame) = follow.next().await {
            if matches!(frame.expect("follow frame").event, Event::Reset { .. }) {
                return;
            }
        }
        panic!("the follow ended before its snapshot");
    })
    .await
    .expect("the follower gets its snapshot");

    // Asked of a node that does not host the running turn.
    let asker = (li + 1) % 3;
    let admin = cluster.admin(asker).await;
    let key = conv.id.to_string();
    let other_key = other.id.to_string();
    eventually("both conversations listed with their hosts", || async {
        let (actors, unreachable, truncated) = admin.cluster_actors().await.ok()?;
        assert!(unreachable.is_empty(), "{unreachable:?}");
        assert!(!truncated);
        let find = |k: &str| {
            actors
                .iter()
                .find(|a| a.kind == "conversation" && a.key == k)
                .cloned()
        };
        let running = find(&key)?;
        let followed = find(&other_key)?;
        (running.node == leader
            && running.state == "turn"
            && followed.node == other_leader
            && followed.followers == 1)
            .then_some(())
    })
    .await;

    // Bad input changes nothing.
    let err = admin
        .evict(ConversationId::new(ShardId(999), 1))
        .await
        .expect_err("no shard 999");
    assert!(err.to_string().contains("shard 999"), "{err}");

    // Cancel the running turn from a node that does not host it.
    assert!(admin.cancel_turn(conv.id).await.expect("cancel"));
    let done = turn_done(&mut turn).await.expect("the turn ends with done");
    assert_eq!(done.status, MessageStatus::Cancelled, "{done:?}");

    // Evict the followed conversation through the same node.
    assert!(admin.evict(other.id).await.expect("evict"));
    eventually("the evicted conversation leaves the listing", || async {
        let (actors, _, _) = admin.cluster_actors().await.ok()?;
        (!actors
            .iter()
            .any(|a| a.kind == "conversation" && a.key == other_key))
        .then_some(())
    })
    .await;

    // A dead member is reported; the others are still listed.
    let victim = (asker + 1) % 3;
    let victim_name = cluster.procs[victim].node.name.clone();
    cluster.kill9(victim).await;
    let prefix = format!("{victim_name}: ");
    eventually("the dead member is reported, not fatal", || async {
        let (actors, unreachable, _) = admin.cluster_actors().await.ok()?;
        assert!(actors.iter().all(|a| a.node != victim_name), "{actors:?}");
        unreachable
            .iter()
            .any(|u| u.starts_with(&prefix))
            .then_some(())
    })
    .await;
}
