//! Unit tests of the shard state machine.

use super::*;
use shoal_protocol::ShardId;
use shoal_protocol::transcript::StopReason;
use std::collections::BTreeMap;

mod history;
mod pins;
mod queue;
mod running;
mod settings;
mod sharing;
mod usage;
mod workspaces;

#[derive(Default)]
struct Mem(BTreeMap<Vec<u8>, Vec<u8>>);

impl ShardRead for Mem {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, ReadError> {
        Ok(self
            .0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl Mem {
    fn run(&mut self, cmd: &ShardCommand) -> Result<Outcome, Rejection> {
        let (writes, outcome) = apply(self, cmd).expect("memory reads never fail")?;
        self.commit(writes);
        Ok(outcome)
    }

    fn commit(&mut self, writes: Writes) {
        for k in writes.deletes {
            self.0.remove(&k);
        }
        for (k, v) in writes.puts {
            self.0.insert(k, v);
        }
    }
}

fn conv() -> ConversationId {
    ConversationId::new(ShardId(3), 42)
}

fn create(mem: &mut Mem) -> ConversationRecord {
    let cmd = ShardCommand::CreateConversation {
        id: conv(),
        workspace: WorkspaceId::new(ShardId(3), 7),
        owner: UserId::parse("alice").unwrap(),
        title: None,
        agent: "demo".into(),
        at_ms: 1,
        request_id: RequestId(9),
    };
    match mem.run(&cmd).unwrap() {
        Outcome::Conversation(rec) => *rec,
        other => panic!("{other:?}"),
    }
}

fn started(outcome: Result<Outcome, Rejection>) -> TurnStartedOutcome {
    match outcome {
        Ok(Outcome::TurnStarted(started)) => *started,
        other => panic!("expected a started turn, got {other:?}"),
    }
}

fn send(mem: &mut Mem, request: u128) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::AppendUserMessage {
        conversation: conv(),
        text: "hi".into(),
        request_id: RequestId(request),
        at_ms: 2,
    })
}

fn assistant(turn: &RunningTurn, text: &str, status: MessageStatus) -> Message {
    let parts = vec![Part::Text { text: text.into() }];
    Message {
        id: turn.assistant_message,
        turn: turn.turn,
        role: Role::Assistant,
        status,
        content: content_from_parts(&parts),
        parts,
        created_at_ms: 3,
        stop_reason: None,
        error: None,
    }
}

#[test]
fn create_is_idempotent_per_request() {
    let mut mem = Mem::default();
    let a = create(&mut mem);
    let b = create(&mut mem);
    assert_eq!(a, b);
}

#[test]
fn turn_lifecycle_and_duplicates() {
    let mut mem = Mem::default();
    create(&mut mem);
    let first = started(send(&mut mem, 1));
    assert!(!first.duplicate);
    let turn = first.turn;
    assert_eq!(
        (turn.turn, turn.user_message, turn.assistant_message),
        (TurnId(1), MessageId(0), MessageId(1))
    );
    // A retry of the same request while running: same turn, nothing written.
    let again = started(send(&mut mem, 1));
    assert!(again.duplicate && again.finished.is_none());
    assert_eq!(again.turn, turn);
    // A different request while running is busy.
    assert_eq!(send(&mut mem, 2), Err(Rejection::Busy(TurnId(1))));
    mem.run(&ShardCommand::Checkpoint {
        conversation: conv(),
        message: assistant(&turn, "partial", MessageStatus::InProgress),
    })
    .unwrap();
    mem.run(&ShardCommand::FinishTurn {
        conversation: conv(),
        message: assistant(&turn, "full", MessageStatus::Complete),
    })
    .unwrap();
    // Finishing again is stale.
    assert!(matches!(
        mem.run(&ShardCommand::FinishTurn {
            conversation: conv(),
            message: assistant(&turn, "x", MessageStatus::Complete),
        }),
        Err(Rejection::StaleTurn(_))
    ));
    // The retry after the end reports the final message.
    let done = started(send(&mut mem, 1))
        .finished
        .expect("retry after end reports the message");
    assert_eq!(done.content, "full");
    let second = started(send(&mut mem, 2)).turn;
    assert_eq!(
        (second.turn, second.user_message),
        (TurnId(2), MessageId(2))
    );
}

#[test]
fn activation_counts_up_and_unknown_conversations_are_rejected() {
    let mut mem = Mem::default();
    create(&mut mem);
    for expected in 1..=3 {
        let Outcome::Activated(rec) = mem
            .run(&ShardCommand::Activate {
                conversation: conv(),
            })
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(rec.activation, expected);
    }
    let other = ConversationId::new(ShardId(3), 1);
    assert_eq!(
        mem.run(&ShardCommand::Activate {
            conversation: other
        }),
        Err(Rejection::NotFound(other))
    );
}

/// Commands that used to trip an `assert!` inside `apply` (which crashed every replica
/// on replay of the log) are rejected alike on every replica and write nothing.
#[test]
fn malformed_commands_are_rejected_deterministically_not_panics() {
    let mut mem = Mem::default();
    create(&mut mem);
    let turn = started(send(&mut mem, 1)).turn;
    let before = mem.0.clone();
    let mut mismatch = assistant(&turn, "a", MessageStatus::Complete);
    mismatch.content = "b".into();
    let in_progress = assistant(&turn, "a", MessageStatus::InProgress);
    let cross_shard = ShardCommand::CreateConversation {
        id: ConversationId::new(ShardId(4), 1),
        workspace: WorkspaceId::new(ShardId(3), 7),
        owner: UserId::parse("alice").unwrap(),
        title: None,
        agent: "demo".into(),
        at_ms: 1,
        request_id: RequestId(10),
    };
    let bad = [
        ShardCommand::FinishTurn {
            conversation: conv(),
            message: mismatch.clone(),
        },
        ShardCommand::Checkpoint {
            conversation: conv(),
            message: mismatch,
        },
        ShardCommand::FinishTurn {
            conversation: conv(),
            message: in_progress,
        },
        cross_shard,
    ];
    for cmd in &bad {
        assert!(
            cmd.validate().is_err(),
            "{cmd:?} is refused before proposing"
        );
        assert!(
            matches!(mem.run(cmd), Err(Rejection::Invalid(_))),
            "{cmd:?} is rejected on apply"
        );
    }
    assert_eq!(mem.0, before, "nothing was written");
}

struct Failing;

impl ShardRead for Failing {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Err(ReadError::Io("injected read error".into()))
    }

    fn scan_prefix(&self, _prefix: &[u8]) -> Result<Pairs, ReadError> {
        Err(ReadError::Io("injected read error".into()))
    }
}

/// A read error is this replica's own: never a result other replicas would not have.
#[test]
fn a_read_error_is_not_a_replicated_result() {
    let cmd = ShardCommand::Activate {
        conversation: conv(),
    };
    assert_eq!(
        apply(&Failing, &cmd).map(|_| ()),
        Err(ReadError::Io("injected read error".into()))
    );
}

fn header(turn: &RunningTurn) -> MessageHeader {
    MessageHeader {
        id: turn.assistant_message,
        turn: turn.turn,
        created_at_ms: 3,
    }
}

fn stored_message(mem: &Mem, id: MessageId) -> Message {
    let key = message_key(conv(), id);
    decode(&key, &mem.0[&key]).unwrap()
}

/// A turn committed as deltas: each entry carries only what is new, a repeated or
/// overlapping delta is harmless, a bad one writes nothing, and the end gives the
/// stored message its status with `content == content_from_parts(parts)`.
#[test]
fn a_turn_is_committed_as_deltas_then_ended() {
    use super::super::parts_delta::{PartsDelta, PartsMark};
    let mut mem = Mem::default();
    create(&mut mem);
    let turn = started(send(&mut mem, 1)).turn;
    let mut parts = vec![Part::Text {
        text: "hello".into(),
    }];
    let first = PartsDelta::since(&parts, PartsMark::default());
    let append = |delta: PartsDelta| ShardCommand::AppendParts {
        conversation: conv(),
        message: header(&turn),
        delta,
    };
    mem.run(&append(first.clone())).unwrap();
    mem.run(&append(first)).unwrap();
    let mark = PartsMark::end_of(&parts);
    if let Part::Text { text } = &mut parts[0] {
        text.push_str(" world");
    }
    let second = PartsDelta::since(&parts, mark);
    assert_eq!(
        second.tail,
        vec![Part::Text {
            text: " world".into()
        }]
    );
    mem.run(&append(second)).unwrap();
    let stored = super::running::load(&mem, conv(), &header(&turn)).unwrap();
    assert_eq!(stored.parts, parts);
    assert_eq!(stored.content, "hello world");
    assert_eq!(stored.status, MessageStatus::InProgress);

    let before = mem.0.clone();
    let bad = PartsDelta {
        from: PartsMark { part: 5, byte: 0 },
        tail: Vec::new(),
    };
    assert!(matches!(mem.run(&append(bad)), Err(Rejection::Invalid(_))));
    assert_eq!(mem.0, before, "a bad delta writes nothing");

    let end = |delta: Option<PartsDelta>| ShardCommand::EndTurn {
        conversation: conv(),
        message: header(&turn),
        delta,
        status: MessageStatus::Complete,
        stop_reason: Some(StopReason::EndTurn),
        error: None,
    };
    parts.push(Part::Reasoning { text: "hm".into() });
    let last = PartsDelta::since(&parts, PartsMark { part: 0, byte: 5 });
    let Outcome::TurnEnded(ended) = mem.run(&end(Some(last))).unwrap() else {
        panic!("EndTurn answers with the final message")
    };
    assert_eq!(ended.parts, parts);
    assert_eq!(ended.content, content_from_parts(&ended.parts));
    assert_eq!(*ended, stored_message(&mem, turn.assistant_message));
    assert!(matches!(mem.run(&end(None)), Err(Rejection::StaleTurn(_))));
    let done = started(send(&mut mem, 1)).finished.unwrap();
    assert_eq!(done.status, MessageStatus::Complete);
}

/// A new activation ends a turn its predecessor left running with what is stored.
#[test]
fn an_end_without_a_delta_keeps_what_is_stored() {
    let mut mem = Mem::default();
    create(&mut mem);
    let turn = started(send(&mut mem, 1)).turn;
    let Outcome::TurnEnded(ended) = mem
        .run(&ShardCommand::EndTurn {
            conversation: conv(),
            message: header(&turn),
            delta: None,
            status: MessageStatus::Interrupted,
            stop_reason: Some(StopReason::Failed),
            error: Some("node stopped".into()),
        })
        .unwrap()
    else {
        panic!()
    };
    assert!(ended.parts.is_empty());
    assert_eq!(ended.status, MessageStatus::Interrupted);
    assert_eq!(ended.created_at_ms, 3);
}

#[test]
fn a_workspace_snapshot_applies_only_on_top_of_its_base() {
    let mut mem = Mem::default();
    let workspace = WorkspaceId::new(ShardId(3), 7);
    let snapshot = |seq: u64| WorkspaceSnapshot {
        seq,
        manifest: vec![crate::workspace::blobs::ChunkHash::of(&seq.to_be_bytes())],
        entries: 1,
        bytes: 0,
        at_ms: 5,
        node: "n1".into(),
    };
    let set = |base: u64, snapshot: WorkspaceSnapshot| ShardCommand::SetWorkspaceSnapshot {
        workspace,
        base,
        snapshot,
    };
    assert_eq!(mem.run(&set(0, snapshot(1))), Ok(Outcome::Done));
    assert_eq!(mem.run(&set(1, snapshot(2))), Ok(Outcome::Done));
    // A node whose tree is from snapshot 1 cannot replace snapshot 2.
    let before = mem.0.clone();
    assert_eq!(
        mem.run(&set(1, snapshot(2))),
        Err(Rejection::StaleSnapshot { current: 2 })
    );
    // Malformed: a seq that does not follow its base, or no manifest.
    assert!(matches!(
        mem.run(&set(2, snapshot(5))),
        Err(Rejection::Invalid(_))
    ));
    let empty = WorkspaceSnapshot {
        manifest: Vec::new(),
        ..snapshot(3)
    };
    assert!(matches!(
        mem.run(&set(2, empty)),
        Err(Rejection::Invalid(_))
    ));
    assert_eq!(mem.0, before, "a rejected snapshot changes nothing");
    let stored: WorkspaceSnapshot = decode(
        &workspace_snapshot_key(workspace),
        &mem.0[&workspace_snapshot_key(workspace)],
    )
    .expect("stored record decodes");
    assert_eq!(stored.seq, 2);
}
