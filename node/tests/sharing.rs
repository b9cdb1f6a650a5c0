//! Sharing through a real node, the SDK and the demo agent, tested as attacks: viewers
//! change nothing, editors run turns without the owner's credentials and never see the
//! owner's events, revoked, rotated and expired tokens stop at once (open follows too),
//! tokens do not cross conversations, guessing is rate limited.

mod common;

use common::*;
use futures::StreamExt;
use shoal_client::{Client, ClientError, ShareWith};
use shoal_protocol::client::UsageBy;
use shoal_protocol::sharing::{GrantTarget, Role};
use shoal_protocol::transcript::Event;
use shoal_protocol::{ConversationId, ErrorCode, MessageId};

fn code<T>(result: Result<T, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(_) => panic!("expected an error, got an answer"),
        Err(e) => e.code(),
    }
}

async fn say(client: &Client, conversation: ConversationId, text: &str) -> String {
    done_content(&collect_turn(client.send(conversation, text).await.expect("send")).await)
}

/// A link grant's token for `role` on `conversation`.
async fn link(owner: &Client, conversation: ConversationId, role: Role) -> String {
    owner
        .share(conversation, role, ShareWith::Link, None)
        .await
        .expect("share")
        .token
        .expect("a link has a token")
}

/// The next frame of a follow, or the error that ended it.
async fn next(
    follow: &mut shoal_client::FollowStream,
) -> Option<Result<shoal_protocol::transcript::EventFrame, ClientError>> {
    tokio::time::timeout(WAIT, follow.next())
        .await
        .expect("a frame or the end in time")
}

/// Reads a turn until its permission request; returns the request's id.
async fn permission_request(turn: &mut shoal_client::TurnStream) -> u64 {
    loop {
        let frame = tokio::time::timeout(WAIT, turn.next())
            .await
            .expect("a frame in time")
            .expect("the turn goes on")
            .expect("a frame");
        if let Event::PermissionRequest { request, .. } = frame.event {
            return request;
        }
    }
}

/// Reads a follow until it ends with an error; returns its code.
async fn follow_ends_with(follow: &mut shoal_client::FollowStream) -> Option<ErrorCode> {
    loop {
        match next(follow).await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return e.code(),
            None => panic!("the follow ended without an error"),
        }
    }
}

#[tokio::test]
async fn a_viewer_reads_the_redacted_transcript_and_every_mutating_request_is_forbidden() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    assert_eq!(say(&owner, conv.id, "hello").await, "echo: hello");
    let token = link(&owner, conv.id, Role::Viewer).await;
    let viewer = node.client_as("vera").await.with_share_token(Some(token));

    let view = viewer.get_shared(conv.id).await.unwrap();
    assert_eq!(view.role, Role::Viewer);
    let contents: Vec<&str> = view.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["hello", "echo: hello"]);
    let (page, _) = viewer.get_messages(conv.id, None, 10).await.unwrap();
    assert_eq!(page.len(), 2);

    let forbidden = Some(ErrorCode::Forbidden);
    assert_eq!(code(viewer.send(conv.id, "sneaky").await), forbidden);
    assert_eq!(code(viewer.cancel(conv.id).await), forbidden);
    assert_eq!(
        code(viewer.respond_permission(conv.id, 1, None).await),
        forbidden
    );
    assert_eq!(
        code(viewer.rewind(conv.id, MessageId(0), None).await),
        forbidden
    );
    assert_eq!(
        code(viewer.rename_conversation(conv.id, Some("x".into())).await),
        forbidden
    );
    assert_eq!(code(viewer.delete_conversation(conv.id).await), forbidden);
    assert_eq!(
        code(
            viewer
                .share(conv.id, Role::Editor, ShareWith::Link, None)
                .await
        ),
        forbidden
    );
    assert_eq!(code(viewer.grants(Some(conv.id)).await), forbidden);
    assert_eq!(code(viewer.set_share_lock(conv.id, true).await), forbidden);
    assert_eq!(code(viewer.list_queue(conv.id).await), forbidden);

    // Nothing changed.
    let detail = owner.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.summary.message_count, 2);
    assert_eq!(detail.summary.title.as_deref(), Some("hello"));
    assert_eq!(owner.grants(Some(conv.id)).await.unwrap().len(), 1);
    let grant = owner.grants(None).await.unwrap()[0].id;
    assert_eq!(code(viewer.revoke_grant(grant).await), forbidden);
    assert!(!owner.set_share_lock(conv.id, false).await.unwrap());
}

#[tokio::test]
async fn a_token_for_one_conversation_reads_as_missing_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let a = owner.create_conversation(None, None).await.unwrap();
    let b = owner.create_conversation(None, None).await.unwrap();
    let token = link(&owner, a.id, Role::Editor).await;
    let other = node.client_as("vera").await;
    let not_found = Some(ErrorCode::NotFound);
    // Without a token, and with A's token on B: no access, and no hint that B exists.
    assert_eq!(code(other.get_shared(b.id).await), not_found);
    let with_a = other.with_share_token(Some(token));
    assert_eq!(code(with_a.get_shared(b.id).await), not_found);
    assert_eq!(code(with_a.send(b.id, "hi").await), not_found);
    assert!(with_a.get_shared(a.id).await.is_ok());
}

#[tokio::test]
async fn revoked_rotated_and_expired_tokens_are_refused_and_end_open_follows() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    let vera = node.client_as("vera").await;
    let forbidden = Some(ErrorCode::Forbidden);

    // Revoked.
    let grant = owner
        .share(conv.id, Role::Viewer, ShareWith::Link, None)
        .await
        .unwrap();
    let viewer = vera.with_share_token(grant.token.clone());
    let mut follow = viewer.follow(conv.id, None);
    let first = next(&mut follow).await.unwrap().unwrap();
    assert!(matches!(first.event, Event::Reset { .. }), "{first:?}");
    assert!(owner.revoke_grant(grant.grant.id).await.unwrap());
    assert_eq!(follow_ends_with(&mut follow).await, forbidden);
    assert_eq!(code(viewer.get_shared(conv.id).await), forbidden);

    // Rotated: the old token stops, the new one works.
    let grant = owner
        .share(conv.id, Role::Viewer, ShareWith::Link, None)
        .await
        .unwrap();
    let old = vera.with_share_token(grant.token.clone());
    let mut follow = old.follow(conv.id, None);
    next(&mut follow).await.unwrap().unwrap();
    let rotated = owner.rotate_grant(grant.grant.id).await.unwrap();
    assert_eq!(rotated.grant.rotations, 1);
    assert_eq!(follow_ends_with(&mut follow).await, forbidden);
    assert_eq!(code(old.get_shared(conv.id).await), forbidden);
    let new = vera.with_share_token(rotated.token);
    assert!(new.get_shared(conv.id).await.is_ok());

    // Expired: refused once the time has come, and an open follow ends then.
    let grant = owner
        .share(conv.id, Role::Viewer, ShareWith::Link, Some(2_000))
        .await
        .unwrap();
    let brief = vera.with_share_token(grant.token);
    let mut follow = brief.follow(conv.id, None);
    next(&mut follow).await.unwrap().unwrap();
    assert_eq!(follow_ends_with(&mut follow).await, forbidden);
    assert_eq!(code(brief.get_shared(conv.id).await), forbidden);
}

#[tokio::test]
async fn an_editor_runs_turns_without_the_owners_credentials_and_sees_no_owner_events() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    owner
        .set_credential(None, "OWNER_SECRET", "s3cret-owner-value")
        .await
        .unwrap();
    assert_eq!(
        say(&owner, conv.id, "/echo-env OWNER_SECRET").await,
        "s3cret-owner-value"
    );
    let token = link(&owner, conv.id, Role::Editor).await;
    let editor = node.client_as("eddie").await.with_share_token(Some(token));

    // The agent that had the credential is replaced by one without it, and back.
    assert_eq!(
        say(&editor, conv.id, "/echo-env OWNER_SECRET").await,
        "<unset>"
    );
    assert_eq!(
        say(&owner, conv.id, "/echo-env OWNER_SECRET").await,
        "s3cret-owner-value"
    );

    // An editor's turn: no usage, no cost; permission requests do reach them.
    let frames = collect_turn(editor.send(conv.id, "/usage").await.unwrap()).await;
    for frame in &frames {
        match &frame.event {
            Event::UsageUpdate { .. } | Event::AgentWarning { .. } => {
                panic!("owner-only event reached an editor: {frame:?}")
            }
            Event::Done { usage, .. } => assert!(usage.is_none(), "{frame:?}"),
            _ => {}
        }
    }
    let mut turn = editor.send(conv.id, "/permission").await.unwrap();
    let request = permission_request(&mut turn).await;
    // While it runs, another editor message is not queued behind it.
    assert_eq!(
        code(editor.send(conv.id, "later").await),
        Some(ErrorCode::Busy)
    );
    editor
        .respond_permission(conv.id, request, Some("allow".into()))
        .await
        .unwrap();
    assert_eq!(
        done_content(&collect_turn(turn).await),
        "permission granted"
    );

    // What stays the owner's.
    let owner_ws = conv.workspace;
    assert_eq!(
        code(editor.list_credentials(Some(owner_ws)).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(editor.grants(Some(conv.id)).await),
        Some(ErrorCode::Forbidden)
    );
    let (_, total) = editor
        .with_share_token(None)
        .usage(None, None, None, UsageBy::Conversation)
        .await
        .unwrap();
    assert_eq!(total.turns, 0, "the owner's usage is not the editor's");

    // Locked: editors are read-only until unlocked.
    assert!(owner.set_share_lock(conv.id, true).await.unwrap());
    assert_eq!(
        code(editor.send(conv.id, "hi").await),
        Some(ErrorCode::Forbidden)
    );
    assert!(editor.get_shared(conv.id).await.unwrap().locked);
    owner.set_share_lock(conv.id, false).await.unwrap();
    assert_eq!(say(&editor, conv.id, "hi").await, "echo: hi");
}

#[tokio::test]
async fn guessing_link_tokens_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    let token = link(&owner, conv.id, Role::Viewer).await;
    let (known, _secret) = token.rsplit_once('.').unwrap();
    let mallory = node.client_as("mallory").await;
    for i in 0..shoal_node::sharing::SHARE_FAILURES_MAX {
        let guess = mallory.with_share_token(Some(format!("{known}.guess{i}")));
        assert_eq!(
            code(guess.get_shared(conv.id).await),
            Some(ErrorCode::Forbidden)
        );
    }
    // Now even the right token is refused for a while; other users are unaffected.
    let right = mallory.with_share_token(Some(token.clone()));
    assert_eq!(
        code(right.get_shared(conv.id).await),
        Some(ErrorCode::RateLimited)
    );
    let vera = node.client_as("vera").await.with_share_token(Some(token));
    assert!(vera.get_shared(conv.id).await.is_ok());
}

#[tokio::test]
async fn a_viewer_forks_into_their_own_workspace_without_the_owners_usage_or_grants() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    say(&owner, conv.id, "/usage").await;
    say(&owner, conv.id, "second").await;
    let token = link(&owner, conv.id, Role::Viewer).await;
    let vera = node.client_as("vera").await;
    let viewer = vera.with_share_token(Some(token));
    let fork = viewer
        .fork(conv.id, MessageId(1), None, None, None)
        .await
        .unwrap();
    assert_eq!(&fork.owner.0, "vera");
    assert_eq!(fork.message_count, 2);
    let mine = vera.get_conversation(fork.id).await.unwrap();
    assert_eq!(mine.messages[0].content, "/usage");
    assert!(vera.grants(Some(fork.id)).await.unwrap().is_empty());
    let (_, total) = vera
        .usage(None, None, None, UsageBy::Conversation)
        .await
        .unwrap();
    assert_eq!(total.turns, 0);
    // The fork is vera's own: she runs turns in it, the owner cannot see it.
    // A new agent session, given the forked transcript.
    let reply = say(&vera, fork.id, "mine").await;
    assert!(
        reply.contains("assistant: Reporting usage.") && reply.ends_with("mine"),
        "{reply}"
    );
    assert_eq!(
        code(owner.get_conversation(fork.id).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn user_grants_and_invitations_are_listed_for_their_holder_and_bind_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner
        .create_conversation(Some("plan".into()), None)
        .await
        .unwrap();
    let uma = node.client_as("uma").await;
    let grant = owner
        .share(
            conv.id,
            Role::Editor,
            ShareWith::User(shoal_protocol::UserId::parse("uma").unwrap()),
            None,
        )
        .await
        .unwrap();
    assert!(grant.token.is_none(), "a user grant has no token");
    let listed = uma.shared_with_me().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].conversation, conv.id);
    assert_eq!(listed[0].title.as_deref(), Some("plan"));
    // No token needed.
    assert_eq!(say(&uma, conv.id, "hi").await, "echo: hi");

    // An invitation binds to the first user who presents it.
    let invite = owner
        .share(conv.id, Role::Viewer, ShareWith::Invite, None)
        .await
        .unwrap();
    let ivan = node.client_as("ivan").await;
    let with_invite = ivan.with_share_token(invite.token.clone());
    assert!(with_invite.get_shared(conv.id).await.is_ok());
    assert!(
        ivan.get_shared(conv.id).await.is_ok(),
        "bound: no token needed"
    );
    assert_eq!(ivan.shared_with_me().await.unwrap().len(), 1);
    let mallory = node
        .client_as("mallory")
        .await
        .with_share_token(invite.token);
    assert_eq!(
        code(mallory.get_shared(conv.id).await),
        Some(ErrorCode::Forbidden)
    );
    let grants = owner.grants(Some(conv.id)).await.unwrap();
    assert!(grants.iter().any(|g| matches!(
        &g.target,
        GrantTarget::Invite { bound_to: Some(u) } if u.0 == "ivan"
    )));

    // Revoked: gone from the list, no access.
    owner.revoke_grant(grant.grant.id).await.unwrap();
    assert!(uma.shared_with_me().await.unwrap().is_empty());
    assert_eq!(
        code(uma.get_shared(conv.id).await),
        Some(ErrorCode::NotFound)
    );

    // A deleted conversation leaves the lists of those it was shared with.
    assert_eq!(ivan.shared_with_me().await.unwrap().len(), 1);
    owner.delete_conversation(conv.id).await.unwrap();
    assert!(ivan.shared_with_me().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_viewer_follow_of_a_whole_turn_gets_no_owner_only_event() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let owner = node.client().await;
    let conv = owner.create_conversation(None, None).await.unwrap();
    let token = link(&owner, conv.id, Role::Viewer).await;
    let viewer = node.client_as("vera").await.with_share_token(Some(token));
    let mut follow = viewer.follow(conv.id, None);
    next(&mut follow).await.unwrap().unwrap();
    // Usage and cost, a permission request, a tool call, an agent error.
    say(&owner, conv.id, "/usage").await;
    let mut turn = owner.send(conv.id, "/permission").await.unwrap();
    let request = permission_request(&mut turn).await;
    owner
        .respond_permission(conv.id, request, Some("allow".into()))
        .await
        .unwrap();
    collect_turn(turn).await;
    say(&owner, conv.id, "/tool").await;
    collect_turn(owner.send(conv.id, "/error").await.unwrap()).await;
    let frames = follow_until_done(&mut follow, 4).await;
    assert_gap_free(&frames);
    for frame in &frames {
        assert_eq!(
            frame.event.for_follower().as_ref(),
            Some(&frame.event),
            "an event outside the follower allowlist reached a viewer"
        );
        if let Event::Done { usage, .. } = &frame.event {
            assert!(usage.is_none());
        }
    }
}
