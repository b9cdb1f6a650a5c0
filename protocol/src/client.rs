//! Requests and server frames of the client API (`shoal-client/1`).
//!
//! Each request opens a bidirectional stream and writes one [`RequestEnvelope`] of
//! [`ClientRequest`]. The server answers with [`ServerFrame`]s and finishes the stream:
//! * unary requests: one `Reply` or `Error`;
//! * `SendMessage`: `Accepted`, then every `Event` of the turn (owner view) through `Done`;
//! * `Follow`: `Event`s (follower view) until the client closes, or `Resync`/`Moved`/`Error`.

use crate::TraceContext;
use crate::error::WireError;
use crate::ids::{
    ConversationId, MessageId, RequestId, Seq, SkillPackId, TurnId, UserId, WorkspaceId,
};
use crate::sharing::{GrantId, GrantInfo, Role, SharedListing, SharedView};
use crate::transcript::{EventFrame, Message};
use crate::workspaces::{SkillPackInfo, SkillPackSpec, WorkspaceInfo};
use serde::{Deserialize, Serialize};

/// Longest accepted user message text, in bytes.
pub const MESSAGE_TEXT_BYTES_MAX: usize = 256 * 1024;
/// Longest accepted conversation title, in bytes.
pub const TITLE_BYTES_MAX: usize = 256;
/// Most conversations one `ListConversations` returns.
pub const LIST_LIMIT_MAX: u32 = 1000;

/// A request with its optional trace context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope<T> {
    /// W3C trace context of the caller's span, if tracing.
    pub trace: Option<TraceContext>,
    /// The request.
    pub body: T,
}

/// A client API request. Encoded by declaration index: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Create a conversation in the caller's default workspace.
    CreateConversation {
        /// Optional title.
        title: Option<String>,
        /// Agent name from the node's config; `None` for the default agent.
        agent: Option<String>,
        /// Idempotency key: a retry returns the conversation created first.
        request_id: RequestId,
    },
    /// The caller's conversations, newest first.
    ListConversations {
        /// At most this many (capped at [`LIST_LIMIT_MAX`]).
        limit: u32,
    },
    /// One conversation with its committed messages and in-flight turn.
    GetConversation {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Append a user message and run a turn; the stream carries the turn's events.
    SendMessage {
        /// The conversation.
        conversation: ConversationId,
        /// The message text (at most [`MESSAGE_TEXT_BYTES_MAX`] bytes).
        text: String,
        /// Idempotency key: a retry attaches to (or reports) the turn started first.
        request_id: RequestId,
    },
    /// Cancel the running turn, if any.
    CancelTurn {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Follow the conversation's events from `since` (exclusive), or from a snapshot.
    Follow {
        /// The conversation.
        conversation: ConversationId,
        /// The last sequence number the follower has; `None` to start with a snapshot.
        since: Option<Seq>,
    },
    /// Answer a permission request of the running turn.
    RespondPermission {
        /// The conversation.
        conversation: ConversationId,
        /// The request id from the `PermissionRequest` event.
        request: u64,
        /// The chosen option id; `None` cancels (denies) the tool call.
        option_id: Option<String>,
    },
    /// Set (or replace) a credential of a workspace the caller owns: an environment
    /// variable for the workspace's agents. Write-only: no request returns the value.
    SetCredential {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The variable name (`[A-Z_][A-Z0-9_]*`, not a reserved name).
        name: String,
        /// The value (at most 32 KiB).
        value: Secret,
    },
    /// The credentials of a workspace the caller owns: names and times only.
    ListCredentials {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
    },
    /// Remove a credential of a workspace the caller owns.
    DeleteCredential {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The variable name.
        name: String,
    },
    /// Create a workspace (idempotent per request id). Reply: `Workspace`.
    CreateWorkspace {
        /// Its name (unique per user; [`crate::workspaces::check_name`]).
        name: String,
        /// Idempotency key: a retry returns the workspace created first.
        request_id: RequestId,
    },
    /// The caller's workspaces in their order, the default one included.
    /// Reply: `Workspaces`.
    ListWorkspaces,
    /// Rename one of the caller's workspaces. Reply: `Workspace`.
    RenameWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// The new name.
        name: String,
    },
    /// Move one of the caller's workspaces to `position` (0-based; past the end: last).
    /// Reply: `Workspaces`.
    MoveWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its new position in the list.
        position: u32,
    },
    /// Delete a workspace with its conversations, snapshot and credentials. The default
    /// workspace cannot be deleted; none of its conversations may be running a turn.
    /// Reply: `WorkspaceDeleted`.
    DeleteWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// The workspace's current name, repeated: the explicit confirmation.
        confirm_name: String,
    },
    /// Create a conversation in one of the caller's workspaces (`CreateConversation` is
    /// this with the default workspace). Reply: `Created`.
    CreateConversationIn {
        /// The workspace.
        workspace: WorkspaceId,
        /// Optional title.
        title: Option<String>,
        /// Agent name from the node's config; `None` for the default agent.
        agent: Option<String>,
        /// Idempotency key: a retry returns the conversation created first.
        request_id: RequestId,
    },
    /// Create a skill pack (idempotent per request id). Reply: `SkillPack`.
    CreateSkillPack {
        /// Its content.
        spec: SkillPackSpec,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Replace a skill pack's content (attached workspaces get the new files at their
    /// next agent start). Reply: `SkillPack`.
    UpdateSkillPack {
        /// The pack.
        pack: SkillPackId,
        /// Its new content.
        spec: SkillPackSpec,
    },
    /// The caller's skill packs, by name. Reply: `SkillPacks`.
    ListSkillPacks,
    /// One skill pack with its content. Reply: `SkillPackContent`.
    GetSkillPack {
        /// The pack.
        pack: SkillPackId,
    },
    /// Delete a skill pack, detaching it from every workspace. Reply: `SkillPackDeleted`.
    DeleteSkillPack {
        /// The pack.
        pack: SkillPackId,
    },
    /// Attach a skill pack to a workspace: its files are written into the workspace and
    /// its agents' homes. Reply: `Workspace`.
    AttachSkillPack {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The pack (the caller's, in the workspace's shard).
        pack: SkillPackId,
    },
    /// Detach a skill pack: the files Shoal wrote for it are removed (files a user or
    /// agent changed are kept). Reply: `Workspace`.
    DetachSkillPack {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The pack.
        pack: SkillPackId,
    },
    /// Rewind in place: keep `message` (cut to its first `parts` parts when given: an
    /// assistant message) and delete everything after it; the agent starts a new session
    /// seeded with what is kept. Refused while a turn runs. Followers get a resync.
    /// Reply: `Rewound`.
    RewindConversation {
        /// The conversation.
        conversation: ConversationId,
        /// The last message kept (its index).
        message: MessageId,
        /// Keep only this many parts of it.
        parts: Option<u32>,
    },
    /// Fork: a new conversation with the messages up to and including `message` (the
    /// last cut to `parts` parts when given); the original is untouched. Idempotent per
    /// request id. Reply: `Created`.
    ForkConversation {
        /// The conversation forked.
        conversation: ConversationId,
        /// The last message copied.
        message: MessageId,
        /// Keep only this many parts of it.
        parts: Option<u32>,
        /// The fork's workspace; `None`: the original's.
        workspace: Option<WorkspaceId>,
        /// The fork's title; `None`: "Fork of …".
        title: Option<String>,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Set or clear a conversation's title. Reply: `Renamed`.
    RenameConversation {
        /// The conversation.
        conversation: ConversationId,
        /// The title (at most [`TITLE_BYTES_MAX`] bytes).
        title: Option<String>,
    },
    /// Delete a conversation with its messages (refused while a turn runs).
    /// Reply: `ConversationDeleted`.
    DeleteConversation {
        /// The conversation.
        conversation: ConversationId,
    },
    /// One page of the caller's conversations, most recently active first.
    /// Reply: `ConversationPage`.
    ListConversationsPage {
        /// At most this many (capped at [`LIST_LIMIT_MAX`]).
        limit: u32,
        /// Where the previous page ended (its `next_cursor`); `None`: the first page.
        cursor: Option<String>,
        /// Only this workspace's conversations.
        workspace: Option<WorkspaceId>,
    },
    /// Committed messages of a conversation, the newest `limit` before `before`: pages
    /// back through a history longer than a snapshot holds. Reply: `Messages`.
    GetMessages {
        /// The conversation.
        conversation: ConversationId,
        /// Only messages before this one; `None`: up to the newest.
        before: Option<MessageId>,
        /// At most this many (capped at [`MESSAGES_PAGE_MAX`]).
        limit: u32,
    },
    /// Like `SendMessage`, but "now": a running turn is cut short (saved as interrupted)
    /// and this message runs next, ahead of any queued ones. The stream is as for
    /// `SendMessage`.
    SendNow {
        /// The conversation.
        conversation: ConversationId,
        /// The message text.
        text: String,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// The messages queued behind the running turn, in the order they will run.
    /// Reply: `Queue`.
    ListQueue {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Remove a queued message (its send stream ends with an error). Reply: `Queue`.
    RemoveQueued {
        /// The conversation.
        conversation: ConversationId,
        /// The queued message (`Queued.item`).
        item: u64,
    },
    /// Move a queued message to `position` (0-based; past the end: last). Reply: `Queue`.
    MoveQueued {
        /// The conversation.
        conversation: ConversationId,
        /// The queued message.
        item: u64,
        /// Its new position.
        position: u32,
    },
    /// Reattach to the running turn as its initiator (after a disconnect, within
    /// `conversation.initiator_grace_ms`): the stream is as for `SendMessage` from
    /// `Accepted` (with `duplicate: true`) on, with the turn's events from now.
    AttachTurn {
        /// The conversation.
        conversation: ConversationId,
    },
    /// The context compactions the conversation's agent reported, oldest first.
    /// Reply: `Compactions`.
    ListCompactions {
        /// The conversation.
        conversation: ConversationId,
    },
    /// A new conversation (same workspace and agent) seeded with one message: the
    /// summary of compaction `compaction`. Idempotent per request id. Reply: `Created`.
    CloneFromCompaction {
        /// The conversation compacted.
        conversation: ConversationId,
        /// The compaction (`CompactionInfo::seq`).
        compaction: u64,
        /// The new title; `None`: "Summary of …".
        title: Option<String>,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// What the caller's turns used, summed. Reply: `Usage`.
    GetUsage {
        /// Only this workspace's turns.
        workspace: Option<WorkspaceId>,
        /// Only this agent's turns.
        agent: Option<String>,
        /// Only turns that ended at or after this time (ms since the Unix epoch).
        since_ms: Option<u64>,
        /// One row per what.
        by: UsageBy,
    },
    /// `request` made with a share token (see [`crate::sharing`]): authorized by the
    /// token's grant instead of ownership. Not nested.
    Shared {
        /// `shoalshare1.<grant id>.<secret>`.
        token: String,
        /// The request (on the grant's conversation).
        request: Box<ClientRequest>,
    },
    /// Share a conversation (owner only). A link or invitation is answered with its
    /// token, once.
    CreateGrant {
        /// The conversation.
        conversation: ConversationId,
        /// The role it gives.
        role: Role,
        /// For this user (no token); `None` for a link.
        user: Option<UserId>,
        /// A link bound to the first user who presents it.
        invite: bool,
        /// It stops working this long from now (at most [`crate::sharing::GRANT_EXPIRY_MS_MAX`]).
        expires_in_ms: Option<u64>,
        /// Idempotency key: a retry returns the grant made first (without its token).
        request_id: RequestId,
    },
    /// The grants of one of the caller's conversations, or of all of them ("shared by me").
    ListGrants {
        /// Only this conversation's.
        conversation: Option<ConversationId>,
    },
    /// Revoke a grant: it stops working at once, open follows end with `forbidden`.
    RevokeGrant {
        /// The grant.
        grant: GrantId,
    },
    /// Give a link grant a new token: the old one stops working at once.
    RotateGrant {
        /// The grant.
        grant: GrantId,
    },
    /// Lock or unlock sharing: while locked, editors are read-only.
    SetShareLock {
        /// The conversation.
        conversation: ConversationId,
        /// Locked or not.
        locked: bool,
    },
    /// Conversations shared with the caller by user grant or a claimed invitation.
    SharedWithMe,
    /// Pick the mode and/or model of one of the caller's conversations (owner only;
    /// refused while a turn runs, and when its agent is known not to offer the value).
    /// Applied to the agent session at the next turn, and again whenever the agent
    /// starts anew. Reply: `SessionSettings`.
    SetSessionSettings {
        /// The conversation.
        conversation: ConversationId,
        /// The mode's id; `None`: leave it as it is.
        mode: Option<String>,
        /// The model's id; `None`: leave it as it is.
        model: Option<String>,
    },
    /// The permission policy of one of the caller's workspaces. Reply:
    /// `WorkspacePermissions`.
    GetWorkspacePermissions {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
    },
    /// Replace the permission policy of one of the caller's workspaces (it wins over
    /// the agents' policies; an empty one leaves them in force). Reply:
    /// `WorkspacePermissions`.
    SetWorkspacePermissions {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The policy.
        policy: crate::permissions::PermissionPolicy,
    },
    /// Add or replace (by name) an MCP server of one of the caller's workspaces; its
    /// env variables or headers are stored sealed and never read back. Reply:
    /// `WorkspaceMcpServers`.
    SetWorkspaceMcpServer {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The server.
        server: crate::mcp::McpServerSpec,
    },
    /// Remove an MCP server of one of the caller's workspaces. Reply:
    /// `WorkspaceMcpServers`.
    RemoveWorkspaceMcpServer {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
        /// The server's name.
        name: String,
    },
    /// The MCP servers of one of the caller's workspaces (secret names, no values).
    /// Reply: `WorkspaceMcpServers`.
    ListWorkspaceMcpServers {
        /// The workspace; `None`: the caller's default workspace.
        workspace: Option<WorkspaceId>,
    },
    /// `SendMessage` with attachments ([`crate::attachments`]): given to the agent as
    /// image or resource blocks when it advertises them (refused otherwise, before
    /// anything is committed), never queued behind a running turn. The stream is as for
    /// `SendMessage`.
    SendWithAttachments {
        /// The conversation.
        conversation: ConversationId,
        /// The message text.
        text: String,
        /// The attachments (at most [`crate::attachments::ATTACHMENTS_MAX`]).
        attachments: Vec<crate::attachments::Attachment>,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Switch the conversation to another agent between turns (owner only; refused
    /// while a turn runs). The new agent's first turn starts a session given the
    /// transcript, or resumes its own earlier session of this conversation when it can
    /// (`session/load`). The mode and model picks are cleared (they were the old
    /// agent's). Reply: `AgentSwitched`.
    SwitchAgent {
        /// The conversation.
        conversation: ConversationId,
        /// The agent's id (enabled and ready on the node).
        agent: String,
    },
}

impl ClientRequest {
    /// The conversation the request acts on, when it acts on one (a share token
    /// applies to these requests only).
    pub fn conversation(&self) -> Option<ConversationId> {
        match self {
            ClientRequest::GetConversation { conversation }
            | ClientRequest::SendMessage { conversation, .. }
            | ClientRequest::SendNow { conversation, .. }
            | ClientRequest::CancelTurn { conversation }
            | ClientRequest::Follow { conversation, .. }
            | ClientRequest::RespondPermission { conversation, .. }
            | ClientRequest::AttachTurn { conversation }
            | ClientRequest::GetMessages { conversation, .. }
            | ClientRequest::ForkConversation { conversation, .. }
            | ClientRequest::RewindConversation { conversation, .. }
            | ClientRequest::RenameConversation { conversation, .. }
            | ClientRequest::DeleteConversation { conversation }
            | ClientRequest::ListQueue { conversation }
            | ClientRequest::RemoveQueued { conversation, .. }
            | ClientRequest::MoveQueued { conversation, .. }
            | ClientRequest::ListCompactions { conversation }
            | ClientRequest::CloneFromCompaction { conversation, .. }
            | ClientRequest::CreateGrant { conversation, .. }
            | ClientRequest::SetShareLock { conversation, .. }
            | ClientRequest::SetSessionSettings { conversation, .. }
            | ClientRequest::SendWithAttachments { conversation, .. }
            | ClientRequest::SwitchAgent { conversation, .. } => Some(*conversation),
            ClientRequest::ListGrants { conversation } => *conversation,
            ClientRequest::RevokeGrant { grant } | ClientRequest::RotateGrant { grant } => {
                Some(grant.conversation)
            }
            ClientRequest::Shared { request, .. } => request.conversation(),
            ClientRequest::CreateConversation { .. }
            | ClientRequest::ListConversations { .. }
            | ClientRequest::SetCredential { .. }
            | ClientRequest::ListCredentials { .. }
            | ClientRequest::DeleteCredential { .. }
            | ClientRequest::CreateWorkspace { .. }
            | ClientRequest::ListWorkspaces
            | ClientRequest::RenameWorkspace { .. }
            | ClientRequest::MoveWorkspace { .. }
            | ClientRequest::DeleteWorkspace { .. }
            | ClientRequest::CreateConversationIn { .. }
            | ClientRequest::CreateSkillPack { .. }
            | ClientRequest::UpdateSkillPack { .. }
            | ClientRequest::GetSkillPack { .. }
            | ClientRequest::ListSkillPacks
            | ClientRequest::DeleteSkillPack { .. }
            | ClientRequest::AttachSkillPack { .. }
            | ClientRequest::DetachSkillPack { .. }
            | ClientRequest::ListConversationsPage { .. }
            | ClientRequest::GetUsage { .. }
            | ClientRequest::SharedWithMe
            | ClientRequest::GetWorkspacePermissions { .. }
            | ClientRequest::SetWorkspacePermissions { .. }
            | ClientRequest::SetWorkspaceMcpServer { .. }
            | ClientRequest::RemoveWorkspaceMcpServer { .. }
            | ClientRequest::ListWorkspaceMcpServers { .. } => None,
        }
    }
}

/// A context compaction as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionInfo {
    /// 1, 2, … within the conversation.
    pub seq: u64,
    /// The turn it happened in.
    pub turn: TurnId,
    /// The agent's summary of what it compacted.
    pub summary: String,
    /// When it was recorded, ms since the Unix epoch.
    pub at_ms: u64,
}

/// How `GetUsage` groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsageBy {
    /// One row per conversation.
    Conversation,
    /// One row per agent.
    Agent,
    /// One row per workspace.
    Workspace,
    /// One row per workspace credential the agent ran with (a turn with several counts
    /// in each; one with none in `(none)`).
    Credential,
}

/// Usage summed over some turns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// What the row sums (a conversation or workspace id, an agent name; `total`).
    pub key: String,
    /// Turns counted.
    pub turns: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Thought tokens.
    pub thought_tokens: u64,
    /// Input tokens read from a cache.
    pub cached_read_tokens: u64,
    /// Input tokens written to a cache.
    pub cached_write_tokens: u64,
    /// Cost per currency, in millionths of it (`(currency, micros)`).
    pub cost: Vec<(String, u64)>,
}

/// A queued message as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedInfo {
    /// Its id in the queue.
    pub item: u64,
    /// Its text.
    pub text: String,
    /// When it was queued, ms since the Unix epoch.
    pub queued_at_ms: u64,
}

/// Most messages one `GetMessages` returns.
pub const MESSAGES_PAGE_MAX: u32 = 500;

/// A conversation as listed by `ListConversationsPage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationListing {
    /// Its metadata.
    pub summary: ConversationSummary,
    /// Its last activity (creation, a user message, a fork), ms since the Unix epoch.
    pub last_activity_ms: u64,
}

/// A secret value on the wire (a credential): shown as `<redacted>` by `Debug`, so a
/// logged request never holds it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A workspace credential as listed: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialInfo {
    /// The environment variable it sets.
    pub name: String,
    /// When it was first set, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was last set.
    pub updated_at_ms: u64,
}

/// A conversation's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// The conversation.
    pub id: ConversationId,
    /// Its workspace.
    pub workspace: WorkspaceId,
    /// Its owner.
    pub owner: UserId,
    /// Title, if set.
    pub title: Option<String>,
    /// The agent that runs its turns.
    pub agent: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Committed messages.
    pub message_count: u64,
    /// Whether a turn is running now.
    pub turn_running: bool,
}

/// A conversation with its transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationDetail {
    /// Metadata.
    pub summary: ConversationSummary,
    /// Committed messages, oldest first.
    pub messages: Vec<Message>,
    /// The running turn's assistant message as streamed so far.
    pub in_flight: Option<Message>,
    /// The slash commands the conversation's agent offers now (owner only; empty until
    /// its agent session has said).
    pub commands: Vec<crate::transcript::SlashCommand>,
    /// The owner's mode and model picks and what the agent offers (owner only).
    pub settings: crate::settings::SessionSettings,
}

/// The answer to a unary request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// `CreateConversation` succeeded (or was a retry).
    Created(ConversationSummary),
    /// `ListConversations`.
    Conversations(Vec<ConversationSummary>),
    /// `GetConversation`.
    Conversation(Box<ConversationDetail>),
    /// `CancelTurn`: whether a turn was running.
    Cancelled {
        /// A turn was running and has been asked to stop.
        was_running: bool,
    },
    /// `RespondPermission` was delivered to the agent.
    PermissionAnswered,
    /// `SetCredential` is committed.
    CredentialSet,
    /// `ListCredentials`: names and times, sorted by name.
    Credentials(Vec<CredentialInfo>),
    /// `DeleteCredential` is committed.
    CredentialDeleted {
        /// It existed.
        existed: bool,
    },
    /// A workspace after `CreateWorkspace`, `RenameWorkspace`, `AttachSkillPack` or
    /// `DetachSkillPack`.
    Workspace(WorkspaceInfo),
    /// `ListWorkspaces` or `MoveWorkspace`: the caller's workspaces in order.
    Workspaces(Vec<WorkspaceInfo>),
    /// `DeleteWorkspace` is committed.
    WorkspaceDeleted {
        /// Conversations deleted with it.
        conversations: u64,
    },
    /// A skill pack after `CreateSkillPack` or `UpdateSkillPack`.
    SkillPack(SkillPackInfo),
    /// `ListSkillPacks`.
    SkillPacks(Vec<SkillPackInfo>),
    /// `GetSkillPack`.
    SkillPackContent {
        /// The pack.
        info: SkillPackInfo,
        /// Its content.
        spec: SkillPackSpec,
    },
    /// `DeleteSkillPack` is committed.
    SkillPackDeleted {
        /// Workspaces it was detached from.
        detached: u64,
    },
    /// `RewindConversation` is committed: the conversation after it.
    Rewound(ConversationSummary),
    /// `RenameConversation` is committed.
    Renamed(ConversationSummary),
    /// `DeleteConversation` is committed.
    ConversationDeleted,
    /// `ListConversationsPage`.
    ConversationPage {
        /// The page, most recently active first.
        conversations: Vec<ConversationListing>,
        /// Pass as `cursor` for the next page; `None`: this was the last.
        next_cursor: Option<String>,
    },
    /// `GetMessages`, oldest first.
    Messages {
        /// The messages.
        messages: Vec<Message>,
        /// Whether older messages exist before the first one.
        more: bool,
    },
    /// `ListQueue`, `RemoveQueued`, `MoveQueued`: the queue, in the order it will run.
    Queue(Vec<QueuedInfo>),
    /// `ListCompactions`.
    Compactions(Vec<CompactionInfo>),
    /// `GetUsage`: one row per group (largest output first), and their total.
    Usage {
        /// The rows.
        rows: Vec<UsageRow>,
        /// All of them summed (`key` = `total`).
        total: UsageRow,
    },
    /// `CreateGrant`, `RotateGrant`: the grant, and for a new or rotated link its token
    /// (shown once; the node keeps only its hash).
    Grant {
        /// The grant.
        grant: GrantInfo,
        /// The link token.
        token: Option<String>,
    },
    /// `ListGrants`.
    Grants(Vec<GrantInfo>),
    /// `RevokeGrant`: whether it existed.
    GrantRevoked {
        /// It existed (and works no more).
        existed: bool,
    },
    /// `SetShareLock`: the lock now.
    ShareLock {
        /// Locked.
        locked: bool,
    },
    /// `SharedWithMe`.
    SharedWithMe(Vec<SharedListing>),
    /// `GetConversation` by a viewer or editor: the redacted view.
    SharedConversation(Box<SharedView>),
    /// `SetSessionSettings` is committed: the conversation's settings now.
    SessionSettings(Box<crate::settings::SessionSettings>),
    /// `GetWorkspacePermissions`, `SetWorkspacePermissions`: the workspace's policy.
    WorkspacePermissions {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its policy.
        policy: crate::permissions::PermissionPolicy,
    },
    /// The MCP servers of a workspace, by name (secret names, no values).
    WorkspaceMcpServers {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its servers.
        servers: Vec<crate::mcp::McpServerInfo>,
    },
    /// `SwitchAgent` is committed: the conversation after it.
    AgentSwitched(ConversationSummary),
}

/// What the server writes on a request stream. Encoded by declaration index: append only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The answer to a unary request; the stream ends after it.
    Reply(ClientReply),
    /// `SendMessage` accepted: the user message is committed and the turn started.
    Accepted {
        /// The turn.
        turn: TurnId,
        /// The committed user message.
        user_message: MessageId,
        /// Whether this was a retry of a request already applied.
        duplicate: bool,
    },
    /// One event.
    Event(EventFrame),
    /// The follower fell too far behind and was cut off; follow again from your last seq.
    Resync {
        /// Why.
        reason: String,
    },
    /// The conversation is hosted elsewhere now; reconnect there and resume.
    Moved {
        /// The hosting node's client address.
        to: String,
    },
    /// The request failed; the stream ends after it.
    Error(WireError),
    /// `SendMessage` while a turn runs: the message is queued (replicated) and runs after
    /// the turn; `Accepted` and its turn's events follow on this stream when it starts.
    Queued {
        /// Its id in the queue (for `RemoveQueued`, `MoveQueued`).
        item: u64,
        /// Its 0-based position.
        position: u32,
    },
}
