//! The MCP servers an agent process gets: its own from the node config
//! (`[agents.<id>.mcp.<name>]`), then its workspace's (which replace the agent's of the
//! same name), their sealed env variables and headers opened with the node's
//! credentials key. A workspace server with secrets is left out of a process started
//! without the workspace's credentials (an editor's turn): they are the owner's.
//!
//! What is left out is said to the owner by name only, never with a value.

use crate::agent_process::{McpServer, McpServerTransport};
use crate::context::NodeContext;
use crate::shard::state_machine::mcp::{StoredMcpServer, sealed_name};
use shoal_cluster_config::AgentMcpServer;
use shoal_protocol::WorkspaceId;
use shoal_protocol::mcp::McpTransport;
use std::collections::BTreeMap;

/// The servers for a process of `agent` in `workspace`, and warnings for the owner.
pub(super) fn servers(
    ctx: &NodeContext,
    agent: &str,
    workspace: WorkspaceId,
    credentials: bool,
) -> (Vec<McpServer>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut servers: BTreeMap<String, McpServer> = ctx
        .config
        .agents
        .iter()
        .find(|(name, _)| name.as_str() == agent)
        .map(|(_, spec)| {
            spec.mcp
                .iter()
                .map(|(name, server)| (name.clone(), from_config(name, server)))
                .collect()
        })
        .unwrap_or_default();
    let stored = match ctx.store.workspace_mcp(workspace) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(%workspace, error = %e, "cannot read the workspace's MCP servers");
            warnings.push(
                "the workspace's MCP servers could not be read; the agent starts without them"
                    .to_owned(),
            );
            return (servers.into_values().collect(), warnings);
        }
    };
    for (name, server) in &stored.servers {
        match from_workspace(ctx, workspace, name, server, credentials) {
            Ok(server) => {
                servers.insert(name.clone(), server);
            }
            Err(why) => warnings.push(format!("MCP server `{name}` left out: {why}")),
        }
    }
    (servers.into_values().collect(), warnings)
}

fn from_config(name: &str, server: &AgentMcpServer) -> McpServer {
    let pairs = |map: &BTreeMap<String, String>| -> Vec<(String, String)> {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let transport = match server {
        AgentMcpServer::Stdio { command, args, env } => McpServerTransport::Stdio {
            command: command.clone(),
            args: args.clone(),
            env: pairs(env),
        },
        AgentMcpServer::Http { url, headers } => McpServerTransport::Http {
            url: url.clone(),
            headers: pairs(headers),
        },
    };
    McpServer {
        name: name.to_owned(),
        transport,
    }
}

fn from_workspace(
    ctx: &NodeContext,
    workspace: WorkspaceId,
    name: &str,
    server: &StoredMcpServer,
    credentials: bool,
) -> Result<McpServer, String> {
    let secrets: Vec<(String, String)> = match &server.sealed {
        None => Vec::new(),
        Some(_) if !credentials => {
            return Err(
                "its env variables or headers are the workspace owner's, and this turn runs without the owner's credentials"
                    .to_owned(),
            );
        }
        Some(sealed) => {
            let key = ctx.credentials_key.as_ref().ok_or(
                "this node has no `auth.credentials_key_path` to open its env variables or headers",
            )?;
            let json = key.open(workspace, &sealed_name(name), sealed)?;
            let values: BTreeMap<String, String> = serde_json::from_str(&json)
                .map_err(|_| "its sealed env variables or headers are damaged".to_owned())?;
            values.into_iter().collect()
        }
    };
    let transport = match &server.transport {
        McpTransport::Stdio { command, args } => McpServerTransport::Stdio {
            command: command.clone(),
            args: args.clone(),
            env: secrets,
        },
        McpTransport::Http { url } => McpServerTransport::Http {
            url: url.clone(),
            headers: secrets,
        },
    };
    Ok(McpServer {
        name: name.to_owned(),
        transport,
    })
}
