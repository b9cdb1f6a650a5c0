//! The cluster the tests run: real `shoal-node start` processes on loopback, their
//! agent log and pids, and the waits and checks the tests share.

use super::common::{collect_turn, done_content};
use futures::StreamExt;
use shoal_client::{AdminClient, Client, Profile};
use shoal_node::dev::LocalNode;
use shoal_protocol::ConversationId;
use shoal_protocol::transcript::Event;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound of every wait in these tests (a loaded 2-core machine is slow).
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// Consecutive free UDP ports on loopback.
pub(crate) fn free_ports(n: u16) -> u16 {
    shoal_node::dev::free_port_range(n).expect("a free port range on loopback")
}

/// Asks `probe` until it yields a value, within [`WAIT`]. The state waited for (who
/// leads a shard, how far a replica applied) lives in other processes and the admin API
/// has no push, so this is the one place these tests poll; it fails naming `what`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    super::common::eventually_within(WAIT, what, probe).await
}

pub(crate) struct Proc {
    pub(crate) child: Option<tokio::process::Child>,
    pub(crate) node: LocalNode,
}

/// One cluster at a time: the test harness runs tests two at a time on a 2-core machine,
/// and two 3-node clusters (six nodes, their agents and Raft timers) on two cores starve
/// each other's heartbeats into elections no test asked for. Each test still runs in its
/// own cluster; they only take turns.
static CLUSTER_SLOT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub(crate) struct TestCluster {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) procs: Vec<Proc>,
    pub(crate) profile: Profile,
    pub(crate) agent_log: PathBuf,
    /// This test's turn to run a cluster: the last field, so it is released after the
    /// nodes are gone.
    _slot: tokio::sync::SemaphorePermit<'static>,
}

/// Lines of each node's log printed when a test fails.
const FAILURE_LOG_LINES: usize = 60;

impl Drop for TestCluster {
    /// A failing test shows what each node logged last (the logs go with the temporary
    /// directory otherwise).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for proc in &self.procs {
            let log =
                std::fs::read_to_string(proc.node.data_dir.join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(FAILURE_LOG_LINES)..];
            eprintln!(
                "---- {} (last {} log lines) ----\n{}",
                proc.node.name,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl TestCluster {
    pub(crate) async fn start(n: u16) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    /// [`Self::start`] with `edit` applied to every node's config.
    pub(crate) async fn start_with(
        n: u16,
        edit: impl Fn(&mut shoal_cluster_config::NodeConfig) + 'static,
    ) -> TestCluster {
        let slot = CLUSTER_SLOT
            .acquire()
            .await
            .expect("the slot is never closed");
        let dir = tempfile::tempdir().unwrap();
        let agent_log = dir.path().join("agents.log");
        let log = agent_log.clone();
        let nodes = shoal_node::dev::prepare_cluster(
            dir.path(),
            n,
            free_ports(n),
            env!("CARGO_BIN_EXE_shoal-node").into(),
            vec!["demo-agent".into()],
            move |config| {
                config.cluster.placement_grace_ms = 2_000;
                config.cluster.snapshot_every_entries = std::num::NonZeroU64::new(16).unwrap();
                config.gossip.probe_period_ms = std::num::NonZeroU64::new(200);
                config.gossip.suspect_to_down_ms = std::num::NonZeroU64::new(1_000);
                for agent in config.agents.values_mut() {
                    agent
                        .env
                        .insert("SHOAL_DEMO_AGENT_LOG".into(), log.display().to_string());
                }
                edit(config);
            },
        )
        .unwrap();
        let profile = Profile::load(&dir.path().join("profile.toml")).unwrap();
        let mut cluster = TestCluster {
            _dir: dir,
            procs: nodes
                .into_iter()
                .map(|node| Proc { child: None, node })
                .collect(),
            profile,
            agent_log,
            _slot: slot,
        };
        for i in 0..cluster.procs.len() {
            cluster.spawn(i).await;
        }
        cluster.wait_all_led().await;
        cluster
    }

    pub(crate) async fn spawn(&mut self, i: usize) {
        let node = &self.procs[i].node;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data_dir.join("node.log"))
            .unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
            .arg("start")
            .arg("--config")
            .arg(&node.config_path)
            .env("SHOAL_LOG", "info,openraft=error")
            .env(shoal_node::seam::FAULT_INJECTION_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn shoal-node start");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.starts_with("shoal-node ready") {
                    return;
                }
            }
            panic!("{} exited before its ready line", node.name);
        })
        .await
        .expect("ready line in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.procs[i].child = Some(child);
    }

    pub(crate) fn pid(&self, i: usize) -> i32 {
        self.procs[i].child.as_ref().unwrap().id().unwrap() as i32
    }

    pub(crate) fn signal(&self, i: usize, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid(i)).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Kills -9 the leader of `shard` and connects to a survivor: the leader's name and
    /// the client.
    pub(crate) async fn kill_leader(&mut self, shard: u16) -> (String, Client) {
        let leader = self.leader_of(shard, None).await;
        let victim = self.index_of(&leader);
        self.kill9(victim).await;
        let survivor = (victim + 1) % self.procs.len();
        let client = Client::connect(&self.profile_for(survivor)).await.unwrap();
        (leader, client)
    }

    pub(crate) async fn kill9(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::KILL);
        let _ = self.procs[i].child.take().unwrap().wait().await;
    }

    pub(crate) fn index_of(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A profile that dials node `i` first.
    pub(crate) fn profile_for(&self, i: usize) -> Profile {
        let mut p = self.profile.clone();
        p.address = self.procs[i].node.addr.to_string();
        p
    }

    pub(crate) async fn admin(&self, i: usize) -> AdminClient {
        AdminClient::connect(&self.profile_for(i)).await.unwrap()
    }

    /// Waits until every shard has a leader and leaderships are balanced, judging each
    /// shard by the view of the highest term among the nodes (a node that holds no replica
    /// of a shard does not hear from its leader).
    pub(crate) async fn wait_all_led(&self) {
        let mut admins = Vec::new();
        for i in 0..self.procs.len() {
            admins.push(self.admin(i).await);
        }
        wait_balanced(&admins, self.procs.len()).await
    }

    /// The leader of `shard` as seen by a node other than `not`, once one is known and
    /// it is not `not`.
    pub(crate) async fn leader_of(&self, shard: u16, not: Option<&str>) -> String {
        let via = (0..self.procs.len())
            .find(|i| {
                self.procs[*i].child.is_some() && Some(self.procs[*i].node.name.as_str()) != not
            })
            .unwrap();
        let admin = self.admin(via).await;
        eventually("a leader is elected", || async {
            let leader = admin.shards().await.ok()?[usize::from(shard)]
                .leader
                .clone()?;
            (Some(leader.as_str()) != not).then_some(leader)
        })
        .await
    }

    /// Waits until the leader of `shard` lists every node as a voter in its current
    /// identity: no learner left, no replica of a lost store (`name@old-store`).
    pub(crate) async fn wait_voters_replaced(&self, shard: u16) {
        let names: Vec<String> = self.procs.iter().map(|p| p.node.name.clone()).collect();
        let leader = self.leader_of(shard, None).await;
        let admin = self.admin(self.index_of(&leader)).await;
        eventually(
            "the old voter is replaced by the new store's member",
            || async {
                let info = admin.shards().await.ok()?.remove(usize::from(shard));
                let mut replicas = info.replicas.clone();
                replicas.sort();
                (info.learners.is_empty() && replicas == names).then_some(())
            },
        )
        .await
    }

    /// A new conversation with a long turn (`/slow 400`) running on its shard's leader,
    /// once its one agent process streams.
    pub(crate) async fn long_turn_on_leader(&self) -> LongTurn {
        self.turn_on_leader("/slow 400").await
    }

    /// A new conversation with `prompt` running on its shard's leader, once its one
    /// agent process streams.
    pub(crate) async fn turn_on_leader(&self, prompt: &str) -> LongTurn {
        let client = Client::connect(&self.profile).await.unwrap();
        let conv = client.create_conversation(None, None).await.unwrap();
        let leader = self.leader_of(conv.id.shard.0, None).await;
        let li = self.index_of(&leader);
        let client_l = Client::connect(&self.profile_for(li)).await.unwrap();
        let mut turn = client_l.send(conv.id, prompt).await.unwrap();
        super::common::wait_for_chunks(&mut turn, 2).await;
        let pids = self.agent_pids();
        assert_eq!(pids.len(), 1, "one agent process: {pids:?}");
        LongTurn {
            conv,
            leader,
            li,
            client_l,
            turn,
            pid: pids[0],
        }
    }

    /// The demo agents' lifecycle log so far: one JSON object per start and clean stop.
    pub(crate) fn agent_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.agent_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Pids of demo agents started so far (from their lifecycle log).
    pub(crate) fn agent_pids(&self) -> Vec<i32> {
        self.agent_events()
            .into_iter()
            .filter(|v| v["event"] == "start")
            .filter_map(|v| v["pid"].as_i64())
            .map(|p| p as i32)
            .collect()
    }
}

/// Kills every process whose command line names this directory when dropped.
pub(crate) struct KillOnDrop(pub(crate) PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .arg("-9")
            .arg("-f")
            .arg(self.0.display().to_string())
            .status();
    }
}

/// Waits until every shard has a leader and none of `nodes` nodes leads more than its
/// share (rounded up): the balancing transfers after a cluster forms are over, so a turn
/// started now is not cut by one.
pub(crate) async fn wait_balanced(admins: &[AdminClient], nodes: usize) {
    eventually("every shard led, leaderships balanced", || async {
        let mut leaders = std::collections::BTreeMap::<u16, (u64, String)>::new();
        for admin in admins {
            for s in admin.shards().await.ok()? {
                let Some(leader) = s.leader else { continue };
                let known = leaders.entry(s.shard).or_insert((s.term, leader.clone()));
                if s.term > known.0 {
                    *known = (s.term, leader);
                }
            }
        }
        let shards = admins.first()?.shards().await.ok()?.len();
        let mut per_node = std::collections::BTreeMap::<String, usize>::new();
        for (_, leader) in leaders.values() {
            *per_node.entry(leader.clone()).or_default() += 1;
        }
        let share = shards.div_ceil(nodes);
        (leaders.len() == shards
            && per_node.len() == nodes
            && per_node.values().all(|n| *n <= share))
        .then_some(())
    })
    .await
}

/// What [`TestCluster::long_turn_on_leader`] set up.
pub(crate) struct LongTurn {
    pub(crate) conv: shoal_protocol::client::ConversationSummary,
    pub(crate) leader: String,
    pub(crate) li: usize,
    pub(crate) client_l: Client,
    pub(crate) turn: shoal_client::TurnStream,
    pub(crate) pid: i32,
}

pub(crate) fn alive(pid: i32) -> bool {
    // A zombie counts as gone (its parent reaps it soon).
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !status.is_empty() && !status.contains(") Z ")
}

/// Resolves when process `pid` has exited: its pidfd becomes readable (an event, not a
/// poll loop: one blocking `poll(2)` on a blocking-pool thread).
pub(crate) async fn exited(pid: i32) {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    // ESRCH: already gone.
    let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return;
    };
    let _ = tokio::task::spawn_blocking(move || {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        // Without a timeout: the test's own timeout abandons this thread, and the pidfd
        // turns readable at the latest when the test's processes are killed on drop.
        let _ = rustix::event::poll(&mut fds, None);
    })
    .await;
}

pub(crate) async fn send_ok(client: &Client, id: ConversationId, text: &str) -> String {
    let turn = client.send(id, text).await.expect("send is accepted");
    done_content(&collect_turn(turn).await)
}

/// The demo agent's echo of `text`. After a failover whose new host had no snapshot of
/// the agent's session (no turn had ended), the agent starts a new session and its first
/// prompt is preceded by the conversation so far, which the echo repeats too.
/// Sends `text` to a conversation of a cluster that was just healed, and returns the
/// reply. A message sent while the cluster was cut off was never acknowledged, but its
/// leader kept it in its log and may commit it once its peers answer again: then its turn
/// runs first, and this send is `Busy` until it ends.
pub(crate) async fn send_once_healed(client: &Client, id: ConversationId, text: &str) -> String {
    eventually("the healed conversation takes a message", || async {
        match client.send(id, text).await {
            Ok(turn) => Some(done_content(&collect_turn(turn).await)),
            Err(shoal_client::ClientError::Server(e))
                if e.code == shoal_protocol::ErrorCode::Busy =>
            {
                None
            }
            Err(e) => panic!("the healed cluster refused the message: {e:?}"),
        }
    })
    .await
}

pub(crate) fn assert_echo(reply: &str, text: &str) {
    assert!(
        reply == format!("echo: {text}")
            || (reply.starts_with("echo: [This is a new session") && reply.ends_with(text)),
        "{reply}"
    );
}

/// Reads a turn's stream until its `Done` (`None` if it ended or failed without one).
pub(crate) async fn turn_done(
    turn: &mut shoal_client::TurnStream,
) -> Option<shoal_protocol::transcript::Message> {
    tokio::time::timeout(WAIT, async {
        while let Some(frame) = turn.next().await {
            match frame {
                Ok(frame) => {
                    if let Event::Done { message, .. } = frame.event {
                        return Some(message);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the turn ended in time")
}

/// Whether the demo agent `pid` logged a clean stop (it saw its input end), rather than
/// being killed.
pub(crate) fn stopped_cleanly(cluster: &TestCluster, pid: i32) -> bool {
    cluster
        .agent_events()
        .iter()
        .any(|v| v["event"] == "stop" && v["pid"].as_i64() == Some(i64::from(pid)))
}
