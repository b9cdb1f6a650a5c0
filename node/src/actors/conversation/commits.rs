//! Pipelined commits: the actor never waits on consensus inside a handler.
//!
//! A handler submits its command ([`crate::cluster::Cluster::submit`], which fixes its
//! place in the shard's log at once) and goes on; one watcher task per activation awaits
//! the results in submission order and hands each back as [`ConversationMsg::Committed`]
//! with what the handler needs to carry on ([`Commit`]). So results arrive in the order
//! the commands apply, and reads, follows and cancels are answered while commits wait.
//!
//! In flight per conversation, at most: [`SENDS_PENDING_MAX`] user messages (queued or
//! not), one checkpoint, one turn end, one usage record, one agent-session record, one
//! settings change, one agent offer record and a
//! compaction record per compaction the agent reports (at most 8 open per turn) (so the watcher's queue is
//! bounded, though its channel type is not).

use super::turn;
use super::*;
use crate::cluster::PendingProposal;
use tokio::sync::mpsc;

/// What a submitted command was for; handed back with its result.
#[derive(Debug)]
pub enum Commit {
    /// A `Send`'s user message: reply, then start the turn.
    Send {
        /// The prompt for the agent.
        prompt: super::turn::Prompt,
        /// The initiator's stream.
        sink: Sink,
        /// The `Send`'s reply.
        reply: RpcReplyPort<Result<SendTicket, WireError>>,
        /// The `turn` span of the turn it starts.
        span: tracing::Span,
    },
    /// A `Send` queued behind the running turn ([`super::queue`]).
    Enqueue {
        /// The prompt (for a retry whose turn already started).
        text: String,
        /// The sender's stream.
        sink: Sink,
        /// The `Send`'s reply.
        reply: RpcReplyPort<Result<SendTicket, WireError>>,
        /// The sending request's place in its trace, for the turn it starts later.
        trace: crate::telemetry::TraceParent,
    },
    /// The first queued message's turn start.
    StartQueued {
        /// The queued message.
        item: u64,
        /// Its text as the prompt, asked for when its start was submitted.
        prompt: turn::Prompt,
        /// The `turn` span of the turn it starts.
        span: tracing::Span,
    },
    /// A queue edit.
    QueueEdit {
        /// The item removed, if it was a removal.
        removed: Option<u64>,
        /// The caller's reply.
        reply: RpcReplyPort<Result<Vec<shoal_protocol::client::QueuedInfo>, WireError>>,
    },
    /// A checkpoint of `turn`.
    Checkpoint {
        /// The turn.
        turn: TurnId,
    },
    /// The end of `turn`.
    End {
        /// The turn.
        turn: TurnId,
        /// The final message as streamed.
        message: Message,
        /// Usage for the initiator's `Done`.
        usage: Option<Usage>,
    },
    /// The agent's session id was recorded.
    AgentSession,
    /// A turn's usage was recorded.
    Usage,
    /// A compaction was recorded.
    Compaction,
    /// The owner's mode and model picks ([`super::settings`]).
    Settings {
        /// Its caller's reply.
        reply: RpcReplyPort<Result<shoal_protocol::settings::SessionSettings, WireError>>,
    },
    /// The agent's offer was recorded ([`super::settings`]).
    Offer,
    /// A rewind, rename or delete ([`super::history`]).
    Rewrite {
        /// What it was.
        change: super::history::Change,
        /// Its caller's reply.
        reply: RpcReplyPort<Result<Option<ConversationSummary>, WireError>>,
    },
}

type Submitted = (Commit, Result<PendingProposal, ProposeError>);

/// Where submitted commands go to be awaited.
pub(super) type CommitQueue = mpsc::UnboundedSender<Submitted>;

/// Starts the watcher that awaits submitted commands in order and reports each to
/// `myself`.
pub(super) fn start_watcher(
    myself: ActorRef<ConversationMsg>,
) -> (CommitQueue, tokio::task::JoinHandle<()>) {
    // Unbounded is safe: what goes in is bounded per conversation (see the module doc).
    let (tx, mut rx) = mpsc::unbounded_channel::<Submitted>();
    let task = tokio::spawn(async move {
        while let Some((commit, pending)) = rx.recv().await {
            let result = match pending {
                Ok(pending) => pending.outcome().await,
                Err(e) => Err(e),
            };
            if myself
                .cast(ConversationMsg::Committed { commit, result })
                .is_err()
            {
                return;
            }
        }
    });
    (tx, task)
}

/// Submits `cmd`; its result comes back as [`ConversationMsg::Committed`] with `commit`.
/// Returns the command's encoded size if it was queued.
pub(super) fn submit(
    state: &mut ConversationState,
    cmd: ShardCommand,
    commit: Commit,
) -> Option<usize> {
    let pending = state.ctx.cluster.submit(state.record.id.shard, cmd);
    let bytes = pending.as_ref().ok().map(PendingProposal::bytes);
    if state.commits.send((commit, pending)).is_ok() {
        state.commits_in_flight += 1;
    }
    // Otherwise the watcher is gone, which happens only while the actor stops: the
    // commit's reply port is dropped and its caller sees the actor stop.
    bytes
}

/// A submitted command's result.
pub(super) async fn on_committed(
    state: &mut ConversationState,
    commit: Commit,
    result: Result<Outcome, ProposeError>,
) {
    state.commits_in_flight -= 1;
    match commit {
        Commit::Send {
            prompt,
            sink,
            reply,
            span,
        } => {
            let origin = turn::Origin {
                reply: Some(reply),
                from_item: None,
                span,
            };
            turn::on_send_committed(state, prompt, sink, origin, result).await;
        }
        Commit::Enqueue {
            text,
            sink,
            reply,
            trace,
        } => {
            super::queue::on_enqueued(state, text, sink, reply, trace, result).await;
        }
        Commit::StartQueued { item, prompt, span } => {
            super::queue::on_start_committed(state, item, prompt, span, result).await;
        }
        Commit::QueueEdit { removed, reply } => {
            super::queue::on_queue_edited(state, removed, reply, result);
        }
        Commit::Checkpoint { turn } => turn::on_checkpoint_committed(state, turn, result),
        Commit::End {
            turn,
            message,
            usage,
        } => turn::on_end_committed(state, turn, message, usage, result),
        Commit::Rewrite { change, reply } => {
            super::history::on_committed(state, change, reply, result);
        }
        Commit::Settings { reply } => super::settings::on_set_committed(state, reply, result),
        Commit::Offer => super::settings::on_offer_committed(state, result),
        Commit::Usage | Commit::Compaction => {
            if let Err(e) = result {
                tracing::warn!(conversation = %state.record.id, error = %e, "cannot record a turn's usage or a compaction");
            }
        }
        Commit::AgentSession => {
            if let Err(e) = result {
                tracing::warn!(conversation = %state.record.id, error = %e, "cannot record the agent session id");
            }
        }
    }
}
