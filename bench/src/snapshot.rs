//! `snapshot`: what a workspace snapshot costs at a turn end, against copying the same
//! tree file by file in the same run.
//!
//! A tree of `files` files of `file_bytes` each (distinct contents, 100 per directory) is
//! made in a temporary directory. Then, each timed:
//! * **copy** (baseline): `std::fs::copy` of every file into an empty tree;
//! * **first snapshot**: walk, read and hash everything, store every chunk;
//! * **unchanged**: the turn-end case when the agent changed nothing: walk and compare
//!   with the last manifest, read nothing;
//! * **one file changed**: the same with one file rewritten;
//! * **restore**: the tree rebuilt from the manifest into an empty directory (a new
//!   host after a failover, chunks already fetched).
//!
//! Pushing chunks to replicas and the Raft commit of the record are not in these figures
//! (they are network round trips: see the failover scenario); this measures the disk
//! and hashing work a node does per snapshot.

use crate::common::append_result;
use crate::plot;
use anyhow::Context;
use serde_json::json;
use shoal_node::workspace::blobs::BlobStore;
use shoal_node::workspace::manifest::{self, ScanLimits};
use std::path::Path;
use std::time::{Duration, Instant};

/// Scenario options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files in the tree.
    pub files: usize,
    /// Bytes per file.
    pub file_bytes: usize,
}

fn make_tree(root: &Path, options: &Options) -> anyhow::Result<()> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..options.files {
        let dir = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        // Distinct contents (an xorshift stream), so no two files share chunks.
        let mut bytes = Vec::with_capacity(options.file_bytes);
        while bytes.len() < options.file_bytes {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.extend_from_slice(&seed.to_le_bytes());
        }
        bytes.truncate(options.file_bytes);
        std::fs::write(dir.join(format!("f{i:06}.bin")), bytes)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let started = Instant::now();
    let value = f()?;
    Ok((value, started.elapsed()))
}

/// Runs the scenario and appends its record under `results`.
pub fn run(options: &Options, results: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let tree = dir.path().join("tree");
    let total_mb = (options.files * options.file_bytes) as f64 / 1e6;
    println!(
        "snapshot: {} files of {} bytes ({total_mb:.1} MB)",
        options.files, options.file_bytes
    );
    make_tree(&tree, options)?;
    let limits = ScanLimits {
        entries_max: u64::MAX,
        bytes_max: u64::MAX,
    };
    let blobs = BlobStore::new(dir.path().join("blobs"));

    let copy_dir = dir.path().join("copy");
    std::fs::create_dir_all(&copy_dir)?;
    let ((), copy) = timed(|| copy_tree(&tree, &copy_dir))?;
    let (first, first_time) = timed(|| Ok(manifest::scan(&tree, None, &blobs, limits)?))?;
    let rescan = || {
        Ok(manifest::scan(
            &tree,
            Some(&first.manifest),
            &blobs,
            limits,
        )?)
    };
    let (unchanged, unchanged_time) = timed(rescan)?;
    anyhow::ensure!(
        unchanged.files_read == 0,
        "an unchanged tree was read again"
    );
    let changed = tree.join("d0000/f000000.bin");
    std::fs::write(&changed, vec![1u8; options.file_bytes])?;
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .append(true)
        .open(&changed)?
        .set_modified(later)?;
    let (one, one_time) = timed(rescan)?;
    anyhow::ensure!(
        one.files_read == 1,
        "{} files read for one change",
        one.files_read
    );
    let restored_dir = dir.path().join("restored");
    let (_, restore_time) = timed(|| Ok(manifest::restore(&restored_dir, &one.manifest, &blobs)?))?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |d: Duration| d.as_secs_f64() / copy.as_secs_f64().max(1e-9);
    println!("| operation | ms | vs copy |");
    println!("|---|---:|---:|");
    println!("| copy (baseline) | {:.1} | 1.00× |", ms(copy));
    for (name, d) in [
        ("first snapshot", first_time),
        ("unchanged (turn end)", unchanged_time),
        ("one file changed", one_time),
        ("restore", restore_time),
    ] {
        println!("| {name} | {:.1} | {:.2}× |", ms(d), ratio(d));
    }
    let path = append_result(
        results,
        "snapshot",
        json!({
            "files": options.files,
            "file_bytes": options.file_bytes,
            "copy_ms": ms(copy),
            "first_ms": ms(first_time),
            "unchanged_ms": ms(unchanged_time),
            "one_changed_ms": ms(one_time),
            "restore_ms": ms(restore_time),
        }),
    )?;
    println!("results appended to {}", path.display());
    plot::save(results, "snapshot", |path| {
        plot::bars(
            path,
            &format!(
                "snapshot: {} files of {} bytes, against copying the tree",
                options.files, options.file_bytes
            ),
            "time (ms)",
            "ms",
            &[
                ("copy (baseline)", ms(copy)),
                ("first snapshot", ms(first_time)),
                ("unchanged (turn end)", ms(unchanged_time)),
                ("one file changed", ms(one_time)),
                ("restore", ms(restore_time)),
            ],
            Some(0),
        )
    });
    Ok(())
}

/// The cluster half: the latency of a turn (send → `Done`) in a local 3-node cluster when
/// the agent's workspace gained `files` new files of 4 KiB since the last turn, against
/// turns that changed nothing but the agent's own session file (the baseline). The
/// difference is the turn-end snapshot: walk, hash, push to the replicas, commit.
pub async fn run_cluster(files: usize, results: &Path) -> anyhow::Result<()> {
    use crate::common::{local_cluster, node_binary, spawn};
    use futures::StreamExt;
    use shoal_client::{AdminClient, Client, Profile};
    use shoal_protocol::transcript::Event;

    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;
    let layout = local_cluster(&dir.path().join("cluster"), 3, &bin, |_| {})?;
    let profile = Profile::load(&dir.path().join("cluster").join("profile.toml"))?;
    let mut children = Vec::new();
    for node in &layout {
        children.push(spawn(&bin, node).await?);
    }
    crate::failover::wait_balanced(&profile, layout.len()).await?;
    let client = Client::connect(&profile).await?;
    let conv = client.create_conversation(None, None).await?;
    let turn = |text: &'static str| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let mut stream = client.send(conv.id, text).await?;
            while let Some(frame) = stream.next().await {
                if matches!(frame?.event, Event::Done { .. }) {
                    return Ok::<Duration, anyhow::Error>(started.elapsed());
                }
            }
            anyhow::bail!("the turn ended without done")
        }
    };
    turn("warm up").await?;
    let mut baseline = Vec::new();
    for _ in 0..5 {
        baseline.push(turn("unchanged").await?);
    }
    baseline.sort();
    let base = baseline[baseline.len() / 2];
    // Files appear in the leader's copy of the workspace, as if the agent wrote them.
    let admin = AdminClient::connect(&profile).await?;
    let leader = admin.shards().await?[usize::from(conv.id.shard.0)]
        .leader
        .clone()
        .context("the shard has no leader")?;
    let host = layout
        .iter()
        .find(|n| n.name == leader)
        .context("the leader is not in the layout")?;
    let bulk = host
        .data_dir
        .join("workspaces")
        .join(conv.workspace.to_string())
        .join("work/bulk");
    make_tree(
        &bulk,
        &Options {
            files,
            file_bytes: 4096,
        },
    )?;
    let with_files = turn("after the files").await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("snapshot in a 3-node cluster: a turn after {files} new files of 4 KiB");
    println!("| turn | ms | vs unchanged |");
    println!("|---|---:|---:|");
    println!(
        "| unchanged (median of 5, baseline) | {:.1} | 1.00× |",
        ms(base)
    );
    println!(
        "| after {files} new files | {:.1} | {:.1}× |",
        ms(with_files),
        with_files.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    let path = append_result(
        results,
        "snapshot",
        json!({
            "cluster_nodes": 3,
            "files": files,
            "file_bytes": 4096,
            "turn_unchanged_ms": ms(base),
            "turn_after_files_ms": ms(with_files),
        }),
    )?;
    println!("results appended to {}", path.display());
    plot::save(results, "snapshot-cluster", |path| {
        plot::bars(
            path,
            "snapshot in a 3-node cluster: a turn, send -> done",
            "turn time (ms)",
            "ms",
            &[
                ("unchanged (median of 5, baseline)", ms(base)),
                (&format!("after {files} new files of 4 KiB"), ms(with_files)),
            ],
            Some(0),
        )
    });
    drop(children);
    Ok(())
}
