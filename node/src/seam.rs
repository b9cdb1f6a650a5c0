//! Simulation seams: what a deterministic simulation (the `sim` module of
//! `shoal-chaos-tests`) replaces to run several nodes in one process on a simulated
//! network with simulated time.
//!
//! Every hook is off in [`Seams::default`], and then the node behaves exactly as in
//! production: OS randomness, the wall clock, flushes on a blocking thread, agents as
//! child processes. [`crate::Node::start_with_seams`] takes the seams together with an
//! abstract UDP socket (`quinn::AsyncUdpSocket`).
//!
//! What each hook removes (a source of run-to-run differences):
//! * [`Seams::rng_seed`]: the QUIC endpoint's RNG (connection ids, tokens), the SWIM
//!   RNG and incarnation, and the ids the node makes (conversation ids pick a shard,
//!   hence a leader).
//! * [`Seams::wall_clock`]: message timestamps and token expiry checks.
//! * [`Seams::inline_blocking`]: `Db::flush()` and workspace file work (snapshots,
//!   restores, blob reads and writes) on a blocking thread complete at real time, so
//!   their order against simulated events would vary.
//! * [`Seams::agent_launcher`]: a child process runs at real time; an in-process agent
//!   runs on the node's (simulated) runtime.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Milliseconds since the Unix epoch, as the node should see them.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The hooks. See the module doc.
#[derive(Clone, Default)]
pub struct Seams {
    /// Seed of every RNG the node owns. `None`: OS randomness.
    pub rng_seed: Option<u64>,
    /// The wall clock. `None`: `SystemTime::now()`.
    pub wall_clock: Option<WallClock>,
    /// Flush the store and do workspace file work on the calling task instead of a
    /// blocking thread (blocks the runtime meanwhile: only for simulation). See
    /// [`crate::context::NodeContext::blocking`].
    pub inline_blocking: bool,
    /// Starts agents instead of spawning child processes. `None`: child processes.
    pub agent_launcher: Option<Arc<dyn AgentLauncher>>,
    /// Accept `InjectFault` admin requests (chaos tests). [`crate::Node::start`] turns it
    /// on when the environment has `SHOAL_FAULT_INJECTION=1`.
    pub fault_injection: bool,
}

/// The environment variable that lets a node accept injected faults.
pub const FAULT_INJECTION_ENV: &str = "SHOAL_FAULT_INJECTION";

/// Whether the environment asks for fault injection ([`FAULT_INJECTION_ENV`] = `1`).
pub fn fault_injection_from_env() -> bool {
    std::env::var(FAULT_INJECTION_ENV).is_ok_and(|v| v == "1")
}

impl fmt::Debug for Seams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seams")
            .field("rng_seed", &self.rng_seed)
            .field("wall_clock", &self.wall_clock.is_some())
            .field("inline_blocking", &self.inline_blocking)
            .field("agent_launcher", &self.agent_launcher)
            .field("fault_injection", &self.fault_injection)
            .finish()
    }
}

/// What the node asks a launcher to start.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The configured program (informational for an in-process launcher).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The agent's working directory.
    pub cwd: PathBuf,
    /// The environment the child would get on top of the node's (private `HOME`,
    /// `SHOAL_NODE_ID`, …).
    pub env: std::collections::BTreeMap<String, String>,
}

/// A started in-process agent: its stdio and its task.
pub struct LaunchedAgent {
    /// An id standing for the pid (unique per launcher).
    pub pid: u32,
    /// What the node writes: the agent's stdin.
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// What the node reads: the agent's stdout.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// The agent's task. Aborting it is the in-process `SIGKILL`; its end is the exit.
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

impl fmt::Debug for LaunchedAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchedAgent")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Starts agents in-process (simulation). Called on the node's runtime.
pub trait AgentLauncher: Send + Sync + fmt::Debug {
    /// Starts one agent; an error is reported like a failed spawn.
    fn launch(&self, spec: &LaunchSpec) -> io::Result<LaunchedAgent>;
}
