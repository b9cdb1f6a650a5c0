//! Human-readable output: transcripts, event lines, conversation lists, cluster tables.

use crate::json::{role_str, status_str, tool_status_str};
use shoal_protocol::admin::{ClusterActorInfo, MemberInfo, ShardInfo};
use shoal_protocol::client::{ConversationDetail, ConversationSummary};
use shoal_protocol::transcript::{Event, Message, MessageStatus, Part, Role, Snapshot};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Longest side line (tool calls, status, reasoning), in characters.
const SIDE_LINE_CHARS_MAX: usize = 120;
/// Longest single value (node id, address, version, state) in a table, in characters.
const CELL_CHARS_MAX: usize = 64;

/// `text` on one line (whitespace collapsed), cut to `max_chars` with an ellipsis.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        return collapsed;
    }
    let mut cut: String = collapsed
        .chars()
        .take(max_chars.saturating_sub(1))
        .collect();
    cut.push('…');
    cut
}

/// A short bracketed line for an event that is not answer text, or `None` for events
/// that have no line of their own (text, turn start, user message, done, usage, reset).
pub(crate) fn side_line(event: &Event) -> Option<String> {
    let line = match event {
        Event::ReasoningChunk { text, .. } => {
            let text = one_line(text, SIDE_LINE_CHARS_MAX);
            if text.is_empty() {
                return None;
            }
            format!("[reasoning] {text}")
        }
        Event::ToolCall { part, .. } => match part {
            Part::ToolCall { title, status, .. } => format!(
                "[tool] {} ({})",
                one_line(title, SIDE_LINE_CHARS_MAX),
                tool_status_str(*status)
            ),
            Part::PermissionDecision {
                title,
                allowed,
                rule,
                ..
            } => format!(
                "[permission] {} {} ({})",
                if *allowed { "allowed" } else { "denied" },
                one_line(title, SIDE_LINE_CHARS_MAX),
                one_line(rule, SIDE_LINE_CHARS_MAX)
            ),
            Part::Text { .. } | Part::Reasoning { .. } => return None,
        },
        Event::Plan { entries } => {
            let steps = entries
                .iter()
                .map(|e| format!("{} ({})", e.content, e.status))
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "[plan] {} steps: {}",
                entries.len(),
                one_line(&steps, SIDE_LINE_CHARS_MAX)
            )
        }
        Event::Status { text } => format!("[status] {}", one_line(text, SIDE_LINE_CHARS_MAX)),
        Event::Error { message } => format!("[error] {}", one_line(message, SIDE_LINE_CHARS_MAX)),
        Event::AgentWarning { message } => {
            format!("[warning] {}", one_line(message, SIDE_LINE_CHARS_MAX))
        }
        Event::PermissionRequest { title, .. } => {
            format!("[permission] {}", one_line(title, SIDE_LINE_CHARS_MAX))
        }
        Event::Reset { .. }
        | Event::TurnStarted { .. }
        | Event::UserMessage { .. }
        | Event::TextChunk { .. }
        | Event::Done { .. }
        | Event::UsageUpdate { .. } => return None,
    };
    Some(line)
}

/// The label before a message's text: `user:`, `assistant:`, `assistant [interrupted: …]:`.
fn message_label(message: &Message) -> String {
    let role = role_str(message.role);
    match (message.role, message.status) {
        (Role::User, _) | (Role::Assistant, MessageStatus::Complete) => format!("{role}:"),
        (Role::Assistant, status) => match &message.error {
            Some(error) => format!(
                "{role} [{}: {}]:",
                status_str(status),
                one_line(error, SIDE_LINE_CHARS_MAX)
            ),
            None => format!("{role} [{}]:", status_str(status)),
        },
    }
}

/// Prints a followed conversation as a running transcript.
#[derive(Debug, Default)]
pub(crate) struct TranscriptPrinter {
    /// The cursor is after streamed text, not at the start of a line.
    mid_line: bool,
}

impl TranscriptPrinter {
    /// Prints one event.
    pub(crate) fn event(&mut self, out: &mut impl Write, event: &Event) -> io::Result<()> {
        match event {
            Event::Reset { snapshot } => self.snapshot(out, snapshot),
            Event::TurnStarted { .. } => {
                self.end_line(out)?;
                write!(out, "assistant: ")?;
                self.mid_line = true;
                out.flush()
            }
            Event::UserMessage { message } => self.message(out, message),
            Event::TextChunk { text, .. } => {
                write!(out, "{text}")?;
                if !text.is_empty() {
                    self.mid_line = !text.ends_with('\n');
                }
                out.flush()
            }
            Event::Done { message, .. } => {
                self.end_line(out)?;
                let mut line = format!("[done: {}", status_str(message.status));
                if let Some(error) = &message.error {
                    line.push_str(": ");
                    line.push_str(&one_line(error, SIDE_LINE_CHARS_MAX));
                }
                line.push(']');
                writeln!(out, "{line}")?;
                out.flush()
            }
            other => match side_line(other) {
                Some(line) => {
                    self.end_line(out)?;
                    writeln!(out, "  {line}")?;
                    out.flush()
                }
                None => Ok(()),
            },
        }
    }

    fn snapshot(&mut self, out: &mut impl Write, snapshot: &Snapshot) -> io::Result<()> {
        self.end_line(out)?;
        let mut header = format!(
            "--- {} ({} messages",
            snapshot.conversation,
            snapshot.messages.len()
        );
        if snapshot.omitted_messages > 0 {
            header.push_str(&format!(", {} older not shown", snapshot.omitted_messages));
        }
        header.push_str(") ---");
        writeln!(out, "{header}")?;
        for message in &snapshot.messages {
            self.message(out, message)?;
        }
        if let Some(in_flight) = &snapshot.in_flight {
            write!(out, "assistant: {}", in_flight.content)?;
            self.mid_line = !in_flight.content.ends_with('\n');
        }
        out.flush()
    }

    /// Prints one whole message.
    pub(crate) fn message(&mut self, out: &mut impl Write, message: &Message) -> io::Result<()> {
        self.end_line(out)?;
        writeln!(out, "{} {}", message_label(message), message.content)?;
        out.flush()
    }

    /// Ends a line of streamed text, if one is open.
    pub(crate) fn end_line(&mut self, out: &mut impl Write) -> io::Result<()> {
        if self.mid_line {
            writeln!(out)?;
            self.mid_line = false;
        }
        Ok(())
    }
}

/// One line per conversation: id, message count, state, title.
pub(crate) fn summary_line(summary: &ConversationSummary) -> String {
    format!(
        "{}  {:>4} msgs  {:<7}  {}",
        summary.id,
        summary.message_count,
        if summary.turn_running {
            "running"
        } else {
            "idle"
        },
        summary.title.as_deref().unwrap_or("(untitled)")
    )
}

/// A conversation: a header line, then its transcript.
pub(crate) fn detail(out: &mut impl Write, detail: &ConversationDetail) -> io::Result<()> {
    let summary = &detail.summary;
    writeln!(
        out,
        "{}  {}  agent {}  owner {}  {} messages{}",
        summary.id,
        summary.title.as_deref().unwrap_or("(untitled)"),
        summary.agent,
        summary.owner,
        summary.message_count,
        if summary.turn_running {
            "  (turn running)"
        } else {
            ""
        }
    )?;
    transcript(out, &detail.messages, detail.in_flight.as_ref())?;
    if !detail.commands.is_empty() {
        let names: Vec<String> = detail
            .commands
            .iter()
            .map(|c| format!("/{}", c.name))
            .collect();
        writeln!(out, "commands: {}", names.join(" "))?;
    }
    crate::conv_settings::lines(out, &detail.settings)?;
    out.flush()
}

/// Numbered messages (positions for `conv rewind`, `fork`), then the in-flight one.
pub(crate) fn transcript(
    out: &mut impl Write,
    messages: &[Message],
    in_flight: Option<&Message>,
) -> io::Result<()> {
    let mut printer = TranscriptPrinter::default();
    for message in messages {
        // The position (for `conv rewind`, `fork`) and, for a reply of several parts, how
        // many (for `--parts`).
        match message.parts.len() {
            n if message.role == Role::Assistant && n > 1 => {
                write!(out, "{} [{n} parts] ", message.id)?
            }
            _ => write!(out, "{} ", message.id)?,
        }
        printer.message(out, message)?;
    }
    if let Some(in_flight) = in_flight {
        printer.message(out, in_flight)?;
    }
    out.flush()
}

/// How a table column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A value from the network made safe for one table cell: one line, no control characters
/// (they could drive the terminal), at most [`CELL_CHARS_MAX`] characters.
pub(crate) fn cell(text: &str) -> String {
    safe_line(text, CELL_CHARS_MAX)
}

/// A value from the network made safe for one line: no control characters, at most
/// `max_chars` characters.
pub(crate) fn safe_line(text: &str, max_chars: usize) -> String {
    one_line(text, max_chars)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A header line and one line per row, columns two spaces apart, no trailing whitespace.
pub(crate) fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header
        .iter()
        .map(|(label, _)| label.chars().count())
        .collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let line = |values: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for ((value, (_, align)), width) in values.zip(header).zip(&widths) {
            if !line.is_empty() {
                line.push_str("  ");
            }
            let padded = match align {
                Align::Left => format!("{value:<width$}"),
                Align::Right => format!("{value:>width$}"),
            };
            line.push_str(&padded);
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().map(|(label, _)| *label))];
    lines.extend(
        rows.iter()
            .map(|row| line(&mut row.iter().map(String::as_str))),
    );
    lines
}

/// `2024-05-06 07:08 UTC` for milliseconds since the Unix epoch; `-` for 0 (never set).
pub(crate) fn utc_time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let minutes = ms / 60_000;
    let (days, minute_of_day) = (minutes / 1440, minutes % 1440);
    // Days to a civil date (H. Hinnant's `civil_from_days`, for days after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// `NODE ADDR STATE LEADERS VERSION`, one row per member in the given order, with a
/// `draining` marker after the version of a draining member.
pub(crate) fn members_table(members: &[MemberInfo]) -> Vec<String> {
    let header = [
        ("NODE", Align::Left),
        ("ADDR", Align::Left),
        ("STATE", Align::Left),
        ("LEADERS", Align::Right),
        ("VERSION", Align::Left),
        ("", Align::Left),
    ];
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|member| {
            vec![
                cell(&member.node_id),
                cell(&member.addr),
                cell(&member.state),
                member.leaders.to_string(),
                cell(&member.version),
                if member.draining { "draining" } else { "" }.to_owned(),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// `NODE KIND STATE FOLLOWERS KEY`, one row per actor in the given order.
pub(crate) fn actors_table(actors: &[ClusterActorInfo]) -> Vec<String> {
    let header = [
        ("NODE", Align::Left),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("FOLLOWERS", Align::Right),
        ("KEY", Align::Left),
    ];
    let rows: Vec<Vec<String>> = actors
        .iter()
        .map(|a| {
            vec![
                cell(&a.node),
                cell(&a.kind),
                cell(&a.state),
                a.followers.to_string(),
                cell(&a.key),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// `SHARD LEADER REPLICAS TERM APPLIED`, one row per shard in the given order. Replicas are
/// comma-joined with learners after them as `+name`; an unknown leader or applied index
/// is `-`.
pub(crate) fn shards_table(shards: &[ShardInfo]) -> Vec<String> {
    let header = [
        ("SHARD", Align::Right),
        ("LEADER", Align::Left),
        ("REPLICAS", Align::Left),
        ("TERM", Align::Right),
        ("APPLIED", Align::Right),
    ];
    let rows: Vec<Vec<String>> = shards
        .iter()
        .map(|shard| {
            let members: Vec<String> = shard
                .replicas
                .iter()
                .map(|replica| cell(replica))
                .chain(
                    shard
                        .learners
                        .iter()
                        .map(|learner| format!("+{}", cell(learner))),
                )
                .collect();
            vec![
                shard.shard.to_string(),
                shard.leader.as_deref().map_or_else(|| "-".to_owned(), cell),
                if members.is_empty() {
                    "-".to_owned()
                } else {
                    members.join(",")
                },
                shard.term.to_string(),
                shard
                    .applied_index
                    .map_or_else(|| "-".to_owned(), |index| index.to_string()),
            ]
        })
        .collect();
    table(&header, &rows)
}

/// `64 shards, 64 with a leader; leaders per node: n1=22 n2=21 n3=21` (nodes by name).
pub(crate) fn shards_summary(shards: &[ShardInfo]) -> String {
    let mut leaders_per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for leader in shards.iter().filter_map(|shard| shard.leader.as_deref()) {
        *leaders_per_node.entry(leader).or_default() += 1;
    }
    let led: usize = leaders_per_node.values().sum();
    let per_node = if leaders_per_node.is_empty() {
        "none".to_owned()
    } else {
        leaders_per_node
            .iter()
            .map(|(node, count)| format!("{}={count}", cell(node)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let noun = if shards.len() == 1 { "shard" } else { "shards" };
    format!(
        "{} {noun}, {led} with a leader; leaders per node: {per_node}",
        shards.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::admin::{MemberInfo, ShardInfo};
    use shoal_protocol::transcript::StopReason;
    use shoal_protocol::{MessageId, TurnId};

    fn message(role: Role, status: MessageStatus, content: &str) -> Message {
        Message {
            id: MessageId(0),
            turn: TurnId(1),
            role,
            status,
            parts: vec![Part::Text {
                text: content.into(),
            }],
            content: content.into(),
            created_at_ms: 0,
            stop_reason: Some(StopReason::EndTurn),
            error: None,
        }
    }

    #[test]
    fn one_line_collapses_and_cuts() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn transcript_streams_text_between_labels() {
        let mut out = Vec::new();
        let mut printer = TranscriptPrinter::default();
        let events = [
            Event::UserMessage {
                message: message(Role::User, MessageStatus::Complete, "hi"),
            },
            Event::TurnStarted {
                turn: TurnId(1),
                message_id: MessageId(1),
            },
            Event::TextChunk {
                message_id: MessageId(1),
                text: "echo: ".into(),
            },
            Event::TextChunk {
                message_id: MessageId(1),
                text: "hi".into(),
            },
            Event::Status {
                text: "agent\nready".into(),
            },
            Event::Done {
                message: message(Role::Assistant, MessageStatus::Complete, "echo: hi"),
                usage: None,
            },
        ];
        for event in &events {
            printer.event(&mut out, event).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "user: hi\nassistant: echo: hi\n  [status] agent ready\n[done: complete]\n"
        );
    }

    #[test]
    fn unfinished_messages_show_their_status() {
        let mut interrupted = message(Role::Assistant, MessageStatus::Interrupted, "par");
        interrupted.error = Some("agent crashed".into());
        assert_eq!(
            message_label(&interrupted),
            "assistant [interrupted: agent crashed]:"
        );
        let user = message(Role::User, MessageStatus::Complete, "x");
        assert_eq!(message_label(&user), "user:");
    }

    fn shard(shard: u16, leader: Option<&str>) -> ShardInfo {
        ShardInfo {
            shard,
            leader: leader.map(str::to_owned),
            replicas: vec!["n1".into(), "n2".into(), "n3".into()],
            learners: Vec::new(),
            term: 3,
            applied_index: Some(1200),
            hosted_here: false,
            quiet: false,
        }
    }

    #[test]
    fn members_table_lines_up_and_marks_draining() {
        let member = |id: &str, state: &str, leaders: u32, draining: bool| MemberInfo {
            node_id: id.into(),
            addr: format!("10.0.0.{}:7000", leaders),
            state: state.into(),
            version: "0.1.0".into(),
            leaders,
            draining,
        };
        let lines = members_table(&[
            member("n1", "alive", 22, false),
            member("node-2", "suspect", 9, true),
        ]);
        assert_eq!(
            lines,
            [
                "NODE    ADDR            STATE    LEADERS  VERSION",
                "n1      10.0.0.22:7000  alive         22  0.1.0",
                "node-2  10.0.0.9:7000   suspect        9  0.1.0    draining",
            ]
        );
    }

    #[test]
    fn shards_table_shows_learners_and_unknowns() {
        let mut learning = shard(12, None);
        learning.learners = vec!["n4".into()];
        learning.applied_index = None;
        let lines = shards_table(&[shard(0, Some("n1")), learning]);
        assert_eq!(
            lines,
            [
                "SHARD  LEADER  REPLICAS      TERM  APPLIED",
                "    0  n1      n1,n2,n3         3     1200",
                "   12  -       n1,n2,n3,+n4     3        -",
            ]
        );
    }

    #[test]
    fn shards_summary_counts_leaders_per_node() {
        let shards: Vec<ShardInfo> = (0..64u16)
            .map(|i| shard(i, Some(["n1", "n2", "n3"][usize::from(i % 3)])))
            .collect();
        assert_eq!(
            shards_summary(&shards),
            "64 shards, 64 with a leader; leaders per node: n1=22 n2=21 n3=21"
        );
        assert_eq!(
            shards_summary(&[shard(0, None)]),
            "1 shard, 0 with a leader; leaders per node: none"
        );
    }

    #[test]
    fn utc_times_are_civil_dates() {
        assert_eq!(utc_time(0), "-");
        assert_eq!(utc_time(1), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc_time(1_700_000_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_time(4_107_542_399_000), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn cells_cannot_drive_the_terminal() {
        assert_eq!(cell("n1\u{1b}[2J"), "n1?[2J");
        assert_eq!(cell("two\nlines"), "two lines");
    }
}
