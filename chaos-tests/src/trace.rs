//! A one-line-per-event trace of a chaos run: `<seconds since start> <who> <what>`.
//!
//! Faults, client operations and their outcomes, leadership observations: enough to read
//! a failing run from top to bottom. Bounded: past [`TRACE_LINES_MAX`] lines only a count
//! of the dropped ones is kept.

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The most trace lines kept in memory.
pub const TRACE_LINES_MAX: usize = 200_000;

/// A shared, cheap-to-clone trace.
#[derive(Debug, Clone)]
pub struct Trace {
    start: Instant,
    inner: Arc<Mutex<Lines>>,
    echo: bool,
}

#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    dropped: u64,
}

impl Trace {
    /// A trace starting now; `echo` also prints each line to stderr as it happens.
    pub fn new(echo: bool) -> Trace {
        Trace {
            start: Instant::now(),
            inner: Arc::default(),
            echo,
        }
    }

    /// Milliseconds since the trace started (the run's clock).
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records one event by `who` (a node, client, follower or `net`).
    pub fn event(&self, who: &str, what: impl Display) {
        let ms = self.elapsed_ms();
        let line = format!("{:>5}.{:03}s {who:<6} {what}", ms / 1000, ms % 1000);
        if self.echo {
            eprintln!("{line}");
        }
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.lines.len() < TRACE_LINES_MAX {
            inner.lines.push(line);
        } else {
            inner.dropped += 1;
        }
    }

    /// The lines so far, with a last line counting any that were dropped.
    pub fn lines(&self) -> Vec<String> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines = inner.lines.clone();
        if inner.dropped > 0 {
            lines.push(format!(
                "… {} more lines dropped (limit {TRACE_LINES_MAX})",
                inner.dropped
            ));
        }
        lines
    }
}
