//! End to end: `shoalctl share …` and `conv … --token` against the real `shoal-node dev`:
//! a link for a viewer, a user grant, what each may do, revocation.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use std::path::{Path, PathBuf};

#[tokio::test]
async fn a_conversation_is_shared_viewed_forked_and_revoked_from_the_command_line() -> Result<()> {
    with_node(|profile| async move { sharing_scenario(&profile).await }).await
}

/// A profile for `user`, next to `profile`, with a token the admin API minted.
async fn profile_of(profile: &Path, user: &str) -> Result<PathBuf> {
    let token = ok(profile, &["admin", "token", user]).await?;
    let text = std::fs::read_to_string(profile)?;
    let mut table: toml::Table = text.parse()?;
    table.insert("token".into(), token.trim().into());
    table.remove("admin_token");
    let path = profile.with_file_name(format!("{user}.toml"));
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

async fn sharing_scenario(profile: &Path) -> Result<()> {
    let id = ok(profile, &["conv", "new"]).await?.trim().to_owned();
    ok(profile, &["conv", "send", &id, "hello"]).await?;
    let made = ok_json(
        profile,
        &["share", "create", &id, "--role", "viewer", "--json"],
    )
    .await?;
    let token = made["token"]
        .as_str()
        .context("a link prints its token")?
        .to_owned();
    let grant = made["id"].as_str().context("grant id")?.to_owned();
    ensure!(
        made["role"] == "viewer" && made["target"] == "link",
        "{made}"
    );

    let vera = profile_of(profile, "vera").await?;
    let shown = ok_json(&vera, &["conv", "show", &id, "--token", &token, "--json"]).await?;
    ensure!(
        shown["role"] == "viewer" && shown["messages"][1]["content"] == "echo: hello",
        "{shown}"
    );
    let line = refused(&vera, &["conv", "send", &id, "hi", "--token", &token]).await?;
    ensure!(line.contains("viewers cannot send messages"), "{line}");
    // Without the token, vera cannot see it at all.
    let line = refused(&vera, &["conv", "show", &id]).await?;
    ensure!(line.contains("does not exist"), "{line}");
    let fork = ok(&vera, &["conv", "fork", &id, "m1", "--token", &token]).await?;
    let mine = ok_json(&vera, &["conv", "show", fork.trim(), "--json"]).await?;
    ensure!(mine["owner"] == "vera", "{mine}");

    let listed = ok_json(profile, &["share", "list", "--json"]).await?;
    ensure!(listed.as_array().map(Vec::len) == Some(1), "{listed}");
    ensure!(ok(profile, &["share", "revoke", &grant]).await?.trim() == "revoked");
    let line = refused(&vera, &["conv", "show", &id, "--token", &token]).await?;
    ensure!(line.contains("revoked"), "{line}");

    // A user grant: listed in their `share with-me`, no token needed.
    ok(
        profile,
        &["share", "create", &id, "--role", "editor", "--user", "vera"],
    )
    .await?;
    let with_me = ok_json(&vera, &["share", "with-me", "--json"]).await?;
    ensure!(
        with_me[0]["conversation"] == id.as_str() && with_me[0]["role"] == "editor",
        "{with_me}"
    );
    let reply = ok(&vera, &["conv", "send", &id, "from vera"]).await?;
    ensure!(reply.contains("echo: from vera"), "{reply}");
    let line = refused(&vera, &["conv", "rm", &id, "--yes"]).await?;
    ensure!(line.contains("only the conversation's owner"), "{line}");
    Ok(())
}
