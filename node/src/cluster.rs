//! The node as a cluster member: one Raft group per shard, the leader lease that gates
//! side effects, proposals, and routing.
//!
//! * Every node runs a Raft instance for every shard (idle when not a member).
//! * [`Cluster::propose`] is the single write path: commands are queued per shard and
//!   sent as batches of up to [`crate::raft::BATCH_COMMANDS_MAX`] per log entry.
//! * [`Hosting`]: a shard is *hosted* (its actors and agent processes may run here)
//!   only while this node leads it **and** holds the lease: a quorum acknowledged its
//!   heartbeats within `cluster.lease_ms`, and — after a new election — `lease_ms` plus
//!   one heartbeat have passed, so the previous leader's lease has run out.

pub mod directory;
pub mod drain;
pub mod elections;
pub mod lease;
pub mod membership;
pub mod placement;
pub mod quiet;
pub mod reconciler;
pub mod stand_down;

use crate::peer::{ControlReply, PeerClient, PeerRequest};
use crate::raft::heartbeats::Heartbeats;
use crate::raft::network::ShardNetworkFactory;
use crate::raft::replies::{self, BatchReplies, Reply};
use crate::raft::{
    BATCH_COMMANDS_MAX, ENTRY_BYTES_MAX, PeerNode, ShardBatch, ShardRaft, TypeConfig, storage,
};
use crate::shard::state_machine::{Outcome, Rejection, ShardCommand};
use crate::shard::store::{Store, StoreError};
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use shoal_cluster_config::NodeConfig;
use shoal_protocol::ShardId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Proposals that may wait for one shard's batcher.
pub const PROPOSALS_QUEUED_MAX: usize = 1024;
/// How long a proposal may wait for its commit before the caller gets `Unavailable`.
pub const PROPOSE_TIMEOUT_MS: u64 = 10_000;
/// Heartbeats to a node wait up to `heartbeat_ms / HEARTBEAT_WINDOW_DIVISOR` for the other
/// shards' ([`crate::raft::heartbeats`]).
const HEARTBEAT_WINDOW_DIVISOR: u32 = 5;

/// Timeout of control calls to peers (initialize, campaign).
pub const CONTROL_TIMEOUT_MS: u64 = 5_000;

/// Gossip packets ride on QUIC datagrams of the pooled peer connections.
#[derive(Debug)]
pub struct PeerGossip(pub Arc<PeerClient>);

impl membership::GossipTransport for PeerGossip {
    fn send(&self, to: SocketAddr, packet: bytes::Bytes) {
        self.0.send_datagram(to, packet);
    }
}

/// Why a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// The state machine rejected the command; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// This node does not lead the shard (any more).
    #[error("shard {shard} is led by another node ({leader})")]
    NotLeader {
        /// The shard.
        shard: ShardId,
        /// The leader if known, else "unknown".
        leader: String,
    },
    /// No commit within the timeout (no quorum, or overloaded): the command may or may
    /// not be applied; retry with the same request id.
    #[error(
        "shard {shard} could not commit within {timeout_ms} ms; retry with the same request id"
    )]
    Unavailable {
        /// The shard.
        shard: ShardId,
        /// The timeout.
        timeout_ms: u64,
    },
    /// Raft or storage failed.
    #[error("shard {shard} failed: {message}")]
    Failed {
        /// The shard.
        shard: ShardId,
        /// Why.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shard's proposal queue is full; nothing was queued. Retry shortly.
    #[error("shard {shard} has {queued_max} proposals queued (overloaded); retry shortly")]
    Overloaded {
        /// The shard.
        shard: ShardId,
        /// [`PROPOSALS_QUEUED_MAX`].
        queued_max: usize,
    },
    /// The command is larger than one log entry may be; nothing was proposed.
    #[error(
        "shard {shard}: a {bytes}-byte command does not fit one Raft log entry (at most {max_bytes} bytes); nothing was written"
    )]
    TooLarge {
        /// The shard.
        shard: ShardId,
        /// The command's encoded size.
        bytes: usize,
        /// [`crate::raft::ENTRY_BYTES_MAX`].
        max_bytes: usize,
    },
}

/// Whether this node may run a shard's actors now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    /// Leader with a valid lease, in this term.
    Active {
        /// The Raft term.
        term: u64,
    },
    /// Not hosting.
    Inactive,
}

/// Where a shard's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node hosts it.
    Local,
    /// Another node leads it.
    Remote(PeerNode),
    /// No leader known, or this node leads but has no lease yet: retry shortly.
    Unavailable,
}

struct Proposal {
    command: ShardCommand,
    /// Its encoded size ([`crate::raft::command_bytes`]).
    bytes: usize,
    reply: Reply,
    /// Its `propose` span's place in its trace: the leader's `apply` of the entry
    /// carrying it joins that trace ([`crate::raft::BatchTraces`]).
    trace: crate::telemetry::TraceParent,
}

/// A queued proposal's result, to await (see [`Cluster::submit`]).
#[derive(Debug)]
pub struct PendingProposal {
    shard: ShardId,
    /// The command's encoded size.
    bytes: usize,
    rx: oneshot::Receiver<Result<Outcome, ProposeError>>,
    deadline: tokio::time::Instant,
    /// The `propose` span, open until the outcome is known.
    span: tracing::Span,
}

impl PendingProposal {
    /// The command's encoded size (what it adds to the log).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Waits until the command is committed and applied, or [`PROPOSE_TIMEOUT_MS`] after
    /// it was queued ([`ProposeError::Unavailable`]: it may still be applied).
    pub async fn outcome(self) -> Result<Outcome, ProposeError> {
        let unavailable = self.unavailable();
        let shard = self.shard;
        let waited = tokio::time::timeout_at(self.deadline, self.rx);
        match tracing::Instrument::instrument(waited, self.span).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Failed {
                shard,
                message: "the proposal was dropped (shutting down)".into(),
            }),
            Err(_) => Err(unavailable),
        }
    }

    fn unavailable(&self) -> ProposeError {
        ProposeError::Unavailable {
            shard: self.shard,
            timeout_ms: PROPOSE_TIMEOUT_MS,
        }
    }
}

fn shutting_down(shard: ShardId) -> ProposeError {
    ProposeError::Failed {
        shard,
        message: "the node is shutting down".into(),
    }
}

/// One shard's group on this node.
pub struct ShardGroup {
    /// The shard.
    pub shard: ShardId,
    /// Its Raft instance.
    pub raft: ShardRaft,
    /// When this node last heard from the shard's leader ([`elections`]).
    pub contact: elections::Contact,
    /// Why openraft's timers are off for the shard ([`quiet::Switches`]).
    pub switches: quiet::Switches,
    /// The newest quiet beats a quorum accepted: term and sending instant (for the lease).
    evidence: watch::Sender<Option<(u64, Instant)>>,
    hosting: watch::Receiver<Hosting>,
    proposals: mpsc::Sender<Proposal>,
}

impl ShardGroup {
    /// Hands the lease the sending instant of quiet beats a quorum accepted
    /// ([`quiet`]); only ever newer evidence.
    pub fn quiet_evidence(&self, term: u64, sent_at: Instant) {
        self.evidence.send_if_modified(|e| {
            let newer = e.is_none_or(|(t, at)| term > t || (term == t && sent_at > at));
            if newer {
                *e = Some((term, sent_at));
            }
            newer
        });
    }
}

/// What this node knows about a shard, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The shard.
    pub shard: u16,
    /// The leader's raft id.
    pub leader: Option<u64>,
    /// Voters.
    pub voters: BTreeSet<u64>,
    /// Learners.
    pub learners: BTreeSet<u64>,
    /// Term.
    pub term: u64,
    /// Last applied log index.
    pub applied: Option<u64>,
    /// Whether this node hosts it now.
    pub hosted_here: bool,
    /// A membership change is in flight.
    pub changing: bool,
    /// Quiet here, as leader or follower ([`quiet`]).
    pub quiet: bool,
    /// Nodes named in the membership.
    pub nodes: BTreeMap<u64, PeerNode>,
}

/// The node's cluster membership: Raft groups, lease, routing.
pub struct Cluster {
    /// This node's raft id.
    pub me: u64,
    /// This node's name and address.
    pub me_node: PeerNode,
    /// Peer connections.
    pub peers: Arc<PeerClient>,
    groups: Vec<ShardGroup>,
    replicas: usize,
    /// No vote is given (granted, or asked for by [`Self::campaign`]) before this
    /// instant: `lease + heartbeat` after the node started. See [`Self::votes_open`].
    votes_from: Instant,
    /// `cluster.lease_ms`.
    lease: Duration,
    /// Quiet shards are on here (`cluster.quiesce_after_ms` > 0): this node quiets the
    /// shards it leads and accepts beats for those it follows ([`quiet`]).
    quiet: bool,
    /// How long after hearing from a shard's leader its followers refuse votes
    /// (`election_timeout_max`, as openraft's followers do). See [`Self::vote_gate`].
    refuse_votes_for: Duration,
    /// Each shard's leader as the other members gossip it ([`Self::learn_leaders`]):
    /// where requests go for a shard this node holds no replica of.
    gossiped_leaders: watch::Sender<Vec<Option<(u64, PeerNode)>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("me", &self.me_node)
            .field("shards", &self.groups.len())
            .finish()
    }
}

impl Cluster {
    /// Starts one Raft instance per shard over `store`.
    pub async fn start(
        config: &NodeConfig,
        store: &Arc<Store>,
        peers: Arc<PeerClient>,
        advertise: SocketAddr,
        watchdog: crate::watchdog::Watchdog,
        metrics: Arc<crate::context::Metrics>,
    ) -> Result<Arc<Cluster>, ProposeError> {
        let votes_from = Instant::now() + config.cluster.lease() + config.cluster.heartbeat();
        let name = config.node.id.as_str().to_owned();
        let me = placement::raft_id_of(&name, store.generation());
        tracing::info!(
            node = %name,
            raft_id = format_args!("{me:016x}"),
            generation = format_args!("{:016x}", store.generation()),
            "raft identity"
        );
        let me_node = PeerNode {
            name,
            addr: advertise.to_string(),
        };
        let raft_config =
            Arc::new(
                crate::raft::raft_config(config).map_err(|e| ProposeError::Failed {
                    shard: ShardId(0),
                    message: format!("invalid Raft timings in [cluster]: {e}"),
                })?,
            );
        let lease = config.cluster.lease();
        // One heartbeat of margin: the previous leader's lease has run out by the time
        // anyone is elected (see `Cluster::votes_open`).
        let settle = config.cluster.heartbeat();
        let heartbeats = Heartbeats::new(
            peers.clone(),
            config.cluster.heartbeat() / HEARTBEAT_WINDOW_DIVISOR,
        );
        let mut groups = Vec::new();
        for s in 0..store.shard_count() {
            let shard = ShardId(s);
            let failed = |message: String| ProposeError::Failed { shard, message };
            let (log, sm) = storage::open(store, shard).map_err(|e| failed(e.to_string()))?;
            let network = ShardNetworkFactory {
                shard: s,
                peers: peers.clone(),
                heartbeats: heartbeats.clone(),
            };
            let raft = openraft::Raft::<TypeConfig>::new(me, raft_config.clone(), network, log, sm)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let (hosting_tx, hosting) = watch::channel(Hosting::Inactive);
            let evidence = watch::Sender::new(None);
            tokio::spawn(lease::run(
                shard,
                raft.clone(),
                me,
                (lease, settle),
                evidence.subscribe(),
                hosting_tx,
                watchdog.clone(),
            ));
            let (proposals, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
            tokio::spawn(run_batcher(shard, raft.clone(), rx, metrics.clone()));
            groups.push(ShardGroup {
                shard,
                raft,
                contact: elections::Contact::now(),
                switches: quiet::Switches::default(),
                evidence,
                hosting,
                proposals,
            });
        }
        let cluster = Arc::new(Cluster {
            me,
            me_node,
            peers,
            groups,
            replicas: usize::from(config.cluster.replicas.get()),
            votes_from,
            lease,
            quiet: config.cluster.quiesce_after().is_some(),
            refuse_votes_for: config.cluster.election_timeout_max(),
            gossiped_leaders: watch::Sender::new(Vec::new()),
        });
        if let Some(after) = config.cluster.quiesce_after() {
            tokio::spawn(quiet::run(
                Arc::downgrade(&cluster),
                config.cluster.heartbeat(),
                after,
            ));
        }
        tokio::spawn(elections::run(
            Arc::downgrade(&cluster),
            // Plus one heartbeat-coalescing window: the other voters may have heard the
            // leader's last heartbeat that much later, and refuse votes until a whole
            // `election_timeout_max` after that (a campaign just before is refused, and
            // the next one is a whole silence later).
            Duration::from_millis(config.cluster.election_timeout_max_ms.get())
                + config.cluster.heartbeat() / HEARTBEAT_WINDOW_DIVISOR,
            Duration::from_millis(config.cluster.election_timeout_min_ms.get() / 2),
            config.cluster.heartbeat(),
        ));
        Ok(cluster)
    }

    /// Waits until this node may take part in elections: `lease + heartbeat` after it
    /// started. Vote requests wait here before they reach Raft, and so does
    /// [`Self::campaign`].
    ///
    /// This is what lets a new leader host its shard one heartbeat after it is elected
    /// instead of waiting out a whole lease (ARCHITECTURE.md, "Single activation"):
    /// electing anyone needs a vote from a member of the quorum that acknowledged the
    /// old leader's last lease evidence (quorums intersect), and that member acknowledged
    /// it at or after the instant the evidence was sent. If it kept running, it refuses
    /// votes for `election_timeout_max` (> `lease`) after hearing from the leader, by a
    /// heartbeat or a quiet shard's beat ([`Self::vote_gate`]); if it restarted since, it started after that instant and waits here for
    /// `lease + heartbeat`. Either way no one is elected before the old lease ran out.
    pub async fn votes_open(&self) {
        tokio::time::sleep_until(self.votes_from).await;
    }

    /// Whether this node may answer a vote request for `group`'s shard now; `Err` says
    /// why not. Refused while it heard from the shard's leader within
    /// `election_timeout_max` — by an append or by a quiet shard's beat, whose
    /// acceptance promised exactly this ([`quiet`]) — and while it hosts the shard
    /// itself (its lease holds: a quorum vouched for it within `lease_ms`).
    ///
    /// openraft's followers refuse votes after an append on their own; this gate is what
    /// keeps that promise for beats, which openraft never sees. Refusing a vote is always
    /// safe; it only delays an election until the gate opens.
    pub fn vote_gate(&self, group: &ShardGroup) -> Result<(), String> {
        let silent = group.contact.last().elapsed();
        if silent < self.refuse_votes_for {
            return Err(format!(
                "shard {}: this node heard from the leader {} ms ago; it votes after {} ms of silence",
                group.shard,
                silent.as_millis(),
                self.refuse_votes_for.as_millis()
            ));
        }
        if matches!(*group.hosting.borrow(), Hosting::Active { .. }) {
            return Err(format!(
                "shard {}: this node leads it and holds its lease",
                group.shard
            ));
        }
        Ok(())
    }

    /// The configured replica count.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u16 {
        self.groups.len() as u16
    }

    /// A shard's group.
    pub fn group(&self, shard: ShardId) -> Option<&ShardGroup> {
        self.groups.get(usize::from(shard.0))
    }

    /// `shard`'s group, for a Raft message (an RPC or a quiet beat) addressed to Raft
    /// member `target`; `Err` says why this node must not answer it.
    pub fn addressed(&self, shard: ShardId, target: u64) -> Result<&ShardGroup, String> {
        if target != self.me {
            // The sender addresses a Raft member this node is not (any more): most often
            // the member of a store this node lost. Answering as it — an empty log
            // granting votes — could elect a leader without committed entries.
            return Err(format!(
                "this node is Raft member {:016x}, not {target:016x} (that member's store is gone); the shard's leader replaces it",
                self.me
            ));
        }
        self.group(shard).ok_or_else(|| {
            format!(
                "shard {shard} does not exist here (shard count {}); check cluster.shard_count is equal on every node",
                self.shard_count()
            )
        })
    }

    /// Every group.
    pub fn groups(&self) -> &[ShardGroup] {
        &self.groups
    }

    /// Proposes `command` to `shard` and waits until it is committed and applied.
    pub async fn propose(
        &self,
        shard: ShardId,
        command: ShardCommand,
    ) -> Result<Outcome, ProposeError> {
        let (group, proposal, pending) = self.prepare(shard, command)?;
        let deadline = pending.deadline;
        tokio::time::timeout_at(deadline, group.proposals.send(proposal))
            .await
            .map_err(|_| pending.unavailable())?
            .map_err(|_| shutting_down(shard))?;
        pending.outcome().await
    }

    /// Queues `command` for `shard` without waiting: its place in the log follows every
    /// command submitted to that shard before it (so one actor's commands apply in the
    /// order it submits them), and the result is awaited with
    /// [`PendingProposal::outcome`]. For actors, which must not wait on consensus inside
    /// a handler. A full queue is [`ProposeError::Overloaded`] (nothing was queued).
    pub fn submit(
        &self,
        shard: ShardId,
        command: ShardCommand,
    ) -> Result<PendingProposal, ProposeError> {
        let (group, proposal, pending) = self.prepare(shard, command)?;
        group.proposals.try_send(proposal).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded {
                shard,
                queued_max: PROPOSALS_QUEUED_MAX,
            },
            mpsc::error::TrySendError::Closed(_) => shutting_down(shard),
        })?;
        Ok(pending)
    }

    /// Checks `command` and makes its proposal and the handle to await its result.
    fn prepare(
        &self,
        shard: ShardId,
        command: ShardCommand,
    ) -> Result<(&ShardGroup, Proposal, PendingProposal), ProposeError> {
        // A malformed command never reaches the log (apply would reject it alike on
        // every replica, but it has no business there).
        command.validate()?;
        // One command must fit one log entry: a larger entry could never be replicated.
        let bytes = crate::raft::command_bytes(&command);
        if bytes > ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                shard,
                bytes,
                max_bytes: ENTRY_BYTES_MAX,
            });
        }
        let group = self.group(shard).ok_or_else(|| ProposeError::Failed {
            shard,
            message: format!("no such shard (shard count {})", self.groups.len()),
        })?;
        let (reply, rx) = oneshot::channel();
        // A child of the caller's span (a request, a turn), open until the outcome is
        // known ([`PendingProposal::outcome`]).
        let span = tracing::info_span!("propose", shard = shard.0, bytes);
        let proposal = Proposal {
            command,
            bytes,
            reply,
            trace: crate::telemetry::TraceParent::of(&span),
        };
        let pending = PendingProposal {
            shard,
            bytes,
            rx,
            deadline: tokio::time::Instant::now() + Duration::from_millis(PROPOSE_TIMEOUT_MS),
            span,
        };
        Ok((group, proposal, pending))
    }

    /// Whether this node hosts `shard` now.
    pub fn hosting(&self, shard: ShardId) -> Hosting {
        self.group(shard)
            .map(|g| *g.hosting.borrow())
            .unwrap_or(Hosting::Inactive)
    }

    /// Watches `shard`'s hosting state.
    pub fn watch_hosting(&self, shard: ShardId) -> Option<watch::Receiver<Hosting>> {
        self.group(shard).map(|g| g.hosting.clone())
    }

    /// How many shards this node leads and hosts now.
    pub fn shards_led(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| matches!(*g.hosting.borrow(), Hosting::Active { .. }))
            .count()
    }

    /// Where requests for `shard` go.
    pub fn route(&self, shard: ShardId) -> Route {
        let Some(group) = self.group(shard) else {
            return Route::Unavailable;
        };
        if matches!(*group.hosting.borrow(), Hosting::Active { .. }) {
            return Route::Local;
        }
        // Read in place: every request and every wake of `route_changed` asks, and the
        // metrics value (membership included) is not small.
        let metrics = group.raft.metrics();
        let metrics = metrics.borrow();
        let gossiped = || self.gossiped_leader(shard).map(|(_, node)| node);
        // Not a replica (never, or no longer): Raft's view here is empty or stale, the
        // leader's own gossip is not.
        let member = metrics
            .membership_config
            .membership()
            .get_node(&self.me)
            .is_some();
        if !member && let Some(leader) = gossiped() {
            return Route::Remote(leader);
        }
        match metrics.current_leader {
            Some(leader) if leader != self.me => metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .cloned()
                .map(Route::Remote)
                .unwrap_or(Route::Unavailable),
            // A replica that knows no leader: one it was removed from (its last view
            // still lists it, so it campaigns in vain), or one in an election. Gossip
            // names the leader in the first case; in the second it names the old one
            // until gossip marks it down or it says it lost the shard, and a forward
            // there is abandoned once Raft knows the new one (`route_changed`).
            None => gossiped().map_or(Route::Unavailable, Route::Remote),
            Some(_) => Route::Unavailable,
        }
    }

    /// Resolves once `route(shard)` no longer gives `now` (the leader changed, or this
    /// node started or stopped hosting it). A request forwarded to a leader that died
    /// is abandoned then, instead of waiting out the dial or first-byte timeout.
    pub async fn route_changed(&self, shard: ShardId, now: &Route) {
        let Some(group) = self.group(shard) else {
            return;
        };
        let mut metrics = group.raft.metrics();
        let mut hosting = group.hosting.clone();
        let mut gossiped = self.gossiped_leaders.subscribe();
        loop {
            if self.route(shard) != *now {
                return;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                changed = hosting.changed() => if changed.is_err() { return },
                changed = gossiped.changed() => if changed.is_err() { return },
            }
        }
    }

    /// One shard's Raft state as this node sees it.
    pub fn shard_status_of(&self, shard: ShardId) -> Option<ShardStatus> {
        self.group(shard).map(status_of)
    }

    /// Every shard's Raft state as this node sees it.
    pub fn shard_status(&self) -> Vec<ShardStatus> {
        self.groups.iter().map(status_of).collect()
    }

    /// A shard's other replicas (voters and learners but this node) with their
    /// addresses, voters first, and how many voters the shard has.
    pub fn replicas_of(&self, shard: ShardId) -> (Vec<(u64, PeerNode)>, usize) {
        let Some(group) = self.group(shard) else {
            return (Vec::new(), 0);
        };
        let m = group.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let mut others: Vec<(u64, PeerNode)> = membership
            .nodes()
            .filter(|(id, _)| **id != self.me)
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        others.sort_by_key(|(id, _)| !voters.contains(id));
        (others, voters.len())
    }

    /// How many shards this node leads.
    pub fn leader_count(&self) -> u32 {
        self.groups
            .iter()
            .filter(|g| g.raft.metrics().borrow().state == ServerState::Leader)
            .count() as u32
    }

    /// Whether any shard has Raft state on this node (it has been part of a cluster).
    pub async fn initialized(&self) -> bool {
        for g in &self.groups {
            if g.raft.is_initialized().await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// Initializes `shard` with `voters` (cluster bootstrap). A shard that already has
    /// state is left alone.
    pub async fn initialize(
        &self,
        shard: ShardId,
        voters: BTreeMap<u64, PeerNode>,
    ) -> ControlReply {
        let Some(group) = self.group(shard) else {
            return ControlReply::Refused(format!("no shard {shard}"));
        };
        match group.raft.is_initialized().await {
            Ok(true) => return ControlReply::Ok,
            Ok(false) => {}
            Err(e) => return ControlReply::Refused(e.to_string()),
        }
        match group.raft.initialize(voters).await {
            Ok(()) => ControlReply::Ok,
            Err(RaftError::APIError(e)) => {
                // NotAllowed: something was initialized meanwhile.
                tracing::debug!(%shard, error = %e, "initialize refused");
                ControlReply::Ok
            }
            Err(e) => ControlReply::Refused(e.to_string()),
        }
    }

    /// Asks this node to campaign for `shard` (leadership transfer target).
    pub async fn campaign(&self, shard: ShardId) -> ControlReply {
        let Some(group) = self.group(shard) else {
            return ControlReply::Refused(format!("no shard {shard}"));
        };
        self.votes_open().await;
        match group.raft.trigger().elect().await {
            Ok(()) => ControlReply::Ok,
            Err(e) => ControlReply::Refused(e.to_string()),
        }
    }

    /// Sends `Initialize` for `shard` to the node `to` (which may be this node).
    pub async fn initialize_on(
        &self,
        to: &PeerNode,
        shard: ShardId,
        voters: BTreeMap<u64, PeerNode>,
    ) -> Result<(), String> {
        if to.name == self.me_node.name {
            return match self.initialize(shard, voters).await {
                ControlReply::Ok => Ok(()),
                ControlReply::Refused(e) => Err(e),
            };
        }
        let addr: SocketAddr = to
            .addr
            .parse()
            .map_err(|e| format!("bad address {}: {e}", to.addr))?;
        let request = PeerRequest::Initialize {
            shard: shard.0,
            voters: voters.into_iter().collect(),
        };
        match self
            .peers
            .call::<ControlReply>(addr, &request, Duration::from_millis(CONTROL_TIMEOUT_MS))
            .await
        {
            Ok(ControlReply::Ok) => Ok(()),
            Ok(ControlReply::Refused(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stops every Raft instance (bounded by the caller).
    pub async fn shutdown(&self) {
        for g in &self.groups {
            let _ = g.raft.shutdown().await;
        }
    }
}

fn status_of(group: &ShardGroup) -> ShardStatus {
    let m = group.raft.metrics();
    let m = m.borrow();
    let flags = group.switches.flags();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    ShardStatus {
        shard: group.shard.0,
        leader: m.current_leader,
        voters,
        learners,
        term: m.current_term,
        applied: m.last_applied.map(|l| l.index),
        hosted_here: matches!(*group.hosting.borrow(), Hosting::Active { .. }),
        changing: membership.get_joint_config().len() > 1,
        quiet: flags.quiet_leader || flags.quiet_follower.is_some(),
        nodes: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
    }
}

/// Takes the next batch: `first`, then queued proposals while the batch stays within
/// [`BATCH_COMMANDS_MAX`] commands and [`ENTRY_BYTES_MAX`] bytes. A proposal that would
/// overflow it is handed back as `carry`, to lead the next batch.
fn next_batch(
    first: Proposal,
    rx: &mut mpsc::Receiver<Proposal>,
    carry: &mut Option<Proposal>,
) -> Vec<Proposal> {
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while batch.len() < BATCH_COMMANDS_MAX {
        let Ok(p) = rx.try_recv() else { break };
        if bytes + p.bytes > ENTRY_BYTES_MAX {
            *carry = Some(p);
            break;
        }
        bytes += p.bytes;
        batch.push(p);
    }
    batch
}

/// Sends queued proposals as batches, one log entry at a time, each bounded in commands
/// and bytes.
async fn run_batcher(
    shard: ShardId,
    raft: ShardRaft,
    mut rx: mpsc::Receiver<Proposal>,
    metrics: Arc<crate::context::Metrics>,
) {
    let mut carry: Option<Proposal> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let batch = next_batch(first, &mut rx, &mut carry);
        let mut traces = Vec::new();
        let mut commands = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for p in batch {
            if p.trace.is_some() {
                traces.push(p.trace);
            }
            commands.push(p.command);
            replies.push(p.reply);
        }
        let count = commands.len();
        let histograms = metrics.histograms();
        histograms.raft_batch_commands.observe(count as f64);
        let started = std::time::Instant::now();
        // The leader's apply answers them as soon as the entry's writes are made; this
        // task answers what it did not (replies.rs).
        let waiting = BatchReplies::new(replies);
        let write = raft.client_write(ShardBatch {
            commands,
            traces: crate::raft::BatchTraces(traces),
            replies: waiting.clone(),
        });
        let result =
            match tokio::time::timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS), write).await {
                Ok(result) => {
                    histograms
                        .raft_commit_seconds
                        .observe_duration(started.elapsed());
                    result
                }
                Err(_) => {
                    if let Some(replies) = waiting.take() {
                        replies::fail(replies, || ProposeError::Unavailable {
                            shard,
                            timeout_ms: PROPOSE_TIMEOUT_MS,
                        });
                    }
                    continue;
                }
            };
        let Some(replies) = waiting.take() else {
            continue;
        };
        match result {
            Ok(response) => replies::answer(shard, replies, response.data.results),
            Err(e) => {
                let make = || match &e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        ProposeError::NotLeader {
                            shard,
                            leader: f
                                .leader_node
                                .as_ref()
                                .map(|n| n.to_string())
                                .unwrap_or_else(|| "unknown".into()),
                        }
                    }
                    other => ProposeError::Failed {
                        shard,
                        message: other.to_string(),
                    },
                };
                replies::fail(replies, make);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::ConversationId;

    fn proposal(bytes: usize) -> (Proposal, oneshot::Receiver<Result<Outcome, ProposeError>>) {
        let (reply, rx) = oneshot::channel();
        let command = ShardCommand::Activate {
            conversation: ConversationId::new(ShardId(0), bytes as u128),
        };
        (
            Proposal {
                command,
                bytes,
                reply,
                trace: Default::default(),
            },
            rx,
        )
    }

    /// A batch never exceeds one entry's bytes: the proposal that would overflow it
    /// leads the next batch (before, only the count was bounded, and an oversized
    /// entry could never be replicated).
    #[tokio::test]
    async fn batches_are_bounded_by_bytes_and_carry_the_overflow() {
        let (tx, mut rx) = mpsc::channel(16);
        let third = ENTRY_BYTES_MAX / 3;
        let mut replies = Vec::new();
        for _ in 0..4 {
            let (p, r) = proposal(third);
            replies.push(r);
            tx.send(p).await.unwrap();
        }
        let (small, r) = proposal(10);
        replies.push(r);
        tx.send(small).await.unwrap();
        let mut carry = None;
        let first = rx.recv().await.unwrap();
        let batch = next_batch(first, &mut rx, &mut carry);
        assert_eq!(batch.len(), 3, "three thirds fit");
        assert!(batch.iter().map(|p| p.bytes).sum::<usize>() <= ENTRY_BYTES_MAX);
        let carried = carry.take().expect("the fourth is carried over");
        assert_eq!(carried.bytes, third);
        let batch = next_batch(carried, &mut rx, &mut carry);
        assert_eq!(
            batch.iter().map(|p| p.bytes).collect::<Vec<_>>(),
            vec![third, 10]
        );
        assert!(carry.is_none());
    }
}
