//! End to end: the real `shoal-node dev` as a child process, driven by the real `shoalctl`.

mod common;

use anyhow::{Context, Result, anyhow, ensure};
use common::*;
use serde_json::Value;
use shoal_protocol::ConversationId;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn credentials_are_set_from_stdin_listed_without_values_and_removed() -> Result<()> {
    with_node(|profile| async move { credentials_scenario(profile).await }).await
}

async fn credentials_scenario(profile: PathBuf) -> Result<()> {
    let secret = "ghp_from_stdin_7f3a";
    let stdout = succeeded(
        &shoalctl_with_stdin(
            &profile,
            &["creds", "set", "GITHUB_TOKEN"],
            &format!("{secret}\n"),
        )
        .await?,
        "creds set",
    )?;
    ensure!(
        stdout == "set GITHUB_TOKEN\n",
        "creds set printed {stdout:?}"
    );

    let list: Value = ok_json(&profile, &["creds", "list", "--json"]).await?;
    let stdout = list.to_string();
    ensure!(
        list.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["name"] == "GITHUB_TOKEN"),
        "creds list --json printed {stdout}"
    );
    ensure!(
        !stdout.contains(secret),
        "the list shows the value: {stdout}"
    );
    let table = ok(&profile, &["creds", "list"]).await?;
    ensure!(
        table.starts_with("NAME") && table.contains("GITHUB_TOKEN") && !table.contains(secret),
        "{table}"
    );

    // The agent got it (only its hash goes into the transcript).
    let id = ok(&profile, &["conv", "new"]).await?;
    let stdout = ok(
        &profile,
        &["conv", "send", id.trim(), "/env-digest GITHUB_TOKEN"],
    )
    .await?;
    let digest = format!("blake3:{}", blake3::hash(secret.as_bytes()).to_hex());
    ensure!(
        stdout.contains(&digest),
        "the agent saw another value: {stdout}"
    );

    // Refusals are one line and change nothing.
    let line = failed_with_one_line(
        &shoalctl_with_stdin(&profile, &["creds", "set", "HTTP_PROXY"], "http://evil\n").await?,
        "creds set HTTP_PROXY",
    )?;
    ensure!(line.contains("reserved"), "{line}");
    let line = failed_with_one_line(
        &shoalctl_with_stdin(&profile, &["creds", "set", "EMPTY"], "").await?,
        "creds set EMPTY",
    )?;
    ensure!(line.contains("empty"), "{line}");

    let stdout = ok(&profile, &["creds", "rm", "GITHUB_TOKEN"]).await?;
    ensure!(stdout == "removed GITHUB_TOKEN\n", "{stdout}");
    let line = refused(&profile, &["creds", "rm", "GITHUB_TOKEN"]).await?;
    ensure!(line.contains("no credential named GITHUB_TOKEN"), "{line}");
    let stdout = ok(&profile, &["creds", "list"]).await?;
    ensure!(stdout == "no credentials\n", "{stdout}");
    Ok(())
}

#[tokio::test]
async fn missing_profile_says_how_to_get_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("nope.toml");
    let output = shoalctl(&missing, &["conv", "list"]).await?;
    let line = failed_with_one_line(&output, "conv list with a missing profile")?;
    ensure!(
        line.contains("shoal-node dev") && line.contains("--profile"),
        "{line}"
    );

    // Without --profile, the default is .shoal-dev/profile.toml in the working directory.
    let mut command = Command::new(SHOALCTL);
    command
        .args(["conv", "list"])
        .current_dir(dir.path())
        .env_remove("SHOAL_PROFILE")
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow!("shoalctl hung"))??;
    let line = failed_with_one_line(&output, "conv list without a profile")?;
    ensure!(line.contains(".shoal-dev/profile.toml"), "{line}");

    // A usage mistake is one error line as well.
    let output = shoalctl(&missing, &["conv", "show", "not-an-id"]).await?;
    let line = failed_with_one_line(&output, "conv show not-an-id")?;
    ensure!(line.contains("not a valid conversation id"), "{line}");
    Ok(())
}

#[tokio::test]
async fn conversations_end_to_end_against_a_real_node() -> Result<()> {
    let node = Node::start().await?;
    let result = scenario(&node).await;
    let logs = node.logs();
    node.stop().await?;
    result.map_err(|e| anyhow!("{e:#}\n{logs}"))
}

async fn scenario(node: &Node) -> Result<()> {
    let profile = node.profile();

    // conv new prints the id alone.
    let stdout = succeeded(
        &shoalctl(&profile, &["conv", "new", "--title", "e2e"]).await?,
        "conv new",
    )?;
    let id_text = stdout.trim().to_owned();
    ensure!(
        stdout == format!("{id_text}\n"),
        "conv new printed {stdout:?}"
    );
    let id: ConversationId = id_text
        .parse()
        .with_context(|| format!("conv new printed {stdout:?}"))?;

    // conv send streams the echo.
    let stdout = succeeded(
        &shoalctl(&profile, &["conv", "send", &id_text, "hello world"]).await?,
        "conv send",
    )?;
    ensure!(
        stdout.contains("echo: hello world"),
        "conv send printed {stdout:?}"
    );
    ensure!(stdout.ends_with('\n'), "no final newline: {stdout:?}");

    // conv follow --json --until-done sees a second send live.
    let mut follow = Command::new(SHOALCTL)
        .arg("--profile")
        .arg(&profile)
        .args(["conv", "follow", &id_text, "--json", "--until-done"])
        .env_remove("SHOAL_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut follow_lines = BufReader::new(follow.stdout.take().context("no stdout pipe")?).lines();
    let first = tokio::time::timeout(COMMAND_TIMEOUT, follow_lines.next_line())
        .await
        .map_err(|_| anyhow!("conv follow printed nothing within {COMMAND_TIMEOUT:?}"))??
        .context("conv follow ended without output")?;
    let first: Value = serde_json::from_str(&first).with_context(|| first.clone())?;
    ensure!(
        first["type"] == "reset",
        "the first followed event is {first}"
    );
    ensure!(
        first["messages"].as_array().map(Vec::len) == Some(2),
        "the snapshot should hold the first exchange: {first}"
    );

    let stdout = succeeded(
        &shoalctl(&profile, &["conv", "send", &id_text, "second message"]).await?,
        "second conv send",
    )?;
    ensure!(stdout.contains("echo: second message"), "{stdout:?}");

    let mut events = vec![first];
    let collect = async {
        while let Some(line) = follow_lines.next_line().await? {
            events.push(serde_json::from_str::<Value>(&line).with_context(|| line.clone())?);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(COMMAND_TIMEOUT, collect)
        .await
        .map_err(|_| anyhow!("conv follow --until-done did not finish"))??;
    let status = tokio::time::timeout(COMMAND_TIMEOUT, follow.wait())
        .await
        .map_err(|_| anyhow!("conv follow did not exit"))??;
    ensure!(status.success(), "conv follow exited {status}");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().context("event without a numeric seq"))
        .collect::<Result<_>>()?;
    ensure!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "followed seqs must be gap-free and increasing: {seqs:?}"
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    ensure!(types.contains(&"text"), "no text event followed: {types:?}");
    let done = events.last().context("no events")?;
    ensure!(done["type"] == "done", "the last event is {done}");
    ensure!(done["message"]["status"] == "complete", "{done}");
    ensure!(
        done["message"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("echo: second message")),
        "{done}"
    );
    ensure!(done["message"]["parts"].is_array(), "{done}");
    let followed_text: String = events
        .iter()
        .filter(|e| e["type"] == "text")
        .filter_map(|e| e["text"].as_str())
        .collect();
    ensure!(
        followed_text.contains("echo: second message"),
        "followed text {followed_text:?}"
    );

    // conv show --json has both exchanges.
    let stdout = succeeded(
        &shoalctl(&profile, &["conv", "show", &id_text, "--json"]).await?,
        "conv show --json",
    )?;
    let detail: Value = serde_json::from_str(&stdout).with_context(|| stdout.clone())?;
    ensure!(detail["id"] == id_text.as_str(), "{detail}");
    let messages = detail["messages"].as_array().context("no messages array")?;
    ensure!(messages.len() == 4, "expected 4 messages: {detail}");
    ensure!(messages[0]["role"] == "user" && messages[1]["role"] == "assistant");
    ensure!(
        messages[1]["content"]
            .as_str()
            .is_some_and(|c| c.contains("echo: hello world")),
        "{detail}"
    );

    // conv list shows it.
    let stdout = succeeded(&shoalctl(&profile, &["conv", "list"]).await?, "conv list")?;
    ensure!(stdout.contains(&id_text), "conv list: {stdout:?}");

    // An unknown id (same shard, other uid) is not found.
    let unknown = ConversationId::new(id.shard, id.uid ^ 1).to_string();
    let output = shoalctl(&profile, &["conv", "show", &unknown]).await?;
    let line = failed_with_one_line(&output, "conv show <unknown>")?;
    ensure!(line.contains("not found"), "{line}");

    // A bad token is refused with one error line.
    let bad_profile = node.dir.path().join("bad-profile.toml");
    let original = std::fs::read_to_string(&profile)?;
    let bad: String = original
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("token") {
                "token = \"not-a-valid-token\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&bad_profile, bad)?;
    let output = shoalctl(&bad_profile, &["conv", "list"]).await?;
    failed_with_one_line(&output, "conv list with a bad token")?;

    // The admin API answers with the admin token.
    let stdout = succeeded(
        &shoalctl(&profile, &["admin", "status", "--json"]).await?,
        "admin status --json",
    )?;
    let status: Value = serde_json::from_str(&stdout).with_context(|| stdout.clone())?;
    ensure!(
        status["node_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn top_refuses_a_bad_interval_and_a_missing_terminal_before_connecting() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("nope.toml");
    for bad in ["50", "60001", "soon"] {
        let line = refused(&missing, &["top", "--interval-ms", bad]).await?;
        ensure!(
            line.contains("--interval-ms") && line.contains(bad),
            "`top --interval-ms {bad}`: {line}"
        );
    }
    let line = refused(&missing, &["top", "--interval-ms", "50"]).await?;
    ensure!(line.contains("200..=60000"), "{line}");

    // A profile that parses, for a node that is not there: stdout is a pipe here, so `top`
    // stops before it connects.
    let profile = dir.path().join("profile.toml");
    std::fs::write(
        &profile,
        "address = \"127.0.0.1:9\"\nserver_name = \"localhost\"\nca_cert = \"ca.pem\"\ntoken = \"t\"\nadmin_token = \"a\"\n",
    )?;
    let line = refused(&profile, &["top"]).await?;
    ensure!(
        line.contains("needs a terminal") && line.contains("shoalctl members"),
        "{line}"
    );
    Ok(())
}

/// The log filter changes at run time: more detail shows up in the node's log at once,
/// and a filter that does not parse is one error line that changes nothing.
#[tokio::test]
async fn the_log_filter_changes_at_run_time_and_a_bad_one_changes_nothing() -> Result<()> {
    let node = Node::start().await?;
    let profile = node.profile();
    let result = async {
        let stdout = ok(&profile, &["admin", "log-filter"]).await?;
        ensure!(
            stdout.starts_with("dev: log filter `") && !stdout.contains("shoal_node=debug"),
            "{stdout}"
        );
        ensure!(
            !node.logs().contains("connection authenticated"),
            "debug lines before the change:\n{}",
            node.logs()
        );
        let stdout = ok(&profile, &["admin", "log-filter", "info,shoal_node=debug"]).await?;
        ensure!(
            stdout == "dev: log filter `info,shoal_node=debug`\n",
            "{stdout}"
        );
        // Each command is a new connection, which the node logs at debug now; its log
        // arrives through a pipe, so a few commands may pass before the line is read.
        let mut seen = false;
        for _ in 0..20 {
            ok(&profile, &["admin", "status"]).await?;
            if node.logs().contains("connection authenticated") {
                seen = true;
                break;
            }
        }
        ensure!(seen, "no debug line after the change:\n{}", node.logs());

        let line = refused(&profile, &["admin", "log-filter", "shoal_node=loud"]).await?;
        ensure!(
            line.contains("invalid log filter `shoal_node=loud`"),
            "{line}"
        );
        let json = ok_json(&profile, &["admin", "log-filter", "--json"]).await?;
        ensure!(
            json == serde_json::json!({"node": "dev", "filter": "info,shoal_node=debug"}),
            "{json}"
        );
        let line = refused(&profile, &["admin", "log-filter", "debug", "--node", "n9"]).await?;
        ensure!(line.contains("no member named `n9`"), "{line}");
        Ok(())
    }
    .await;
    let logs = node.logs();
    node.stop().await?;
    result.map_err(|e| anyhow!("{e:#}\n{logs}"))
}
