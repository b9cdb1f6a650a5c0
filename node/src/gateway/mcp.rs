//! `SetWorkspaceMcpServer`, `RemoveWorkspaceMcpServer`, `ListWorkspaceMcpServers`: a
//! workspace's MCP servers, owner only. A server's env variables or headers are sealed
//! here with the node's credentials key before they are proposed, and never answered.

use super::Peer;
use super::workspaces::{owned, propose, read};
use crate::context::NodeContext;
use crate::shard::state_machine::mcp::{self, StoredMcpServer};
use crate::shard::state_machine::{Outcome, ShardCommand};
use shoal_protocol::mcp::{McpServerInfo, McpServerSpec, check_server, check_server_name};
use shoal_protocol::{ErrorCode, WireError, WorkspaceId};

type Listed = (WorkspaceId, Vec<McpServerInfo>);

/// The servers of the caller's `workspace` (default: their default workspace).
pub(super) fn list(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
) -> Result<Listed, WireError> {
    let id = owned(ctx, peer, workspace)?.id;
    let all = read(ctx, peer, "list a workspace's MCP servers", |view| {
        Ok(mcp::load(view, id)?)
    })?;
    Ok((id, all.infos()))
}

/// Adds or replaces `server` in the caller's `workspace`.
pub(super) async fn set(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    server: McpServerSpec,
) -> Result<Listed, WireError> {
    check_server(&server).map_err(|e| WireError::invalid("server", e))?;
    let id = owned(ctx, peer, workspace)?.id;
    let sealed = if server.secrets.is_empty() {
        None
    } else {
        let key = ctx.credentials_key.as_ref().ok_or_else(|| {
            WireError::new(
                ErrorCode::Unavailable,
                "MCP server env variables and headers are sealed like workspace credentials, which are disabled on this node: set `auth.credentials_key_path` (the same key file on every node), or add the server without them",
            )
        })?;
        let values: serde_json::Map<String, serde_json::Value> = server
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone().into()))
            .collect();
        let json = serde_json::Value::Object(values).to_string();
        Some(
            key.seal(id, &mcp::sealed_name(&server.name), &json)
                .map_err(|e| ctx.internal_error("seal an MCP server's values", e))?,
        )
    };
    let default = ctx.default_workspace(&peer.user);
    let cmd = ShardCommand::SetWorkspaceMcpServer {
        workspace: id,
        owner: peer.user.clone(),
        default,
        name: server.name.clone(),
        server: StoredMcpServer {
            transport: server.transport,
            secret_names: server.secrets.into_keys().collect(),
            sealed,
        },
    };
    answer(
        ctx,
        id,
        propose(ctx, "set an MCP server", cmd, default.shard).await?,
    )
}

/// Removes server `name` of the caller's `workspace`.
pub(super) async fn remove(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    name: String,
) -> Result<Listed, WireError> {
    check_server_name(&name).map_err(|e| WireError::invalid("name", e))?;
    let id = owned(ctx, peer, workspace)?.id;
    let default = ctx.default_workspace(&peer.user);
    let cmd = ShardCommand::RemoveWorkspaceMcpServer {
        workspace: id,
        owner: peer.user.clone(),
        default,
        name,
    };
    answer(
        ctx,
        id,
        propose(ctx, "remove an MCP server", cmd, default.shard).await?,
    )
}

fn answer(ctx: &NodeContext, id: WorkspaceId, outcome: Outcome) -> Result<Listed, WireError> {
    match outcome {
        Outcome::McpServers(all) => Ok((id, all.infos())),
        other => Err(ctx.internal_error(
            "change a workspace's MCP servers",
            format!("unexpected outcome {other:?}"),
        )),
    }
}
