//! End to end: `shoalctl agents` against the real `shoal-node dev` (its built-in agents,
//! the demo agent running as `shoal-node demo-agent`).

mod common;

use anyhow::{Result, anyhow, ensure};
use common::*;
use serde_json::Value;

#[tokio::test]
async fn agents_are_listed_probed_disabled_and_enabled() -> Result<()> {
    let node = Node::start().await?;
    let result = scenario(&node).await;
    let logs = node.logs();
    node.stop().await?;
    result.map_err(|e| anyhow!("{e:#}\n{logs}"))
}

fn agent<'a>(list: &'a Value, id: &str) -> Result<&'a Value> {
    list["agents"]
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["id"] == id))
        .ok_or_else(|| anyhow!("no agent {id} in {list}"))
}

async fn scenario(node: &Node) -> Result<()> {
    let profile = node.profile();
    let stdout = succeeded(
        &shoalctl(&profile, &["agents", "--json"]).await?,
        "agents --json",
    )?;
    let list: Value = serde_json::from_str(&stdout)?;
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

    let table = succeeded(&shoalctl(&profile, &["agents"]).await?, "agents")?;
    ensure!(
        table.starts_with("ID") && table.contains("CAPABILITIES") && table.contains("loadSession"),
        "{table}"
    );

    let stdout = succeeded(
        &shoalctl(&profile, &["agents", "probe", "demo", "--json"]).await?,
        "agents probe demo",
    )?;
    let probed: Value = serde_json::from_str(&stdout)?;
    ensure!(
        probed["agents"].as_array().is_some_and(|a| a.len() == 1)
            && agent(&probed, "demo")?["status"] == "ready",
        "{probed}"
    );

    succeeded(
        &shoalctl(&profile, &["agents", "disable", "demo"]).await?,
        "agents disable demo",
    )?;
    let line = failed_with_one_line(
        &shoalctl(&profile, &["conv", "new"]).await?,
        "conv new with demo disabled",
    )?;
    ensure!(
        line.contains("agent `demo` is disabled on node `dev`"),
        "{line}"
    );
    let line = failed_with_one_line(
        &shoalctl(&profile, &["agents", "enable", "nope"]).await?,
        "agents enable nope",
    )?;
    ensure!(line.contains("no agent `nope`"), "{line}");
    succeeded(
        &shoalctl(&profile, &["agents", "enable", "demo"]).await?,
        "agents enable demo",
    )?;
    succeeded(
        &shoalctl(&profile, &["conv", "new"]).await?,
        "conv new with demo enabled",
    )?;
    Ok(())
}
