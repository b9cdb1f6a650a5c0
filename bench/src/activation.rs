//! activation: what passivated conversations cost a single-replica node (one real node
//! process on loopback).
//!
//! * A node holding `--conversations` passivated conversations, stored before it starts
//!   by `shoal-node bench-seed` (the shard state machine's own `CreateConversation` in
//!   batches, not one client round trip each): its start-up time (spawn → ready line)
//!   and resident memory, against the same node with an empty store in the same run.
//! * On that node, `get_conversation` (which needs the conversation's actor) on
//!   `--samples` conversations: first activation (never active), then the same request
//!   on the active actor (the baseline: the round trip without activation), then
//!   reactivation after admin `EvictActor` passivated them.
//! * Resident memory added per active idle conversation actor: `--actors` more
//!   conversations activated, VmRSS before and after.

use crate::common::{
    Latency, append_result, dir_bytes, local_cluster, node_binary, poll_until, rss_bytes,
};
use crate::plot::{self, Distribution};
use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use shoal_client::{AdminClient, Client, Profile};
use shoal_protocol::ConversationId;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The target of the issue for reactivation, p99 in ms.
pub const TARGET_REACTIVATION_P99_MS: f64 = 2.0;
/// Users the seeded conversations are spread over (`bench-0` …).
const SEED_USERS: u32 = 1_000;
/// How long a user token is valid, in seconds.
const TOKEN_TTL_SECS: u64 = 3_600;
/// Activations in flight while measuring memory.
const ACTIVATE_CONCURRENCY: usize = 16;
/// Pause before reading a node's resident memory, so start-up or activation work done
/// in the background (allocations freed, caches filled) has settled.
const RSS_SETTLE: Duration = Duration::from_secs(1);
/// Bound of seeding, per million conversations.
const SEED_TIMEOUT_PER_MILLION: Duration = Duration::from_secs(900);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Passivated conversations stored in the node.
    pub conversations: u64,
    /// Conversations whose (re)activation is timed.
    pub samples: usize,
    /// Conversations activated to measure memory per actor.
    pub actors: usize,
}

/// A node start.
#[derive(Debug, Clone, Serialize)]
struct Start {
    conversations: u64,
    ready_secs: f64,
    rss_bytes: u64,
    store_bytes: u64,
}

/// Starts `node`, timing it to its ready line; reads its memory once settled.
async fn start(
    bin: &Path,
    node: &shoal_node::dev::LocalNode,
    conversations: u64,
) -> anyhow::Result<(tokio::process::Child, Start)> {
    let began = Instant::now();
    let child = crate::common::spawn(bin, node).await?;
    let ready_secs = began.elapsed().as_secs_f64();
    tokio::time::sleep(RSS_SETTLE).await;
    let start = Start {
        conversations,
        ready_secs,
        rss_bytes: rss_bytes(child.id().unwrap_or(0)),
        store_bytes: dir_bytes(&node.data_dir.join("store")),
    };
    eprintln!(
        "activation: node with {conversations} conversations ready in {ready_secs:.2} s, {} MiB resident",
        start.rss_bytes >> 20
    );
    Ok((child, start))
}

/// Runs `shoal-node bench-seed` on `config` (the node is not running).
async fn seed(bin: &Path, config: &Path, conversations: u64) -> anyhow::Result<f64> {
    eprintln!("activation: storing {conversations} passivated conversations (bench-seed)");
    let began = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .arg("bench-seed")
        .arg("--config")
        .arg(config)
        .arg("--conversations")
        .arg(conversations.to_string())
        .arg("--users")
        .arg(SEED_USERS.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting shoal-node bench-seed")?;
    let bound = SEED_TIMEOUT_PER_MILLION.mul_f64((conversations as f64 / 1e6).max(0.1));
    let status = tokio::time::timeout(bound, child.wait())
        .await
        .with_context(|| format!("bench-seed took longer than {bound:?}"))??;
    anyhow::ensure!(status.success(), "bench-seed failed: {status}");
    Ok(began.elapsed().as_secs_f64())
}

/// Times `get_conversation` on each of `ids`, one after the other: the summary and the
/// distribution (for the plot).
async fn timed_gets(
    clients: &[Client],
    ids: &[(usize, ConversationId)],
) -> anyhow::Result<(Latency, Distribution)> {
    let mut micros = Vec::with_capacity(ids.len());
    for (owner, id) in ids {
        let began = Instant::now();
        clients[*owner].get_conversation(*id).await?;
        micros.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    let latency = Latency::from_micros(&mut micros);
    Ok((latency, Distribution::from_sorted_micros(&micros)))
}

/// Conversation actors `admin`'s node hosts among `ids`.
async fn active_among(admin: &AdminClient, ids: &BTreeSet<String>) -> Option<usize> {
    let actors = admin.actors().await.ok()?;
    Some(
        actors
            .iter()
            .filter(|a| a.kind == "conversation" && ids.contains(&a.key))
            .count(),
    )
}

/// Evicts `ids` and waits until none of them has an actor.
async fn passivate(admin: &AdminClient, ids: &[(usize, ConversationId)]) -> anyhow::Result<()> {
    for (_, id) in ids {
        admin.evict(*id).await?;
    }
    let keys: BTreeSet<String> = ids.iter().map(|(_, id)| id.to_string()).collect();
    poll_until("evicted actors stopped", || async {
        (active_among(admin, &keys).await? == 0).then_some(())
    })
    .await
}

/// Runs the scenario and prints the table.
pub async fn run(options: &Options, results: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.conversations as usize >= options.samples + options.actors,
        "--conversations must be at least --samples + --actors"
    );
    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;

    let empty_layout = local_cluster(&dir.path().join("empty"), 1, &bin, |_| {})?;
    let (mut empty_node, empty) = start(&bin, &empty_layout[0], 0).await?;
    let _ = empty_node.kill().await;

    let layout = local_cluster(&dir.path().join("seeded"), 1, &bin, |_| {})?;
    let seed_secs = seed(&bin, &layout[0].config_path, options.conversations).await?;
    let (mut node, seeded) = start(&bin, &layout[0], options.conversations).await?;
    let pid = node.id().unwrap_or(0);
    let base = Profile::load(&dir.path().join("seeded").join("profile.toml"))?;
    let admin = AdminClient::connect(&base).await?;

    // Conversations to activate, from the seeded users' lists.
    let wanted = options.samples + options.actors;
    let mut clients: Vec<Client> = Vec::new();
    let mut ids: Vec<(usize, ConversationId)> = Vec::new();
    for user in 0..SEED_USERS {
        if ids.len() >= wanted {
            break;
        }
        let token = admin
            .issue_token(
                shoal_protocol::UserId(format!("bench-{user}")),
                TOKEN_TTL_SECS,
            )
            .await?;
        let mut profile = base.clone();
        profile.token = token;
        let client = Client::connect(&profile).await?;
        let listed = client
            .list_conversations(shoal_protocol::client::LIST_LIMIT_MAX)
            .await?;
        ids.extend(listed.iter().map(|c| (clients.len(), c.id)));
        clients.push(client);
    }
    anyhow::ensure!(
        ids.len() >= wanted,
        "the seeded node lists {} conversations of {wanted} needed",
        ids.len()
    );
    let (samples, rest) = ids.split_at(options.samples);
    let for_memory = &rest[..options.actors];

    eprintln!("activation: timing {} activations", samples.len());
    let (first, first_cdf) = timed_gets(&clients, samples).await?;
    let (warm, warm_cdf) = timed_gets(&clients, samples).await?;
    passivate(&admin, samples).await?;
    let (reactivation, reactivation_cdf) = timed_gets(&clients, samples).await?;
    passivate(&admin, samples).await?;

    eprintln!(
        "activation: activating {} actors for memory",
        for_memory.len()
    );
    tokio::time::sleep(RSS_SETTLE).await;
    let rss_before = rss_bytes(pid);
    let failed = futures::stream::iter(for_memory.iter().map(|(owner, id)| {
        let client = clients[*owner].clone();
        let id = *id;
        async move { client.get_conversation(id).await.is_err() }
    }))
    .buffer_unordered(ACTIVATE_CONCURRENCY)
    .filter(|failed| futures::future::ready(*failed))
    .count()
    .await;
    anyhow::ensure!(failed == 0, "{failed} activations failed");
    let keys: BTreeSet<String> = for_memory.iter().map(|(_, id)| id.to_string()).collect();
    let active = poll_until("activated actors listed", || async {
        active_among(&admin, &keys).await
    })
    .await?;
    tokio::time::sleep(RSS_SETTLE).await;
    let rss_after = rss_bytes(pid);
    let per_actor = rss_after.saturating_sub(rss_before) as f64 / for_memory.len().max(1) as f64;
    let _ = node.kill().await;

    print_table(
        options,
        &empty,
        &seeded,
        seed_secs,
        [&first, &warm, &reactivation],
    );
    println!(
        "memory per active idle conversation actor: {:.0} B ({} activated, {} listed active; VmRSS {} -> {} MiB)",
        per_actor,
        for_memory.len(),
        active,
        rss_before >> 20,
        rss_after >> 20
    );
    let path = append_result(
        results,
        "activation",
        serde_json::json!({
            "empty": empty,
            "seeded": seeded,
            "seed_secs": seed_secs,
            "first_activation": first,
            "active_get": warm,
            "reactivation": reactivation,
            "reactivation_target_p99_ms": TARGET_REACTIVATION_P99_MS,
            "actors": for_memory.len(),
            "bytes_per_active_actor": per_actor,
        }),
    )?;
    println!("results appended to {}", path.display());
    plot::save(results, "activation", |path| {
        plot::latency_cdf(
            path,
            &format!(
                "activation: get_conversation on a node holding {} passivated conversations",
                options.conversations
            ),
            "get_conversation round trip (ms)",
            &[
                ("first activation", &first_cdf),
                ("actor active (baseline)", &warm_cdf),
                ("reactivation after evict", &reactivation_cdf),
            ],
            &[(
                &format!("reactivation p99 target {TARGET_REACTIVATION_P99_MS} ms"),
                TARGET_REACTIVATION_P99_MS,
            )],
        )
    });
    Ok(())
}

fn print_table(
    options: &Options,
    empty: &Start,
    seeded: &Start,
    seed_secs: f64,
    [first, warm, reactivation]: [&Latency; 3],
) {
    println!(
        "activation: a single-replica node holding {} passivated conversations (stored by bench-seed in {seed_secs:.1} s)",
        options.conversations
    );
    println!(
        "{:>14} {:>10} {:>10} {:>10}",
        "conversations", "ready s", "RSS MiB", "store MiB"
    );
    for s in [empty, seeded] {
        println!(
            "{:>14} {:>10.2} {:>10.1} {:>10.1}",
            s.conversations,
            s.ready_secs,
            s.rss_bytes as f64 / 1048576.0,
            s.store_bytes as f64 / 1048576.0
        );
    }
    println!(
        "{:>14} {:>10.2}x {:>9.2}x",
        "seeded/empty",
        seeded.ready_secs / empty.ready_secs.max(1e-9),
        seeded.rss_bytes as f64 / empty.rss_bytes.max(1) as f64
    );
    println!(
        "get_conversation, {} conversations one at a time (ms):",
        options.samples
    );
    println!("{:>30} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
    for (what, l) in [
        ("first activation", first),
        ("actor active (baseline)", warm),
        ("reactivation after evict", reactivation),
    ] {
        println!(
            "{what:>30} {:>8.2} {:>8.2} {:>8.2}",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    println!(
        "reactivation p99 {:.2} ms: {:.1}x the active baseline; target <= {TARGET_REACTIVATION_P99_MS} ms: {}",
        reactivation.p99_ms,
        reactivation.p99_ms / warm.p99_ms.max(1e-9),
        if reactivation.p99_ms <= TARGET_REACTIVATION_P99_MS {
            "met"
        } else {
            "MISSED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_adds_up_nested_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("a")).expect("mkdir");
        std::fs::write(dir.path().join("x"), [0u8; 10]).expect("write");
        std::fs::write(dir.path().join("a").join("y"), [0u8; 5]).expect("write");
        assert_eq!(dir_bytes(dir.path()), 15);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
