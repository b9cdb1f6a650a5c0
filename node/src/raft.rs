//! Shard replication with openraft: one Raft group per shard, log and state machine in
//! the node's one sled `Db`.
//!
//! * [`storage`]: the log store (`raft-log-N`, `raft-meta-N` trees) and the state
//!   machine, which applies [`ShardBatch`]es of [`ShardCommand`]s to the shard's tree
//!   with the same sans-I/O [`crate::shard::state_machine::apply`] as before.
//! * [`network`]: Raft RPCs to other nodes over the peer ALPN.
//!
//! Commands are batched: one log entry carries up to [`BATCH_COMMANDS_MAX`] commands,
//! so one flush commits many writes (STACK.md: one flush per command caps a shard at a
//! few thousand writes/s).

pub mod heartbeats;
pub mod network;
pub mod replies;
pub mod snapshot_file;
pub mod storage;

use crate::shard::state_machine::{Outcome, Rejection, ShardCommand};
use serde::{Deserialize, Serialize};
use shoal_cluster_config::NodeConfig;

/// Commands carried by one log entry at most.
pub const BATCH_COMMANDS_MAX: usize = 64;
/// Room left in a peer frame around one log entry (the AppendEntries envelope: vote,
/// log ids, the entry's own header).
pub const ENTRY_ENVELOPE_BYTES: usize = 64 * 1024;
/// The largest encoded log entry, and so the largest batch of commands: one entry must
/// always fit one peer frame, or it could never be replicated (it would fail to encode
/// on every retry and wedge the shard). A single command larger than this is refused
/// when proposed.
pub const ENTRY_BYTES_MAX: usize = crate::peer::PEER_FRAME_BYTES_MAX - ENTRY_ENVELOPE_BYTES;
/// Largest snapshot chunk sent in one install-snapshot RPC.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 1024 * 1024;
/// Log entries sent in one append-entries RPC at most.
pub const APPEND_ENTRIES_MAX: u64 = 256;

/// A node's address book entry inside a Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// The node's configured id (name).
    pub name: String,
    /// Its advertised QUIC address (`host:port`).
    pub addr: String,
}

impl std::fmt::Display for PeerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// The payload of one log entry: commands applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBatch {
    /// The commands.
    pub commands: Vec<ShardCommand>,
    /// Where the commands' proposals are in their traces, on the node that proposed
    /// them: never encoded (so not in the log, not replicated, not on the wire).
    #[serde(skip)]
    pub traces: BatchTraces,
    /// Where the commands' results go, on the node that proposed them: answered by the
    /// leader's apply of the entry ([`replies`]). Never encoded, as the traces.
    #[serde(skip)]
    pub replies: replies::BatchReplies,
}

/// The `propose` spans' places of a batch's commands (those in a recorded trace), so
/// the leader's `apply` of the entry joins their traces. Kept in memory from
/// `client_write` to the log store's `append`, which keeps them by log id until the
/// entry is applied ([`storage`]). Not part of the entry's value: any two are equal.
#[derive(Debug, Clone, Default)]
pub struct BatchTraces(pub Vec<crate::telemetry::TraceParent>);

impl PartialEq for BatchTraces {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for BatchTraces {}

impl std::fmt::Display for ShardBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {}", self.commands.len())
    }
}

/// The result of applying one [`ShardBatch`]: one entry per command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Outcomes in command order.
    pub results: Vec<Result<Outcome, Rejection>>,
}

openraft::declare_raft_types!(
    /// The Raft types of a shard group.
    pub TypeConfig:
        D = ShardBatch,
        R = BatchResult,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = snapshot_file::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A shard's Raft handle.
pub type ShardRaft = openraft::Raft<TypeConfig>;

/// The encoded size of a command inside a log entry.
pub fn command_bytes(command: &ShardCommand) -> usize {
    bincode::serde::encode_to_vec(command, bincode::config::standard())
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

/// The openraft config for this node's groups, from `[cluster]`.
pub fn raft_config(config: &NodeConfig) -> Result<openraft::Config, String> {
    let c = &config.cluster;
    let raft = openraft::Config {
        cluster_name: "shoal".to_owned(),
        heartbeat_interval: c.heartbeat_ms.get(),
        election_timeout_min: c.election_timeout_min_ms.get(),
        election_timeout_max: c.election_timeout_max_ms.get(),
        max_payload_entries: APPEND_ENTRIES_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every_entries.get()),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES_MAX,
        // Keep a little log after a snapshot so a briefly lagging replica catches up
        // from the log; anything further behind is seeded by snapshot.
        max_in_snapshot_log_to_keep: (c.snapshot_every_entries.get() / 4).max(8),
        ..Default::default()
    };
    raft.validate().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest turn the config allows must commit as one entry: its text is stored
    /// twice (`content` and `parts`), tool output once.
    #[test]
    fn the_largest_turn_buffer_fits_one_log_entry() {
        let max = shoal_cluster_config::TURN_BUFFER_BYTES_LIMIT as usize;
        assert!(
            2 * max + ENTRY_ENVELOPE_BYTES <= ENTRY_BYTES_MAX,
            "limits.turn_buffer_bytes_max may reach {max} bytes, more than half of a log entry ({ENTRY_BYTES_MAX})"
        );
    }
}
