//! Moving a shard by hand: an operator's pin moves a replica to the node that held none
//! and the leadership with it, the conversation in the shard goes on there, and bad
//! requests change nothing.

use super::harness::*;
use shoal_client::{AdminClient, Client, ClientError};
use shoal_protocol::ErrorCode;
use shoal_protocol::admin::{ShardPinChange, ShardPlacement};

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Server(e)) => e.code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The shard's placement once its leader answers and `done` holds.
async fn placement_when(
    admin: &AdminClient,
    shard: u16,
    what: &str,
    done: impl Fn(&ShardPlacement) -> bool,
) -> ShardPlacement {
    eventually(what, || async {
        let placement = admin.shard_placement(shard).await.ok()?;
        done(&placement).then_some(placement)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_moves_a_shards_replica_and_leadership_and_its_conversation_goes_on() {
    // Two replicas per shard on three nodes: every shard has a node without a replica.
    let cluster = TestCluster::start_with(3, |c| {
        c.cluster.replicas = std::num::NonZeroU8::new(2).unwrap()
    })
    .await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_echo(&send_ok(&client, conv.id, "before").await, "before");
    let shard = conv.id.shard.0;
    let admin = cluster.admin(0).await;
    let before = placement_when(&admin, shard, "the shard is settled", |p| p.settled).await;
    assert_eq!(before.voters.len(), 2, "{before:?}");
    assert!(before.pin.is_none());
    let from = before.leader.clone();
    let to = cluster
        .procs
        .iter()
        .map(|p| p.node.name.clone())
        .find(|n| !before.voters.contains(n))
        .unwrap();
    let stays = before.voters.iter().find(|n| **n != from).unwrap().clone();

    // Bad requests are refused by name and store nothing.
    assert_eq!(
        code(admin.pin_shard(u16::MAX, ShardPinChange::Clear).await),
        ErrorCode::InvalidArgument
    );
    let unknown = ShardPinChange::Lead {
        node: "nope".into(),
    };
    assert_eq!(
        code(admin.pin_shard(shard, unknown).await),
        ErrorCode::NotFound
    );
    let not_a_replica = ShardPinChange::Move {
        from: to.clone(),
        to: from.clone(),
    };
    assert_eq!(
        code(admin.pin_shard(shard, not_a_replica).await),
        ErrorCode::InvalidArgument
    );
    assert!(admin.shard_placement(shard).await.unwrap().pin.is_none());

    // The replica on the leader moves to the node without one, asked through that node
    // (it passes the request on to the leader).
    let via = cluster.admin(cluster.index_of(&to)).await;
    let change = ShardPinChange::Move {
        from: from.clone(),
        to: to.clone(),
    };
    let pin = via.pin_shard(shard, change.clone()).await.unwrap().unwrap();
    assert_eq!(pin.replicas, [stays.clone(), to.clone()]);
    // Asked again (a retry): the same pin.
    assert_eq!(via.pin_shard(shard, change).await.unwrap(), Some(pin));
    let moved = placement_when(&via, shard, "the replica moved", |p| p.settled).await;
    let mut voters = moved.voters.clone();
    voters.sort();
    let mut expected = vec![stays.clone(), to.clone()];
    expected.sort();
    assert_eq!(voters, expected, "{moved:?}");
    assert!(moved.learners.is_empty());
    // The node that gave its replica up does not campaign for the shard: either it
    // learned of its removal, or (most often: the leader stops sending to it first) it
    // stops campaigning once it has heard no leader for a while.
    let stops = format!("{from}: stops campaigning for shard {shard}:");
    let old_replica = cluster.admin(cluster.index_of(&from)).await;
    eventually("the old replica stops campaigning", || async {
        let own_view = old_replica.shards().await.ok()?.remove(usize::from(shard));
        if !own_view.replicas.contains(&from) {
            return Some(());
        }
        let (events, _) = via.events(None, 1000).await.ok()?;
        events
            .iter()
            .any(|e| e.detail.starts_with(&stops))
            .then_some(())
    })
    .await;

    // Then the leadership, to the new replica.
    via.pin_shard(shard, ShardPinChange::Lead { node: to.clone() })
        .await
        .unwrap();
    let led = placement_when(&via, shard, "the pinned node leads", |p| {
        p.settled && p.leader == to
    })
    .await;
    assert_eq!(
        led.pin.as_ref().unwrap().leader.as_deref(),
        Some(to.as_str())
    );

    // The conversation goes on where its shard is now.
    let client = Client::connect(&cluster.profile_for(cluster.index_of(&to)))
        .await
        .unwrap();
    assert_echo(&send_ok(&client, conv.id, "after").await, "after");
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.summary.message_count, 4);

    // Unpinned: back to automatic placement.
    assert_eq!(
        via.pin_shard(shard, ShardPinChange::Clear).await.unwrap(),
        None
    );
    placement_when(&via, shard, "the pin is gone", |p| p.pin.is_none()).await;
}
