//! Who may do what to a conversation: the one place every conversation request is
//! authorized.
//!
//! A caller is the conversation's **owner**, or holds a **grant** on it: a user grant
//! naming them, an invitation bound to them, or a link token they present. The grant's
//! role ([`Role::Viewer`], [`Role::Editor`]) decides what they may do ([`Need`]); the
//! owner may do everything. Grants are read from the conversation's shard on the node
//! that serves it (its leader), so a revoke committed there is seen by the next request.
//!
//! Wrong link tokens are counted per user; after [`SHARE_FAILURES_MAX`] within
//! [`SHARE_FAILURE_WINDOW_MS`] every share token of that user is refused until the window
//! ends. Secrets are compared as SHA-256 hashes in constant time.

use crate::context::NodeContext;
use crate::shard::state_machine::sharing::{self as records, StoredGrant};
use ring::digest;
use shoal_protocol::sharing::{GrantId, GrantTarget, Role, ShareToken};
use shoal_protocol::{ConversationId, ErrorCode, UserId, WireError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong share tokens a user may present within [`SHARE_FAILURE_WINDOW_MS`].
pub const SHARE_FAILURES_MAX: u32 = 10;
/// The window over which wrong share tokens are counted, in ms.
pub const SHARE_FAILURE_WINDOW_MS: u64 = 60_000;
/// Users whose failures are remembered at once (the oldest window is forgotten first).
pub const SHARE_FAILURE_USERS_MAX: usize = 10_000;

/// What the caller is to the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Its owner.
    Owner,
    /// A grant holder.
    Shared {
        /// The grant's role.
        role: Role,
        /// The grant.
        grant: GrantId,
        /// When the grant stops working.
        expires_at_ms: Option<u64>,
        /// Its rotations when resolved (a rotation ends the old token's access).
        rotations: u32,
        /// Whether the owner locked sharing.
        locked: bool,
    },
}

/// An authorized caller of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: UserId,
    /// What they are to the conversation.
    pub access: Access,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read or follow the transcript, fork it.
    Read,
    /// Send, cancel, answer a permission request.
    Write,
    /// Anything else (delete, rewind, rename, queue, grants, settings, usage).
    Owner,
}

impl Caller {
    /// The owner, as the conversation actor's own checks know them.
    pub fn owner(user: UserId) -> Self {
        Self {
            user,
            access: Access::Owner,
        }
    }

    /// Whether this is the owner.
    pub fn is_owner(&self) -> bool {
        self.access == Access::Owner
    }

    /// `Ok` when the caller may do what `need` names; `forbidden` otherwise (the caller
    /// can see the conversation, so its existence is no secret to them).
    pub fn require(&self, need: Need, what: &str) -> Result<(), WireError> {
        let Access::Shared { role, locked, .. } = &self.access else {
            return Ok(());
        };
        match (need, role) {
            (Need::Read, _) => Ok(()),
            (Need::Write, Role::Editor) if !locked => Ok(()),
            (Need::Write, Role::Editor) => Err(WireError::forbidden(format!(
                "the owner locked sharing of this conversation: editors are read-only until it is unlocked ({what} refused)"
            ))),
            (Need::Write, Role::Viewer) => Err(WireError::forbidden(format!(
                "viewers cannot {what}; ask the owner for an editor grant"
            ))),
            (Need::Owner, _) => Err(WireError::forbidden(format!(
                "only the conversation's owner can {what}"
            ))),
        }
    }
}

/// Per-node sharing state: wrong-token counts and a signal that grants changed.
#[derive(Debug)]
pub struct Sharing {
    failures: Mutex<HashMap<UserId, (Instant, u32)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Sharing {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Sharing {
    /// A grant or lock changed on this node: open shared follows check their access again.
    pub fn notify_changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Waits for the next [`Self::notify_changed`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn limited(&self, user: &UserId) -> Result<(), WireError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(user) {
            Some((since, n))
                if *n >= SHARE_FAILURES_MAX
                    && since.elapsed() < Duration::from_millis(SHARE_FAILURE_WINDOW_MS) =>
            {
                let left = Duration::from_millis(SHARE_FAILURE_WINDOW_MS)
                    .saturating_sub(since.elapsed())
                    .as_secs()
                    + 1;
                Err(WireError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many wrong share tokens ({SHARE_FAILURES_MAX} within {} s); retry in {left} s",
                        SHARE_FAILURE_WINDOW_MS / 1000
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, user: &UserId) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = Duration::from_millis(SHARE_FAILURE_WINDOW_MS);
        if failures.len() >= SHARE_FAILURE_USERS_MAX && !failures.contains_key(user) {
            failures.retain(|_, (since, _)| since.elapsed() < window);
            if failures.len() >= SHARE_FAILURE_USERS_MAX
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (since, _))| *since)
                    .map(|(u, _)| u.clone())
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(user.clone()).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// SHA-256 of a link secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    out
}

/// A new random link secret (32 bytes, base64url) and its hash.
pub fn new_secret(ctx: &NodeContext) -> (String, [u8; 32]) {
    use base64::Engine;
    let bytes: Vec<u8> = ctx
        .random_u128()
        .to_le_bytes()
        .into_iter()
        .chain(ctx.random_u128().to_le_bytes())
        .collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = secret_hash(&secret);
    (secret, hash)
}

fn not_found(id: ConversationId) -> WireError {
    WireError::not_found(format!("conversation {id} does not exist"))
}

fn refused_token() -> WireError {
    WireError::forbidden(
        "this share token does not work (revoked, rotated or expired); ask the owner for a new link",
    )
}

/// What a resolved token or grant leads to.
pub enum Resolved {
    /// The caller may act as this.
    Caller(Caller),
    /// An unbound invitation the caller presented: bind it to them, then resolve again.
    Claim(GrantId),
}

/// Who `user` is to `conversation`, presenting `token` or not. No access at all reads
/// like a missing conversation (`not_found`): ids of others' conversations are not
/// disclosed; neither is whether a token names another conversation.
pub fn resolve(
    ctx: &NodeContext,
    user: &UserId,
    conversation: ConversationId,
    token: Option<&str>,
) -> Result<Resolved, WireError> {
    let internal = |e: &dyn std::fmt::Display| ctx.internal_error("authorize a request", e);
    if !ctx.shard_exists(conversation.shard) {
        return Err(not_found(conversation));
    }
    let record = ctx
        .store
        .conversation(conversation)
        .map_err(|e| internal(&e))?
        .ok_or_else(|| not_found(conversation))?;
    if record.owner == *user {
        return Ok(Resolved::Caller(Caller::owner(user.clone())));
    }
    let view = ctx
        .store
        .view(conversation.shard)
        .map_err(|e| internal(&e))?;
    let now = ctx.now_ms();
    let grant = match token {
        Some(text) => {
            let token = ShareToken::parse(text).map_err(|e| WireError::invalid("token", e))?;
            if token.grant.conversation != conversation {
                return Err(not_found(conversation));
            }
            ctx.sharing.limited(user)?;
            let stored = records::grant(view, token.grant).map_err(|e| internal(&e))?;
            let matches = stored.as_ref().is_some_and(|g| {
                g.secret_hash.is_some_and(|hash| {
                    bool::from(subtle::ConstantTimeEq::ct_eq(
                        &hash[..],
                        &secret_hash(&token.secret)[..],
                    ))
                })
            });
            let Some(grant) = stored.filter(|_| matches) else {
                ctx.sharing.failed(user);
                return Err(refused_token());
            };
            if grant.expired(now) {
                return Err(refused_token());
            }
            match &grant.target {
                GrantTarget::Invite { bound_to: None } => return Ok(Resolved::Claim(grant.id)),
                GrantTarget::Invite {
                    bound_to: Some(bound),
                } if bound != user => {
                    return Err(WireError::forbidden(
                        "this invitation was claimed by another user; ask the owner for your own",
                    ));
                }
                _ => grant,
            }
        }
        None => records::conversation_grants(view, conversation)
            .map_err(|e| internal(&e))?
            .into_iter()
            .filter(|g| !g.expired(now) && held_by(g, user))
            .max_by_key(|g| g.role)
            .ok_or_else(|| not_found(conversation))?,
    };
    let locked = records::locked(view, conversation).map_err(|e| internal(&e))?;
    Ok(Resolved::Caller(Caller {
        user: user.clone(),
        access: Access::Shared {
            role: grant.role,
            grant: grant.id,
            expires_at_ms: grant.expires_at_ms,
            rotations: grant.rotations,
            locked,
        },
    }))
}

/// Whether `grant` names `user` without a token (a user grant or a bound invitation).
fn held_by(grant: &StoredGrant, user: &UserId) -> bool {
    match &grant.target {
        GrantTarget::User { user: u } => u == user,
        GrantTarget::Invite { bound_to } => bound_to.as_ref() == Some(user),
        GrantTarget::Link => false,
    }
}

/// Whether `caller` still has the access it was given (after a grant changed): its
/// grant exists, has not expired, and gives the same role.
pub fn still_valid(ctx: &NodeContext, conversation: ConversationId, caller: &Caller) -> bool {
    let Access::Shared {
        grant,
        role,
        rotations,
        ..
    } = &caller.access
    else {
        return true;
    };
    let Ok(view) = ctx.store.view(conversation.shard) else {
        return false;
    };
    matches!(
        records::grant(view, *grant),
        Ok(Some(g)) if g.role == *role && g.rotations == *rotations && !g.expired(ctx.now_ms())
    )
}
