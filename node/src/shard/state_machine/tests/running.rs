//! Unit tests of how a running turn's message is stored: checkpoints cost what they add,
//! and the message put back together is always the proposer's.

use super::super::running::{self, DELTAS_MAX};
use super::*;
use crate::shard::parts_delta::model::{edit, stream, text, tool};
use crate::shard::parts_delta::{PartsDelta, PartsMark};
use proptest::prelude::*;
use shoal_protocol::transcript::ToolStatus;

fn append(turn: &RunningTurn, delta: PartsDelta) -> ShardCommand {
    ShardCommand::AppendParts {
        conversation: conv(),
        message: header(turn),
        delta,
    }
}

fn end(turn: &RunningTurn, delta: Option<PartsDelta>) -> ShardCommand {
    ShardCommand::EndTurn {
        conversation: conv(),
        message: header(turn),
        delta,
        status: MessageStatus::Complete,
        stop_reason: Some(StopReason::EndTurn),
        error: None,
    }
}

/// Runs `cmd` and counts the bytes it writes (keys and values).
fn run_counted(mem: &mut Mem, cmd: &ShardCommand) -> u64 {
    let (writes, _) = apply(mem, cmd).unwrap().unwrap();
    let bytes = writes
        .puts
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    mem.commit(writes);
    bytes
}

/// A store with a conversation whose first turn has started.
fn turn_started() -> (Mem, RunningTurn) {
    let mut mem = Mem::default();
    create(&mut mem);
    let turn = started(send(&mut mem, 1)).turn;
    (mem, turn)
}

fn ended(outcome: Result<Outcome, Rejection>) -> Message {
    match outcome {
        Ok(Outcome::TurnEnded(message)) => *message,
        other => panic!("expected an ended turn, got {other:?}"),
    }
}

/// A turn of 1 000 checkpoints of 1 KiB each: the state machine writes each byte a few
/// times (the deltas, and the folds that double the base), not the whole message at every
/// checkpoint, which wrote about 500 times the message.
#[test]
fn a_long_turn_writes_each_byte_a_bounded_number_of_times() {
    let (mut mem, turn) = turn_started();
    let chunk = "x".repeat(1024);
    let mut parts = Vec::new();
    let mut confirmed = PartsMark::default();
    let mut written = 0;
    for i in 0..1000 {
        match parts.last_mut() {
            Some(Part::Text { text }) if i % 100 != 0 => text.push_str(&chunk),
            _ => {
                parts.push(tool(&format!("t{i}"), ToolStatus::Completed));
                parts.push(text(&chunk));
            }
        }
        written += run_counted(
            &mut mem,
            &append(&turn, PartsDelta::since(&parts, confirmed)),
        );
        confirmed = PartsMark::end_of(&parts);
        if i % 97 == 0 {
            let stored = running::load(&mem, conv(), &header(&turn)).unwrap();
            assert_eq!(stored.parts, parts, "after checkpoint {i}");
            assert_eq!(stored.content, content_from_parts(&parts));
        }
    }
    let message = ended(mem.run(&end(&turn, None)));
    assert_eq!(message.parts, parts);
    let size = BincodeCodec.encode(&message).unwrap().len() as u64;
    assert!(
        written <= 4 * size,
        "checkpoints wrote {written} bytes for a message of {size}"
    );
    assert!(
        !mem.0.keys().any(|k| k.starts_with(b"mr/")),
        "the end leaves no running keys"
    );
}

/// Deltas that do not apply are refused whichever path checks them (the shape, or the
/// whole message for a cut inside a text part), and write nothing.
#[test]
fn bad_deltas_are_refused_and_write_nothing() {
    let (mut mem, turn) = turn_started();
    let parts = vec![text("héllo"), tool("a", ToolStatus::Pending)];
    mem.run(&append(
        &turn,
        PartsDelta::since(&parts, PartsMark::default()),
    ))
    .unwrap();
    let delta = |part, byte, tail| PartsDelta {
        from: PartsMark { part, byte },
        tail,
    };
    let before = mem.0.clone();
    for bad in [
        delta(3, 0, vec![]),
        delta(2, 1, vec![text("x")]),
        // Inside the two bytes of `é`.
        delta(0, 2, vec![text("x")]),
        delta(0, 1, vec![Part::Reasoning { text: "x".into() }]),
        delta(1, 1, vec![text("x")]),
        delta(0, 1, vec![]),
        delta(0, 99, vec![text("x")]),
    ] {
        let refused = mem.run(&append(&turn, bad.clone()));
        assert!(
            matches!(refused, Err(Rejection::Invalid(_))),
            "{bad:?}: {refused:?}"
        );
        let refused = mem.run(&end(&turn, Some(bad.clone())));
        assert!(
            matches!(refused, Err(Rejection::Invalid(_))),
            "{bad:?}: {refused:?}"
        );
        assert_eq!(mem.0, before, "{bad:?} wrote something");
    }
    // A cut on a boundary inside the text (the store ahead of the mark) applies.
    let cut = delta(0, 3, vec![text("y")]);
    mem.run(&append(&turn, cut)).unwrap();
    assert_eq!(ended(mem.run(&end(&turn, None))).parts, vec![text("héy")]);
}

/// A store written before deltas had keys of their own holds the running message whole
/// (the old `Checkpoint`): the next delta continues it.
#[test]
fn a_message_stored_whole_is_continued_by_deltas() {
    let (mut mem, turn) = turn_started();
    let mut parts = vec![text("old")];
    let mut whole = assistant(&turn, "", MessageStatus::InProgress);
    whole.parts = parts.clone();
    whole.content = content_from_parts(&parts);
    mem.run(&ShardCommand::Checkpoint {
        conversation: conv(),
        message: whole,
    })
    .unwrap();
    let mark = PartsMark::end_of(&parts);
    parts[0] = text("old and new");
    mem.run(&append(&turn, PartsDelta::since(&parts, mark)))
        .unwrap();
    assert_eq!(ended(mem.run(&end(&turn, None))).parts, parts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// However streaming goes, whichever checkpoints are lost and however the deltas are
    /// stored and folded, the stored message is the proposer's at every confirmed
    /// checkpoint and at the end.
    #[test]
    fn the_stored_message_is_the_proposers(edits in proptest::collection::vec(edit(true), 0..300)) {
        let (mut mem, turn) = turn_started();
        let mut parts: Vec<Part> = Vec::new();
        let mut confirmed = PartsMark::default();
        let mut checkpoints = 0u32;
        for edit in edits {
            let Some(known) = stream(&mut parts, &mut confirmed, edit) else {
                continue;
            };
            checkpoints += 1;
            let cmd = append(&turn, PartsDelta::since(&parts, confirmed));
            if known {
                mem.run(&cmd).unwrap();
                let stored = running::load(&mem, conv(), &header(&turn)).unwrap();
                prop_assert_eq!(&stored.parts, &parts);
                confirmed = PartsMark::end_of(&parts);
            } else if checkpoints.is_multiple_of(2) {
                // Applied, but the proposer does not know.
                mem.run(&cmd).unwrap();
            }
        }
        let message = ended(mem.run(&end(&turn, Some(PartsDelta::since(&parts, confirmed)))));
        prop_assert_eq!(&message.parts, &parts);
        prop_assert_eq!(message.content, content_from_parts(&parts));
        prop_assert!(!mem.0.keys().any(|k| k.starts_with(b"mr/")));
    }
}

/// Tiny checkpoints are folded after [`DELTAS_MAX`] of them, so they never pile up keys.
#[test]
fn tiny_checkpoints_keep_a_bounded_number_of_keys() {
    let (mut mem, turn) = turn_started();
    let mut parts = vec![text("")];
    let mut confirmed = PartsMark::default();
    for _ in 0..3 * DELTAS_MAX {
        if let Part::Text { text } = &mut parts[0] {
            text.push('x');
        }
        mem.run(&append(&turn, PartsDelta::since(&parts, confirmed)))
            .unwrap();
        confirmed = PartsMark::end_of(&parts);
        let keys = mem.0.keys().filter(|k| k.starts_with(b"mr/")).count();
        assert!(keys <= DELTAS_MAX as usize, "{keys} running keys");
    }
    assert_eq!(ended(mem.run(&end(&turn, None))).parts, parts);
}
