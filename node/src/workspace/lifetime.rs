//! A workspace's lifetime on disk: archiving idle trees (`workspace.archive_after_ms`)
//! and removing the copies of workspaces hosted elsewhere or deleted.

use super::{
    ManifestCache, SandboxMsg, Saved, WorkspaceError, ask, blocking, check_hosted, io, marker_of,
    marker_path, take_snapshot, write_marker,
};
use crate::context::NodeContext;
use shoal_protocol::WorkspaceId;
use std::sync::Arc;
use std::time::Duration;

/// What [`archive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    /// The live tree is gone; the snapshot (`seq`, 0: an empty tree) stays.
    Removed {
        /// The snapshot the next turn restores.
        seq: u64,
    },
    /// This node no longer hosts the workspace: its stale copy is gone.
    RemovedStale,
    /// An agent started meanwhile, or the tree was used again: kept.
    InUse,
}

/// Removes the live tree of an idle workspace. Where this node hosts it, a last
/// snapshot comes first and the tree stays when it fails (over a limit, no majority):
/// nothing is archived that the snapshot does not hold. Where it does not, the copy is
/// stale (the host restored its own from the snapshot) and goes.
pub(super) async fn archive(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
    cache: &mut ManifestCache,
) -> Result<Archived, WorkspaceError> {
    if ctx.sandboxes.agents_in(workspace) > 0 {
        return Ok(Archived::InUse);
    }
    // A deleted workspace's tree goes, on every node (it has no snapshot to take).
    if ctx.store.workspace_deleted(workspace).map_err(io)? {
        remove(ctx, workspace).await?;
        return Ok(Archived::RemovedStale);
    }
    let root = ctx.workspace_root(workspace);
    let marker = marker_path(ctx, workspace);
    match check_hosted(ctx, workspace.shard) {
        Ok(()) => {
            let seq = match take_snapshot(ctx, workspace, cache).await {
                Ok(Saved::Unchanged { seq } | Saved::Committed { seq, .. }) => seq,
                // Older than the last snapshot: nothing here is worth keeping.
                Err(WorkspaceError::Stale { .. }) => {
                    blocking(ctx, move || {
                        remove_tree(&root)?;
                        write_marker(&marker, None)
                    })
                    .await?;
                    return Ok(Archived::RemovedStale);
                }
                Err(e) => return Err(e),
            };
            if ctx.sandboxes.agents_in(workspace) > 0 {
                return Ok(Archived::InUse);
            }
            blocking(ctx, move || remove_tree(&root)).await?;
            tracing::info!(%workspace, seq, "idle workspace archived: its live directory is removed, its snapshot stays");
            Ok(Archived::Removed { seq })
        }
        Err(_) => {
            blocking(ctx, move || {
                remove_tree(&root)?;
                write_marker(&marker, None)
            })
            .await?;
            tracing::info!(%workspace, "stale copy of a workspace hosted elsewhere removed");
            Ok(Archived::RemovedStale)
        }
    }
}

/// Removes a deleted workspace's tree and marker here.
pub(super) async fn remove(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<(), WorkspaceError> {
    let root = ctx.workspace_root(workspace);
    let marker = marker_path(ctx, workspace);
    blocking(ctx, move || {
        remove_tree(&root)?;
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    })
    .await?;
    tracing::info!(%workspace, "deleted workspace's tree removed");
    Ok(())
}

fn remove_tree(root: &std::path::Path) -> Result<(), WorkspaceError> {
    match std::fs::remove_dir_all(root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
        _ => Ok(()),
    }
}

/// Archives idle workspace trees on this node (`workspace.archive_after_ms`): every
/// tree under `<data_dir>/workspaces/` with no agent running whose marker (touched by
/// every snapshot and restore; the tree itself when it has none) is older than the
/// limit. Off when the key is 0.
pub async fn run_archiver(ctx: Arc<NodeContext>) {
    let Some(after) = ctx.config.workspace.archive_after() else {
        return;
    };
    let period = (after / 8).clamp(Duration::from_secs(1), Duration::from_secs(600));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dir = ctx.config.node.data_dir.join("workspaces");
        let idle = ctx
            .blocking(move || idle_trees(&dir, after))
            .await
            .unwrap_or_default();
        for workspace in idle {
            if ctx.sandboxes.agents_in(workspace) > 0 {
                continue;
            }
            match ask(&ctx, workspace, SandboxMsg::Archive).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%workspace, error = %e, "idle workspace not archived; it is retried later")
                }
            }
        }
    }
}

/// The workspaces under `dir` unused for at least `after`.
fn idle_trees(dir: &std::path::Path, after: Duration) -> Vec<WorkspaceId> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = std::time::SystemTime::now();
    let age = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let workspace: WorkspaceId = e.file_name().to_str()?.parse().ok()?;
            let path = e.path();
            let used = age(&marker_of(&path)).or_else(|| age(&path))?;
            (used >= after).then_some(workspace)
        })
        .collect()
}
