//! Bad bytes on the wire: oversized and malformed frames close that connection only.

mod common;

use common::*;
use shoal_protocol::client::ServerFrame;
use shoal_protocol::frame::{decode_payload, encode_frame};
use shoal_protocol::handshake::{Hello, HelloReply};
use shoal_protocol::{ALPN_CLIENT, ErrorCode, FrameDecoder};
use std::sync::Arc;

async fn raw_connection(node: &TestNode) -> quinn::Connection {
    let mut roots = rustls::RootCertStore::empty();
    for cert in shoal_node::security::tls::load_certs(&node.profile.ca_cert, "ca").unwrap() {
        roots.add(cert).unwrap();
    }
    let mut tls =
        rustls::ClientConfig::builder_with_provider(shoal_node::security::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let addr = node.profile.address.parse().unwrap();
    endpoint.connect(addr, "localhost").unwrap().await.unwrap()
}

async fn read_one<T: serde::de::DeserializeOwned>(recv: &mut quinn::RecvStream) -> T {
    let bytes = recv.read_to_end(16 * 1024 * 1024).await.unwrap();
    let mut dec = FrameDecoder::default();
    dec.push(&bytes);
    let payload = dec.next_payload().unwrap().expect("one frame");
    decode_payload(&payload).unwrap()
}

async fn authenticated(node: &TestNode) -> quinn::Connection {
    let conn = raw_connection(node).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&Hello::new(node.profile.token.clone(), "raw-test")).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let reply: HelloReply = read_one(&mut recv).await;
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    conn
}

#[tokio::test]
async fn oversized_and_malformed_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();

    // Oversized: a length prefix far above the request limit.
    let conn = authenticated(&node).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&(64u32 * 1024 * 1024).to_be_bytes())
        .await
        .unwrap();
    let _ = send.finish();
    let frame: ServerFrame = read_one(&mut recv).await;
    assert!(
        matches!(frame, ServerFrame::Error(ref e) if e.code == ErrorCode::TooLarge),
        "{frame:?}"
    );
    let closed = tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("connection closed");
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );

    // Malformed: a well-sized frame of garbage.
    let conn = authenticated(&node).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut garbage = 8u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 8]);
    send.write_all(&garbage).await.unwrap();
    let _ = send.finish();
    let frame: ServerFrame = read_one(&mut recv).await;
    assert!(
        matches!(frame, ServerFrame::Error(ref e) if e.code == ErrorCode::Malformed),
        "{frame:?}"
    );
    tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("connection closed");

    // A garbage handshake is refused too.
    let conn = raw_connection(&node).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&(1u8, 2u8)).unwrap())
        .await
        .unwrap();
    let _ = send.finish();
    let reply: HelloReply = read_one(&mut recv).await;
    assert!(matches!(reply, HelloReply::Rejected(_)), "{reply:?}");

    // The node still serves the existing client, and nothing changed.
    let detail = client.get_conversation(conv.id).await.unwrap();
    assert!(detail.messages.is_empty());
    assert_eq!(client.list_conversations(10).await.unwrap().len(), 1);
    node.stop().await;
}
