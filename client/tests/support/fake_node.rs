//! A scripted Shoal node for tests: real QUIC + TLS on loopback, a CA made with rcgen,
//! token checks in the handshake, and every request handed to the test, which answers
//! frame by frame. Shared by `shoal-client` and `shoal-console` tests.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use anyhow::{Context, Result, anyhow, bail};
use shoal_protocol::admin::{AdminReply, AdminRequest, MemberInfo, ShardInfo};
use shoal_protocol::client::{ClientRequest, ConversationSummary, RequestEnvelope, ServerFrame};
use shoal_protocol::frame::encode_frame;
use shoal_protocol::handshake::{Hello, HelloReply};
use shoal_protocol::transcript::{
    Event, EventFrame, Message, MessageStatus, Part, Role, StopReason,
};
use shoal_protocol::{
    ALPN_ADMIN, ALPN_CLIENT, FrameDecoder, MessageId, Seq, ShardId, TurnId, UserId, WireError,
    WorkspaceId,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

// The event frames the SDK's unit tests use too.
#[path = "../../src/test_frames.rs"]
mod frames;
#[allow(unused_imports)] // as `dead_code` above: each test crate uses some
pub(crate) use frames::{conversation, reset, status};

/// Bound on every single wait in these tests.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole test.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const USER_TOKEN: &str = "user-token";
pub(crate) const ADMIN_TOKEN: &str = "admin-token";

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("timed out after {STEP_TIMEOUT:?} waiting for {what}"))
}

/// A CA and a `localhost` certificate signed by it.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

pub(crate) fn pki() -> Result<Pki> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&leaf_key, &ca)?;
    Ok(Pki {
        ca_pem: ca.pem(),
        cert: leaf.der().clone(),
        key_der: leaf_key.serialize_der(),
    })
}

/// What a request stream carried.
#[derive(Debug)]
pub(crate) enum Body {
    Client(ClientRequest),
    Admin(AdminRequest),
}

/// One request received by the fake node; the test answers through `send`.
pub(crate) struct Request {
    pub(crate) body: Body,
    send: quinn::SendStream,
    pub(crate) connection: quinn::Connection,
}

impl Request {
    pub(crate) fn client(&self) -> Result<&ClientRequest> {
        match &self.body {
            Body::Client(body) => Ok(body),
            Body::Admin(body) => bail!("expected a client request, got {body:?}"),
        }
    }

    pub(crate) fn admin(&self) -> Result<&AdminRequest> {
        match &self.body {
            Body::Admin(body) => Ok(body),
            Body::Client(body) => bail!("expected an admin request, got {body:?}"),
        }
    }

    /// Answers an admin request with `reply` and ends the stream.
    pub(crate) async fn admin_reply(mut self, reply: Result<AdminReply, WireError>) -> Result<()> {
        self.frame(&reply).await?;
        self.finish();
        Ok(())
    }

    /// Writes one frame; errors are returned (the client may have gone away on purpose).
    pub(crate) async fn frame(&mut self, frame: &impl serde::Serialize) -> Result<()> {
        let bytes = encode_frame(frame)?;
        self.send.write_all(&bytes).await?;
        Ok(())
    }

    pub(crate) async fn event(&mut self, frame: EventFrame) -> Result<()> {
        self.frame(&ServerFrame::Event(frame)).await
    }

    pub(crate) fn finish(mut self) {
        let _ = self.send.finish();
    }
}

/// A scripted node: accepts connections, checks tokens, hands requests to the test.
pub(crate) struct FakeNode {
    pub(crate) addr: SocketAddr,
    requests: mpsc::Receiver<Request>,
    endpoint: quinn::Endpoint,
}

impl FakeNode {
    pub(crate) fn start(pki: &Pki) -> Result<FakeNode> {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(pki.key_der.clone()),
        );
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], key)?;
        tls.alpn_protocols = vec![ALPN_CLIENT.to_vec(), ALPN_ADMIN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        // Bounded by the test: a handful of requests per test.
        let (tx, requests) = mpsc::channel(64);
        let accept = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(connection) = incoming.await {
                        let _ = serve_connection(connection, tx).await;
                    }
                });
            }
        });
        Ok(FakeNode {
            addr,
            requests,
            endpoint,
        })
    }

    /// A request already received, if any (without waiting).
    pub(crate) fn try_next(&mut self) -> Option<Request> {
        self.requests.try_recv().ok()
    }

    pub(crate) async fn next(&mut self, what: &str) -> Result<Request> {
        within(what, self.requests.recv())
            .await?
            .with_context(|| format!("the fake node stopped before {what}"))
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"test over");
    }
}

pub(crate) async fn read_frame<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T> {
    let mut decoder = FrameDecoder::default();
    loop {
        if let Some(frame) = decoder.next_frame::<T>()? {
            return Ok(frame);
        }
        match recv.read_chunk(64 * 1024, true).await? {
            Some(chunk) => decoder.push(&chunk.bytes),
            None => bail!("stream ended before a frame"),
        }
    }
}

pub(crate) async fn serve_connection(
    connection: quinn::Connection,
    tx: mpsc::Sender<Request>,
) -> Result<()> {
    let admin = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_ADMIN);
    let (mut send, mut recv) = connection.accept_bi().await?;
    let hello: Hello = read_frame(&mut recv).await?;
    let expected = if admin { ADMIN_TOKEN } else { USER_TOKEN };
    let reply = if hello.token == expected {
        HelloReply::Welcome {
            version: 1,
            node_id: "fake-node".to_owned(),
            user: UserId("dev".to_owned()),
            server_version: "test".to_owned(),
        }
    } else {
        HelloReply::Rejected(WireError::unauthorized("the token is not valid"))
    };
    send.write_all(&encode_frame(&reply)?).await?;
    send.finish()?;
    if matches!(reply, HelloReply::Rejected(_)) {
        // Give the reply time to arrive before the connection goes.
        let _ = tokio::time::timeout(STEP_TIMEOUT, connection.closed()).await;
        return Ok(());
    }
    loop {
        let (send, mut recv) = connection.accept_bi().await?;
        let body = if admin {
            Body::Admin(
                read_frame::<RequestEnvelope<AdminRequest>>(&mut recv)
                    .await?
                    .body,
            )
        } else {
            Body::Client(
                read_frame::<RequestEnvelope<ClientRequest>>(&mut recv)
                    .await?
                    .body,
            )
        };
        let request = Request {
            body,
            send,
            connection: connection.clone(),
        };
        if tx.send(request).await.is_err() {
            return Ok(());
        }
    }
}

/// Writes `profile.toml` (and `ca.pem` beside it) for a node at `addr`; returns its path.
pub(crate) fn write_profile(
    dir: &tempfile::TempDir,
    pki: &Pki,
    addr: SocketAddr,
) -> Result<PathBuf> {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem)?;
    let text = format!(
        "address = \"{addr}\"\nserver_name = \"localhost\"\nca_cert = \"ca.pem\"\ntoken = \"{USER_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"
    );
    let path = dir.path().join("profile.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

pub(crate) fn summary() -> ConversationSummary {
    ConversationSummary {
        id: conversation(),
        workspace: WorkspaceId::new(ShardId(3), 1),
        owner: UserId("dev".to_owned()),
        title: None,
        agent: "demo".to_owned(),
        created_at_ms: 0,
        message_count: 0,
        turn_running: false,
    }
}

pub(crate) fn done(seq: u64, text: &str) -> EventFrame {
    let parts = vec![Part::Text {
        text: text.to_owned(),
    }];
    EventFrame {
        seq: Seq(seq),
        event: Event::Done {
            message: Message {
                id: MessageId(1),
                turn: TurnId(1),
                role: Role::Assistant,
                status: MessageStatus::Complete,
                content: text.to_owned(),
                parts,
                created_at_ms: 0,
                stop_reason: Some(StopReason::EndTurn),
                error: None,
            },
            usage: None,
        },
    }
}

/// Three members; `n2` is draining and `n3` is suspect.
pub(crate) fn members() -> Vec<MemberInfo> {
    let member = |id: &str, port: u16, state: &str, leaders: u32, draining: bool| MemberInfo {
        node_id: id.to_owned(),
        addr: format!("127.0.0.1:{port}"),
        state: state.to_owned(),
        version: "0.1.0".to_owned(),
        leaders,
        draining,
    };
    vec![
        member("n1", 7001, "alive", 22, false),
        member("n2", 7002, "alive", 21, true),
        member("n3", 7003, "suspect", 21, false),
    ]
}

/// 64 shards led round-robin by `n1`, `n2`, `n3` (22, 21, 21), all three voters each.
pub(crate) fn shards() -> Vec<ShardInfo> {
    (0..64u16)
        .map(|shard| ShardInfo {
            shard,
            leader: Some(format!("n{}", shard % 3 + 1)),
            replicas: vec!["n1".to_owned(), "n2".to_owned(), "n3".to_owned()],
            learners: Vec::new(),
            term: 2,
            applied_index: Some(100 + u64::from(shard)),
            hosted_here: false,
            quiet: false,
        })
        .collect()
}

pub(crate) async fn bounded(test: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .map_err(|_| anyhow!("test did not finish within {TEST_TIMEOUT:?}"))?
}

/// A UDP relay in front of a node, for one client connection at a time: `cut` makes the
/// node go silent (no packet passes either way, as when its machine dies).
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    /// Every client address a packet came from (a new connection of the SDK comes from a
    /// new socket).
    sources: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Relay {
    /// A relay on a free loopback port to `node`.
    pub(crate) async fn start(node: SocketAddr) -> Result<Relay> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
        back.connect(node).await?;
        let addr = front.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let sources = Arc::new(std::sync::Mutex::new(Vec::new()));
        let to_node = tokio::spawn({
            let (front, back, open, client) =
                (front.clone(), back.clone(), open.clone(), client.clone());
            let sources = sources.clone();
            async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    {
                        let mut sources = sources.lock().unwrap_or_else(|p| p.into_inner());
                        if !sources.contains(&from) {
                            sources.push(from);
                        }
                    }
                    if open.load(Ordering::Relaxed) {
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            }
        });
        let to_client = tokio::spawn({
            let open = open.clone();
            async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let to = *client.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(to) = to.filter(|_| open.load(Ordering::Relaxed)) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            }
        });
        Ok(Relay {
            addr,
            open,
            sources,
            tasks: vec![to_node.abort_handle(), to_client.abort_handle()],
        })
    }

    /// From now on nothing passes.
    pub(crate) fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many client sockets sent packets here so far (one per connection).
    pub(crate) fn connections(&self) -> usize {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
