//! A local cluster of real `shoal-node` processes behind fault proxies.
//!
//! Each node binds its real address and advertises its proxy's, so every packet between
//! nodes (and from clients) passes a [`Net`] proxy where faults are injected. Agents are
//! real `shoal-demo-agent` processes reporting to the [`Witness`].

use crate::history::ReplicaCopy;
use crate::proxy::Net;
use crate::trace::Trace;
use crate::witness::Witness;
use anyhow::{Context, bail};
use shoal_client::{AdminClient, Profile};
use shoal_cluster_config::NodeConfig;
use shoal_protocol::ConversationId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// How long a node may take to print its ready line.
pub const NODE_READY_TIMEOUT_MS: u64 = 30_000;
/// How long a node may take to stop after SIGTERM before it is killed.
pub const NODE_STOP_TIMEOUT_MS: u64 = 10_000;
/// The bound on every wait for cluster state (leaders, convergence).
pub const CLUSTER_WAIT_TIMEOUT_MS: u64 = 60_000;
/// Pause between two reads of admin state while waiting for it to change (the admin API
/// has no push; this is the one poll of the harness).
const ADMIN_POLL_MS: u64 = 200;

/// One node process.
#[derive(Debug)]
pub struct NodeProc {
    /// `n1`, `n2`, …
    pub name: String,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its data dir (store, workspaces, node.log).
    pub data_dir: PathBuf,
    /// The address it binds (the source of its packets).
    pub real_addr: SocketAddr,
    /// The address it advertises: its proxy.
    pub proxy_addr: SocketAddr,
    child: Option<Child>,
    paused: bool,
}

impl NodeProc {
    /// Whether the process runs (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is running and not paused.
    pub fn is_serving(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    fn pid(&self) -> Option<rustix::process::Pid> {
        let raw = self.child.as_ref()?.id()?;
        rustix::process::Pid::from_raw(i32::try_from(raw).ok()?)
    }
}

/// The running cluster.
#[derive(Debug)]
pub struct RealCluster {
    /// Node processes, `n1` first.
    pub nodes: Vec<NodeProc>,
    /// The fault proxies.
    pub net: Net,
    /// The agent witness.
    pub witness: Witness,
    /// A profile listing every node's proxy address.
    pub profile: Profile,
    /// The shard count.
    pub shard_count: u16,
    exe: PathBuf,
    trace: Trace,
    // Last: removed after the processes are gone.
    _dir: tempfile::TempDir,
}

impl RealCluster {
    /// Prepares and starts `n` nodes from the node executable `exe` (a `shoal-node`
    /// command line: `start --config`, `demo-agent`), with proxies seeded by `seed`.
    pub async fn start(exe: &Path, n: u16, seed: u64, trace: Trace) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-chaos-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let witness = Witness::start(dir.path())?;
        let witness_path = witness.path().display().to_string();
        let base = shoal_node::dev::free_port_range(n.saturating_mul(2))
            .context("no free range of loopback ports")?;
        let net = Net::new(seed);
        let mut proxies = BTreeMap::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let real = SocketAddr::from(([127, 0, 0, 1], base + i));
            let listen = SocketAddr::from(([127, 0, 0, 1], base + n + i));
            let proxy = net.add_node_at(&name, real, listen).await?;
            proxies.insert(real, proxy);
        }
        let shard_count = 16;
        let prepared = shoal_node::dev::prepare_cluster(
            dir.path(),
            n,
            base,
            exe.to_owned(),
            vec!["demo-agent".into()],
            |config: &mut NodeConfig| {
                let real = config.node.listen_addr;
                if let Some(proxy) = proxies.get(&real) {
                    config.node.advertise_addr = *proxy;
                }
                config.cluster.seeds = proxies
                    .iter()
                    .filter(|(r, _)| **r != real)
                    .map(|(_, p)| *p)
                    .collect();
                config.cluster.shard_count =
                    std::num::NonZeroU16::new(shard_count).unwrap_or(std::num::NonZeroU16::MIN);
                config.cluster.placement_grace_ms = 2_000;
                config.cluster.snapshot_every_entries =
                    std::num::NonZeroU64::new(16).unwrap_or(std::num::NonZeroU64::MIN);
                config.gossip.probe_period_ms = std::num::NonZeroU64::new(200);
                config.gossip.suspect_to_down_ms = std::num::NonZeroU64::new(1_000);
                for agent in config.agents.values_mut() {
                    agent
                        .env
                        .insert("SHOAL_DEMO_AGENT_WITNESS".into(), witness_path.clone());
                }
            },
        )?;
        let first = NodeConfig::load(&prepared[0].config_path)?;
        let profile_path = dir.path().join("profile.toml");
        let proxy_addrs: Vec<SocketAddr> = proxies.values().copied().collect();
        shoal_node::dev::write_profile_at(&first, &profile_path, &proxy_addrs, now_secs())?;
        let profile = Profile::load(&profile_path)?;
        let nodes = prepared
            .into_iter()
            .map(|node| NodeProc {
                proxy_addr: proxies.get(&node.addr).copied().unwrap_or(node.addr),
                name: node.name,
                config_path: node.config_path,
                data_dir: node.data_dir,
                real_addr: node.addr,
                child: None,
                paused: false,
            })
            .collect();
        let mut cluster = RealCluster {
            nodes,
            net,
            witness,
            profile,
            shard_count,
            exe: exe.to_owned(),
            trace,
            _dir: dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i).await?;
        }
        cluster.wait_all_led().await?;
        Ok(cluster)
    }

    /// Starts node `i` and waits for its ready line.
    pub async fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data_dir.join("node.log"))
            .context("cannot open node.log")?;
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("start")
            .arg("--config")
            .arg(&node.config_path)
            .env("SHOAL_LOG", "info,openraft=error")
            .env(shoal_node::seam::FAULT_INJECTION_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", node.name))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_millis(NODE_READY_TIMEOUT_MS), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("shoal-node ready") {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            bail!(
                "{} did not print its ready line within {NODE_READY_TIMEOUT_MS} ms (see {})",
                node.name,
                node.data_dir.join("node.log").display()
            );
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        node.child = Some(child);
        node.paused = false;
        self.trace.event(&node.name, "started");
        Ok(())
    }

    fn signal(&self, i: usize, signal: rustix::process::Signal) {
        if let Some(pid) = self.nodes[i].pid() {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// kill -9 of node `i`, waiting for it to be gone.
    pub async fn kill9(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::KILL);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait().await;
        }
        self.nodes[i].paused = false;
        self.trace.event(&self.nodes[i].name, "killed (SIGKILL)");
    }

    /// Stops node `i` gracefully (SIGTERM: it hands its work over first) and waits for
    /// it to exit; SIGKILL after [`NODE_STOP_TIMEOUT_MS`].
    pub async fn terminate(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::TERM);
        if let Some(mut child) = self.nodes[i].child.take() {
            let waited =
                tokio::time::timeout(Duration::from_millis(NODE_STOP_TIMEOUT_MS), child.wait())
                    .await;
            if waited.is_err() {
                self.trace
                    .event(&self.nodes[i].name, "did not stop after SIGTERM; SIGKILL");
                let _ = child.kill().await;
            }
        }
        self.nodes[i].paused = false;
        self.trace.event(&self.nodes[i].name, "stopped (SIGTERM)");
    }

    /// Asks node `i` to drain (move every leadership away), through another node.
    pub async fn drain(&self, i: usize) -> anyhow::Result<()> {
        let admin = self.admin().await?;
        // The drain flag is stored on the drained node, so a node gossip still counts
        // down (restarted by the previous fault a moment ago) is refused: wait for it.
        let name = &self.nodes[i].name;
        let alive = poll_until(&format!("{name} alive in gossip"), || async {
            let members = admin.members().await.ok()?;
            members
                .iter()
                .any(|m| m.node_id == *name && m.state == "alive")
                .then_some(())
        })
        .await;
        if let Err(e) = alive {
            admin.close().await;
            return Err(e);
        }
        let result = admin.drain(name).await;
        admin.close().await;
        result.with_context(|| format!("draining {}", self.nodes[i].name))?;
        self.trace.event(&self.nodes[i].name, "draining");
        Ok(())
    }

    /// Pauses node `i` (SIGSTOP): it keeps its sockets and state but runs nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::STOP);
        self.nodes[i].paused = true;
        self.trace.event(&self.nodes[i].name, "paused (SIGSTOP)");
    }

    /// Resumes a paused node (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::CONT);
        self.nodes[i].paused = false;
        self.trace.event(&self.nodes[i].name, "resumed (SIGCONT)");
    }

    /// Kills node `i`, deletes its store and starts it again: it rejoins empty and is
    /// re-seeded by its peers.
    pub async fn wipe(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i).await;
        let store = self.nodes[i].data_dir.join("store");
        if store.exists() {
            std::fs::remove_dir_all(&store)
                .with_context(|| format!("cannot delete {}", store.display()))?;
        }
        self.trace.event(&self.nodes[i].name, "store deleted");
        self.spawn(i).await
    }

    /// Index of node `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// An admin client of a serving node, dialled on its real address (not through the
    /// fault proxies, so observing the cluster is not itself faulted).
    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        let mut last = None;
        for node in self.nodes.iter().filter(|n| n.is_serving()) {
            let mut profile = self.profile.clone();
            profile.address = node.real_addr.to_string();
            profile.addresses.clear();
            match AdminClient::connect(&profile).await {
                Ok(admin) => return Ok(admin),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e.into()),
            None => bail!("no node is serving"),
        }
    }

    /// Holds back every store flush of node `i` for `ms` (through its own admin API, on its
    /// real address).
    pub async fn stall_storage(&self, i: usize, ms: u64) -> anyhow::Result<()> {
        let mut profile = self.profile.clone();
        profile.address = self.nodes[i].real_addr.to_string();
        profile.addresses.clear();
        let admin = AdminClient::connect(&profile).await?;
        let result = admin
            .inject_fault(shoal_protocol::admin::Fault::StallStorage { ms })
            .await;
        admin.close().await;
        result.with_context(|| format!("stalling {}'s store", self.nodes[i].name))
    }

    /// The leader of `shard` as seen by a serving node, if one is known.
    pub async fn leader_of(&self, shard: u16) -> Option<String> {
        let admin = self.admin().await.ok()?;
        let shards = admin.shards().await.ok();
        admin.close().await;
        shards?.get(usize::from(shard))?.leader.clone()
    }

    /// Waits until a serving node sees `shard` quiet (`cluster.quiesce_after_ms`).
    pub async fn wait_quiet(&self, shard: u16) -> anyhow::Result<()> {
        poll_until(&format!("shard {shard} is quiet"), || async {
            let admin = self.admin().await.ok()?;
            let shards = admin.shards().await;
            admin.close().await;
            shards.ok()?.get(usize::from(shard))?.quiet.then_some(())
        })
        .await
    }

    /// Waits until a serving node sees a leader for every shard.
    pub async fn wait_all_led(&self) -> anyhow::Result<()> {
        poll_until("every shard has a leader", || async {
            let admin = self.admin().await.ok()?;
            let shards = admin.shards().await;
            admin.close().await;
            shards
                .ok()?
                .iter()
                .all(|s| s.leader.is_some())
                .then_some(())
        })
        .await
    }

    /// Node `i`'s applied index per shard, read over its admin API (real address).
    async fn applied(&self, i: usize) -> Option<Vec<u64>> {
        let mut profile = self.profile.clone();
        profile.address = self.nodes[i].real_addr.to_string();
        profile.addresses.clear();
        let admin = AdminClient::connect(&profile).await.ok()?;
        let shards = admin.shards().await.ok();
        admin.close().await;
        Some(
            shards?
                .into_iter()
                .map(|s| s.applied_index.unwrap_or(0))
                .collect(),
        )
    }

    /// Waits until node `i` has applied, for every shard, at least what a serving peer
    /// had applied when this was called: a restarted or wiped node has caught up, so a
    /// majority holds every acknowledged write again before the next fault.
    pub async fn wait_caught_up(&self, i: usize) -> anyhow::Result<()> {
        let peer = (0..self.nodes.len())
            .find(|j| *j != i && self.nodes[*j].is_serving())
            .context("no serving peer")?;
        let target = self
            .applied(peer)
            .await
            .context("cannot read a peer's applied indexes")?;
        let what = format!("{} catches up", self.nodes[i].name);
        poll_until(&what, || async {
            let have = self.applied(i).await?;
            (have.len() == target.len() && have.iter().zip(&target).all(|(h, t)| h >= t))
                .then_some(())
        })
        .await?;
        self.trace.event(&self.nodes[i].name, "caught up");
        Ok(())
    }

    /// Waits until every running node has applied the same index for every shard (after
    /// healing, every replica has every committed entry).
    pub async fn wait_converged(&self) -> anyhow::Result<()> {
        poll_until("the replicas converge", || async {
            let mut first = None;
            for i in (0..self.nodes.len()).filter(|i| self.nodes[*i].is_serving()) {
                let applied = self.applied(i).await?;
                if *first.get_or_insert_with(|| applied.clone()) != applied {
                    return None;
                }
            }
            first.map(|_| ())
        })
        .await
    }

    /// Resumes paused nodes and starts stopped ones.
    pub async fn restore_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            if !self.nodes[i].is_running() {
                self.spawn(i).await?;
            }
        }
        Ok(())
    }

    /// Stops every node (SIGTERM, then SIGKILL after [`NODE_STOP_TIMEOUT_MS`]).
    pub async fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            self.signal(i, rustix::process::Signal::TERM);
        }
        for i in 0..self.nodes.len() {
            if let Some(mut child) = self.nodes[i].child.take() {
                let waited =
                    tokio::time::timeout(Duration::from_millis(NODE_STOP_TIMEOUT_MS), child.wait())
                        .await;
                if waited.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
        self.trace.event("net", "all nodes stopped");
    }

    /// Reads each node's copy of `conversations` straight from its store on disk. The
    /// nodes must be stopped.
    pub fn read_replicas(
        &self,
        conversations: &[ConversationId],
    ) -> anyhow::Result<Vec<ReplicaCopy>> {
        let mut copies = Vec::new();
        for node in &self.nodes {
            let store = shoal_node::shard::store::Store::open(
                &node.data_dir.join("store"),
                self.shard_count,
            )
            .with_context(|| format!("cannot open the store of {}", node.name))?;
            for id in conversations {
                let messages = store
                    .messages(*id, 0, u64::MAX)
                    .with_context(|| format!("cannot read {id} from {}", node.name))?;
                copies.push(ReplicaCopy {
                    node: node.name.clone(),
                    conversation: *id,
                    messages,
                });
            }
        }
        Ok(copies)
    }
}

/// Polls `check` until it yields, at most [`CLUSTER_WAIT_TIMEOUT_MS`]. The admin API has
/// no push, so waiting on another process's state is this one poll.
async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CLUSTER_WAIT_TIMEOUT_MS);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {CLUSTER_WAIT_TIMEOUT_MS} ms waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(ADMIN_POLL_MS)).await;
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
