//! Rewinding, forking, renaming and deleting conversations through the SDK. Message
//! positions are message indices ([`MessageId`], as in [`ConversationDetail`]'s
//! messages), never timestamps.
//!
//! [`ConversationDetail`]: shoal_protocol::client::ConversationDetail

use crate::{Client, ClientError, unexpected};
use shoal_protocol::client::{
    ClientReply, ClientRequest, CompactionInfo, ConversationListing, ConversationSummary, UsageBy,
    UsageRow,
};
use shoal_protocol::transcript::Message;
use shoal_protocol::{ConversationId, MessageId, WorkspaceId};

impl Client {
    /// Rewinds a conversation in place: keeps `message` and deletes every message after
    /// it. With `parts`, `message` must be an assistant message and only its first
    /// `parts` parts are kept (its content recomputed from them). The agent's next turn
    /// starts a new session given the kept transcript. Refused with `busy` while a turn
    /// runs, and with `invalid_argument` for a cut that would drop nothing. Followers get
    /// a resync and then the rewound transcript. Not retried (a retry of an applied rewind
    /// would be refused as dropping nothing, or cut further).
    pub async fn rewind(
        &self,
        conversation: ConversationId,
        message: MessageId,
        parts: Option<u32>,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::RewindConversation {
            conversation,
            message,
            parts,
        };
        match self.unary("rewind", request, false).await? {
            ClientReply::Rewound(summary) => Ok(summary),
            other => Err(unexpected("Rewound", &other)),
        }
    }

    /// Forks a conversation: a new one (in `workspace`, default the original's) holding
    /// its messages up to and including `message`, the last cut to its first `parts`
    /// parts when given. The original is untouched. Retried with one request id, so at
    /// most one fork is made.
    pub async fn fork(
        &self,
        conversation: ConversationId,
        message: MessageId,
        parts: Option<u32>,
        workspace: Option<WorkspaceId>,
        title: Option<String>,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::ForkConversation {
            conversation,
            message,
            parts,
            workspace,
            title,
            request_id: self.request_id(),
        };
        match self.unary("fork", request, true).await? {
            ClientReply::Created(summary) => Ok(summary),
            other => Err(unexpected("Created", &other)),
        }
    }

    /// Sets (or, with `None`, clears) a conversation's title.
    pub async fn rename_conversation(
        &self,
        conversation: ConversationId,
        title: Option<String>,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::RenameConversation {
            conversation,
            title,
        };
        match self.unary("rename_conversation", request, true).await? {
            ClientReply::Renamed(summary) => Ok(summary),
            other => Err(unexpected("Renamed", &other)),
        }
    }

    /// Switches a conversation to another agent (`agent`: enabled and ready on the node,
    /// else `invalid_argument` listing the ready ones); refused with `busy` while a turn
    /// runs. The new agent's next turn starts a session given the transcript, or resumes
    /// its own earlier session of this conversation when it supports `session/load`. The
    /// mode and model picks are cleared. Not retried (a retry of an applied switch is
    /// refused as switching to the agent it runs).
    pub async fn switch_agent(
        &self,
        conversation: ConversationId,
        agent: &str,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::SwitchAgent {
            conversation,
            agent: agent.to_owned(),
        };
        match self.unary("switch_agent", request, false).await? {
            ClientReply::AgentSwitched(summary) => Ok(summary),
            other => Err(unexpected("AgentSwitched", &other)),
        }
    }

    /// Deletes a conversation with its messages; refused with `busy` while a turn runs.
    /// Not retried.
    pub async fn delete_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<(), ClientError> {
        let request = ClientRequest::DeleteConversation { conversation };
        match self.unary("delete_conversation", request, false).await? {
            ClientReply::ConversationDeleted => Ok(()),
            other => Err(unexpected("ConversationDeleted", &other)),
        }
    }
}

impl Client {
    /// One page of the caller's conversations (of `workspace`, when given), most recently
    /// active first: at most `limit` after `cursor` (the previous page's `next_cursor`).
    /// Returns the page and the cursor of the next one (`None`: this was the last).
    pub async fn list_conversations_page(
        &self,
        limit: u32,
        cursor: Option<String>,
        workspace: Option<WorkspaceId>,
    ) -> Result<(Vec<ConversationListing>, Option<String>), ClientError> {
        let request = ClientRequest::ListConversationsPage {
            limit,
            cursor,
            workspace,
        };
        match self.unary("list_conversations_page", request, true).await? {
            ClientReply::ConversationPage {
                conversations,
                next_cursor,
            } => Ok((conversations, next_cursor)),
            other => Err(unexpected("ConversationPage", &other)),
        }
    }

    /// Committed messages of a conversation: the newest `limit` (at most
    /// [`shoal_protocol::client::MESSAGES_PAGE_MAX`]) before `before` (`None`: the end),
    /// oldest first, and whether older ones exist — to page back through a history
    /// longer than [`Client::get_conversation`] returns.
    pub async fn get_messages(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<Message>, bool), ClientError> {
        let request = ClientRequest::GetMessages {
            conversation,
            before,
            limit,
        };
        match self.unary("get_messages", request, true).await? {
            ClientReply::Messages { messages, more } => Ok((messages, more)),
            other => Err(unexpected("Messages", &other)),
        }
    }
}

impl Client {
    /// What the caller's turns used (token counts and cost, as the agents reported them),
    /// summed per conversation, agent or workspace, with their total; optionally only one
    /// workspace's or agent's turns, or those that ended at or after `since_ms`.
    pub async fn usage(
        &self,
        workspace: Option<WorkspaceId>,
        agent: Option<String>,
        since_ms: Option<u64>,
        by: UsageBy,
    ) -> Result<(Vec<UsageRow>, UsageRow), ClientError> {
        let request = ClientRequest::GetUsage {
            workspace,
            agent,
            since_ms,
            by,
        };
        match self.unary("usage", request, true).await? {
            ClientReply::Usage { rows, total } => Ok((rows, total)),
            other => Err(unexpected("Usage", &other)),
        }
    }
}

impl Client {
    /// The context compactions the conversation's agent reported, oldest first.
    pub async fn list_compactions(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<CompactionInfo>, ClientError> {
        let request = ClientRequest::ListCompactions { conversation };
        match self.unary("list_compactions", request, true).await? {
            ClientReply::Compactions(list) => Ok(list),
            other => Err(unexpected("Compactions", &other)),
        }
    }

    /// A new conversation seeded with one message, the summary of compaction `seq` of
    /// `conversation` (same workspace and agent). Retried with one request id.
    pub async fn clone_from_compaction(
        &self,
        conversation: ConversationId,
        seq: u64,
        title: Option<String>,
    ) -> Result<ConversationSummary, ClientError> {
        let request = ClientRequest::CloneFromCompaction {
            conversation,
            compaction: seq,
            title,
            request_id: self.request_id(),
        };
        match self.unary("clone_from_compaction", request, true).await? {
            ClientReply::Created(summary) => Ok(summary),
            other => Err(unexpected("Created", &other)),
        }
    }
}
