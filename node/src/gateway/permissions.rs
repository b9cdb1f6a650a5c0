//! `GetWorkspacePermissions`, `SetWorkspacePermissions`: a workspace's permission
//! policy, owner only (a workspace that is not the caller's reads as missing).

use super::Peer;
use super::workspaces::{owned, propose, read};
use crate::context::NodeContext;
use crate::shard::state_machine::{Outcome, ShardCommand, permissions};
use shoal_protocol::permissions::PermissionPolicy;
use shoal_protocol::{WireError, WorkspaceId};

/// The policy of the caller's `workspace` (default: their default workspace).
pub(super) fn get(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
) -> Result<(WorkspaceId, PermissionPolicy), WireError> {
    let id = owned(ctx, peer, workspace)?.id;
    let policy = read(ctx, peer, "read a workspace's permissions", |view| {
        Ok(permissions::load(view, id)?)
    })?;
    Ok((id, policy))
}

/// Replaces the policy of the caller's `workspace`.
pub(super) async fn set(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    policy: PermissionPolicy,
) -> Result<(WorkspaceId, PermissionPolicy), WireError> {
    policy
        .check()
        .map_err(|e| WireError::invalid("policy", e))?;
    let id = owned(ctx, peer, workspace)?.id;
    let default = ctx.default_workspace(&peer.user);
    let cmd = ShardCommand::SetWorkspacePermissions {
        workspace: id,
        owner: peer.user.clone(),
        default,
        policy: policy.clone(),
    };
    match propose(ctx, "set a workspace's permissions", cmd, default.shard).await? {
        Outcome::Done => Ok((id, policy)),
        other => Err(ctx.internal_error(
            "set a workspace's permissions",
            format!("unexpected outcome {other:?}"),
        )),
    }
}
