//! Workspace credential requests: set (sealed here, only ciphertext is proposed), list
//! (names and times) and delete. Only the workspace's owner may; the value never leaves
//! this module except sealed.

use super::Peer;
use crate::actors::conversation::propose_error;
use crate::context::NodeContext;
use crate::security::credentials::{CredentialsKey, check_name, check_value};
use crate::shard::state_machine::{Outcome, ShardCommand};
use shoal_protocol::client::{CredentialInfo, Secret};
use shoal_protocol::{ErrorCode, WireError, WorkspaceId};

/// The caller's workspace a credential request addresses (`None`: the default one).
fn workspace_of(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
) -> Result<WorkspaceId, WireError> {
    super::workspaces::owned(ctx, peer, workspace).map(|w| w.id)
}

fn key(ctx: &NodeContext) -> Result<&CredentialsKey, WireError> {
    ctx.credentials_key.as_ref().ok_or_else(|| {
        WireError::new(
            ErrorCode::Unavailable,
            "workspace credentials are disabled on this node: set `auth.credentials_key_path` (the same key file on every node)",
        )
    })
}

pub(super) async fn set(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    name: String,
    value: Secret,
) -> Result<(), WireError> {
    let workspace = workspace_of(ctx, peer, workspace)?;
    check_name(&name).map_err(|e| WireError::invalid("name", e))?;
    check_value(&value.0).map_err(|e| WireError::invalid("value", e))?;
    let sealed = key(ctx)?
        .seal(workspace, &name, &value.0)
        .map_err(|e| ctx.internal_error("seal a credential", e))?;
    drop(value);
    let cmd = ShardCommand::SetCredential {
        workspace,
        name,
        sealed,
        at_ms: ctx.now_ms(),
    };
    match ctx.cluster.propose(workspace.shard, cmd).await {
        Ok(_) => Ok(()),
        Err(e) => Err(propose_error(ctx, "set a credential", e)),
    }
}

pub(super) fn list(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
) -> Result<Vec<CredentialInfo>, WireError> {
    let workspace = workspace_of(ctx, peer, workspace)?;
    let stored = ctx
        .store
        .workspace_credentials(workspace)
        .map_err(|e| ctx.internal_error("list credentials", e))?;
    Ok(stored
        .entries
        .iter()
        .map(|(name, c)| CredentialInfo {
            name: name.clone(),
            created_at_ms: c.created_at_ms,
            updated_at_ms: c.updated_at_ms,
        })
        .collect())
}

pub(super) async fn delete(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    name: String,
) -> Result<bool, WireError> {
    let workspace = workspace_of(ctx, peer, workspace)?;
    crate::security::credentials::check_shape(&name).map_err(|e| WireError::invalid("name", e))?;
    let cmd = ShardCommand::DeleteCredential { workspace, name };
    match ctx.cluster.propose(workspace.shard, cmd).await {
        Ok(Outcome::Removed { existed }) => Ok(existed),
        Ok(other) => Err(ctx.internal_error(
            "delete a credential",
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(propose_error(ctx, "delete a credential", e)),
    }
}
