//! The Shoal client SDK: connect to a node over QUIC, manage conversations, send messages
//! and stream their turns, follow conversations with automatic resume, and call the admin
//! API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal_client::ClientError> {
//! use futures::StreamExt;
//! use shoal_client::{Client, Profile};
//! use shoal_protocol::transcript::Event;
//!
//! let profile = Profile::load(std::path::Path::new(".shoal-dev/profile.toml"))?;
//! let client = Client::connect(&profile).await?;
//! let conversation = client.create_conversation(None, None).await?;
//! let mut turn = client.send(conversation.id, "hello").await?;
//! while let Some(frame) = turn.next().await {
//!     if let Event::TextChunk { text, .. } = frame?.event {
//!         print!("{text}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! * [`Client`] and [`TurnStream`] (this file): client API requests and turn streaming.
//! * `profile`: [`Profile`], the file naming the nodes, their CA and the tokens.
//! * `connection`: QUIC + TLS setup, the handshake, lazy reconnects walking the profile's
//!   addresses, and frame I/O.
//! * `retry`: the bounded backoff of idempotent requests across failover.
//! * `follow`: [`FollowStream`] and its sans-I/O sequence bookkeeping.
//! * `sharing`: grants (viewer, editor, links, invitations), the lock, and what a
//!   shared caller reads ([`Client::connect_shared`] acts with a share token).
//! * `settings`: a conversation's mode and model.
//! * `admin`: [`AdminClient`] for the admin API.
//! * `error`: [`ClientError`].
//!
//! # Failover
//! A profile may name several nodes ([`Profile::addresses`]); any node serves any request.
//! A (re)connect tries the address that last worked, then the others in order, giving each
//! but the last [`DIAL_TIMEOUT_MS`]. Create, list, get, cancel and send (until the node
//! accepted the message) are retried with the same request, and the same request id, after
//! a lost connection, a failed connect or an `Unavailable` answer (an election or a
//! leadership move under way), with backoff from [`RETRY_BACKOFF_MIN_MS`] to
//! [`RETRY_BACKOFF_MAX_MS`], until [`RETRY_BUDGET_MS`] is spent. Permission answers are
//! never retried, nor is a turn stream that broke after `Accepted`.
//!
//! # Limits
//! Connecting to one address is bounded by [`CONNECT_TIMEOUT_MS`] ([`DIAL_TIMEOUT_MS`]
//! for its QUIC handshake while other addresses remain), unary requests by
//! [`REQUEST_TIMEOUT_MS`], retries by [`RETRY_BUDGET_MS`], every frame by
//! [`shoal_protocol::FRAME_BYTES_MAX`], the address list by [`PROFILE_ADDRESSES_MAX`].
//! Connections send keep-alives every [`KEEP_ALIVE_INTERVAL_MS`] and die after
//! [`IDLE_TIMEOUT_MS`] of silence, which also bounds how long a turn or follow stream waits
//! on a dead node; the reconnect after such a silence dials that node's address last, and
//! a follow whose conversation had moved to it asks the client's own node again.
#![warn(missing_docs)]

mod admin;
mod connection;
mod error;
mod follow;
mod history;
mod hub;
mod profile;
mod queue;
mod retry;
mod settings;
mod sharing;
#[cfg(test)]
mod test_frames;
mod workspaces;

pub use admin::{AGENTS_REQUEST_TIMEOUT_MS, AdminClient};
pub use connection::{
    CA_CERT_BYTES_MAX, CLOSE_WAIT_MS, CONNECT_TIMEOUT_MS, DIAL_TIMEOUT_MS, IDLE_TIMEOUT_MS,
    KEEP_ALIVE_INTERVAL_MS, REQUEST_TIMEOUT_MS,
};
pub use error::ClientError;
pub use follow::{
    FOLLOW_BACKOFF_MAX_MS, FOLLOW_BACKOFF_MIN_MS, FOLLOW_RECONNECT_ATTEMPTS_MAX, FollowStream,
};
pub use hub::{HUB_RING_BYTES_MAX, HUB_RING_FRAMES_MAX};
pub use profile::{PROFILE_ADDRESSES_MAX, PROFILE_BYTES_MAX, Profile};
pub use queue::{QueuedSend, Sent};
pub use retry::{RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_MIN_MS, RETRY_BUDGET_MS};
pub use sharing::{ConversationView, NewGrant, ShareWith};

pub use connection::EndpointFactory;
use connection::{FrameReader, Link, Target, open_request, quic_config};
use futures::Stream;
use futures::stream::BoxStream;
use retry::with_retries;
use shoal_protocol::client::{
    ClientReply, ClientRequest, ConversationDetail, ConversationSummary, CredentialInfo, Secret,
    ServerFrame,
};
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{
    ALPN_CLIENT, ConversationId, MessageId, RequestId, Seq, TurnId, UserId, WorkspaceId,
};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connection to a node's client API. Cheap to clone (clones share the connection);
/// reconnects lazily when the connection has closed.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    link: Arc<Link>,
    /// Follows of one conversation share one follow stream through these; `None` with
    /// [`ConnectOptions::follow_separately`].
    hubs: Option<Arc<hub::Hubs>>,
    user: UserId,
    /// Conversation requests are made with this share token ([`Client::connect_shared`]).
    share_token: Option<String>,
    /// Requests carry this W3C trace context ([`Client::with_trace`]).
    trace: Option<shoal_protocol::TraceContext>,
    node_id: String,
    /// Request ids: seeded by [`ConnectOptions::rng_seed`], else from the OS.
    ids: std::sync::Mutex<rand::rngs::StdRng>,
}

/// How [`Client::connect_with`] reaches nodes; the default is [`Client::connect`]'s.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Makes the QUIC endpoint of each connection (simulation: a simulated socket).
    /// `None`: an OS UDP socket per connection.
    pub endpoints: Option<EndpointFactory>,
    /// Seed of the request-id generator (simulation: reproducible runs). `None`: the OS.
    pub rng_seed: Option<u64>,
    /// Every [`Client::follow`] opens a follow stream of its own to the node. By default
    /// (`false`) the client's follows of one conversation share one stream, so the node
    /// sends each event once per connection rather than once per follow.
    pub follow_separately: bool,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoints", &self.endpoints.is_some())
            .field("rng_seed", &self.rng_seed)
            .field("follow_separately", &self.follow_separately)
            .finish()
    }
}

impl Client {
    /// Connects to the profile's `address`, or else to the first of its other `addresses`
    /// that accepts, and authenticates with its `token`. Not retried beyond one walk of the
    /// address list.
    pub async fn connect(profile: &Profile) -> Result<Client, ClientError> {
        Self::connect_with(profile, ConnectOptions::default()).await
    }

    /// [`Self::connect`] with explicit [`ConnectOptions`] (a simulated network).
    pub async fn connect_with(
        profile: &Profile,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        use rand::SeedableRng;
        let mut target = Target::new(
            &profile.address,
            &profile.addresses,
            profile.server_name.clone(),
            quic_config(&profile.address, &profile.ca_cert, ALPN_CLIENT)?,
            profile.token.clone(),
        );
        target.endpoints = options.endpoints;
        let ids = match options.rng_seed {
            Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
            None => rand::rngs::StdRng::from_os_rng(),
        };
        let (link, welcome) = Link::connect(target).await?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                link: Arc::new(link),
                hubs: (!options.follow_separately).then(Default::default),
                user: welcome.user,
                share_token: profile.share_token.clone(),
                trace: None,
                node_id: welcome.node_id,
                ids: std::sync::Mutex::new(ids),
            }),
        })
    }

    /// [`Self::connect`], acting on conversations with `share_token` (a viewer's or
    /// editor's `shoalshare1.…` token) instead of as their owner. The profile's user
    /// token still authenticates the connection: forks go to that user's workspaces.
    pub async fn connect_shared(
        profile: &Profile,
        share_token: impl Into<String>,
    ) -> Result<Client, ClientError> {
        let profile = Profile {
            share_token: Some(share_token.into()),
            ..profile.clone()
        };
        Self::connect(&profile).await
    }

    /// This client, acting on conversations with `share_token` (or, with `None`, as
    /// itself); shares the connection.
    pub fn with_share_token(&self, share_token: Option<String>) -> Client {
        self.derived(share_token, self.inner.trace.clone())
    }

    /// This client, sending `trace` (a W3C trace context: continue the caller's trace,
    /// or start one with [`new_trace`]) with every request, so the nodes' spans join that
    /// trace; `None` sends none. Shares the connection.
    pub fn with_trace(&self, trace: Option<shoal_protocol::TraceContext>) -> Client {
        self.derived(self.inner.share_token.clone(), trace)
    }

    fn derived(
        &self,
        share_token: Option<String>,
        trace: Option<shoal_protocol::TraceContext>,
    ) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                link: self.inner.link.clone(),
                hubs: self.inner.hubs.clone(),
                user: self.inner.user.clone(),
                share_token,
                trace,
                node_id: self.inner.node_id.clone(),
                ids: std::sync::Mutex::new(rand::SeedableRng::from_os_rng()),
            }),
        }
    }

    fn request_id(&self) -> RequestId {
        use rand::Rng;
        RequestId(
            self.inner
                .ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .random(),
        )
    }

    /// The user the token names, as the node authenticated it.
    pub fn user(&self) -> &UserId {
        &self.inner.user
    }

    /// The id of the node that accepted the first handshake (later reconnects may reach
    /// another node of the profile).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Creates a conversation in the caller's default workspace. `agent` names an agent of
    /// the node's config (`None`: the default agent). Retried across failover (see the
    /// crate docs) with one request id, so at most one conversation is created.
    pub async fn create_conversation(
        &self,
        title: Option<String>,
        agent: Option<String>,
    ) -> Result<ConversationSummary, ClientError> {
        // Built once: every retry sends this request, so the same request id, and the node
        // answers a retry with the conversation created first.
        let request = ClientRequest::CreateConversation {
            title,
            agent,
            request_id: self.request_id(),
        };
        match self.unary("create_conversation", request, true).await? {
            ClientReply::Created(summary) => Ok(summary),
            other => Err(unexpected("Created", &other)),
        }
    }

    /// The caller's conversations, newest first, at most `limit` (capped by the node at
    /// [`shoal_protocol::client::LIST_LIMIT_MAX`]). Retried across failover.
    pub async fn list_conversations(
        &self,
        limit: u32,
    ) -> Result<Vec<ConversationSummary>, ClientError> {
        let request = ClientRequest::ListConversations { limit };
        match self.unary("list_conversations", request, true).await? {
            ClientReply::Conversations(list) => Ok(list),
            other => Err(unexpected("Conversations", &other)),
        }
    }

    /// One conversation with its committed messages and in-flight turn. Retried across
    /// failover.
    pub async fn get_conversation(
        &self,
        id: ConversationId,
    ) -> Result<ConversationDetail, ClientError> {
        let request = ClientRequest::GetConversation { conversation: id };
        match self.unary("get_conversation", request, true).await? {
            ClientReply::Conversation(detail) => Ok(*detail),
            other => Err(unexpected("Conversation", &other)),
        }
    }

    /// Appends a user message and starts a turn; the returned stream carries the turn's
    /// events (owner view) through its `Done`.
    ///
    /// Until the node accepted the message, the request is retried across failover (a lost
    /// connection, a failed connect, an `Unavailable` answer; see the crate docs), always
    /// with the same request id, which the node deduplicates ([`TurnStream::duplicate`]
    /// then tells). Once accepted, nothing is resent: a stream that breaks yields the error.
    /// Dropping the stream before `Done` disconnects the initiator, and the node cancels
    /// the turn.
    pub async fn send(
        &self,
        id: ConversationId,
        text: impl Into<String>,
    ) -> Result<TurnStream, ClientError> {
        let text = text.into();
        // One id for every attempt: the node applies the message at most once.
        let request_id = self.request_id();
        tracing::debug!(conversation = %id, %request_id, "sending a message");
        let request = ClientRequest::SendMessage {
            conversation: id,
            text,
            request_id,
        };
        match with_retries("send", || self.start_turn(request.clone())).await? {
            Opened::Accepted(turn) => Ok(turn),
            Opened::Queued(queued) => queued.started().await,
        }
    }

    /// Like [`Self::send`], with images and files for the agent
    /// ([`shoal_protocol::attachments`]): refused with `invalid_argument` when they are
    /// over the bounds or the agent does not take them (it names the capability), and
    /// with `busy` while a turn runs (a message with attachments is not queued). The
    /// transcript keeps one line per attachment after the text. Retried with one request
    /// id, so the message is applied at most once.
    pub async fn send_with_attachments(
        &self,
        id: ConversationId,
        text: impl Into<String>,
        attachments: Vec<shoal_protocol::attachments::Attachment>,
    ) -> Result<TurnStream, ClientError> {
        shoal_protocol::attachments::check_attachments(&attachments).map_err(|e| {
            ClientError::Server(shoal_protocol::WireError::invalid("attachments", e))
        })?;
        let request = ClientRequest::SendWithAttachments {
            conversation: id,
            text: text.into(),
            attachments,
            request_id: self.request_id(),
        };
        match with_retries("send", || self.start_turn(request.clone())).await? {
            Opened::Accepted(turn) => Ok(turn),
            Opened::Queued(queued) => queued.started().await,
        }
    }

    /// Cancels the running turn; `true` when a turn was running. Retried across failover
    /// (cancelling twice cancels once).
    pub async fn cancel(&self, id: ConversationId) -> Result<bool, ClientError> {
        let request = ClientRequest::CancelTurn { conversation: id };
        match self.unary("cancel", request, true).await? {
            ClientReply::Cancelled { was_running } => Ok(was_running),
            other => Err(unexpected("Cancelled", &other)),
        }
    }

    /// Answers permission request `request` of the running turn with `option_id`
    /// (`None` denies the tool call).
    pub async fn respond_permission(
        &self,
        id: ConversationId,
        request: u64,
        option_id: Option<String>,
    ) -> Result<(), ClientError> {
        let request = ClientRequest::RespondPermission {
            conversation: id,
            request,
            option_id,
        };
        // Never retried: the answer is delivered to the agent at most once.
        match self.unary("respond_permission", request, false).await? {
            ClientReply::PermissionAnswered => Ok(()),
            other => Err(unexpected("PermissionAnswered", &other)),
        }
    }

    /// Sets (or replaces) credential `name` of `workspace` (`None`: the caller's default
    /// workspace): an environment variable for the workspace's agents, sealed at rest and
    /// never returned by any request. Reserved names (`PATH`, proxies, TLS trust, …) are
    /// refused. Retried across failover (setting twice sets once).
    pub async fn set_credential(
        &self,
        workspace: Option<WorkspaceId>,
        name: &str,
        value: &str,
    ) -> Result<(), ClientError> {
        let request = ClientRequest::SetCredential {
            workspace,
            name: name.to_owned(),
            value: Secret(value.to_owned()),
        };
        match self.unary("set_credential", request, true).await? {
            ClientReply::CredentialSet => Ok(()),
            other => Err(unexpected("CredentialSet", &other)),
        }
    }

    /// The credentials of `workspace` (`None`: the caller's default workspace): names
    /// and times, never values.
    pub async fn list_credentials(
        &self,
        workspace: Option<WorkspaceId>,
    ) -> Result<Vec<CredentialInfo>, ClientError> {
        let request = ClientRequest::ListCredentials { workspace };
        match self.unary("list_credentials", request, true).await? {
            ClientReply::Credentials(list) => Ok(list),
            other => Err(unexpected("Credentials", &other)),
        }
    }

    /// Removes credential `name` of `workspace`; `true` when it existed. Agents started
    /// from then on do not get it (a running agent keeps the environment it started with).
    pub async fn delete_credential(
        &self,
        workspace: Option<WorkspaceId>,
        name: &str,
    ) -> Result<bool, ClientError> {
        let request = ClientRequest::DeleteCredential {
            workspace,
            name: name.to_owned(),
        };
        match self.unary("delete_credential", request, true).await? {
            ClientReply::CredentialDeleted { existed } => Ok(existed),
            other => Err(unexpected("CredentialDeleted", &other)),
        }
    }

    /// Follows a conversation's events (follower view) from `since` (exclusive), or from a
    /// snapshot led by a `Reset` when `None`. Connects lazily on first poll; see
    /// [`FollowStream`] for the resume guarantees.
    pub fn follow(&self, id: ConversationId, since: Option<Seq>) -> FollowStream {
        FollowStream::new(
            self.inner.link.clone(),
            self.inner.hubs.clone(),
            id,
            since,
            self.inner.share_token.clone(),
        )
    }

    /// Closes the connection, giving the node a moment to hear about it. Later requests
    /// reconnect.
    pub async fn close(&self) {
        self.inner.link.close().await;
    }

    /// Sends a unary request (`what` names it in logs); when `retry`, sends the same
    /// request again across failover within [`RETRY_BUDGET_MS`].
    async fn unary(
        &self,
        what: &'static str,
        request: ClientRequest,
        retry: bool,
    ) -> Result<ClientReply, ClientError> {
        if retry {
            with_retries(what, || self.unary_once(request.clone())).await
        } else {
            self.unary_once(request).await
        }
    }

    async fn unary_once(&self, request: ClientRequest) -> Result<ClientReply, ClientError> {
        let request = shared(self.inner.share_token.as_deref(), request);
        let connection = self.inner.link.connection().await?;
        let exchange = async {
            let mut reader = open_request(&connection, request, self.inner.trace.clone()).await?;
            match reader.next::<ServerFrame>().await? {
                Some(ServerFrame::Reply(reply)) => Ok(reply),
                Some(ServerFrame::Error(err)) => Err(ClientError::Server(err)),
                Some(other) => Err(ClientError::Protocol(format!(
                    "expected a reply, got a `{}` frame",
                    frame_name(&other)
                ))),
                None => Err(ClientError::ConnectionLost(
                    "the node ended the request stream without an answer".to_owned(),
                )),
            }
        };
        tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                what: "waiting for the node's answer",
                after_ms: REQUEST_TIMEOUT_MS,
            }))
    }

    /// One attempt of [`Client::send`]: request, then wait for `Accepted`.
    /// Sends a turn-starting request (`SendMessage`, `SendNow`, `AttachTurn`) and reads
    /// its first frame: `Accepted` (the turn's stream) or `Queued`.
    async fn start_turn(&self, request: ClientRequest) -> Result<Opened, ClientError> {
        let request = shared(self.inner.share_token.as_deref(), request);
        let connection = self.inner.link.connection().await?;
        let exchange = async {
            let mut reader = open_request(&connection, request, self.inner.trace.clone()).await?;
            match reader.next::<ServerFrame>().await? {
                Some(ServerFrame::Accepted {
                    turn,
                    user_message,
                    duplicate,
                }) => Ok(Opened::Accepted(TurnStream::new(
                    reader,
                    turn,
                    user_message,
                    duplicate,
                ))),
                Some(ServerFrame::Queued { item, position }) => Ok(Opened::Queued(
                    queue::QueuedSend::new(reader, item, position),
                )),
                Some(ServerFrame::Error(err)) => Err(ClientError::Server(err)),
                Some(other) => Err(ClientError::Protocol(format!(
                    "expected `Accepted`, got a `{}` frame",
                    frame_name(&other)
                ))),
                None => Err(ClientError::ConnectionLost(
                    "the node ended the send stream before accepting the message".to_owned(),
                )),
            }
        };
        tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), exchange)
            .await
            .unwrap_or(Err(ClientError::Timeout {
                what: "waiting for the node to accept the message",
                after_ms: REQUEST_TIMEOUT_MS,
            }))
    }
}

/// How a turn-starting request was answered.
enum Opened {
    /// The turn started.
    Accepted(TurnStream),
    /// The message was queued behind the running turn.
    Queued(queue::QueuedSend),
}

/// The events of one turn started by [`Client::send`] (owner view), ending after its
/// `Done` event.
///
/// Yields `Err` once and ends when the node reports an error or the stream breaks before
/// `Done`. Dropping it before `Done` makes the node cancel the turn.
pub struct TurnStream {
    turn: TurnId,
    user_message: MessageId,
    duplicate: bool,
    inner: BoxStream<'static, Result<EventFrame, ClientError>>,
}

impl TurnStream {
    pub(crate) fn new(
        reader: FrameReader,
        turn: TurnId,
        user_message: MessageId,
        duplicate: bool,
    ) -> Self {
        let inner = futures::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            let item = match reader.next::<ServerFrame>().await {
                Ok(Some(ServerFrame::Event(frame))) => {
                    let done = matches!(frame.event, Event::Done { .. });
                    return Some((Ok(frame), (!done).then_some(reader)));
                }
                Ok(Some(ServerFrame::Error(err))) => Err(ClientError::Server(err)),
                Ok(Some(other)) => Err(ClientError::Protocol(format!(
                    "expected a turn event, got a `{}` frame",
                    frame_name(&other)
                ))),
                Ok(None) => Err(ClientError::ConnectionLost(
                    "the node ended the turn stream before the turn's done event".to_owned(),
                )),
                Err(err) => Err(err),
            };
            Some((item, None))
        });
        TurnStream {
            turn,
            user_message,
            duplicate,
            inner: Box::pin(inner),
        }
    }

    /// The turn the message started (or, for a duplicate, the turn started first).
    pub fn turn(&self) -> TurnId {
        self.turn
    }

    /// The committed user message.
    pub fn user_message(&self) -> MessageId {
        self.user_message
    }

    /// Whether the node had already applied this request (a retry after a lost connection).
    pub fn duplicate(&self) -> bool {
        self.duplicate
    }
}

impl Stream for TurnStream {
    type Item = Result<EventFrame, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

fn frame_name(frame: &ServerFrame) -> &'static str {
    match frame {
        ServerFrame::Reply(_) => "Reply",
        ServerFrame::Accepted { .. } => "Accepted",
        ServerFrame::Event(_) => "Event",
        ServerFrame::Resync { .. } => "Resync",
        ServerFrame::Moved { .. } => "Moved",
        ServerFrame::Error(_) => "Error",
        ServerFrame::Queued { .. } => "Queued",
    }
}

/// A new sampled W3C trace context (`00-<trace id>-<span id>-01`): pass it to
/// [`Client::with_trace`] to start a trace; its trace id is in [`trace_id`].
pub fn new_trace() -> shoal_protocol::TraceContext {
    use rand::Rng;
    let mut rng = rand::rng();
    let trace: u128 = rng.random::<u128>().max(1);
    let span: u64 = rng.random::<u64>().max(1);
    shoal_protocol::TraceContext {
        traceparent: format!("00-{trace:032x}-{span:016x}-01"),
        tracestate: None,
    }
}

/// The trace id (32 hex digits) of a W3C trace context, if it is well formed.
pub fn trace_id(trace: &shoal_protocol::TraceContext) -> Option<&str> {
    let mut fields = trace.traceparent.split('-');
    match (fields.next(), fields.next()) {
        (Some("00"), Some(id)) if id.len() == 32 => Some(id),
        _ => None,
    }
}

/// `request` made with `share_token` when there is one and the request acts on a
/// conversation (the node refuses a share token on anything else).
pub(crate) fn shared(share_token: Option<&str>, request: ClientRequest) -> ClientRequest {
    match share_token {
        Some(token) if request.conversation().is_some() => ClientRequest::Shared {
            token: token.to_owned(),
            request: Box::new(request),
        },
        _ => request,
    }
}

fn unexpected(expected: &str, got: &ClientReply) -> ClientError {
    let got = match got {
        ClientReply::Created(_) => "Created",
        ClientReply::Conversations(_) => "Conversations",
        ClientReply::Conversation(_) => "Conversation",
        ClientReply::Cancelled { .. } => "Cancelled",
        ClientReply::PermissionAnswered => "PermissionAnswered",
        ClientReply::CredentialSet => "CredentialSet",
        ClientReply::Credentials(_) => "Credentials",
        ClientReply::CredentialDeleted { .. } => "CredentialDeleted",
        ClientReply::Workspace(_) => "Workspace",
        ClientReply::Workspaces(_) => "Workspaces",
        ClientReply::WorkspaceDeleted { .. } => "WorkspaceDeleted",
        ClientReply::SkillPack(_) => "SkillPack",
        ClientReply::SkillPacks(_) => "SkillPacks",
        ClientReply::SkillPackContent { .. } => "SkillPackContent",
        ClientReply::SkillPackDeleted { .. } => "SkillPackDeleted",
        ClientReply::Rewound(_) => "Rewound",
        ClientReply::Renamed(_) => "Renamed",
        ClientReply::ConversationDeleted => "ConversationDeleted",
        ClientReply::ConversationPage { .. } => "ConversationPage",
        ClientReply::Messages { .. } => "Messages",
        ClientReply::Queue(_) => "Queue",
        ClientReply::Usage { .. } => "Usage",
        ClientReply::Compactions(_) => "Compactions",
        ClientReply::Grant { .. } => "Grant",
        ClientReply::Grants(_) => "Grants",
        ClientReply::GrantRevoked { .. } => "GrantRevoked",
        ClientReply::ShareLock { .. } => "ShareLock",
        ClientReply::SharedWithMe(_) => "SharedWithMe",
        ClientReply::SharedConversation(_) => "SharedConversation",
        ClientReply::SessionSettings(_) => "SessionSettings",
        ClientReply::WorkspacePermissions { .. } => "WorkspacePermissions",
        ClientReply::WorkspaceMcpServers { .. } => "WorkspaceMcpServers",
        ClientReply::AgentSwitched(_) => "AgentSwitched",
    };
    ClientError::Protocol(format!("expected a `{expected}` reply, got `{got}`"))
}
