//! Workspaces and skill packs in the state machine, and the reads the gateway shares
//! with it (so a request is checked against the same rules it is applied with).
//!
//! A user's workspaces and skill packs live in the user's shard (the shard of the
//! user's default workspace, which is derived from the user id), so creating, renaming,
//! reordering and deleting them, and attaching a pack, are each one command in one
//! shard. Keys:
//! * `ul/<user>` → [`UserWorkspaces`]: the user's workspaces in their order. Absent: the
//!   default workspace alone.
//! * `wr/<workspace uid>` → [`WorkspaceRecord`]. Absent for a default workspace never
//!   renamed or given a pack ([`default_record`] stands in). A deleted workspace keeps
//!   its record as a tombstone (`deleted`), so nothing can be created in it again.
//! * `wc/<workspace uid>/<conversation uid>` → empty: the workspace's conversations.
//! * `sp/<user>/<pack uid>` → [`StoredSkillPack`].
//! * `rw/<user>/<request id>`, `rp/<user>/<request id>` → the workspace or pack a create
//!   request made (idempotency).
//!
//! Commands carry `default`, the owner's default workspace as the proposer derived it:
//! the state machine has no shard count to derive it itself.

use super::{
    ConversationRecord, Failure, Outcome, ReadError, Rejection, ShardCommand, ShardRead, Writes,
    conversation_key, read, workspace_credentials_key, workspace_snapshot_key,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::workspaces::{
    SKILL_PACKS_PER_USER_MAX, SKILL_PACKS_PER_WORKSPACE_MAX, SkillPackSpec, WORKSPACES_PER_USER_MAX,
};
use shoal_protocol::{ConversationId, RequestId, SkillPackId, UserId, WorkspaceId};

/// The name a default workspace has until renamed.
pub const DEFAULT_WORKSPACE_NAME: &str = "default";

/// A user's workspaces in their order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserWorkspaces {
    /// The workspaces, the default one included.
    pub order: Vec<WorkspaceId>,
}

/// A workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    /// Its id.
    pub id: WorkspaceId,
    /// Its owner.
    pub owner: UserId,
    /// Its name.
    pub name: String,
    /// When it was created (0: a default workspace).
    pub created_at_ms: u64,
    /// Attached skill packs, in attach order.
    pub packs: Vec<SkillPackId>,
    /// Deleted: a tombstone.
    pub deleted: bool,
}

/// A skill pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSkillPack {
    /// Its id.
    pub id: SkillPackId,
    /// Its owner.
    pub owner: UserId,
    /// Its content.
    pub spec: SkillPackSpec,
    /// When it was created.
    pub created_at_ms: u64,
    /// When it was last replaced.
    pub updated_at_ms: u64,
}

/// `prefix` followed by a conversation's or workspace's uid (big-endian).
pub(super) fn uid_key(prefix: &[u8], uid: u128) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

fn user_key(prefix: &[u8], user: &UserId) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key.push(b'/');
    key
}

/// Key of a user's workspace list.
pub fn user_workspaces_key(user: &UserId) -> Vec<u8> {
    let mut key = b"ul/".to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key
}

/// Key of a workspace record.
pub fn workspace_record_key(workspace: WorkspaceId) -> Vec<u8> {
    uid_key(b"wr/", workspace.uid)
}

/// Prefix of a workspace's conversation index.
pub fn workspace_conversations_prefix(workspace: WorkspaceId) -> Vec<u8> {
    let mut key = uid_key(b"wc/", workspace.uid);
    key.push(b'/');
    key
}

/// Key of one entry of a workspace's conversation index.
pub fn workspace_conversation_key(workspace: WorkspaceId, conversation: ConversationId) -> Vec<u8> {
    let mut key = workspace_conversations_prefix(workspace);
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key
}

/// Prefix of a user's skill packs.
pub fn skill_packs_prefix(user: &UserId) -> Vec<u8> {
    user_key(b"sp/", user)
}

/// Key of a skill pack.
pub fn skill_pack_key(user: &UserId, pack: SkillPackId) -> Vec<u8> {
    let mut key = skill_packs_prefix(user);
    key.extend_from_slice(&pack.uid.to_be_bytes());
    key
}

fn request_key(prefix: &[u8], user: &UserId, request_id: RequestId) -> Vec<u8> {
    let mut key = user_key(prefix, user);
    key.extend_from_slice(&request_id.0.to_be_bytes());
    key
}

/// The record of a default workspace never written.
pub fn default_record(owner: &UserId, default: WorkspaceId) -> WorkspaceRecord {
    WorkspaceRecord {
        id: default,
        owner: owner.clone(),
        name: DEFAULT_WORKSPACE_NAME.to_owned(),
        created_at_ms: 0,
        packs: Vec::new(),
        deleted: false,
    }
}

/// [`Rejection::WorkspaceNotFound`] for a deleted workspace; anything else is live (a
/// workspace without a record is a default one: the proposer checked it is the
/// caller's). Guards every write into a workspace against a concurrent delete.
pub fn check_not_deleted(view: &impl ShardRead, workspace: WorkspaceId) -> Result<(), Failure> {
    match read::<WorkspaceRecord>(view, &workspace_record_key(workspace))? {
        Some(rec) if rec.deleted => Err(Rejection::WorkspaceNotFound(workspace).into()),
        _ => Ok(()),
    }
}

/// `owner`'s workspace `workspace`, or [`Rejection::WorkspaceNotFound`] (another user's,
/// deleted, or no such workspace: the same answer, so ids of others cannot be probed).
pub fn owned_workspace(
    view: &impl ShardRead,
    workspace: WorkspaceId,
    owner: &UserId,
    default: WorkspaceId,
) -> Result<WorkspaceRecord, Failure> {
    match read::<WorkspaceRecord>(view, &workspace_record_key(workspace))? {
        Some(rec) if rec.owner == *owner && !rec.deleted => Ok(rec),
        None if workspace == default => Ok(default_record(owner, default)),
        _ => Err(Rejection::WorkspaceNotFound(workspace).into()),
    }
}

/// Checks that `owner` may put a conversation into `workspace`: its record, when it has
/// one, is `owner`'s and not deleted; one without a record is a default workspace (the
/// proposer checked it is `owner`'s).
pub fn owned_conversation_workspace(
    view: &impl ShardRead,
    workspace: WorkspaceId,
    owner: &UserId,
) -> Result<(), Failure> {
    match read::<WorkspaceRecord>(view, &workspace_record_key(workspace))? {
        Some(ws) if ws.deleted || ws.owner != *owner => {
            Err(Rejection::WorkspaceNotFound(workspace).into())
        }
        _ => Ok(()),
    }
}

/// `owner`'s workspaces in their order.
pub fn user_workspaces(
    view: &impl ShardRead,
    owner: &UserId,
    default: WorkspaceId,
) -> Result<Vec<WorkspaceRecord>, Failure> {
    let order = read::<UserWorkspaces>(view, &user_workspaces_key(owner))?
        .map_or_else(|| vec![default], |l| l.order);
    order
        .into_iter()
        .map(|id| owned_workspace(view, id, owner, default))
        .collect()
}

/// `owner`'s skill packs, by id.
pub fn user_skill_packs(
    view: &impl ShardRead,
    owner: &UserId,
) -> Result<Vec<StoredSkillPack>, ReadError> {
    super::read_all(view, &skill_packs_prefix(owner))
}

/// `owner`'s skill pack, or [`Rejection::SkillPackNotFound`].
pub fn owned_skill_pack(
    view: &impl ShardRead,
    owner: &UserId,
    pack: SkillPackId,
) -> Result<StoredSkillPack, Failure> {
    read(view, &skill_pack_key(owner, pack))?
        .ok_or_else(|| Rejection::SkillPackNotFound(pack).into())
}

/// The conversations of a workspace.
pub fn workspace_conversations(
    view: &impl ShardRead,
    workspace: WorkspaceId,
) -> Result<Vec<ConversationId>, ReadError> {
    let prefix = workspace_conversations_prefix(workspace);
    let mut out = Vec::new();
    for (key, _) in view.scan_prefix(&prefix)? {
        let uid: [u8; 16] = key[prefix.len()..]
            .try_into()
            .map_err(|_| ReadError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                message: "not a conversation index key".to_owned(),
            })?;
        out.push(ConversationId::new(
            workspace.shard,
            u128::from_be_bytes(uid),
        ));
    }
    Ok(out)
}

/// [`Rejection::NameTaken`] when `name` equals, without regard to case, one of `others`
/// (the names of the owner's other workspaces or packs); `what` names the kind.
fn name_free<'a>(
    mut others: impl Iterator<Item = &'a str>,
    name: &str,
    what: &str,
) -> Result<(), Failure> {
    let wanted = name.to_lowercase();
    if others.any(|other| other.to_lowercase() == wanted) {
        return Err(Rejection::NameTaken(format!("a {what} named `{name}`")).into());
    }
    Ok(())
}

fn name_taken(
    view: &impl ShardRead,
    owner: &UserId,
    default: WorkspaceId,
    name: &str,
    except: WorkspaceId,
) -> Result<(), Failure> {
    let list = user_workspaces(view, owner, default)?;
    let others = list
        .iter()
        .filter(|w| w.id != except)
        .map(|w| w.name.as_str());
    name_free(others, name, "workspace")
}

fn put_list(writes: &mut Writes, owner: &UserId, list: &[WorkspaceRecord]) {
    let order = UserWorkspaces {
        order: list.iter().map(|w| w.id).collect(),
    };
    writes.put(user_workspaces_key(owner), &order);
}

/// Applies the workspace and skill-pack commands.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::CreateWorkspace {
            id,
            owner,
            default,
            name,
            at_ms,
            request_id,
        } => create_workspace(
            view,
            writes,
            *id,
            owner,
            *default,
            name,
            *at_ms,
            *request_id,
        ),
        ShardCommand::RenameWorkspace {
            workspace,
            owner,
            default,
            name,
        } => {
            let mut rec = owned_workspace(view, *workspace, owner, *default)?;
            name_taken(view, owner, *default, name, *workspace)?;
            rec.name = name.clone();
            writes.put(workspace_record_key(*workspace), &rec);
            Ok(Outcome::Workspace(Box::new(rec)))
        }
        ShardCommand::MoveWorkspace {
            workspace,
            owner,
            default,
            position,
        } => {
            let mut list = user_workspaces(view, owner, *default)?;
            let from = list
                .iter()
                .position(|w| w.id == *workspace)
                .ok_or(Rejection::WorkspaceNotFound(*workspace))?;
            let rec = list.remove(from);
            let to = (*position as usize).min(list.len());
            list.insert(to, rec);
            put_list(writes, owner, &list);
            Ok(Outcome::Workspaces(list))
        }
        ShardCommand::DeleteWorkspace {
            workspace,
            owner,
            default,
        } => delete_workspace(view, writes, *workspace, owner, *default),
        ShardCommand::CreateSkillPack {
            id,
            owner,
            spec,
            at_ms,
            request_id,
        } => {
            let req_key = request_key(b"rp/", owner, *request_id);
            if let Some(existing) = read::<SkillPackId>(view, &req_key)? {
                return Ok(Outcome::SkillPack(Box::new(owned_skill_pack(
                    view, owner, existing,
                )?)));
            }
            let packs = user_skill_packs(view, owner)?;
            if packs.len() >= SKILL_PACKS_PER_USER_MAX {
                return Err(Rejection::TooMany(format!(
                    "you have {SKILL_PACKS_PER_USER_MAX} skill packs, the limit; delete one first"
                ))
                .into());
            }
            pack_name_free(&packs, &spec.name, *id)?;
            let pack = StoredSkillPack {
                id: *id,
                owner: owner.clone(),
                spec: spec.clone(),
                created_at_ms: *at_ms,
                updated_at_ms: *at_ms,
            };
            writes.put(skill_pack_key(owner, *id), &pack);
            writes.put(req_key, id);
            Ok(Outcome::SkillPack(Box::new(pack)))
        }
        ShardCommand::UpdateSkillPack {
            id,
            owner,
            spec,
            at_ms,
        } => {
            let mut pack = owned_skill_pack(view, owner, *id)?;
            pack_name_free(&user_skill_packs(view, owner)?, &spec.name, *id)?;
            pack.spec = spec.clone();
            pack.updated_at_ms = *at_ms;
            writes.put(skill_pack_key(owner, *id), &pack);
            Ok(Outcome::SkillPack(Box::new(pack)))
        }
        ShardCommand::DeleteSkillPack { id, owner, default } => {
            owned_skill_pack(view, owner, *id)?;
            let mut detached = Vec::new();
            for mut rec in user_workspaces(view, owner, *default)? {
                if let Some(at) = rec.packs.iter().position(|p| p == id) {
                    rec.packs.remove(at);
                    writes.put(workspace_record_key(rec.id), &rec);
                    detached.push(rec.id);
                }
            }
            writes.delete(skill_pack_key(owner, *id));
            Ok(Outcome::SkillPackDeleted { detached })
        }
        ShardCommand::AttachSkillPack {
            workspace,
            owner,
            default,
            pack,
        } => {
            let mut rec = owned_workspace(view, *workspace, owner, *default)?;
            owned_skill_pack(view, owner, *pack)?;
            if !rec.packs.contains(pack) {
                if rec.packs.len() >= SKILL_PACKS_PER_WORKSPACE_MAX {
                    return Err(Rejection::TooMany(format!(
                        "workspace {workspace} has {SKILL_PACKS_PER_WORKSPACE_MAX} skill packs attached, the limit; detach one first"
                    ))
                    .into());
                }
                rec.packs.push(*pack);
                writes.put(workspace_record_key(*workspace), &rec);
            }
            Ok(Outcome::Workspace(Box::new(rec)))
        }
        ShardCommand::DetachSkillPack {
            workspace,
            owner,
            default,
            pack,
        } => {
            let mut rec = owned_workspace(view, *workspace, owner, *default)?;
            let Some(at) = rec.packs.iter().position(|p| p == pack) else {
                return Err(Rejection::SkillPackNotFound(*pack).into());
            };
            rec.packs.remove(at);
            writes.put(workspace_record_key(*workspace), &rec);
            Ok(Outcome::Workspace(Box::new(rec)))
        }
        _ => Err(super::misrouted()),
    }
}

fn pack_name_free(
    packs: &[StoredSkillPack],
    name: &str,
    except: SkillPackId,
) -> Result<(), Failure> {
    let others = packs
        .iter()
        .filter(|p| p.id != except)
        .map(|p| p.spec.name.as_str());
    name_free(others, name, "skill pack")
}

#[allow(clippy::too_many_arguments)]
fn create_workspace(
    view: &impl ShardRead,
    writes: &mut Writes,
    id: WorkspaceId,
    owner: &UserId,
    default: WorkspaceId,
    name: &str,
    at_ms: u64,
    request_id: RequestId,
) -> Result<Outcome, Failure> {
    let req_key = request_key(b"rw/", owner, request_id);
    if let Some(existing) = read::<WorkspaceId>(view, &req_key)? {
        let rec = owned_workspace(view, existing, owner, default)?;
        return Ok(Outcome::Workspace(Box::new(rec)));
    }
    let mut list = user_workspaces(view, owner, default)?;
    if list.len() >= WORKSPACES_PER_USER_MAX {
        return Err(Rejection::TooMany(format!(
            "you have {WORKSPACES_PER_USER_MAX} workspaces, the limit; delete one first"
        ))
        .into());
    }
    if read::<WorkspaceRecord>(view, &workspace_record_key(id))?.is_some() || id == default {
        return Err(Rejection::Invalid(format!("workspace id {id} is already used")).into());
    }
    name_taken(view, owner, default, name, id)?;
    let rec = WorkspaceRecord {
        id,
        owner: owner.clone(),
        name: name.to_owned(),
        created_at_ms: at_ms,
        packs: Vec::new(),
        deleted: false,
    };
    writes.put(workspace_record_key(id), &rec);
    writes.put(req_key, &id);
    list.push(rec.clone());
    put_list(writes, owner, &list);
    Ok(Outcome::Workspace(Box::new(rec)))
}

fn delete_workspace(
    view: &impl ShardRead,
    writes: &mut Writes,
    workspace: WorkspaceId,
    owner: &UserId,
    default: WorkspaceId,
) -> Result<Outcome, Failure> {
    if workspace == default {
        return Err(Rejection::Invalid(
            "the default workspace cannot be deleted (delete its conversations instead)".to_owned(),
        )
        .into());
    }
    let mut rec = owned_workspace(view, workspace, owner, default)?;
    let conversations = workspace_conversations(view, workspace)?;
    let mut records = Vec::with_capacity(conversations.len());
    for id in &conversations {
        if let Some(c) = read::<ConversationRecord>(view, &conversation_key(*id))? {
            if let Some(running) = &c.running_turn {
                return Err(Rejection::WorkspaceBusy {
                    conversation: *id,
                    turn: running.turn,
                }
                .into());
            }
            records.push(c);
        }
    }
    for c in &records {
        super::history::delete_keys(view, writes, c)?;
    }
    for id in &conversations {
        writes.delete(workspace_conversation_key(workspace, *id));
    }
    writes.delete(workspace_snapshot_key(workspace));
    writes.delete(workspace_credentials_key(workspace));
    writes.delete(super::permissions::permissions_key(workspace));
    writes.delete(super::mcp::mcp_key(workspace));
    let list: Vec<WorkspaceRecord> = user_workspaces(view, owner, default)?
        .into_iter()
        .filter(|w| w.id != workspace)
        .collect();
    put_list(writes, owner, &list);
    rec.deleted = true;
    rec.packs.clear();
    writes.put(workspace_record_key(workspace), &rec);
    Ok(Outcome::WorkspaceDeleted { conversations })
}
