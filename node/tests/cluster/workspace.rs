//! A workspace's files, its skill packs' files and its agent's own session store
//! follow the conversation.

use super::common::{collect_turn, done_content};
use super::harness::*;
use shoal_client::Client;
use shoal_protocol::workspaces::{SkillFile, SkillPackSpec, SkillSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_and_the_agents_memory_follow_a_kill_of_the_leader() {
    let mut cluster = TestCluster::start(3).await;
    let client = Client::connect(&cluster.profile).await.unwrap();
    // A named workspace with a skill pack attached: both are replicated state.
    let workspace = client.create_workspace("tides").await.unwrap();
    let spec = SkillPackSpec {
        name: "sea".into(),
        context: Some("Speak of the sea.".into()),
        skills: vec![SkillSpec {
            slug: "waves".into(),
            files: vec![SkillFile {
                path: "SKILL.md".into(),
                content: b"---\nname: waves\n---\n".to_vec(),
            }],
        }],
    };
    let pack = client.create_skill_pack(spec).await.unwrap();
    client
        .attach_skill_pack(Some(workspace.id), pack.id)
        .await
        .unwrap();
    let conv = client
        .create_conversation_in(workspace.id, None, None)
        .await
        .unwrap();
    assert_eq!(
        send_ok(&client, conv.id, "remember the tide").await,
        "echo: remember the tide"
    );
    let turn = client.send(conv.id, "/write notes.txt hi").await.unwrap();
    let frames = collect_turn(turn).await;
    assert_eq!(done_content(&frames), "wrote notes.txt", "{frames:?}");
    // `Done` came after the turn's snapshot reached a majority: kill at once.
    let (leader, client) = cluster.kill_leader(conv.id.shard.0).await;
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
    // The pack's files came along with the record of what Shoal wrote, so a detach on
    // the new host prunes them.
    let agents_md = notes.with_file_name("AGENTS.md");
    let text = std::fs::read_to_string(&agents_md).unwrap();
    assert!(text.contains("Speak of the sea."), "{text}");
    client
        .detach_skill_pack(Some(workspace.id), pack.id)
        .await
        .unwrap();
    assert!(
        !agents_md.exists(),
        "detached on the new host: AGENTS.md is pruned"
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "hi");
}
