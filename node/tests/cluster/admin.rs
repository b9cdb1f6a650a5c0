//! Admin actions across the cluster: actors listed from every member, a turn cancelled
//! and a conversation evicted from a node that does not host them.

use super::harness::*;
use futures::StreamExt;
use shoal_client::Client;
use shoal_protocol::transcript::{Event, MessageStatus};
use shoal_protocol::{ConversationId, ShardId};

/// A conversation with a long turn (`/slow 400`) streaming on its shard's leader: the
/// conversation, the leader's name and index, the client the turn was sent with, and the
/// turn. A turn cut before it streamed (a leadership still settling after the cluster
/// formed) is sent again, at most three times.
async fn long_turn(
    cluster: &TestCluster,
) -> (
    shoal_protocol::client::ConversationSummary,
    String,
    usize,
    Client,
    shoal_client::TurnStream,
) {
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    for attempt in 1..=3 {
        let leader = cluster.leader_of(conv.id.shard.0, None).await;
        let li = cluster.index_of(&leader);
        let client_l = Client::connect(&cluster.profile_for(li)).await.unwrap();
        let mut turn = client_l.send(conv.id, "/slow 400").await.unwrap();
        let mut chunks = 0;
        let streamed = tokio::time::timeout(WAIT, async {
            while let Some(frame) = turn.next().await {
                match frame {
                    Ok(frame) if matches!(frame.event, Event::TextChunk { .. }) => {
                        chunks += 1;
                        if chunks == 2 {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("the turn ended".to_owned())
        })
        .await
        .expect("the turn streams or fails in time");
        match streamed {
            Ok(()) => return (conv, leader, li, client_l, turn),
            Err(e) => eprintln!("attempt {attempt}: the turn was cut ({e}); sending again"),
        }
    }
    panic!("no turn streamed on the leader in 3 attempts");
}

/// Sends `text` until a turn completes, at most three times: a leadership still settling
/// after the cluster formed may cut a turn (its sender gets an error saying so).
async fn send_retrying(client: &Client, id: shoal_protocol::ConversationId, text: &str) {
    for attempt in 1..=3 {
        let mut turn = client.send(id, text).await.expect("send is accepted");
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(frame) = turn.next().await {
                match frame {
                    Ok(frame) if matches!(frame.event, Event::Done { .. }) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("the turn ended without done".to_owned())
        })
        .await
        .expect("the turn ends in time");
        match ended {
            Ok(()) => return,
            Err(e) => eprintln!("attempt {attempt}: the turn was cut ({e}); sending again"),
        }
    }
    panic!("no turn completed in 3 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_are_listed_cluster_wide_and_evicted_or_cancelled_from_any_node() {
    let mut cluster = TestCluster::start(3).await;
    // A conversation with one follower, set up before the long turn: while a turn runs,
    // a leadership balance that waits for its shard to be idle stops conversations
    // that are activating in that shard (seen here; not what this test is about).
    let client = Client::connect(&cluster.profile).await.unwrap();
    let other = client.create_conversation(None, None).await.unwrap();
    send_retrying(&client, other.id, "hi").await;
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
    let (conv, leader, li, _client_l, mut turn) = long_turn(&cluster).await;

    // Asked of a node that does not host the running turn.
    let asker = (li + 1) % 3;
    let admin = cluster.admin(asker).await;
    let key = conv.id.to_string();
    let other_key = other.id.to_string();
    eventually("both conversations listed with their hosts", || async {
        let (actors, unreachable, truncated) = admin.cluster_actors().await.ok()?;
        assert!(!truncated);
        // Every member answered (gossip on a loaded machine may flap for a moment).
        if !unreachable.is_empty() {
            return None;
        }
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

/// Every member keeps its recent events; the admin API merges them by time: starts,
/// leaderships, a drain and its handovers, a death seen by the survivors (the dead
/// member reported as not answering).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_events_are_merged_from_every_member() {
    let mut cluster = TestCluster::start(3).await;
    let admin = cluster.admin(0).await;
    let has =
        |events: &[shoal_protocol::admin::ClusterEvent], node: &str, kind: &str, text: &str| {
            events
                .iter()
                .any(|e| e.node == node && e.kind == kind && e.detail.contains(text))
        };
    eventually("every node's start and leaderships are listed", || async {
        let (events, unreachable) = admin.events(None, 1000).await.ok()?;
        if !unreachable.is_empty() {
            return None;
        }
        (["n1", "n2", "n3"].iter().all(|n| {
            has(&events, n, "start", "started") && has(&events, n, "leader", "leads shards")
        }))
        .then_some(())
    })
    .await;

    admin.drain("n2").await.expect("drain accepted");
    eventually("the drain and its handovers are listed", || async {
        let (events, _) = admin.events(None, 1000).await.ok()?;
        (has(&events, "n2", "drain", "n2 drains")
            && has(&events, "n2", "placement", "leadership handed to")
            && has(&events, "n2", "follower", "no longer leads shards"))
        .then_some(())
    })
    .await;

    // Gossip may have suspected n3 for a moment while the cluster formed: only a death
    // recorded after the kill counts.
    let (before, _) = admin.events(None, 1000).await.unwrap();
    let killed_after_ms = before.last().map_or(0, |e| e.at_ms);
    cluster.kill9(2).await;
    let events = eventually("the survivors record n3's death", || async {
        let (events, unreachable) = admin.events(None, 1000).await.ok()?;
        let dead = events.iter().any(|e| {
            e.node == "n1"
                && e.kind == "down"
                && e.detail == "n3 is down"
                && e.at_ms >= killed_after_ms
        });
        (dead && unreachable.iter().any(|u| u.starts_with("n3: "))).then_some(events)
    })
    .await;
    assert!(
        events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "merged by time"
    );
    let (newest, _) = admin.events(None, 2).await.unwrap();
    assert_eq!(newest.len(), 2, "the limit holds");
    assert!(
        newest[0].at_ms >= events[events.len() - 2].at_ms,
        "the newest are kept: {newest:?}"
    );
}
