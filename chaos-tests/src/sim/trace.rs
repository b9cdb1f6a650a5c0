//! The run's trace: one line per event, `<sim ms> <host> <event>`, in the order the
//! (single-threaded) simulation produced them.

use std::sync::{Arc, Mutex, PoisonError};

/// A shared, append-only trace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trace {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trace {
    /// Logs `event` on `host` at the current simulated time.
    pub(crate) fn log(&self, host: &str, event: impl AsRef<str>) {
        self.log_at(super::sim_now_ns() / 1_000_000, host, event);
    }

    /// Logs `event` on `host` at `ms`.
    pub(crate) fn log_at(&self, ms: u64, host: &str, event: impl AsRef<str>) {
        let line = format!("{ms:>7} {host:<4} {}", event.as_ref());
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    /// The lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
