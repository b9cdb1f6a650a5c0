//! End to end: the real `shoal-node dev` as a child process, driven by the real `shoalctl`.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use shoal_protocol::ConversationId;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest wait for `cargo build -p shoal-node` when the binary is missing.
const NODE_BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest wait for the node's `ready` line.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one `shoalctl` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Node log lines kept for failure messages.
const NODE_LOG_LINES_MAX: usize = 200;

const SHOALCTL: &str = env!("CARGO_BIN_EXE_shoalctl");

/// `target/debug/shoal-node`, built first if missing.
async fn node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // The test executable lives in target/debug/deps.
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot find the target directory from the test executable")?;
    let binary = dir.join(format!("shoal-node{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-p", "shoal-node"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true);
        let status = tokio::time::timeout(NODE_BUILD_TIMEOUT, build.status())
            .await
            .map_err(|_| {
                anyhow!("`cargo build -p shoal-node` took over {NODE_BUILD_TIMEOUT:?}")
            })??;
        ensure!(
            status.success(),
            "`cargo build -p shoal-node` failed: {status}"
        );
    }
    ensure!(
        binary.exists(),
        "{} does not exist; build it with `cargo build -p shoal-node`",
        binary.display()
    );
    Ok(binary)
}

/// A `shoal-node dev` child with its own data directory; killed on drop.
struct Node {
    child: Child,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    async fn start() -> Result<Node> {
        let binary = node_binary().await?;
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(&binary)
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(drain(stdout, log.clone(), Some(ready_tx)));
        tokio::spawn(drain(stderr, log.clone(), None));
        let mut node = Node { child, dir, log };
        match tokio::time::timeout(NODE_READY_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the node exited before printing `ready`\n{}", node.logs()),
            Err(_) => {
                let _ = node.child.kill().await;
                bail!(
                    "the node printed no `ready` line within {NODE_READY_TIMEOUT:?}\n{}",
                    node.logs()
                )
            }
        }
        ensure!(
            node.profile().exists(),
            "the node is ready but wrote no {}\n{}",
            node.profile().display(),
            node.logs()
        );
        Ok(node)
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile.toml")
    }

    fn logs(&self) -> String {
        let lines = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
        format!("--- node output ---\n{lines}\n--- end of node output ---")
    }

    async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// Copies a pipe's lines into `log` (bounded); signals `ready` on the first line with `ready`.
async fn drain(
    pipe: impl tokio::io::AsyncRead + Unpin,
    log: Arc<Mutex<Vec<String>>>,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("ready")
            && let Some(ready) = ready.take()
        {
            let _ = ready.send(());
        }
        if let Ok(mut log) = log.lock() {
            if log.len() >= NODE_LOG_LINES_MAX {
                log.remove(0);
            }
            log.push(line);
        }
    }
}

/// Runs `shoalctl --profile PROFILE ARGS…` to completion with an empty stdin.
async fn shoalctl(profile: &Path, args: &[&str]) -> Result<Output> {
    shoalctl_with_stdin(profile, args, "").await
}

/// Runs `shoalctl --profile PROFILE ARGS…` with `input` on its stdin.
async fn shoalctl_with_stdin(profile: &Path, args: &[&str], input: &str) -> Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut command = Command::new(SHOALCTL);
    command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("SHOAL_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("cannot run shoalctl")?;
    let mut stdin = child.stdin.take().context("no stdin pipe")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!(
                "`shoalctl {}` took over {COMMAND_TIMEOUT:?}",
                args.join(" ")
            )
        })?
        .context("cannot run shoalctl")
}

#[tokio::test]
async fn credentials_are_set_from_stdin_listed_without_values_and_removed() -> Result<()> {
    let node = Node::start().await?;
    let result = credentials_scenario(&node).await;
    let logs = node.logs();
    node.stop().await?;
    result.map_err(|e| anyhow!("{e:#}\n{logs}"))
}

async fn credentials_scenario(node: &Node) -> Result<()> {
    let profile = node.profile();
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

    let stdout = succeeded(
        &shoalctl(&profile, &["creds", "list", "--json"]).await?,
        "creds list",
    )?;
    let list: Value = serde_json::from_str(&stdout)?;
    ensure!(
        list.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["name"] == "GITHUB_TOKEN"),
        "creds list --json printed {stdout}"
    );
    ensure!(
        !stdout.contains(secret),
        "the list shows the value: {stdout}"
    );
    let table = succeeded(&shoalctl(&profile, &["creds", "list"]).await?, "creds list")?;
    ensure!(
        table.starts_with("NAME") && table.contains("GITHUB_TOKEN") && !table.contains(secret),
        "{table}"
    );

    // The agent got it (only its hash goes into the transcript).
    let id = succeeded(&shoalctl(&profile, &["conv", "new"]).await?, "conv new")?;
    let stdout = succeeded(
        &shoalctl(
            &profile,
            &["conv", "send", id.trim(), "/env-digest GITHUB_TOKEN"],
        )
        .await?,
        "conv send",
    )?;
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

    let stdout = succeeded(
        &shoalctl(&profile, &["creds", "rm", "GITHUB_TOKEN"]).await?,
        "creds rm",
    )?;
    ensure!(stdout == "removed GITHUB_TOKEN\n", "{stdout}");
    let line = failed_with_one_line(
        &shoalctl(&profile, &["creds", "rm", "GITHUB_TOKEN"]).await?,
        "creds rm again",
    )?;
    ensure!(line.contains("no credential named GITHUB_TOKEN"), "{line}");
    let stdout = succeeded(&shoalctl(&profile, &["creds", "list"]).await?, "creds list")?;
    ensure!(stdout == "no credentials\n", "{stdout}");
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks success and returns stdout.
fn succeeded(output: &Output, what: &str) -> Result<String> {
    ensure!(
        output.status.success(),
        "`{what}` failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    Ok(text(&output.stdout))
}

/// Checks exit status 1 with exactly one `error: …` line on stderr, and returns it.
fn failed_with_one_line(output: &Output, what: &str) -> Result<String> {
    let stderr = text(&output.stderr);
    ensure!(
        output.status.code() == Some(1),
        "`{what}` should exit 1, got {} (stderr: {stderr})",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "`{what}` should print one `error:` line, got: {stderr:?}"
    );
    Ok(lines[0].to_owned())
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
