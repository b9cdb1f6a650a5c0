//! Deterministic simulation: real Shoal nodes on a simulated network (turmoil).
//!
//! [`run`] builds a turmoil simulation with hosts `n1..n3`, each running a real
//! [`shoal_node::Node`] (Raft per shard, lease, fence, SWIM membership over QUIC
//! datagrams, conversation actors, sled in a temp dir), and client hosts `c1..` using
//! the real [`shoal_client::Client`]: each creates a conversation, sends turns (the
//! demo agent's scripts: plain text echoes and `/slow 3`) and records every write in a
//! [`History`]. A fault from the [`Scenario`] is injected in the middle of the
//! workload and healed before the end; then every node's copy of every conversation is
//! read into the history.
//!
//! # Determinism
//! Everything that decides behaviour comes from the seed: turmoil's RNG (latency, loss,
//! the tokio runtime seed of every host: `select!` order needs `--cfg tokio_unstable`,
//! set in the workspace's `.cargo/config.toml`), each node's RNG ([`Seams::rng_seed`]:
//! QUIC, SWIM, ids), the clients' QUIC and request-id RNGs, and the fault plan. Time
//! is turmoil's (tokio's paused clock per host; the node's wall clock is
//! `turmoil::since_epoch` from a fixed epoch). openraft 0.9 draws election timeouts from
//! `rand::thread_rng` (unseedable), so each node gets a fixed timeout
//! (`min = 400 + 100 * i` ms, `max = min + 1`). Agents run in-process
//! ([`shoal_node::seam::AgentLauncher`]); the store flushes inline.
//!
//! # Clock-rate skew
//! turmoil gives every host the same clock rate. A node whose clock runs fast by a
//! factor `f` sees its timers fire after `1/f` of the real time: that is what
//! [`Scenario::ClockSkew`] models, by scaling one node's timing config (heartbeat,
//! election timeout, lease, gossip probe and suspicion) by a factor within ±5 %, the
//! drift the lease assumes bounded.
//!
//! # Layout
//! * [`udp`]: quinn's `AsyncUdpSocket` over turmoil's UDP.
//! * [`agents`]: the in-process demo agent, recording agent lives.
//! * [`client`]: the clients' workload (writes, turns, a follower each).
//! * [`trace`]: one line per event (`<sim ms> <host> <event>`).

mod agents;
mod client;
mod trace;
mod udp;

pub use crate::history::{AgentLife, FollowerLog, History, ReplicaCopy, Write, WriteOutcome};

use shoal_client::Profile;
use shoal_cluster_config::NodeConfig;
use shoal_node::seam::Seams;
use shoal_node::{Node, context::NodeContext};
use shoal_protocol::ConversationId;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use trace::Trace;

/// The UDP port every node listens on (each host has its own address).
const NODE_PORT: u16 = 7000;
/// The simulation's epoch: 2026-01-01T00:00:00Z, in seconds since the Unix epoch.
const EPOCH_SECS: u64 = 1_767_225_600;
/// Base of the fixed election timeouts, in ms; node `i` (from 0) gets `base + i * step`.
const ELECTION_BASE_MS: u64 = 400;
/// Step between the nodes' fixed election timeouts, in ms.
const ELECTION_STEP_MS: u64 = 100;
/// Raft heartbeat, in ms.
const HEARTBEAT_MS: u64 = 100;
/// Leader lease, in ms (below the smallest election timeout).
const LEASE_MS: u64 = 300;
/// SWIM probe period, in ms.
const PROBE_PERIOD_MS: u64 = 200;
/// SWIM suspicion timeout, in ms.
const SUSPECT_TO_DOWN_MS: u64 = 1_000;
/// How long a client waits for `Accepted` before recording the write as failed, in ms.
const SEND_TIMEOUT_MS: u64 = 20_000;
/// How long a client waits for a turn's `Done` after `Accepted`, in ms.
const TURN_TIMEOUT_MS: u64 = 20_000;
/// Pause between a client's operations (workload pacing, simulated), in ms.
const OP_GAP_MS: u64 = 200;
/// When the fault starts at the earliest, in simulated ms after the clients start.
const FAULT_START_MIN_MS: u64 = 1_500;
/// The longest a follower keeps reading after its client's last turn while it has not
/// seen the last acknowledged message, in simulated ms.
const FOLLOW_TAIL_MS: u64 = 1_000;
/// Quiet time after the clients finish, so replicas converge before they are read, in ms.
const SETTLE_MS: u64 = 4_000;
/// Largest clock-rate skew, in per mille (±5 %).
const SKEW_PER_MILLE_MAX: u64 = 50;

thread_local! {
    /// The harness's view of simulated time, for code running outside any host.
    static HARNESS_NOW_NS: Cell<u64> = const { Cell::new(0) };
}

/// Simulated ns since the run started: the current host's view inside the simulation,
/// the harness's between steps.
pub(crate) fn sim_now_ns() -> u64 {
    match turmoil::sim_elapsed() {
        Some(elapsed) => u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        None => HARNESS_NOW_NS.with(Cell::get),
    }
}

fn sim_now_ms() -> u64 {
    sim_now_ns() / 1_000_000
}

/// Which fault a run injects (once, in the middle of the workload, then healed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// No fault.
    Calm,
    /// One node cut off from the other nodes both ways.
    SymmetricPartition,
    /// One node's datagrams to the other nodes are lost; it still hears them.
    OneWayPartition,
    /// The node leading the most shards cut off from the other nodes.
    LeaderIsolated,
    /// One node crashes (its runtime is dropped) and restarts on the same data dir.
    CrashRestart,
    /// 20 % of sends break their link (dropping that datagram and those in flight).
    PacketLoss,
    /// Per-datagram latency up to 300 ms instead of 5 ms.
    LatencySpikes,
    /// One node's timers run at a rate within ±5 % of the others' (the whole run).
    ClockSkew,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::Calm,
        Scenario::SymmetricPartition,
        Scenario::OneWayPartition,
        Scenario::LeaderIsolated,
        Scenario::CrashRestart,
        Scenario::PacketLoss,
        Scenario::LatencySpikes,
        Scenario::ClockSkew,
    ];

    /// The name used in replay commands.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Calm => "calm",
            Scenario::SymmetricPartition => "partition",
            Scenario::OneWayPartition => "partition-oneway",
            Scenario::LeaderIsolated => "leader-isolated",
            Scenario::CrashRestart => "crash-restart",
            Scenario::PacketLoss => "loss",
            Scenario::LatencySpikes => "latency",
            Scenario::ClockSkew => "clock-skew",
        }
    }

    /// The scenario named `name` (see [`Self::name`]).
    pub fn from_name(name: &str) -> Option<Scenario> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Size of a run.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Nodes (`n1..`), 3 by default.
    pub nodes: usize,
    /// Client hosts (`c1..`), each with its own conversation.
    pub clients: usize,
    /// Writes per client.
    pub ops_per_client: usize,
    /// `cluster.shard_count`.
    pub shard_count: u16,
    /// Give up after this much simulated time, in ms.
    pub sim_limit_ms: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 3,
            clients: 2,
            ops_per_client: 8,
            shard_count: 4,
            sim_limit_ms: 120_000,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// The seed.
    pub seed: u64,
    /// The scenario.
    pub scenario: Scenario,
    /// What the clients, agents and replicas witnessed.
    pub history: History,
    /// One line per event.
    pub trace: Vec<String>,
    /// Simulated time at the end, in ms.
    pub sim_ms: u64,
    /// Why the simulation stopped early (a host failed, the time limit), if it did.
    pub error: Option<String>,
}

impl SimOutcome {
    /// The history as JSON: the same seed must give the same text.
    pub fn history_json(&self) -> String {
        serde_json::to_string(&self.history).unwrap_or_else(|e| format!("unserializable: {e}"))
    }

    /// The trace lines of one host (`"n1"`, `"c2"`, `"c1-f"` for c1's follower, `"sim"`
    /// for faults).
    pub fn trace_of(&self, host: &str) -> Vec<&str> {
        self.trace
            .iter()
            .filter(|line| line.split_whitespace().nth(1) == Some(host))
            .map(String::as_str)
            .collect()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        replay_command(self.seed, self.scenario)
    }
}

/// The command that replays `seed` in `scenario`.
pub fn replay_command(seed: u64, scenario: Scenario) -> String {
    format!(
        "SHOAL_SIM_SEED={seed} SHOAL_SIM_SCENARIO={} cargo test -p shoal-chaos-tests --test sim -- replay --nocapture",
        scenario.name()
    )
}

/// Why a run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The temporary directory, certificates or configs could not be written.
    #[error("cannot prepare the simulated cluster: {0}")]
    Setup(String),
}

/// The fault of a run, drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct FaultPlan {
    victim: usize,
    start_ms: u64,
    end_ms: u64,
    skew_per_mille: i64,
}

/// SplitMix64: a small deterministic generator for the harness's own choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FaultPlan {
    fn draw(seed: u64, nodes: usize) -> FaultPlan {
        let a = mix(seed ^ 0xFA01);
        let b = mix(a);
        let c = mix(b);
        let d = mix(c);
        let start_ms = FAULT_START_MIN_MS + a % 1_500;
        let skew_range = 2 * SKEW_PER_MILLE_MAX + 1;
        FaultPlan {
            victim: usize::try_from(b % nodes.max(1) as u64).unwrap_or(0),
            start_ms,
            end_ms: start_ms + 2_000 + c % 2_000,
            skew_per_mille: i64::try_from(d % skew_range).unwrap_or(0)
                - i64::try_from(SKEW_PER_MILLE_MAX).unwrap_or(0),
        }
    }
}

/// State shared by the hosts and the harness of one run.
struct Shared {
    seed: u64,
    nodes: usize,
    configs: Vec<NodeConfig>,
    incarnations: Vec<AtomicU32>,
    /// Weak: a crashed node's store must close with its runtime, so the restarted node
    /// can open it again.
    contexts: Mutex<BTreeMap<String, std::sync::Weak<NodeContext>>>,
    /// Shard → node currently hosting it (as the nodes report it).
    hosting: Mutex<BTreeMap<u16, String>>,
    lives: Arc<agents::Lives>,
    trace: Trace,
    writes: Mutex<Vec<Write>>,
    conversations: Mutex<BTreeMap<String, ConversationId>>,
    followers: Mutex<Vec<FollowerLog>>,
    profile: Profile,
    client_endpoints: AtomicU64,
}

fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

/// Runs `scenario` from `seed`. Deterministic: the same seed and options give the same
/// history and trace.
pub fn run(seed: u64, scenario: Scenario, opts: &SimOptions) -> Result<SimOutcome, SimError> {
    let dir = tempfile::tempdir().map_err(|e| SimError::Setup(e.to_string()))?;
    let plan = FaultPlan::draw(seed, opts.nodes);
    let configs = prepare(dir.path(), opts, scenario, plan)?;
    let profile = client_profile(dir.path(), &configs[0], opts.nodes)?;
    let shared = Arc::new(Shared {
        seed,
        nodes: opts.nodes,
        configs,
        incarnations: (0..opts.nodes).map(|_| AtomicU32::new(0)).collect(),
        contexts: Mutex::new(BTreeMap::new()),
        hosting: Mutex::new(BTreeMap::new()),
        lives: Arc::new(agents::Lives::default()),
        trace: Trace::default(),
        writes: Mutex::new(Vec::new()),
        conversations: Mutex::new(BTreeMap::new()),
        followers: Mutex::new(Vec::new()),
        profile,
        client_endpoints: AtomicU64::new(0),
    });
    HARNESS_NOW_NS.with(|now| now.set(0));

    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(Duration::from_millis(opts.sim_limit_ms))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .udp_capacity(4096)
        .build();

    for i in 0..opts.nodes {
        let shared = Arc::clone(&shared);
        sim.host(node_name(i).as_str(), move || {
            let shared = Arc::clone(&shared);
            async move { run_node(shared, i).await }
        });
    }
    for k in 0..opts.clients {
        let shared = Arc::clone(&shared);
        let ops = opts.ops_per_client;
        let name = format!("c{}", k + 1);
        sim.client(name.as_str(), {
            let name = name.clone();
            async move {
                client::run_client(&shared, &name, k, ops).await;
                Ok(())
            }
        });
    }

    shared.trace.log_at(
        0,
        "sim",
        format!("seed {seed} scenario {} plan {plan:?}", scenario.name()),
    );
    let mut error = None;
    let mut fault_on = false;
    let mut fault_done = false;
    let mut settle_until: Option<u64> = None;
    loop {
        let now_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
        HARNESS_NOW_NS.with(|now| now.set(now_ms.saturating_mul(1_000_000)));
        if !fault_on && !fault_done && now_ms >= plan.start_ms {
            fault_on = start_fault(&mut sim, &shared, scenario, plan);
            fault_done = !fault_on;
        } else if fault_on && now_ms >= plan.end_ms {
            end_fault(&mut sim, &shared, scenario, plan);
            fault_on = false;
            fault_done = true;
        }
        if let Some(until) = settle_until
            && now_ms >= until
        {
            break;
        }
        match sim.step() {
            Ok(true) if settle_until.is_none() => {
                if fault_on {
                    end_fault(&mut sim, &shared, scenario, plan);
                    fault_on = false;
                    fault_done = true;
                }
                shared
                    .trace
                    .log_at(now_ms, "sim", "clients finished; settling");
                settle_until = Some(now_ms + SETTLE_MS);
            }
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                shared
                    .trace
                    .log_at(now_ms, "sim", format!("stopped: {message}"));
                error = Some(message);
                break;
            }
        }
    }
    let sim_ms = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
    let history = collect_history(&shared);
    let trace = shared.trace.lines();
    // Stops every host (and its node) before the data dir goes away.
    drop(sim);
    drop(dir);
    Ok(SimOutcome {
        seed,
        scenario,
        history,
        trace,
        sim_ms,
        error,
    })
}

/// Lays out certificates, the signing key and one config per node.
fn prepare(
    dir: &std::path::Path,
    opts: &SimOptions,
    scenario: Scenario,
    plan: FaultPlan,
) -> Result<Vec<NodeConfig>, SimError> {
    let setup = |e: &dyn std::fmt::Display| SimError::Setup(e.to_string());
    let shard_count = opts.shard_count;
    let nodes = u16::try_from(opts.nodes).map_err(|e| setup(&e))?;
    let locals = shoal_node::dev::prepare_cluster(
        dir,
        nodes,
        NODE_PORT,
        "in-process-demo-agent".into(),
        Vec::new(),
        |config| {
            if let Some(count) = std::num::NonZeroU16::new(shard_count) {
                config.cluster.shard_count = count;
            }
            config.cluster.placement_grace_ms = 2_000;
            config.cluster.snapshot_every_entries = nz(64);
        },
    )
    .map_err(|e| setup(&e))?;
    let mut configs = Vec::new();
    for (i, local) in locals.iter().enumerate() {
        let text = std::fs::read_to_string(&local.config_path).map_err(|e| setup(&e))?;
        let mut config =
            NodeConfig::from_toml_str(&text, std::iter::empty()).map_err(|e| setup(&e))?;
        let skew = if scenario == Scenario::ClockSkew && i == plan.victim {
            plan.skew_per_mille
        } else {
            0
        };
        let scale = |ms: u64| -> u64 {
            let scaled = i128::from(ms) * i128::from(1000 + skew) / 1000;
            u64::try_from(scaled).unwrap_or(ms).max(1)
        };
        let election = ELECTION_BASE_MS + ELECTION_STEP_MS * i as u64;
        config.cluster.heartbeat_ms = nz(scale(HEARTBEAT_MS));
        config.cluster.election_timeout_min_ms = nz(scale(election));
        config.cluster.election_timeout_max_ms = nz(scale(election) + 1);
        config.cluster.lease_ms = nz(scale(LEASE_MS));
        config.gossip.probe_period_ms = Some(nz(scale(PROBE_PERIOD_MS)));
        config.gossip.suspect_to_down_ms = Some(nz(scale(SUSPECT_TO_DOWN_MS)));
        configs.push(config);
    }
    Ok(configs)
}

fn nz(value: u64) -> NonZeroU64 {
    NonZeroU64::new(value).unwrap_or(NonZeroU64::MIN)
}

/// The clients' profile: every node's simulated address, a token valid at the epoch.
fn client_profile(
    dir: &std::path::Path,
    first: &NodeConfig,
    nodes: usize,
) -> Result<Profile, SimError> {
    // turmoil numbers hosts in registration order from 192.168.0.1; nodes come first.
    let addrs: Vec<SocketAddr> = (0..nodes)
        .map(|i| SocketAddr::from(([192, 168, 0, u8::try_from(i + 1).unwrap_or(1)], NODE_PORT)))
        .collect();
    let path = dir.join("sim-profile.toml");
    shoal_node::dev::write_profile_at(first, &path, &addrs, EPOCH_SECS)
        .map_err(|e| SimError::Setup(e.to_string()))?;
    Profile::load(&path).map_err(|e| SimError::Setup(e.to_string()))
}

/// One node host's software: start the node, report hosting changes, run forever.
async fn run_node(shared: Arc<Shared>, i: usize) -> turmoil::Result {
    let name = node_name(i);
    let incarnation = shared.incarnations[i].fetch_add(1, Ordering::Relaxed);
    let mut config = shared.configs[i].clone();
    let ip = turmoil::lookup(name.as_str());
    let addr = SocketAddr::new(ip, NODE_PORT);
    config.node.listen_addr = addr;
    config.node.advertise_addr = addr;
    config.cluster.seeds = (0..shared.nodes)
        .filter(|&j| j != i)
        .map(|j| SocketAddr::new(turmoil::lookup(node_name(j).as_str()), NODE_PORT))
        .collect();
    let socket = udp::SimUdpSocket::bind(ip, NODE_PORT)?;
    let seams = Seams {
        rng_seed: Some(mix(shared.seed
            ^ mix(i as u64 + 1)
            ^ mix(u64::from(incarnation) + 77))),
        wall_clock: Some(Arc::new(|| {
            turmoil::since_epoch()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(EPOCH_SECS * 1000)
        })),
        inline_blocking: true,
        agent_launcher: Some(Arc::new(agents::InProcessAgents::new(
            name.clone(),
            incarnation,
            Arc::clone(&shared.lives),
            shared.trace.clone(),
        ))),
        fault_injection: false,
    };
    shared
        .trace
        .log(&name, format!("node starting (incarnation {incarnation})"));
    let node = match Node::start_with_seams(config, socket, seams).await {
        Ok(node) => node,
        Err(e) => {
            shared
                .trace
                .log(&name, format!("node failed to start: {e}"));
            return Err(e.into());
        }
    };
    shared.trace.log(&name, "node started");
    let ctx = Arc::clone(node.context());
    shared
        .contexts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.clone(), Arc::downgrade(&ctx));
    for group in ctx.cluster.groups() {
        let shard = group.shard;
        let Some(mut hosting) = ctx.cluster.watch_hosting(shard) else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let name = name.clone();
        tokio::spawn(async move {
            loop {
                let now = *hosting.borrow_and_update();
                match now {
                    shoal_node::cluster::Hosting::Active { term } => {
                        shared
                            .trace
                            .log(&name, format!("shard {} hosted (term {term})", shard.0));
                        shared
                            .hosting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(shard.0, name.clone());
                    }
                    shoal_node::cluster::Hosting::Inactive => {
                        let mut hosting = shared
                            .hosting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if hosting.get(&shard.0) == Some(&name) {
                            hosting.remove(&shard.0);
                            shared
                                .trace
                                .log(&name, format!("shard {} no longer hosted", shard.0));
                        }
                    }
                }
                if hosting.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    // The node lives as long as this host's software; a crash drops it with the runtime.
    let _node = node;
    std::future::pending::<()>().await;
    Ok(())
}

/// The node leading the most shards (ties: the lowest index), if any leads.
fn busiest_leader(shared: &Shared) -> Option<usize> {
    let hosting = shared
        .hosting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut counts = vec![0_usize; shared.nodes];
    for node in hosting.values() {
        if let Some(i) = (0..shared.nodes).find(|&i| node_name(i) == *node) {
            counts[i] += 1;
        }
    }
    let (best, count) = counts
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))?;
    (*count > 0).then_some(best)
}

fn others(shared: &Shared, victim: usize) -> Vec<String> {
    (0..shared.nodes)
        .filter(|&i| i != victim)
        .map(node_name)
        .collect()
}

/// Starts the fault; `false` when the scenario has no timed fault.
fn start_fault(
    sim: &mut turmoil::Sim<'_>,
    shared: &Shared,
    scenario: Scenario,
    plan: FaultPlan,
) -> bool {
    let victim = node_name(plan.victim);
    let log = |event: String| shared.trace.log("sim", event);
    match scenario {
        Scenario::Calm | Scenario::ClockSkew => return false,
        Scenario::SymmetricPartition => {
            for other in others(shared, plan.victim) {
                sim.partition(victim.as_str(), other.as_str());
            }
            log(format!("fault: partition {victim} <-> other nodes"));
        }
        Scenario::OneWayPartition => {
            for other in others(shared, plan.victim) {
                sim.partition_oneway(victim.as_str(), other.as_str());
            }
            log(format!(
                "fault: partition {victim} -> other nodes (one way)"
            ));
        }
        Scenario::LeaderIsolated => {
            let leader = busiest_leader(shared).unwrap_or(plan.victim);
            let name = node_name(leader);
            for other in others(shared, leader) {
                sim.partition(name.as_str(), other.as_str());
            }
            log(format!(
                "fault: leader {name} isolated from the other nodes"
            ));
        }
        Scenario::CrashRestart => {
            // Logged first: the crash drops the node's runtime, ending its agents.
            log(format!("fault: crash {victim}"));
            shared.lives.hold_ends();
            sim.crash(victim.as_str());
            shared.lives.release_ends(&shared.trace);
        }
        Scenario::PacketLoss => {
            sim.set_fail_rate(0.2);
            log("fault: 20 % packet loss".to_owned());
        }
        Scenario::LatencySpikes => {
            sim.set_max_message_latency(Duration::from_millis(300));
            log("fault: latency up to 300 ms".to_owned());
        }
    }
    true
}

/// Heals the fault.
fn end_fault(sim: &mut turmoil::Sim<'_>, shared: &Shared, scenario: Scenario, plan: FaultPlan) {
    let log = |event: String| shared.trace.log("sim", event);
    match scenario {
        Scenario::Calm | Scenario::ClockSkew => {}
        Scenario::SymmetricPartition | Scenario::OneWayPartition | Scenario::LeaderIsolated => {
            for i in 0..shared.nodes {
                for j in 0..shared.nodes {
                    if i < j {
                        sim.repair(node_name(i).as_str(), node_name(j).as_str());
                    }
                }
            }
            log("heal: partitions repaired".to_owned());
        }
        Scenario::CrashRestart => {
            let victim = node_name(plan.victim);
            sim.bounce(victim.as_str());
            log(format!("heal: restart {victim}"));
        }
        Scenario::PacketLoss => {
            sim.set_fail_rate(0.0);
            log("heal: no packet loss".to_owned());
        }
        Scenario::LatencySpikes => {
            sim.set_max_message_latency(Duration::from_millis(5));
            log("heal: latency back to 1-5 ms".to_owned());
        }
    }
}

/// The history: writes, agent lives, and every node's copy of every conversation.
fn collect_history(shared: &Shared) -> History {
    let writes = shared
        .writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let conversations: Vec<ConversationId> = shared
        .conversations
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .copied()
        .collect();
    let contexts = shared
        .contexts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut replicas = Vec::new();
    for (node, ctx) in &contexts {
        let Some(ctx) = ctx.upgrade() else {
            shared
                .trace
                .log(node, "not running at the end: no replica copy read");
            continue;
        };
        for &conversation in &conversations {
            match ctx.store.messages(conversation, 0, u64::MAX) {
                Ok(messages) => replicas.push(ReplicaCopy {
                    node: node.clone(),
                    conversation,
                    messages,
                }),
                Err(e) => shared
                    .trace
                    .log(node, format!("cannot read {conversation}: {e}")),
            }
        }
    }
    History {
        writes,
        replicas,
        agents: shared.lives.snapshot(),
        followers: shared
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        // The simulation's followers are the owner's; viewer tokens are exercised by the
        // real-process runs.
        viewer_writes: Vec::new(),
    }
}
