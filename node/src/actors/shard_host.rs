//! The shard host: activates conversation actors on demand and supervises them.
//!
//! In single-node mode this node hosts every shard. A conversation actor that stops
//! (idle passivation, eviction, crash) is removed from the registry; the next request
//! for it activates it again from the store, which also saves a turn interrupted by a
//! crash as interrupted.
//!
//! The host never waits on an activation (which commits an `Activate` and may wait on
//! consensus): it starts the actor in a task and answers the requests that wait for it
//! when the task reports back ([`ShardHostMsg::Activated`]), so one shard without quorum
//! holds up nobody else. Each conversation is in one [`Slot`]: activating, active or
//! stopping. A request for a stopping conversation waits until its actor, and so its
//! agent process, is gone before a new activation starts: two agent processes of one
//! session never run side by side on this node either.
//!
//! **Handover.** Before this node gives a shard's leadership away (drain, placement,
//! balance, shutdown) it hands the shard over between turns ([`hand_over`]): no new
//! activation, each conversation takes no new turn and stops once its running turn has
//! ended (or is ended at a deadline, keeping what it streamed), so agents stop cleanly
//! instead of being killed when the lease lapses.

use super::conversation::{ConversationActor, ConversationArgs, ConversationMsg};
use crate::cluster::{Hosting, ProposeError};
use crate::context::NodeContext;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use shoal_protocol::{ConversationId, ErrorCode, ShardId, WireError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How long stopping one conversation actor may take (its agent process gets ~3 s).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Requests waiting for one conversation's activation at most; more are refused as busy.
pub const ACTIVATION_WAITERS_MAX: usize = 256;

type ActorReply = RpcReplyPort<Result<ActorRef<ConversationMsg>, WireError>>;

/// Messages of [`ShardHost`].
#[derive(Debug)]
pub enum ShardHostMsg {
    /// The actor of a conversation, activating it if needed.
    Conversation {
        /// The conversation.
        id: ConversationId,
        /// Reply: the actor, or not found / busy / unavailable.
        reply: ActorReply,
    },
    /// Every active conversation actor.
    Active {
        /// Reply.
        reply: RpcReplyPort<Vec<(ConversationId, ActorRef<ConversationMsg>)>>,
    },
    /// Conversations whose actor is not running yet or any more: `activating` (its
    /// activation waits on its commit) or `stopping` (for `shoalctl admin actors`).
    Transitions {
        /// Reply.
        reply: RpcReplyPort<Vec<(ConversationId, &'static str)>>,
    },
    /// This node stopped hosting `shard` (lease lost or leadership moved): stop its
    /// conversation actors. Their agent processes were already killed by the fence.
    Release {
        /// The shard.
        shard: ShardId,
    },
    /// Stop a conversation's actor (and its agent process) now.
    Evict {
        /// The conversation.
        id: ConversationId,
        /// Whether it was active (or activating).
        reply: RpcReplyPort<bool>,
    },
    /// Start handing `shard` over: no new activations; replies with its active actors
    /// (each is then asked to quiesce). With `if_idle`, a conversation still activating
    /// or stopping makes the shard busy: the reply is `None` and nothing changed.
    BeginHandover {
        /// The shard.
        shard: ShardId,
        /// Only if no conversation is between states ([`Handover::IfIdle`]).
        if_idle: bool,
        /// Its active conversation actors, or `None`: busy.
        reply: RpcReplyPort<Option<Vec<ActorRef<ConversationMsg>>>>,
    },
    /// Reply once no conversation of `shard` runs here.
    AwaitEmpty {
        /// The shard.
        shard: ShardId,
        /// Replied when empty.
        reply: RpcReplyPort<()>,
    },
    /// The handover of `shard` is over (moved, or the move failed): activate on demand
    /// again if this node still hosts it.
    EndHandover {
        /// The shard.
        shard: ShardId,
    },
    /// An activation task finished (sent by the host to itself).
    Activated {
        /// The conversation.
        id: ConversationId,
        /// The new actor, or why it could not start.
        result: Result<ActorRef<ConversationMsg>, WireError>,
    },
}

/// Where one conversation's actor is in its life.
enum Slot {
    /// Its activation task runs; these requests wait for it. `stop` is set when the
    /// shard was released or the conversation evicted meanwhile.
    Activating {
        waiters: Vec<ActorReply>,
        stop: Option<&'static str>,
    },
    /// Running.
    Active(ActorRef<ConversationMsg>),
    /// Stopping; these requests are served by a new activation once it is gone.
    Stopping { waiters: Vec<ActorReply> },
}

/// State of [`ShardHost`].
pub struct ShardHostState {
    ctx: Arc<NodeContext>,
    slots: BTreeMap<ConversationId, Slot>,
    by_actor: BTreeMap<ActorId, ConversationId>,
    /// Shards being handed over: no activations.
    moving: BTreeSet<ShardId>,
    /// Waiting for a shard to have no conversation here.
    empty_waiters: Vec<(ShardId, RpcReplyPort<()>)>,
}

/// The actor. See the module doc.
#[derive(Debug, Default)]
pub struct ShardHost;

impl Actor for ShardHost {
    type Msg = ShardHostMsg;
    type State = ShardHostState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: Arc<NodeContext>,
    ) -> Result<Self::State, ActorProcessingErr> {
        for group in ctx.cluster.groups() {
            tokio::spawn(follow_hosting(ctx.clone(), group.shard, myself.clone()));
        }
        Ok(ShardHostState {
            ctx,
            slots: BTreeMap::new(),
            by_actor: BTreeMap::new(),
            moving: BTreeSet::new(),
            empty_waiters: Vec::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop children gracefully (ractor would only kill them): their post_stop saves a
        // running turn as interrupted and shuts their agent processes down. Those whose
        // activation still runs are stopped when they report back to a host that is gone.
        let actors: Vec<ActorRef<ConversationMsg>> = state
            .slots
            .values()
            .filter_map(|slot| match slot {
                Slot::Active(actor) => Some(actor.clone()),
                _ => None,
            })
            .collect();
        let stops = actors.iter().map(|actor| {
            actor.stop_and_wait(Some("node shutting down".into()), Some(STOP_TIMEOUT))
        });
        futures::future::join_all(stops).await;
        state.slots.clear();
        state.by_actor.clear();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            _ => return Ok(()),
        };
        let Some(id) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if let Some(err) = failure {
            // Restart policy: on demand. The next request reactivates it from the store.
            tracing::error!(conversation = %id, error = %err, "conversation actor failed; it restarts on the next request");
        }
        match state.slots.remove(&id) {
            // Requests came while it stopped: serve them from a new activation.
            Some(Slot::Stopping { waiters }) if !waiters.is_empty() => {
                start_activation(&myself, state, id, waiters);
            }
            Some(Slot::Stopping { .. }) | None => {}
            Some(Slot::Active(actor)) if actor.get_id() == cell.get_id() => {}
            // Not this actor's slot: keep it.
            Some(slot) => {
                state.slots.insert(id, slot);
            }
        }
        reply_if_empty(state);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardHostMsg::Conversation { id, reply } => request(&myself, state, id, reply),
            ShardHostMsg::Activated { id, result } => activated(state, id, result),
            ShardHostMsg::Active { reply } => {
                let active = state
                    .slots
                    .iter()
                    .filter_map(|(id, slot)| match slot {
                        Slot::Active(actor) => Some((*id, actor.clone())),
                        _ => None,
                    })
                    .collect();
                let _ = reply.send(active);
            }
            ShardHostMsg::Transitions { reply } => {
                let transitions = state
                    .slots
                    .iter()
                    .filter_map(|(id, slot)| match slot {
                        Slot::Activating { .. } => Some((*id, "activating")),
                        Slot::Stopping { .. } => Some((*id, "stopping")),
                        Slot::Active(_) => None,
                    })
                    .collect();
                let _ = reply.send(transitions);
            }
            ShardHostMsg::Release { shard } => {
                let ids: Vec<ConversationId> = state
                    .slots
                    .keys()
                    .filter(|id| id.shard == shard)
                    .copied()
                    .collect();
                if !ids.is_empty() {
                    tracing::info!(%shard, conversations = ids.len(), "shard released: stopping its conversations");
                }
                for id in ids {
                    stop(state, id, "the shard moved to another node");
                }
            }
            ShardHostMsg::Evict { id, reply } => {
                let _ = reply.send(stop(state, id, "evicted by an admin"));
            }
            ShardHostMsg::BeginHandover {
                shard,
                if_idle,
                reply,
            } => {
                let in_between = state
                    .slots
                    .iter()
                    .any(|(id, slot)| id.shard == shard && !matches!(slot, Slot::Active(_)));
                if if_idle && in_between {
                    // A balance move must not cut an activation (its first turn would
                    // die with "stopped on this node"): the shard is busy, try later.
                    let _ = reply.send(None);
                    return Ok(());
                }
                state.moving.insert(shard);
                let mut actors = Vec::new();
                for (id, slot) in state.slots.iter_mut().filter(|(id, _)| id.shard == shard) {
                    match slot {
                        Slot::Active(actor) => actors.push(actor.clone()),
                        Slot::Activating { stop, .. } => *stop = Some("the shard is moving"),
                        Slot::Stopping { waiters } => {
                            for reply in waiters.drain(..) {
                                let _ = reply.send(Err(unavailable(*id, "its shard is moving")));
                            }
                        }
                    }
                }
                let _ = reply.send(Some(actors));
            }
            ShardHostMsg::AwaitEmpty { shard, reply } => {
                state.empty_waiters.push((shard, reply));
                reply_if_empty(state);
            }
            ShardHostMsg::EndHandover { shard } => {
                state.moving.remove(&shard);
            }
        }
        Ok(())
    }
}

/// Answers the handovers waiting for a shard that has no conversation here any more.
fn reply_if_empty(state: &mut ShardHostState) {
    for (shard, reply) in std::mem::take(&mut state.empty_waiters) {
        if state.slots.keys().any(|id| id.shard == shard) {
            state.empty_waiters.push((shard, reply));
        } else {
            let _ = reply.send(());
        }
    }
}

/// Stops a conversation's actor (or the one being activated, once it is up). `true` if
/// it was active or activating.
fn stop(state: &mut ShardHostState, id: ConversationId, reason: &'static str) -> bool {
    match state.slots.get_mut(&id) {
        Some(Slot::Active(actor)) => {
            actor.stop(Some(reason.into()));
            state.slots.insert(
                id,
                Slot::Stopping {
                    waiters: Vec::new(),
                },
            );
            true
        }
        Some(Slot::Activating { stop, .. }) => {
            *stop = Some(reason);
            true
        }
        Some(Slot::Stopping { .. }) | None => false,
    }
}

fn unavailable(id: ConversationId, why: &str) -> WireError {
    WireError::new(
        ErrorCode::Unavailable,
        format!("conversation {id}: {why}; retry"),
    )
}

/// A request for a conversation's actor: answered now, or when its activation (or its
/// predecessor's stop) finishes.
fn request(
    myself: &ActorRef<ShardHostMsg>,
    state: &mut ShardHostState,
    id: ConversationId,
    reply: ActorReply,
) {
    let waiters = match state.slots.get_mut(&id) {
        Some(Slot::Active(actor)) => {
            let _ = reply.send(Ok(actor.clone()));
            return;
        }
        Some(Slot::Activating { waiters, .. } | Slot::Stopping { waiters }) => waiters,
        None => {
            start_activation(myself, state, id, vec![reply]);
            return;
        }
    };
    if waiters.len() >= ACTIVATION_WAITERS_MAX {
        let _ = reply.send(Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "{ACTIVATION_WAITERS_MAX} requests already wait for conversation {id} to start; retry shortly"
            ),
        )));
        return;
    }
    waiters.push(reply);
}

/// Checks that `id` can be activated here and starts its activation in a task.
fn start_activation(
    myself: &ActorRef<ShardHostMsg>,
    state: &mut ShardHostState,
    id: ConversationId,
    waiters: Vec<ActorReply>,
) {
    if let Err(e) = check_activation(state, id) {
        for reply in waiters {
            let _ = reply.send(Err(e.clone()));
        }
        return;
    }
    state.slots.insert(
        id,
        Slot::Activating {
            waiters,
            stop: None,
        },
    );
    let args = ConversationArgs {
        ctx: state.ctx.clone(),
        id,
    };
    let host = myself.clone();
    let ctx = state.ctx.clone();
    tokio::spawn(async move {
        let result = Actor::spawn_linked(None, ConversationActor, args, host.get_cell())
            .await
            .map(|(actor, _)| actor)
            .map_err(|e| activation_error(&ctx, id, e));
        if let Err(ractor::MessagingErr::SendErr(ShardHostMsg::Activated {
            result: Ok(actor),
            ..
        })) = host.cast(ShardHostMsg::Activated { id, result })
        {
            // The host is gone (shutting down): nobody else will stop it.
            actor.stop(Some("node shutting down".into()));
        }
    });
}

fn check_activation(state: &ShardHostState, id: ConversationId) -> Result<(), WireError> {
    let not_found = || WireError::not_found(format!("conversation {id} does not exist"));
    if !state.ctx.shard_exists(id.shard) {
        return Err(not_found());
    }
    if state.moving.contains(&id.shard) {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "shard {} is moving to another node; retry in a moment",
                id.shard
            ),
        ));
    }
    if !matches!(state.ctx.cluster.hosting(id.shard), Hosting::Active { .. }) {
        return Err(WireError::new(
            ErrorCode::Unavailable,
            format!("this node does not host shard {} now; retry", id.shard),
        ));
    }
    match state.ctx.store.conversation(id) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(not_found()),
        Err(e) => {
            return Err(state
                .ctx
                .internal_error(&format!("cannot read conversation {id}"), e));
        }
    }
    let max = state.ctx.config.limits.active_conversations_max.get() as usize;
    if state.slots.len() >= max {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "this node has {max} active conversations (limits.active_conversations_max); retry shortly"
            ),
        ));
    }
    Ok(())
}

/// Why an activation failed, for the requests that waited on it. An activation that
/// could not commit (no quorum, leadership moving, overloaded) is worth a retry.
fn activation_error(ctx: &NodeContext, id: ConversationId, err: ractor::SpawnErr) -> WireError {
    let text = err.to_string();
    tracing::warn!(conversation = %id, error = %text, "activation failed");
    let retryable = match &err {
        ractor::SpawnErr::StartupFailed(inner) => {
            inner.downcast_ref::<ProposeError>().is_some_and(|e| {
                matches!(
                    e,
                    ProposeError::Unavailable { .. }
                        | ProposeError::NotLeader { .. }
                        | ProposeError::Overloaded { .. }
                )
            })
        }
        _ => false,
    };
    if retryable {
        unavailable(id, "its shard cannot commit the activation now")
    } else {
        ctx.internal_error(&format!("cannot activate conversation {id}"), text)
    }
}

/// An activation task reported back: answer the requests that waited for it.
fn activated(
    state: &mut ShardHostState,
    id: ConversationId,
    result: Result<ActorRef<ConversationMsg>, WireError>,
) {
    let Some(Slot::Activating { waiters, stop }) = state.slots.remove(&id) else {
        // Not expected: the slot of an activation in flight is never replaced.
        if let Ok(actor) = result {
            actor.stop(Some("activation no longer wanted".into()));
        }
        return;
    };
    match result {
        Ok(actor) => {
            state.by_actor.insert(actor.get_id(), id);
            if let Some(reason) = stop {
                actor.stop(Some(reason.into()));
                for reply in waiters {
                    let _ = reply.send(Err(unavailable(id, reason)));
                }
                state.slots.insert(
                    id,
                    Slot::Stopping {
                        waiters: Vec::new(),
                    },
                );
                return;
            }
            for reply in waiters {
                let _ = reply.send(Ok(actor.clone()));
            }
            state.slots.insert(id, Slot::Active(actor));
        }
        Err(e) => {
            for reply in waiters {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// How a shard is handed over.
#[derive(Debug, Clone, Copy)]
pub enum Handover {
    /// Only if no turn runs in it (a balance move): otherwise nothing changes.
    IfIdle,
    /// Running turns may go on until the deadline, then are ended as interrupted
    /// (keeping what they streamed).
    Until(tokio::time::Instant),
}

/// Why a handover did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// [`Handover::IfIdle`] and a turn runs.
    #[error("a turn is running in shard {0}")]
    Busy(ShardId),
    /// The conversations did not stop in time.
    #[error("the conversations of shard {0} did not stop in time")]
    Timeout(ShardId),
    /// The shard host is gone (shutting down).
    #[error("the shard host is gone")]
    Gone,
}

/// Hands `shard` over between turns: when this returns `Ok`, no conversation of the
/// shard runs here and none will be activated until [`ShardHostMsg::EndHandover`], which
/// the caller sends once the leadership moved (or the move failed). On `Err` the
/// handover is already ended.
pub async fn hand_over(
    host: &ActorRef<ShardHostMsg>,
    shard: ShardId,
    how: Handover,
    why: &'static str,
) -> Result<(), HandoverError> {
    use ractor::rpc::CallResult;
    let call_timeout = Some(std::time::Duration::from_secs(5));
    let end = |e: HandoverError| {
        let _ = host.cast(ShardHostMsg::EndHandover { shard });
        e
    };
    let if_idle = matches!(how, Handover::IfIdle);
    let actors = match host
        .call(
            |reply| ShardHostMsg::BeginHandover {
                shard,
                if_idle,
                reply,
            },
            call_timeout,
        )
        .await
    {
        Ok(CallResult::Success(Some(actors))) => actors,
        // Nothing was begun: nothing to end.
        Ok(CallResult::Success(None)) => return Err(HandoverError::Busy(shard)),
        _ => return Err(end(HandoverError::Gone)),
    };
    let until = match how {
        Handover::IfIdle => None,
        Handover::Until(deadline) => Some(deadline),
    };
    let asks = actors.iter().map(|actor| {
        actor.call(
            |reply| ConversationMsg::Quiesce { until, why, reply },
            call_timeout,
        )
    });
    let answers = futures::future::join_all(asks).await;
    // An actor that stopped meanwhile (no answer) is fine: it is gone.
    let refused = answers
        .iter()
        .any(|a| matches!(a, Ok(CallResult::Success(false))));
    if matches!(how, Handover::IfIdle) {
        for actor in &actors {
            let _ = actor.cast(ConversationMsg::Release { go: !refused });
        }
    }
    if refused {
        return Err(end(HandoverError::Busy(shard)));
    }
    // Turns get until the deadline, then a moment to commit their end and stop agents.
    let wait = match how {
        Handover::IfIdle => std::time::Duration::ZERO,
        Handover::Until(deadline) => {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        }
    } + std::time::Duration::from_millis(HANDOVER_STOP_GRACE_MS);
    match host
        .call(
            |reply| ShardHostMsg::AwaitEmpty { shard, reply },
            Some(wait),
        )
        .await
    {
        Ok(CallResult::Success(())) => Ok(()),
        Ok(CallResult::Timeout) => Err(end(HandoverError::Timeout(shard))),
        _ => Err(end(HandoverError::Gone)),
    }
}

/// After a handover's deadline: time for turns to commit their end and for agent
/// processes to stop (an agent gets up to ~3 s after stdin closes, then SIGTERM/SIGKILL).
pub const HANDOVER_STOP_GRACE_MS: u64 = 15_000;

/// Follows one shard's hosting state: unfences its agents when this node starts hosting
/// it; fences them (SIGKILL, at once) and releases its actors when it stops.
async fn follow_hosting(ctx: Arc<NodeContext>, shard: ShardId, host: ActorRef<ShardHostMsg>) {
    let Some(mut hosting) = ctx.cluster.watch_hosting(shard) else {
        return;
    };
    loop {
        let state = *hosting.borrow_and_update();
        match state {
            Hosting::Active { .. } => ctx.fence.unfence(shard),
            Hosting::Inactive => {
                let killed = ctx.fence.fence(shard);
                if killed > 0 {
                    tracing::warn!(%shard, killed, "lost the shard lease: agent processes killed");
                }
                if host.cast(ShardHostMsg::Release { shard }).is_err() {
                    return;
                }
            }
        }
        if hosting.changed().await.is_err() {
            ctx.fence.fence(shard);
            return;
        }
    }
}
