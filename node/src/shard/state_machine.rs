//! The shard state machine: deterministic and free of I/O.
//!
//! [`apply`] takes a command and a read view of the shard's keys and returns the writes
//! to make (applied atomically by the store) and the outcome. The same command over the
//! same state always yields the same writes, which is what lets Raft replicate it later.
//! A rejected command (`Err`) writes nothing.
//!
//! Determinism is what replication rests on, so [`apply`] separates two kinds of
//! failure:
//! * a [`Rejection`] depends only on the command and the replicated state: every replica
//!   rejects it alike, so it is a result (`Ok(Err(_))`). That includes a malformed
//!   command ([`Rejection::Invalid`], from [`ShardCommand::validate`]): proposers validate
//!   before proposing, and an invalid command that reaches the log anyway is rejected on
//!   every replica instead of crashing every replica on replay;
//! * a [`ReadError`] (the disk failed, or a stored value is damaged) is this replica's
//!   own fault: it is never turned into a result, which would make this replica diverge.
//!   The caller stops (fail-stop) and the other replicas carry on.
//!
//! Key layout inside a shard's tree:
//! * `c/<conversation uid>` → [`ConversationRecord`]
//! * `m/<conversation uid>/<message index, u64 BE>` → [`Message`]
//! * `mr/<conversation uid>/…`: the running turn's message as checkpointed ([`running`])
//! * `rc/<user>/<request id>` → the conversation a `CreateConversation` request made
//! * `rs/<conversation uid>/<request id>` → the turn a `AppendUserMessage` request started
//! * `u/<user>/<conversation uid>` → empty: the user's conversations
//! * `w/<workspace uid>` → [`WorkspaceSnapshot`]: the workspace's last committed snapshot
//! * `k/<workspace uid>` → [`WorkspaceCredentials`]: the workspace's sealed credentials
//! * `la/<conversation uid>` → u64: the conversation's last activity (ms)
//! * `q/<conversation uid>` → [`queue::MessageQueue`]: messages waiting for the turn
//! * `us/…`, `uc/…`: what turns used ([`usage`])
//! * `cp/<conversation uid>/<seq>`: context compactions ([`compactions`])
//! * `ss/<conversation uid>`: the session settings ([`settings`])
//! * `sa/<conversation uid>`: the agent sessions of earlier agents ([`settings`])
//! * `wp/<workspace uid>`: the workspace's permission policy ([`permissions`])
//! * `wm/<workspace uid>`: the workspace's MCP servers ([`mcp`])
//! * `pin`: the shard's operator pin ([`pins`])
//! * workspaces and skill packs: see [`workspaces`]

use crate::security::credentials::{CREDENTIALS_PER_WORKSPACE_MAX, Sealed};
use serde::{Deserialize, Serialize};
use shoal_protocol::frame::{BincodeCodec, Codec};
use shoal_protocol::transcript::{Message, MessageStatus, Part, Role, content_from_parts};
use shoal_protocol::{
    ConversationId, MessageId, RequestId, SkillPackId, TurnId, UserId, WorkspaceId,
};

mod command;
pub mod compactions;
pub mod history;
pub mod mcp;
pub mod permissions;
pub mod pins;
pub mod queue;
pub mod running;
pub mod settings;
pub mod sharing;
pub mod usage;
pub mod workspaces;

pub use command::ShardCommand;

/// A workspace's credentials, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCredentials {
    /// The credentials.
    pub entries: std::collections::BTreeMap<String, StoredCredential>,
}

/// One stored credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The sealed value.
    pub sealed: Sealed,
    /// When it was first set.
    pub created_at_ms: u64,
    /// When it was last set.
    pub updated_at_ms: u64,
}

/// A workspace's committed snapshot: where to find its manifest, not the files (the
/// Raft log never carries file contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSnapshot {
    /// 1, 2, …: one more than the snapshot it replaced.
    pub seq: u64,
    /// The encoded manifest's chunks, in order.
    pub manifest: Vec<crate::workspace::blobs::ChunkHash>,
    /// Entries in the tree.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    /// When it was taken.
    pub at_ms: u64,
    /// The node that took it.
    pub node: String,
}

/// What identifies a running turn's assistant message in [`ShardCommand::AppendParts`]
/// and [`ShardCommand::EndTurn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageHeader {
    /// The message.
    pub id: MessageId,
    /// Its turn.
    pub turn: TurnId,
    /// When the turn started (the message's `created_at_ms` if nothing is stored yet).
    pub created_at_ms: u64,
}

/// The running turn of a conversation, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTurn {
    /// The turn.
    pub turn: TurnId,
    /// The request that started it.
    pub request_id: RequestId,
    /// Its user message.
    pub user_message: MessageId,
    /// The assistant message it produces.
    pub assistant_message: MessageId,
}

/// A conversation's durable metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Id.
    pub id: ConversationId,
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Owner.
    pub owner: UserId,
    /// Title.
    pub title: Option<String>,
    /// Agent name.
    pub agent: String,
    /// Creation time.
    pub created_at_ms: u64,
    /// Committed messages (`m/…/0 .. message_count`).
    pub message_count: u64,
    /// Activations so far (the current actor's activation number).
    pub activation: u32,
    /// Turns started so far.
    pub turns: u64,
    /// The turn running now, if any.
    pub running_turn: Option<RunningTurn>,
    /// The agent's session id, once known.
    pub agent_session: Option<String>,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `CreateConversation`: the record (the existing one for a retried request).
    Conversation(Box<ConversationRecord>),
    /// `Activate`: the new activation number and the record after it.
    Activated(Box<ConversationRecord>),
    /// `AppendUserMessage`: the turn started (or, for a retry, the turn started first).
    TurnStarted(Box<TurnStartedOutcome>),
    /// Any other command applied.
    Done,
    /// `EndTurn`: the final assistant message as stored.
    TurnEnded(Box<Message>),
    /// `DeleteCredential`: whether it existed.
    Removed {
        /// It existed (and is gone now).
        existed: bool,
    },
    /// `CreateWorkspace`, `RenameWorkspace`, `AttachSkillPack`, `DetachSkillPack`: the
    /// workspace after it.
    Workspace(Box<workspaces::WorkspaceRecord>),
    /// `MoveWorkspace`: the owner's workspaces in their new order.
    Workspaces(Vec<workspaces::WorkspaceRecord>),
    /// `DeleteWorkspace`: the conversations deleted with it.
    WorkspaceDeleted {
        /// Their ids (their actors are stopped by the proposer).
        conversations: Vec<ConversationId>,
    },
    /// `CreateSkillPack`, `UpdateSkillPack`: the pack after it.
    SkillPack(Box<workspaces::StoredSkillPack>),
    /// `DeleteSkillPack`: the workspaces it was detached from.
    SkillPackDeleted {
        /// The workspaces.
        detached: Vec<WorkspaceId>,
    },
    /// `EnqueueMessage`: the message's item and the queue after it.
    Enqueued {
        /// The queued message's id.
        item: u64,
        /// The queue.
        queue: Box<queue::MessageQueue>,
    },
    /// `RemoveQueued`, `MoveQueued`: the queue after it.
    Queue(Box<queue::MessageQueue>),
    /// `CreateGrant` (the first grant of a retried request), `RotateGrant`, `BindInvite`:
    /// the grant after it.
    Grant(Box<sharing::StoredGrant>),
    /// `SetSessionSettings`: the conversation's settings after it.
    Settings(Box<shoal_protocol::settings::SessionSettings>),
    /// `SetWorkspaceMcpServer`, `RemoveWorkspaceMcpServer`: the servers after it.
    McpServers(Box<mcp::WorkspaceMcp>),
}

/// What `AppendUserMessage` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnStartedOutcome {
    /// The turn.
    pub turn: RunningTurn,
    /// The committed user message.
    pub user_message: Message,
    /// Whether this request was applied before.
    pub duplicate: bool,
    /// For a duplicate whose turn already ended: the final assistant message.
    pub finished: Option<Message>,
}

/// Why a command was rejected. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    /// The conversation does not exist.
    #[error("conversation {0} does not exist")]
    NotFound(ConversationId),
    /// A turn is already running.
    #[error("a turn ({0}) is already running in this conversation; wait for it or cancel it")]
    Busy(TurnId),
    /// The message does not belong to the running turn.
    #[error("no running turn matches message {0}")]
    StaleTurn(MessageId),
    /// The command itself is malformed ([`ShardCommand::validate`]).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// A workspace snapshot was taken from a snapshot that is no longer the last one.
    #[error(
        "workspace snapshot {current} was committed since this one's base; restore it before taking another"
    )]
    StaleSnapshot {
        /// The workspace's last committed snapshot.
        current: u64,
    },
    /// The workspace is not the caller's, was deleted, or does not exist.
    #[error("workspace {0} does not exist (or is not yours)")]
    WorkspaceNotFound(WorkspaceId),
    /// The skill pack is not the caller's or does not exist (or, for a detach, is not
    /// attached).
    #[error("skill pack {0} does not exist here (or is not yours)")]
    SkillPackNotFound(SkillPackId),
    /// The name is used by another of the caller's workspaces or packs.
    #[error("{0} already exists; choose another name")]
    NameTaken(String),
    /// A count limit is reached (the message names it).
    #[error("{0}")]
    TooMany(String),
    /// A conversation of the workspace runs a turn.
    #[error(
        "conversation {conversation} of this workspace is running turn {turn}; cancel it or wait, then retry"
    )]
    WorkspaceBusy {
        /// The conversation.
        conversation: ConversationId,
        /// Its running turn.
        turn: TurnId,
    },
    /// The grant does not exist (or is not the caller's).
    #[error("grant {0} does not exist")]
    GrantNotFound(shoal_protocol::sharing::GrantId),
}

/// This replica cannot read its own state: a local fault, never a replicated result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The store could not be read (disk error).
    #[error("cannot read the shard store: {0}")]
    Io(String),
    /// The stored bytes could not be decoded: the store is damaged.
    #[error("stored record `{key}` is corrupt: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decode error.
        message: String,
    },
}

/// Read access to a shard's keys.
pub trait ShardRead {
    /// The value at `key`; `Err` when this replica's store cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;
    /// Every key starting with `prefix` and its value, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, ReadError>;
}

/// Keys and values, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What [`apply`] yields when the state could be read: the writes and outcome, or a
/// rejection every replica makes alike.
pub type Applied = Result<(Writes, Outcome), Rejection>;

/// The writes a command makes, applied atomically: the deletes, then the puts in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Writes {
    /// `(key, value)` puts.
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys removed.
    pub deletes: Vec<Vec<u8>>,
}

impl Writes {
    fn delete(&mut self, key: Vec<u8>) {
        self.deletes.push(key);
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        // Our own types always encode.
        let bytes = BincodeCodec.encode(value).expect("shard values encode");
        self.puts.push((key, bytes));
    }
}

/// Key of a conversation record.
pub fn conversation_key(id: ConversationId) -> Vec<u8> {
    let mut key = b"c/".to_vec();
    key.extend_from_slice(&id.uid.to_be_bytes());
    key
}

/// Key of a workspace's last committed snapshot.
pub fn workspace_snapshot_key(workspace: WorkspaceId) -> Vec<u8> {
    let mut key = b"w/".to_vec();
    key.extend_from_slice(&workspace.uid.to_be_bytes());
    key
}

/// Key of a workspace's credentials.
pub fn workspace_credentials_key(workspace: WorkspaceId) -> Vec<u8> {
    let mut key = b"k/".to_vec();
    key.extend_from_slice(&workspace.uid.to_be_bytes());
    key
}

/// Prefix of every workspace snapshot key (garbage collection reads them all).
pub const WORKSPACE_SNAPSHOT_PREFIX: &[u8] = b"w/";

/// Key of a conversation's last activity (ms): its creation, fork or last user message.
pub fn activity_key(id: ConversationId) -> Vec<u8> {
    let mut key = b"la/".to_vec();
    key.extend_from_slice(&id.uid.to_be_bytes());
    key
}

/// Prefix of a conversation's messages.
pub fn message_prefix(id: ConversationId) -> Vec<u8> {
    let mut key = b"m/".to_vec();
    key.extend_from_slice(&id.uid.to_be_bytes());
    key.push(b'/');
    key
}

/// Key of one message.
pub fn message_key(id: ConversationId, index: MessageId) -> Vec<u8> {
    let mut key = message_prefix(id);
    key.extend_from_slice(&index.0.to_be_bytes());
    key
}

/// Prefix of a user's conversation index.
pub fn user_prefix(user: &UserId) -> Vec<u8> {
    let mut key = b"u/".to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key.push(b'/');
    key
}

pub(super) fn create_request_key(user: &UserId, request_id: RequestId) -> Vec<u8> {
    let mut key = b"rc/".to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&request_id.0.to_be_bytes());
    key
}

fn send_request_prefix(id: ConversationId) -> Vec<u8> {
    let mut key = b"rs/".to_vec();
    key.extend_from_slice(&id.uid.to_be_bytes());
    key.push(b'/');
    key
}

pub(super) fn send_request_key(id: ConversationId, request_id: RequestId) -> Vec<u8> {
    let mut key = send_request_prefix(id);
    key.extend_from_slice(&request_id.0.to_be_bytes());
    key
}

/// A command handed to a module that does not apply it: [`apply_inner`] routes every
/// command by kind, so this is a bug, rejected alike on every replica (never a panic in
/// `apply`, which would stop every replica on replay).
fn misrouted() -> Failure {
    Rejection::Invalid("the command was routed to a module that does not apply it".to_owned())
        .into()
}

/// The writes of a new conversation (created, forked or cloned): its record, the create
/// request's key, its activity time and its entries in the owner's and the workspace's
/// indexes.
fn put_new_conversation(writes: &mut Writes, rec: &ConversationRecord, request_key: Vec<u8>) {
    writes.put(conversation_key(rec.id), rec);
    writes.put(request_key, &rec.id);
    writes.put(activity_key(rec.id), &rec.created_at_ms);
    let mut index = user_prefix(&rec.owner);
    index.extend_from_slice(&rec.id.uid.to_be_bytes());
    writes.puts.push((index, Vec::new()));
    writes.puts.push((
        workspaces::workspace_conversation_key(rec.workspace, rec.id),
        Vec::new(),
    ));
}

/// A complete message of one text part (`content` from its parts, invariant 4).
fn text_message(id: MessageId, turn: TurnId, role: Role, text: &str, at_ms: u64) -> Message {
    let parts = vec![Part::Text {
        text: text.to_owned(),
    }];
    Message {
        id,
        turn,
        role,
        status: MessageStatus::Complete,
        content: content_from_parts(&parts),
        parts,
        created_at_ms: at_ms,
        stop_reason: None,
        error: None,
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
pub(crate) fn prefix_within(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut_to(text: String, max: usize) -> String {
    match prefix_within(&text, max).len() {
        len if len == text.len() => text,
        len => text[..len].to_owned(),
    }
}

/// Every value under `prefix`, decoded, in key order.
fn read_all<T: serde::de::DeserializeOwned>(
    view: &impl ShardRead,
    prefix: &[u8],
) -> Result<Vec<T>, ReadError> {
    view.scan_prefix(prefix)?
        .into_iter()
        .map(|(k, v)| decode(&k, &v))
        .collect()
}

/// Decodes a stored value.
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, ReadError> {
    BincodeCodec.decode(bytes).map_err(|e| ReadError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn read<T: serde::de::DeserializeOwned>(
    view: &impl ShardRead,
    key: &[u8],
) -> Result<Option<T>, ReadError> {
    view.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

/// Why [`apply_inner`] (or a read it shares with the gateway) stopped: a replicated
/// rejection or a local read failure.
#[derive(Debug)]
pub enum Failure {
    /// Rejected alike on every replica.
    Rejected(Rejection),
    /// This replica cannot read its state.
    Read(ReadError),
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure::Read(e)
    }
}

fn record(view: &impl ShardRead, id: ConversationId) -> Result<ConversationRecord, Failure> {
    Ok(read(view, &conversation_key(id))?.ok_or(Rejection::NotFound(id))?)
}

/// Applies `cmd` to the state seen through `view`. `Err` only when this replica cannot
/// read its state (stop: see the module doc); `Ok(Err(_))` is a rejection every replica
/// makes alike.
pub fn apply(view: &impl ShardRead, cmd: &ShardCommand) -> Result<Applied, ReadError> {
    if let Err(rejection) = cmd.validate() {
        return Ok(Err(rejection));
    }
    match apply_inner(view, cmd) {
        Ok(applied) => Ok(Ok(applied)),
        Err(Failure::Rejected(rejection)) => Ok(Err(rejection)),
        Err(Failure::Read(e)) => Err(e),
    }
}

fn apply_inner(view: &impl ShardRead, cmd: &ShardCommand) -> Result<(Writes, Outcome), Failure> {
    let mut writes = Writes::default();
    let outcome = match cmd {
        ShardCommand::CreateConversation {
            id,
            workspace,
            owner,
            title,
            agent,
            at_ms,
            request_id,
        } => {
            let req_key = create_request_key(owner, *request_id);
            if let Some(existing) = read::<ConversationId>(view, &req_key)? {
                return Ok((
                    writes,
                    Outcome::Conversation(Box::new(record(view, existing)?)),
                ));
            }
            workspaces::owned_conversation_workspace(view, *workspace, owner)?;
            let rec = ConversationRecord {
                id: *id,
                workspace: *workspace,
                owner: owner.clone(),
                title: title.clone(),
                agent: agent.clone(),
                created_at_ms: *at_ms,
                message_count: 0,
                activation: 0,
                turns: 0,
                running_turn: None,
                agent_session: None,
            };
            put_new_conversation(&mut writes, &rec, req_key);
            Outcome::Conversation(Box::new(rec))
        }
        ShardCommand::Activate { conversation } => {
            let mut rec = record(view, *conversation)?;
            rec.activation = rec.activation.checked_add(1).ok_or_else(|| {
                Rejection::Invalid(format!(
                    "conversation {conversation} has used every activation number"
                ))
            })?;
            writes.put(conversation_key(*conversation), &rec);
            Outcome::Activated(Box::new(rec))
        }
        ShardCommand::AppendUserMessage {
            conversation,
            text,
            request_id,
            at_ms,
        } => append_user_message(view, &mut writes, *conversation, text, *request_id, *at_ms)?,
        ShardCommand::Checkpoint {
            conversation,
            message,
        }
        | ShardCommand::FinishTurn {
            conversation,
            message,
        } => {
            let mut rec = record(view, *conversation)?;
            check_running(&rec, message.id, message.turn)?;
            running::forget(view, &mut writes, *conversation, message.id)?;
            writes.put(message_key(*conversation, message.id), message);
            if matches!(cmd, ShardCommand::FinishTurn { .. }) {
                rec.running_turn = None;
                rec.message_count = message.id.0 + 1;
                writes.put(conversation_key(*conversation), &rec);
            }
            Outcome::Done
        }
        ShardCommand::SetAgentSession {
            conversation,
            session_id,
        } => {
            let mut rec = record(view, *conversation)?;
            rec.agent_session = session_id.clone();
            writes.put(conversation_key(*conversation), &rec);
            Outcome::Done
        }
        ShardCommand::AppendParts {
            conversation,
            message,
            delta,
        } => {
            let rec = record(view, *conversation)?;
            check_running(&rec, message.id, message.turn)?;
            running::append(view, &mut writes, *conversation, message, delta)?;
            Outcome::Done
        }
        ShardCommand::EndTurn {
            conversation,
            message,
            delta,
            status,
            stop_reason,
            error,
        } => {
            let mut rec = record(view, *conversation)?;
            check_running(&rec, message.id, message.turn)?;
            let mut stored =
                running::take(view, &mut writes, *conversation, message, delta.as_ref())?;
            stored.status = *status;
            stored.stop_reason = stop_reason.clone();
            stored.error = error.clone();
            rec.running_turn = None;
            rec.message_count = message.id.0 + 1;
            writes.put(message_key(*conversation, message.id), &stored);
            writes.put(conversation_key(*conversation), &rec);
            Outcome::TurnEnded(Box::new(stored))
        }
        ShardCommand::SetWorkspaceSnapshot {
            workspace,
            base,
            snapshot,
        } => {
            workspaces::check_not_deleted(view, *workspace)?;
            let key = workspace_snapshot_key(*workspace);
            let current = read::<WorkspaceSnapshot>(view, &key)?.map_or(0, |s| s.seq);
            if current != *base {
                return Err(Rejection::StaleSnapshot { current }.into());
            }
            writes.put(key, snapshot);
            Outcome::Done
        }
        ShardCommand::SetCredential {
            workspace,
            name,
            sealed,
            at_ms,
        } => {
            workspaces::check_not_deleted(view, *workspace)?;
            let key = workspace_credentials_key(*workspace);
            let mut all = read::<WorkspaceCredentials>(view, &key)?.unwrap_or_default();
            let created_at_ms = match all.entries.get(name) {
                Some(existing) => existing.created_at_ms,
                None if all.entries.len() >= CREDENTIALS_PER_WORKSPACE_MAX => {
                    return Err(Rejection::Invalid(format!(
                        "workspace {workspace} already holds {CREDENTIALS_PER_WORKSPACE_MAX} credentials; remove one first"
                    ))
                    .into());
                }
                None => *at_ms,
            };
            all.entries.insert(
                name.clone(),
                StoredCredential {
                    sealed: sealed.clone(),
                    created_at_ms,
                    updated_at_ms: *at_ms,
                },
            );
            writes.put(key, &all);
            Outcome::Done
        }
        ShardCommand::DeleteCredential { workspace, name } => {
            let key = workspace_credentials_key(*workspace);
            let mut all = read::<WorkspaceCredentials>(view, &key)?.unwrap_or_default();
            let existed = all.entries.remove(name).is_some();
            if existed {
                writes.put(key, &all);
            }
            Outcome::Removed { existed }
        }
        ShardCommand::CreateWorkspace { .. }
        | ShardCommand::RenameWorkspace { .. }
        | ShardCommand::MoveWorkspace { .. }
        | ShardCommand::DeleteWorkspace { .. }
        | ShardCommand::CreateSkillPack { .. }
        | ShardCommand::UpdateSkillPack { .. }
        | ShardCommand::DeleteSkillPack { .. }
        | ShardCommand::AttachSkillPack { .. }
        | ShardCommand::DetachSkillPack { .. } => workspaces::apply(view, cmd, &mut writes)?,
        ShardCommand::RewindConversation { .. }
        | ShardCommand::ForkConversation { .. }
        | ShardCommand::RenameConversation { .. }
        | ShardCommand::DeleteConversation { .. } => history::apply(view, cmd, &mut writes)?,
        ShardCommand::EnqueueMessage { .. }
        | ShardCommand::StartQueued { .. }
        | ShardCommand::RemoveQueued { .. }
        | ShardCommand::MoveQueued { .. } => queue::apply(view, cmd, &mut writes)?,
        ShardCommand::RecordUsage { .. } => usage::apply(view, cmd, &mut writes)?,
        ShardCommand::RecordCompaction { .. } | ShardCommand::CloneFromCompaction { .. } => {
            compactions::apply(view, cmd, &mut writes)?
        }
        ShardCommand::CreateGrant { .. }
        | ShardCommand::RevokeGrant { .. }
        | ShardCommand::RotateGrant { .. }
        | ShardCommand::BindInvite { .. }
        | ShardCommand::SetShareLock { .. }
        | ShardCommand::IndexShared { .. }
        | ShardCommand::UnindexShared { .. }
        | ShardCommand::ImportConversation { .. } => sharing::apply(view, cmd, &mut writes)?,
        ShardCommand::SetSessionSettings { .. }
        | ShardCommand::RecordSessionOffer { .. }
        | ShardCommand::SwitchAgent { .. } => settings::apply(view, cmd, &mut writes)?,
        ShardCommand::SetWorkspacePermissions { .. } => permissions::apply(view, cmd, &mut writes)?,
        ShardCommand::SetWorkspaceMcpServer { .. }
        | ShardCommand::RemoveWorkspaceMcpServer { .. } => mcp::apply(view, cmd, &mut writes)?,
        ShardCommand::SetShardPin { .. } => pins::apply(cmd, &mut writes)?,
    };
    Ok((writes, outcome))
}

/// Appends a user message and starts its turn (idempotent per request id: a retry gets
/// the turn its first attempt started). Shared by `AppendUserMessage` and the queue.
pub(super) fn append_user_message(
    view: &impl ShardRead,
    writes: &mut Writes,
    conversation: ConversationId,
    text: &str,
    request_id: RequestId,
    at_ms: u64,
) -> Result<Outcome, Failure> {
    let mut rec = record(view, conversation)?;
    let req_key = send_request_key(conversation, request_id);
    if let Some(turn) = read::<RunningTurn>(view, &req_key)? {
        let user_message = read::<Message>(view, &message_key(conversation, turn.user_message))?
            .ok_or(Rejection::StaleTurn(turn.user_message))?;
        let still_running = rec
            .running_turn
            .as_ref()
            .is_some_and(|r| r.turn == turn.turn);
        let finished = if still_running {
            None
        } else {
            read::<Message>(view, &message_key(conversation, turn.assistant_message))?
        };
        let outcome = TurnStartedOutcome {
            turn,
            user_message,
            duplicate: true,
            finished,
        };
        return Ok(Outcome::TurnStarted(Box::new(outcome)));
    }
    if let Some(running) = &rec.running_turn {
        return Err(Rejection::Busy(running.turn).into());
    }
    let turn = RunningTurn {
        turn: TurnId(rec.turns + 1),
        request_id,
        user_message: MessageId(rec.message_count),
        assistant_message: MessageId(rec.message_count + 1),
    };
    let user_message = text_message(turn.user_message, turn.turn, Role::User, text, at_ms);
    if rec.title.is_none() && rec.message_count == 0 {
        rec.title = history::derived_title(text);
    }
    rec.turns += 1;
    rec.message_count += 1;
    rec.running_turn = Some(turn.clone());
    writes.put(message_key(conversation, user_message.id), &user_message);
    writes.put(req_key, &turn);
    writes.put(activity_key(conversation), &at_ms);
    writes.put(conversation_key(conversation), &rec);
    Ok(Outcome::TurnStarted(Box::new(TurnStartedOutcome {
        turn,
        user_message,
        duplicate: false,
        finished: None,
    })))
}

/// [`Rejection::StaleTurn`] unless `message` of `turn` is the running turn's message.
fn check_running(
    rec: &ConversationRecord,
    message: MessageId,
    turn: TurnId,
) -> Result<(), Rejection> {
    let running = rec
        .running_turn
        .as_ref()
        .is_some_and(|r| r.assistant_message == message && r.turn == turn);
    if running {
        Ok(())
    } else {
        Err(Rejection::StaleTurn(message))
    }
}

#[cfg(test)]
mod tests;
