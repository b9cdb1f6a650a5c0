//! The `apply` span of a log entry, and the traces it joins.
//!
//! openraft hands the leader's entries to the log store's `append` as they were
//! proposed (with their [`BatchTraces`]) but has the state machine read them back from
//! the log, where the traces are not. So `append` keeps them here by log id and `apply`
//! takes them out: the leader's apply of a proposed entry is a child of the first
//! proposal's `propose` span (linked to the others'); a follower's apply, or an entry no
//! recorded trace proposed, is a root span. All of it only while traces are exported.

use super::super::{BatchTraces, ShardBatch, TypeConfig};
use crate::telemetry::TraceParent;
use openraft::{Entry, EntryPayload, LogId};
use shoal_protocol::ShardId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Entries whose traces are kept at most: an entry appended but never applied here
/// (truncated after a lost election) leaves its traces until a later apply passes its
/// index or this bound pushes them out.
pub(super) const TRACED_ENTRIES_MAX: usize = 1024;

/// Appended entries' log ids and traces, by log index.
type ByIndex = BTreeMap<u64, (LogId<u64>, BatchTraces)>;

/// The traces of appended entries not yet applied.
#[derive(Clone, Default)]
pub(super) struct EntryTraces {
    entries: Arc<Mutex<ByIndex>>,
}

impl EntryTraces {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByIndex> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the traces of the entries being appended (on the leader that proposed them).
    pub(super) fn appended<'a>(&self, entries: impl IntoIterator<Item = &'a Entry<TypeConfig>>) {
        let mut kept = None;
        for entry in entries {
            if let EntryPayload::Normal(ShardBatch { traces, .. }) = &entry.payload
                && !traces.0.is_empty()
            {
                let map = kept.get_or_insert_with(|| self.lock());
                map.insert(entry.log_id.index, (entry.log_id, traces.clone()));
                while map.len() > TRACED_ENTRIES_MAX {
                    map.pop_first();
                }
            }
        }
    }

    /// Takes the traces of the entry `log_id`, dropping those of entries before it
    /// (never to be applied here now).
    fn take(&self, log_id: &LogId<u64>) -> Vec<TraceParent> {
        let mut map = self.lock();
        if map.is_empty() {
            return Vec::new();
        }
        let mut later = map.split_off(&log_id.index);
        let found = later.remove(&log_id.index);
        *map = later;
        match found {
            Some((id, traces)) if id == *log_id => traces.0,
            _ => Vec::new(),
        }
    }

    /// The `apply` span of the entry `log_id` of `shard`, carrying `commands`
    /// commands (disabled unless traces are exported).
    pub(super) fn apply_span(
        &self,
        shard: ShardId,
        log_id: &LogId<u64>,
        commands: usize,
    ) -> tracing::Span {
        crate::telemetry::spans::exported(|| {
            let parents = self.take(log_id);
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
            }),
        }
    }

    /// An entry's traces are taken once, by its exact log id; a truncated entry's
    /// traces never go to the entry that replaced it, and older ones are dropped.
    #[test]
    fn traces_go_to_the_entry_appended_with_them_and_are_bounded() {
        let traces = EntryTraces::default();
        traces.appended(&[entry(1, 5, true), entry(1, 6, false), entry(1, 7, true)]);
        assert_eq!(traces.lock().len(), 2);
        // Index 5 was replaced by another term's entry: not its traces.
        assert!(
            traces
                .take(&LogId::new(CommittedLeaderId::new(2, 1), 5))
                .is_empty()
        );
        assert_eq!(
            traces
                .take(&LogId::new(CommittedLeaderId::new(1, 1), 7))
                .len(),
            1
        );
        assert!(traces.lock().is_empty());

        let many: Vec<_> = (0..TRACED_ENTRIES_MAX as u64 + 10)
            .map(|i| entry(1, i, true))
            .collect();
        traces.appended(&many);
        assert_eq!(traces.lock().len(), TRACED_ENTRIES_MAX);
        assert_eq!(traces.lock().keys().next(), Some(&10));
    }
}
