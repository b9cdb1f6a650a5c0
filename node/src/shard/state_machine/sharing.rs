//! Grants on conversations, the sharing lock, the "shared with me" index, and forks
//! imported from another owner's conversation.
//!
//! A grant lives in its conversation's shard, so authorizing a request reads it where
//! the conversation is served. The "shared with me" index lives in the grantee's shard
//! (written after the grant, see the gateway's `sharing` module).
//!
//! Keys: `sg/<conversation uid>/<grant uid>` → [`StoredGrant`];
//! `sq/<owner>/<request id>` → [`GrantId`] (idempotent creation);
//! `sl/<conversation uid>` → `bool` (locked);
//! `sw/<user>/<conversation uid>/<grant uid>` → [`SharedListing`].

use super::history::owned;
use super::{
    ConversationRecord, Failure, Outcome, ReadError, Rejection, ShardCommand, ShardRead, Writes,
    message_key, read, read_all, record,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::sharing::{
    GRANTS_PER_CONVERSATION_MAX, GrantId, GrantInfo, GrantTarget, Role, SharedListing,
};
use shoal_protocol::{ConversationId, RequestId, UserId};

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGrant {
    /// Its id (its conversation in it).
    pub id: GrantId,
    /// The conversation's owner, who made it.
    pub owner: UserId,
    /// The role it gives.
    pub role: Role,
    /// Who it is for.
    pub target: GrantTarget,
    /// SHA-256 of the link token's secret (links and invitations).
    pub secret_hash: Option<[u8; 32]>,
    /// When it was made.
    pub created_at_ms: u64,
    /// When it stops working.
    pub expires_at_ms: Option<u64>,
    /// Times its token was rotated.
    pub rotations: u32,
    /// The request that made it.
    pub request_id: RequestId,
}

impl StoredGrant {
    /// As its owner sees it.
    pub fn info(&self) -> GrantInfo {
        GrantInfo {
            id: self.id,
            role: self.role,
            target: self.target.clone(),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            rotations: self.rotations,
        }
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// Prefix of a conversation's grants.
pub fn grants_prefix(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"sg/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key.push(b'/');
    key
}

/// Prefix of every grant of the shard.
pub const GRANTS_PREFIX: &[u8] = b"sg/";

fn grant_key(grant: GrantId) -> Vec<u8> {
    let mut key = grants_prefix(grant.conversation);
    key.extend_from_slice(&grant.uid.to_be_bytes());
    key
}

fn request_key(owner: &UserId, request_id: RequestId) -> Vec<u8> {
    let mut key = b"sq/".to_vec();
    key.extend_from_slice(owner.0.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&request_id.0.to_be_bytes());
    key
}

fn lock_key(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"sl/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key
}

/// Prefix of a user's "shared with me" index.
pub fn shared_with_prefix(user: &UserId) -> Vec<u8> {
    let mut key = b"sw/".to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key.push(b'/');
    key
}

fn shared_with_key(user: &UserId, grant: GrantId) -> Vec<u8> {
    let mut key = shared_with_prefix(user);
    key.extend_from_slice(&grant.conversation.uid.to_be_bytes());
    key.push(b'/');
    key.extend_from_slice(&grant.uid.to_be_bytes());
    key
}

/// One grant, if it exists.
pub fn grant(view: &impl ShardRead, id: GrantId) -> Result<Option<StoredGrant>, ReadError> {
    read(view, &grant_key(id))
}

/// A conversation's grants.
pub fn conversation_grants(
    view: &impl ShardRead,
    conversation: ConversationId,
) -> Result<Vec<StoredGrant>, ReadError> {
    read_all(view, &grants_prefix(conversation))
}

/// Every grant `owner` made in this shard.
pub fn owner_grants(view: &impl ShardRead, owner: &UserId) -> Result<Vec<StoredGrant>, ReadError> {
    let all: Vec<StoredGrant> = read_all(view, GRANTS_PREFIX)?;
    Ok(all.into_iter().filter(|g| g.owner == *owner).collect())
}

/// Whether sharing of `conversation` is locked.
pub fn locked(view: &impl ShardRead, conversation: ConversationId) -> Result<bool, ReadError> {
    Ok(read::<bool>(view, &lock_key(conversation))?.unwrap_or(false))
}

/// The conversations shared with `user` whose index lives in this shard.
pub fn shared_with(view: &impl ShardRead, user: &UserId) -> Result<Vec<SharedListing>, ReadError> {
    read_all(view, &shared_with_prefix(user))
}

/// The keys of a conversation's grants and lock, removed with it.
pub(super) fn delete_keys(
    view: &impl ShardRead,
    writes: &mut Writes,
    conversation: ConversationId,
) -> Result<(), Failure> {
    for (key, _) in view.scan_prefix(&grants_prefix(conversation))? {
        writes.delete(key);
    }
    writes.delete(lock_key(conversation));
    Ok(())
}

/// The grant, if it exists and `owner` made it.
fn owned_grant(view: &impl ShardRead, id: GrantId, owner: &UserId) -> Result<StoredGrant, Failure> {
    match grant(view, id)? {
        Some(g) if g.owner == *owner => Ok(g),
        _ => Err(Rejection::GrantNotFound(id).into()),
    }
}

/// Applies the sharing commands.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::CreateGrant { grant: new } => {
            owned(view, new.id.conversation, &new.owner)?;
            let req = request_key(&new.owner, new.request_id);
            if let Some(first) = read::<GrantId>(view, &req)?
                && let Some(existing) = grant(view, first)?
            {
                return Ok(Outcome::Grant(Box::new(existing)));
            }
            let existing = conversation_grants(view, new.id.conversation)?;
            if existing.len() >= GRANTS_PER_CONVERSATION_MAX {
                return Err(Rejection::TooMany(format!(
                    "conversation {} already has {GRANTS_PER_CONVERSATION_MAX} grants; revoke one first",
                    new.id.conversation
                ))
                .into());
            }
            writes.put(grant_key(new.id), new);
            writes.put(req, &new.id);
            Ok(Outcome::Grant(Box::new(new.clone())))
        }
        ShardCommand::RevokeGrant { grant: id, owner } => {
            let existed = match grant(view, *id)? {
                Some(g) if g.owner == *owner => {
                    writes.delete(grant_key(*id));
                    true
                }
                _ => false,
            };
            Ok(Outcome::Removed { existed })
        }
        ShardCommand::RotateGrant {
            grant: id,
            owner,
            secret_hash,
        } => {
            let mut g = owned_grant(view, *id, owner)?;
            if matches!(g.target, GrantTarget::User { .. }) {
                return Err(Rejection::Invalid(format!(
                    "grant {id} is for a user and has no token to rotate"
                ))
                .into());
            }
            g.secret_hash = Some(*secret_hash);
            g.rotations += 1;
            writes.put(grant_key(*id), &g);
            Ok(Outcome::Grant(Box::new(g)))
        }
        ShardCommand::BindInvite { grant: id, user } => {
            let mut g = grant(view, *id)?.ok_or(Rejection::GrantNotFound(*id))?;
            if let GrantTarget::Invite { bound_to: None } = g.target {
                g.target = GrantTarget::Invite {
                    bound_to: Some(user.clone()),
                };
                writes.put(grant_key(*id), &g);
            }
            // The caller compares `bound_to` with the user: a retry or a race reads alike.
            Ok(Outcome::Grant(Box::new(g)))
        }
        ShardCommand::SetShareLock {
            conversation,
            owner,
            locked,
        } => {
            owned(view, *conversation, owner)?;
            if *locked {
                writes.put(lock_key(*conversation), &true);
            } else {
                writes.delete(lock_key(*conversation));
            }
            Ok(Outcome::Done)
        }
        ShardCommand::IndexShared { user, listing } => {
            writes.put(shared_with_key(user, listing.grant), listing);
            Ok(Outcome::Done)
        }
        ShardCommand::UnindexShared { user, grant } => {
            writes.delete(shared_with_key(user, *grant));
            Ok(Outcome::Done)
        }
        ShardCommand::ImportConversation {
            record: rec,
            messages,
            default,
            request_id,
        } => {
            super::workspaces::owned_workspace(view, rec.workspace, &rec.owner, *default)?;
            let req_key = super::create_request_key(&rec.owner, *request_id);
            if let Some(first) = read::<ConversationId>(view, &req_key)? {
                return Ok(Outcome::Conversation(Box::new(record(view, first)?)));
            }
            if read::<ConversationRecord>(view, &super::conversation_key(rec.id))?.is_some() {
                return Err(Rejection::Invalid(format!("conversation {} exists", rec.id)).into());
            }
            for message in messages {
                writes.put(message_key(rec.id, message.id), message);
            }
            super::put_new_conversation(writes, rec, req_key);
            Ok(Outcome::Conversation(Box::new(rec.as_ref().clone())))
        }
        _ => Err(super::misrouted()),
    }
}
