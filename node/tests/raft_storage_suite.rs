//! openraft's own storage test suite against the sled Raft storage
//! ([`shoal_node::raft::storage`]): log store and state machine of one shard of a fresh
//! [`Store`] in a temp dir per suite case.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use shoal_node::raft::TypeConfig;
use shoal_node::raft::storage::{self, LogStore, StateMachineStore};
use shoal_node::shard::store::Store;
use shoal_protocol::ShardId;
use std::sync::mpsc;
use std::time::Duration;
use tempfile::TempDir;

/// The whole suite takes well under a second of storage work; this only catches a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Shards in each test store; the suite uses the first.
const SHARD_COUNT: u16 = 2;

/// Builds a fresh store per suite case. openraft runs each case on its own tokio runtime
/// and calls `build` inside it, so the store's flusher task lives on that runtime.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let io = |e: String| StorageError::from(StorageIOError::write(AnyError::error(e)));
        let dir = tempfile::tempdir().map_err(|e| io(format!("create a temp dir: {e}")))?;
        let store = Store::open(dir.path(), SHARD_COUNT).map_err(|e| io(e.to_string()))?;
        let (log, sm) = storage::open(&store, ShardId(0))
            .map_err(|e| io(format!("open the Raft trees of shard 0: {e}")))?;
        // The guard is dropped last (after the log store and state machine that hold the
        // `Store`), removing the directory.
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_storage_passes_openraft_suite() {
    // `test_all` blocks on runtimes of its own, so it runs on a plain thread; the wait on
    // it is bounded so a hung storage call fails the test instead of stalling CI.
    let (done_tx, done_rx) = mpsc::channel();
    let suite = std::thread::spawn(move || {
        // As text: the error is large (clippy::result_large_err) and only printed.
        let result = Suite::test_all(SledStoreBuilder).map_err(|e| e.to_string());
        let _ = done_tx.send(());
        result
    });
    match done_rx.recv_timeout(SUITE_TIMEOUT) {
        // Disconnected: the suite panicked (a failed assertion); `join` re-raises it.
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!(
            "openraft's storage suite did not finish within {SUITE_TIMEOUT:?}: a storage call hangs"
        ),
    }
    match suite.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("openraft's storage suite returned a storage error: {e}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
