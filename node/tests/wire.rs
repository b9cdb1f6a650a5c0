//! Bad bytes on the wire: oversized and malformed frames close that connection only.

mod common;

use common::*;
use futures::StreamExt;
use shoal_protocol::client::{ClientRequest, RequestEnvelope, ServerFrame};
use shoal_protocol::frame::{decode_payload, encode_frame};
use shoal_protocol::handshake::{Hello, HelloReply};
use shoal_protocol::transcript::Event;
use shoal_protocol::{ALPN_CLIENT, ErrorCode, FrameDecoder};
use std::sync::Arc;

async fn raw_connection(node: &TestNode) -> quinn::Connection {
    raw_connection_with(node, quinn::TransportConfig::default()).await
}

async fn raw_connection_with(
    node: &TestNode,
    transport: quinn::TransportConfig,
) -> quinn::Connection {
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
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
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
    authenticated_with(node, quinn::TransportConfig::default()).await
}

async fn authenticated_with(
    node: &TestNode,
    transport: quinn::TransportConfig,
) -> quinn::Connection {
    let conn = raw_connection_with(node, transport).await;
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

/// A follower whose reader stops reading blocks only its own stream: once the ring leaves
/// it behind, the node resets that stream (so it holds no more than the stream's window)
/// and the follower resumes, gap-free, from the last event it read.
#[tokio::test]
async fn a_follower_that_stops_reading_is_reset_and_resumes_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client, conv, conn) = cutting_node(dir.path()).await;
    // A raw follower that reads nothing for now.
    let mut recv = raw_follow(&conn, conv.id).await;
    let admin = node.admin().await;
    eventually("the raw follower is attached", || async {
        (admin.status().await.unwrap().followers == 1).then_some(())
    })
    .await;

    let frames = collect_turn(client.send(conv.id, "/slow 40").await.unwrap()).await;
    let reply = done_content(&frames);
    eventually("the stuck follower is cut off", || async {
        let status = admin.status().await.unwrap();
        (status.follower_resyncs >= 1 && status.followers == 0).then_some(())
    })
    .await;

    // What the stream still holds is gap-free, then the reset.
    let mut decoder = FrameDecoder::default();
    read_until_behind_reset(&mut recv, &mut decoder).await;
    let mut read = Vec::new();
    while let Some(payload) = decoder.next_payload().unwrap() {
        match decode_payload::<ServerFrame>(&payload).unwrap() {
            ServerFrame::Event(frame) => read.push(frame),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_gap_free(&read);

    // It resumes from its last event: the rest replays, through the reply.
    let last = read.last().map(|f| f.seq);
    let mut follow = client.follow(conv.id, last);
    match last {
        Some(last) => {
            let rest = follow_until_done(&mut follow, 1).await;
            assert_eq!(rest[0].seq, last.next(), "{rest:?}");
            assert_gap_free(&rest);
            assert_eq!(done_content(&rest), reply);
        }
        None => {
            // Nothing was readable before the reset: it starts over from a snapshot.
            let first = tokio::time::timeout(WAIT, follow.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Event::Reset { snapshot } = first.event else {
                panic!("{first:?}")
            };
            assert_eq!(snapshot.messages.last().unwrap().content, reply);
        }
    }
    node.stop().await;
}

/// A node that cuts a follower off 4 events behind, one conversation, and a raw
/// connection whose streams take 256 bytes before their reader must read.
async fn cutting_node(
    dir: &std::path::Path,
) -> (
    TestNode,
    shoal_client::Client,
    shoal_protocol::client::ConversationSummary,
    quinn::Connection,
) {
    let mut config = dev_config(dir);
    config.limits.follower_queue_frames = 4.try_into().unwrap();
    let node = TestNode::start_with(config).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(256u32.into());
    let conn = authenticated_with(&node, transport).await;
    (node, client, conv, conn)
}

/// Reads a follow stream into `decoder` until the node resets it for falling behind.
async fn read_until_behind_reset(recv: &mut quinn::RecvStream, decoder: &mut FrameDecoder) {
    let code = loop {
        match tokio::time::timeout(WAIT, recv.read_chunk(64 * 1024, true))
            .await
            .expect("the stream ends in time")
        {
            Ok(Some(chunk)) => decoder.push(&chunk.bytes),
            Ok(None) => panic!("the stream was finished, not reset"),
            Err(quinn::ReadError::Reset(code)) => break code,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        code,
        shoal_node::gateway::tail::FOLLOWER_BEHIND_RESET_CODE.into()
    );
}

/// Opens a raw `Follow` stream on `conn` (the request sent, the answer unread).
async fn raw_follow(
    conn: &quinn::Connection,
    conversation: shoal_protocol::ConversationId,
) -> quinn::RecvStream {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let request = RequestEnvelope {
        trace: None,
        body: ClientRequest::Follow {
            conversation,
            since: None,
        },
    };
    send.write_all(&encode_frame(&request).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    recv
}

/// Reads a raw follow's events through the turn's `Done`.
async fn read_until_done(
    mut recv: quinn::RecvStream,
) -> Vec<shoal_protocol::transcript::EventFrame> {
    let mut decoder = FrameDecoder::default();
    let mut events = Vec::new();
    loop {
        while let Some(payload) = decoder.next_payload().unwrap() {
            match decode_payload::<ServerFrame>(&payload).unwrap() {
                ServerFrame::Event(frame) => {
                    let done = matches!(frame.event, Event::Done { .. });
                    events.push(frame);
                    if done {
                        return events;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let chunk = tokio::time::timeout(WAIT, recv.read_chunk(64 * 1024, true))
            .await
            .expect("the follow's events come in time")
            .expect("the follow is not reset")
            .expect("the follow is not finished before its Done");
        decoder.push(&chunk.bytes);
    }
}

/// The follows of one connection are written by one task: a follow that stops reading is
/// reset while the others on its connection get every event, and a follow the reader
/// stops on an idle conversation is released at once (its stream credit comes back).
#[tokio::test]
async fn follows_sharing_a_connection_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client, conv, conn) = cutting_node(dir.path()).await;
    let admin = node.admin().await;
    // Stopped while the conversation is idle: nothing is written to it, yet it goes.
    let attached = || async { admin.followers(Some(conv.id)).await.unwrap().len() };
    let mut dropped = raw_follow(&conn, conv.id).await;
    eventually("the first follower is attached", || async {
        (attached().await == 1).then_some(())
    })
    .await;
    dropped.stop(0u32.into()).unwrap();
    eventually("the stopped follower is released", || async {
        (attached().await == 0).then_some(())
    })
    .await;

    let mut stuck = raw_follow(&conn, conv.id).await;
    let readers: Vec<_> = futures::future::join_all((0..3).map(|_| raw_follow(&conn, conv.id)))
        .await
        .into_iter()
        .map(|recv| tokio::spawn(read_until_done(recv)))
        .collect();
    eventually("four followers on one connection", || async {
        (attached().await == 4).then_some(())
    })
    .await;

    let reply = done_content(&collect_turn(client.send(conv.id, "/slow 40").await.unwrap()).await);
    for reader in readers {
        let events = reader.await.unwrap();
        assert!(
            matches!(events[0].event, Event::Reset { .. }),
            "{:?}",
            events[0]
        );
        assert_gap_free(&events);
        assert_eq!(done_content(&events), reply);
    }
    // The one that never read was cut off, not waited for.
    read_until_behind_reset(&mut stuck, &mut FrameDecoder::default()).await;
    node.stop().await;
}

/// A connection's follows are written together, so one event reaches all of them in a
/// few full datagrams rather than one datagram per follow (the node used to send about
/// one per follow: each follower's write let the connection's driver run before the
/// next one's). On a multi-threaded runtime, as the node binary runs: Tokio runs a task
/// woken by a running task next there, and that is what split the datagrams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_follows_share_its_datagrams() {
    const FOLLOWS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_with(dev_config(dir.path())).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let admin = node.admin().await;
    let conn = authenticated(&node).await;
    let readers: Vec<_> =
        futures::future::join_all((0..FOLLOWS).map(|_| raw_follow(&conn, conv.id)))
            .await
            .into_iter()
            .map(|recv| tokio::spawn(read_until_done(recv)))
            .collect();
    eventually("every follow is attached", || async {
        (admin.followers(Some(conv.id)).await.unwrap().len() == FOLLOWS).then_some(())
    })
    .await;
    let before = conn.stats().udp_rx.datagrams;
    // Paced: every chunk is its own event, written to the followers on its own.
    collect_turn(client.send(conv.id, "/slow 40").await.unwrap()).await;
    let mut events = 0;
    for reader in readers {
        let got = reader.await.unwrap();
        assert_gap_free(&got);
        events += got.len() - 1; // not the reset, written when the follow started
    }
    let datagrams = conn.stats().udp_rx.datagrams - before;
    assert!(
        datagrams as usize * 5 <= events,
        "{datagrams} datagrams carried {events} events to {FOLLOWS} follows of one connection"
    );
    node.stop().await;
}

/// The SDK refuses a pack whose file paths leave their skill directory before sending
/// it; a client that sends one anyway gets the node's own refusal, and nothing is stored.
#[tokio::test]
async fn a_skill_pack_whose_paths_leave_their_skill_is_refused_by_the_node() {
    use shoal_protocol::workspaces::{SkillFile, SkillPackSpec, SkillSpec};
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let conn = authenticated(&node).await;
    let bad = [
        ("lint", "../../../.bashrc"),
        ("lint", "/etc/passwd"),
        ("lint", "a/../../x"),
        ("..", "SKILL.md"),
        ("a/b", "SKILL.md"),
    ];
    for (i, (slug, path)) in bad.into_iter().enumerate() {
        let spec = SkillPackSpec {
            name: format!("evil{i}"),
            context: None,
            skills: vec![SkillSpec {
                slug: slug.into(),
                files: vec![
                    SkillFile {
                        path: "SKILL.md".into(),
                        content: b"x".to_vec(),
                    },
                    SkillFile {
                        path: path.into(),
                        content: b"pwned".to_vec(),
                    },
                ],
            }],
        };
        let request = RequestEnvelope {
            trace: None,
            body: ClientRequest::CreateSkillPack {
                spec,
                request_id: shoal_protocol::RequestId(i as u128 + 1),
            },
        };
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&encode_frame(&request).unwrap())
            .await
            .unwrap();
        send.finish().unwrap();
        match read_one::<ServerFrame>(&mut recv).await {
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::InvalidArgument, "{slug}/{path}: {e:?}");
            }
            other => panic!("{slug}/{path}: expected an error, got {other:?}"),
        }
    }
    let client = node.client().await;
    assert!(client.list_skill_packs().await.unwrap().is_empty());
}

/// One request on its own stream of an authenticated raw connection; its one answer.
async fn ask(conn: &quinn::Connection, body: ClientRequest) -> ServerFrame {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let request = RequestEnvelope { trace: None, body };
    send.write_all(&encode_frame(&request).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    read_one(&mut recv).await
}

/// A share token rides only on requests about its conversation: wrapped around anything
/// else (a user's credentials or usage), or around another wrapped request, it is refused
/// and nothing is served.
#[tokio::test]
async fn a_share_token_on_a_request_that_is_not_about_its_conversation_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let client = node.client().await;
    let conv = client.create_conversation(None, None).await.unwrap();
    let token = client
        .share(
            conv.id,
            shoal_protocol::sharing::Role::Editor,
            shoal_client::ShareWith::Link,
            None,
        )
        .await
        .unwrap()
        .token
        .unwrap();
    let conn = authenticated(&node).await;
    let shared = |request: ClientRequest| ClientRequest::Shared {
        token: token.clone(),
        request: Box::new(request),
    };
    let refused = [
        shared(ClientRequest::ListCredentials { workspace: None }),
        shared(ClientRequest::GetUsage {
            workspace: None,
            agent: None,
            since_ms: None,
            by: shoal_protocol::client::UsageBy::Conversation,
        }),
        shared(ClientRequest::ListWorkspaces),
        shared(shared(ClientRequest::GetConversation {
            conversation: conv.id,
        })),
    ];
    for request in refused {
        match ask(&conn, request.clone()).await {
            ServerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::InvalidArgument, "{request:?}: {e}")
            }
            other => panic!("{request:?} was answered: {other:?}"),
        }
    }
    // The same token on its conversation works (the owner reads as the owner).
    let answer = ask(
        &conn,
        shared(ClientRequest::GetConversation {
            conversation: conv.id,
        }),
    )
    .await;
    assert!(matches!(answer, ServerFrame::Reply(_)), "{answer:?}");
}
