//! What every part of a node shares: config, store, signer, counters, clock and paths.
//!
//! This is the node's one seam for time and randomness: actors take `now` from here, so
//! a simulated clock can replace it later.

use crate::security::tokens::TokenSigner;
use crate::shard::store::Store;
use shoal_cluster_config::NodeConfig;
use shoal_protocol::{ConversationId, ShardId, UserId, WorkspaceId};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counters shown by the admin API. Each is incremented and decremented by its owner.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Conversation actors running.
    pub conversations_active: AtomicU64,
    /// Agent processes running.
    pub agent_processes: AtomicU64,
    /// Followers attached.
    pub followers: AtomicU64,
    /// Turns running.
    pub turns_running: AtomicU64,
    /// Client and admin connections open.
    pub connections: AtomicU64,
    /// Followers cut over to resync because they fell behind (monotonic).
    pub follower_resyncs: AtomicU64,
    /// Checkpoints of running turns submitted (monotonic).
    pub checkpoints: AtomicU64,
    /// Encoded bytes of those checkpoints (monotonic): each carries only what streamed
    /// since the last one, so this grows with the output, not with its square.
    pub checkpoint_bytes: AtomicU64,
    /// UDP payload bytes received on the node's socket: QUIC for clients, admin and
    /// peers, and gossip (monotonic; [`crate::telemetry::traffic`]).
    pub bytes_in: AtomicU64,
    /// UDP payload bytes sent (monotonic).
    pub bytes_out: AtomicU64,
    /// Membership changes gossip reported: joins, suspicions, deaths, recoveries, new
    /// stores (monotonic).
    pub gossip_events: AtomicU64,
    /// Latencies and sizes ([`crate::telemetry::prometheus::Histograms`]).
    histograms: crate::telemetry::prometheus::Histograms,
}

impl Metrics {
    /// The node's histograms.
    pub fn histograms(&self) -> &crate::telemetry::prometheus::Histograms {
        &self.histograms
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Shared node state.
#[derive(Debug)]
pub struct NodeContext {
    /// The checked config.
    pub config: NodeConfig,
    /// The node's store, for reads (the write path is [`crate::cluster::Cluster::propose`]).
    pub store: Arc<Store>,
    /// Raft groups, lease and routing.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Per-shard fences over agent processes.
    pub fence: crate::fence::AgentFence,
    /// The agents: enabled at run time, probed ([`crate::agents`]).
    pub agents: crate::agents::AgentRegistry,
    /// The agent-process cap (`limits.agent_processes_max`).
    pub agent_slots: Arc<crate::agent_slots::AgentSlots>,
    /// The shard host, once started: the reconciler hands shards over through it before
    /// it moves their leadership.
    pub shard_host: std::sync::OnceLock<ractor::ActorRef<crate::actors::shard_host::ShardHostMsg>>,
    /// SWIM membership (gossip over QUIC datagrams).
    pub membership: crate::cluster::membership::Membership,
    /// Token signer.
    pub signer: TokenSigner,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Start time.
    pub started: Instant,
    /// The client address actually bound.
    pub listen_addr: std::net::SocketAddr,
    /// The address other nodes and redirected clients dial to reach this node.
    pub advertise_addr: std::net::SocketAddr,
    /// Simulation hooks (all off in production): see [`crate::seam`].
    pub seams: crate::seam::Seams,
    /// The credentials key (`auth.credentials_key_path`); `None`: credentials are off.
    pub credentials_key: Option<crate::security::credentials::CredentialsKey>,
    /// Workspace chunks held for the shards' replicas.
    pub blobs: Arc<crate::workspace::blobs::BlobStore>,
    /// Sandbox actors of the workspaces this node hosts.
    pub sandboxes: crate::workspace::Sandboxes,
    /// The node's id generator: seeded from [`crate::seam::Seams::rng_seed`], else from
    /// the OS.
    pub rng: std::sync::Mutex<rand::rngs::StdRng>,
    /// Wrong share-token counts and the grants-changed signal ([`crate::sharing`]).
    pub sharing: crate::sharing::Sharing,
    /// Recent cluster events this node saw ([`crate::telemetry::events`]).
    pub events: crate::telemetry::events::EventLog,
}

impl NodeContext {
    /// Records a cluster event seen by this node, now.
    pub fn event(&self, kind: crate::telemetry::events::EventKind, detail: String) {
        self.events
            .record(self.now_ms(), self.node_id(), kind, detail);
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        self.config.node.id.as_str()
    }

    /// Wall-clock milliseconds since the Unix epoch ([`crate::seam::Seams::wall_clock`] in
    /// simulation).
    pub fn now_ms(&self) -> u64 {
        if let Some(clock) = &self.seams.wall_clock {
            return clock();
        }
        wall_clock_ms()
    }

    /// Wall-clock seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// A fresh random 128-bit id.
    pub fn random_u128(&self) -> u128 {
        use rand::Rng;
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random()
    }

    /// A fresh random 64-bit id (error ids).
    pub fn random_u64(&self) -> u64 {
        use rand::Rng;
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random()
    }

    /// An internal error for the client: the details (`context: err`) go to the log under
    /// a fresh error id, and only the id goes on the wire (the one helper for this).
    pub fn internal_error(
        &self,
        context: &str,
        err: impl std::fmt::Display,
    ) -> shoal_protocol::WireError {
        let id = format!("{:016x}", self.random_u64());
        tracing::error!(error_id = %id, "{context}: {err}");
        shoal_protocol::WireError::internal(id)
    }

    /// The shard count.
    pub fn shard_count(&self) -> u16 {
        self.config.cluster.shard_count.get()
    }

    /// Whether `id`'s shard exists in this cluster.
    pub fn shard_exists(&self, shard: ShardId) -> bool {
        shard.0 < self.shard_count()
    }

    /// A user's default workspace: derived from the user id, so no lookup is needed.
    pub fn default_workspace(&self, user: &UserId) -> WorkspaceId {
        default_workspace_of(user, self.shard_count())
    }

    /// The directory of a workspace's files (the agent's cwd).
    pub fn workspace_dir(&self, workspace: WorkspaceId) -> PathBuf {
        self.workspace_root(workspace).join("work")
    }

    /// The private home of one conversation's agent process.
    pub fn agent_home(&self, workspace: WorkspaceId, conversation: ConversationId) -> PathBuf {
        self.workspace_root(workspace)
            .join("homes")
            .join(conversation.to_string())
    }

    /// Where this node keeps a workspace's tree: the working tree (`work/`) and the agent
    /// homes (`homes/`) are both in it, and both move with the workspace.
    pub fn workspace_root(&self, workspace: WorkspaceId) -> PathBuf {
        self.config
            .node
            .data_dir
            .join("workspaces")
            .join(workspace.to_string())
    }

    /// Runs blocking work (file I/O) on a blocking thread, or on the calling task with
    /// [`crate::seam::Seams::inline_blocking`] (simulation). `Err` when it panicked.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        if self.seams.inline_blocking {
            return Ok(f());
        }
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| std::io::Error::other(format!("blocking task failed: {e}")))
    }

    /// Interval between turn checkpoints.
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.config.conversation.checkpoint_interval_ms.get())
    }
}

/// A user's default workspace in a cluster of `shard_count` shards (what
/// [`NodeContext::default_workspace`] answers): derived from the user id, so no lookup
/// is needed.
pub fn default_workspace_of(user: &UserId, shard_count: u16) -> WorkspaceId {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("shoal-default-workspace:{user}").as_bytes(),
    );
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&digest.as_ref()[..16]);
    let uid = u128::from_be_bytes(uid);
    let shard = ShardId((uid % u128::from(shard_count.max(1))) as u16);
    WorkspaceId::new(shard, uid)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is set before it): the
/// one reading of the real clock, for [`NodeContext::now_ms`] and for code that runs
/// without a node.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
