//! The commands of the shard state machine and the checks that need no state.

use super::sharing::StoredGrant;
use super::{MessageHeader, Rejection, WorkspaceSnapshot};
use crate::security::credentials::{CREDENTIAL_VALUE_BYTES_MAX, Sealed, check_shape};
use crate::shard::parts_delta::PartsDelta;
use serde::{Deserialize, Serialize};
use shoal_protocol::client::{MESSAGE_TEXT_BYTES_MAX, TITLE_BYTES_MAX};
use shoal_protocol::mcp::{
    MCP_ENTRIES_MAX, MCP_NAME_BYTES_MAX, MCP_VALUE_BYTES_MAX, check_secret_names,
    check_server_name, check_transport,
};
use shoal_protocol::permissions::PermissionPolicy;
use shoal_protocol::settings::{SessionOffer, SettingKind, check_pick};
use shoal_protocol::sharing::{GrantId, GrantTarget, SharedListing};
use shoal_protocol::transcript::{Message, MessageStatus, StopReason, content_from_parts};
use shoal_protocol::workspaces::{SkillPackSpec, check_name};
use shoal_protocol::{
    ConversationId, MessageId, RequestId, SkillPackId, TurnId, UserId, WorkspaceId,
};

/// A durable change to a shard. Encoded by declaration index: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// Create a conversation (idempotent per `(owner, request_id)`).
    CreateConversation {
        /// The new id (chosen by the proposer).
        id: ConversationId,
        /// Its workspace (same shard).
        workspace: WorkspaceId,
        /// Owner.
        owner: UserId,
        /// Optional title.
        title: Option<String>,
        /// Agent name.
        agent: String,
        /// Creation time.
        at_ms: u64,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// A conversation actor starts: bump the activation number (new sequence range).
    Activate {
        /// The conversation.
        conversation: ConversationId,
    },
    /// Append a user message and start a turn (idempotent per request id).
    AppendUserMessage {
        /// The conversation.
        conversation: ConversationId,
        /// Message text.
        text: String,
        /// Idempotency key.
        request_id: RequestId,
        /// Time of the message.
        at_ms: u64,
    },
    /// Save the running turn's assistant message as streamed so far. No longer proposed
    /// (see [`ShardCommand::AppendParts`]); applied when an older log replays.
    Checkpoint {
        /// The conversation.
        conversation: ConversationId,
        /// The assistant message (status `InProgress`).
        message: Message,
    },
    /// End the running turn with its final assistant message. Proposed only by tests now
    /// (see [`ShardCommand::EndTurn`]); applied when an older log replays.
    FinishTurn {
        /// The conversation.
        conversation: ConversationId,
        /// The final assistant message (status complete, cancelled or interrupted).
        message: Message,
    },
    /// Remember (or forget) the agent's session id, for `session/load` on reactivation.
    SetAgentSession {
        /// The conversation.
        conversation: ConversationId,
        /// The agent's session id.
        session_id: Option<String>,
    },
    /// Save what the running turn streamed since the proposer's last confirmed
    /// checkpoint (replaces [`ShardCommand::Checkpoint`], which re-sent the whole message).
    AppendParts {
        /// The conversation.
        conversation: ConversationId,
        /// The running turn's assistant message.
        message: MessageHeader,
        /// Its parts from the proposer's confirmed mark on.
        delta: PartsDelta,
    },
    /// End the running turn (replaces [`ShardCommand::FinishTurn`]): apply the last
    /// delta, if any, to the stored message and give it its final status.
    EndTurn {
        /// The conversation.
        conversation: ConversationId,
        /// The running turn's assistant message.
        message: MessageHeader,
        /// The parts not yet confirmed stored; `None` ends the turn with what is stored
        /// (a new activation saving a turn its predecessor left running).
        delta: Option<PartsDelta>,
        /// Complete, cancelled or interrupted.
        status: MessageStatus,
        /// Why it ended.
        stop_reason: Option<StopReason>,
        /// What went wrong, if anything.
        error: Option<String>,
    },
    /// Record a workspace snapshot whose chunks are already on a majority of the shard's
    /// replicas. Applies only on top of the snapshot it was taken from (`base`), so a
    /// node holding a stale tree can never replace a newer snapshot.
    SetWorkspaceSnapshot {
        /// The workspace (this shard's).
        workspace: WorkspaceId,
        /// The sequence number of the snapshot it was taken from (0: none).
        base: u64,
        /// The new snapshot; its `seq` is `base + 1`.
        snapshot: WorkspaceSnapshot,
    },
    /// Set or replace a workspace credential. Only the sealed value enters the log.
    SetCredential {
        /// The workspace (this shard's).
        workspace: WorkspaceId,
        /// The variable name.
        name: String,
        /// The value, sealed by the proposer.
        sealed: Sealed,
        /// When.
        at_ms: u64,
    },
    /// Remove a workspace credential.
    DeleteCredential {
        /// The workspace.
        workspace: WorkspaceId,
        /// The variable name.
        name: String,
    },
    /// Create a workspace of `owner` (idempotent per `(owner, request_id)`); in the
    /// owner's shard, like every workspace command ([`workspaces`]).
    CreateWorkspace {
        /// The new id (chosen by the proposer, in the owner's shard).
        id: WorkspaceId,
        /// Owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// Its name (unique per owner, without regard to case).
        name: String,
        /// When.
        at_ms: u64,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Rename a workspace.
    RenameWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The new name.
        name: String,
    },
    /// Move a workspace to `position` in its owner's list.
    MoveWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// 0-based; past the end means last.
        position: u32,
    },
    /// Delete a workspace with its conversations, snapshot record and credentials
    /// (refused for the default workspace and while any of its turns runs).
    DeleteWorkspace {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
    },
    /// Create a skill pack (idempotent per `(owner, request_id)`).
    CreateSkillPack {
        /// The new id (in the owner's shard).
        id: SkillPackId,
        /// Owner.
        owner: UserId,
        /// Its content (checked by [`SkillPackSpec::check`]).
        spec: SkillPackSpec,
        /// When.
        at_ms: u64,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Replace a skill pack's content.
    UpdateSkillPack {
        /// The pack.
        id: SkillPackId,
        /// Its owner.
        owner: UserId,
        /// The new content.
        spec: SkillPackSpec,
        /// When.
        at_ms: u64,
    },
    /// Delete a skill pack, detaching it from the owner's workspaces.
    DeleteSkillPack {
        /// The pack.
        id: SkillPackId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
    },
    /// Attach a skill pack to a workspace (both the owner's).
    AttachSkillPack {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The pack.
        pack: SkillPackId,
    },
    /// Detach a skill pack from a workspace.
    DetachSkillPack {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The pack.
        pack: SkillPackId,
    },
    /// Rewind a conversation in place: keep message `keep` (cut to its first `parts`
    /// parts when given: an assistant message) and drop everything after it; forget the
    /// agent's session. Refused while a turn runs.
    RewindConversation {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
        /// The last message kept.
        keep: MessageId,
        /// Keep only this many parts of it.
        parts: Option<u32>,
    },
    /// Fork: a new conversation with messages `0..=upto` of `source` (the last cut to
    /// `parts` parts when given); the source is untouched. Idempotent per request id.
    ForkConversation {
        /// The new conversation (in the source's shard).
        id: ConversationId,
        /// The conversation forked.
        source: ConversationId,
        /// The owner of both.
        owner: UserId,
        /// The new conversation's workspace (the owner's, in the same shard).
        workspace: WorkspaceId,
        /// The last message copied.
        upto: MessageId,
        /// Keep only this many parts of it.
        parts: Option<u32>,
        /// The new title (`None`: "Fork of …").
        title: Option<String>,
        /// When.
        at_ms: u64,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Set (or clear) a conversation's title.
    RenameConversation {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
        /// The title.
        title: Option<String>,
    },
    /// Delete a conversation and its messages (refused while a turn runs).
    DeleteConversation {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
    },
    /// Queue a message sent while a turn runs (at the front with `front`: "send now").
    /// Idempotent per request id.
    EnqueueMessage {
        /// The conversation.
        conversation: ConversationId,
        /// The text.
        text: String,
        /// The send's idempotency key.
        request_id: RequestId,
        /// When.
        at_ms: u64,
        /// Put it first.
        front: bool,
    },
    /// Take queued message `item` off the queue and start its turn.
    StartQueued {
        /// The conversation.
        conversation: ConversationId,
        /// The queued message.
        item: u64,
        /// When its turn starts.
        at_ms: u64,
    },
    /// Remove a queued message.
    RemoveQueued {
        /// The conversation.
        conversation: ConversationId,
        /// The queued message.
        item: u64,
    },
    /// Move a queued message to `position` (0-based; past the end: last).
    MoveQueued {
        /// The conversation.
        conversation: ConversationId,
        /// The queued message.
        item: u64,
        /// Its new position.
        position: u32,
    },
    /// Record what a turn used (once per turn; see [`super::usage`]).
    RecordUsage {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
        /// The turn.
        turn: TurnId,
        /// Its workspace.
        workspace: WorkspaceId,
        /// The agent that ran it.
        agent: String,
        /// When it ended.
        at_ms: u64,
        /// The agent's token counts for the turn, if reported.
        tokens: Option<crate::agent_process::TokenCounts>,
        /// The agent session the cost total belongs to.
        session: Option<String>,
        /// The session's running cost total after the turn, in millionths of its
        /// currency (integers keep every replica's sums alike), and the currency.
        session_cost: Option<(u64, String)>,
        /// The workspace credentials (names) the agent ran with.
        credentials: Vec<String>,
    },
    /// Record a context compaction the agent reported (once per agent id and turn).
    RecordCompaction {
        /// The conversation.
        conversation: ConversationId,
        /// The agent's id for it.
        agent_id: String,
        /// The turn it happened in.
        turn: TurnId,
        /// Its summary (at most 64 KiB).
        summary: String,
        /// When.
        at_ms: u64,
    },
    /// A new conversation (same workspace and agent) seeded with one message: the
    /// summary of compaction `seq` of `source`. Idempotent per request id.
    CloneFromCompaction {
        /// The new conversation (in the source's shard).
        id: ConversationId,
        /// The conversation compacted.
        source: ConversationId,
        /// Its owner.
        owner: UserId,
        /// The compaction.
        seq: u64,
        /// The new title (`None`: "Summary of …").
        title: Option<String>,
        /// When.
        at_ms: u64,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// Share a conversation (idempotent per the grant's request id).
    CreateGrant {
        /// The grant.
        grant: StoredGrant,
    },
    /// Remove a grant.
    RevokeGrant {
        /// The grant.
        grant: GrantId,
        /// Its owner.
        owner: UserId,
    },
    /// Replace a link grant's secret.
    RotateGrant {
        /// The grant.
        grant: GrantId,
        /// Its owner.
        owner: UserId,
        /// SHA-256 of the new secret.
        secret_hash: [u8; 32],
    },
    /// Bind an unbound invitation to the first user who presents its token.
    BindInvite {
        /// The grant.
        grant: GrantId,
        /// The user.
        user: UserId,
    },
    /// Lock or unlock a conversation's sharing.
    SetShareLock {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
        /// Locked or not.
        locked: bool,
    },
    /// Add a conversation to `user`'s "shared with me" index (in `user`'s shard).
    IndexShared {
        /// The grantee.
        user: UserId,
        /// The entry.
        listing: SharedListing,
    },
    /// Remove an entry of `user`'s "shared with me" index.
    UnindexShared {
        /// The grantee.
        user: UserId,
        /// The grant.
        grant: GrantId,
    },
    /// A new conversation with these messages, copied from another shard (a shared
    /// conversation forked by a viewer or editor). Idempotent per request id.
    ImportConversation {
        /// The new conversation's record.
        record: Box<super::ConversationRecord>,
        /// Its messages, `0..record.message_count`.
        messages: Vec<Message>,
        /// The owner's default workspace (the shard's key for them).
        default: WorkspaceId,
        /// Idempotency key.
        request_id: RequestId,
    },
    /// The owner picks the conversation's mode and/or model ([`super::settings`]):
    /// refused while a turn runs, and when the agent's last offer lacks the value.
    SetSessionSettings {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner (anyone else's reads as a missing conversation).
        owner: UserId,
        /// The mode's id; `None`: unchanged.
        mode: Option<String>,
        /// The model's id; `None`: unchanged.
        model: Option<String>,
    },
    /// What the conversation's agent offers for its session, as it last said.
    RecordSessionOffer {
        /// The conversation.
        conversation: ConversationId,
        /// The offer (bounded: [`SessionOffer::within_bounds`]).
        offer: SessionOffer,
    },
    /// Replace a workspace's permission policy ([`super::permissions`]; an empty one
    /// removes it).
    SetWorkspacePermissions {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The policy (its kinds are ACP tool kinds).
        policy: PermissionPolicy,
    },
    /// Add or replace an MCP server of a workspace ([`super::mcp`]).
    SetWorkspaceMcpServer {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The server's name.
        name: String,
        /// The server, its secrets sealed by the proposer.
        server: super::mcp::StoredMcpServer,
    },
    /// Remove an MCP server of a workspace.
    RemoveWorkspaceMcpServer {
        /// The workspace.
        workspace: WorkspaceId,
        /// Its owner.
        owner: UserId,
        /// The owner's default workspace.
        default: WorkspaceId,
        /// The server's name.
        name: String,
    },
    /// Switch a conversation to another agent between turns ([`super::settings`]): the
    /// old agent's session id is kept for a switch back, the new agent's earlier one (if
    /// any) becomes the one to resume, and the mode and model picks are cleared.
    SwitchAgent {
        /// The conversation.
        conversation: ConversationId,
        /// Its owner.
        owner: UserId,
        /// The new agent's id.
        agent: String,
    },
    /// Set or clear the shard's operator pin ([`super::pins`]); `None` or an empty pin
    /// clears it.
    SetShardPin {
        /// The pin.
        pin: Option<shoal_protocol::admin::ShardPin>,
    },
}

impl ShardCommand {
    /// Checks what can be checked without the state. [`apply`] runs the same checks, so
    /// a command that fails them is rejected alike on every replica; proposers call this
    /// first so such a command never reaches the log.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            ShardCommand::CreateConversation { id, workspace, .. } => {
                if id.shard != workspace.shard {
                    return Err(Rejection::Invalid(format!(
                        "conversation {id} must live in its workspace's shard {}",
                        workspace.shard
                    )));
                }
            }
            ShardCommand::Checkpoint {
                conversation,
                message,
            }
            | ShardCommand::FinishTurn {
                conversation,
                message,
            } => {
                // Invariant 4, checked where a message enters the log.
                if message.content != content_from_parts(&message.parts) {
                    return Err(Rejection::Invalid(format!(
                        "message {} of {conversation}: content must equal content_from_parts(parts) (invariant 4)",
                        message.id
                    )));
                }
                let finishing = matches!(self, ShardCommand::FinishTurn { .. });
                if finishing && message.status == MessageStatus::InProgress {
                    return Err(Rejection::Invalid(format!(
                        "message {} of {conversation}: a finished turn is not in progress",
                        message.id
                    )));
                }
            }
            ShardCommand::EndTurn {
                conversation,
                message,
                status,
                ..
            } => {
                if *status == MessageStatus::InProgress {
                    return Err(Rejection::Invalid(format!(
                        "message {} of {conversation}: a finished turn is not in progress",
                        message.id
                    )));
                }
            }
            ShardCommand::SetWorkspaceSnapshot {
                workspace,
                base,
                snapshot,
            } => {
                if Some(snapshot.seq) != base.checked_add(1) {
                    return Err(Rejection::Invalid(format!(
                        "snapshot {} of workspace {workspace} must follow its base {base}",
                        snapshot.seq
                    )));
                }
                if snapshot.manifest.is_empty() {
                    return Err(Rejection::Invalid(format!(
                        "snapshot {} of workspace {workspace} has no manifest",
                        snapshot.seq
                    )));
                }
            }
            ShardCommand::SetCredential {
                workspace,
                name,
                sealed,
                ..
            } => {
                check_shape(name).map_err(Rejection::Invalid)?;
                let bound = CREDENTIAL_VALUE_BYTES_MAX + 16;
                if sealed.ciphertext.len() > bound || sealed.key_id.len() > 64 {
                    return Err(Rejection::Invalid(format!(
                        "credential `{name}` of workspace {workspace} is larger than a credential can be"
                    )));
                }
            }
            ShardCommand::DeleteCredential { name, .. } => {
                check_shape(name).map_err(Rejection::Invalid)?;
            }
            ShardCommand::CreateWorkspace {
                id, default, name, ..
            } => {
                same_shard(id.shard, default.shard, "workspace")?;
                check_name("workspace name", name).map_err(Rejection::Invalid)?;
            }
            ShardCommand::RenameWorkspace {
                workspace,
                default,
                name,
                ..
            } => {
                same_shard(workspace.shard, default.shard, "workspace")?;
                check_name("workspace name", name).map_err(Rejection::Invalid)?;
            }
            ShardCommand::MoveWorkspace {
                workspace, default, ..
            }
            | ShardCommand::DeleteWorkspace {
                workspace, default, ..
            } => same_shard(workspace.shard, default.shard, "workspace")?,
            ShardCommand::CreateSkillPack { spec, .. }
            | ShardCommand::UpdateSkillPack { spec, .. } => {
                spec.check().map_err(Rejection::Invalid)?;
            }
            ShardCommand::ForkConversation {
                id,
                source,
                workspace,
                title,
                ..
            } => {
                if id.shard != source.shard || workspace.shard != source.shard {
                    return Err(Rejection::Invalid(format!(
                        "a fork of {source} must stay in its shard {}",
                        source.shard
                    )));
                }
                check_title(title.as_deref())?;
            }
            ShardCommand::RenameConversation { title, .. } => check_title(title.as_deref())?,
            ShardCommand::RewindConversation { .. } | ShardCommand::DeleteConversation { .. } => {}
            ShardCommand::EnqueueMessage { text, .. } => {
                if text.len() > MESSAGE_TEXT_BYTES_MAX {
                    return Err(Rejection::Invalid(format!(
                        "the message is {} bytes, the limit is {MESSAGE_TEXT_BYTES_MAX}",
                        text.len()
                    )));
                }
            }
            ShardCommand::StartQueued { .. }
            | ShardCommand::RemoveQueued { .. }
            | ShardCommand::MoveQueued { .. } => {}
            ShardCommand::RecordCompaction {
                agent_id, summary, ..
            } => {
                if summary.len() > super::compactions::COMPACTION_SUMMARY_BYTES_MAX
                    || agent_id.len() > 256
                {
                    return Err(Rejection::Invalid(
                        "a compaction summary is at most 64 KiB and its id 256 bytes".to_owned(),
                    ));
                }
            }
            ShardCommand::CloneFromCompaction {
                id, source, title, ..
            } => {
                if id.shard != source.shard {
                    return Err(Rejection::Invalid(format!(
                        "a clone of {source} must stay in its shard {}",
                        source.shard
                    )));
                }
                check_title(title.as_deref())?;
            }
            ShardCommand::RecordUsage {
                session_cost,
                credentials,
                ..
            } => {
                if credentials.len() > crate::security::credentials::CREDENTIALS_PER_WORKSPACE_MAX {
                    return Err(Rejection::Invalid(
                        "a turn cannot have run with more credentials than a workspace holds"
                            .to_owned(),
                    ));
                }
                if let Some((_, currency)) = session_cost
                    && currency.len() > 16
                {
                    return Err(Rejection::Invalid(format!(
                        "currency code {:?} is longer than 16 bytes",
                        currency.chars().take(20).collect::<String>()
                    )));
                }
            }
            ShardCommand::DeleteSkillPack { id, default, .. } => {
                same_shard(id.shard, default.shard, "skill pack")?;
            }
            ShardCommand::AttachSkillPack {
                workspace,
                default,
                pack,
                ..
            }
            | ShardCommand::DetachSkillPack {
                workspace,
                default,
                pack,
                ..
            } => {
                same_shard(workspace.shard, default.shard, "workspace")?;
                same_shard(pack.shard, default.shard, "skill pack")?;
            }
            ShardCommand::Activate { .. }
            | ShardCommand::AppendUserMessage { .. }
            | ShardCommand::SetAgentSession { .. }
            | ShardCommand::AppendParts { .. } => {}
            ShardCommand::CreateGrant { grant } => {
                let link = !matches!(grant.target, GrantTarget::User { .. });
                if link != grant.secret_hash.is_some() {
                    return Err(Rejection::Invalid(format!(
                        "grant {}: a link or invitation has a secret hash, a user grant none",
                        grant.id
                    )));
                }
                if matches!(grant.target, GrantTarget::Invite { bound_to: Some(_) }) {
                    return Err(Rejection::Invalid(format!(
                        "grant {}: an invitation is bound on first use, not when made",
                        grant.id
                    )));
                }
            }
            ShardCommand::RevokeGrant { .. }
            | ShardCommand::RotateGrant { .. }
            | ShardCommand::BindInvite { .. }
            | ShardCommand::SetShareLock { .. }
            | ShardCommand::UnindexShared { .. } => {}
            ShardCommand::IndexShared { listing, .. } => check_title(listing.title.as_deref())?,
            ShardCommand::SetSessionSettings {
                conversation,
                mode,
                model,
                ..
            } => {
                if mode.is_none() && model.is_none() {
                    return Err(Rejection::Invalid(format!(
                        "settings of {conversation}: give a mode, a model or both"
                    )));
                }
                for (kind, pick) in [(SettingKind::Mode, mode), (SettingKind::Model, model)] {
                    if let Some(pick) = pick {
                        check_pick(kind, pick).map_err(Rejection::Invalid)?;
                    }
                }
            }
            ShardCommand::RecordSessionOffer {
                conversation,
                offer,
            } => {
                if !offer.within_bounds() {
                    return Err(Rejection::Invalid(format!(
                        "the agent offer of {conversation} is larger than an offer is kept"
                    )));
                }
            }
            ShardCommand::SetWorkspacePermissions {
                workspace,
                default,
                policy,
                ..
            } => {
                same_shard(workspace.shard, default.shard, "workspace")?;
                policy.check().map_err(Rejection::Invalid)?;
            }
            ShardCommand::SetWorkspaceMcpServer {
                workspace,
                default,
                name,
                server,
                ..
            } => {
                same_shard(workspace.shard, default.shard, "workspace")?;
                check_server_name(name).map_err(Rejection::Invalid)?;
                check_transport(name, &server.transport).map_err(Rejection::Invalid)?;
                check_secret_names(name, server.secret_names.iter()).map_err(Rejection::Invalid)?;
                // Every value and name at its bound, as JSON, plus the tag.
                let bound = MCP_ENTRIES_MAX * (MCP_VALUE_BYTES_MAX + MCP_NAME_BYTES_MAX + 8) + 64;
                if server
                    .sealed
                    .as_ref()
                    .is_some_and(|s| s.ciphertext.len() > bound || s.key_id.len() > 64)
                {
                    return Err(Rejection::Invalid(format!(
                        "MCP server `{name}`: its sealed values are larger than they can be"
                    )));
                }
            }
            ShardCommand::RemoveWorkspaceMcpServer {
                workspace,
                default,
                name,
                ..
            } => {
                same_shard(workspace.shard, default.shard, "workspace")?;
                check_server_name(name).map_err(Rejection::Invalid)?;
            }
            ShardCommand::SwitchAgent { agent, .. } => {
                let ok = !agent.is_empty()
                    && agent.len() <= super::settings::AGENT_ID_BYTES_MAX
                    && agent.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b)
                    });
                if !ok {
                    return Err(Rejection::Invalid(format!(
                        "`{}` is not an agent id",
                        agent.escape_debug()
                    )));
                }
            }
            ShardCommand::SetShardPin { pin } => {
                if let Some(pin) = pin {
                    super::pins::check(pin)?;
                }
            }
            ShardCommand::ImportConversation {
                record,
                messages,
                default,
                ..
            } => {
                same_shard(record.id.shard, record.workspace.shard, "conversation")?;
                same_shard(record.workspace.shard, default.shard, "workspace")?;
                check_title(record.title.as_deref())?;
                if record.message_count != messages.len() as u64 || record.running_turn.is_some() {
                    return Err(Rejection::Invalid(format!(
                        "import of {}: the record must count its messages and run no turn",
                        record.id
                    )));
                }
                for (index, message) in messages.iter().enumerate() {
                    // Invariant 4, and every message finished, numbered from 0.
                    if message.id.0 != index as u64
                        || message.status == MessageStatus::InProgress
                        || message.content != content_from_parts(&message.parts)
                    {
                        return Err(Rejection::Invalid(format!(
                            "import of {}: message {index} is not a finished message numbered {index} whose content equals its parts",
                            record.id
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A title is at most [`TITLE_BYTES_MAX`] bytes.
fn check_title(title: Option<&str>) -> Result<(), Rejection> {
    match title {
        Some(t) if t.len() > TITLE_BYTES_MAX => Err(Rejection::Invalid(format!(
            "the title is {} bytes, the limit is {TITLE_BYTES_MAX}",
            t.len()
        ))),
        _ => Ok(()),
    }
}

/// A user's workspaces and packs live in the user's shard (see [`workspaces`]).
fn same_shard(
    shard: shoal_protocol::ShardId,
    user: shoal_protocol::ShardId,
    what: &str,
) -> Result<(), Rejection> {
    if shard == user {
        Ok(())
    } else {
        Err(Rejection::Invalid(format!(
            "a {what} in shard {shard} cannot belong to a user whose shard is {user}"
        )))
    }
}
