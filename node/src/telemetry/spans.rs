//! The spans a node records, and how a trace crosses task and actor boundaries.
//!
//! | span | where | fields |
//! |---|---|---|
//! | `request` | a client request on the node it reached | `user`, `node`, `conversation`, `traceparent` |
//! | `forward` | relaying that request to the shard's leader | `to`, `shard` |
//! | `forwarded_request` | the leader serving a forwarded request | `user`, `from`, `node`, `traceparent` |
//! | `propose` | a command from submit to its applied outcome | `shard`, `bytes` |
//! | `apply` | the state machine applying one log entry (exporting only) | `shard`, `index`, `commands`, `proposals` |
//! | `turn` | a turn, from its user message to done, cancel or failure | `conversation`, `agent`, `turn`, `user_message`, `status` |
//! | `broadcast` | one event to the followers' ring and the initiator (exporting only) | `conversation`, `event`, `seq`, `followers` |
//! | `agent.start` | starting an agent process and its ACP handshake | `agent`, `workspace`, `resume`, `pid`, `outcome` |
//! | `agent.call` | one ACP request to the agent | `method`, `outcome` |
//! | `snapshot.install` | installing a Raft snapshot received from the leader | `shard`, `index`, `bytes`, `records` |
//!
//! No span carries message text, credentials or agent output: ids, names, counts and
//! sizes only.
//!
//! Work that outlives the span that caused it (a turn after its request, a log entry's
//! apply on Raft's state-machine task) joins that span's trace through a
//! [`TraceParent`]: the OpenTelemetry context only, so the causing span still ends when
//! its own work does. Spans on paths taken per event or per log entry (`broadcast`,
//! `apply`) are made only while this process exports traces ([`exporting`]); with
//! telemetry off they cost one relaxed atomic load.

use opentelemetry::trace::TraceContextExt;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once the OpenTelemetry layer is installed in this process.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces (the OpenTelemetry layer is installed).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Records that the OpenTelemetry layer is installed ([`super::init`]).
pub(super) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// A span's place in its trace, carried to work that runs elsewhere (another actor,
/// Raft's tasks) so that work's spans join the trace. Empty when nothing is exported,
/// or when the span is in no recorded trace.
#[derive(Clone, Default)]
pub struct TraceParent(Option<opentelemetry::Context>);

impl TraceParent {
    /// The current span's place.
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// `span`'s place.
    pub fn of(span: &tracing::Span) -> Self {
        if !exporting() || span.is_none() {
            return Self(None);
        }
        let context = span.context();
        Self(context.span().span_context().is_valid().then_some(context))
    }

    /// Whether it names a place in a trace.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// Makes `span` (just created, not yet entered) a child of this place.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Some(context) = &self.0 {
            // Fails only for a span already started, which callers never pass.
            let _ = span.set_parent(context.clone());
        }
    }

    /// Links `span` to this place (work done for several traces at once).
    pub fn link(&self, span: &tracing::Span) {
        if let Some(context) = &self.0 {
            span.add_link(context.span().span_context().clone());
        }
    }
}

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(context) => write!(
                f,
                "TraceParent({})",
                context.span().span_context().trace_id()
            ),
            None => f.write_str("TraceParent(none)"),
        }
    }
}

/// The span `make` makes, only while traces are exported ([`exporting`]); a disabled
/// span otherwise. For paths taken per event or per log entry.
pub fn exported(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() {
        make()
    } else {
        tracing::Span::none()
    }
}
