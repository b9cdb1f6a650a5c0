//! `shoal-node bench-seed`: stores many passivated conversations in a single-replica
//! node's store before it starts (the activation-and-memory benchmark,
//! `shoal-bench activation`).
//!
//! Every conversation is made by the shard state machine's own `CreateConversation`
//! ([`state_machine::apply`], the function every replica runs on a committed entry), so
//! the stored keys are exactly those a client's create leaves. What is skipped is the
//! Raft log and the client round trip: the writes of [`SEED_BATCH_CONVERSATIONS`]
//! conversations go to each shard in one sled batch. With one replica there is no
//! other copy to disagree with, so the command refuses a replicated config.
//!
//! Conversation `i` belongs to user `bench-<i mod users>` (in that user's default
//! workspace, so conversations spread over the shards as users do) and is created with
//! request id `i`: seeding again is answered with the conversations made the first time,
//! like a retried client request.

use crate::shard::state_machine::{self, ReadError, ShardCommand};
use crate::shard::store::{Store, StoreError};
use shoal_cluster_config::NodeConfig;
use shoal_protocol::{ConversationId, RequestId, UserId, WorkspaceId};
use std::collections::BTreeMap;

/// Conversations whose writes are stored per round (one sled batch per shard).
pub const SEED_BATCH_CONVERSATIONS: u64 = 10_000;
/// Most conversations one run stores.
pub const SEED_CONVERSATIONS_MAX: u64 = 10_000_000;
/// Most users the conversations are spread over.
pub const SEED_USERS_MAX: u32 = 1_000_000;

/// The user that owns seeded conversation `index` when they are spread over `users`.
pub fn seed_user(index: u64, users: u32) -> UserId {
    UserId(format!("bench-{}", index % u64::from(users.max(1))))
}

/// Why seeding stopped. Conversations of earlier rounds stay stored.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The config replicates shards: writes outside the log would exist on one replica.
    #[error(
        "bench-seed writes outside the Raft log, so it only seeds single-replica nodes; set cluster.replicas = 1 in the config"
    )]
    Replicated,
    /// A count is out of bounds.
    #[error("{what} must be from 1 to {max}, not {value}")]
    OutOfBounds {
        /// Which count.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// The store could not be opened or flushed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store could not be read or written.
    #[error("the store under {dir} failed: {message}; check the disk and the data dir")]
    Io {
        /// The store dir.
        dir: String,
        /// What failed.
        message: String,
    },
    /// The state machine refused a create (e.g. a workspace of another owner).
    #[error("the state machine refused conversation {index}: {reason}")]
    Rejected {
        /// The conversation's index.
        index: u64,
        /// The rejection.
        reason: String,
    },
}

/// A client's `CreateConversation` of an untitled conversation by `owner` in
/// `workspace` (its default one), with a new id in that workspace's shard.
pub(super) fn create_command(
    owner: UserId,
    workspace: WorkspaceId,
    agent: String,
    at_ms: u64,
    request_id: RequestId,
) -> ShardCommand {
    ShardCommand::CreateConversation {
        id: ConversationId::new(workspace.shard, rand::random()),
        workspace,
        owner,
        title: None,
        agent,
        at_ms,
        request_id,
    }
}

/// Stores `conversations` passivated conversations spread over `users` users in the
/// store of `config`'s node (which must not be running: sled locks its directory).
/// Calls `progress` with the count stored after each round. Must run inside a tokio
/// runtime (the store's flusher).
pub async fn seed(
    config: &NodeConfig,
    conversations: u64,
    users: u32,
    mut progress: impl FnMut(u64),
) -> Result<(), SeedError> {
    if config.cluster.replicas.get() != 1 {
        return Err(SeedError::Replicated);
    }
    let bounds = [
        ("--conversations", conversations, SEED_CONVERSATIONS_MAX),
        ("--users", u64::from(users), u64::from(SEED_USERS_MAX)),
    ];
    for (what, value, max) in bounds {
        if value == 0 || value > max {
            return Err(SeedError::OutOfBounds { what, value, max });
        }
    }
    let dir = config.node.data_dir.join("store");
    let shard_count = config.cluster.shard_count.get();
    let store = Store::open(&dir, shard_count)?;
    let io = |e: &dyn std::fmt::Display| SeedError::Io {
        dir: dir.display().to_string(),
        message: e.to_string(),
    };
    let agent = config.default_agent.as_str().to_owned();
    let at_ms = crate::context::wall_clock_ms();
    let mut start = 0;
    while start < conversations {
        let end = conversations.min(start + SEED_BATCH_CONVERSATIONS);
        let mut batches = BTreeMap::<u16, sled::Batch>::new();
        for index in start..end {
            let owner = seed_user(index, users);
            let workspace = crate::context::default_workspace_of(&owner, shard_count);
            let request_id = RequestId(u128::from(index));
            let cmd = create_command(owner, workspace, agent.clone(), at_ms, request_id);
            let tree = store.view(workspace.shard)?;
            // Conversations of one round touch disjoint keys (their own ids and request
            // keys; the default workspace is only read), so each reads the tree as the
            // rounds before left it.
            match state_machine::apply(tree, &cmd).map_err(|e: ReadError| io(&e))? {
                Ok((writes, _outcome)) => {
                    let batch = batches.entry(workspace.shard.0).or_default();
                    for key in writes.deletes {
                        batch.remove(key);
                    }
                    for (key, value) in writes.puts {
                        batch.insert(key, value);
                    }
                }
                Err(rejection) => {
                    return Err(SeedError::Rejected {
                        index,
                        reason: format!("{rejection:?}"),
                    });
                }
            }
        }
        for (shard, batch) in batches {
            let tree = store.view(shoal_protocol::ShardId(shard))?;
            // Seeding is an offline bulk load, in its own process with the store to
            // itself: sled's process-wide batch lock (raft/storage/redo.rs) slows no
            // node here, and one batch per round is the fast way to load.
            #[allow(clippy::disallowed_methods)]
            tree.apply_batch(batch).map_err(|e| io(&e))?;
        }
        progress(end);
        start = end;
    }
    store.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_conversations_spread_over_the_users_in_turn() {
        assert_eq!(seed_user(0, 3).0, "bench-0");
        assert_eq!(seed_user(4, 3).0, "bench-1");
        assert_eq!(seed_user(7, 0).0, "bench-0", "no users counts as one");
    }

    #[tokio::test]
    async fn seeding_stores_conversations_a_node_reads_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig::dev(dir.path().to_owned(), "agent".into(), Vec::new());
        seed(&config, 25, 4, |_| {}).await.expect("seeded");
        seed(&config, 25, 4, |_| {}).await.expect("seeded again");
        let store = Store::open(&dir.path().join("store"), config.cluster.shard_count.get())
            .expect("store");
        let owned = |user| {
            store
                .user_conversations(
                    crate::context::default_workspace_of(
                        &seed_user(user, 4),
                        config.cluster.shard_count.get(),
                    )
                    .shard,
                    &seed_user(user, 4),
                )
                .expect("read")
                .len()
        };
        assert_eq!(
            (0..4).map(owned).collect::<Vec<_>>(),
            vec![7, 6, 6, 6],
            "25 conversations over 4 users, stored once"
        );
    }

    #[tokio::test]
    async fn a_replicated_config_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = NodeConfig::dev(dir.path().to_owned(), "agent".into(), Vec::new());
        config.cluster.replicas = std::num::NonZeroU8::new(3).expect("3");
        assert!(matches!(
            seed(&config, 1, 1, |_| {}).await,
            Err(SeedError::Replicated)
        ));
    }
}
