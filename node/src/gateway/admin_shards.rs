//! Moving a shard by hand (`shoalctl shard lead | move | unpin | show`): an operator's
//! pin, stored in the shard itself and carried out by its leader's reconciler.
//!
//! Both requests ([`AdminRequest::PinShard`], [`AdminRequest::ShardPlacement`]) are
//! answered by the shard's leader. The pin is a replicated command of the shard
//! ([`crate::shard::state_machine::pins`]), so it outlives restarts and failovers and
//! whichever node leads next keeps to it; and the leader's view of the shard's
//! membership is the one that counts. Any other node passes the request on to the leader
//! over the peer API (once: a node that no longer leads answers `unavailable`).
//!
//! Why a pin and not a one-off move: placement is rendezvous hashing, so a replica or
//! leadership moved without a record would be moved back by the next reconciler round
//! (or by leadership balance). The pin only changes which replicas and leader placement
//! wants; the moves themselves are the reconciler's usual checked steps (learner, catch
//! up, promote, remove, hand over between turns), so ARCHITECTURE.md's invariants hold.

use super::admin_cluster::{self, MEMBER_TIMEOUT_MS, checked_node, unknown_node};
use crate::actors::conversation::propose_error;
use crate::cluster::membership::{Liveness, MembersView};
use crate::cluster::placement::desired_with_pin;
use crate::cluster::reconciler::resolve_pin;
use crate::cluster::{Route, ShardStatus, drain};
use crate::context::NodeContext;
use crate::shard::state_machine::ShardCommand;
use crate::telemetry::events::EventKind;
use shoal_protocol::admin::{AdminReply, AdminRequest, ShardPin, ShardPinChange, ShardPlacement};
use shoal_protocol::{ErrorCode, ShardId, WireError};
use std::collections::BTreeSet;
use std::time::Duration;

/// An admin client's `PinShard` or `ShardPlacement`: answered here if this node leads
/// the shard, else by the leader.
pub async fn on_shard_leader(
    ctx: &NodeContext,
    request: AdminRequest,
) -> Result<AdminReply, WireError> {
    let shard = shard_of(ctx, &request)?;
    if leads(ctx, shard) {
        return answer(ctx, request).await;
    }
    match ctx.cluster.route(ShardId(shard)) {
        Route::Remote(leader) => {
            let addr: std::net::SocketAddr = leader.addr.parse().map_err(|e| {
                ctx.internal_error("leader address", format!("{}: {e}", leader.addr))
            })?;
            let timeout = Duration::from_millis(MEMBER_TIMEOUT_MS);
            match admin_cluster::ask_member(ctx, addr, request, timeout).await {
                Ok(answer) => answer,
                Err(e) => Err(WireError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "cannot reach {}, which leads shard {shard}: {e}; retry",
                        leader.name
                    ),
                )),
            }
        }
        Route::Local | Route::Unavailable => Err(no_leader(shard)),
    }
}

/// This node's answer as the shard's leader (asked by an admin client or a peer).
pub async fn answer(ctx: &NodeContext, request: AdminRequest) -> Result<AdminReply, WireError> {
    let shard = shard_of(ctx, &request)?;
    if !leads(ctx, shard) {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "{} does not lead shard {shard} (any more); retry",
                ctx.node_id()
            ),
        ));
    }
    let status = ctx
        .cluster
        .shard_status_of(ShardId(shard))
        .ok_or_else(|| no_leader(shard))?;
    let view = ctx.membership.watch().borrow().clone();
    let stored = ctx
        .store
        .shard_pin(ShardId(shard))
        .map_err(|e| ctx.internal_error("read the shard's pin", e))?;
    match request {
        AdminRequest::PinShard { change, .. } => {
            pin(ctx, &view, &status, stored.unwrap_or_default(), change).await
        }
        _ => Ok(AdminReply::ShardPlacement(placement(
            ctx, &view, &status, stored,
        ))),
    }
}

/// The shard a request is about, checked against the cluster's shard count.
fn shard_of(ctx: &NodeContext, request: &AdminRequest) -> Result<u16, WireError> {
    let (AdminRequest::PinShard { shard, .. } | AdminRequest::ShardPlacement { shard }) = request
    else {
        return Err(WireError::invalid("request", "not a shard request"));
    };
    let count = ctx.cluster.shard_count();
    if *shard >= count {
        return Err(WireError::invalid(
            "shard",
            format!(
                "the cluster has shards 0 to {}; see `shoalctl shards`",
                count.saturating_sub(1)
            ),
        ));
    }
    Ok(*shard)
}

fn leads(ctx: &NodeContext, shard: u16) -> bool {
    ctx.cluster.group(ShardId(shard)).is_some_and(|g| {
        let m = g.raft.metrics();
        let m = m.borrow();
        m.state == openraft::ServerState::Leader && m.current_leader == Some(ctx.cluster.me)
    })
}

fn no_leader(shard: u16) -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!("shard {shard} has no leader right now (an election is running); retry"),
    )
}

/// A node a pin may name: a member, alive, not draining.
fn placeable(ctx: &NodeContext, view: &MembersView, node: &str) -> Result<(), WireError> {
    checked_node(node)?;
    let Some(member) = drain::member_named(view, node) else {
        return Err(unknown_node(ctx, node));
    };
    if member.meta.draining {
        return Err(WireError::invalid(
            "node",
            format!("{node} is draining: it holds no shards; `shoalctl undrain {node}` first"),
        ));
    }
    if member.liveness != Liveness::Alive && node != ctx.node_id() {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!("{node} is not alive in gossip; a shard cannot move to it now"),
        ));
    }
    Ok(())
}

/// The shard's voters by name, in Raft id order.
fn voter_names(status: &ShardStatus) -> Vec<String> {
    status
        .voters
        .iter()
        .filter_map(|id| status.nodes.get(id).map(|n| n.name.clone()))
        .collect()
}

async fn pin(
    ctx: &NodeContext,
    view: &MembersView,
    status: &ShardStatus,
    old: ShardPin,
    change: ShardPinChange,
) -> Result<AdminReply, WireError> {
    let shard = status.shard;
    let voters = voter_names(status);
    let (pin, what) = match change {
        ShardPinChange::Clear => (None, "unpinned: back to automatic placement".to_owned()),
        ShardPinChange::Lead { node } => {
            placeable(ctx, view, &node)?;
            let what = format!("pinned to be led by {node}");
            let pin = ShardPin {
                leader: Some(node),
                replicas: old.replicas,
            };
            (Some(pin), what)
        }
        ShardPinChange::Move { from, to } => {
            checked_node(&from)?;
            if from == to {
                return Err(WireError::invalid(
                    "to",
                    "`from` and `to` name the same node",
                ));
            }
            // A pinned set (an earlier move) is what placement works toward; else the
            // replicas as they are.
            let base = if old.replicas.is_empty() {
                voters.clone()
            } else {
                old.replicas.clone()
            };
            if !old.replicas.is_empty() && base.contains(&to) && !base.contains(&from) {
                // Asked again (a retry): already pinned so.
                return Ok(AdminReply::ShardPinned {
                    shard,
                    pin: Some(old),
                });
            }
            if base.contains(&to) {
                return Err(WireError::invalid(
                    "to",
                    format!("{to} already holds a replica of shard {shard}"),
                ));
            }
            if !base.contains(&from) {
                return Err(WireError::invalid(
                    "from",
                    format!(
                        "{from} holds no replica of shard {shard}; its replicas: {}",
                        base.join(", ")
                    ),
                ));
            }
            placeable(ctx, view, &to)?;
            let replicas: Vec<String> = base
                .into_iter()
                .filter(|n| *n != from)
                .chain([to.clone()])
                .collect();
            let what = format!(
                "its replica moves from {from} to {to} (replicas pinned to {})",
                replicas.join(", ")
            );
            let pin = ShardPin {
                leader: old.leader.filter(|l| *l != from),
                replicas,
            };
            (Some(pin), what)
        }
    };
    ctx.cluster
        .propose(
            ShardId(shard),
            ShardCommand::SetShardPin { pin: pin.clone() },
        )
        .await
        .map_err(|e| propose_error(ctx, "pin the shard", e))?;
    ctx.event(EventKind::Placement, format!("shard {shard}: {what}"));
    tracing::warn!(shard, %what, "an operator changed the shard's pin");
    Ok(AdminReply::ShardPinned { shard, pin })
}

/// The shard's placement from this node, its leader.
fn placement(
    ctx: &NodeContext,
    view: &MembersView,
    status: &ShardStatus,
    pin: Option<ShardPin>,
) -> ShardPlacement {
    let me = ctx.cluster.me;
    // Members that may hold replicas, in their current identities.
    let candidates: BTreeSet<u64> = drain::placeable_members(view, ctx.node_id())
        .map(|m| m.meta.raft_id)
        .collect();
    let resolved = pin
        .as_ref()
        .map(|p| resolve_pin(view, p))
        .unwrap_or_default();
    let desired = desired_with_pin(status.shard, &candidates, &resolved, ctx.cluster.replicas());
    let leader_ok = resolved
        .leader
        .is_none_or(|l| l == me || !candidates.contains(&l));
    let settled = status.learners.is_empty()
        && status.voters == desired.iter().copied().collect::<BTreeSet<_>>()
        && leader_ok;
    let name = |id: &u64| {
        status
            .nodes
            .get(id)
            .map(|n| n.name.clone())
            .or_else(|| view.by_raft_id(*id).map(|m| m.meta.name.clone()))
            .unwrap_or_else(|| format!("{id:016x}"))
    };
    ShardPlacement {
        shard: status.shard,
        leader: ctx.node_id().to_owned(),
        voters: status.voters.iter().map(name).collect(),
        learners: status.learners.iter().map(name).collect(),
        pin,
        desired: desired.iter().map(name).collect(),
        settled,
    }
}
