//! Workspace snapshots on one real node: taken at turn ends, bounded, collected, and
//! restored before an agent starts when the tree on disk is not the last snapshot.

mod common;

use common::*;
use shoal_client::Client;
use shoal_node::context::NodeContext;
use shoal_node::workspace::blobs::ChunkHash;
use shoal_protocol::{ConversationId, WorkspaceId};
use std::sync::Arc;
use std::time::Duration;

async fn turn(
    client: &Client,
    id: ConversationId,
    text: &str,
) -> Vec<shoal_protocol::transcript::EventFrame> {
    collect_turn(client.send(id, text).await.expect("send is accepted")).await
}

fn snapshot_seq(ctx: &NodeContext, workspace: WorkspaceId) -> u64 {
    ctx.store
        .workspace_snapshot(workspace)
        .expect("store reads")
        .map_or(0, |s| s.seq)
}

#[tokio::test]
async fn each_turn_end_commits_a_snapshot_and_collection_keeps_only_what_it_refers_to() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let ctx: Arc<NodeContext> = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();

    let frames = turn(&client, conv.id, "/write notes.txt first version").await;
    assert_eq!(done_content(&frames), "wrote notes.txt");
    assert!(warnings(&frames).is_empty(), "{:?}", warnings(&frames));
    assert_eq!(
        snapshot_seq(&ctx, conv.workspace),
        1,
        "Done comes after the snapshot"
    );
    let first = ChunkHash::of(b"first version");
    assert!(ctx.blobs.contains(&first));

    turn(&client, conv.id, "/write notes.txt second version").await;
    assert_eq!(snapshot_seq(&ctx, conv.workspace), 2);
    let second = ChunkHash::of(b"second version");
    assert!(ctx.blobs.contains(&second));

    // The first version's chunk is referenced by no committed snapshot any more.
    let collected = shoal_node::workspace::collect_garbage(&ctx, Duration::ZERO)
        .await
        .unwrap();
    assert!(collected.removed >= 1, "{collected:?}");
    assert!(!ctx.blobs.contains(&first));
    assert!(ctx.blobs.contains(&second));
    // What the last snapshot refers to survives, so it still restores.
    let restored = tempfile::tempdir().unwrap();
    let record = ctx
        .store
        .workspace_snapshot(conv.workspace)
        .unwrap()
        .unwrap();
    let bytes = shoal_node::workspace::manifest::load_chunked(&ctx.blobs, &record.manifest)
        .unwrap()
        .expect("the manifest is kept");
    let manifest = shoal_node::workspace::manifest::Manifest::decode(&bytes).unwrap();
    shoal_node::workspace::manifest::restore(restored.path(), &manifest, &ctx.blobs).unwrap();
    assert_eq!(
        std::fs::read_to_string(restored.path().join("work/notes.txt")).unwrap(),
        "second version"
    );
}

#[tokio::test]
async fn a_snapshot_over_the_limit_keeps_the_previous_one_and_warns_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.workspace.snapshot_bytes_max = std::num::NonZeroU64::new(4096).unwrap();
    let node = TestNode::start_with(config).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();

    turn(&client, conv.id, "/write small.txt fits").await;
    assert_eq!(snapshot_seq(&ctx, conv.workspace), 1);

    let big = "x".repeat(8192);
    let frames = turn(&client, conv.id, &format!("/write big.txt {big}")).await;
    assert_eq!(
        done_content(&frames),
        "wrote big.txt",
        "the turn itself succeeds"
    );
    let warned = warnings(&frames);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("workspace.snapshot_bytes_max") && w.contains("previous one stays")),
        "{warned:?}"
    );
    assert_eq!(
        snapshot_seq(&ctx, conv.workspace),
        1,
        "the previous snapshot stays"
    );

    // Followers never see the warning: it is owner-only.
    let follower = frames
        .iter()
        .filter(|f| f.event.for_follower().is_some())
        .count();
    assert_eq!(follower + warned.len(), frames.len());
}

#[tokio::test]
async fn a_tree_removed_from_disk_is_restored_before_the_next_agent_starts() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    turn(&client, conv.id, "remember the tide").await;
    turn(&client, conv.id, "/write notes.txt kept").await;

    // Stop the conversation (and its agent), then lose the tree.
    assert!(admin.evict(conv.id).await.unwrap());
    let root = ctx.workspace_root(conv.workspace);
    no_agent_runs(&ctx).await;
    std::fs::remove_dir_all(&root).unwrap();

    let frames = turn(&client, conv.id, "/history").await;
    assert_restored_and_remembered(
        &frames,
        "history: 2 earlier prompts: remember the tide | /write notes.txt kept",
    );
    assert!(
        statuses(&frames)
            .iter()
            .any(|s| s.starts_with("workspace restored from snapshot 2")),
        "the last snapshot before the tree was lost"
    );
    assert_eq!(
        std::fs::read_to_string(ctx.workspace_dir(conv.workspace).join("notes.txt")).unwrap(),
        "kept"
    );
}

#[tokio::test]
async fn an_agent_that_cannot_load_its_session_is_given_the_conversation_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    turn(&client, conv.id, "remember the tide").await;

    // The agent's own session store is lost, the tree otherwise intact: no restore
    // happens, and `session/load` fails.
    assert!(admin.evict(conv.id).await.unwrap());
    no_agent_runs(&ctx).await;
    let home = ctx.agent_home(conv.workspace, conv.id);
    std::fs::remove_dir_all(home.join(".shoal-demo-agent")).unwrap();

    let frames = turn(&client, conv.id, "what did I say?").await;
    let statuses = statuses(&frames);
    assert!(
        statuses.iter().any(|s| s.contains("could not resume")),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("given the conversation so far")),
        "{statuses:?}"
    );
    // The demo agent echoes its prompt: the preamble came first.
    let echoed = done_content(&frames);
    assert!(
        echoed.contains("user: remember the tide")
            && echoed.contains("assistant: echo: remember the tide"),
        "{echoed}"
    );
    assert!(echoed.ends_with("what did I say?"), "{echoed}");

    // Only the first prompt of the new session carries it.
    let frames = turn(&client, conv.id, "and now?").await;
    assert_eq!(done_content(&frames), "echo: and now?");
}

#[tokio::test]
async fn an_idle_agent_is_stopped_and_an_idle_tree_archived_then_restored_on_the_next_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    config.workspace.idle_stop_ms = 300;
    config.workspace.archive_after_ms = 1_500;
    let node = TestNode::start_with(config).await;
    let ctx = node.node.as_ref().unwrap().context().clone();
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    turn(&client, conv.id, "remember the tide").await;
    turn(&client, conv.id, "/write notes.txt kept").await;

    // Stopped by workspace.idle_stop_ms: nothing else stops it here.
    no_agent_runs(&ctx).await;
    let root = ctx.workspace_root(conv.workspace);
    eventually("the idle tree is archived", || async {
        (!root.exists()).then_some(())
    })
    .await;
    let seq = snapshot_seq(&ctx, conv.workspace);
    assert!(seq >= 2, "the snapshot stays: {seq}");

    let frames = turn(&client, conv.id, "/history").await;
    assert_restored_and_remembered(
        &frames,
        "history: 2 earlier prompts: remember the tide | /write notes.txt kept",
    );
    assert_eq!(
        std::fs::read_to_string(ctx.workspace_dir(conv.workspace).join("notes.txt")).unwrap(),
        "kept"
    );
}

/// Whether bubblewrap can confine a process on this machine.
fn bwrap_works() -> bool {
    shoal_node::agent_process::check_bwrap()
        .inspect_err(|e| eprintln!("bubblewrap is not usable here, its mode is not tested: {e}"))
        .is_ok()
}

/// What the agent's own process can read in each isolation mode: its workspace always;
/// the node's keys and another workspace only without bubblewrap.
#[tokio::test]
async fn under_bubblewrap_an_agent_reaches_its_workspace_and_nothing_else_of_the_node() {
    for isolation in [
        shoal_cluster_config::Isolation::None,
        shoal_cluster_config::Isolation::Bwrap,
    ] {
        if isolation == shoal_cluster_config::Isolation::Bwrap && !bwrap_works() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut config = dev_config(dir.path());
        config.sandbox.isolation = isolation;
        let node = TestNode::start_with(config).await;
        let ctx = node.node.as_ref().unwrap().context().clone();
        let client = node.client().await;
        let conv = client.create_conversation(None, None).await.unwrap();
        turn(&client, conv.id, "/write notes.txt mine").await;
        let own = ctx.workspace_dir(conv.workspace).join("notes.txt");
        let frames = turn(&client, conv.id, &format!("/cat {}", own.display())).await;
        assert_eq!(done_content(&frames), "cat: mine", "{isolation:?}");

        // Another workspace's file and the node's signing key.
        let other = ctx
            .config
            .node
            .data_dir
            .join("workspaces/other/work/secret.txt");
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        std::fs::write(&other, "not yours").unwrap();
        for path in [other, ctx.config.auth.signing_key_path.clone()] {
            let frames = turn(&client, conv.id, &format!("/cat {}", path.display())).await;
            let seen = done_content(&frames);
            match isolation {
                shoal_cluster_config::Isolation::Bwrap => {
                    assert_eq!(seen, "cat failed: NotFound", "{}", path.display());
                }
                shoal_cluster_config::Isolation::None => {
                    assert!(seen.starts_with("cat: "), "{}: {seen}", path.display());
                }
            }
        }
        // The agent still works as usual: its environment, its session store.
        let frames = turn(&client, conv.id, "/history").await;
        assert!(
            done_content(&frames).starts_with("history: 4 earlier prompts"),
            "{isolation:?}: {}",
            done_content(&frames)
        );
    }
}
