//! Unit tests of rewind, fork, rename and delete in the state machine.

use super::super::history::{DERIVED_TITLE_BYTES_MAX, derived_title};
use super::*;

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

/// A conversation with two complete turns: user "q1", assistant [text "a", reasoning
/// "r", text "b"]; user "q2", assistant [text "c"]. Messages m0..m3.
fn two_turns(mem: &mut Mem) {
    create(mem);
    let replies = [
        vec![
            Part::Text { text: "a".into() },
            Part::Reasoning { text: "r".into() },
            Part::Text { text: "b".into() },
        ],
        vec![Part::Text { text: "c".into() }],
    ];
    for (i, parts) in replies.into_iter().enumerate() {
        let turn = started(mem.run(&ShardCommand::AppendUserMessage {
            conversation: conv(),
            text: format!("q{}", i + 1),
            request_id: RequestId(i as u128 + 1),
            at_ms: 2,
        }))
        .turn;
        mem.run(&ShardCommand::EndTurn {
            conversation: conv(),
            message: header(&turn),
            delta: Some(super::super::super::parts_delta::PartsDelta::since(
                &parts,
                Default::default(),
            )),
            status: MessageStatus::Complete,
            stop_reason: Some(StopReason::EndTurn),
            error: None,
        })
        .unwrap();
    }
}

fn rewind(mem: &mut Mem, keep: u64, parts: Option<u32>) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::RewindConversation {
        conversation: conv(),
        owner: alice(),
        keep: MessageId(keep),
        parts,
    })
}

fn fork(mem: &mut Mem, upto: u64, parts: Option<u32>, uid: u128) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::ForkConversation {
        id: ConversationId::new(ShardId(3), uid),
        source: conv(),
        owner: alice(),
        workspace: WorkspaceId::new(ShardId(3), 7),
        upto: MessageId(upto),
        parts,
        title: None,
        at_ms: 9,
        request_id: RequestId(uid),
    })
}

fn record_of(mem: &Mem, id: ConversationId) -> ConversationRecord {
    let key = conversation_key(id);
    decode(&key, &mem.0[&key]).unwrap()
}

#[test]
fn the_first_message_names_an_untitled_conversation() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    assert_eq!(record_of(&mem, conv()).title.as_deref(), Some("q1"));
    assert_eq!(
        derived_title("\n  fix the build\nplease"),
        Some("fix the build".into())
    );
    let long = "é".repeat(100);
    let title = derived_title(&long).unwrap();
    assert!(title.len() <= DERIVED_TITLE_BYTES_MAX && long.starts_with(&title));
}

#[test]
fn rewind_to_a_user_message_drops_exactly_what_follows() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    let mut rec = record_of(&mem, conv());
    rec.agent_session = Some("s1".into());
    mem.0
        .insert(conversation_key(conv()), BincodeCodec.encode(&rec).unwrap());
    let Outcome::Conversation(after) = rewind(&mut mem, 2, None).unwrap() else {
        panic!()
    };
    assert_eq!(after.message_count, 3);
    assert_eq!(
        after.agent_session, None,
        "the agent's session is forgotten"
    );
    assert!(!mem.0.contains_key(&message_key(conv(), MessageId(3))));
    assert_eq!(stored_message(&mem, MessageId(2)).content, "q2");
    // The dropped turn's request id no longer finds it; a new turn follows the kept one.
    let again = started(send(&mut mem, 2));
    assert!(!again.duplicate);
    assert_eq!(again.user_message.id, MessageId(3));
}

#[test]
fn a_part_cut_keeps_the_first_parts_and_recomputes_content() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    rewind(&mut mem, 1, Some(2)).unwrap();
    let cut = stored_message(&mem, MessageId(1));
    assert_eq!(cut.parts.len(), 2);
    assert_eq!(cut.content, content_from_parts(&cut.parts));
    assert_eq!(cut.content, "a");
    assert_eq!(record_of(&mem, conv()).message_count, 2);
}

#[test]
fn cuts_that_drop_nothing_or_do_not_fit_are_refused_and_change_nothing() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    let before = mem.0.clone();
    for (keep, parts) in [
        (3, None),    // the last message: nothing follows
        (3, Some(1)), // all of the last message's parts: nothing follows either
        (1, Some(0)), // no part kept
        (1, Some(4)), // more parts than it has
        (0, Some(1)), // a user message has no parts to cut
        (9, None),    // past the end
    ] {
        let refused = rewind(&mut mem, keep, parts);
        assert!(
            matches!(refused, Err(Rejection::Invalid(_))),
            "{keep} {parts:?}: {refused:?}"
        );
        assert_eq!(mem.0, before, "a refused rewind writes nothing");
    }
    for (keep, parts) in [(1, Some(0)), (1, Some(4)), (0, Some(1)), (9, None)] {
        let refused = fork(&mut mem, keep, parts, 50);
        assert!(
            matches!(refused, Err(Rejection::Invalid(_))),
            "{keep} {parts:?}: {refused:?}"
        );
        assert_eq!(mem.0, before, "a refused fork writes nothing");
    }
    // Another user's rewind finds nothing.
    let bob = ShardCommand::RewindConversation {
        conversation: conv(),
        owner: UserId::parse("bob").unwrap(),
        keep: MessageId(0),
        parts: None,
    };
    assert_eq!(mem.run(&bob), Err(Rejection::NotFound(conv())));
    assert_eq!(mem.0, before);
}

#[test]
fn a_rewind_while_a_turn_runs_is_busy() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    let running = started(send(&mut mem, 7)).turn;
    assert_eq!(
        rewind(&mut mem, 0, None),
        Err(Rejection::Busy(running.turn))
    );
}

#[test]
fn a_fork_copies_a_prefix_and_leaves_the_source_untouched() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    let source_before: Vec<_> = (0..4).map(|i| stored_message(&mem, MessageId(i))).collect();
    let Outcome::Conversation(forked) = fork(&mut mem, 1, Some(1), 50).unwrap() else {
        panic!()
    };
    assert_eq!(forked.message_count, 2);
    assert_eq!(forked.title.as_deref(), Some("Fork of q1"));
    assert_eq!(forked.agent_session, None);
    let key = message_key(forked.id, MessageId(1));
    let copied: Message = decode(&key, &mem.0[&key]).unwrap();
    assert_eq!(copied.content, "a");
    assert_eq!(copied.parts.len(), 1);
    // Idempotent per request id.
    assert_eq!(
        fork(&mut mem, 1, Some(1), 50).unwrap(),
        Outcome::Conversation(forked.clone())
    );
    let source_after: Vec<_> = (0..4).map(|i| stored_message(&mem, MessageId(i))).collect();
    assert_eq!(source_before, source_after);
    // A fork of the whole conversation at its last message is allowed.
    fork(&mut mem, 3, None, 51).unwrap();
}

#[test]
fn delete_removes_every_key_of_the_conversation() {
    let mut mem = Mem::default();
    two_turns(&mut mem);
    mem.run(&ShardCommand::DeleteConversation {
        conversation: conv(),
        owner: alice(),
    })
    .unwrap();
    let uid = conv().uid.to_be_bytes();
    let left: Vec<_> = mem
        .0
        .keys()
        .filter(|k| k.windows(16).any(|w| w == uid) && !k.starts_with(b"rc/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
