//! `shoal-demo-agent`: a small, deterministic ACP (Agent Client Protocol v1) agent.
//!
//! It speaks newline-delimited JSON-RPC 2.0 on stdin/stdout and logs on stderr. Prompts
//! are answered by scripts chosen by the prompt text (`/slow 5`, `/permission`, …, see
//! `README.md`), so `shoal-node dev` and tests get every kind of agent behaviour, including
//! misbehaviour (`/crash`, `/hang`, a non-spec `stopReason`), without a model.
//!
//! # Layout
//! * [`lib.rs`](crate): [`Options`], [`run`], [`run_with_options`], [`run_blocking`].
//! * `rpc.rs`: bounded line reading, JSON-RPC message classification, error codes and
//!   the writer loop (one flushed line per message).
//! * `agent.rs`: shared state (sessions, our pending requests) and the read loop that
//!   answers `initialize`, `session/new`, `session/load` and starts prompts.
//! * `script.rs`: the scripted prompts, one task per running prompt.
//! * `session.rs`: session ids and the on-disk history under
//!   `$HOME/.shoal-demo-agent/sessions/`.
//! * `lifecycle.rs`: the optional start/stop log for tests.
//!
//! # Process model
//! ```text
//! input ──> read loop ──(one task per prompt)──> scripts
//!               │                                   │
//!               └────────> outgoing queue <─────────┘ ──> writer loop ──> output
//! ```
//! At end of input every prompt task is stopped (even `/hang`), the queue drains and
//! [`run`] returns. `/crash` exits the whole process with code 3 once its text chunk is
//! written: do not send it to an agent running in a process you care about.

mod agent;
mod lifecycle;
mod rpc;
mod script;
mod session;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Environment variable naming the lifecycle log file.
pub const LIFECYCLE_LOG_ENV: &str = "SHOAL_DEMO_AGENT_LOG";
/// Environment variable naming the node, written in lifecycle lines.
pub const NODE_ID_ENV: &str = "SHOAL_NODE_ID";
/// Environment variable that makes the agent require authentication: its value names
/// the variable holding the "API key"; while that one is unset or empty, `initialize`
/// advertises an auth method and `session/new` and `session/load` fail with ACP's
/// `auth_required` error (-32000).
pub const REQUIRE_AUTH_ENV: &str = "SHOAL_DEMO_AGENT_REQUIRE_AUTH";
/// Environment variable that, when set (to anything), makes `initialize` advertise
/// `mcpCapabilities.http: false`: an agent that cannot use HTTP MCP servers.
pub const NO_HTTP_MCP_ENV: &str = "SHOAL_DEMO_AGENT_NO_HTTP_MCP";
/// Environment variable that, when set (to anything), makes `initialize` advertise no
/// prompt capabilities (no images, no embedded resources): a text-only agent.
pub const TEXT_ONLY_ENV: &str = "SHOAL_DEMO_AGENT_TEXT_ONLY";
/// Environment variable that, when set (to anything), makes `session/load` answer
/// `null` (no `modes`, no `configOptions`), as agents that offer them only on
/// `session/new` do.
pub const QUIET_LOAD_ENV: &str = "SHOAL_DEMO_AGENT_QUIET_LOAD";
/// Environment variable naming a Unix socket that witnesses this process's life (chaos
/// tests): the agent connects at start, says who it is, and holds the connection open
/// until the process ends.
pub const WITNESS_SOCKET_ENV: &str = "SHOAL_DEMO_AGENT_WITNESS";

/// Environment variable a node sets to `1` when it starts the agent only to probe it
/// (`initialize`, then stop): such a run is not a session, so it reports to neither the
/// witness nor the lifecycle log.
pub const PROBE_ENV: &str = "SHOAL_AGENT_PROBE";

/// Whether this run is a node's probe ([`PROBE_ENV`] is `1`).
fn is_probe() -> bool {
    std::env::var_os(PROBE_ENV).is_some_and(|value| value == "1")
}

/// Where the agent keeps its state and reports its lifecycle; read once per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Home directory: histories persist in `<home>/.shoal-demo-agent/sessions/`.
    /// `None` keeps them in memory, so `session/load` only finds this run's sessions.
    pub home: Option<PathBuf>,
    /// File that gets one JSON line at start and at clean exit; `None` writes nothing.
    pub lifecycle_log: Option<PathBuf>,
    /// Node id written in lifecycle lines (`null` when `None`).
    pub node_id: Option<String>,
}

impl Options {
    /// Reads `HOME`, [`LIFECYCLE_LOG_ENV`] (ignored in a probe, see [`PROBE_ENV`]) and
    /// [`NODE_ID_ENV`]; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Self {
            home: var("HOME").map(PathBuf::from),
            lifecycle_log: var(LIFECYCLE_LOG_ENV)
                .filter(|_| !is_probe())
                .map(PathBuf::from),
            node_id: var(NODE_ID_ENV).map(|value| value.to_string_lossy().into_owned()),
        }
    }
}

/// Runs the agent on the process's stdin/stdout until stdin closes; builds its own tokio runtime.
///
/// Exits 0 at end of input and 1 if stdin or stdout fails.
pub fn run_blocking() -> ExitCode {
    // Held until the process exits: its closing is the witness's record of our death.
    let _witness = std::env::var_os(WITNESS_SOCKET_ENV)
        .filter(|path| !path.is_empty() && !is_probe())
        .and_then(|path| {
            let options = Options::from_env();
            lifecycle::witness(
                std::path::Path::new(&path),
                options.node_id.as_deref(),
                options.home.as_deref(),
            )
        });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shoal-demo-agent: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(tokio::io::stdin(), tokio::io::stdout()));
    // A failed stdout leaves a stdin read in flight on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-demo-agent: stopped on an I/O error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the agent over the given streams (for in-process tests).
///
/// Takes its [`Options`] from the environment; see [`run_with_options`].
pub async fn run<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send>(
    input: R,
    output: W,
) -> io::Result<()> {
    run_with_options(Options::from_env(), input, output).await
}

/// Runs the agent over the given streams with explicit [`Options`] until `input` ends.
///
/// Returns an error if reading `input` or writing `output` fails, or if the session
/// directory cannot be listed at start. A `/crash` prompt exits the process.
pub async fn run_with_options<R: AsyncRead + Unpin + Send, W: AsyncWrite + Unpin + Send>(
    options: Options,
    input: R,
    output: W,
) -> io::Result<()> {
    let log = |event, session: Option<&str>| {
        if let Some(path) = &options.lifecycle_log {
            lifecycle::record(path, options.node_id.as_deref(), event, session);
        }
    };
    log(lifecycle::Event::Start, None);
    let store = session::Store::new(options.home.as_deref());
    let first_session_number = store.first_free_number().await.map_err(io::Error::other)?;
    let (queue, queued) = mpsc::channel(agent::OUTGOING_MESSAGES_MAX);
    let agent = Arc::new(agent::Agent::new(queue, store, first_session_number));
    let writer = rpc::write_loop(output, queued);
    tokio::pin!(writer);
    let read = tokio::select! {
        written = &mut writer => {
            // The agent still holds a sender, so the writer only ends early on an error.
            return Err(written.err().unwrap_or_else(|| {
                io::Error::other("the output writer stopped before the input ended")
            }));
        }
        read = agent::serve(Arc::clone(&agent), input) => read,
    };
    let last_session = agent.last_session();
    let linger = std::time::Duration::from_millis(agent.linger_ms());
    if !linger.is_zero() {
        // A slow shutdown (`/linger`): the process stays alive after its input ended.
        tokio::time::sleep(linger).await;
    }
    // Dropping the last sender lets the writer drain the queue and finish.
    drop(agent);
    writer.await?;
    read?;
    log(lifecycle::Event::Stop, last_session.as_deref());
    Ok(())
}
