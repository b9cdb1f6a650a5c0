//! Context compactions an agent reported, kept as records of the conversation (not
//! message parts, so a fork never copies them), and "clone from summary": a new
//! conversation seeded with one compaction's summary.
//!
//! Key: `cp/<conversation uid>/<seq BE>` → [`CompactionRecord`] (seq from 1).

use super::{
    ConversationRecord, Failure, Outcome, ReadError, Rejection, ShardCommand, ShardRead, Writes,
    create_request_key, message_key, read, record,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::transcript::Role;
use shoal_protocol::{ConversationId, MessageId, TurnId, UserId};

/// Longest summary kept, in bytes (a longer one is cut at a character boundary).
pub const COMPACTION_SUMMARY_BYTES_MAX: usize = 64 * 1024;
/// Most compactions kept per conversation.
pub const COMPACTIONS_PER_CONVERSATION_MAX: usize = 256;

/// One compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionRecord {
    /// 1, 2, … within the conversation.
    pub seq: u64,
    /// The agent's id for it (unique in its session).
    pub agent_id: String,
    /// The turn it happened in.
    pub turn: TurnId,
    /// Its summary.
    pub summary: String,
    /// When it was recorded.
    pub at_ms: u64,
}

/// Prefix of a conversation's compactions.
pub fn compactions_prefix(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"cp/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key.push(b'/');
    key
}

/// A conversation's compactions, oldest first.
pub fn compactions(
    view: &impl ShardRead,
    conversation: ConversationId,
) -> Result<Vec<CompactionRecord>, ReadError> {
    super::read_all(view, &compactions_prefix(conversation))
}

/// Applies `RecordCompaction` and `CloneFromCompaction`.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::RecordCompaction {
            conversation,
            agent_id,
            turn,
            summary,
            at_ms,
        } => {
            record(view, *conversation)?;
            let existing = compactions(view, *conversation)?;
            // Reported twice (a retry, a replayed update): recorded once.
            if existing
                .iter()
                .any(|c| c.agent_id == *agent_id && c.turn == *turn)
            {
                return Ok(Outcome::Done);
            }
            if existing.len() >= COMPACTIONS_PER_CONVERSATION_MAX {
                return Err(Rejection::TooMany(format!(
                    "conversation {conversation} already keeps {COMPACTIONS_PER_CONVERSATION_MAX} compactions"
                ))
                .into());
            }
            let seq = existing.last().map_or(1, |c| c.seq + 1);
            let mut key = compactions_prefix(*conversation);
            key.extend_from_slice(&seq.to_be_bytes());
            writes.put(
                key,
                &CompactionRecord {
                    seq,
                    agent_id: agent_id.clone(),
                    turn: *turn,
                    summary: summary.clone(),
                    at_ms: *at_ms,
                },
            );
            Ok(Outcome::Done)
        }
        ShardCommand::CloneFromCompaction {
            id,
            source,
            owner,
            seq,
            title,
            at_ms,
            request_id,
        } => clone(
            view,
            writes,
            *id,
            *source,
            owner,
            *seq,
            title,
            *at_ms,
            *request_id,
        ),
        _ => Err(super::misrouted()),
    }
}

#[allow(clippy::too_many_arguments)]
fn clone(
    view: &impl ShardRead,
    writes: &mut Writes,
    id: ConversationId,
    source: ConversationId,
    owner: &UserId,
    seq: u64,
    title: &Option<String>,
    at_ms: u64,
    request_id: shoal_protocol::RequestId,
) -> Result<Outcome, Failure> {
    let req_key = create_request_key(owner, request_id);
    if let Some(existing) = read::<ConversationId>(view, &req_key)? {
        return Ok(Outcome::Conversation(Box::new(record(view, existing)?)));
    }
    let src = record(view, source)?;
    if src.owner != *owner {
        return Err(Rejection::NotFound(source).into());
    }
    let compaction = compactions(view, source)?
        .into_iter()
        .find(|c| c.seq == seq)
        .ok_or_else(|| {
            Rejection::Invalid(format!("conversation {source} has no compaction {seq}"))
        })?;
    super::workspaces::owned_conversation_workspace(view, src.workspace, owner)?;
    let seeded = super::text_message(
        MessageId(0),
        TurnId(0),
        Role::Assistant,
        &compaction.summary,
        at_ms,
    );
    let rec = ConversationRecord {
        id,
        workspace: src.workspace,
        owner: owner.clone(),
        title: title
            .clone()
            .or_else(|| Some(super::history::titled("Summary of", &src))),
        agent: src.agent.clone(),
        created_at_ms: at_ms,
        message_count: 1,
        activation: 0,
        turns: 0,
        running_turn: None,
        agent_session: None,
    };
    writes.put(message_key(id, MessageId(0)), &seeded);
    super::put_new_conversation(writes, &rec, req_key);
    Ok(Outcome::Conversation(Box::new(rec)))
}
