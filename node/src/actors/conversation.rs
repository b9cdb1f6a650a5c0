//! The conversation actor: one per active conversation.
//!
//! It owns the conversation's live state: committed messages (the newest
//! `SNAPSHOT_MESSAGES_MAX`), the running turn, the sequence counter and replay buffer,
//! the followers, and its agent-session child. Durable changes go through
//! `Cluster::propose` as `ShardCommand`s.
//!
//! A turn: `Send` commits the user message (idempotent by request id) → `UserMessage`
//! and `TurnStarted` events → the agent session runs the prompt → its updates become
//! display events and accumulate into the assistant message's parts → a checkpoint is
//! committed every `checkpoint_interval_ms` while the message changes → at the end the
//! message is committed with its final status and `Done` is broadcast.
//!
//! Timers (one `Tick` per checkpoint interval): checkpoints, the turn timeouts, the
//! cancel grace period, permission timeouts and idle passivation.

mod agent_events;

use super::agent_session::{AgentSessionActor, AgentSessionArgs, AgentSessionMsg};
use super::follow::{Delivery, Follower, Sequencer, Sink, Start};
use crate::agent_process::{AgentCommand, AgentUpdate, PromptOutcome, ToolStatusRaw};
use crate::cluster::ProposeError;
use crate::context::{Metrics, NodeContext};
use crate::shard::state_machine::{
    ConversationRecord, Outcome, Rejection, RunningTurn, ShardCommand, TurnStartedOutcome,
};
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

/// How long a cancelled turn may take to stop before it is ended without the agent.
const CANCEL_GRACE_MS: u64 = 10_000;

/// Events from the agent-session actor.
#[derive(Debug)]
pub enum AgentEvent {
    /// A status line for the turn.
    Status(String),
    /// The agent process started with this session id.
    SessionStarted(String),
    /// A session update.
    Update(AgentUpdate),
    /// The prompt ended (`Err` carries what went wrong).
    Ended(Result<PromptOutcome, String>),
}

/// Messages of [`ConversationActor`].
#[derive(Debug)]
pub enum ConversationMsg {
    /// Append a user message and run a turn; frames of the turn go to `sink`.
    Send {
        /// Caller.
        user: UserId,
        /// Text.
        text: String,
        /// Idempotency key.
        request_id: RequestId,
        /// Where `Accepted` and the turn's events go.
        sink: Sink,
        /// Ok once `Accepted` is queued.
        reply: RpcReplyPort<Result<TurnId, WireError>>,
    },
    /// Attach a follower.
    Follow {
        /// Caller.
        user: UserId,
        /// Last sequence number the follower has.
        since: Option<Seq>,
        /// Where events go.
        sink: Sink,
        /// Ok once attached.
        reply: RpcReplyPort<Result<(), WireError>>,
    },
    /// The conversation with its transcript.
    Get {
        /// Caller.
        user: UserId,
        /// Reply.
        reply: RpcReplyPort<Result<ConversationDetail, WireError>>,
    },
    /// Cancel the running turn.
    Cancel {
        /// Caller.
        user: UserId,
        /// Whether a turn was running.
        reply: RpcReplyPort<Result<bool, WireError>>,
    },
    /// Answer a permission request of the running turn.
    RespondPermission {
        /// Caller.
        user: UserId,
        /// The request id.
        request: u64,
        /// The chosen option; `None` cancels.
        option_id: Option<String>,
        /// Reply.
        reply: RpcReplyPort<Result<(), WireError>>,
    },
    /// The turn's initiator disconnected: cancel the turn.
    InitiatorGone {
        /// The turn.
        turn: TurnId,
    },
    /// From the agent-session actor.
    Agent {
        /// The turn the event belongs to.
        turn: TurnId,
        /// The event.
        event: AgentEvent,
    },
    /// Timer: checkpoints, timeouts, passivation.
    Tick,
    /// Admin: describe actors and followers.
    Describe {
        /// Reply.
        reply: RpcReplyPort<(Vec<ActorInfo>, Vec<FollowerInfo>)>,
    },
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
    running: RunningTurn,
    message: Message,
    initiator: Option<Sink>,
    started: Instant,
    last_activity: Instant,
    dirty: bool,
    bytes: usize,
    usage: Option<Usage>,
    cancel_requested: Option<Instant>,
    permissions: BTreeMap<u64, Instant>,
}

/// State of [`ConversationActor`].
pub struct ConversationState {
    ctx: Arc<NodeContext>,
    record: ConversationRecord,
    messages: VecDeque<Message>,
    seq: Sequencer,
    followers: Vec<Follower>,
    next_follower_id: u64,
    turn: Option<Turn>,
    agent: Option<ActorRef<AgentSessionMsg>>,
    last_activity: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
    /// Set when a commit failed and the in-memory state may no longer match the store
    /// (the command may or may not have been applied): the actor stops after the
    /// message it is handling, and the next activation reads the truth from the store.
    defunct: Option<String>,
}

/// The actor. See the module doc.
#[derive(Debug, Default)]
pub struct ConversationActor;

fn internal(ctx: &NodeContext, context: &str, err: impl std::fmt::Display) -> WireError {
    ctx.internal_error(context, err)
}

fn propose_error(ctx: &NodeContext, context: &str, err: ProposeError) -> WireError {
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
        let capacity = ctx.config.limits.replay_buffer_events.get() as usize;
        let mut state = ConversationState {
            seq: Sequencer::new(record.activation, capacity),
            ctx: ctx.clone(),
            record,
            messages,
            followers: Vec::new(),
            next_follower_id: 1,
            turn: None,
            agent: None,
            last_activity: Instant::now(),
            ticker: None,
            defunct: None,
        };
        // A previous activation stopped in the middle of a turn: save it as interrupted
        // from its last checkpoint.
        if let Some(running) = state.record.running_turn.clone() {
            let checkpoint = ctx.store.message(id, running.assistant_message)?;
            let mut message = checkpoint.unwrap_or_else(|| empty_assistant(&running, ctx.now_ms()));
            message.status = MessageStatus::Interrupted;
            message.stop_reason = Some(StopReason::Failed);
            message.error =
                Some("the turn was interrupted: its node stopped before the turn ended".to_owned());
            message.content = content_from_parts(&message.parts);
            let finished = ctx
                .cluster
                .propose(
                    id.shard,
                    ShardCommand::FinishTurn {
                        conversation: id,
                        message: message.clone(),
                    },
                )
                .await;
            state.record.running_turn = None;
            state.record.message_count = message.id.0 + 1;
            match finished {
                Ok(_) => push_message(&mut state.messages, message),
                // The previous activation, still stopping, ended the turn itself after
                // our Activate: keep what it committed (applied here before our command
                // was rejected, so the local store has it).
                Err(ProposeError::Rejected(Rejection::StaleTurn(_))) => {
                    if let Some(committed) = ctx.store.message(id, message.id)? {
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
        // After a move (lease lost) the new host saves the turn as interrupted from the
        // last checkpoint; a commit from here could not succeed.
        let hosted = matches!(
            state.ctx.cluster.hosting(state.record.id.shard),
            crate::cluster::Hosting::Active { .. }
        );
        if state.turn.is_some() && hosted {
            finish_turn(
                state,
                MessageStatus::Interrupted,
                StopReason::Failed,
                Some("the conversation actor stopped during the turn".into()),
            )
            .await;
        }
        for follower in state.followers.drain(..) {
            Metrics::dec(&state.ctx.metrics.followers);
            follower.sink.close_with(ServerFrame::Resync {
                reason: "the conversation was passivated or moved; follow again".into(),
            });
        }
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
                finish_turn(
                    state,
                    MessageStatus::Interrupted,
                    StopReason::Failed,
                    Some(error),
                )
                .await;
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
        match msg {
            ConversationMsg::Send {
                user,
                text,
                request_id,
                sink,
                reply,
            } => {
                state.last_activity = Instant::now();
                let result = start_turn(&myself, state, user, text, request_id, sink).await;
                let _ = reply.send(result);
            }
            ConversationMsg::Follow {
                user,
                since,
                sink,
                reply,
            } => {
                state.last_activity = Instant::now();
                let _ = reply.send(attach_follower(state, user, since, sink));
            }
            ConversationMsg::Get { user, reply } => {
                let result = authorize(state, &user).map(|()| detail(state));
                let _ = reply.send(result);
            }
            ConversationMsg::Cancel { user, reply } => {
                let result = match authorize(state, &user) {
                    Err(e) => Err(e),
                    Ok(()) => Ok(request_cancel(state)),
                };
                let _ = reply.send(result);
            }
            ConversationMsg::RespondPermission {
                user,
                request,
                option_id,
                reply,
            } => {
                let result = authorize(state, &user)
                    .and_then(|()| respond_permission(state, request, option_id));
                let _ = reply.send(result);
            }
            ConversationMsg::InitiatorGone { turn } => {
                if state.turn.as_ref().is_some_and(|t| t.running.turn == turn) {
                    tracing::info!(conversation = %state.record.id, %turn, "initiator disconnected; cancelling the turn");
                    if let Some(t) = state.turn.as_mut() {
                        t.initiator = None;
                    }
                    request_cancel(state);
                }
            }
            ConversationMsg::Agent { turn, event } => on_agent_event(state, turn, event).await,
            ConversationMsg::Tick => on_tick(&myself, state).await,
            ConversationMsg::Describe { reply } => {
                let _ = reply.send(describe(state));
            }
        }
        if let Some(reason) = state.defunct.take() {
            myself.stop(Some(reason));
        }
        Ok(())
    }
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

/// Broadcasts one event: followers get the allowlisted view, the initiator everything.
fn emit(state: &mut ConversationState, event: Event) {
    let initiator_frame = match event.for_follower() {
        Some(visible) => {
            let frame = state.seq.push(visible);
            let metrics = &state.ctx.metrics;
            state.followers.retain_mut(|f| {
                match f.sink.deliver(ServerFrame::Event(frame.clone())) {
                    Delivery::Queued => {
                        f.last_seq = frame.seq;
                        true
                    }
                    Delivery::Gone => {
                        Metrics::dec(&metrics.followers);
                        false
                    }
                    Delivery::CutOver => {
                        tracing::debug!(follower = f.id, user = %f.user, "follower fell behind; cut over to resync");
                        Metrics::dec(&metrics.followers);
                        Metrics::inc(&metrics.follower_resyncs);
                        false
                    }
                }
            });
            EventFrame {
                seq: frame.seq,
                event,
            }
        }
        None => EventFrame {
            seq: state.seq.last(),
            event,
        },
    };
    if let Some(turn) = state.turn.as_mut()
        && let Some(sink) = &turn.initiator
        && sink.deliver(ServerFrame::Event(initiator_frame)) != Delivery::Queued
    {
        // A slow or vanished initiator stops receiving; the turn goes on.
        turn.initiator = None;
    }
}

async fn start_turn(
    myself: &ActorRef<ConversationMsg>,
    state: &mut ConversationState,
    user: UserId,
    text: String,
    request_id: RequestId,
    sink: Sink,
) -> Result<TurnId, WireError> {
    authorize(state, &user)?;
    if text.trim().is_empty() {
        return Err(WireError::invalid(
            "text",
            "the message is empty; send some text",
        ));
    }
    if text.len() > MESSAGE_TEXT_BYTES_MAX {
        return Err(WireError::invalid(
            "text",
            format!(
                "the message is {} bytes, the limit is {MESSAGE_TEXT_BYTES_MAX}; shorten it",
                text.len()
            ),
        ));
    }
    let ctx = state.ctx.clone();
    let id = state.record.id;
    let cmd = ShardCommand::AppendUserMessage {
        conversation: id,
        text: text.clone(),
        request_id,
        at_ms: ctx.now_ms(),
    };
    let outcome = ctx
        .cluster
        .propose(id.shard, cmd)
        .await
        .map_err(|e| propose_error(&ctx, "append user message", e))?;
    let Outcome::TurnStarted(started) = outcome else {
        return Err(internal(&ctx, "append user message", "unexpected outcome"));
    };
    let TurnStartedOutcome {
        turn: running,
        user_message,
        duplicate,
        finished,
    } = *started;
    let accepted = ServerFrame::Accepted {
        turn: running.turn,
        user_message: user_message.id,
        duplicate,
    };
    if duplicate {
        // A retry: report the first outcome instead of applying it again.
        sink.deliver(accepted);
        if let Some(message) = finished {
            sink.deliver(ServerFrame::Event(EventFrame {
                seq: state.seq.last(),
                event: Event::Done {
                    message,
                    usage: None,
                },
            }));
        } else if let Some(turn) = state
            .turn
            .as_mut()
            .filter(|t| t.running.turn == running.turn)
        {
            turn.initiator = Some(sink);
        }
        return Ok(running.turn);
    }
    sink.deliver(accepted);
    state.record.turns = running.turn.0;
    state.record.message_count = user_message.id.0 + 1;
    state.record.running_turn = Some(running.clone());
    push_message(&mut state.messages, user_message.clone());
    let now = Instant::now();
    state.turn = Some(Turn {
        message: empty_assistant(&running, ctx.now_ms()),
        running: running.clone(),
        initiator: Some(sink),
        started: now,
        last_activity: now,
        dirty: false,
        bytes: 0,
        usage: None,
        cancel_requested: None,
        permissions: BTreeMap::new(),
    });
    Metrics::inc(&ctx.metrics.turns_running);
    emit(
        state,
        Event::UserMessage {
            message: user_message,
        },
    );
    emit(
        state,
        Event::TurnStarted {
            turn: running.turn,
            message_id: running.assistant_message,
        },
    );
    match ensure_agent(myself, state).await {
        Ok(agent) => {
            let _ = agent.cast(AgentSessionMsg::Prompt {
                turn: running.turn,
                text,
            });
        }
        Err(message) => {
            fail_turn(state, message).await;
        }
    }
    Ok(running.turn)
}

async fn ensure_agent(
    myself: &ActorRef<ConversationMsg>,
    state: &mut ConversationState,
) -> Result<ActorRef<AgentSessionMsg>, String> {
    if let Some(agent) = &state.agent {
        return Ok(agent.clone());
    }
    let ctx = &state.ctx;
    let name = state.record.agent.clone();
    let spec = ctx
        .config
        .agents
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, spec)| spec)
        .ok_or_else(|| {
            format!(
                "agent `{name}` is not configured on this node; add `[agents.{name}]` to its config"
            )
        })?;
    let command = AgentCommand {
        program: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
    };
    let args = AgentSessionArgs {
        ctx: ctx.clone(),
        conversation: myself.clone(),
        agent_name: name,
        command,
        cwd: ctx.workspace_dir(state.record.workspace),
        home: ctx.agent_home(state.record.workspace, state.record.id),
        resume_session: state.record.agent_session.clone(),
        shard: state.record.id.shard,
    };
    let (agent, _) = Actor::spawn_linked(None, AgentSessionActor, args, myself.get_cell())
        .await
        .map_err(|e| format!("cannot start the agent session: {e}"))?;
    state.agent = Some(agent.clone());
    Ok(agent)
}

fn request_cancel(state: &mut ConversationState) -> bool {
    let Some(turn) = state.turn.as_mut() else {
        return false;
    };
    if turn.cancel_requested.is_none() {
        turn.cancel_requested = Some(Instant::now());
        let turn_id = turn.running.turn;
        if let Some(agent) = &state.agent {
            let _ = agent.cast(AgentSessionMsg::Cancel { turn: turn_id });
        }
    }
    true
}

fn respond_permission(
    state: &mut ConversationState,
    request: u64,
    option_id: Option<String>,
) -> Result<(), WireError> {
    let Some(turn) = state.turn.as_mut() else {
        return Err(WireError::invalid(
            "request",
            "no turn is running, so there is no permission request to answer",
        ));
    };
    if turn.permissions.remove(&request).is_none() {
        return Err(WireError::invalid(
            "request",
            format!("permission request {request} is not pending (answered, timed out or unknown)"),
        ));
    }
    if let Some(agent) = &state.agent {
        let _ = agent.cast(AgentSessionMsg::RespondPermission { request, option_id });
    }
    Ok(())
}

fn attach_follower(
    state: &mut ConversationState,
    user: UserId,
    since: Option<Seq>,
    sink: Sink,
) -> Result<(), WireError> {
    authorize(state, &user)?;
    let metrics = &state.ctx.metrics;
    state.followers.retain(|f| {
        let keep = !f.sink.is_closed();
        if !keep {
            Metrics::dec(&metrics.followers);
        }
        keep
    });
    let max = state.ctx.config.limits.followers_per_conversation_max.get() as usize;
    if state.followers.len() >= max {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "conversation {} already has {max} followers (limits.followers_per_conversation_max)",
                state.record.id
            ),
        ));
    }
    let last = state.seq.last();
    match state.seq.start(since, sink.room()) {
        Start::Replay(frames) => {
            for frame in frames {
                sink.deliver(ServerFrame::Event(frame));
            }
        }
        Start::Reset => {
            sink.deliver(ServerFrame::Event(EventFrame {
                seq: last,
                event: Event::Reset {
                    snapshot: snapshot(state),
                },
            }));
        }
    }
    let id = state.next_follower_id;
    state.next_follower_id += 1;
    state.followers.push(Follower {
        id,
        user,
        sink,
        last_seq: last,
    });
    Metrics::inc(&state.ctx.metrics.followers);
    Ok(())
}

async fn checkpoint(state: &mut ConversationState) {
    let Some(turn) = state.turn.as_mut().filter(|t| t.dirty) else {
        return;
    };
    turn.dirty = false;
    let message = turn.message.clone();
    let cmd = ShardCommand::Checkpoint {
        conversation: state.record.id,
        message,
    };
    if let Err(e) = state.ctx.cluster.propose(state.record.id.shard, cmd).await {
        tracing::warn!(conversation = %state.record.id, error = %e, "checkpoint failed; will retry");
        if let Some(turn) = state.turn.as_mut() {
            turn.dirty = true;
        }
    }
}

async fn finish_turn(
    state: &mut ConversationState,
    status: MessageStatus,
    reason: StopReason,
    error: Option<String>,
) {
    let Some(turn) = state.turn.as_ref() else {
        return;
    };
    let mut message = turn.message.clone();
    message.status = status;
    message.stop_reason = Some(reason);
    message.error = error;
    message.content = content_from_parts(&message.parts);
    let usage = turn.usage.clone();
    let cmd = ShardCommand::FinishTurn {
        conversation: state.record.id,
        message: message.clone(),
    };
    if let Err(e) = state.ctx.cluster.propose(state.record.id.shard, cmd).await {
        // Whether the end was applied is unknown (a lost lease, a timeout): announcing a
        // `Done` could show followers a message the store never gets. End this activation
        // instead; the next one finds the turn either finished or still running, and
        // then saves it as interrupted from its last checkpoint.
        let err = propose_error(&state.ctx, "commit the end of a turn", e);
        if let Some(sink) = state.turn.as_ref().and_then(|t| t.initiator.as_ref()) {
            sink.deliver(ServerFrame::Error(err));
        }
        for follower in state.followers.drain(..) {
            Metrics::dec(&state.ctx.metrics.followers);
            follower.sink.close_with(ServerFrame::Resync {
                reason: "the end of the turn could not be committed here; follow again".into(),
            });
        }
        state.turn = None;
        Metrics::dec(&state.ctx.metrics.turns_running);
        state.defunct = Some("the end of a turn could not be committed".into());
        return;
    }
    state.record.running_turn = None;
    state.record.message_count = message.id.0 + 1;
    push_message(&mut state.messages, message.clone());
    // Emitted while the turn is still set, so the initiator gets Done with usage and
    // followers get it without.
    emit(state, Event::Done { message, usage });
    state.turn = None;
    Metrics::dec(&state.ctx.metrics.turns_running);
    state.last_activity = Instant::now();
}

/// Ends the running turn as interrupted, telling everyone why.
async fn fail_turn(state: &mut ConversationState, message: String) {
    emit(
        state,
        Event::Error {
            message: message.clone(),
        },
    );
    finish_turn(
        state,
        MessageStatus::Interrupted,
        StopReason::Failed,
        Some(message),
    )
    .await;
}

async fn on_tick(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState) {
    checkpoint(state).await;
    let conversation = &state.ctx.config.conversation;
    let turn_timeout = Duration::from_millis(conversation.turn_timeout_ms.get());
    let idle_timeout = Duration::from_millis(conversation.turn_idle_timeout_ms.get());
    let permission_timeout = Duration::from_millis(conversation.permission_timeout_ms.get());
    let passivate_after = Duration::from_millis(conversation.idle_passivate_ms.get());
    if let Some(turn) = state.turn.as_mut() {
        let expired: Vec<u64> = turn
            .permissions
            .iter()
            .filter(|(_, at)| at.elapsed() >= permission_timeout)
            .map(|(r, _)| *r)
            .collect();
        for request in expired {
            turn.permissions.remove(&request);
            if let Some(agent) = &state.agent {
                let _ = agent.cast(AgentSessionMsg::RespondPermission {
                    request,
                    option_id: None,
                });
            }
        }
        let failure = if turn.started.elapsed() >= turn_timeout {
            Some(format!(
                "the turn ran longer than {} ms (conversation.turn_timeout_ms) and was stopped",
                turn_timeout.as_millis()
            ))
        } else if turn.permissions.is_empty() && turn.last_activity.elapsed() >= idle_timeout {
            Some(format!(
                "the agent sent nothing for {} ms (conversation.turn_idle_timeout_ms); it was restarted",
                idle_timeout.as_millis()
            ))
        } else if turn
            .cancel_requested
            .is_some_and(|at| at.elapsed() >= Duration::from_millis(CANCEL_GRACE_MS))
        {
            Some(format!(
                "the agent did not stop within {CANCEL_GRACE_MS} ms of the cancel; it was restarted"
            ))
        } else {
            None
        };
        if let Some(message) = failure {
            let cancelled = turn.cancel_requested.is_some();
            if let Some(agent) = &state.agent {
                let _ = agent.cast(AgentSessionMsg::Restart);
            }
            if cancelled {
                finish_turn(
                    state,
                    MessageStatus::Cancelled,
                    StopReason::Cancelled,
                    Some(message),
                )
                .await;
            } else {
                fail_turn(state, message).await;
            }
        }
        return;
    }
    state.followers.retain(|f| {
        !f.sink.is_closed() || {
            Metrics::dec(&state.ctx.metrics.followers);
            false
        }
    });
    if state.followers.is_empty() && state.last_activity.elapsed() >= passivate_after {
        tracing::debug!(conversation = %state.record.id, "passivating idle conversation");
        myself.stop(Some("idle".into()));
    }
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
    let followers = state
        .followers
        .iter()
        .map(|f| FollowerInfo {
            conversation: state.record.id,
            user: f.user.clone(),
            last_seq: Some(f.last_seq),
            queued: f.sink.queued(),
        })
        .collect();
    (actors, followers)
}
