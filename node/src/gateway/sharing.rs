//! Sharing requests: authorizing every conversation request ([`authorize`]), what a
//! viewer or editor gets instead of the owner's answer ([`shared_request`]), and the
//! owner's grant management ([`owner_request`]).
//!
//! Cross-shard writes (a grantee's "shared with me" entry, a shared conversation forked
//! into the caller's workspace) are proposed on the target shard's leader with
//! [`propose_in`]. The index entry is written after the grant: if that fails the grant
//! works, the listing misses it, and retrying the request (same request id) writes it.

use super::Peer;
use super::client_api::call;
use crate::actors::conversation::{ConversationMsg, propose_error, summary};
use crate::actors::shard_host::ShardHostMsg;
use crate::cluster::Route;
use crate::context::NodeContext;
use crate::peer::{PeerLane, PeerRequest};
use crate::shard::state_machine::sharing::{self as records, StoredGrant};
use crate::shard::state_machine::{ConversationRecord, Outcome, Rejection, ShardCommand};
use crate::sharing::{Access, Caller, Need, Resolved};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use shoal_protocol::client::{ClientReply, ClientRequest, ConversationSummary};
use shoal_protocol::sharing::{
    GRANT_EXPIRY_MS_MAX, GrantId, GrantInfo, GrantTarget, Role, ShareToken, SharedListing,
    SharedView,
};
use shoal_protocol::transcript::Message;
use shoal_protocol::{
    ConversationId, ErrorCode, MessageId, RequestId, ShardId, UserId, WireError, WorkspaceId,
};
use std::time::Duration;

/// How long a proposal on another node's shard may take.
const REMOTE_PROPOSE_TIMEOUT_MS: u64 = 10_000;

/// What a conversation request needs of its caller, and what it is called in errors.
fn need_of(request: &ClientRequest) -> (Need, &'static str) {
    match request {
        ClientRequest::GetConversation { .. }
        | ClientRequest::Follow { .. }
        | ClientRequest::GetMessages { .. } => (Need::Read, "read the conversation"),
        ClientRequest::ForkConversation { .. } => (Need::Read, "fork the conversation"),
        ClientRequest::SendMessage { .. }
        | ClientRequest::SendNow { .. }
        | ClientRequest::SendWithAttachments { .. } => (Need::Write, "send messages"),
        ClientRequest::CancelTurn { .. } => (Need::Write, "cancel turns"),
        ClientRequest::RespondPermission { .. } => (Need::Write, "answer permission requests"),
        ClientRequest::AttachTurn { .. } => (Need::Write, "attach to the running turn"),
        ClientRequest::RewindConversation { .. } => (Need::Owner, "rewind it"),
        ClientRequest::RenameConversation { .. } => (Need::Owner, "rename it"),
        ClientRequest::DeleteConversation { .. } => (Need::Owner, "delete it"),
        ClientRequest::SetSessionSettings { .. } => (Need::Owner, "change its mode or model"),
        ClientRequest::SwitchAgent { .. } => (Need::Owner, "switch its agent"),
        ClientRequest::CreateGrant { .. }
        | ClientRequest::ListGrants { .. }
        | ClientRequest::RevokeGrant { .. }
        | ClientRequest::RotateGrant { .. }
        | ClientRequest::SetShareLock { .. } => (Need::Owner, "manage its sharing"),
        _ => (Need::Owner, "do this"),
    }
}

/// Authorizes a conversation request: resolves the caller's access (claiming an
/// invitation on its first use) and checks it allows the request.
pub(super) async fn authorize(
    ctx: &NodeContext,
    peer: &Peer,
    conversation: ConversationId,
    request: &ClientRequest,
    token: Option<&str>,
) -> Result<Caller, WireError> {
    let caller = match crate::sharing::resolve(ctx, &peer.user, conversation, token)? {
        Resolved::Caller(caller) => caller,
        Resolved::Claim(grant) => {
            claim(ctx, grant, &peer.user).await?;
            match crate::sharing::resolve(ctx, &peer.user, conversation, token)? {
                Resolved::Caller(caller) => caller,
                Resolved::Claim(_) => {
                    return Err(ctx.internal_error("claim an invitation", "still unbound"));
                }
            }
        }
    };
    let (need, what) = need_of(request);
    caller.require(need, what)?;
    Ok(caller)
}

/// Binds an invitation to `user` (the first to present it) and lists it for them.
async fn claim(ctx: &NodeContext, grant: GrantId, user: &UserId) -> Result<(), WireError> {
    let cmd = ShardCommand::BindInvite {
        grant,
        user: user.clone(),
    };
    let bound = match ctx.cluster.propose(grant.shard(), cmd).await {
        Ok(Outcome::Grant(g)) => *g,
        Ok(other) => return Err(unexpected(ctx, &other)),
        Err(e) => return Err(propose_error(ctx, "claim the invitation", e)),
    };
    ctx.sharing.notify_changed();
    if matches!(&bound.target, GrantTarget::Invite { bound_to: Some(u) } if u == user) {
        index(ctx, &bound, user).await;
    }
    Ok(())
}

/// The answer to a viewer's or editor's request (already authorized for it) where it
/// differs from the owner's: the redacted view, redacted pages, a fork into the
/// caller's own workspace. `None`: served like the owner's (turns, follows, cancel and
/// permission answers take the caller along).
pub(super) async fn shared_request(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
    caller: &Caller,
    request: &ClientRequest,
) -> Option<Result<ClientReply, WireError>> {
    let reply = match request {
        ClientRequest::GetConversation { conversation } => {
            shared_view(ctx, host, caller, *conversation).await
        }
        ClientRequest::GetMessages {
            conversation,
            before,
            limit,
        } => redacted_messages(ctx, *conversation, *before, *limit)
            .map(|(messages, more)| ClientReply::Messages { messages, more }),
        ClientRequest::ForkConversation {
            conversation,
            message,
            parts,
            workspace,
            title,
            request_id,
        } => fork_shared(
            ctx,
            peer,
            *conversation,
            *message,
            *parts,
            *workspace,
            title.clone(),
            *request_id,
        )
        .await
        .map(ClientReply::Created),
        _ => return None,
    };
    Some(reply)
}

/// The redacted view of a shared conversation.
async fn shared_view(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    caller: &Caller,
    conversation: ConversationId,
) -> Result<ClientReply, WireError> {
    let Access::Shared { role, locked, .. } = caller.access else {
        return Err(ctx.internal_error("read a shared conversation", "caller is the owner"));
    };
    let detail = call(host, conversation, |reply| ConversationMsg::Get {
        caller: caller.clone(),
        reply,
    })
    .await?;
    let earlier = detail
        .summary
        .message_count
        .saturating_sub(detail.messages.len() as u64);
    Ok(ClientReply::SharedConversation(Box::new(SharedView {
        conversation,
        role,
        locked,
        title: detail.summary.title,
        turn_running: detail.summary.turn_running,
        messages: detail.messages.iter().map(Message::for_follower).collect(),
        earlier,
        in_flight: detail.in_flight.as_ref().map(Message::for_follower),
    })))
}

/// A page of a shared conversation's messages, as followers read them.
fn redacted_messages(
    ctx: &NodeContext,
    conversation: ConversationId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<(Vec<Message>, bool), WireError> {
    let (messages, more) = super::history::page(ctx, &record(ctx, conversation)?, before, limit)?;
    Ok((messages.iter().map(Message::for_follower).collect(), more))
}

fn record(
    ctx: &NodeContext,
    conversation: ConversationId,
) -> Result<ConversationRecord, WireError> {
    ctx.store
        .conversation(conversation)
        .map_err(|e| ctx.internal_error("read a conversation", e))?
        .ok_or_else(|| WireError::not_found(format!("conversation {conversation} does not exist")))
}

/// A shared conversation forked into one of the caller's workspaces: its committed
/// messages through `upto` (as followers read them), with no usage, grants or agent
/// session of the owner's.
#[allow(clippy::too_many_arguments)]
async fn fork_shared(
    ctx: &NodeContext,
    peer: &Peer,
    source: ConversationId,
    upto: MessageId,
    parts: Option<u32>,
    workspace: Option<WorkspaceId>,
    title: Option<String>,
    request_id: RequestId,
) -> Result<ConversationSummary, WireError> {
    super::history::check_title(title.as_deref())?;
    let original = record(ctx, source)?;
    if upto.0 >= original.message_count {
        return Err(WireError::invalid(
            "message",
            format!(
                "conversation {source} has {} committed messages; fork at one of them",
                original.message_count
            ),
        ));
    }
    let mut messages: Vec<Message> = ctx
        .store
        .messages(source, 0, upto.0 + 1)
        .map_err(|e| ctx.internal_error("read messages", e))?
        .iter()
        .map(Message::for_follower)
        .collect();
    if let (Some(n), Some(last)) = (parts, messages.last_mut()) {
        last.parts.truncate(n as usize);
        last.content = shoal_protocol::transcript::content_from_parts(&last.parts);
    }
    // The caller's workspace: checked by the caller's shard's state machine.
    let default = ctx.default_workspace(&peer.user);
    let workspace = workspace.unwrap_or(default);
    let turns = messages.iter().map(|m| m.turn.0).max().unwrap_or(0);
    let record = ConversationRecord {
        id: ConversationId::new(workspace.shard, ctx.random_u128()),
        workspace,
        owner: peer.user.clone(),
        title: title.or_else(|| {
            Some(crate::shard::state_machine::history::titled(
                "Fork of", &original,
            ))
        }),
        agent: original.agent.clone(),
        created_at_ms: ctx.now_ms(),
        message_count: messages.len() as u64,
        activation: 0,
        turns,
        running_turn: None,
        agent_session: None,
    };
    let cmd = ShardCommand::ImportConversation {
        record: Box::new(record),
        messages,
        default,
        request_id,
    };
    match propose_in(ctx, workspace.shard, cmd).await? {
        Outcome::Conversation(rec) => Ok(summary(&rec)),
        other => Err(unexpected(ctx, &other)),
    }
}

/// The owner's grant requests and "shared with me". `None` for any other request.
pub(super) async fn owner_request(
    ctx: &NodeContext,
    peer: &Peer,
    request: &ClientRequest,
) -> Option<Result<ClientReply, WireError>> {
    let reply = match request {
        ClientRequest::CreateGrant {
            conversation,
            role,
            user,
            invite,
            expires_in_ms,
            request_id,
        } => {
            create_grant(
                ctx,
                peer,
                *conversation,
                *role,
                user.clone(),
                *invite,
                *expires_in_ms,
                *request_id,
            )
            .await
        }
        ClientRequest::ListGrants { conversation } => list_grants(ctx, peer, *conversation),
        ClientRequest::RevokeGrant { grant } => revoke(ctx, peer, *grant).await,
        ClientRequest::RotateGrant { grant } => rotate(ctx, peer, *grant).await,
        ClientRequest::SetShareLock {
            conversation,
            locked,
        } => {
            let cmd = ShardCommand::SetShareLock {
                conversation: *conversation,
                owner: peer.user.clone(),
                locked: *locked,
            };
            match ctx.cluster.propose(conversation.shard, cmd).await {
                Ok(_) => {
                    ctx.sharing.notify_changed();
                    Ok(ClientReply::ShareLock { locked: *locked })
                }
                Err(e) => Err(propose_error(ctx, "lock sharing", e)),
            }
        }
        ClientRequest::SharedWithMe => shared_with_me(ctx, peer),
        _ => return None,
    };
    Some(reply)
}

#[allow(clippy::too_many_arguments)]
async fn create_grant(
    ctx: &NodeContext,
    peer: &Peer,
    conversation: ConversationId,
    role: Role,
    user: Option<UserId>,
    invite: bool,
    expires_in_ms: Option<u64>,
    request_id: RequestId,
) -> Result<ClientReply, WireError> {
    if let Some(ms) = expires_in_ms
        && (ms == 0 || ms > GRANT_EXPIRY_MS_MAX)
    {
        return Err(WireError::invalid(
            "expires_in_ms",
            format!("a grant expires between 1 ms and {GRANT_EXPIRY_MS_MAX} ms (a year) from now"),
        ));
    }
    let (target, secret) = match (user, invite) {
        (Some(_), true) => {
            return Err(WireError::invalid(
                "invite",
                "an invitation is a link bound on first use; name a user or invite, not both",
            ));
        }
        (Some(user), false) if user == peer.user => {
            return Err(WireError::invalid(
                "user",
                "you own this conversation; share it with someone else",
            ));
        }
        (Some(user), false) => {
            let user =
                UserId::parse(&user.0).map_err(|e| WireError::invalid("user", e.to_string()))?;
            (GrantTarget::User { user }, None)
        }
        (None, invite) => {
            let target = if invite {
                GrantTarget::Invite { bound_to: None }
            } else {
                GrantTarget::Link
            };
            (target, Some(crate::sharing::new_secret(ctx)))
        }
    };
    let now = ctx.now_ms();
    let grant = StoredGrant {
        id: GrantId {
            conversation,
            uid: ctx.random_u128() as u64,
        },
        owner: peer.user.clone(),
        role,
        target,
        secret_hash: secret.as_ref().map(|(_, hash)| *hash),
        created_at_ms: now,
        expires_at_ms: expires_in_ms.map(|ms| now.saturating_add(ms)),
        rotations: 0,
        request_id,
    };
    let stored = match ctx
        .cluster
        .propose(
            conversation.shard,
            ShardCommand::CreateGrant {
                grant: grant.clone(),
            },
        )
        .await
    {
        Ok(Outcome::Grant(g)) => *g,
        Ok(other) => return Err(unexpected(ctx, &other)),
        Err(e) => return Err(propose_error(ctx, "share the conversation", e)),
    };
    if let GrantTarget::User { user } = &stored.target {
        index(ctx, &stored, user).await;
    }
    // A retry gets the grant made first, without a token (only its hash is kept).
    let token = secret.filter(|_| stored.id == grant.id).map(|(secret, _)| {
        ShareToken {
            grant: stored.id,
            secret,
        }
        .to_string()
    });
    Ok(ClientReply::Grant {
        grant: stored.info(),
        token,
    })
}

/// Adds the grant to `user`'s "shared with me" list (best effort: logged on failure).
async fn index(ctx: &NodeContext, grant: &StoredGrant, user: &UserId) {
    let title = ctx
        .store
        .conversation(grant.id.conversation)
        .ok()
        .flatten()
        .and_then(|r| r.title);
    let listing = SharedListing {
        conversation: grant.id.conversation,
        grant: grant.id,
        role: grant.role,
        owner: grant.owner.clone(),
        title,
        shared_at_ms: ctx.now_ms(),
    };
    let cmd = ShardCommand::IndexShared {
        user: user.clone(),
        listing,
    };
    let shard = ctx.default_workspace(user).shard;
    if let Err(e) = propose_in(ctx, shard, cmd).await {
        tracing::warn!(grant = %grant.id, %user, error = %e, "grant made, but not listed in the grantee's \"shared with me\"; retry the request to list it");
    }
}

/// The grants of `owner`'s conversations in `shard` that are listed in someone's
/// "shared with me" (read before a delete, to unlist them after it).
pub(super) fn listed_grants(ctx: &NodeContext, shard: ShardId, owner: &UserId) -> Vec<StoredGrant> {
    let Ok(view) = ctx.store.view(shard) else {
        return Vec::new();
    };
    records::owner_grants(view, owner)
        .unwrap_or_default()
        .into_iter()
        .filter(|g| {
            matches!(
                g.target,
                GrantTarget::User { .. } | GrantTarget::Invite { bound_to: Some(_) }
            )
        })
        .collect()
}

/// After `conversations` were deleted: their grants leave their holders' lists.
pub(super) async fn unlist_deleted(
    ctx: &NodeContext,
    listed: Vec<StoredGrant>,
    conversations: &[ConversationId],
) {
    for grant in listed
        .iter()
        .filter(|g| conversations.contains(&g.id.conversation))
    {
        unindex(ctx, grant).await;
    }
}

async fn unindex(ctx: &NodeContext, grant: &StoredGrant) {
    let user = match &grant.target {
        GrantTarget::User { user } => user,
        GrantTarget::Invite {
            bound_to: Some(user),
        } => user,
        _ => return,
    };
    let cmd = ShardCommand::UnindexShared {
        user: user.clone(),
        grant: grant.id,
    };
    let shard = ctx.default_workspace(user).shard;
    if let Err(e) = propose_in(ctx, shard, cmd).await {
        tracing::warn!(grant = %grant.id, %user, error = %e, "grant revoked, but still listed in the grantee's \"shared with me\"");
    }
}

fn list_grants(
    ctx: &NodeContext,
    peer: &Peer,
    conversation: Option<ConversationId>,
) -> Result<ClientReply, WireError> {
    let internal = |e: &dyn std::fmt::Display| ctx.internal_error("list grants", e);
    let shard = conversation.map_or_else(|| ctx.default_workspace(&peer.user).shard, |c| c.shard);
    let view = ctx.store.view(shard).map_err(|e| internal(&e))?;
    let grants = match conversation {
        Some(c) => records::conversation_grants(view, c),
        None => records::owner_grants(view, &peer.user),
    }
    .map_err(|e| internal(&e))?;
    let mut infos: Vec<GrantInfo> = grants.iter().map(StoredGrant::info).collect();
    infos.sort_by_key(|g| (g.id.conversation, g.created_at_ms));
    Ok(ClientReply::Grants(infos))
}

async fn revoke(ctx: &NodeContext, peer: &Peer, grant: GrantId) -> Result<ClientReply, WireError> {
    let view = ctx
        .store
        .view(grant.shard())
        .map_err(|e| ctx.internal_error("revoke a grant", e))?;
    let before =
        records::grant(view, grant).map_err(|e| ctx.internal_error("revoke a grant", e))?;
    let cmd = ShardCommand::RevokeGrant {
        grant,
        owner: peer.user.clone(),
    };
    let existed = match ctx.cluster.propose(grant.shard(), cmd).await {
        Ok(Outcome::Removed { existed }) => existed,
        Ok(other) => return Err(unexpected(ctx, &other)),
        Err(e) => return Err(propose_error(ctx, "revoke the grant", e)),
    };
    ctx.sharing.notify_changed();
    if existed && let Some(before) = before {
        unindex(ctx, &before).await;
    }
    Ok(ClientReply::GrantRevoked { existed })
}

async fn rotate(ctx: &NodeContext, peer: &Peer, grant: GrantId) -> Result<ClientReply, WireError> {
    let (secret, secret_hash) = crate::sharing::new_secret(ctx);
    let cmd = ShardCommand::RotateGrant {
        grant,
        owner: peer.user.clone(),
        secret_hash,
    };
    let rotated = match ctx.cluster.propose(grant.shard(), cmd).await {
        Ok(Outcome::Grant(g)) => *g,
        Ok(other) => return Err(unexpected(ctx, &other)),
        Err(e) => return Err(propose_error(ctx, "rotate the grant", e)),
    };
    ctx.sharing.notify_changed();
    Ok(ClientReply::Grant {
        grant: rotated.info(),
        token: Some(ShareToken { grant, secret }.to_string()),
    })
}

fn shared_with_me(ctx: &NodeContext, peer: &Peer) -> Result<ClientReply, WireError> {
    let internal = |e: &dyn std::fmt::Display| ctx.internal_error("list shared conversations", e);
    let shard = ctx.default_workspace(&peer.user).shard;
    let view = ctx.store.view(shard).map_err(|e| internal(&e))?;
    let mut listed = records::shared_with(view, &peer.user).map_err(|e| internal(&e))?;
    listed.sort_by_key(|l| std::cmp::Reverse(l.shared_at_ms));
    Ok(ClientReply::SharedWithMe(listed))
}

fn unexpected(ctx: &NodeContext, outcome: &Outcome) -> WireError {
    ctx.internal_error("sharing", format!("unexpected outcome {outcome:?}"))
}

/// The answer to [`PeerRequest::Propose`].
#[derive(Debug, Serialize, Deserialize)]
pub enum ProposeReply {
    /// Applied.
    Applied(Outcome),
    /// Rejected by the state machine (nothing written).
    Rejected(Rejection),
    /// Not applied here (not the leader, no quorum, not a command peers may propose).
    Unavailable(String),
}

/// The cross-shard commands a peer may propose on this node's shards.
pub fn peer_may_propose(command: &ShardCommand) -> bool {
    matches!(
        command,
        ShardCommand::IndexShared { .. }
            | ShardCommand::UnindexShared { .. }
            | ShardCommand::ImportConversation { .. }
    )
}

/// Serves [`PeerRequest::Propose`].
pub async fn serve_propose(
    ctx: &NodeContext,
    shard: ShardId,
    command: ShardCommand,
) -> ProposeReply {
    if !peer_may_propose(&command) {
        return ProposeReply::Unavailable("peers may not propose this command".to_owned());
    }
    match ctx.cluster.propose(shard, command).await {
        Ok(outcome) => ProposeReply::Applied(outcome),
        Err(crate::cluster::ProposeError::Rejected(r)) => ProposeReply::Rejected(r),
        Err(e) => ProposeReply::Unavailable(e.to_string()),
    }
}

/// Proposes `command` on `shard` here if this node leads it, else on its leader.
async fn propose_in(
    ctx: &NodeContext,
    shard: ShardId,
    command: ShardCommand,
) -> Result<Outcome, WireError> {
    let leader = match ctx.cluster.route(shard) {
        Route::Local => {
            return ctx
                .cluster
                .propose(shard, command)
                .await
                .map_err(|e| propose_error(ctx, "write to another shard", e));
        }
        Route::Remote(leader) => leader,
        Route::Unavailable => {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!("shard {shard} has no leader right now; retry"),
            ));
        }
    };
    let unavailable = |message: String| {
        WireError::new(
            ErrorCode::Unavailable,
            format!("cannot write to shard {shard} on {leader}: {message}; retry"),
        )
    };
    let addr: std::net::SocketAddr = leader
        .addr
        .parse()
        .map_err(|e| unavailable(format!("{e}")))?;
    let request = PeerRequest::Propose {
        shard: shard.0,
        command,
    };
    let timeout = Duration::from_millis(REMOTE_PROPOSE_TIMEOUT_MS);
    match ctx
        .cluster
        .peers
        .call_on::<ProposeReply>(PeerLane::Forward, addr, &request, timeout)
        .await
    {
        Ok(ProposeReply::Applied(outcome)) => Ok(outcome),
        Ok(ProposeReply::Rejected(r)) => Err(propose_error(
            ctx,
            "write to another shard",
            crate::cluster::ProposeError::Rejected(r),
        )),
        Ok(ProposeReply::Unavailable(message)) => Err(unavailable(message)),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// Resolves when `caller` (a shared follower) loses the access it followed with: its
/// grant revoked, rotated or expired. Never resolves for the owner.
pub(super) async fn lost_access(
    ctx: &NodeContext,
    conversation: ConversationId,
    caller: &Caller,
) -> WireError {
    let Access::Shared { expires_at_ms, .. } = caller.access else {
        return std::future::pending().await;
    };
    let mut changed = ctx.sharing.subscribe();
    let expiry = expires_at_ms.map(|at| Duration::from_millis(at.saturating_sub(ctx.now_ms())));
    let expired = async {
        match expiry {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            () = &mut expired => break,
            result = changed.changed() => {
                if result.is_err() || !crate::sharing::still_valid(ctx, conversation, caller) {
                    break;
                }
            }
        }
    }
    WireError::forbidden("your access to this conversation was revoked or has expired")
}
