//! Workspace sandboxes: a workspace's tree on the hosting node, and the snapshots that
//! let it move with its conversations.
//!
//! A workspace's tree (`<data_dir>/workspaces/<id>/`: the working tree `work/` and the
//! agent homes `homes/`, where agents keep their own session stores) is owned by one
//! **sandbox actor** on the node hosting the workspace's shard. It does two things, one
//! at a time:
//!
//! * **Snapshot** (at each turn end): walk the tree, read only files changed since the
//!   last snapshot, store their chunks (BLAKE3-addressed, [`blobs`]) locally, push the new
//!   chunks to the shard's other replicas over the peer API until a majority of voters
//!   hold them, and only then commit a small record through the shard's Raft group
//!   ([`ShardCommand::SetWorkspaceSnapshot`]: the manifest's chunk hashes, never file
//!   contents). The record applies only on top of the snapshot it was taken from, so a
//!   node holding a stale tree cannot replace a newer snapshot.
//! * **Prepare** (before any agent starts): when the last committed snapshot is not the
//!   one this node's tree was last saved as or restored from (a failover, a move, a
//!   restart after another node worked on it), restore the tree from it, fetching missing
//!   chunks from any replica.
//!
//! What a failover loses is at most the work since the last snapshot, which is the last
//! turn end. A local marker file (`<id>.snapshot`, beside the tree) records which
//! snapshot the tree corresponds to.

mod attached;
pub mod blobs;
pub mod home_template;
mod lifetime;
mod managed;
pub mod manifest;
pub mod packs;

pub use lifetime::{Archived, run_archiver};

use crate::context::NodeContext;
use crate::peer::{BLOB_PUT_BYTES_MAX, BLOB_QUERY_HASHES_MAX, BlobReply, PeerLane, PeerRequest};
use crate::shard::state_machine::{Outcome, ShardCommand, WorkspaceSnapshot};
use blobs::{ChunkHash, Collected};
use futures::StreamExt;
use manifest::{Manifest, Restored, ScanLimits, Totals};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use shoal_protocol::{ShardId, WorkspaceId};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one peer blob call may take.
const BLOB_CALL_TIMEOUT_MS: u64 = 10_000;
/// Chunks fetched from replicas at once during a restore.
const FETCH_CONCURRENCY: usize = 8;
/// A sandbox actor with no work for this long stops (the next request starts another).
const SANDBOX_IDLE_STOP_MS: u64 = 600_000;
/// Unreferenced chunks younger than this are kept: a snapshot in progress may be about
/// to commit a manifest that refers to them.
pub const BLOB_GC_GRACE_MS: u64 = 3_600_000;
/// Least time between two garbage collections of the blob store.
const BLOB_GC_INTERVAL_MS: u64 = 600_000;

/// Why a snapshot or restore did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkspaceError {
    /// This node does not host the workspace's shard.
    #[error("this node does not host shard {0} now")]
    NotHosted(ShardId),
    /// The tree is over a snapshot limit (the message names the key).
    #[error("workspace snapshot not taken, the previous one stays: {0}")]
    TooBig(String),
    /// The tree on disk is not the last committed snapshot.
    #[error(
        "the workspace tree here is from snapshot {local}, but snapshot {committed} is the last committed one; it is restored before the next agent starts"
    )]
    Stale {
        /// What the tree here was saved as or restored from.
        local: u64,
        /// The last committed snapshot.
        committed: u64,
    },
    /// Chunks did not reach a majority of the shard's replicas.
    #[error("workspace snapshot not committed: {0}")]
    Replicate(String),
    /// A chunk of the snapshot to restore is on no reachable replica.
    #[error(
        "cannot restore the workspace: chunk {0} is on no reachable replica; retry when the shard's other nodes are up"
    )]
    ChunkMissing(ChunkHash),
    /// The snapshot record could not be committed.
    #[error("workspace snapshot not committed: {0}")]
    Commit(String),
    /// Disk or store I/O failed.
    #[error("workspace I/O failed: {0}")]
    Io(String),
    /// It took longer than `workspace.snapshot_timeout_ms`.
    #[error(
        "the workspace snapshot or restore took longer than {0} ms (workspace.snapshot_timeout_ms)"
    )]
    Timeout(u64),
    /// The sandbox actor is gone (the node is stopping).
    #[error("the workspace sandbox stopped")]
    Gone,
}

/// What [`prepare`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// No snapshot was ever committed: the tree is used as it is.
    NoSnapshot,
    /// The tree here is the last committed snapshot (plus work since).
    UpToDate {
        /// The snapshot.
        seq: u64,
    },
    /// The tree was restored from the last committed snapshot.
    Restored {
        /// The snapshot.
        seq: u64,
        /// What changed on disk.
        restored: Restored,
        /// Chunks fetched from replicas.
        fetched: u64,
    },
}

/// What [`snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Nothing changed since the last snapshot: nothing was committed.
    Unchanged {
        /// The last snapshot (0: none, and the tree is empty).
        seq: u64,
    },
    /// A new snapshot is committed.
    Committed {
        /// Its number.
        seq: u64,
        /// Its size.
        totals: Totals,
        /// Files read (changed since the last snapshot).
        files_read: u64,
        /// Bytes read.
        bytes_read: u64,
        /// Entries left out (special files), with why.
        skipped: Vec<String>,
    },
}

/// The sandbox actors of the workspaces this node works on.
#[derive(Debug, Default)]
pub struct Sandboxes {
    actors: Mutex<HashMap<WorkspaceId, ActorRef<SandboxMsg>>>,
    /// Agent processes running in each workspace ([`AgentInWorkspace`]): a workspace
    /// with one is never archived.
    agents: Arc<Mutex<HashMap<WorkspaceId, usize>>>,
    /// Milliseconds (node clock) of the last blob garbage collection.
    last_gc_ms: std::sync::atomic::AtomicU64,
    /// Set by [`Sandboxes::stop_all`]: no sandbox starts any more.
    closed: std::sync::atomic::AtomicBool,
}

impl Sandboxes {
    /// Drops `workspace`'s entry if it is still the actor `id` (a stopping or stopped
    /// sandbox; a newer one that replaced it stays).
    fn forget(&self, workspace: WorkspaceId, id: ractor::ActorId) {
        let mut actors = self.lock();
        if actors.get(&workspace).is_some_and(|a| a.get_id() == id) {
            actors.remove(&workspace);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkspaceId, ActorRef<SandboxMsg>>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sandbox actors run.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops every sandbox actor (the node is shutting down; they hold the node's
    /// store) and starts no other.
    pub async fn stop_all(&self, timeout: Duration) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let actors: Vec<ActorRef<SandboxMsg>> = self.lock().drain().map(|(_, a)| a).collect();
        let stops = actors
            .iter()
            .map(|a| a.stop_and_wait(Some("node shutting down".into()), Some(timeout)));
        futures::future::join_all(stops).await;
    }

    /// Counts an agent process running in `workspace` until the guard drops.
    pub fn agent_running(&self, workspace: WorkspaceId) -> AgentInWorkspace {
        *lock(&self.agents).entry(workspace).or_default() += 1;
        AgentInWorkspace {
            agents: self.agents.clone(),
            workspace,
        }
    }

    /// Agent processes running in `workspace`.
    pub fn agents_in(&self, workspace: WorkspaceId) -> usize {
        lock(&self.agents).get(&workspace).copied().unwrap_or(0)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An agent process running in a workspace ([`Sandboxes::agent_running`]); held by the
/// agent session exactly while its process runs.
#[derive(Debug)]
pub struct AgentInWorkspace {
    agents: Arc<Mutex<HashMap<WorkspaceId, usize>>>,
    workspace: WorkspaceId,
}

impl Drop for AgentInWorkspace {
    fn drop(&mut self) {
        let mut agents = lock(&self.agents);
        if let Some(n) = agents.get_mut(&self.workspace) {
            *n -= 1;
            if *n == 0 {
                agents.remove(&self.workspace);
            }
        }
    }
}

/// Messages of a sandbox actor.
pub enum SandboxMsg {
    /// Restore the tree if it is not the last committed snapshot.
    Prepare(RpcReplyPort<Result<Prepared, WorkspaceError>>),
    /// Take a snapshot.
    Snapshot(RpcReplyPort<Result<Saved, WorkspaceError>>),
    /// Remove the live tree if the workspace is still idle ([`run_archiver`]).
    Archive(RpcReplyPort<Result<Archived, WorkspaceError>>),
    /// Make the skill-pack files in the tree match the attached packs; with `true`,
    /// only when the tree is here (a request, not an agent start).
    SyncPacks(bool, RpcReplyPort<Result<packs::Synced, WorkspaceError>>),
    /// The workspace was deleted: remove its tree and marker here, then stop.
    Remove(RpcReplyPort<Result<(), WorkspaceError>>),
    /// Stop when idle long enough.
    Tick,
}

/// Makes `workspace`'s tree here the last committed snapshot before an agent starts
/// in it (see the module doc).
pub async fn prepare(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<Prepared, WorkspaceError> {
    ask(ctx, workspace, SandboxMsg::Prepare).await
}

/// Writes the files of `workspace`'s attached skill packs into its tree here (and
/// prunes those of detached ones), when the tree is here; see [`packs`].
pub async fn sync_packs(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<packs::Synced, WorkspaceError> {
    ask(ctx, workspace, |reply| SandboxMsg::SyncPacks(true, reply)).await
}

/// Before an agent starts: like [`sync_packs`], creating the tree if needed.
pub async fn sync_packs_for_agent(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<packs::Synced, WorkspaceError> {
    ask(ctx, workspace, |reply| SandboxMsg::SyncPacks(false, reply)).await
}

/// Removes a deleted workspace's tree here and stops its sandbox.
pub async fn remove(ctx: &Arc<NodeContext>, workspace: WorkspaceId) -> Result<(), WorkspaceError> {
    ask(ctx, workspace, SandboxMsg::Remove).await
}

/// Takes a snapshot of `workspace`'s tree and commits it (see the module doc).
pub async fn snapshot(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<Saved, WorkspaceError> {
    ask(ctx, workspace, SandboxMsg::Snapshot).await
}

async fn ask<T: Send + 'static>(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
    msg: impl Fn(RpcReplyPort<Result<T, WorkspaceError>>) -> SandboxMsg,
) -> Result<T, WorkspaceError> {
    let timeout = ctx.config.workspace.snapshot_timeout();
    // A sandbox that stopped as it was handed out is replaced once.
    for _ in 0..2 {
        let sandbox = sandbox(ctx, workspace).await?;
        match sandbox.call(&msg, Some(timeout)).await {
            Ok(CallResult::Success(result)) => return result,
            Ok(CallResult::Timeout) => {
                return Err(WorkspaceError::Timeout(timeout.as_millis() as u64));
            }
            Ok(CallResult::SenderError) | Err(_) => {
                ctx.sandboxes.forget(workspace, sandbox.get_id());
            }
        }
    }
    Err(WorkspaceError::Gone)
}

async fn sandbox(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
) -> Result<ActorRef<SandboxMsg>, WorkspaceError> {
    if ctx
        .sandboxes
        .closed
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(WorkspaceError::Gone);
    }
    if let Some(actor) = ctx.sandboxes.lock().get(&workspace) {
        return Ok(actor.clone());
    }
    let (actor, _) = Actor::spawn(None, SandboxActor, (ctx.clone(), workspace))
        .await
        .map_err(|_| WorkspaceError::Gone)?;
    let mut actors = ctx.sandboxes.lock();
    match actors.get(&workspace) {
        // Another caller spawned one first: use it, stop ours.
        Some(first) => {
            actor.stop(None);
            Ok(first.clone())
        }
        None => {
            actors.insert(workspace, actor.clone());
            Ok(actor)
        }
    }
}

struct SandboxActor;

/// The last snapshot's manifest as this sandbox knows it (its number and manifest), so
/// a turn end does not read and decode it again.
type ManifestCache = Option<(u64, Arc<Manifest>)>;

/// A sandbox actor's state.
pub struct SandboxState {
    ctx: Arc<NodeContext>,
    workspace: WorkspaceId,
    last_used: tokio::time::Instant,
    manifest: ManifestCache,
}

impl Actor for SandboxActor {
    type Msg = SandboxMsg;
    type State = SandboxState;
    type Arguments = (Arc<NodeContext>, WorkspaceId);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (ctx, workspace): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(Duration::from_millis(SANDBOX_IDLE_STOP_MS / 4), || {
            SandboxMsg::Tick
        });
        Ok(SandboxState {
            ctx,
            workspace,
            last_used: tokio::time::Instant::now(),
            manifest: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SandboxMsg::Prepare(reply) => {
                state.last_used = tokio::time::Instant::now();
                let prepared =
                    restore_if_behind(&state.ctx, state.workspace, &mut state.manifest).await;
                let _ = reply.send(prepared);
            }
            SandboxMsg::Snapshot(reply) => {
                state.last_used = tokio::time::Instant::now();
                let saved = take_snapshot(&state.ctx, state.workspace, &mut state.manifest).await;
                let _ = reply.send(saved);
                maybe_collect_garbage(&state.ctx);
            }
            SandboxMsg::Archive(reply) => {
                let archived =
                    lifetime::archive(&state.ctx, state.workspace, &mut state.manifest).await;
                let _ = reply.send(archived);
            }
            SandboxMsg::SyncPacks(only_if_present, reply) => {
                state.last_used = tokio::time::Instant::now();
                let synced = attached::sync(&state.ctx, state.workspace, only_if_present).await;
                let _ = reply.send(synced);
            }
            SandboxMsg::Remove(reply) => {
                let removed = lifetime::remove(&state.ctx, state.workspace).await;
                let _ = reply.send(removed);
                state.ctx.sandboxes.forget(state.workspace, myself.get_id());
                myself.stop(Some("workspace deleted".into()));
            }
            SandboxMsg::Tick => {
                if state.last_used.elapsed() >= Duration::from_millis(SANDBOX_IDLE_STOP_MS) {
                    state.ctx.sandboxes.forget(state.workspace, myself.get_id());
                    myself.stop(Some("idle".into()));
                }
            }
        }
        Ok(())
    }
}

fn io(e: impl std::fmt::Display) -> WorkspaceError {
    WorkspaceError::Io(e.to_string())
}

/// Runs blocking file work off the async threads ([`NodeContext::blocking`]).
async fn blocking<T: Send + 'static>(
    ctx: &NodeContext,
    f: impl FnOnce() -> Result<T, WorkspaceError> + Send + 'static,
) -> Result<T, WorkspaceError> {
    ctx.blocking(f).await.map_err(io)?
}

fn marker_path(ctx: &NodeContext, workspace: WorkspaceId) -> PathBuf {
    marker_of(&ctx.workspace_root(workspace))
}

/// The marker beside a workspace's tree: `<id>.snapshot`.
fn marker_of(root: &std::path::Path) -> PathBuf {
    root.with_extension("snapshot")
}

/// The snapshot the tree here was last saved as or restored from.
fn read_marker(path: &std::path::Path) -> Result<Option<u64>, WorkspaceError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
    }
}

fn write_marker(path: &std::path::Path, seq: Option<u64>) -> Result<(), WorkspaceError> {
    let Some(seq) = seq else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        };
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("snapshot.tmp");
    std::fs::write(&tmp, format!("{seq}\n")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn check_hosted(ctx: &NodeContext, shard: ShardId) -> Result<(), WorkspaceError> {
    let hosted = matches!(
        ctx.cluster.hosting(shard),
        crate::cluster::Hosting::Active { .. }
    );
    if !hosted || ctx.fence.is_fenced(shard) {
        return Err(WorkspaceError::NotHosted(shard));
    }
    Ok(())
}

async fn restore_if_behind(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
    cache: &mut ManifestCache,
) -> Result<Prepared, WorkspaceError> {
    check_hosted(ctx, workspace.shard)?;
    let marker = marker_path(ctx, workspace);
    let local = read_marker(&marker)?;
    let root = ctx.workspace_root(workspace);
    let Some(record) = ctx.store.workspace_snapshot(workspace).map_err(io)? else {
        if local.is_some() {
            write_marker(&marker, None)?;
        }
        return Ok(Prepared::NoSnapshot);
    };
    // A tree removed from disk (by hand, or damaged) is restored, not left half-empty.
    if local == Some(record.seq) && root.is_dir() {
        // The archiver goes by the marker's age.
        blobs::touch(&marker);
        return Ok(Prepared::UpToDate { seq: record.seq });
    }
    let manifest = load_manifest(ctx, workspace.shard, &record, cache).await?;
    let missing = {
        let blobs = ctx.blobs.clone();
        let manifest = manifest.clone();
        blocking(ctx, move || Ok(manifest::missing_chunks(&manifest, &blobs))).await?
    };
    let fetched = missing.len() as u64;
    fetch(ctx, workspace.shard, missing).await?;
    // Still ours? A restore that raced a move must not write a tree another node owns.
    check_hosted(ctx, workspace.shard)?;
    let blobs = ctx.blobs.clone();
    let seq = record.seq;
    let restored = blocking(ctx, move || {
        let restored = manifest::restore(&root, &manifest, &blobs).map_err(io)?;
        write_marker(&marker, Some(seq))?;
        Ok(restored)
    })
    .await?;
    tracing::info!(%workspace, seq, written = restored.written, removed = restored.removed, fetched, "workspace restored from its snapshot");
    Ok(Prepared::Restored {
        seq,
        restored,
        fetched,
    })
}

/// The manifest of `record`: from `cache` when it holds that snapshot's, else read
/// (fetching its chunks from replicas when this node lacks them) and cached.
async fn load_manifest(
    ctx: &Arc<NodeContext>,
    shard: ShardId,
    record: &WorkspaceSnapshot,
    cache: &mut ManifestCache,
) -> Result<Arc<Manifest>, WorkspaceError> {
    if let Some((seq, manifest)) = cache.as_ref()
        && *seq == record.seq
    {
        return Ok(manifest.clone());
    }
    let missing = ctx.blobs.missing(&record.manifest);
    fetch(ctx, shard, missing).await?;
    let blobs = ctx.blobs.clone();
    let chunks = record.manifest.clone();
    let seq = record.seq;
    let manifest = blocking(ctx, move || {
        let bytes = manifest::load_chunked(&blobs, &chunks)
            .map_err(io)?
            .ok_or_else(|| {
                io(format!(
                    "a chunk of manifest {seq} vanished while it was read"
                ))
            })?;
        Manifest::decode(&bytes).map_err(|e| io(format!("manifest {seq} is damaged: {e}")))
    })
    .await
    .map(Arc::new)?;
    *cache = Some((record.seq, manifest.clone()));
    Ok(manifest)
}

async fn take_snapshot(
    ctx: &Arc<NodeContext>,
    workspace: WorkspaceId,
    cache: &mut ManifestCache,
) -> Result<Saved, WorkspaceError> {
    check_hosted(ctx, workspace.shard)?;
    let marker = marker_path(ctx, workspace);
    let record = ctx.store.workspace_snapshot(workspace).map_err(io)?;
    let committed = record.as_ref().map_or(0, |r| r.seq);
    let local = read_marker(&marker)?.unwrap_or(0);
    if local != committed {
        return Err(WorkspaceError::Stale { local, committed });
    }
    let base = match &record {
        Some(record) => Some(load_manifest(ctx, workspace.shard, record, cache).await?),
        None => None,
    };
    let limits = ScanLimits {
        entries_max: u64::from(ctx.config.workspace.snapshot_files_max.get()),
        bytes_max: ctx.config.workspace.snapshot_bytes_max.get(),
    };
    let root = ctx.workspace_root(workspace);
    let blobs = ctx.blobs.clone();
    let (scanned, base, manifest_chunks) = blocking(ctx, move || {
        let scanned =
            manifest::scan(&root, base.as_deref(), &blobs, limits).map_err(|e| match e {
                e @ manifest::ScanError::TooBig { .. } => WorkspaceError::TooBig(e.to_string()),
                e => io(e),
            })?;
        let unchanged = match &base {
            Some(base) => **base == scanned.manifest,
            None => scanned.manifest.entries.is_empty(),
        };
        let chunks = if unchanged {
            Vec::new()
        } else {
            let chunks = manifest::store_chunked(&blobs, &scanned.manifest.encode()).map_err(io)?;
            // Every chunk this snapshot wrote is durable before a replica or the log
            // refers to it.
            blobs.sync().map_err(io)?;
            chunks
        };
        Ok((scanned, base, chunks))
    })
    .await?;
    if manifest_chunks.is_empty() {
        blobs::touch(&marker);
        return Ok(Saved::Unchanged { seq: committed });
    }
    // Only chunks the last snapshot did not have are new to the replicas.
    let known: HashSet<&ChunkHash> = base.iter().flat_map(|m| m.chunks()).collect();
    let mut new: Vec<ChunkHash> = scanned
        .manifest
        .chunks()
        .filter(|h| !known.contains(h))
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    new.extend(&manifest_chunks);
    replicate(ctx, workspace.shard, new).await?;
    check_hosted(ctx, workspace.shard)?;
    let totals = scanned.manifest.totals();
    let seq = committed + 1;
    let cmd = ShardCommand::SetWorkspaceSnapshot {
        workspace,
        base: committed,
        snapshot: WorkspaceSnapshot {
            seq,
            manifest: manifest_chunks,
            entries: totals.entries,
            bytes: totals.bytes,
            at_ms: ctx.now_ms(),
            node: ctx.node_id().to_owned(),
        },
    };
    match ctx.cluster.propose(workspace.shard, cmd).await {
        Ok(Outcome::Done) => {}
        Ok(other) => {
            return Err(WorkspaceError::Commit(format!(
                "unexpected outcome {other:?}"
            )));
        }
        Err(e) => return Err(WorkspaceError::Commit(e.to_string())),
    }
    blocking(ctx, move || write_marker(&marker, Some(seq))).await?;
    tracing::debug!(%workspace, seq, files_read = scanned.files_read, bytes_read = scanned.bytes_read, "workspace snapshot committed");
    let manifest::Scanned {
        manifest,
        files_read,
        bytes_read,
        skipped,
    } = scanned;
    *cache = Some((seq, Arc::new(manifest)));
    Ok(Saved::Committed {
        seq,
        totals,
        files_read,
        bytes_read,
        skipped,
    })
}

/// Pushes `hashes` to the shard's other replicas; returns once a majority of its voters
/// (this node included) hold them. Pushes to the rest go on in the background.
async fn replicate(
    ctx: &Arc<NodeContext>,
    shard: ShardId,
    hashes: Vec<ChunkHash>,
) -> Result<(), WorkspaceError> {
    let (others, voters) = ctx.cluster.replicas_of(shard);
    // This node holds them already: it counts as one.
    let needed = (voters / 2 + 1).saturating_sub(1);
    let hashes = Arc::new(hashes);
    let (tx, mut rx) = tokio::sync::mpsc::channel(others.len().max(1));
    for (_, node) in others {
        let ctx = ctx.clone();
        let hashes = hashes.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = push_to(&ctx, &node.addr, &hashes).await;
            if let Err(e) = &result {
                tracing::warn!(peer = %node, error = %e, "workspace chunks not pushed to a replica");
            }
            let _ = tx.send(result.map_err(|e| format!("{node}: {e}"))).await;
        });
    }
    drop(tx);
    let mut held = 0;
    let mut errors = Vec::new();
    while held < needed {
        match rx.recv().await {
            Some(Ok(())) => held += 1,
            Some(Err(e)) => errors.push(e),
            None => {
                return Err(WorkspaceError::Replicate(format!(
                    "its chunks reached {held} of the {needed} other replicas a majority needs ({})",
                    errors.join("; ")
                )));
            }
        }
    }
    Ok(())
}

async fn push_to(ctx: &NodeContext, addr: &str, hashes: &[ChunkHash]) -> Result<(), String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("bad address: {e}"))?;
    let timeout = Duration::from_millis(BLOB_CALL_TIMEOUT_MS);
    for batch in hashes.chunks(BLOB_QUERY_HASHES_MAX) {
        let request = PeerRequest::BlobsMissing {
            hashes: batch.to_vec(),
        };
        let missing = match ctx
            .cluster
            .peers
            .call_on::<BlobReply>(PeerLane::Blob, addr, &request, timeout)
            .await
            .map_err(|e| e.to_string())?
        {
            BlobReply::Missing(missing) => missing,
            other => return Err(format!("unexpected reply {other:?}")),
        };
        // In batches of up to BLOB_PUT_BYTES_MAX: one round trip and one sync each.
        let missing = Arc::new(missing);
        let mut next = 0;
        while next < missing.len() {
            let blobs = ctx.blobs.clone();
            let list = missing.clone();
            let from = next;
            let (chunks, end) = ctx
                .blocking(move || {
                    let mut chunks = Vec::new();
                    let mut bytes = 0;
                    let mut i = from;
                    while i < list.len() && chunks.len() < BLOB_QUERY_HASHES_MAX {
                        let hash = list[i];
                        let data =
                            blobs
                                .get(&hash)
                                .map_err(|e| e.to_string())?
                                .ok_or_else(|| {
                                    format!("chunk {hash} vanished from this node's blob store")
                                })?;
                        if !chunks.is_empty() && bytes + data.len() > BLOB_PUT_BYTES_MAX {
                            break;
                        }
                        bytes += data.len();
                        chunks.push((hash, data));
                        i += 1;
                    }
                    Ok::<_, String>((chunks, i))
                })
                .await
                .map_err(|e| e.to_string())??;
            next = end;
            let request = PeerRequest::BlobPut { chunks };
            match ctx
                .cluster
                .peers
                .call_on::<BlobReply>(PeerLane::Blob, addr, &request, timeout)
                .await
                .map_err(|e| e.to_string())?
            {
                BlobReply::Stored => {}
                BlobReply::Refused(why) => return Err(why),
                other => return Err(format!("unexpected reply {other:?}")),
            }
        }
    }
    Ok(())
}

/// Fetches `hashes` from the shard's other replicas into the local blob store.
async fn fetch(
    ctx: &Arc<NodeContext>,
    shard: ShardId,
    hashes: Vec<ChunkHash>,
) -> Result<(), WorkspaceError> {
    if hashes.is_empty() {
        return Ok(());
    }
    let (others, _) = ctx.cluster.replicas_of(shard);
    let addrs: Arc<Vec<std::net::SocketAddr>> = Arc::new(
        others
            .iter()
            .filter_map(|(_, n)| n.addr.parse().ok())
            .collect(),
    );
    let mut fetches = futures::stream::iter(hashes.into_iter().map(|hash| {
        let addrs = addrs.clone();
        async move {
            for addr in addrs.iter() {
                if fetch_one(ctx, *addr, hash).await {
                    return Ok(());
                }
            }
            Err(WorkspaceError::ChunkMissing(hash))
        }
    }))
    .buffer_unordered(FETCH_CONCURRENCY);
    while let Some(result) = fetches.next().await {
        result?;
    }
    Ok(())
}

async fn fetch_one(ctx: &NodeContext, addr: std::net::SocketAddr, hash: ChunkHash) -> bool {
    let timeout = Duration::from_millis(BLOB_CALL_TIMEOUT_MS);
    let request = PeerRequest::BlobGet { hash };
    match ctx
        .cluster
        .peers
        .call_on::<BlobReply>(PeerLane::Blob, addr, &request, timeout)
        .await
    {
        Ok(BlobReply::Blob(bytes)) => {
            let blobs = ctx.blobs.clone();
            let stored = ctx
                // A fetched copy can be fetched again: no sync per chunk.
                .blocking(move || blobs.put_expected(&hash, &bytes, blobs::Durability::Later))
                .await;
            match stored {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => {
                    tracing::warn!(%addr, chunk = %hash, error = %e, "a replica sent a bad chunk");
                    false
                }
                Err(_) => false,
            }
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(%addr, chunk = %hash, error = %e, "chunk not fetched");
            false
        }
    }
}

fn maybe_collect_garbage(ctx: &Arc<NodeContext>) {
    use std::sync::atomic::Ordering;
    let now = ctx.now_ms();
    let last = ctx.sandboxes.last_gc_ms.load(Ordering::Relaxed);
    if now.saturating_sub(last) < BLOB_GC_INTERVAL_MS
        || ctx
            .sandboxes
            .last_gc_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        match collect_garbage(&ctx, Duration::from_millis(BLOB_GC_GRACE_MS)).await {
            Ok(done) => {
                tracing::debug!(
                    kept = done.kept,
                    removed = done.removed,
                    removed_bytes = done.removed_bytes,
                    "blob store collected"
                );
            }
            Err(e) => tracing::warn!(error = %e, "blob store not collected"),
        }
    });
}

/// Removes every chunk no committed workspace snapshot on this node refers to and that
/// is older than `grace`. Refuses (removing nothing) when a manifest cannot be read
/// here, since its chunks could not be told apart from garbage.
pub async fn collect_garbage(
    ctx: &Arc<NodeContext>,
    grace: Duration,
) -> Result<Collected, WorkspaceError> {
    let records = ctx.store.workspace_snapshots().map_err(io)?;
    let blobs = ctx.blobs.clone();
    blocking(ctx, move || {
        let mut referenced: HashSet<ChunkHash> = HashSet::new();
        for record in &records {
            let bytes = manifest::load_chunked(&blobs, &record.manifest)
                .map_err(io)?
                .ok_or_else(|| {
                    io(format!(
                        "manifest {} is not held here; nothing is collected until it is",
                        record.seq
                    ))
                })?;
            let manifest = Manifest::decode(&bytes).map_err(io)?;
            referenced.extend(record.manifest.iter().copied());
            referenced.extend(manifest.chunks().copied());
        }
        blobs.collect(&referenced, grace).map_err(io)
    })
    .await
}
