//! Shared by the end-to-end tests: the real `shoal-node dev` as a child process and the
//! real `shoalctl` run against it.

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
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
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Node log lines kept for failure messages.
const NODE_LOG_LINES_MAX: usize = 200;

pub(crate) const SHOALCTL: &str = env!("CARGO_BIN_EXE_shoalctl");

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
pub(crate) struct Node {
    child: Child,
    pub(crate) dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub(crate) async fn start() -> Result<Node> {
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

    pub(crate) fn profile(&self) -> PathBuf {
        self.dir.path().join("profile.toml")
    }

    pub(crate) fn logs(&self) -> String {
        let lines = self.log.lock().map(|l| l.join("\n")).unwrap_or_default();
        format!("--- node output ---\n{lines}\n--- end of node output ---")
    }

    pub(crate) async fn stop(mut self) -> Result<()> {
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
pub(crate) async fn shoalctl(profile: &Path, args: &[&str]) -> Result<Output> {
    shoalctl_with_stdin(profile, args, "").await
}

/// Starts `shoalctl --profile PROFILE ARGS…` with piped stdin, stdout and stderr; it is
/// killed when dropped.
pub(crate) fn spawn_shoalctl(profile: &Path, args: &[&str]) -> Result<tokio::process::Child> {
    Command::new(SHOALCTL)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("SHOAL_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run shoalctl")
}

/// Runs `shoalctl --profile PROFILE ARGS…` with `input` on its stdin.
pub(crate) async fn shoalctl_with_stdin(
    profile: &Path,
    args: &[&str],
    input: &str,
) -> Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = spawn_shoalctl(profile, args)?;
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

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks success and returns stdout.
pub(crate) fn succeeded(output: &Output, what: &str) -> Result<String> {
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
pub(crate) fn failed_with_one_line(output: &Output, what: &str) -> Result<String> {
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

/// Runs `scenario` against a fresh node and adds the node's output to a failure.
pub(crate) async fn with_node<F, Fut>(scenario: F) -> Result<()>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let node = Node::start().await?;
    let result = scenario(node.profile()).await;
    let logs = node.logs();
    node.stop().await?;
    result.map_err(|e| anyhow!("{e:#}\n{logs}"))
}

/// Runs a command that must succeed and returns its stdout.
pub(crate) async fn ok(profile: &Path, args: &[&str]) -> Result<String> {
    succeeded(&shoalctl(profile, args).await?, &args.join(" "))
}

/// Runs a command that must succeed and parses its stdout as JSON.
pub(crate) async fn ok_json(profile: &Path, args: &[&str]) -> Result<Value> {
    let stdout = ok(profile, args).await?;
    serde_json::from_str(&stdout).with_context(|| format!("`{}` printed {stdout}", args.join(" ")))
}

/// Runs a command that must fail with one error line and returns that line.
pub(crate) async fn refused(profile: &Path, args: &[&str]) -> Result<String> {
    failed_with_one_line(&shoalctl(profile, args).await?, &args.join(" "))
}
