//! The QUIC front door: one endpoint, routed by ALPN.
//!
//! * [`frames`]: reading and writing frames on QUIC streams with limits and timeouts.
//! * [`client_api`]: `shoal-client/1` requests.
//! * [`admin_api`]: `shoal-admin/1` requests.
//! * [`admin_cluster`]: admin requests that reach other members (drain, fan-out).
//! * [`peer_api`]: `shoal-peer/1`: Raft RPCs, forwarded requests, gossip datagrams.
//! * [`sharing`]: authorizing conversation requests; what viewers and editors may do.
//! * [`tail`]: one follower's stream, read from its conversation's replay ring.
//!
//! A connection's first bidirectional stream carries the handshake (magic, version,
//! token). Every later stream carries one request. A malformed or oversized frame gets an
//! error frame and the connection is closed; the node keeps serving everyone else.

pub mod admin_api;
pub mod admin_cluster;
pub mod admin_shards;
pub mod client_api;
mod credentials;
pub mod frames;
mod history;
mod mcp;
pub mod peer_api;
mod permissions;
pub mod sharing;
mod streams;
pub mod tail;
mod usage;
mod workspaces;

use crate::actors::shard_host::ShardHostMsg;
use crate::context::{Metrics, NodeContext};
use crate::security::tokens::Scope;
use frames::{FrameIoError, read_frame, write_final_frame, write_frame};
use ractor::ActorRef;
use shoal_protocol::handshake::{Hello, HelloReply, negotiate};
use shoal_protocol::{ErrorCode, UserId, WireError};
use std::sync::Arc;
use std::time::Duration;

/// How long a client has to complete the TLS and Shoal handshakes.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// The largest handshake frame accepted, in bytes.
pub const HELLO_BYTES_MAX: usize = 16 * 1024;
/// The largest request frame accepted, in bytes (a message text is at most 256 KiB).
pub const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// QUIC application close codes.
pub mod close_code {
    /// Normal close.
    pub const OK: u32 = 0;
    /// The handshake was refused (bad token, version).
    pub const REJECTED: u32 = 1;
    /// A malformed or oversized frame.
    pub const PROTOCOL: u32 = 2;
    /// The node is at its connection limit.
    pub const BUSY: u32 = 3;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 4;
    /// Reserved: an API this node does not serve.
    pub const UNSUPPORTED: u32 = 5;
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The authenticated user.
    pub user: UserId,
    /// Remote address (for logs).
    pub remote: std::net::SocketAddr,
    /// The connection's follows, written by one pump task ([`tail`]).
    pub follows: tail::Follows,
}

impl Peer {
    /// A connection's peer, with no follow yet.
    pub fn new(user: UserId, remote: std::net::SocketAddr) -> Self {
        Peer {
            user,
            remote,
            follows: tail::Follows::default(),
        }
    }
}

/// Runs the accept loop until the endpoint is closed.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<NodeContext>, host: ActorRef<ShardHostMsg>) {
    while let Some(incoming) = endpoint.accept().await {
        let max = ctx.config.limits.max_connections.get() as u64;
        if Metrics::get(&ctx.metrics.connections) >= max {
            tracing::warn!(remote = %incoming.remote_address(), max, "refusing connection: limits.max_connections reached");
            incoming.refuse();
            continue;
        }
        let ctx = ctx.clone();
        let host = host.clone();
        tokio::spawn(async move {
            Metrics::inc(&ctx.metrics.connections);
            let remote = incoming.remote_address();
            if let Err(e) = handle_connection(incoming, &ctx, host).await {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
            Metrics::dec(&ctx.metrics.connections);
        });
    }
}

async fn handle_connection(
    incoming: quinn::Incoming,
    ctx: &Arc<NodeContext>,
    host: ActorRef<ShardHostMsg>,
) -> Result<(), String> {
    let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let conn = tokio::time::timeout(timeout, incoming)
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .unwrap_or_default();
    if alpn == shoal_protocol::ALPN_PEER {
        check_peer_cert(&conn)?;
        peer_api::serve(conn, ctx.clone(), host).await;
        return Ok(());
    }
    let scope = if alpn == shoal_protocol::ALPN_ADMIN {
        Scope::Admin
    } else if alpn == shoal_protocol::ALPN_CLIENT {
        Scope::User
    } else {
        conn.close(close_code::REJECTED.into(), b"unsupported ALPN");
        return Err("unsupported ALPN".into());
    };
    let remote = conn.remote_address();
    let user = match tokio::time::timeout(timeout, handshake(&conn, ctx, scope)).await {
        Ok(Ok(user)) => user,
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "handshake refused");
            conn.close(close_code::REJECTED.into(), e.message.as_bytes());
            return Err(e.to_string());
        }
        Err(_) => {
            conn.close(close_code::REJECTED.into(), b"handshake timed out");
            return Err("handshake timed out".into());
        }
    };
    tracing::debug!(%remote, %user, ?scope, "connection authenticated");
    let peer = Peer::new(user, remote);
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => return Err(format!("connection closed: {e}")),
        };
        let ctx = ctx.clone();
        let host = host.clone();
        let peer = peer.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            let result = match scope {
                Scope::User => client_api::handle_stream(send, recv, &ctx, &host, &peer).await,
                Scope::Admin => admin_api::handle_stream(send, recv, &ctx, &host).await,
            };
            if let Err(err) = result {
                match err {
                    FrameIoError::Invalid(e) => {
                        tracing::info!(remote = %peer.remote, error = %e, "closing connection after a bad frame");
                        conn.close(close_code::PROTOCOL.into(), e.message.as_bytes());
                    }
                    other => tracing::debug!(remote = %peer.remote, error = %other, "stream ended"),
                }
            }
        });
    }
}

/// The peer ALPN: only nodes holding a certificate of the cluster CA get this far
/// (rustls verified the chain during the TLS handshake); a connection without a client
/// certificate is refused here, before any message is read.
fn check_peer_cert(conn: &quinn::Connection) -> Result<(), String> {
    let remote = conn.remote_address();
    let has_cert = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .is_some_and(|chain| !chain.is_empty());
    if !has_cert {
        tracing::warn!(%remote, "refusing peer connection: no client certificate from the cluster CA");
        conn.close(
            close_code::REJECTED.into(),
            b"the peer API requires a certificate issued by the cluster CA",
        );
        return Err("peer without a client certificate".into());
    }
    tracing::debug!(%remote, "peer authenticated by its cluster certificate");
    Ok(())
}

async fn handshake(
    conn: &quinn::Connection,
    ctx: &NodeContext,
    scope: Scope,
) -> Result<UserId, WireError> {
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| WireError::new(ErrorCode::Malformed, format!("no handshake stream: {e}")))?;
    let hello: Hello = match read_frame(&mut recv, HELLO_BYTES_MAX).await {
        Ok(Some(hello)) => hello,
        Ok(None) => {
            return Err(WireError::new(
                ErrorCode::Malformed,
                "the connection sent no handshake",
            ));
        }
        Err(FrameIoError::Invalid(e)) => {
            write_final_frame(&mut send, &HelloReply::Rejected(e.clone())).await;
            return Err(e);
        }
        Err(e) => return Err(WireError::new(ErrorCode::Malformed, e.to_string())),
    };
    let result = negotiate(&hello).and_then(|version| {
        ctx.signer
            .verify(&hello.token, ctx.now_secs(), scope)
            .map(|(user, _)| (version, user))
            .map_err(|e| WireError::unauthorized(e.to_string()))
    });
    match result {
        Ok((version, user)) => {
            let reply = HelloReply::Welcome {
                version,
                node_id: ctx.node_id().to_owned(),
                user: user.clone(),
                server_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            write_frame(&mut send, &reply)
                .await
                .map_err(|e| WireError::new(ErrorCode::Malformed, e.to_string()))?;
            let _ = send.finish();
            Ok(user)
        }
        Err(e) => {
            write_final_frame(&mut send, &HelloReply::Rejected(e.clone())).await;
            Err(e)
        }
    }
}
