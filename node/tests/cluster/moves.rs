//! Planned moves: followers across a leadership move, drain, SIGTERM — between turns,
//! with nothing cut off.

use super::common::assert_gap_free;
use super::harness::*;
use futures::StreamExt;
use shoal_client::Client;
use shoal_protocol::transcript::{Event, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_resumes_across_a_leadership_move_without_gaps() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    send_ok(&client, conv.id, "first").await;
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let victim = cluster.index_of(&leader);
    // Follow from a node that is not the leader: it answers Moved, the SDK goes there.
    let follower_node = (victim + 1) % 3;
    let watcher = Client::connect(&cluster.profile_for(follower_node))
        .await
        .unwrap();
    let mut follow = watcher.follow(conv.id, None);
    let mut frames = Vec::new();
    // The snapshot (reset + first turn) arrives.
    tokio::time::timeout(WAIT, async {
        while let Some(item) = follow.next().await {
            let frame = item.expect("follow frame");
            let is_reset = matches!(frame.event, Event::Reset { .. });
            frames.push(frame);
            if is_reset {
                return;
            }
        }
    })
    .await
    .expect("snapshot");
    cluster.kill9(victim).await;
    // A new turn on the new leader reaches the follower after it resumes there: live,
    // or inside the snapshot it gets on the new leader (a new activation).
    let client = Client::connect(&cluster.profile_for(follower_node))
        .await
        .unwrap();
    // The survivors may still move leaderships between them after the failover, which
    // can cut a turn (its initiator then gets an error, never a silent end): that is
    // not what this test is about, so a cut turn is sent again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let turn = client
            .send(conv.id, "second")
            .await
            .expect("send is accepted");
        let mut turn = std::pin::pin!(turn);
        let mut ended = None;
        while let Some(item) = turn.next().await {
            match item {
                Ok(frame) => {
                    if matches!(frame.event, Event::Done { .. }) {
                        ended = Some(Ok(()));
                    }
                }
                Err(e) => {
                    assert!(
                        !matches!(e, shoal_client::ClientError::ConnectionLost(_)),
                        "a cut turn ends with an error naming why, not a silent end: {e}"
                    );
                    ended = Some(Err(e));
                    break;
                }
            }
        }
        match ended {
            Some(Ok(())) => break,
            other if attempts < 3 => eprintln!("turn cut ({other:?}); sending again"),
            other => panic!("the turn did not complete in 3 attempts: {other:?}"),
        }
    }
    tokio::time::timeout(WAIT, async {
        while let Some(item) = follow.next().await {
            let frame = item.expect("follow frame");
            let complete = matches!(&frame.event, Event::Done { .. } | Event::Reset { .. });
            frames.push(frame);
            if complete
                && frames
                    .iter()
                    .any(|f| format!("{:?}", f.event).contains("echo: second"))
            {
                return;
            }
        }
        panic!("the follow ended");
    })
    .await
    .expect("the follower sees the turn on the new leader");
    assert_gap_free(&frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_every_leadership_off_a_node() {
    let cluster = TestCluster::start(3).await;
    let admin = cluster.admin(1).await;
    admin.drain("n1").await.expect("drain accepted");
    eventually("every leadership leaves the drained node", || async {
        let shards = admin.shards().await.ok()?;
        shards
            .iter()
            .all(|s| s.leader.is_some() && s.leader.as_deref() != Some("n1"))
            .then_some(())
    })
    .await;
    let members = admin.members().await.unwrap();
    assert!(members.iter().any(|m| m.node_id == "n1" && m.draining));
    // The cluster keeps serving (requests through the drained node are forwarded).
    let client = Client::connect(&cluster.profile_for(0)).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(
        send_ok(&client, conv.id, "still here").await,
        "echo: still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_a_shard_between_turns_instead_of_killing_the_running_one() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        leader,
        li,
        mut turn,
        pid,
        ..
    } = cluster.turn_on_leader("/slow 60").await;
    cluster
        .admin((li + 1) % 3)
        .await
        .drain(&leader)
        .await
        .expect("drain accepted");
    let done = turn_done(&mut turn)
        .await
        .expect("the running turn ends with done on the draining node");
    assert_eq!(
        done.status,
        shoal_protocol::transcript::MessageStatus::Complete,
        "the drain cut the running turn: {done:?}"
    );
    assert!(done.content.ends_with("chunk 60 "), "{}", done.content);
    eventually("the agent process stops cleanly", || async {
        stopped_cleanly(&cluster, pid).then_some(())
    })
    .await;
    let admin = cluster.admin((li + 1) % 3).await;
    eventually("the shard's leadership leaves the drained node", || async {
        let shard = admin
            .shards()
            .await
            .ok()?
            .remove(usize::from(conv.id.shard.0));
        (shard.leader.is_some() && shard.leader.as_deref() != Some(leader.as_str())).then_some(())
    })
    .await;
    // The conversation goes on on its new leader.
    let client = Client::connect(&cluster.profile_for((li + 1) % 3))
        .await
        .unwrap();
    assert_eq!(send_ok(&client, conv.id, "moved").await, "echo: moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_running_turn_with_what_it_streamed_before_closing() {
    let mut cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        mut turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    cluster.signal(li, rustix::process::Signal::TERM);
    let done = turn_done(&mut turn)
        .await
        .expect("the initiator gets done before the node closes its endpoint");
    assert_eq!(
        done.status,
        shoal_protocol::transcript::MessageStatus::Interrupted
    );
    let error = done.error.clone().unwrap_or_default();
    assert!(error.contains("shutting down"), "{done:?}");
    assert!(done.content.starts_with("chunk 1 chunk 2 "), "{done:?}");
    let exit = tokio::time::timeout(WAIT, cluster.procs[li].child.take().unwrap().wait())
        .await
        .expect("the node exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopped_cleanly(&cluster, pid),
        "the agent was killed, not stopped"
    );
    // The survivors serve the turn as the stopping node committed it.
    let client = Client::connect(&cluster.profile_for((li + 1) % 3))
        .await
        .unwrap();
    let stored = eventually("the conversation is served again", || async {
        client.get_conversation(conv.id).await.ok()
    })
    .await;
    let last = stored.messages.last().unwrap();
    assert_eq!(last.role, Role::Assistant);
    assert_eq!(last.content, done.content);
    assert_eq!(last.error, done.error);
}

/// A drain is kept by the drained node: it survives a restart of that node and of
/// another, its progress ends with nothing left to move, and `undrain` (kept across a
/// restart too) puts the node back into placement. Bad names change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_survives_restarts_and_undrain_puts_the_node_back() {
    let mut cluster = TestCluster::start(3).await;
    let admin = cluster.admin(1).await;
    let err = admin.drain("n9").await.expect_err("no member n9");
    assert!(err.to_string().contains("no member named `n9`"), "{err}");
    let err = admin.undrain("").await.expect_err("an empty name");
    assert!(err.to_string().contains("node id"), "{err}");

    admin.drain("n1").await.expect("drain accepted");
    let drained = |admin: shoal_client::AdminClient| async move {
        eventually("n1's drain has nothing left to move", || async {
            let p = admin.drain_progress("n1").await.ok()?;
            p.finished().then_some(p)
        })
        .await
    };
    let progress = drained(cluster.admin(1).await).await;
    assert_eq!(progress.leaderships, 0, "{progress:?}");
    // Three nodes for three replicas: n1 keeps its replicas, and says why.
    assert!(progress.replicas_stay(), "{progress:?}");
    assert_eq!(progress.placeable_members, 2, "{progress:?}");

    // The drained node and another restart: the drain holds.
    cluster.kill9(0).await;
    cluster.spawn(0).await;
    cluster.kill9(2).await;
    cluster.spawn(2).await;
    let admin = cluster.admin(2).await;
    eventually("n1 still drains after the restarts", || async {
        let members = admin.members().await.ok()?;
        members
            .iter()
            .any(|m| m.node_id == "n1" && m.state == "alive" && m.draining)
            .then_some(())
    })
    .await;
    let progress = drained(cluster.admin(2).await).await;
    assert_eq!(progress.leaderships, 0, "{progress:?}");

    // Undrain, kept across a restart of the node: it leads shards again.
    admin.undrain("n1").await.expect("undrain accepted");
    cluster.kill9(0).await;
    cluster.spawn(0).await;
    eventually("n1 is back in placement and leads shards", || async {
        let members = admin.members().await.ok()?;
        members
            .iter()
            .any(|m| m.node_id == "n1" && !m.draining && m.leaders > 0)
            .then_some(())
    })
    .await;
}
