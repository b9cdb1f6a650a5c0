//! Forking a conversation: a new conversation with a prefix of another's messages,
//! copied by the shard's state machine from what is committed (the original's actor is
//! not involved, so a fork never waits on a running turn).

use super::Peer;
use crate::actors::conversation::{propose_error, summary};
use crate::context::NodeContext;
use crate::shard::state_machine::{Outcome, ShardCommand};
use shoal_protocol::client::{ConversationSummary, TITLE_BYTES_MAX};
use shoal_protocol::{ConversationId, MessageId, RequestId, WireError, WorkspaceId};

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
    let not_found = || WireError::not_found(format!("conversation {source} does not exist"));
    let original = ctx
        .store
        .conversation(source)
        .map_err(|e| ctx.internal_error("read a conversation", e))?
        .filter(|r| r.owner == peer.user)
        .ok_or_else(not_found)?;
    if let Some(title) = &title
        && title.len() > TITLE_BYTES_MAX
    {
        return Err(WireError::invalid(
            "title",
            format!(
                "the title is {} bytes, the limit is {TITLE_BYTES_MAX}",
                title.len()
            ),
        ));
    }
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
