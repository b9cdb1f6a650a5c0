//! detection: kill -9 of one node → every survivor's gossip marks it down, for clusters
//! of several sizes (real processes on loopback).
//!
//! The time is taken from the survivors' own cluster events (`down`, stamped in ms by
//! the node that recorded it when its gossip view changed), against the wall clock read
//! right before the kill; the bench polls each survivor's `Members` only to know when
//! every one has seen it. A survivor whose event is missing counts with the time its
//! poll saw the change.
//!
//! Baseline: the configured gossip timing, `probe_period + suspect_to_down` of the
//! preset the cluster size calls for (the smallest preset at least the node count,
//! as `cluster-config` documents), so the ratio is independent of the machine.

use crate::common::{append_result, local_cluster, node_binary, percentile, poll_until, spawn};
use crate::plot::{self, Distribution};
use anyhow::Context;
use serde::Serialize;
use shoal_client::{AdminClient, Profile};
use shoal_cluster_config::GossipPreset;
use shoal_node::cluster::membership::GossipTimings;
use shoal_node::dev::LocalNode;
use std::time::{Instant, SystemTime};

/// Shards per node in these clusters: gossip does not depend on them, and fewer Raft
/// groups keep 9 nodes on 2 cores from starving the gossip they measure.
const SHARDS: u16 = 8;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cluster sizes, one row each.
    pub nodes: Vec<u16>,
    /// Kills per cluster size.
    pub trials: usize,
}

/// One cluster size's figures.
#[derive(Debug, Clone, Serialize)]
struct Row {
    nodes: u16,
    preset: &'static str,
    probe_period_ms: u64,
    suspect_to_down_ms: u64,
    trials: usize,
    /// Kill → the last survivor marks the node down.
    all_ms: Summary,
    /// Kill → the first survivor marks the node down.
    first_ms: Summary,
    /// Survivor times taken from a poll because the event was missing.
    polled: usize,
    /// Kill → the last survivor marks the node down, every trial (for the plot).
    #[serde(skip)]
    all_cdf: Distribution,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
}

fn summary(mut values: Vec<f64>) -> Summary {
    values.sort_by(f64::total_cmp);
    Summary {
        p50: percentile(&values, 50.0).unwrap_or(f64::NAN),
        p99: percentile(&values, 99.0).unwrap_or(f64::NAN),
        max: values.last().copied().unwrap_or(f64::NAN),
    }
}

/// The smallest gossip preset sized for `nodes` nodes.
pub fn preset_for(nodes: u16) -> GossipPreset {
    GossipPreset::ALL
        .into_iter()
        .find(|p| p.cluster_size_hint() >= u32::from(nodes))
        .unwrap_or(GossipPreset::LanLarge)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn profile_for(base: &Profile, node: &LocalNode) -> Profile {
    let mut p = base.clone();
    p.address = node.addr.to_string();
    p
}

/// Waits until `admin`'s gossip sees every node of `layout` alive (itself aside: a
/// node may or may not list itself).
async fn wait_all_alive(admin: &AdminClient, layout: &[LocalNode], me: &str) -> anyhow::Result<()> {
    poll_until("every member alive", || async {
        let members = admin.members().await.ok()?;
        layout
            .iter()
            .filter(|n| n.name != me)
            .all(|n| {
                members
                    .iter()
                    .any(|m| m.node_id == n.name && m.state == "alive")
            })
            .then_some(())
    })
    .await
}

/// Whether every entry `members` has for `name` is down (an entry of an earlier life of
/// the node may linger as down while it is alive again).
fn marked_down(members: &[shoal_protocol::admin::MemberInfo], name: &str) -> bool {
    let mut entries = members.iter().filter(|m| m.node_id == name).peekable();
    entries.peek().is_some() && entries.all(|m| m.state == "down")
}

/// Runs every cluster size and prints the table.
pub async fn run(options: &Options, results: &std::path::Path) -> anyhow::Result<()> {
    let bin = node_binary()?;
    let mut rows = Vec::new();
    for &nodes in &options.nodes {
        anyhow::ensure!(
            (2..=32).contains(&nodes),
            "--nodes takes cluster sizes from 2 to 32, not {nodes}"
        );
        rows.push(run_size(&bin, nodes, options.trials.max(1)).await?);
    }
    println!("detection: kill -9 of one node -> every survivor's gossip marks it down");
    println!(
        "{:>5} {:>10} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>6} | {:>9} {:>7}",
        "nodes",
        "preset",
        "probe ms",
        "susp. ms",
        "all p50",
        "all p99",
        "all max",
        "x base",
        "first p50",
        "trials"
    );
    for r in &rows {
        let base = (r.probe_period_ms + r.suspect_to_down_ms) as f64;
        println!(
            "{:>5} {:>10} {:>9} {:>9} | {:>9.0} {:>9.0} {:>9.0} {:>6.2} | {:>9.0} {:>7}",
            r.nodes,
            r.preset,
            r.probe_period_ms,
            r.suspect_to_down_ms,
            r.all_ms.p50,
            r.all_ms.p99,
            r.all_ms.max,
            r.all_ms.p50 / base,
            r.first_ms.p50,
            r.trials
        );
    }
    println!("(ms; x base = all p50 / (probe period + suspect_to_down))");
    let path = append_result(
        results,
        "detection",
        serde_json::json!({ "shards": SHARDS, "rows": rows }),
    )?;
    println!("results appended to {}", path.display());
    plot::save(results, "detection", |path| plot_rows(path, &rows));
    Ok(())
}

/// The CDF of kill → down on every survivor, one line per cluster size, with each
/// preset's baseline (probe period + suspect_to_down) as a mark.
fn plot_rows(path: &std::path::Path, rows: &[Row]) -> anyhow::Result<()> {
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{} nodes ({})", r.nodes, r.preset))
        .collect();
    let lines: Vec<(&str, &Distribution)> = names
        .iter()
        .zip(rows)
        .map(|(name, r)| (name.as_str(), &r.all_cdf))
        .collect();
    let mut bases: Vec<(String, f64)> = Vec::new();
    for r in rows {
        let base = (r.probe_period_ms + r.suspect_to_down_ms) as f64;
        if !bases.iter().any(|(_, ms)| *ms == base) {
            bases.push((format!("baseline {}: {base:.0} ms", r.preset), base));
        }
    }
    let marks: Vec<(&str, f64)> = bases.iter().map(|(n, ms)| (n.as_str(), *ms)).collect();
    plot::latency_cdf(
        path,
        "detection: kill -9 of one node -> every survivor's gossip marks it down",
        "kill -> down on the last survivor (ms)",
        &lines,
        &marks,
    )
}

async fn run_size(bin: &std::path::Path, nodes: u16, trials: usize) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let preset = preset_for(nodes);
    let layout = local_cluster(dir.path(), nodes, bin, |c| {
        c.cluster.shard_count = std::num::NonZeroU16::new(SHARDS).unwrap_or(c.cluster.shard_count);
        c.gossip.preset = preset;
    })?;
    let config = shoal_cluster_config::NodeConfig::load(&layout[0].config_path)?;
    let (probe, suspect) =
        GossipTimings::from_config(&config.gossip).effective_probe_and_suspicion();
    let base = Profile::load(&dir.path().join("profile.toml"))?;
    eprintln!("detection: starting {nodes} nodes ({preset} gossip preset)");
    let mut children = Vec::new();
    for node in &layout {
        children.push(Some(spawn(bin, node).await?));
    }
    let mut admins = Vec::new();
    for node in &layout {
        admins.push(AdminClient::connect(&profile_for(&base, node)).await?);
    }
    for (admin, node) in admins.iter().zip(&layout) {
        wait_all_alive(admin, &layout, &node.name).await?;
    }
    let mut all_ms = Vec::new();
    let mut first_ms = Vec::new();
    let mut polled = 0;
    for trial in 0..trials {
        let victim = trial % layout.len();
        let name = layout[victim].name.clone();
        let mut child = children[victim].take().context("victim not running")?;
        let killed_unix_ms = unix_ms();
        let killed_at = Instant::now();
        child.start_kill()?;
        let _ = child.wait().await;
        let survivors: Vec<usize> = (0..layout.len()).filter(|i| *i != victim).collect();
        let seen = futures::future::try_join_all(survivors.iter().map(|&i| {
            let admin = &admins[i];
            let name = name.as_str();
            async move {
                poll_until("the killed node marked down", || async {
                    let members = admin.members().await.ok()?;
                    marked_down(&members, name).then(|| killed_at.elapsed())
                })
                .await
            }
        }))
        .await?;
        let (events, _) = admins[survivors[0]]
            .events(Some(killed_unix_ms.saturating_sub(1)), 1_000)
            .await?;
        let down_detail = format!("{name} is down");
        let mut times = Vec::new();
        for (&i, poll) in survivors.iter().zip(&seen) {
            let event = events
                .iter()
                .find(|e| e.node == layout[i].name && e.kind == "down" && e.detail == down_detail);
            times.push(match event {
                Some(e) => e.at_ms.saturating_sub(killed_unix_ms) as f64,
                None => {
                    polled += 1;
                    poll.as_secs_f64() * 1000.0
                }
            });
        }
        let last = times.iter().copied().fold(f64::NAN, f64::max);
        let first = times.iter().copied().fold(f64::NAN, f64::min);
        eprintln!(
            "detection: {nodes} nodes, trial {}/{trials}: killed {name}: first down after {first:.0} ms, all after {last:.0} ms",
            trial + 1
        );
        all_ms.push(last);
        first_ms.push(first);
        if trial + 1 == trials {
            break;
        }
        children[victim] = Some(spawn(bin, &layout[victim]).await?);
        for (admin, node) in admins.iter().zip(&layout) {
            wait_all_alive(admin, &layout, &node.name).await?;
        }
    }
    for child in children.iter_mut().flatten() {
        let _ = child.kill().await;
    }
    Ok(Row {
        nodes,
        preset: preset.as_str(),
        probe_period_ms: probe.as_millis() as u64,
        suspect_to_down_ms: suspect.as_millis() as u64,
        trials,
        all_cdf: Distribution::from_ms(&all_ms),
        all_ms: summary(all_ms),
        first_ms: summary(first_ms),
        polled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_size_gets_the_smallest_preset_that_fits() {
        assert_eq!(preset_for(3), GossipPreset::LanSmall);
        assert_eq!(preset_for(8), GossipPreset::LanSmall);
        assert_eq!(preset_for(9), GossipPreset::LanMedium);
        assert_eq!(preset_for(500), GossipPreset::LanLarge);
    }

    #[test]
    fn a_node_is_down_when_every_entry_of_it_is() {
        let member = |name: &str, state: &str| shoal_protocol::admin::MemberInfo {
            node_id: name.into(),
            addr: String::new(),
            state: state.into(),
            version: String::new(),
            leaders: 0,
            draining: false,
        };
        let old_life = [member("n2", "down"), member("n2", "alive")];
        assert!(!marked_down(&old_life, "n2"), "alive again");
        assert!(marked_down(&[member("n2", "down")], "n2"));
        assert!(!marked_down(&[member("n1", "down")], "n2"), "not listed");
    }

    #[test]
    fn a_summary_of_nothing_is_not_a_number() {
        assert!(summary(Vec::new()).p50.is_nan());
        let s = summary(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.max), (2.0, 3.0));
    }
}
