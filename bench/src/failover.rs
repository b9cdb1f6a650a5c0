//! Failover figures of a local 3-node cluster (real processes on loopback):
//!
//! * failover time: kill -9 of a shard's leader → first acknowledged write on the new
//!   leader, over `--trials` trials (p50/p99), and as a ratio to the configured
//!   `election_timeout_max_ms` (a baseline independent of machine speed);
//! * detection time: kill -9 → every surviving node's gossip marks the node down;
//! * idle CPU of the 3-node cluster with 64 shards once every shard is quiet, against
//!   one idle single-replica node with the same 64 shards measured in the same run;
//! * a follower across the failover: it follows the conversation (through a survivor,
//!   which sends it on to the leader) before the kill; its time to resume is kill → the
//!   first event it gets after the kill, and every frame's `seq` is checked: a gap or a
//!   duplicate is counted unless a `reset` (a cut-over to a snapshot) explains it.
//!
//! Every node it starts is killed when it ends.

use crate::common::{
    CpuMeter, children, local_cluster, node_binary, percentile, poll_until, spawn,
};
use crate::plot::{self, Distribution};
use anyhow::Context;
use futures::StreamExt;
use shoal_client::{AdminClient, Client, FollowStream, Profile};
use shoal_node::dev::LocalNode;
use shoal_protocol::transcript::Event;
use std::time::{Duration, Instant};

/// Longest a follower may take to see the write after a failover.
const FOLLOW_WAIT: Duration = Duration::from_secs(60);

/// How long a follower keeps reading after its first event after the kill.
const AFTER_RESUME: Duration = Duration::from_secs(10);

/// What one follower saw across a failover.
#[derive(Debug, Default)]
struct FollowTally {
    /// Kill → its first event after the kill.
    resumed: Option<Duration>,
    gaps: u64,
    duplicates: u64,
    resets: u64,
    error: Option<String>,
}

/// Reads `follow` until, after the kill (signalled by `killed`), it has a `done` or a
/// `reset` (a cut-over to a snapshot that holds the turn), or has read for
/// [`AFTER_RESUME`] since its first event after the kill; checks that `seq` goes up by
/// one between frames (a `reset` re-bases).
async fn follow_across(
    mut follow: FollowStream,
    mut killed: tokio::sync::oneshot::Receiver<Instant>,
) -> FollowTally {
    let mut tally = FollowTally::default();
    let mut last: Option<u64> = None;
    let mut killed_at: Option<Instant> = None;
    let mut deadline = tokio::time::Instant::now() + FOLLOW_WAIT * 2;
    loop {
        let frame = tokio::select! {
            at = &mut killed, if killed_at.is_none() => {
                killed_at = at.ok();
                continue;
            }
            frame = tokio::time::timeout_at(deadline, follow.next()) => frame,
        };
        let frame = match frame {
            // Read long enough after resuming.
            Err(_) if tally.resumed.is_some() => return tally,
            Err(_) => {
                tally.error = Some("no event after the failover in time".into());
                return tally;
            }
            Ok(None) => {
                tally.error = Some("the follow stream ended".into());
                return tally;
            }
            Ok(Some(Err(e))) => {
                tally.error = Some(e.to_string());
                return tally;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let seq = frame.seq.0;
        match (&frame.event, last) {
            (Event::Reset { .. }, _) => tally.resets += 1,
            (_, Some(prev)) if seq <= prev => tally.duplicates += 1,
            (_, Some(prev)) => tally.gaps += seq - prev - 1,
            (_, None) => {}
        }
        last = Some(last.map_or(seq, |prev| prev.max(seq)));
        if matches!(frame.event, Event::Reset { .. }) {
            last = Some(seq);
        }
        if let Some(at) = killed_at {
            if tally.resumed.is_none() {
                tally.resumed = Some(at.elapsed());
                deadline = tokio::time::Instant::now() + AFTER_RESUME;
            }
            if matches!(frame.event, Event::Done { .. } | Event::Reset { .. }) {
                return tally;
            }
        }
    }
}

/// How long idle CPU is sampled.
const IDLE_SAMPLE: Duration = Duration::from_secs(10);

struct Proc {
    node: LocalNode,
    child: Option<tokio::process::Child>,
}

fn profile_for(base: &Profile, node: &LocalNode) -> Profile {
    let mut p = base.clone();
    p.address = node.addr.to_string();
    p
}

/// Waits until every shard has a leader and leaderships are spread over `nodes` nodes
/// (none leads more than its share, rounded up), so a trial starts from a settled cluster.
pub(crate) async fn wait_balanced(profile: &Profile, nodes: usize) -> anyhow::Result<()> {
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

/// Share of one core used by each group of `pids` together over the same
/// [`IDLE_SAMPLE`].
async fn idle_cpu<const N: usize>(groups: [&[u32]; N]) -> [f64; N] {
    let meters = groups.map(CpuMeter::start);
    tokio::time::sleep(IDLE_SAMPLE).await;
    meters.map(|m| m.cores())
}

/// Runs `trials` failovers and prints the figures.
pub async fn run(trials: usize, results: &std::path::Path) -> anyhow::Result<()> {
    let bin = node_binary()?;
    let dir = tempfile::tempdir()?;

    // Baseline: one idle single-replica node with the same 64 shards.
    let single = local_cluster(&dir.path().join("single"), 1, &bin, |_| {})?;
    // A single node is ready (every shard hosted) when it prints its ready line.
    let mut baseline = spawn(&bin, &single[0]).await?;
    let [base_cpu] = idle_cpu([&[baseline.id().unwrap_or(0)]]).await;
    let _ = baseline.kill().await;

    let layout = local_cluster(&dir.path().join("cluster"), 3, &bin, |_| {})?;
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
    // Idle means settled: every shard quiet on every node (`cluster.quiesce_after_ms`),
    // as an idle cluster is after its last write.
    let mut admins = Vec::new();
    for p in &procs {
        admins.push(AdminClient::connect(&profile_for(&base_profile, &p.node)).await?);
    }
    poll_until("every shard quiet on every node", || async {
        for admin in &admins {
            if !admin.shards().await.ok()?.iter().all(|s| s.quiet) {
                return None;
            }
        }
        Some(())
    })
    .await?;
    drop(admins);
    let pids: Vec<u32> = procs
        .iter()
        .filter_map(|p| p.child.as_ref()?.id())
        .collect();
    // Each node's agent watchdog (a child process) counts apart.
    let watchdogs: Vec<u32> = pids.iter().flat_map(|p| children(*p)).collect();
    let [cluster_cpu, watchdogs_cpu] = idle_cpu([&pids, &watchdogs]).await;

    let client = Client::connect(&base_profile).await?;
    let mut failovers_ms = Vec::new();
    let mut detections_ms = Vec::new();
    let mut resumes_ms = Vec::new();
    let mut rebalances_ms = Vec::new();
    let (mut gaps, mut duplicates, mut resets, mut follow_errors) = (0u64, 0u64, 0u64, 0u64);
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
        // A follower attached through the survivor before the kill.
        let mut follow = writer.follow(conv.id, None);
        tokio::time::timeout(FOLLOW_WAIT, follow.next())
            .await
            .context("the follower did not attach in time")?
            .context("the follow stream ended at once")??;
        let (killed_tx, killed_rx) = tokio::sync::oneshot::channel();
        let follower = tokio::spawn(follow_across(follow, killed_rx));
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
        let _ = killed_tx.send(killed_at);
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
        let followed = follower.await.unwrap_or_else(|e| FollowTally {
            error: Some(e.to_string()),
            ..FollowTally::default()
        });
        gaps += followed.gaps;
        duplicates += followed.duplicates;
        resets += followed.resets;
        if let Some(error) = &followed.error {
            follow_errors += 1;
            eprintln!("trial {:>2}: the follower failed: {error}", trial + 1);
        }
        if let Some(resumed) = followed.resumed {
            resumes_ms.push(resumed.as_secs_f64() * 1000.0);
        }
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
        let restarted = Instant::now();
        wait_balanced(&base_profile, procs.len()).await?;
        rebalances_ms.push(restarted.elapsed().as_secs_f64() * 1000.0);
    }
    for p in &mut procs {
        if let Some(mut c) = p.child.take() {
            let _ = c.kill().await;
        }
    }
    failovers_ms.sort_by(f64::total_cmp);
    detections_ms.sort_by(f64::total_cmp);
    resumes_ms.sort_by(f64::total_cmp);
    rebalances_ms.sort_by(f64::total_cmp);
    let p50 = percentile(&failovers_ms, 50.0).unwrap_or(f64::NAN);
    let p99 = percentile(&failovers_ms, 99.0).unwrap_or(f64::NAN);
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
        percentile(&detections_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&detections_ms, 99.0).unwrap_or(f64::NAN)
    );
    println!(
        "follower across the failover: resumed (kill -> first event) p50 {:.0} ms, p99 {:.0} ms; gaps {gaps}, duplicates {duplicates}, resets {resets}, failed {follow_errors}",
        percentile(&resumes_ms, 50.0).unwrap_or(f64::NAN),
        percentile(&resumes_ms, 99.0).unwrap_or(f64::NAN)
    );
    println!(
        "restarted node ready -> leaderships balanced again: p50 {:.1} s, max {:.1} s",
        percentile(&rebalances_ms, 50.0).unwrap_or(f64::NAN) / 1000.0,
        rebalances_ms.last().copied().unwrap_or(f64::NAN) / 1000.0
    );
    println!(
        "idle CPU, 3 nodes x 64 shards, every shard quiet: {:.1}% of one core in total ({:.2}x one idle single-replica node: {:.1}%), and {:.1}% for their {} agent watchdogs",
        cluster_cpu * 100.0,
        cluster_cpu / base_cpu.max(1e-9),
        base_cpu * 100.0,
        watchdogs_cpu * 100.0,
        watchdogs.len()
    );
    let path = crate::common::append_result(
        results,
        "failover",
        serde_json::json!({
            "trials": failovers_ms.len(),
            "election_timeout_max_ms": election_max_ms,
            "failover_ms": {"p50": p50, "p99": p99},
            "detection_ms": {
                "p50": percentile(&detections_ms, 50.0),
                "p99": percentile(&detections_ms, 99.0),
            },
            "rebalanced_ms": {
                "p50": percentile(&rebalances_ms, 50.0),
                "max": rebalances_ms.last(),
            },
            "idle_cpu_cores": {
                "cluster_3x64": cluster_cpu,
                "watchdogs": watchdogs_cpu,
                "single_64": base_cpu,
            },
            "follower": {
                "resumed_ms": {
                    "p50": percentile(&resumes_ms, 50.0),
                    "p99": percentile(&resumes_ms, 99.0),
                },
                "gaps": gaps,
                "duplicates": duplicates,
                "resets": resets,
                "failed": follow_errors,
            },
        }),
    )?;
    println!("results appended to {}", path.display());
    let lines = [
        ("kill -> first acknowledged write", failovers_ms.as_slice()),
        ("kill -> down on every survivor", detections_ms.as_slice()),
        ("kill -> follower's first event", resumes_ms.as_slice()),
    ]
    .map(|(name, ms)| (name, Distribution::from_ms(ms)));
    plot::save(results, "failover", |path| {
        plot::latency_cdf(
            path,
            &format!(
                "failover: kill -9 of a shard leader, 3 nodes, {} trials",
                failovers_ms.len()
            ),
            "time after the kill (ms)",
            &lines.iter().map(|(name, d)| (*name, d)).collect::<Vec<_>>(),
            &[(
                &format!("election_timeout_max {election_max_ms:.0} ms"),
                election_max_ms,
            )],
        )
    });
    Ok(())
}
