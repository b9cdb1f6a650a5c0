//! `shoal-peer/1`: node-to-node traffic over mTLS (cluster CA on both sides).
//!
//! * one bidirectional stream per request: a [`PeerRequest`] frame, then reply frames;
//! * QUIC datagrams carry SWIM gossip packets.
//!
//! [`PeerClient`] keeps pooled connections per peer address, made from the node's own
//! endpoint (so a peer sees our listen address as the source and gossip replies reach
//! us): one per [`PeerLane`], so forwarded client turns never share a stream budget or a
//! fate with Raft heartbeats and gossip. Peer messages carry openraft types, so they live here rather than in
//! `shoal-protocol` (which has no openraft dependency); they use the same framing.

use crate::gateway::frames::{FrameStream, write_frame};
use crate::raft::TypeConfig;
use crate::security::tls::{self, TlsError, TlsPaths};
use crate::workspace::blobs::ChunkHash;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::client::ClientRequest;
use shoal_protocol::{TraceContext, UserId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest peer frame, in bytes (the protocol's frame limit).
pub const PEER_FRAME_BYTES_MAX: usize = shoal_protocol::frame::FRAME_BYTES_MAX;
/// How long connecting to a peer may take.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Idle timeout of peer connections: a dead peer's connection is dropped this soon.
pub const PEER_IDLE_TIMEOUT_MS: u32 = 5_000;
/// Keep-alive interval of peer connections.
pub const PEER_KEEP_ALIVE_MS: u64 = 1_000;
/// TLS server name used when dialing a peer: any certificate of the cluster CA is a
/// valid peer (the name is not checked, see [`PeerServerVerifier`]).
const PEER_SERVER_NAME: &str = "shoal-peer";

/// A request from another node.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// A Raft RPC for one shard's group.
    Raft {
        /// The shard.
        shard: u16,
        /// The Raft member addressed. A node refuses RPCs for any other id: after losing
        /// its store it is a new member, and must not answer for the old one.
        target: u64,
        /// The RPC.
        rpc: RaftRpc,
    },
    /// A client request accepted by another node, for a shard this node leads. The
    /// reply frames are [`shoal_protocol::client::ServerFrame`]s, as to a client.
    Forward {
        /// The user the forwarding node authenticated.
        user: UserId,
        /// The caller's trace context.
        trace: Option<TraceContext>,
        /// The request.
        request: ClientRequest,
    },
    /// Ask this node to campaign for a shard's leadership (leadership transfer).
    Campaign {
        /// The shard.
        shard: u16,
    },
    /// Stop leading shards and leave placement (`shoalctl drain`).
    Drain,
    /// Initialize a shard's group with these voters (cluster bootstrap).
    Initialize {
        /// The shard.
        shard: u16,
        /// Voters: raft id → node.
        voters: Vec<(u64, crate::raft::PeerNode)>,
    },
    /// Which of these workspace chunks this node lacks (at most
    /// [`BLOB_QUERY_HASHES_MAX`]); the ones it holds are kept from garbage collection
    /// for a while. Reply: [`BlobReply::Missing`].
    BlobsMissing {
        /// The chunks.
        hashes: Vec<ChunkHash>,
    },
    /// Store workspace chunks (each at most [`crate::workspace::blobs::CHUNK_BYTES_MAX`]
    /// bytes and hashing to its name; at most [`BLOB_PUT_BYTES_MAX`] in all), durably,
    /// with one sync for the batch. Reply: [`BlobReply::Stored`].
    BlobPut {
        /// The chunks: hash and bytes.
        chunks: Vec<(ChunkHash, Vec<u8>)>,
    },
    /// Send one workspace chunk. Reply: [`BlobReply::Blob`] or [`BlobReply::NotFound`].
    BlobGet {
        /// Its hash.
        hash: ChunkHash,
    },
    /// Propose a cross-shard command on a shard this node leads (a grantee's "shared
    /// with me" entry, a shared conversation forked into the caller's workspace; see
    /// [`crate::gateway::sharing::peer_may_propose`]). Reply:
    /// [`crate::gateway::sharing::ProposeReply`].
    Propose {
        /// The shard.
        shard: u16,
        /// The command.
        command: crate::shard::state_machine::ShardCommand,
    },
    /// Put this node back into placement (`shoalctl undrain`). Reply: [`ControlReply`].
    Undrain,
    /// Answer an admin request about this node alone (the answering node's part of a
    /// cluster-wide admin answer). Reply: `Result<AdminReply, WireError>`. Only requests
    /// [`crate::gateway::admin_api::served_for_peers`] accepts are served.
    Admin {
        /// The request.
        request: shoal_protocol::admin::AdminRequest,
    },
    /// Heartbeats of several shards' groups to this node, sent together (at most
    /// [`crate::raft::heartbeats::HEARTBEATS_PER_BATCH_MAX`]). Reply: one frame
    /// `(index in beats, RaftReply)` per heartbeat, in the order the shards answered.
    RaftHeartbeats {
        /// The heartbeats.
        beats: Vec<crate::raft::heartbeats::Heartbeat>,
    },
    /// Beats of quiet shards this node follows (at most
    /// [`crate::cluster::quiet::QUIET_BEATS_MAX`]; see [`crate::cluster::quiet`]). Reply:
    /// one `Result<(), String>` per beat, in order: accepted, or why not.
    QuietBeats {
        /// The beats.
        beats: Vec<crate::cluster::quiet::QuietBeat>,
    },
}

/// Most chunk bytes one [`PeerRequest::BlobPut`] may carry (well inside a frame).
pub const BLOB_PUT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most hashes one [`PeerRequest::BlobsMissing`] may carry.
pub const BLOB_QUERY_HASHES_MAX: usize = 16 * 1024;

/// Replies to the blob requests.
#[derive(Debug, Serialize, Deserialize)]
pub enum BlobReply {
    /// The chunks asked about that this node lacks.
    Missing(Vec<ChunkHash>),
    /// The chunk is stored (durably).
    Stored,
    /// The chunk's bytes.
    Blob(Vec<u8>),
    /// This node does not hold the chunk.
    NotFound,
    /// The request was refused, and why.
    Refused(String),
}

/// The Raft RPCs.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Append entries / heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Request vote.
    Vote(VoteRequest<u64>),
    /// One snapshot chunk.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Replies to [`RaftRpc`]s.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// The shard does not exist here or the request could not be served.
    Refused(String),
}

/// Reply to `Campaign`, `Initialize`, `Drain` and `Undrain`.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControlReply {
    /// Done.
    Ok,
    /// Not done, and why.
    Refused(String),
}

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection could be made.
    #[error("cannot reach peer {addr}: {message}")]
    Unreachable {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The request was sent but the exchange failed.
    #[error("peer {addr} call failed: {message}")]
    Call {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The call did not finish in time.
    #[error("peer {addr} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The timeout.
        timeout_ms: u64,
    },
}

/// Verifies a peer's server certificate against the cluster CA and ignores the name:
/// membership in the cluster is what the CA certifies (nodes are dialed by address).
#[derive(Debug)]
struct PeerServerVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // The chain was verified before the name: a cluster certificate.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The quinn client config for dialing peers: our node certificate as the client
/// certificate, the cluster CA as the only root, the peer ALPN.
pub fn client_config(paths: &TlsPaths) -> Result<quinn::ClientConfig, TlsError> {
    let certs = tls::load_certs(&paths.cert, "the node certificate")?;
    let key = tls::load_key(&paths.key)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in tls::load_certs(&paths.ca_cert, "the cluster CA certificate")? {
        roots
            .add(ca)
            .map_err(|e| TlsError::Config(format!("cluster CA: {e}")))?;
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        tls::provider(),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier(webpki)))
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![shoal_protocol::ALPN_PEER.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_millis(PEER_KEEP_ALIVE_MS)))
        .max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
            PEER_IDLE_TIMEOUT_MS,
        ))));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Which pooled connection to a peer a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerLane {
    /// Raft RPCs, control calls and gossip datagrams. A slow reply does not close it (a
    /// big append may be ahead of a heartbeat): only a call that timed out while nothing
    /// at all came back from the peer (not even an ACK) drops it, so the next call dials
    /// a restarted peer afresh instead of waiting for QUIC's idle timeout.
    Raft,
    /// Forwarded client requests (long-lived turn streams).
    Forward,
    /// Workspace chunks: megabytes that must not queue ahead of Raft heartbeats.
    Blob,
}

/// Pooled connections to peers.
pub struct PeerClient {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    slots: Mutex<HashMap<(SocketAddr, PeerLane), Slot>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A pool dialing from `endpoint` with `config`.
    pub fn new(endpoint: quinn::Endpoint, config: quinn::ClientConfig) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            config,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, addr: SocketAddr, lane: PeerLane) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry((addr, lane)).or_default().clone()
    }

    /// The pooled connection of `lane` to `addr`, dialing it if there is none (one dial
    /// at a time per address and lane).
    pub async fn connection(
        &self,
        addr: SocketAddr,
        lane: PeerLane,
    ) -> Result<quinn::Connection, PeerError> {
        let slot = self.slot(addr, lane);
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let unreachable = |message: String| PeerError::Unreachable { addr, message };
        // Dialled outside the caller's span: quinn instruments the connection's driver
        // with the current span, and the pooled connection outlives the request that
        // dialled it, whose trace would then never end (nor be exported).
        let connecting = tracing::Span::none()
            .in_scope(|| {
                self.endpoint
                    .connect_with(self.config.clone(), addr, PEER_SERVER_NAME)
            })
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::time::timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS), connecting)
            .await
            .map_err(|_| unreachable(format!("no answer within {PEER_CONNECT_TIMEOUT_MS} ms")))?
            .map_err(|e| unreachable(e.to_string()))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Drops the pooled [`PeerLane::Forward`] connection to `addr` (a forward got no
    /// answer: the peer may be dead while the connection still looks open), so the next
    /// forward dials afresh. The Raft lane is left alone.
    pub fn invalidate_forwards(&self, addr: SocketAddr) {
        let slot = self.slot(addr, PeerLane::Forward);
        if let Ok(mut guard) = slot.try_lock()
            && let Some(conn) = guard.take()
        {
            conn.close(0u32.into(), b"peer did not answer");
        }
    }

    /// The pooled Raft-lane connection to `addr` if one is open (never dials).
    pub fn cached(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let slot = self.slot(addr, PeerLane::Raft);
        let guard = slot.try_lock().ok()?;
        guard
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    /// Sends `request` on the Raft lane and reads one reply frame, within `timeout`. A
    /// timeout fails this call only: other calls on the connection go on.
    pub async fn call<R: serde::de::DeserializeOwned>(
        &self,
        addr: SocketAddr,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<R, PeerError> {
        self.call_on(PeerLane::Raft, addr, request, timeout).await
    }

    /// [`Self::call`] on `lane`.
    pub async fn call_on<R: serde::de::DeserializeOwned>(
        &self,
        lane: PeerLane,
        addr: SocketAddr,
        request: &PeerRequest,
        timeout: Duration,
    ) -> Result<R, PeerError> {
        let frame = shoal_protocol::frame::encode_frame(request).map_err(|e| PeerError::Call {
            addr,
            message: format!("cannot encode a frame: {e}"),
        })?;
        self.call_frame(lane, addr, &frame, timeout).await
    }

    /// [`Self::call_on`] with the request already encoded as one frame (callers that
    /// need its size encode it once).
    pub async fn call_frame<R: serde::de::DeserializeOwned>(
        &self,
        lane: PeerLane,
        addr: SocketAddr,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<R, PeerError> {
        let mut reply = None;
        self.exchange(lane, addr, frame, timeout, |r| {
            reply = Some(r);
            ControlFlow::Break(())
        })
        .await?;
        reply.ok_or_else(|| PeerError::Call {
            addr,
            message: "the peer closed the stream without a reply".into(),
        })
    }

    /// Sends the encoded request `frame` on `lane` and hands each reply frame to `each`
    /// until it breaks or the peer finishes the stream, all within `timeout`. A timeout
    /// fails this call only: other calls on the connection go on.
    pub async fn exchange<R: serde::de::DeserializeOwned>(
        &self,
        lane: PeerLane,
        addr: SocketAddr,
        frame: &[u8],
        timeout: Duration,
        mut each: impl FnMut(R) -> ControlFlow<()>,
    ) -> Result<(), PeerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || PeerError::Timeout {
            addr,
            timeout_ms: timeout.as_millis() as u64,
        };
        let conn = tokio::time::timeout_at(deadline, self.connection(addr, lane))
            .await
            .map_err(|_| timed_out())??;
        let received_before = conn.stats().udp_rx.datagrams;
        let exchange = async {
            let failed = |message: String| PeerError::Call { addr, message };
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
            send.write_all(frame)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let _ = send.finish();
            let mut replies = FrameStream::new(&mut recv, PEER_FRAME_BYTES_MAX);
            loop {
                match replies.next::<R>().await {
                    Ok(Some(reply)) => {
                        if each(reply).is_break() {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(failed(e.to_string())),
                }
            }
        };
        let result = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| timed_out())
            .and_then(|r| r);
        if matches!(result, Err(PeerError::Timeout { .. }))
            && conn.stats().udp_rx.datagrams == received_before
        {
            // Silence, not slowness: the peer is gone (or restarted on the same address).
            self.drop_connection(addr, lane, &conn);
        }
        result
    }

    /// Closes `conn` and forgets it if it is still the pooled one of `lane`.
    fn drop_connection(&self, addr: SocketAddr, lane: PeerLane, conn: &quinn::Connection) {
        let slot = self.slot(addr, lane);
        if let Ok(mut guard) = slot.try_lock()
            && guard
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            guard.take();
        }
        conn.close(0u32.into(), b"peer did not answer");
    }

    /// Opens a stream on the Forward lane to `addr` and sends `request`; the caller reads
    /// the replies.
    pub async fn open(
        &self,
        addr: SocketAddr,
        request: &PeerRequest,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), PeerError> {
        let conn = self.connection(addr, PeerLane::Forward).await?;
        let failed = |message: String| PeerError::Call { addr, message };
        let (mut send, recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok((send, recv))
    }

    /// Sends one datagram to `addr`, best effort: dials in the background when there is
    /// no connection yet (the packet is then dropped, like UDP).
    pub fn send_datagram(self: &Arc<Self>, addr: SocketAddr, packet: bytes::Bytes) {
        if let Some(conn) = self.cached(addr) {
            if let Err(e) = conn.send_datagram(packet) {
                tracing::debug!(%addr, error = %e, "gossip datagram not sent");
            }
            return;
        }
        if self.slot(addr, PeerLane::Raft).try_lock().is_err() {
            // A dial is in progress: drop the packet rather than queue tasks.
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.connection(addr, PeerLane::Raft).await {
                Ok(conn) => {
                    let _ = conn.send_datagram(packet);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "gossip peer unreachable"),
            }
        });
    }
}

/// Peer clients for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::security::tls::{TlsPaths, ensure_dev_certs};

    /// Dev certificates in `dir`.
    pub(crate) fn dev_tls(dir: &std::path::Path) -> TlsPaths {
        let paths = TlsPaths {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        };
        ensure_dev_certs(&paths).unwrap();
        paths
    }

    /// A peer client on its own loopback endpoint.
    pub(crate) fn client_peers(paths: &TlsPaths) -> Arc<PeerClient> {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        PeerClient::new(endpoint, client_config(paths).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{client_peers, dev_tls};
    use super::*;
    use crate::security::tls::{TlsPaths, server_config};

    /// A peer that answers any request with `replies` frames `(i, i * 10)`, all in one
    /// write, then finishes the stream.
    async fn many_replies_peer(paths: &TlsPaths, replies: usize) -> SocketAddr {
        let config = server_config(paths, 16).unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        tokio::spawn(async move {
            let conn = endpoint.accept().await.unwrap().await.unwrap();
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let _request: Option<PeerRequest> =
                    crate::gateway::frames::read_frame(&mut recv, PEER_FRAME_BYTES_MAX)
                        .await
                        .unwrap();
                let mut bytes = Vec::new();
                for i in 0..replies {
                    bytes.extend(shoal_protocol::frame::encode_frame(&(i, i as u64 * 10)).unwrap());
                }
                send.write_all(&bytes).await.unwrap();
                let _ = send.finish();
            }
            endpoint.wait_idle().await;
        });
        addr
    }

    /// Several reply frames that arrive in one packet are each handed over: bytes read
    /// past one frame are kept for the next.
    #[tokio::test]
    async fn an_exchange_hands_over_every_reply_frame() {
        let dir = tempfile::tempdir().unwrap();
        let paths = dev_tls(dir.path());
        let addr = many_replies_peer(&paths, 50).await;
        let peers = client_peers(&paths);
        let request = shoal_protocol::frame::encode_frame(&PeerRequest::Undrain).unwrap();
        let timeout = Duration::from_secs(30);

        let mut got = Vec::new();
        peers
            .exchange::<(usize, u64)>(PeerLane::Raft, addr, &request, timeout, |reply| {
                got.push(reply);
                ControlFlow::Continue(())
            })
            .await
            .unwrap();
        let expected: Vec<(usize, u64)> = (0..50).map(|i| (i, i as u64 * 10)).collect();
        assert_eq!(got, expected);

        // Breaking early stops reading; a one-reply call takes the first frame.
        let mut first_two = Vec::new();
        peers
            .exchange::<(usize, u64)>(PeerLane::Raft, addr, &request, timeout, |reply| {
                first_two.push(reply);
                if first_two.len() == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await
            .unwrap();
        assert_eq!(first_two, vec![(0, 0), (1, 10)]);
        let one: (usize, u64) = peers
            .call_frame(PeerLane::Raft, addr, &request, timeout)
            .await
            .unwrap();
        assert_eq!(one, (0, 0));
    }

    /// A peer that answers `Undrain` at once (a stand-in for a heartbeat) and holds every
    /// other request open without an answer (a long forwarded turn), with `streams`
    /// concurrent streams per connection.
    async fn holding_peer(paths: &TlsPaths, streams: u32) -> SocketAddr {
        let config = server_config(paths, streams).unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let Ok(conn) = incoming.await else { continue };
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let request: Option<PeerRequest> =
                                crate::gateway::frames::read_frame(&mut recv, PEER_FRAME_BYTES_MAX)
                                    .await
                                    .unwrap_or(None);
                            if matches!(request, Some(PeerRequest::Undrain)) {
                                let _ = write_frame(&mut send, &ControlReply::Ok).await;
                                let _ = send.finish();
                            } else {
                                // Held until the peer closes the connection.
                                let _ = recv.read_to_end(usize::MAX).await;
                            }
                        });
                    }
                });
            }
        });
        addr
    }

    /// Raft calls never wait behind forwarded streams (issue 9, item 7): with every
    /// stream the peer allows taken by forwards that get no answer, a Raft call is still
    /// answered at once, and dropping the forwards' connection (what a forward that got no
    /// answer does) leaves the Raft connection open.
    #[tokio::test]
    async fn raft_calls_do_not_wait_behind_forwarded_streams() {
        let dir = tempfile::tempdir().unwrap();
        let paths = dev_tls(dir.path());
        let streams = 8;
        let addr = holding_peer(&paths, streams).await;
        let peers = client_peers(&paths);
        let bound = Duration::from_secs(10);

        let mut forwards = Vec::new();
        for shard in 0..streams {
            let request = PeerRequest::Campaign {
                shard: shard as u16,
            };
            let opened = tokio::time::timeout(bound, peers.open(addr, &request))
                .await
                .expect("a forward opens while the peer allows streams")
                .unwrap();
            forwards.push(opened);
        }
        // Every stream of the forward connection is taken: one more would wait.
        let request = PeerRequest::Campaign { shard: 99 };
        assert!(
            tokio::time::timeout(Duration::from_millis(300), peers.open(addr, &request))
                .await
                .is_err(),
            "the peer allows only {streams} streams per connection"
        );

        // A Raft-lane call, answered within `bound`.
        let raft_call = |when: &'static str| {
            let peers = &peers;
            async move {
                let answer: ControlReply =
                    tokio::time::timeout(bound, peers.call(addr, &PeerRequest::Undrain, bound))
                        .await
                        .unwrap_or_else(|_| panic!("no Raft answer {when}"))
                        .unwrap();
                assert!(matches!(answer, ControlReply::Ok), "{when}: {answer:?}");
            }
        };
        raft_call("while the forwards hold every stream").await;
        let raft = peers.cached(addr).expect("the Raft connection is pooled");

        peers.invalidate_forwards(addr);
        raft_call("after the forwards were dropped").await;
        let still = peers
            .cached(addr)
            .expect("the Raft connection is still open");
        assert_eq!(still.stable_id(), raft.stable_id());
        drop(forwards);
    }
}
