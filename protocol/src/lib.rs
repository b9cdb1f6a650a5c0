//! Every type that crosses a Shoal process boundary, and nothing that does I/O.
//!
//! # Layout
//! * [`frame`]: length-prefixed frames, the codec trait and the size limit.
//! * [`handshake`]: magic, version negotiation and authentication on connect.
//! * [`ids`]: typed identifiers (workspaces, conversations, messages, sequence numbers).
//! * [`transcript`]: messages, parts, display events and the follower allowlist.
//! * [`client`]: requests and server frames of the `shoal-client/1` ALPN.
//! * [`workspaces`]: workspaces and skill packs as the client API sees them, with the
//!   checks both sides run on names and pack files.
//! * [`sharing`]: grants, roles, share tokens and the redacted view of a shared
//!   conversation.
//! * [`attachments`]: images and files sent with a message.
//! * [`mcp`]: the MCP servers a workspace gives its agents.
//! * [`permissions`]: permission policies (ask, allow, deny; per tool kind).
//! * [`settings`]: the modes and models an agent offers a conversation, and the owner's
//!   picks.
//! * [`admin`]: requests and replies of the `shoal-admin/1` ALPN.
//! * [`error`]: the wire error and its [`ErrorCode`].
//!
//! # Wire model
//! A client opens one QUIC connection with ALPN [`ALPN_CLIENT`] or [`ALPN_ADMIN`]. Its
//! first bidirectional stream carries the [`handshake::Hello`] and the server's
//! [`handshake::HelloReply`]; every later request opens its own bidirectional stream,
//! writes exactly one request envelope frame and reads server frames until the server
//! finishes the stream.
//!
//! Enum variants are encoded by their declaration index: new variants go at the end,
//! and `tests/golden.rs` pins the encoding of existing ones.
#![warn(missing_docs)]

pub mod admin;
pub mod attachments;
pub mod client;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod ids;
pub mod mcp;
pub mod permissions;
pub mod settings;
pub mod sharing;
pub mod transcript;
pub mod workspaces;

pub use error::{ErrorCode, WireError};
pub use frame::{BincodeCodec, Codec, CodecError, FRAME_BYTES_MAX, FrameDecoder, FrameError};
pub use ids::{
    ConversationId, MessageId, RequestId, Seq, ShardId, SkillPackId, TurnId, UserId, WorkspaceId,
};

/// ALPN of the client API.
pub const ALPN_CLIENT: &[u8] = b"shoal-client/1";
/// ALPN of the admin API.
pub const ALPN_ADMIN: &[u8] = b"shoal-admin/1";
/// ALPN of the node-to-node API (Raft, forwarding, gossip).
pub const ALPN_PEER: &[u8] = b"shoal-peer/1";

/// A W3C trace context carried by a request so one trace follows it across nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceContext {
    /// The `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
    pub traceparent: String,
    /// The optional `tracestate` header value.
    pub tracestate: Option<String>,
}
