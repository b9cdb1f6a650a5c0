//! End to end: `shoalctl conv new --mode --model`, `conv set` and the settings lines of
//! `conv show` against the real `shoal-node dev` and its demo agent.

mod common;

use anyhow::{Result, ensure};
use common::*;
use std::path::PathBuf;

#[tokio::test]
async fn modes_and_models_are_picked_shown_and_refused_from_the_command_line() -> Result<()> {
    with_node(|profile| async move { scenario(profile).await }).await
}

async fn scenario(profile: PathBuf) -> Result<()> {
    let id = ok(
        &profile,
        &["conv", "new", "--mode", "ask", "--model", "demo-smart"],
    )
    .await?;
    let id = id.trim().to_owned();
    let reply = ok(&profile, &["conv", "send", &id, "/settings"]).await?;
    ensure!(reply.trim() == "mode: ask, model: demo-smart", "{reply}");

    let show = ok(&profile, &["conv", "show", &id]).await?;
    ensure!(
        show.contains("mode: ask (picked; offers: code, ask, architect)")
            && show.contains("model: demo-smart (picked; offers: demo-fast, demo-smart)"),
        "{show}"
    );
    let refusal = refused(&profile, &["conv", "set", &id, "--model", "huge"]).await?;
    ensure!(
        refusal.contains("does not offer model `huge`; it offers: demo-fast, demo-smart"),
        "{refusal}"
    );
    let set = ok_json(
        &profile,
        &["conv", "set", &id, "--mode", "architect", "--json"],
    )
    .await?;
    ensure!(
        set["mode"] == "architect" && set["model"] == "demo-smart",
        "{set}"
    );
    let shown = ok_json(&profile, &["conv", "show", &id, "--json"]).await?;
    ensure!(
        shown["settings"]["offer"]["modes"]["choices"][2]["id"] == "architect",
        "{shown}"
    );
    let reply = ok(&profile, &["conv", "send", &id, "/settings"]).await?;
    ensure!(
        reply.trim() == "mode: architect, model: demo-smart",
        "{reply}"
    );
    let nothing = refused(&profile, &["conv", "set", &id]).await?;
    ensure!(
        nothing.contains("give --mode, --model or both"),
        "{nothing}"
    );
    Ok(())
}

#[tokio::test]
async fn a_workspace_permission_policy_is_set_shown_and_applied_from_the_command_line() -> Result<()>
{
    with_node(|profile| async move { permissions(profile).await }).await
}

async fn permissions(profile: PathBuf) -> Result<()> {
    let none = ok(&profile, &["ws", "permissions"]).await?;
    ensure!(none.contains("no permission rules"), "{none}");
    let set = ok_json(
        &profile,
        &[
            "ws",
            "permissions",
            "--set",
            "default=allow",
            "--set",
            "execute=deny",
            "--json",
        ],
    )
    .await?;
    ensure!(
        set["default"] == "allow" && set["kinds"]["execute"] == "deny",
        "{set}"
    );
    let shown = ok(&profile, &["ws", "permissions", "default"]).await?;
    ensure!(shown.contains("default = allow, execute = deny"), "{shown}");
    let bad = refused(&profile, &["ws", "permissions", "--set", "shell=allow"]).await?;
    ensure!(bad.contains("`shell` is not a tool kind"), "{bad}");

    let id = ok(&profile, &["conv", "new"]).await?;
    let id = id.trim().to_owned();
    // Denied by the workspace's rule without asking; the record is shown as it streams.
    let output = shoalctl(&profile, &["conv", "send", &id, "/permission"]).await?;
    let stdout = succeeded(&output, "conv send /permission")?;
    ensure!(stdout.trim() == "permission denied", "{stdout}");
    let stderr = text(&output.stderr);
    ensure!(
        stderr.contains("[permission] denied Run rm -rf build (workspace policy: execute = deny)"),
        "{stderr}"
    );
    let granted = ok(&profile, &["conv", "send", &id, "/permission read"]).await?;
    ensure!(granted.trim() == "permission granted", "{granted}");
    let cleared = ok(&profile, &["ws", "permissions", "--clear"]).await?;
    ensure!(cleared.contains("no permission rules"), "{cleared}");
    Ok(())
}

#[tokio::test]
async fn workspace_mcp_servers_are_added_listed_without_values_and_removed() -> Result<()> {
    with_node(|profile| async move { mcp(profile).await }).await
}

async fn mcp(profile: PathBuf) -> Result<()> {
    let none = ok(&profile, &["ws", "mcp", "list"]).await?;
    ensure!(none.contains("no MCP servers"), "{none}");
    let added = ok(
        &profile,
        &[
            "ws",
            "mcp",
            "add",
            "docs",
            "--url",
            "https://mcp.example/v1",
            "--header",
            "Authorization=Bearer s3cret",
        ],
    )
    .await?;
    ensure!(
        added.contains("docs  http  https://mcp.example/v1 [headers: Authorization]")
            && !added.contains("s3cret"),
        "{added}"
    );
    let listed = ok_json(&profile, &["ws", "mcp", "list", "--json"]).await?;
    ensure!(
        listed[0]["secrets"][0] == "Authorization" && !listed.to_string().contains("s3cret"),
        "{listed}"
    );
    let id = ok(&profile, &["conv", "new"]).await?;
    let reply = ok(&profile, &["conv", "send", id.trim(), "/mcp"]).await?;
    ensure!(
        reply.starts_with("mcp: docs (http https://mcp.example/v1; headers: Authorization=")
            && !reply.contains("s3cret"),
        "{reply}"
    );
    let bad = refused(&profile, &["ws", "mcp", "add", "x", "--url", "ftp://x"]).await?;
    ensure!(bad.contains("must start with http:// or https://"), "{bad}");
    let removed = ok(&profile, &["ws", "mcp", "rm", "docs"]).await?;
    ensure!(removed.contains("no MCP servers"), "{removed}");
    Ok(())
}

#[tokio::test]
async fn files_are_attached_from_the_command_line() -> Result<()> {
    with_node(|profile| async move { attach(profile).await }).await
}

async fn attach(profile: PathBuf) -> Result<()> {
    let files = tempfile::tempdir()?;
    let notes = files.path().join("notes.txt");
    std::fs::write(&notes, "hello")?;
    let notes = notes.to_string_lossy().into_owned();
    let id = ok(&profile, &["conv", "new"]).await?;
    let id = id.trim().to_owned();
    let reply = ok(
        &profile,
        &["conv", "send", &id, "/attachments", "--attach", &notes],
    )
    .await?;
    ensure!(
        reply.starts_with("attachments: resource attachment:///notes.txt text/plain text 5 chars"),
        "{reply}"
    );
    let show = ok(&profile, &["conv", "show", &id]).await?;
    ensure!(
        show.contains("[attachment: notes.txt (text/plain, 5 bytes)]"),
        "{show}"
    );
    let big = files.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 2 * 1024 * 1024 + 1])?;
    let big = big.to_string_lossy().into_owned();
    let refusal = refused(&profile, &["conv", "send", &id, "x", "--attach", &big]).await?;
    ensure!(refusal.contains("the limit is 2097152"), "{refusal}");
    Ok(())
}

#[tokio::test]
async fn an_agent_is_switched_from_the_command_line() -> Result<()> {
    with_node(|profile| async move { switch(profile).await }).await
}

async fn switch(profile: PathBuf) -> Result<()> {
    let id = ok(&profile, &["conv", "new"]).await?;
    let id = id.trim().to_owned();
    ok(&profile, &["conv", "send", &id, "hi"]).await?;
    // An agent the node does not have is refused, listing the ready ones.
    let refusal = refused(&profile, &["conv", "switch", &id, "ghost"]).await?;
    ensure!(
        refusal.contains("ready agents: ") && refusal.contains("demo"),
        "{refusal}"
    );
    let same = refused(&profile, &["conv", "switch", &id, "demo"]).await?;
    ensure!(same.contains("already runs agent `demo`"), "{same}");
    Ok(())
}
