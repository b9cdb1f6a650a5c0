//! Conversation history requests served from the shard's committed state: forking (a
//! new conversation with a prefix of another's messages, copied by the state machine,
//! so a fork never waits on a running turn), listing by last activity in pages, and
//! paging back through messages.

use super::Peer;
use crate::actors::conversation::{propose_error, summary};
use crate::context::NodeContext;
use crate::shard::state_machine::{Outcome, ShardCommand};
use shoal_protocol::client::{
    CompactionInfo, ConversationListing, ConversationSummary, LIST_LIMIT_MAX, MESSAGES_PAGE_MAX,
    TITLE_BYTES_MAX,
};
use shoal_protocol::transcript::Message;
use shoal_protocol::{ConversationId, MessageId, RequestId, WireError, WorkspaceId};
use std::cmp::Reverse;

/// The caller's conversation as committed, or not found (another user's reads the same).
fn owned_conversation(
    ctx: &NodeContext,
    peer: &Peer,
    id: ConversationId,
) -> Result<crate::shard::state_machine::ConversationRecord, WireError> {
    ctx.store
        .conversation(id)
        .map_err(|e| ctx.internal_error("read a conversation", e))?
        .filter(|r| r.owner == peer.user)
        .ok_or_else(|| WireError::not_found(format!("conversation {id} does not exist")))
}

/// A new title is at most [`TITLE_BYTES_MAX`] bytes.
pub(super) fn check_title(title: Option<&str>) -> Result<(), WireError> {
    match title {
        Some(title) if title.len() > TITLE_BYTES_MAX => Err(WireError::invalid(
            "title",
            format!(
                "the title is {} bytes, the limit is {TITLE_BYTES_MAX}",
                title.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// `ForkConversation`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fork(
    ctx: &NodeContext,
    peer: &Peer,
    source: ConversationId,
    upto: MessageId,
    parts: Option<u32>,
    workspace: Option<WorkspaceId>,
    title: Option<String>,
    request_id: RequestId,
) -> Result<ConversationSummary, WireError> {
    let original = owned_conversation(ctx, peer, source)?;
    check_title(title.as_deref())?;
    let workspace = match workspace {
        None => original.workspace,
        Some(ws) => super::workspaces::owned(ctx, peer, Some(ws))?.id,
    };
    let cmd = ShardCommand::ForkConversation {
        id: ConversationId::new(source.shard, ctx.random_u128()),
        source,
        owner: peer.user.clone(),
        workspace,
        upto,
        parts,
        title,
        at_ms: ctx.now_ms(),
        request_id,
    };
    match ctx.cluster.propose(source.shard, cmd).await {
        Ok(Outcome::Conversation(record)) => Ok(summary(&record)),
        Ok(other) => Err(ctx.internal_error(
            "fork a conversation",
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(propose_error(ctx, "fork the conversation", e)),
    }
}

/// Where a page of conversations ended: `<last activity ms>-<conversation uid>`.
fn cursor_of(activity: u64, id: ConversationId) -> String {
    format!("{activity}-{:032x}", id.uid)
}

fn parse_cursor(cursor: &str) -> Result<(u64, u128), WireError> {
    let bad = || {
        WireError::invalid(
            "cursor",
            "not a cursor this node gave out; pass the `next_cursor` of the previous page",
        )
    };
    let (activity, uid) = cursor.split_once('-').ok_or_else(bad)?;
    let activity = activity.parse::<u64>().map_err(|_| bad())?;
    if uid.len() != 32 {
        return Err(bad());
    }
    let uid = u128::from_str_radix(uid, 16).map_err(|_| bad())?;
    Ok((activity, uid))
}

/// `ListConversationsPage`: the caller's conversations (optionally of one workspace),
/// most recently active first, `limit` after `cursor`. Reads every conversation of the
/// caller's to order them (a user's conversations are in one shard, on this node).
pub(super) fn list_page(
    ctx: &NodeContext,
    peer: &Peer,
    limit: u32,
    cursor: Option<String>,
    workspace: Option<WorkspaceId>,
) -> Result<(Vec<ConversationListing>, Option<String>), WireError> {
    let limit = limit.clamp(1, LIST_LIMIT_MAX) as usize;
    let after = cursor.as_deref().map(parse_cursor).transpose()?;
    let shard = ctx.default_workspace(&peer.user).shard;
    let internal = |e: crate::shard::store::StoreError| ctx.internal_error("list conversations", e);
    let mut listed = Vec::new();
    for record in ctx
        .store
        .user_conversations(shard, &peer.user)
        .map_err(internal)?
    {
        if workspace.is_some_and(|w| w != record.workspace) {
            continue;
        }
        let activity = ctx
            .store
            .last_activity(record.id)
            .map_err(internal)?
            .unwrap_or(record.created_at_ms);
        listed.push((activity, record));
    }
    // Newest first; the id breaks ties so the order (and a cursor) is total.
    listed.sort_by_key(|(a, r)| (Reverse(*a), Reverse(r.id.uid)));
    // The order as a key: entries up to and including the cursor's were on earlier pages.
    let key = |activity: u64, uid: u128| (Reverse(activity), Reverse(uid));
    let start = after.map_or(0, |(activity, uid)| {
        let cut = key(activity, uid);
        listed.partition_point(|(a, r)| key(*a, r.id.uid) <= cut)
    });
    let page: Vec<ConversationListing> = listed[start..]
        .iter()
        .take(limit)
        .map(|(activity, record)| ConversationListing {
            summary: summary(record),
            last_activity_ms: *activity,
        })
        .collect();
    let next = (start + page.len() < listed.len())
        .then(|| {
            page.last()
                .map(|l| cursor_of(l.last_activity_ms, l.summary.id))
        })
        .flatten();
    Ok((page, next))
}

/// `GetMessages`: committed messages `before` (exclusive), the newest `limit` of them.
pub(super) fn messages(
    ctx: &NodeContext,
    peer: &Peer,
    conversation: ConversationId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<(Vec<Message>, bool), WireError> {
    let record = owned_conversation(ctx, peer, conversation)?;
    page(ctx, &record, before, limit)
}

/// The newest `limit` (at most [`MESSAGES_PAGE_MAX`]) committed messages of `record`
/// before `before`, oldest first, and whether older ones exist.
pub(super) fn page(
    ctx: &NodeContext,
    record: &crate::shard::state_machine::ConversationRecord,
    before: Option<MessageId>,
    limit: u32,
) -> Result<(Vec<Message>, bool), WireError> {
    let limit = u64::from(limit.clamp(1, MESSAGES_PAGE_MAX));
    let to = before.map_or(record.message_count, |b| b.0.min(record.message_count));
    let from = to.saturating_sub(limit);
    let messages = ctx
        .store
        .messages(record.id, from, to)
        .map_err(|e| ctx.internal_error("read messages", e))?;
    Ok((messages, from > 0))
}

/// `ListCompactions`: the owner's conversation's compactions, oldest first.
pub(super) fn compactions(
    ctx: &NodeContext,
    peer: &Peer,
    conversation: ConversationId,
) -> Result<Vec<CompactionInfo>, WireError> {
    owned_conversation(ctx, peer, conversation)?;
    let view = ctx
        .store
        .view(conversation.shard)
        .map_err(|e| ctx.internal_error("read compactions", e))?;
    let records = crate::shard::state_machine::compactions::compactions(view, conversation)
        .map_err(|e| ctx.internal_error("read compactions", e))?;
    Ok(records
        .into_iter()
        .map(|c| CompactionInfo {
            seq: c.seq,
            turn: c.turn,
            summary: c.summary,
            at_ms: c.at_ms,
        })
        .collect())
}

/// `CloneFromCompaction`.
pub(super) async fn clone_from_compaction(
    ctx: &NodeContext,
    peer: &Peer,
    source: ConversationId,
    seq: u64,
    title: Option<String>,
    request_id: RequestId,
) -> Result<ConversationSummary, WireError> {
    let cmd = ShardCommand::CloneFromCompaction {
        id: ConversationId::new(source.shard, ctx.random_u128()),
        source,
        owner: peer.user.clone(),
        seq,
        title,
        at_ms: ctx.now_ms(),
        request_id,
    };
    if let Err(e) = cmd.validate() {
        return Err(WireError::invalid("title", e.to_string()));
    }
    match ctx.cluster.propose(source.shard, cmd).await {
        Ok(Outcome::Conversation(record)) => Ok(summary(&record)),
        Ok(other) => Err(ctx.internal_error(
            "clone from a compaction",
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(propose_error(ctx, "clone from the compaction", e)),
    }
}
