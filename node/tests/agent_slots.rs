//! Agent processes on one node (issue 9, item 10): a conversation's new activation never
//! starts an agent while its previous agent process still runs, and the node-wide cap
//! `limits.agent_processes_max` is kept by stopping idle warm agents, least recently
//! used first, instead of refusing turns.
//!
//! Every demo agent reports to a witness socket and takes its conversation's `flock`
//! without waiting: `"lock": "contended"` proves another live process of the same
//! conversation held it at that moment (the kernel drops a dead process's lock).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

/// What agents reported to the witness: one JSON object per agent process started.
struct Witness {
    starts: watch::Receiver<Vec<serde_json::Value>>,
}

impl Witness {
    /// Listens at `<dir>/witness.sock`.
    fn listen(dir: &Path) -> (PathBuf, Witness) {
        let path = dir.join("witness.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the witness socket");
        let (starts, witness) = watch::channel(Vec::new());
        let witness = Witness { starts: witness };
        let starts = std::sync::Arc::new(starts);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let starts = starts.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stream).lines();
                    if let Ok(Some(line)) = lines.next_line().await {
                        let value = serde_json::from_str(&line).expect("a witness line");
                        starts.send_modify(|s| s.push(value));
                    }
                    // Held open until the agent exits.
                    while let Ok(Some(_)) = lines.next_line().await {}
                });
            }
        });
        (path, witness)
    }

    fn starts(&self) -> Vec<serde_json::Value> {
        self.starts.borrow().clone()
    }

    fn assert_never_contended(&self) {
        let starts = self.starts();
        assert!(
            starts.iter().all(|s| s["lock"] != "contended"),
            "an agent started while another process of its conversation was alive: {starts:?}"
        );
    }

    async fn await_starts(&self, n: usize) {
        let mut starts = self.starts.clone();
        let waited = tokio::time::timeout(WAIT, starts.wait_for(|s| s.len() >= n)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "expected {n} agent starts, saw {:?}",
            self.starts()
        );
    }
}

fn witnessed_config(dir: &Path, socket: &Path) -> shoal_cluster_config::NodeConfig {
    let mut config = dev_config(dir);
    for spec in config.agents.values_mut() {
        spec.env.insert(
            shoal_demo_agent::WITNESS_SOCKET_ENV.to_owned(),
            socket.display().to_string(),
        );
    }
    config
}

#[tokio::test]
async fn an_evicted_conversation_starts_no_agent_until_its_old_one_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, witness) = Witness::listen(dir.path());
    let mut node = TestNode::start_with(witnessed_config(dir.path(), &socket)).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    // The agent will take 2 s to exit once told to stop.
    let frames = collect_turn(client.send(conv.id, "/linger 2000").await.unwrap()).await;
    assert!(done_content(&frames).starts_with("will linger"));
    assert!(admin.evict(conv.id).await.unwrap(), "it was active");
    // At once: this activates the conversation again while its old agent still lingers.
    let frames = collect_turn(client.send(conv.id, "again").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: again");
    witness.await_starts(2).await;
    witness.assert_never_contended();
    node.stop().await;
}

#[tokio::test]
async fn at_the_agent_cap_the_least_recently_used_idle_agent_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, witness) = Witness::listen(dir.path());
    let mut config = witnessed_config(dir.path(), &socket);
    config.limits.agent_processes_max = 2.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let mut convs = Vec::new();
    for _ in 0..3 {
        convs.push(client.create_conversation(None, None).await.unwrap().id);
    }
    collect_turn(client.send(convs[0], "first").await.unwrap()).await;
    collect_turn(client.send(convs[1], "second").await.unwrap()).await;
    // Both agents stay warm; the cap is reached. conv 0 is the least recently used.
    collect_turn(client.send(convs[1], "second again").await.unwrap()).await;
    let frames = collect_turn(client.send(convs[2], "third").await.unwrap()).await;
    assert_eq!(
        done_content(&frames),
        "echo: third",
        "a turn at the cap runs once an idle agent is stopped: {frames:?}"
    );
    let status = admin.status().await.unwrap();
    assert!(status.agent_processes <= 2, "{status:?}");
    // conv 1's agent stayed warm (no new start for it); conv 0's was the one stopped.
    let frames = collect_turn(client.send(convs[1], "still warm").await.unwrap()).await;
    assert_eq!(done_content(&frames), "echo: still warm");
    witness.await_starts(3).await;
    assert_eq!(witness.starts().len(), 3, "{:?}", witness.starts());

    node.stop().await;
}
