//! In-process agents: the demo agent on the node's simulated runtime, over an in-memory
//! duplex pipe, with every life recorded for invariant 2 (one live agent).
//!
//! The node's fence kills an agent by aborting its task; a crashed host drops its
//! runtime, which drops the task. Either way the life's end is recorded when the task's
//! future is dropped or returns (a guard), at simulated time.

use super::trace::Trace;
use crate::history::AgentLife;
use shoal_node::seam::{AgentLauncher, LaunchSpec, LaunchedAgent};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes buffered in each direction of the in-memory stdio pipe.
const PIPE_BYTES_MAX: usize = 256 * 1024;

/// Every agent life of a run, in start order.
#[derive(Debug, Default)]
pub(crate) struct Lives {
    lives: Mutex<Vec<AgentLife>>,
    /// While a crash drops a runtime: the ends it causes, logged afterwards in pid order
    /// ([`Lives::hold_ends`]), since the order a runtime drops its tasks in is not
    /// deterministic.
    held_ends: Mutex<Option<Vec<(String, u32)>>>,
}

impl Lives {
    /// From now on, ends are held instead of logged, until [`Self::release_ends`].
    pub(crate) fn hold_ends(&self) {
        *self
            .held_ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    /// Logs the held ends in (node, pid) order and logs ends at once again.
    pub(crate) fn release_ends(&self, trace: &Trace) {
        let held = self
            .held_ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut held = held.unwrap_or_default();
        held.sort();
        for (node, pid) in held {
            trace.log(&node, format!("agent pid {pid} ended"));
        }
    }

    fn start(&self, life: AgentLife) -> usize {
        let mut lives = self.lives.lock().unwrap_or_else(PoisonError::into_inner);
        lives.push(life);
        lives.len() - 1
    }

    fn end(&self, index: usize, end_ns: u64) {
        let mut lives = self.lives.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(life) = lives.get_mut(index)
            && life.end_ns.is_none()
        {
            life.end_ns = Some(end_ns);
        }
    }

    /// The lives recorded so far.
    pub(crate) fn snapshot(&self) -> Vec<AgentLife> {
        self.lives
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One node's launcher.
#[derive(Debug)]
pub(crate) struct InProcessAgents {
    node: String,
    /// Pids are per node and incarnation: `incarnation * 1000 + n`.
    next_pid: AtomicU32,
    lives: Arc<Lives>,
    trace: Trace,
}

impl InProcessAgents {
    pub(crate) fn new(node: String, incarnation: u32, lives: Arc<Lives>, trace: Trace) -> Self {
        InProcessAgents {
            node,
            next_pid: AtomicU32::new(incarnation.saturating_mul(1000).saturating_add(1)),
            lives,
            trace,
        }
    }
}

/// Records the end of a life when dropped (task returned, aborted, or runtime dropped).
struct LifeGuard {
    lives: Arc<Lives>,
    index: usize,
    trace: Trace,
    node: String,
    pid: u32,
}

impl Drop for LifeGuard {
    fn drop(&mut self) {
        let end_ns = super::sim_now_ns();
        self.lives.end(self.index, end_ns);
        if let Some(held) = self
            .lives
            .held_ends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            held.push((self.node.clone(), self.pid));
            return;
        }
        self.trace.log_at(
            end_ns / 1_000_000,
            &self.node,
            format!("agent pid {} ended", self.pid),
        );
    }
}

impl AgentLauncher for InProcessAgents {
    fn launch(&self, spec: &LaunchSpec) -> io::Result<LaunchedAgent> {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        // The node gives each conversation's agent a private HOME named after it.
        let conversation = spec
            .env
            .get("HOME")
            .and_then(|home| std::path::Path::new(home).file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let start_ns = super::sim_now_ns();
        let index = self.lives.start(AgentLife {
            node: self.node.clone(),
            conversation: conversation.clone(),
            pid,
            start_ns,
            end_ns: None,
        });
        self.trace.log(
            &self.node,
            format!("agent pid {pid} started for conversation {conversation}"),
        );
        let guard = LifeGuard {
            lives: Arc::clone(&self.lives),
            index,
            trace: self.trace.clone(),
            node: self.node.clone(),
            pid,
        };
        // One pipe per direction, like a process's stdin and stdout: the node dropping
        // its end of stdin is EOF for the agent (halves of one split duplex would not be).
        let (agent_stdin, agent_in) = tokio::io::duplex(PIPE_BYTES_MAX);
        let (agent_out, agent_stdout) = tokio::io::duplex(PIPE_BYTES_MAX);
        let options = shoal_demo_agent::Options {
            // In memory: session files would go through tokio::fs (blocking threads at
            // real time).
            home: None,
            lifecycle_log: None,
            node_id: Some(self.node.clone()),
        };
        let task = tokio::spawn(async move {
            let _guard = guard;
            shoal_demo_agent::run_with_options(options, agent_in, agent_out).await
        });
        Ok(LaunchedAgent {
            pid,
            stdin: Box::pin(agent_stdin),
            stdout: Box::pin(agent_stdout),
            task,
        })
    }
}
