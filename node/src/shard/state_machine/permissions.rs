//! A workspace's permission policy ([`PermissionPolicy`]): how its agents' permission
//! requests are answered — asked, allowed or denied, by default and per tool kind. It
//! wins over the agents' own policies (`[agents.<id>.permissions]`).
//!
//! Key: `wp/<workspace uid>` → [`PermissionPolicy`] (absent: no rules).

use super::workspaces::owned_workspace;
use super::{Failure, Outcome, ShardCommand, ShardRead, Writes, read};
use shoal_protocol::WorkspaceId;
use shoal_protocol::permissions::PermissionPolicy;

/// Key of a workspace's permission policy.
pub fn permissions_key(workspace: WorkspaceId) -> Vec<u8> {
    super::workspaces::uid_key(b"wp/", workspace.uid)
}

/// A workspace's policy as stored (empty when none is).
pub fn load(
    view: &impl ShardRead,
    workspace: WorkspaceId,
) -> Result<PermissionPolicy, super::ReadError> {
    Ok(read(view, &permissions_key(workspace))?.unwrap_or_default())
}

pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::SetWorkspacePermissions {
            workspace,
            owner,
            default,
            policy,
        } => {
            owned_workspace(view, *workspace, owner, *default)?;
            if policy.is_empty() {
                writes.delete(permissions_key(*workspace));
            } else {
                writes.put(permissions_key(*workspace), policy);
            }
            Ok(Outcome::Done)
        }
        _ => Err(super::misrouted()),
    }
}
