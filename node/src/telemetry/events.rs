//! The node's recent cluster events: a bounded ring of what this node saw happen (members
//! joining, suspected, down; leaderships it won or lost; placement changes it made;
//! drains; its store), with wall-clock timestamps. The admin API merges every member's
//! ring (`shoalctl admin events`, the events pane of `shoalctl top`).
//!
//! Recording is a short lock and a push; the ring keeps the newest [`EVENTS_KEPT_MAX`].

use shoal_protocol::admin::ClusterEvent;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Events a node keeps; older ones are dropped.
pub const EVENTS_KEPT_MAX: usize = 1024;
pub use shoal_protocol::admin::EVENTS_PER_ANSWER_MAX;
/// Longest detail kept, in bytes (longer ones are cut).
pub const EVENT_DETAIL_BYTES_MAX: usize = 512;

/// What kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// This node started.
    Start,
    /// A member appeared in gossip.
    Join,
    /// A member failed a probe.
    Suspect,
    /// A member was declared down (or left).
    Down,
    /// A suspected or down member is alive again.
    Alive,
    /// This node won shard leaderships.
    Leader,
    /// This node lost shard leaderships.
    Follower,
    /// A placement change this node made (learner added, voters changed, leadership
    /// handed over), or its failure.
    Placement,
    /// This node was drained.
    Drain,
    /// This node was undrained.
    Undrain,
    /// This node's store: a new one (re-seeded from peers) or a lost one replaced.
    Store,
}

impl EventKind {
    /// Its name on the wire and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Join => "join",
            Self::Suspect => "suspect",
            Self::Down => "down",
            Self::Alive => "alive",
            Self::Leader => "leader",
            Self::Follower => "follower",
            Self::Placement => "placement",
            Self::Drain => "drain",
            Self::Undrain => "undrain",
            Self::Store => "store",
        }
    }
}

/// The ring.
#[derive(Debug, Default)]
pub struct EventLog {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    next_seq: u64,
    events: VecDeque<ClusterEvent>,
}

impl EventLog {
    /// Records one event seen by `node` at `at_ms` (ms since the Unix epoch).
    pub fn record(&self, at_ms: u64, node: &str, kind: EventKind, detail: String) {
        let mut detail = detail;
        if detail.len() > EVENT_DETAIL_BYTES_MAX {
            let mut cut = EVENT_DETAIL_BYTES_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let seq = ring.next_seq;
        ring.next_seq += 1;
        if ring.events.len() >= EVENTS_KEPT_MAX {
            ring.events.pop_front();
        }
        ring.events.push_back(ClusterEvent {
            at_ms,
            node: node.to_owned(),
            seq,
            kind: kind.as_str().to_owned(),
            detail,
        });
    }

    /// The newest events (at most `limit`, at most [`EVENTS_PER_ANSWER_MAX`]) recorded
    /// after `after_ms`, oldest first.
    pub fn since(&self, after_ms: Option<u64>, limit: u32) -> Vec<ClusterEvent> {
        let limit = limit.min(EVENTS_PER_ANSWER_MAX) as usize;
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let newer: Vec<&ClusterEvent> = ring
            .events
            .iter()
            .filter(|e| after_ms.is_none_or(|after| e.at_ms > after))
            .collect();
        newer[newer.len().saturating_sub(limit)..]
            .iter()
            .map(|e| (*e).clone())
            .collect()
    }
}

/// Merges members' events: by time, then node, then sequence; the newest `limit`.
pub fn merge(mut events: Vec<ClusterEvent>, limit: u32) -> Vec<ClusterEvent> {
    events.sort_by(|a, b| (a.at_ms, &a.node, a.seq).cmp(&(b.at_ms, &b.node, b.seq)));
    let limit = limit.min(EVENTS_PER_ANSWER_MAX) as usize;
    events.split_off(events.len().saturating_sub(limit))
}

/// Shard ids listed in one event before `(+N more)`.
const SHARDS_PER_EVENT_MAX: usize = 12;

/// `4 9 17` or `4 9 17 … (+20 more)`.
pub fn shard_list(shards: &[u16]) -> String {
    let mut ids: Vec<String> = shards
        .iter()
        .take(SHARDS_PER_EVENT_MAX)
        .map(u16::to_string)
        .collect();
    if shards.len() > SHARDS_PER_EVENT_MAX {
        ids.push(format!("(+{} more)", shards.len() - SHARDS_PER_EVENT_MAX));
    }
    ids.join(" ")
}

/// What a node last knew of one member, to tell what changed.
pub type MemberSeen = (u64, crate::cluster::membership::Liveness);

/// The events between two gossip views of the members (this node, `me`, left out):
/// joins, state changes, and a member back under a new store (new Raft id). Updates
/// `seen`. Pure.
pub fn member_events(
    seen: &mut std::collections::BTreeMap<String, MemberSeen>,
    view: &crate::cluster::membership::MembersView,
    me: &str,
) -> Vec<(EventKind, String)> {
    use crate::cluster::membership::Liveness;
    let mut out = Vec::new();
    for m in &view.members {
        let name = &m.meta.name;
        if name.is_empty() || name == me {
            continue;
        }
        // The current identity of the name only (an older one is a lost store).
        if crate::cluster::drain::member_named(view, name).is_some_and(|c| c != m) {
            continue;
        }
        let now = (m.meta.raft_id, m.liveness);
        match seen.insert(name.clone(), now) {
            None => out.push((EventKind::Join, format!("{name} joined ({})", state(m.liveness)))),
            Some((id, _)) if id != now.0 => out.push((
                EventKind::Store,
                format!("{name} is back with a new store (Raft id {:016x}): its shards' leaders seed it by snapshot and replace its old replicas", now.0),
            )),
            Some((_, before)) if before != now.1 => out.push(match now.1 {
                Liveness::Alive => (EventKind::Alive, format!("{name} is alive again (was {})", state(before))),
                Liveness::Suspect => (EventKind::Suspect, format!("{name} is suspected (missed a probe)")),
                Liveness::Down => (EventKind::Down, format!("{name} is down")),
            }),
            Some(_) => {}
        }
    }
    out
}

fn state(liveness: crate::cluster::membership::Liveness) -> &'static str {
    use crate::cluster::membership::Liveness;
    match liveness {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Down => "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_answers_after_a_time() {
        let log = EventLog::default();
        for i in 0..(EVENTS_KEPT_MAX as u64 + 10) {
            log.record(i, "n1", EventKind::Join, format!("event {i}"));
        }
        let all = log.since(None, u32::MAX);
        assert_eq!(
            all.len(),
            EVENTS_PER_ANSWER_MAX as usize,
            "bounded per answer"
        );
        assert_eq!(all.last().unwrap().at_ms, EVENTS_KEPT_MAX as u64 + 9);
        let newer = log.since(Some(EVENTS_KEPT_MAX as u64 + 7), 10);
        assert_eq!(
            newer.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![EVENTS_KEPT_MAX as u64 + 8, EVENTS_KEPT_MAX as u64 + 9]
        );
        assert_eq!(log.since(None, 3).len(), 3);
        let long = "é".repeat(EVENT_DETAIL_BYTES_MAX);
        log.record(5_000, "n1", EventKind::Store, long);
        let cut = log.since(Some(4_999), 1).remove(0).detail;
        assert!(
            cut.len() <= EVENT_DETAIL_BYTES_MAX + '…'.len_utf8(),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn members_events_merge_by_time_then_node() {
        let e = |at_ms, node: &str, seq| ClusterEvent {
            at_ms,
            node: node.into(),
            seq,
            kind: "join".into(),
            detail: String::new(),
        };
        let merged = merge(
            vec![e(5, "n2", 0), e(3, "n1", 1), e(5, "n1", 2), e(1, "n3", 0)],
            3,
        );
        assert_eq!(
            merged
                .iter()
                .map(|e| (e.at_ms, e.node.as_str()))
                .collect::<Vec<_>>(),
            vec![(3, "n1"), (5, "n1"), (5, "n2")]
        );
        assert_eq!(shard_list(&[1, 2]), "1 2");
    }

    #[test]
    fn gossip_changes_become_events() {
        use crate::cluster::membership::{Liveness, Member, MembersView, NodeMeta};
        let member = |name: &str, raft_id: u64, liveness| Member {
            meta: NodeMeta {
                name: name.into(),
                raft_id,
                addr: "127.0.0.1:1".parse().unwrap(),
                version: "0".into(),
                leaders: 0,
                led: Vec::new(),
                initialized: true,
                draining: false,
            },
            liveness,
            since_ms: 0,
        };
        let mut seen = std::collections::BTreeMap::new();
        let view = |members| MembersView { members };
        let kinds = |events: Vec<(EventKind, String)>| {
            events
                .into_iter()
                .map(|(k, d)| format!("{}: {d}", k.as_str()))
                .collect::<Vec<_>>()
        };
        let first = view(vec![
            member("n1", 1, Liveness::Alive),
            member("n2", 2, Liveness::Alive),
        ]);
        assert_eq!(
            kinds(member_events(&mut seen, &first, "n1")),
            ["join: n2 joined (alive)"]
        );
        assert!(
            member_events(&mut seen, &first, "n1").is_empty(),
            "nothing changed"
        );
        let suspect = view(vec![
            member("n1", 1, Liveness::Alive),
            member("n2", 2, Liveness::Suspect),
        ]);
        assert_eq!(
            kinds(member_events(&mut seen, &suspect, "n1")),
            ["suspect: n2 is suspected (missed a probe)"]
        );
        let down = view(vec![
            member("n1", 1, Liveness::Alive),
            member("n2", 2, Liveness::Down),
        ]);
        assert_eq!(
            kinds(member_events(&mut seen, &down, "n1")),
            ["down: n2 is down"]
        );
        // Back with a new store: the old identity is down, the new one alive.
        let reseeded = view(vec![
            member("n1", 1, Liveness::Alive),
            member("n2", 2, Liveness::Down),
            member("n2", 7, Liveness::Alive),
        ]);
        let events = kinds(member_events(&mut seen, &reseeded, "n1"));
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].starts_with("store: n2 is back with a new store"),
            "{events:?}"
        );
        let many: Vec<u16> = (0..20).collect();
        assert!(shard_list(&many).ends_with("11 (+8 more)"));
    }
}
