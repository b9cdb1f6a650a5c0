//! A real 3-node cluster on loopback: three `shoal-node start` processes with cluster
//! certificates, Raft per shard, gossip over QUIC datagrams. Faults are real: kill -9,
//! SIGSTOP (a leader cut off from its peers), a deleted store.

mod common;

use common::{assert_gap_free, collect_turn, done_content};
use futures::StreamExt;
use shoal_client::{AdminClient, Client, Profile};
use shoal_node::dev::LocalNode;
use shoal_protocol::ConversationId;
use shoal_protocol::transcript::{Event, Role};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Bound of every wait in this file (a loaded 2-core machine is slow).
const WAIT: Duration = Duration::from_secs(90);

/// Consecutive free UDP ports on loopback.
fn free_ports(n: u16) -> u16 {
    shoal_node::dev::free_port_range(n).expect("a free port range on loopback")
}

/// Asks `probe` until it yields a value, within [`WAIT`]. The state waited for (who
/// leads a shard, how far a replica applied) lives in other processes and the admin API
/// has no push, so this is the one place this file polls; it fails naming `what`.
async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::eventually_within(WAIT, what, probe).await
}

struct Proc {
    child: Option<tokio::process::Child>,
    node: LocalNode,
}

struct TestCluster {
    _dir: tempfile::TempDir,
    procs: Vec<Proc>,
    profile: Profile,
    agent_log: PathBuf,
}

impl TestCluster {
    async fn start(n: u16) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    /// [`Self::start`] with `edit` applied to every node's config.
    async fn start_with(
        n: u16,
        edit: impl Fn(&mut shoal_cluster_config::NodeConfig) + 'static,
    ) -> TestCluster {
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
        };
        for i in 0..cluster.procs.len() {
            cluster.spawn(i).await;
        }
        cluster.wait_all_led().await;
        cluster
    }

    async fn spawn(&mut self, i: usize) {
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

    fn pid(&self, i: usize) -> i32 {
        self.procs[i].child.as_ref().unwrap().id().unwrap() as i32
    }

    fn signal(&self, i: usize, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid(i)).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    async fn kill9(&mut self, i: usize) {
        self.signal(i, rustix::process::Signal::KILL);
        let _ = self.procs[i].child.take().unwrap().wait().await;
    }

    fn index_of(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A profile that dials node `i` first.
    fn profile_for(&self, i: usize) -> Profile {
        let mut p = self.profile.clone();
        p.address = self.procs[i].node.addr.to_string();
        p
    }

    async fn admin(&self, i: usize) -> AdminClient {
        AdminClient::connect(&self.profile_for(i)).await.unwrap()
    }

    /// Waits until node n1 sees a leader for every shard and leaderships are balanced.
    async fn wait_all_led(&self) {
        wait_balanced(&self.admin(0).await, self.procs.len()).await
    }

    /// The leader of `shard` as seen by a node other than `not`, once one is known and
    /// it is not `not`.
    async fn leader_of(&self, shard: u16, not: Option<&str>) -> String {
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
    async fn wait_voters_replaced(&self, shard: u16) {
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
    async fn long_turn_on_leader(&self) -> LongTurn {
        self.turn_on_leader("/slow 400").await
    }

    /// A new conversation with `prompt` running on its shard's leader, once its one
    /// agent process streams.
    async fn turn_on_leader(&self, prompt: &str) -> LongTurn {
        let client = Client::connect(&self.profile).await.unwrap();
        let conv = client.create_conversation(None, None).await.unwrap();
        let leader = self.leader_of(conv.id.shard.0, None).await;
        let li = self.index_of(&leader);
        let client_l = Client::connect(&self.profile_for(li)).await.unwrap();
        let mut turn = client_l.send(conv.id, prompt).await.unwrap();
        common::wait_for_chunks(&mut turn, 2).await;
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
    fn agent_events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.agent_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Pids of demo agents started so far (from their lifecycle log).
    fn agent_pids(&self) -> Vec<i32> {
        self.agent_events()
            .into_iter()
            .filter(|v| v["event"] == "start")
            .filter_map(|v| v["pid"].as_i64())
            .map(|p| p as i32)
            .collect()
    }
}

/// Kills every process whose command line names this directory when dropped.
struct KillOnDrop(PathBuf);

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
async fn wait_balanced(admin: &AdminClient, nodes: usize) {
    eventually("every shard led, leaderships balanced", || async {
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

/// What [`TestCluster::long_turn_on_leader`] set up.
struct LongTurn {
    conv: shoal_protocol::client::ConversationSummary,
    leader: String,
    li: usize,
    client_l: Client,
    turn: shoal_client::TurnStream,
    pid: i32,
}

fn alive(pid: i32) -> bool {
    // A zombie counts as gone (its parent reaps it soon).
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !status.is_empty() && !status.contains(") Z ")
}

/// Resolves when process `pid` has exited: its pidfd becomes readable (an event, not a
/// poll loop: one blocking `poll(2)` on a blocking-pool thread).
async fn exited(pid: i32) {
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

async fn send_ok(client: &Client, id: ConversationId, text: &str) -> String {
    let turn = client.send(id, text).await.expect("send is accepted");
    done_content(&collect_turn(turn).await)
}

/// The demo agent's echo of `text`. After a failover whose new host had no snapshot of
/// the agent's session (no turn had ended), the agent starts a new session and its first
/// prompt is preceded by the conversation so far, which the echo repeats too.
fn assert_echo(reply: &str, text: &str) {
    assert!(
        reply == format!("echo: {text}")
            || (reply.starts_with("echo: [This is a new session") && reply.ends_with(text)),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_kill_of_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client
        .create_conversation(Some("ha".into()), None)
        .await
        .unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        let text = format!("before {i}");
        assert_eq!(
            send_ok(&client, conv.id, &text).await,
            format!("echo: {text}")
        );
        acked.push(text);
    }
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let victim = cluster.index_of(&leader);
    cluster.kill9(victim).await;
    // The SDK retries (same request ids) through the election; nothing acknowledged is lost.
    let survivor = (victim + 1) % 3;
    let client = Client::connect(&cluster.profile_for(survivor))
        .await
        .unwrap();
    for i in 0..5 {
        let text = format!("after {i}");
        assert_eq!(
            send_ok(&client, conv.id, &text).await,
            format!("echo: {text}")
        );
        acked.push(text);
    }
    let new_leader = cluster.leader_of(conv.id.shard.0, Some(&leader)).await;
    assert_ne!(new_leader, leader);
    let detail = client.get_conversation(conv.id).await.unwrap();
    let users: Vec<&str> = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(users, acked.iter().map(String::as_str).collect::<Vec<_>>());
    // The killed node comes back and catches up.
    cluster.spawn(victim).await;
    cluster.wait_all_led().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_resumes_across_a_leadership_move_without_gaps() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    send_ok(&client, conv.id, "first").await;
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let victim = cluster.index_of(&leader);
    // Follow from a node that is not the leader: it answers Moved, the SDK goes there.
    let follower_node = (victim + 1) % 3;
    let watcher = Client::connect(&cluster.profile_for(follower_node))
        .await
        .unwrap();
    let mut follow = watcher.follow(conv.id, None);
    let mut frames = Vec::new();
    // The snapshot (reset + first turn) arrives.
    tokio::time::timeout(WAIT, async {
        while let Some(item) = follow.next().await {
            let frame = item.expect("follow frame");
            let is_reset = matches!(frame.event, Event::Reset { .. });
            frames.push(frame);
            if is_reset {
                return;
            }
        }
    })
    .await
    .expect("snapshot");
    cluster.kill9(victim).await;
    // A new turn on the new leader reaches the follower after it resumes there: live,
    // or inside the snapshot it gets on the new leader (a new activation).
    let client = Client::connect(&cluster.profile_for(follower_node))
        .await
        .unwrap();
    send_ok(&client, conv.id, "second").await;
    tokio::time::timeout(WAIT, async {
        while let Some(item) = follow.next().await {
            let frame = item.expect("follow frame");
            let complete = matches!(&frame.event, Event::Done { .. } | Event::Reset { .. });
            frames.push(frame);
            if complete
                && frames
                    .iter()
                    .any(|f| format!("{:?}", f.event).contains("echo: second"))
            {
                return;
            }
        }
        panic!("the follow ended");
    })
    .await
    .expect("the follower sees the turn on the new leader");
    assert_gap_free(&frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_peers_stops_its_agents() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        client_l,
        // Kept to the end: dropping the stream would cancel the turn.
        turn: _turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    assert!(alive(pid));
    // Cut the leader off: its two peers stop answering (SIGSTOP), so no quorum acks.
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::STOP);
    }
    // Without quorum acks the lease runs out and the leader kills its agent by itself.
    let killed = tokio::time::timeout(WAIT, exited(pid)).await;
    // And it cannot commit: a new conversation on the isolated leader's shard fails.
    let cannot_commit = tokio::time::timeout(
        Duration::from_secs(15),
        client_l.send(conv.id, "while cut off"),
    )
    .await;
    for i in &others {
        cluster.signal(*i, rustix::process::Signal::CONT);
    }
    killed.expect("the cut-off leader kills its agent process");
    match cannot_commit {
        Err(_) => {}
        Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("a leader without quorum accepted a message"),
    }
    // Healed: the cluster serves the conversation again (the SDK retries through the
    // election that follows). The message sent while cut off was never acknowledged,
    // but the leader kept it in its log and may commit it once its peers answer again:
    // then its turn runs first, and the next send waits for it.
    let client = Client::connect(&cluster.profile).await.unwrap();
    let reply = eventually("the healed conversation takes a message", || async {
        match client.send(conv.id, "healed").await {
            Ok(turn) => Some(done_content(&collect_turn(turn).await)),
            Err(shoal_client::ClientError::Server(e))
                if e.code == shoal_protocol::ErrorCode::Busy =>
            {
                None
            }
            Err(e) => panic!("the healed cluster refused the message: {e:?}"),
        }
    })
    .await;
    assert_echo(&reply, "healed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leaders_agents_are_killed_by_its_watchdog() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    // The leader itself stops running: it cannot fence anything. Its watchdog, a
    // separate process, sees the lease run out without a renewal and kills the agent,
    // before another node could take the shard over.
    cluster.signal(li, rustix::process::Signal::STOP);
    let killed = tokio::time::timeout(WAIT, exited(pid)).await;
    cluster.signal(li, rustix::process::Signal::CONT);
    killed.expect("the paused leader's watchdog kills its agent");
    drop(turn);
    let client = Client::connect(&cluster.profile).await.unwrap();
    assert_echo(&send_ok(&client, conv.id, "resumed").await, "resumed");
}

/// The leader's disk stalls: every flush waits, so openraft's core blocks inside an
/// append and stops publishing metrics, while the rest of the node runs on. The lease
/// must lapse from the last evidence (not be re-derived from stale metrics), so the
/// leader kills its agent before a new leader can start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_storage_stalls_stops_its_agents_before_a_new_leader_starts_one() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        leader,
        li,
        turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    let first = pid;
    cluster
        .admin(li)
        .await
        .inject_fault(shoal_protocol::admin::Fault::StallStorage { ms: 20_000 })
        .await
        .expect("the stall is injected");
    // Another node takes the shard over. Once it hosts, the stalled node must not: its
    // lease lapsed with the last evidence, however often it looked at stale metrics.
    let shard = usize::from(conv.id.shard.0);
    let new_leader = cluster.leader_of(conv.id.shard.0, Some(&leader)).await;
    let ni = cluster.index_of(&new_leader);
    let admin_n = cluster.admin(ni).await;
    eventually("the new leader hosts the shard", || async {
        admin_n.shards().await.ok()?[shard]
            .hosted_here
            .then_some(())
    })
    .await;
    let stalled_view = cluster.admin(li).await.shards().await.unwrap();
    assert!(
        !stalled_view[shard].hosted_here,
        "invariant 2: {leader} (storage stalled) still hosts shard {shard} while {new_leader} does"
    );
    let client_n = Client::connect(&cluster.profile_for(ni)).await.unwrap();
    assert_echo(
        &send_ok(&client_n, conv.id, "after the stall").await,
        "after the stall",
    );
    let pids = cluster.agent_pids();
    let log = std::fs::read_to_string(&cluster.agent_log).unwrap_or_default();
    assert!(pids.len() >= 2, "a second agent on the new leader: {log}");
    // Later agents run (or ran) on the new leader now; the first must already be gone.
    assert!(
        !alive(first),
        "invariant 2: the stalled leader's agent {first} still runs while {new_leader} runs its own: {log}"
    );
    drop(turn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wiped_store_is_reseeded_by_snapshot() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    // Enough writes that the shard snapshots (every 16 entries) and purges its log.
    for i in 0..12 {
        send_ok(&client, conv.id, &format!("m{i}")).await;
    }
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let wiped = (cluster.index_of(&leader) + 1) % 3;
    cluster.kill9(wiped).await;
    let store: &Path = &cluster.procs[wiped].node.data_dir.join("store");
    std::fs::remove_dir_all(store).unwrap();
    cluster.spawn(wiped).await;
    // Wait until the wiped node has applied the shard again.
    let admin = cluster.admin(wiped).await;
    let target = cluster.admin((wiped + 1) % 3).await.shards().await.unwrap()
        [usize::from(conv.id.shard.0)]
    .applied_index
    .unwrap();
    eventually("the wiped node catches up", || async {
        let shards = admin.shards().await.ok()?;
        (shards[usize::from(conv.id.shard.0)].applied_index >= Some(target)).then_some(())
    })
    .await;
    // It came back as a new Raft member (a new store generation) and replaces its old
    // self as a voter by a membership change.
    cluster.wait_voters_replaced(conv.id.shard.0).await;
    // Now the wiped node's copy is needed: kill the third node (not the wiped one).
    let third = (0..3)
        .find(|i| *i != wiped && cluster.procs[*i].node.name != leader)
        .unwrap();
    cluster.kill9(third).await;
    let client = Client::connect(&cluster.profile_for(wiped)).await.unwrap();
    // The SDK retries through the election this kill may cause.
    let detail = client
        .get_conversation(conv.id)
        .await
        .expect("served by the leader and the reseeded node");
    let users = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .count();
    assert_eq!(users, 12, "nothing lost");
}

/// The combination that lost acknowledged writes: one replica lags (down while writes
/// commit), another loses its store, the leader dies. An empty voter granting votes let
/// the lagging replica become leader without the committed writes. A node whose store
/// was lost is a new Raft member, so the lagging one cannot win: the shard waits for the
/// replica that has the writes, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_and_a_lagging_one_cannot_elect_a_leader_without_committed_writes() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    let shard = conv.id.shard.0;
    send_ok(&client, conv.id, "before").await;
    let leader = cluster.leader_of(shard, None).await;
    let li = cluster.index_of(&leader);
    let lagging = (li + 1) % 3;
    let wiped = (li + 2) % 3;
    // The lagging replica misses these (the leader and `wiped` acknowledge them).
    cluster.kill9(lagging).await;
    let client_l = Client::connect(&cluster.profile_for(li)).await.unwrap();
    for i in 0..5 {
        send_ok(&client_l, conv.id, &format!("acked {i}")).await;
    }
    // `wiped` loses its store and comes back empty; then the leader dies.
    cluster.kill9(wiped).await;
    std::fs::remove_dir_all(cluster.procs[wiped].node.data_dir.join("store")).unwrap();
    cluster.spawn(wiped).await;
    cluster.kill9(li).await;
    cluster.spawn(lagging).await;
    // Only the lagging replica and the empty one run. Whatever they answer, it must not
    // be a transcript without the acknowledged writes.
    let client_a = Client::connect(&cluster.profile_for(lagging))
        .await
        .unwrap();
    let served =
        tokio::time::timeout(Duration::from_secs(15), client_a.get_conversation(conv.id)).await;
    if let Ok(Ok(detail)) = served {
        let users = detail
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .count();
        assert_eq!(
            users,
            6,
            "invariant 1: a leader without the committed writes was elected: {:?}",
            detail
                .messages
                .iter()
                .map(|m| &m.content)
                .collect::<Vec<_>>()
        );
    }
    // The replica with the writes returns: all of them are there, and the new store's
    // member replaces the old voter.
    cluster.spawn(li).await;
    let detail = client_a
        .get_conversation(conv.id)
        .await
        .expect("served once a replica with the log is back");
    let users = detail
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .count();
    assert_eq!(users, 6, "nothing acknowledged is lost");
    cluster.wait_voters_replaced(shard).await;
}

/// A turn whose tool output grows past any log entry: it is stopped at
/// `limits.turn_buffer_bytes_max` (256 KiB here, so the first 1 MiB output is refused
/// and no big entry loads a busy test machine) with a clear error, and the shard keeps
/// replicating. (Tool output was not counted, and a checkpoint larger than a peer frame
/// could never be replicated: the shard stopped committing anything.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_with_huge_tool_output_fails_cleanly_and_the_shard_goes_on() {
    let cluster = TestCluster::start_with(3, |config| {
        config.limits.turn_buffer_bytes_max = std::num::NonZeroU64::new(256 * 1024).unwrap();
    })
    .await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    // Nine tool calls of 1 MiB each: more than a peer frame (8 MiB).
    let mut turn = client.send(conv.id, "/bigtool 1024 9").await.unwrap();
    let mut errors = Vec::new();
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(frame) = turn.next().await {
            match frame {
                Ok(frame) => match frame.event {
                    Event::Error { message } => errors.push(message),
                    Event::Done { message, .. } => return Some(message),
                    _ => {}
                },
                Err(e) => panic!("the turn's stream broke: {e}"),
            }
        }
        None
    })
    .await
    .expect("the big turn ends in time")
    .expect("the big turn ends with done");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("limits.turn_buffer_bytes_max")),
        "the error names the limit: {errors:?}; ended {:?} {:?} with {} parts",
        ended.status,
        ended.error,
        ended.parts.len()
    );
    assert_ne!(
        ended.status,
        shoal_protocol::transcript::MessageStatus::Complete
    );
    // The shard still commits: the next turn of the same conversation works.
    let next = client.send(conv.id, "after the big turn").await.unwrap();
    let frames = collect_turn(next).await;
    assert_eq!(
        done_content(&frames),
        "echo: after the big turn",
        "{:?}",
        frames.iter().map(|f| &f.event).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_every_leadership_off_a_node() {
    let cluster = TestCluster::start(3).await;
    let admin = cluster.admin(1).await;
    admin.drain("n1").await.expect("drain accepted");
    eventually("every leadership leaves the drained node", || async {
        let shards = admin.shards().await.ok()?;
        shards
            .iter()
            .all(|s| s.leader.is_some() && s.leader.as_deref() != Some("n1"))
            .then_some(())
    })
    .await;
    let members = admin.members().await.unwrap();
    assert!(members.iter().any(|m| m.node_id == "n1" && m.draining));
    // The cluster keeps serving (requests through the drained node are forwarded).
    let client = Client::connect(&cluster.profile_for(0)).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(
        send_ok(&client, conv.id, "still here").await,
        "echo: still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_a_local_cluster_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c");
    // `up` is killed on drop if the test fails; its nodes would outlive it.
    let _nodes = KillOnDrop(data.clone());
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["up", "--nodes", "3", "--first-port"])
        .arg(free_ports(3).to_string())
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("shoal cluster up: 3 nodes") {
                return;
            }
        }
        panic!("up exited before the cluster was ready");
    })
    .await
    .expect("cluster up in time");
    let profile = Profile::load(&data.join("profile.toml")).unwrap();
    wait_balanced(&AdminClient::connect(&profile).await.unwrap(), 3).await;
    let client = Client::connect(&profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(send_ok(&client, conv.id, "hi").await, "echo: hi");
    let pid = rustix::process::Pid::from_raw(up.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = tokio::time::timeout(WAIT, up.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    for n in ["n1", "n2", "n3"] {
        let config = data.join(n).join("shoal.toml");
        let still = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(config.display().to_string())
            .output()
            .unwrap();
        assert!(still.stdout.is_empty(), "{n} still runs after up stopped");
    }
}

#[test]
fn config_check_rejects_a_lease_not_shorter_than_the_election_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        shoal_cluster_config::NodeConfig::dev(dir.path().to_owned(), "demo".into(), Vec::new());
    config.cluster.lease_ms = std::num::NonZeroU64::new(500).unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config.to_toml_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-node"))
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.lease_ms"), "{stderr}");
    assert!(stderr.contains("election"), "{stderr}");
}

/// Reads a turn's stream until its `Done` (`None` if it ended or failed without one).
async fn turn_done(
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
fn stopped_cleanly(cluster: &TestCluster, pid: i32) -> bool {
    cluster
        .agent_events()
        .iter()
        .any(|v| v["event"] == "stop" && v["pid"].as_i64() == Some(i64::from(pid)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_a_shard_between_turns_instead_of_killing_the_running_one() {
    let cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        leader,
        li,
        mut turn,
        pid,
        ..
    } = cluster.turn_on_leader("/slow 60").await;
    cluster
        .admin((li + 1) % 3)
        .await
        .drain(&leader)
        .await
        .expect("drain accepted");
    let done = turn_done(&mut turn)
        .await
        .expect("the running turn ends with done on the draining node");
    assert_eq!(
        done.status,
        shoal_protocol::transcript::MessageStatus::Complete,
        "the drain cut the running turn: {done:?}"
    );
    assert!(done.content.ends_with("chunk 60 "), "{}", done.content);
    eventually("the agent process stops cleanly", || async {
        stopped_cleanly(&cluster, pid).then_some(())
    })
    .await;
    let admin = cluster.admin((li + 1) % 3).await;
    eventually("the shard's leadership leaves the drained node", || async {
        let shard = admin
            .shards()
            .await
            .ok()?
            .remove(usize::from(conv.id.shard.0));
        (shard.leader.is_some() && shard.leader.as_deref() != Some(leader.as_str())).then_some(())
    })
    .await;
    // The conversation goes on on its new leader.
    let client = Client::connect(&cluster.profile_for((li + 1) % 3))
        .await
        .unwrap();
    assert_eq!(send_ok(&client, conv.id, "moved").await, "echo: moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_running_turn_with_what_it_streamed_before_closing() {
    let mut cluster = TestCluster::start(3).await;
    let LongTurn {
        conv,
        li,
        mut turn,
        pid,
        ..
    } = cluster.long_turn_on_leader().await;
    cluster.signal(li, rustix::process::Signal::TERM);
    let done = turn_done(&mut turn)
        .await
        .expect("the initiator gets done before the node closes its endpoint");
    assert_eq!(
        done.status,
        shoal_protocol::transcript::MessageStatus::Interrupted
    );
    let error = done.error.clone().unwrap_or_default();
    assert!(error.contains("shutting down"), "{done:?}");
    assert!(done.content.starts_with("chunk 1 chunk 2 "), "{done:?}");
    let exit = tokio::time::timeout(WAIT, cluster.procs[li].child.take().unwrap().wait())
        .await
        .expect("the node exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        stopped_cleanly(&cluster, pid),
        "the agent was killed, not stopped"
    );
    // The survivors serve the turn as the stopping node committed it.
    let client = Client::connect(&cluster.profile_for((li + 1) % 3))
        .await
        .unwrap();
    let stored = eventually("the conversation is served again", || async {
        client.get_conversation(conv.id).await.ok()
    })
    .await;
    let last = stored.messages.last().unwrap();
    assert_eq!(last.role, Role::Assistant);
    assert_eq!(last.content, done.content);
    assert_eq!(last.error, done.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_and_the_agents_memory_follow_a_kill_of_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    let conv = client.create_conversation(None, None).await.unwrap();
    assert_eq!(
        send_ok(&client, conv.id, "remember the tide").await,
        "echo: remember the tide"
    );
    let turn = client.send(conv.id, "/write notes.txt hi").await.unwrap();
    let frames = collect_turn(turn).await;
    assert_eq!(done_content(&frames), "wrote notes.txt", "{frames:?}");
    // `Done` came after the turn's snapshot reached a majority: kill at once.
    let leader = cluster.leader_of(conv.id.shard.0, None).await;
    let victim = cluster.index_of(&leader);
    cluster.kill9(victim).await;

    let survivor = (victim + 1) % 3;
    let client = Client::connect(&cluster.profile_for(survivor))
        .await
        .unwrap();
    let turn = client.send(conv.id, "/history").await.unwrap();
    let frames = collect_turn(turn).await;
    let statuses = common::statuses(&frames);
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("workspace restored from snapshot")),
        "{statuses:?}"
    );
    assert!(
        !statuses.iter().any(|s| s.contains("could not resume")),
        "{statuses:?}"
    );
    assert_eq!(
        done_content(&frames),
        "history: 2 earlier prompts: remember the tide | /write notes.txt hi",
        "session/load on the new host found the agent's session store"
    );
    let new_leader = cluster.leader_of(conv.id.shard.0, Some(&leader)).await;
    let host = &cluster.procs[cluster.index_of(&new_leader)].node;
    let notes = host
        .data_dir
        .join("workspaces")
        .join(conv.workspace.to_string())
        .join("work/notes.txt");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "hi");
}
