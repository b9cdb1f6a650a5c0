//! A workspace's files and its agent's own session store follow the conversation.

use super::common::{collect_turn, done_content};
use super::harness::*;
use shoal_client::Client;

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
    // session/load on the new host found the agent's session store.
    super::common::assert_restored_and_remembered(
        &frames,
        "history: 2 earlier prompts: remember the tide | /write notes.txt hi",
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
