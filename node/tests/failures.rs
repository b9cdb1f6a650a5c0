//! Failure paths: crashing, hanging and missing agents, cancels, disconnects, bad frames.

mod common;

use common::*;
use futures::StreamExt;
use shoal_protocol::ErrorCode;
use shoal_protocol::transcript::{Event, MessageStatus};

#[tokio::test]
async fn crashing_agent_ends_the_turn_as_interrupted_and_the_next_turn_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/crash").await.unwrap()).await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f.event, Event::Error { .. })),
        "{frames:?}"
    );
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted);
    assert!(message.error.is_some());
    let frames = collect_turn(client.send(conv.id, "after crash").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: after crash");
    node.stop().await;
}

#[tokio::test]
async fn hanging_agent_is_bounded_by_the_turn_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.checkpoint_interval_ms = 100.try_into().unwrap();
    config.conversation.turn_idle_timeout_ms = 1500.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/hang").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted);
    assert!(
        message
            .error
            .as_deref()
            .unwrap_or("")
            .contains("turn_idle_timeout_ms"),
        "{message:?}"
    );
    // The partial output before the hang was kept.
    assert!(!message.content.is_empty());
    let frames = collect_turn(client.send(conv.id, "recovered").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: recovered");
    node.stop().await;
}

#[tokio::test]
async fn missing_agent_binary_refuses_conversations_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    for spec in config.agents.values_mut() {
        spec.command = "/nonexistent/agent-binary".into();
    }
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let err = client.create_conversation(None, None).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, shoal_client::ClientError::Server(e) if e.code == ErrorCode::InvalidArgument),
        "{err:?}"
    );
    assert!(shown.contains("/nonexistent/agent-binary"), "{shown}");
    assert!(shown.contains("none is ready"), "{shown}");
    node.stop().await;
}

#[tokio::test]
async fn cancel_stops_a_running_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 1000").await.unwrap();
    wait_for_chunks(&mut turn, 1).await;
    assert!(client.cancel(conv.id).await.unwrap());
    let mut rest = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, turn.next()).await.unwrap() {
        rest.push(frame.unwrap());
    }
    assert_eq!(final_message(&rest).status, MessageStatus::Cancelled);
    assert!(
        !client.cancel(conv.id).await.unwrap(),
        "nothing left to cancel"
    );
    node.stop().await;
}

#[tokio::test]
async fn initiator_disconnect_cancels_the_turn_once_the_grace_period_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.initiator_grace_ms = 300;
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let follower_client = node.client().await;
    let (mut follower, _) = follow_attached(&follower_client, conv.id).await;
    let mut turn = client.send(conv.id, "/slow 1000").await.unwrap();
    wait_for_chunks(&mut turn, 1).await;
    drop(turn);
    drop(client);
    let frames = follow_until_done(&mut follower, 1).await;
    assert_eq!(final_message(&frames).status, MessageStatus::Cancelled);
    node.stop().await;
}

#[tokio::test]
async fn a_second_message_during_a_turn_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let turn = client.send(conv.id, "/slow 20").await.unwrap();
    // Queued behind the running turn; `send` answers when its own turn starts.
    let second = tokio::spawn({
        let client = client.clone();
        async move { done_content(&collect_turn(client.send(conv.id, "second").await.unwrap()).await) }
    });
    collect_turn(turn).await;
    assert_eq!(second.await.unwrap(), "echo: second");
    let err = client.send(conv.id, "   ").await.err().expect("empty");
    assert_eq!(err.code(), Some(ErrorCode::InvalidArgument));
    node.stop().await;
}

#[tokio::test]
async fn graceful_stop_mid_turn_saves_the_turn_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 1000").await.unwrap();
    wait_for_chunks(&mut turn, 3).await;
    // The initiator is told before the node closes its endpoint.
    let told = tokio::spawn(async move {
        while let Some(Ok(frame)) = turn.next().await {
            if let Event::Done { message, .. } = frame.event {
                return Some(message);
            }
        }
        None
    });
    node.stop().await;
    let done = told
        .await
        .unwrap()
        .expect("the initiator got done before the node closed");
    assert!(
        done.error
            .as_deref()
            .unwrap_or("")
            .contains("shutting down"),
        "{done:?}"
    );
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let detail = client.get_conversation(conv.id).await.unwrap();
    let last = detail.messages.last().unwrap();
    assert_eq!(last, &done, "the stored end is the one the initiator saw");
    assert_eq!(last.status, MessageStatus::Interrupted);
    assert!(last.content.starts_with("chunk 1 "), "{last:?}");
    assert_eq!(
        last.content,
        shoal_protocol::transcript::content_from_parts(&last.parts)
    );
    node.stop().await;
}

#[tokio::test]
async fn a_lost_agent_session_is_replaced_by_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    collect_turn(client.send(conv.id, "first").await.unwrap()).await;
    let home = node
        .node
        .as_ref()
        .unwrap()
        .context()
        .agent_home(conv.workspace, conv.id);
    drop(client);
    node.stop().await;
    // The agent's own session store is gone: session/load must fail, and the node falls
    // back to session/new instead of failing every turn.
    std::fs::remove_dir_all(&home).unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let frames = collect_turn(client.send(conv.id, "second").await.unwrap()).await;
    // The new session is given the conversation so far with its first prompt.
    assert_eq!(
        done_content(&frames),
        "echo: [This is a new session of an ongoing conversation; the conversation so far:] <conversation> user: first assistant: echo: first </conversation> second"
    );
    assert!(
        frames.iter().any(
            |f| matches!(&f.event, Event::Status { text } if text.contains("could not resume"))
        ),
        "{frames:?}"
    );
    node.stop().await;
}

#[tokio::test]
async fn idle_conversations_passivate_and_reactivate_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.conversation.checkpoint_interval_ms = 100.try_into().unwrap();
    config.conversation.idle_passivate_ms = 300.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    collect_turn(client.send(conv.id, "one").await.unwrap()).await;
    let status = admin.status().await.unwrap();
    assert_eq!(
        (status.conversations_active, status.agent_processes),
        (1, 1),
        "{status:?}"
    );
    // Await passivation: the actor stops and its agent process is shut down.
    eventually("the idle conversation is passivated", || async {
        let status = admin.status().await.ok()?;
        (status.conversations_active == 0 && status.agent_processes == 0).then_some(())
    })
    .await;
    let frames = collect_turn(client.send(conv.id, "two").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: two");
    assert_eq!(
        client
            .get_conversation(conv.id)
            .await
            .unwrap()
            .messages
            .len(),
        4
    );
    node.stop().await;
}
