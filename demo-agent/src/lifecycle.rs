//! The optional lifecycle log: one JSON line per process start and clean exit, so tests
//! can see which agent processes ran on which node and for which session.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// A lifecycle event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    /// The agent started serving.
    Start,
    /// The agent stopped cleanly at end of input.
    Stop,
}

/// Appends one line for `event` to `log`; a failure is reported on stderr only.
pub(crate) fn record(log: &Path, node: Option<&str>, event: Event, session: Option<&str>) {
    let name = match event {
        Event::Start => "start",
        Event::Stop => "stop",
    };
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let mut line = json!({
        "event": name,
        "pid": std::process::id(),
        "node": node,
        "unix_ms": unix_ms,
    });
    if let Some(session) = session {
        line["session"] = json!(session);
    }
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    // One write of the whole line with O_APPEND keeps lines from concurrent agents whole.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| file.write_all(&bytes));
    if let Err(e) = written {
        eprintln!(
            "shoal-demo-agent: cannot append to lifecycle log {}: {e}",
            log.display()
        );
    }
}

/// What the agent keeps open for the witness until it exits.
#[derive(Debug)]
pub(crate) struct Witnessed {
    _stream: std::os::unix::net::UnixStream,
    _lock: Option<std::fs::File>,
}

/// Connects to the witness socket at `path` and announces this process: one JSON line
/// with the pid, node, home, a `CLOCK_MONOTONIC` start time in nanoseconds (the same
/// clock for every process on the machine) and the state of the conversation's lock.
///
/// The lock is an exclusive `flock` on `<socket dir>/locks/<home's last component>.lock`,
/// taken without waiting: `acquired` proves no other live process of this conversation
/// holds it (the kernel drops a dead process's lock as it exits), `contended` that one
/// does. The agent runs either way; only the witness judges.
///
/// The caller keeps the returned value for the life of the process: the kernel closes
/// the connection when the process exits, however it exits (SIGKILL included), so the
/// witness learns the end of the process's life without the process's help. A failure is
/// reported on stderr only.
/// CLOCK_MONOTONIC in nanoseconds: comparable between processes of one machine.
pub(crate) fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

pub(crate) fn witness(path: &Path, node: Option<&str>, home: Option<&Path>) -> Option<Witnessed> {
    let (lock, lock_state) = match home.and_then(Path::file_name) {
        Some(name) => take_lock(path, name),
        None => (None, "unavailable"),
    };
    let start_ns = monotonic_ns();
    let line = json!({
        "pid": std::process::id(),
        "node": node,
        "home": home.map(|h| h.display().to_string()),
        "start_ns": start_ns,
        "lock": lock_state,
    });
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    let connected = std::os::unix::net::UnixStream::connect(path)
        .and_then(|mut stream| stream.write_all(&bytes).map(|()| stream));
    match connected {
        Ok(stream) => Some(Witnessed {
            _stream: stream,
            _lock: lock,
        }),
        Err(e) => {
            eprintln!(
                "shoal-demo-agent: cannot reach the witness at {}: {e}",
                path.display()
            );
            None
        }
    }
}

fn take_lock(socket: &Path, name: &std::ffi::OsStr) -> (Option<std::fs::File>, &'static str) {
    let Some(dir) = socket.parent().map(|d| d.join("locks")) else {
        return (None, "unavailable");
    };
    let mut file_name = name.to_owned();
    file_name.push(".lock");
    let opened = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(file_name))
    });
    let Ok(file) = opened else {
        return (None, "unavailable");
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => (Some(file), "acquired"),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => (Some(file), "contended"),
        Err(_) => (None, "unavailable"),
    }
}
