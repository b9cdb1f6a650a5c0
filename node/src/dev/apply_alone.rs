//! `shoal-node bench-apply`: how many `CreateConversation` writes one replica's state
//! machine applies per second of CPU, with nothing around it (no log, no Raft, no
//! network, no client). `shoal-bench throughput` runs it after its cluster arms: every
//! replica applies every write, so `replicas` replicas on `cores` cores never
//! acknowledge more than `per_core_second x cores / replicas` writes a second, however
//! the rest is built.
//!
//! It runs in this binary (its allocator and build, as a node's apply), on a new store
//! in a directory that must not exist yet, through
//! [`StateMachineStore::apply_committed`]: the writes, the redo record and "applied up
//! to", as a replica applies a committed entry. The writes are those of the
//! throughput arms: users `tp-0`, `tp-1`, … creating conversations in their default
//! workspaces, `batch` to an entry.

use super::seed::create_command;
use crate::raft::BATCH_COMMANDS_MAX;
use crate::raft::storage::{self, StateMachineStore};
use crate::shard::store::Store;
use serde::{Deserialize, Serialize};
use shoal_protocol::{RequestId, ShardId, UserId, WorkspaceId};
use std::path::Path;
use std::time::{Duration, Instant};

/// The longest run allowed.
pub const APPLY_SECS_MAX: u64 = 60;
/// Most users the writes are spread over.
pub const APPLY_USERS_MAX: usize = 100_000;

/// What the apply alone did (printed as one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyAlone {
    /// Writes applied.
    pub writes: u64,
    /// Commands per entry.
    pub batch: usize,
    /// Wall seconds it ran.
    pub secs: f64,
    /// Share of one core the process used meanwhile (sled's threads included).
    pub cores: f64,
    /// Writes applied per second of CPU.
    pub per_core_second: f64,
}

/// One shard's state machine and the users whose default workspace it holds (with
/// that workspace, derived once rather than hashed again in the timed loop).
struct Shard {
    id: ShardId,
    sm: StateMachineStore,
    users: Vec<(UserId, WorkspaceId)>,
    next_index: u64,
}

/// The CPU seconds process `pid` has used so far (user and system, every thread; 0 if
/// `/proc` cannot tell). `shoal-bench` measures its processes with it too.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0; utime is 11, stime 12.
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = get(11).unwrap_or(0) + get(12).unwrap_or(0);
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Applies batches of `batch` creates by `users` users for `secs` seconds in a new
/// store under `dir` (which must not exist).
pub async fn run(
    dir: &Path,
    shard_count: u16,
    users: usize,
    batch: usize,
    secs: u64,
) -> Result<ApplyAlone, String> {
    if !(1..=1024).contains(&shard_count) {
        return Err(format!(
            "--shards must be from 1 to 1024, not {shard_count}"
        ));
    }
    if !(1..=APPLY_SECS_MAX).contains(&secs) {
        return Err(format!(
            "--secs must be from 1 to {APPLY_SECS_MAX}, not {secs}"
        ));
    }
    if !(1..=APPLY_USERS_MAX).contains(&users) {
        return Err(format!(
            "--users must be from 1 to {APPLY_USERS_MAX}, not {users}"
        ));
    }
    if !(1..=BATCH_COMMANDS_MAX).contains(&batch) {
        return Err(format!(
            "--batch must be from 1 to {BATCH_COMMANDS_MAX}, not {batch}"
        ));
    }
    if dir.exists() {
        return Err(format!(
            "{} exists; bench-apply writes a new store, give it a directory that does not exist",
            dir.display()
        ));
    }
    let store = Store::open(dir, shard_count).map_err(|e| e.to_string())?;
    let mut shards: Vec<Shard> = Vec::new();
    for user in 0..users {
        let user = UserId(format!("tp-{user}"));
        let workspace = crate::context::default_workspace_of(&user, shard_count);
        let shard = workspace.shard;
        let user = (user, workspace);
        match shards.iter_mut().find(|s| s.id == shard) {
            Some(s) => s.users.push(user),
            None => {
                let (_log, sm) = storage::open(&store, shard)
                    .map_err(|e| format!("opening shard {shard}: {e}"))?;
                shards.push(Shard {
                    id: shard,
                    sm,
                    users: vec![user],
                    next_index: 1,
                });
            }
        }
    }
    let at_ms = crate::context::wall_clock_ms();
    let cpu_before = cpu_secs(std::process::id());
    let started = Instant::now();
    let mut writes = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        for shard in &mut shards {
            let commands = (0..batch)
                .map(|i| {
                    let (owner, workspace) =
                        &shard.users[(shard.next_index as usize + i) % shard.users.len()];
                    let request_id = RequestId(rand::random());
                    create_command(owner.clone(), *workspace, "demo".into(), at_ms, request_id)
                })
                .collect();
            let applied = shard
                .sm
                .apply_committed(1, shard.next_index, commands)
                .await
                .map_err(|e| format!("applying to shard {}: {e}", shard.id))?;
            if let Some(Err(rejection)) = applied.results.iter().find(|r| r.is_err()) {
                return Err(format!("the state machine refused a create: {rejection}"));
            }
            shard.next_index += 1;
            writes += applied.results.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cores = (cpu_secs(std::process::id()) - cpu_before) / secs;
    Ok(ApplyAlone {
        writes,
        batch,
        secs,
        cores,
        per_core_second: writes as f64 / (secs * cores).max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run applies creates that the state machine accepts, and bad arguments
    /// are refused with the flag and its bounds, before anything is written.
    #[tokio::test]
    async fn the_apply_alone_applies_creates_and_refuses_bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let done = run(&store, 8, 20, 4, 1).await.unwrap();
        assert!(done.writes > 0 && done.writes % 4 == 0, "{done:?}");
        assert_eq!(done.batch, 4);
        let again = run(&store, 8, 20, 4, 1).await.unwrap_err();
        assert!(again.contains("exists"), "{again}");
        let other = dir.path().join("other");
        for (users, batch, secs, flag) in [
            (0, 4, 1, "--users"),
            (1, 65, 1, "--batch"),
            (1, 4, 0, "--secs"),
        ] {
            let e = run(&other, 8, users, batch, secs).await.unwrap_err();
            assert!(e.contains(flag), "{e}");
        }
        assert!(!other.exists(), "nothing written for bad arguments");
    }
}
