//! Rewind, rename, delete and agent switches, through the conversation actor so they are
//! ordered with its turns: a rewind, delete or switch is refused while a turn runs or a
//! send waits, and after one commits the actor stops — its agent (whose session held what was dropped)
//! with it, and its followers get a resync, so the next activation serves the
//! transcript as it now is.

use super::commits::{Commit, submit};
use super::*;
use shoal_protocol::MessageId;

/// A change to the conversation's history or metadata.
#[derive(Debug, Clone)]
pub enum Change {
    /// Keep message `keep` (cut to `parts` parts) and drop what follows.
    Rewind {
        /// The last message kept.
        keep: MessageId,
        /// Keep only this many of its parts.
        parts: Option<u32>,
    },
    /// Set or clear the title.
    Rename {
        /// The title.
        title: Option<String>,
    },
    /// Delete the conversation.
    Delete,
    /// Switch to another agent (checked enabled and ready by the caller).
    SwitchAgent {
        /// The agent's id.
        agent: String,
    },
}

impl Change {
    /// Whether the actor stops once it is committed.
    fn stops(&self) -> bool {
        !matches!(self, Change::Rename { .. })
    }
}

pub(super) fn on_rewrite(
    state: &mut ConversationState,
    user: &UserId,
    change: Change,
    reply: RpcReplyPort<Result<Option<ConversationSummary>, WireError>>,
) {
    if let Err(e) = authorize(state, user) {
        let _ = reply.send(Err(e));
        return;
    }
    if change.stops() && (state.turn.is_some() || state.sends_pending > 0) {
        let running = state.turn.as_ref().map_or_else(
            || "a message is being sent".to_owned(),
            |t| format!("turn {} is running", t.running.turn),
        );
        let _ = reply.send(Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "{running} in conversation {}; wait for it or cancel it, then retry",
                state.record.id
            ),
        )));
        return;
    }
    let conversation = state.record.id;
    let owner = user.clone();
    let cmd = match &change {
        Change::Rewind { keep, parts } => ShardCommand::RewindConversation {
            conversation,
            owner,
            keep: *keep,
            parts: *parts,
        },
        Change::Rename { title } => ShardCommand::RenameConversation {
            conversation,
            owner,
            title: title.clone(),
        },
        Change::Delete => ShardCommand::DeleteConversation {
            conversation,
            owner,
        },
        Change::SwitchAgent { agent } => ShardCommand::SwitchAgent {
            conversation,
            owner,
            agent: agent.clone(),
        },
    };
    if let Err(e) = cmd.validate() {
        let _ = reply.send(Err(WireError::invalid("request", e.to_string())));
        return;
    }
    submit(state, cmd, Commit::Rewrite { change, reply });
}

pub(super) fn on_committed(
    state: &mut ConversationState,
    change: Change,
    reply: RpcReplyPort<Result<Option<ConversationSummary>, WireError>>,
    result: Result<Outcome, ProposeError>,
) {
    let answer = match result {
        Ok(Outcome::Conversation(record)) => {
            let after = summary(&record);
            if !change.stops() {
                state.record = *record;
            }
            Ok(Some(after))
        }
        Ok(Outcome::Done) => Ok(None),
        Ok(other) => Err(state.ctx.internal_error(
            "rewrite a conversation",
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(propose_error(&state.ctx, "change the conversation", e)),
    };
    if answer.is_ok() && change.stops() {
        state.defunct = Some(match change {
            Change::Delete => "the conversation was deleted".to_owned(),
            Change::SwitchAgent { agent } => {
                format!("the conversation switched to agent `{agent}`; the next request starts it")
            }
            _ => "the conversation was rewound; the next request starts it again".to_owned(),
        });
    }
    let _ = reply.send(answer);
}
