//! The apply alone: how many `CreateConversation` writes one replica's state machine
//! applies per second of CPU with nothing around it (no log, no Raft, no network, no
//! client), measured by `shoal-node bench-apply` (the node's own binary, allocator and
//! build; see `node/src/dev/apply_alone.rs`). Every replica applies every write, so
//! with `replicas` replicas on `cores` cores a cluster never acknowledges more than
//! `per_core_second x cores / replicas` writes a second, however the rest is built:
//! the figure that says how far the throughput target is from this machine.

use anyhow::Context;
use shoal_node::dev::apply_alone::ApplyAlone;
use std::path::Path;
use std::time::Duration;

/// Seconds the apply is measured.
pub const FLOOR_SECS: u64 = 3;
/// Bound of the whole run (store creation included).
const FLOOR_TIMEOUT: Duration = Duration::from_secs(60);

/// The most writes a second `replicas` replicas can apply together on `cores` cores.
pub fn ceiling(floor: &ApplyAlone, cores: f64, replicas: f64) -> f64 {
    floor.per_core_second * cores / replicas
}

/// Runs `bin bench-apply` on a new store under `dir` (which must not exist), with the
/// arms' users and `batch` writes per entry.
pub async fn measure(
    bin: &Path,
    dir: &Path,
    users: usize,
    batch: usize,
) -> anyhow::Result<ApplyAlone> {
    let batch = batch.clamp(1, shoal_node::raft::BATCH_COMMANDS_MAX);
    let mut command = tokio::process::Command::new(bin);
    command
        .arg("bench-apply")
        .arg("--dir")
        .arg(dir)
        .args(["--users", &users.to_string()])
        .args(["--batch", &batch.to_string()])
        .args(["--secs", &FLOOR_SECS.to_string()])
        .kill_on_drop(true);
    let output = tokio::time::timeout(FLOOR_TIMEOUT, command.output())
        .await
        .with_context(|| format!("bench-apply took longer than {FLOOR_TIMEOUT:?}"))?
        .context("starting shoal-node bench-apply")?;
    anyhow::ensure!(
        output.status.success(),
        "shoal-node bench-apply failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("reading bench-apply's answer {line:?}"))
}
