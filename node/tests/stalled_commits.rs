//! Actors never wait on consensus inside a handler (issue 9, item 6): while a shard
//! cannot commit (its store's flushes are stalled), a conversation still answers reads,
//! cancels and follows at once, an activation that waits on its commit does not hold
//! up requests for other conversations, and a balance handover that meets such an
//! activation is refused without cutting it (the handover race, deterministically).
//!
//! The stall is the store's fault hook ([`shoal_node::shard::store::Store::stall_flushes`]),
//! which holds every flush back; a dev node is a sole voter, so it keeps hosting.

mod common;

use common::*;
use futures::StreamExt;
use shoal_protocol::ConversationId;
use shoal_protocol::transcript::{Event, MessageStatus};
use std::time::{Duration, Instant};

/// Longer than any test below needs: the stall is ended explicitly.
const STALL: Duration = Duration::from_secs(120);

/// Generous for requests that need no commit. A handler that awaited a commit would take
/// at least `PROPOSE_TIMEOUT_MS` (10 s) for the first of them and as long again for each
/// checkpoint tick queued before the next.
const ANSWER_BOUND: Duration = Duration::from_secs(8);

/// Waits until the admin API shows `conversation`'s activation waiting on its commit,
/// while `request` (which started that activation) must not finish.
async fn await_activating<T, E: std::fmt::Debug>(
    admin: &shoal_client::AdminClient,
    conversation: ConversationId,
    request: &mut std::pin::Pin<Box<impl Future<Output = Result<T, E>>>>,
) {
    let key = conversation.to_string();
    let activating = eventually("the activation waits on its commit", || async {
        let actors = admin.actors().await.ok()?;
        actors
            .iter()
            .any(|a| a.key == key && a.state == "activating")
            .then_some(())
    });
    tokio::select! {
        result = request => panic!(
            "the activation could not commit, yet the request ended (error: {:?})",
            result.err()
        ),
        () = activating => {}
    }
}

#[tokio::test]
async fn a_conversation_answers_at_once_while_its_commits_stall() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.checkpoint_interval_ms = 100.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 1000").await.unwrap();
    wait_for_chunks(&mut turn, 1).await;
    let store = node.node.as_ref().unwrap().context().store.clone();
    store.stall_flushes(STALL);
    // More output, so a checkpoint is due (and stuck) while the requests below arrive.
    wait_for_chunks(&mut turn, 2).await;

    let started = Instant::now();
    for _ in 0..3 {
        let detail = tokio::time::timeout(WAIT, client.get_conversation(conv.id))
            .await
            .expect("get answered")
            .expect("get");
        let in_flight = detail.in_flight.expect("the running turn is shown");
        assert!(in_flight.content.contains("chunk 1"), "{in_flight:?}");
    }
    let follower_client = node.client().await;
    let (_follow, _) = follow_attached(&follower_client, conv.id).await;
    assert!(
        tokio::time::timeout(WAIT, client.cancel(conv.id))
            .await
            .expect("cancel answered")
            .expect("cancel"),
        "a turn was running"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < ANSWER_BOUND,
        "three gets, a follow and a cancel took {elapsed:?} while commits stalled: \
         the conversation actor is waiting on consensus inside its handlers"
    );

    // The store recovers: the cancelled turn is committed and the next one works.
    store.stall_flushes(Duration::ZERO);
    let mut rest = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, turn.next()).await.unwrap() {
        rest.push(frame.unwrap());
    }
    let done = rest
        .iter()
        .find_map(|f| match &f.event {
            Event::Done { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("the cancelled turn ends with done");
    assert_eq!(done.status, MessageStatus::Cancelled);
    let frames = collect_turn(client.send(conv.id, "after the stall").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: after the stall");
    let stored = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(stored.messages.len(), 4, "{:?}", stored.messages);
    assert_eq!(stored.messages[1].content, done.content);
    node.stop().await;
}

#[tokio::test]
async fn an_activation_waiting_on_consensus_does_not_hold_up_other_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let waiting = client.create_conversation(None, None).await.unwrap();
    let active = client.create_conversation(None, None).await.unwrap();
    collect_turn(client.send(waiting.id, "one").await.unwrap()).await;
    collect_turn(client.send(active.id, "two").await.unwrap()).await;
    assert!(admin.evict(waiting.id).await.unwrap(), "it was active");

    let store = node.node.as_ref().unwrap().context().store.clone();
    store.stall_flushes(STALL);
    // Reactivating `waiting` commits an activation, which cannot finish now.
    let blocked_client = node.client().await;
    let mut blocked = Box::pin(blocked_client.get_conversation(waiting.id));
    // That request reaches the node first: the admin API shows the activation waiting.
    await_activating(&admin, waiting.id, &mut blocked).await;
    let started = Instant::now();
    tokio::select! {
        biased;
        result = &mut blocked => panic!(
            "the activation finished ({result:?}) before a request for an already active \
             conversation was answered: activations hold up the shard host"
        ),
        result = tokio::time::timeout(WAIT, client.get_conversation(active.id)) => {
            let detail = result.expect("answered").expect("get");
            assert_eq!(detail.messages.len(), 2);
        }
    }
    assert!(started.elapsed() < ANSWER_BOUND, "{:?}", started.elapsed());

    store.stall_flushes(Duration::ZERO);
    // Once commits flow again the waiting request is answered by the activation it
    // waited for.
    let detail = tokio::time::timeout(WAIT, blocked)
        .await
        .expect("the waiting conversation activates after the stall")
        .expect("get");
    assert_eq!(detail.messages.len(), 2);
    node.stop().await;
}

/// A balance move hands a shard over only between turns ([`Handover::IfIdle`]). When it
/// finds a conversation still activating it is refused and leaves the activation alone,
/// so the request that started it goes on once the commit goes through. (A handover that
/// marked the activation to stop made that request's first turn die with "stopped on
/// this node during turn t1 (its shard moved)", a flake of the cluster tests under load.)
#[tokio::test]
async fn a_balance_handover_is_refused_while_a_conversation_activates_and_leaves_it_alone() {
    use shoal_node::actors::shard_host::{Handover, HandoverError, hand_over};
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    collect_turn(client.send(conv.id, "one").await.unwrap()).await;
    assert!(admin.evict(conv.id).await.unwrap(), "it was active");

    let ctx = node.node.as_ref().unwrap().context().clone();
    ctx.store.stall_flushes(STALL);
    // The send reactivates the conversation, whose activation cannot commit now.
    let sender = node.client().await;
    let mut sent = Box::pin(sender.send(conv.id, "two"));
    await_activating(&admin, conv.id, &mut sent).await;

    let host = ctx.shard_host.get().expect("the shard host runs").clone();
    let handed = tokio::time::timeout(
        WAIT,
        hand_over(
            &host,
            conv.id.shard,
            Handover::IfIdle,
            "a balance move (test)",
        ),
    )
    .await
    .expect("the handover answers at once");
    assert_eq!(handed, Err(HandoverError::Busy(conv.id.shard)));

    ctx.store.stall_flushes(Duration::ZERO);
    let turn = tokio::time::timeout(WAIT, sent)
        .await
        .expect("the send is accepted once commits flow")
        .expect("the activation was left alone");
    let frames = collect_turn(turn).await;
    assert_eq!(done_content(&frames), "echo: two");
    node.stop().await;
}
