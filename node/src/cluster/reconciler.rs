//! The cluster's background loops: gossip metadata, bootstrap, and the placement
//! reconciler that changes Raft memberships to match [`super::placement`].
//!
//! * **Metadata**: every [`TICK_MS`] this node publishes how many shards it leads and
//!   whether it has ever joined Raft groups.
//! * **Bootstrap**: a brand-new cluster (no alive member has Raft state) is formed by
//!   the alive member with the lowest raft id once `cluster.replicas` members are alive:
//!   it sends `Initialize` for every shard to the shard's first rendezvous replica, with
//!   the rendezvous replica set as voters. A member that has state never bootstraps, so a
//!   wiped node rejoins as an empty replica instead of forming a second cluster.
//! * **Reconciler**: for the shards this node leads, it runs [`super::placement::plan`]
//!   and carries out at most one change per shard at a time.
//! * **Events** ([`crate::telemetry::events`]): gossip's changes, the leaderships this
//!   node wins and loses (seen each metadata tick), and the placement changes it made.

use super::membership::{Liveness, MembersView, Membership};
use super::placement::{self, Action, MemberState, ShardState, TransferWhy};
use super::stand_down::{Change, StandDown};
use crate::actors::shard_host::{Handover, HandoverError, ShardHostMsg, hand_over};
use crate::context::NodeContext;
use crate::peer::{ControlReply, PeerRequest};
use crate::raft::PeerNode;
use crate::telemetry::events::{self, EventKind};
use openraft::ChangeMembers;
use shoal_protocol::ShardId;
use shoal_protocol::admin::ShardPin;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Period of the metadata, bootstrap and reconcile loops.
pub const TICK_MS: u64 = 500;
/// How long a needed leadership move (drain, placement) lets running turns go on before
/// it ends them as interrupted (keeping what they streamed).
pub const HANDOVER_TURN_WAIT_MS: u64 = 30_000;

/// The running background loops.
#[derive(Debug)]
pub struct Background {
    membership: Membership,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Leaves gossip (others mark this node down at once). Bounded.
    pub async fn leave(&self) {
        self.membership.leave().await;
    }

    /// Stops the loops.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the loops.
pub fn spawn(ctx: Arc<NodeContext>) -> Background {
    let inflight: Arc<Mutex<BTreeSet<u16>>> = Arc::default();
    let tasks = vec![
        tokio::spawn(run_meta(ctx.clone())),
        tokio::spawn(run_member_events(ctx.clone())),
        tokio::spawn(run_bootstrap(ctx.clone())),
        tokio::spawn(run_reconciler(ctx.clone(), inflight)),
        tokio::spawn(crate::workspace::run_archiver(ctx.clone())),
    ];
    Background {
        membership: ctx.membership.clone(),
        tasks,
    }
}

/// Follows gossip: the shards' leaders as members gossip them
/// ([`crate::cluster::Cluster::learn_leaders`]), and its changes (joins, suspicions,
/// deaths, new stores) as cluster events.
async fn run_member_events(ctx: Arc<NodeContext>) {
    let mut watch = ctx.membership.watch();
    let mut seen = BTreeMap::new();
    loop {
        let view = watch.borrow_and_update().clone();
        ctx.cluster.learn_leaders(&view);
        for (kind, detail) in events::member_events(&mut seen, &view, ctx.node_id()) {
            ctx.metrics
                .gossip_events
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ctx.event(kind, detail);
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// Records the shards this node started or stopped leading since `before`.
fn leadership_events(ctx: &NodeContext, before: &mut BTreeSet<u16>) {
    let now: BTreeSet<u16> = ctx
        .cluster
        .groups()
        .iter()
        .filter(|g| {
            let m = g.raft.metrics();
            let m = m.borrow();
            m.state == openraft::ServerState::Leader && m.current_leader == Some(ctx.cluster.me)
        })
        .map(|g| g.shard.0)
        .collect();
    let won: Vec<u16> = now.difference(before).copied().collect();
    let lost: Vec<u16> = before.difference(&now).copied().collect();
    if !won.is_empty() {
        ctx.event(
            EventKind::Leader,
            format!(
                "{} leads shards {}",
                ctx.node_id(),
                events::shard_list(&won)
            ),
        );
    }
    if !lost.is_empty() {
        ctx.event(
            EventKind::Follower,
            format!(
                "{} no longer leads shards {}",
                ctx.node_id(),
                events::shard_list(&lost)
            ),
        );
    }
    *before = now;
}

async fn run_meta(ctx: Arc<NodeContext>) {
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    let mut published = None;
    let mut initialized = false;
    let mut led = BTreeSet::new();
    let mut stand_down = StandDown::new(Duration::from_millis(
        ctx.config.cluster.election_timeout_max_ms.get(),
    ));
    loop {
        tick.tick().await;
        leadership_events(&ctx, &mut led);
        stand_down_removed(&ctx, &mut stand_down);
        // Once initialized, always initialized: stop asking the 64 Raft instances.
        initialized = initialized || ctx.cluster.initialized().await;
        // The shards `leadership_events` just found this node leading.
        let bitmap = super::directory::led_bitmap(&led, ctx.cluster.shard_count());
        let count = bitmap.iter().map(|b| b.count_ones()).sum::<u32>();
        let now = (bitmap, initialized);
        if published.as_ref() != Some(&now) {
            ctx.membership.update_meta(|m| {
                m.leaders = count;
                m.led = now.0.clone();
                m.initialized = now.1;
            });
            published = Some(now);
        }
    }
}

/// Stops campaigning in groups this node most likely no longer belongs to, and resumes
/// when that changes ([`super::stand_down`]).
fn stand_down_removed(ctx: &NodeContext, stand_down: &mut StandDown) {
    let now = std::time::Instant::now();
    for group in ctx.cluster.groups() {
        let shard = group.shard.0;
        let has_leader = group.raft.metrics().borrow().current_leader.is_some();
        let other_leads = ctx
            .cluster
            .gossiped_leader(group.shard)
            .is_some_and(|(id, _)| id != ctx.cluster.me);
        let Some(change) = stand_down.observe(shard, has_leader, other_leads, now) else {
            continue;
        };
        let resume = change == Change::Resume;
        group
            .switches
            .update(&group.raft, |f| f.stood_down = !resume);
        let what = if resume {
            format!("{}: campaigns for shard {shard} again", ctx.node_id())
        } else {
            format!(
                "{}: stops campaigning for shard {shard}: it heard no leader while another node leads it (most likely it is no longer a replica)",
                ctx.node_id()
            )
        };
        tracing::info!(shard, resume, "{what}");
        ctx.event(EventKind::Placement, what);
    }
}

fn peer_node(meta: &super::membership::NodeMeta) -> PeerNode {
    PeerNode {
        name: meta.name.clone(),
        addr: meta.addr.to_string(),
    }
}

async fn run_bootstrap(ctx: Arc<NodeContext>) {
    let replicas = ctx.cluster.replicas();
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    let mut waiting_logged = false;
    loop {
        tick.tick().await;
        if ctx.cluster.initialized().await {
            return;
        }
        let view = ctx.membership.watch().borrow().clone();
        let alive: Vec<_> = view
            .members
            .iter()
            .filter(|m| m.liveness == Liveness::Alive && !m.meta.name.is_empty())
            .collect();
        if alive.iter().any(|m| m.meta.initialized) {
            // A cluster exists: the reconciler of each shard's leader adds us.
            tracing::info!(
                "joining an existing cluster; waiting for shard leaders to add this node"
            );
            return;
        }
        if alive.len() < replicas {
            if !waiting_logged {
                tracing::info!(
                    alive = alive.len(),
                    replicas,
                    "waiting for cluster.replicas members before forming the cluster"
                );
                waiting_logged = true;
            }
            continue;
        }
        let lowest = alive.iter().map(|m| m.meta.raft_id).min();
        if lowest != Some(ctx.cluster.me) {
            continue;
        }
        let nodes: BTreeMap<u64, PeerNode> = alive
            .iter()
            .map(|m| (m.meta.raft_id, peer_node(&m.meta)))
            .collect();
        tracing::info!(
            members = nodes.len(),
            shards = ctx.cluster.shard_count(),
            "forming a new cluster"
        );
        let mut failed = 0;
        for s in 0..ctx.cluster.shard_count() {
            let ids = placement::rendezvous(s, nodes.keys().copied(), replicas);
            let voters: BTreeMap<u64, PeerNode> = ids
                .iter()
                .filter_map(|id| nodes.get(id).map(|n| (*id, n.clone())))
                .collect();
            let Some(first) = ids.first().and_then(|id| nodes.get(id)) else {
                continue;
            };
            if let Err(e) = ctx.cluster.initialize_on(first, ShardId(s), voters).await {
                tracing::warn!(shard = s, node = %first, error = %e, "cannot initialize shard; retrying");
                failed += 1;
            }
        }
        if failed == 0 {
            tracing::info!("cluster formed");
            return;
        }
    }
}

/// When each member (by Raft id) was first seen not alive (reconciler clock).
struct DownClock {
    start: Instant,
    since: HashMap<u64, u64>,
}

impl DownClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn members(&mut self, view: &MembersView, me: u64) -> Vec<MemberState> {
        let now = self.now_ms();
        // The identity each name runs as now. An older identity of the same name is a
        // store that node lost: gone for good, so no grace period applies to it.
        let current: HashMap<&str, u64> = view
            .members
            .iter()
            .filter(|m| m.liveness == Liveness::Alive || m.meta.raft_id == me)
            .map(|m| (m.meta.name.as_str(), m.meta.raft_id))
            .collect();
        let mut out = Vec::new();
        for m in &view.members {
            if m.meta.name.is_empty() {
                continue;
            }
            // A suspect is not a transfer target; it only counts as gone after the grace.
            let alive = m.meta.raft_id == me || m.liveness == Liveness::Alive;
            let superseded = current
                .get(m.meta.name.as_str())
                .is_some_and(|id| *id != m.meta.raft_id);
            let down_since_ms = if alive {
                self.since.remove(&m.meta.raft_id);
                None
            } else if superseded {
                // "Down since forever".
                None
            } else {
                Some(*self.since.entry(m.meta.raft_id).or_insert(now))
            };
            out.push(MemberState {
                id: m.meta.raft_id,
                alive,
                down_since_ms,
                draining: m.meta.draining,
            });
        }
        out
    }
}

async fn run_reconciler(ctx: Arc<NodeContext>, inflight: Arc<Mutex<BTreeSet<u16>>>) {
    let grace_ms = ctx.config.cluster.placement_grace_ms;
    let mut clock = DownClock {
        start: Instant::now(),
        since: HashMap::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    // No balance transfer until then: set after any leadership transfer of this node.
    let mut balance_after = Instant::now();
    let balance_cooldown = balance_cooldown(&ctx.config);
    loop {
        tick.tick().await;
        let view = ctx.membership.watch().borrow().clone();
        let members = clock.members(&view, ctx.cluster.me);
        let addresses: HashMap<u64, PeerNode> = view
            .members
            .iter()
            .map(|m| (m.meta.raft_id, peer_node(&m.meta)))
            .collect();
        let statuses = ctx.cluster.shard_status();
        let busy = inflight.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let shards: Vec<ShardState> = statuses
            .iter()
            .filter(|s| s.leader == Some(ctx.cluster.me))
            .map(|s| ShardState {
                shard: s.shard,
                voters: s.voters.clone(),
                learners: s.learners.clone(),
                leader: s.leader,
                changing: s.changing || busy.contains(&s.shard),
                pin: stored_pin(&ctx, &view, s.shard),
            })
            .collect();
        if shards.is_empty() {
            continue;
        }
        // Each shard's leader: as Raft here knows it, else as gossip says (a node hears
        // from the leaders of its own shards only).
        let leaders: BTreeMap<u16, u64> = statuses
            .iter()
            .filter_map(|s| {
                s.leader
                    .or_else(|| {
                        ctx.cluster
                            .gossiped_leader(ShardId(s.shard))
                            .map(|(id, _)| id)
                    })
                    .map(|l| (s.shard, l))
            })
            .collect();
        let led = placement::leader_counts(&leaders);
        let actions = placement::plan(&placement::PlanInput {
            me: ctx.cluster.me,
            now_ms: clock.now_ms(),
            replicas: ctx.cluster.replicas(),
            grace_ms,
            members: &members,
            shards: &shards,
            led: &led,
            // Balance only when settled: every member alive, every shard led, and no
            // transfer of ours in the last cooldown (others' counts then lag behind).
            balance: Instant::now() >= balance_after
                && members.iter().all(|m| m.alive)
                && leaders.len() == statuses.len(),
        });
        for action in actions {
            if matches!(action, Action::TransferLeader { .. }) {
                balance_after = Instant::now() + balance_cooldown;
            }
            execute(&ctx, &inflight, &addresses, action);
        }
    }
}

/// The operator's pin of `shard` as this node (its leader) applied it, in Raft ids; none
/// when the store cannot say (automatic placement goes on; the store's trouble is logged).
fn stored_pin(ctx: &NodeContext, view: &MembersView, shard: u16) -> placement::Pin {
    match ctx.store.shard_pin(ShardId(shard)) {
        Ok(pin) => pin.map(|pin| resolve_pin(view, &pin)).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(shard, error = %e, "cannot read the shard's pin; placing it automatically");
            placement::Pin::default()
        }
    }
}

/// A pin's node names as the Raft ids of those members' current identities; a name no
/// member has is left out.
pub(crate) fn resolve_pin(view: &MembersView, pin: &ShardPin) -> placement::Pin {
    let id = |name: &String| super::drain::member_named(view, name).map(|m| m.meta.raft_id);
    placement::Pin {
        leader: pin.leader.as_ref().and_then(id),
        replicas: pin.replicas.iter().filter_map(id).collect(),
    }
}

/// How long a node holds back leadership balance after one of its transfers: long enough
/// for the transfer to finish (one election timeout of quiet, then a campaign) and for
/// every node's view of the leaders to catch up.
fn balance_cooldown(config: &shoal_cluster_config::NodeConfig) -> Duration {
    Duration::from_millis(
        config
            .cluster
            .election_timeout_max_ms
            .get()
            .saturating_mul(BALANCE_COOLDOWN_ELECTIONS),
    )
}

/// Election timeouts (max) per balance cooldown.
const BALANCE_COOLDOWN_ELECTIONS: u64 = 4;

fn shard_of(action: &Action) -> u16 {
    match action {
        Action::AddLearner { shard, .. }
        | Action::SetVoters { shard, .. }
        | Action::TransferLeader { shard, .. } => *shard,
    }
}

/// Carries out one action in the background; the shard counts as changing until done.
fn execute(
    ctx: &Arc<NodeContext>,
    inflight: &Arc<Mutex<BTreeSet<u16>>>,
    addresses: &HashMap<u64, PeerNode>,
    action: Action,
) {
    let shard = shard_of(&action);
    if !inflight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(shard)
    {
        return;
    }
    let ctx = ctx.clone();
    let inflight = inflight.clone();
    let addresses = addresses.clone();
    tokio::spawn(async move {
        let result = run_action(&ctx, &addresses, &action).await;
        match result {
            Ok(()) => {
                tracing::info!(?action, "placement change done");
                ctx.event(EventKind::Placement, describe(&action, &addresses));
            }
            Err(e) => {
                tracing::warn!(?action, error = %e, "placement change failed; retried next round")
            }
        }
        inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&shard);
    });
}

/// An action in words, with node names.
fn describe(action: &Action, addresses: &HashMap<u64, PeerNode>) -> String {
    let name = |id: &u64| {
        addresses
            .get(id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("{id:016x}"))
    };
    match action {
        Action::AddLearner { shard, node } => {
            format!(
                "shard {shard}: {} added as a learner and caught up",
                name(node)
            )
        }
        Action::SetVoters { shard, voters } => format!(
            "shard {shard}: voters now {}",
            voters.iter().map(name).collect::<Vec<_>>().join(", ")
        ),
        Action::TransferLeader { shard, to, why } => format!(
            "shard {shard}: leadership handed to {} ({})",
            name(to),
            match why {
                TransferWhy::Balance => "balance",
                TransferWhy::Drain => "drain",
                TransferWhy::Placement => "placement",
                TransferWhy::Pinned => "pinned by an operator",
            }
        ),
    }
}

async fn run_action(
    ctx: &NodeContext,
    addresses: &HashMap<u64, PeerNode>,
    action: &Action,
) -> Result<(), String> {
    let group = ctx
        .cluster
        .group(ShardId(shard_of(action)))
        .ok_or("no such shard")?;
    match action {
        Action::AddLearner { node, .. } => {
            let peer = addresses
                .get(node)
                .ok_or("the new replica's address is not known yet")?;
            // Blocks until the learner caught up (log or snapshot), bounded.
            tokio::time::timeout(
                Duration::from_secs(60),
                group.raft.add_learner(*node, peer.clone(), true),
            )
            .await
            .map_err(|_| "the learner did not catch up within 60 s".to_owned())?
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
        Action::SetVoters { voters, .. } => tokio::time::timeout(
            Duration::from_secs(30),
            group
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false),
        )
        .await
        .map_err(|_| "the membership change did not commit within 30 s".to_owned())?
        .map(|_| ())
        .map_err(|e| e.to_string()),
        Action::TransferLeader { shard, to, why } => {
            let Some(host) = ctx.shard_host.get() else {
                return Err("the shard host is not running".into());
            };
            let id = ShardId(*shard);
            let how = match why {
                TransferWhy::Balance => Handover::IfIdle,
                TransferWhy::Drain | TransferWhy::Placement | TransferWhy::Pinned => {
                    Handover::Until(Instant::now() + Duration::from_millis(HANDOVER_TURN_WAIT_MS))
                }
            };
            match hand_over(host, id, how, "its shard is moving to another node").await {
                Ok(()) => {}
                // A balance move waits for a moment between turns: next round.
                Err(e @ HandoverError::Busy(_)) => return Err(e.to_string()),
                // Whatever still runs is fenced when the lease lapses.
                Err(e) => {
                    tracing::warn!(shard, error = %e, "handing the shard over did not finish; moving it anyway")
                }
            }
            let result = transfer_leadership(ctx, group, addresses, *shard, *to).await;
            let _ = host.cast(ShardHostMsg::EndHandover { shard: id });
            result
        }
    }
}

/// Gives every leadership of this node to another voter, all shards at once, within
/// `bound` (shutdown: the followers need not wait out an election timeout). The best
/// target is the voter that has replicated the most of the log. A shard without another
/// voter (one replica) keeps its leader.
pub async fn hand_off_leaderships(ctx: &NodeContext, bound: Duration) {
    let me = ctx.cluster.me;
    let moves = ctx.cluster.groups().iter().filter_map(|group| {
        let m = group.raft.metrics().borrow().clone();
        if m.current_leader != Some(me) {
            return None;
        }
        let membership = m.membership_config.membership();
        let matched = |id: &u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|log| log.index)
        };
        let to = membership
            .voter_ids()
            .filter(|id| *id != me)
            .max_by_key(|id| (matched(id), *id))?;
        let addresses: HashMap<u64, PeerNode> = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        Some(async move {
            let shard = group.shard.0;
            if let Err(e) = transfer_leadership(ctx, group, &addresses, shard, to).await {
                tracing::warn!(shard, error = %e, "could not hand the leadership over; the followers elect one");
            }
        })
    });
    let moves: Vec<_> = moves.collect();
    if moves.is_empty() {
        return;
    }
    tracing::info!(
        shards = moves.len(),
        "handing leaderships to other replicas"
    );
    if tokio::time::timeout(bound, futures::future::join_all(moves))
        .await
        .is_err()
    {
        tracing::warn!(
            bound_ms = bound.as_millis() as u64,
            "not every leadership was handed over in time; the followers elect the rest"
        );
    }
}

/// Hands a shard's leadership to `to`. openraft 0.9 has no transfer call, and a
/// follower refuses votes while the leader's lease holds, so a `Campaign` alone often
/// loses. The leader goes quiet instead (no heartbeats, no campaigning of its own):
/// its lease runs out — which also fences its agents here — and then `to` is asked to
/// campaign, with the other followers' election timers as the fallback.
async fn transfer_leadership(
    ctx: &NodeContext,
    group: &super::ShardGroup,
    addresses: &HashMap<u64, PeerNode>,
    shard: u16,
    to: u64,
) -> Result<(), String> {
    let peer = addresses
        .get(&to)
        .ok_or("the target's address is not known")?;
    let addr: SocketAddr = peer.addr.parse().map_err(|e| format!("{e}"))?;
    let quiet = Duration::from_millis(ctx.config.cluster.election_timeout_min_ms.get());
    let bound = Duration::from_millis(ctx.config.cluster.election_timeout_max_ms.get() * 10);
    group
        .switches
        .update(&group.raft, |f| f.transferring = true);
    let me = ctx.cluster.me;
    let mut metrics = group.raft.metrics();
    let stepped_down = async {
        tokio::time::sleep(quiet).await;
        let request = PeerRequest::Campaign { shard };
        let timeout = Duration::from_millis(super::CONTROL_TIMEOUT_MS);
        let campaign = ctx
            .cluster
            .peers
            .call::<ControlReply>(addr, &request, timeout);
        if let Ok(ControlReply::Refused(e)) | Err(e) = campaign.await.map_err(|e| e.to_string()) {
            tracing::debug!(shard, error = %e, "transfer target did not campaign; another follower will");
        }
        metrics
            .wait_for(|m| m.current_leader.is_some() && m.current_leader != Some(me))
            .await
            .map(|_| ())
            .map_err(|_| "the shard's Raft stopped".to_owned())
    };
    let result = tokio::time::timeout(bound, stepped_down).await;
    group
        .switches
        .update(&group.raft, |f| f.transferring = false);
    result.map_err(|_| format!("no other leader within {} ms", bound.as_millis()))?
}
