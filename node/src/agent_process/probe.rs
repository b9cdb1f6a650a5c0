//! Probing an agent: is its program there, and does it start and answer ACP
//! `initialize`? [`find_program`] is the cheap first half (no process); [`AgentProcess::probe`]
//! starts the agent, reads what it says about itself ([`ProbeInfo`]) and stops it.

use super::{AgentCommand, AgentError, AgentProcess, StartOptions, wire};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The most auth methods kept from an `initialize` answer.
pub(crate) const PROBE_AUTH_METHODS_MAX: usize = 16;
/// Longest name, version or auth method id kept from an `initialize` answer, in chars.
pub(crate) const PROBE_TEXT_CHARS_MAX: usize = 128;

/// What an agent said about itself in its `initialize` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeInfo {
    /// `agentInfo.name`.
    pub name: Option<String>,
    /// `agentInfo.version`.
    pub version: Option<String>,
    /// `agentCapabilities.loadSession`: it can resume a session after a restart or move.
    pub load_session: bool,
    /// `agentCapabilities.promptCapabilities.image`.
    pub prompt_image: bool,
    /// `agentCapabilities.promptCapabilities.audio`.
    pub prompt_audio: bool,
    /// `agentCapabilities.promptCapabilities.embeddedContext`.
    pub prompt_embedded_context: bool,
    /// The ids of `authMethods` (at most [`PROBE_AUTH_METHODS_MAX`]): non-empty when the
    /// agent may need credentials before it works.
    pub auth_methods: Vec<String>,
}

impl ProbeInfo {
    /// Reads an `initialize` answer (its protocol version already checked). Missing
    /// or mistyped fields are absent/false; text is bounded.
    pub(crate) fn parse(answer: &Value) -> Self {
        let text = |pointer: &str| {
            answer
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(PROBE_TEXT_CHARS_MAX).collect())
        };
        let flag = |pointer: &str| {
            answer
                .pointer(pointer)
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let auth_methods = answer
            .get("authMethods")
            .and_then(Value::as_array)
            .map(|methods| {
                methods
                    .iter()
                    .filter_map(|m| m.get("id").and_then(Value::as_str))
                    .take(PROBE_AUTH_METHODS_MAX)
                    .map(|id| id.chars().take(PROBE_TEXT_CHARS_MAX).collect())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: text("/agentInfo/name"),
            version: text("/agentInfo/version"),
            load_session: flag("/agentCapabilities/loadSession"),
            prompt_image: flag("/agentCapabilities/promptCapabilities/image"),
            prompt_audio: flag("/agentCapabilities/promptCapabilities/audio"),
            prompt_embedded_context: flag("/agentCapabilities/promptCapabilities/embeddedContext"),
            auth_methods,
        }
    }
}

/// Where `cmd`'s program is, as the agent would be started in `cwd`: a path with a `/`
/// (relative to `cwd`), else the first executable file of that name on the `PATH` the
/// agent gets (the command's own `PATH`, else the node's). The error says what was
/// looked for where.
pub fn find_program(cmd: &AgentCommand, cwd: &Path) -> Result<PathBuf, String> {
    let program = &cmd.program;
    if program.components().count() > 1 || program.is_absolute() {
        let path = cwd.join(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "`{}` does not exist or is not an executable file",
                path.display()
            ))
        };
    }
    let path_var = cmd
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path_var)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("`{}` was not found on PATH", program.display()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl AgentProcess {
    /// Starts the agent as [`Self::start_with`] would (in `opts.cwd`, with `opts.home`),
    /// sends ACP `initialize`, and stops it again, all within `opts.start_timeout` (plus
    /// the shutdown grace). `opts.resume_session` is ignored: no session is opened.
    pub async fn probe(
        cmd: &AgentCommand,
        opts: StartOptions,
        launcher: Option<&Arc<dyn crate::seam::AgentLauncher>>,
    ) -> Result<ProbeInfo, AgentError> {
        let deadline = tokio::time::Instant::now() + opts.start_timeout;
        let timeout_ms = u64::try_from(opts.start_timeout.as_millis()).unwrap_or(u64::MAX);
        // No session is opened, so no update is expected; any is dropped.
        let (updates, _) = mpsc::channel(1);
        let (process, _cwd) = Self::launch(cmd, &opts, updates, launcher, deadline).await?;
        let answer = tokio::time::timeout_at(
            deadline,
            process.call("initialize", wire::initialize_params()),
        )
        .await;
        let result = match answer {
            Ok(Ok(answer)) => wire::parse_initialize(&answer)
                .map(|_| ProbeInfo::parse(&answer))
                .map_err(AgentError::Protocol),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                // A hung agent gets no grace.
                process.kill_now();
                Err(AgentError::StartTimeout {
                    phase: "initialize",
                    timeout_ms,
                    stderr_excerpt: process.stderr_excerpt(),
                })
            }
        };
        process.shutdown().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_initialize_answer_is_read_leniently_and_bounded() {
        let answer = json!({
            "protocolVersion": 1,
            "agentInfo": {"name": "opencode", "version": "1.0.3"},
            "agentCapabilities": {
                "loadSession": true,
                "promptCapabilities": {"image": true, "embeddedContext": true, "audio": "yes"},
            },
            "authMethods": [{"id": "opencode-login", "name": "Login"}, {"name": "no id"}],
        });
        assert_eq!(
            ProbeInfo::parse(&answer),
            ProbeInfo {
                name: Some("opencode".into()),
                version: Some("1.0.3".into()),
                load_session: true,
                prompt_image: true,
                prompt_audio: false,
                prompt_embedded_context: true,
                auth_methods: vec!["opencode-login".into()],
            }
        );
        assert_eq!(
            ProbeInfo::parse(&json!({"protocolVersion": 1})),
            ProbeInfo::default()
        );
        let long = json!({"agentInfo": {"name": "x".repeat(1000)}});
        let name = ProbeInfo::parse(&long).name.unwrap_or_default();
        assert_eq!(name.chars().count(), PROBE_TEXT_CHARS_MAX);
    }

    #[test]
    fn programs_are_found_on_path_or_as_paths() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cwd = dir.path();
        let script = cwd.join("agent.sh");
        std::fs::write(&script, "#!/bin/sh\n")?;
        let not_executable = cwd.join("data.txt");
        std::fs::write(&not_executable, "")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let cmd = |program: &str, path: Option<&Path>| AgentCommand {
            program: program.into(),
            env: path
                .map(|p| ("PATH".to_owned(), p.display().to_string()))
                .into_iter()
                .collect(),
            ..AgentCommand::default()
        };
        assert_eq!(find_program(&cmd("agent.sh", Some(cwd)), cwd), Ok(script));
        assert_eq!(
            find_program(&cmd("./agent.sh", None), cwd),
            Ok(cwd.join("./agent.sh"))
        );
        let missing = find_program(&cmd("nope-agent", Some(cwd)), cwd).unwrap_err();
        assert_eq!(missing, "`nope-agent` was not found on PATH");
        let err = find_program(&cmd(&not_executable.display().to_string(), None), cwd);
        assert!(err.is_err_and(|e| e.contains("not an executable file")));
        Ok(())
    }
}
