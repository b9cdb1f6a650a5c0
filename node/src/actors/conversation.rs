//! The conversation actor: one per active conversation.
//!
//! It owns the conversation's live state: committed messages (the newest
//! `SNAPSHOT_MESSAGES_MAX`), the running turn, the sequence counter and replay buffer,
//! the followers, and its agent-session child. Durable changes go through
//! `Cluster::submit` as `ShardCommand`s.
//!
//! A turn: `Send` commits the user message (idempotent by request id) → `UserMessage`
//! and `TurnStarted` events → the agent session runs the prompt → its updates become
//! display events and accumulate into the assistant message's parts → every
//! `checkpoint_interval_ms` while the message changes, the parts added since the last
//! checkpoint are committed (a delta, so a turn costs O(n) in the log) → at the end the
//! last delta is committed with the final status and `Done` is broadcast.
//!
//! The actor never waits on consensus inside a handler: commands are submitted and their
//! results come back as messages ([`commits`]), so reads, follows and cancels are
//! answered while a commit waits. Agent output arrives through a bounded credit
//! ([`AGENT_EVENTS_QUEUED_MAX`]): when the actor falls behind, the agent's forwarder
//! waits, the agent's pipe fills and the agent itself is held back.
//!
//! Timers (one `Tick` per checkpoint interval): checkpoints, the turn timeouts, the
//! cancel grace period, permission timeouts and idle passivation.
//!
//! Tracing: a turn is a `turn` span in the trace of the request that sent its message
//! (carried in [`ConversationMsg::Send`] as a [`crate::telemetry::TraceParent`]); the
//! messages that belong to the turn are handled inside it, so its proposals, the
//! agent's start and calls and its `broadcast`s are its children.
//!
//! # Layout
//! * `conversation.rs`: state, the actor, followers and snapshots.
//! * [`messages`]: the messages it takes.
//! * [`turn`]: a turn's lifecycle (start, checkpoints, end, timers).
//! * [`commits`]: pipelined commits and their results.
//! * [`agent_events`]: agent output into the running turn.
//! * [`settings`]: the owner's mode and model picks and the agent's offer.
//! * [`permissions`]: permission requests answered by policy.

mod agent_events;
mod commits;
mod history;
mod messages;
mod permissions;
mod queue;
mod settings;
mod turn;

pub use history::Change;
pub use messages::{AgentEvent, AgentFailure, ConversationMsg};
pub use queue::{QueueOp, SendTicket};

pub use commits::Commit;
pub use turn::Prompt;

use super::agent_session::{AgentSessionActor, AgentSessionArgs, AgentSessionMsg};
use super::follow::{Delivery, FollowerShared, Ring, Sink, Start};
use crate::agent_process::{AgentCommand, AgentUpdate, PromptOutcome, ToolStatusRaw};
use crate::cluster::ProposeError;
use crate::context::{Metrics, NodeContext};
use crate::shard::parts_delta::{PartsDelta, PartsMark};
use crate::shard::state_machine::{
    ConversationRecord, MessageHeader, Outcome, Rejection, RunningTurn, ShardCommand,
    TurnStartedOutcome,
};
use crate::sharing::Caller;
use agent_events::on_agent_event;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use shoal_protocol::admin::{ActorInfo, FollowerInfo};
use shoal_protocol::client::{
    ConversationDetail, ConversationSummary, MESSAGE_TEXT_BYTES_MAX, ServerFrame,
};
use shoal_protocol::transcript::{
    Event, EventFrame, Message, MessageStatus, Part, Role, SNAPSHOT_MESSAGES_MAX, Snapshot,
    StopReason, ToolStatus, Usage, content_from_parts,
};
use shoal_protocol::{ConversationId, ErrorCode, RequestId, Seq, TurnId, UserId, WireError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock: the same as std in production, the simulated one under a simulator.
use tokio::time::Instant;

/// How long a turn may take to stop after `session/cancel` (a user's cancel, or the
/// turn timeout's) before its agent process is killed and the turn ended without it.
const CANCEL_GRACE_MS: u64 = 10_000;
/// User messages of one conversation waiting to be committed; more are refused as busy.
pub const SENDS_PENDING_MAX: usize = 8;
/// Agent events queued in the actor's mailbox at most; the agent's forwarder waits for
/// room beyond that (ractor mailboxes are unbounded).
pub const AGENT_EVENTS_QUEUED_MAX: usize = 256;

/// What a conversation whose shard moves off this node waits for.
#[derive(Debug, Clone, Copy)]
struct Moving {
    /// When a running turn is ended regardless.
    until: Instant,
    /// Why, for messages.
    why: &'static str,
    /// Quiet but not stopping yet: an only-if-idle handover waits for the other
    /// conversations' answers ([`ConversationMsg::Release`]).
    held: bool,
}

/// Startup arguments.
#[derive(Debug)]
pub struct ConversationArgs {
    /// Node context.
    pub ctx: Arc<NodeContext>,
    /// The conversation.
    pub id: ConversationId,
}

struct Turn {
    /// The `turn` span, open until the turn ends ([`turn::turn_span`]).
    span: tracing::Span,
    running: RunningTurn,
    message: Message,
    initiator: Option<Sink>,
    started: Instant,
    last_activity: Instant,
    bytes: usize,
    usage: Option<Usage>,
    cancel_requested: Option<Instant>,
    /// Set once the turn ran past `conversation.turn_timeout_ms` (and was cancelled):
    /// the error it ends with.
    timed_out: Option<String>,
    permissions: BTreeMap<u64, Instant>,
    /// The store holds the message's parts exactly up to here (confirmed checkpoints).
    confirmed: PartsMark,
    /// The checkpoint in flight brings the store up to here.
    checkpointing: Option<PartsMark>,
    /// The parts changed since the last checkpoint was submitted.
    dirty: bool,
    /// The end was submitted: agent output and timers no longer touch the turn.
    ending: bool,
    /// The queued message it was started from, if any.
    from_item: Option<u64>,
    /// Since when its initiator is gone, waiting for a reattach (the grace period).
    orphaned: Option<Instant>,
    /// The agent's token counts for the turn, when it reported them.
    tokens: Option<crate::agent_process::TokenCounts>,
    /// Compactions the agent reports in this turn, by its id: their summary so far.
    compactions: BTreeMap<String, String>,
    /// Cancelled for a message sent "now": saved as interrupted.
    superseded: bool,
}

impl Turn {
    /// Part `index` was rewritten in place (a tool call update): marks past its start no
    /// longer describe what is stored.
    fn rewound_to(&mut self, index: usize) {
        let start = PartsMark::at_part(index);
        self.confirmed = self.confirmed.min(start);
        self.checkpointing = self.checkpointing.map(|m| m.min(start));
    }
}

/// State of [`ConversationActor`].
pub struct ConversationState {
    ctx: Arc<NodeContext>,
    record: ConversationRecord,
    messages: VecDeque<Message>,
    /// Sequence numbers and the encoded replay ring followers read.
    ring: Arc<Ring>,
    followers: Vec<Arc<FollowerShared>>,
    next_follower_id: u64,
    turn: Option<Turn>,
    agent: Option<ActorRef<AgentSessionMsg>>,
    last_activity: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
    myself: ActorRef<ConversationMsg>,
    /// Submitted commands go here ([`commits`]).
    commits: commits::CommitQueue,
    commit_watcher: tokio::task::JoinHandle<()>,
    /// Commands submitted whose results have not been handled.
    commits_in_flight: usize,
    /// `Send`s whose user message is not committed yet.
    sends_pending: usize,
    /// A cancel came while a `Send` was pending: cancel the turn it starts.
    cancel_before_start: bool,
    /// Room for agent events ([`AGENT_EVENTS_QUEUED_MAX`]); closed when the actor stops.
    agent_credits: Arc<tokio::sync::Semaphore>,
    /// Set by [`ConversationMsg::Quiesce`]: the shard moves off this node.
    moving: Option<Moving>,
    /// Set when a commit failed and the in-memory state may no longer match the store
    /// (the command may or may not have been applied): the actor stops after the
    /// message it is handling, and the next activation reads the truth from the store.
    defunct: Option<String>,
    /// Messages waiting for the running turn, as committed ([`queue`]).
    queue: crate::shard::state_machine::queue::MessageQueue,
    /// The open streams of queued messages' senders, by item (at most the queue's
    /// bound), with the sending requests' places in their traces.
    queued_sinks: std::collections::HashMap<u64, (Sink, crate::telemetry::TraceParent)>,
    /// The credentials (names) in the current agent process's environment.
    agent_credentials: Vec<String>,
    /// The slash commands the agent session offers (`available_commands_update`).
    commands: Vec<shoal_protocol::transcript::SlashCommand>,
    /// The owner's mode and model picks and the agent's offer ([`settings`]).
    settings: shoal_protocol::settings::SessionSettings,
    /// The settings commands in flight ([`settings`]).
    settings_commits: settings::SettingsCommits,
    /// The current agent process was started without the workspace's credentials (for
    /// an editor's turn): the owner's next turn starts a new one with them.
    agent_for_shared: bool,
}

/// The actor. See the module doc.
#[derive(Debug, Default)]
pub struct ConversationActor;

fn internal(ctx: &NodeContext, context: &str, err: impl std::fmt::Display) -> WireError {
    ctx.internal_error(context, err)
}

pub(crate) fn propose_error(ctx: &NodeContext, context: &str, err: ProposeError) -> WireError {
    match err {
        ProposeError::Rejected(Rejection::NotFound(id)) => {
            WireError::not_found(format!("conversation {id} does not exist"))
        }
        ProposeError::Rejected(Rejection::Busy(turn)) => WireError::new(
            ErrorCode::Busy,
            format!(
                "turn {turn} is still running in this conversation; wait for it to finish or cancel it"
            ),
        ),
        ProposeError::NotLeader { shard, .. } | ProposeError::Unavailable { shard, .. } => {
            WireError::new(
                ErrorCode::Unavailable,
                format!("shard {shard} is moving to another node ({context}); retry"),
            )
        }
        e @ ProposeError::TooLarge { .. } => {
            WireError::new(ErrorCode::InvalidArgument, format!("{context}: {e}"))
        }
        ProposeError::Rejected(e @ Rejection::Invalid(_)) => {
            WireError::new(ErrorCode::InvalidArgument, format!("{context}: {e}"))
        }
        ProposeError::Rejected(
            e @ (Rejection::WorkspaceNotFound(_)
            | Rejection::SkillPackNotFound(_)
            | Rejection::GrantNotFound(_)),
        ) => WireError::not_found(e.to_string()),
        ProposeError::Rejected(e @ Rejection::NameTaken(_)) => {
            WireError::invalid("name", e.to_string())
        }
        ProposeError::Rejected(e @ (Rejection::TooMany(_) | Rejection::WorkspaceBusy { .. })) => {
            WireError::new(ErrorCode::Busy, e.to_string())
        }
        other => internal(ctx, context, other),
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ConversationArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ConversationArgs { ctx, id } = args;
        let record = match ctx
            .cluster
            .propose(id.shard, ShardCommand::Activate { conversation: id })
            .await?
        {
            Outcome::Activated(record) => *record,
            other => return Err(format!("unexpected outcome of Activate: {other:?}").into()),
        };
        let from = record
            .message_count
            .saturating_sub(SNAPSHOT_MESSAGES_MAX as u64);
        let messages: VecDeque<Message> =
            ctx.store.messages(id, from, record.message_count)?.into();
        let limits = &ctx.config.limits;
        let ring = Ring::new(
            record.activation,
            limits.replay_buffer_events.get() as usize,
            limits.replay_buffer_bytes.get() as usize,
        );
        let stored_settings = ctx.store.session_settings(id)?;
        let (commits, commit_watcher) = commits::start_watcher(myself.clone());
        let mut state = ConversationState {
            ring,
            ctx: ctx.clone(),
            record,
            messages,
            followers: Vec::new(),
            next_follower_id: 1,
            turn: None,
            agent: None,
            last_activity: Instant::now(),
            ticker: None,
            myself: myself.clone(),
            commits,
            commit_watcher,
            commits_in_flight: 0,
            sends_pending: 0,
            cancel_before_start: false,
            agent_credits: Arc::new(tokio::sync::Semaphore::new(AGENT_EVENTS_QUEUED_MAX)),
            moving: None,
            defunct: None,
            queue: ctx.store.message_queue(id)?,
            queued_sinks: std::collections::HashMap::new(),
            agent_credentials: Vec::new(),
            agent_for_shared: false,
            commands: Vec::new(),
            settings_commits: settings::SettingsCommits::new(&stored_settings),
            settings: stored_settings,
        };
        // A previous activation stopped in the middle of a turn: save it as interrupted
        // with what its checkpoints stored.
        if let Some(running) = state.record.running_turn.clone() {
            let end = ShardCommand::EndTurn {
                conversation: id,
                message: MessageHeader {
                    id: running.assistant_message,
                    turn: running.turn,
                    created_at_ms: ctx.now_ms(),
                },
                delta: None,
                status: MessageStatus::Interrupted,
                stop_reason: Some(StopReason::Failed),
                error: Some(
                    "the turn was interrupted: its node stopped before the turn ended".to_owned(),
                ),
            };
            let ended = ctx.cluster.propose(id.shard, end).await;
            state.record.running_turn = None;
            state.record.message_count = running.assistant_message.0 + 1;
            match ended {
                Ok(Outcome::TurnEnded(message)) => push_message(&mut state.messages, *message),
                Ok(other) => return Err(format!("unexpected outcome of EndTurn: {other:?}").into()),
                // The previous activation, still stopping, ended the turn itself after
                // our Activate: keep what it committed (applied here before our command
                // was rejected, so the local store has it).
                Err(ProposeError::Rejected(Rejection::StaleTurn(_))) => {
                    if let Some(committed) = ctx.store.message(id, running.assistant_message)? {
                        push_message(&mut state.messages, committed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        state.ticker =
            Some(myself.send_interval(ctx.checkpoint_interval(), || ConversationMsg::Tick));
        Metrics::inc(&ctx.metrics.conversations_active);
        tracing::debug!(conversation = %id, activation = state.record.activation, "conversation activated");
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        state.commit_watcher.abort();
        // The agent's forwarder may wait for room: let it go.
        state.agent_credits.close();
        // After a move (lease lost) the new host saves the turn as interrupted from the
        // last checkpoint; a commit from here could not succeed.
        let hosted = matches!(
            state.ctx.cluster.hosting(state.record.id.shard),
            crate::cluster::Hosting::Active { .. }
        );
        if let Some(turn) = state.turn.as_ref().filter(|t| !t.ending)
            && hosted
        {
            let end = ShardCommand::EndTurn {
                conversation: state.record.id,
                message: turn::header(turn),
                delta: Some(PartsDelta::since(&turn.message.parts, turn.confirmed)),
                status: MessageStatus::Interrupted,
                stop_reason: Some(StopReason::Failed),
                error: Some("the conversation actor stopped during the turn".into()),
            };
            let usage = turn.usage.clone();
            match state.ctx.cluster.propose(state.record.id.shard, end).await {
                Ok(Outcome::TurnEnded(message)) => turn::turn_ended(state, *message, usage),
                other => {
                    tracing::warn!(conversation = %state.record.id, outcome = ?other, "could not save the running turn while stopping; the next activation saves it from its last checkpoint");
                }
            }
        }
        // A turn that could not be saved here (the shard moved, the lease lapsed) ends for
        // its initiator with an error, not with a stream that just stops: the new host
        // saves it as interrupted.
        if let Some(turn) = state.turn.as_ref()
            && let Some(sink) = &turn.initiator
        {
            sink.deliver(ServerFrame::Error(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "conversation {} stopped on this node during turn {} (its shard moved or the node is stopping); the turn is saved as interrupted with what it streamed — follow the conversation, or send again",
                    state.record.id, turn.running.turn
                ),
            )));
        }
        for (sink, _) in state.queued_sinks.values() {
            sink.deliver(ServerFrame::Error(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "conversation {} moved before this queued message ran; it stays queued and runs there — follow the conversation to see it",
                    state.record.id
                ),
            )));
        }
        state.followers.clear();
        state.ring.close(&ServerFrame::Resync {
            reason: "the conversation was passivated or moved; follow again".into(),
        });
        if let Some(agent) = state.agent.take() {
            // Waits for the agent process to be shut down.
            let _ = agent
                .stop_and_wait(
                    Some("conversation stopped".into()),
                    Some(Duration::from_secs(10)),
                )
                .await;
        }
        Metrics::dec(&state.ctx.metrics.conversations_active);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // The only child is the agent session. If it dies, the running turn is lost; the
        // next turn starts a new agent session.
        let died = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                Some((cell.get_id(), reason.clone().unwrap_or_default()))
            }
            SupervisionEvent::ActorFailed(cell, err) => Some((cell.get_id(), err.to_string())),
            _ => None,
        };
        if let Some((id, reason)) = died
            && state.agent.as_ref().is_some_and(|a| a.get_id() == id)
        {
            state.agent = None;
            if state.turn.is_some() {
                let error = format!("the agent session failed: {reason}");
                turn::finish_turn(
                    state,
                    MessageStatus::Interrupted,
                    StopReason::Failed,
                    Some(error),
                );
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = span_of(&msg, state);
        tracing::Instrument::instrument(handle_msg(myself, msg, state), span).await
    }
}

/// The span a message is handled in: the turn's for what belongs to a turn (so its
/// proposals, agent calls and broadcasts join the turn's trace), none otherwise.
fn span_of(msg: &ConversationMsg, state: &ConversationState) -> tracing::Span {
    let turn = || {
        state
            .turn
            .as_ref()
            .map_or_else(tracing::Span::none, |t| t.span.clone())
    };
    match msg {
        ConversationMsg::Committed {
            commit: Commit::Send { span, .. } | Commit::StartQueued { span, .. },
            ..
        } => span.clone(),
        ConversationMsg::Committed { .. }
        | ConversationMsg::Agent { .. }
        | ConversationMsg::WorkspaceSaved { .. }
        | ConversationMsg::Tick
        | ConversationMsg::Cancel { .. }
        | ConversationMsg::AdminCancel { .. }
        | ConversationMsg::RespondPermission { .. }
        | ConversationMsg::SendGone { .. }
        | ConversationMsg::Quiesce { .. } => turn(),
        _ => tracing::Span::none(),
    }
}

/// [`ConversationActor::handle`], inside the message's span ([`span_of`]).
async fn handle_msg(
    myself: ActorRef<ConversationMsg>,
    msg: ConversationMsg,
    state: &mut ConversationState,
) -> Result<(), ActorProcessingErr> {
    match msg {
        ConversationMsg::Send {
            caller,
            text,
            request_id,
            sink,
            reply,
            now,
            attachments,
            trace,
        } => {
            state.last_activity = Instant::now();
            turn::request_turn(
                state,
                caller,
                turn::Prompt {
                    text,
                    attachments,
                    asked: std::time::Instant::now(),
                },
                request_id,
                sink,
                reply,
                now,
                trace,
            );
        }
        ConversationMsg::Follow {
            caller,
            since,
            reply,
        } => {
            state.last_activity = Instant::now();
            let _ = reply.send(attach_follower(state, &caller, since));
        }
        ConversationMsg::Get { caller, reply } => {
            let result = authorize_caller(state, &caller).map(|()| detail(state));
            let _ = reply.send(result);
        }
        ConversationMsg::Cancel { caller, reply } => {
            let result = match authorize_caller(state, &caller) {
                Err(e) => Err(e),
                Ok(()) => Ok(turn::request_cancel(state)),
            };
            let _ = reply.send(result);
        }
        ConversationMsg::RespondPermission {
            caller,
            request,
            option_id,
            reply,
        } => {
            let result = authorize_caller(state, &caller)
                .and_then(|()| turn::respond_permission(state, request, option_id));
            let _ = reply.send(result);
        }
        ConversationMsg::SendGone { ticket } => queue::on_send_gone(state, ticket),
        ConversationMsg::Queue { user, op, reply } => queue::on_queue_op(state, &user, op, reply),
        ConversationMsg::Attach {
            caller,
            sink,
            reply,
        } => queue::attach(state, &caller, sink, reply),
        ConversationMsg::Agent {
            turn,
            event,
            credit,
        } => {
            on_agent_event(state, turn, event);
            drop(credit);
        }
        ConversationMsg::Committed { commit, result } => {
            commits::on_committed(state, commit, result).await;
        }
        ConversationMsg::WorkspaceSaved { turn, saved, end } => {
            let (cmd, commit) = *end;
            turn::on_workspace_saved(state, turn, saved, cmd, commit);
        }
        ConversationMsg::Preamble { turn, reply } => {
            let preamble = state
                .turn
                .as_ref()
                .filter(|t| t.running.turn == turn)
                .and_then(|t| turn::preamble(&state.messages, t.running.user_message));
            let _ = reply.send(preamble);
        }
        ConversationMsg::Tick => turn::on_tick(&myself, state),
        ConversationMsg::Describe { reply } => {
            let _ = reply.send(describe(state));
        }
        ConversationMsg::Quiesce { until, why, reply } => {
            let busy = state.turn.is_some() || state.sends_pending > 0;
            let accepted = match until {
                None if busy => false,
                None => {
                    state.moving = Some(Moving {
                        until: Instant::now(),
                        why,
                        held: true,
                    });
                    true
                }
                Some(until) => {
                    state.moving = Some(Moving {
                        until,
                        why,
                        held: false,
                    });
                    turn::end_if_moved(state);
                    true
                }
            };
            let _ = reply.send(accepted);
        }
        ConversationMsg::Rewrite {
            user,
            change,
            reply,
        } => history::on_rewrite(state, &user, change, reply),
        ConversationMsg::SetSettings {
            user,
            mode,
            model,
            reply,
        } => settings::on_set(state, &user, mode, model, reply),
        ConversationMsg::Release { go } => match state.moving.as_mut() {
            Some(moving) if go => moving.held = false,
            _ => state.moving = None,
        },
        ConversationMsg::AdminCancel { reply } => {
            let running = turn::request_cancel(state);
            if running {
                tracing::warn!(conversation = %state.record.id, "turn cancelled by an admin");
            }
            let _ = reply.send(running);
        }
    }
    if let Some(reason) = state.defunct.take() {
        myself.stop(Some(reason));
    } else if let Some(moving) = state.moving
        && !moving.held
        && state.turn.is_none()
        && state.sends_pending == 0
        && state.commits_in_flight == 0
    {
        tracing::debug!(conversation = %state.record.id, why = moving.why, "handing over between turns: stopping");
        myself.stop(Some(moving.why.into()));
    }
    Ok(())
}

fn push_message(messages: &mut VecDeque<Message>, message: Message) {
    if messages.len() == SNAPSHOT_MESSAGES_MAX {
        messages.pop_front();
    }
    messages.push_back(message);
}

fn empty_assistant(running: &RunningTurn, now_ms: u64) -> Message {
    Message {
        id: running.assistant_message,
        turn: running.turn,
        role: Role::Assistant,
        status: MessageStatus::InProgress,
        parts: Vec::new(),
        content: String::new(),
        created_at_ms: now_ms,
        stop_reason: None,
        error: None,
    }
}

/// `Ok` for the owner, and for a shared caller (the gateway resolved their grant with
/// [`crate::sharing::resolve`] from this shard's committed state, and checked the role).
fn authorize_caller(state: &ConversationState, caller: &Caller) -> Result<(), WireError> {
    match caller.access {
        crate::sharing::Access::Owner => authorize(state, &caller.user),
        crate::sharing::Access::Shared { .. } => Ok(()),
    }
}

/// `Ok` for the owner only; anyone else reads it as a missing conversation.
fn authorize(state: &ConversationState, user: &UserId) -> Result<(), WireError> {
    if &state.record.owner == user {
        Ok(())
    } else {
        // Same answer as for a missing conversation: ids of others' conversations are not disclosed.
        Err(WireError::not_found(format!(
            "conversation {} does not exist",
            state.record.id
        )))
    }
}

/// The conversation's summary.
pub fn summary(record: &ConversationRecord) -> ConversationSummary {
    ConversationSummary {
        id: record.id,
        workspace: record.workspace,
        owner: record.owner.clone(),
        title: record.title.clone(),
        agent: record.agent.clone(),
        created_at_ms: record.created_at_ms,
        message_count: record.message_count,
        turn_running: record.running_turn.is_some(),
    }
}

fn detail(state: &ConversationState) -> ConversationDetail {
    ConversationDetail {
        summary: summary(&state.record),
        messages: state.messages.iter().cloned().collect(),
        in_flight: state.turn.as_ref().map(|t| t.message.clone()),
        commands: state.commands.clone(),
        settings: state.settings.clone(),
    }
}

fn snapshot(state: &ConversationState) -> Snapshot {
    Snapshot {
        conversation: state.record.id,
        messages: state.messages.iter().cloned().collect(),
        omitted_messages: state
            .record
            .message_count
            .saturating_sub(state.messages.len() as u64),
        in_flight: state.turn.as_ref().map(|t| t.message.clone()),
    }
}

/// Broadcasts one event: followers get the allowlisted view (encoded once into the ring
/// they read), the initiator everything.
fn emit(state: &mut ConversationState, event: Event) {
    // Per event: made only while traces are exported.
    let span = crate::telemetry::spans::exported(|| {
        tracing::info_span!(
            "broadcast",
            conversation = %state.record.id,
            event = event.type_name(),
            seq = tracing::field::Empty,
            followers = state.followers.len(),
        )
    });
    let _broadcast = span.enter();
    let seq = match event.for_follower() {
        Some(visible) => state.ring.push(visible),
        None => state.ring.last(),
    };
    span.record("seq", seq.0);
    if let Some(turn) = state.turn.as_mut()
        && let Some(sink) = &turn.initiator
        && sink.deliver(ServerFrame::Event(EventFrame { seq, event })) != Delivery::Queued
    {
        // A slow or vanished initiator stops receiving; the turn goes on.
        turn.initiator = None;
    }
}

/// A follower attached to a conversation: its stream task reads `ring` from `cursor`
/// after writing `prelude` (a reset with a snapshot, when it could not resume).
#[derive(Debug)]
pub struct Attached {
    /// The activation's ring.
    pub ring: Arc<Ring>,
    /// Everything through this number is delivered (or in `prelude`).
    pub cursor: Seq,
    /// An encoded frame to write first.
    pub prelude: Option<bytes::Bytes>,
    /// The follower as the actor counts it.
    pub follower: Arc<FollowerShared>,
}

fn attach_follower(
    state: &mut ConversationState,
    caller: &Caller,
    since: Option<Seq>,
) -> Result<Attached, WireError> {
    authorize_caller(state, caller)?;
    state.followers.retain(|f| !f.is_gone());
    let limits = &state.ctx.config.limits;
    let max = limits.followers_per_conversation_max.get() as usize;
    if state.followers.len() >= max {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "conversation {} already has {max} followers (limits.followers_per_conversation_max)",
                state.record.id
            ),
        ));
    }
    let lag_max = u64::from(limits.follower_queue_frames.get());
    let (cursor, prelude) = match state.ring.start(since, lag_max) {
        Start::From(cursor) => (cursor, None),
        Start::Reset => {
            let last = state.ring.last();
            let reset = super::follow::encode_event(EventFrame {
                seq: last,
                event: Event::Reset {
                    snapshot: snapshot(state),
                },
            });
            (last, Some(reset))
        }
    };
    let id = state.next_follower_id;
    state.next_follower_id += 1;
    let follower = FollowerShared::new(state.ctx.clone(), id, caller.user.clone(), cursor);
    state.followers.push(follower.clone());
    Ok(Attached {
        ring: state.ring.clone(),
        cursor,
        prelude,
        follower,
    })
}

fn describe(state: &ConversationState) -> (Vec<ActorInfo>, Vec<FollowerInfo>) {
    let mut actors = vec![ActorInfo {
        kind: "conversation".into(),
        key: state.record.id.to_string(),
        state: if state.turn.is_some() {
            "turn".into()
        } else {
            "idle".into()
        },
    }];
    if state.agent.is_some() {
        actors.push(ActorInfo {
            kind: "agent_session".into(),
            key: state.record.id.to_string(),
            state: "live".into(),
        });
    }
    let last = state.ring.last();
    let followers = state
        .followers
        .iter()
        .filter(|f| !f.is_gone())
        .map(|f| {
            let cursor = f.cursor();
            FollowerInfo {
                conversation: state.record.id,
                user: f.user.clone(),
                last_seq: Some(cursor),
                queued: last.0.saturating_sub(cursor.0),
            }
        })
        .collect();
    (actors, followers)
}
