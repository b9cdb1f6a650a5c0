//! The shard host: activates conversation actors on demand and supervises them.
//!
//! In single-node mode this node hosts every shard. A conversation actor that stops
//! (idle passivation, eviction, crash) is removed from the registry; the next request
//! for it activates it again from the store, which also saves a turn interrupted by a
//! crash as interrupted.

use super::conversation::{ConversationActor, ConversationArgs, ConversationMsg};
use crate::cluster::Hosting;
use crate::context::NodeContext;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use shoal_protocol::{ConversationId, ErrorCode, ShardId, WireError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How long stopping one conversation actor may take (its agent process gets ~3 s).
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Messages of [`ShardHost`].
#[derive(Debug)]
pub enum ShardHostMsg {
    /// The actor of a conversation, activating it if needed.
    Conversation {
        /// The conversation.
        id: ConversationId,
        /// Reply: the actor, or not found / busy.
        reply: RpcReplyPort<Result<ActorRef<ConversationMsg>, WireError>>,
    },
    /// Every active conversation actor.
    Active {
        /// Reply.
        reply: RpcReplyPort<Vec<(ConversationId, ActorRef<ConversationMsg>)>>,
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
        /// Whether it was active.
        reply: RpcReplyPort<bool>,
    },
}

/// State of [`ShardHost`].
pub struct ShardHostState {
    ctx: Arc<NodeContext>,
    active: BTreeMap<ConversationId, ActorRef<ConversationMsg>>,
    by_actor: BTreeMap<ActorId, ConversationId>,
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
            active: BTreeMap::new(),
            by_actor: BTreeMap::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Stop children gracefully (ractor would only kill them): their post_stop saves a
        // running turn as interrupted and shuts their agent processes down.
        let stops = state.active.values().map(|actor| {
            actor.stop_and_wait(Some("node shutting down".into()), Some(STOP_TIMEOUT))
        });
        futures::future::join_all(stops).await;
        state.active.clear();
        state.by_actor.clear();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            _ => return Ok(()),
        };
        if let Some(id) = state.by_actor.remove(&cell.get_id()) {
            state.active.remove(&id);
            if let Some(err) = failure {
                // Restart policy: on demand. The next request reactivates it from the store.
                tracing::error!(conversation = %id, error = %err, "conversation actor failed; it restarts on the next request");
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardHostMsg::Conversation { id, reply } => {
                let _ = reply.send(activate(&myself, state, id).await);
            }
            ShardHostMsg::Active { reply } => {
                let _ = reply.send(
                    state
                        .active
                        .iter()
                        .map(|(id, a)| (*id, a.clone()))
                        .collect(),
                );
            }
            ShardHostMsg::Release { shard } => {
                let ids: Vec<ConversationId> = state
                    .active
                    .keys()
                    .filter(|id| id.shard == shard)
                    .copied()
                    .collect();
                if !ids.is_empty() {
                    tracing::info!(%shard, conversations = ids.len(), "shard released: stopping its conversations");
                }
                for id in ids {
                    if let Some(actor) = detach(state, id) {
                        actor.stop(Some("the shard moved to another node".into()));
                    }
                }
            }
            ShardHostMsg::Evict { id, reply } => {
                let actor = detach(state, id);
                if let Some(actor) = &actor {
                    actor.stop(Some("evicted by an admin".into()));
                }
                let _ = reply.send(actor.is_some());
            }
        }
        Ok(())
    }
}

/// Removes a conversation's actor from the registry (the caller stops it).
fn detach(state: &mut ShardHostState, id: ConversationId) -> Option<ActorRef<ConversationMsg>> {
    let actor = state.active.remove(&id)?;
    state.by_actor.remove(&actor.get_id());
    Some(actor)
}

async fn activate(
    myself: &ActorRef<ShardHostMsg>,
    state: &mut ShardHostState,
    id: ConversationId,
) -> Result<ActorRef<ConversationMsg>, WireError> {
    if let Some(actor) = state.active.get(&id) {
        return Ok(actor.clone());
    }
    let not_found = || WireError::not_found(format!("conversation {id} does not exist"));
    if !state.ctx.shard_exists(id.shard) {
        return Err(not_found());
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
    if state.active.len() >= max {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "this node has {max} active conversations (limits.active_conversations_max); retry shortly"
            ),
        ));
    }
    let args = ConversationArgs {
        ctx: state.ctx.clone(),
        id,
    };
    let (actor, _) = Actor::spawn_linked(None, ConversationActor, args, myself.get_cell())
        .await
        .map_err(|e| {
            state
                .ctx
                .internal_error(&format!("cannot activate conversation {id}"), e)
        })?;
    state.by_actor.insert(actor.get_id(), id);
    state.active.insert(id, actor.clone());
    Ok(actor)
}

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
