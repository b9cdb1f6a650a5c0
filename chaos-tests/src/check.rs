//! Invariant checkers over a recorded [`History`].
//!
//! One checker per invariant of ARCHITECTURE.md ("Invariants"); each returns the
//! [`Violation`]s it found and [`check_all`] runs them all. A history is external input
//! (it may come from a file), so no checker panics on one, however malformed.
//!
//! # Rules
//! 1. [`Invariant::NoAckedWriteLost`] ([`check_no_acked_write_lost`]), for each
//!    conversation and each [`ReplicaCopy`] of it:
//!    * every acked write's text appears as exactly one user message (`content == text`),
//!      with the message id its acknowledgement reported;
//!    * a failed write appears at most once;
//!    * acked writes appear in real-time order: if `a.acked_ms < b.invoked_ms`, `a`'s
//!      message comes before `b`'s.
//!
//!    Also: all copies of one conversation are identical in (id, role, status, content)
//!    (the first differing index and both nodes are named); a conversation with acked
//!    writes but no copy at all is a violation; writes of one conversation sharing a text
//!    make the history ambiguous and are reported.
//! 2. [`Invariant::OneLiveAgent`] ([`check_one_live_agent`]): per conversation, the
//!    lives' intervals `[start_ns, end_ns or +inf)` do not overlap. A life recorded as
//!    ending before it starts is reported (the witness is broken) and otherwise ignored.
//! 3. [`Invariant::FollowerGapFree`] ([`check_follower_gap_free`]), per [`FollowerLog`]:
//!    * sequence: seqs strictly increase; every non-reset event is exactly `prev.next()`,
//!      where `prev` starts at the log's `since`; the first event is a reset when `since`
//!      is `None`; a reset may jump ahead. Owner-only events (`for_follower()` is `None`)
//!      are skipped here: the node hands them out with the latest visible seq without
//!      consuming one, and invariant 5 judges whether they may be there at all;
//!    * reconstruction: the follower's committed messages are the reset snapshots'
//!      messages, then the messages of `UserMessage` and `Done` events appended.
//!      (a) After each reset the snapshot still contains every committed message the
//!      follower had already seen, with the same id and content, unless
//!      `omitted_messages` explains it (`id < omitted_messages`). (b) Each appended
//!      message has the next id: none skipped, repeated or older. (c) The final
//!      reconstruction is a prefix (by id and content) of the conversation's replica copy
//!      (the first by node name), if one exists.
//! 4. [`Invariant::ContentFromParts`] ([`check_content_from_parts`]): every assistant
//!    message in replica copies, in reset snapshots (`messages` and `in_flight`) and in
//!    `Done` events has `content == content_from_parts(&parts)`. A follower log reports
//!    each message id once.
//! 5. [`Invariant::OwnerOnlyHidden`] ([`check_owner_only_hidden`]): in viewer logs
//!    (`owner == false`) every event passes the follower allowlist unchanged
//!    (`Some(e.clone()) == e.for_follower()`): an owner-only event, or a `Done` carrying
//!    usage, is a leak. And a viewer token never mutates anything: no viewer write
//!    ([`History::viewer_writes`]) was acknowledged, and none appears in any replica copy.
//!
//! A rewind legitimately drops messages; histories with rewinds are outside these rules.
//! Each checker lists at most [`VIOLATIONS_LISTED_PER_SUBJECT_MAX`] violations per
//! subject (a replica copy, a conversation's agents, a follower log), then one more
//! counting the rest.

use crate::history::{AgentLife, FollowerLog, History, ReplicaCopy, Write, WriteOutcome};
use serde::{Deserialize, Serialize};
use shoal_protocol::transcript::{Event, Message, Role, content_from_parts};
use shoal_protocol::{ConversationId, MessageId, Seq};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The most violations listed per subject (replica copy, conversation, follower log);
/// one more violation counts the rest.
pub const VIOLATIONS_LISTED_PER_SUBJECT_MAX: usize = 20;

/// The most characters of a text quoted in a violation.
pub const QUOTE_CHARS_MAX: usize = 60;

/// The invariants the chaos tests check, numbered as in ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// 1. No acknowledged write is lost (nor duplicated, reordered, or divergent between replicas).
    NoAckedWriteLost,
    /// 2. At most one agent process per conversation is alive at any instant.
    OneLiveAgent,
    /// 3. Each follower sees a gap-free, duplicate-free sequence.
    FollowerGapFree,
    /// 4. `content == content_from_parts(parts)` for every assistant message.
    ContentFromParts,
    /// 5. Owner-only events never reach a viewer.
    OwnerOnlyHidden,
}

impl Invariant {
    /// Every invariant, in number order.
    pub const ALL: [Invariant; 5] = [
        Invariant::NoAckedWriteLost,
        Invariant::OneLiveAgent,
        Invariant::FollowerGapFree,
        Invariant::ContentFromParts,
        Invariant::OwnerOnlyHidden,
    ];

    /// The invariant's number in ARCHITECTURE.md.
    pub fn number(self) -> u8 {
        match self {
            Invariant::NoAckedWriteLost => 1,
            Invariant::OneLiveAgent => 2,
            Invariant::FollowerGapFree => 3,
            Invariant::ContentFromParts => 4,
            Invariant::OwnerOnlyHidden => 5,
        }
    }

    /// What a violation of it is called, e.g. "acknowledged write lost".
    pub fn title(self) -> &'static str {
        match self {
            Invariant::NoAckedWriteLost => "acknowledged write lost",
            Invariant::OneLiveAgent => "two live agents",
            Invariant::FollowerGapFree => "follower gap or duplicate",
            Invariant::ContentFromParts => "content differs from parts",
            Invariant::OwnerOnlyHidden => "owner-only event reached a viewer",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {}: {}", self.number(), self.title())
    }
}

/// One broken invariant, with what is needed to find it in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The conversation, as text, if the violation concerns one.
    pub conversation: Option<String>,
    /// The node, if the violation concerns one.
    pub node: Option<String>,
    /// What happened, naming the ops, nodes, message ids and seqs involved.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.invariant)?;
        let mut separator = " ";
        if let Some(conversation) = &self.conversation {
            write!(f, "{separator}conversation {conversation}")?;
            separator = ", ";
        }
        if let Some(node) = &self.node {
            write!(f, "{separator}node {node}")?;
        }
        if self.conversation.is_some() || self.node.is_some() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.detail)
    }
}

/// Runs every checker; violations come grouped by invariant, in number order.
pub fn check_all(history: &History) -> Vec<Violation> {
    Invariant::ALL
        .into_iter()
        .flat_map(|invariant| check_invariant(invariant, history))
        .collect()
}

/// Runs the checker of one invariant.
pub fn check_invariant(invariant: Invariant, history: &History) -> Vec<Violation> {
    match invariant {
        Invariant::NoAckedWriteLost => check_no_acked_write_lost(history),
        Invariant::OneLiveAgent => check_one_live_agent(history),
        Invariant::FollowerGapFree => check_follower_gap_free(history),
        Invariant::ContentFromParts => check_content_from_parts(history),
        Invariant::OwnerOnlyHidden => check_owner_only_hidden(history),
    }
}

/// Invariant 1: acked writes are in every replica exactly once, in real-time order;
/// failed writes at most once; replicas agree (see the module docs).
pub fn check_no_acked_write_lost(history: &History) -> Vec<Violation> {
    let mut writes: BTreeMap<ConversationId, Vec<&Write>> = BTreeMap::new();
    for write in &history.writes {
        writes.entry(write.conversation).or_default().push(write);
    }
    let copies = copies_by_conversation(history);
    let conversations: BTreeSet<ConversationId> =
        writes.keys().chain(copies.keys()).copied().collect();
    let mut out = Vec::new();
    for conversation in conversations {
        let writes = writes.get(&conversation).map_or(&[][..], Vec::as_slice);
        let copies = copies.get(&conversation).map_or(&[][..], Vec::as_slice);
        let conversation = conversation.to_string();
        out.extend(ambiguous_writes(&conversation, writes));
        if copies.is_empty() {
            let acked: Vec<&Write> = writes.iter().copied().filter(|w| is_acked(w)).collect();
            if let Some(first) = acked.first() {
                out.push(violation(
                    Invariant::NoAckedWriteLost,
                    Some(&conversation),
                    None,
                    format!(
                        "{} acknowledged writes (the first: {}) but no replica's copy of this conversation was recorded; read every replica after healing",
                        acked.len(),
                        describe_write(first)
                    ),
                ));
            }
            continue;
        }
        for copy in copies {
            cap_into(
                &mut out,
                check_copy(&conversation, writes, copy),
                &format!("replica {} of this conversation", copy.node),
            );
        }
        out.extend(replicas_disagree(&conversation, copies));
    }
    out
}

/// An acked write found exactly once in a replica.
struct Placed<'a> {
    write: &'a Write,
    acked_ms: u64,
    index: usize,
}

fn check_copy(conversation: &str, writes: &[&Write], copy: &ReplicaCopy) -> Vec<Violation> {
    let v = |detail| {
        violation(
            Invariant::NoAckedWriteLost,
            Some(conversation),
            Some(&copy.node),
            detail,
        )
    };
    let mut positions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, message) in copy.messages.iter().enumerate() {
        if message.role == Role::User {
            positions
                .entry(message.content.as_str())
                .or_default()
                .push(index);
        }
    }
    let mut found = Vec::new();
    let mut placed = Vec::new();
    for &write in writes {
        let at = positions
            .get(write.text.as_str())
            .map_or(&[][..], Vec::as_slice);
        let ids = || {
            at.iter()
                .filter_map(|&i| copy.messages.get(i))
                .map(|m| m.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&write.outcome, at) {
            (WriteOutcome::Acked { .. }, []) => {
                let last_user = copy
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map_or_else(|| "none".to_owned(), |m| quote(&m.content));
                found.push(v(format!(
                    "{} is missing from this replica (it has {} messages; last user message {last_user})",
                    describe_write(write),
                    copy.messages.len()
                )));
            }
            (
                WriteOutcome::Acked {
                    message_id,
                    acked_ms,
                },
                &[index],
            ) => {
                if let Some(stored) = copy.messages.get(index)
                    && stored.id != *message_id
                {
                    found.push(v(format!(
                        "{} is stored as message {} in this replica, not at the id its acknowledgement reported",
                        describe_write(write),
                        stored.id
                    )));
                }
                placed.push(Placed {
                    write,
                    acked_ms: *acked_ms,
                    index,
                });
            }
            (WriteOutcome::Acked { .. }, _) => found.push(v(format!(
                "{} appears {} times in this replica (messages {}); an acknowledged write must appear exactly once",
                describe_write(write),
                at.len(),
                ids()
            ))),
            (WriteOutcome::Failed { .. }, [_, _, ..]) => found.push(v(format!(
                "{} appears {} times in this replica (messages {}); a failed write may appear at most once",
                describe_write(write),
                at.len(),
                ids()
            ))),
            (WriteOutcome::Failed { .. }, _) => {}
        }
    }
    found.extend(real_time_order(copy, placed).into_iter().map(v));
    found
}

/// Details of acked writes stored before a write acked before they were invoked.
fn real_time_order(copy: &ReplicaCopy, mut placed: Vec<Placed<'_>>) -> Vec<String> {
    placed.sort_by_key(|p| (p.acked_ms, p.index));
    // latest[k]: among placed[..=k] (the k+1 earliest acks), the one stored last.
    let mut latest: Vec<usize> = Vec::with_capacity(placed.len());
    for (k, p) in placed.iter().enumerate() {
        let best = match latest.last() {
            Some(&b) if placed[b].index > p.index => b,
            _ => k,
        };
        latest.push(best);
    }
    let mut in_replica_order: Vec<&Placed<'_>> = placed.iter().collect();
    in_replica_order.sort_by_key(|p| p.index);
    let mut details = Vec::new();
    for b in in_replica_order {
        let acked_before = placed.partition_point(|a| a.acked_ms < b.write.invoked_ms);
        let Some(a) = acked_before
            .checked_sub(1)
            .and_then(|k| latest.get(k))
            .and_then(|&a| placed.get(a))
        else {
            continue;
        };
        if a.index > b.index {
            let id = |i: usize| {
                copy.messages
                    .get(i)
                    .map_or_else(String::new, |m| m.id.to_string())
            };
            details.push(format!(
                "write {} (client {}) was invoked at {} ms, after write {} (client {}) was acked at {} ms, yet this replica stores it first: {} comes before {}",
                quote(&b.write.text),
                b.write.client,
                b.write.invoked_ms,
                quote(&a.write.text),
                a.write.client,
                a.acked_ms,
                id(b.index),
                id(a.index)
            ));
        }
    }
    details
}

fn replicas_disagree(conversation: &str, copies: &[&ReplicaCopy]) -> Vec<Violation> {
    let Some((reference, others)) = copies.split_first() else {
        return Vec::new();
    };
    others
        .iter()
        .filter_map(|other| {
            let len = reference.messages.len().max(other.messages.len());
            let index = (0..len).find(|&i| {
                !same_message(reference.messages.get(i), other.messages.get(i))
            })?;
            Some(violation(
                Invariant::NoAckedWriteLost,
                Some(conversation),
                Some(&other.node),
                format!(
                    "replicas disagree at index {index}: {} has {}, {} has {} ({} has {} messages, {} has {})",
                    reference.node,
                    describe_message(reference.messages.get(index)),
                    other.node,
                    describe_message(other.messages.get(index)),
                    reference.node,
                    reference.messages.len(),
                    other.node,
                    other.messages.len()
                ),
            ))
        })
        .collect()
}

fn same_message(a: Option<&Message>, b: Option<&Message>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.id == b.id && a.role == b.role && a.status == b.status && a.content == b.content
        }
        (None, None) => true,
        _ => false,
    }
}

fn ambiguous_writes(conversation: &str, writes: &[&Write]) -> Vec<Violation> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for write in writes {
        *counts.entry(write.text.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|&(_, count)| count > 1)
        .map(|(text, count)| {
            violation(
                Invariant::NoAckedWriteLost,
                Some(conversation),
                None,
                format!(
                    "{count} writes share the text {}, so the checker cannot tell them apart; give every write a unique text",
                    quote(text)
                ),
            )
        })
        .collect()
}

/// Invariant 2: the agent lives of one conversation never overlap.
pub fn check_one_live_agent(history: &History) -> Vec<Violation> {
    let mut by_conversation: BTreeMap<&str, Vec<&AgentLife>> = BTreeMap::new();
    for life in &history.agents {
        by_conversation
            .entry(life.conversation.as_str())
            .or_default()
            .push(life);
    }
    let mut out = Vec::new();
    for (conversation, mut lives) in by_conversation {
        lives.sort_by(|a, b| (a.start_ns, &a.node, a.pid).cmp(&(b.start_ns, &b.node, b.pid)));
        let mut found = Vec::new();
        let mut valid = Vec::new();
        for life in lives {
            match life.end_ns {
                Some(end_ns) if end_ns < life.start_ns => found.push(violation(
                    Invariant::OneLiveAgent,
                    Some(conversation),
                    Some(&life.node),
                    format!(
                        "agent pid {} is recorded as ending ({}) before it started ({}); the witness is broken, so this life is not checked",
                        life.pid,
                        ms_text(end_ns),
                        ms_text(life.start_ns)
                    ),
                )),
                _ => valid.push(life),
            }
        }
        for (i, a) in valid.iter().enumerate() {
            for b in &valid[i + 1..] {
                // Sorted by start: b starts no earlier than a, and neither do later lives.
                if a.end_ns.is_some_and(|end_ns| end_ns <= b.start_ns) {
                    break;
                }
                if b.end_ns == Some(b.start_ns) {
                    continue;
                }
                let overlap = match (a.end_ns, b.end_ns) {
                    (None, None) => format!(
                        "both were still alive when the run ended, overlapping since {}",
                        ms_text(b.start_ns)
                    ),
                    (Some(end_ns), None) | (None, Some(end_ns)) => overlap_text(b.start_ns, end_ns),
                    (Some(a_end), Some(b_end)) => overlap_text(b.start_ns, a_end.min(b_end)),
                };
                found.push(violation(
                    Invariant::OneLiveAgent,
                    Some(conversation),
                    Some(&b.node),
                    format!(
                        "agent pid {} on node {} ({}) and agent pid {} on node {} ({}) ran at the same time: {overlap} (CLOCK_MONOTONIC)",
                        a.pid,
                        a.node,
                        life_text(a),
                        b.pid,
                        b.node,
                        life_text(b)
                    ),
                ));
            }
        }
        cap_into(
            &mut out,
            found,
            &format!("the agents of conversation {conversation}"),
        );
    }
    out
}

fn life_text(life: &AgentLife) -> String {
    match life.end_ns {
        Some(end_ns) => format!(
            "alive from {} to {}",
            ms_text(life.start_ns),
            ms_text(end_ns)
        ),
        None => format!(
            "alive from {}, still alive when the run ended",
            ms_text(life.start_ns)
        ),
    }
}

fn overlap_text(from_ns: u64, to_ns: u64) -> String {
    format!(
        "overlap of {} from {} to {}",
        ms_text(to_ns.saturating_sub(from_ns)),
        ms_text(from_ns),
        ms_text(to_ns)
    )
}

/// Invariant 3: each follower's sequence is gap- and duplicate-free and its committed
/// messages stay consistent across resets and with the replicas (see the module docs).
pub fn check_follower_gap_free(history: &History) -> Vec<Violation> {
    let copies = copies_by_conversation(history);
    let mut out = Vec::new();
    for log in &history.followers {
        let replica = copies
            .get(&log.conversation)
            .and_then(|c| c.first().copied());
        cap_into(
            &mut out,
            check_follower_log(log, replica),
            &format!("follower {}", log.follower),
        );
    }
    out
}

fn check_follower_log(log: &FollowerLog, replica: Option<&ReplicaCopy>) -> Vec<Violation> {
    let conversation = log.conversation.to_string();
    let v = |node: Option<&str>, detail: String| {
        violation(
            Invariant::FollowerGapFree,
            Some(&conversation),
            node,
            detail,
        )
    };
    let who = follower_text(log);
    let mut found = Vec::new();
    // The last sequence number seen, and how to name it.
    let mut prev: Option<(Seq, String)> = log
        .since
        .map(|since| (since, format!("the follow's since ({})", seq_text(since))));
    // The committed messages seen, with the seq that showed them.
    let mut seen: BTreeMap<MessageId, (&Message, Seq)> = BTreeMap::new();
    let mut next_id: Option<u64> = None;
    for frame in &log.events {
        let seq = frame.seq;
        let what = format!("`{}` at {}", frame.event.type_name(), seq_text(seq));
        let is_reset = matches!(frame.event, Event::Reset { .. });
        if frame.event.for_follower().is_some() {
            match &prev {
                None if log.since.is_none() && !is_reset => found.push(v(
                    None,
                    format!(
                        "{who}: the first event is {what}, but a follow without `since` must start with a reset"
                    ),
                )),
                None => {}
                Some((p, prev_what)) => {
                    if seq == *p {
                        found.push(v(
                            None,
                            format!("{who}: {what} repeats the sequence number of {prev_what}"),
                        ));
                    } else if seq < *p {
                        found.push(v(
                            None,
                            format!(
                                "{who}: {what} comes after {prev_what}: sequence numbers went backwards"
                            ),
                        ));
                    } else if !is_reset && seq.0 - p.0 > 1 {
                        found.push(v(
                            None,
                            format!(
                                "{who}: {what} follows {prev_what}: {} events ({} to {}) are missing",
                                seq.0 - p.0 - 1,
                                p.0 + 1,
                                seq.0 - 1
                            ),
                        ));
                    }
                }
            }
            if prev.as_ref().is_none_or(|(p, _)| seq > *p) {
                prev = Some((seq, what.clone()));
            }
        }
        match &frame.event {
            Event::Reset { snapshot } => {
                if snapshot.conversation != log.conversation {
                    found.push(v(
                        None,
                        format!(
                            "{who}: {what} carries a snapshot of conversation {}",
                            snapshot.conversation
                        ),
                    ));
                }
                let in_snapshot: BTreeMap<MessageId, &Message> =
                    snapshot.messages.iter().map(|m| (m.id, m)).collect();
                let mut lost = Vec::new();
                for (id, (message, at)) in &seen {
                    if id.0 < snapshot.omitted_messages {
                        continue;
                    }
                    match in_snapshot.get(id) {
                        None => {
                            lost.push(*id);
                            found.push(v(
                                None,
                                format!(
                                    "{who}: {what} (snapshot of {} messages, {} omitted) lacks message {id} {} the follower had seen at {}",
                                    snapshot.messages.len(),
                                    snapshot.omitted_messages,
                                    quote(&message.content),
                                    seq_text(*at)
                                ),
                            ));
                        }
                        Some(now) if now.content != message.content => found.push(v(
                            None,
                            format!(
                                "{who}: {what} has message {id} as {}, but the follower had seen it as {} at {}",
                                quote(&now.content),
                                quote(&message.content),
                                seq_text(*at)
                            ),
                        )),
                        Some(_) => {}
                    }
                }
                for id in lost {
                    seen.remove(&id);
                }
                for message in &snapshot.messages {
                    seen.insert(message.id, (message, seq));
                }
                next_id = Some(
                    snapshot
                        .messages
                        .last()
                        .map_or(snapshot.omitted_messages, |m| m.id.0.saturating_add(1)),
                );
            }
            Event::UserMessage { message } | Event::Done { message, .. } => {
                let id = message.id;
                if let Some((earlier, at)) = seen.get(&id) {
                    let detail = if earlier.content == message.content {
                        format!(
                            "{who}: {what} delivers message {id} again (first seen at {})",
                            seq_text(*at)
                        )
                    } else {
                        format!(
                            "{who}: {what} delivers message {id} as {}, but the follower had it as {} since {}",
                            quote(&message.content),
                            quote(&earlier.content),
                            seq_text(*at)
                        )
                    };
                    found.push(v(None, detail));
                } else if let Some(next) = next_id
                    && id.0 != next
                {
                    let detail = if id.0 > next {
                        format!(
                            "{who}: {what} carries message {id}, but the follower's next committed message is m{next}: it missed m{next} to m{}",
                            id.0 - 1
                        )
                    } else {
                        format!(
                            "{who}: {what} carries message {id}, older than the follower's next committed message m{next}"
                        )
                    };
                    found.push(v(None, detail));
                }
                seen.insert(id, (message, seq));
                let after = id.0.saturating_add(1);
                next_id = Some(next_id.map_or(after, |next| next.max(after)));
            }
            _ => {}
        }
    }
    if let Some(replica) = replica {
        let stored: BTreeMap<MessageId, &Message> =
            replica.messages.iter().map(|m| (m.id, m)).collect();
        for (id, (message, at)) in &seen {
            let detail = match stored.get(id) {
                None => format!(
                    "{who} has message {id} {} (seen at {}) which this replica lacks (it has {} messages): the follower's transcript is not a prefix of the replica's",
                    quote(&message.content),
                    seq_text(*at),
                    replica.messages.len()
                ),
                Some(kept) if kept.content != message.content => format!(
                    "{who} has message {id} as {} (seen at {}) but this replica stores {}",
                    quote(&message.content),
                    seq_text(*at),
                    quote(&kept.content)
                ),
                Some(_) => continue,
            };
            found.push(v(Some(&replica.node), detail));
        }
    }
    found
}

/// Invariant 4: every assistant message in replicas, reset snapshots and `Done` events
/// has `content == content_from_parts(&parts)`.
pub fn check_content_from_parts(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for copy in &history.replicas {
        let conversation = copy.conversation.to_string();
        let found = copy
            .messages
            .iter()
            .filter_map(|m| content_mismatch(m, "stored assistant message"))
            .map(|detail| {
                violation(
                    Invariant::ContentFromParts,
                    Some(&conversation),
                    Some(&copy.node),
                    detail,
                )
            })
            .collect();
        cap_into(
            &mut out,
            found,
            &format!("replica {} of this conversation", copy.node),
        );
    }
    for log in &history.followers {
        let conversation = log.conversation.to_string();
        let who = follower_text(log);
        let mut reported = BTreeSet::new();
        let mut found = Vec::new();
        for frame in &log.events {
            let carried: Vec<(&Message, &str)> = match &frame.event {
                Event::Reset { snapshot } => snapshot
                    .messages
                    .iter()
                    .map(|m| (m, "in the snapshot of"))
                    .chain(snapshot.in_flight.iter().map(|m| (m, "in flight in")))
                    .collect(),
                Event::Done { message, .. } => vec![(message, "in")],
                _ => Vec::new(),
            };
            for (message, place) in carried {
                let context = format!(
                    "{who} got assistant message {}, {place} `{}` at {},",
                    message.id,
                    frame.event.type_name(),
                    seq_text(frame.seq)
                );
                if let Some(detail) = content_mismatch(message, &context)
                    && reported.insert(message.id)
                {
                    found.push(violation(
                        Invariant::ContentFromParts,
                        Some(&conversation),
                        None,
                        detail,
                    ));
                }
            }
        }
        cap_into(&mut out, found, &format!("follower {}", log.follower));
    }
    out
}

/// `Some(detail)` when `message` is an assistant message whose content is not its parts'.
fn content_mismatch(message: &Message, context: &str) -> Option<String> {
    if message.role != Role::Assistant {
        return None;
    }
    let derived = content_from_parts(&message.parts);
    (derived != message.content).then(|| {
        format!(
            "{context} {} ({:?}) has content {} ({} bytes) but its {} parts give {} ({} bytes)",
            message.id,
            message.status,
            quote(&message.content),
            message.content.len(),
            message.parts.len(),
            quote(&derived),
            derived.len()
        )
    })
}

/// Invariant 5: viewers only get events the follower allowlist passes unchanged.
pub fn check_owner_only_hidden(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    for log in history.followers.iter().filter(|log| !log.owner) {
        let conversation = log.conversation.to_string();
        let mut found = Vec::new();
        for frame in &log.events {
            let what = format!("`{}` at {}", frame.event.type_name(), seq_text(frame.seq));
            let detail = match frame.event.for_follower() {
                None => format!("viewer {} got the owner-only event {what}", log.follower),
                Some(allowed) if allowed != frame.event => match &frame.event {
                    Event::Done {
                        message,
                        usage: Some(usage),
                    } => format!(
                        "viewer {} got {what} (message {}) carrying usage ({} of {} tokens, cost {:?} {}); usage is owner-only",
                        log.follower,
                        message.id,
                        usage.used_tokens,
                        usage.size_tokens,
                        usage.cost,
                        usage.currency.as_deref().unwrap_or("")
                    ),
                    _ => format!(
                        "viewer {} got {what} with fields the follower allowlist removes",
                        log.follower
                    ),
                },
                Some(_) => continue,
            };
            found.push(violation(
                Invariant::OwnerOnlyHidden,
                Some(&conversation),
                None,
                detail,
            ));
        }
        cap_into(&mut out, found, &format!("viewer {}", log.follower));
    }
    // Second half: a viewer token never mutates anything.
    for write in &history.viewer_writes {
        let conversation = write.conversation.to_string();
        let mut found = Vec::new();
        if let WriteOutcome::Acked { message_id, .. } = &write.outcome {
            found.push(violation(
                Invariant::OwnerOnlyHidden,
                Some(&conversation),
                None,
                format!(
                    "viewer {} had {} acknowledged as message {}; a viewer token may not send",
                    write.client,
                    quote(&write.text),
                    message_id.0
                ),
            ));
        }
        for copy in history
            .replicas
            .iter()
            .filter(|c| c.conversation == write.conversation)
        {
            if let Some(m) = copy.messages.iter().find(|m| m.content == write.text) {
                found.push(violation(
                    Invariant::OwnerOnlyHidden,
                    Some(&conversation),
                    Some(&copy.node),
                    format!(
                        "viewer {}'s {} is stored as message {} on {}; a viewer token may not send",
                        write.client,
                        quote(&write.text),
                        m.id.0,
                        copy.node
                    ),
                ));
            }
        }
        cap_into(&mut out, found, &format!("viewer {}", write.client));
    }
    out
}

fn violation(
    invariant: Invariant,
    conversation: Option<&str>,
    node: Option<&str>,
    detail: String,
) -> Violation {
    Violation {
        invariant,
        conversation: conversation.map(str::to_owned),
        node: node.map(str::to_owned),
        detail,
    }
}

/// Moves at most [`VIOLATIONS_LISTED_PER_SUBJECT_MAX`] of `found` into `out`, plus one
/// violation counting the rest.
fn cap_into(out: &mut Vec<Violation>, mut found: Vec<Violation>, subject: &str) {
    if found.len() > VIOLATIONS_LISTED_PER_SUBJECT_MAX {
        let rest = found.len() - VIOLATIONS_LISTED_PER_SUBJECT_MAX;
        found.truncate(VIOLATIONS_LISTED_PER_SUBJECT_MAX);
        if let Some(last) = found.last() {
            let summary = Violation {
                detail: format!(
                    "{rest} more violations for {subject} are not listed (VIOLATIONS_LISTED_PER_SUBJECT_MAX)"
                ),
                ..last.clone()
            };
            found.push(summary);
        }
    }
    out.extend(found);
}

/// Replica copies grouped by conversation, each group ordered by node name.
fn copies_by_conversation(history: &History) -> BTreeMap<ConversationId, Vec<&ReplicaCopy>> {
    let mut copies: BTreeMap<ConversationId, Vec<&ReplicaCopy>> = BTreeMap::new();
    for copy in &history.replicas {
        copies.entry(copy.conversation).or_default().push(copy);
    }
    for group in copies.values_mut() {
        group.sort_by(|a, b| a.node.cmp(&b.node));
    }
    copies
}

fn is_acked(write: &Write) -> bool {
    matches!(write.outcome, WriteOutcome::Acked { .. })
}

fn describe_write(write: &Write) -> String {
    match &write.outcome {
        WriteOutcome::Acked {
            message_id,
            acked_ms,
        } => format!(
            "write {} (client {}, acked at {acked_ms} ms as message {message_id})",
            quote(&write.text),
            write.client
        ),
        WriteOutcome::Failed { error } => format!(
            "write {} (client {}, invoked at {} ms, failed: {})",
            quote(&write.text),
            write.client,
            write.invoked_ms,
            quote(error)
        ),
    }
}

fn describe_message(message: Option<&Message>) -> String {
    match message {
        None => "no message".to_owned(),
        Some(m) => format!(
            "{} ({:?}, {:?}) {}",
            m.id,
            m.role,
            m.status,
            quote(&m.content)
        ),
    }
}

fn follower_text(log: &FollowerLog) -> String {
    let role = if log.owner { "owner" } else { "viewer" };
    format!("follower {} ({role})", log.follower)
}

/// A text in quotes, escaped, cut at [`QUOTE_CHARS_MAX`] characters.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS_MAX).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

/// A sequence number with its activation and position in the activation.
fn seq_text(seq: Seq) -> String {
    format!(
        "seq {seq} (activation {}, #{})",
        seq.activation(),
        seq.0 & u64::from(u32::MAX)
    )
}

fn ms_text(ns: u64) -> String {
    format!("{}.{:03} ms", ns / 1_000_000, (ns % 1_000_000) / 1_000)
}

#[cfg(test)]
mod tests;
