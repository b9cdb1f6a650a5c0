//! End to end: `shoalctl ws …`, `conv … --workspace`, `shoalctl skills …` and the history
//! commands (`conv rewind | truncate | fork | rename | rm`) and the queue (`conv send` during
//! a turn, `conv queue`) against the real `shoal-node dev`.

mod common;

use anyhow::{Context, Result, anyhow, ensure};
use common::*;
use serde_json::Value;
use std::path::Path;

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|w| w["name"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn workspaces_are_created_renamed_reordered_and_deleted_with_their_conversations()
-> Result<()> {
    with_node(|profile| async move { workspaces_scenario(&profile).await }).await
}

async fn workspaces_scenario(profile: &Path) -> Result<()> {
    let list = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(
        list.as_array().map(Vec::len) == Some(1)
            && list[0]["default"] == true
            && list[0]["position"] == 1,
        "a new user has their default workspace only: {list}"
    );
    let default_name = list[0]["name"].as_str().context("no name")?.to_owned();

    // ws new prints the id alone.
    let stdout = ok(profile, &["ws", "new", "Project X"]).await?;
    let project = stdout.trim().to_owned();
    ensure!(
        project.starts_with("w-") && stdout == format!("{project}\n"),
        "ws new printed {stdout:?}"
    );
    ok(profile, &["ws", "new", "Scratch"]).await?;
    let list = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(
        names(&list) == [default_name.as_str(), "Project X", "Scratch"],
        "{list}"
    );
    ensure!(list[1]["id"] == project.as_str() && list[1]["default"] == false);
    let table = ok(profile, &["ws", "list"]).await?;
    ensure!(
        table.starts_with("POS") && table.contains("default") && table.contains("Project X"),
        "{table}"
    );

    // Names are matched without regard to case.
    let stdout = ok(profile, &["ws", "rename", "project x", "Website"]).await?;
    ensure!(
        stdout == format!("renamed {project} to Website\n"),
        "{stdout}"
    );

    // Reorder prints the new order.
    let stdout = ok(profile, &["ws", "reorder", &project, "1"]).await?;
    let rows: Vec<&str> = stdout.lines().collect();
    ensure!(
        rows.len() == 4 && rows[1].contains("Website") && rows[1].trim_start().starts_with('1'),
        "ws reorder printed {stdout}"
    );
    let list = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(
        names(&list) == ["Website", default_name.as_str(), "Scratch"],
        "{list}"
    );

    // Conversations in a workspace, named by its name.
    let in_ws = ok(
        profile,
        &["conv", "new", "--workspace", "website", "--title", "in ws"],
    )
    .await?
    .trim()
    .to_owned();
    let in_default = ok(profile, &["conv", "new"]).await?.trim().to_owned();
    let listed = ok_json(
        profile,
        &["conv", "list", "--workspace", "Website", "--json"],
    )
    .await?;
    ensure!(
        listed.as_array().map(Vec::len) == Some(1)
            && listed[0]["id"] == in_ws.as_str()
            && listed[0]["workspace"] == project.as_str(),
        "conv list --workspace: {listed}"
    );
    let listed = ok_json(
        profile,
        &["conv", "list", "--workspace", &project, "--json"],
    )
    .await?;
    ensure!(listed.as_array().map(Vec::len) == Some(1), "{listed}");
    // Without the flag: every conversation, as before.
    let all = ok(profile, &["conv", "list"]).await?;
    ensure!(all.contains(&in_ws) && all.contains(&in_default), "{all}");
    let line = refused(profile, &["conv", "list", "--workspace", "nope"]).await?;
    ensure!(
        line.contains("no workspace named \"nope\"") && line.contains("\"Website\""),
        "{line}"
    );

    // Deleting asks for the name; without a terminal it needs --yes.
    let line = refused(profile, &["ws", "rm", "Website"]).await?;
    ensure!(
        line.contains("not a terminal") && line.contains("--yes"),
        "{line}"
    );
    let stdout = ok(profile, &["ws", "rm", "Website", "--yes"]).await?;
    ensure!(
        stdout == format!("deleted workspace Website ({project}) and 1 conversation\n"),
        "{stdout}"
    );
    let list = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(names(&list) == [default_name.as_str(), "Scratch"], "{list}");
    let all = ok(profile, &["conv", "list"]).await?;
    ensure!(!all.contains(&in_ws) && all.contains(&in_default), "{all}");
    Ok(())
}

#[tokio::test]
async fn the_default_workspace_cannot_be_deleted() -> Result<()> {
    with_node(|profile| async move {
        let list = ok_json(&profile, &["ws", "list", "--json"]).await?;
        let id = list[0]["id"].as_str().context("no id")?.to_owned();
        let line = refused(&profile, &["ws", "rm", &id, "--yes"]).await?;
        ensure!(
            line.contains("default workspace") && line.contains("cannot be deleted"),
            "{line}"
        );
        let after = ok_json(&profile, &["ws", "list", "--json"]).await?;
        ensure!(after == list, "the refusal changed the list: {after}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn skill_packs_are_imported_attached_detached_and_removed() -> Result<()> {
    with_node(|profile| async move { skills_scenario(&profile).await }).await
}

async fn skills_scenario(profile: &Path) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path().join("review-kit");
    std::fs::create_dir_all(dir.join("skills/review/bin"))?;
    std::fs::write(dir.join("AGENTS.md"), "Review every change.")?;
    std::fs::write(dir.join("skills/review/SKILL.md"), "# review\n")?;
    std::fs::write(dir.join("skills/review/checklist.md"), "- tests\n")?;
    std::fs::write(dir.join("skills/review/bin/tool"), [0xff, 0x00, 0x01])?;
    let dir_arg = dir.to_str().context("temp path is not UTF-8")?;

    let stdout = ok(profile, &["skills", "import", dir_arg]).await?;
    ensure!(
        stdout.starts_with("imported pack review-kit (p-")
            && stdout.contains("): 1 skill, 3 files, "),
        "skills import printed {stdout:?}"
    );
    let list = ok_json(profile, &["skills", "list", "--json"]).await?;
    ensure!(
        list.as_array().map(Vec::len) == Some(1)
            && list[0]["name"] == "review-kit"
            && list[0]["skills"] == serde_json::json!(["review"])
            && list[0]["has_context"] == true
            && list[0]["attached"] == serde_json::json!([]),
        "{list}"
    );
    let pack = list[0]["id"].as_str().context("no id")?.to_owned();
    let table = ok(profile, &["skills", "list"]).await?;
    ensure!(
        table.starts_with("ID") && table.contains("review-kit"),
        "{table}"
    );

    let shown = ok_json(profile, &["skills", "show", "Review-Kit", "--json"]).await?;
    ensure!(shown["context"] == "Review every change.", "{shown}");
    let files = &shown["skills"][0]["files"];
    ensure!(
        files[0] == serde_json::json!({"path": "SKILL.md", "bytes": 9, "text": "# review\n"})
            && files[1]["path"] == "bin/tool"
            && files[1]["base64"] == "/wAB",
        "{shown}"
    );
    let human = ok(profile, &["skills", "show", &pack]).await?;
    ensure!(
        human.contains("skill review/") && human.contains("checklist.md"),
        "{human}"
    );

    // Attach to a named workspace and to the default one.
    let web = ok(profile, &["ws", "new", "Web"]).await?.trim().to_owned();
    let stdout = ok(
        profile,
        &["skills", "attach", "review-kit", "--workspace", "web"],
    )
    .await?;
    ensure!(
        stdout == format!("attached pack review-kit to workspace Web ({web}), which has 1 pack\n"),
        "{stdout}"
    );
    ok(profile, &["skills", "attach", &pack]).await?;
    let list = ok_json(profile, &["skills", "list", "--json"]).await?;
    ensure!(
        list[0]["attached"].as_array().map(Vec::len) == Some(2),
        "{list}"
    );
    let workspaces = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(
        workspaces[1]["id"] == web.as_str() && workspaces[1]["packs"] == serde_json::json!([pack]),
        "{workspaces}"
    );

    let stdout = ok(profile, &["skills", "detach", &pack, "--workspace", &web]).await?;
    ensure!(
        stdout.starts_with("detached pack review-kit from workspace Web"),
        "{stdout}"
    );
    let workspaces = ok_json(profile, &["ws", "list", "--json"]).await?;
    ensure!(
        workspaces[1]["packs"] == serde_json::json!([]),
        "{workspaces}"
    );

    // An update keeps the pack's name and id.
    std::fs::write(dir.join("skills/review/checklist.md"), "- tests\n- docs\n")?;
    let stdout = ok(
        profile,
        &["skills", "import", dir_arg, "--update", "review-kit"],
    )
    .await?;
    ensure!(
        stdout.starts_with(&format!(
            "updated pack review-kit ({pack}): 1 skill, 3 files"
        )),
        "{stdout}"
    );

    // A directory that cannot be imported is one error line, before the node is asked.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc/hostname", dir.join("skills/review/leak"))?;
        let line = refused(profile, &["skills", "import", dir_arg, "--name", "other"]).await?;
        ensure!(line.contains("leak is a symbolic link"), "{line}");
    }

    let stdout = ok(profile, &["skills", "rm", "review-kit"]).await?;
    ensure!(
        stdout == format!("deleted pack review-kit ({pack}), detached from 1 workspace\n"),
        "{stdout}"
    );
    let list = ok_json(profile, &["skills", "list", "--json"]).await?;
    ensure!(list == serde_json::json!([]), "{list}");
    let line = refused(profile, &["skills", "show", "review-kit"]).await?;
    ensure!(
        line.contains("no skill pack named \"review-kit\""),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn history_commands_rewind_fork_rename_and_delete() -> Result<()> {
    with_node(|profile| async move { history_scenario(&profile).await }).await
}

async fn history_scenario(profile: &Path) -> Result<()> {
    let id = ok(profile, &["conv", "new"]).await?.trim().to_owned();
    for text in ["one", "two", "/think"] {
        ok(profile, &["conv", "send", &id, text]).await?;
    }
    let show = ok(profile, &["conv", "show", &id]).await?;
    ensure!(
        show.contains("m0 user: one") && show.contains("m5 [2 parts] assistant:"),
        "conv show prints positions and part counts: {show}"
    );
    // A fork of the first turn, titled; the original keeps its six messages.
    let fork = ok(
        profile,
        &["conv", "fork", &id, "m1", "--title", "first turn"],
    )
    .await?;
    let fork = fork.trim();
    let forked = ok_json(profile, &["conv", "show", fork, "--json"]).await?;
    ensure!(
        forked["messages"].as_array().map(Vec::len) == Some(2) && forked["title"] == "first turn",
        "the fork holds m0..m1: {forked}"
    );
    // Destructive without a terminal: refused unless --yes.
    let line = refused(profile, &["conv", "rewind", &id, "m2"]).await?;
    ensure!(line.contains("--yes"), "{line}");
    let line = refused(
        profile,
        &["conv", "truncate", &id, "m5", "--parts", "0", "--yes"],
    )
    .await?;
    ensure!(line.contains("parts"), "{line}");
    let out = ok(
        profile,
        &["conv", "truncate", &id, "m5", "--parts", "1", "--yes"],
    )
    .await?;
    ensure!(out.contains("6 messages"), "{out}");
    let out = ok(profile, &["conv", "rewind", &id, "m2", "--yes"]).await?;
    ensure!(
        out.starts_with("rewound") && out.contains("3 messages"),
        "{out}"
    );
    let out = ok(profile, &["conv", "rename", &id, "renamed"]).await?;
    ensure!(out.contains("\"renamed\""), "{out}");
    ok(profile, &["conv", "rm", fork, "--yes"]).await?;
    let line = refused(profile, &["conv", "show", fork]).await?;
    ensure!(
        line.contains("not found") || line.contains("does not exist"),
        "{line}"
    );
    let page = ok_json(
        profile,
        &[
            "conv", "show", &id, "--before", "m2", "--limit", "1", "--json",
        ],
    )
    .await?;
    ensure!(
        page["messages"].as_array().map(Vec::len) == Some(1) && page["more"] == true,
        "one message before m2, more before it: {page}"
    );
    let listed = ok_json(profile, &["conv", "list", "--json"]).await?;
    ensure!(
        listed[0]["id"] == id.as_str() && listed[0]["last_activity_ms"].is_u64(),
        "the most recently active first: {listed}"
    );
    // Usage and compactions of a turn that reports them.
    ok(profile, &["conv", "send", &id, "/usage"]).await?;
    let usage = ok_json(profile, &["usage", "--by", "agent", "--json"]).await?;
    ensure!(
        usage["total"]["turns"].as_u64().is_some_and(|t| t >= 1)
            && usage["total"]["output_tokens"] == 20
            && usage["total"]["cost"]["USD"] == 0.01,
        "shoalctl usage sums the turn: {usage}"
    );
    let table = ok(profile, &["usage", "--since", "1h"]).await?;
    ensure!(table.contains("0.010000 USD"), "{table}");
    ok(profile, &["conv", "send", &id, "/compact"]).await?;
    let compactions = ok_json(profile, &["conv", "compactions", &id, "--json"]).await?;
    ensure!(
        compactions[0]["seq"] == 1
            && compactions[0]["summary"] == "Summary: the user asked things.",
        "{compactions}"
    );
    let clone = ok(profile, &["conv", "clone-summary", &id, "1"]).await?;
    let cloned = ok_json(profile, &["conv", "show", clone.trim(), "--json"]).await?;
    ensure!(
        cloned["messages"][0]["content"] == "Summary: the user asked things.",
        "{cloned}"
    );
    let line = refused(profile, &["conv", "rewind", &id, "mx", "--yes"]).await?;
    ensure!(line.contains("message position"), "{line}");
    Ok(())
}

#[tokio::test]
async fn a_message_sent_during_a_turn_is_queued_listed_and_run() -> Result<()> {
    with_node(|profile| async move { queue_scenario(&profile).await }).await
}

async fn queue_scenario(profile: &Path) -> Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let id = ok(profile, &["conv", "new"]).await?.trim().to_owned();
    // The slow turn runs once its first text reaches the sender's stdout.
    let mut slow = spawn_shoalctl(profile, &["conv", "send", &id, "/slow 100"])?;
    let mut slow_out = slow.stdout.take().context("no stdout pipe")?;
    let mut first = [0u8; 1];
    tokio::time::timeout(COMMAND_TIMEOUT, slow_out.read_exact(&mut first))
        .await
        .context("the slow turn streamed nothing in time")??;
    // The second message is queued once its sender is told so on stderr.
    let mut queued = spawn_shoalctl(profile, &["conv", "send", &id, "queued one"])?;
    let mut queued_err = BufReader::new(queued.stderr.take().context("no stderr pipe")?).lines();
    let told = async {
        while let Some(line) = queued_err.next_line().await? {
            if line.contains("[queued]") {
                return Ok::<_, anyhow::Error>(line);
            }
        }
        Err(anyhow!("the queued sender's stderr ended without [queued]"))
    };
    tokio::time::timeout(COMMAND_TIMEOUT, told)
        .await
        .context("the sender was not told it waits in time")??;
    let listed = ok_json(profile, &["conv", "queue", &id, "--json"]).await?;
    ensure!(
        listed[0]["text"] == "queued one" && listed[0]["position"] == 1,
        "conv queue lists the waiting message: {listed}"
    );
    let mut rest = Vec::new();
    tokio::time::timeout(COMMAND_TIMEOUT, slow_out.read_to_end(&mut rest))
        .await
        .context("the slow turn did not end in time")??;
    let status = tokio::time::timeout(COMMAND_TIMEOUT, slow.wait()).await??;
    ensure!(status.success(), "conv send /slow failed: {status}");
    let second = tokio::time::timeout(COMMAND_TIMEOUT, queued.wait_with_output()).await??;
    ensure!(second.status.success(), "conv send (queued) failed");
    let stdout = text(&second.stdout);
    ensure!(stdout.contains("echo: queued one"), "{stdout}");
    let empty = ok(profile, &["conv", "queue", &id]).await?;
    ensure!(empty.contains("empty"), "{empty}");
    Ok(())
}
