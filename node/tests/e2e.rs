//! End-to-end: a real node on loopback, the real demo agent, driven through the SDK.

mod common;

use common::*;
use futures::StreamExt;
use shoal_client::{Client, ClientError, Profile};
use shoal_protocol::ErrorCode;
use shoal_protocol::transcript::{Event, MessageStatus, Part, Role, content_from_parts};

#[tokio::test]
async fn send_streams_the_reply_and_commits_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client
        .create_conversation(Some("first".into()), None)
        .await
        .unwrap();
    let turn = client.send(conv.id, "hello world").await.unwrap();
    let frames = collect_turn(turn).await;
    let text: String = frames
        .iter()
        .filter_map(|f| match &f.event {
            Event::TextChunk { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "echo: hello world");
    assert_eq!(done_content(&frames), "echo: hello world");
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.messages.len(), 2);
    assert_eq!(detail.messages[0].role, Role::User);
    assert_eq!(detail.messages[1].status, MessageStatus::Complete);
    for m in &detail.messages {
        assert_eq!(m.content, content_from_parts(&m.parts), "invariant 4");
    }
    // A second turn reuses the warm agent process.
    let frames = collect_turn(client.send(conv.id, "again").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: again");
    let listed = client.list_conversations(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message_count, 4);
    node.stop().await;
}

#[tokio::test]
async fn two_followers_see_identical_gap_free_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let other = node.client().await;
    // Each follower starts with a reset frame before anything else.
    let (mut a, _) = follow_attached(&other, conv.id).await;
    let (mut b, _) = follow_attached(&client, conv.id).await;
    let turn = collect_turn(client.send(conv.id, "/slow 20").await.unwrap()).await;
    let fa = follow_until_done(&mut a, 1).await;
    let fb = follow_until_done(&mut b, 1).await;
    assert_eq!(fa, fb);
    assert_gap_free(&fa);
    assert_eq!(done_content(&fa), done_content(&turn));
    node.stop().await;
}

/// A client's follows of one conversation share one follow on the node (from the second
/// on; the first joins it), and each still gets every event exactly once.
#[tokio::test]
async fn a_clients_follows_of_a_conversation_share_one_follow_on_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let gateway = node.client().await;
    let admin = node.admin().await;
    let mut follows = Vec::new();
    for _ in 0..4 {
        follows.push(follow_attached(&gateway, conv.id).await.0);
    }
    // The first follows alone until an event shows the shared one has caught up.
    assert_eq!(admin.status().await.unwrap().followers, 2);
    let turn = collect_turn(client.send(conv.id, "/slow 20").await.unwrap()).await;
    let mut seen = Vec::new();
    for follow in &mut follows {
        seen.push(follow_until_done(follow, 1).await);
    }
    assert!(seen.iter().all(|frames| *frames == seen[0]));
    assert_gap_free(&seen[0]);
    assert_eq!(done_content(&seen[0]), done_content(&turn));
    assert!(follows.iter().all(shoal_client::FollowStream::is_shared));
    eventually("the first follow's own stream is gone", || async {
        (admin.status().await.unwrap().followers == 1).then_some(())
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn late_joiner_gets_the_in_flight_turn_then_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut turn = client.send(conv.id, "/slow 40").await.unwrap();
    // Wait until a few chunks streamed.
    wait_for_chunks(&mut turn, 5).await;
    let mut late = client.follow(conv.id, None);
    let first = tokio::time::timeout(WAIT, late.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Event::Reset { snapshot } = &first.event else {
        panic!("expected reset, got {first:?}")
    };
    let in_flight = snapshot
        .in_flight
        .as_ref()
        .expect("the snapshot carries the running turn");
    assert!(
        !in_flight.content.is_empty(),
        "the snapshot has the text streamed so far"
    );
    let rest = follow_until_done(&mut late, 1).await;
    let mut rebuilt = in_flight.content.clone();
    for f in &rest {
        if let Event::TextChunk { text, .. } = &f.event {
            rebuilt.push_str(text);
        }
    }
    assert_eq!(rebuilt, done_content(&rest));
    let mut all = vec![first];
    all.extend(rest);
    assert_gap_free(&all);
    node.stop().await;
}

#[tokio::test]
async fn follow_since_resumes_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut first = client.follow(conv.id, None);
    let _turn = client.send(conv.id, "/slow 30").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 8 {
        seen.push(
            tokio::time::timeout(WAIT, first.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    let last = first.last_seq().expect("a last seq");
    assert_eq!(last, seen.last().unwrap().seq);
    drop(first);
    let mut resumed = client.follow(conv.id, Some(last));
    let rest = follow_until_done(&mut resumed, 1).await;
    assert_eq!(
        rest[0].seq.0,
        last.0 + 1,
        "resumes right after {last}: {:?}",
        rest[0]
    );
    assert!(
        rest.iter().all(|f| !matches!(f.event, Event::Reset { .. })),
        "replayed, not reset"
    );
    seen.extend(rest);
    assert_gap_free(&seen);
    node.stop().await;
}

#[tokio::test]
async fn restart_keeps_history_and_resets_followers_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client
        .create_conversation(Some("keep".into()), None)
        .await
        .unwrap();
    collect_turn(client.send(conv.id, "remember me").await.unwrap()).await;
    drop(client);
    node.stop().await;

    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.summary.title.as_deref(), Some("keep"));
    assert_eq!(detail.messages.len(), 2);
    assert_eq!(detail.messages[1].content, "echo: remember me");
    let frames = collect_turn(client.send(conv.id, "still here").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: still here");
    node.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    for token in [
        "",
        "garbage",
        "shoal1.e30.AAAA",
        &format!("{}x", node.profile.token),
    ] {
        let profile = Profile {
            token: token.to_owned(),
            ..node.profile.clone()
        };
        match Client::connect(&profile).await {
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{token:?}: {e}"),
            Ok(_) => panic!("token {token:?} was accepted"),
        }
    }
    // The admin token is not a user token and vice versa.
    let admin_as_user = Profile {
        token: node.profile.admin_token.clone().unwrap(),
        ..node.profile.clone()
    };
    assert!(Client::connect(&admin_as_user).await.is_err());
    let client = node.client().await;
    assert!(client.list_conversations(10).await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn unknown_and_foreign_conversations_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let missing = "c-3-0000000000000000000000000000beef".parse().unwrap();
    let err = client.get_conversation(missing).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let beyond = "c-9999-0000000000000000000000000000beef".parse().unwrap();
    assert_eq!(
        client.get_conversation(beyond).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // Another user cannot see or drive dev's conversation.
    let conv = client.create_conversation(None, None).await.unwrap();
    let admin = node.admin().await;
    let token = admin
        .issue_token(shoal_protocol::UserId::parse("mallory").unwrap(), 60)
        .await
        .unwrap();
    let mallory = Client::connect(&Profile {
        token,
        ..node.profile.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        mallory.get_conversation(conv.id).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert!(mallory.send(conv.id, "hi").await.is_err());
    let mut follow = mallory.follow(conv.id, None);
    let first = tokio::time::timeout(WAIT, follow.next())
        .await
        .unwrap()
        .expect("an item");
    assert!(
        matches!(first, Err(ClientError::Server(ref e)) if e.code == ErrorCode::NotFound),
        "{first:?}"
    );
    assert_eq!(
        client
            .get_conversation(conv.id)
            .await
            .unwrap()
            .messages
            .len(),
        0
    );
    node.stop().await;
}

#[tokio::test]
async fn owner_only_events_never_reach_followers() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let follower_client = node.client().await;
    let (mut follower, _) = follow_attached(&follower_client, conv.id).await;
    // /usage sends owner-only usage; /permission an owner-only permission request.
    let usage_turn = collect_turn(client.send(conv.id, "/usage").await.unwrap()).await;
    assert!(
        usage_turn
            .iter()
            .any(|f| matches!(f.event, Event::UsageUpdate { .. })),
        "initiator sees usage"
    );
    let mut turn = client.send(conv.id, "/permission").await.unwrap();
    let mut initiator = Vec::new();
    while let Some(frame) = tokio::time::timeout(WAIT, turn.next()).await.unwrap() {
        let frame = frame.unwrap();
        if let Event::PermissionRequest {
            request, options, ..
        } = &frame.event
        {
            let allow = options
                .iter()
                .find(|o| o.kind.starts_with("allow"))
                .unwrap()
                .option_id
                .clone();
            client
                .respond_permission(conv.id, *request, Some(allow))
                .await
                .unwrap();
        }
        let done = matches!(frame.event, Event::Done { .. });
        initiator.push(frame);
        if done {
            break;
        }
    }
    assert!(
        initiator
            .iter()
            .any(|f| matches!(f.event, Event::PermissionRequest { .. }))
    );
    assert_eq!(done_content(&initiator), "permission granted");
    let seen = follow_until_done(&mut follower, 2).await;
    for frame in &seen {
        assert!(
            !matches!(
                frame.event,
                Event::PermissionRequest { .. }
                    | Event::UsageUpdate { .. }
                    | Event::AgentWarning { .. }
            ),
            "owner-only event reached a follower: {frame:?}"
        );
        if let Event::Done { usage, .. } = &frame.event {
            assert!(usage.is_none(), "usage reached a follower");
        }
    }
    assert_gap_free(&seen);
    node.stop().await;
}

#[tokio::test]
async fn tools_and_reasoning_become_ordered_parts() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/tool").await.unwrap()).await;
    let Some(Event::Done { message, .. }) = frames.last().map(|f| &f.event) else {
        panic!()
    };
    assert!(
        matches!(&message.parts[0], Part::ToolCall { tool_call_id, status: shoal_protocol::transcript::ToolStatus::Completed, .. } if tool_call_id == "call-1"),
        "{:?}",
        message.parts
    );
    assert_eq!(message.content, content_from_parts(&message.parts));
    let frames = collect_turn(client.send(conv.id, "/think").await.unwrap()).await;
    let Some(Event::Done { message, .. }) = frames.last().map(|f| &f.event) else {
        panic!()
    };
    assert!(
        matches!(message.parts[0], Part::Reasoning { .. }),
        "{:?}",
        message.parts
    );
    assert!(matches!(message.parts.last(), Some(Part::Text { .. })));
    node.stop().await;
}

#[tokio::test]
async fn write_goes_through_the_client_fs_into_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(
        client
            .send(conv.id, "/write notes.txt hello-file")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(done_content(&frames), "wrote notes.txt");
    let ws = node
        .node
        .as_ref()
        .unwrap()
        .context()
        .workspace_dir(conv.workspace);
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "hello-file"
    );
    let frames = collect_turn(
        client
            .send(conv.id, "/write ../../escape.txt x")
            .await
            .unwrap(),
    )
    .await;
    assert!(
        done_content(&frames).starts_with("write failed"),
        "{}",
        done_content(&frames)
    );
    node.stop().await;
}

/// The slash commands an agent offers (`available_commands_update`) are kept for the
/// conversation and shown to its owner (a viewer's redacted view has no such field).
#[tokio::test]
async fn the_agents_slash_commands_are_shown_to_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    assert!(
        client
            .get_conversation(conv.id)
            .await
            .unwrap()
            .commands
            .is_empty()
    );
    let frames = collect_turn(client.send(conv.id, "/commands").await.unwrap()).await;
    assert_eq!(done_content(&frames), "commands sent");
    let detail = client.get_conversation(conv.id).await.unwrap();
    let names: Vec<&str> = detail.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["review", "init"]);
    assert_eq!(detail.commands[0].hint.as_deref(), Some("what to focus on"));
}
