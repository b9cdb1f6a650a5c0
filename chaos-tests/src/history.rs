//! What a chaos run records, for the checkers in [`crate::check`] to judge.
//!
//! A [`History`] holds four kinds of evidence, each gathered where the fault injection
//! cannot reach it:
//! * [`Write`]s: the user messages clients tried to send, with the harness clock at
//!   invocation and acknowledgement and the outcome the client saw;
//! * [`ReplicaCopy`]s: each replica's copy of each conversation, read after the faults
//!   healed;
//! * [`AgentLife`]s: agent processes as witnessed from outside the nodes, on the
//!   system-wide monotonic clock;
//! * [`FollowerLog`]s: the frames each follower's SDK stream delivered, in order.
//!
//! Histories are plain serde data: a failing run can be saved as JSON ([`History::save`])
//! and checked again later ([`History::load`]).

use serde::{Deserialize, Serialize};
use shoal_protocol::transcript::{EventFrame, Message};
use shoal_protocol::{ConversationId, MessageId, Seq};
use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest history file [`History::load`] reads, in bytes.
pub const HISTORY_FILE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Everything a chaos run recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// User messages clients tried to send.
    pub writes: Vec<Write>,
    /// Each replica's copy of each conversation, read after healing.
    pub replicas: Vec<ReplicaCopy>,
    /// Agent process lives as witnessed outside the nodes.
    pub agents: Vec<AgentLife>,
    /// What each follower's SDK stream delivered.
    pub followers: Vec<FollowerLog>,
    /// Messages viewers tried to send with their viewer token (each must be refused and
    /// appear nowhere).
    #[serde(default)]
    pub viewer_writes: Vec<Write>,
}

/// One user message a client tried to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// The conversation written to.
    pub conversation: ConversationId,
    /// The client that sent it, e.g. `c3`.
    pub client: String,
    /// The message text, unique per write, e.g. `c3-op17`.
    pub text: String,
    /// Harness clock (ms since run start) when send was called.
    pub invoked_ms: u64,
    /// What the client saw.
    pub outcome: WriteOutcome,
}

/// What the client saw of a write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// `Accepted` arrived: the write must be durable.
    Acked {
        /// The committed user message's id, as `Accepted` reported it.
        message_id: MessageId,
        /// Harness clock (ms since run start) when `Accepted` arrived.
        acked_ms: u64,
    },
    /// The send failed: the write may or may not have been applied.
    Failed {
        /// The error the client saw.
        error: String,
    },
}

/// One replica's copy of one conversation, read after healing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaCopy {
    /// The node holding the replica, e.g. `n2`.
    pub node: String,
    /// The conversation.
    pub conversation: ConversationId,
    /// Its messages, oldest first.
    pub messages: Vec<Message>,
}

/// One agent process life, witnessed outside the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLife {
    /// The node that ran it.
    pub node: String,
    /// The conversation (a [`ConversationId`] as text).
    pub conversation: String,
    /// Its process id.
    pub pid: u32,
    /// `CLOCK_MONOTONIC` ns at start (system-wide, comparable across processes).
    pub start_ns: u64,
    /// `CLOCK_MONOTONIC` ns at exit; `None` when it was still alive when the run ended.
    pub end_ns: Option<u64>,
}

/// What one follower's SDK stream delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowerLog {
    /// The follower's name, e.g. `f2`.
    pub follower: String,
    /// The followed conversation.
    pub conversation: ConversationId,
    /// `false` for a viewer (shared with): owner-only events are forbidden.
    pub owner: bool,
    /// What the follow started from (usually `None`: a snapshot).
    pub since: Option<Seq>,
    /// Delivered frames, in delivery order.
    pub events: Vec<EventFrame>,
}

/// Counts for a one-line summary of a history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySummary {
    /// Distinct conversations named anywhere in the history.
    pub conversations: usize,
    /// Writes attempted.
    pub writes: usize,
    /// Writes acknowledged.
    pub acked: usize,
    /// Writes failed.
    pub failed: usize,
    /// Replica copies read.
    pub replica_copies: usize,
    /// Agent lives witnessed.
    pub agent_lives: usize,
    /// Follower logs.
    pub followers: usize,
    /// Frames delivered to all followers.
    pub follower_events: usize,
}

impl fmt::Display for HistorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} conversations, {} writes ({} acked, {} failed), {} replica copies, {} agent lives, {} followers ({} events)",
            self.conversations,
            self.writes,
            self.acked,
            self.failed,
            self.replica_copies,
            self.agent_lives,
            self.followers,
            self.follower_events
        )
    }
}

/// Why a history could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The history could not be encoded as JSON; nothing was written.
    #[error("could not encode the history as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The text is not a history in this crate's JSON format.
    #[error(
        "{origin} is not a recorded history ({source}); was it written by this version of the chaos tests?"
    )]
    Decode {
        /// Where the text came from (a file path or "the given text").
        origin: String,
        /// What the JSON decoder said.
        source: serde_json::Error,
    },
    /// Reading or writing a history file failed; a failed write may leave a partial file.
    #[error("could not {action} history file {}: {source}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`HISTORY_FILE_BYTES_MAX`]; nothing was read.
    #[error(
        "history file {} is larger than {HISTORY_FILE_BYTES_MAX} bytes (HISTORY_FILE_BYTES_MAX); is it really a history?",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
}

impl History {
    /// Appends everything `other` recorded (e.g. the part of a run recorded by another task).
    pub fn merge(&mut self, other: History) {
        let History {
            writes,
            replicas,
            agents,
            followers,
            viewer_writes,
        } = other;
        self.writes.extend(writes);
        self.replicas.extend(replicas);
        self.agents.extend(agents);
        self.followers.extend(followers);
        self.viewer_writes.extend(viewer_writes);
    }

    /// Counts for a one-line summary.
    pub fn summary(&self) -> HistorySummary {
        let conversations: BTreeSet<String> = self
            .writes
            .iter()
            .map(|w| w.conversation.to_string())
            .chain(self.replicas.iter().map(|r| r.conversation.to_string()))
            .chain(self.agents.iter().map(|a| a.conversation.clone()))
            .chain(self.followers.iter().map(|f| f.conversation.to_string()))
            .collect();
        let acked = self
            .writes
            .iter()
            .filter(|w| matches!(w.outcome, WriteOutcome::Acked { .. }))
            .count();
        HistorySummary {
            conversations: conversations.len(),
            writes: self.writes.len(),
            acked,
            failed: self.writes.len() - acked,
            replica_copies: self.replicas.len(),
            agent_lives: self.agents.len(),
            followers: self.followers.len(),
            follower_events: self.followers.iter().map(|f| f.events.len()).sum(),
        }
    }

    /// The history as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, HistoryError> {
        serde_json::to_string_pretty(self).map_err(HistoryError::Encode)
    }

    /// Parses a history from JSON written by [`History::to_json`].
    pub fn from_json(text: &str) -> Result<History, HistoryError> {
        serde_json::from_str(text).map_err(|source| HistoryError::Decode {
            origin: "the given text".to_owned(),
            source,
        })
    }

    /// Writes the history as JSON to `path`, replacing the file.
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        let json = self.to_json()?;
        std::fs::write(path, json).map_err(|source| HistoryError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a history saved by [`History::save`].
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let io_error = |source| HistoryError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_error)?;
        let mut text = String::new();
        // One byte more than allowed tells "exactly at the limit" from "over it".
        file.take(HISTORY_FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(io_error)?;
        if text.len() as u64 > HISTORY_FILE_BYTES_MAX {
            return Err(HistoryError::TooLarge {
                path: path.to_owned(),
            });
        }
        serde_json::from_str(&text).map_err(|source| HistoryError::Decode {
            origin: format!("history file {}", path.display()),
            source,
        })
    }
}

/// The highest committed message id an event shows a follower, if it shows one: the last
/// message of a `Reset` snapshot, a committed user message, or a turn's `Done`.
pub fn committed_up_to(event: &shoal_protocol::transcript::Event) -> Option<u64> {
    use shoal_protocol::transcript::Event;
    match event {
        Event::Reset { snapshot } => snapshot.messages.last().map(|m| m.id.0),
        Event::UserMessage { message } | Event::Done { message, .. } => Some(message.id.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::ShardId;
    use shoal_protocol::transcript::{
        Event, MessageStatus, Part, Role, Snapshot, StopReason, Usage,
    };
    use shoal_protocol::{MessageId, TurnId};

    fn sample() -> History {
        // A uid above u64::MAX checks that JSON keeps 128-bit ids exact.
        let conversation = ConversationId::new(ShardId(3), u128::MAX - 7);
        let message = Message {
            id: MessageId(1),
            turn: TurnId(1),
            role: Role::Assistant,
            status: MessageStatus::Complete,
            parts: vec![Part::Text { text: "hi".into() }],
            content: "hi".into(),
            created_at_ms: 5,
            stop_reason: Some(StopReason::EndTurn),
            error: None,
        };
        History {
            writes: vec![
                Write {
                    conversation,
                    client: "c1".into(),
                    text: "c1-op1".into(),
                    invoked_ms: 1,
                    outcome: WriteOutcome::Acked {
                        message_id: MessageId(0),
                        acked_ms: 2,
                    },
                },
                Write {
                    conversation,
                    client: "c1".into(),
                    text: "c1-op2".into(),
                    invoked_ms: 3,
                    outcome: WriteOutcome::Failed {
                        error: "timeout".into(),
                    },
                },
            ],
            replicas: vec![ReplicaCopy {
                node: "n1".into(),
                conversation,
                messages: vec![message.clone()],
            }],
            agents: vec![AgentLife {
                node: "n1".into(),
                conversation: conversation.to_string(),
                pid: 42,
                start_ns: 10,
                end_ns: None,
            }],
            followers: vec![FollowerLog {
                follower: "f1".into(),
                conversation,
                owner: true,
                since: None,
                events: vec![
                    EventFrame {
                        seq: Seq(1 << 32),
                        event: Event::Reset {
                            snapshot: Snapshot {
                                conversation,
                                messages: vec![],
                                omitted_messages: 0,
                                in_flight: None,
                            },
                        },
                    },
                    EventFrame {
                        seq: Seq((1 << 32) + 1),
                        event: Event::Done {
                            message,
                            usage: Some(Usage {
                                used_tokens: 1,
                                size_tokens: 2,
                                cost: Some(0.5),
                                currency: Some("USD".into()),
                            }),
                        },
                    },
                ],
            }],
            viewer_writes: vec![Write {
                conversation,
                client: "f1.1#1".into(),
                text: "viewer-f1.1#1".into(),
                invoked_ms: 3,
                outcome: WriteOutcome::Failed {
                    error: "forbidden".into(),
                },
            }],
        }
    }

    #[test]
    fn json_round_trip_is_exact() {
        let history = sample();
        let json = history.to_json().unwrap();
        assert_eq!(History::from_json(&json).unwrap(), history);
        let err = History::from_json("{\"writes\": 3}").unwrap_err();
        assert!(
            err.to_string().contains("is not a recorded history"),
            "{err}"
        );
    }

    #[test]
    fn save_and_load_round_trip() {
        let path =
            std::env::temp_dir().join(format!("checkers-history-{}.json", std::process::id()));
        let history = sample();
        history.save(&path).unwrap();
        let loaded = History::load(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(loaded.unwrap(), history);
        let missing = History::load(&path).unwrap_err();
        assert!(
            missing.to_string().contains("could not read history file"),
            "{missing}"
        );
    }

    #[test]
    fn merge_appends_and_summary_counts() {
        let mut history = sample();
        history.merge(sample());
        let summary = history.summary();
        assert_eq!(
            summary,
            HistorySummary {
                conversations: 1,
                writes: 4,
                acked: 2,
                failed: 2,
                replica_copies: 2,
                agent_lives: 2,
                followers: 2,
                follower_events: 4,
            }
        );
        assert_eq!(
            summary.to_string(),
            "1 conversations, 4 writes (2 acked, 2 failed), 2 replica copies, 2 agent lives, 2 followers (4 events)"
        );
    }
}
