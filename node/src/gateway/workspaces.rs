//! Workspace and skill-pack requests. They are served on the leader of the caller's
//! shard, where a user's workspaces and packs live: reads go through the same functions
//! the state machine applies with ([`crate::shard::state_machine::workspaces`]), so a
//! request is checked against the rules it will be applied with.

use super::Peer;
use crate::actors::conversation::propose_error;
use crate::actors::shard_host::ShardHostMsg;
use crate::cluster::ProposeError;
use crate::context::NodeContext;
use crate::shard::state_machine::workspaces::{
    StoredSkillPack, WorkspaceRecord, owned_skill_pack, owned_workspace, user_skill_packs,
    user_workspaces,
};
use crate::shard::state_machine::{Failure, Outcome, ShardCommand};
use ractor::ActorRef;
use shoal_protocol::workspaces::{SkillPackInfo, SkillPackSpec, WorkspaceInfo, check_name};
use shoal_protocol::{RequestId, SkillPackId, WireError, WorkspaceId};
use std::sync::Arc;
use std::time::Duration;

/// The caller's default workspace: it fixes the caller's shard.
fn default_of(ctx: &NodeContext, peer: &Peer) -> WorkspaceId {
    ctx.default_workspace(&peer.user)
}

fn failure(ctx: &NodeContext, context: &str, e: Failure) -> WireError {
    match e {
        Failure::Rejected(r) => propose_error(ctx, context, ProposeError::Rejected(r)),
        Failure::Read(e) => ctx.internal_error(context, e),
    }
}

/// Reads the caller's shard through `read` (a function the state machine also uses).
pub(super) fn read<T>(
    ctx: &NodeContext,
    peer: &Peer,
    context: &str,
    read: impl FnOnce(&sled::Tree) -> Result<T, Failure>,
) -> Result<T, WireError> {
    let view = ctx
        .store
        .view(default_of(ctx, peer).shard)
        .map_err(|e| ctx.internal_error(context, e))?;
    read(view).map_err(|e| failure(ctx, context, e))
}

/// Not found unless `pack` is in the caller's shard (where the caller's packs are, and
/// the shard whose leader serves this request).
fn in_users_shard(ctx: &NodeContext, peer: &Peer, pack: SkillPackId) -> Result<(), WireError> {
    if pack.shard == default_of(ctx, peer).shard {
        Ok(())
    } else {
        Err(WireError::not_found(format!(
            "skill pack {pack} does not exist (or is not yours)"
        )))
    }
}

/// The caller's workspace `workspace` (`None`: the default one), or not found: another
/// user's workspace gets the same answer as one that does not exist.
pub(super) fn owned(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
) -> Result<WorkspaceRecord, WireError> {
    let default = default_of(ctx, peer);
    let workspace = workspace.unwrap_or(default);
    if workspace.shard != default.shard {
        return Err(WireError::not_found(format!(
            "workspace {workspace} does not exist (or is not yours)"
        )));
    }
    read(ctx, peer, "read a workspace", |v| {
        owned_workspace(v, workspace, &peer.user, default)
    })
}

fn info(rec: &WorkspaceRecord, default: WorkspaceId) -> WorkspaceInfo {
    WorkspaceInfo {
        id: rec.id,
        name: rec.name.clone(),
        default: rec.id == default,
        created_at_ms: rec.created_at_ms,
        packs: rec.packs.clone(),
    }
}

pub(super) async fn propose(
    ctx: &NodeContext,
    context: &str,
    cmd: ShardCommand,
    shard: shoal_protocol::ShardId,
) -> Result<Outcome, WireError> {
    ctx.cluster
        .propose(shard, cmd)
        .await
        .map_err(|e| propose_error(ctx, context, e))
}

fn unexpected(ctx: &NodeContext, context: &str, outcome: Outcome) -> WireError {
    ctx.internal_error(context, format!("unexpected outcome {outcome:?}"))
}

fn invalid_name(what: &str, name: &str) -> Result<(), WireError> {
    check_name(what, name).map_err(|e| WireError::invalid("name", e))
}

/// `CreateWorkspace`.
pub(super) async fn create(
    ctx: &NodeContext,
    peer: &Peer,
    name: String,
    request_id: RequestId,
) -> Result<WorkspaceInfo, WireError> {
    invalid_name("workspace name", &name)?;
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::CreateWorkspace {
        id: WorkspaceId::new(default.shard, ctx.random_u128()),
        owner: peer.user.clone(),
        default,
        name,
        at_ms: ctx.now_ms(),
        request_id,
    };
    match propose(ctx, "create a workspace", cmd, default.shard).await? {
        Outcome::Workspace(rec) => Ok(info(&rec, default)),
        other => Err(unexpected(ctx, "create a workspace", other)),
    }
}

/// `ListWorkspaces`.
pub(super) fn list(ctx: &NodeContext, peer: &Peer) -> Result<Vec<WorkspaceInfo>, WireError> {
    let default = default_of(ctx, peer);
    let list = read(ctx, peer, "list workspaces", |v| {
        user_workspaces(v, &peer.user, default)
    })?;
    Ok(list.iter().map(|w| info(w, default)).collect())
}

/// `RenameWorkspace`.
pub(super) async fn rename(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: WorkspaceId,
    name: String,
) -> Result<WorkspaceInfo, WireError> {
    invalid_name("workspace name", &name)?;
    owned(ctx, peer, Some(workspace))?;
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::RenameWorkspace {
        workspace,
        owner: peer.user.clone(),
        default,
        name,
    };
    match propose(ctx, "rename a workspace", cmd, default.shard).await? {
        Outcome::Workspace(rec) => Ok(info(&rec, default)),
        other => Err(unexpected(ctx, "rename a workspace", other)),
    }
}

/// `MoveWorkspace`.
pub(super) async fn reorder(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: WorkspaceId,
    position: u32,
) -> Result<Vec<WorkspaceInfo>, WireError> {
    owned(ctx, peer, Some(workspace))?;
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::MoveWorkspace {
        workspace,
        owner: peer.user.clone(),
        default,
        position,
    };
    match propose(ctx, "move a workspace", cmd, default.shard).await? {
        Outcome::Workspaces(list) => Ok(list.iter().map(|w| info(w, default)).collect()),
        other => Err(unexpected(ctx, "move a workspace", other)),
    }
}

/// `DeleteWorkspace`: after the commit, the deleted conversations' actors are stopped
/// and the tree here is removed (copies on other nodes go with their archiver).
pub(super) async fn delete(
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
    workspace: WorkspaceId,
    confirm_name: String,
) -> Result<u64, WireError> {
    let rec = owned(ctx, peer, Some(workspace))?;
    if confirm_name != rec.name {
        return Err(WireError::invalid(
            "confirm_name",
            format!(
                "to delete workspace {workspace} and all its conversations, repeat its name `{}` exactly",
                rec.name
            ),
        ));
    }
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::DeleteWorkspace {
        workspace,
        owner: peer.user.clone(),
        default,
    };
    let listed = super::sharing::listed_grants(ctx, default.shard, &peer.user);
    let conversations = match propose(ctx, "delete a workspace", cmd, default.shard).await? {
        Outcome::WorkspaceDeleted { conversations } => conversations,
        other => return Err(unexpected(ctx, "delete a workspace", other)),
    };
    super::sharing::unlist_deleted(ctx, listed, &conversations).await;
    for id in &conversations {
        let _ = host
            .call(
                |reply| ShardHostMsg::Evict { id: *id, reply },
                Some(Duration::from_secs(10)),
            )
            .await;
    }
    if let Err(e) = crate::workspace::remove(ctx, workspace).await {
        tracing::warn!(%workspace, error = %e, "deleted workspace's tree not removed here; the archiver removes it later");
    }
    Ok(conversations.len() as u64)
}

fn pack_info(pack: &StoredSkillPack, workspaces: &[WorkspaceRecord]) -> SkillPackInfo {
    SkillPackInfo {
        id: pack.id,
        name: pack.spec.name.clone(),
        has_context: pack.spec.context.is_some(),
        skills: pack.spec.skills.iter().map(|s| s.slug.clone()).collect(),
        bytes: pack.spec.bytes() as u64,
        created_at_ms: pack.created_at_ms,
        updated_at_ms: pack.updated_at_ms,
        attached: workspaces
            .iter()
            .filter(|w| w.packs.contains(&pack.id))
            .map(|w| w.id)
            .collect(),
    }
}

fn pack_with_info(
    ctx: &NodeContext,
    peer: &Peer,
    pack: &StoredSkillPack,
) -> Result<SkillPackInfo, WireError> {
    let default = default_of(ctx, peer);
    let workspaces = read(ctx, peer, "read workspaces", |v| {
        user_workspaces(v, &peer.user, default)
    })?;
    Ok(pack_info(pack, &workspaces))
}

fn check_spec(spec: &SkillPackSpec) -> Result<(), WireError> {
    spec.check().map_err(|e| WireError::invalid("spec", e))
}

/// Brings the trees of `workspaces` here in line with their packs, when this node holds
/// them. A tree that is not here gets its files at its next agent start.
async fn sync_here(ctx: &Arc<NodeContext>, workspaces: &[WorkspaceId]) {
    for workspace in workspaces {
        if let Err(e) = crate::workspace::sync_packs(ctx, *workspace).await {
            tracing::warn!(%workspace, error = %e, "skill pack files not synced now; they are at the next agent start");
        }
    }
}

/// `CreateSkillPack`.
pub(super) async fn create_pack(
    ctx: &NodeContext,
    peer: &Peer,
    spec: SkillPackSpec,
    request_id: RequestId,
) -> Result<SkillPackInfo, WireError> {
    check_spec(&spec)?;
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::CreateSkillPack {
        id: SkillPackId::new(default.shard, ctx.random_u128()),
        owner: peer.user.clone(),
        spec,
        at_ms: ctx.now_ms(),
        request_id,
    };
    match propose(ctx, "create a skill pack", cmd, default.shard).await? {
        Outcome::SkillPack(pack) => pack_with_info(ctx, peer, &pack),
        other => Err(unexpected(ctx, "create a skill pack", other)),
    }
}

/// `UpdateSkillPack`: attached workspaces here get the new files now.
pub(super) async fn update_pack(
    ctx: &Arc<NodeContext>,
    peer: &Peer,
    pack: SkillPackId,
    spec: SkillPackSpec,
) -> Result<SkillPackInfo, WireError> {
    check_spec(&spec)?;
    in_users_shard(ctx, peer, pack)?;
    let default = default_of(ctx, peer);
    let cmd = ShardCommand::UpdateSkillPack {
        id: pack,
        owner: peer.user.clone(),
        spec,
        at_ms: ctx.now_ms(),
    };
    match propose(ctx, "update a skill pack", cmd, default.shard).await? {
        Outcome::SkillPack(pack) => {
            let info = pack_with_info(ctx, peer, &pack)?;
            sync_here(ctx, &info.attached).await;
            Ok(info)
        }
        other => Err(unexpected(ctx, "update a skill pack", other)),
    }
}

/// `ListSkillPacks`, by name.
pub(super) fn list_packs(ctx: &NodeContext, peer: &Peer) -> Result<Vec<SkillPackInfo>, WireError> {
    let default = default_of(ctx, peer);
    let (packs, workspaces) = read(ctx, peer, "list skill packs", |v| {
        Ok((
            user_skill_packs(v, &peer.user)?,
            user_workspaces(v, &peer.user, default)?,
        ))
    })?;
    let mut infos: Vec<SkillPackInfo> = packs.iter().map(|p| pack_info(p, &workspaces)).collect();
    infos.sort_by_key(|p| p.name.to_lowercase());
    Ok(infos)
}

/// `GetSkillPack`.
pub(super) fn get_pack(
    ctx: &NodeContext,
    peer: &Peer,
    pack: SkillPackId,
) -> Result<(SkillPackInfo, SkillPackSpec), WireError> {
    in_users_shard(ctx, peer, pack)?;
    let stored = read(ctx, peer, "read a skill pack", |v| {
        owned_skill_pack(v, &peer.user, pack)
    })?;
    Ok((pack_with_info(ctx, peer, &stored)?, stored.spec))
}

/// `DeleteSkillPack`: detached everywhere; trees here are pruned now.
pub(super) async fn delete_pack(
    ctx: &Arc<NodeContext>,
    peer: &Peer,
    pack: SkillPackId,
) -> Result<u64, WireError> {
    in_users_shard(ctx, peer, pack)?;
    let default = default_of(ctx, peer);
    read(ctx, peer, "read a skill pack", |v| {
        owned_skill_pack(v, &peer.user, pack)
    })?;
    let cmd = ShardCommand::DeleteSkillPack {
        id: pack,
        owner: peer.user.clone(),
        default,
    };
    match propose(ctx, "delete a skill pack", cmd, default.shard).await? {
        Outcome::SkillPackDeleted { detached } => {
            sync_here(ctx, &detached).await;
            Ok(detached.len() as u64)
        }
        other => Err(unexpected(ctx, "delete a skill pack", other)),
    }
}

/// `AttachSkillPack` (`attach`) or `DetachSkillPack`: the tree here is synced now.
pub(super) async fn attach(
    ctx: &Arc<NodeContext>,
    peer: &Peer,
    workspace: Option<WorkspaceId>,
    pack: SkillPackId,
    attach: bool,
) -> Result<WorkspaceInfo, WireError> {
    let rec = owned(ctx, peer, workspace)?;
    in_users_shard(ctx, peer, pack)?;
    let default = default_of(ctx, peer);
    let (owner, workspace) = (peer.user.clone(), rec.id);
    let (cmd, context) = if attach {
        let cmd = ShardCommand::AttachSkillPack {
            workspace,
            owner,
            default,
            pack,
        };
        (cmd, "attach a skill pack")
    } else {
        let cmd = ShardCommand::DetachSkillPack {
            workspace,
            owner,
            default,
            pack,
        };
        (cmd, "detach a skill pack")
    };
    match propose(ctx, context, cmd, default.shard).await? {
        Outcome::Workspace(rec) => {
            sync_here(ctx, &[workspace]).await;
            Ok(info(&rec, default))
        }
        other => Err(unexpected(ctx, context, other)),
    }
}
