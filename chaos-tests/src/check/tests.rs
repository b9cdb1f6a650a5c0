//! Planted violations: each checker catches its kind, and clean histories pass.

use super::*;
use crate::history::FollowerLog;
use shoal_protocol::transcript::{
    EventFrame, MessageStatus, Part, PermissionOption, Snapshot, StopReason, Usage,
};
use shoal_protocol::{ShardId, TurnId};

const NS_PER_MS: u64 = 1_000_000;

fn conversation() -> ConversationId {
    ConversationId::new(ShardId(3), 0xab)
}

/// The `n`th event of activation 1.
fn seq(n: u64) -> Seq {
    Seq(Seq::first_of_activation(1).0 + n)
}

fn message(id: u64, role: Role, status: MessageStatus, text: &str) -> Message {
    Message {
        id: MessageId(id),
        turn: TurnId(id / 2 + 1),
        role,
        status,
        parts: vec![Part::Text { text: text.into() }],
        content: text.into(),
        created_at_ms: id,
        stop_reason: (role == Role::Assistant && status != MessageStatus::InProgress)
            .then_some(StopReason::EndTurn),
        error: None,
    }
}

fn user(id: u64, text: &str) -> Message {
    message(id, Role::User, MessageStatus::Complete, text)
}

fn assistant(id: u64, text: &str) -> Message {
    message(id, Role::Assistant, MessageStatus::Complete, text)
}

fn acked(client: &str, text: &str, invoked_ms: u64, acked_ms: u64, id: u64) -> Write {
    Write {
        conversation: conversation(),
        client: client.into(),
        text: text.into(),
        invoked_ms,
        outcome: WriteOutcome::Acked {
            message_id: MessageId(id),
            acked_ms,
        },
    }
}

fn failed(client: &str, text: &str, invoked_ms: u64) -> Write {
    Write {
        conversation: conversation(),
        client: client.into(),
        text: text.into(),
        invoked_ms,
        outcome: WriteOutcome::Failed {
            error: "connection lost".into(),
        },
    }
}

fn frame(n: u64, event: Event) -> EventFrame {
    EventFrame { seq: seq(n), event }
}

fn reset(n: u64, messages: Vec<Message>, omitted: u64, in_flight: Option<Message>) -> EventFrame {
    frame(
        n,
        Event::Reset {
            snapshot: Snapshot {
                conversation: conversation(),
                messages,
                omitted_messages: omitted,
                in_flight,
            },
        },
    )
}

fn user_event(n: u64, message: Message) -> EventFrame {
    frame(n, Event::UserMessage { message })
}

fn done(n: u64, message: Message, usage: Option<Usage>) -> EventFrame {
    frame(n, Event::Done { message, usage })
}

fn started(n: u64, id: u64) -> EventFrame {
    frame(
        n,
        Event::TurnStarted {
            turn: TurnId(id / 2 + 1),
            message_id: MessageId(id),
        },
    )
}

fn text(n: u64, id: u64, text: &str) -> EventFrame {
    frame(
        n,
        Event::TextChunk {
            message_id: MessageId(id),
            text: text.into(),
        },
    )
}

fn usage() -> Usage {
    Usage {
        used_tokens: 10,
        size_tokens: 100,
        cost: Some(0.25),
        currency: Some("USD".into()),
    }
}

fn log(follower: &str, owner: bool, since: Option<Seq>, events: Vec<EventFrame>) -> FollowerLog {
    FollowerLog {
        follower: follower.into(),
        conversation: conversation(),
        owner,
        since,
        events,
    }
}

fn transcript() -> Vec<Message> {
    vec![
        user(0, "c1-op1"),
        assistant(1, "answer 1"),
        user(2, "c2-op1"),
        assistant(3, "answer 2"),
    ]
}

fn life(node: &str, pid: u32, start_ms: u64, end_ms: Option<u64>) -> AgentLife {
    AgentLife {
        node: node.into(),
        conversation: conversation().to_string(),
        pid,
        start_ns: start_ms * NS_PER_MS,
        end_ns: end_ms.map(|ms| ms * NS_PER_MS),
    }
}

/// Two turns by two clients, three agreeing replicas, a failover of the agent
/// (n1 then n2), and an owner, a viewer and a resumed follower.
fn clean() -> History {
    let m = transcript();
    History {
        writes: vec![
            acked("c1", "c1-op1", 100, 150, 0),
            acked("c2", "c2-op1", 200, 260, 2),
            failed("c1", "c1-op2", 300),
        ],
        replicas: ["n1", "n2", "n3"]
            .into_iter()
            .map(|node| ReplicaCopy {
                node: node.into(),
                conversation: conversation(),
                messages: transcript(),
            })
            .collect(),
        agents: vec![
            life("n1", 100, 1_000, Some(2_000)),
            life("n2", 200, 2_000, None),
        ],
        followers: vec![
            log(
                "f1",
                true,
                None,
                vec![
                    reset(0, vec![], 0, None),
                    user_event(1, m[0].clone()),
                    started(2, 1),
                    text(3, 1, "answer 1"),
                    // Owner-only events reuse the latest visible seq.
                    frame(3, Event::UsageUpdate { usage: usage() }),
                    done(4, m[1].clone(), Some(usage())),
                    user_event(5, m[2].clone()),
                    started(6, 3),
                    text(7, 3, "answer 2"),
                    done(8, m[3].clone(), Some(usage())),
                ],
            ),
            log(
                "v1",
                false,
                None,
                vec![
                    reset(
                        2,
                        vec![m[0].clone()],
                        0,
                        Some(message(
                            1,
                            Role::Assistant,
                            MessageStatus::InProgress,
                            "answ",
                        )),
                    ),
                    text(3, 1, "er 1"),
                    done(4, m[1].clone(), None),
                    user_event(5, m[2].clone()),
                    started(6, 3),
                    text(7, 3, "answer 2"),
                    done(8, m[3].clone(), None),
                ],
            ),
            log(
                "f2",
                true,
                Some(seq(4)),
                vec![
                    user_event(5, m[2].clone()),
                    started(6, 3),
                    text(7, 3, "answer 2"),
                    done(8, m[3].clone(), None),
                ],
            ),
        ],
        viewer_writes: vec![failed("v1", "viewer-v1", 500)],
    }
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  {v}\n"))
        .collect::<String>()
}

fn assert_clean(violations: &[Violation]) {
    assert!(
        violations.is_empty(),
        "expected no violations, got:\n{}",
        list(violations)
    );
}

/// The violation of `invariant` whose text contains every needle.
fn expect<'a>(
    violations: &'a [Violation],
    invariant: Invariant,
    needles: &[&str],
) -> &'a Violation {
    violations
        .iter()
        .find(|v| {
            let text = v.to_string();
            v.invariant == invariant && needles.iter().all(|n| text.contains(n))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {invariant:?} violation mentioning {needles:?}; got:\n{}",
                list(violations)
            )
        })
}

fn only(violations: &[Violation], invariant: Invariant) {
    assert!(
        violations.iter().all(|v| v.invariant == invariant),
        "expected only {invariant:?} violations, got:\n{}",
        list(violations)
    );
}

#[test]
fn clean_history_passes_every_checker() {
    let history = clean();
    for invariant in Invariant::ALL {
        assert_clean(&check_invariant(invariant, &history));
    }
    assert_clean(&check_all(&history));
}

#[test]
fn display_is_one_readable_paragraph() {
    let mut history = clean();
    history.replicas[1].messages.truncate(2);
    let violations = check_no_acked_write_lost(&history);
    let lost = expect(&violations, Invariant::NoAckedWriteLost, &["missing"]);
    assert_eq!(
        lost.to_string(),
        format!(
            "[invariant 1: acknowledged write lost] conversation {}, node n2: write \"c2-op1\" (client c2, acked at 260 ms as message m2) is missing from this replica (it has 2 messages; last user message \"c1-op1\")",
            conversation()
        )
    );
    let bare = Violation {
        invariant: Invariant::OneLiveAgent,
        conversation: None,
        node: None,
        detail: "x".into(),
    };
    assert_eq!(bare.to_string(), "[invariant 2: two live agents] x");
}

#[test]
fn lost_acked_write_is_caught_per_replica() {
    let mut history = clean();
    history.replicas[1].messages.truncate(2);
    let violations = check_all(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["node n2", "\"c2-op1\"", "m2", "missing"],
    );
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &[
            "node n2",
            "replicas disagree at index 2",
            "n1 has m2",
            "n2 has no message",
        ],
    );
    // The other replicas are fine.
    assert!(
        !violations.iter().any(|v| v.node.as_deref() == Some("n1")),
        "{}",
        list(&violations)
    );
}

#[test]
fn duplicated_acked_write_is_caught() {
    let mut history = clean();
    for copy in &mut history.replicas {
        copy.messages.push(user(4, "c1-op1"));
    }
    let violations = check_no_acked_write_lost(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["\"c1-op1\"", "appears 2 times", "m0, m4"],
    );
    assert_eq!(
        violations.len(),
        3,
        "one per replica:\n{}",
        list(&violations)
    );
}

#[test]
fn reordered_acked_writes_are_caught() {
    let mut history = clean();
    for copy in &mut history.replicas {
        copy.messages[0] = user(0, "c2-op1");
        copy.messages[2] = user(2, "c1-op1");
    }
    let violations = check_no_acked_write_lost(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &[
            "node n1",
            "\"c2-op1\" (client c2) was invoked at 200 ms",
            "\"c1-op1\" (client c1) was acked at 150 ms",
            "m0 comes before m2",
        ],
    );
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["\"c1-op1\"", "stored as message m2"],
    );
}

#[test]
fn concurrent_writes_may_land_in_either_order() {
    let mut history = clean();
    // c2-op1 was invoked (120 ms) before c1-op1 was acked (150 ms): either order is fine.
    history.writes[1] = acked("c2", "c2-op1", 120, 260, 0);
    history.writes[0] = acked("c1", "c1-op1", 100, 150, 2);
    for copy in &mut history.replicas {
        copy.messages[0] = user(0, "c2-op1");
        copy.messages[2] = user(2, "c1-op1");
    }
    assert_clean(&check_no_acked_write_lost(&history));
}

#[test]
fn replicas_that_disagree_are_caught() {
    let mut history = clean();
    history.replicas[2].messages[3] = assistant(3, "another answer");
    let violations = check_no_acked_write_lost(&history);
    let v = expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &[
            "replicas disagree at index 3",
            "n1 has m3",
            "\"answer 2\"",
            "n3 has m3",
            "\"another answer\"",
        ],
    );
    assert_eq!(v.node.as_deref(), Some("n3"));
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn acked_writes_without_any_replica_copy_are_caught() {
    let mut history = clean();
    history.replicas.clear();
    history.followers.clear();
    let violations = check_no_acked_write_lost(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["2 acknowledged writes", "\"c1-op1\"", "no replica's copy"],
    );
}

#[test]
fn failed_writes_may_be_absent_or_applied_once_but_not_twice() {
    let mut history = clean();
    // Absent (the clean history's c1-op2) and applied once (c1-op3) are both fine.
    history.writes.push(failed("c1", "c1-op3", 400));
    for copy in &mut history.replicas {
        copy.messages.push(user(4, "c1-op3"));
    }
    assert_clean(&check_all(&history));
    for copy in &mut history.replicas {
        copy.messages.push(user(5, "c1-op3"));
    }
    let violations = check_no_acked_write_lost(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["\"c1-op3\"", "failed", "appears 2 times", "m4, m5"],
    );
}

#[test]
fn writes_sharing_a_text_are_reported_as_ambiguous() {
    let mut history = clean();
    history.writes.push(failed("c3", "c1-op1", 500));
    let violations = check_no_acked_write_lost(&history);
    expect(
        &violations,
        Invariant::NoAckedWriteLost,
        &["2 writes share the text \"c1-op1\""],
    );
}

#[test]
fn overlapping_agents_are_caught() {
    let mut history = clean();
    history.agents = vec![
        life("n1", 100, 1_000, Some(3_000)),
        life("n2", 200, 2_500, Some(4_000)),
    ];
    let violations = check_one_live_agent(&history);
    let v = expect(
        &violations,
        Invariant::OneLiveAgent,
        &[
            "pid 100 on node n1",
            "pid 200 on node n2",
            "overlap of 500.000 ms",
        ],
    );
    assert_eq!(v.node.as_deref(), Some("n2"));
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_still_alive_agent_overlapping_a_later_start_is_caught() {
    let mut history = clean();
    history.agents = vec![
        life("n1", 100, 1_000, None),
        life("n2", 200, 5_000, Some(6_000)),
    ];
    let violations = check_one_live_agent(&history);
    expect(
        &violations,
        Invariant::OneLiveAgent,
        &[
            "pid 100 on node n1 (alive from 1000.000 ms, still alive",
            "pid 200",
            "overlap of 1000.000 ms",
        ],
    );
    history.agents = vec![life("n1", 100, 1_000, None), life("n3", 300, 7_000, None)];
    let violations = check_one_live_agent(&history);
    expect(
        &violations,
        Invariant::OneLiveAgent,
        &[
            "pid 100",
            "pid 300",
            "both were still alive",
            "since 7000.000 ms",
        ],
    );
}

#[test]
fn agent_lives_of_different_conversations_may_overlap() {
    let mut history = clean();
    let mut other = life("n2", 300, 1_500, None);
    other.conversation = ConversationId::new(ShardId(4), 1).to_string();
    history.agents.push(other);
    assert_clean(&check_one_live_agent(&history));
}

#[test]
fn an_agent_life_ending_before_it_starts_is_reported() {
    let mut history = clean();
    history.agents.push(life("n3", 300, 9_000, Some(8_000)));
    let violations = check_one_live_agent(&history);
    expect(
        &violations,
        Invariant::OneLiveAgent,
        &["node n3", "pid 300", "witness is broken"],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_seq_gap_is_caught() {
    let mut history = clean();
    history.followers[1].events.remove(5); // `text` at #7
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower v1 (viewer)",
            "`done` at seq 4294967304 (activation 1, #8)",
            "`turn_started` at seq 4294967302",
            "1 events",
            "are missing",
        ],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_duplicate_seq_is_caught() {
    let mut history = clean();
    let again = history.followers[0].events[3].clone(); // `text` at #3
    history.followers[0].events.insert(4, again);
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f1 (owner)",
            "`text` at seq 4294967299 (activation 1, #3) repeats the sequence number of `text`",
        ],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn seqs_going_backwards_and_redelivered_messages_are_caught() {
    let mut history = clean();
    let replay: Vec<EventFrame> = history.followers[2].events[..2].to_vec();
    history.followers[2].events.extend(replay);
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f2",
            "`user_message` at seq 4294967301",
            "went backwards",
        ],
    );
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &["follower f2", "delivers message m2 again"],
    );
}

#[test]
fn a_first_event_that_is_not_a_reset_is_caught() {
    let mut history = clean();
    history.followers[0].events.remove(0);
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f1",
            "first event is `user_message` at seq 4294967297",
            "must start with a reset",
        ],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_resumed_follow_must_continue_right_after_since() {
    let mut history = clean();
    history.followers[2].since = Some(seq(3));
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f2",
            "follows the follow's since (seq 4294967299",
            "1 events",
        ],
    );
}

#[test]
fn a_reset_may_jump_ahead_into_a_new_activation() {
    let mut history = clean();
    let m = transcript();
    let next = Seq::first_of_activation(2);
    history.followers[0].events.push(EventFrame {
        seq: next,
        event: Event::Reset {
            snapshot: Snapshot {
                conversation: conversation(),
                messages: m.clone(),
                omitted_messages: 0,
                in_flight: None,
            },
        },
    });
    assert_clean(&check_all(&history));
}

#[test]
fn a_snapshot_missing_a_seen_message_is_caught() {
    let mut history = clean();
    let m = transcript();
    history.followers[0]
        .events
        .push(reset(9, m[..3].to_vec(), 0, None));
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f1",
            "`reset` at seq 4294967305 (activation 1, #9)",
            "lacks message m3 \"answer 2\"",
            "seen at seq 4294967304",
        ],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn omitted_messages_explain_a_shorter_snapshot() {
    let mut history = clean();
    let m = transcript();
    history.followers[0]
        .events
        .push(reset(9, m[2..].to_vec(), 2, None));
    assert_clean(&check_all(&history));
}

#[test]
fn a_skipped_committed_message_is_caught() {
    let mut history = clean();
    let m = transcript();
    history.followers.push(log(
        "f3",
        true,
        None,
        vec![
            reset(4, vec![m[0].clone()], 0, None),
            user_event(5, m[2].clone()),
        ],
    ));
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower f3",
            "`user_message` at seq 4294967301",
            "carries message m2",
            "missed m1 to m1",
        ],
    );
}

#[test]
fn a_follower_transcript_that_is_not_a_replica_prefix_is_caught() {
    let mut history = clean();
    history.followers[1].events[6] = done(8, assistant(3, "a different answer"), None);
    let violations = check_follower_gap_free(&history);
    let v = expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower v1",
            "message m3 as \"a different answer\"",
            "this replica stores \"answer 2\"",
        ],
    );
    assert_eq!(v.node.as_deref(), Some("n1"));
    history.followers[1]
        .events
        .push(user_event(9, user(4, "c9-op1")));
    let violations = check_follower_gap_free(&history);
    expect(
        &violations,
        Invariant::FollowerGapFree,
        &[
            "follower v1 (viewer) has message m4",
            "which this replica lacks",
        ],
    );
}

fn with_wrong_content(mut message: Message) -> Message {
    message.content.push_str(" (edited)");
    message
}

#[test]
fn content_not_from_parts_is_caught_in_replicas() {
    let mut history = clean();
    for copy in &mut history.replicas {
        copy.messages[1] = with_wrong_content(assistant(1, "answer 1"));
    }
    let violations = check_content_from_parts(&history);
    expect(
        &violations,
        Invariant::ContentFromParts,
        &[
            "node n2",
            "stored assistant message m1",
            "\"answer 1 (edited)\"",
            "parts give \"answer 1\"",
        ],
    );
    assert_eq!(
        violations.len(),
        3,
        "one per replica:\n{}",
        list(&violations)
    );
}

#[test]
fn content_not_from_parts_is_caught_in_done_and_snapshots() {
    let mut history = clean();
    history.followers[2].events[3] = done(8, with_wrong_content(assistant(3, "answer 2")), None);
    let in_flight = message(1, Role::Assistant, MessageStatus::InProgress, "answ");
    history.followers[1].events[0] = reset(
        2,
        vec![user(0, "c1-op1")],
        0,
        Some(with_wrong_content(in_flight)),
    );
    let violations = check_content_from_parts(&history);
    expect(
        &violations,
        Invariant::ContentFromParts,
        &["follower f2", "m3, in `done` at seq 4294967304", "(edited)"],
    );
    expect(
        &violations,
        Invariant::ContentFromParts,
        &[
            "follower v1",
            "m1, in flight in `reset` at seq 4294967298",
            "InProgress",
        ],
    );
    assert_eq!(violations.len(), 2, "{}", list(&violations));
}

#[test]
fn user_messages_are_not_judged_by_their_parts() {
    let mut history = clean();
    for copy in &mut history.replicas {
        copy.messages[0].parts.clear();
    }
    assert_clean(&check_content_from_parts(&history));
}

#[test]
fn a_usage_update_to_a_viewer_is_caught() {
    let mut history = clean();
    history.followers[1]
        .events
        .insert(2, frame(3, Event::UsageUpdate { usage: usage() }));
    let violations = check_all(&history);
    expect(
        &violations,
        Invariant::OwnerOnlyHidden,
        &["viewer v1 got the owner-only event `usage` at seq 4294967299"],
    );
    only(&violations, Invariant::OwnerOnlyHidden);
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_done_with_usage_to_a_viewer_is_caught() {
    let mut history = clean();
    history.followers[1].events[2] = done(4, assistant(1, "answer 1"), Some(usage()));
    let violations = check_all(&history);
    expect(
        &violations,
        Invariant::OwnerOnlyHidden,
        &[
            "viewer v1 got `done` at seq 4294967300",
            "message m1",
            "carrying usage (10 of 100 tokens",
        ],
    );
    only(&violations, Invariant::OwnerOnlyHidden);
}

#[test]
fn a_permission_request_to_a_viewer_is_caught_but_owners_are_not_judged() {
    let mut history = clean();
    let request = Event::PermissionRequest {
        request: 7,
        title: "rm -rf".into(),
        options: vec![PermissionOption {
            option_id: "allow".into(),
            name: "Allow".into(),
            kind: "allow_once".into(),
        }],
    };
    history.followers[1]
        .events
        .insert(2, frame(3, request.clone()));
    history.followers[0].events.insert(4, frame(3, request));
    let violations = check_owner_only_hidden(&history);
    expect(
        &violations,
        Invariant::OwnerOnlyHidden,
        &["viewer v1", "`permission_request`"],
    );
    assert_eq!(violations.len(), 1, "{}", list(&violations));
}

#[test]
fn a_viewer_write_that_was_acknowledged_or_stored_is_caught() {
    let mut history = clean();
    assert_clean(&check_owner_only_hidden(&history));
    history
        .viewer_writes
        .push(acked("v2", "viewer-v2", 600, 650, 4));
    let mut stored = transcript()[0].clone();
    stored.id = MessageId(4);
    stored.content = "viewer-v1".into();
    history.replicas[0].messages.push(stored);
    let violations = check_owner_only_hidden(&history);
    expect(
        &violations,
        Invariant::OwnerOnlyHidden,
        &["viewer v2", "\"viewer-v2\"", "acknowledged"],
    );
    expect(
        &violations,
        Invariant::OwnerOnlyHidden,
        &["viewer v1", "\"viewer-v1\"", "n1"],
    );
    assert_eq!(violations.len(), 2, "{}", list(&violations));
}

#[test]
fn violations_are_capped_per_subject() {
    let mut history = clean();
    for n in 0..30 {
        history.writes.push(acked(
            "c4",
            &format!("c4-op{n}"),
            1_000 + n,
            1_001 + n,
            10 + n,
        ));
    }
    let violations = check_no_acked_write_lost(&history);
    let from_n1: Vec<&Violation> = violations
        .iter()
        .filter(|v| v.node.as_deref() == Some("n1"))
        .collect();
    assert_eq!(
        from_n1.len(),
        VIOLATIONS_LISTED_PER_SUBJECT_MAX + 1,
        "{}",
        list(&violations)
    );
    assert!(
        from_n1[VIOLATIONS_LISTED_PER_SUBJECT_MAX]
            .detail
            .starts_with("10 more violations")
    );
}

#[test]
fn extreme_values_do_not_panic() {
    let mut history = clean();
    let top = Seq(u64::MAX);
    history.followers.push(FollowerLog {
        since: Some(top),
        events: vec![
            EventFrame {
                seq: top,
                event: Event::Status { text: "x".into() },
            },
            EventFrame {
                seq: Seq(0),
                event: Event::UserMessage {
                    message: user(u64::MAX, "c1-op1"),
                },
            },
            EventFrame {
                seq: top,
                event: Event::Done {
                    message: assistant(u64::MAX, "z"),
                    usage: None,
                },
            },
        ],
        ..log("f9", false, None, vec![])
    });
    history.followers.push(log(
        "f10",
        true,
        None,
        vec![
            reset(0, vec![user(u64::MAX, "x")], u64::MAX, None),
            user_event(1, user(0, "y")),
        ],
    ));
    history.agents.push(life("n3", 1, 0, Some(0)));
    history.agents.push(AgentLife {
        start_ns: u64::MAX,
        end_ns: None,
        ..life("n3", 2, 0, None)
    });
    history.writes.push(Write {
        invoked_ms: u64::MAX,
        outcome: WriteOutcome::Acked {
            message_id: MessageId(u64::MAX),
            acked_ms: 0,
        },
        ..failed("c9", "c9-op1", 0)
    });
    let violations = check_all(&history);
    assert!(!violations.is_empty());
}
