//! `shoalctl creds …`: workspace credentials. Values are read from stdin (or typed at a
//! prompt that does not echo), never taken from the command line, where `ps` and shell
//! history would keep them; nothing ever prints a value.

use crate::conv::print_line;
use anyhow::{Context, anyhow};
use clap::Subcommand;
use shoal_client::{Client, Profile};
use shoal_protocol::WorkspaceId;
use shoal_protocol::client::CredentialInfo;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

/// `shoalctl creds …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CredsCommand {
    /// Set (or replace) a credential: an environment variable for the workspace's agents.
    ///
    /// The value is read from stdin (`printf %s "$TOKEN" | shoalctl creds set GITHUB_TOKEN`),
    /// or typed at a prompt that does not echo. Agents started from then on get it.
    Set {
        /// The variable name, `[A-Z_][A-Z0-9_]*` (reserved names such as `PATH`,
        /// `HTTP_PROXY` or `LD_PRELOAD` are refused).
        name: String,
        /// The workspace (default: yours).
        #[arg(long, value_name = "ID")]
        workspace: Option<WorkspaceId>,
    },
    /// List the credentials' names and when they were set (never their values).
    List {
        /// The workspace (default: yours).
        #[arg(long, value_name = "ID")]
        workspace: Option<WorkspaceId>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a credential.
    Rm {
        /// The variable name.
        name: String,
        /// The workspace (default: yours).
        #[arg(long, value_name = "ID")]
        workspace: Option<WorkspaceId>,
    },
}

/// Runs one `creds` command.
pub(crate) async fn run(profile: &Profile, command: CredsCommand) -> anyhow::Result<ExitCode> {
    match command {
        CredsCommand::Set { name, workspace } => {
            let value = read_value(&name)?;
            let client = Client::connect(profile).await?;
            let result = client.set_credential(workspace, &name, &value).await;
            client.close().await;
            result?;
            print_line(&format!("set {name}"))?;
        }
        CredsCommand::List { workspace, json } => {
            let client = Client::connect(profile).await?;
            let result = client.list_credentials(workspace).await;
            client.close().await;
            let list = result?;
            if json {
                let items: Vec<serde_json::Value> = list.iter().map(credential_json).collect();
                print_line(&serde_json::Value::Array(items).to_string())?;
            } else {
                for line in table(&list) {
                    print_line(&line)?;
                }
            }
        }
        CredsCommand::Rm { name, workspace } => {
            let client = Client::connect(profile).await?;
            let result = client.delete_credential(workspace, &name).await;
            client.close().await;
            if !result? {
                return Err(anyhow!(
                    "no credential named {name}; see `shoalctl creds list`"
                ));
            }
            print_line(&format!("removed {name}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn credential_json(c: &CredentialInfo) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "created_at_ms": c.created_at_ms,
        "updated_at_ms": c.updated_at_ms,
    })
}

fn table(list: &[CredentialInfo]) -> Vec<String> {
    if list.is_empty() {
        return vec!["no credentials".to_owned()];
    }
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    let mut lines = vec![format!(
        "{:width$}  {:>15}  {:>15}",
        "NAME", "CREATED_MS", "UPDATED_MS"
    )];
    lines.extend(list.iter().map(|c| {
        format!(
            "{:width$}  {:>15}  {:>15}",
            c.name, c.created_at_ms, c.updated_at_ms
        )
    }));
    lines
}

/// The value from stdin: all of it when piped (one trailing newline dropped), or one
/// line typed at a prompt with echo off.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut value = String::new();
    if stdin.is_terminal() {
        let _ = write!(std::io::stderr(), "value of {name} (not shown): ");
        let _ = std::io::stderr().flush();
        let echo = EchoOff::new(&stdin);
        stdin
            .read_line(&mut value)
            .context("cannot read the value from the terminal")?;
        drop(echo);
        let _ = writeln!(std::io::stderr());
    } else {
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut value)
            .context("cannot read the value from stdin; pipe it as UTF-8 text")?;
    }
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value)
        .to_owned();
    if value.is_empty() {
        return Err(anyhow!(
            "the value of {name} is empty; pipe it on stdin (printf %s \"$VALUE\" | shoalctl creds set {name})"
        ));
    }
    Ok(value)
}

/// Turns terminal echo off until dropped (best effort: on failure the value echoes).
struct EchoOff {
    saved: Option<rustix::termios::Termios>,
}

impl EchoOff {
    fn new(stdin: &std::io::Stdin) -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let Ok(saved) = tcgetattr(stdin) else {
            return Self { saved: None };
        };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        if tcsetattr(stdin, OptionalActions::Now, &quiet).is_err() {
            return Self { saved: None };
        }
        Self { saved: Some(saved) }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_never_has_a_value_column() {
        let lines = table(&[CredentialInfo {
            name: "GITHUB_TOKEN".into(),
            created_at_ms: 1,
            updated_at_ms: 2,
        }]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].starts_with("GITHUB_TOKEN"));
        assert_eq!(table(&[]), ["no credentials"]);
    }
}
