//! The messages a conversation actor takes: requests from the gateway and the shard
//! host ([`ConversationMsg`]) and what its agent session reports ([`AgentEvent`]).

use super::*;

/// Events from the agent-session actor.
#[derive(Debug)]
pub enum AgentEvent {
    /// A status line for the turn.
    Status(String),
    /// An owner-only warning for the turn (a credential left out).
    Warning(String),
    /// The agent process started with this session id, and these credentials (names).
    SessionStarted {
        /// The agent's session id.
        session: String,
        /// The workspace credentials in its environment.
        credentials: Vec<String>,
        /// The modes and config options its session offers (`None`: none).
        offer: Option<shoal_protocol::settings::SessionOffer>,
    },
    /// A session update.
    Update(AgentUpdate),
    /// The prompt ended (`Err` carries what went wrong).
    Ended(Result<PromptOutcome, AgentFailure>),
}

/// Why a turn's agent failed (its start or its prompt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFailure {
    /// Shoal's own description, without anything the agent printed: it goes into the
    /// `error` event every follower sees and into the stored message.
    pub message: String,
    /// What the agent printed about it (the end of its stderr), bounded and with
    /// credentials redacted ([`crate::agent_process::AgentError::agent_output`]): only
    /// the turn's initiator gets it, as an `agent_warning`.
    pub agent_output: Option<String>,
}

impl AgentFailure {
    /// A failure of `error`, described as `message` (which must not include the
    /// agent's output).
    pub fn of(message: String, error: &crate::agent_process::AgentError) -> Self {
        Self {
            message,
            agent_output: error.agent_output().map(str::to_owned),
        }
    }
}

impl From<String> for AgentFailure {
    /// A failure with nothing from the agent in it.
    fn from(message: String) -> Self {
        Self {
            message,
            agent_output: None,
        }
    }
}

/// Messages of [`ConversationActor`].
#[derive(Debug)]
pub enum ConversationMsg {
    /// Append a user message and run a turn; frames of the turn go to `sink`.
    Send {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// Text.
        text: String,
        /// Idempotency key.
        request_id: RequestId,
        /// Where `Accepted` and the turn's events go.
        sink: Sink,
        /// Ok once `Accepted` is queued.
        reply: RpcReplyPort<Result<SendTicket, WireError>>,
        /// "Send now": cancel the running turn and run this message next.
        now: bool,
        /// Images and files for the agent with this message (never queued).
        attachments: Vec<shoal_protocol::attachments::Attachment>,
        /// The sending request's place in its trace: the turn's span joins it.
        trace: crate::telemetry::TraceParent,
    },
    /// Attach a follower.
    Follow {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// Last sequence number the follower has.
        since: Option<Seq>,
        /// Where to read events from, once attached.
        reply: RpcReplyPort<Result<Attached, WireError>>,
    },
    /// The conversation with its transcript.
    Get {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// Reply.
        reply: RpcReplyPort<Result<ConversationDetail, WireError>>,
    },
    /// Cancel the running turn.
    Cancel {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// Whether a turn was running.
        reply: RpcReplyPort<Result<bool, WireError>>,
    },
    /// Answer a permission request of the running turn.
    RespondPermission {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// The request id.
        request: u64,
        /// The chosen option; `None` cancels.
        option_id: Option<String>,
        /// Reply.
        reply: RpcReplyPort<Result<(), WireError>>,
    },
    /// The stream of a `Send` went away: a queued message runs without it; a running
    /// turn goes on for `conversation.initiator_grace_ms`, then is cancelled.
    SendGone {
        /// How the send was taken.
        ticket: SendTicket,
    },
    /// List or edit the queue.
    Queue {
        /// Caller.
        user: UserId,
        /// What to do.
        op: QueueOp,
        /// The queue after it.
        reply: RpcReplyPort<Result<Vec<shoal_protocol::client::QueuedInfo>, WireError>>,
    },
    /// Reattach to the running turn as its initiator.
    Attach {
        /// Caller, authorized by [`crate::sharing::resolve`].
        caller: Caller,
        /// Where `Accepted` and the turn's events go.
        sink: Sink,
        /// The running turn.
        reply: RpcReplyPort<Result<TurnId, WireError>>,
    },
    /// From the agent-session actor.
    Agent {
        /// The turn the event belongs to.
        turn: TurnId,
        /// The event.
        event: AgentEvent,
        /// Room in the bounded agent-event queue, given back once handled (`None` for
        /// the few events of a process start, which need none).
        credit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    /// A submitted command's result, in submission order (see [`commits`]).
    Committed {
        /// What it was for.
        commit: Commit,
        /// Its outcome.
        result: Result<Outcome, ProposeError>,
    },
    /// The workspace snapshot taken at the end of `turn` is done (or failed): the
    /// turn's end is committed now.
    WorkspaceSaved {
        /// The turn.
        turn: TurnId,
        /// The snapshot's outcome.
        saved: Result<crate::workspace::Saved, crate::workspace::WorkspaceError>,
        /// The end of the turn to commit.
        end: Box<(ShardCommand, Commit)>,
    },
    /// The agent of `turn` started a new session: the conversation before the turn's
    /// user message, to give it first (`None`: nothing before it, or another turn runs).
    Preamble {
        /// The turn.
        turn: TurnId,
        /// Reply.
        reply: RpcReplyPort<Option<String>>,
    },
    /// Timer: checkpoints, timeouts, passivation.
    Tick,
    /// Admin: describe actors and followers.
    Describe {
        /// Reply.
        reply: RpcReplyPort<(Vec<ActorInfo>, Vec<FollowerInfo>)>,
    },
    /// The conversation's shard is about to move off this node (a leadership handover
    /// or shutdown): take no new turn, let the running one end, then stop — so the move
    /// happens between turns and the agent process stops cleanly.
    Quiesce {
        /// `Some(deadline)`: a running turn still going then is ended as interrupted
        /// (what it streamed is kept). `None`: only if idle — with a turn running or a
        /// message pending, refuse and carry on.
        until: Option<Instant>,
        /// Why, for the interrupted turn's error (`the node is shutting down`).
        why: &'static str,
        /// `true`: it stops (now or when its turn ends); `false`: refused (busy).
        reply: RpcReplyPort<bool>,
    },
    /// After an only-if-idle [`ConversationMsg::Quiesce`]: `go` — every conversation of
    /// the shard was idle, stop now; otherwise the handover is off, carry on.
    Release {
        /// Stop (`true`) or carry on (`false`).
        go: bool,
    },
    /// The owner picks the mode and/or model ([`settings`]).
    SetSettings {
        /// Caller.
        user: UserId,
        /// The mode's id, if it changes.
        mode: Option<String>,
        /// The model's id, if it changes.
        model: Option<String>,
        /// The settings after it.
        reply: RpcReplyPort<Result<shoal_protocol::settings::SessionSettings, WireError>>,
    },
    /// Rewind, rename or delete the conversation ([`history`]).
    Rewrite {
        /// Caller.
        user: UserId,
        /// What to do.
        change: history::Change,
        /// The conversation after it (`None`: deleted).
        reply: RpcReplyPort<Result<Option<ConversationSummary>, WireError>>,
    },
    /// Cancel the running turn for an admin (`shoalctl admin cancel`): as the owner's
    /// cancel, without a caller to authorize.
    AdminCancel {
        /// Whether a turn was running (or about to start).
        reply: RpcReplyPort<bool>,
    },
}
