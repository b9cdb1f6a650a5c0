//! Level 2: real `shoal-node` processes on loopback, faults injected from outside.
//!
//! A run starts a 3-node cluster behind [`crate::proxy::Net`] proxies, starts clients
//! (one conversation each, turns back to back) and followers through the SDK, then
//! injects one fault at a time, chosen by the seed, for the run's duration: kill -9 and
//! restart, SIGSTOP/SIGCONT, a symmetric partition, a one-way block, an isolated leader,
//! 20 % packet loss, latency spikes, a wiped store. Each fault is held for a while, then
//! reverted, and the cluster is given time to elect leaders again before the next one.
//! At the end everything is healed, the replicas converge, the nodes are stopped and each
//! node's store is read from disk: the [`History`] goes to [`crate::check::check_all`].

pub mod cluster;
pub mod workload;

use crate::check::{Violation, check_all};
use crate::history::{History, WriteOutcome};
use crate::proxy::NetStats;
use crate::trace::Trace;
use anyhow::Context;
use cluster::RealCluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::ConversationId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use workload::Recorder;

/// The longest the end of a run waits for clients to finish their last operation.
pub const CLIENT_STOP_TIMEOUT_MS: u64 = 60_000;
/// The user the followers are: viewers by each conversation's link.
const VIEWER_USER: &str = "chaos-viewer";
/// The longest the end of a run waits for followers to see the last committed turn.
pub const FOLLOWER_CATCH_UP_TIMEOUT_MS: u64 = 30_000;
/// The longest a client may take to create its conversation.
pub const CREATE_TIMEOUT_MS: u64 = 60_000;
/// The number of nodes.
pub const NODES: u16 = 3;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum FaultKind {
    /// kill -9 of a node (often a leader), restarted after the hold.
    Kill,
    /// SIGSTOP of a shard leader, SIGCONT after the hold.
    Pause,
    /// One node cut off from the others, both ways.
    Partition,
    /// Packets from one node to another dropped, the other way delivered.
    OneWay,
    /// A shard leader cut off from its peers (clients still reach it).
    IsolateLeader,
    /// 20 % of node-to-node packets dropped.
    Loss,
    /// Every node-to-node packet delayed 100–300 ms (reordered).
    Delay,
    /// A non-leader killed, its store deleted, restarted empty.
    Wipe,
    /// Every store flush of the conversation's leader held back for the hold (a stalled
    /// disk: openraft's core blocks in an append while the rest of the node runs).
    StallStorage,
    /// A wipe combined with a lagging replica: one non-leader killed (it misses the writes
    /// of the hold), the other killed, wiped and restarted empty, then the leader killed
    /// and the lagging one restarted; the leader comes back after another hold. An empty
    /// voter that granted votes let the lagging one win without the committed writes.
    WipeLagging,
    /// The conversation's leader stopped gracefully (SIGTERM: running turns end with
    /// what they streamed, leaderships are handed over), restarted after the hold.
    Stop,
    /// The conversation's leader drained (its shards move between turns), then stopped
    /// gracefully and restarted after the hold (a restart clears the drain).
    Drain,
    /// The clients stop writing until the conversation's shard is quiet (its leader
    /// beats instead of heartbeating, with its warm agent alive), then that leader is
    /// cut off from its peers (clients still reach it) and the clients write again.
    QuietIsolate,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::IsolateLeader,
        FaultKind::Loss,
        FaultKind::Delay,
        FaultKind::Wipe,
        FaultKind::StallStorage,
        FaultKind::WipeLagging,
        FaultKind::Stop,
        FaultKind::Drain,
        FaultKind::QuietIsolate,
    ];

    /// Parses a kind from its lowercase name (`kill`, `pause`, `partition`, `one-way`,
    /// `isolate-leader`, `loss`, `delay`, `wipe`, `stall-storage`, `wipe-lagging`,
    /// `stop`, `drain`, `quiet-isolate`).
    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Loss => "loss",
            FaultKind::Delay => "delay",
            FaultKind::Wipe => "wipe",
            FaultKind::StallStorage => "stall-storage",
            FaultKind::WipeLagging => "wipe-lagging",
            FaultKind::Stop => "stop",
            FaultKind::Drain => "drain",
            FaultKind::QuietIsolate => "quiet-isolate",
        }
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct RealOptions {
    /// The node executable (a `shoal-node` command line).
    pub exe: PathBuf,
    /// Picks the faults, their targets and timings, and the proxies' loss pattern.
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Clients, one conversation each.
    pub clients: usize,
    /// Followers per conversation.
    pub followers: usize,
    /// The kinds of fault to draw from.
    pub faults: Vec<FaultKind>,
    /// Print the trace to stderr as it happens.
    pub echo_trace: bool,
}

/// Figures of a run.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Faults injected, per kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Total time faults were held, in ms.
    pub fault_ms: u64,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes that failed (not acknowledged).
    pub writes_failed: u64,
    /// Turns that ran to `Done`.
    pub turns_done: u64,
    /// Turns whose stream broke after acceptance.
    pub turns_broken: u64,
    /// Follows started (a follow that gave up is restarted).
    pub follows: u64,
    /// Events delivered to followers.
    pub follower_events: u64,
    /// Agent processes witnessed.
    pub agent_processes: u64,
    /// Datagrams through the proxies.
    pub net: NetStats,
}

/// The result of a run.
#[derive(Debug)]
pub struct RealOutcome {
    /// The seed.
    pub seed: u64,
    /// What was recorded.
    pub history: History,
    /// What the checkers found.
    pub violations: Vec<Violation>,
    /// One line per event.
    pub trace: Vec<String>,
    /// Figures.
    pub stats: RunStats,
}

/// Runs one seeded scenario on real processes.
pub async fn run(options: &RealOptions) -> anyhow::Result<RealOutcome> {
    anyhow::ensure!(!options.faults.is_empty(), "no fault kinds to draw from");
    let trace = Trace::new(options.echo_trace);
    trace.event(
        "net",
        format!(
            "seed {} · {} clients · {} followers each · faults {:?} · {} s",
            options.seed,
            options.clients,
            options.followers,
            options.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
            options.duration.as_secs()
        ),
    );
    let mut cluster = RealCluster::start(&options.exe, NODES, options.seed, trace.clone())
        .await
        .context("starting the cluster")?;
    let recorder = Recorder::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stop_followers_tx, stop_followers_rx) = tokio::sync::watch::channel(false);
    let (hush_tx, hush_rx) = tokio::sync::watch::channel(false);

    // Clients, each dialling a different node first.
    let mut clients = Vec::new();
    let mut created = Vec::new();
    for k in 0..options.clients {
        let (tx, rx) = tokio::sync::oneshot::channel();
        created.push(rx);
        clients.push(tokio::spawn(workload::run_client(
            format!("c{}", k + 1),
            rotated(&cluster, k),
            recorder.clone(),
            trace.clone(),
            tx,
            stop_rx.clone(),
            hush_rx.clone(),
        )));
    }
    let mut conversations: Vec<ConversationId> = Vec::new();
    let mut links = Vec::new();
    for rx in created {
        let (id, link) = tokio::time::timeout(Duration::from_millis(CREATE_TIMEOUT_MS), rx)
            .await
            .context("a client did not create its conversation in time")?
            .context("a client stopped before creating its conversation")?;
        conversations.push(id);
        links.push(link);
    }
    // Followers are another user, a viewer by the conversation's link.
    let viewer_token = {
        let admin = cluster.admin().await?;
        let token = admin
            .issue_token(shoal_protocol::UserId::parse(VIEWER_USER)?, 24 * 3600)
            .await;
        admin.close().await;
        token?
    };
    let mut followers = Vec::new();
    for (k, id) in conversations.iter().enumerate() {
        for f in 0..options.followers {
            let mut profile = rotated(&cluster, k + f + 1);
            profile.token = viewer_token.clone();
            profile.share_token = Some(links[k].clone());
            followers.push(tokio::spawn(workload::run_follower(
                format!("f{}.{}", k + 1, f + 1),
                profile,
                *id,
                recorder.clone(),
                trace.clone(),
                stop_followers_rx.clone(),
            )));
        }
    }

    // Faults, one at a time.
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut stats = RunStats::default();
    let started = tokio::time::Instant::now();
    while started.elapsed() < options.duration {
        let calm = Duration::from_millis(rng.random_range(1_000..2_500));
        tokio::time::sleep(calm).await;
        let kind = options.faults[rng.random_range(0..options.faults.len())];
        let hold = Duration::from_millis(rng.random_range(1_500..4_000));
        let conversation = conversations[rng.random_range(0..conversations.len())];
        let fault = Fault {
            kind,
            hold,
            conversation,
        };
        let held = inject(&mut cluster, &mut rng, fault, &hush_tx, &trace)
            .await
            .with_context(|| format!("injecting {}", kind.name()))?;
        *stats.faults.entry(kind.name()).or_default() += 1;
        stats.fault_ms += u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        if let Err(e) = cluster.wait_all_led().await {
            trace.event("net", format!("after {}: {e}", kind.name()));
        }
    }

    // Heal, let the clients finish, converge, let the followers catch up.
    cluster.net.heal();
    cluster.restore_all().await?;
    trace.event("net", "healed; stopping clients");
    let _ = stop_tx.send(true);
    for client in clients {
        if tokio::time::timeout(Duration::from_millis(CLIENT_STOP_TIMEOUT_MS), client)
            .await
            .is_err()
        {
            trace.event("net", "a client did not stop in time");
        }
    }
    cluster.wait_all_led().await?;
    cluster.wait_converged().await?;
    trace.event("net", "replicas converged");
    // Followers stop once they have seen every acknowledged message (or after a bound:
    // the checkers then judge what they saw).
    let caught_up = tokio::time::timeout(
        Duration::from_millis(FOLLOWER_CATCH_UP_TIMEOUT_MS),
        recorder.wait_followed(&conversations),
    )
    .await;
    if caught_up.is_err() {
        trace.event(
            "net",
            format!("followers did not see every acknowledged message within {FOLLOWER_CATCH_UP_TIMEOUT_MS} ms"),
        );
    }
    let _ = stop_followers_tx.send(true);
    drop(stop_rx);
    for follower in followers {
        let _ = tokio::time::timeout(Duration::from_millis(CLIENT_STOP_TIMEOUT_MS), follower).await;
    }
    cluster.stop_all().await;
    let replicas = cluster.read_replicas(&conversations)?;
    let agents = cluster.witness.lives();
    let recorded = recorder.take();
    stats.writes_acked = recorded
        .writes
        .iter()
        .filter(|w| matches!(w.outcome, WriteOutcome::Acked { .. }))
        .count() as u64;
    stats.writes_failed = recorded.writes.len() as u64 - stats.writes_acked;
    stats.turns_done = recorded.turns_done;
    stats.turns_broken = recorded.turns_broken;
    stats.follows = recorded.followers.len() as u64;
    stats.follower_events = recorded
        .followers
        .iter()
        .map(|f| f.events.len() as u64)
        .sum();
    stats.agent_processes = agents.len() as u64;
    stats.net = cluster.net.stats();
    let history = History {
        writes: recorded.writes,
        replicas,
        agents,
        followers: recorded.followers,
        viewer_writes: recorded.viewer_writes,
    };
    let violations = check_all(&history);
    trace.event("net", format!("checked: {} violation(s)", violations.len()));
    Ok(RealOutcome {
        seed: options.seed,
        history,
        violations,
        trace: trace.lines(),
        stats,
    })
}

/// A profile that dials node `k % n` first.
fn rotated(cluster: &RealCluster, k: usize) -> shoal_client::Profile {
    let mut profile = cluster.profile.clone();
    let mut all: Vec<String> = std::iter::once(profile.address.clone())
        .chain(profile.addresses.iter().cloned())
        .collect();
    let len = all.len().max(1);
    all.rotate_left(k % len);
    profile.address = all[0].clone();
    profile.addresses = all[1..].to_vec();
    profile
}

/// How a held fault is undone.
enum Undo {
    Restart(usize),
    Resume(usize),
    Heal,
    /// The fault ends by itself when its time is up.
    Expires,
}

/// One fault to inject: its kind, how long it is held, the conversation it aims at.
struct Fault {
    kind: FaultKind,
    hold: Duration,
    conversation: ConversationId,
}

/// Injects one fault, holds it, reverts it; returns how long it was held. `hush` stops
/// the clients' writes while set.
async fn inject(
    cluster: &mut RealCluster,
    rng: &mut StdRng,
    Fault {
        kind,
        hold,
        conversation,
    }: Fault,
    hush: &tokio::sync::watch::Sender<bool>,
    trace: &Trace,
) -> anyhow::Result<Duration> {
    let n = cluster.nodes.len();
    let leader = cluster
        .leader_of(conversation.shard.0)
        .await
        .and_then(|name| cluster.index_of(&name));
    let random = rng.random_range(0..n);
    // Most faults hit the conversation's leader when one is known: that is where the
    // invariants are at stake.
    let target = leader.unwrap_or(random);
    let name = |i: usize| cluster.nodes[i].name.clone();
    // Apply the fault; what undoes it after the hold.
    let undo = match kind {
        FaultKind::Kill => {
            cluster.kill9(target).await;
            Undo::Restart(target)
        }
        FaultKind::Pause => {
            cluster.pause(target);
            Undo::Resume(target)
        }
        FaultKind::Stop => {
            cluster.terminate(target).await;
            Undo::Restart(target)
        }
        FaultKind::Drain => {
            cluster.drain(target).await?;
            // Moves wait for running turns (bounded). Holding the drain for a while is
            // the point of the fault, not a synchronisation; then a graceful restart.
            tokio::time::sleep(hold).await;
            cluster.terminate(target).await;
            cluster.spawn(target).await?;
            cluster.wait_caught_up(target).await?;
            return Ok(hold);
        }
        FaultKind::Partition => {
            let victim = name(random);
            let others: Vec<String> = (0..n).filter(|i| *i != random).map(name).collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            cluster.net.partition(&[&[victim.as_str()], &others])?;
            trace.event("net", format!("partition {{{victim}}} | {others:?}"));
            Undo::Heal
        }
        FaultKind::OneWay => {
            let other = (target + 1 + rng.random_range(0..n - 1)) % n;
            let (from, to) = if rng.random_bool(0.5) {
                (name(target), name(other))
            } else {
                (name(other), name(target))
            };
            cluster.net.block(&from, &to)?;
            trace.event("net", format!("block {from} -> {to} (one way)"));
            Undo::Heal
        }
        FaultKind::IsolateLeader => {
            let victim = name(target);
            cluster.net.isolate(&victim)?;
            trace.event("net", format!("isolate {victim} from its peers"));
            Undo::Heal
        }
        FaultKind::QuietIsolate => {
            hush.send_replace(true);
            trace.event("net", "clients hushed until the shard is quiet");
            let quiet = cluster.wait_quiet(conversation.shard.0).await;
            let leader = cluster
                .leader_of(conversation.shard.0)
                .await
                .and_then(|name| cluster.index_of(&name));
            let victim = name(leader.unwrap_or(target));
            let isolated = cluster.net.isolate(&victim);
            hush.send_replace(false);
            isolated?;
            match quiet {
                Ok(()) => trace.event("net", format!("shard quiet; isolate its leader {victim}")),
                Err(e) => trace.event("net", format!("{e}; isolate {victim} anyway")),
            }
            Undo::Heal
        }
        FaultKind::Loss => {
            cluster.net.set_loss(20)?;
            trace.event("net", "20 % loss between nodes");
            Undo::Heal
        }
        FaultKind::Delay => {
            cluster.net.set_delay(100, 200)?;
            trace.event("net", "latency spike: 100–300 ms per packet between nodes");
            Undo::Heal
        }
        FaultKind::StallStorage => {
            let ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
            cluster.stall_storage(target, ms).await?;
            trace.event(&name(target), format!("store flushes stalled for {ms} ms"));
            Undo::Expires
        }
        FaultKind::WipeLagging => {
            // Targets need the leader: with none known there is nothing to lag behind.
            let Some(leader) = leader else {
                trace.event("net", "wipe-lagging skipped: no leader known");
                return Ok(Duration::ZERO);
            };
            let lagging = (leader + 1 + rng.random_range(0..n - 1)) % n;
            let wiped = (0..n)
                .find(|i| *i != leader && *i != lagging)
                .context("wipe-lagging needs three nodes")?;
            cluster.kill9(lagging).await;
            tokio::time::sleep(hold).await;
            cluster.wipe(wiped).await?;
            cluster.kill9(leader).await;
            cluster.spawn(lagging).await?;
            // The lagging and the empty replica alone: they must not elect a leader.
            tokio::time::sleep(hold).await;
            cluster.spawn(leader).await?;
            for i in [lagging, wiped, leader] {
                cluster.wait_caught_up(i).await?;
            }
            return Ok(hold * 2);
        }
        FaultKind::Wipe => {
            // Instant: the node restarts empty at once and is re-seeded.
            let victim = (0..n)
                .filter(|i| Some(*i) != leader)
                .nth(rng.random_range(0..n - 1))
                .unwrap_or(random);
            cluster.wipe(victim).await?;
            cluster.wait_caught_up(victim).await?;
            return Ok(Duration::ZERO);
        }
    };
    // Holding the fault for a while is the point of the scenario, not a synchronisation.
    tokio::time::sleep(hold).await;
    match undo {
        Undo::Restart(i) => {
            cluster.spawn(i).await?;
            cluster.wait_caught_up(i).await?;
        }
        Undo::Resume(i) => cluster.resume(i),
        Undo::Heal => {
            cluster.net.heal();
            trace.event("net", "healed");
        }
        Undo::Expires => {}
    }
    Ok(hold)
}
