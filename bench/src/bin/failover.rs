//! Failover figures of a local 3-node cluster (real processes on loopback):
//!
//! * failover time: kill -9 of a shard's leader → first acknowledged write on the new
//!   leader, over `--trials` trials (p50/p99), and as a ratio to the configured
//!   `election_timeout_max_ms` (a baseline independent of machine speed);
//! * detection time: kill -9 → every surviving node's gossip marks the node down;
//! * idle CPU of the 3-node cluster with 64 shards, against one idle single-replica
//!   node with the same 64 shards measured in the same run.
//!
//! Run: `cargo build --release -p shoal-node -p shoal-bench && target/release/failover`
//! (it finds `shoal-node` next to itself; `--trials N`, default 20). Every node it starts
//! is killed when it ends, and the whole run is bounded by `RUN_TIMEOUT_SECS`.

use anyhow::{Context, bail};
use shoal_client::{AdminClient, Client, Profile};
use shoal_node::dev::{LocalNode, prepare_cluster};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Upper bound of the whole benchmark.
const RUN_TIMEOUT_SECS: u64 = 1_800;
/// Bound of one wait (election, catch-up, detection).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long idle CPU is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(10);

struct Proc {
    node: LocalNode,
    child: Option<tokio::process::Child>,
}

fn node_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("shoal-node");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p shoal-node -p shoal-bench`",
            bin.display()
        );
    }
    Ok(bin)
}

/// How often the bench asks the nodes again while waiting for a state it measures.
const POLL: Duration = Duration::from_millis(20);

fn free_base(n: u16) -> anyhow::Result<u16> {
    shoal_node::dev::free_port_range(n).context("no free port range on loopback")
}

/// Asks `probe` every [`POLL`] until it yields a value, within [`STEP_TIMEOUT`]. The
/// states measured live in other processes and the admin API has no push.
async fn poll_until<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut tick = tokio::time::interval(POLL);
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            tick.tick().await;
            if let Some(value) = probe().await {
                return value;
            }
        }
    })
    .await
    .with_context(|| format!("{what}: not within {STEP_TIMEOUT:?}"))
}

async fn spawn(bin: &Path, node: &LocalNode) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(node.data_dir.join("node.log"))?;
    let mut child = tokio::process::Command::new(bin)
        .arg("start")
        .arg("--config")
        .arg(&node.config_path)
        .env("SHOAL_LOG", "warn,openraft=error")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("shoal-node ready") {
                return Ok(());
            }
        }
        bail!("{} exited before it was ready", node.name)
    })
    .await
    .context("node start timed out")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

fn profile_for(base: &Profile, node: &LocalNode) -> Profile {
    let mut p = base.clone();
    p.address = node.addr.to_string();
    p
}

/// Waits until every shard has a leader and leaderships are spread over `nodes` nodes
/// (none leads more than its share, rounded up), so a trial starts from a settled cluster.
async fn wait_balanced(profile: &Profile, nodes: usize) -> anyhow::Result<()> {
    let admin = AdminClient::connect(profile).await?;
    poll_until("every shard led, leaderships balanced", || async {
        let shards = admin.shards().await.ok()?;
        let mut per_node = std::collections::BTreeMap::<String, usize>::new();
        for s in &shards {
            *per_node.entry(s.leader.clone()?).or_default() += 1;
        }
        let share = shards.len().div_ceil(nodes);
        (per_node.len() == nodes && per_node.values().all(|n| *n <= share)).then_some(())
    })
    .await
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(") ").next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0; utime is 11, stime 12.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Share of one core used by `pids` together over `IDLE_SAMPLE`.
async fn idle_cpu(pids: &[u32]) -> f64 {
    let ticks_per_sec = rustix::param::clock_ticks_per_second() as f64;
    let before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let start = Instant::now();
    tokio::time::sleep(IDLE_SAMPLE).await;
    let after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    (after.saturating_sub(before)) as f64 / ticks_per_sec / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(trials: usize) -> anyhow::Result<()> {
    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;

    // Baseline: one idle single-replica node with the same 64 shards.
    let single = prepare_cluster(
        &dir.path().join("single"),
        1,
        free_base(1)?,
        bin.clone(),
        vec!["demo-agent".into()],
        |_| {},
    )?;
    // A single node is ready (every shard hosted) when it prints its ready line.
    let mut baseline = spawn(&bin, &single[0]).await?;
    let base_cpu = idle_cpu(&[baseline.id().unwrap_or(0)]).await;
    let _ = baseline.kill().await;

    let layout = prepare_cluster(
        &dir.path().join("cluster"),
        3,
        free_base(3)?,
        bin.clone(),
        vec!["demo-agent".into()],
        |_| {},
    )?;
    let election_max_ms = shoal_cluster_config::NodeConfig::load(&layout[0].config_path)?
        .cluster
        .election_timeout_max_ms
        .get() as f64;
    let base_profile = Profile::load(&dir.path().join("cluster").join("profile.toml"))?;
    let mut procs = Vec::new();
    for node in &layout {
        procs.push(Proc {
            node: node.clone(),
            child: Some(spawn(&bin, node).await?),
        });
    }
    wait_balanced(&base_profile, procs.len()).await?;
    let pids: Vec<u32> = procs
        .iter()
        .filter_map(|p| p.child.as_ref()?.id())
        .collect();
    let cluster_cpu = idle_cpu(&pids).await;

    let client = Client::connect(&base_profile).await?;
    let mut failovers_ms = Vec::new();
    let mut detections_ms = Vec::new();
    for trial in 0..trials {
        let conv = client.create_conversation(None, None).await?;
        let admin = AdminClient::connect(&base_profile).await?;
        let leader = admin.shards().await?[usize::from(conv.id.shard.0)]
            .leader
            .clone()
            .context("no leader")?;
        let victim = procs
            .iter()
            .position(|p| p.node.name == leader)
            .context("leader not found")?;
        let survivor = (victim + 1) % procs.len();
        let survivor_profile = profile_for(&base_profile, &procs[survivor].node);
        let writer = Client::connect(&survivor_profile).await?;
        let watchers: Vec<AdminClient> = {
            let mut v = Vec::new();
            for (i, p) in procs.iter().enumerate() {
                if i != victim {
                    v.push(AdminClient::connect(&profile_for(&base_profile, &p.node)).await?);
                }
            }
            v
        };
        let mut child = procs[victim].child.take().context("victim not running")?;
        let killed_at = Instant::now();
        child.start_kill()?;
        let _ = child.wait().await;
        // Detection: every survivor's gossip marks the victim down.
        let detect = {
            let leader = leader.clone();
            tokio::spawn(async move {
                for w in &watchers {
                    poll_until("the killed node marked down", || async {
                        let members = w.members().await.ok()?;
                        members
                            .iter()
                            .any(|m| m.node_id == leader && m.state == "down")
                            .then_some(())
                    })
                    .await?;
                }
                anyhow::Ok(killed_at.elapsed())
            })
        };
        // Failover: first acknowledged write after the kill (SDK retries underneath).
        let text = format!("trial {trial}");
        let failover = poll_until("a write after failover", || async {
            writer.send(conv.id, text.as_str()).await.ok()?;
            Some(killed_at.elapsed())
        })
        .await?;
        let detection = detect.await??;
        failovers_ms.push(failover.as_secs_f64() * 1000.0);
        detections_ms.push(detection.as_secs_f64() * 1000.0);
        eprintln!(
            "trial {:>2}: killed {leader}: first write after {:>6.0} ms, down everywhere after {:>6.0} ms",
            trial + 1,
            failover.as_secs_f64() * 1000.0,
            detection.as_secs_f64() * 1000.0
        );
        procs[victim].child = Some(spawn(&bin, &procs[victim].node).await?);
        // The restarted node takes its share of leaderships back before the next trial.
        wait_balanced(&base_profile, procs.len()).await?;
    }
    for p in &mut procs {
        if let Some(mut c) = p.child.take() {
            let _ = c.kill().await;
        }
    }
    failovers_ms.sort_by(f64::total_cmp);
    detections_ms.sort_by(f64::total_cmp);
    let p50 = percentile(&failovers_ms, 50.0);
    let p99 = percentile(&failovers_ms, 99.0);
    println!(
        "failover (kill -9 leader -> first acknowledged write), {} trials:",
        failovers_ms.len()
    );
    println!(
        "  p50 {p50:.0} ms ({:.2}x election_timeout_max), p99 {p99:.0} ms ({:.2}x)",
        p50 / election_max_ms,
        p99 / election_max_ms
    );
    println!(
        "node marked down on every survivor: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&detections_ms, 50.0),
        percentile(&detections_ms, 99.0)
    );
    println!(
        "idle CPU, 3 nodes x 64 shards: {:.1}% of one core in total ({:.2}x one idle single-replica node: {:.1}%)",
        cluster_cpu * 100.0,
        cluster_cpu / base_cpu.max(1e-9),
        base_cpu * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let trials = std::env::args()
        .skip_while(|a| a != "--trials")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    tokio::time::timeout(Duration::from_secs(RUN_TIMEOUT_SECS), run(trials))
        .await
        .context("the benchmark exceeded its time bound")?
}
