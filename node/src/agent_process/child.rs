//! The agent child process: its directories and environment (private home, XDG
//! dirs), spawned in its own process group, stdio turned into line streams for
//! the ACP connection, stderr kept in a bounded ring, exit watched, signals sent
//! to the whole group.
//!
//! `agent-client-protocol`'s own `AcpAgent` spawner cannot set a working
//! directory or report the pid, so the child is spawned here and the crate's
//! `Lines` transport runs over its pipes.

use super::framing::{line_stream, write_lines};
use super::ids::RequestIds;
use super::{AgentCommand, AgentError, StartOptions};
use futures::channel::mpsc as futures_mpsc;
use futures::{SinkExt, StreamExt};
use rustix::process::{Pid, Signal};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::{oneshot, watch};

/// The most stderr kept for error messages, in bytes (the newest bytes win).
pub(crate) const STDERR_TAIL_BYTES_MAX: usize = 16 * 1024;
/// The longest stderr line logged as one `tracing` event, in bytes.
const STDERR_LOG_LINE_BYTES_MAX: usize = 4 * 1024;
/// Lines queued for the agent's stdin before the connection waits.
const OUTGOING_LINES_MAX: usize = 64;
/// How long exit reporting waits for the rest of stderr after the process ended.
const STDERR_DRAIN_AFTER_EXIT_MS: u64 = 500;

/// What to run.
pub(crate) struct SpawnSpec<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: &'a [String],
    /// The whole environment ([`child_env`]): nothing else of the node's reaches it.
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) cwd: &'a Path,
    /// Run under bubblewrap with this directory (the workspace's tree) read-write.
    pub(crate) confine_to: Option<&'a Path>,
}

/// The bubblewrap program (`sandbox.isolation = "bwrap"`), looked up on `PATH`.
pub(crate) const BWRAP: &str = "bwrap";

/// System directories an agent under bubblewrap sees read-only (those that exist).
const BWRAP_SYSTEM_DIRS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt"];

/// The `bwrap` arguments that run `program args` confined to `root` (read-write) with
/// the system directories, the directories on the child's `PATH` and the program's own
/// directory read-only, private `/tmp`, `/proc` and `/dev`, and nothing else of the
/// node's disk. The network stays shared (agents call their model APIs).
pub(crate) fn bwrap_args(
    program: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    root: &Path,
) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |items: &[&std::ffi::OsStr]| out.extend(items.iter().map(|i| i.to_os_string()));
    push(&[
        "--die-with-parent".as_ref(),
        "--unshare-pid".as_ref(),
        "--unshare-ipc".as_ref(),
        "--unshare-uts".as_ref(),
    ]);
    for dir in BWRAP_SYSTEM_DIRS {
        push(&["--ro-bind-try".as_ref(), dir.as_ref(), dir.as_ref()]);
    }
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    // Where the program and what it runs live, read-only: PATH's directories and the
    // program's own (resolved through symlinks, as npm installs them).
    let path_var = env.get("PATH").map(String::as_str).unwrap_or("");
    let mut readable: Vec<PathBuf> = std::env::split_paths(path_var)
        .filter(|d| d.is_absolute() && d.is_dir())
        .collect();
    let resolved = if program.components().count() > 1 {
        Some(cwd.join(program))
    } else {
        readable
            .iter()
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    };
    if let Some(dir) = resolved
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        readable.push(dir);
    }
    for dir in readable {
        if BWRAP_SYSTEM_DIRS.iter().any(|s| dir.starts_with(s)) {
            continue;
        }
        push(&["--ro-bind-try".as_ref(), dir.as_os_str(), dir.as_os_str()]);
    }
    push(&[
        "--bind".as_ref(),
        root.as_os_str(),
        root.as_os_str(),
        "--chdir".as_ref(),
        cwd.as_os_str(),
        "--".as_ref(),
        program.as_os_str(),
    ]);
    out.extend(args.iter().map(std::ffi::OsString::from));
    out
}

/// Checks that bubblewrap is installed and can start a confined process here (user
/// namespaces allowed); the error says how to fix it.
pub fn check_bwrap() -> Result<(), String> {
    let output = std::process::Command::new(BWRAP)
        .args(["--ro-bind", "/", "/", "--unshare-pid", "--", "true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output();
    match output {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "sandbox.isolation = \"bwrap\" but bubblewrap cannot start a sandbox here ({}): {}; allow unprivileged user namespaces or set sandbox.isolation = \"none\"",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(
            "sandbox.isolation = \"bwrap\" but `bwrap` is not installed: install Debian's bubblewrap (`apt-get install bubblewrap`) or set sandbox.isolation = \"none\"".to_owned(),
        ),
        Err(e) => Err(format!(
            "sandbox.isolation = \"bwrap\" but `bwrap` cannot be run: {e}; check it is on the node's PATH or set sandbox.isolation = \"none\""
        )),
    }
}

/// The stdin side handed to the ACP connection.
pub(crate) type OutgoingLines = futures::sink::SinkMapErr<
    futures_mpsc::Sender<String>,
    fn(futures_mpsc::SendError) -> io::Error,
>;

/// A running (or exited) agent process. Dropping it SIGKILLs the process group
/// if the process has not been reaped yet.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pid: Option<u32>,
    exit: watch::Receiver<Option<String>>,
    close_stdin: watch::Sender<bool>,
    stderr: StderrTail,
    /// `true` once the process has been reaped: its pid may then be reused, so no
    /// more signals are sent.
    reaped: Arc<Mutex<bool>>,
    /// An in-process agent (simulation, [`crate::seam::AgentLauncher`]): every signal
    /// aborts its task instead.
    in_process: Option<tokio::task::AbortHandle>,
}

/// Spawns the agent with piped stdio in a new process group. Returns the handle
/// and the two halves of the line transport.
pub(crate) fn spawn(
    spec: &SpawnSpec<'_>,
) -> io::Result<(
    ChildProcess,
    OutgoingLines,
    futures::stream::BoxStream<'static, io::Result<String>>,
)> {
    let mut command = match spec.confine_to {
        Some(root) => {
            let mut command = tokio::process::Command::new(BWRAP);
            command.args(bwrap_args(
                spec.program,
                spec.args,
                spec.env,
                spec.cwd,
                root,
            ));
            command
        }
        None => {
            let mut command = tokio::process::Command::new(spec.program);
            command.args(spec.args);
            command
        }
    };
    command
        .env_clear()
        .envs(spec.env)
        .current_dir(spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a launcher (npx, uvx, a shell) and the real agent
        // behind it are signalled together.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        // Unreachable with `Stdio::piped()`; the child is killed on drop.
        return Err(io::Error::other("the agent's stdio pipes were not created"));
    };

    let tail = StderrTail::default();
    let (stderr_done_tx, stderr_done_rx) = oneshot::channel();
    tokio::spawn(drain_stderr(stderr, tail.clone(), pid, stderr_done_tx));

    let (close_tx, close_rx) = watch::channel(false);
    let (line_tx, line_rx) = futures_mpsc::channel(OUTGOING_LINES_MAX);
    let ids = Arc::new(RequestIds::default());
    tokio::spawn(write_lines(stdin, line_rx, close_rx, Arc::clone(&ids), pid));

    let reaped = Arc::new(Mutex::new(false));
    let (exit_tx, exit_rx) = watch::channel(None);
    tokio::spawn(watch_exit(
        child,
        pid,
        Arc::clone(&reaped),
        stderr_done_rx,
        exit_tx,
    ));

    let to_io: fn(futures_mpsc::SendError) -> io::Error =
        |_| io::Error::new(io::ErrorKind::BrokenPipe, "the agent's stdin is closed");
    let outgoing = line_tx.sink_map_err(to_io);
    let incoming = line_stream(BufReader::new(stdout), ids, pid);

    let process = ChildProcess {
        pid,
        exit: exit_rx,
        close_stdin: close_tx,
        stderr: tail,
        reaped,
        in_process: None,
    };
    Ok((process, outgoing, incoming.boxed()))
}

/// Starts an agent through `launcher` (simulation): the same line transport over the
/// in-process agent's stdio; signals abort its task; its end is the exit.
pub(crate) fn spawn_in_process(
    launcher: &dyn crate::seam::AgentLauncher,
    spec: &SpawnSpec<'_>,
) -> io::Result<(
    ChildProcess,
    OutgoingLines,
    futures::stream::BoxStream<'static, io::Result<String>>,
)> {
    let launched = launcher.launch(&crate::seam::LaunchSpec {
        program: spec.program.to_owned(),
        args: spec.args.to_vec(),
        cwd: spec.cwd.to_owned(),
        env: spec.env.clone(),
    })?;
    let pid = Some(launched.pid);
    let abort = launched.task.abort_handle();

    let (close_tx, close_rx) = watch::channel(false);
    let (line_tx, line_rx) = futures_mpsc::channel(OUTGOING_LINES_MAX);
    let ids = Arc::new(RequestIds::default());
    tokio::spawn(write_lines(
        launched.stdin,
        line_rx,
        close_rx,
        Arc::clone(&ids),
        pid,
    ));

    let reaped = Arc::new(Mutex::new(false));
    let (exit_tx, exit_rx) = watch::channel(None);
    let reaped_by_watcher = Arc::clone(&reaped);
    let task = launched.task;
    tokio::spawn(async move {
        let status = match task.await {
            Ok(Ok(())) => String::from("exit status: 0"),
            Ok(Err(error)) => format!("exit status: 1 ({error})"),
            Err(error) if error.is_cancelled() => String::from("signal: 9 (SIGKILL)"),
            Err(error) => format!("panicked: {error}"),
        };
        *reaped_by_watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        tracing::debug!(?pid, %status, "in-process agent exited");
        exit_tx.send_replace(Some(status));
    });

    let to_io: fn(futures_mpsc::SendError) -> io::Error =
        |_| io::Error::new(io::ErrorKind::BrokenPipe, "the agent's stdin is closed");
    let outgoing = line_tx.sink_map_err(to_io);
    let incoming = line_stream(BufReader::new(launched.stdout), ids, pid);
    let process = ChildProcess {
        pid,
        exit: exit_rx,
        close_stdin: close_tx,
        stderr: StderrTail::default(),
        reaped,
        in_process: Some(abort),
    };
    Ok((process, outgoing, incoming.boxed()))
}

impl ChildProcess {
    /// The OS process id (also the process group id).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The exit status description, if the process has exited.
    pub(crate) fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// A receiver that turns `Some` once the process has exited and been reaped.
    pub(crate) fn exit_watch(&self) -> watch::Receiver<Option<String>> {
        self.exit.clone()
    }

    /// Resolves with the exit status description once the process has exited.
    pub(crate) async fn wait_exit(&self) -> String {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.clone().unwrap_or_default(),
            // The watcher task is gone (runtime shutting down): report what we know.
            Err(_) => self
                .exit
                .borrow()
                .clone()
                .unwrap_or_else(|| String::from("unknown (exit watcher stopped)")),
        }
    }

    /// Like [`Self::wait_exit`], giving up after `limit`.
    pub(crate) async fn wait_exit_timeout(&self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, self.wait_exit()).await.ok()
    }

    /// Closes the agent's stdin (EOF tells a well-behaved agent to exit).
    pub(crate) fn close_stdin(&self) {
        self.close_stdin.send_replace(true);
    }

    /// Sends `signal` to the process group, unless the process was reaped.
    pub(crate) fn signal_group(&self, signal: Signal) {
        if let Some(task) = &self.in_process {
            task.abort();
            return;
        }
        let reaped = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if !*reaped {
            signal_group(self.pid, signal);
        }
    }

    /// The last [`STDERR_TAIL_BYTES_MAX`] bytes of stderr, as text.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr.snapshot()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.close_stdin();
        self.signal_group(Signal::KILL);
    }
}

fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    if let Err(error) = rustix::process::kill_process_group(pid, signal) {
        // ESRCH: the group is already gone.
        tracing::debug!(pid = pid.as_raw_nonzero().get(), ?signal, %error, "signalling the agent's process group failed");
    }
}

/// Reaps the process, kills what is left of its group (a launcher's children),
/// waits briefly for the rest of stderr, then publishes the exit status.
async fn watch_exit(
    mut child: Child,
    pid: Option<u32>,
    reaped: Arc<Mutex<bool>>,
    stderr_done: oneshot::Receiver<()>,
    exit_tx: watch::Sender<Option<String>>,
) {
    let status = match child.wait().await {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown exit status ({error})"),
    };
    {
        let mut reaped = reaped.lock().unwrap_or_else(PoisonError::into_inner);
        // The group outlives its leader while members remain, so its id cannot
        // have been reused yet if anything is left to kill.
        signal_group(pid, Signal::KILL);
        *reaped = true;
    }
    tracing::debug!(?pid, %status, "agent process exited");
    let drain = Duration::from_millis(STDERR_DRAIN_AFTER_EXIT_MS);
    // Either outcome is fine: the tail holds what was read so far.
    let _drained = tokio::time::timeout(drain, stderr_done).await;
    exit_tx.send_replace(Some(status));
}

/// Reads stderr to EOF: every line is logged at debug level and the newest
/// bytes are kept in the tail.
async fn drain_stderr(
    mut stderr: ChildStderr,
    tail: StderrTail,
    pid: Option<u32>,
    done: oneshot::Sender<()>,
) {
    let mut buffer = vec![0_u8; 8 * 1024];
    let mut line = Vec::new();
    let mut line_truncated = false;
    loop {
        let read = match stderr.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(?pid, %error, "reading the agent's stderr failed");
                break;
            }
        };
        let bytes = &buffer[..read];
        tail.push(bytes);
        for &byte in bytes {
            if byte == b'\n' {
                log_stderr_line(pid, &line, line_truncated);
                line.clear();
                line_truncated = false;
            } else if line.len() < STDERR_LOG_LINE_BYTES_MAX {
                line.push(byte);
            } else {
                line_truncated = true;
            }
        }
    }
    if !line.is_empty() {
        log_stderr_line(pid, &line, line_truncated);
    }
    // The receiver may have stopped waiting.
    let _sent = done.send(());
}

fn log_stderr_line(pid: Option<u32>, line: &[u8], truncated: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    if truncated {
        tracing::debug!(?pid, "agent stderr: {text}… (line truncated)");
    } else {
        tracing::debug!(?pid, "agent stderr: {text}");
    }
}

/// The newest [`STDERR_TAIL_BYTES_MAX`] bytes of stderr, shared with the reader.
#[derive(Debug, Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = bytes.len().min(STDERR_TAIL_BYTES_MAX);
        let overflow = (tail.len() + keep).saturating_sub(STDERR_TAIL_BYTES_MAX);
        tail.drain(..overflow);
        tail.extend(&bytes[bytes.len() - keep..]);
    }

    fn snapshot(&self) -> String {
        let mut tail = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(tail.make_contiguous())
            .trim()
            .to_owned()
    }
}

/// Checks `cwd`, creates the private home and its XDG directories; returns `cwd`
/// as text for the ACP requests.
pub(crate) fn prepare_directories(opts: &StartOptions) -> Result<String, AgentError> {
    let setup = |what, path: &Path, source| AgentError::Setup {
        what,
        path: path.to_path_buf(),
        source,
    };
    let invalid = |message: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    if !opts.cwd.is_absolute() {
        return Err(setup(
            "workspace directory",
            &opts.cwd,
            invalid("the path is not absolute"),
        ));
    }
    if !opts.cwd.is_dir() {
        return Err(setup(
            "workspace directory",
            &opts.cwd,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    let cwd = opts.cwd.to_str().ok_or_else(|| {
        setup(
            "workspace directory",
            &opts.cwd,
            invalid("the path is not UTF-8"),
        )
    })?;
    if !opts.home.is_absolute() {
        return Err(setup(
            "private home directory",
            &opts.home,
            invalid("the path is not absolute"),
        ));
    }
    for dir in std::iter::once(opts.home.clone()).chain(xdg_dirs(&opts.home).map(|(_, dir)| dir)) {
        std::fs::create_dir_all(&dir)
            .map_err(|source| setup("private home directory", &dir, source))?;
    }
    Ok(cwd.to_owned())
}

/// The XDG base directories inside a private home.
fn xdg_dirs(home: &Path) -> impl Iterator<Item = (&'static str, PathBuf)> + '_ {
    [
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_STATE_HOME", ".local/state"),
    ]
    .into_iter()
    .map(move |(name, relative)| (name, home.join(relative)))
}

/// Variables of the node's own environment an agent inherits; every other one (tokens,
/// cloud credentials, `SHOAL_*`) stays with the node.
pub(crate) const INHERITED_ENV: [&str; 7] = [
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "TMPDIR",
];

/// Whether a variable of the node's environment passes to agents: [`INHERITED_ENV`]
/// and the locale's `LC_*`.
pub(crate) fn inherited(name: &str) -> bool {
    INHERITED_ENV.contains(&name) || name.starts_with("LC_")
}

/// The child's whole environment (it starts from an empty one): the node's
/// [inherited](inherited) variables, the command's own, then the private home (so a
/// configured `HOME` cannot share state between sessions, ACP pitfall 4), then
/// `extra_env`.
pub(crate) fn child_env(
    cmd: &AgentCommand,
    opts: &StartOptions,
) -> Result<BTreeMap<String, String>, AgentError> {
    let text = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| AgentError::Setup {
                what: "private home directory",
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the path is not UTF-8",
                ),
            })
    };
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| inherited(k))
        .collect();
    env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert(String::from("HOME"), text(&opts.home)?);
    for (name, dir) in xdg_dirs(&opts.home) {
        env.insert(name.to_owned(), text(&dir)?);
    }
    env.extend(opts.extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_newest_bytes() {
        let tail = StderrTail::default();
        tail.push(b"old ");
        tail.push(&vec![b'x'; STDERR_TAIL_BYTES_MAX - 3]);
        tail.push(b"new");
        let expected = format!("{}new", "x".repeat(STDERR_TAIL_BYTES_MAX - 3));
        assert_eq!(tail.snapshot(), expected);
        tail.push(&vec![b'y'; STDERR_TAIL_BYTES_MAX * 2]);
        assert_eq!(tail.snapshot(), "y".repeat(STDERR_TAIL_BYTES_MAX));
    }
}
