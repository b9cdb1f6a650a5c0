//! Switching a conversation's agent between turns, through a real node with two demo
//! agent configurations (two child processes): the new agent's session is seeded with
//! the transcript; switching back resumes the first agent's own session
//! (`session/load`); switches during a turn, to the same or an unknown agent, and by
//! sharees are refused and change nothing.

mod common;

use common::*;
use shoal_client::{ClientError, ShareWith};
use shoal_cluster_config::AgentName;
use shoal_protocol::ErrorCode;
use shoal_protocol::sharing::Role;

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (ErrorCode, String) {
    match result {
        Err(ClientError::Server(e)) => (e.code, e.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_switched_agent_gets_the_transcript_and_switching_back_resumes_the_old_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    let demo = config
        .agents
        .iter()
        .find(|(name, _)| name.as_str() == "demo")
        .map(|(_, spec)| spec.clone())
        .expect("the dev config has the demo agent");
    config.agents.insert(AgentName::new("demo2").unwrap(), demo);
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let first = collect_turn(client.send(conv.id, "remember alpha").await.unwrap()).await;
    assert_eq!(done_content(&first), "echo: remember alpha");
    client
        .set_session_settings(conv.id, Some("ask"), None)
        .await
        .unwrap();

    let switched = client.switch_agent(conv.id, "demo2").await.unwrap();
    assert_eq!(switched.agent, "demo2");
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.summary.agent, "demo2");
    assert_eq!(
        detail.settings.mode, None,
        "the old agent's picks are cleared"
    );

    // The new agent starts a session given the conversation so far.
    let frames = collect_turn(client.send(conv.id, "hello").await.unwrap()).await;
    let started = statuses(&frames);
    assert!(
        started
            .iter()
            .any(|s| s == "the agent started a new session; it was given the conversation so far"),
        "{started:?}"
    );
    let answer = done_content(&frames);
    assert!(
        answer.starts_with("echo: ")
            && answer.contains("remember alpha")
            && answer.ends_with("hello"),
        "{answer}"
    );

    // Refusals change nothing.
    let (code, message) = refused(client.switch_agent(conv.id, "demo2").await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("already runs agent `demo2`"), "{message}");
    let (code, message) = refused(client.switch_agent(conv.id, "ghost").await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("ready agents:"), "{message}");
    let mut slow = client.send(conv.id, "/slow 200").await.unwrap();
    wait_for_chunks(&mut slow, 1).await;
    let (code, _) = refused(client.switch_agent(conv.id, "demo").await);
    assert_eq!(code, ErrorCode::Busy);
    assert!(client.cancel(conv.id).await.unwrap());
    collect_turn(slow).await;
    let token = client
        .share(conv.id, Role::Editor, ShareWith::Link, None)
        .await
        .unwrap()
        .token
        .unwrap();
    let editor = node.client_as("eddie").await.with_share_token(Some(token));
    let (code, _) = refused(editor.switch_agent(conv.id, "demo").await);
    assert_eq!(code, ErrorCode::Forbidden);
    assert_eq!(
        client
            .get_conversation(conv.id)
            .await
            .unwrap()
            .summary
            .agent,
        "demo2"
    );

    // Back to the first agent: its own session, loaded (it remembers its prompts).
    client.switch_agent(conv.id, "demo").await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/history").await.unwrap()).await;
    let resumed = statuses(&frames);
    assert!(
        !resumed.iter().any(|s| s.contains("new session")),
        "the old session is resumed: {resumed:?}"
    );
    assert_eq!(
        done_content(&frames),
        "history: 1 earlier prompts: remember alpha"
    );
    node.stop().await;
}
