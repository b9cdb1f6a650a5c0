//! The checked section types of [`crate::NodeConfig`] and their defaults.
//!
//! Durations keep their unit in the field name and are stored as integers
//! (`checkpoint_interval_ms: NonZeroU64`); each has a helper returning a
//! [`Duration`] (`checkpoint_interval()`). Integer bounds are checked when parsing
//! and again by [`crate::NodeConfig::validate`].

use crate::schema::{self, IntRule};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU8, NonZeroU16, NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

/// Default `node.listen_addr`: loopback only, port 7443.
pub const LISTEN_ADDR_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7443);
/// Default `telemetry.log_filter`.
pub const LOG_FILTER_DEFAULT: &str = "info";

// Defaults as typed values. Evaluated at compile time, so a zero or oversized default
// fails the build rather than a node start.
const fn nz64(rule: &IntRule) -> NonZeroU64 {
    match NonZeroU64::new(rule.default) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz32(rule: &IntRule) -> NonZeroU32 {
    assert!(rule.default <= u32::MAX as u64, "default fits u32");
    match NonZeroU32::new(rule.default as u32) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz16(rule: &IntRule) -> NonZeroU16 {
    assert!(rule.default <= u16::MAX as u64, "default fits u16");
    match NonZeroU16::new(rule.default as u16) {
        Some(v) => v,
        None => panic!("integer defaults are non-zero"),
    }
}
const fn nz8(rule: &IntRule) -> NonZeroU8 {
    assert!(rule.default <= u8::MAX as u64, "default fits u8");
    match NonZeroU8::new(rule.default as u8) {
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

/// `[auth]`: client token signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSection {
    /// `signing_key_path` (required): the cluster's token signing key; the same key on
    /// every node, so a token issued by one is accepted by all.
    pub signing_key_path: PathBuf,
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

/// `[cluster]`: shape of the replicated state. Fixed at cluster creation: every node
/// must use the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSection {
    /// `shard_count` (default 64, 1..=1024): number of Raft groups the workspaces are
    /// hashed into. Cannot change after the cluster is created; pick several shards per
    /// node you may ever run, so shards spread evenly; each shard costs a Raft group.
    pub shard_count: NonZeroU16,
    /// `replicas` (default 3, 1..=7): copies of each shard. 3 survives one node loss,
    /// 5 survives two; 1 (dev) survives none. Use an odd number no larger than the node count.
    pub replicas: NonZeroU8,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            shard_count: const { nz16(&schema::SHARD_COUNT) },
            replicas: const { nz8(&schema::REPLICAS) },
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
    /// to one conversation's broadcast. Each costs one queue of `follower_queue_frames`.
    pub followers_per_conversation_max: NonZeroU32,
    /// `follower_queue_frames` (default 1024, 1..=1_048_576, at most
    /// `replay_buffer_events`): frames queued for one follower before it is cut over to
    /// resync. Larger tolerates slower viewers at the cost of memory per follower.
    pub follower_queue_frames: NonZeroU32,
    /// `replay_buffer_events` (default 4096, 1..=1_048_576): recent events kept per
    /// active conversation so a reconnecting follower resumes by sequence number instead
    /// of taking a snapshot. Size to the events of a few seconds of fast streaming.
    pub replay_buffer_events: NonZeroU32,
    /// `turn_buffer_bytes_max` (default 8_388_608 = 8 MiB, 1..=1_073_741_824 = 1 GiB):
    /// memory for one in-flight turn's buffered parts. Size above your largest turn
    /// output; the worst case is this times the number of concurrently running turns.
    pub turn_buffer_bytes_max: NonZeroU64,
    /// `active_conversations_max` (default 10_000, 1..=10_000_000): conversation actors
    /// resident on this node; idle ones are passivated first. Bounds memory.
    pub active_conversations_max: NonZeroU32,
    /// `agent_processes_max` (default 64, 1..=10_000): agent child processes running on
    /// this node at once. Size to CPU and memory: each agent is a full process.
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
            turn_buffer_bytes_max: const { nz64(&schema::TURN_BUFFER_BYTES_MAX) },
            active_conversations_max: const { nz32(&schema::ACTIVE_CONVERSATIONS_MAX) },
            agent_processes_max: const { nz32(&schema::AGENT_PROCESSES_MAX) },
        }
    }
}

/// `[conversation]`: timing of conversation actors and turns. All values are
/// milliseconds; the rules `checkpoint_interval_ms < turn_idle_timeout_ms <=
/// turn_timeout_ms` and `permission_timeout_ms <= turn_timeout_ms` must hold.
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
    /// `permission_timeout_ms` (default 300_000 = 5 min, 1..=86_400_000): how long a
    /// permission request waits for the owner before it is denied.
    pub permission_timeout_ms: NonZeroU64,
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
    /// [`Self::permission_timeout_ms`] as a [`Duration`].
    pub fn permission_timeout(&self) -> Duration {
        Duration::from_millis(self.permission_timeout_ms.get())
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
            permission_timeout_ms: const { nz64(&schema::PERMISSION_TIMEOUT_MS) },
        }
    }
}

/// `[agents.<name>]`: how to start one ACP agent. Not overridable from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// `command` (required, non-empty): the executable; a bare name is looked up in
    /// `PATH`, a relative path resolves against the agent's working directory (its
    /// workspace).
    pub command: PathBuf,
    /// `args` (default `[]`): arguments passed to `command`.
    pub args: Vec<String>,
    /// `env` (default `{}`): extra environment variables for the agent process.
    pub env: BTreeMap<String, String>,
}

/// `[telemetry]`: logs and traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySection {
    /// `log_filter` (default `"info"`): a `tracing` env-filter directive, e.g.
    /// `"info,shoal_node=debug"`. Must not be empty.
    pub log_filter: String,
    /// `otlp_endpoint` (default: none, export off): OpenTelemetry collector URL,
    /// `http://` or `https://`, e.g. `"http://127.0.0.1:4317"`.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log_filter: LOG_FILTER_DEFAULT.to_owned(),
            otlp_endpoint: None,
        }
    }
}
