//! End to end: `shoalctl shard show | lead | move | unpin` against the real
//! `shoal-node dev` (one node: every shard is led there, so a lead settles at once and a
//! move has nowhere to go).

mod common;

use anyhow::{Result, ensure};
use common::*;
use std::path::Path;

#[tokio::test]
async fn a_shard_is_shown_pinned_and_unpinned_and_bad_moves_are_one_line_errors() -> Result<()> {
    with_node(|profile| async move { shard_scenario(&profile).await }).await
}

async fn shard_scenario(profile: &Path) -> Result<()> {
    let shown = ok_json(profile, &["shard", "show", "3", "--json"]).await?;
    ensure!(
        shown["shard"] == 3 && shown["settled"] == true && shown["pin"].is_null(),
        "{shown}"
    );
    let node = shown["leader"].as_str().unwrap_or_default().to_owned();
    ensure!(shown["voters"] == serde_json::json!([node]), "{shown}");

    let led = ok_json(profile, &["shard", "lead", "3", &node, "--json"]).await?;
    ensure!(
        led["settled"] == true && led["pin"]["leader"] == node.as_str(),
        "{led}"
    );
    let text = ok(profile, &["shard", "show", "3"]).await?;
    ensure!(
        text.contains(&format!("pin:       leader {node}")),
        "{text}"
    );

    let line = refused(
        profile,
        &["shard", "move", "3", "--from", &node, "--to", "nope"],
    )
    .await?;
    ensure!(line.contains("no member named `nope`"), "{line}");
    let line = refused(
        profile,
        &["shard", "move", "3", "--from", "nope", "--to", &node],
    )
    .await?;
    ensure!(line.contains("already holds a replica"), "{line}");
    let line = refused(profile, &["shard", "show", "9999"]).await?;
    ensure!(line.contains("the cluster has shards 0 to"), "{line}");
    // The refused moves changed nothing.
    let shown = ok_json(profile, &["shard", "show", "3", "--json"]).await?;
    ensure!(shown["pin"]["leader"] == node.as_str(), "{shown}");

    let unpinned = ok_json(profile, &["shard", "unpin", "3", "--json"]).await?;
    ensure!(unpinned["pin"].is_null(), "{unpinned}");
    let shown = ok_json(profile, &["shard", "show", "3", "--json"]).await?;
    ensure!(
        shown["pin"].is_null() && shown["settled"] == true,
        "{shown}"
    );
    Ok(())
}
