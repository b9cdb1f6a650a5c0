//! `shoalctl ws mcp …`: a workspace's MCP servers. Env variables and headers are
//! written, never shown again: listings carry their names only.

use crate::conv::print_line;
use crate::lookup;
use crate::render::cell;
use anyhow::anyhow;
use clap::Subcommand;
use shoal_client::Client;
use shoal_protocol::WorkspaceId;
use shoal_protocol::client::Secret;
use shoal_protocol::mcp::{McpServerInfo, McpServerSpec, McpTransport};
use std::collections::BTreeMap;

/// `shoalctl ws mcp …`.
#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// List a workspace's MCP servers (env variable and header names, not values).
    List {
        /// The workspace: its id (`w-…`) or name (default: your default workspace).
        workspace: Option<String>,
        /// Print a JSON array of `{name, transport, command|url, args, secrets}`.
        #[arg(long)]
        json: bool,
    },
    /// Add or replace an MCP server: `--command` (stdio) or `--url` (HTTP). Its agents
    /// get it from their next start.
    Add {
        /// The server's name (letters, digits, `_`, `-`).
        name: String,
        /// The workspace (default: your default workspace).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
        /// A stdio server: the executable the agent starts.
        #[arg(long, conflicts_with = "url")]
        command: Option<String>,
        /// An argument of the command (repeat for several).
        #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An env variable of the command, `NAME=VALUE` (stored sealed).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// An HTTP server: its URL (only agents that advertise HTTP MCP get it).
        #[arg(long)]
        url: Option<String>,
        /// A header, `NAME=VALUE` (stored sealed).
        #[arg(long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },
    /// Remove an MCP server.
    Rm {
        /// The server's name.
        name: String,
        /// The workspace (default: your default workspace).
        #[arg(long, value_name = "WS")]
        workspace: Option<String>,
    },
}

async fn workspace(client: &Client, arg: Option<String>) -> anyhow::Result<Option<WorkspaceId>> {
    match arg {
        Some(arg) => Ok(Some(lookup::workspace_id(client, &arg).await?)),
        None => Ok(None),
    }
}

/// `NAME=VALUE` pairs as secrets.
fn pairs(flag: &str, items: Vec<String>) -> anyhow::Result<BTreeMap<String, Secret>> {
    items
        .into_iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), Secret(value.to_owned()))),
            None => Err(anyhow!(
                "--{flag} {}: write NAME=VALUE",
                cell(item.split('=').next().unwrap_or(""))
            )),
        })
        .collect()
}

/// Runs one `ws mcp` command.
pub(crate) async fn run(client: &Client, command: McpCommand) -> anyhow::Result<()> {
    let (id, servers, json) = match command {
        McpCommand::List {
            workspace: ws,
            json,
        } => {
            let ws = workspace(client, ws).await?;
            let (id, servers) = client.workspace_mcp_servers(ws).await?;
            (id, servers, json)
        }
        McpCommand::Add {
            name,
            workspace: ws,
            command,
            args,
            env,
            url,
            headers,
        } => {
            let (transport, secrets) = match (command, url) {
                (Some(command), None) if headers.is_empty() => {
                    (McpTransport::Stdio { command, args }, pairs("env", env)?)
                }
                (None, Some(url)) if env.is_empty() && args.is_empty() => {
                    (McpTransport::Http { url }, pairs("header", headers)?)
                }
                (None, None) => {
                    return Err(anyhow!(
                        "give --command (a stdio server) or --url (an HTTP server)"
                    ));
                }
                _ => {
                    return Err(anyhow!(
                        "a stdio server (--command) takes --arg and --env; an HTTP one (--url) takes --header"
                    ));
                }
            };
            let ws = workspace(client, ws).await?;
            let spec = McpServerSpec {
                name,
                transport,
                secrets,
            };
            let (id, servers) = client.set_workspace_mcp_server(ws, spec).await?;
            (id, servers, false)
        }
        McpCommand::Rm {
            name,
            workspace: ws,
        } => {
            let ws = workspace(client, ws).await?;
            let (id, servers) = client.remove_workspace_mcp_server(ws, &name).await?;
            (id, servers, false)
        }
    };
    if json {
        let list: Vec<serde_json::Value> = servers.iter().map(server_json).collect();
        return print_line(&serde_json::Value::Array(list).to_string());
    }
    if servers.is_empty() {
        return print_line(&format!("workspace {id}: no MCP servers"));
    }
    for server in &servers {
        print_line(&line(server))?;
    }
    Ok(())
}

fn line(server: &McpServerInfo) -> String {
    let secrets = if server.secret_names.is_empty() {
        String::new()
    } else {
        format!(
            " [{}: {}]",
            secrets_label(&server.transport),
            server.secret_names.join(", ")
        )
    };
    match &server.transport {
        McpTransport::Stdio { command, args } => format!(
            "{}  stdio  {}{}{secrets}",
            server.name,
            cell(command),
            args.iter()
                .map(|a| format!(" {}", cell(a)))
                .collect::<String>()
        ),
        McpTransport::Http { url } => format!("{}  http  {}{secrets}", server.name, cell(url)),
    }
}

fn secrets_label(transport: &McpTransport) -> &'static str {
    match transport {
        McpTransport::Stdio { .. } => "env",
        McpTransport::Http { .. } => "headers",
    }
}

fn server_json(server: &McpServerInfo) -> serde_json::Value {
    match &server.transport {
        McpTransport::Stdio { command, args } => serde_json::json!({
            "name": server.name, "transport": "stdio", "command": command, "args": args,
            "secrets": server.secret_names,
        }),
        McpTransport::Http { url } => serde_json::json!({
            "name": server.name, "transport": "http", "url": url,
            "secrets": server.secret_names,
        }),
    }
}
