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
