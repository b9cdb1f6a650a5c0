//! The skill packs attached to a workspace, from the replicated store into its tree
//! ([`super::packs`] does the files).

use super::packs::{self, AttachedPack, Synced};
use super::{WorkspaceError, blocking, io};
use crate::context::NodeContext;
use shoal_protocol::WorkspaceId;
use std::sync::Arc;

/// Syncs the tree here with the packs attached now. With `only_if_present`, a tree
/// that is not here is left alone (it gets the files when an agent next starts in it:
/// creating it now would make an archived tree look present).
pub(super) async fn sync(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
    only_if_present: bool,
) -> Result<Synced, WorkspaceError> {
    let root = ctx.workspace_root(workspace);
    if only_if_present && !root.is_dir() {
        return Ok(Synced::default());
    }
    let attached: Vec<AttachedPack> = ctx
        .store
        .workspace_packs(workspace)
        .map_err(io)?
        .into_iter()
        .map(|p| AttachedPack {
            id: p.id,
            spec: p.spec,
        })
        .collect();
    let synced = blocking(ctx, move || packs::sync(&root, &attached).map_err(io)).await?;
    if synced.written + synced.removed > 0 {
        tracing::info!(%workspace, written = synced.written, removed = synced.removed, "skill pack files synced");
    }
    Ok(synced)
}
