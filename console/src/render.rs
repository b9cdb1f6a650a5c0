//! Human-readable output: transcripts, event lines, conversation lists.

use crate::json::{role_str, status_str, tool_status_str};
use shoal_protocol::client::{ConversationDetail, ConversationSummary};
use shoal_protocol::transcript::{Event, Message, MessageStatus, Part, Role, Snapshot};
use std::io::{self, Write};

/// Longest side line (tool calls, status, reasoning), in characters.
const SIDE_LINE_CHARS_MAX: usize = 120;

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
    let mut printer = TranscriptPrinter::default();
    for message in &detail.messages {
        printer.message(out, message)?;
    }
    if let Some(in_flight) = &detail.in_flight {
        printer.message(out, in_flight)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
