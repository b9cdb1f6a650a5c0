//! The checked section types of [`crate::NodeConfig`] and their defaults.
//!
//! Durations keep their unit in the field name and are stored as integers
//! (`checkpoint_interval_ms: NonZeroU64`); each has a helper returning a
//! [`Duration`] (`checkpoint_interval()`). Integer bounds are checked when parsing
//! and again by [`crate::NodeConfig::validate`]. Integers are `NonZero*` except
//! `cluster.placement_grace_ms`, where zero means "no grace", and the keys where zero
//! means "disabled" (`conversation.initiator_grace_ms`, `workspace.idle_stop_ms`,
//! `workspace.archive_after_ms`), whose helpers return `None` for zero.

use crate::schema::{self, IntRule};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU8, NonZeroU16, NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

/// Default `node.listen_addr`: loopback only, port 7443.
pub const LISTEN_ADDR_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7443);
/// Most addresses `cluster.seeds` may list.
pub const SEEDS_MAX: usize = 64;
/// Default `telemetry.log_filter`.
pub const LOG_FILTER_DEFAULT: &str = "info";

// Defaults as typed values. Evaluated at compile time, so a missing, zero or oversized
// default fails the build rather than a node start.
const fn default_of(rule: &IntRule) -> u64 {
    match rule.default {
        Some(v) => v,
        None => panic!("the key has a default"),
    }
}
const fn nz64(rule: &IntRule) -> NonZeroU64 {
    match NonZeroU64::new(default_of(rule)) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz32(rule: &IntRule) -> NonZeroU32 {
    let default = default_of(rule);
    assert!(default <= u32::MAX as u64, "default fits u32");
    match NonZeroU32::new(default as u32) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz16(rule: &IntRule) -> NonZeroU16 {
    let default = default_of(rule);
    assert!(default <= u16::MAX as u64, "default fits u16");
    match NonZeroU16::new(default as u16) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz8(rule: &IntRule) -> NonZeroU8 {
    let default = default_of(rule);
    assert!(default <= u8::MAX as u64, "default fits u8");
    match NonZeroU8::new(default as u8) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}

/// Default `auth.token_ttl_secs` (30 days).
pub(crate) const TOKEN_TTL_SECS_DEFAULT: NonZeroU64 = nz64(&schema::TOKEN_TTL_SECS);

/// `[node]`: who this node is, where it keeps data and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSection {
    /// `id` (required): this node's identity in the cluster, `[A-Za-z0-9_-]{1,64}`.
    /// Keep it stable across restarts: replicas and leases are recorded under it.
    pub id: crate::NodeId,
    /// `data_dir` (required): directory for the sled database and node state. Must be
    /// non-empty; a relative path is allowed. Size the disk for every replicated shard
    /// this node holds (about `replicas / nodes` of all conversation data).
    pub data_dir: PathBuf,
    /// `listen_addr` (default `127.0.0.1:7443`): UDP address of the QUIC endpoint
    /// (client, admin and peer traffic share it). Use `0.0.0.0:7443` to accept remote
    /// connections, and then set `advertise_addr`.
    pub listen_addr: SocketAddr,
    /// `advertise_addr` (default: `listen_addr`): the address peers and redirected
    /// clients dial to reach this node. Set it when listening on an unspecified address
    /// (`0.0.0.0`) or behind NAT.
    pub advertise_addr: SocketAddr,
}

/// `[tls]`: PEM files of the node's certificate chain. Relative paths in a file given
/// to [`crate::NodeConfig::load`] resolve against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSection {
    /// `ca_cert_path` (required): the cluster CA certificate; peers must chain to it (mTLS).
    pub ca_cert_path: PathBuf,
    /// `cert_path` (required): this node's certificate chain, signed by the cluster CA.
    pub cert_path: PathBuf,
    /// `key_path` (required): this node's private key. Keep it readable by the node only.
    pub key_path: PathBuf,
}

/// `[auth]`: client token signing and the workspace credentials master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSection {
    /// `signing_key_path` (required): the cluster's token signing key; the same key on
    /// every node, so a token issued by one is accepted by all.
    pub signing_key_path: PathBuf,
    /// `credentials_key_path` (optional): the 32-byte AES-256-GCM master key that
    /// encrypts workspace credentials at rest; the same file on every node of a
    /// cluster, like the signing key (a node that holds another key cannot decrypt
    /// them). Unset: credentials are disabled and requests for them are refused naming
    /// this key. `shoal-node dev` and `shoal-node up` generate it.
    pub credentials_key_path: Option<PathBuf>,
    /// `token_ttl_secs` (default 2_592_000 = 30 days, 60..=315_360_000 = 10 years):
    /// lifetime of issued client tokens. Shorter limits the damage of a leaked token;
    /// longer means fewer re-logins.
    pub token_ttl_secs: NonZeroU64,
}

impl AuthSection {
    /// [`Self::token_ttl_secs`] as a [`Duration`].
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs.get())
    }
}

/// `[cluster]`: shape of the replicated state, how to join, and the Raft timings.
///
/// `shard_count` and `replicas` are fixed at cluster creation: every node must use the
/// same values. The timings should match on every node too. `seeds` is per node.
/// Rules: `heartbeat_ms < lease_ms < election_timeout_min_ms < election_timeout_max_ms`
/// and `3 * heartbeat_ms <= election_timeout_min_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSection {
    /// `shard_count` (default 64, 1..=1024): number of Raft groups the workspaces are
    /// hashed into. Cannot change after the cluster is created; pick several shards per
    /// node you may ever run, so shards spread evenly; each shard costs a Raft group.
    pub shard_count: NonZeroU16,
    /// `replicas` (default 3, 1..=7): copies of each shard. 3 survives one node loss,
    /// 5 survives two; 1 (dev) survives none. Use an odd number no larger than the node count.
    pub replicas: NonZeroU8,
    /// `seeds` (default `[]`, at most [`SEEDS_MAX`]): other nodes' `advertise_addr`s
    /// to join the cluster through. Empty for the first node of a new cluster. Must not
    /// contain this node's own `advertise_addr`.
    pub seeds: Vec<SocketAddr>,
    /// `heartbeat_ms` (default 100, 10..=10_000): Raft leader heartbeat interval.
    /// Lower detects a dead leader sooner at the cost of more peer traffic per shard.
    pub heartbeat_ms: NonZeroU64,
    /// `election_timeout_min_ms` (default 400, 20..=60_000): lower end of the random
    /// time a follower waits without hearing a leader before starting an election.
    pub election_timeout_min_ms: NonZeroU64,
    /// `election_timeout_max_ms` (default 800, 20..=60_000): upper end of that random
    /// time. A wider range makes split votes rarer; a higher maximum slows failover.
    pub election_timeout_max_ms: NonZeroU64,
    /// `lease_ms` (default 300, 10..=60_000): the leader lease. A node runs a shard's
    /// agent processes only while a quorum acknowledged its heartbeats within this
    /// time; a new leader waits this long before starting them.
    pub lease_ms: NonZeroU64,
    /// `placement_grace_ms` (default 10_000, 0..=86_400_000 = 24 h): how long a member
    /// must be down before its shard replicas are moved to other nodes. Zero moves them
    /// at once; higher avoids copying shards around a node that is only restarting.
    pub placement_grace_ms: u64,
    /// `snapshot_every_entries` (default 1024, 16..=10_000_000): Raft log entries
    /// between snapshots; older entries are purged, and a lagging or new replica is
    /// then seeded by snapshot. Lower keeps the log small; higher snapshots less often.
    pub snapshot_every_entries: NonZeroU64,
    /// `quiesce_after_ms` (default 2_000, 0..=86_400_000 = 24 h; 0 disables): how long
    /// a shard's log must stand still, every replica caught up, before its leader stops
    /// heartbeating it and sends one small beat per node for all such shards instead.
    /// An idle cluster then costs almost nothing; any write wakes the shard at once.
    pub quiesce_after_ms: u64,
}

impl ClusterSection {
    /// [`Self::heartbeat_ms`] as a [`Duration`].
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.get())
    }
    /// [`Self::election_timeout_min_ms`] as a [`Duration`].
    pub fn election_timeout_min(&self) -> Duration {
        Duration::from_millis(self.election_timeout_min_ms.get())
    }
    /// [`Self::election_timeout_max_ms`] as a [`Duration`].
    pub fn election_timeout_max(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms.get())
    }
    /// [`Self::lease_ms`] as a [`Duration`].
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.get())
    }
    /// [`Self::placement_grace_ms`] as a [`Duration`].
    pub fn placement_grace(&self) -> Duration {
        Duration::from_millis(self.placement_grace_ms)
    }
    /// [`Self::quiesce_after_ms`] as a [`Duration`]; `None` when 0 (shards always
    /// heartbeat).
    pub fn quiesce_after(&self) -> Option<Duration> {
        unless_disabled(self.quiesce_after_ms)
    }
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            shard_count: const { nz16(&schema::SHARD_COUNT) },
            replicas: const { nz8(&schema::REPLICAS) },
            seeds: Vec::new(),
            heartbeat_ms: const { nz64(&schema::HEARTBEAT_MS) },
            election_timeout_min_ms: const { nz64(&schema::ELECTION_TIMEOUT_MIN_MS) },
            election_timeout_max_ms: const { nz64(&schema::ELECTION_TIMEOUT_MAX_MS) },
            lease_ms: const { nz64(&schema::LEASE_MS) },
            placement_grace_ms: const { default_of(&schema::PLACEMENT_GRACE_MS) },
            snapshot_every_entries: const { nz64(&schema::SNAPSHOT_EVERY_ENTRIES) },
            quiesce_after_ms: const { default_of(&schema::QUIESCE_AFTER_MS) },
        }
    }
}

/// `gossip.preset`: SWIM membership timings sized for a cluster of up to
/// [`Self::cluster_size_hint`] nodes. The node passes the hint to foca's
/// `Config::new_lan`: bigger clusters get longer suspicion timeouts (growing with the
/// log of the size) so more members can confirm a suspicion before a member is
/// declared down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GossipPreset {
    /// `"lan-small"`: up to 8 nodes on one LAN.
    #[default]
    LanSmall,
    /// `"lan-medium"`: up to 32 nodes on one LAN.
    LanMedium,
    /// `"lan-large"`: up to 128 nodes on one LAN.
    LanLarge,
}

impl GossipPreset {
    /// Every preset, smallest first.
    pub const ALL: [Self; 3] = [Self::LanSmall, Self::LanMedium, Self::LanLarge];

    /// The largest cluster, in nodes, the preset is sized for: 8, 32 or 128.
    pub fn cluster_size_hint(self) -> u32 {
        match self {
            Self::LanSmall => 8,
            Self::LanMedium => 32,
            Self::LanLarge => 128,
        }
    }

    /// The name used in the config file: `"lan-small"`, `"lan-medium"` or `"lan-large"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LanSmall => "lan-small",
            Self::LanMedium => "lan-medium",
            Self::LanLarge => "lan-large",
        }
    }
}

impl fmt::Display for GossipPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[gossip]`: SWIM membership timings. Rule: when both are set, `probe_period_ms <
/// suspect_to_down_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSection {
    /// `preset` (default `"lan-small"`): the timing preset, sized by cluster size.
    /// Pick the smallest preset at least your node count.
    pub preset: GossipPreset,
    /// `probe_period_ms` (default: none = the preset's value, 100..=60_000): how often
    /// each node probes one random member. Lower detects failures faster at the cost of
    /// more packets (about one probe per period per node, plus indirect probes).
    pub probe_period_ms: Option<NonZeroU64>,
    /// `suspect_to_down_ms` (default: none = the preset's value, 100..=600_000): how
    /// long a suspected member has to refute the suspicion before it is declared down.
    /// Lower declares dead nodes sooner; too low declares slow but live nodes down.
    pub suspect_to_down_ms: Option<NonZeroU64>,
    /// `packet_bytes_max` (default 1100, 512..=1200): the largest gossip datagram.
    /// QUIC datagrams fit about 1.1 KB at the initial path MTU; smaller packets carry
    /// fewer membership updates each.
    pub packet_bytes_max: NonZeroU16,
}

impl GossipSection {
    /// [`Self::probe_period_ms`] as a [`Duration`]; `None` means the preset's value.
    pub fn probe_period(&self) -> Option<Duration> {
        self.probe_period_ms
            .map(|ms| Duration::from_millis(ms.get()))
    }
    /// [`Self::suspect_to_down_ms`] as a [`Duration`]; `None` means the preset's value.
    pub fn suspect_to_down(&self) -> Option<Duration> {
        self.suspect_to_down_ms
            .map(|ms| Duration::from_millis(ms.get()))
    }
}

impl Default for GossipSection {
    fn default() -> Self {
        Self {
            preset: GossipPreset::default(),
            probe_period_ms: None,
            suspect_to_down_ms: None,
            packet_bytes_max: const { nz16(&schema::PACKET_BYTES_MAX) },
        }
    }
}

/// `[limits]`: bounds on memory and concurrency, so nothing on a node grows without
/// bound. The defaults suit a node with a few GiB of memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_connections` (default 1024, 1..=100_000): concurrent QUIC connections
    /// (clients + peers + admin). Size to expected clients plus nodes, with headroom.
    pub max_connections: NonZeroU32,
    /// `max_streams_per_connection` (default 64, 1..=4096): concurrent requests per
    /// connection (each request and each follow is one stream).
    pub max_streams_per_connection: NonZeroU32,
    /// `followers_per_conversation_max` (default 256, 1..=65_536): followers attached
    /// to one conversation's broadcast. Followers share the conversation's replay ring,
    /// so each costs its stream's buffers, not a queue of its own.
    pub followers_per_conversation_max: NonZeroU32,
    /// `follower_queue_frames` (default 1024, 1..=1_048_576, at most
    /// `replay_buffer_events`): how many events a follower may be behind the live end
    /// before it is cut over to resync. Larger tolerates slower viewers; it costs no
    /// memory per follower.
    pub follower_queue_frames: NonZeroU32,
    /// `replay_buffer_events` (default 4096, 1..=1_048_576): recent events kept per
    /// active conversation so a reconnecting follower resumes by sequence number instead
    /// of taking a snapshot. Size to the events of a few seconds of fast streaming.
    pub replay_buffer_events: NonZeroU32,
    /// `replay_buffer_bytes` (default 4_194_304 = 4 MiB, 1_024..=1_073_741_824): the
    /// most encoded bytes the replay ring of one active conversation holds; the oldest
    /// events leave first (the newest is always kept). Bounds memory per active
    /// conversation together with `replay_buffer_events`.
    pub replay_buffer_bytes: NonZeroU64,
    /// `turn_buffer_bytes_max` (default 2_097_152 = 2 MiB, 1..=3_145_728 = 3 MiB): the
    /// largest output of one turn — text, reasoning and tool-call input and output — held
    /// in memory and committed as one Raft log entry (so it must fit a peer frame); a turn
    /// that goes past it is stopped with an error. The worst case memory is this times
    /// the number of concurrently running turns.
    pub turn_buffer_bytes_max: NonZeroU64,
    /// `active_conversations_max` (default 10_000, 1..=10_000_000): conversation actors
    /// resident on this node; idle ones are passivated first. Bounds memory.
    pub active_conversations_max: NonZeroU32,
    /// `agent_processes_max` (default 64, 1..=10_000): agent child processes running on
    /// this node at once. Size to CPU and memory: each agent is a full process. At the
    /// cap the least recently used idle (warm, between turns) agent is stopped to make
    /// room; a turn is refused only when every agent is in a turn.
    pub agent_processes_max: NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: const { nz32(&schema::MAX_CONNECTIONS) },
            max_streams_per_connection: const { nz32(&schema::MAX_STREAMS_PER_CONNECTION) },
            followers_per_conversation_max: const { nz32(&schema::FOLLOWERS_PER_CONVERSATION_MAX) },
            follower_queue_frames: const { nz32(&schema::FOLLOWER_QUEUE_FRAMES) },
            replay_buffer_events: const { nz32(&schema::REPLAY_BUFFER_EVENTS) },
            replay_buffer_bytes: const { nz64(&schema::REPLAY_BUFFER_BYTES) },
            turn_buffer_bytes_max: const { nz64(&schema::TURN_BUFFER_BYTES_MAX) },
            active_conversations_max: const { nz32(&schema::ACTIVE_CONVERSATIONS_MAX) },
            agent_processes_max: const { nz32(&schema::AGENT_PROCESSES_MAX) },
        }
    }
}

/// `[conversation]`: timing of conversation actors and turns. All values are
/// milliseconds; the rules `checkpoint_interval_ms < turn_idle_timeout_ms <=
/// turn_timeout_ms`, `permission_timeout_ms <= turn_timeout_ms` and
/// `initiator_grace_ms <= turn_timeout_ms` must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSection {
    /// `idle_passivate_ms` (default 300_000 = 5 min, 1..=604_800_000 = 7 days): an
    /// idle conversation actor (no turn, no follower) is stopped after this long; its
    /// state stays on disk. Lower frees memory sooner; higher avoids reload latency.
    pub idle_passivate_ms: NonZeroU64,
    /// `checkpoint_interval_ms` (default 250, 1..=60_000): how often the in-flight
    /// turn's parts are committed. A failover loses at most this much streamed output;
    /// lower costs more replicated writes.
    pub checkpoint_interval_ms: NonZeroU64,
    /// `turn_timeout_ms` (default 1_800_000 = 30 min, 1..=86_400_000 = 24 h): wall-clock
    /// limit of one turn, after which it is cancelled. Size to your longest agent task.
    pub turn_timeout_ms: NonZeroU64,
    /// `turn_idle_timeout_ms` (default 300_000 = 5 min, 1..=86_400_000): a turn with no
    /// update from the agent for this long is ended. Size above the agent's longest
    /// silent tool call.
    pub turn_idle_timeout_ms: NonZeroU64,
    /// `agent_start_timeout_ms` (default 60_000, 1..=600_000): time for an agent
    /// process to start and answer ACP `initialize` (and `session/load` on resume).
    pub agent_start_timeout_ms: NonZeroU64,
    /// `agent_probe_timeout_ms` (default 15_000, 100..=600_000): bound on one agent probe
    /// (find the command, spawn it, ACP `initialize`); a probe that takes longer reports
    /// the agent `failed`. Size above the slowest agent's cold `initialize` (opencode:
    /// 3–4 s).
    pub agent_probe_timeout_ms: NonZeroU64,
    /// `agent_probe_ttl_ms` (default 600_000 = 10 min, 1_000..=86_400_000 = 24 h): how
    /// long a probe result is trusted before the agent is probed again (when it is next
    /// listed or a conversation is created for it). Lower notices an installed or removed
    /// agent sooner; each probe starts the agent once.
    pub agent_probe_ttl_ms: NonZeroU64,
    /// `permission_timeout_ms` (default 300_000 = 5 min, 1..=86_400_000): how long a
    /// permission request waits for the owner before it is denied.
    pub permission_timeout_ms: NonZeroU64,
    /// `initiator_grace_ms` (default 30_000 = 30 s, 0..=3_600_000 = 1 h, at most
    /// `turn_timeout_ms`; 0 disables): how long a running turn survives its initiator's
    /// disconnect, waiting for the owner to reattach (`shoalctl conv attach`); when it
    /// passes with nobody attached, the turn is cancelled. 0: the turn is cancelled at
    /// once on disconnect. Higher rides out longer network drops and client restarts;
    /// lower stops an abandoned agent sooner.
    pub initiator_grace_ms: u64,
}

impl ConversationSection {
    /// [`Self::idle_passivate_ms`] as a [`Duration`].
    pub fn idle_passivate(&self) -> Duration {
        Duration::from_millis(self.idle_passivate_ms.get())
    }
    /// [`Self::checkpoint_interval_ms`] as a [`Duration`].
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms.get())
    }
    /// [`Self::turn_timeout_ms`] as a [`Duration`].
    pub fn turn_timeout(&self) -> Duration {
        Duration::from_millis(self.turn_timeout_ms.get())
    }
    /// [`Self::turn_idle_timeout_ms`] as a [`Duration`].
    pub fn turn_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.turn_idle_timeout_ms.get())
    }
    /// [`Self::agent_start_timeout_ms`] as a [`Duration`].
    pub fn agent_start_timeout(&self) -> Duration {
        Duration::from_millis(self.agent_start_timeout_ms.get())
    }
    /// [`Self::agent_probe_timeout_ms`] as a [`Duration`].
    pub fn agent_probe_timeout(&self) -> Duration {
        Duration::from_millis(self.agent_probe_timeout_ms.get())
    }
    /// [`Self::agent_probe_ttl_ms`] as a [`Duration`].
    pub fn agent_probe_ttl(&self) -> Duration {
        Duration::from_millis(self.agent_probe_ttl_ms.get())
    }
    /// [`Self::permission_timeout_ms`] as a [`Duration`].
    pub fn permission_timeout(&self) -> Duration {
        Duration::from_millis(self.permission_timeout_ms.get())
    }
    /// [`Self::initiator_grace_ms`] as a [`Duration`]; `None` when 0 (a turn is
    /// cancelled as soon as its initiator disconnects).
    pub fn initiator_grace(&self) -> Option<Duration> {
        unless_disabled(self.initiator_grace_ms)
    }
}

impl Default for ConversationSection {
    fn default() -> Self {
        Self {
            idle_passivate_ms: const { nz64(&schema::IDLE_PASSIVATE_MS) },
            checkpoint_interval_ms: const { nz64(&schema::CHECKPOINT_INTERVAL_MS) },
            turn_timeout_ms: const { nz64(&schema::TURN_TIMEOUT_MS) },
            turn_idle_timeout_ms: const { nz64(&schema::TURN_IDLE_TIMEOUT_MS) },
            agent_start_timeout_ms: const { nz64(&schema::AGENT_START_TIMEOUT_MS) },
            agent_probe_timeout_ms: const { nz64(&schema::AGENT_PROBE_TIMEOUT_MS) },
            agent_probe_ttl_ms: const { nz64(&schema::AGENT_PROBE_TTL_MS) },
            permission_timeout_ms: const { nz64(&schema::PERMISSION_TIMEOUT_MS) },
            initiator_grace_ms: const { default_of(&schema::INITIATOR_GRACE_MS) },
        }
    }
}

/// `[workspace]`: bounds on workspace snapshots, the copies of a workspace's files kept
/// on its shard's replicas, and how long idle agents and live workspace directories
/// stay on a node. A snapshot that would go past a bound is not taken: the previous
/// snapshot stays and the owner is warned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSection {
    /// `snapshot_bytes_max` (default 268_435_456 = 256 MiB, 1..=1_099_511_627_776 =
    /// 1 TiB): most bytes of regular files a workspace snapshot may hold; a workspace
    /// over it keeps its previous snapshot and the owner gets a warning naming this key.
    pub snapshot_bytes_max: NonZeroU64,
    /// `snapshot_files_max` (default 100_000, 1..=1_000_000): most entries (files,
    /// directories, symlinks) a workspace snapshot may hold; a workspace over it keeps
    /// its previous snapshot and the owner gets a warning naming this key.
    pub snapshot_files_max: NonZeroU32,
    /// `snapshot_timeout_ms` (default 120_000 = 2 min, 1..=3_600_000 = 1 h): time one
    /// workspace snapshot (walk, hash, push chunks to the shard's replicas, commit the
    /// manifest) or restore may take; past it the snapshot is abandoned (the previous
    /// one stays) and the owner is warned.
    pub snapshot_timeout_ms: NonZeroU64,
    /// `idle_stop_ms` (default 900_000 = 15 min, 0..=604_800_000 = 7 days; 0
    /// disables): an agent process that has had no prompt for this long is stopped (its
    /// workspace is snapshotted first; the next turn starts it again and resumes its
    /// session with `session/load`). 0: agents stay until their conversation is
    /// passivated (`conversation.idle_passivate_ms`).
    pub idle_stop_ms: u64,
    /// `archive_after_ms` (default 86_400_000 = 1 day, 0..=31_536_000_000 = 365 days;
    /// 0 disables): a workspace with no agent running and no snapshot or restore for
    /// this long is archived: its live directory is removed from the node's disk after a
    /// last snapshot; the replicated snapshot stays and the next turn restores it. A
    /// node that no longer hosts a workspace removes its stale copy after this long too.
    /// 0: live directories stay on disk.
    pub archive_after_ms: u64,
}

impl WorkspaceSection {
    /// [`Self::snapshot_timeout_ms`] as a [`Duration`].
    pub fn snapshot_timeout(&self) -> Duration {
        Duration::from_millis(self.snapshot_timeout_ms.get())
    }
    /// [`Self::idle_stop_ms`] as a [`Duration`]; `None` when 0 (idle agents are not
    /// stopped).
    pub fn idle_stop(&self) -> Option<Duration> {
        unless_disabled(self.idle_stop_ms)
    }
    /// [`Self::archive_after_ms`] as a [`Duration`]; `None` when 0 (workspaces are not
    /// archived).
    pub fn archive_after(&self) -> Option<Duration> {
        unless_disabled(self.archive_after_ms)
    }
}

/// Milliseconds as a [`Duration`], `None` for 0 (the key's "disabled").
fn unless_disabled(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

impl Default for WorkspaceSection {
    fn default() -> Self {
        Self {
            snapshot_bytes_max: const { nz64(&schema::SNAPSHOT_BYTES_MAX) },
            snapshot_files_max: const { nz32(&schema::SNAPSHOT_FILES_MAX) },
            snapshot_timeout_ms: const { nz64(&schema::SNAPSHOT_TIMEOUT_MS) },
            idle_stop_ms: const { default_of(&schema::IDLE_STOP_MS) },
            archive_after_ms: const { default_of(&schema::ARCHIVE_AFTER_MS) },
        }
    }
}

/// `sandbox.isolation`: how agent processes are confined on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// `"none"`: a child process in its workspace directory with a cleared environment.
    #[default]
    None,
    /// `"bwrap"`: each agent runs under bubblewrap (`bwrap`): its workspace read-write,
    /// system directories and the directories on `PATH` read-only, its own `/tmp`,
    /// `/proc` and `/dev`, and nothing else of the node's disk.
    Bwrap,
}

impl Isolation {
    /// Every isolation mode, the default first.
    pub const ALL: [Self; 2] = [Self::None, Self::Bwrap];

    /// The name used in the config file: `"none"` or `"bwrap"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bwrap => "bwrap",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[sandbox]`: how agent processes are confined on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxSection {
    /// `isolation` (default `"none"`): how agent processes are confined. `"none"`: a
    /// child process in its workspace directory with a cleared environment. `"bwrap"`:
    /// each agent runs under bubblewrap (Debian's `bubblewrap` package): its workspace
    /// read-write, system directories (`/usr`, `/etc`, …) and the directories on `PATH`
    /// read-only, its own `/tmp`, `/proc` and `/dev`, and nothing else of the node's
    /// disk (no other workspace, no keys). A node configured with `"bwrap"` where
    /// `bwrap` is not installed refuses to start.
    pub isolation: Isolation,
}

/// `[telemetry]`: logs and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySection {
    /// `log_filter` (default `"info"`): a `tracing` env-filter directive, e.g.
    /// `"info,shoal_node=debug"`. Must not be empty.
    pub log_filter: String,
    /// `otlp_endpoint` (default: none, export off): OpenTelemetry collector URL (OTLP
    /// over gRPC), `http://` or `https://`, e.g. `"http://127.0.0.1:4317"`. Traces and
    /// metrics are exported there.
    pub otlp_endpoint: Option<String>,
    /// `service_name` (default `"shoal-node"`): the `service.name` resource attribute.
    pub service_name: String,
    /// `sampling_ratio` (default `1.0`): the share of new traces recorded, `0.0`–`1.0`;
    /// a request that arrives with a sampled trace context is always recorded.
    pub sampling_ratio: SamplingRatio,
    /// `resource_attributes` (default none): more resource attributes, e.g.
    /// `{ "deployment.environment" = "prod" }` (`service.name` and `host.name`-like
    /// `node.id` are set by the node).
    pub resource_attributes: std::collections::BTreeMap<String, String>,
    /// `prometheus_listen` (default: none, off): `ip:port` where `GET /metrics` serves
    /// the node's metrics as Prometheus text.
    pub prometheus_listen: Option<SocketAddr>,
}

/// A ratio in `0.0..=1.0`, kept in millionths so the config stays `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingRatio {
    /// Millionths: 1 000 000 is 1.0.
    pub ppm: u32,
}

impl SamplingRatio {
    /// Every trace.
    pub const ALL: SamplingRatio = SamplingRatio { ppm: 1_000_000 };

    /// As a float.
    pub fn as_f64(self) -> f64 {
        f64::from(self.ppm) / 1e6
    }
}

/// Default `telemetry.service_name`.
pub const SERVICE_NAME_DEFAULT: &str = "shoal-node";

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log_filter: LOG_FILTER_DEFAULT.to_owned(),
            otlp_endpoint: None,
            service_name: SERVICE_NAME_DEFAULT.to_owned(),
            sampling_ratio: SamplingRatio::ALL,
            resource_attributes: std::collections::BTreeMap::new(),
            prometheus_listen: None,
        }
    }
}
