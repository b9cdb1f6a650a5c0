//! Unit tests of a conversation's message queue in the state machine.

use super::super::queue::{MessageQueue, QUEUE_MAX};
use super::*;

fn enqueue(mem: &mut Mem, request: u128, front: bool) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::EnqueueMessage {
        conversation: conv(),
        text: format!("queued {request}"),
        request_id: RequestId(request),
        at_ms: 5,
        front,
    })
}

fn queue_of(outcome: Result<Outcome, Rejection>) -> MessageQueue {
    match outcome {
        Ok(Outcome::Enqueued { queue, .. } | Outcome::Queue(queue)) => *queue,
        other => panic!("{other:?}"),
    }
}

fn texts(queue: &MessageQueue) -> Vec<&str> {
    queue.items.iter().map(|q| q.text.as_str()).collect()
}

#[test]
fn queued_messages_wait_in_order_and_start_one_at_a_time() {
    let mut mem = Mem::default();
    create(&mut mem);
    let running = started(send(&mut mem, 1)).turn;
    enqueue(&mut mem, 10, false).unwrap();
    let queue = queue_of(enqueue(&mut mem, 11, false));
    assert_eq!(texts(&queue), ["queued 10", "queued 11"]);
    // A retry of a queued send queues nothing more.
    assert_eq!(queue_of(enqueue(&mut mem, 10, false)), queue);
    // "Send now" goes first.
    let queue = queue_of(enqueue(&mut mem, 12, true));
    assert_eq!(texts(&queue), ["queued 12", "queued 10", "queued 11"]);
    let first = queue.items[0].item;
    // Not while the turn runs: the item stays queued.
    let start = |mem: &mut Mem, item| {
        mem.run(&ShardCommand::StartQueued {
            conversation: conv(),
            item,
            at_ms: 6,
        })
    };
    assert_eq!(start(&mut mem, first), Err(Rejection::Busy(running.turn)));
    mem.run(&ShardCommand::EndTurn {
        conversation: conv(),
        message: header(&running),
        delta: None,
        status: MessageStatus::Cancelled,
        stop_reason: Some(StopReason::Cancelled),
        error: None,
    })
    .unwrap();
    let next = started(start(&mut mem, first));
    assert_eq!(next.user_message.content, "queued 12");
    let key = super::super::queue::queue_key(conv());
    let left: MessageQueue = decode(&key, &mem.0[&key]).unwrap();
    assert_eq!(texts(&left), ["queued 10", "queued 11"]);
    // Started: a retry of that send is the started turn, not a new queued message.
    assert!(matches!(
        enqueue(&mut mem, 12, false),
        Ok(Outcome::TurnStarted(t)) if t.duplicate
    ));
}

#[test]
fn the_queue_is_bounded_and_can_be_edited() {
    let mut mem = Mem::default();
    create(&mut mem);
    started(send(&mut mem, 1));
    for i in 0..QUEUE_MAX as u128 {
        enqueue(&mut mem, 100 + i, false).unwrap();
    }
    assert!(matches!(
        enqueue(&mut mem, 999, false),
        Err(Rejection::TooMany(_))
    ));
    let queue = queue_of(mem.run(&ShardCommand::MoveQueued {
        conversation: conv(),
        item: 3,
        position: 0,
    }));
    assert_eq!(queue.items[0].text, "queued 103");
    let queue = queue_of(mem.run(&ShardCommand::RemoveQueued {
        conversation: conv(),
        item: 3,
    }));
    assert_eq!(queue.items.len(), QUEUE_MAX - 1);
    assert!(matches!(
        mem.run(&ShardCommand::RemoveQueued {
            conversation: conv(),
            item: 3,
        }),
        Err(Rejection::Invalid(_))
    ));
}
