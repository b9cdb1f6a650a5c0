//! Conversation history operations: rewind (in place, to a message or a part boundary
//! inside an assistant message), fork (a new conversation with a prefix of another),
//! rename and delete. Positions are message indices in the log, never timestamps, and
//! every message written keeps `content == content_from_parts(parts)` (invariant 4).

use super::workspaces::{owned_conversation_workspace, workspace_conversation_key};
use super::{
    ConversationRecord, Failure, Outcome, Rejection, RunningTurn, ShardCommand, ShardRead, Writes,
    activity_key, conversation_key, create_request_key, message_key, message_prefix, read, record,
    send_request_prefix, user_prefix,
};
use shoal_protocol::client::TITLE_BYTES_MAX;
use shoal_protocol::transcript::{Message, Role, content_from_parts};
use shoal_protocol::{ConversationId, MessageId, UserId};

/// The longest title derived from a first message, in bytes.
pub const DERIVED_TITLE_BYTES_MAX: usize = 80;

/// A title from a conversation's first message: its first non-empty line, cut at a
/// character boundary to [`DERIVED_TITLE_BYTES_MAX`] bytes.
pub fn derived_title(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(super::cut_to(line.to_owned(), DERIVED_TITLE_BYTES_MAX))
}

/// "`prefix` <title of `source`>" (its id when untitled), within the title bound.
pub(crate) fn titled(prefix: &str, source: &ConversationRecord) -> String {
    let base = source
        .title
        .clone()
        .unwrap_or_else(|| source.id.to_string());
    super::cut_to(format!("{prefix} {base}"), TITLE_BYTES_MAX)
}

/// `owner`'s conversation, or [`Rejection::NotFound`] (another user's reads the same).
pub(super) fn owned(
    view: &impl ShardRead,
    id: ConversationId,
    owner: &UserId,
) -> Result<ConversationRecord, Failure> {
    let rec = record(view, id)?;
    if rec.owner != *owner {
        return Err(Rejection::NotFound(id).into());
    }
    Ok(rec)
}

fn refuse_running(rec: &ConversationRecord) -> Result<(), Failure> {
    match &rec.running_turn {
        Some(running) => Err(Rejection::Busy(running.turn).into()),
        None => Ok(()),
    }
}

/// Message `at` of `rec`, which must be committed.
fn message_at(
    view: &impl ShardRead,
    rec: &ConversationRecord,
    at: MessageId,
) -> Result<Message, Failure> {
    if at.0 >= rec.message_count {
        return Err(Rejection::Invalid(format!(
            "message {at} is past the end of conversation {} ({} messages)",
            rec.id, rec.message_count
        ))
        .into());
    }
    Ok(read(view, &message_key(rec.id, at))?
        .ok_or_else(|| Rejection::Invalid(format!("message {at} of {} is not stored", rec.id)))?)
}

/// `message` cut to its first `parts` parts (an assistant message; at least one part
/// kept, at most all), content recomputed.
fn cut(message: &mut Message, parts: u32, conversation: ConversationId) -> Result<(), Failure> {
    let n = parts as usize;
    if message.role != Role::Assistant {
        return Err(Rejection::Invalid(format!(
            "message {} of {conversation} is a user message; a part cut needs an assistant message",
            message.id
        ))
        .into());
    }
    if n == 0 || n > message.parts.len() {
        return Err(Rejection::Invalid(format!(
            "message {} of {conversation} has {} parts; keep between 1 and {} of them (to drop the whole reply, rewind to the user message before it)",
            message.id,
            message.parts.len(),
            message.parts.len()
        ))
        .into());
    }
    message.parts.truncate(n);
    message.content = content_from_parts(&message.parts);
    Ok(())
}

/// Applies the history commands.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::RewindConversation {
            conversation,
            owner,
            keep,
            parts,
        } => rewind(view, writes, *conversation, owner, *keep, *parts),
        ShardCommand::ForkConversation {
            id,
            source,
            owner,
            workspace,
            upto,
            parts,
            title,
            at_ms,
            request_id,
        } => {
            let req_key = create_request_key(owner, *request_id);
            if let Some(existing) = read::<ConversationId>(view, &req_key)? {
                return Ok(Outcome::Conversation(Box::new(record(view, existing)?)));
            }
            let src = owned(view, *source, owner)?;
            owned_conversation_workspace(view, *workspace, owner)?;
            let mut copied = Vec::with_capacity(upto.0 as usize + 1);
            for index in 0..=upto.0 {
                copied.push(message_at(view, &src, MessageId(index))?);
            }
            if let (Some(n), Some(last)) = (parts, copied.last_mut()) {
                cut(last, *n, *source)?;
            }
            let turns = copied.iter().map(|m| m.turn.0).max().unwrap_or(0);
            let title = title.clone().or_else(|| Some(titled("Fork of", &src)));
            let rec = ConversationRecord {
                id: *id,
                workspace: *workspace,
                owner: owner.clone(),
                title,
                agent: src.agent.clone(),
                created_at_ms: *at_ms,
                message_count: upto.0 + 1,
                activation: 0,
                turns,
                running_turn: None,
                agent_session: None,
            };
            for message in &copied {
                writes.put(message_key(*id, message.id), message);
            }
            super::put_new_conversation(writes, &rec, req_key);
            Ok(Outcome::Conversation(Box::new(rec)))
        }
        ShardCommand::RenameConversation {
            conversation,
            owner,
            title,
        } => {
            let mut rec = owned(view, *conversation, owner)?;
            rec.title = title.clone();
            writes.put(conversation_key(*conversation), &rec);
            Ok(Outcome::Conversation(Box::new(rec)))
        }
        ShardCommand::DeleteConversation {
            conversation,
            owner,
        } => {
            let rec = owned(view, *conversation, owner)?;
            refuse_running(&rec)?;
            delete_keys(view, writes, &rec)?;
            writes.delete(workspace_conversation_key(rec.workspace, rec.id));
            Ok(Outcome::Done)
        }
        _ => Err(super::misrouted()),
    }
}

fn rewind(
    view: &impl ShardRead,
    writes: &mut Writes,
    conversation: ConversationId,
    owner: &UserId,
    keep: MessageId,
    parts: Option<u32>,
) -> Result<Outcome, Failure> {
    let mut rec = owned(view, conversation, owner)?;
    refuse_running(&rec)?;
    let mut kept = message_at(view, &rec, keep)?;
    let last = keep.0 + 1 == rec.message_count;
    match parts {
        Some(n) => {
            let before = kept.parts.len();
            cut(&mut kept, n, conversation)?;
            if last && kept.parts.len() == before {
                return Err(Rejection::Invalid(format!(
                    "nothing follows part {n} of message {keep}: the cut would drop nothing"
                ))
                .into());
            }
            writes.put(message_key(conversation, keep), &kept);
        }
        None if last => {
            return Err(Rejection::Invalid(format!(
                "message {keep} is the last one: a rewind to it would drop nothing"
            ))
            .into());
        }
        None => {}
    }
    for index in keep.0 + 1..rec.message_count {
        writes.delete(message_key(conversation, MessageId(index)));
    }
    // A retried send of a dropped turn must not find its old turn.
    for (key, value) in view.scan_prefix(&send_request_prefix(conversation))? {
        let turn: RunningTurn = super::decode(&key, &value)?;
        if turn.user_message.0 > keep.0 || turn.assistant_message.0 > keep.0 {
            writes.delete(key);
        }
    }
    rec.message_count = keep.0 + 1;
    // The agent's session holds what was dropped: the next turn starts a new one,
    // seeded with the kept transcript.
    rec.agent_session = None;
    writes.put(conversation_key(conversation), &rec);
    Ok(Outcome::Conversation(Box::new(rec)))
}

/// Deletes every key of a conversation but its workspace's index entry.
pub(super) fn delete_keys(
    view: &impl ShardRead,
    writes: &mut Writes,
    rec: &ConversationRecord,
) -> Result<(), Failure> {
    for prefix in [
        message_prefix(rec.id),
        super::running::running_prefix(rec.id),
        send_request_prefix(rec.id),
        super::compactions::compactions_prefix(rec.id),
    ] {
        for (key, _) in view.scan_prefix(&prefix)? {
            writes.delete(key);
        }
    }
    let mut index = user_prefix(&rec.owner);
    index.extend_from_slice(&rec.id.uid.to_be_bytes());
    writes.delete(index);
    writes.delete(conversation_key(rec.id));
    writes.delete(activity_key(rec.id));
    writes.delete(super::queue::queue_key(rec.id));
    writes.delete(super::settings::settings_key(rec.id));
    writes.delete(super::settings::agent_sessions_key(rec.id));
    super::sharing::delete_keys(view, writes, rec.id)
}
