//! `shoal-client/1`: one request per stream, answered by frames.

use super::frames::{FrameIoError, read_frame, write_final_frame, write_frame};
use super::{Peer, REQUEST_BYTES_MAX};
use crate::actors::conversation::{Change, ConversationMsg, QueueOp, summary};
use crate::actors::shard_host::ShardHostMsg;
use crate::cluster::Route;
use crate::cluster::membership::Liveness;
use crate::context::NodeContext;
use crate::shard::state_machine::{Outcome, ShardCommand};
use ractor::{ActorRef, RpcReplyPort, rpc::CallResult};
use shoal_protocol::client::{
    ClientReply, ClientRequest, LIST_LIMIT_MAX, RequestEnvelope, ServerFrame,
};
use shoal_protocol::{ConversationId, ErrorCode, ShardId, WireError};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long a request waits for its conversation actor to answer.
const ACTOR_CALL_TIMEOUT_MS: u64 = 30_000;
/// How long the leader may take to start answering a forwarded request.
const FORWARD_FIRST_BYTE_TIMEOUT_MS: u64 = 5_000;
/// Attempts to reach a conversation actor that stopped between lookup and call.
const ACTOR_CALL_ATTEMPTS: usize = 3;

/// Serves one request stream.
pub async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
) -> Result<(), FrameIoError> {
    let envelope: RequestEnvelope<ClientRequest> =
        match read_frame(&mut recv, REQUEST_BYTES_MAX).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => return Ok(()),
            Err(FrameIoError::Invalid(e)) => {
                write_final_frame(&mut send, &ServerFrame::Error(e.clone())).await;
                return Err(FrameIoError::Invalid(e));
            }
            Err(e) => return Err(e),
        };
    let span = tracing::info_span!(
        "request",
        user = %peer.user,
        node = ctx.node_id(),
        conversation = ?envelope.body.conversation(),
        traceparent = envelope.trace.as_ref().map(|t| t.traceparent.as_str()).unwrap_or(""),
    );
    crate::telemetry::adopt(&span, envelope.trace.as_ref());
    let trace = envelope.trace.clone();
    route(send, envelope.body, trace, ctx, host, peer)
        .instrument(span)
        .await
}

/// Answers a request with an error frame and ends the stream.
pub(super) async fn answer_error(
    send: &mut quinn::SendStream,
    e: WireError,
) -> Result<(), FrameIoError> {
    write_frame(send, &ServerFrame::Error(e)).await?;
    let _ = send.finish();
    Ok(())
}

/// Whether a request came from a client or was forwarded by another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Straight from a client: may be forwarded once.
    Client,
    /// Forwarded by another node: served here or refused, never forwarded again.
    Forwarded,
}

/// The shard a request belongs to.
fn shard_of(ctx: &NodeContext, peer: &Peer, request: &ClientRequest) -> ShardId {
    if let Some(conversation) = request.conversation() {
        return conversation.shard;
    }
    match request {
        ClientRequest::RewindConversation { conversation, .. }
        | ClientRequest::ForkConversation { conversation, .. }
        | ClientRequest::RenameConversation { conversation, .. }
        | ClientRequest::DeleteConversation { conversation } => conversation.shard,
        ClientRequest::SendNow { conversation, .. }
        | ClientRequest::AttachTurn { conversation }
        | ClientRequest::ListQueue { conversation }
        | ClientRequest::RemoveQueued { conversation, .. }
        | ClientRequest::MoveQueued { conversation, .. }
        | ClientRequest::ListCompactions { conversation }
        | ClientRequest::CloneFromCompaction { conversation, .. }
        | ClientRequest::SetSessionSettings { conversation, .. }
        | ClientRequest::SendWithAttachments { conversation, .. }
        | ClientRequest::SwitchAgent { conversation, .. } => conversation.shard,
        ClientRequest::SendMessage { conversation, .. }
        | ClientRequest::Follow { conversation, .. }
        | ClientRequest::GetConversation { conversation }
        | ClientRequest::CancelTurn { conversation }
        | ClientRequest::RespondPermission { conversation, .. } => conversation.shard,
        // A user's workspaces and skill packs live in the user's shard.
        ClientRequest::CreateConversation { .. }
        | ClientRequest::ListConversations { .. }
        | ClientRequest::CreateWorkspace { .. }
        | ClientRequest::ListWorkspaces
        | ClientRequest::CreateSkillPack { .. }
        | ClientRequest::ListSkillPacks
        | ClientRequest::ListConversationsPage { .. }
        | ClientRequest::GetUsage { .. } => ctx.default_workspace(&peer.user).shard,
        ClientRequest::GetMessages { conversation, .. } => conversation.shard,
        ClientRequest::SharedWithMe | ClientRequest::ListGrants { conversation: None } => {
            ctx.default_workspace(&peer.user).shard
        }
        // Conversation requests are routed above, by `conversation_of`.
        ClientRequest::Shared { .. }
        | ClientRequest::CreateGrant { .. }
        | ClientRequest::ListGrants { .. }
        | ClientRequest::RevokeGrant { .. }
        | ClientRequest::RotateGrant { .. }
        | ClientRequest::SetShareLock { .. } => ctx.default_workspace(&peer.user).shard,
        ClientRequest::RenameWorkspace { workspace, .. }
        | ClientRequest::MoveWorkspace { workspace, .. }
        | ClientRequest::DeleteWorkspace { workspace, .. }
        | ClientRequest::CreateConversationIn { workspace, .. } => workspace.shard,
        ClientRequest::UpdateSkillPack { pack, .. }
        | ClientRequest::GetSkillPack { pack }
        | ClientRequest::DeleteSkillPack { pack } => pack.shard,
        ClientRequest::AttachSkillPack { workspace, .. }
        | ClientRequest::DetachSkillPack { workspace, .. } => {
            workspace
                .unwrap_or_else(|| ctx.default_workspace(&peer.user))
                .shard
        }
        // A workspace that is not the caller's is refused where the request is served.
        ClientRequest::SetCredential { workspace, .. }
        | ClientRequest::ListCredentials { workspace }
        | ClientRequest::DeleteCredential { workspace, .. }
        | ClientRequest::GetWorkspacePermissions { workspace }
        | ClientRequest::SetWorkspacePermissions { workspace, .. }
        | ClientRequest::SetWorkspaceMcpServer { workspace, .. }
        | ClientRequest::RemoveWorkspaceMcpServer { workspace, .. }
        | ClientRequest::ListWorkspaceMcpServers { workspace } => {
            workspace
                .unwrap_or_else(|| ctx.default_workspace(&peer.user))
                .shard
        }
    }
}

/// Serves a request here if this node hosts its shard; otherwise forwards it to the
/// leader (or, for `Follow`, tells the client where to go).
///
/// During a failover the route is retried inside the node: while the shard has no
/// leader with a lease, or its leader is suspected by gossip, or a forward is abandoned
/// because the leader changed, the request waits for the route to change (up to
/// [`route_wait`]) and goes where it points then — so the client's request completes as
/// soon as a new leader hosts the shard, without client-side backoff. A leader gossip
/// still suspects when that wait ends is tried anyway: after a partition heals, Raft
/// elects a node before gossip takes it back.
async fn route(
    mut send: quinn::SendStream,
    request: ClientRequest,
    trace: Option<shoal_protocol::TraceContext>,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
) -> Result<(), FrameIoError> {
    let shard = shard_of(ctx, peer, &request);
    if !ctx.shard_exists(shard) {
        return dispatch(send, request, ctx, host, peer, Hop::Client).await;
    }
    let deadline = tokio::time::Instant::now() + route_wait(ctx);
    loop {
        let now = ctx.cluster.route(shard);
        let why = match &now {
            Route::Local => return dispatch(send, request, ctx, host, peer, Hop::Client).await,
            Route::Remote(leader) if matches!(request, ClientRequest::Follow { .. }) => {
                let moved = ServerFrame::Moved {
                    to: leader.addr.clone(),
                };
                write_frame(&mut send, &moved).await?;
                let _ = send.finish();
                return Ok(());
            }
            // Gossip suspects the leader: wait for a new one rather than on a dead node,
            // but only until the deadline (see below).
            Route::Remote(leader)
                if suspected(ctx, leader) && tokio::time::Instant::now() < deadline =>
            {
                format!("its leader {leader} is not answering gossip")
            }
            Route::Remote(leader) => {
                let span = tracing::info_span!("forward", to = %leader, shard = shard.0);
                match forward(
                    send,
                    request.clone(),
                    trace.clone(),
                    ctx,
                    peer,
                    shard,
                    leader,
                )
                .instrument(span)
                .await?
                {
                    Forwarded::Done => return Ok(()),
                    Forwarded::RouteChanged(back) => {
                        send = back;
                        continue;
                    }
                }
            }
            Route::Unavailable => {
                "it has no leader with a lease right now (election or move in progress)".to_owned()
            }
        };
        let settled = tokio::time::timeout_at(deadline, ctx.cluster.route_changed(shard, &now));
        if settled.await.is_err() {
            if matches!(now, Route::Remote(_)) {
                // Raft still names that leader: gossip can lag behind a healed partition
                // (a node declared down rejoins later than Raft elects it), so try it.
                continue;
            }
            let e = WireError::new(
                ErrorCode::Unavailable,
                format!("shard {shard} is not available: {why}; retry shortly"),
            );
            return answer_error(&mut send, e).await;
        }
    }
}

/// How long a request waits inside the node for a shard's route to settle: about one
/// failover (an election timeout, the new leader's lease wait, a heartbeat), twice.
fn route_wait(ctx: &NodeContext) -> Duration {
    let c = &ctx.config.cluster;
    Duration::from_millis(
        2 * (c.election_timeout_max_ms.get() + c.lease_ms.get() + c.heartbeat_ms.get()),
    )
}

/// Whether gossip suspects `leader` (it is most likely dead: don't wait on it).
fn suspected(ctx: &NodeContext, leader: &crate::raft::PeerNode) -> bool {
    ctx.membership
        .watch()
        .borrow()
        .get(&leader.name)
        .is_some_and(|m| m.liveness != Liveness::Alive)
}

/// How a forward ended.
enum Forwarded {
    /// Answered (by the leader, or with an error frame).
    Done,
    /// Abandoned before any answer because the shard's route changed: the stream comes
    /// back to route the request again.
    RouteChanged(quinn::SendStream),
}

/// Relays a request to the shard's leader and its answer frames back, byte for byte.
/// The client going away resets the forwarded stream, which the leader treats like
/// its own client going away (a running turn is cancelled).
async fn forward(
    mut send: quinn::SendStream,
    request: ClientRequest,
    trace: Option<shoal_protocol::TraceContext>,
    ctx: &Arc<NodeContext>,
    peer: &Peer,
    shard: ShardId,
    leader: &crate::raft::PeerNode,
) -> Result<Forwarded, FrameIoError> {
    let unavailable = |message: String| {
        WireError::new(
            ErrorCode::Unavailable,
            format!("cannot reach the leader of shard {shard} ({leader}): {message}; retry"),
        )
    };
    let done = |r: Result<(), FrameIoError>| r.map(|()| Forwarded::Done);
    let addr: std::net::SocketAddr = match leader.addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            return done(answer_error(&mut send, unavailable(e.to_string())).await);
        }
    };
    // The leader's spans join this node's: the forward carries the current span's context.
    let forwarded = crate::peer::PeerRequest::Forward {
        user: peer.user.clone(),
        trace: crate::telemetry::propagate(&tracing::Span::current(), trace),
        request,
    };
    // Until its first byte, the forward is dropped as soon as the shard's route changes
    // (a new leader was elected: the old one is likely dead), so the client retries at
    // once rather than after the dial or first-byte timeout.
    let route_now = Route::Remote(leader.clone());
    let moved = ctx.cluster.route_changed(shard, &route_now);
    tokio::pin!(moved);
    let opened = tokio::select! {
        opened = ctx.cluster.peers.open(addr, &forwarded) => opened,
        () = &mut moved => return Ok(Forwarded::RouteChanged(send)),
    };
    let (mut peer_send, mut peer_recv) = match opened {
        Ok(streams) => streams,
        Err(e) => {
            return done(answer_error(&mut send, unavailable(e.to_string())).await);
        }
    };
    let _ = peer_send.finish();
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut buf = vec![0u8; 64 * 1024];
    // A leader that died keeps its pooled connection open until the idle timeout: an
    // answer must start promptly, or the client is told to retry.
    let first = tokio::select! {
        first = tokio::time::timeout(
            Duration::from_millis(FORWARD_FIRST_BYTE_TIMEOUT_MS),
            peer_recv.read(&mut buf),
        ) => first,
        () = &mut moved => {
            ctx.cluster.peers.invalidate_forwards(addr);
            let _ = peer_send.reset(0u32.into());
            return Ok(Forwarded::RouteChanged(send));
        }
    };
    match first {
        Ok(Ok(Some(n))) => {
            if send.write_all(&buf[..n]).await.is_err() {
                let _ = peer_recv.stop(0u32.into());
                return Ok(Forwarded::Done);
            }
        }
        Ok(Ok(None)) => {
            let _ = send.finish();
            return Ok(Forwarded::Done);
        }
        Ok(Err(e)) => {
            ctx.cluster.peers.invalidate_forwards(addr);
            return done(answer_error(&mut send, unavailable(e.to_string())).await);
        }
        Err(_) => {
            ctx.cluster.peers.invalidate_forwards(addr);
            let _ = peer_send.reset(0u32.into());
            let message = format!("no answer within {FORWARD_FIRST_BYTE_TIMEOUT_MS} ms");
            return done(answer_error(&mut send, unavailable(message)).await);
        }
    }
    loop {
        tokio::select! {
            read = peer_recv.read(&mut buf) => match read {
                Ok(Some(n)) => {
                    if send.write_all(&buf[..n]).await.is_err() {
                        let _ = peer_recv.stop(0u32.into());
                        return Ok(Forwarded::Done);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The leader went away mid-answer: the client retries (idempotently).
                    let _ = send.reset(0u32.into());
                    return Err(FrameIoError::Stream(format!("forwarded stream to {leader} failed: {e}")));
                }
            },
            _ = &mut stopped => {
                let _ = peer_recv.stop(0u32.into());
                let _ = peer_send.reset(0u32.into());
                return Ok(Forwarded::Done);
            }
        }
    }
    let _ = send.finish();
    Ok(Forwarded::Done)
}

/// Runs one request here and writes its answer.
pub async fn dispatch(
    mut send: quinn::SendStream,
    request: ClientRequest,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
    hop: Hop,
) -> Result<(), FrameIoError> {
    if hop == Hop::Forwarded {
        let shard = shard_of(ctx, peer, &request);
        if ctx.cluster.route(shard) != Route::Local {
            let e = WireError::new(
                ErrorCode::Unavailable,
                format!("shard {shard} moved while the request was forwarded; retry"),
            );
            return answer_error(&mut send, e).await;
        }
    }
    let (request, token) = match request {
        ClientRequest::Shared { token, request } => (*request, Some(token)),
        other => (other, None),
    };
    if matches!(request, ClientRequest::Shared { .. }) {
        let e = WireError::invalid("request", "a shared request cannot wrap another one");
        return answer_error(&mut send, e).await;
    }
    // Every conversation request is authorized here, in one place.
    let caller = match request.conversation() {
        Some(conversation) => {
            match super::sharing::authorize(ctx, peer, conversation, &request, token.as_deref())
                .await
            {
                Ok(caller) => caller,
                Err(e) => return answer_error(&mut send, e).await,
            }
        }
        None if token.is_some() => {
            let e = WireError::invalid(
                "token",
                "a share token applies to requests on its conversation only",
            );
            return answer_error(&mut send, e).await;
        }
        None => crate::sharing::Caller::owner(peer.user.clone()),
    };
    let special = if caller.is_owner() {
        super::sharing::owner_request(ctx, peer, &request).await
    } else {
        super::sharing::shared_request(ctx, host, peer, &caller, &request).await
    };
    if let Some(reply) = special {
        let frame = match reply {
            Ok(reply) => ServerFrame::Reply(reply),
            Err(e) => ServerFrame::Error(e),
        };
        write_frame(&mut send, &frame).await?;
        let _ = send.finish();
        return Ok(());
    }
    let now = matches!(request, ClientRequest::SendNow { .. });
    let frame = match request {
        ClientRequest::SendMessage {
            conversation,
            text,
            request_id,
        }
        | ClientRequest::SendNow {
            conversation,
            text,
            request_id,
        } => {
            return super::streams::send_message(
                send,
                ctx,
                host,
                caller,
                conversation,
                text,
                request_id,
                now,
                Vec::new(),
            )
            .await;
        }
        ClientRequest::SendWithAttachments {
            conversation,
            text,
            attachments,
            request_id,
        } => {
            return super::streams::send_message(
                send,
                ctx,
                host,
                caller,
                conversation,
                text,
                request_id,
                false,
                attachments,
            )
            .await;
        }
        ClientRequest::AttachTurn { conversation } => {
            return super::streams::attach_turn(send, ctx, host, caller, conversation).await;
        }
        ClientRequest::Follow {
            conversation,
            since,
        } => {
            return super::streams::follow(
                send,
                &peer.follows,
                ctx,
                host,
                caller,
                conversation,
                since,
            )
            .await;
        }
        ClientRequest::CreateConversation {
            title,
            agent,
            request_id,
        } => create(ctx, peer, None, title, agent, request_id)
            .await
            .map(ClientReply::Created),
        ClientRequest::CreateConversationIn {
            workspace,
            title,
            agent,
            request_id,
        } => create(ctx, peer, Some(workspace), title, agent, request_id)
            .await
            .map(ClientReply::Created),
        ClientRequest::ForkConversation {
            conversation,
            message,
            parts,
            workspace,
            title,
            request_id,
        } => super::history::fork(
            ctx,
            peer,
            conversation,
            message,
            parts,
            workspace,
            title,
            request_id,
        )
        .await
        .map(ClientReply::Created),
        ClientRequest::RewindConversation {
            conversation,
            message,
            parts,
        } => rewrite(
            host,
            peer,
            conversation,
            Change::Rewind {
                keep: message,
                parts,
            },
        )
        .await
        .and_then(|after| after.map(ClientReply::Rewound).ok_or_else(|| lost(ctx))),
        ClientRequest::RenameConversation {
            conversation,
            title,
        } => rewrite(host, peer, conversation, Change::Rename { title })
            .await
            .and_then(|after| after.map(ClientReply::Renamed).ok_or_else(|| lost(ctx))),
        ClientRequest::DeleteConversation { conversation } => {
            let listed = super::sharing::listed_grants(ctx, conversation.shard, &peer.user);
            let deleted = rewrite(host, peer, conversation, Change::Delete).await;
            if deleted.is_ok() {
                super::sharing::unlist_deleted(ctx, listed, &[conversation]).await;
            }
            deleted.map(|_| ClientReply::ConversationDeleted)
        }
        ClientRequest::ListCompactions { conversation } => {
            super::history::compactions(ctx, peer, conversation).map(ClientReply::Compactions)
        }
        ClientRequest::SwitchAgent {
            conversation,
            agent,
        } => match ctx.agents.check_creatable(ctx, &agent).await {
            Err(message) => Err(WireError::invalid("agent", message)),
            Ok(()) => rewrite(host, peer, conversation, Change::SwitchAgent { agent })
                .await
                .and_then(|after| {
                    after
                        .map(ClientReply::AgentSwitched)
                        .ok_or_else(|| lost(ctx))
                }),
        },
        ClientRequest::ListWorkspaceMcpServers { workspace } => {
            super::mcp::list(ctx, peer, workspace)
                .map(|(workspace, servers)| ClientReply::WorkspaceMcpServers { workspace, servers })
        }
        ClientRequest::SetWorkspaceMcpServer { workspace, server } => {
            super::mcp::set(ctx, peer, workspace, server)
                .await
                .map(|(workspace, servers)| ClientReply::WorkspaceMcpServers { workspace, servers })
        }
        ClientRequest::RemoveWorkspaceMcpServer { workspace, name } => {
            super::mcp::remove(ctx, peer, workspace, name)
                .await
                .map(|(workspace, servers)| ClientReply::WorkspaceMcpServers { workspace, servers })
        }
        ClientRequest::GetWorkspacePermissions { workspace } => {
            super::permissions::get(ctx, peer, workspace)
                .map(|(workspace, policy)| ClientReply::WorkspacePermissions { workspace, policy })
        }
        ClientRequest::SetWorkspacePermissions { workspace, policy } => {
            super::permissions::set(ctx, peer, workspace, policy)
                .await
                .map(|(workspace, policy)| ClientReply::WorkspacePermissions { workspace, policy })
        }
        ClientRequest::SetSessionSettings {
            conversation,
            mode,
            model,
        } => call(host, conversation, |reply| ConversationMsg::SetSettings {
            user: peer.user.clone(),
            mode: mode.clone(),
            model: model.clone(),
            reply,
        })
        .await
        .map(|settings| ClientReply::SessionSettings(Box::new(settings))),
        ClientRequest::CloneFromCompaction {
            conversation,
            compaction,
            title,
            request_id,
        } => super::history::clone_from_compaction(
            ctx,
            peer,
            conversation,
            compaction,
            title,
            request_id,
        )
        .await
        .map(ClientReply::Created),
        ClientRequest::GetUsage {
            workspace,
            agent,
            since_ms,
            by,
        } => super::usage::usage(ctx, peer, workspace, agent, since_ms, by)
            .map(|(rows, total)| ClientReply::Usage { rows, total }),
        ClientRequest::ListQueue { conversation } => {
            queue_op(host, peer, conversation, QueueOp::List).await
        }
        ClientRequest::RemoveQueued { conversation, item } => {
            queue_op(host, peer, conversation, QueueOp::Remove(item)).await
        }
        ClientRequest::MoveQueued {
            conversation,
            item,
            position,
        } => queue_op(host, peer, conversation, QueueOp::Move(item, position)).await,
        ClientRequest::ListConversationsPage {
            limit,
            cursor,
            workspace,
        } => super::history::list_page(ctx, peer, limit, cursor, workspace).map(
            |(conversations, next_cursor)| ClientReply::ConversationPage {
                conversations,
                next_cursor,
            },
        ),
        ClientRequest::GetMessages {
            conversation,
            before,
            limit,
        } => super::history::messages(ctx, peer, conversation, before, limit)
            .map(|(messages, more)| ClientReply::Messages { messages, more }),
        ClientRequest::CreateWorkspace { name, request_id } => {
            super::workspaces::create(ctx, peer, name, request_id)
                .await
                .map(ClientReply::Workspace)
        }
        ClientRequest::ListWorkspaces => {
            super::workspaces::list(ctx, peer).map(ClientReply::Workspaces)
        }
        ClientRequest::RenameWorkspace { workspace, name } => {
            super::workspaces::rename(ctx, peer, workspace, name)
                .await
                .map(ClientReply::Workspace)
        }
        ClientRequest::MoveWorkspace {
            workspace,
            position,
        } => super::workspaces::reorder(ctx, peer, workspace, position)
            .await
            .map(ClientReply::Workspaces),
        ClientRequest::DeleteWorkspace {
            workspace,
            confirm_name,
        } => super::workspaces::delete(ctx, host, peer, workspace, confirm_name)
            .await
            .map(|conversations| ClientReply::WorkspaceDeleted { conversations }),
        ClientRequest::CreateSkillPack { spec, request_id } => {
            super::workspaces::create_pack(ctx, peer, spec, request_id)
                .await
                .map(ClientReply::SkillPack)
        }
        ClientRequest::UpdateSkillPack { pack, spec } => {
            super::workspaces::update_pack(ctx, peer, pack, spec)
                .await
                .map(ClientReply::SkillPack)
        }
        ClientRequest::ListSkillPacks => {
            super::workspaces::list_packs(ctx, peer).map(ClientReply::SkillPacks)
        }
        ClientRequest::GetSkillPack { pack } => super::workspaces::get_pack(ctx, peer, pack)
            .map(|(info, spec)| ClientReply::SkillPackContent { info, spec }),
        ClientRequest::DeleteSkillPack { pack } => super::workspaces::delete_pack(ctx, peer, pack)
            .await
            .map(|detached| ClientReply::SkillPackDeleted { detached }),
        ClientRequest::AttachSkillPack { workspace, pack } => {
            super::workspaces::attach(ctx, peer, workspace, pack, true)
                .await
                .map(ClientReply::Workspace)
        }
        ClientRequest::DetachSkillPack { workspace, pack } => {
            super::workspaces::attach(ctx, peer, workspace, pack, false)
                .await
                .map(ClientReply::Workspace)
        }
        ClientRequest::ListConversations { limit } => {
            list(ctx, peer, limit).map(ClientReply::Conversations)
        }
        ClientRequest::SetCredential {
            workspace,
            name,
            value,
        } => super::credentials::set(ctx, peer, workspace, name, value)
            .await
            .map(|()| ClientReply::CredentialSet),
        ClientRequest::ListCredentials { workspace } => {
            super::credentials::list(ctx, peer, workspace).map(ClientReply::Credentials)
        }
        ClientRequest::DeleteCredential { workspace, name } => {
            super::credentials::delete(ctx, peer, workspace, name)
                .await
                .map(|existed| ClientReply::CredentialDeleted { existed })
        }
        ClientRequest::GetConversation { conversation } => {
            call(host, conversation, |reply| ConversationMsg::Get {
                caller: caller.clone(),
                reply,
            })
            .await
            .map(|detail| ClientReply::Conversation(Box::new(detail)))
        }
        ClientRequest::CancelTurn { conversation } => {
            call(host, conversation, |reply| ConversationMsg::Cancel {
                caller: caller.clone(),
                reply,
            })
            .await
            .map(|was_running| ClientReply::Cancelled { was_running })
        }
        ClientRequest::RespondPermission {
            conversation,
            request,
            option_id,
        } => call(host, conversation, |reply| {
            ConversationMsg::RespondPermission {
                caller: caller.clone(),
                request,
                option_id: option_id.clone(),
                reply,
            }
        })
        .await
        .map(|()| ClientReply::PermissionAnswered),
        // Unwrapped above, and served by `sharing::owner_request`.
        ClientRequest::Shared { .. }
        | ClientRequest::CreateGrant { .. }
        | ClientRequest::ListGrants { .. }
        | ClientRequest::RevokeGrant { .. }
        | ClientRequest::RotateGrant { .. }
        | ClientRequest::SetShareLock { .. }
        | ClientRequest::SharedWithMe => Err(internal(
            ctx,
            "a sharing request reached the owner's dispatch".to_owned(),
        )),
    };
    let frame = match frame {
        Ok(reply) => ServerFrame::Reply(reply),
        Err(e) => ServerFrame::Error(e),
    };
    write_frame(&mut send, &frame).await?;
    let _ = send.finish();
    Ok(())
}

/// Looks up (activating) the conversation actor.
pub(super) async fn lookup(
    host: &ActorRef<ShardHostMsg>,
    id: ConversationId,
) -> Result<ActorRef<ConversationMsg>, WireError> {
    let timeout = Duration::from_millis(ACTOR_CALL_TIMEOUT_MS);
    match host
        .call(
            |reply| ShardHostMsg::Conversation { id, reply },
            Some(timeout),
        )
        .await
    {
        Ok(CallResult::Success(result)) => result,
        Ok(CallResult::Timeout) => Err(WireError::new(
            ErrorCode::Timeout,
            format!("activating conversation {id} took too long; retry"),
        )),
        _ => Err(WireError::new(
            ErrorCode::Unavailable,
            "the node is shutting down; retry on another node",
        )),
    }
}

/// Calls the conversation actor, retrying when it stopped between lookup and call.
pub(super) async fn call<T: Send + 'static>(
    host: &ActorRef<ShardHostMsg>,
    id: ConversationId,
    mut build: impl FnMut(RpcReplyPort<Result<T, WireError>>) -> ConversationMsg,
) -> Result<T, WireError> {
    let timeout = Duration::from_millis(ACTOR_CALL_TIMEOUT_MS);
    for _ in 0..ACTOR_CALL_ATTEMPTS {
        let actor = lookup(host, id).await?;
        match actor.call(&mut build, Some(timeout)).await {
            Ok(CallResult::Success(result)) => return result,
            Ok(CallResult::Timeout) => {
                return Err(WireError::new(
                    ErrorCode::Timeout,
                    format!("conversation {id} did not answer in time; retry"),
                ));
            }
            // Stopped (passivated) meanwhile: look it up again.
            _ => continue,
        }
    }
    Err(WireError::new(
        ErrorCode::Unavailable,
        format!("conversation {id} kept stopping; retry"),
    ))
}

/// Rewind, rename or delete through the conversation's actor.
async fn rewrite(
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
    conversation: ConversationId,
    change: Change,
) -> Result<Option<shoal_protocol::client::ConversationSummary>, WireError> {
    call(host, conversation, |reply| ConversationMsg::Rewrite {
        user: peer.user.clone(),
        change: change.clone(),
        reply,
    })
    .await
}

/// Lists or edits a conversation's queue through its actor.
async fn queue_op(
    host: &ActorRef<ShardHostMsg>,
    peer: &Peer,
    conversation: ConversationId,
    op: QueueOp,
) -> Result<ClientReply, WireError> {
    call(host, conversation, |reply| ConversationMsg::Queue {
        user: peer.user.clone(),
        op,
        reply,
    })
    .await
    .map(ClientReply::Queue)
}

fn lost(ctx: &NodeContext) -> WireError {
    internal(
        ctx,
        "the conversation vanished while it was changed".to_owned(),
    )
}

async fn create(
    ctx: &NodeContext,
    peer: &Peer,
    workspace: Option<shoal_protocol::WorkspaceId>,
    title: Option<String>,
    agent: Option<String>,
    request_id: shoal_protocol::RequestId,
) -> Result<shoal_protocol::client::ConversationSummary, WireError> {
    super::history::check_title(title.as_deref())?;
    let agent = match agent {
        None => ctx.config.default_agent.as_str().to_owned(),
        Some(name) => {
            if !ctx.config.agents.keys().any(|n| n.as_str() == name) {
                let known: Vec<&str> = ctx.config.agents.keys().map(|n| n.as_str()).collect();
                return Err(WireError::invalid(
                    "agent",
                    format!(
                        "unknown agent `{}`; this node has: {}",
                        name.chars().take(64).collect::<String>(),
                        known.join(", ")
                    ),
                ));
            }
            name
        }
    };
    // Only for an agent that is enabled and ready on this node (probed when stale).
    let ready = ctx.agents.check_creatable(ctx, &agent).await;
    ready.map_err(|message| WireError::invalid("agent", message))?;
    let workspace = super::workspaces::owned(ctx, peer, workspace)?.id;
    let id = ConversationId::new(workspace.shard, ctx.random_u128());
    let cmd = ShardCommand::CreateConversation {
        id,
        workspace,
        owner: peer.user.clone(),
        title,
        agent,
        at_ms: ctx.now_ms(),
        request_id,
    };
    match ctx.cluster.propose(workspace.shard, cmd).await {
        Ok(Outcome::Conversation(record)) => Ok(summary(&record)),
        Ok(other) => Err(internal(ctx, format!("unexpected outcome {other:?}"))),
        Err(e) => Err(crate::actors::conversation::propose_error(
            ctx,
            "create a conversation",
            e,
        )),
    }
}

fn internal(ctx: &NodeContext, message: String) -> WireError {
    ctx.internal_error("client request", message)
}

fn list(
    ctx: &NodeContext,
    peer: &Peer,
    limit: u32,
) -> Result<Vec<shoal_protocol::client::ConversationSummary>, WireError> {
    let limit = limit.clamp(1, LIST_LIMIT_MAX) as usize;
    let shard = ctx.default_workspace(&peer.user).shard;
    let mut records = ctx
        .store
        .user_conversations(shard, &peer.user)
        .map_err(|e| internal(ctx, e.to_string()))?;
    records.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.id.cmp(&a.id)));
    Ok(records.iter().take(limit).map(summary).collect())
}
