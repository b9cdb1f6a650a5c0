//! The agent watchdog: a small separate process that enforces each shard's lease on its
//! agent processes even when the node itself cannot run.
//!
//! The fence ([`crate::fence`]) kills a shard's agents when the node sees its lease lapse.
//! A node that is paused (SIGSTOP, a stalled VM thread, a debugger) sees nothing, and its
//! agents, in their own process groups, keep running while another node takes the shard
//! over and starts new ones: two agents for one session (invariant 2; the chaos tests
//! caught it). The watchdog closes that hole. It is a child of the node (`shoal-node
//! agent-watchdog`) in its own process group that knows, per shard, the lease deadline
//! (on `CLOCK_MONOTONIC`) and the agent process groups. When a deadline passes without a
//! renewal, it SIGKILLs that shard's agents by itself. When the node dies, its stdin ends
//! and it kills every agent it knows, then exits.
//!
//! # Protocol (node → watchdog, one line each on stdin)
//! * `lease <shard> <ns>`: the shard's agents may run until `<ns>` (`CLOCK_MONOTONIC`).
//! * `lease <shard> forever`: no deadline (a single voter cannot be superseded).
//! * `lease <shard> none`: the shard is fenced: kill its agents now.
//! * `add <shard> <pgid>`: an agent process group of the shard.
//! * `forget <pgid>`: that group has exited and was reaped.
//!
//! An `add` for a shard without a live deadline is killed at once: the node only starts
//! agents under a lease it has already announced.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// The longest command line the watchdog reads; longer lines are skipped.
pub const WATCHDOG_LINE_BYTES_MAX: u64 = 256;
/// Commands queued for the watchdog process before the writer takes them (adds and
/// forgets; lease renewals coalesce per shard and take no room).
pub const WATCHDOG_OPS_QUEUED_MAX: usize = 65_536;
/// Pause before restarting a watchdog process that died.
const WATCHDOG_RESPAWN_PAUSE_MS: u64 = 500;
/// Least time between two writes that carry only lease renewals. Every shard's lease is
/// renewed on each heartbeat acknowledgement, each at its own moment: written as they
/// come, that is a write (and a wake of the watchdog) per renewal, hundreds a second on
/// an idle node. Renewals within this window go as one write; a watchdog's view of a
/// renewal is at most this late (the lease is 300 ms by default). Adds, forgets and
/// shortened leases are written at once.
const WATCHDOG_RENEWALS_WINDOW_MS: u64 = 25;

static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Names the executable whose `agent-watchdog` subcommand runs the watchdog. The
/// `shoal-node` command line sets it to itself; a node embedded in another program
/// without it runs no watchdog (its fence still works while the node runs).
pub fn set_program(exe: PathBuf) {
    let _ = PROGRAM.set(exe);
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds (shared by every process on the machine).
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// How long a shard's agents may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// Not at all: kill them.
    None,
    /// Until this `CLOCK_MONOTONIC` instant, in ns.
    At(u64),
    /// No deadline.
    Forever,
}

impl Deadline {
    /// The deadline of a lease that ends at `until` (a tokio instant, which is
    /// `CLOCK_MONOTONIC` underneath).
    pub fn at(until: tokio::time::Instant) -> Deadline {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        Deadline::At(
            monotonic_ns().saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    fn encode(self) -> String {
        match self {
            Deadline::None => "none".to_owned(),
            Deadline::At(ns) => ns.to_string(),
            Deadline::Forever => "forever".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Deadline> {
        match text {
            "none" => Some(Deadline::None),
            "forever" => Some(Deadline::Forever),
            ns => ns.parse().ok().map(Deadline::At),
        }
    }

    fn expired(self, now_ns: u64) -> bool {
        match self {
            Deadline::None => true,
            Deadline::At(ns) => ns <= now_ns,
            Deadline::Forever => false,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The watchdog process.

/// One command of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Lease(u16, Deadline),
    Add(u16, i32),
    Forget(i32),
}

fn parse(line: &str) -> Option<Command> {
    let mut words = line.split_ascii_whitespace();
    let command = match (words.next()?, words.next()?, words.next()) {
        ("lease", shard, Some(deadline)) => {
            Command::Lease(shard.parse().ok()?, Deadline::decode(deadline)?)
        }
        ("add", shard, Some(pgid)) => Command::Add(shard.parse().ok()?, parse_pgid(pgid)?),
        ("forget", pgid, None) => Command::Forget(parse_pgid(pgid)?),
        _ => return None,
    };
    words.next().is_none().then_some(command)
}

/// A process group id we may signal: never 0 or 1 (our own group, init).
fn parse_pgid(text: &str) -> Option<i32> {
    text.parse().ok().filter(|pgid| *pgid > 1)
}

/// The watchdog's state: sans-I/O, so the rules are unit-tested.
#[derive(Debug, Default)]
struct Guard {
    deadlines: BTreeMap<u16, Deadline>,
    groups: BTreeMap<u16, BTreeSet<i32>>,
}

impl Guard {
    /// Applies a command; returns groups to kill now.
    fn apply(&mut self, command: Command, now_ns: u64) -> Vec<i32> {
        match command {
            Command::Lease(shard, deadline) => {
                self.deadlines.insert(shard, deadline);
                self.expire(now_ns)
            }
            Command::Add(shard, pgid) => {
                let live = self
                    .deadlines
                    .get(&shard)
                    .is_some_and(|d| !d.expired(now_ns));
                if live {
                    self.groups.entry(shard).or_default().insert(pgid);
                    Vec::new()
                } else {
                    vec![pgid]
                }
            }
            Command::Forget(pgid) => {
                for groups in self.groups.values_mut() {
                    groups.remove(&pgid);
                }
                Vec::new()
            }
        }
    }

    /// Removes and returns the groups of every shard whose deadline has passed.
    fn expire(&mut self, now_ns: u64) -> Vec<i32> {
        let mut doomed = Vec::new();
        for (shard, groups) in &mut self.groups {
            let expired = self.deadlines.get(shard).is_none_or(|d| d.expired(now_ns));
            if expired {
                doomed.extend(std::mem::take(groups));
            }
        }
        doomed
    }

    /// The earliest deadline that guards at least one group.
    fn next_deadline(&self) -> Option<u64> {
        self.groups
            .iter()
            .filter(|(_, groups)| !groups.is_empty())
            .filter_map(|(shard, _)| match self.deadlines.get(shard) {
                Some(Deadline::At(ns)) => Some(*ns),
                Some(Deadline::Forever) => None,
                Some(Deadline::None) | None => Some(0),
            })
            .min()
    }

    /// Every group, for the end of the node.
    fn all(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.groups)
            .into_values()
            .flatten()
            .collect()
    }
}

fn kill_groups(groups: &[i32], why: &str) {
    for pgid in groups {
        let Some(pid) = rustix::process::Pid::from_raw(*pgid) else {
            continue;
        };
        // An error is ESRCH: the group is already gone.
        if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_ok() {
            eprintln!("shoal-node agent-watchdog: killed agent process group {pgid}: {why}");
        }
    }
}

/// Runs the watchdog on stdin until it ends (`shoal-node agent-watchdog`).
pub fn run_blocking() -> ExitCode {
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1024);
    let reader = std::thread::Builder::new()
        .name("watchdog-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let read = Read::by_ref(&mut stdin)
                    .take(WATCHDOG_LINE_BYTES_MAX + 1)
                    .read_until(b'\n', &mut buf);
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A last line without a newline just means the input ended.
                if buf.last() != Some(&b'\n') && buf.len() as u64 > WATCHDOG_LINE_BYTES_MAX {
                    eprintln!("shoal-node agent-watchdog: skipping a line over {WATCHDOG_LINE_BYTES_MAX} bytes");
                    // Skip the rest of the long line, a bounded piece at a time.
                    loop {
                        let mut rest = Vec::new();
                        let n = Read::by_ref(&mut stdin)
                            .take(WATCHDOG_LINE_BYTES_MAX)
                            .read_until(b'\n', &mut rest)
                            .unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        if rest.last() == Some(&b'\n') {
                            break;
                        }
                    }
                    continue;
                }
                let line = String::from_utf8_lossy(&buf).trim().to_owned();
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = reader {
        eprintln!("shoal-node agent-watchdog: cannot start the reader thread: {e}");
        return ExitCode::FAILURE;
    }
    let mut guard = Guard::default();
    loop {
        let received = match guard.next_deadline() {
            Some(at) => {
                let wait = Duration::from_nanos(at.saturating_sub(monotonic_ns()));
                rx.recv_timeout(wait)
            }
            None => rx
                .recv()
                .map_err(|_| std::sync::mpsc::RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(line) => match parse(&line) {
                Some(command) => {
                    let doomed = guard.apply(command, monotonic_ns());
                    kill_groups(&doomed, "its shard's lease is not live");
                }
                None if line.is_empty() => {}
                None => eprintln!("shoal-node agent-watchdog: ignoring a malformed line {line:?}"),
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let all = guard.all();
                kill_groups(&all, "the node is gone");
                return ExitCode::SUCCESS;
            }
        }
        let doomed = guard.expire(monotonic_ns());
        kill_groups(
            &doomed,
            "its shard's lease ran out without a renewal (is the node paused?)",
        );
    }
}

// ---------------------------------------------------------------------------------------
// The node's handle.

#[derive(Debug, Default)]
struct Pending {
    /// Latest deadline per shard not yet written.
    leases: BTreeMap<u16, Deadline>,
    /// Adds and forgets not yet written, in order.
    ops: std::collections::VecDeque<Command>,
    /// Everything the watchdog should know, to brief a restarted one.
    mirror_leases: BTreeMap<u16, Deadline>,
    mirror_groups: BTreeMap<i32, u16>,
    /// Ops dropped because the queue was full.
    dropped: u64,
    /// Something pending must not wait for the renewals window: an add, a forget, or a
    /// lease shorter than the last one.
    urgent: bool,
}

#[derive(Debug)]
struct Inner {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Inner {
    fn urgent(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .urgent
    }
}

/// The node's side of the watchdog: cheap to clone; a disabled one does nothing.
#[derive(Debug, Clone, Default)]
pub struct Watchdog {
    inner: Option<Arc<Inner>>,
}

impl Watchdog {
    /// A watchdog that does nothing (single voter, or no `shoal-node` executable known).
    pub fn disabled() -> Watchdog {
        Watchdog { inner: None }
    }

    /// Starts the watchdog process when `needed` and the program is known (see
    /// [`set_program`]); otherwise a disabled handle.
    pub fn start(needed: bool) -> Watchdog {
        let Some(program) = PROGRAM.get().cloned().filter(|_| needed) else {
            if needed {
                tracing::warn!(
                    "no agent watchdog: this node was not started from the shoal-node command line, so a paused node cannot fence its agents"
                );
            }
            return Watchdog::disabled();
        };
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        tokio::spawn(run_writer(program, Arc::clone(&inner)));
        Watchdog { inner: Some(inner) }
    }

    /// Whether a watchdog process guards the agents.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn with(&self, f: impl FnOnce(&mut Pending) -> bool) {
        let Some(inner) = &self.inner else { return };
        let wake = {
            let mut pending = inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut pending)
        };
        if wake {
            inner.wake.notify_one();
        }
    }

    /// Announces how long `shard`'s agents may run.
    pub fn lease(&self, shard: u16, deadline: Deadline) {
        self.with(|p| {
            let before = p.mirror_leases.get(&shard).copied();
            if before == Some(deadline) {
                return false;
            }
            p.urgent |= before.is_some_and(|before| deadline < before);
            p.mirror_leases.insert(shard, deadline);
            p.leases.insert(shard, deadline);
            true
        });
    }

    /// Registers an agent process group of `shard`.
    pub fn add(&self, shard: u16, pgid: u32) {
        let Ok(pgid) = i32::try_from(pgid) else {
            return;
        };
        self.with(|p| {
            p.mirror_groups.insert(pgid, shard);
            push_op(p, Command::Add(shard, pgid))
        });
    }

    /// Forgets an agent process group that exited and was reaped.
    pub fn forget(&self, pgid: u32) {
        let Ok(pgid) = i32::try_from(pgid) else {
            return;
        };
        self.with(|p| {
            p.mirror_groups.remove(&pgid);
            push_op(p, Command::Forget(pgid))
        });
    }
}

fn push_op(pending: &mut Pending, op: Command) -> bool {
    if pending.ops.len() >= WATCHDOG_OPS_QUEUED_MAX {
        pending.dropped += 1;
        return false;
    }
    pending.ops.push_back(op);
    pending.urgent = true;
    true
}

fn encode(command: &Command) -> String {
    match command {
        Command::Lease(shard, deadline) => format!("lease {shard} {}\n", deadline.encode()),
        Command::Add(shard, pgid) => format!("add {shard} {pgid}\n"),
        Command::Forget(pgid) => format!("forget {pgid}\n"),
    }
}

/// Keeps a watchdog process running and writes pending commands to it. A restarted
/// process is first briefed with everything the previous one knew.
async fn run_writer(program: PathBuf, inner: Arc<Inner>) {
    let mut brief = false;
    loop {
        let spawned = tokio::process::Command::new(&program)
            .arg("agent-watchdog")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            // Its own group: a Ctrl-C meant for the node does not take it down first.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                tracing::info!(pid = ?child.id(), "agent watchdog started");
                if let Some(stdin) = child.stdin.take() {
                    feed(stdin, &inner, brief).await;
                }
                tracing::error!("the agent watchdog is gone; restarting it");
                let _ = child.kill().await;
            }
            Err(e) => {
                tracing::error!(program = %program.display(), error = %e, "cannot start the agent watchdog; retrying");
            }
        }
        // Whatever the last process knew, the next one is briefed with all of it.
        brief = true;
        tokio::time::sleep(Duration::from_millis(WATCHDOG_RESPAWN_PAUSE_MS)).await;
    }
}

/// Writes pending commands to one watchdog process until a write fails (it died).
async fn feed(mut stdin: impl AsyncWrite + Unpin, inner: &Inner, mut brief: bool) {
    let window = Duration::from_millis(WATCHDOG_RENEWALS_WINDOW_MS);
    let mut last_write = tokio::time::Instant::now();
    loop {
        let text = {
            let mut pending = inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut text = String::new();
            pending.urgent = false;
            if brief {
                // A fresh process: leases first, so the adds find them live.
                for (shard, deadline) in &pending.mirror_leases {
                    text.push_str(&encode(&Command::Lease(*shard, *deadline)));
                }
                for (pgid, shard) in &pending.mirror_groups {
                    text.push_str(&encode(&Command::Add(*shard, *pgid)));
                }
                pending.leases.clear();
                pending.ops.clear();
                brief = false;
            } else {
                for (shard, deadline) in std::mem::take(&mut pending.leases) {
                    text.push_str(&encode(&Command::Lease(shard, deadline)));
                }
                for op in pending.ops.drain(..) {
                    text.push_str(&encode(&op));
                }
            }
            if pending.dropped > 0 {
                tracing::error!(
                    dropped = pending.dropped,
                    "agent watchdog commands dropped: the queue was full"
                );
                pending.dropped = 0;
            }
            text
        };
        if !text.is_empty() {
            let written = async {
                stdin.write_all(text.as_bytes()).await?;
                stdin.flush().await
            }
            .await;
            if let Err(e) = written {
                tracing::debug!(error = %e, "writing to the agent watchdog failed");
                return;
            }
            last_write = tokio::time::Instant::now();
        }
        inner.wake.notified().await;
        // Renewals wait for the rest of the window, so the renewals of every shard in it
        // go as one write; anything urgent ends the wait.
        let until = last_write + window;
        while !inner.urgent() {
            tokio::select! {
                () = inner.wake.notified() => {}
                () = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_protocol_and_refuses_the_rest() {
        assert_eq!(
            parse("lease 3 12345"),
            Some(Command::Lease(3, Deadline::At(12345)))
        );
        assert_eq!(
            parse("lease 3 forever"),
            Some(Command::Lease(3, Deadline::Forever))
        );
        assert_eq!(
            parse("lease 3 none"),
            Some(Command::Lease(3, Deadline::None))
        );
        assert_eq!(parse("add 3 4242"), Some(Command::Add(3, 4242)));
        assert_eq!(parse("forget 4242"), Some(Command::Forget(4242)));
        for bad in [
            "",
            "lease",
            "lease 3",
            "lease x 1",
            "lease 3 soon",
            "lease 70000 1",
            "add 3 1",
            "add 3 0",
            "add 3 -5",
            "forget 1",
            "add 3 4242 extra",
            "kill 3",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        for command in [
            Command::Lease(1, Deadline::At(9)),
            Command::Lease(2, Deadline::Forever),
            Command::Lease(2, Deadline::None),
            Command::Add(5, 77),
            Command::Forget(77),
        ] {
            assert_eq!(parse(encode(&command).trim()), Some(command));
        }
    }

    #[test]
    fn a_lapsed_lease_dooms_its_shards_groups_only() {
        let mut guard = Guard::default();
        assert!(
            guard
                .apply(Command::Lease(1, Deadline::At(100)), 0)
                .is_empty()
        );
        assert!(
            guard
                .apply(Command::Lease(2, Deadline::At(500)), 0)
                .is_empty()
        );
        assert!(guard.apply(Command::Add(1, 11), 10).is_empty());
        assert!(guard.apply(Command::Add(2, 22), 10).is_empty());
        assert_eq!(guard.next_deadline(), Some(100));
        assert!(guard.expire(99).is_empty());
        assert_eq!(guard.expire(100), vec![11]);
        assert_eq!(guard.next_deadline(), Some(500));
        // A renewal moves the deadline.
        assert!(
            guard
                .apply(Command::Lease(2, Deadline::At(900)), 400)
                .is_empty()
        );
        assert!(guard.expire(600).is_empty());
        assert_eq!(guard.expire(900), vec![22]);
        assert_eq!(guard.next_deadline(), None);
    }

    #[test]
    fn fencing_kills_at_once_and_adds_need_a_live_lease() {
        let mut guard = Guard::default();
        // No lease announced: an add is killed at once.
        assert_eq!(guard.apply(Command::Add(1, 11), 0), vec![11]);
        guard.apply(Command::Lease(1, Deadline::Forever), 0);
        assert!(guard.apply(Command::Add(1, 12), 0).is_empty());
        assert_eq!(guard.next_deadline(), None);
        assert_eq!(guard.apply(Command::Lease(1, Deadline::None), 5), vec![12]);
        // Expired lease: an add is killed at once.
        guard.apply(Command::Lease(1, Deadline::At(10)), 5);
        assert_eq!(guard.apply(Command::Add(1, 13), 10), vec![13]);
    }

    #[test]
    fn forgotten_groups_are_never_signalled_and_the_end_kills_the_rest() {
        let mut guard = Guard::default();
        guard.apply(Command::Lease(1, Deadline::At(100)), 0);
        guard.apply(Command::Add(1, 11), 0);
        guard.apply(Command::Add(1, 12), 0);
        guard.apply(Command::Forget(11), 0);
        assert_eq!(guard.expire(100), vec![12]);
        guard.apply(Command::Lease(1, Deadline::Forever), 100);
        guard.apply(Command::Add(1, 13), 100);
        assert_eq!(guard.all(), vec![13]);
    }

    /// Records each write as one string.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<String>>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let text = String::from_utf8_lossy(buf).into_owned();
            self.0.lock().unwrap().push(text);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_go_in_one_write_per_window_and_the_rest_at_once() {
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
        });
        let dog = Watchdog {
            inner: Some(inner.clone()),
        };
        let writes = Writes::default();
        let feeding = {
            let (inner, writes) = (inner.clone(), writes.clone());
            tokio::spawn(async move { feed(writes, &inner, false).await })
        };
        let step = Duration::from_millis(1);
        let settle = || async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };
        dog.lease(0, Deadline::At(1_000));
        settle().await;
        assert_eq!(
            writes.0.lock().unwrap().len(),
            1,
            "the first write waits for nothing"
        );
        // 20 renewals of 20 shards, 1 ms apart: one write, at the end of the window.
        for shard in 0..20 {
            tokio::time::advance(step).await;
            dog.lease(shard, Deadline::At(2_000 + u64::from(shard)));
            settle().await;
        }
        assert_eq!(writes.0.lock().unwrap().len(), 1);
        tokio::time::advance(Duration::from_millis(WATCHDOG_RENEWALS_WINDOW_MS)).await;
        settle().await;
        {
            let w = writes.0.lock().unwrap();
            assert_eq!(w.len(), 2, "{w:?}");
            assert_eq!(w[1].lines().count(), 20, "{w:?}");
        }
        // An add, and a shortened lease, are written without waiting for the window.
        tokio::time::advance(step).await;
        dog.lease(1, Deadline::At(3_000));
        dog.add(1, 4242);
        settle().await;
        assert_eq!(writes.0.lock().unwrap()[2], "lease 1 3000\nadd 1 4242\n");
        tokio::time::advance(step).await;
        dog.lease(2, Deadline::None);
        settle().await;
        assert_eq!(writes.0.lock().unwrap()[3], "lease 2 none\n");
        feeding.abort();
    }
}
