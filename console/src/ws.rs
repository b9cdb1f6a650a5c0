//! `shoalctl ws …`: workspaces. A workspace is named by its id (`w-…`) or its name.
//! Positions are 1-based everywhere on the command line (the table, `--json` and
//! `ws reorder`); the SDK's are 0-based.

use crate::conv::print_line;
use crate::lookup;
use crate::render::{Align, cell, table, utc_time};
use anyhow::{Context, anyhow};
use clap::Subcommand;
use shoal_client::{Client, Profile};
use shoal_protocol::permissions::PermissionPolicy;
use shoal_protocol::workspaces::WorkspaceInfo;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

/// Longest confirmation read from the terminal, in bytes (a name is at most 64).
const CONFIRM_BYTES_MAX: u64 = 1024;

/// `shoalctl ws …`.
#[derive(Debug, Subcommand)]
pub(crate) enum WsCommand {
    /// Create a workspace; prints its id alone.
    New {
        /// Its name: unique among yours (without regard to case), at most 64 bytes.
        name: String,
    },
    /// List your workspaces in their order: position, id, name, the default marker,
    /// attached skill packs and creation time (UTC).
    List {
        /// Print a JSON array (`position` 1-based, `id`, `name`, `default`, `packs`,
        /// `created_at_ms`).
        #[arg(long)]
        json: bool,
    },
    /// Rename a workspace (the default one too).
    Rename {
        /// The workspace: its id (`w-…`) or its current name.
        workspace: String,
        /// The new name.
        name: String,
    },
    /// Move a workspace to another position and print the new order.
    Reorder {
        /// The workspace: its id (`w-…`) or its name.
        workspace: String,
        /// Its new position: 1 is first, as in `ws list`; past the end means last.
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        position: u32,
    },
    /// Delete a workspace with all its conversations, files and credentials.
    ///
    /// Asks you to type the workspace's name at the terminal; with --yes it does not ask.
    /// Without a terminal and without --yes it refuses. The default workspace cannot be
    /// deleted.
    Rm {
        /// The workspace: its id (`w-…`) or its name.
        workspace: String,
        /// Delete without asking for the name.
        #[arg(long)]
        yes: bool,
    },
    /// Show or replace a workspace's permission policy: how its agents' permission
    /// requests are answered (`ask`: you answer; `allow`; `deny`), by default and per
    /// tool kind. It wins over the agents' `[agents.<id>.permissions]`.
    Permissions {
        /// The workspace: its id (`w-…`) or its name (default: your default workspace).
        workspace: Option<String>,
        /// Replace the policy with these rules, `KEY=ANSWER` (`default=allow`,
        /// `execute=ask`, `read=allow`); repeat for several.
        #[arg(long = "set", value_name = "RULE")]
        rules: Vec<String>,
        /// Remove the policy (the agents' policies apply).
        #[arg(long, conflicts_with = "rules")]
        clear: bool,
        /// Print `{"workspace", "default", "kinds"}`.
        #[arg(long)]
        json: bool,
    },
    /// A workspace's MCP servers, given to its agents' sessions.
    Mcp {
        /// What to do.
        #[command(subcommand)]
        command: crate::ws_mcp::McpCommand,
    },
}

/// Runs one `ws` command.
pub(crate) async fn run(profile: &Profile, command: WsCommand) -> anyhow::Result<ExitCode> {
    // Refuse before connecting: there is nobody to ask.
    if let WsCommand::Rm {
        workspace,
        yes: false,
    } = &command
        && !std::io::stdin().is_terminal()
    {
        return Err(anyhow!(
            "not deleting workspace {:?}: stdin is not a terminal, so its name cannot be confirmed; pass --yes to delete it and all its conversations",
            cell(workspace)
        ));
    }
    let client = Client::connect(profile).await?;
    let result = run_with(&client, command).await;
    client.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// `ws permissions`: shows the policy, or replaces it first.
async fn permissions(
    client: &Client,
    workspace: Option<String>,
    rules: Vec<String>,
    clear: bool,
    json: bool,
) -> anyhow::Result<()> {
    let id = match workspace {
        Some(workspace) => Some(lookup::workspace_id(client, &workspace).await?),
        None => None,
    };
    let (id, policy) = if clear || !rules.is_empty() {
        let mut policy = PermissionPolicy::default();
        for rule in &rules {
            policy
                .set_rule(rule)
                .map_err(|e| anyhow!("--set {}: {e}", cell(rule)))?;
        }
        client.set_workspace_permissions(id, policy).await?
    } else {
        client.workspace_permissions(id).await?
    };
    if json {
        let kinds: serde_json::Map<String, serde_json::Value> = policy
            .kinds
            .iter()
            .map(|(k, a)| (k.clone(), a.as_str().into()))
            .collect();
        let value = serde_json::json!({
            "workspace": id.to_string(),
            "default": policy.default.map(|a| a.as_str()),
            "kinds": kinds,
        });
        return print_line(&value.to_string());
    }
    let rules = policy.describe();
    if rules.is_empty() {
        print_line(&format!(
            "workspace {id}: no permission rules (each agent's [agents.<id>.permissions] apply, else you are asked)"
        ))
    } else {
        print_line(&format!("workspace {id}: {}", rules.join(", ")))
    }
}

async fn run_with(client: &Client, command: WsCommand) -> anyhow::Result<()> {
    match command {
        WsCommand::New { name } => {
            let info = client.create_workspace(&name).await?;
            print_line(&info.id.to_string())?;
        }
        WsCommand::List { json } => {
            let list = client.list_workspaces().await?;
            print_list(&list, json)?;
        }
        WsCommand::Rename { workspace, name } => {
            let id = lookup::workspace_id(client, &workspace).await?;
            let info = client.rename_workspace(id, &name).await?;
            print_line(&format!("renamed {} to {}", info.id, cell(&info.name)))?;
        }
        WsCommand::Reorder {
            workspace,
            position,
        } => {
            let id = lookup::workspace_id(client, &workspace).await?;
            let list = client.move_workspace(id, position - 1).await?;
            print_list(&list, false)?;
        }
        WsCommand::Permissions {
            workspace,
            rules,
            clear,
            json,
        } => permissions(client, workspace, rules, clear, json).await?,
        WsCommand::Mcp { command } => crate::ws_mcp::run(client, command).await?,
        WsCommand::Rm { workspace, yes } => {
            let info = lookup::workspace(client, &workspace).await?;
            if info.default {
                return Err(anyhow!(
                    "workspace {:?} ({}) is your default workspace and cannot be deleted; delete its conversations instead",
                    cell(&info.name),
                    info.id
                ));
            }
            let confirm_name = if yes {
                info.name.clone()
            } else {
                read_confirmation()?
            };
            let conversations = client.delete_workspace(info.id, &confirm_name).await?;
            print_line(&format!(
                "deleted workspace {} ({}) and {conversations} conversation{}",
                cell(&info.name),
                info.id,
                if conversations == 1 { "" } else { "s" }
            ))?;
        }
    }
    Ok(())
}

fn print_list(list: &[WorkspaceInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let items: Vec<serde_json::Value> = list
            .iter()
            .enumerate()
            .map(|(i, w)| workspace_json(i + 1, w))
            .collect();
        print_line(&serde_json::Value::Array(items).to_string())
    } else {
        for line in workspaces_table(list) {
            print_line(&line)?;
        }
        Ok(())
    }
}

/// One workspace in `ws list --json`; `position` is 1-based.
fn workspace_json(position: usize, w: &WorkspaceInfo) -> serde_json::Value {
    serde_json::json!({
        "position": position,
        "id": w.id.to_string(),
        "name": w.name,
        "default": w.default,
        "packs": w.packs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "created_at_ms": w.created_at_ms,
    })
}

/// `POS ID NAME DEFAULT PACKS CREATED`, in the given order.
fn workspaces_table(list: &[WorkspaceInfo]) -> Vec<String> {
    let header = [
        ("POS", Align::Right),
        ("ID", Align::Left),
        ("NAME", Align::Left),
        ("DEFAULT", Align::Left),
        ("PACKS", Align::Right),
        ("CREATED", Align::Left),
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .enumerate()
        .map(|(i, w)| {
            vec![
                (i + 1).to_string(),
                w.id.to_string(),
                cell(&w.name),
                if w.default { "default" } else { "" }.to_owned(),
                w.packs.len().to_string(),
                utc_time(w.created_at_ms),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// The name typed at the terminal (one line, its line end dropped).
fn read_confirmation() -> anyhow::Result<String> {
    let mut stderr = std::io::stderr();
    let _ = write!(
        stderr,
        "type the workspace name to delete it and all its conversations: "
    );
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(CONFIRM_BYTES_MAX)
        .read_line(&mut line)
        .context("cannot read the confirmation from the terminal; pass --yes instead")?;
    let typed = line.trim_end_matches(['\n', '\r']);
    if typed.is_empty() {
        return Err(anyhow!(
            "nothing typed, nothing deleted; type the workspace's name to delete it"
        ));
    }
    Ok(typed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{ShardId, SkillPackId, WorkspaceId};

    #[test]
    fn the_table_has_positions_and_marks_the_default() {
        let list = [
            WorkspaceInfo {
                id: WorkspaceId::new(ShardId(1), 0),
                name: "default".into(),
                default: true,
                created_at_ms: 0,
                packs: Vec::new(),
            },
            WorkspaceInfo {
                id: WorkspaceId::new(ShardId(1), 2),
                name: "web\u{1b}site".into(),
                default: false,
                created_at_ms: 1_700_000_000_000,
                packs: vec![SkillPackId::new(ShardId(1), 3)],
            },
        ];
        let lines = workspaces_table(&list);
        assert_eq!(
            lines,
            [
                "POS  ID                                    NAME      DEFAULT  PACKS  CREATED",
                "  1  w-1-00000000000000000000000000000000  default   default      0  -",
                "  2  w-1-00000000000000000000000000000002  web?site               1  2023-11-14 22:13 UTC",
            ]
        );
        let json = workspace_json(2, &list[1]);
        assert_eq!(json["position"], 2);
        assert_eq!(json["packs"][0], "p-1-00000000000000000000000000000003");
        assert_eq!(json["default"], false);
    }
}
