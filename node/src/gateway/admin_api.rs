//! `shoal-admin/1`: one admin request per stream, one `Result<AdminReply, WireError>` back.

use super::REQUEST_BYTES_MAX;
use super::frames::{FrameIoError, read_frame, write_final_frame, write_frame};
use super::{admin_cluster, admin_shards};
use crate::actors::conversation::ConversationMsg;
use crate::actors::shard_host::ShardHostMsg;
use crate::cluster::membership::Liveness;
use crate::context::{Metrics, NodeContext};
use crate::security::tokens::Scope;
use ractor::{ActorRef, rpc::CallResult};
use shoal_protocol::admin::{
    ACTORS_PER_MEMBER_MAX, AGENT_ID_BYTES_MAX, AdminReply, AdminRequest, ClusterActorInfo,
    NodeStatus,
};
use shoal_protocol::client::RequestEnvelope;
use shoal_protocol::{ErrorCode, WireError};
use std::sync::Arc;
use std::time::Duration;

/// How long an admin request waits for an actor.
const ADMIN_CALL_TIMEOUT_MS: u64 = 5_000;
/// The longest token lifetime an admin can mint, in seconds (one year).
pub const ISSUED_TOKEN_TTL_SECS_MAX: u64 = 365 * 24 * 3600;

/// Serves one admin request stream.
pub async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
) -> Result<(), FrameIoError> {
    let envelope: RequestEnvelope<AdminRequest> =
        match read_frame(&mut recv, REQUEST_BYTES_MAX).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => return Ok(()),
            Err(FrameIoError::Invalid(e)) => {
                write_final_frame(&mut send, &Err::<AdminReply, _>(e.clone())).await;
                return Err(FrameIoError::Invalid(e));
            }
            Err(e) => return Err(e),
        };
    let reply = handle(envelope.body, ctx, host).await;
    write_frame(&mut send, &reply).await?;
    let _ = send.finish();
    Ok(())
}

async fn active(
    host: &ActorRef<ShardHostMsg>,
) -> Result<Vec<(shoal_protocol::ConversationId, ActorRef<ConversationMsg>)>, WireError> {
    match host
        .call(
            |reply| ShardHostMsg::Active { reply },
            Some(Duration::from_millis(ADMIN_CALL_TIMEOUT_MS)),
        )
        .await
    {
        Ok(CallResult::Success(list)) => Ok(list),
        _ => Err(WireError::new(
            ErrorCode::Unavailable,
            "the shard host did not answer; the node may be shutting down",
        )),
    }
}

/// Whether `conversation` has an actor on this node (active, activating or stopping).
pub(super) async fn runs_here(
    host: &ActorRef<ShardHostMsg>,
    conversation: shoal_protocol::ConversationId,
) -> bool {
    if active(host)
        .await
        .is_ok_and(|list| list.iter().any(|(id, _)| *id == conversation))
    {
        return true;
    }
    let transitions = host
        .call(
            |reply| ShardHostMsg::Transitions { reply },
            Some(Duration::from_millis(ADMIN_CALL_TIMEOUT_MS)),
        )
        .await;
    matches!(transitions, Ok(CallResult::Success(list)) if list.iter().any(|(id, _)| *id == conversation))
}

async fn describe_all(
    host: &ActorRef<ShardHostMsg>,
) -> Result<
    (
        Vec<shoal_protocol::admin::ActorInfo>,
        Vec<shoal_protocol::admin::FollowerInfo>,
    ),
    WireError,
> {
    let timeout = Some(Duration::from_millis(ADMIN_CALL_TIMEOUT_MS));
    let calls = active(host)
        .await?
        .into_iter()
        .map(|(_, actor)| async move {
            actor
                .call(|reply| ConversationMsg::Describe { reply }, timeout)
                .await
        });
    let mut actors = Vec::new();
    let mut followers = Vec::new();
    for result in futures::future::join_all(calls).await {
        if let Ok(CallResult::Success((a, f))) = result {
            actors.extend(a);
            followers.extend(f);
        }
    }
    // Conversations between actors: an activation waiting on its commit, or a stop.
    if let Ok(CallResult::Success(transitions)) = host
        .call(|reply| ShardHostMsg::Transitions { reply }, timeout)
        .await
    {
        actors.extend(transitions.into_iter().map(|(id, state)| {
            shoal_protocol::admin::ActorInfo {
                kind: "conversation".into(),
                key: id.to_string(),
                state: state.into(),
            }
        }));
    }
    Ok((actors, followers))
}

/// An admin client's request: the cluster-wide ones here, the rest by [`local`].
async fn handle(
    request: AdminRequest,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
) -> Result<AdminReply, WireError> {
    match request {
        AdminRequest::Drain { node } => admin_cluster::set_drain(ctx, node, true).await,
        AdminRequest::Undrain { node } => admin_cluster::set_drain(ctx, node, false).await,
        AdminRequest::DrainProgress { node } => {
            admin_cluster::drain_progress(ctx, host, node).await
        }
        AdminRequest::LogFilter {
            node: Some(node),
            filter,
        } if node != ctx.node_id() => admin_cluster::log_filter_on(ctx, node, filter).await,
        AdminRequest::ClusterActors => Ok(admin_cluster::cluster_actors(ctx, host).await),
        AdminRequest::Events { after_ms, limit } => {
            Ok(admin_cluster::events(ctx, host, after_ms, limit).await)
        }
        request @ (AdminRequest::EvictActor { .. } | AdminRequest::CancelTurn { .. }) => {
            admin_cluster::on_conversation_host(ctx, host, request).await
        }
        request @ (AdminRequest::PinShard { .. } | AdminRequest::ShardPlacement { .. }) => {
            admin_shards::on_shard_leader(ctx, request).await
        }
        request => local(request, ctx, host).await,
    }
}

/// Whether a peer may ask this node for `request` ([`crate::peer::PeerRequest::Admin`]):
/// the questions about this node alone that cluster-wide answers are made of.
pub fn served_for_peers(request: &AdminRequest) -> bool {
    matches!(
        request,
        AdminRequest::Status
            | AdminRequest::Shards
            | AdminRequest::Members
            | AdminRequest::ListActors
            | AdminRequest::ListFollowers { .. }
            | AdminRequest::LogFilter { node: None, .. }
            | AdminRequest::ClusterActors
            | AdminRequest::EvictActor { .. }
            | AdminRequest::CancelTurn { .. }
            | AdminRequest::Events { .. }
            | AdminRequest::PinShard { .. }
            | AdminRequest::ShardPlacement { .. }
    )
}

/// Serves a peer's [`crate::peer::PeerRequest::Admin`]: this node's own answer.
pub async fn serve_for_peer(
    request: AdminRequest,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
) -> Result<AdminReply, WireError> {
    if !served_for_peers(&request) {
        return Err(WireError::invalid(
            "request",
            "this admin request is not served to peers; send it to the admin API",
        ));
    }
    local(request, ctx, host).await
}

/// A request about this node alone.
pub(super) async fn local(
    request: AdminRequest,
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
) -> Result<AdminReply, WireError> {
    match request {
        AdminRequest::Status => {
            let m = &ctx.metrics;
            Ok(AdminReply::Status(NodeStatus {
                node_id: ctx.node_id().to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                listen_addr: ctx.listen_addr.to_string(),
                uptime_secs: ctx.started.elapsed().as_secs(),
                conversations_active: Metrics::get(&m.conversations_active),
                agent_processes: Metrics::get(&m.agent_processes),
                followers: Metrics::get(&m.followers),
                turns_running: Metrics::get(&m.turns_running),
                connections: Metrics::get(&m.connections),
                follower_resyncs: Metrics::get(&m.follower_resyncs),
                checkpoints: Metrics::get(&m.checkpoints),
                checkpoint_bytes: Metrics::get(&m.checkpoint_bytes),
            }))
        }
        AdminRequest::ListActors => Ok(AdminReply::Actors(describe_all(host).await?.0)),
        AdminRequest::ListFollowers { conversation } => {
            let mut followers = describe_all(host).await?.1;
            if let Some(id) = conversation {
                followers.retain(|f| f.conversation == id);
            }
            Ok(AdminReply::Followers(followers))
        }
        AdminRequest::EvictActor { conversation } => {
            match host
                .call(
                    |reply| ShardHostMsg::Evict {
                        id: conversation,
                        reply,
                    },
                    Some(Duration::from_millis(ADMIN_CALL_TIMEOUT_MS)),
                )
                .await
            {
                Ok(CallResult::Success(was_active)) => Ok(AdminReply::Evicted { was_active }),
                _ => Err(WireError::new(
                    ErrorCode::Unavailable,
                    "the shard host did not answer",
                )),
            }
        }
        AdminRequest::IssueToken { user, ttl_secs } => {
            let user = shoal_protocol::UserId::parse(&user.0)
                .map_err(|e| WireError::invalid("user", e.to_string()))?;
            if ttl_secs == 0 || ttl_secs > ISSUED_TOKEN_TTL_SECS_MAX {
                return Err(WireError::invalid(
                    "ttl_secs",
                    format!("must be 1..={ISSUED_TOKEN_TTL_SECS_MAX} seconds"),
                ));
            }
            Ok(AdminReply::Token(ctx.signer.issue(
                &user,
                &[Scope::User],
                ctx.now_secs(),
                ttl_secs,
            )))
        }
        AdminRequest::Members => Ok(AdminReply::Members(members(ctx))),
        AdminRequest::Shards => Ok(AdminReply::Shards(shards(ctx))),
        // Answered by `handle` (they reach other members), never asked of one node.
        AdminRequest::Drain { .. }
        | AdminRequest::Undrain { .. }
        | AdminRequest::DrainProgress { .. } => Err(WireError::invalid(
            "request",
            "a cluster-wide request cannot be answered by one member alone",
        )),
        AdminRequest::InjectFault { fault } => inject_fault(ctx, fault),
        AdminRequest::Metrics => Ok(AdminReply::Metrics(crate::telemetry::prometheus::encode(
            ctx,
        ))),
        AdminRequest::LogFilter { filter, .. } => log_filter(ctx, filter),
        AdminRequest::ClusterActors => local_actors(ctx, host).await,
        AdminRequest::Events { after_ms, limit } => Ok(AdminReply::Events {
            events: ctx.events.since(after_ms, limit),
            unreachable: Vec::new(),
        }),
        AdminRequest::CancelTurn { conversation } => cancel_turn(host, conversation).await,
        // A peer passed it on to this node, the shard's leader.
        request @ (AdminRequest::PinShard { .. } | AdminRequest::ShardPlacement { .. }) => {
            admin_shards::answer(ctx, request).await
        }
        request @ (AdminRequest::Agents
        | AdminRequest::ProbeAgents { .. }
        | AdminRequest::SetAgentEnabled { .. }) => agents(ctx, request).await,
    }
}

/// This node's part of `ClusterActors`: its actors with their follower counts, at most
/// [`ACTORS_PER_MEMBER_MAX`].
async fn local_actors(
    ctx: &NodeContext,
    host: &ActorRef<ShardHostMsg>,
) -> Result<AdminReply, WireError> {
    let (actors, followers) = describe_all(host).await?;
    let mut per_conversation = std::collections::HashMap::<String, u32>::new();
    for f in &followers {
        *per_conversation
            .entry(f.conversation.to_string())
            .or_default() += 1;
    }
    let truncated = actors.len() > ACTORS_PER_MEMBER_MAX;
    let actors = actors
        .into_iter()
        .take(ACTORS_PER_MEMBER_MAX)
        .map(|a| ClusterActorInfo {
            node: ctx.node_id().to_owned(),
            followers: if a.kind == "conversation" {
                per_conversation.get(&a.key).copied().unwrap_or(0)
            } else {
                0
            },
            kind: a.kind,
            key: a.key,
            state: a.state,
            mailbox: None,
        })
        .collect();
    Ok(AdminReply::ClusterActors {
        actors,
        unreachable: Vec::new(),
        truncated,
    })
}

/// `CancelTurn` on this node: the conversation's actor, if active here, cancels its turn.
async fn cancel_turn(
    host: &ActorRef<ShardHostMsg>,
    conversation: shoal_protocol::ConversationId,
) -> Result<AdminReply, WireError> {
    let Some((_, actor)) = active(host)
        .await?
        .into_iter()
        .find(|(id, _)| *id == conversation)
    else {
        // No actor, no turn: a turn runs only inside its conversation's actor.
        return Ok(AdminReply::TurnCancelled { was_running: false });
    };
    match actor
        .call(
            |reply| ConversationMsg::AdminCancel { reply },
            Some(Duration::from_millis(ADMIN_CALL_TIMEOUT_MS)),
        )
        .await
    {
        Ok(CallResult::Success(was_running)) => Ok(AdminReply::TurnCancelled { was_running }),
        // Stopped meanwhile: its turn ended with it.
        Ok(CallResult::SenderError) | Err(_) => {
            Ok(AdminReply::TurnCancelled { was_running: false })
        }
        Ok(CallResult::Timeout) => Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "the actor of {conversation} did not answer within {ADMIN_CALL_TIMEOUT_MS} ms; retry"
            ),
        )),
    }
}

/// `LogFilter` on this node: reads it, or replaces it when `filter` parses.
fn log_filter(ctx: &NodeContext, filter: Option<String>) -> Result<AdminReply, WireError> {
    use crate::telemetry::log_filter::{self, LogFilterError};
    let filter = match filter {
        None => log_filter::current().ok_or_else(|| {
            WireError::new(
                ErrorCode::Unavailable,
                LogFilterError::NotReloadable.to_string(),
            )
        })?,
        Some(directives) => {
            let set = log_filter::set(&directives).map_err(|e| match e {
                LogFilterError::Invalid { .. } | LogFilterError::TooLong { .. } => {
                    WireError::invalid("filter", e.to_string())
                }
                LogFilterError::NotReloadable | LogFilterError::Reload(_) => {
                    WireError::new(ErrorCode::Unavailable, e.to_string())
                }
            })?;
            tracing::warn!(filter = %set, "log filter changed by an admin");
            set
        }
    };
    Ok(AdminReply::LogFilter {
        node: ctx.node_id().to_owned(),
        filter,
    })
}

/// `Agents`, `ProbeAgents`, `SetAgentEnabled`: this node's agent registry.
async fn agents(ctx: &NodeContext, request: AdminRequest) -> Result<AdminReply, WireError> {
    use crate::agents::RegistryError;
    let wire = |e: RegistryError| match e {
        RegistryError::Unknown { .. } => WireError::not_found(e.to_string()),
        RegistryError::Store(_) => ctx.internal_error("agent setting", e.to_string()),
    };
    let agents = match request {
        AdminRequest::ProbeAgents { agent } => {
            let agent = agent.map(checked_agent_id).transpose()?;
            ctx.agents
                .probe_now(ctx, agent.as_deref())
                .await
                .map_err(wire)?
        }
        AdminRequest::SetAgentEnabled { agent, enabled } => {
            let agent = checked_agent_id(agent)?;
            ctx.agents
                .set_enabled(ctx, &agent, enabled)
                .await
                .map_err(wire)?
        }
        _ => ctx.agents.list(ctx).await,
    };
    Ok(AdminReply::Agents {
        node: ctx.node_id().to_owned(),
        agents,
    })
}

/// An agent id from a request, at most [`AGENT_ID_BYTES_MAX`] bytes.
fn checked_agent_id(agent: String) -> Result<String, WireError> {
    if agent.is_empty() || agent.len() > AGENT_ID_BYTES_MAX {
        return Err(WireError::invalid(
            "agent",
            format!("an agent id is 1 to {AGENT_ID_BYTES_MAX} bytes; see `shoalctl agents`"),
        ));
    }
    Ok(agent)
}

fn inject_fault(
    ctx: &NodeContext,
    fault: shoal_protocol::admin::Fault,
) -> Result<AdminReply, WireError> {
    use shoal_protocol::admin::{FAULT_STALL_MS_MAX, Fault};
    if !ctx.seams.fault_injection {
        return Err(WireError::invalid(
            "fault",
            format!(
                "fault injection is off on this node; start it with {}=1 (chaos tests only)",
                crate::seam::FAULT_INJECTION_ENV
            ),
        ));
    }
    match fault {
        Fault::StallStorage { ms } => {
            if ms == 0 || ms > FAULT_STALL_MS_MAX {
                return Err(WireError::invalid(
                    "ms",
                    format!("must be 1..={FAULT_STALL_MS_MAX} milliseconds"),
                ));
            }
            ctx.store.stall_flushes(Duration::from_millis(ms));
        }
    }
    Ok(AdminReply::FaultInjected)
}

/// Appended to a replica's name in `Shards` when it is a store that node lost.
pub const OLD_STORE_SUFFIX: &str = "@old-store";

fn members(ctx: &NodeContext) -> Vec<shoal_protocol::admin::MemberInfo> {
    let view = ctx.membership.watch().borrow().clone();
    view.members
        .iter()
        .filter(|m| !m.meta.name.is_empty())
        .map(|m| shoal_protocol::admin::MemberInfo {
            node_id: m.meta.name.clone(),
            addr: m.meta.addr.to_string(),
            state: match m.liveness {
                Liveness::Alive => "alive",
                Liveness::Suspect => "suspect",
                Liveness::Down => "down",
            }
            .to_owned(),
            version: m.meta.version.clone(),
            leaders: m.meta.leaders,
            draining: m.meta.draining,
        })
        .collect()
}

fn shards(ctx: &NodeContext) -> Vec<shoal_protocol::admin::ShardInfo> {
    // The Raft id each node name runs as now: a member of an older id is a store that
    // node lost, shown as `name@old-store` until the leader replaces it.
    let view = ctx.membership.watch().borrow().clone();
    let current: std::collections::HashMap<&str, u64> = view
        .members
        .iter()
        .filter(|m| m.liveness == Liveness::Alive || m.meta.raft_id == ctx.cluster.me)
        .map(|m| (m.meta.name.as_str(), m.meta.raft_id))
        .collect();
    ctx.cluster
        .shard_status()
        .into_iter()
        .map(|s| {
            let name = |id: &u64| match s.nodes.get(id) {
                Some(n) if current.get(n.name.as_str()).is_some_and(|c| c != id) => {
                    format!("{}{OLD_STORE_SUFFIX}", n.name)
                }
                Some(n) => n.name.clone(),
                // Not in this node's copy of the membership (a replica still being
                // seeded knows the leader's id before the membership): gossip names it.
                None => view
                    .by_raft_id(*id)
                    .map_or_else(|| format!("{id:016x}"), |m| m.meta.name.clone()),
            };
            shoal_protocol::admin::ShardInfo {
                shard: s.shard,
                // A node holding no replica of the shard knows its leader from gossip.
                leader: s.leader.map(|l| name(&l)).or_else(|| {
                    ctx.cluster
                        .gossiped_leader(shoal_protocol::ShardId(s.shard))
                        .map(|(_, l)| l.name)
                }),
                replicas: s.voters.iter().map(name).collect(),
                learners: s.learners.iter().map(name).collect(),
                term: s.term,
                applied_index: s.applied,
                hosted_here: s.hosted_here,
                quiet: s.quiet,
            }
        })
        .collect()
}
