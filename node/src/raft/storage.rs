//! The Raft log and state machine of one shard, in the node's sled `Db`.
//!
//! Trees per shard `N`:
//! * `raft-log-N`: log index (u64 BE) → entry;
//! * `raft-meta-N`: `vote`, `committed`, `purged` and a pointer to the current
//!   snapshot, whose data is a file under `<store>/raft-snapshots/shard-N/` (streamed,
//!   never held whole in memory: [`super::snapshot_file`]);
//! * `shard-N`: the state machine's keys (see [`crate::shard::state_machine`]) plus
//!   reserved keys under `0xff` (last applied log id, last membership, the last
//!   apply's redo record), written atomically with the commands' writes through the
//!   redo record ([`redo`]: no sled batches), so state and "applied up to" never
//!   disagree after a crash.
//!
//! Durability: `append`, `save_vote`, `build_snapshot` and `install_snapshot` wait for a (group-committed)
//! flush before they return; `purge` flushes first so the state machine covering the
//! purged entries is on disk before they are gone. State machine writes are not flushed
//! per apply: after a crash the unflushed tail is re-applied from the log.

// openraft's traits fix the error type (`StorageError`, ~224 bytes); our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

mod proposed;
mod redo;

use super::replies::BatchReplies;
use super::snapshot_file::{self, SnapshotDir, SnapshotFile};
use super::{BatchResult, PeerNode, ShardBatch, TypeConfig};
use crate::shard::state_machine::{self, Pairs, ReadError, ShardRead};
use crate::shard::store::Store;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::ShardId;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

type SErr = StorageError<u64>;
/// The last applied log id and membership.
type AppliedState = (Option<LogId<u64>>, StoredMembership<u64, PeerNode>);

/// Reserved state-machine key: the last applied log id.
const APPLIED_KEY: &[u8] = b"\xffraft/applied";
/// Reserved state-machine key: the last applied membership.
const MEMBERSHIP_KEY: &[u8] = b"\xffraft/membership";
/// First byte of reserved state-machine keys (never produced by the shard state machine).
const RESERVED_PREFIX: u8 = 0xff;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const PURGED_KEY: &[u8] = b"purged";
/// Where versions before streamed snapshots kept the whole snapshot, as one value
/// (converted to a file at open).
const LEGACY_SNAPSHOT_KEY: &[u8] = b"snapshot";
/// The current snapshot: its metadata and file name ([`SnapshotPointer`]).
const CURRENT_SNAPSHOT_KEY: &[u8] = b"snapshot-file";
/// A snapshot install under way (finished at open after a crash).
const INSTALLING_SNAPSHOT_KEY: &[u8] = b"snapshot-installing";

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(v, _)| v)
}

fn io_read(e: impl std::fmt::Display) -> SErr {
    StorageIOError::read(openraft::AnyError::error(e)).into()
}

fn io_write(e: impl std::fmt::Display) -> SErr {
    StorageIOError::write(openraft::AnyError::error(e)).into()
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, SErr> {
    match tree.get(key).map_err(io_read)? {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(io_read),
    }
}

fn put<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), SErr> {
    tree.insert(key, encode(value).map_err(io_write)?)
        .map_err(io_write)?;
    Ok(())
}

/// The trees of one shard's Raft state.
#[derive(Clone)]
struct Trees {
    log: sled::Tree,
    meta: sled::Tree,
    state: sled::Tree,
    /// Serializes state-machine writes with snapshot builds and installs (async: apply
    /// waits for it on a worker thread, builds hold it on a blocking thread).
    state_lock: Arc<tokio::sync::Mutex<()>>,
    /// Serializes changes of the current-snapshot pointer with opening its file.
    files: Arc<Mutex<()>>,
    snapshots: SnapshotDir,
    shard: ShardId,
    /// The traces and replies of entries this node proposed, from append to apply.
    proposed: proposed::Proposed,
}

impl Trees {
    fn files_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(store: &Store, shard: ShardId) -> Result<Self, sled::Error> {
        Ok(Self {
            shard,
            state_lock: Arc::new(tokio::sync::Mutex::new(())),
            files: Arc::new(Mutex::new(())),
            snapshots: SnapshotDir::open(store.dir(), shard.0)?,
            proposed: proposed::Proposed::default(),
            log: store.db().open_tree(format!("raft-log-{}", shard.0))?,
            meta: store.db().open_tree(format!("raft-meta-{}", shard.0))?,
            state: store.shard_tree(shard)?.clone(),
        })
    }
}

/// Opens the log store and state machine of `shard`.
pub fn open(
    store: &Arc<Store>,
    shard: ShardId,
) -> Result<(LogStore, StateMachineStore), sled::Error> {
    let trees = Trees::open(store, shard)?;
    recover_snapshots(&trees).map_err(|e| {
        sled::Error::Io(std::io::Error::other(format!(
            "shard {shard}: recovering its snapshot: {e}"
        )))
    })?;
    // After the snapshot's recovery: an install clears the state, redo record included.
    let replayed = redo::replay(&trees.state).map_err(|e| {
        sled::Error::Io(std::io::Error::other(format!(
            "shard {shard}: finishing its last apply: {e}"
        )))
    })?;
    tracing::debug!(%shard, writes = replayed, "replayed the last apply's redo record");
    Ok((
        LogStore {
            store: store.clone(),
            trees: trees.clone(),
        },
        StateMachineStore {
            store: store.clone(),
            trees,
        },
    ))
}

/// Whether this shard's Raft state holds anything (a vote or a log).
pub fn has_state(store: &Store, shard: ShardId) -> Result<bool, sled::Error> {
    let trees = Trees::open(store, shard)?;
    Ok(trees.meta.get(VOTE_KEY)?.is_some() || !trees.log.is_empty())
}

/// The Raft log of one shard.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<Store>,
    trees: Trees,
}

impl LogStore {
    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, SErr> {
        match self.trees.log.last().map_err(io_read)? {
            None => Ok(None),
            Some((_, bytes)) => decode(&bytes).map(Some).map_err(io_read),
        }
    }

    async fn flush(&self) -> Result<(), SErr> {
        self.store.flush().await.map_err(io_write)
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let iter = match range.end_bound() {
            Bound::Included(i) => self.trees.log.range(index_key(start)..=index_key(*i)),
            Bound::Excluded(i) => self.trees.log.range(index_key(start)..index_key(*i)),
            Bound::Unbounded => self.trees.log.range(index_key(start)..),
        };
        let mut out = Vec::new();
        for item in iter {
            let (_, bytes) = item.map_err(io_read)?;
            out.push(decode(&bytes).map_err(io_read)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let purged: Option<LogId<u64>> = get(&self.trees.meta, PURGED_KEY)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        put(&self.trees.meta, VOTE_KEY, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        get(&self.trees.meta, VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        // Not flushed: a stale value after a crash only delays re-applying.
        put(&self.trees.meta, COMMITTED_KEY, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        Ok(get::<Option<LogId<u64>>>(&self.trees.meta, COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One key per entry, in index order: a crash keeps a prefix of them (redo.rs).
        for entry in entries {
            self.trees.proposed.appended([&entry]);
            let key = index_key(entry.log_id.index);
            let value = encode(&entry).map_err(io_write)?;
            self.trees.log.insert(key, value).map_err(io_write)?;
        }
        // Group commit: this flush is shared with every other shard's pending writes.
        let result = self.flush().await;
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        // Last entry first, so the log stays contiguous whatever a crash keeps.
        let keys = self.trees.log.range(index_key(log_id.index)..).keys().rev();
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(io_read)?;
        redo::remove_in_order(&self.trees.log, keys).map_err(io_write)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        // The state machine that covers these entries must be on disk before they go.
        self.flush().await?;
        put(&self.trees.meta, PURGED_KEY, &log_id)?;
        // First entry first, so the log stays contiguous whatever a crash keeps.
        let keys = self.trees.log.range(..=index_key(log_id.index)).keys();
        let keys = keys.collect::<Result<Vec<_>, _>>().map_err(io_read)?;
        redo::remove_in_order(&self.trees.log, keys).map_err(io_write)?;
        Ok(())
    }
}

/// The writes of the entries applied so far in one `apply` call: a value, or `None`
/// for a key removed.
type Pending = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads through the writes of the entries applied so far in this `apply` call.
struct Overlay<'a, R> {
    base: &'a R,
    pending: &'a Pending,
}

impl<R: ShardRead> ShardRead for Overlay<'_, R> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        self.base.get(key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, ReadError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.base.scan_prefix(prefix)?.into_iter().collect();
        for (k, v) in self
            .pending
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

/// What applying a run of entries produced: the writes (to commit in one batch), one
/// result per entry, the proposals to answer once the writes are made (by the index of
/// their entry's result), and the last log id and membership seen.
#[derive(Default)]
struct AppliedEntries {
    pending: Pending,
    replies: Vec<BatchResult>,
    answers: Vec<(usize, BatchReplies)>,
    last: Option<LogId<u64>>,
    membership: Option<StoredMembership<u64, PeerNode>>,
}

/// Runs the state machine over `entries` on top of `base`. `proposed_of` gives each
/// batch (by its log id and command count) the span to apply it in and the replies of
/// its proposals, if this node proposed it. A [`ReadError`] is this replica's own
/// fault: it aborts the whole call (nothing is written) instead of becoming a result
/// that other replicas would not have.
fn apply_entries(
    base: &impl ShardRead,
    entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    proposed_of: impl Fn(&LogId<u64>, usize) -> (tracing::Span, BatchReplies),
) -> Result<AppliedEntries, ReadError> {
    let mut out = AppliedEntries::default();
    for entry in entries {
        out.last = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => out.replies.push(BatchResult::default()),
            EntryPayload::Membership(m) => {
                out.membership = Some(StoredMembership::new(Some(entry.log_id), m));
                out.replies.push(BatchResult::default());
            }
            EntryPayload::Normal(ShardBatch { commands, .. }) => {
                let (span, replies) = proposed_of(&entry.log_id, commands.len());
                let _apply = span.entered();
                if !replies.is_empty() {
                    out.answers.push((out.replies.len(), replies));
                }
                let mut results = Vec::with_capacity(commands.len());
                for cmd in &commands {
                    let view = Overlay {
                        base,
                        pending: &out.pending,
                    };
                    match state_machine::apply(&view, cmd)? {
                        Ok((writes, outcome)) => {
                            for key in writes.deletes {
                                out.pending.insert(key, None);
                            }
                            for (k, v) in writes.puts {
                                out.pending.insert(k, Some(v));
                            }
                            results.push(Ok(outcome));
                        }
                        Err(rejection) => results.push(Err(rejection)),
                    }
                }
                out.replies.push(BatchResult { results });
            }
        }
    }
    Ok(out)
}

/// The state machine of one shard.
pub struct StateMachineStore {
    store: Arc<Store>,
    trees: Trees,
}

impl StateMachineStore {
    /// Applies `commands` as the committed log entry `index` of leader term `term`, the
    /// way every replica applies a committed entry (the writes, the redo record, "applied
    /// up to"), with no log, no Raft and no network around it: `shoal-bench throughput`
    /// measures what the apply alone costs with it. Entries must come in index order.
    pub async fn apply_committed(
        &mut self,
        term: u64,
        index: u64,
        commands: Vec<state_machine::ShardCommand>,
    ) -> Result<BatchResult, SErr> {
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(ShardBatch {
                commands,
                traces: Default::default(),
                replies: Default::default(),
            }),
        };
        Ok(self.apply([entry]).await?.pop().unwrap_or_default())
    }
}

/// The last applied log id and membership recorded in `state`.
fn applied_of(state: &sled::Tree) -> Result<AppliedState, SErr> {
    let applied = get(state, APPLIED_KEY)?;
    let membership = get(state, MEMBERSHIP_KEY)?.unwrap_or_default();
    Ok((applied, membership))
}

/// A snapshot's metadata and the name of its file in the shard's [`SnapshotDir`].
type SnapshotPointer = (SnapshotMeta<u64, PeerNode>, String);

/// Copies the state (minus the reserved keys) into a new snapshot file and makes it the
/// current snapshot. Runs on a blocking thread holding the state lock (`guard`) while it
/// reads, so the state and its applied id come from one point (sled iterators are not
/// snapshots, and openraft builds while it applies). Returns the pointer and the file
/// it replaced, to remove once the pointer is durable.
fn build_into(
    trees: &Trees,
    guard: tokio::sync::OwnedMutexGuard<()>,
) -> Result<(SnapshotPointer, Option<String>), SErr> {
    let part = trees.snapshots.new_part();
    let written = {
        let _guard = guard;
        applied_of(&trees.state).and_then(|(applied, membership)| {
            let pairs = trees
                .state
                .iter()
                .filter(|item| !matches!(item, Ok((k, _)) if k.first() == Some(&RESERVED_PREFIX)));
            let records = snapshot_file::write(&part, pairs).map_err(io_write)?;
            Ok((applied, membership, records))
        })
    };
    let (applied, membership, records) = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&part);
    })?;
    let name = trees.snapshots.commit(&part).map_err(io_write)?;
    let snapshot_id = match applied {
        Some(id) => format!(
            "{}-{}-{:08x}",
            id.leader_id.term,
            id.index,
            rand::random::<u32>()
        ),
        None => format!("empty-{:08x}", rand::random::<u32>()),
    };
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership,
        snapshot_id,
    };
    tracing::info!(shard = %trees.shard, records, file = %name, "built a snapshot");
    let _files = trees.files_lock();
    let old: Option<SnapshotPointer> = get(&trees.meta, CURRENT_SNAPSHOT_KEY)?;
    let pointer = (meta, name);
    put(&trees.meta, CURRENT_SNAPSHOT_KEY, &pointer)?;
    Ok((pointer, old.map(|(_, n)| n)))
}

/// What an install did: the file of the snapshot it replaced, and the size of the one
/// installed.
struct Installed {
    old: Option<String>,
    bytes: u64,
    records: u64,
}

/// Installs the received snapshot file `received`: checks it whole, moves it into the
/// shard's snapshot directory, marks the install as under way (durably), then replaces
/// the state with it. Runs on a blocking thread holding the state lock.
fn install_from(
    trees: &Trees,
    meta: &SnapshotMeta<u64, PeerNode>,
    received: &Path,
) -> Result<Installed, SErr> {
    let bytes = std::fs::metadata(received).map_or(0, |m| m.len());
    let records = match snapshot_file::verify(received) {
        Ok(records) => records,
        Err(e) => {
            trees.snapshots.discard(received);
            return Err(io_read(e));
        }
    };
    let name = trees.snapshots.commit(received).map_err(io_write)?;
    put(&trees.meta, INSTALLING_SNAPSHOT_KEY, &(meta, &name))?;
    trees.meta.flush().map_err(io_write)?;
    let old = finish_install(trees, meta, &name)?;
    Ok(Installed {
        old,
        bytes,
        records,
    })
}

/// The second half of an install, also run at start when a crash interrupted one: the
/// state becomes the snapshot file's, then the snapshot becomes the current one.
fn finish_install(
    trees: &Trees,
    meta: &SnapshotMeta<u64, PeerNode>,
    name: &str,
) -> Result<Option<String>, SErr> {
    let records =
        snapshot_file::load_into(&trees.snapshots.file(name), &trees.state).map_err(io_write)?;
    // Not atomic, and need not be: until the "installing" mark goes, a crash makes the
    // next open do the whole install again.
    if let Some(id) = &meta.last_log_id {
        put(&trees.state, APPLIED_KEY, id)?;
    }
    put(&trees.state, MEMBERSHIP_KEY, &meta.last_membership)?;
    let _files = trees.files_lock();
    let old: Option<SnapshotPointer> = get(&trees.meta, CURRENT_SNAPSHOT_KEY)?;
    put(&trees.meta, CURRENT_SNAPSHOT_KEY, &(meta, name))?;
    trees
        .meta
        .remove(INSTALLING_SNAPSHOT_KEY)
        .map_err(io_write)?;
    tracing::info!(shard = %trees.shard, records, snapshot = %meta.snapshot_id, "installed a snapshot");
    Ok(old.map(|(_, n)| n).filter(|n| n != name))
}

/// At open: finishes an install a crash interrupted, converts a snapshot stored by an
/// older version (one sled value) into a file, and removes files nothing points at.
fn recover_snapshots(trees: &Trees) -> Result<(), SErr> {
    if let Some((meta, name)) = get::<SnapshotPointer>(&trees.meta, INSTALLING_SNAPSHOT_KEY)? {
        tracing::warn!(shard = %trees.shard, snapshot = %meta.snapshot_id, "finishing a snapshot install that a stop interrupted");
        finish_install(trees, &meta, &name)?;
    }
    if let Some(bytes) = trees.meta.get(LEGACY_SNAPSHOT_KEY).map_err(io_read)? {
        let (meta, data): (SnapshotMeta<u64, PeerNode>, Vec<u8>) =
            decode(&bytes).map_err(io_read)?;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = decode(&data).map_err(io_read)?;
        let part = trees.snapshots.new_part();
        snapshot_file::write(&part, pairs.into_iter().map(Ok::<_, String>)).map_err(io_write)?;
        let name = trees.snapshots.commit(&part).map_err(io_write)?;
        // The pointer first: a crash before the legacy value goes converts it again.
        put(&trees.meta, CURRENT_SNAPSHOT_KEY, &(&meta, &name))?;
        trees.meta.remove(LEGACY_SNAPSHOT_KEY).map_err(io_write)?;
    }
    trees.meta.flush().map_err(io_write)?;
    let current: Option<SnapshotPointer> = get(&trees.meta, CURRENT_SNAPSHOT_KEY)?;
    let keep: Vec<&str> = current.iter().map(|(_, n)| n.as_str()).collect();
    trees.snapshots.remove_all_but(&keep).map_err(io_write)
}

impl StateMachineStore {
    /// Removes the snapshot file `old` once the pointer to its successor is durable.
    async fn retire(&self, old: Option<String>) -> Result<(), SErr> {
        let Some(old) = old else { return Ok(()) };
        self.store.flush().await.map_err(io_write)?;
        let _files = self.trees.files_lock();
        if let Err(e) = self.trees.snapshots.remove(&old) {
            // Harmless: files nothing points at are removed at the next start.
            tracing::warn!(shard = %self.trees.shard, file = %old, error = %e, "could not remove an old snapshot file");
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let guard = self.trees.state_lock.clone().lock_owned().await;
        let trees = self.trees.clone();
        let ((meta, name), old) = self
            .store
            .blocking(move || build_into(&trees, guard))
            .await
            .map_err(io_write)??;
        self.retire(old).await?;
        let file = SnapshotFile::open(
            self.trees.snapshots.file(&name),
            self.store.inline_blocking(),
        )
        .map_err(io_read)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<AppliedState, SErr> {
        applied_of(&self.trees.state)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let shard = self.trees.shard;
        let AppliedEntries {
            pending,
            mut replies,
            answers,
            last,
            membership,
        } = match apply_entries(&self.trees.state, entries, |log_id, commands| {
            let (traces, replies) = self.trees.proposed.take(log_id);
            (
                proposed::apply_span(shard, log_id, commands, traces),
                replies,
            )
        }) {
            Ok(applied) => applied,
            Err(e) => {
                // Fail-stop: a divergent result would be worse than a missing replica.
                self.store.fail_stop(format!(
                    "shard {} cannot read its own state while applying committed entries: {e}",
                    self.trees.shard
                ));
                return Err(io_read(e));
            }
        };
        let mut writes: Vec<redo::Write> = pending.into_iter().collect();
        if let Some(last) = last {
            let value = encode(&last).map_err(io_write)?;
            writes.push((APPLIED_KEY.to_vec(), Some(value)));
        }
        if let Some(m) = membership {
            let value = encode(&m).map_err(io_write)?;
            writes.push((MEMBERSHIP_KEY.to_vec(), Some(value)));
        }
        let _guard = self.trees.state_lock.lock().await;
        // Atomic through the redo record, not a sled batch (redo.rs says why).
        redo::write(&self.trees.state, &writes).map_err(io_write)?;
        // The writes are made: answer this node's proposals now, not through openraft's
        // core and the batcher (replies.rs). Their results move to the proposers; the
        // batcher, finding the replies taken, has nothing left to answer.
        for (i, waiting) in answers {
            if let Some(proposals) = waiting.take() {
                let results = std::mem::take(&mut replies[i].results);
                super::replies::answer(shard, proposals, results);
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachineStore {
            store: self.store.clone(),
            trees: self.trees.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, SErr> {
        let file = SnapshotFile::create_part(
            self.trees.snapshots.new_part(),
            self.store.inline_blocking(),
        )
        .map_err(io_write)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, PeerNode>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), SErr> {
        // No contextual parent: openraft's own task spans are no part of a trace.
        let span = tracing::info_span!(
            parent: None,
            "snapshot.install",
            shard = self.trees.shard.0,
            index = meta.last_log_id.map(|id| id.index),
            bytes = tracing::field::Empty,
            records = tracing::field::Empty,
        );
        let install = async {
            let received = snapshot.into_part().await.map_err(io_write)?;
            let guard = self.trees.state_lock.clone().lock_owned().await;
            let trees = self.trees.clone();
            let meta = meta.clone();
            let installed = self
                .store
                .blocking(move || {
                    let _guard = guard;
                    install_from(&trees, &meta, &received)
                })
                .await
                .map_err(io_write)??;
            let span = tracing::Span::current();
            span.record("bytes", installed.bytes);
            span.record("records", installed.records);
            self.store.flush().await.map_err(io_write)?;
            self.retire(installed.old).await
        };
        tracing::Instrument::instrument(install, span).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        // Under the files lock: a build or install must not remove the file between
        // reading the pointer and opening it.
        let _files = self.trees.files_lock();
        let current: Option<SnapshotPointer> = get(&self.trees.meta, CURRENT_SNAPSHOT_KEY)?;
        let Some((meta, name)) = current else {
            return Ok(None);
        };
        let file = SnapshotFile::open(
            self.trees.snapshots.file(&name),
            self.store.inline_blocking(),
        )
        .map_err(io_read)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod snapshot_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::state_machine::ShardCommand;
    use openraft::CommittedLeaderId;
    use shoal_protocol::ConversationId;

    struct Failing;

    impl ShardRead for Failing {
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
            Err(ReadError::Io("injected: input/output error".into()))
        }

        fn scan_prefix(&self, _prefix: &[u8]) -> Result<Pairs, ReadError> {
            Err(ReadError::Io("injected: input/output error".into()))
        }
    }

    /// A replica whose disk fails mid-apply must not answer `Rejection::Io` (a result
    /// the other replicas would not have): the whole apply fails, nothing is written.
    #[test]
    fn a_read_error_while_applying_fails_the_apply_instead_of_diverging() {
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 5),
            payload: EntryPayload::Normal(ShardBatch {
                commands: vec![ShardCommand::Activate {
                    conversation: ConversationId::new(ShardId(0), 1),
                }],
                traces: Default::default(),
                replies: Default::default(),
            }),
        };
        let result = apply_entries(&Failing, [entry], |_, _| {
            (tracing::Span::none(), Default::default())
        });
        assert!(
            matches!(&result, Err(ReadError::Io(m)) if m.contains("injected")),
            "{:?}",
            result.map(|a| a.replies)
        );
    }

    /// Entries applied in one call read each other's writes, deletes included: a
    /// workspace deleted in the entry after the one that created a conversation in it
    /// takes that conversation with it.
    #[test]
    fn a_delete_sees_the_writes_of_earlier_commands_in_the_same_apply() {
        use shoal_protocol::{RequestId, UserId, WorkspaceId};
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        let owner = UserId::parse("alice").unwrap();
        let default = WorkspaceId::new(ShardId(0), 1);
        let workspace = WorkspaceId::new(ShardId(0), 10);
        let conversation = ConversationId::new(ShardId(0), 20);
        let commands = vec![
            ShardCommand::CreateWorkspace {
                id: workspace,
                owner: owner.clone(),
                default,
                name: "w".into(),
                at_ms: 1,
                request_id: RequestId(1),
            },
            ShardCommand::CreateConversation {
                id: conversation,
                workspace,
                owner: owner.clone(),
                title: None,
                agent: "demo".into(),
                at_ms: 2,
                request_id: RequestId(2),
            },
            ShardCommand::DeleteWorkspace {
                workspace,
                owner,
                default,
            },
        ];
        let entry = Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 5),
            payload: EntryPayload::Normal(ShardBatch {
                commands,
                traces: Default::default(),
                replies: Default::default(),
            }),
        };
        let applied = apply_entries(&tree, [entry], |_, _| {
            (tracing::Span::none(), Default::default())
        })
        .unwrap();
        let results = &applied.replies[0].results;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            results[2],
            Ok(state_machine::Outcome::WorkspaceDeleted {
                conversations: vec![conversation]
            })
        );
        let key = state_machine::conversation_key(conversation);
        assert_eq!(applied.pending.get(&key), Some(&None));
    }

    /// A stop part way through an apply (its redo record on disk, its writes not) is
    /// finished when the shard opens: the state and "applied up to" agree again.
    #[tokio::test]
    async fn an_apply_a_stop_cut_short_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), 5);
        {
            let store = Store::open(dir.path(), 1).unwrap();
            let _shard = open(&store, ShardId(0)).unwrap();
            let applied = encode(&log_id).unwrap();
            let record: Vec<redo::Write> = vec![
                (b"k".to_vec(), Some(b"v".to_vec())),
                (APPLIED_KEY.to_vec(), Some(applied)),
            ];
            let tree = store.shard_tree(ShardId(0)).unwrap();
            tree.insert(redo::REDO_KEY, encode(&record).unwrap())
                .unwrap();
            store.db().flush().unwrap();
        }
        let store = Store::open(dir.path(), 1).unwrap();
        let (_, mut sm) = open(&store, ShardId(0)).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id));
        let tree = store.shard_tree(ShardId(0)).unwrap();
        assert_eq!(tree.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    /// The leader's apply answers the proposals of an entry this node appended once
    /// its writes are made, without openraft's core or the batcher; the result it
    /// hands back to openraft is then empty. An entry appended without replies (a
    /// follower's) keeps its results for openraft.
    #[tokio::test]
    async fn the_apply_answers_the_proposals_of_an_entry_this_node_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let (log, mut sm) = open(&store, ShardId(0)).unwrap();
        let entry = |index, replies| Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ShardBatch {
                commands: vec![ShardCommand::Activate {
                    conversation: ConversationId::new(ShardId(0), 1),
                }],
                traces: Default::default(),
                replies,
            }),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let batcher = super::super::replies::BatchReplies::new(vec![tx]);
        log.trees.proposed.appended([&entry(5, batcher.clone())]);
        log.trees.proposed.appended([&entry(6, Default::default())]);
        // Read back from the log, as openraft does: no replies on the entry itself.
        let results = sm
            .apply([entry(5, Default::default()), entry(6, Default::default())])
            .await
            .unwrap();
        // Taken by the apply, so this fails (rather than the await below hanging) if
        // the apply did not answer.
        assert!(batcher.take().is_none(), "nothing left for the batcher");
        let answered = rx.await.expect("the apply answered");
        assert!(
            matches!(&answered, Err(crate::cluster::ProposeError::Rejected(_))),
            "no such conversation: {answered:?}"
        );
        assert!(results[0].results.is_empty(), "moved to the proposer");
        assert_eq!(results[1].results.len(), 1, "kept for openraft");
    }
}
