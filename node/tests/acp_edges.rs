//! ACP edge cases through a real node and the real demo agent: sloppy framing, request
//! ids of the wrong type, agent stderr kept from followers, the turn timeout's cancel,
//! and agents that require authentication.

mod common;

use common::*;
use shoal_protocol::transcript::MessageStatus;

#[tokio::test]
async fn a_final_message_without_its_newline_ends_the_turn_after_a_quiet_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    // Far below the test's wait: a message left until the idle timeout fails the turn.
    config.conversation.turn_idle_timeout_ms = 20_000.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/no-newline").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Complete, "{message:?}");
    assert_eq!(message.content, "no newline");
    // The same live process goes on: its late newline is a blank line.
    let frames = collect_turn(client.send(conv.id, "after").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: after");
    assert!(
        !statuses(&frames)
            .iter()
            .any(|s| s.starts_with("starting agent")),
        "the agent was restarted: {:?}",
        statuses(&frames)
    );
    node.stop().await;
}

/// A node whose turns time out after `turn_timeout_ms` (the other timeouts no longer).
fn timing_out_node(
    dir: &std::path::Path,
    turn_timeout_ms: u64,
) -> shoal_cluster_config::NodeConfig {
    let mut config = dev_config(dir);
    let conversation = &mut config.conversation;
    conversation.checkpoint_interval_ms = 100.try_into().unwrap();
    conversation.turn_timeout_ms = turn_timeout_ms.try_into().unwrap();
    conversation.turn_idle_timeout_ms = turn_timeout_ms.try_into().unwrap();
    conversation.permission_timeout_ms = turn_timeout_ms.try_into().unwrap();
    conversation.initiator_grace_ms = turn_timeout_ms;
    config
}

#[tokio::test]
async fn the_turn_timeout_cancels_and_an_agent_that_stops_keeps_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_with(timing_out_node(dir.path(), 2_000)).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    // 1000 chunks 50 ms apart: never idle, far longer than the timeout; stops on cancel.
    let frames = collect_turn(client.send(conv.id, "/slow 1000").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted, "{message:?}");
    let error = message.error.unwrap_or_default();
    assert!(
        error.contains("turn_timeout_ms") && error.contains("cancelled"),
        "{error}"
    );
    assert!(
        message.content.starts_with("chunk 1 "),
        "{:?}",
        message.content
    );
    // The agent ended its turn when asked: the same process runs the next one.
    let frames = collect_turn(client.send(conv.id, "after").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: after");
    assert!(
        !statuses(&frames)
            .iter()
            .any(|s| s.starts_with("starting agent")),
        "the agent was restarted: {:?}",
        statuses(&frames)
    );
    node.stop().await;
}

#[tokio::test]
async fn the_turn_timeout_kills_an_agent_that_ignores_the_cancel_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_with(timing_out_node(dir.path(), 2_000)).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    // `/hang` ignores session/cancel.
    let frames = collect_turn(client.send(conv.id, "/hang").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted, "{message:?}");
    let error = message.error.unwrap_or_default();
    assert!(
        error.contains("turn_timeout_ms")
            && error.contains("session/cancel")
            && error.contains("killed"),
        "{error}"
    );
    assert_eq!(message.content, "hanging now");
    let frames = collect_turn(client.send(conv.id, "recovered").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: recovered");
    assert!(
        statuses(&frames)
            .iter()
            .any(|s| s.starts_with("starting agent")),
        "a new agent process runs the next turn: {:?}",
        statuses(&frames)
    );
    node.stop().await;
}

#[tokio::test]
async fn an_answer_whose_id_has_the_wrong_json_type_is_matched_to_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    // Far below the test's wait: an answer never matched fails the turn.
    config.conversation.turn_idle_timeout_ms = 20_000.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    // The agent sees a numeric id and answers with it as a string.
    let frames = collect_turn(client.send(conv.id, "/string-id").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Complete, "{message:?}");
    assert_eq!(message.content, "request id was a number");
    let frames = collect_turn(client.send(conv.id, "after").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: after");
    node.stop().await;
}
