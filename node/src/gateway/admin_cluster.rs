//! The admin requests that reach beyond the answering node: drain and undrain (on the
//! named node), drain progress, actors and events (from every member), evict and cancel
//! (on the conversation's host), and the fan-out they share.
//!
//! A member's part of a cluster-wide answer is asked for with
//! [`PeerRequest::Admin`] over the peer API (mTLS, cluster CA), bounded per member by
//! [`MEMBER_TIMEOUT_MS`]; a member that does not answer is reported, never fatal.

use super::admin_api;
use crate::actors::shard_host::ShardHostMsg;
use crate::cluster::Route;
use crate::cluster::drain;
use crate::cluster::membership::Liveness;
use crate::context::NodeContext;
use crate::peer::{ControlReply, PeerLane, PeerRequest};
use ractor::ActorRef;
use shoal_protocol::admin::{AdminReply, AdminRequest};
use shoal_protocol::{ErrorCode, WireError};
use std::time::Duration;

/// How long one member may take to answer its part of a cluster-wide admin request.
pub const MEMBER_TIMEOUT_MS: u64 = 3_000;
/// Longest node name an admin request may carry, in bytes.
pub const NODE_NAME_BYTES_MAX: usize = 64;

/// One member's answer to a fanned-out request: its name and its reply, or why not.
pub type MemberAnswer = (String, Result<AdminReply, String>);

/// Asks every member (this node answers itself) for its part of `request`, all at once,
/// each bounded by [`MEMBER_TIMEOUT_MS`]; a member down in gossip is not asked and
/// answers `Err("down in gossip")`. Members in name order.
pub async fn gather(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    request: &AdminRequest,
) -> Vec<MemberAnswer> {
    let view = ctx.membership.watch().borrow().clone();
    let timeout = Duration::from_millis(MEMBER_TIMEOUT_MS);
    // Each name once, in its current identity: this node answers itself, an alive or
    // suspect member is asked, a down one is reported without a call.
    let mut names: Vec<(String, Option<Result<std::net::SocketAddr, String>>)> = Vec::new();
    for m in &view.members {
        if m.meta.name.is_empty() || names.iter().any(|(n, _)| *n == m.meta.name) {
            continue;
        }
        let Some(current) = drain::member_named(&view, &m.meta.name) else {
            continue;
        };
        let target = if current.meta.name == ctx.node_id() {
            None
        } else if current.liveness == Liveness::Down {
            Some(Err("down in gossip".to_owned()))
        } else {
            Some(Ok(current.meta.addr))
        };
        names.push((current.meta.name.clone(), target));
    }
    let calls = names.into_iter().map(|(name, target)| async move {
        let answer = match target {
            None => admin_api::local(request.clone(), ctx, host)
                .await
                .map_err(|e| e.message),
            Some(Err(why)) => Err(why),
            Some(Ok(addr)) => match ask_member(ctx, addr, request.clone(), timeout).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(e.message),
                Err(e) => Err(e.to_string()),
            },
        };
        (name, answer)
    });
    futures::future::join_all(calls).await
}

/// Sends an admin `request` to the member at `addr` (on the forward lane: Raft's is
/// kept for Raft) and reads its answer.
pub(super) async fn ask_member(
    ctx: &NodeContext,
    addr: std::net::SocketAddr,
    request: AdminRequest,
    timeout: Duration,
) -> Result<Result<AdminReply, WireError>, crate::peer::PeerError> {
    ctx.cluster
        .peers
        .call_on(
            PeerLane::Forward,
            addr,
            &PeerRequest::Admin { request },
            timeout,
        )
        .await
}

/// A node name from a request: 1 to [`NODE_NAME_BYTES_MAX`] bytes.
pub fn checked_node(node: &str) -> Result<(), WireError> {
    if node.is_empty() || node.len() > NODE_NAME_BYTES_MAX {
        return Err(WireError::invalid(
            "node",
            format!("a node id is 1 to {NODE_NAME_BYTES_MAX} bytes; see `shoalctl members`"),
        ));
    }
    Ok(())
}

/// The error for a node name no member has.
pub fn unknown_node(ctx: &NodeContext, node: &str) -> WireError {
    let view = ctx.membership.watch().borrow().clone();
    WireError::not_found(format!(
        "no member named `{node}`; members: {}",
        drain::member_names(&view)
    ))
}

/// `Drain` / `Undrain`: sets the flag on the named node (stored there, then gossiped).
pub async fn set_drain(
    ctx: &NodeContext,
    node: String,
    draining: bool,
) -> Result<AdminReply, WireError> {
    checked_node(&node)?;
    let done = |node: String| {
        if draining {
            AdminReply::Draining { node }
        } else {
            AdminReply::Undrained { node }
        }
    };
    if node == ctx.node_id() {
        drain::set_draining(ctx, draining)
            .await
            .map_err(|e| ctx.internal_error("drain flag", e))?;
        return Ok(done(node));
    }
    let view = ctx.membership.watch().borrow().clone();
    let Some(member) = drain::member_named(&view, &node) else {
        return Err(unknown_node(ctx, &node));
    };
    // A suspect is tried (it is often just slow); a down node cannot store the flag.
    if member.liveness == Liveness::Down {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "{node} is down in gossip: the flag is stored on the node itself, so it must be up; a down node leads nothing and leaves placement after cluster.placement_grace_ms — retry when it is back"
            ),
        ));
    }
    let request = if draining {
        PeerRequest::Drain
    } else {
        PeerRequest::Undrain
    };
    let timeout = Duration::from_millis(crate::cluster::CONTROL_TIMEOUT_MS);
    match ctx
        .cluster
        .peers
        .call::<ControlReply>(member.meta.addr, &request, timeout)
        .await
    {
        Ok(ControlReply::Ok) => Ok(done(node)),
        Ok(ControlReply::Refused(e)) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!("{node} refused: {e}"),
        )),
        Err(e) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!("cannot reach {node}: {e}; retry"),
        )),
    }
}

/// `DrainProgress`: what the node still holds, from every shard leader's own view.
pub async fn drain_progress(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    node: String,
) -> Result<AdminReply, WireError> {
    checked_node(&node)?;
    let view = ctx.membership.watch().borrow().clone();
    let Some(member) = drain::member_named(&view, &node) else {
        return Err(unknown_node(ctx, &node));
    };
    let draining = member.meta.draining;
    let placeable = drain::placeable_members(&view, ctx.node_id()).count() as u32;
    let mut reports = Vec::new();
    let mut unreachable = Vec::new();
    for (name, answer) in gather(ctx, host, &AdminRequest::Shards).await {
        match answer {
            Ok(AdminReply::Shards(shards)) => reports.push((name, shards)),
            Ok(_) => unreachable.push(format!("{name}: an unexpected reply")),
            Err(e) => unreachable.push(format!("{name}: {e}")),
        }
    }
    Ok(AdminReply::DrainProgress(drain::progress(
        &node,
        draining,
        &reports,
        ctx.cluster.shard_count(),
        placeable,
        ctx.cluster.replicas() as u32,
        unreachable,
    )))
}

/// `LogFilter` for another member: asked of it over the peer API.
pub async fn log_filter_on(
    ctx: &NodeContext,
    node: String,
    filter: Option<String>,
) -> Result<AdminReply, WireError> {
    checked_node(&node)?;
    let view = ctx.membership.watch().borrow().clone();
    let Some(member) = drain::member_named(&view, &node) else {
        return Err(unknown_node(ctx, &node));
    };
    if member.liveness == Liveness::Down {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!("{node} is down in gossip; retry when it is back"),
        ));
    }
    let request = PeerRequest::Admin {
        request: AdminRequest::LogFilter { node: None, filter },
    };
    let timeout = Duration::from_millis(MEMBER_TIMEOUT_MS);
    match ctx
        .cluster
        .peers
        .call_on::<Result<AdminReply, WireError>>(
            PeerLane::Forward,
            member.meta.addr,
            &request,
            timeout,
        )
        .await
    {
        Ok(answer) => answer,
        Err(e) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!("cannot reach {node}: {e}; retry"),
        )),
    }
}

/// `ClusterActors`: every member's actors, by node, kind and key; members that did not
/// answer are listed with why.
pub async fn cluster_actors(ctx: &NodeContext, host: &ActorRef<ShardHostMsg>) -> AdminReply {
    let mut actors = Vec::new();
    let mut unreachable = Vec::new();
    let mut truncated = false;
    for (name, answer) in gather(ctx, host, &AdminRequest::ClusterActors).await {
        match answer {
            Ok(AdminReply::ClusterActors {
                actors: theirs,
                truncated: cut,
                ..
            }) => {
                // A member answers for itself only.
                actors.extend(theirs.into_iter().filter(|a| a.node == name));
                truncated |= cut;
            }
            Ok(_) => unreachable.push(format!("{name}: an unexpected reply")),
            Err(e) => unreachable.push(format!("{name}: {e}")),
        }
    }
    actors.sort_by(|a, b| (&a.node, &a.kind, &a.key).cmp(&(&b.node, &b.kind, &b.key)));
    AdminReply::ClusterActors {
        actors,
        unreachable,
        truncated,
    }
}

/// `EvictActor`, `CancelTurn`: carried out by the node where the conversation's actor
/// runs (this one), else by its shard's leader, asked over the peer API.
pub async fn on_conversation_host(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    request: AdminRequest,
) -> Result<AdminReply, WireError> {
    let conversation = match &request {
        AdminRequest::EvictActor { conversation } | AdminRequest::CancelTurn { conversation } => {
            *conversation
        }
        _ => {
            return Err(WireError::invalid("request", "not a conversation request"));
        }
    };
    let shard = conversation.shard;
    if shard.0 >= ctx.cluster.shard_count() {
        return Err(WireError::invalid(
            "conversation",
            format!(
                "{conversation} names shard {shard}, but the cluster has shards 0 to {}; check the id",
                ctx.cluster.shard_count().saturating_sub(1)
            ),
        ));
    }
    // Where the actor runs now wins over where requests would go: a node that lost its
    // lease may still be stopping it, and a node that leads but has no lease yet may
    // still be starting it.
    if admin_api::runs_here(host, conversation).await {
        return admin_api::local(request, ctx, host).await;
    }
    match ctx.cluster.route(shard) {
        // Not here, and no other host: nothing runs it (a host without its lease has
        // stopped its actors).
        Route::Local | Route::Unavailable => admin_api::local(request, ctx, host).await,
        Route::Remote(leader) => {
            let addr: std::net::SocketAddr = leader.addr.parse().map_err(|e| {
                ctx.internal_error("leader address", format!("{}: {e}", leader.addr))
            })?;
            let timeout = Duration::from_millis(MEMBER_TIMEOUT_MS);
            match ask_member(ctx, addr, request, timeout).await {
                Ok(answer) => answer,
                Err(e) => Err(WireError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "cannot reach {}, which hosts shard {shard}: {e}; retry",
                        leader.name
                    ),
                )),
            }
        }
    }
}

/// `Events`: every member's recent events, merged by time; members that did not answer
/// are listed with why.
pub async fn events(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
    after_ms: Option<u64>,
    limit: u32,
) -> AdminReply {
    let request = AdminRequest::Events { after_ms, limit };
    let mut all = Vec::new();
    let mut unreachable = Vec::new();
    for (name, answer) in gather(ctx, host, &request).await {
        match answer {
            Ok(AdminReply::Events { events, .. }) => {
                all.extend(events.into_iter().filter(|e| e.node == name));
            }
            Ok(_) => unreachable.push(format!("{name}: an unexpected reply")),
            Err(e) => unreachable.push(format!("{name}: {e}")),
        }
    }
    AdminReply::Events {
        events: crate::telemetry::events::merge(all, limit),
        unreachable,
    }
}
