//! Sending while a turn runs, through a real node and the SDK: messages queue behind
//! the turn and run in order, the queue can be listed and edited, "send now" cancels the
//! running turn and goes first, and an initiator that disconnects can reattach within
//! the grace period.

mod common;

use common::*;
use shoal_client::{Client, Sent};
use shoal_protocol::transcript::{MessageStatus, Role};
use shoal_protocol::{ConversationId, ErrorCode};

async fn queued(
    client: &Client,
    conversation: ConversationId,
    text: &str,
) -> shoal_client::QueuedSend {
    match client
        .send_or_queue(conversation, text)
        .await
        .expect("send")
    {
        Sent::Queued(queued) => queued,
        Sent::Started(_) => panic!("{text:?} started at once; expected it queued"),
    }
}

/// The user messages and replies of a conversation, in order.
async fn transcript(
    client: &Client,
    conversation: ConversationId,
) -> Vec<(Role, String, MessageStatus)> {
    client
        .get_conversation(conversation)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| (m.role, m.content, m.status))
        .collect()
}

#[tokio::test]
async fn messages_sent_during_a_turn_queue_and_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let Sent::Started(mut running) = client.send_or_queue(conv.id, "/slow 40").await.unwrap()
    else {
        panic!("an idle conversation starts the turn at once");
    };
    wait_for_chunks(&mut running, 1).await;
    let a = queued(&client, conv.id, "a").await;
    let b = queued(&client, conv.id, "b").await;
    let c = queued(&client, conv.id, "c").await;
    assert_eq!((a.position(), b.position(), c.position()), (0, 1, 2));
    let listed = client.list_queue(conv.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|q| q.text.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    // Reorder: c first; remove a (its sender hears so).
    let moved = client.move_queued(conv.id, c.item(), 0).await.unwrap();
    assert_eq!(
        moved.iter().map(|q| q.text.as_str()).collect::<Vec<_>>(),
        ["c", "a", "b"]
    );
    let left = client.remove_queued(conv.id, a.item()).await.unwrap();
    assert_eq!(left.len(), 2);
    let removed = a
        .started()
        .await
        .err()
        .expect("a removed message never starts");
    assert_eq!(removed.code(), Some(ErrorCode::NotFound), "{removed}");

    collect_turn(running).await;
    // Each queued sender gets its own turn's stream when it starts.
    assert_eq!(
        done_content(&collect_turn(c.started().await.unwrap()).await),
        "echo: c"
    );
    assert_eq!(
        done_content(&collect_turn(b.started().await.unwrap()).await),
        "echo: b"
    );
    let texts: Vec<String> = transcript(&client, conv.id)
        .await
        .into_iter()
        .filter(|(role, ..)| *role == Role::User)
        .map(|(_, text, _)| text)
        .collect();
    assert_eq!(texts, ["/slow 40", "c", "b"]);
    assert!(client.list_queue(conv.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn send_now_cancels_the_running_turn_and_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut running = client.send(conv.id, "/slow 400").await.unwrap();
    wait_for_chunks(&mut running, 1).await;
    let later = queued(&client, conv.id, "later").await;
    let Sent::Queued(now) = client.send_now(conv.id, "urgent").await.unwrap() else {
        panic!("a turn was running: send-now queues first, then cancels it");
    };
    assert_eq!(now.position(), 0);
    collect_turn(running).await;
    assert_eq!(
        done_content(&collect_turn(now.started().await.unwrap()).await),
        "echo: urgent"
    );
    assert_eq!(
        done_content(&collect_turn(later.started().await.unwrap()).await),
        "echo: later"
    );
    let t = transcript(&client, conv.id).await;
    assert_eq!(
        t[1].2,
        MessageStatus::Interrupted,
        "the cut turn is saved as interrupted: {t:?}"
    );
    assert_eq!((t[2].1.as_str(), t[4].1.as_str()), ("urgent", "later"));
    // On an idle conversation, send-now is a plain send.
    let Sent::Started(turn) = client.send_now(conv.id, "idle").await.unwrap() else {
        panic!("nothing runs: it starts at once");
    };
    assert_eq!(done_content(&collect_turn(turn).await), "echo: idle");
}

#[tokio::test]
async fn an_initiator_that_reattaches_within_the_grace_keeps_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.initiator_grace_ms = 20_000;
    let node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 60").await.unwrap();
    wait_for_chunks(&mut turn, 1).await;
    // The initiator goes away (its stream is dropped), then comes back.
    drop(turn);
    let again = node.client().await;
    let attached = eventually(
        "the node noticed the disconnect and takes a reattach",
        || async { again.attach_turn(conv.id).await.ok() },
    )
    .await;
    let frames = collect_turn(attached).await;
    assert_eq!(final_message(&frames).status, MessageStatus::Complete);
    // With no turn running there is nothing to attach to.
    let none = again.attach_turn(conv.id).await.err().expect("no turn");
    assert_eq!(none.code(), Some(ErrorCode::NotFound), "{none}");
}
