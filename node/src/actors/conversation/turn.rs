//! A turn's lifecycle, with every commit pipelined (see [`super::commits`]): `Send`
//! submits the user message and the turn starts when it is committed; checkpoints submit
//! deltas, one at a time; the end submits the last delta with the final status, and
//! `Done` goes out when that is committed.

use super::commits::{Commit, submit};
use super::queue::{self, SendTicket};
use super::*;
use crate::telemetry::TraceParent;
use crate::workspace::{Saved, WorkspaceError};

/// `Send`: checks the request and submits the user message. The reply (and the turn)
/// follow when it is committed ([`on_send_committed`]).
/// What a turn gives the agent: the user's text and any attachments.
#[derive(Debug)]
pub struct Prompt {
    /// The text (as sent, without the transcript's attachment lines).
    pub text: String,
    /// Images and files, given once with this turn.
    pub attachments: Vec<shoal_protocol::attachments::Attachment>,
    /// When the turn was asked for (`shoal_turn_start_seconds` runs from here to the
    /// prompt handed to the agent).
    pub asked: std::time::Instant,
}

impl Prompt {
    /// A prompt of text alone, asked for at `asked`.
    pub(super) fn text(text: String, asked: std::time::Instant) -> Self {
        Self {
            text,
            attachments: Vec::new(),
            asked,
        }
    }
}

/// Attachments are checked (bounds, and what the agent takes as its last probe said)
/// and never queued; the transcript's message names each after the text.
fn check_attachments(
    state: &ConversationState,
    prompt: &Prompt,
    request_id: RequestId,
) -> Result<(), WireError> {
    if prompt.attachments.is_empty() {
        return Ok(());
    }
    shoal_protocol::attachments::check_attachments(&prompt.attachments)
        .map_err(|e| WireError::invalid("attachments", e))?;
    // A retry of the message whose turn runs goes on like any retry (the node answers
    // with that turn; the attachments went with it the first time).
    let retry = state
        .turn
        .as_ref()
        .is_some_and(|t| t.running.request_id == request_id);
    if queue::must_queue(state) && !retry {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "a turn is running in {}; a message with attachments is not queued: send it when the turn ends",
                state.record.id
            ),
        ));
    }
    let agent = &state.record.agent;
    if let Some((image, embedded)) = state.ctx.agents.prompt_capabilities(agent) {
        for a in &prompt.attachments {
            let (takes, capability) = if a.is_image() {
                (image, "promptCapabilities.image")
            } else {
                (embedded, "promptCapabilities.embeddedContext")
            };
            if !takes {
                return Err(WireError::invalid(
                    "attachments",
                    format!(
                        "agent `{agent}` does not take {} attachments like {} (it does not advertise {capability}); send the message without it",
                        if a.is_image() { "image" } else { "file" },
                        a.describe()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The message as the transcript keeps it: the text, then a line naming each attachment.
fn transcript_text(prompt: &Prompt) -> String {
    let mut text = prompt.text.clone();
    for a in &prompt.attachments {
        text.push_str(&format!("\n[attachment: {}]", a.describe()));
    }
    text
}

#[allow(clippy::too_many_arguments)]
pub(super) fn request_turn(
    state: &mut ConversationState,
    caller: Caller,
    prompt: Prompt,
    request_id: RequestId,
    sink: Sink,
    reply: RpcReplyPort<Result<SendTicket, WireError>>,
    now: bool,
    trace: TraceParent,
) {
    let checked = authorize_caller(state, &caller)
        .and_then(|()| check_text(&prompt.text))
        .and_then(|()| not_moving(state))
        .and_then(|()| check_attachments(state, &prompt, request_id));
    if let Err(e) = checked {
        let _ = reply.send(Err(e));
        return;
    }
    // The queue runs its messages as the owner's turns: a shared caller's message is
    // never queued behind the running turn.
    if !caller.is_owner() && queue::must_queue(state) {
        let _ = reply.send(Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "a turn is running in {}; wait for it to end, then send again",
                state.record.id
            ),
        )));
        return;
    }
    if state.sends_pending >= SENDS_PENDING_MAX {
        let _ = reply.send(Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "conversation {} already has {SENDS_PENDING_MAX} messages waiting to be committed; retry shortly",
                state.record.id
            ),
        )));
        return;
    }
    if queue::must_queue(state) {
        if now {
            if let Some(turn) = state.turn.as_mut().filter(|t| !t.ending) {
                turn.superseded = true;
            }
            request_cancel(state);
        }
        queue::enqueue(state, prompt.text, request_id, sink, reply, now, trace);
        return;
    }
    state.sends_pending += 1;
    let cmd = ShardCommand::AppendUserMessage {
        conversation: state.record.id,
        text: transcript_text(&prompt),
        request_id,
        at_ms: state.ctx.now_ms(),
    };
    // The turn starts with its user message's proposal.
    let span = turn_span(state, &trace);
    let commit = Commit::Send {
        prompt,
        sink,
        reply,
        span: span.clone(),
    };
    span.in_scope(|| submit(state, cmd, commit));
}

/// The `turn` span of a turn about to start in `state`'s conversation: in the trace of
/// the request that sent its message (`trace`), from its user message's proposal to
/// its end, whose status it records ([`record_end`]).
pub(super) fn turn_span(state: &ConversationState, trace: &TraceParent) -> tracing::Span {
    // No contextual parent: the actor's task belongs to no request.
    let span = tracing::info_span!(
        parent: None,
        "turn",
        conversation = %state.record.id,
        agent = state.record.agent.as_str(),
        turn = tracing::field::Empty,
        user_message = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    trace.adopt(&span);
    span
}

/// Records how a turn (or the send that was to start one) ended on its span.
fn record_end(span: &tracing::Span, status: &'static str) {
    span.record("status", status);
}

/// A stored message's status, as a `turn` span records it.
fn status_name(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Complete => "complete",
        MessageStatus::InProgress => "in_progress",
        MessageStatus::Interrupted => "interrupted",
        MessageStatus::Cancelled => "cancelled",
    }
}

fn not_moving(state: &ConversationState) -> Result<(), WireError> {
    match state.moving {
        Some(moving) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "conversation {} is moving ({}); retry in a moment",
                state.record.id, moving.why
            ),
        )),
        None => Ok(()),
    }
}

/// Ends the running turn if its conversation is moving and the handover's deadline has
/// come: what streamed is committed, the agent is asked to stop the prompt.
pub(super) fn end_if_moved(state: &mut ConversationState) {
    let Some(moving) = state.moving else {
        return;
    };
    let due = state
        .turn
        .as_ref()
        .is_some_and(|t| !t.ending && Instant::now() >= moving.until);
    if !due {
        return;
    }
    if let (Some(agent), Some(turn)) = (&state.agent, &state.turn) {
        let _ = agent.cast(AgentSessionMsg::Cancel {
            turn: turn.running.turn,
        });
    }
    fail_turn(
        state,
        format!(
            "the turn was stopped because {}; what it streamed is kept — send again to continue",
            moving.why
        ),
    );
}

fn check_text(text: &str) -> Result<(), WireError> {
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
    Ok(())
}

/// Where the user message of a turn came from: the `Send` to answer (none for a
/// queued message), the queued item, and the turn's span.
pub(super) struct Origin {
    /// The `Send`'s reply.
    pub(super) reply: Option<RpcReplyPort<Result<SendTicket, WireError>>>,
    /// The queued message it was started from.
    pub(super) from_item: Option<u64>,
    /// The `turn` span ([`turn_span`]).
    pub(super) span: tracing::Span,
}

/// The user message of a `Send` was committed (or not): answer, and start the turn.
pub(super) async fn on_send_committed(
    state: &mut ConversationState,
    prompt: Prompt,
    sink: Sink,
    origin: Origin,
    result: Result<Outcome, ProposeError>,
) {
    let Origin {
        reply,
        from_item,
        span,
    } = origin;
    let reply = |answer: Result<TurnId, WireError>| {
        if let Some(reply) = reply {
            let _ = reply.send(answer.map(SendTicket::Started));
        }
    };
    state.sends_pending -= 1;
    if state.sends_pending == 0 && !matches!(result, Ok(Outcome::TurnStarted(_))) {
        // The cancel was for a message that did not start a turn.
        state.cancel_before_start = false;
    }
    let started = match result {
        Ok(Outcome::TurnStarted(started)) => *started,
        Ok(other) => {
            record_end(&span, "not_started");
            let err = internal(&state.ctx, "append user message", format!("{other:?}"));
            reply(Err(err));
            return;
        }
        Err(e) => {
            record_end(&span, "not_started");
            reply(Err(propose_error(&state.ctx, "append user message", e)));
            return;
        }
    };
    let TurnStartedOutcome {
        turn: running,
        user_message,
        duplicate,
        finished,
    } = started;
    let accepted = ServerFrame::Accepted {
        turn: running.turn,
        user_message: user_message.id,
        duplicate,
    };
    if duplicate {
        // A retry: report the first outcome instead of applying it again.
        record_end(&span, "duplicate");
        sink.deliver(accepted);
        if let Some(message) = finished {
            sink.deliver(ServerFrame::Event(EventFrame {
                seq: state.ring.last(),
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
        reply(Ok(running.turn));
        return;
    }
    sink.deliver(accepted);
    reply(Ok(running.turn));
    let cancel_early = std::mem::take(&mut state.cancel_before_start);
    // As the state machine did: an untitled conversation is named by its first message.
    if state.record.title.is_none() && user_message.id.0 == 0 {
        state.record.title =
            crate::shard::state_machine::history::derived_title(&user_message.content);
    }
    state.record.turns = running.turn.0;
    state.record.message_count = user_message.id.0 + 1;
    state.record.running_turn = Some(running.clone());
    push_message(&mut state.messages, user_message.clone());
    let now = Instant::now();
    let for_shared = sink.is_shared();
    span.record("turn", running.turn.0);
    span.record("user_message", user_message.id.0);
    state.turn = Some(Turn {
        span,
        message: empty_assistant(&running, state.ctx.now_ms()),
        running: running.clone(),
        initiator: Some(sink),
        started: now,
        last_activity: now,
        bytes: 0,
        usage: None,
        cancel_requested: None,
        timed_out: None,
        permissions: BTreeMap::new(),
        confirmed: PartsMark::default(),
        checkpointing: None,
        dirty: false,
        ending: false,
        from_item,
        orphaned: None,
        tokens: None,
        compactions: BTreeMap::new(),
        superseded: false,
    });
    Metrics::inc(&state.ctx.metrics.turns_running);
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
    match ensure_agent(state, for_shared).await {
        Ok(agent) => {
            let span = state
                .turn
                .as_ref()
                .map_or_else(tracing::Span::none, |t| t.span.clone());
            let _ = agent.cast(AgentSessionMsg::Prompt {
                turn: running.turn,
                text: prompt.text,
                picks: super::settings::picks(state),
                attachments: prompt.attachments,
                span,
                asked: prompt.asked,
            });
            if cancel_early {
                request_cancel(state);
            }
        }
        Err(message) => fail_turn(state, message),
    }
}

/// Most bytes of transcript a new agent session is given.
pub(super) const PREAMBLE_BYTES_MAX: usize = 32 * 1024;

/// The conversation before `current` (the turn's user message) as a preamble for an
/// agent session that starts new (no snapshot had its session store, or the agent
/// cannot load sessions): the newest messages that fit [`PREAMBLE_BYTES_MAX`]. `None`
/// when there is nothing before it.
pub(super) fn preamble(
    messages: &VecDeque<Message>,
    current: shoal_protocol::MessageId,
) -> Option<String> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let earlier: Vec<&Message> = messages
        .iter()
        .filter(|m| m.id < current && !m.content.is_empty())
        .collect();
    for message in earlier.iter().rev() {
        let who = match message.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let line = format!("{who}: {}\n", message.content);
        if bytes + line.len() > PREAMBLE_BYTES_MAX {
            break;
        }
        bytes += line.len();
        kept.push(line);
    }
    if kept.is_empty() {
        return None;
    }
    // Left out: messages older than the cache holds, and those with content the bound
    // left out (messages without content have nothing to give).
    let not_cached = messages.front().map_or(0, |m| m.id.0.min(current.0));
    let left_out = not_cached + (earlier.len() - kept.len()) as u64;
    kept.reverse();
    let note = if left_out > 0 {
        format!(" ({left_out} older messages left out)")
    } else {
        String::new()
    };
    Some(format!(
        "[This is a new session of an ongoing conversation; the conversation so far{note}:]\n<conversation>\n{}</conversation>\n\n",
        kept.concat()
    ))
}

/// The agent session for the next prompt, started if there is none. An editor's turn
/// (`for_shared`) runs in an agent process started without the workspace's credentials;
/// one that has them is stopped first (and the other way round for the owner's turn),
/// and the new process resumes the session with `session/load` when it can.
async fn ensure_agent(
    state: &mut ConversationState,
    for_shared: bool,
) -> Result<ActorRef<AgentSessionMsg>, String> {
    if let Some(agent) = &state.agent {
        if state.agent_for_shared == for_shared {
            return Ok(agent.clone());
        }
        let agent = agent.clone();
        state.agent = None;
        state.agent_credentials.clear();
        let _ = agent
            .stop_and_wait(
                Some("the next turn needs an agent with other credentials".into()),
                Some(Duration::from_secs(10)),
            )
            .await;
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
    ctx.agents.check_runnable(ctx, &name)?;
    let command = AgentCommand::from(spec);
    let args = AgentSessionArgs {
        ctx: ctx.clone(),
        conversation: state.myself.clone(),
        credits: state.agent_credits.clone(),
        agent_name: name,
        command,
        cwd: ctx.workspace_dir(state.record.workspace),
        home: ctx.agent_home(state.record.workspace, state.record.id),
        resume_session: state.record.agent_session.clone(),
        workspace: state.record.workspace,
        credentials: !for_shared,
    };
    let (agent, _) = Actor::spawn_linked(None, AgentSessionActor, args, state.myself.get_cell())
        .await
        .map_err(|e| format!("cannot start the agent session: {e}"))?;
    state.agent = Some(agent.clone());
    state.agent_for_shared = for_shared;
    Ok(agent)
}

/// Asks the agent to stop the running turn. `true` when a turn is running or about to
/// start (a `Send` not yet committed: it is cancelled as soon as it starts).
pub(super) fn request_cancel(state: &mut ConversationState) -> bool {
    let Some(turn) = state.turn.as_mut() else {
        if state.sends_pending > 0 {
            state.cancel_before_start = true;
            return true;
        }
        return false;
    };
    if turn.cancel_requested.is_none() && !turn.ending {
        turn.cancel_requested = Some(Instant::now());
        let turn_id = turn.running.turn;
        if let Some(agent) = &state.agent {
            let _ = agent.cast(AgentSessionMsg::Cancel { turn: turn_id });
        }
    }
    true
}

pub(super) fn respond_permission(
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

pub(super) fn header(turn: &Turn) -> MessageHeader {
    MessageHeader {
        id: turn.message.id,
        turn: turn.running.turn,
        created_at_ms: turn.message.created_at_ms,
    }
}

/// Submits what streamed since the last confirmed checkpoint, unless one is in flight
/// (at most one at a time: the next one starts from what that one confirms).
pub(super) fn checkpoint(state: &mut ConversationState) {
    let Some(turn) = state
        .turn
        .as_mut()
        .filter(|t| t.dirty && !t.ending && t.checkpointing.is_none())
    else {
        return;
    };
    let delta = PartsDelta::since(&turn.message.parts, turn.confirmed);
    turn.checkpointing = Some(PartsMark::end_of(&turn.message.parts));
    turn.dirty = false;
    let cmd = ShardCommand::AppendParts {
        conversation: state.record.id,
        message: header(turn),
        delta,
    };
    let commit = Commit::Checkpoint {
        turn: turn.running.turn,
    };
    if let Some(bytes) = submit(state, cmd, commit) {
        let metrics = &state.ctx.metrics;
        Metrics::inc(&metrics.checkpoints);
        Metrics::add(&metrics.checkpoint_bytes, bytes as u64);
    }
}

pub(super) fn on_checkpoint_committed(
    state: &mut ConversationState,
    turn_id: TurnId,
    result: Result<Outcome, ProposeError>,
) {
    let id = state.record.id;
    let Some(turn) = state.turn.as_mut().filter(|t| t.running.turn == turn_id) else {
        return;
    };
    let mark = turn.checkpointing.take();
    match result {
        Ok(_) => {
            if let Some(mark) = mark {
                turn.confirmed = mark;
            }
        }
        Err(e) => {
            // Whether it applied is unknown: the next delta starts from the last mark
            // known stored, which is right either way.
            tracing::warn!(conversation = %id, error = %e, "checkpoint failed; will retry");
            turn.dirty = true;
        }
    }
}

/// Ends the running turn: submits the parts not yet confirmed stored with the final
/// status. Agent output and timers no longer touch the turn; `Done` goes out when the
/// end is committed ([`on_end_committed`]).
pub(super) fn finish_turn(
    state: &mut ConversationState,
    status: MessageStatus,
    reason: StopReason,
    error: Option<String>,
) {
    let Some(turn) = state.turn.as_mut().filter(|t| !t.ending) else {
        return;
    };
    turn.ending = true;
    let mut message = turn.message.clone();
    message.status = status;
    message.stop_reason = Some(reason.clone());
    message.error = error.clone();
    message.content = content_from_parts(&message.parts);
    let cmd = ShardCommand::EndTurn {
        conversation: state.record.id,
        message: header(turn),
        delta: Some(PartsDelta::since(&turn.message.parts, turn.confirmed)),
        status,
        stop_reason: Some(reason),
        error,
    };
    let turn_id = turn.running.turn;
    let commit = Commit::End {
        turn: turn_id,
        message,
        usage: turn.usage.clone(),
    };
    if state.agent.is_none() {
        // No agent ran in this activation: the tree did not change through us.
        submit(state, cmd, commit);
        return;
    }
    // Snapshot the workspace before the end is committed, so `Done` means the turn's
    // files are on the shard's replicas: a failover after it loses none of them.
    let ctx = state.ctx.clone();
    let me = state.myself.clone();
    let workspace = state.record.workspace;
    tokio::spawn(async move {
        let saved = crate::workspace::snapshot(&ctx, workspace).await;
        let _ = me.cast(ConversationMsg::WorkspaceSaved {
            turn: turn_id,
            saved,
            end: Box::new((cmd, commit)),
        });
    });
}

/// The workspace snapshot at the end of `turn_id` is done: the owner hears of a
/// snapshot that was not taken (the previous one stays), then the end is committed.
pub(super) fn on_workspace_saved(
    state: &mut ConversationState,
    turn_id: TurnId,
    saved: Result<Saved, WorkspaceError>,
    cmd: ShardCommand,
    commit: Commit,
) {
    if state
        .turn
        .as_ref()
        .is_none_or(|t| t.running.turn != turn_id)
    {
        return;
    }
    let warning = match saved {
        Ok(Saved::Committed { skipped, .. }) if !skipped.is_empty() => Some(format!(
            "the workspace snapshot left out {} entries: {}",
            skipped.len(),
            skipped
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Ok(_) => None,
        // The end's commit fails the same way and says so.
        Err(WorkspaceError::NotHosted(_)) => None,
        Err(e) => {
            tracing::warn!(conversation = %state.record.id, error = %e, "workspace snapshot failed");
            Some(e.to_string())
        }
    };
    if let Some(message) = warning {
        emit(state, Event::AgentWarning { message });
    }
    // Ahead of the end in the shard's log: when `Done` goes out, the usage is applied.
    let (tokens, usage) = state
        .turn
        .as_ref()
        .map_or((None, None), |t| (t.tokens, t.usage.clone()));
    record_usage(state, turn_id, tokens, usage.as_ref());
    submit(state, cmd, commit);
}

pub(super) fn on_end_committed(
    state: &mut ConversationState,
    turn_id: TurnId,
    message: Message,
    usage: Option<Usage>,
    result: Result<Outcome, ProposeError>,
) {
    if state
        .turn
        .as_ref()
        .is_none_or(|t| t.running.turn != turn_id)
    {
        return;
    }
    match result {
        Ok(Outcome::TurnEnded(stored)) => {
            if *stored != message {
                tracing::warn!(conversation = %state.record.id, turn = %turn_id, "the stored end of the turn differs from the streamed one; showing the stored one");
            }
            turn_ended(state, *stored, usage);
        }
        Ok(other) => {
            let err = format!("unexpected outcome {other:?}");
            end_uncertain(state, internal(&state.ctx, "end a turn", err));
        }
        Err(e) => {
            let err = propose_error(&state.ctx, "commit the end of a turn", e);
            end_uncertain(state, err);
        }
    }
}

/// The end of the turn is committed as `message`: everyone gets `Done`.
pub(super) fn turn_ended(state: &mut ConversationState, message: Message, usage: Option<Usage>) {
    state.record.running_turn = None;
    state.record.message_count = message.id.0 + 1;
    push_message(&mut state.messages, message.clone());
    // Emitted while the turn is still set, so the initiator gets Done with usage and
    // followers get it without.
    let status = status_name(message.status);
    emit(state, Event::Done { message, usage });
    if let Some(turn) = state.turn.take() {
        record_end(&turn.span, status);
        let histograms = state.ctx.metrics.histograms();
        histograms
            .turn_seconds
            .observe_duration(turn.started.elapsed());
    }
    Metrics::dec(&state.ctx.metrics.turns_running);
    state.last_activity = Instant::now();
    queue::maybe_start_next(state);
}

/// Records what the turn used ([`ShardCommand::RecordUsage`]): the agent's token counts
/// and its session's running cost (in millionths) when it reported them — every turn
/// counts, a turn it reported nothing for with zero tokens and no cost.
fn record_usage(
    state: &mut ConversationState,
    turn: TurnId,
    tokens: Option<crate::agent_process::TokenCounts>,
    usage: Option<&Usage>,
) {
    // A NaN or negative cost counts as zero (the cast saturates).
    let session_cost = usage.and_then(|u| {
        u.cost.map(|c| {
            (
                (c * 1e6).round() as u64,
                u.currency.clone().unwrap_or_default(),
            )
        })
    });
    let cmd = ShardCommand::RecordUsage {
        conversation: state.record.id,
        owner: state.record.owner.clone(),
        turn,
        workspace: state.record.workspace,
        agent: state.record.agent.clone(),
        at_ms: state.ctx.now_ms(),
        tokens,
        session: state.record.agent_session.clone(),
        session_cost,
        credentials: state.agent_credentials.clone(),
    };
    submit(state, cmd, Commit::Usage);
}

/// Whether the end was applied is unknown (a lost lease, a timeout): announcing a `Done`
/// could show followers a message the store never gets. End this activation instead; the
/// next one finds the turn either finished or still running, and then saves it as
/// interrupted from its last checkpoint.
fn end_uncertain(state: &mut ConversationState, err: WireError) {
    if let Some(sink) = state.turn.as_ref().and_then(|t| t.initiator.as_ref()) {
        sink.deliver(ServerFrame::Error(err));
    }
    state.ring.close(&ServerFrame::Resync {
        reason: "the end of the turn could not be committed here; follow again".into(),
    });
    if let Some(turn) = state.turn.take() {
        record_end(&turn.span, "uncertain");
    }
    Metrics::dec(&state.ctx.metrics.turns_running);
    state.defunct = Some("the end of a turn could not be committed".into());
}

/// Ends the running turn as interrupted, telling everyone why.
pub(super) fn fail_turn(state: &mut ConversationState, message: String) {
    if state.turn.as_ref().is_none_or(|t| t.ending) {
        return;
    }
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
    );
}

pub(super) fn on_tick(myself: &ActorRef<ConversationMsg>, state: &mut ConversationState) {
    end_if_moved(state);
    checkpoint(state);
    queue::on_tick(state);
    let conversation = &state.ctx.config.conversation;
    let turn_timeout = Duration::from_millis(conversation.turn_timeout_ms.get());
    let idle_timeout = Duration::from_millis(conversation.turn_idle_timeout_ms.get());
    let permission_timeout = Duration::from_millis(conversation.permission_timeout_ms.get());
    let passivate_after = Duration::from_millis(conversation.idle_passivate_ms.get());
    if let Some(turn) = state.turn.as_mut() {
        if turn.ending {
            return;
        }
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
        let cancel_grace = Duration::from_millis(CANCEL_GRACE_MS);
        if turn.started.elapsed() >= turn_timeout && turn.timed_out.is_none() {
            // Asked to stop first, like a cancel: an agent that ends its turn keeps its
            // process (and session); one that does not is killed after the grace period.
            turn.timed_out = Some(format!(
                "the turn ran longer than {} ms (conversation.turn_timeout_ms) and was cancelled",
                turn_timeout.as_millis()
            ));
            request_cancel(state);
            return;
        }
        // After a cancel the grace period decides, not the idle timeout.
        let failure = if let Some(at) = turn.cancel_requested {
            (at.elapsed() >= cancel_grace).then(|| match &turn.timed_out {
                Some(_) => format!(
                    "the turn ran longer than {} ms (conversation.turn_timeout_ms); the agent did not stop within {CANCEL_GRACE_MS} ms of session/cancel and was killed",
                    turn_timeout.as_millis()
                ),
                None => format!(
                    "the agent did not stop within {CANCEL_GRACE_MS} ms of the cancel; it was restarted"
                ),
            })
        } else if turn.permissions.is_empty() && turn.last_activity.elapsed() >= idle_timeout {
            Some(format!(
                "the agent sent nothing for {} ms (conversation.turn_idle_timeout_ms); it was restarted",
                idle_timeout.as_millis()
            ))
        } else {
            None
        };
        if let Some(message) = failure {
            let cancelled = turn.cancel_requested.is_some() && turn.timed_out.is_none();
            if let Some(agent) = &state.agent {
                let _ = agent.cast(AgentSessionMsg::Restart);
            }
            if cancelled {
                finish_turn(
                    state,
                    MessageStatus::Cancelled,
                    StopReason::Cancelled,
                    Some(message),
                );
            } else {
                fail_turn(state, message);
            }
        }
        return;
    }
    state.followers.retain(|f| !f.is_gone());
    let idle = state.sends_pending == 0 && state.commits_in_flight == 0;
    if idle && state.followers.is_empty() && state.last_activity.elapsed() >= passivate_after {
        tracing::debug!(conversation = %state.record.id, "passivating idle conversation");
        myself.stop(Some("idle".into()));
    }
}
