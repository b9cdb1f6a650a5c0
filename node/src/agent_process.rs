//! One live ACP agent child process and one ACP session on it: the client side of
//! the Agent Client Protocol, owned by the node's `AgentSessionActor`.
//!
//! # Layout
//! * this file: the public API ([`AgentProcess`], its options, updates and
//!   errors), start-up and the ACP handshake.
//! * `agent_process/requests.rs`: requests to the agent (each an `agent.call` span),
//!   their answers awaited against the process's exit, and their errors.
//! * `agent_process/handler.rs`: what the agent sends us (updates, permission
//!   requests, file requests) and the state shared with the handler.
//! * `agent_process/child.rs`: the private home and environment, spawning in
//!   a private process group, the stderr ring, exit
//!   watching, signals.
//! * `agent_process/framing.rs`: stdout read as bounded lines (a message missing
//!   its newline is taken after a quiet window), stdin written a flushed line each.
//! * `agent_process/ids.rs`: our requests numbered on the wire, answers matched
//!   back (also when the agent echoes `"1"` for `1`).
//! * `agent_process/wire.rs`: lenient parsing of agent messages and the JSON we
//!   send (no I/O).
//! * `agent_process/mcp.rs`: the MCP servers given to a session, HTTP ones only to
//!   agents that take them (no I/O).
//! * `agent_process/offer.rs`: the modes and models (config options) an agent offers,
//!   and the JSON that picks them (no I/O).
//! * `agent_process/auth.rs`: advertised auth methods, `auth_required` and what
//!   to configure.
//! * `agent_process/redact.rs`: the owner's excerpt of the agent's stderr, bounded
//!   and with credentials redacted.
//! * `agent_process/fs.rs`: `fs/read_text_file` and `fs/write_text_file`,
//!   confined to the workspace.
//! * `agent_process/launch.rs`: spawning the child and connecting ACP to it, before
//!   any request (shared by [`AgentProcess::start`] and [`AgentProcess::probe`]).
//! * `agent_process/probe.rs`: [`AgentProcess::probe`]: start, `initialize`, stop, and
//!   what the agent said about itself ([`ProbeInfo`]).
//!
//! # Tasks
//! ```text
//! AgentProcess ─┬─ connection task: agent-client-protocol `Client.v1()` over `Lines`
//! (owned by the │    └─ dispatch handler (one message at a time, never awaits the agent):
//!  actor)       │         session/update             → updates channel (routed by sessionId)
//!               │         session/request_permission → pending table → respond_permission()
//!               │         fs/read_text_file, fs/write_text_file → workspace files
//!               │         anything else              → JSON-RPC error -32601
//!               └─ child: stdin writer, stderr drain, exit watcher (stdout feeds the connection)
//! ```
//!
//! The updates channel is bounded and filled from the dispatch handler: the owner
//! must keep draining it while awaiting [`AgentProcess::prompt`], or the
//! connection stalls (the prompt's answer is processed after the updates before it).

mod auth;
pub use auth::AuthMethod;
mod child;
pub use child::check_bwrap;
mod framing;
mod fs;
mod handler;
mod ids;
mod launch;
mod mcp;
pub use mcp::{McpServer, McpServerTransport};
mod offer;
mod probe;
mod redact;
mod requests;
mod wire;

use agent_client_protocol::{Agent, Client, Lines, UntypedMessage, v1};
use serde_json::Value;
use shoal_protocol::transcript::{PermissionOption, PlanEntry, StopReason, ToolStatus, Usage};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use handler::Shared;
pub use probe::{ProbeInfo, find_program};

/// The most permission requests waiting for an answer; more are answered
/// `cancelled` at once.
pub const PERMISSION_REQUESTS_PENDING_MAX: usize = 64;
/// The most updates kept while the `session/new` answer is outstanding (their
/// session id is not known yet); more are dropped with a warning.
pub const EARLY_UPDATES_MAX: usize = 256;
/// How long [`AgentProcess::shutdown`] waits for the agent to exit after closing
/// its stdin, in milliseconds.
pub const STDIN_CLOSE_GRACE_MS: u64 = 1_000;
/// How long [`AgentProcess::shutdown`] waits after SIGTERM before SIGKILL, in
/// milliseconds.
pub const TERM_GRACE_MS: u64 = 2_000;
/// How long [`AgentProcess::shutdown`] waits for the exit after SIGKILL, in
/// milliseconds (only a process stuck in the kernel takes longer).
pub const KILL_WAIT_MS: u64 = 2_000;
/// How long a request whose connection broke waits to see the process exit
/// before reporting a protocol error instead, in milliseconds.
pub const EXIT_AFTER_DISCONNECT_MS: u64 = 2_000;
/// The largest file the agent may read through `fs/read_text_file`, in bytes.
pub const READ_FILE_BYTES_MAX: u64 = fs::READ_FILE_BYTES_MAX;
/// The largest content the agent may write through `fs/write_text_file`, in bytes.
pub const WRITE_FILE_BYTES_MAX: usize = fs::WRITE_FILE_BYTES_MAX;
/// How much of the agent's stderr is kept, in bytes (the newest bytes).
pub const STDERR_TAIL_BYTES_MAX: usize = child::STDERR_TAIL_BYTES_MAX;
/// The most of the agent's stderr an error carries for the owner, in bytes.
pub const STDERR_EXCERPT_BYTES_MAX: usize = redact::STDERR_EXCERPT_BYTES_MAX;

/// How to launch an agent (from the node config's `[agents.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCommand {
    /// The executable: a path, or a name looked up in `PATH`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables (the node's environment is inherited; the
    /// private `HOME`/`XDG_*` and [`StartOptions::extra_env`] override these).
    pub env: BTreeMap<String, String>,
}

/// Where and how to start one agent session. `Debug` shows the names of
/// [`Self::extra_env`], never their values (they may be credentials).
#[derive(Clone)]
pub struct StartOptions {
    /// Absolute workspace directory (must exist): the child's working directory,
    /// the `cwd` of `session/new`/`session/load`, and the only place the agent
    /// may read or write through `fs/*`.
    pub cwd: PathBuf,
    /// Absolute private home directory, created if missing: `HOME`, and the
    /// parent of `XDG_CONFIG_HOME=home/.config`, `XDG_DATA_HOME=home/.local/share`,
    /// `XDG_CACHE_HOME=home/.cache` and `XDG_STATE_HOME=home/.local/state`.
    pub home: PathBuf,
    /// The session to resume with `session/load` if the agent advertises
    /// `loadSession`; otherwise (or if `None`) a new session is created.
    pub resume_session: Option<String>,
    /// Bound on spawn + `initialize` + `session/new`|`session/load`.
    pub start_timeout: Duration,
    /// Environment variables set last (`SHOAL_NODE_ID`, the workspace's credentials).
    pub extra_env: BTreeMap<String, String>,
    /// Run the agent under bubblewrap with this directory (its workspace's whole tree,
    /// holding `cwd` and `home`) read-write and nothing else of the node's disk but
    /// system directories read-only (`sandbox.isolation = "bwrap"`). `None`: a plain
    /// child process.
    pub confine_to: Option<PathBuf>,
    /// The MCP servers for the session (`mcpServers` of `session/new` / `session/load`).
    pub mcp_servers: Vec<McpServer>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("cwd", &self.cwd)
            .field("home", &self.home)
            .field("resume_session", &self.resume_session)
            .field("start_timeout", &self.start_timeout)
            .field("extra_env", &self.extra_env.keys().collect::<Vec<_>>())
            .field("confine_to", &self.confine_to)
            .field("mcp_servers", &self.mcp_servers)
            .finish()
    }
}

/// Something the agent reported, sent on the updates channel in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentUpdate {
    /// Answer text (`agent_message_chunk`).
    Text(String),
    /// Reasoning text (`agent_thought_chunk`).
    Reasoning(String),
    /// User text (`user_message_chunk`): replayed history during `session/load`.
    UserText(String),
    /// A tool call was announced (`tool_call`) or updated (`tool_call_update`).
    ToolCall {
        /// The agent's id for the call.
        id: String,
        /// Human-readable title, if sent.
        title: Option<String>,
        /// Kind (`read`, `edit`, `execute`, …), if sent.
        kind: Option<String>,
        /// Status, if sent and known.
        status: Option<ToolStatusRaw>,
        /// `rawInput` as JSON text, if sent.
        input: Option<String>,
        /// The text of the call's content blocks (else `rawOutput` as JSON text).
        output: Option<String>,
        /// `true` for `tool_call_update` (only the fields sent changed).
        is_update: bool,
    },
    /// The agent's whole current plan.
    Plan(Vec<PlanEntry>),
    /// Context usage and cost (`usage_update`).
    Usage(Usage),
    /// The agent asks permission; answer with [`AgentProcess::respond_permission`].
    PermissionRequest {
        /// Our local id for the request.
        request: u64,
        /// What the agent wants to do.
        title: String,
        /// The choices.
        options: Vec<PermissionOption>,
        /// The tool call it is for, if the agent named it.
        tool_call_id: Option<String>,
        /// The tool call's kind (`read`, `execute`, …), if the agent said.
        kind: Option<String>,
    },
    /// The commands the agent offers now (`available_commands_update`).
    Commands(Vec<shoal_protocol::transcript::SlashCommand>),
    /// The session's mode changed (`current_mode_update`, or a `session/set_mode` Shoal
    /// made).
    CurrentMode(String),
    /// The session's config options now (`config_option_update`, or the answer to a
    /// `session/set_config_option` Shoal made).
    ConfigOptions(Vec<shoal_protocol::settings::OfferedSetting>),
    /// Any other update kind (`session_info_update`, …), by name, for logs.
    Other(String),
    /// The turn's token counts, from the `session/prompt` answer's `usage` (sent just
    /// before the turn's end, when the agent reports them).
    Tokens(TokenCounts),
    /// A context compaction started or changed (`compaction_update`).
    Compaction {
        /// The agent's id for it, unique in its session.
        id: String,
        /// `in_progress`, `completed`, `failed`, `cancelled` or another.
        status: String,
        /// The whole summary, when this update replaces it.
        summary: Option<String>,
    },
    /// Text appended to a compaction's summary (`compaction_summary_chunk`).
    CompactionChunk {
        /// The compaction.
        id: String,
        /// The text.
        text: String,
    },
}

/// A turn's token counts as an agent reports them (the `usage` of a `session/prompt`
/// answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCounts {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Thought (reasoning) tokens.
    pub thought: u64,
    /// Input tokens read from a cache.
    pub cached_read: u64,
    /// Input tokens written to a cache.
    pub cached_write: u64,
}

/// What a `session/prompt` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptAnswer {
    /// Why the turn ended.
    pub outcome: PromptOutcome,
    /// The turn's token counts, when reported.
    pub tokens: Option<TokenCounts>,
}

/// A tool call's status as the agent reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolStatusRaw {
    /// Announced, not started.
    Pending,
    /// Running.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
}

impl From<ToolStatusRaw> for ToolStatus {
    fn from(status: ToolStatusRaw) -> Self {
        match status {
            ToolStatusRaw::Pending => ToolStatus::Pending,
            ToolStatusRaw::InProgress => ToolStatus::InProgress,
            ToolStatusRaw::Completed => ToolStatus::Completed,
            ToolStatusRaw::Failed => ToolStatus::Failed,
        }
    }
}

/// Why a prompt turn ended (the `stopReason` of the `session/prompt` answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptOutcome {
    /// `end_turn`: the agent finished.
    EndTurn,
    /// `max_tokens`.
    MaxTokens,
    /// `max_turn_requests`.
    MaxTurnRequests,
    /// `refusal`.
    Refusal,
    /// `cancelled`: the turn stopped after [`AgentProcess::cancel`].
    Cancelled,
    /// Anything else, as sent (real agents send e.g. `"error"`).
    Other(String),
}

impl From<PromptOutcome> for StopReason {
    fn from(outcome: PromptOutcome) -> Self {
        match outcome {
            PromptOutcome::EndTurn => StopReason::EndTurn,
            PromptOutcome::MaxTokens => StopReason::MaxTokens,
            PromptOutcome::MaxTurnRequests => StopReason::MaxTurnRequests,
            PromptOutcome::Refusal => StopReason::Refusal,
            PromptOutcome::Cancelled => StopReason::Cancelled,
            PromptOutcome::Other(reason) => StopReason::Other(reason),
        }
    }
}

/// What went wrong with an agent process or its session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The program could not be started (missing, not executable). Nothing runs.
    #[error(
        "could not start agent program `{program}`: {source}; check `[agents.<name>].command` \
         in the node config (the program must exist and be executable)"
    )]
    Spawn {
        /// The program as configured.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The workspace or private home could not be prepared. Nothing runs; missing
    /// home directories may have been created.
    #[error(
        "could not prepare the {what} `{path}` for the agent: {source}; it must be an \
         absolute path the node can create and write to"
    )]
    Setup {
        /// Which directory.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `start` did not finish within `start_timeout`. The process was stopped.
    #[error(
        "the agent did not finish {phase} within {timeout_ms} ms and was stopped; check that \
         the command starts an ACP agent on stdio, or raise the start timeout"
    )]
    StartTimeout {
        /// The step that was running (`connect`, `initialize`, `session/new`, `session/load`).
        phase: &'static str,
        /// The configured limit.
        timeout_ms: u64,
        /// The end of the agent's stderr, redacted and bounded (owner only: not in
        /// the message, see [`AgentError::agent_output`]).
        stderr_excerpt: String,
    },
    /// The agent broke the protocol or the connection failed while the process
    /// kept running. Shut the process down and start a new one.
    #[error("agent protocol error: {0}")]
    Protocol(String),
    /// The process exited (crash, kill, or on its own). Start a new one to continue.
    #[error("the agent process exited ({status}); start it again to continue")]
    Exited {
        /// The exit status (`exit status: 3`, `signal: 9 (SIGKILL)`).
        status: String,
        /// The end of the agent's stderr, redacted and bounded (owner only: not in
        /// the message, see [`AgentError::agent_output`]).
        stderr_excerpt: String,
    },
    /// The agent refused to open a session until it is authenticated (ACP's
    /// `auth_required` on `session/new` or `session/load`). The process was stopped.
    #[error("{}", auth::required_message(None, methods))]
    AuthRequired {
        /// The auth methods it advertised in `initialize`.
        methods: Vec<AuthMethod>,
    },
    /// An attachment is of a kind the agent does not take. Nothing was sent; the
    /// process still runs.
    #[error(
        "the agent does not take the attachment {attachment} (it does not advertise \
         {capability}); send the message without it"
    )]
    AttachmentRefused {
        /// The attachment, described.
        attachment: String,
        /// The capability it lacks.
        capability: &'static str,
    },
    /// The agent answered a request with a JSON-RPC error. The process still runs.
    #[error("the agent answered with error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The message (and data, if any).
        message: String,
    },
    /// No permission request with this id is waiting (answered, cancelled, or
    /// never sent). Nothing changed.
    #[error(
        "permission request {request} is not waiting for an answer: it was already answered \
         or cancelled"
    )]
    UnknownPermission {
        /// The id given.
        request: u64,
    },
    /// The option is not one the permission request offered. The request still
    /// waits for a valid answer.
    #[error("permission request {request} has no option `{option_id}`; choose one of: {offered}")]
    UnknownPermissionOption {
        /// The request.
        request: u64,
        /// The option given.
        option_id: String,
        /// The options offered, comma separated.
        offered: String,
    },
}

impl AgentError {
    /// What the agent itself printed about the failure (the end of its stderr),
    /// bounded to [`STDERR_EXCERPT_BYTES_MAX`] with the values of its secret
    /// environment and credential-like words redacted; `None` when it printed
    /// nothing. For the conversation's owner only: the message ([`std::fmt::Display`])
    /// never includes it, so it can go wherever the transcript goes.
    pub fn agent_output(&self) -> Option<&str> {
        match self {
            AgentError::StartTimeout { stderr_excerpt, .. }
            | AgentError::Exited { stderr_excerpt, .. }
                if !stderr_excerpt.is_empty() =>
            {
                Some(stderr_excerpt)
            }
            _ => None,
        }
    }

    /// The message for the owner of a conversation whose agent is configured as
    /// `agent`: [`std::fmt::Display`], naming the agent's config entry when it says
    /// what to configure.
    pub fn describe(&self, agent: &str) -> String {
        match self {
            AgentError::AuthRequired { methods } => auth::required_message(Some(agent), methods),
            other => other.to_string(),
        }
    }
}

/// `auth_required` (with the methods advertised in `initialize`) for an error answer
/// that means it; any other error as it is.
fn auth_required(error: AgentError, methods: &[AuthMethod]) -> AgentError {
    match error {
        AgentError::Rpc { code, message } if auth::is_auth_required(code, &message, methods) => {
            tracing::debug!(code, %message, "the agent requires authentication");
            AgentError::AuthRequired {
                methods: methods.to_vec(),
            }
        }
        other => other,
    }
}

/// One running agent process with one ACP session.
///
/// `prompt`, `cancel`, `respond_permission` and `shutdown` take `&self` and may
/// run concurrently. Dropping it SIGKILLs the agent's process group; call
/// [`Self::shutdown`] first for a graceful stop.
pub struct AgentProcess {
    session_id: String,
    load_session: bool,
    /// The modes and config options the session's `session/new` or `session/load`
    /// answer offered.
    offer: Option<shoal_protocol::settings::SessionOffer>,
    /// The HTTP MCP servers left out because the agent does not take them.
    mcp_left_out: Vec<String>,
    /// `promptCapabilities.image` and `.embeddedContext` of its `initialize` answer.
    prompt_takes: (bool, bool),
    shared: Arc<Shared>,
    connection: v1::ConnectionTo<Agent>,
    /// Dropping or firing it ends the connection task.
    stop_connection: Mutex<Option<oneshot::Sender<()>>>,
    /// Why the connection task ended, once it has.
    connection_end: Arc<Mutex<Option<String>>>,
    child: child::ChildProcess,
    /// The values of the agent's own and extra environment, redacted from what it
    /// prints before an owner sees it.
    secrets: Vec<String>,
}

impl std::fmt::Debug for AgentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentProcess")
            .field("session_id", &self.session_id)
            .field("pid", &self.child.pid())
            .field("exit", &self.child.exit_status())
            .finish_non_exhaustive()
    }
}

impl AgentProcess {
    /// Spawns the agent in `opts.cwd` with a private home, initializes ACP (with
    /// `fs` read/write capabilities) and opens a session: `session/load` of
    /// `opts.resume_session` if the agent supports it, else `session/new`.
    /// Updates of that session (including replayed history) go to `updates`.
    ///
    /// On error nothing is left running.
    pub async fn start(
        cmd: &AgentCommand,
        opts: StartOptions,
        updates: mpsc::Sender<AgentUpdate>,
    ) -> Result<AgentProcess, AgentError> {
        Self::start_with(cmd, opts, updates, None).await
    }

    /// [`Self::start`], through `launcher` when given (simulation: an in-process agent
    /// instead of a child process, see [`crate::seam`]).
    pub async fn start_with(
        cmd: &AgentCommand,
        opts: StartOptions,
        updates: mpsc::Sender<AgentUpdate>,
        launcher: Option<&Arc<dyn crate::seam::AgentLauncher>>,
    ) -> Result<AgentProcess, AgentError> {
        let deadline = tokio::time::Instant::now() + opts.start_timeout;
        let timeout_ms = u64::try_from(opts.start_timeout.as_millis()).unwrap_or(u64::MAX);
        let (mut process, cwd_text) = Self::launch(cmd, &opts, updates, launcher, deadline).await?;
        let mut phase = "initialize";
        let handshake = process.handshake(&opts, &cwd_text, &mut phase);
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(())) => {
                tracing::debug!(pid = ?process.pid(), session = %process.session_id, "agent session ready");
                Ok(process)
            }
            Ok(Err(error)) => {
                process.shutdown().await;
                Err(error)
            }
            Err(_) => {
                process.shutdown().await;
                Err(AgentError::StartTimeout {
                    phase,
                    timeout_ms,
                    stderr_excerpt: process.stderr_excerpt(),
                })
            }
        }
    }

    /// `initialize`, then `session/load` or `session/new`; `phase` tracks the step
    /// for the timeout message.
    async fn handshake(
        &mut self,
        opts: &StartOptions,
        cwd: &str,
        phase: &mut &'static str,
    ) -> Result<(), AgentError> {
        *phase = "initialize";
        let answer = self.call("initialize", wire::initialize_params()).await?;
        let info = wire::parse_initialize(&answer).map_err(AgentError::Protocol)?;
        self.load_session = info.load_session;
        let methods = auth::parse_auth_methods(&answer);
        let caps = ProbeInfo::parse(&answer);
        self.prompt_takes = (caps.prompt_image, caps.prompt_embedded_context);
        let (mcp_servers, left_out) =
            mcp::servers_json(&opts.mcp_servers, mcp::takes_http(&answer));
        self.mcp_left_out = left_out;

        if let Some(resume) = &opts.resume_session {
            if info.load_session {
                *phase = "session/load";
                // Known up front: the replayed history arrives before the answer.
                // Updates sent before we even asked for the session are stale.
                let stale = self.shared.set_session(resume);
                if !stale.is_empty() {
                    tracing::debug!(
                        count = stale.len(),
                        "dropping updates sent before session/load"
                    );
                }
                let answer = self
                    .call(
                        "session/load",
                        wire::load_session_params(resume, cwd, mcp_servers.clone()),
                    )
                    .await
                    .map_err(|e| auth_required(e, &methods))?;
                self.session_id = resume.clone();
                self.offer = offer::parse_session_offer(&answer);
                return Ok(());
            }
            tracing::info!(
                session = %resume,
                "the agent does not advertise loadSession; starting a new session instead of resuming"
            );
        }

        *phase = "session/new";
        let span = requests::call_span("session/new");
        let answer =
            tracing::Instrument::instrument(self.new_session(cwd, mcp_servers), span.clone()).await;
        requests::record_outcome(&span, &answer);
        let answer = answer.map_err(|e| auth_required(e, &methods))?;
        self.session_id = wire::parse_new_session(&answer).map_err(AgentError::Protocol)?;
        self.offer = offer::parse_session_offer(&answer);
        Ok(())
    }

    /// `session/new`, its answer handled in order: the session id is set before the
    /// next message is dispatched, so updates right after the answer are routed (ACP
    /// pitfall 1).
    async fn new_session(&self, cwd: &str, mcp_servers: Value) -> Result<Value, AgentError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let shared = Arc::clone(&self.shared);
        self.send_ordered(
            "session/new",
            wire::new_session_params(cwd, mcp_servers),
            move |result: Result<Value, agent_client_protocol::Error>| async move {
                if let Ok(answer) = &result
                    && let Ok(session_id) = wire::parse_new_session(answer)
                {
                    for update in shared.set_session(&session_id) {
                        shared.deliver(update).await;
                    }
                }
                // The caller may have given up (timeout); nothing to do then.
                let _delivered = answer_tx.send(result);
                Ok(())
            },
        )?;
        self.await_answer("session/new", answer_rx).await
    }

    /// The names of the HTTP MCP servers left out of the session: the agent does not
    /// advertise `mcpCapabilities.http`.
    pub fn mcp_left_out(&self) -> &[String] {
        &self.mcp_left_out
    }

    /// The modes and config options the session offered when it opened (`None`: it
    /// offered neither).
    pub fn offer(&self) -> Option<&shoal_protocol::settings::SessionOffer> {
        self.offer.as_ref()
    }

    /// `session/set_mode`: switches the session to `mode`.
    pub async fn set_mode(&self, mode: &str) -> Result<(), AgentError> {
        self.call(
            "session/set_mode",
            offer::set_mode_params(&self.session_id, mode),
        )
        .await
        .map(drop)
    }

    /// `session/set_config_option`: sets select option `config_id` to `value`. Returns
    /// the session's config options after it, when the agent's answer lists them.
    pub async fn set_config_option(
        &self,
        config_id: &str,
        value: &str,
    ) -> Result<Option<Vec<shoal_protocol::settings::OfferedSetting>>, AgentError> {
        let answer = self
            .call(
                "session/set_config_option",
                offer::set_config_option_params(&self.session_id, config_id, value),
            )
            .await?;
        Ok(answer.get("configOptions").map(offer::parse_config_options))
    }

    /// The ACP session id (new, or the resumed one).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// SIGKILLs the agent's process group now, without any grace (fencing: this node
    /// lost the shard's lease). The exit is reaped by the exit watcher.
    pub fn kill_now(&self) {
        self.child.signal_group(rustix::process::Signal::KILL);
    }

    /// A receiver that turns `Some` (the exit status) once the process has exited and
    /// been reaped. Holding it does not keep the process alive.
    pub fn exit_watch(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.child.exit_watch()
    }

    /// The agent's OS process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Whether the agent advertised `agentCapabilities.loadSession`.
    pub fn supports_load_session(&self) -> bool {
        self.load_session
    }

    /// Sends `session/prompt` with `text` and resolves with the stop reason, after
    /// every update of the turn has been queued on the updates channel.
    ///
    /// Cancel-safe: dropping the future stops waiting but does not stop the turn
    /// (use [`Self::cancel`]). Resolves with [`AgentError::Exited`] as soon as the
    /// process dies mid-turn.
    pub async fn prompt(&self, text: String) -> Result<PromptOutcome, AgentError> {
        Ok(self.prompt_with_context(None, text).await?.outcome)
    }

    /// Like [`Self::prompt`], with `context` (a new session's conversation so far) sent
    /// as its own content block before the user's text.
    pub async fn prompt_with_context(
        &self,
        context: Option<String>,
        text: String,
    ) -> Result<PromptAnswer, AgentError> {
        self.prompt_with(context, text, &[]).await
    }

    /// Like [`Self::prompt_with_context`], with `attachments` as `image` or `resource`
    /// blocks after the text. An attachment of a kind the agent did not advertise
    /// (`promptCapabilities.image`, `.embeddedContext`) is refused before anything is
    /// sent ([`AgentError::AttachmentRefused`]).
    pub async fn prompt_with(
        &self,
        context: Option<String>,
        text: String,
        attachments: &[shoal_protocol::attachments::Attachment],
    ) -> Result<PromptAnswer, AgentError> {
        let (image, embedded) = self.prompt_takes;
        if let Some(refused) = attachments
            .iter()
            .find(|a| if a.is_image() { !image } else { !embedded })
        {
            let capability = if refused.is_image() {
                "promptCapabilities.image"
            } else {
                "promptCapabilities.embeddedContext"
            };
            return Err(AgentError::AttachmentRefused {
                attachment: refused.describe(),
                capability,
            });
        }
        let params = wire::prompt_params(&self.session_id, context.as_deref(), &text, attachments);
        let answer = self.call("session/prompt", params).await?;
        Ok(PromptAnswer {
            outcome: wire::parse_prompt_outcome(&answer),
            tokens: wire::parse_prompt_tokens(&answer),
        })
    }

    /// Sends the `session/cancel` notification and answers every waiting
    /// permission request with `cancelled`. The running prompt then resolves
    /// (normally with [`PromptOutcome::Cancelled`]).
    pub async fn cancel(&self) {
        let notification =
            UntypedMessage::new("session/cancel", wire::cancel_params(&self.session_id));
        match notification.map(|message| self.connection.send_notification(message)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) | Err(error) => {
                tracing::debug!(%error, "could not send session/cancel; the connection is gone");
            }
        }
        self.shared.cancel_permissions();
    }

    /// Answers permission request `request`: `Some(option_id)` selects that
    /// option, `None` answers `cancelled`.
    pub fn respond_permission(
        &self,
        request: u64,
        option_id: Option<String>,
    ) -> Result<(), AgentError> {
        self.shared.respond_permission(request, option_id)
    }

    /// Stops the agent: closes its stdin, waits up to [`STDIN_CLOSE_GRACE_MS`],
    /// sends SIGTERM to its process group, waits up to [`TERM_GRACE_MS`], then
    /// SIGKILL. Idempotent; returns within about 5 s whatever the agent does.
    pub async fn shutdown(&self) {
        let child = &self.child;
        if child.exit_status().is_none() {
            child.close_stdin();
            if child
                .wait_exit_timeout(Duration::from_millis(STDIN_CLOSE_GRACE_MS))
                .await
                .is_none()
            {
                tracing::debug!(pid = ?child.pid(), "agent still running after stdin closed; sending SIGTERM");
                child.signal_group(rustix::process::Signal::TERM);
                if child
                    .wait_exit_timeout(Duration::from_millis(TERM_GRACE_MS))
                    .await
                    .is_none()
                {
                    tracing::debug!(pid = ?child.pid(), "agent still running after SIGTERM; sending SIGKILL");
                    child.signal_group(rustix::process::Signal::KILL);
                    if child
                        .wait_exit_timeout(Duration::from_millis(KILL_WAIT_MS))
                        .await
                        .is_none()
                    {
                        tracing::warn!(pid = ?child.pid(), "agent process did not exit after SIGKILL");
                    }
                }
            }
        }
        if let Some(stop) = lock(&self.stop_connection).take() {
            // The connection task may already have ended.
            let _stopped = stop.send(());
        }
    }

    /// Resolves when the child process has exited, with its exit status
    /// (`exit status: 0`, `signal: 9 (SIGKILL)`).
    pub async fn exited(&self) -> String {
        self.child.wait_exit().await
    }
}

/// A started connection task.
struct ConnectionTask {
    /// The connection handle, once the connection runs.
    handle: oneshot::Receiver<v1::ConnectionTo<Agent>>,
    /// Firing or dropping it ends the connection.
    stop: oneshot::Sender<()>,
    /// Why the connection ended, once it has.
    end: Arc<Mutex<Option<String>>>,
}

/// Starts the connection task over the child's stdio.
fn spawn_connection(
    shared: Arc<Shared>,
    outgoing: child::OutgoingLines,
    incoming: impl futures::Stream<Item = std::io::Result<String>> + Send + 'static,
) -> ConnectionTask {
    let (handle_tx, handle_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let connection_end = Arc::new(Mutex::new(None));
    let end_slot = Arc::clone(&connection_end);
    let builder = Client.v1().name("shoal-node").on_receive_dispatch(
        async move |dispatch: v1::Dispatch, _connection: v1::ConnectionTo<Agent>| {
            Ok(shared.handle(dispatch).await)
        },
        agent_client_protocol::on_receive_dispatch!(),
    );
    tokio::spawn(async move {
        let result = builder
            .connect_with(
                Lines::new(outgoing, incoming),
                async move |connection: v1::ConnectionTo<Agent>| {
                    // `start` may have given up already; the stop switch then fires.
                    let _sent = handle_tx.send(connection.clone());
                    tokio::select! {
                        _ = stop_rx => {}
                        () = connection.incoming_closed() => {}
                    }
                    Ok(())
                },
            )
            .await;
        let reason = match result {
            Ok(()) => String::from("closed"),
            Err(error) => format!("failed: {error}"),
        };
        tracing::debug!(%reason, "agent connection ended");
        *lock(&end_slot) = Some(reason);
    });
    ConnectionTask {
        handle: handle_rx,
        stop: stop_tx,
        end: connection_end,
    }
}

/// Locks a mutex; a panic elsewhere while holding it does not poison our state
/// (every critical section leaves it consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
