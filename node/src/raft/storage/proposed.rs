//! What the node that proposed a log entry keeps of it from append to apply: the
//! traces the entry's `apply` span joins, and the replies its apply answers.
//!
//! openraft hands the leader's entries to the log store's `append` as they were
//! proposed (with their [`BatchTraces`] and [`BatchReplies`]) but has the state machine
//! read them back from the log, where neither is. So `append` keeps them here by log
//! id and `apply` takes them out:
//! * the leader's apply of a proposed entry is a child of the first proposal's
//!   `propose` span (linked to the others'); a follower's apply, or an entry no
//!   recorded trace proposed, is a root span (only while traces are exported);
//! * the leader's apply answers the entry's proposals once its writes are made
//!   ([`crate::raft::replies`]); a follower's has none to answer.

use super::super::replies::BatchReplies;
use super::super::{BatchTraces, ShardBatch, TypeConfig};
use crate::telemetry::TraceParent;
use openraft::{Entry, EntryPayload, LogId};
use shoal_protocol::ShardId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Entries kept at most: an entry appended but never applied here (truncated after a
/// lost election) stays until a later apply passes its index or this bound pushes it
/// out. Its proposals are answered by the batcher then (the write fails).
pub(super) const KEPT_ENTRIES_MAX: usize = 1024;

/// Appended entries' log ids, traces and replies, by log index.
type ByIndex = BTreeMap<u64, (LogId<u64>, BatchTraces, BatchReplies)>;

/// The traces and replies of appended entries not yet applied.
#[derive(Clone, Default)]
pub(super) struct Proposed {
    entries: Arc<Mutex<ByIndex>>,
}

impl Proposed {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByIndex> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the traces and replies of the entries being appended (on the leader that
    /// proposed them; a follower's entries have neither).
    pub(super) fn appended<'a>(&self, entries: impl IntoIterator<Item = &'a Entry<TypeConfig>>) {
        let mut kept = None;
        for entry in entries {
            if let EntryPayload::Normal(ShardBatch {
                traces, replies, ..
            }) = &entry.payload
                && (!traces.0.is_empty() || !replies.is_empty())
            {
                let map = kept.get_or_insert_with(|| self.lock());
                map.insert(
                    entry.log_id.index,
                    (entry.log_id, traces.clone(), replies.clone()),
                );
                while map.len() > KEPT_ENTRIES_MAX {
                    map.pop_first();
                }
            }
        }
    }

    /// Takes the traces and replies of the entry `log_id`, dropping those of entries
    /// before it (never to be applied here now).
    pub(super) fn take(&self, log_id: &LogId<u64>) -> (Vec<TraceParent>, BatchReplies) {
        let mut map = self.lock();
        if map.is_empty() {
            return Default::default();
        }
        let mut later = map.split_off(&log_id.index);
        let found = later.remove(&log_id.index);
        *map = later;
        match found {
            Some((id, traces, replies)) if id == *log_id => (traces.0, replies),
            _ => Default::default(),
        }
    }
}

/// The `apply` span of the entry `log_id` of `shard`, carrying `commands` commands and
/// joining the traces of `parents` (disabled unless traces are exported).
pub(super) fn apply_span(
    shard: ShardId,
    log_id: &LogId<u64>,
    commands: usize,
    parents: Vec<TraceParent>,
) -> tracing::Span {
    crate::telemetry::spans::exported(|| {
        // No contextual parent: openraft's own task spans are no part of the trace.
        let span = tracing::info_span!(
            parent: None,
            "apply",
            shard = shard.0,
            index = log_id.index,
            commands,
            proposals = parents.len(),
        );
        if let Some((first, rest)) = parents.split_first() {
            first.adopt(&span);
            for other in rest {
                other.link(&span);
            }
        }
        span
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn entry(term: u64, index: u64, traced: bool) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(ShardBatch {
                commands: Vec::new(),
                traces: BatchTraces(if traced {
                    vec![TraceParent::default()]
                } else {
                    Vec::new()
                }),
                replies: Default::default(),
            }),
        }
    }

    /// An entry's traces are taken once, by its exact log id; a truncated entry's
    /// traces never go to the entry that replaced it, and older ones are dropped.
    #[test]
    fn traces_go_to_the_entry_appended_with_them_and_are_bounded() {
        let traces = Proposed::default();
        traces.appended(&[entry(1, 5, true), entry(1, 6, false), entry(1, 7, true)]);
        assert_eq!(traces.lock().len(), 2);
        // Index 5 was replaced by another term's entry: not its traces.
        assert!(
            traces
                .take(&LogId::new(CommittedLeaderId::new(2, 1), 5))
                .0
                .is_empty()
        );
        assert_eq!(
            traces
                .take(&LogId::new(CommittedLeaderId::new(1, 1), 7))
                .0
                .len(),
            1
        );
        assert!(traces.lock().is_empty());

        let many: Vec<_> = (0..KEPT_ENTRIES_MAX as u64 + 10)
            .map(|i| entry(1, i, true))
            .collect();
        traces.appended(&many);
        assert_eq!(traces.lock().len(), KEPT_ENTRIES_MAX);
        assert_eq!(traces.lock().keys().next(), Some(&10));
    }

    /// An entry this node proposed is kept for its replies even with no trace, and
    /// its replies go only to the entry of its exact log id.
    #[test]
    fn replies_are_kept_without_traces_and_go_to_their_entry_only() {
        let proposed = Proposed::default();
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let mut with_replies = entry(1, 5, false);
        if let EntryPayload::Normal(batch) = &mut with_replies.payload {
            batch.replies = BatchReplies::new(vec![tx]);
        }
        proposed.appended([&with_replies, &entry(1, 6, false)]);
        assert_eq!(proposed.lock().len(), 1, "kept for its replies alone");
        let (_, replies) = proposed.take(&LogId::new(CommittedLeaderId::new(2, 1), 5));
        assert!(replies.is_empty(), "another term's entry 5 gets nothing");
        assert!(proposed.lock().is_empty());
        proposed.appended([&with_replies]);
        let (_, replies) = proposed.take(&LogId::new(CommittedLeaderId::new(1, 1), 5));
        assert_eq!(replies.take().map(|r| r.len()), Some(1));
    }
}
