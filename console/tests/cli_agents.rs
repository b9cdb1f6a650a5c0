//! End to end: `shoalctl agents` against the real `shoal-node dev` (its built-in agents,
//! the demo agent running as `shoal-node demo-agent`).

mod common;

use anyhow::{Result, anyhow, ensure};
use common::*;
use serde_json::Value;
use std::path::PathBuf;

#[tokio::test]
async fn agents_are_listed_probed_disabled_and_enabled() -> Result<()> {
    with_node(|profile| async move { scenario(profile).await }).await
}

fn agent<'a>(list: &'a Value, id: &str) -> Result<&'a Value> {
    list["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["id"] == id))
        .ok_or_else(|| anyhow!("no agent {id} in {list}"))
}

async fn scenario(profile: PathBuf) -> Result<()> {
    let list = ok_json(&profile, &["agents", "--json"]).await?;
    ensure!(list["node"] == "dev", "{list}");
    let demo = agent(&list, "demo")?;
    ensure!(
        demo["status"] == "ready"
            && demo["agent_name"] == "shoal-demo-agent"
            && demo["load_session"] == true,
        "{demo}"
    );
    // The other built-ins are listed whether or not they are installed here.
    for id in ["claude", "gemini", "opencode"] {
        let builtin = agent(&list, id)?;
        let status = builtin["status"].as_str().unwrap_or_default();
        ensure!(
            ["ready", "missing", "failed"].contains(&status),
            "{builtin}"
        );
    }
    ensure!(
        agent(&list, "opencode")?["command"] == serde_json::json!(["opencode", "acp"]),
        "{list}"
    );

    let table = ok(&profile, &["agents"]).await?;
    ensure!(
        table.starts_with("ID") && table.contains("CAPABILITIES") && table.contains("loadSession"),
        "{table}"
    );

    let probed = ok_json(&profile, &["agents", "probe", "demo", "--json"]).await?;
    ensure!(
        probed["agents"].as_array().is_some_and(|a| a.len() == 1)
            && agent(&probed, "demo")?["status"] == "ready",
        "{probed}"
    );

    ok(&profile, &["agents", "disable", "demo"]).await?;
    let line = refused(&profile, &["conv", "new"]).await?;
    ensure!(
        line.contains("agent `demo` is disabled on node `dev`"),
        "{line}"
    );
    let line = refused(&profile, &["agents", "enable", "nope"]).await?;
    ensure!(line.contains("no agent `nope`"), "{line}");
    ok(&profile, &["agents", "enable", "demo"]).await?;
    ok(&profile, &["conv", "new"]).await?;
    Ok(())
}
