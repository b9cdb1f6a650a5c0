//! Messages sent while a turn runs, and the turn's initiator coming and going.
//!
//! A `Send` while a turn runs (or a send is being committed, or messages wait already)
//! is queued through the shard ([`ShardCommand::EnqueueMessage`]): its stream gets
//! `Queued` and stays open. When the turn ends, the first queued message is started
//! ([`ShardCommand::StartQueued`], which takes it off the queue and starts its turn in
//! one command) and its stream, if still there, becomes the turn's initiator. The queue
//! is replicated, so a new activation (failover, restart) carries on with it.
//!
//! An initiator that disconnects leaves its turn running for
//! `conversation.initiator_grace_ms`: the owner may reattach (`AttachTurn`) and keep
//! answering permission requests; when the grace passes with nobody attached, the turn
//! is cancelled.

use super::commits::{Commit, submit};
use super::*;
use crate::shard::state_machine::queue::MessageQueue;
use shoal_protocol::client::QueuedInfo;

/// How a `Send` was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTicket {
    /// Its turn started.
    Started(TurnId),
    /// It was queued as this item.
    Queued(u64),
}

/// What to do with the queue.
#[derive(Debug, Clone, Copy)]
pub enum QueueOp {
    /// List it.
    List,
    /// Remove an item.
    Remove(u64),
    /// Move an item to a position.
    Move(u64, u32),
}

/// Whether a new message must wait behind something.
pub(super) fn must_queue(state: &ConversationState) -> bool {
    state.turn.is_some() || state.sends_pending > 0 || !state.queue.items.is_empty()
}

/// Queues a `Send` (at the front when `front`: "send now").
pub(super) fn enqueue(
    state: &mut ConversationState,
    text: String,
    request_id: RequestId,
    sink: Sink,
    reply: RpcReplyPort<Result<SendTicket, WireError>>,
    front: bool,
    trace: crate::telemetry::TraceParent,
) {
    let cmd = ShardCommand::EnqueueMessage {
        conversation: state.record.id,
        text: text.clone(),
        request_id,
        at_ms: state.ctx.now_ms(),
        front,
    };
    let commit = Commit::Enqueue {
        text,
        sink,
        reply,
        trace,
    };
    submit(state, cmd, commit);
}

pub(super) async fn on_enqueued(
    state: &mut ConversationState,
    text: String,
    sink: Sink,
    reply: RpcReplyPort<Result<SendTicket, WireError>>,
    trace: crate::telemetry::TraceParent,
    result: Result<Outcome, ProposeError>,
) {
    match result {
        Ok(Outcome::Enqueued { item, queue }) => {
            state.queue = *queue;
            let position = state.queue.position(item).unwrap_or(0) as u32;
            sink.deliver(ServerFrame::Queued { item, position });
            state.queued_sinks.insert(item, (sink, trace));
            let _ = reply.send(Ok(SendTicket::Queued(item)));
            maybe_start_next(state);
        }
        // A retry of a send whose turn already started: answered like a retried send.
        started @ Ok(Outcome::TurnStarted(_)) => {
            state.sends_pending += 1;
            let prompt = turn::Prompt::text(text, std::time::Instant::now());
            // Answered like a retried send: no new turn, no span of its own.
            let origin = turn::Origin {
                reply: Some(reply),
                from_item: None,
                span: tracing::Span::none(),
            };
            turn::on_send_committed(state, prompt, sink, origin, started).await;
        }
        Ok(other) => {
            let _ = reply.send(Err(internal(
                &state.ctx,
                "queue a message",
                format!("{other:?}"),
            )));
        }
        Err(e) => {
            let _ = reply.send(Err(propose_error(&state.ctx, "queue the message", e)));
        }
    }
}

/// Starts the first queued message when nothing runs.
pub(super) fn maybe_start_next(state: &mut ConversationState) {
    let idle = state.turn.is_none() && state.sends_pending == 0;
    if !idle || state.moving.is_some() || state.defunct.is_some() {
        return;
    }
    let Some(first) = state.queue.items.first() else {
        return;
    };
    let (item, text) = (first.item, first.text.clone());
    let cmd = ShardCommand::StartQueued {
        conversation: state.record.id,
        item,
        at_ms: state.ctx.now_ms(),
    };
    state.sends_pending += 1;
    // The turn joins the trace of the request that queued its message, if its sender
    // is still there.
    let trace = state
        .queued_sinks
        .get(&item)
        .map(|(_, trace)| trace.clone())
        .unwrap_or_default();
    let span = turn::turn_span(state, &trace);
    let commit = Commit::StartQueued {
        item,
        prompt: turn::Prompt::text(text, std::time::Instant::now()),
        span: span.clone(),
    };
    span.in_scope(|| submit(state, cmd, commit));
}

pub(super) async fn on_start_committed(
    state: &mut ConversationState,
    item: u64,
    prompt: turn::Prompt,
    span: tracing::Span,
    result: Result<Outcome, ProposeError>,
) {
    match &result {
        // Off the queue: started, or gone meanwhile (removed).
        Ok(_) | Err(ProposeError::Rejected(Rejection::Invalid(_))) => {
            state.queue.items.retain(|q| q.item != item);
        }
        Err(e) => {
            tracing::warn!(conversation = %state.record.id, item, error = %e, "cannot start a queued message; retried at the next tick");
        }
    }
    // Its sender's stream, if it is still there, follows the turn; else nobody does.
    let sink = state
        .queued_sinks
        .remove(&item)
        .map(|(sink, _)| sink)
        .unwrap_or_else(|| {
            let (tx, _) = tokio::sync::mpsc::channel(1);
            Sink::new(tx)
        });
    let origin = turn::Origin {
        reply: None,
        from_item: Some(item),
        span,
    };
    turn::on_send_committed(state, prompt, sink, origin, result).await;
}

/// Lists or edits the queue.
pub(super) fn on_queue_op(
    state: &mut ConversationState,
    user: &UserId,
    op: QueueOp,
    reply: RpcReplyPort<Result<Vec<QueuedInfo>, WireError>>,
) {
    if let Err(e) = authorize(state, user) {
        let _ = reply.send(Err(e));
        return;
    }
    let conversation = state.record.id;
    let cmd = match op {
        QueueOp::List => {
            let _ = reply.send(Ok(infos(&state.queue)));
            return;
        }
        QueueOp::Remove(item) => ShardCommand::RemoveQueued { conversation, item },
        QueueOp::Move(item, position) => ShardCommand::MoveQueued {
            conversation,
            item,
            position,
        },
    };
    let removed = match op {
        QueueOp::Remove(item) => Some(item),
        _ => None,
    };
    submit(state, cmd, Commit::QueueEdit { removed, reply });
}

pub(super) fn on_queue_edited(
    state: &mut ConversationState,
    removed: Option<u64>,
    reply: RpcReplyPort<Result<Vec<QueuedInfo>, WireError>>,
    result: Result<Outcome, ProposeError>,
) {
    let answer = match result {
        Ok(Outcome::Queue(queue)) => {
            state.queue = *queue;
            if let Some((sink, _)) = removed.and_then(|item| state.queued_sinks.remove(&item)) {
                sink.deliver(ServerFrame::Error(WireError::new(
                    ErrorCode::NotFound,
                    "the message was removed from the queue before it ran",
                )));
            }
            Ok(infos(&state.queue))
        }
        Ok(other) => Err(internal(&state.ctx, "edit the queue", format!("{other:?}"))),
        Err(e) => Err(propose_error(&state.ctx, "edit the queue", e)),
    };
    let _ = reply.send(answer);
}

fn infos(queue: &MessageQueue) -> Vec<QueuedInfo> {
    queue
        .items
        .iter()
        .map(|q| QueuedInfo {
            item: q.item,
            text: q.text.clone(),
            queued_at_ms: q.at_ms,
        })
        .collect()
}

/// `AttachTurn`: the caller's stream becomes the running turn's initiator.
pub(super) fn attach(
    state: &mut ConversationState,
    caller: &Caller,
    sink: Sink,
    reply: RpcReplyPort<Result<TurnId, WireError>>,
) {
    if let Err(e) = authorize_caller(state, caller) {
        let _ = reply.send(Err(e));
        return;
    }
    let Some(turn) = state.turn.as_mut().filter(|t| !t.ending) else {
        let _ = reply.send(Err(WireError::not_found(format!(
            "no turn is running in {}; follow it to see how the last one ended",
            state.record.id
        ))));
        return;
    };
    sink.deliver(ServerFrame::Accepted {
        turn: turn.running.turn,
        user_message: turn.running.user_message,
        duplicate: true,
    });
    turn.initiator = Some(sink);
    turn.orphaned = None;
    let _ = reply.send(Ok(turn.running.turn));
}

/// The stream of a `Send` went away.
pub(super) fn on_send_gone(state: &mut ConversationState, ticket: SendTicket) {
    let turn = match ticket {
        SendTicket::Started(turn) => turn,
        SendTicket::Queued(item) => {
            // Still queued: it runs anyway, with nobody attached.
            if state.queued_sinks.remove(&item).is_some() {
                return;
            }
            match state.turn.as_ref().filter(|t| t.from_item == Some(item)) {
                Some(t) => t.running.turn,
                None => return,
            }
        }
    };
    let Some(t) = state.turn.as_mut().filter(|t| t.running.turn == turn) else {
        return;
    };
    t.initiator = None;
    match state.ctx.config.conversation.initiator_grace() {
        Some(grace) => {
            tracing::info!(conversation = %state.record.id, %turn, grace_ms = grace.as_millis() as u64, "initiator disconnected; the turn goes on for the grace period");
            t.orphaned = Some(Instant::now());
        }
        None => {
            tracing::info!(conversation = %state.record.id, %turn, "initiator disconnected; cancelling the turn");
            turn::request_cancel(state);
        }
    }
}

/// On each tick: cancel a turn whose initiator's grace has passed; start queued work.
pub(super) fn on_tick(state: &mut ConversationState) {
    let grace = state.ctx.config.conversation.initiator_grace();
    let expired = state.turn.as_ref().is_some_and(|t| {
        t.initiator.is_none()
            && t.orphaned
                .zip(grace)
                .is_some_and(|(since, grace)| since.elapsed() >= grace)
    });
    if expired {
        if let Some(t) = state.turn.as_mut() {
            t.orphaned = None;
        }
        tracing::info!(conversation = %state.record.id, "nobody reattached within conversation.initiator_grace_ms; cancelling the turn");
        turn::request_cancel(state);
    }
    maybe_start_next(state);
}
