//! Messages, their parts, the display events of a turn, and the follower allowlist.

use crate::ids::{ConversationId, MessageId, Seq, TurnId};
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A person.
    User,
    /// The agent.
    Assistant,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageStatus {
    /// Complete (user messages are always complete).
    Complete,
    /// An assistant message whose turn is still running (checkpoint or live view).
    InProgress,
    /// The turn stopped before the agent finished: crash, timeout, node restart.
    Interrupted,
    /// The turn was cancelled by the user.
    Cancelled,
}

/// State of a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolStatus {
    /// Announced, not started.
    Pending,
    /// Running.
    InProgress,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
}

/// One ordered piece of an assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// Visible answer text.
    Text {
        /// The text.
        text: String,
    },
    /// The agent's reasoning ("thinking") text.
    Reasoning {
        /// The text.
        text: String,
    },
    /// A tool call and, once known, its result.
    ToolCall {
        /// The agent's id for the call.
        tool_call_id: String,
        /// Human-readable title.
        title: String,
        /// Kind reported by the agent (`read`, `edit`, `execute`, …), if any.
        kind: Option<String>,
        /// Current status.
        status: ToolStatus,
        /// The raw input as JSON text, if reported.
        input: Option<String>,
        /// The output text, if reported.
        output: Option<String>,
    },
    /// A permission request the node answered by policy, without asking anyone
    /// ([`crate::permissions`]): the record of the automatic answer.
    PermissionDecision {
        /// The tool call it was for, if the agent named it.
        tool_call_id: Option<String>,
        /// What the agent wanted to do.
        title: String,
        /// Its tool kind, if the agent said.
        kind: Option<String>,
        /// Allowed (`true`) or denied.
        allowed: bool,
        /// The rule that decided (`workspace policy: execute = allow`).
        rule: String,
    },
}

/// The `content` of a message derived from its parts: the text parts concatenated in
/// order. Invariant 4: every stored assistant message has `content == content_from_parts(parts)`.
pub fn content_from_parts(parts: &[Part]) -> String {
    let mut content = String::new();
    for part in parts {
        if let Part::Text { text } = part {
            content.push_str(text);
        }
    }
    content
}

/// A message of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Position in the transcript.
    pub id: MessageId,
    /// The turn this message belongs to.
    pub turn: TurnId,
    /// Author.
    pub role: Role,
    /// Lifecycle state.
    pub status: MessageStatus,
    /// Ordered parts (user messages have one text part).
    pub parts: Vec<Part>,
    /// Plain-text content, always `content_from_parts(&parts)`.
    pub content: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Why the agent stopped (assistant messages that ended), as reported or derived.
    pub stop_reason: Option<StopReason>,
    /// For interrupted turns: what went wrong, for a person.
    pub error: Option<String>,
}

/// Why a turn ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The agent finished its answer.
    EndTurn,
    /// The model hit its token limit.
    MaxTokens,
    /// The agent hit its request limit for one turn.
    MaxTurnRequests,
    /// The model refused.
    Refusal,
    /// The turn was cancelled.
    Cancelled,
    /// The agent failed (crash, protocol error, timeout); see the message's `error`.
    Failed,
    /// A stop reason this version does not know, as the agent sent it.
    Other(String),
}

/// Token usage and cost reported by the agent. Owner-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens used in the context.
    pub used_tokens: u64,
    /// Context window size in tokens.
    pub size_tokens: u64,
    /// Cost so far, in the agent's currency units, if reported.
    pub cost: Option<f64>,
    /// The currency of `cost`, if reported.
    pub currency: Option<String>,
}

/// One step of an agent's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// What the step does.
    pub content: String,
    /// `pending`, `in_progress` or `completed`.
    pub status: String,
}

/// A command the agent offers in its session (`available_commands_update`): the user
/// runs it by sending `/<name> <input>` as a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    /// Its name, without the slash.
    pub name: String,
    /// What it does.
    pub description: String,
    /// What to type after it, when it takes input.
    pub hint: Option<String>,
}

/// Most slash commands kept per conversation (more are dropped).
pub const SLASH_COMMANDS_MAX: usize = 128;

/// An option offered by a permission request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionOption {
    /// Id to answer with.
    pub option_id: String,
    /// Label for a person.
    pub name: String,
    /// `allow_once`, `allow_always`, `reject_once` or `reject_always`.
    pub kind: String,
}

/// The state a follower needs to render a conversation from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The conversation.
    pub conversation: ConversationId,
    /// Committed messages, oldest first (at most the newest `SNAPSHOT_MESSAGES_MAX`).
    pub messages: Vec<Message>,
    /// How many older messages were left out of `messages`.
    pub omitted_messages: u64,
    /// The running turn's assistant message as streamed so far, if a turn is running.
    pub in_flight: Option<Message>,
}

/// The most committed messages a snapshot carries.
pub const SNAPSHOT_MESSAGES_MAX: usize = 500;

/// A display event of a conversation. Encoded by declaration index: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Discard what you have: the conversation as of this event's sequence number.
    Reset {
        /// The state to render.
        snapshot: Snapshot,
    },
    /// A turn started.
    TurnStarted {
        /// The turn.
        turn: TurnId,
        /// The assistant message the turn will produce.
        message_id: MessageId,
    },
    /// A user message was committed.
    UserMessage {
        /// The message.
        message: Message,
    },
    /// Answer text streamed.
    TextChunk {
        /// The assistant message.
        message_id: MessageId,
        /// The new text.
        text: String,
    },
    /// Reasoning text streamed.
    ReasoningChunk {
        /// The assistant message.
        message_id: MessageId,
        /// The new text.
        text: String,
    },
    /// A tool call was announced or updated (the part's full current state).
    ToolCall {
        /// The assistant message.
        message_id: MessageId,
        /// The tool call as a [`Part::ToolCall`].
        part: Part,
    },
    /// The agent's plan changed.
    Plan {
        /// All entries of the plan.
        entries: Vec<PlanEntry>,
    },
    /// A short status line ("starting agent", "agent ready").
    Status {
        /// The text.
        text: String,
    },
    /// The turn ended; the assistant message is committed.
    Done {
        /// The committed assistant message (status, stop reason and parts final).
        message: Message,
        /// Usage at the end of the turn: only the owner sees it (`None` for followers).
        usage: Option<Usage>,
    },
    /// The turn failed; a `Done` with an interrupted message follows.
    Error {
        /// What went wrong, for a person: Shoal's description, never the agent's own
        /// output (its stderr reaches only the initiator, as an `AgentWarning`).
        message: String,
    },
    /// Owner-only: the agent asks permission for a tool call.
    PermissionRequest {
        /// Id to answer with `RespondPermission`.
        request: u64,
        /// What the agent wants to do.
        title: String,
        /// The choices.
        options: Vec<PermissionOption>,
    },
    /// Owner-only: usage and cost update.
    UsageUpdate {
        /// The usage.
        usage: Usage,
    },
    /// Owner-only: an error from the agent's tooling (MCP servers, file access) or its
    /// workspace (a snapshot that was not taken, entries left out of one).
    AgentWarning {
        /// What happened.
        message: String,
    },
}

impl Event {
    /// A stable lowercase name of the event type (used in JSON output).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Reset { .. } => "reset",
            Event::TurnStarted { .. } => "turn_started",
            Event::UserMessage { .. } => "user_message",
            Event::TextChunk { .. } => "text",
            Event::ReasoningChunk { .. } => "reasoning",
            Event::ToolCall { .. } => "tool_call",
            Event::Plan { .. } => "plan",
            Event::Status { .. } => "status",
            Event::Done { .. } => "done",
            Event::Error { .. } => "error",
            Event::PermissionRequest { .. } => "permission_request",
            Event::UsageUpdate { .. } => "usage",
            Event::AgentWarning { .. } => "agent_warning",
        }
    }

    /// The follower allowlist: the event as a follower may see it, or `None` when it is
    /// owner-only. This is the one place that decides; a new event type is owner-only
    /// until someone adds it here.
    pub fn for_follower(&self) -> Option<Event> {
        match self {
            Event::Reset { .. }
            | Event::TurnStarted { .. }
            | Event::UserMessage { .. }
            | Event::TextChunk { .. }
            | Event::ReasoningChunk { .. }
            | Event::ToolCall { .. }
            | Event::Plan { .. }
            | Event::Status { .. }
            | Event::Error { .. } => Some(self.clone()),
            Event::Done { message, .. } => Some(Event::Done {
                message: message.clone(),
                usage: None,
            }),
            Event::PermissionRequest { .. }
            | Event::UsageUpdate { .. }
            | Event::AgentWarning { .. } => None,
        }
    }
}

impl Event {
    /// The event as an editor who started the turn sees it: the follower view plus the
    /// permission requests they may answer (never the owner's usage, cost or warnings).
    pub fn for_editor(&self) -> Option<Event> {
        match self {
            Event::PermissionRequest { .. } => Some(self.clone()),
            other => other.for_follower(),
        }
    }
}

impl Message {
    /// The message as a viewer or editor reads it: an agent's error text (which may
    /// quote its output) becomes a generic line.
    pub fn for_follower(&self) -> Message {
        let mut message = self.clone();
        if message.error.is_some() {
            message.error = Some("the turn failed".to_owned());
        }
        message
    }
}

/// An event with its per-conversation sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// Sequence number; consecutive events differ by one within an activation.
    pub seq: Seq,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_parts_in_order() {
        let parts = vec![
            Part::Reasoning { text: "hmm".into() },
            Part::Text { text: "a".into() },
            Part::ToolCall {
                tool_call_id: "1".into(),
                title: "t".into(),
                kind: None,
                status: ToolStatus::Completed,
                input: None,
                output: Some("x".into()),
            },
            Part::Text { text: "b".into() },
        ];
        assert_eq!(content_from_parts(&parts), "ab");
    }

    #[test]
    fn owner_only_events_never_reach_followers() {
        let usage = Usage {
            used_tokens: 1,
            size_tokens: 2,
            cost: Some(0.1),
            currency: None,
        };
        assert!(
            Event::UsageUpdate {
                usage: usage.clone()
            }
            .for_follower()
            .is_none()
        );
        assert!(
            Event::PermissionRequest {
                request: 1,
                title: "x".into(),
                options: vec![]
            }
            .for_follower()
            .is_none()
        );
        assert!(
            Event::AgentWarning {
                message: "x".into()
            }
            .for_follower()
            .is_none()
        );
        let message = Message {
            id: MessageId(1),
            turn: TurnId(1),
            role: Role::Assistant,
            status: MessageStatus::Complete,
            parts: vec![],
            content: String::new(),
            created_at_ms: 0,
            stop_reason: Some(StopReason::EndTurn),
            error: None,
        };
        let done = Event::Done {
            message,
            usage: Some(usage),
        }
        .for_follower()
        .unwrap();
        assert!(matches!(done, Event::Done { usage: None, .. }));
    }
}
