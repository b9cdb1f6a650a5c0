//! A workspace's MCP servers ([`WorkspaceMcp`]), given to its agents in `session/new` /
//! `session/load`. Their env variables or headers are sealed by the proposer with the
//! node's credentials key (one sealed JSON object per server): the log and the store
//! never hold them in the clear.
//!
//! Key: `wm/<workspace uid>` → [`WorkspaceMcp`] (absent: none).

use super::workspaces::owned_workspace;
use super::{Failure, Outcome, Rejection, ShardCommand, ShardRead, Writes, read};
use crate::security::credentials::Sealed;
use serde::{Deserialize, Serialize};
use shoal_protocol::WorkspaceId;
use shoal_protocol::mcp::{MCP_SERVERS_MAX, McpServerInfo, McpTransport};
use std::collections::BTreeMap;

/// One stored MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMcpServer {
    /// How it is reached.
    pub transport: McpTransport,
    /// The names of its env variables (stdio) or headers (http).
    pub secret_names: Vec<String>,
    /// Their values: a JSON object `{name: value}`, sealed ([`sealed_name`]); `None`
    /// when it has none.
    pub sealed: Option<Sealed>,
}

/// A workspace's MCP servers, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceMcp {
    /// The servers.
    pub servers: BTreeMap<String, StoredMcpServer>,
}

impl WorkspaceMcp {
    /// As listed: secret names, no values.
    pub fn infos(&self) -> Vec<McpServerInfo> {
        self.servers
            .iter()
            .map(|(name, s)| McpServerInfo {
                name: name.clone(),
                transport: s.transport.clone(),
                secret_names: s.secret_names.clone(),
            })
            .collect()
    }
}

/// The name a server's secrets are sealed under (the sealing's associated data).
pub fn sealed_name(server: &str) -> String {
    format!("mcp-server:{server}")
}

/// Key of a workspace's MCP servers.
pub fn mcp_key(workspace: WorkspaceId) -> Vec<u8> {
    super::workspaces::uid_key(b"wm/", workspace.uid)
}

/// A workspace's MCP servers as stored.
pub fn load(
    view: &impl ShardRead,
    workspace: WorkspaceId,
) -> Result<WorkspaceMcp, super::ReadError> {
    Ok(read(view, &mcp_key(workspace))?.unwrap_or_default())
}

pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    let (workspace, owner, default) = match cmd {
        ShardCommand::SetWorkspaceMcpServer {
            workspace,
            owner,
            default,
            ..
        }
        | ShardCommand::RemoveWorkspaceMcpServer {
            workspace,
            owner,
            default,
            ..
        } => (*workspace, owner, *default),
        _ => return Err(super::misrouted()),
    };
    owned_workspace(view, workspace, owner, default)?;
    let mut all = load(view, workspace)?;
    match cmd {
        ShardCommand::SetWorkspaceMcpServer { name, server, .. } => {
            if !all.servers.contains_key(name) && all.servers.len() >= MCP_SERVERS_MAX {
                return Err(Rejection::TooMany(format!(
                    "workspace {workspace} already has {MCP_SERVERS_MAX} MCP servers; remove one first"
                ))
                .into());
            }
            all.servers.insert(name.clone(), server.clone());
        }
        ShardCommand::RemoveWorkspaceMcpServer { name, .. } => {
            if all.servers.remove(name).is_none() {
                let names: Vec<&str> = all.servers.keys().map(String::as_str).collect();
                return Err(Rejection::Invalid(format!(
                    "workspace {workspace} has no MCP server `{name}`; it has: {}",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ))
                .into());
            }
        }
        _ => return Err(super::misrouted()),
    }
    if all.servers.is_empty() {
        writes.delete(mcp_key(workspace));
    } else {
        writes.put(mcp_key(workspace), &all);
    }
    Ok(Outcome::McpServers(Box::new(all)))
}
