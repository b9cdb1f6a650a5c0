//! Permission policies through a real node and the demo agent's child process: an
//! agent's policy from the node config and a workspace's replicated policy answer the
//! agent's `session/request_permission` without asking, the workspace's winning; every
//! automatic answer is a `PermissionDecision` part of the transcript, which followers see
//! too; without a rule the owner is asked as before.

mod common;

use common::*;
use futures::StreamExt;
use shoal_client::{Client, ClientError};
use shoal_cluster_config::PermissionMode;
use shoal_protocol::permissions::PermissionPolicy;
use shoal_protocol::transcript::{Event, EventFrame, Part};
use shoal_protocol::{ConversationId, ErrorCode};

/// A node whose demo agent allows everything but `execute`, which it denies.
async fn node_with_agent_policy(dir: &std::path::Path) -> TestNode {
    let mut config = dev_config(dir);
    let (_, demo) = config
        .agents
        .iter_mut()
        .find(|(name, _)| name.as_str() == "demo")
        .expect("the dev config has the demo agent");
    demo.permissions.default = Some(PermissionMode::Allow);
    demo.permissions
        .kinds
        .insert("execute".into(), PermissionMode::Deny);
    TestNode::start_with(config).await
}

/// The `PermissionDecision` parts of a turn's final message: `(kind, allowed, rule)`.
fn decisions(frames: &[EventFrame]) -> Vec<(Option<String>, bool, String)> {
    final_message(frames)
        .parts
        .into_iter()
        .filter_map(|p| match p {
            Part::PermissionDecision {
                kind,
                allowed,
                rule,
                tool_call_id,
                ..
            } => {
                assert_eq!(tool_call_id.as_deref(), Some("call-p"));
                Some((kind, allowed, rule))
            }
            _ => None,
        })
        .collect()
}

fn asked(frames: &[EventFrame]) -> bool {
    frames
        .iter()
        .any(|f| matches!(f.event, Event::PermissionRequest { .. }))
}

async fn run(client: &Client, conversation: ConversationId, text: &str) -> Vec<EventFrame> {
    collect_turn(client.send(conversation, text).await.expect("send")).await
}

#[tokio::test]
async fn an_agents_policy_answers_without_asking_and_the_answer_is_in_the_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_agent_policy(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let (mut follow, _) = follow_attached(&client, conv.id).await;

    let read = run(&client, conv.id, "/permission read").await;
    assert_eq!(done_content(&read), "permission granted");
    assert!(!asked(&read), "nobody is asked");
    assert_eq!(
        decisions(&read),
        [(
            Some("read".into()),
            true,
            "agent `demo` policy: default = allow".into()
        )]
    );
    let execute = run(&client, conv.id, "/permission").await;
    assert_eq!(done_content(&execute), "permission denied");
    assert!(!asked(&execute));
    assert_eq!(
        decisions(&execute),
        [(
            Some("execute".into()),
            false,
            "agent `demo` policy: execute = deny".into()
        )]
    );

    // Followers see the record as the turn streams, like a tool call.
    let seen = follow_until_done(&mut follow, 2).await;
    let recorded = seen
        .iter()
        .filter(|f| {
            matches!(
                &f.event,
                Event::ToolCall {
                    part: Part::PermissionDecision { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(recorded, 2, "{seen:?}");
    assert!(!asked(&seen));
    // And it is stored with the message.
    let stored = client.get_conversation(conv.id).await.unwrap();
    assert!(
        stored.messages[1]
            .parts
            .iter()
            .any(|p| matches!(p, Part::PermissionDecision { allowed: true, .. }))
    );
    node.stop().await;
}

#[tokio::test]
async fn a_workspace_policy_wins_over_the_agents_and_ask_asks() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = node_with_agent_policy(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let (workspace, none) = client.workspace_permissions(None).await.unwrap();
    assert_eq!(workspace, conv.workspace);
    assert!(none.is_empty());

    let mut policy = PermissionPolicy::default();
    policy.set_rule("read=deny").unwrap();
    policy.set_rule("execute=ask").unwrap();
    let (_, set) = client
        .set_workspace_permissions(Some(conv.workspace), policy.clone())
        .await
        .unwrap();
    assert_eq!(set, policy);
    assert_eq!(client.workspace_permissions(None).await.unwrap().1, policy);

    let read = run(&client, conv.id, "/permission read").await;
    assert_eq!(done_content(&read), "permission denied");
    assert_eq!(
        decisions(&read),
        [(
            Some("read".into()),
            false,
            "workspace policy: read = deny".into()
        )]
    );
    // No workspace rule for `edit`: the agent's default.
    let edit = run(&client, conv.id, "/permission edit").await;
    assert_eq!(done_content(&edit), "permission granted");
    assert_eq!(
        decisions(&edit)[0].2,
        "agent `demo` policy: default = allow"
    );

    // `ask` in the workspace overrides the agent's `deny`: the owner answers.
    let mut turn = client.send(conv.id, "/permission").await.unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, turn.next())
        .await
        .expect("a frame in time")
    {
        let frame = frame.unwrap();
        if let Event::PermissionRequest { request, .. } = &frame.event {
            client
                .respond_permission(conv.id, *request, Some("allow".into()))
                .await
                .unwrap();
        }
        let done = matches!(frame.event, Event::Done { .. });
        frames.push(frame);
        if done {
            break;
        }
    }
    assert!(asked(&frames));
    assert_eq!(done_content(&frames), "permission granted");
    assert!(
        decisions(&frames).is_empty(),
        "an owner's answer is no policy's"
    );

    // Cleared: the agent's policy again.
    client
        .set_workspace_permissions(None, PermissionPolicy::default())
        .await
        .unwrap();
    let read = run(&client, conv.id, "/permission read").await;
    assert_eq!(done_content(&read), "permission granted");

    // Another user's workspace reads as missing, and nothing changes.
    let mallory = node.client_as("mallory").await;
    let refused = mallory
        .set_workspace_permissions(Some(conv.workspace), policy.clone())
        .await;
    match refused {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::NotFound, "{e:?}"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(
        client
            .workspace_permissions(None)
            .await
            .unwrap()
            .1
            .is_empty()
    );
    node.stop().await;
}
