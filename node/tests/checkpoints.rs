//! Checkpoints commit deltas (issue 9, item 5): a long turn costs the log about its
//! output, not the square of it, and what was streamed survives in the store.

mod common;

use common::*;

/// Generous per-checkpoint envelope: the command, conversation and message ids, the
/// mark and the part's encoding (measured about 70 bytes).
const CHECKPOINT_OVERHEAD_BYTES_MAX: u64 = 160;

#[tokio::test]
async fn a_long_turn_costs_the_log_its_output_not_its_square() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = dev_config(dir.path());
    // Shorter than the demo agent's 50 ms between chunks: about one checkpoint a chunk.
    config.conversation.checkpoint_interval_ms = 10.try_into().unwrap();
    let mut node = TestNode::start_with(config).await;
    let client = node.client().await;
    let admin = node.admin().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let frames = collect_turn(client.send(conv.id, "/slow 120").await.unwrap()).await;
    let content = done_content(&frames);
    assert!(content.ends_with("chunk 120 "), "{content}");
    let status = admin.status().await.unwrap();
    assert!(
        status.checkpoints >= 20,
        "expected a checkpoint about every chunk, got {status:?}"
    );
    // Whole-message checkpoints would cost about checkpoints × content / 2 (≈ 50 KB
    // here); deltas cost the content once plus an envelope each.
    eprintln!(
        "{} checkpoints, {} bytes, for {} bytes of output",
        status.checkpoints,
        status.checkpoint_bytes,
        content.len()
    );
    let bound = 2 * content.len() as u64 + status.checkpoints * CHECKPOINT_OVERHEAD_BYTES_MAX;
    assert!(
        status.checkpoint_bytes <= bound,
        "{} checkpoints took {} bytes for {} bytes of output (bound {bound}): checkpoints re-send what was already committed",
        status.checkpoints,
        status.checkpoint_bytes,
        content.len()
    );
    let stored = client.get_conversation(conv.id).await.unwrap();
    assert_eq!(stored.messages[1].content, content);
    node.stop().await;
}
