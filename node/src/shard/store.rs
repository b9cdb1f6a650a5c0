//! The node's sled store: one `Db`, one tree per shard, group-committed flushes.
//!
//! Reads of the shard state live here; writes go through Raft
//! ([`crate::cluster::Cluster::propose`] → [`crate::raft::storage`]). [`Store::flush`]
//! is the group commit: one flusher task coalesces `Db::flush()` across all callers and
//! shards. Never `flush_async()`, which deadlocks in sled 0.34 (STACK.md).

use super::state_machine::workspaces::{
    StoredSkillPack, WorkspaceRecord, skill_pack_key, workspace_record_key,
};
use super::state_machine::{
    ConversationRecord, WORKSPACE_SNAPSHOT_PREFIX, WorkspaceCredentials, WorkspaceSnapshot,
    activity_key, conversation_key, decode, message_key, user_prefix, workspace_credentials_key,
    workspace_snapshot_key,
};
use super::state_machine::{Pairs, ReadError, ShardRead};
use shoal_protocol::transcript::Message;
use shoal_protocol::{ConversationId, MessageId, ShardId, UserId, WorkspaceId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The tree of node-level keys (not replicated).
const NODE_META_TREE: &str = "node-meta";
/// Key of the store generation in [`NODE_META_TREE`].
const GENERATION_KEY: &[u8] = b"generation";
/// Key of the node's drain flag in [`NODE_META_TREE`] (see [`crate::cluster::drain`]).
const DRAINING_KEY: &[u8] = b"draining";
/// The generation of a store created before generations existed (its Raft id is the
/// name's alone, as it was then).
pub const GENERATION_LEGACY: u64 = 0;

/// Flush requests that may wait for the flusher; senders wait when it is full.
const FLUSH_QUEUE_DEPTH: usize = 4096;

/// One caller waiting for a flush. The request carries the `Db` handle so the flusher
/// holds no handle of its own: dropping the `Store` releases sled's directory lock.
type FlushRequest = (sled::Db, oneshot::Sender<Result<(), String>>);

/// How long [`Store::open`] waits for another holder of the store's lock to let go.
/// sled releases its directory lock only once its background writes finish, a moment
/// after the last handle is dropped, so a store reopened in the same process (a node
/// restarted in place) may find it still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// After how long a wait for the lock [`Store::open`] says it is waiting.
const LOCK_TELL_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// How often [`Store::open`] retries while the lock is held.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);
/// What sled 0.34 says when another handle holds the store's lock (its error carries no
/// kind of its own: `ErrorKind::Other`); pinned by the store's tests.
const SLED_LOCK_HELD: &str = "could not acquire lock";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another handle holds the store's lock: another process (or a node not yet shut
    /// down in this one) uses the same data dir. Never a sign of damage.
    #[error(
        "the store at {path} is in use: another shoal-node (or another program) has it open; stop that node, or give this one its own data dir (`node.data_dir`; `--data-dir` for `shoal-node dev` and `up`)"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The store could not be read for a reason outside it (permissions, no space, too
    /// many open files, the disk): it was left as it is.
    #[error(
        "cannot open the store at {path}: {message}; the store was left as it is: check the data dir's permissions, free space and disk, then start the node again"
    )]
    Open {
        /// The directory.
        path: PathBuf,
        /// sled's error.
        message: String,
    },
    /// The store was read and found damaged (sled reports corruption, or a format it
    /// cannot read). A replicated node moves it aside and is re-seeded by its peers
    /// (see `open_store` in [`crate::node`]).
    #[error(
        "the store at {path} is damaged: {message}; move it aside (or restore a copy) to start this node with an empty store"
    )]
    Damaged {
        /// The directory.
        path: PathBuf,
        /// sled's error.
        message: String,
    },
    /// A read or write failed.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// The flusher task is gone (the node is shutting down).
    #[error("the store is shutting down")]
    Closed,
}

/// The node's durable store.
pub struct Store {
    db: sled::Db,
    /// The store's directory (sled's files, and `raft-snapshots/`).
    dir: PathBuf,
    trees: Vec<sled::Tree>,
    flush_tx: mpsc::Sender<FlushRequest>,
    /// Flush on the calling task (simulation, [`crate::seam::Seams::inline_blocking`]).
    inline_blocking: bool,
    /// Flushes wait until then (fault injection: a stalled disk).
    stall: FlushStall,
    /// Set once when the store found a fault that must stop the node ([`Self::fail_stop`]).
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// See [`Self::generation`].
    generation: u64,
}

/// Until when flushes are held back ([`Store::stall_flushes`]); a new value replaces the
/// old one at once, so a stall can also be cut short.
type FlushStall = tokio::sync::watch::Sender<Option<tokio::time::Instant>>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("shards", &self.trees.len())
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store under `dir` with `shard_count` shards and starts the
    /// flusher task. Must be called inside a tokio runtime.
    pub fn open(dir: &Path, shard_count: u16) -> Result<Arc<Store>, StoreError> {
        Self::open_with(dir, shard_count, false, rand::random())
    }

    /// [`Self::open`]; with `inline_blocking`, [`Self::flush`] runs `Db::flush()` on the
    /// calling task, blocking it (simulation: a blocking thread finishes at real time,
    /// see [`crate::seam`]). A store created now takes `new_generation` (made non-zero)
    /// as its generation.
    ///
    /// A store whose lock another handle holds is waited for up to 10 s (see
    /// [`LOCK_WAIT`]), then refused as [`StoreError::InUse`].
    pub fn open_with(
        dir: &Path,
        shard_count: u16,
        inline_blocking: bool,
        new_generation: u64,
    ) -> Result<Arc<Store>, StoreError> {
        let mut wait = Self::lock_waiter(dir);
        Self::open_waiting(dir, shard_count, inline_blocking, new_generation, &mut wait)
    }

    /// The wait [`Self::open_with`] gives a held lock on the store at `dir`: [`LOCK_RETRY`]
    /// at a time, for [`LOCK_WAIT`] in all from the first wait, blocking the calling
    /// thread (the holders are sled's own threads, or another process). A wait past
    /// [`LOCK_TELL_AFTER`] is logged once, so a node waiting for another is not silent.
    pub fn lock_waiter(dir: &Path) -> impl FnMut() -> bool + use<> {
        let dir = dir.to_owned();
        let mut first: Option<std::time::Instant> = None;
        let mut told = false;
        move || {
            let now = std::time::Instant::now();
            let waited = now - *first.get_or_insert(now);
            if waited >= LOCK_WAIT {
                return false;
            }
            if !told && waited >= LOCK_TELL_AFTER {
                told = true;
                tracing::warn!(store = %dir.display(), wait_secs = LOCK_WAIT.as_secs(), "the store is locked by another handle (another shoal-node on this data dir?); waiting for it");
            }
            std::thread::sleep(LOCK_RETRY);
            true
        }
    }

    /// [`Self::open_with`], calling `wait_for_lock` each time the lock is found held: it
    /// waits a while and says whether to try again.
    pub fn open_waiting(
        dir: &Path,
        shard_count: u16,
        inline_blocking: bool,
        new_generation: u64,
        wait_for_lock: &mut dyn FnMut() -> bool,
    ) -> Result<Arc<Store>, StoreError> {
        let open_err = |e: sled::Error| {
            let (path, message) = (dir.to_owned(), e.to_string());
            if is_damage(&e) {
                StoreError::Damaged { path, message }
            } else {
                StoreError::Open { path, message }
            }
        };
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .flush_every_ms(Some(500))
                .open()
            {
                Ok(db) => break db,
                Err(e) if e.to_string().contains(SLED_LOCK_HELD) => {
                    if !wait_for_lock() {
                        return Err(StoreError::InUse {
                            path: dir.to_owned(),
                        });
                    }
                }
                Err(e) => return Err(open_err(e)),
            }
        };
        let trees = (0..shard_count)
            .map(|s| db.open_tree(format!("shard-{s}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(open_err)?;
        let generation = generation(&db, shard_count, new_generation).map_err(open_err)?;
        let (flush_tx, flush_rx) = mpsc::channel(FLUSH_QUEUE_DEPTH);
        let stall = FlushStall::new(None);
        tokio::spawn(run_flusher(flush_rx, stall.subscribe()));
        Ok(Arc::new(Store {
            db,
            dir: dir.to_owned(),
            trees,
            flush_tx,
            inline_blocking,
            stall,
            fatal: tokio::sync::watch::Sender::new(None),
            generation,
        }))
    }

    /// The store's generation: chosen at random when the store is created and kept for
    /// its life. It is part of the node's Raft identity
    /// ([`crate::cluster::placement::raft_id_of`]), so a node whose store was lost or
    /// replaced comes back as a *new* Raft member and can never vote as its old self
    /// with an empty log (ARCHITECTURE.md, "Store loss").
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u16 {
        // Built from a u16 count.
        self.trees.len() as u16
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether blocking work runs on the calling task ([`Self::open_with`]).
    pub fn inline_blocking(&self) -> bool {
        self.inline_blocking
    }

    /// Runs blocking file or sled work `f` off the async worker threads (tokio's
    /// blocking pool), or on the calling task when the store blocks inline (simulation).
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.inline_blocking {
            return Ok(f());
        }
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Io(format!("a blocking store task failed: {e}")))
    }

    /// The sled database (Raft trees live beside the shard trees).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The state-machine tree of `shard`.
    pub fn shard_tree(&self, shard: ShardId) -> Result<&sled::Tree, sled::Error> {
        self.trees
            .get(usize::from(shard.0))
            .ok_or_else(|| sled::Error::Unsupported(format!("shard {shard} does not exist")))
    }

    fn tree(&self, shard: ShardId) -> Result<&sled::Tree, StoreError> {
        self.trees.get(usize::from(shard.0)).ok_or_else(|| {
            StoreError::Io(format!(
                "shard {shard} does not exist (shard count {})",
                self.trees.len()
            ))
        })
    }

    /// The value at `key` of `shard`, decoded.
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        shard: ShardId,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let tree = self.tree(shard)?;
        match tree.get(key).map_err(|e| StoreError::Io(e.to_string()))? {
            None => Ok(None),
            Some(bytes) => decode(key, &bytes)
                .map(Some)
                .map_err(|e| StoreError::Io(e.to_string())),
        }
    }

    /// A read view of one shard's replicated state, for the reads the state machine
    /// shares with the gateway ([`super::state_machine::workspaces`]).
    pub fn view(&self, shard: ShardId) -> Result<&sled::Tree, StoreError> {
        self.tree(shard)
    }

    /// Whether `workspace` was deleted (its record is a tombstone).
    pub fn workspace_deleted(&self, workspace: WorkspaceId) -> Result<bool, StoreError> {
        let record: Option<WorkspaceRecord> =
            self.get(workspace.shard, &workspace_record_key(workspace))?;
        Ok(record.is_some_and(|r| r.deleted))
    }

    /// The skill packs attached to `workspace`, in attach order (a pack deleted
    /// meanwhile is left out).
    pub fn workspace_packs(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<StoredSkillPack>, StoreError> {
        let tree = self.tree(workspace.shard)?;
        let io = |e: ReadError| StoreError::Io(e.to_string());
        let key = workspace_record_key(workspace);
        let Some(bytes) = ShardRead::get(tree, &key).map_err(io)? else {
            return Ok(Vec::new());
        };
        let record: WorkspaceRecord = decode(&key, &bytes).map_err(io)?;
        let mut out = Vec::new();
        for pack in &record.packs {
            let key = skill_pack_key(&record.owner, *pack);
            if let Some(bytes) = ShardRead::get(tree, &key).map_err(io)? {
                out.push(decode(&key, &bytes).map_err(io)?);
            }
        }
        Ok(out)
    }

    /// Waits until everything written so far is on disk (coalesced with other callers).
    pub async fn flush(&self) -> Result<(), StoreError> {
        if self.inline_blocking {
            return self
                .db
                .flush()
                .map(|_| ())
                .map_err(|e| StoreError::Io(e.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.flush_tx
            .send((self.db.clone(), tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Io)
    }

    /// Stops this node's use of the store for good: a local fault (a failed read of
    /// committed state) that must not turn into a result other replicas would not have.
    /// Logs `reason` and tells [`Self::failed`]'s waiters; the node process exits
    /// (`shoal-node` returns a failure status) and the other replicas carry on.
    pub fn fail_stop(&self, reason: String) {
        tracing::error!(%reason, "FAIL-STOP: this node stops; its replicas take over. Check the disk, then restart the node (a store found damaged is moved aside and re-seeded)");
        self.fatal.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Resolves with the reason once [`Self::fail_stop`] was called.
    pub async fn failed(&self) -> String {
        let mut rx = self.fatal.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives in `self`: it cannot be dropped while borrowed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Holds every flush back for `duration` from now (fault injection: a stalled disk),
    /// replacing any earlier stall (`Duration::ZERO` ends one). Callers of
    /// [`Self::flush`] wait; writes keep reaching sled's page cache.
    pub fn stall_flushes(&self, duration: std::time::Duration) {
        let until = tokio::time::Instant::now() + duration;
        self.stall.send_replace(Some(until));
        if duration.is_zero() {
            tracing::warn!("fault ended: store flushes resume");
        } else {
            tracing::warn!(
                ms = duration.as_millis() as u64,
                "fault injected: store flushes stalled"
            );
        }
    }

    /// A conversation's record.
    pub fn conversation(
        &self,
        id: ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        self.get(id.shard, &conversation_key(id))
    }

    /// A conversation's last activity (ms), when recorded (conversations older than the
    /// record have none: their creation time stands in).
    pub fn last_activity(&self, id: ConversationId) -> Result<Option<u64>, StoreError> {
        self.get(id.shard, &activity_key(id))
    }

    /// A conversation's queued messages (empty when none).
    pub fn message_queue(
        &self,
        id: ConversationId,
    ) -> Result<crate::shard::state_machine::queue::MessageQueue, StoreError> {
        let key = crate::shard::state_machine::queue::queue_key(id);
        Ok(self.get(id.shard, &key)?.unwrap_or_default())
    }

    /// A conversation's session settings (the default when none are stored).
    pub fn session_settings(
        &self,
        id: ConversationId,
    ) -> Result<shoal_protocol::settings::SessionSettings, StoreError> {
        let key = crate::shard::state_machine::settings::settings_key(id);
        Ok(self.get(id.shard, &key)?.unwrap_or_default())
    }

    /// The shard's operator pin, as this replica applied it (`None`: not pinned).
    pub fn shard_pin(
        &self,
        shard: ShardId,
    ) -> Result<Option<shoal_protocol::admin::ShardPin>, StoreError> {
        self.get(shard, crate::shard::state_machine::pins::PIN_KEY)
    }

    /// A workspace's permission policy (empty when none is stored).
    pub fn workspace_permissions(
        &self,
        workspace: WorkspaceId,
    ) -> Result<shoal_protocol::permissions::PermissionPolicy, StoreError> {
        let key = crate::shard::state_machine::permissions::permissions_key(workspace);
        Ok(self.get(workspace.shard, &key)?.unwrap_or_default())
    }

    /// A workspace's MCP servers (none when none are stored).
    pub fn workspace_mcp(
        &self,
        workspace: WorkspaceId,
    ) -> Result<crate::shard::state_machine::mcp::WorkspaceMcp, StoreError> {
        let key = crate::shard::state_machine::mcp::mcp_key(workspace);
        Ok(self.get(workspace.shard, &key)?.unwrap_or_default())
    }

    /// A workspace's last committed snapshot.
    pub fn workspace_snapshot(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<WorkspaceSnapshot>, StoreError> {
        self.get(workspace.shard, &workspace_snapshot_key(workspace))
    }

    /// A workspace's sealed credentials (empty when none is set).
    pub fn workspace_credentials(
        &self,
        workspace: WorkspaceId,
    ) -> Result<WorkspaceCredentials, StoreError> {
        let key = workspace_credentials_key(workspace);
        Ok(self.get(workspace.shard, &key)?.unwrap_or_default())
    }

    /// Every workspace snapshot committed in any shard this node holds (what blob
    /// garbage collection must keep).
    pub fn workspace_snapshots(&self) -> Result<Vec<WorkspaceSnapshot>, StoreError> {
        let mut out = Vec::new();
        for tree in &self.trees {
            for item in tree.scan_prefix(WORKSPACE_SNAPSHOT_PREFIX) {
                let (key, bytes) = item.map_err(|e| StoreError::Io(e.to_string()))?;
                out.push(decode(&key, &bytes).map_err(|e| StoreError::Io(e.to_string()))?);
            }
        }
        Ok(out)
    }

    /// Messages `from..to` of a conversation (missing indices are skipped).
    pub fn messages(
        &self,
        id: ConversationId,
        from: u64,
        to: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let tree = self.tree(id.shard)?;
        let range = message_key(id, MessageId(from))..message_key(id, MessageId(to));
        let mut out = Vec::new();
        for item in tree.range(range) {
            let (key, bytes) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            out.push(decode(&key, &bytes).map_err(|e| StoreError::Io(e.to_string()))?);
        }
        Ok(out)
    }

    /// One message.
    pub fn message(
        &self,
        id: ConversationId,
        index: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        Ok(self.messages(id, index.0, index.0 + 1)?.pop())
    }

    /// The conversations `user` owns in `shard`.
    pub fn user_conversations(
        &self,
        shard: ShardId,
        user: &UserId,
    ) -> Result<Vec<ConversationRecord>, StoreError> {
        let tree = self.tree(shard)?;
        let prefix = user_prefix(user);
        let mut out = Vec::new();
        for item in tree.scan_prefix(&prefix) {
            let (key, _) = item.map_err(|e| StoreError::Io(e.to_string()))?;
            let uid_bytes: [u8; 16] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Io("corrupt user index key".to_owned()))?;
            let id = ConversationId::new(shard, u128::from_be_bytes(uid_bytes));
            if let Some(rec) = self.conversation(id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Whether an operator drained this node (and did not undrain it since). Blocking:
    /// read once at start.
    pub fn draining(&self) -> Result<bool, StoreError> {
        let meta = self
            .db
            .open_tree(NODE_META_TREE)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let value = meta
            .get(DRAINING_KEY)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(value.is_some_and(|v| v.as_ref() == [1]))
    }

    /// Records the drain flag durably (flushed before it returns). Blocking: call it on
    /// a blocking thread. Not replicated: it is this node's own setting.
    pub fn set_draining(&self, draining: bool) -> Result<(), StoreError> {
        let io = |e: sled::Error| StoreError::Io(e.to_string());
        let meta = self.db.open_tree(NODE_META_TREE).map_err(io)?;
        meta.insert(DRAINING_KEY, &[u8::from(draining)])
            .map_err(io)?;
        // A plain (blocking) flush: never `flush_async` (STACK.md).
        meta.flush().map_err(io)?;
        Ok(())
    }

    /// Flushes and reports the on-disk size, for status output.
    pub fn size_on_disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl ShardRead for sled::Tree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        sled::Tree::get(self, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| ReadError::Io(e.to_string()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, ReadError> {
        sled::Tree::scan_prefix(self, prefix)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| ReadError::Io(e.to_string()))
            })
            .collect()
    }
}

/// Whether a failed open found the store itself damaged: sled's corruption, a format it
/// cannot read, an internal inconsistency, or data it cannot decode. Any other I/O error
/// (permissions, no space, too many open files, the disk failing) says nothing of the
/// store's contents, and may be passing or shared by every replica (a cluster's disks
/// filling up together): taking it for damage would discard good stores.
fn is_damage(e: &sled::Error) -> bool {
    match e {
        sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_) => true,
        sled::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        sled::Error::CollectionNotFound(_) => false,
    }
}

/// Reads the store's generation, or records `candidate` (made non-zero) for a new store.
/// A store that already holds Raft state but no generation predates generations: it
/// keeps [`GENERATION_LEGACY`], so its Raft id does not change.
fn generation(db: &sled::Db, shard_count: u16, candidate: u64) -> Result<u64, sled::Error> {
    let meta = db.open_tree(NODE_META_TREE)?;
    if let Some(bytes) = meta.get(GENERATION_KEY)? {
        let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
            sled::Error::Unsupported(format!(
                "`{NODE_META_TREE}/generation` holds {} bytes, not 8: the store is damaged",
                bytes.len()
            ))
        })?;
        return Ok(u64::from_be_bytes(raw));
    }
    let mut legacy = false;
    for s in 0..shard_count {
        if !db.open_tree(format!("raft-meta-{s}"))?.is_empty() {
            legacy = true;
            break;
        }
    }
    let generation = if legacy {
        GENERATION_LEGACY
    } else {
        candidate | 1
    };
    meta.insert(GENERATION_KEY, &generation.to_be_bytes())?;
    db.flush()?;
    Ok(generation)
}

async fn run_flusher(
    mut rx: mpsc::Receiver<FlushRequest>,
    mut stall: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) {
    while let Some((db, first)) = rx.recv().await {
        // Wait out the stall in force, re-reading it when it is replaced.
        loop {
            let until = *stall.borrow_and_update();
            match until {
                Some(until) if tokio::time::Instant::now() < until => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        changed = stall.changed() => if changed.is_err() { break },
                    }
                }
                _ => break,
            }
        }
        let mut waiters = vec![first];
        while let Ok((_, more)) = rx.try_recv() {
            waiters.push(more);
        }
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("flush task failed: {e}")),
        };
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only what sled finds wrong in the store is damage; an I/O error reaching it is not.
    #[test]
    fn only_what_is_wrong_in_the_store_is_damage() {
        use std::io::{Error, ErrorKind};
        let io = |kind: ErrorKind| sled::Error::Io(Error::new(kind, "x"));
        for damage in [
            sled::Error::Corruption { at: None, bt: () },
            sled::Error::Unsupported("an older format".into()),
            sled::Error::ReportableBug("x".into()),
            io(ErrorKind::InvalidData),
            io(ErrorKind::UnexpectedEof),
        ] {
            assert!(is_damage(&damage), "{damage:?}");
        }
        for outside in [
            io(ErrorKind::PermissionDenied),
            io(ErrorKind::StorageFull),
            io(ErrorKind::NotFound),
            io(ErrorKind::Other),
            sled::Error::Io(Error::from_raw_os_error(24)), // EMFILE
            sled::Error::Io(Error::from_raw_os_error(5)),  // EIO
        ] {
            assert!(!is_damage(&outside), "{outside:?}");
        }
    }

    /// A store another handle holds is waited for and opens once let go; one never let
    /// go is refused as in use (naming the dir and the key to change), not as damage.
    #[tokio::test]
    async fn a_store_in_use_is_waited_for_then_refused_naming_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let held = Store::open(&path, 2).unwrap();
        let generation = held.generation();

        let err = Store::open_waiting(&path, 2, false, 7, &mut || false).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("`node.data_dir`"), "{text}");

        let mut held = Some(held);
        let mut waits = 0;
        let mut wait = Store::lock_waiter(&path);
        let store = Store::open_waiting(&path, 2, false, 7, &mut || {
            waits += 1;
            // Let go while the other open waits (sled lets the lock go a moment later).
            drop(held.take());
            wait()
        })
        .unwrap();
        assert!(waits >= 1, "the second open found the lock held");
        assert_eq!(store.generation(), generation, "the same store, reopened");
    }
}
