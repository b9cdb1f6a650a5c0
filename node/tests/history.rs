//! Rewind, fork, rename and delete through a real node, the SDK and the demo agent:
//! what is kept and dropped, the agent reset (its history proves it), followers' view,
//! and bad input refused with nothing changed.

mod common;

use common::*;
use futures::StreamExt;
use shoal_client::{Client, ClientError};
use shoal_protocol::transcript::{Event, Role};
use shoal_protocol::{ConversationId, ErrorCode, MessageId};

async fn say(client: &Client, conversation: ConversationId, text: &str) -> String {
    let turn = client.send(conversation, text).await.expect("send");
    done_content(&collect_turn(turn).await)
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Option<ErrorCode> {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

fn contents(detail: &shoal_protocol::client::ConversationDetail) -> Vec<String> {
    detail.messages.iter().map(|m| m.content.clone()).collect()
}

#[tokio::test]
async fn a_rewind_drops_what_follows_resets_the_agent_and_resyncs_followers() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    for text in ["one", "two", "three"] {
        assert_eq!(say(&client, conv.id, text).await, format!("echo: {text}"));
    }
    assert_eq!(
        say(&client, conv.id, "/history").await,
        "history: 3 earlier prompts: one | two | three"
    );
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(
        detail.summary.title.as_deref(),
        Some("one"),
        "titled by its first message"
    );
    let mut follow = client.follow(conv.id, None);
    let first = tokio::time::timeout(WAIT, follow.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first.event, Event::Reset { .. }), "{first:?}");

    // Keep "two" (m2): its reply and everything after go.
    let rewound = client.rewind(conv.id, MessageId(2), None).await.unwrap();
    assert_eq!(rewound.message_count, 3);
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(contents(&detail), ["one", "echo: one", "two"]);

    // The follower is told to start over and sees the rewound transcript.
    let reset = tokio::time::timeout(WAIT, async {
        while let Some(frame) = follow.next().await {
            if let Ok(frame) = frame
                && let Event::Reset { snapshot } = frame.event
            {
                return snapshot;
            }
        }
        panic!("the follow ended without a reset");
    })
    .await
    .expect("a reset after the rewind");
    let seen: Vec<&str> = reset.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(seen, ["one", "echo: one", "two"]);

    // The agent starts a new session: it remembers none of the dropped prompts.
    assert_eq!(
        say(&client, conv.id, "/history").await,
        "history: 0 earlier prompts: "
    );
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(detail.messages.len(), 5);
    assert_eq!(detail.messages[3].role, Role::User);
}

#[tokio::test]
async fn a_part_cut_and_forks_keep_content_equal_to_parts_and_the_original_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client
        .create_conversation(Some("deep".into()), None)
        .await
        .unwrap();
    say(&client, conv.id, "/think").await;
    say(&client, conv.id, "after").await;
    let original = client.get_conversation(conv.id).await.unwrap();
    let thought = &original.messages[1];
    assert!(thought.parts.len() >= 2, "{:?}", thought.parts);

    // Fork at the assistant message, cut to its first part (the reasoning).
    let fork = client
        .fork(conv.id, MessageId(1), Some(1), None, None)
        .await
        .unwrap();
    assert_eq!(fork.title.as_deref(), Some("Fork of deep"));
    assert_eq!(fork.workspace, conv.workspace);
    let forked = client.get_conversation(fork.id).await.unwrap();
    assert_eq!(forked.messages.len(), 2);
    let cut = &forked.messages[1];
    assert_eq!(cut.parts.len(), 1);
    assert_eq!(
        cut.content,
        shoal_protocol::transcript::content_from_parts(&cut.parts)
    );
    assert_eq!(
        client.get_conversation(conv.id).await.unwrap().messages,
        original.messages
    );
    // The fork is a conversation of its own: it runs turns, in a new agent session given
    // the fork's transcript (the cut reasoning has no content: nothing of it is sent).
    let echo = say(&client, fork.id, "hello").await;
    assert!(
        echo.starts_with("echo: [This is a new session") && echo.ends_with("hello"),
        "{echo}"
    );
    assert!(!echo.contains("left out"), "{echo}");

    // A fork into another workspace of the owner's.
    let ws = client.create_workspace("forks").await.unwrap();
    let moved = client
        .fork(
            conv.id,
            MessageId(0),
            None,
            Some(ws.id),
            Some("mine".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        (moved.workspace, moved.title.as_deref()),
        (ws.id, Some("mine"))
    );

    // In place: keep the reasoning only; content follows the parts.
    client.rewind(conv.id, MessageId(1), Some(1)).await.unwrap();
    let after = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(after.messages.len(), 2);
    assert_eq!(after.messages[1].parts, thought.parts[..1]);
    assert_eq!(
        after.messages[1].content,
        shoal_protocol::transcript::content_from_parts(&after.messages[1].parts)
    );
}

#[tokio::test]
async fn bad_cuts_busy_conversations_and_other_users_are_refused_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    say(&client, conv.id, "one").await;
    say(&client, conv.id, "two").await;
    let before = client.get_conversation(conv.id).await.unwrap();
    let invalid = Some(ErrorCode::InvalidArgument);
    // Past the end (a message index of a longer conversation), the last message, a
    // part cut of a user message, zero parts, more parts than there are.
    assert_eq!(
        code(client.rewind(conv.id, MessageId(9), None).await),
        invalid
    );
    assert_eq!(
        code(client.rewind(conv.id, MessageId(3), None).await),
        invalid
    );
    assert_eq!(
        code(client.rewind(conv.id, MessageId(0), Some(1)).await),
        invalid
    );
    assert_eq!(
        code(client.rewind(conv.id, MessageId(1), Some(0)).await),
        invalid
    );
    assert_eq!(
        code(client.rewind(conv.id, MessageId(1), Some(5)).await),
        invalid
    );
    assert_eq!(
        code(client.fork(conv.id, MessageId(9), None, None, None).await),
        invalid
    );
    let long = "x".repeat(shoal_protocol::client::TITLE_BYTES_MAX + 1);
    assert_eq!(
        code(client.rename_conversation(conv.id, Some(long)).await),
        invalid
    );

    // While a turn runs: busy, for a rewind and a delete.
    let mut slow = client.send(conv.id, "/slow 3000").await.unwrap();
    wait_for_chunks(&mut slow, 1).await;
    let busy = Some(ErrorCode::Busy);
    assert_eq!(code(client.rewind(conv.id, MessageId(0), None).await), busy);
    assert_eq!(code(client.delete_conversation(conv.id).await), busy);
    client.cancel(conv.id).await.unwrap();
    collect_turn(slow).await;

    // Another user: not found, whatever the request.
    let token = node
        .admin()
        .await
        .issue_token(shoal_protocol::UserId::parse("mallory").unwrap(), 600)
        .await
        .unwrap();
    let mallory = Client::connect(&shoal_client::Profile {
        token,
        ..node.profile.clone()
    })
    .await
    .unwrap();
    let not_found = Some(ErrorCode::NotFound);
    assert_eq!(
        code(mallory.rewind(conv.id, MessageId(0), None).await),
        not_found
    );
    assert_eq!(
        code(mallory.fork(conv.id, MessageId(0), None, None, None).await),
        not_found
    );
    assert_eq!(
        code(mallory.rename_conversation(conv.id, Some("x".into())).await),
        not_found
    );
    assert_eq!(code(mallory.delete_conversation(conv.id).await), not_found);

    let after = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(after.messages[..4], before.messages[..]);
    assert_eq!(after.summary.title, before.summary.title);
}

#[tokio::test]
async fn rename_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    say(&client, conv.id, "hello there").await;
    let renamed = client
        .rename_conversation(conv.id, Some("Greetings".into()))
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Greetings"));
    assert_eq!(
        client
            .get_conversation(conv.id)
            .await
            .unwrap()
            .summary
            .title
            .as_deref(),
        Some("Greetings")
    );
    // The live actor took the new title: the next turn does not bring the old one back.
    say(&client, conv.id, "again").await;
    assert_eq!(
        client.list_conversations(10).await.unwrap()[0]
            .title
            .as_deref(),
        Some("Greetings")
    );
    client.delete_conversation(conv.id).await.unwrap();
    assert_eq!(
        code(client.get_conversation(conv.id).await),
        Some(ErrorCode::NotFound)
    );
    assert!(client.list_conversations(10).await.unwrap().is_empty());
    assert_eq!(
        code(client.delete_conversation(conv.id).await),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn conversations_list_by_last_activity_in_pages_and_messages_page_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(client.create_conversation(None, None).await.unwrap().id);
    }
    // Activity is a user message's time; each comes after the whole previous turn (an
    // agent process start and commits), so the times are strictly increasing.
    say(&client, ids[1], "one").await;
    say(&client, ids[2], "two").await;
    say(&client, ids[0], "first").await;
    say(&client, ids[0], "second").await;
    // ids[0] has the newest activity now, then ids[2], then ids[1].
    let (page, next) = client.list_conversations_page(2, None, None).await.unwrap();
    let listed: Vec<ConversationId> = page.iter().map(|l| l.summary.id).collect();
    assert_eq!(listed, [ids[0], ids[2]]);
    assert!(page[0].last_activity_ms > page[1].last_activity_ms);
    let (rest, last) = client
        .list_conversations_page(2, next.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|l| l.summary.id).collect::<Vec<_>>(),
        [ids[1]]
    );
    assert_eq!(last, None);
    // One workspace's only.
    let ws = client.create_workspace("paged").await.unwrap();
    let there = client
        .create_conversation_in(ws.id, None, None)
        .await
        .unwrap();
    let (only, _) = client
        .list_conversations_page(10, None, Some(ws.id))
        .await
        .unwrap();
    assert_eq!(
        only.iter().map(|l| l.summary.id).collect::<Vec<_>>(),
        [there.id]
    );
    assert_eq!(
        code(
            client
                .list_conversations_page(2, Some("nonsense".into()), None)
                .await
        ),
        Some(ErrorCode::InvalidArgument)
    );

    // Messages m0..m3: the newest three, then what is before m1.
    let (newest, more) = client.get_messages(ids[0], None, 3).await.unwrap();
    let positions: Vec<u64> = newest.iter().map(|m| m.id.0).collect();
    assert_eq!((positions, more), (vec![1, 2, 3], true));
    let (older, more) = client
        .get_messages(ids[0], Some(MessageId(1)), 5)
        .await
        .unwrap();
    assert_eq!(
        (older.len(), older[0].content.as_str(), more),
        (1, "first", false)
    );
    let token = node
        .admin()
        .await
        .issue_token(shoal_protocol::UserId::parse("eve").unwrap(), 600)
        .await
        .unwrap();
    let eve = Client::connect(&shoal_client::Profile {
        token,
        ..node.profile.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        code(eve.get_messages(ids[0], None, 3).await),
        Some(ErrorCode::NotFound)
    );
    assert!(
        eve.list_conversations_page(10, None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn usage_totals_are_the_sum_of_what_each_turn_used() {
    use shoal_protocol::client::UsageBy;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let a = client.create_conversation(None, None).await.unwrap();
    let ws = client.create_workspace("metered").await.unwrap();
    let b = client
        .create_conversation_in(ws.id, None, None)
        .await
        .unwrap();
    client
        .set_credential(Some(ws.id), "METERED_KEY", "k")
        .await
        .unwrap();
    // The demo agent's session total goes 0.01, 0.02: each turn adds 0.01.
    say(&client, a.id, "/usage").await;
    say(&client, a.id, "/usage").await;
    say(&client, b.id, "/usage").await;
    say(&client, b.id, "no usage reported").await;

    let (rows, total) = client
        .usage(None, None, None, UsageBy::Conversation)
        .await
        .unwrap();
    let row = |id: ConversationId| {
        rows.iter()
            .find(|r| r.key == id.to_string())
            .unwrap_or_else(|| panic!("a row for {id}: {rows:?}"))
            .clone()
    };
    let (ra, rb) = (row(a.id), row(b.id));
    assert_eq!((ra.turns, ra.input_tokens, ra.output_tokens), (2, 20, 40));
    assert_eq!(ra.cached_read_tokens, 10);
    assert_eq!(
        ra.cost,
        [("USD".to_owned(), 20_000)],
        "deltas of the running total"
    );
    // b's second turn reported nothing: it counts, with nothing used.
    assert_eq!(
        (rb.turns, rb.output_tokens, rb.cost.clone()),
        (2, 20, vec![("USD".to_owned(), 10_000)])
    );
    assert_eq!(total.turns, ra.turns + rb.turns);
    assert_eq!(total.output_tokens, ra.output_tokens + rb.output_tokens);
    assert_eq!(total.cost, [("USD".to_owned(), 30_000)]);

    // Per credential: b's agent ran with the workspace's key, a's with none.
    let (by_key, _) = client
        .usage(None, None, None, UsageBy::Credential)
        .await
        .unwrap();
    let turns_of = |key: &str| by_key.iter().find(|r| r.key == key).map(|r| r.turns);
    assert_eq!(
        (turns_of("METERED_KEY"), turns_of("(none)")),
        (Some(2), Some(2)),
        "{by_key:?}"
    );
    let (by_ws, only_b) = client
        .usage(Some(ws.id), None, None, UsageBy::Workspace)
        .await
        .unwrap();
    assert_eq!((by_ws.len(), only_b.turns), (1, 2));
    let (_, demo) = client
        .usage(None, Some(a.agent.clone()), None, UsageBy::Agent)
        .await
        .unwrap();
    assert_eq!(demo.turns, 4);
    let (none, nothing) = client
        .usage(None, Some("nope".into()), None, UsageBy::Agent)
        .await
        .unwrap();
    assert!(none.is_empty() && nothing.turns == 0);
    let future = u64::MAX / 2;
    assert_eq!(
        client
            .usage(None, None, Some(future), UsageBy::Agent)
            .await
            .unwrap()
            .1
            .turns,
        0
    );
    // What was used stays counted after the conversation is deleted.
    client.delete_conversation(a.id).await.unwrap();
    assert_eq!(
        client
            .usage(None, None, None, UsageBy::Agent)
            .await
            .unwrap()
            .1
            .turns,
        4
    );
    // Another user sees none of it.
    let token = node
        .admin()
        .await
        .issue_token(shoal_protocol::UserId::parse("frank").unwrap(), 600)
        .await
        .unwrap();
    let frank = Client::connect(&shoal_client::Profile {
        token,
        ..node.profile.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        frank
            .usage(None, None, None, UsageBy::Agent)
            .await
            .unwrap()
            .1
            .turns,
        0
    );
}

#[tokio::test]
async fn compactions_are_kept_apart_from_messages_and_seed_a_clone() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client
        .create_conversation(Some("long".into()), None)
        .await
        .unwrap();
    say(&client, conv.id, "hello").await;
    assert_eq!(say(&client, conv.id, "/compact").await, "Compacted.");
    let list = client.list_compactions(conv.id).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].summary, "Summary: the user asked things.");
    assert_eq!((list[0].seq, list[0].turn.0), (1, 2));
    // Not a message part: the transcript holds the turn's text only.
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert!(
        detail
            .messages
            .iter()
            .all(|m| !m.content.contains("Summary:"))
    );
    // A fork does not carry it.
    let fork = client
        .fork(conv.id, MessageId(3), None, None, None)
        .await
        .unwrap();
    assert!(client.list_compactions(fork.id).await.unwrap().is_empty());
    // Clone from the summary: one message, the summary, in a conversation that runs.
    let clone = client
        .clone_from_compaction(conv.id, 1, None)
        .await
        .unwrap();
    assert_eq!(clone.title.as_deref(), Some("Summary of long"));
    let seeded = client.get_conversation(clone.id).await.unwrap();
    assert_eq!(contents(&seeded), ["Summary: the user asked things."]);
    let echo = say(&client, clone.id, "go on").await;
    assert!(
        echo.contains("Summary: the user asked things.") && echo.ends_with("go on"),
        "{echo}"
    );
    assert_eq!(
        code(client.clone_from_compaction(conv.id, 9, None).await),
        Some(ErrorCode::InvalidArgument)
    );
    // Deleted with its conversation.
    client.delete_conversation(conv.id).await.unwrap();
    assert_eq!(
        code(client.list_compactions(conv.id).await),
        Some(ErrorCode::NotFound)
    );
}
