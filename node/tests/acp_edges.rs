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
