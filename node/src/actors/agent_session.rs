//! The agent-session actor: owns one ACP agent process for one conversation.
//!
//! The process is started on the first prompt and kept warm between turns (cold starts
//! take seconds). Updates and the end of each prompt go to the conversation actor in
//! order through one forwarder task: the end of a turn is forwarded only after every
//! update received before it, plus a short quiet period for agents that send updates
//! after their prompt response (ACP.md pitfall 1).
//!
//! If the process exits, the running prompt ends with an error and the next prompt
//! starts a new process that resumes the agent's session (`session/load`) when it can.
//!
//! Before each prompt the conversation's mode and model picks are applied to the
//! process's session when it does not have them yet ([`settings`]): so after a restart
//! or a move, the new process gets them again.
//!
//! A process holds one of the node's agent slots ([`crate::agent_slots`]) from before it
//! starts until it is gone; between turns it is idle, and at the node's cap the least
//! recently used idle one is asked to stop ([`AgentSessionMsg::StopIdle`]).

mod mcp;
mod settings;
pub use settings::{Picks, SETTING_CALL_TIMEOUT_MS};

use super::conversation::{AgentEvent, AgentFailure, ConversationMsg};
use crate::agent_process::{
    AgentCommand, AgentError, AgentProcess, AgentUpdate, PromptAnswer, StartOptions,
};
use crate::context::{Metrics, NodeContext};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shoal_protocol::TurnId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Agent updates buffered between the process and the forwarder.
const AGENT_UPDATES_QUEUE_DEPTH: usize = 1024;
/// After a prompt's response, forward late updates until this long passes without one.
const LATE_UPDATE_QUIET_MS: u64 = 50;
/// Upper bound on the late-update window.
const LATE_UPDATE_WINDOW_MAX_MS: u64 = 500;

/// How long a new session's first prompt waits for the conversation's preamble.
const PREAMBLE_CALL_TIMEOUT_MS: u64 = 5_000;

/// Messages of [`AgentSessionActor`].
#[derive(Debug)]
pub enum AgentSessionMsg {
    /// Run a prompt for `turn` (starting the process first if needed), after applying
    /// the conversation's mode and model picks the process does not have yet.
    Prompt {
        /// The turn.
        turn: TurnId,
        /// The prompt text.
        text: String,
        /// The owner's mode and model picks.
        picks: Picks,
        /// Images and files for this prompt.
        attachments: Vec<shoal_protocol::attachments::Attachment>,
        /// The turn's span: the process start and the agent calls for the prompt are
        /// its children.
        span: tracing::Span,
        /// When the turn was asked for: its message reached the conversation, or its
        /// queued message's start was submitted (`shoal_turn_start_seconds`).
        asked: std::time::Instant,
    },
    /// Ask the agent to cancel `turn` (`session/cancel`).
    Cancel {
        /// The turn.
        turn: TurnId,
    },
    /// Answer a permission request.
    RespondPermission {
        /// The request id from the update.
        request: u64,
        /// The option chosen; `None` cancels.
        option_id: Option<String>,
    },
    /// Stop the process now (it hung); the next prompt starts a new one.
    Restart,
    /// Timer: stop the process after `workspace.idle_stop_ms` without a prompt.
    IdleTick,
    /// The node's agent cap was reached: stop the process if it is still idle.
    StopIdle,
    /// The prompt of process `generation` answered (sent by the prompt task).
    PromptDone {
        /// Process generation that ran it.
        generation: u64,
    },
    /// The process exited (sent by the exit watcher).
    Exited {
        /// Process generation that exited.
        generation: u64,
        /// How it exited.
        status: String,
    },
}

/// Startup arguments.
#[derive(Debug)]
pub struct AgentSessionArgs {
    /// Node context.
    pub ctx: Arc<NodeContext>,
    /// The conversation actor to report to.
    pub conversation: ActorRef<ConversationMsg>,
    /// Room in the conversation's agent-event queue: the forwarder takes one permit per
    /// event it sends and waits when there is none (backpressure down to the agent).
    pub credits: Arc<tokio::sync::Semaphore>,
    /// Agent name (for messages).
    pub agent_name: String,
    /// How to start the agent.
    pub command: AgentCommand,
    /// Workspace directory (cwd).
    pub cwd: PathBuf,
    /// Private home directory.
    pub home: PathBuf,
    /// The agent session to resume, if one was recorded.
    pub resume_session: Option<String>,
    /// The workspace the agent works in: its shard's lease gates the agent (see
    /// [`crate::fence`]), and its tree is restored from its last snapshot before the
    /// agent starts ([`crate::workspace::prepare`]).
    pub workspace: shoal_protocol::WorkspaceId,
    /// Inject the workspace's credentials into the agent's environment (not for an
    /// editor's turn: a shared caller never runs with the owner's credentials).
    pub credentials: bool,
}

enum Control {
    /// A prompt for this turn is about to be sent: updates already queued (such as a
    /// `session/load` history replay) belong to no turn. Acknowledged once applied, so
    /// the prompt is sent only after the forwarder has switched turns.
    Start(TurnId, tokio::sync::oneshot::Sender<()>),
    End(TurnId, Result<PromptAnswer, AgentFailure>),
}

/// State of [`AgentSessionActor`].
pub struct AgentSessionState {
    args: AgentSessionArgs,
    process: Option<Arc<AgentProcess>>,
    generation: u64,
    updates_tx: mpsc::Sender<AgentUpdate>,
    control_tx: mpsc::UnboundedSender<Control>,
    forwarder: tokio::task::JoinHandle<()>,
    prompt_task: Option<tokio::task::JoinHandle<()>>,
    /// The node slot the process holds; `Some` exactly while `process` is.
    slot: Option<crate::agent_slots::SlotGuard>,
    /// The process runs a new session that has not had a prompt yet: its first prompt
    /// carries the conversation so far.
    fresh_session: bool,
    /// Counts the process in its workspace's running agents; `Some` exactly while
    /// `process` is.
    in_workspace: Option<crate::workspace::AgentInWorkspace>,
    /// Since when the process has had no prompt running (`None`: one runs).
    idle_since: Option<tokio::time::Instant>,
    /// The picks tried on the current process (reset when a new one starts, so they are
    /// applied again after a restart or a move).
    applied: Picks,
    /// What the current process's session offers, as Shoal last learned it.
    offer: Option<shoal_protocol::settings::SessionOffer>,
}

/// Asks an agent-session actor to stop its idle process ([`crate::agent_slots::Evictor`]).
#[derive(Debug)]
struct StopIdle(ActorRef<AgentSessionMsg>);

impl crate::agent_slots::Evictor for StopIdle {
    fn stop_idle(&self) {
        let _ = self.0.cast(AgentSessionMsg::StopIdle);
    }
}

/// The actor. See the module doc.
#[derive(Debug, Default)]
pub struct AgentSessionActor;

impl Actor for AgentSessionActor {
    type Msg = AgentSessionMsg;
    type State = AgentSessionState;
    type Arguments = AgentSessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: AgentSessionArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if let Some(idle_stop) = args.ctx.config.workspace.idle_stop() {
            let period = (idle_stop / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
            myself.send_interval(period, || AgentSessionMsg::IdleTick);
        }
        let (updates_tx, updates_rx) = mpsc::channel(AGENT_UPDATES_QUEUE_DEPTH);
        // Unbounded is safe: at most two control messages per prompt, and one prompt runs at a time.
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward(
            args.conversation.clone(),
            args.credits.clone(),
            updates_rx,
            control_rx,
            args.ctx.metrics.clone(),
        ));
        Ok(AgentSessionState {
            args,
            process: None,
            generation: 0,
            updates_tx,
            control_tx,
            forwarder,
            prompt_task: None,
            slot: None,
            fresh_session: false,
            in_workspace: None,
            idle_since: None,
            applied: Picks::default(),
            offer: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(task) = state.prompt_task.take() {
            task.abort();
        }
        stop_process(state).await;
        state.forwarder.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentSessionMsg::Prompt {
                turn,
                text,
                picks,
                attachments,
                span,
                asked,
            } => {
                let prompt = Prompt {
                    turn,
                    text,
                    picks,
                    attachments,
                    asked,
                };
                let run = run_prompt(&myself, state, prompt, span.clone());
                tracing::Instrument::instrument(run, span).await;
            }
            AgentSessionMsg::Cancel { turn } => {
                if let Some(process) = &state.process {
                    tracing::info!(%turn, "cancelling agent prompt");
                    process.cancel().await;
                }
            }
            AgentSessionMsg::RespondPermission { request, option_id } => {
                if let Some(process) = &state.process
                    && let Err(e) = process.respond_permission(request, option_id)
                {
                    tracing::warn!(request, error = %e, "permission answer not delivered");
                }
            }
            AgentSessionMsg::Restart => {
                if let Some(task) = state.prompt_task.take() {
                    task.abort();
                }
                stop_process(state).await;
            }
            AgentSessionMsg::IdleTick => {
                let ctx = state.args.ctx.clone();
                let idle = ctx.config.workspace.idle_stop().is_some_and(|limit| {
                    state
                        .idle_since
                        .is_some_and(|since| since.elapsed() >= limit)
                });
                if idle && state.slot.as_ref().is_some_and(|s| s.confirm_stop()) {
                    // Files the agent changed after its turn ended go into the snapshot.
                    if let Err(e) = crate::workspace::snapshot(&ctx, state.args.workspace).await {
                        tracing::warn!(agent = %state.args.agent_name, error = %e, "workspace not snapshotted before the idle stop");
                    }
                    tracing::info!(agent = %state.args.agent_name, "stopping the agent process: no prompt for workspace.idle_stop_ms");
                    stop_process(state).await;
                }
            }
            AgentSessionMsg::StopIdle => {
                if state.slot.as_ref().is_some_and(|s| s.confirm_stop()) {
                    tracing::info!(agent = %state.args.agent_name, "stopping the idle agent process to make room (limits.agent_processes_max)");
                    stop_process(state).await;
                }
            }
            AgentSessionMsg::PromptDone { generation } => {
                if generation == state.generation
                    && let Some(slot) = &state.slot
                {
                    slot.end_turn();
                    state.idle_since = Some(tokio::time::Instant::now());
                }
            }
            AgentSessionMsg::Exited { generation, status } => {
                if generation == state.generation && state.process.is_some() {
                    tracing::warn!(agent = %state.args.agent_name, %status, "agent process exited");
                    state.process = None;
                    state.slot = None;
                    state.in_workspace = None;
                    Metrics::dec(&state.args.ctx.metrics.agent_processes);
                }
            }
        }
        Ok(())
    }
}

/// A prompt for the agent session ([`AgentSessionMsg::Prompt`]).
struct Prompt {
    turn: TurnId,
    text: String,
    picks: Picks,
    attachments: Vec<shoal_protocol::attachments::Attachment>,
    asked: std::time::Instant,
}

/// Runs `prompt`: starts the process if there is none, applies the picks, and sends
/// `session/prompt` from a task of its own (inside `span`, the turn's).
async fn run_prompt(
    myself: &ActorRef<AgentSessionMsg>,
    state: &mut AgentSessionState,
    prompt: Prompt,
    span: tracing::Span,
) {
    let Prompt {
        turn,
        text,
        picks,
        attachments,
        asked,
    } = prompt;
    let process = ensure_process(myself, state, turn).await;
    // Only a new session's first prompt carries the conversation so far; it
    // is asked for then, not built for every turn.
    let preamble = if std::mem::take(&mut state.fresh_session) {
        let ask = state.args.conversation.call(
            |reply| ConversationMsg::Preamble { turn, reply },
            Some(Duration::from_millis(PREAMBLE_CALL_TIMEOUT_MS)),
        );
        match ask.await {
            Ok(ractor::rpc::CallResult::Success(preamble)) => preamble,
            _ => None,
        }
    } else {
        None
    };
    let context = match preamble {
        Some(preamble) => {
            let _ = state.args.conversation.cast(ConversationMsg::Agent {
                turn,
                event: AgentEvent::Status(
                    "the agent started a new session; it was given the conversation so far"
                        .to_owned(),
                ),
                credit: None,
            });
            Some(preamble)
        }
        None => None,
    };
    let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
    let _ = state.control_tx.send(Control::Start(turn, ack_tx));
    let _ = ack_rx.await;
    let process = match process {
        Ok(process) => process,
        Err(failure) => {
            let _ = state.control_tx.send(Control::End(turn, Err(failure)));
            return;
        }
    };
    // Handed to the agent (the forwarder times its first update from `Start`).
    let histograms = state.args.ctx.metrics.histograms();
    histograms
        .turn_start_seconds
        .observe_duration(asked.elapsed());
    settings::apply_picks(state, &process, &picks, turn).await;
    if let Some(slot) = &state.slot {
        slot.begin_turn();
    }
    state.idle_since = None;
    let control = state.control_tx.clone();
    let me = myself.clone();
    let generation = state.generation;
    let task = async move {
        let result = process
            .prompt_with(context, text, &attachments)
            .await
            .map_err(|e| AgentFailure::of(e.to_string(), &e));
        let _ = control.send(Control::End(turn, result));
        let _ = me.cast(AgentSessionMsg::PromptDone { generation });
    };
    state.prompt_task = Some(tokio::spawn(tracing::Instrument::instrument(task, span)));
}

async fn stop_process(state: &mut AgentSessionState) {
    if let Some(process) = state.process.take() {
        process.shutdown().await;
        Metrics::dec(&state.args.ctx.metrics.agent_processes);
    }
    // The slot frees only once the process is gone.
    state.slot = None;
    state.in_workspace = None;
}

/// The running process, started (inside an `agent.start` span) if there is none.
async fn ensure_process(
    myself: &ActorRef<AgentSessionMsg>,
    state: &mut AgentSessionState,
    turn: TurnId,
) -> Result<Arc<AgentProcess>, AgentFailure> {
    if let Some(process) = &state.process {
        return Ok(process.clone());
    }
    let args = &state.args;
    let span = tracing::info_span!(
        "agent.start",
        agent = args.agent_name.as_str(),
        workspace = %args.workspace,
        resume = args.resume_session.is_some(),
        pid = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let started = start_process(myself, state, turn);
    let started = tracing::Instrument::instrument(started, span.clone()).await;
    match &started {
        Ok(process) => {
            if let Some(pid) = process.pid() {
                span.record("pid", pid);
            }
            span.record("outcome", "started");
        }
        Err(_) => {
            span.record("outcome", "failed");
        }
    }
    started
}

/// Starts the agent process: a node slot, the workspace restored, the home and
/// credentials prepared, then the process and its ACP handshake.
async fn start_process(
    myself: &ActorRef<AgentSessionMsg>,
    state: &mut AgentSessionState,
    turn: TurnId,
) -> Result<Arc<AgentProcess>, AgentFailure> {
    let args = &state.args;
    let ctx = &args.ctx;
    let start_timeout = Duration::from_millis(ctx.config.conversation.agent_start_timeout_ms.get());
    // Taken before the process starts and held until it is gone: the cap holds however
    // many start at once. Dropped below if the start fails.
    // Named for logs: the agent and its conversation's home (`c-<shard>-<id>`).
    let owner = format!(
        "{} ({})",
        args.agent_name,
        args.home
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let slot = ctx
        .agent_slots
        .acquire(
            &owner,
            Arc::new(StopIdle(myself.clone())),
            tokio::time::Instant::now() + start_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    let _ = args.conversation.cast(ConversationMsg::Agent {
        turn,
        event: AgentEvent::Status(format!("starting agent `{}`", args.agent_name)),
        credit: None,
    });
    match crate::workspace::prepare(ctx, args.workspace).await {
        Ok(crate::workspace::Prepared::Restored { seq, restored, .. }) => {
            let _ = args.conversation.cast(ConversationMsg::Agent {
                turn,
                event: AgentEvent::Status(format!(
                    "workspace restored from snapshot {seq} ({} files written, {} removed)",
                    restored.written, restored.removed
                )),
                credit: None,
            });
        }
        Ok(_) => {}
        Err(e) => return Err(e.to_string().into()),
    }
    for dir in [&args.cwd, &args.home] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // The attached skill packs' files, in the tree and this agent's home.
    let mut warnings = match crate::workspace::sync_packs_for_agent(ctx, args.workspace).await {
        Ok(synced) => synced.warnings,
        Err(e) => vec![format!("skill pack files not written: {e}")],
    };
    // The agent's home template (`[agents.<id>.home]`).
    let home = crate::workspace::home_template::materialize(ctx, &args.agent_name, &args.home);
    warnings.extend(home.await.map_err(|e| e.to_string())?);
    for warning in warnings {
        let _ = args.conversation.cast(ConversationMsg::Agent {
            turn,
            event: AgentEvent::Warning(warning),
            credit: None,
        });
    }
    let (mut extra_env, left_out) = if args.credentials {
        crate::security::credentials::agent_env(ctx, args.workspace)
    } else {
        Default::default()
    };
    for warning in left_out {
        let _ = args.conversation.cast(ConversationMsg::Agent {
            turn,
            event: AgentEvent::Warning(warning),
            credit: None,
        });
    }
    let (mcp_servers, mcp_warnings) =
        mcp::servers(ctx, &args.agent_name, args.workspace, args.credentials);
    for warning in mcp_warnings {
        let _ = args.conversation.cast(ConversationMsg::Agent {
            turn,
            event: AgentEvent::Warning(warning),
            credit: None,
        });
    }
    // For usage per credential: which of the workspace's credentials this process has.
    let credentials: Vec<String> = extra_env.keys().cloned().collect();
    // After the credentials: reserved names are never injected, and this one is Shoal's.
    extra_env.insert("SHOAL_NODE_ID".to_owned(), ctx.node_id().to_owned());
    let opts = StartOptions {
        cwd: args.cwd.clone(),
        home: args.home.clone(),
        resume_session: args.resume_session.clone(),
        start_timeout,
        extra_env,
        confine_to: (ctx.config.sandbox.isolation == shoal_cluster_config::Isolation::Bwrap)
            .then(|| ctx.workspace_root(args.workspace)),
        mcp_servers,
    };
    if ctx.fence.is_fenced(args.workspace.shard) {
        return Err(format!(
            "this node does not host shard {} now (no leader lease); retry",
            args.workspace.shard
        )
        .into());
    }
    // Whether the process runs the recorded session (`session/load` succeeded).
    let mut resumed = opts.resume_session.is_some();
    let start = async {
        match AgentProcess::start_with(
            &args.command,
            opts.clone(),
            state.updates_tx.clone(),
            ctx.seams.agent_launcher.as_ref(),
        )
        .await
        {
            Ok(process) => Ok(process),
            // The agent lost (or never had) the recorded session: start a fresh one rather
            // than failing every later turn.
            Err(AgentError::Rpc { code, message }) if opts.resume_session.is_some() => {
                resumed = false;
                tracing::warn!(agent = %args.agent_name, code, %message, "cannot resume the agent session; starting a new one");
                let _ = args.conversation.cast(ConversationMsg::Agent {
                    turn,
                    event: AgentEvent::Status(
                        "the agent could not resume its session; started a new one".to_owned(),
                    ),
                    credit: None,
                });
                let opts = StartOptions {
                    resume_session: None,
                    ..opts.clone()
                };
                AgentProcess::start_with(
                    &args.command,
                    opts,
                    state.updates_tx.clone(),
                    ctx.seams.agent_launcher.as_ref(),
                )
                .await
            }
            Err(e) => Err(e),
        }
    };
    // Losing the lease while the agent starts drops the start, which SIGKILLs the
    // half-started process group.
    let process = tokio::select! {
        result = start => result
            .map_err(|e| {
                let message = match e {
                    AgentError::AuthRequired { .. } => e.describe(&args.agent_name),
                    _ => format!("agent `{}` failed to start: {e}", args.agent_name),
                };
                AgentFailure::of(message, &e)
            })?,
        () = ctx.fence.fenced(args.workspace.shard) => {
            return Err(format!("shard {} moved to another node while the agent started; retry", args.workspace.shard).into());
        }
    };
    let process = Arc::new(process);
    if !ctx.fence.register(args.workspace.shard, &process) {
        return Err(format!(
            "shard {} moved to another node while the agent started; retry",
            args.workspace.shard
        )
        .into());
    }
    Metrics::inc(&ctx.metrics.agent_processes);
    state.slot = Some(slot);
    state.in_workspace = Some(ctx.sandboxes.agent_running(args.workspace));
    state.idle_since = Some(tokio::time::Instant::now());
    state.generation += 1;
    state.fresh_session = !resumed;
    state.args.resume_session = Some(process.session_id().to_owned());
    state.applied = Picks::default();
    state.offer = process.offer().cloned();
    for name in process.mcp_left_out() {
        let _ = state.args.conversation.cast(ConversationMsg::Agent {
            turn,
            event: AgentEvent::Warning(format!(
                "MCP server `{name}` left out: agent `{}` does not advertise mcpCapabilities.http, so it cannot use HTTP MCP servers",
                state.args.agent_name
            )),
            credit: None,
        });
    }
    let _ = state.args.conversation.cast(ConversationMsg::Agent {
        turn,
        event: AgentEvent::SessionStarted {
            session: process.session_id().to_owned(),
            credentials,
            offer: state.offer.clone(),
        },
        credit: None,
    });
    let watcher = process.clone();
    let generation = state.generation;
    let me = myself.clone();
    tokio::spawn(async move {
        let status = watcher.exited().await;
        let _ = me.cast(AgentSessionMsg::Exited { generation, status });
    });
    state.process = Some(process.clone());
    Ok(process)
}

/// Forwards updates tagged with the current turn, and each turn's end after its updates.
/// Each event waits for a credit first, so at most [`super::conversation::AGENT_EVENTS_QUEUED_MAX`]
/// sit in the conversation's mailbox; while it waits, the bounded update queue fills and
/// the agent process's own writes block. Times each turn's first update from its `Start`
/// (`shoal_agent_first_update_seconds`).
async fn forward(
    conversation: ActorRef<ConversationMsg>,
    credits: Arc<tokio::sync::Semaphore>,
    mut updates: mpsc::Receiver<AgentUpdate>,
    mut control: mpsc::UnboundedReceiver<Control>,
    metrics: Arc<Metrics>,
) {
    // Turn 0 never exists: updates tagged with it are dropped by the conversation.
    let mut current = TurnId(0);
    // When the current turn's prompt was handed over, until its first update.
    let mut handed: Option<std::time::Instant> = None;
    let first_update = |handed: &mut Option<std::time::Instant>| {
        if let Some(at) = handed.take() {
            metrics
                .histograms()
                .agent_first_update_seconds
                .observe_duration(at.elapsed());
        }
    };
    let send = async |turn: TurnId, event: AgentEvent| {
        // Closed only when the conversation stops.
        let Ok(credit) = credits.clone().acquire_owned().await else {
            return false;
        };
        conversation
            .cast(ConversationMsg::Agent {
                turn,
                event,
                credit: Some(credit),
            })
            .is_ok()
    };
    loop {
        tokio::select! {
            // Control first: a turn's Start is queued before its prompt is sent, so it is
            // always seen before that prompt's first update.
            biased;
            ctl = control.recv() => match ctl {
                None => return,
                Some(Control::Start(turn, ack)) => {
                    while let Ok(update) = updates.try_recv() {
                        if !send(TurnId(0), AgentEvent::Update(update)).await { return; }
                    }
                    current = turn;
                    handed = Some(std::time::Instant::now());
                    let _ = ack.send(());
                }
                Some(Control::End(turn, result)) => {
                    let window = tokio::time::Instant::now() + Duration::from_millis(LATE_UPDATE_WINDOW_MAX_MS);
                    loop {
                        let quiet = tokio::time::sleep(Duration::from_millis(LATE_UPDATE_QUIET_MS));
                        tokio::select! {
                            biased;
                            Some(update) = updates.recv() => {
                                first_update(&mut handed);
                                if !send(current, AgentEvent::Update(update)).await { return; }
                                if tokio::time::Instant::now() >= window { break; }
                            }
                            () = quiet => break,
                        }
                    }
                    if let Ok(PromptAnswer { tokens: Some(tokens), .. }) = &result
                        && !send(turn, AgentEvent::Update(AgentUpdate::Tokens(*tokens))).await
                    {
                        return;
                    }
                    if !send(turn, AgentEvent::Ended(result.map(|a| a.outcome))).await { return; }
                    // A turn without updates times nothing.
                    handed = None;
                }
            },
            update = updates.recv() => match update {
                None => return,
                Some(update) => {
                    first_update(&mut handed);
                    if !send(current, AgentEvent::Update(update)).await { return; }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ractor::ActorProcessingErr;
    use tokio::sync::OwnedSemaphorePermit;

    /// Stands in for a conversation that does not keep up: it hands every agent event's
    /// credit to the test instead of giving it back.
    struct Stalled;

    impl Actor for Stalled {
        type Msg = ConversationMsg;
        type State = mpsc::UnboundedSender<Option<OwnedSemaphorePermit>>;
        type Arguments = mpsc::UnboundedSender<Option<OwnedSemaphorePermit>>;

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            out: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(out)
        }

        async fn handle(
            &self,
            _myself: ActorRef<Self::Msg>,
            msg: Self::Msg,
            out: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if let ConversationMsg::Agent { credit, .. } = msg {
                let _ = out.send(credit);
            }
            Ok(())
        }
    }

    /// Agent output waits for room in the conversation instead of piling up in its
    /// (unbounded) mailbox: the forwarder stops taking updates when the credits run out,
    /// so the bounded update queue fills and the agent's own writes block.
    #[tokio::test]
    async fn the_forwarder_holds_agent_output_back_while_the_conversation_is_behind() {
        const CREDITS: usize = 3;
        const QUEUE: usize = 16;
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (conversation, handle) = Actor::spawn(None, Stalled, out_tx).await.unwrap();
        let credits = Arc::new(tokio::sync::Semaphore::new(CREDITS));
        let (updates_tx, updates_rx) = mpsc::channel(QUEUE);
        let (_control_tx, control_rx) = mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward(
            conversation.clone(),
            credits.clone(),
            updates_rx,
            control_rx,
            Arc::new(Metrics::default()),
        ));
        for i in 0..10 {
            updates_tx
                .send(AgentUpdate::Text(format!("chunk {i}")))
                .await
                .unwrap();
        }
        let wait = Duration::from_secs(10);
        let mut held = Vec::new();
        for _ in 0..CREDITS {
            let credit = tokio::time::timeout(wait, out_rx.recv())
                .await
                .expect("an event within the credits")
                .unwrap();
            held.push(credit.expect("the forwarder sends a credit with each event"));
        }
        // Every credit is out, held here: the forwarder can only wait.
        assert_eq!(credits.available_permits(), 0);
        // This test runs on one thread: each yield lets every ready task (the forwarder,
        // the actor) run until it waits, so one that sent without a credit would have.
        for _ in 0..CREDITS * 4 {
            tokio::task::yield_now().await;
        }
        assert!(
            out_rx.try_recv().is_err(),
            "an event beyond the credits was sent"
        );
        // It took at most one more update than it could send; the rest wait in the queue.
        let queued = QUEUE - updates_tx.capacity();
        assert!(
            10 - queued <= CREDITS + 1,
            "only {queued} of 10 updates still queued"
        );
        // The conversation catches up: the rest flows.
        drop(held);
        for _ in CREDITS..10 {
            let credit = tokio::time::timeout(wait, out_rx.recv())
                .await
                .expect("the rest once credits come back")
                .unwrap();
            drop(credit);
        }
        forwarder.abort();
        conversation.stop(None);
        let _ = handle.await;
    }
}
