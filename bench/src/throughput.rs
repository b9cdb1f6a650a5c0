//! throughput: client writes acknowledged after a replicated, flushed Raft commit, on a
//! local 3-node cluster (real processes on loopback), spread over its shards.
//!
//! The write is `CreateConversation`: the node checks the request and proposes one
//! `ShardCommand::CreateConversation` to the shard of the caller's default workspace,
//! and answers once that entry is committed (on a quorum's flushed logs) and applied;
//! no actor is started and no agent runs. Users `tp-0`, `tp-1`, … have their default
//! workspaces hashed over the shards, so many users spread the load over them; each
//! user has one connection, which its workers share, and the connections go to the
//! nodes in turn (a request for a shard another node leads is forwarded once, as for
//! any client).
//!
//! A second 3-node arm connects each user to the node leading its default workspace's
//! shard, so no write is forwarded: what routing by shard (a gateway that knows the
//! leaders) would gain over one address.
//!
//! Baseline in the same run: the same load against one single-replica node
//! (`cluster.replicas = 1`: one local flush per commit, no peers).

pub mod floor;

use crate::common::{
    CpuMeter, Latency, append_result, dir_bytes, local_cluster, node_binary, spawn,
};
use crate::failover::wait_balanced;
use crate::plot::{self, Distribution};
use anyhow::Context;
use serde::Serialize;
use shoal_client::{AdminClient, Client, Profile};
use shoal_node::dev::LocalNode;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The target of the issue, in acknowledged writes per second.
pub const TARGET_WRITES_PER_SEC: f64 = 50_000.0;
/// Load before the measured window (agent probes, connections, first elections).
const WARMUP: Duration = Duration::from_secs(2);
/// How long a user token is valid, in seconds.
const TOKEN_TTL_SECS: u64 = 3_600;
/// How long a worker may wait for the last write it started after the window closed.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds of measured load per arm.
    pub secs: u64,
    /// Users, one connection each; their default workspaces spread over the shards.
    pub users: usize,
    /// Concurrent writes in flight (workers, over the users in turn).
    pub concurrency: usize,
}

/// One arm's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// `3 nodes x 3 replicas` or `1 node x 1 replica`.
    pub setup: String,
    /// Acknowledged writes in the window.
    pub writes: u64,
    /// Writes per second.
    pub writes_per_sec: f64,
    /// Client round trip of each write (request → acknowledged commit).
    pub latency: Latency,
    /// Writes that failed (counted, not in the latency).
    pub errors: u64,
    /// Distinct shards written to.
    pub shards: usize,
    /// Users whose connection went to the node leading their shard when the arm started
    /// (the others' writes are forwarded once).
    pub users_at_leader: usize,
    /// Share of one core the nodes used in the window.
    pub node_cores: f64,
    /// Share of one core this process (the clients) used in the window.
    pub client_cores: f64,
    /// Writes acknowledged from the start, warm-up and the users' first writes included.
    pub acked_total: u64,
    /// Bytes of every node's store once stopped.
    pub store_bytes: u64,
    /// A replica's store bytes per acknowledged write (`store_bytes` over the nodes, each
    /// holding a replica of every shard, over `acked_total`).
    pub store_bytes_per_write: f64,
    /// Writes acknowledged in each whole second of the window (for the plot).
    #[serde(skip)]
    pub per_second: Vec<u64>,
    /// The distribution of the client round trips (for the plot).
    #[serde(skip)]
    pub latency_cdf: Distribution,
}

fn profile_for(base: &Profile, node: &LocalNode, token: String) -> Profile {
    let mut p = base.clone();
    p.address = node.addr.to_string();
    p.token = token;
    p
}

/// Runs both arms and prints the table.
pub async fn run(options: &Options, results: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        options.users > 0 && options.concurrency > 0 && options.secs > 0,
        "throughput needs at least one user, one writer and one second"
    );
    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;
    let setups = [
        ("3 nodes x 3 replicas", 3, "cluster", Connect::InTurn),
        ("3 x 3, at the leader", 3, "routed", Connect::ToLeader),
        ("1 node x 1 replica", 1, "single", Connect::InTurn),
    ];
    let mut arms = Vec::new();
    for (setup, nodes, name, connect) in setups {
        let arm_dir = dir.path().join(name);
        let layout = local_cluster(&arm_dir, nodes, &bin, |_| {})?;
        arms.push(run_arm(setup, &bin, &layout, &arm_dir, options, connect).await?);
    }
    let [replicated, routed, baseline]: [Arm; 3] = arms
        .try_into()
        .map_err(|_| anyhow::anyhow!("three arms were run"))?;
    // Shards' entries carry about as many commands as there are writers per shard.
    let batch = options.concurrency.div_ceil(replicated.shards.max(1));
    eprintln!("throughput: the apply alone, {batch} writes per entry (shoal-node bench-apply)");
    let floor = floor::measure(&bin, &dir.path().join("floor"), options.users, batch).await?;
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let ceiling = floor::ceiling(&floor, cores, 3.0);
    println!(
        "throughput: CreateConversation (one replicated, flushed Raft commit each), {} users, {} in flight, {} s",
        options.users, options.concurrency, options.secs
    );
    println!(
        "{:>22} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9} {:>8}",
        "setup",
        "writes",
        "per s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "shards",
        "node cpu",
        "cli cpu",
        "B/write"
    );
    for arm in [&replicated, &routed, &baseline] {
        println!(
            "{:>22} {:>9} {:>8.0} {:>8.2} {:>8.2} {:>8.1} {:>6} {:>7} {:>8.0}% {:>8.0}% {:>8.0}",
            arm.setup,
            arm.writes,
            arm.writes_per_sec,
            arm.latency.p50_ms,
            arm.latency.p99_ms,
            arm.latency.max_ms,
            arm.errors,
            arm.shards,
            arm.node_cores * 100.0,
            arm.client_cores * 100.0,
            arm.store_bytes_per_write
        );
    }
    let ratio = replicated.writes_per_sec / baseline.writes_per_sec.max(1e-9);
    println!(
        "replicated / single-replica: {ratio:.2}x the writes per second; target {TARGET_WRITES_PER_SEC:.0}/s: {}",
        if replicated.writes_per_sec >= TARGET_WRITES_PER_SEC {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "users at their shard's leader ({} of {}): {:.2}x the writes per second of users at the nodes in turn ({} of {} at their leader, the rest forwarded)",
        routed.users_at_leader,
        options.users,
        routed.writes_per_sec / replicated.writes_per_sec.max(1e-9),
        replicated.users_at_leader,
        options.users
    );
    // CPU per write: the replicas' three applies against all the nodes spent.
    let apply_share = (3.0 / floor.per_core_second)
        / (replicated.node_cores / replicated.writes_per_sec.max(1e-9));
    println!(
        "the apply alone (no log, Raft, network or client; {} writes per entry): {:.0} writes per CPU-second, \
         so 3 replicas on {cores:.0} cores apply at most {ceiling:.0}/s; in the 3-node arm it is {:.0}% of the nodes' CPU per write",
        floor.batch,
        floor.per_core_second,
        apply_share * 100.0
    );
    let path = append_result(
        results,
        "throughput",
        serde_json::json!({
            "secs": options.secs,
            "users": options.users,
            "concurrency": options.concurrency,
            "replicated": replicated,
            "replicated_at_leader": routed,
            "single_replica": baseline,
            "ratio": ratio,
            "apply_alone": floor,
            "apply_ceiling_3_replicas": ceiling,
            "apply_share_of_node_cpu": apply_share,
            "target_writes_per_sec": TARGET_WRITES_PER_SEC,
        }),
    )?;
    println!("results appended to {}", path.display());
    plot_arms(results, options, [&replicated, &routed, &baseline]);
    Ok(())
}

/// Writes per second over the window and the round-trip CDF, every arm on each.
fn plot_arms(results: &Path, options: &Options, arms: [&Arm; 3]) {
    let setup = format!("{} users, {} in flight", options.users, options.concurrency);
    // Each whole second's count, drawn at the middle of its second.
    let seconds = arms.map(|arm| {
        let points = arm.per_second.iter().enumerate();
        points
            .map(|(s, n)| (s as f64 + 0.5, *n as f64))
            .collect::<Vec<_>>()
    });
    plot::save(results, "throughput", |path| {
        plot::over_time(
            path,
            &format!("throughput: acknowledged CreateConversation writes, {setup}"),
            "seconds into the measured window",
            "writes acknowledged per second",
            &arms
                .iter()
                .zip(&seconds)
                .map(|(arm, points)| (arm.setup.as_str(), points.as_slice()))
                .collect::<Vec<_>>(),
        )
    });
    plot::save(results, "throughput-latency", |path| {
        plot::latency_cdf(
            path,
            &format!("throughput: client round trip of each write, {setup}"),
            "request -> acknowledged commit (ms)",
            &arms
                .iter()
                .map(|arm| (arm.setup.as_str(), &arm.latency_cdf))
                .collect::<Vec<_>>(),
            &[],
        )
    });
}

/// Which node each user's connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connect {
    /// The nodes in turn, as a client that knows one address does: a write reaching a
    /// node that does not lead its shard is forwarded once.
    InTurn,
    /// The node leading the shard of the user's default workspace when the arm starts
    /// (as a gateway routing by shard would): no write is forwarded while leaders stay.
    ToLeader,
}

/// Starts `layout`, loads it for the warm-up and the window, and stops it.
async fn run_arm(
    setup: &str,
    bin: &Path,
    layout: &[LocalNode],
    dir: &Path,
    options: &Options,
    connect: Connect,
) -> anyhow::Result<Arm> {
    eprintln!("throughput: starting {setup}");
    let mut children = Vec::new();
    for node in layout {
        children.push(spawn(bin, node).await?);
    }
    let base = Profile::load(&dir.join("profile.toml"))?;
    if layout.len() > 1 {
        wait_balanced(&base, layout.len()).await?;
    }
    let admin = AdminClient::connect(&base).await?;
    let placement = admin.shards().await?;
    let shard_count = u16::try_from(placement.len()).context("too many shards")?;
    let leaders: std::collections::BTreeMap<u16, String> = placement
        .into_iter()
        .filter_map(|s| Some((s.shard, s.leader?)))
        .collect();
    let mut clients = Vec::new();
    let mut at_leader = 0;
    for user in 0..options.users {
        let user_id = shoal_protocol::UserId(format!("tp-{user}"));
        let shard = shoal_node::context::default_workspace_of(&user_id, shard_count).shard;
        let token = admin.issue_token(user_id, TOKEN_TTL_SECS).await?;
        let leader = leaders
            .get(&shard.0)
            .and_then(|name| layout.iter().find(|n| n.name == *name));
        let node = match (connect, leader) {
            (Connect::ToLeader, Some(leader)) => leader,
            _ => &layout[user % layout.len()],
        };
        if leader.is_some_and(|leader| leader.name == node.name) {
            at_leader += 1;
        }
        clients.push(Client::connect(&profile_for(&base, node, token)).await?);
    }
    let acked_total = Arc::new(AtomicU64::new(0));
    let shards: std::collections::BTreeSet<u16> = {
        let mut set = std::collections::BTreeSet::new();
        for client in &clients {
            // The user's first write names the shard its workspace is in.
            set.insert(client.create_conversation(None, None).await?.id.shard.0);
            acked_total.fetch_add(1, Ordering::Relaxed);
        }
        set
    };
    let pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // When the measured window started: set once the warm-up is over.
    let window_start = Arc::new(OnceLock::<Instant>::new());
    // Writes acknowledged in each whole second of the window.
    let per_second: Arc<Vec<AtomicU64>> =
        Arc::new((0..options.secs).map(|_| AtomicU64::new(0)).collect());
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..options.concurrency {
        let client = clients[worker % clients.len()].clone();
        let (stop, window_start) = (stop.clone(), window_start.clone());
        let (per_second, acked_total) = (per_second.clone(), acked_total.clone());
        workers.spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = client.create_conversation(None, None).await.is_ok();
                if ok {
                    acked_total.fetch_add(1, Ordering::Relaxed);
                }
                // Only writes acknowledged inside the window count.
                let window = window_start.get().filter(|_| !stop.load(Ordering::Relaxed));
                let Some(window) = window else { continue };
                if ok {
                    let us = started.elapsed().as_micros();
                    latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    let second = window.elapsed().as_secs() as usize;
                    if let Some(count) = per_second.get(second) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    errors += 1;
                }
            }
            (latencies_us, errors)
        });
    }
    eprintln!(
        "throughput: {setup}: {} writers over {} users ({} shards; {at_leader} users connected to their shard's leader); warming up",
        options.concurrency,
        options.users,
        shards.len()
    );
    tokio::time::sleep(WARMUP).await;
    let nodes_cpu = CpuMeter::start(&pids);
    let client_cpu = CpuMeter::start(&[std::process::id()]);
    let window = Instant::now();
    let _ = window_start.set(window);
    tokio::time::sleep(Duration::from_secs(options.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = window.elapsed().as_secs_f64();
    let (node_cores, client_cores) = (nodes_cpu.cores(), client_cpu.cores());
    let mut all = Vec::new();
    let mut errors = 0;
    tokio::time::timeout(DRAIN_GRACE, async {
        while let Some(done) = workers.join_next().await {
            let (latencies, failed) = done.context("a writer panicked")?;
            all.extend(latencies);
            errors += failed;
        }
        anyhow::Ok(())
    })
    .await
    .context("writers did not finish their last write")??;
    for mut child in children {
        let _ = child.kill().await;
    }
    let store_bytes: u64 = layout
        .iter()
        .map(|node| dir_bytes(&node.data_dir.join("store")))
        .sum();
    let acked_total = acked_total.load(Ordering::Relaxed);
    let writes = all.len() as u64;
    eprintln!("throughput: {setup}: {writes} writes in {elapsed:.1} s");
    let latency = Latency::from_micros(&mut all);
    Ok(Arm {
        setup: setup.to_owned(),
        writes,
        writes_per_sec: writes as f64 / elapsed,
        latency,
        errors,
        shards: shards.len(),
        users_at_leader: at_leader,
        node_cores,
        client_cores,
        acked_total,
        store_bytes,
        store_bytes_per_write: store_bytes as f64 / layout.len() as f64 / acked_total.max(1) as f64,
        per_second: per_second
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect(),
        latency_cdf: Distribution::from_sorted_micros(&all),
    })
}
