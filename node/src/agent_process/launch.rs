//! Spawning an agent child (or an in-process agent) and connecting ACP over its stdio,
//! before any request: the first half of [`AgentProcess::start_with`], shared with
//! [`AgentProcess::probe`].

use super::handler::Shared;
use super::{
    AgentCommand, AgentError, AgentProcess, AgentUpdate, StartOptions, child, fs, lock, redact,
    spawn_connection,
};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

impl AgentProcess {
    /// Spawns the agent in `opts.cwd` with a private home and connects ACP over its
    /// stdio by `deadline`; no request is sent yet. Returns the process and `cwd` as
    /// text. On error nothing is left running.
    pub(super) async fn launch(
        cmd: &AgentCommand,
        opts: &StartOptions,
        updates: mpsc::Sender<AgentUpdate>,
        launcher: Option<&Arc<dyn crate::seam::AgentLauncher>>,
        deadline: tokio::time::Instant,
    ) -> Result<(AgentProcess, String), AgentError> {
        let cwd_text = child::prepare_directories(opts)?;
        let workspace = fs::Workspace::new(&opts.cwd).map_err(|source| AgentError::Setup {
            what: "workspace directory",
            path: opts.cwd.clone(),
            source,
        })?;
        let env = child::child_env(cmd, opts)?;
        let secrets = redact::secret_values(
            cmd.env
                .values()
                .chain(opts.extra_env.values())
                .chain(opts.mcp_servers.iter().flat_map(|s| s.secret_values())),
        );
        let timeout_ms = u64::try_from(opts.start_timeout.as_millis()).unwrap_or(u64::MAX);

        let spec = child::SpawnSpec {
            program: &cmd.program,
            args: &cmd.args,
            env: &env,
            cwd: &opts.cwd,
            confine_to: opts.confine_to.as_deref(),
        };
        let spawned = match launcher {
            Some(launcher) => child::spawn_in_process(launcher.as_ref(), &spec),
            None => child::spawn(&spec),
        };
        let (child, outgoing, incoming) = spawned.map_err(|source| AgentError::Spawn {
            program: cmd.program.display().to_string(),
            source,
        })?;
        tracing::debug!(pid = ?child.pid(), program = %cmd.program.display(), "agent process spawned");

        let shared = Arc::new(Shared::new(updates, workspace));
        let task = spawn_connection(Arc::clone(&shared), outgoing, incoming);
        let connection_end = task.end;
        let connection = match tokio::time::timeout_at(deadline, task.handle).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(_)) => {
                let reason = lock(&connection_end)
                    .clone()
                    .unwrap_or_else(|| String::from("unknown reason"));
                return Err(AgentError::Protocol(format!(
                    "the ACP connection to the agent could not start: {reason}"
                )));
            }
            Err(_) => {
                return Err(AgentError::StartTimeout {
                    phase: "connect",
                    timeout_ms,
                    stderr_excerpt: redact::stderr_excerpt(&child.stderr_tail(), &secrets),
                });
            }
        };

        let process = AgentProcess {
            session_id: String::new(),
            load_session: false,
            offer: None,
            mcp_left_out: Vec::new(),
            prompt_takes: (false, false),
            shared,
            connection,
            stop_connection: Mutex::new(Some(task.stop)),
            connection_end,
            child,
            secrets,
        };
        Ok((process, cwd_text))
    }
}
