//! Fencing of side effects by shard: agent processes of a shard run only while this
//! node hosts the shard (leader with a valid lease, see [`crate::cluster::Hosting`]).
//!
//! The fence is separate from the actors on purpose: an actor may be busy (waiting on a
//! commit that cannot happen under a partition), so losing the lease kills the shard's
//! agent processes directly from here (SIGKILL to their process groups), and an agent
//! start racing with the fence is cancelled.
//!
//! Every registered process group is also given to the [`Watchdog`] process, which
//! enforces the lease deadline when this node cannot (paused), and forgotten there once
//! the process has been reaped.

use crate::agent_process::AgentProcess;
use crate::watchdog::Watchdog;
use shoal_protocol::ShardId;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

struct ShardFence {
    fenced: watch::Sender<bool>,
    processes: Mutex<Vec<Weak<AgentProcess>>>,
}

/// Per-shard fences over agent processes. Every shard starts fenced.
pub struct AgentFence {
    shards: Vec<ShardFence>,
    watchdog: Watchdog,
}

impl std::fmt::Debug for AgentFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentFence")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl AgentFence {
    /// Fences for `shard_count` shards, all fenced, backed by `watchdog`.
    pub fn new(shard_count: u16, watchdog: Watchdog) -> Self {
        Self {
            watchdog,
            shards: (0..shard_count)
                .map(|_| ShardFence {
                    fenced: watch::channel(true).0,
                    processes: Mutex::new(Vec::new()),
                })
                .collect(),
        }
    }

    fn shard(&self, shard: ShardId) -> Option<&ShardFence> {
        self.shards.get(usize::from(shard.0))
    }

    /// Whether agents of `shard` may not run here now.
    pub fn is_fenced(&self, shard: ShardId) -> bool {
        self.shard(shard).is_none_or(|s| *s.fenced.borrow())
    }

    /// Resolves when `shard` is fenced (at once if it is).
    pub async fn fenced(&self, shard: ShardId) {
        let Some(s) = self.shard(shard) else { return };
        let mut rx = s.fenced.subscribe();
        let _ = rx.wait_for(|f| *f).await;
    }

    /// Records a started process. Returns `false` if the shard was fenced meanwhile:
    /// the caller must not use the process (it has been killed).
    pub fn register(&self, shard: ShardId, process: &Arc<AgentProcess>) -> bool {
        let Some(s) = self.shard(shard) else {
            process.kill_now();
            return false;
        };
        let mut processes = s.processes.lock().unwrap_or_else(|p| p.into_inner());
        if *s.fenced.borrow() {
            process.kill_now();
            return false;
        }
        processes.retain(|w| w.strong_count() > 0);
        processes.push(Arc::downgrade(process));
        if let Some(pid) = process.pid()
            && self.watchdog.is_enabled()
        {
            self.watchdog.add(shard.0, pid);
            let watchdog = self.watchdog.clone();
            let mut exit = process.exit_watch();
            tokio::spawn(async move {
                // Err: the exit watcher is gone, so is the process.
                let _ = exit.wait_for(Option::is_some).await;
                watchdog.forget(pid);
            });
        }
        true
    }

    /// Fences `shard`: no agent may start, and every running one is SIGKILLed now.
    /// Returns how many were killed.
    pub fn fence(&self, shard: ShardId) -> usize {
        let Some(s) = self.shard(shard) else { return 0 };
        let mut processes = s.processes.lock().unwrap_or_else(|p| p.into_inner());
        s.fenced.send_replace(true);
        let mut killed = 0;
        for process in processes.drain(..).filter_map(|w| w.upgrade()) {
            process.kill_now();
            killed += 1;
        }
        killed
    }

    /// Lets agents of `shard` run (this node now hosts it).
    pub fn unfence(&self, shard: ShardId) {
        if let Some(s) = self.shard(shard) {
            let _guard = s.processes.lock().unwrap_or_else(|p| p.into_inner());
            s.fenced.send_replace(false);
        }
    }
}
