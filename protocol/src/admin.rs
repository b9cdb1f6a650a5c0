//! Requests and replies of the admin API (`shoal-admin/1`), which needs the admin token.
//!
//! Each request opens a bidirectional stream, writes one [`crate::client::RequestEnvelope`]
//! of [`AdminRequest`] and reads one `Result<AdminReply, WireError>` frame.

use crate::ids::{ConversationId, Seq, UserId};
use serde::{Deserialize, Serialize};

/// An admin request. Encoded by declaration index: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// The node's status and counters.
    Status,
    /// Active actors on this node.
    ListActors,
    /// Followers attached on this node, optionally of one conversation.
    ListFollowers {
        /// Restrict to this conversation.
        conversation: Option<ConversationId>,
    },
    /// Passivate a conversation's actors now (its agent process is stopped), on whichever
    /// node hosts it.
    EvictActor {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Mint a user token signed by this cluster's key.
    IssueToken {
        /// The user it names.
        user: UserId,
        /// Lifetime in seconds.
        ttl_secs: u64,
    },
    /// Cluster members as this node's gossip sees them.
    Members,
    /// Every shard: leader, replicas, term, applied index (as this node sees them).
    Shards,
    /// Move every shard leadership off `node` and remove it from placement.
    Drain {
        /// The node id (name).
        node: String,
    },
    /// Inject a fault into this node (chaos tests). Refused unless the node was started
    /// with `SHOAL_FAULT_INJECTION=1` in its environment.
    InjectFault {
        /// The fault.
        fault: Fault,
    },
    /// The agents this node can run, probed again where the last probe is older than
    /// `conversation.agent_probe_ttl_ms`.
    Agents,
    /// Probe agents now (command lookup, then a bounded ACP `initialize`).
    ProbeAgents {
        /// Only this agent; `None`: every enabled agent.
        agent: Option<String>,
    },
    /// Enable or disable an agent on this node (persisted in the node's store; overrides
    /// the config's `enabled`). Conversations can only be created for enabled, ready
    /// agents; turns of a disabled agent are refused.
    SetAgentEnabled {
        /// The agent id.
        agent: String,
        /// `true` to enable.
        enabled: bool,
    },
    /// The node's metrics as OpenMetrics text (what `GET /metrics` serves).
    Metrics,
    /// Put a drained node back into placement: it may hold replicas and lead shards
    /// again (the reconciler moves some back over the next rounds). Kept across restarts,
    /// like the drain. Undraining a node that is not draining changes nothing.
    Undrain {
        /// The node id (name).
        node: String,
    },
    /// How far a drain has come: the leaderships and replicas the node still holds, as
    /// the shards' leaders see them.
    DrainProgress {
        /// The node id (name).
        node: String,
    },
    /// Read or replace a node's log filter (`tracing` EnvFilter directives such as
    /// `info,shoal_node=debug`), in effect at once, until the node restarts. A filter that
    /// does not parse is refused and changes nothing.
    LogFilter {
        /// The node; `None`: the answering node.
        node: Option<String>,
        /// The new filter; `None`: only read it.
        filter: Option<String>,
    },
    /// Every live member's actors ([`ClusterActorInfo`]); a member that does not answer
    /// is reported in the reply, not an error.
    ClusterActors,
    /// Cancel a conversation's running turn, on whichever node hosts it (as its owner's
    /// cancel: the turn ends as cancelled with what it streamed).
    CancelTurn {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Recent cluster events from every member, merged by time: the newest `limit` (at
    /// most [`EVENTS_PER_ANSWER_MAX`]) recorded after `after_ms`.
    Events {
        /// Only events recorded after this time (ms since the Unix epoch, the recording
        /// node's clock); `None`: the newest.
        after_ms: Option<u64>,
        /// How many at most.
        limit: u32,
    },
    /// Change a shard's operator pin ([`ShardPinChange`]): where its leadership and
    /// replicas stay whatever automatic placement would choose. Answered by the shard's
    /// leader, which stores the pin in the shard (replicated) and moves the shard over
    /// its next reconciler rounds.
    PinShard {
        /// The shard.
        shard: u16,
        /// What to change.
        change: ShardPinChange,
    },
    /// A shard's placement from its leader's own view: leader, voters, learners, the pin,
    /// and whether the shard is where its pin and placement want it.
    ShardPlacement {
        /// The shard.
        shard: u16,
    },
}

/// An operator's change to a shard's pin ([`AdminRequest::PinShard`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardPinChange {
    /// Lead the shard from `node` (made a replica first if it is not one). Kept until
    /// cleared: leadership balance leaves the shard there.
    Lead {
        /// The node id (name).
        node: String,
    },
    /// Move the shard's replica on `from` to `to` (added and caught up first, then
    /// `from` is removed; a leadership on `from` moves between turns).
    Move {
        /// The node that gives its replica up: a voter of the shard.
        from: String,
        /// The node that takes it: alive, not draining, not a voter of the shard yet.
        to: String,
    },
    /// Back to automatic placement (rendezvous and balance may move the shard again).
    Clear,
}

/// Where an operator pinned a shard. Placement puts `leader` (if any), then `replicas`,
/// first among the shard's replicas, skipping a node that is down or draining (the shard
/// then falls back to automatic placement for that slot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPin {
    /// The node that should lead the shard.
    pub leader: Option<String>,
    /// The nodes that should hold its replicas (at most [`PINNED_REPLICAS_MAX`]).
    pub replicas: Vec<String>,
}

/// Most nodes one [`ShardPin`] names as replicas.
pub const PINNED_REPLICAS_MAX: usize = 9;

impl ShardPin {
    /// Nothing pinned.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.leader.is_none() && self.replicas.is_empty()
    }
}

/// A shard's placement, from its leader ([`AdminRequest::ShardPlacement`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// The shard.
    pub shard: u16,
    /// Its leader (the answering node).
    pub leader: String,
    /// Voters.
    pub voters: Vec<String>,
    /// Learners (catching up).
    pub learners: Vec<String>,
    /// The operator's pin, if any.
    pub pin: Option<ShardPin>,
    /// The replicas placement wants now (the pin's first, then rendezvous), leader-to-be
    /// first.
    pub desired: Vec<String>,
    /// Whether the shard is where placement wants it: the voters are the desired set, no
    /// learner is left, and a pinned leader leads.
    pub settled: bool,
}

/// A fault a node injects into itself on request ([`AdminRequest::InjectFault`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Every store flush (the Raft log's durability point, shared by all shards) waits
    /// until `ms` milliseconds from now: a stalled disk. Raft's core blocks on it.
    StallStorage {
        /// How long, at most [`FAULT_STALL_MS_MAX`].
        ms: u64,
    },
}

/// The longest storage stall [`Fault::StallStorage`] may ask for.
pub const FAULT_STALL_MS_MAX: u64 = 60_000;

/// One cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub node_id: String,
    /// Its address (client, admin and peer).
    pub addr: String,
    /// `alive`, `suspect` or `down`.
    pub state: String,
    /// Software version.
    pub version: String,
    /// Shards it leads.
    pub leaders: u32,
    /// Being drained.
    pub draining: bool,
}

/// One shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard id.
    pub shard: u16,
    /// Leader node id, if known.
    pub leader: Option<String>,
    /// Voter node ids.
    pub replicas: Vec<String>,
    /// Learner node ids (catching up).
    pub learners: Vec<String>,
    /// Raft term.
    pub term: u64,
    /// Last applied log index on the answering node.
    pub applied_index: Option<u64>,
    /// The answering node hosts the shard now (leads it and holds the lease: its actors
    /// and agents may run there).
    pub hosted_here: bool,
    /// The shard is quiet on the answering node: as its leader, it beats instead of
    /// heartbeating; as a follower, it accepted its leader's beats (the shard's log has
    /// stood still for `cluster.quiesce_after_ms`).
    pub quiet: bool,
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: String,
    /// Software version.
    pub version: String,
    /// Client address.
    pub listen_addr: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Conversation actors running.
    pub conversations_active: u64,
    /// Agent processes running.
    pub agent_processes: u64,
    /// Followers attached.
    pub followers: u64,
    /// Turns running.
    pub turns_running: u64,
    /// Client connections open.
    pub connections: u64,
    /// Followers cut over to resync because they fell behind, since start.
    pub follower_resyncs: u64,
    /// Checkpoints of running turns queued for commit, since start.
    pub checkpoints: u64,
    /// Their encoded bytes (only what streamed since the previous one), since start.
    pub checkpoint_bytes: u64,
}

/// One running actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorInfo {
    /// `conversation` or `agent_session`.
    pub kind: String,
    /// The key (a conversation id).
    pub key: String,
    /// Short state (`idle`, `turn`, `live`; a conversation between actors: `activating`,
    /// `stopping`).
    pub state: String,
}

/// One attached follower.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerInfo {
    /// The conversation followed.
    pub conversation: ConversationId,
    /// The follower's user.
    pub user: UserId,
    /// Last sequence number written to its stream.
    pub last_seq: Option<Seq>,
    /// Events it is behind the conversation's latest.
    pub queued: u64,
}

/// Longest agent id an admin request may name, in bytes (config ids are at most 32).
pub const AGENT_ID_BYTES_MAX: usize = 64;

/// An agent's state on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentStatus {
    /// Enabled, its command found, and it answered ACP `initialize`.
    Ready,
    /// Enabled, but its command is not there.
    Missing {
        /// What was looked for where.
        detail: String,
    },
    /// Disabled (config or `shoalctl agents disable`); not probed.
    Disabled,
    /// Enabled and found, but it did not start or answer `initialize` in time.
    Failed {
        /// Why, with the end of its stderr.
        reason: String,
    },
    /// Enabled, not probed yet.
    Unknown,
}

impl std::fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready => f.write_str("ready"),
            Self::Missing { .. } => f.write_str("missing"),
            Self::Disabled => f.write_str("disabled"),
            Self::Failed { reason } => write!(f, "failed: {reason}"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// One agent as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Its id (`opencode`).
    pub id: String,
    /// Its label (`OpenCode`).
    pub label: String,
    /// The program and its arguments, as configured.
    pub command: Vec<String>,
    /// Whether conversations may use it on this node.
    pub enabled: bool,
    /// Whether `enabled` comes from `shoalctl agents enable|disable` (else the config).
    pub enabled_at_run_time: bool,
    /// The status.
    pub status: AgentStatus,
    /// `agentInfo.name` from the last successful probe.
    pub agent_name: Option<String>,
    /// `agentInfo.version` from the last successful probe.
    pub version: Option<String>,
    /// `agentCapabilities.loadSession`.
    pub load_session: bool,
    /// Prompt capabilities it advertised: `image`, `audio`, `embeddedContext`.
    pub prompt_capabilities: Vec<String>,
    /// Ids of the auth methods it advertised.
    pub auth_methods: Vec<String>,
    /// When it was last probed (ms since the Unix epoch), if it was.
    pub probed_at_ms: Option<u64>,
}

/// The answer to an admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    /// `Status`.
    Status(NodeStatus),
    /// `ListActors`.
    Actors(Vec<ActorInfo>),
    /// `ListFollowers`.
    Followers(Vec<FollowerInfo>),
    /// `EvictActor`: whether it was active.
    Evicted {
        /// The conversation had an active actor.
        was_active: bool,
    },
    /// `IssueToken`: the token.
    Token(String),
    /// `Members`.
    Members(Vec<MemberInfo>),
    /// `Shards`.
    Shards(Vec<ShardInfo>),
    /// `Drain`: accepted; leaderships move off the node over the next seconds.
    Draining {
        /// The node.
        node: String,
    },
    /// `InjectFault`: the fault is in effect.
    FaultInjected,
    /// `Agents`, `ProbeAgents`, `SetAgentEnabled`: the agents (only the one named, for a
    /// request naming one) as the answering node sees them.
    Agents {
        /// The answering node.
        node: String,
        /// By id.
        agents: Vec<AgentInfo>,
    },
    /// `Metrics`: OpenMetrics text.
    Metrics(String),
    /// `Undrain`: the node is back in placement.
    Undrained {
        /// The node.
        node: String,
    },
    /// `DrainProgress`.
    DrainProgress(DrainProgress),
    /// `LogFilter`: the filter now in effect on the node.
    LogFilter {
        /// The node.
        node: String,
        /// Its filter.
        filter: String,
    },
    /// `ClusterActors`.
    ClusterActors {
        /// The actors, by node then kind then key.
        actors: Vec<ClusterActorInfo>,
        /// Members that did not answer, with why (`n3: down in gossip`).
        unreachable: Vec<String>,
        /// Some member had more than [`ACTORS_PER_MEMBER_MAX`] actors: not all are listed.
        truncated: bool,
    },
    /// `CancelTurn`.
    TurnCancelled {
        /// Whether a turn was running (it ends as cancelled).
        was_running: bool,
    },
    /// `Events`.
    Events {
        /// Oldest first.
        events: Vec<ClusterEvent>,
        /// Members that did not answer, with why.
        unreachable: Vec<String>,
    },
    /// `PinShard`: the pin now stored (`None`: cleared).
    ShardPinned {
        /// The shard.
        shard: u16,
        /// Its pin.
        pin: Option<ShardPin>,
    },
    /// `ShardPlacement`.
    ShardPlacement(ShardPlacement),
}

/// Most events one [`AdminReply::Events`] carries.
pub const EVENTS_PER_ANSWER_MAX: u32 = 1_000;

/// Something that happened in the cluster, as the node that saw it recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// When (ms since the Unix epoch, the recording node's clock).
    pub at_ms: u64,
    /// The recording node.
    pub node: String,
    /// Its sequence number on that node (from 0 at each start).
    pub seq: u64,
    /// `start`, `join`, `suspect`, `down`, `alive`, `store`, `leader`, `follower`,
    /// `placement`, `drain`, `undrain`.
    pub kind: String,
    /// What happened, in words (`n3 is down`, `leads shards 4 9`).
    pub detail: String,
}

/// Most actors one member lists in [`AdminReply::ClusterActors`].
pub const ACTORS_PER_MEMBER_MAX: usize = 5_000;

/// One actor somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterActorInfo {
    /// The node hosting it.
    pub node: String,
    /// `conversation` or `agent_session`.
    pub kind: String,
    /// The key (a conversation id).
    pub key: String,
    /// Short state, as [`ActorInfo::state`].
    pub state: String,
    /// Followers attached to it (conversations; 0 for other kinds).
    pub followers: u32,
    /// Messages waiting in its mailbox, when the actor runtime tells (ractor 0.16 does
    /// not: `None`).
    pub mailbox: Option<u64>,
}

/// How far a node's drain has come ([`AdminRequest::DrainProgress`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainProgress {
    /// The node.
    pub node: String,
    /// It is draining (its gossip says so).
    pub draining: bool,
    /// Shards it still leads.
    pub leaderships: u32,
    /// Shards it is still a replica of (voter or learner).
    pub replicas: u32,
    /// Alive members that are not draining: replicas move off the node only while there
    /// are at least `replicas_per_shard` of them.
    pub placeable_members: u32,
    /// The cluster's replica count per shard (`cluster.replicas`).
    pub replicas_per_shard: u32,
    /// Shards whose leader's view could not be read (no leader, or its node did not
    /// answer): not counted above.
    pub shards_unknown: u32,
    /// Members that did not answer, with why.
    pub unreachable: Vec<String>,
}

impl DrainProgress {
    /// The replicas cannot leave the node: fewer non-draining alive members than replicas
    /// per shard (the drain ends with the leaderships moved and the replicas kept).
    pub fn replicas_stay(&self) -> bool {
        self.placeable_members < self.replicas_per_shard
    }

    /// Nothing is left to move: no leadership, every shard's view known, and no replica
    /// left (or none can leave, see [`Self::replicas_stay`]).
    pub fn finished(&self) -> bool {
        self.draining
            && self.leaderships == 0
            && self.shards_unknown == 0
            && (self.replicas == 0 || self.replicas_stay())
    }
}
