//! QUIC connections, the handshake and frame I/O.
//!
//! A [`Link`] owns at most one live connection to one of its target's addresses and
//! replaces it lazily when it has closed, starting from the address that last worked and
//! then trying the others in order ([`dial_order`]). Every request opens its own
//! bidirectional stream on that connection ([`open_request`]) and reads the answer through
//! a [`FrameReader`].

use crate::ClientError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::client::RequestEnvelope;
use shoal_protocol::handshake::{Hello, HelloReply, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use shoal_protocol::{FRAME_BYTES_MAX, FrameDecoder, UserId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest wait for a connection to one address (resolve, QUIC + TLS handshake, Shoal
/// handshake), in ms.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for one address to complete resolve + QUIC + TLS handshake while other
/// addresses remain to be tried, in ms: what a dead node costs before the next one is
/// dialled. The last address tried gets [`CONNECT_TIMEOUT_MS`].
pub const DIAL_TIMEOUT_MS: u64 = 2_000;
/// Longest wait for the answer to a unary request (or for `Accepted` of a send), in ms.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Interval of QUIC keep-alive packets, in ms.
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 1_000;
/// A connection with no packet from the node for this long is dead, in ms: a killed
/// node is noticed this soon (three missed keep-alives), and requests and follows fail
/// over to another address, trying the silent one last.
pub const IDLE_TIMEOUT_MS: u64 = 3_000;
/// Longest wait for a closed connection to tell the node before giving up, in ms.
pub const CLOSE_WAIT_MS: u64 = 1_000;
/// Largest CA certificate file accepted, in bytes.
pub const CA_CERT_BYTES_MAX: u64 = 1024 * 1024;
/// Most bytes taken from a stream per read.
const READ_CHUNK_BYTES_MAX: usize = 64 * 1024;

/// Where to connect and how to authenticate: everything needed to (re)connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// `host:port` of nodes that can serve the requests, in the order to try them; never
    /// empty, no duplicates.
    addresses: Vec<String>,
    /// TLS server name.
    pub(crate) server_name: String,
    /// QUIC + TLS configuration (CA roots, ALPN, transport limits).
    pub(crate) quic: quinn::ClientConfig,
    /// Bearer token sent in the `Hello`.
    pub(crate) token: String,
    /// Makes the QUIC endpoint of each connection; `None`: a UDP socket of the OS.
    pub(crate) endpoints: Option<EndpointFactory>,
}

/// Makes a client QUIC endpoint for reaching the given node address (simulation: an
/// endpoint over a simulated socket with a seeded RNG). See
/// [`crate::ConnectOptions::endpoints`].
pub type EndpointFactory =
    Arc<dyn Fn(SocketAddr) -> std::io::Result<quinn::Endpoint> + Send + Sync>;

impl Target {
    /// A target dialling `primary` first, then `others` in order (duplicates dropped).
    pub(crate) fn new(
        primary: &str,
        others: &[String],
        server_name: String,
        quic: quinn::ClientConfig,
        token: String,
    ) -> Target {
        Target {
            addresses: dial_list(primary, others),
            server_name,
            quic,
            token,
            endpoints: None,
        }
    }

    /// The same credentials, dialling `address` first and then this target's addresses
    /// (after `Moved { to: address }`: if that node dies, any other may answer).
    pub(crate) fn moved_to(&self, address: &str) -> Target {
        Target {
            addresses: dial_list(address, &self.addresses),
            ..self.clone()
        }
    }

    /// The addresses, primary first.
    pub(crate) fn addresses(&self) -> &[String] {
        &self.addresses
    }
}

/// `primary` followed by `others`, without duplicates, order kept.
fn dial_list(primary: &str, others: &[String]) -> Vec<String> {
    let mut list = vec![primary.to_owned()];
    for address in others {
        if !list.contains(address) {
            list.push(address.clone());
        }
    }
    list
}

/// The order in which to try `len` addresses when `preferred` last worked: it first, then
/// the others in list order. When the node at `preferred` went `silent` (its connection
/// timed out: it is likely dead), it is tried last instead, so a reconnect does not wait
/// out a dial to it first.
pub(crate) fn dial_order(len: usize, preferred: usize, silent: bool) -> Vec<usize> {
    let preferred = if preferred < len { preferred } else { 0 };
    let others = (0..len).filter(|&i| i != preferred);
    if len == 0 {
        Vec::new()
    } else if silent {
        others.chain(std::iter::once(preferred)).collect()
    } else {
        std::iter::once(preferred).chain(others).collect()
    }
}

/// What the node said when it accepted the handshake.
#[derive(Debug, Clone)]
pub(crate) struct Welcome {
    /// The serving node's id.
    pub(crate) node_id: String,
    /// The authenticated user.
    pub(crate) user: UserId,
}

/// Builds the QUIC client configuration: TLS 1.3 (ring), server auth against the PEM CA
/// at `ca_cert`, the given ALPN, keep-alive and idle timeout.
pub(crate) fn quic_config(
    address: &str,
    ca_cert: &Path,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, ClientError> {
    let profile_error = |message: String| ClientError::Profile {
        path: ca_cert.to_owned(),
        message,
    };
    let meta = std::fs::metadata(ca_cert)
        .map_err(|e| profile_error(format!("cannot read the CA certificate: {e}")))?;
    if meta.len() > CA_CERT_BYTES_MAX {
        return Err(profile_error(format!(
            "the CA certificate file is {} bytes, more than {CA_CERT_BYTES_MAX}",
            meta.len()
        )));
    }
    let pem = std::fs::read(ca_cert)
        .map_err(|e| profile_error(format!("cannot read the CA certificate: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| profile_error(format!("not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| profile_error(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(profile_error(
            "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }

    let config_error = |message: String| ClientError::Connect {
        address: address.to_owned(),
        message: format!("cannot build the TLS configuration: {message}"),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| config_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| config_error(e.to_string()))?;

    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)));
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(IDLE_TIMEOUT_MS))
        .map_err(|e| config_error(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// One live connection and the endpoint that drives it.
struct Session {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

/// A lazily (re)connecting connection to one node of a target's addresses.
pub(crate) struct Link {
    target: Target,
    current: tokio::sync::Mutex<Option<Session>>,
    /// Index into the target's addresses of the one that last worked: reconnects start
    /// there. Written under `current`'s lock; read without it as a hint.
    preferred: AtomicUsize,
}

impl Link {
    /// A link that connects on first use.
    pub(crate) fn lazy(target: Target) -> Link {
        Link {
            target,
            current: tokio::sync::Mutex::new(None),
            preferred: AtomicUsize::new(0),
        }
    }

    /// A link connected now; fails like the first request would.
    pub(crate) async fn connect(target: Target) -> Result<(Link, Welcome), ClientError> {
        let (session, welcome, index) = open_any(&target, 0, false).await?;
        let link = Link {
            target,
            current: tokio::sync::Mutex::new(Some(session)),
            preferred: AtomicUsize::new(index),
        };
        Ok((link, welcome))
    }

    /// The target this link dials.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The address this link is connected to, or dials first on its next reconnect.
    pub(crate) fn preferred_address(&self) -> &str {
        let index = self.preferred.load(Ordering::Relaxed);
        let addresses = self.target.addresses();
        addresses
            .get(index)
            .or_else(|| addresses.first())
            .map_or("", String::as_str)
    }

    /// The live connection, reconnecting first if the previous one has closed.
    pub(crate) async fn connection(&self) -> Result<quinn::Connection, ClientError> {
        let mut current = self.current.lock().await;
        if let Some(session) = current.as_ref()
            && session.connection.close_reason().is_none()
        {
            return Ok(session.connection.clone());
        }
        let mut silent = false;
        if let Some(old) = current.take() {
            silent = matches!(
                old.connection.close_reason(),
                Some(quinn::ConnectionError::TimedOut)
            );
            // The connection is already closed; release the endpoint's socket.
            old.endpoint.close(quinn::VarInt::from_u32(0), b"");
        }
        let preferred = self.preferred.load(Ordering::Relaxed);
        let (session, welcome, index) = open_any(&self.target, preferred, silent).await?;
        self.preferred.store(index, Ordering::Relaxed);
        tracing::debug!(
            address = %self.target.addresses[index],
            node = %welcome.node_id,
            "reconnected"
        );
        let connection = session.connection.clone();
        *current = Some(session);
        Ok(connection)
    }

    /// Whether this link's connection died of silence (QUIC's idle timeout): its node is
    /// most likely dead, not restarting or closing the connection on purpose.
    pub(crate) async fn went_silent(&self) -> bool {
        self.current.lock().await.as_ref().is_some_and(|session| {
            matches!(
                session.connection.close_reason(),
                Some(quinn::ConnectionError::TimedOut)
            )
        })
    }

    /// Closes the connection (if any) and waits up to [`CLOSE_WAIT_MS`] for the node to
    /// hear about it. Later requests reconnect.
    pub(crate) async fn close(&self) {
        let session = self.current.lock().await.take();
        if let Some(session) = session {
            session
                .connection
                .close(quinn::VarInt::from_u32(0), b"client closed");
            let _ = tokio::time::timeout(
                Duration::from_millis(CLOSE_WAIT_MS),
                session.endpoint.wait_idle(),
            )
            .await;
        }
    }
}

/// Connects to the first of the target's addresses that accepts, trying them in
/// [`dial_order`] from `preferred` (last, if it went `silent`). Returns the session, the welcome and the index of the
/// address that worked; when none does, the error of the only address or a
/// [`ClientError::Connect`] listing every address's failure.
async fn open_any(
    target: &Target,
    preferred: usize,
    silent: bool,
) -> Result<(Session, Welcome, usize), ClientError> {
    let addresses = target.addresses();
    let mut failures: Vec<(&str, ClientError)> = Vec::new();
    for index in dial_order(addresses.len(), preferred, silent) {
        let address = addresses[index].as_str();
        let last = failures.len() + 1 == addresses.len();
        let dial_timeout_ms = if last {
            CONNECT_TIMEOUT_MS
        } else {
            DIAL_TIMEOUT_MS
        };
        match open_session(target, address, dial_timeout_ms).await {
            Ok((session, welcome)) => return Ok((session, welcome, index)),
            Err(err) if !worth_another_address(&err) => return Err(err),
            Err(err) => {
                if !last {
                    tracing::debug!(%address, error = %err, "cannot connect; trying the next address");
                }
                failures.push((address, err));
            }
        }
    }
    Err(all_failed(failures))
}

/// Whether another node may accept where this one failed: anything but a handshake the
/// node refused for a reason every node shares (a bad token).
fn worth_another_address(err: &ClientError) -> bool {
    !matches!(err, ClientError::Rejected(_)) || err.is_retryable()
}

/// One error for a connect that failed on every address.
fn all_failed(mut failures: Vec<(&str, ClientError)>) -> ClientError {
    if failures.len() == 1
        && let Some((_, err)) = failures.pop()
    {
        return err;
    }
    let addresses: Vec<&str> = failures.iter().map(|(address, _)| *address).collect();
    let reasons: Vec<String> = failures
        .iter()
        .map(|(address, err)| match err {
            ClientError::Connect { message, .. } => format!("{address}: {message}"),
            other => format!("{address}: {other}"),
        })
        .collect();
    ClientError::Connect {
        address: addresses.join(", "),
        message: format!("every address failed ({})", reasons.join("; ")),
    }
}

/// Resolves and connects to `address` within `dial_timeout_ms`, then performs the Shoal
/// handshake, all within [`CONNECT_TIMEOUT_MS`].
async fn open_session(
    target: &Target,
    address: &str,
    dial_timeout_ms: u64,
) -> Result<(Session, Welcome), ClientError> {
    let connect_error = |message: String| ClientError::Connect {
        address: address.to_owned(),
        message,
    };
    let no_answer = |after_ms: u64| connect_error(format!("no answer within {after_ms} ms"));
    let attempt = async {
        let dial = async {
            let addr = resolve(address).await.map_err(connect_error)?;
            let endpoint = match &target.endpoints {
                Some(make) => make(addr),
                None => quinn::Endpoint::client(bind_addr_for(addr)),
            }
            .map_err(|e| connect_error(format!("cannot open a UDP socket: {e}")))?;
            let connecting = endpoint
                .connect_with(target.quic.clone(), addr, &target.server_name)
                .map_err(|e| connect_error(e.to_string()))?;
            let connection = connecting
                .await
                .map_err(|e| connect_error(connection_error_text(&e)))?;
            Ok::<_, ClientError>((endpoint, connection))
        };
        let (endpoint, connection) =
            tokio::time::timeout(Duration::from_millis(dial_timeout_ms), dial)
                .await
                .unwrap_or_else(|_| Err(no_answer(dial_timeout_ms)))?;
        let welcome = handshake(&connection, &target.token).await?;
        Ok((
            Session {
                endpoint,
                connection,
            },
            welcome,
        ))
    };
    tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), attempt)
        .await
        .unwrap_or_else(|_| Err(no_answer(CONNECT_TIMEOUT_MS)))
}

/// The first address `address` (`host:port`) resolves to.
async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve the address: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| "the address resolves to nothing".to_owned())
}

/// The local address to bind for reaching `target`: loopback for a loopback IPv4 target,
/// otherwise the unspecified address of the target's family.
fn bind_addr_for(target: SocketAddr) -> SocketAddr {
    let ip = match target.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Sends `Hello` on the first stream and reads `HelloReply`.
async fn handshake(connection: &quinn::Connection, token: &str) -> Result<Welcome, ClientError> {
    let (mut send, recv) = connection.open_bi().await.map_err(lost_connection)?;
    let hello = Hello::new(
        token,
        concat!("shoal-client/", env!("CARGO_PKG_VERSION")).to_owned(),
    );
    write_frame(&mut send, &hello).await?;
    send.finish()
        .map_err(|e| ClientError::Protocol(format!("cannot finish the handshake stream: {e}")))?;
    let mut reader = FrameReader::new(recv);
    match reader.next::<HelloReply>().await? {
        Some(HelloReply::Welcome {
            version,
            node_id,
            user,
            ..
        }) => {
            if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION_MAX).contains(&version) {
                return Err(ClientError::Protocol(format!(
                    "the node chose protocol version {version}, this client speaks {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}"
                )));
            }
            Ok(Welcome { node_id, user })
        }
        Some(HelloReply::Rejected(err)) => Err(ClientError::Rejected(err)),
        None => Err(ClientError::Protocol(
            "the node ended the handshake stream without a reply".to_owned(),
        )),
    }
}

/// Opens a request stream, writes `envelope` as its only frame and finishes the send side.
pub(crate) async fn open_request<T: Serialize>(
    connection: &quinn::Connection,
    body: T,
    trace: Option<shoal_protocol::TraceContext>,
) -> Result<FrameReader, ClientError> {
    let (mut send, recv) = connection.open_bi().await.map_err(lost_connection)?;
    let envelope = RequestEnvelope { trace, body };
    write_frame(&mut send, &envelope).await?;
    send.finish().map_err(|e| {
        ClientError::ConnectionLost(format!("the request stream closed early: {e}"))
    })?;
    Ok(FrameReader::new(recv))
}

/// Encodes `value` as one frame and writes it.
async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
) -> Result<(), ClientError> {
    let frame = shoal_protocol::frame::encode_frame(value)
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    send.write_all(&frame).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => lost_connection(e),
        quinn::WriteError::Stopped(code) => {
            ClientError::ConnectionLost(format!("the node stopped the stream (code {code})"))
        }
        other => ClientError::Protocol(format!("cannot write the request: {other}")),
    })
}

/// Reads frames from the receive side of a request stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    /// Payload bytes of the last frame read.
    last_frame_bytes: usize,
}

impl FrameReader {
    fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            decoder: FrameDecoder::new(FRAME_BYTES_MAX),
            last_frame_bytes: 0,
        }
    }

    /// Payload bytes of the last frame read (what it weighs, without encoding it again).
    pub(crate) fn last_frame_bytes(&self) -> usize {
        self.last_frame_bytes
    }

    /// The next frame, or `None` when the node finished the stream cleanly between frames.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ClientError> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Self::next`] as a poll: what a stream's `poll_next` uses without building a
    /// future per frame.
    pub(crate) fn poll_next<T: DeserializeOwned>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<T>, ClientError>> {
        use std::future::Future;
        use std::task::Poll;
        loop {
            let decoded = self.decoder.next_payload().and_then(|payload| {
                payload
                    .map(|payload| {
                        self.last_frame_bytes = payload.len();
                        shoal_protocol::frame::decode_payload::<T>(&payload)
                    })
                    .transpose()
            });
            match decoded {
                Ok(Some(frame)) => return Poll::Ready(Ok(Some(frame))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(ClientError::Protocol(e.to_string()))),
            }
            // `read_chunk` is cancel safe: a pending read leaves the waker registered.
            let read = std::pin::pin!(self.recv.read_chunk(READ_CHUNK_BYTES_MAX, true)).poll(cx);
            match std::task::ready!(read) {
                Ok(Some(chunk)) => self.decoder.push_bytes(chunk.bytes),
                Ok(None) if self.decoder.buffered_bytes() == 0 => return Poll::Ready(Ok(None)),
                Ok(None) => {
                    return Poll::Ready(Err(ClientError::Protocol(format!(
                        "the node ended the stream inside a frame ({} bytes left over)",
                        self.decoder.buffered_bytes()
                    ))));
                }
                Err(e) => return Poll::Ready(Err(read_error(e))),
            }
        }
    }
}

fn read_error(e: quinn::ReadError) -> ClientError {
    match e {
        quinn::ReadError::ConnectionLost(e) => lost_connection(e),
        quinn::ReadError::Reset(code) => {
            ClientError::ConnectionLost(format!("the node reset the stream (code {code})"))
        }
        other => ClientError::Protocol(format!("cannot read the answer: {other}")),
    }
}

fn lost_connection(e: quinn::ConnectionError) -> ClientError {
    ClientError::ConnectionLost(connection_error_text(&e))
}

fn connection_error_text(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::TimedOut => {
            format!("no packet from the node for {IDLE_TIMEOUT_MS} ms")
        }
        quinn::ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason);
            if reason.is_empty() {
                format!("the node closed the connection (code {})", close.error_code)
            } else {
                format!("the node closed the connection: {reason}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_matches_the_target_family() {
        let v4: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        assert_eq!(bind_addr_for(v4).to_string(), "127.0.0.1:0");
        let remote: SocketAddr = "10.1.2.3:7443".parse().unwrap();
        assert_eq!(bind_addr_for(remote).to_string(), "0.0.0.0:0");
        let v6: SocketAddr = "[::1]:7443".parse().unwrap();
        assert_eq!(bind_addr_for(v6).to_string(), "[::]:0");
    }

    #[test]
    fn dial_order_starts_from_the_preferred_address() {
        let order = |len, preferred| dial_order(len, preferred, false);
        assert_eq!(order(3, 0), vec![0, 1, 2]);
        assert_eq!(order(3, 1), vec![1, 0, 2]);
        assert_eq!(order(3, 2), vec![2, 0, 1]);
        assert_eq!(order(1, 0), vec![0]);
        // A stale index falls back to the list order.
        assert_eq!(order(2, 7), vec![0, 1]);
        assert_eq!(order(0, 0), Vec::<usize>::new());
    }

    #[test]
    fn a_silent_address_is_dialled_last() {
        let order = |len, preferred| dial_order(len, preferred, true);
        assert_eq!(order(3, 0), vec![1, 2, 0]);
        assert_eq!(order(3, 1), vec![0, 2, 1]);
        // The only address is still tried.
        assert_eq!(order(1, 0), vec![0]);
        assert_eq!(order(0, 0), Vec::<usize>::new());
    }

    #[test]
    fn dial_lists_keep_order_and_drop_duplicates() {
        let others = vec![
            "b:1".to_owned(),
            "a:1".to_owned(),
            "c:1".to_owned(),
            "b:1".to_owned(),
        ];
        assert_eq!(dial_list("a:1", &others), vec!["a:1", "b:1", "c:1"]);
        assert_eq!(dial_list("c:1", &[]), vec!["c:1"]);
    }

    #[test]
    fn a_connect_failing_everywhere_names_every_address() {
        let refused = |address: &str| ClientError::Connect {
            address: address.to_owned(),
            message: "no answer within 2000 ms".to_owned(),
        };
        let err = all_failed(vec![("a:1", refused("a:1")), ("b:2", refused("b:2"))]);
        let text = err.to_string();
        assert!(matches!(err, ClientError::Connect { .. }), "{text}");
        assert!(text.contains("cannot connect to a:1, b:2: every address failed (a:1: no answer within 2000 ms; b:2: no answer"), "{text}");
        let only = all_failed(vec![(
            "a:1",
            ClientError::Rejected(shoal_protocol::WireError::unauthorized("bad")),
        )]);
        assert!(matches!(only, ClientError::Rejected(_)), "{only}");
    }

    #[test]
    fn only_a_refused_token_stops_the_walk() {
        use shoal_protocol::{ErrorCode, WireError};
        assert!(!worth_another_address(&ClientError::Rejected(
            WireError::unauthorized("bad")
        )));
        assert!(worth_another_address(&ClientError::Rejected(
            WireError::new(ErrorCode::Unavailable, "starting")
        )));
        assert!(worth_another_address(&ClientError::Protocol(
            "garbage".into()
        )));
        assert!(worth_another_address(&ClientError::Connect {
            address: "a:1".into(),
            message: "x".into()
        }));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("shoal-client-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = quic_config("127.0.0.1:1", &path, shoal_protocol::ALPN_CLIENT).unwrap_err();
        assert!(matches!(err, ClientError::Profile { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
