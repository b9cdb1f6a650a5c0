//! ACP edge cases through a real node and the real demo agent: sloppy framing, request
//! ids of the wrong type, agent stderr kept from followers, the turn timeout's cancel,
//! and agents that require authentication.

mod common;

use common::*;
use shoal_protocol::transcript::MessageStatus;

/// A node whose turns fail after 20 s without agent output (far below the tests' wait),
/// so whatever the agent's last message was left unread shows as a failed turn.
async fn short_idle_node(dir: &std::path::Path) -> TestNode {
    let mut config = dev_config(dir);
    config.conversation.turn_idle_timeout_ms = 20_000.try_into().unwrap();
    TestNode::start_with(config).await
}

#[tokio::test]
async fn a_final_message_without_its_newline_ends_the_turn_after_a_quiet_window() {
    let dir = tempfile::tempdir().unwrap();
    // A message left until the idle timeout would fail the turn.
    let mut node = short_idle_node(dir.path()).await;
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
    // An answer never matched would fail the turn.
    let mut node = short_idle_node(dir.path()).await;
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

/// A workspace credential the agent prints on stderr.
const PLANTED: &str = "planted-credential-5f2c9a";

#[tokio::test]
async fn agent_stderr_reaches_only_the_initiator_bounded_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    client
        .set_credential(None, "DEMO_TOKEN", PLANTED)
        .await
        .expect("set a credential");
    let conv = client.create_conversation(None, None).await.unwrap();
    let follower_client = node.client().await;
    let (mut follower, _) = follow_attached(&follower_client, conv.id).await;

    let frames = collect_turn(client.send(conv.id, "/stderr DEMO_TOKEN").await.unwrap()).await;
    // The initiator: a generic error, and the end of stderr as a warning, redacted.
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted);
    let error = message.error.clone().unwrap_or_default();
    assert!(error.contains("exited"), "{error}");
    let excerpt = warnings(&frames)
        .into_iter()
        .find(|w| w.contains("stderr"))
        .unwrap_or_else(|| panic!("no stderr excerpt for the initiator: {frames:?}"));
    assert!(
        excerpt.contains("fatal: DEMO_TOKEN=[redacted] rejected, key [redacted]"),
        "{excerpt}"
    );
    assert!(
        excerpt.len() <= shoal_node::agent_process::STDERR_EXCERPT_BYTES_MAX + 100,
        "{} bytes",
        excerpt.len()
    );
    let shown = format!("{frames:?}");
    assert!(
        !shown.contains(PLANTED) && !shown.contains("sk-ant-api03"),
        "{shown}"
    );

    // The follower and the stored transcript: Shoal's message only.
    let followed = follow_until_done(&mut follower, 1).await;
    let followed_text = format!("{followed:?}");
    assert!(
        followed.iter().any(|f| matches!(&f.event, shoal_protocol::transcript::Event::Error { message } if *message == error)),
        "{followed_text}"
    );
    for leak in ["log line", "shoal-demo-agent", "fatal", PLANTED] {
        assert!(
            !followed_text.contains(leak),
            "a follower saw {leak:?}: {followed_text}"
        );
    }
    let stored = client.get_conversation(conv.id).await.unwrap();
    let stored_text = format!("{stored:?}");
    for leak in ["log line", "shoal-demo-agent", "fatal", PLANTED] {
        assert!(
            !stored_text.contains(leak),
            "the transcript holds {leak:?}: {stored_text}"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn an_agent_that_requires_authentication_says_what_to_configure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    for spec in config.agents.values_mut() {
        spec.env.insert(
            shoal_demo_agent::REQUIRE_AUTH_ENV.to_owned(),
            "DEMO_API_KEY".to_owned(),
        );
    }
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "hi").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Interrupted);
    let error = message.error.unwrap_or_default();
    assert!(
        error.starts_with(
            "agent `demo` requires authentication (methods: `demo-key` Demo API key: Requires \
             setting the `DEMO_API_KEY` environment variable)"
        ),
        "{error}"
    );
    assert!(
        error.contains("`[agents.demo].env`") && error.contains("shoalctl creds set"),
        "{error}"
    );
    // Configured as the message says, the next turn runs.
    client
        .set_credential(None, "DEMO_API_KEY", "demo-key-value")
        .await
        .expect("set a credential");
    let frames = collect_turn(client.send(conv.id, "again").await.unwrap()).await;
    let message = final_message(&frames);
    assert_eq!(message.status, MessageStatus::Complete, "{message:?}");
    // The new session is given the conversation so far before the message.
    assert!(message.content.ends_with(" again"), "{:?}", message.content);
    node.stop().await;
}
