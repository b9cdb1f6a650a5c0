//! The agent witness: records every demo-agent process's life from outside the nodes.
//!
//! Each `shoal-demo-agent` process started with `SHOAL_DEMO_AGENT_WITNESS` set connects to
//! this Unix socket at start, writes one JSON line (pid, node, home, `CLOCK_MONOTONIC`
//! start) and holds the connection until it exits. The kernel closes the connection when
//! the process dies, however it dies, so the end of each life is known without the
//! process's help, even after `kill -9`. The witness runs on its own thread and runtime so
//! a busy harness does not delay the end-of-life timestamps.
//!
//! An end noticed late (the witness thread was not scheduled at once) could look like an
//! overlap with the next agent of the conversation. The kernel settles it: each agent
//! takes an exclusive `flock` on a per-conversation lock file without waiting, and says
//! whether it got it. If a later agent *acquired* the lock, every earlier agent that had
//! acquired it was dead by then (the kernel drops a lock as its holder exits), so their
//! ends are clamped to the later start. A `contended` lock proves a real overlap; lives
//! that did not hold the lock are never clamped.

use crate::history::AgentLife;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::UnixListener;

/// The longest announcement line accepted.
pub const WITNESS_LINE_BYTES_MAX: u64 = 4 * 1024;
/// The most agent lives recorded (later ones are counted, not kept).
pub const WITNESS_LIVES_MAX: usize = 100_000;

/// Errors starting the witness.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The socket could not be bound.
    #[error("cannot listen on the witness socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The witness thread could not start.
    #[error("cannot start the witness thread: {0}")]
    Thread(std::io::Error),
}

#[derive(Debug, Default)]
struct Records {
    lives: Vec<AgentLife>,
    /// Per life (same index): whether it acquired its conversation's lock.
    acquired: Vec<bool>,
    /// Lines that were not a valid announcement.
    malformed: u64,
    /// Lives dropped because `WITNESS_LIVES_MAX` was reached.
    dropped: u64,
}

/// A running witness. Dropping it stops the thread.
#[derive(Debug)]
pub struct Witness {
    path: PathBuf,
    records: Arc<Mutex<Records>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the clock agents stamp their start with.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

impl Witness {
    /// Listens on `dir/witness.sock`.
    pub fn start(dir: &Path) -> Result<Witness, WitnessError> {
        let path = dir.join("witness.sock");
        let _ = std::fs::remove_file(&path);
        let std_listener =
            std::os::unix::net::UnixListener::bind(&path).map_err(|source| WitnessError::Bind {
                path: path.clone(),
                source,
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| WitnessError::Bind {
                path: path.clone(),
                source,
            })?;
        let records = Arc::new(Mutex::new(Records::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = records.clone();
        let thread = std::thread::Builder::new()
            .name("agent-witness".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = UnixListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, shared) => {}
                    }
                });
            })
            .map_err(WitnessError::Thread)?;
        Ok(Witness {
            path,
            records,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The socket path to give agents in `SHOAL_DEMO_AGENT_WITNESS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every life seen so far (`end_ns: None` for processes still running), with ends
    /// proven earlier by the lock clamped (see the module docs).
    pub fn lives(&self) -> Vec<AgentLife> {
        let records = lock(&self.records);
        clamp_by_lock(&records.lives, &records.acquired)
    }

    /// How many agents found their conversation's lock held by another live agent.
    pub fn contended(&self) -> usize {
        lock(&self.records).acquired.iter().filter(|a| !**a).count()
    }

    /// Announcements that could not be read.
    pub fn malformed(&self) -> u64 {
        lock(&self.records).malformed
    }

    /// Pids of agent processes still alive on `node`.
    pub fn live_pids(&self, node: &str) -> Vec<u32> {
        lock(&self.records)
            .lives
            .iter()
            .filter(|l| l.node == node && l.end_ns.is_none())
            .map(|l| l.pid)
            .collect()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock(records: &Mutex<Records>) -> std::sync::MutexGuard<'_, Records> {
    records
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: UnixListener, records: Arc<Mutex<Records>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(watch_one(stream, records.clone()));
    }
}

#[derive(serde::Deserialize)]
struct Announcement {
    pid: u32,
    node: Option<String>,
    home: Option<String>,
    start_ns: u64,
    #[serde(default)]
    lock: Option<String>,
}

/// Clamps the end of each life that held its conversation's lock to the start of the
/// next life of that conversation that acquired the lock after it.
fn clamp_by_lock(lives: &[AgentLife], acquired: &[bool]) -> Vec<AgentLife> {
    let mut out = lives.to_vec();
    for (i, life) in out.iter_mut().enumerate() {
        if !acquired.get(i).copied().unwrap_or(false) {
            continue;
        }
        let next_acquire = lives
            .iter()
            .enumerate()
            .filter(|(j, l)| {
                *j != i
                    && acquired.get(*j).copied().unwrap_or(false)
                    && l.conversation == life.conversation
                    && l.start_ns > life.start_ns
            })
            .map(|(_, l)| l.start_ns)
            .min();
        if let Some(next) = next_acquire {
            life.end_ns = Some(life.end_ns.map_or(next, |end| end.min(next)));
        }
    }
    out
}

/// Reads one announcement, records the start, then waits for the connection to close
/// (the process's death) and records the end.
async fn watch_one(stream: tokio::net::UnixStream, records: Arc<Mutex<Records>>) {
    let mut reader = BufReader::new(stream).take(WITNESS_LINE_BYTES_MAX);
    let mut line = String::new();
    let parsed = match reader.read_line(&mut line).await {
        Ok(n) if n > 0 => serde_json::from_str::<Announcement>(line.trim_end()).ok(),
        _ => None,
    };
    let Some(announced) = parsed else {
        lock(&records).malformed += 1;
        return;
    };
    // The conversation is the last component of the agent's private home.
    let conversation = announced
        .home
        .as_deref()
        .and_then(|home| Path::new(home).file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let index = {
        let mut records = lock(&records);
        if records.lives.len() >= WITNESS_LIVES_MAX {
            records.dropped += 1;
            return;
        }
        records
            .acquired
            .push(announced.lock.as_deref() == Some("acquired"));
        records.lives.push(AgentLife {
            node: announced.node.unwrap_or_default(),
            conversation,
            pid: announced.pid,
            start_ns: announced.start_ns,
            end_ns: None,
        });
        records.lives.len() - 1
    };
    // Nothing more is sent: the read ends at EOF when the process exits.
    let mut rest = reader.into_inner();
    let mut sink = [0u8; 256];
    while let Ok(n) = rest.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
    lock(&records).lives[index].end_ns = Some(monotonic_ns());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(pid: u32, conversation: &str, start_ns: u64, end_ns: Option<u64>) -> AgentLife {
        AgentLife {
            node: "n1".into(),
            conversation: conversation.into(),
            pid,
            start_ns,
            end_ns,
        }
    }

    #[test]
    fn a_later_acquire_proves_the_earlier_holder_dead() {
        let lives = vec![
            life(1, "a", 100, Some(250)),
            life(2, "a", 200, None),
            life(3, "b", 150, Some(400)),
        ];
        let clamped = clamp_by_lock(&lives, &[true, true, true]);
        assert_eq!(clamped[0].end_ns, Some(200));
        assert_eq!(clamped[1].end_ns, None);
        assert_eq!(clamped[2].end_ns, Some(400));
    }

    #[test]
    fn contended_or_lockless_lives_are_never_clamped() {
        let lives = vec![
            life(1, "a", 100, Some(250)),
            life(2, "a", 200, None),
            life(3, "a", 300, None),
        ];
        // 2 was contended: 1 is not proven dead at 200; 3 acquired, so 1 is dead by 300.
        let clamped = clamp_by_lock(&lives, &[true, false, true]);
        assert_eq!(clamped[0].end_ns, Some(250));
        assert_eq!(clamped[1].end_ns, None);
        // 1 did not hold the lock: nothing is proven about it.
        let clamped = clamp_by_lock(&lives, &[false, true, true]);
        assert_eq!(clamped[0].end_ns, Some(250));
        assert_eq!(clamped[1].end_ns, Some(300));
    }
}
