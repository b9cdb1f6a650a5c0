//! Failover against scripted in-process nodes: several profile addresses, dead and silent
//! nodes, `Unavailable` answers, and retries that must reuse their request id.

#[path = "support/fake_node.rs"]
mod fake_node;

use anyhow::{Context, Result, bail};
use fake_node::*;
use futures::StreamExt;
use shoal_client::{Client, ClientError, DIAL_TIMEOUT_MS, Profile};
use shoal_protocol::client::{ClientReply, ClientRequest, ServerFrame};
use shoal_protocol::{ErrorCode, MessageId, RequestId, TurnId, WireError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A profile dialling `address` first, then `others`.
fn cluster_profile(
    dir: &tempfile::TempDir,
    pki: &Pki,
    address: SocketAddr,
    others: &[SocketAddr],
) -> Result<Profile> {
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem)?;
    let others: Vec<String> = others.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        "address = \"{address}\"\naddresses = [{}]\nserver_name = \"localhost\"\nca_cert = \"ca.pem\"\ntoken = \"{USER_TOKEN}\"\n",
        others.join(", ")
    );
    let path = dir.path().join("profile.toml");
    std::fs::write(&path, text)?;
    Ok(Profile::load(&path)?)
}

/// An address nobody listens on: a socket bound and dropped at once.
fn dead_address() -> Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?)
}

/// Datagrams waiting on `socket` (a node that never answers), which it drops.
fn drain(socket: &tokio::net::UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut count = 0;
    while socket.try_recv_from(&mut buf).is_ok() {
        count += 1;
    }
    count
}

fn request_id(request: &Request) -> Result<RequestId> {
    match request.client()? {
        ClientRequest::SendMessage { request_id, .. }
        | ClientRequest::CreateConversation { request_id, .. } => Ok(*request_id),
        other => bail!("expected a request with a request id, got {other:?}"),
    }
}

fn since(request: &Request) -> Result<Option<u64>> {
    match request.client()? {
        ClientRequest::Follow { since, .. } => Ok(since.map(|s| s.0)),
        other => bail!("expected Follow, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dead_first_address_costs_one_dial_timeout_then_the_next_one_serves() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = cluster_profile(&dir, &pki, dead_address()?, &[node.addr])?;

        let started = Instant::now();
        let client = within("connect", Client::connect(&profile)).await??;
        let took = started.elapsed();
        let bound = Duration::from_millis(DIAL_TIMEOUT_MS + 3_000);
        assert!(
            took < bound,
            "connecting took {took:?}, more than {bound:?}"
        );

        let list = tokio::spawn({
            let client = client.clone();
            async move { client.list_conversations(5).await }
        });
        let request = node.next("ListConversations on the second address").await?;
        assert!(matches!(
            request.client()?,
            ClientRequest::ListConversations { limit: 5 }
        ));
        let mut request = request;
        request
            .frame(&ServerFrame::Reply(ClientReply::Conversations(vec![
                summary(),
            ])))
            .await?;
        request.finish();
        let list = within("the list", list).await???;
        assert_eq!(list, vec![summary()]);
        client.close().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_connect_failing_on_every_address_names_them_all() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let dir = tempfile::tempdir()?;
        let dead = dead_address()?;
        // Port 0 fails at once, so the test costs one dial timeout, not a connect timeout.
        let invalid: SocketAddr = "127.0.0.1:0".parse()?;
        let profile = cluster_profile(&dir, &pki, dead, &[invalid])?;
        let err = match within("connect", Client::connect(&profile)).await? {
            Ok(_) => bail!("connected to a dead address"),
            Err(err) => err,
        };
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("{dead}: no answer within {DIAL_TIMEOUT_MS} ms"))
                && text.contains(&format!("{invalid}: ")),
            "{text}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn send_retries_unavailable_with_the_same_request_id() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = cluster_profile(&dir, &pki, node.addr, &[])?;
        let client = within("connect", Client::connect(&profile)).await??;
        let send = tokio::spawn({
            let client = client.clone();
            async move {
                let mut turn = client.send(conversation(), "hello").await?;
                let duplicate = turn.duplicate();
                let mut seqs = Vec::new();
                while let Some(frame) = turn.next().await {
                    seqs.push(frame?.seq.0);
                }
                Ok::<_, ClientError>((duplicate, seqs))
            }
        });

        let mut ids = Vec::new();
        for attempt in ["the first SendMessage", "the second SendMessage"] {
            let mut request = node.next(attempt).await?;
            ids.push(request_id(&request)?);
            request
                .frame(&ServerFrame::Error(WireError::new(
                    ErrorCode::Unavailable,
                    "electing a shard leader; retry shortly",
                )))
                .await?;
            request.finish();
        }
        let mut request = node.next("the third SendMessage").await?;
        ids.push(request_id(&request)?);
        request
            .frame(&ServerFrame::Accepted {
                turn: TurnId(1),
                user_message: MessageId(0),
                duplicate: false,
            })
            .await?;
        request.event(status(1)).await?;
        request.event(done(2, "ok")).await?;
        request.finish();

        let (duplicate, seqs) = within("the turn", send).await???;
        assert!(!duplicate);
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(ids.len(), 3);
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "every attempt must carry the same request id: {ids:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn create_retried_after_a_dropped_connection_reuses_its_request_id_on_the_node_that_worked()
-> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        // A first address that swallows packets and never answers.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let dir = tempfile::tempdir()?;
        let profile = cluster_profile(&dir, &pki, silent.local_addr()?, &[node.addr])?;

        let client = within("connect", Client::connect(&profile)).await??;
        assert!(
            drain(&silent) > 0,
            "the first address was not dialled first"
        );

        let create = tokio::spawn({
            let client = client.clone();
            async move { client.create_conversation(Some("t".into()), None).await }
        });
        let first = node.next("the first CreateConversation").await?;
        let first_id = request_id(&first)?;
        first
            .connection
            .close(quinn::VarInt::from_u32(1), b"node restarting");
        drop(first);

        let mut second = node.next("the retried CreateConversation").await?;
        assert_eq!(
            request_id(&second)?,
            first_id,
            "the retry must reuse the request id"
        );
        second
            .frame(&ServerFrame::Reply(ClientReply::Created(summary())))
            .await?;
        second.finish();
        let created = within("the create", create).await???;
        assert_eq!(created, summary());
        // The reconnect started from the address that last worked: the silent one, tried
        // first on the initial connect, was not dialled again.
        assert_eq!(
            drain(&silent),
            0,
            "the reconnect dialled the dead address first"
        );
        client.close().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn respond_permission_is_never_retried() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within(
            "connect",
            Client::connect(&cluster_profile(&dir, &pki, node.addr, &[])?),
        )
        .await??;
        let calls = tokio::spawn({
            let client = client.clone();
            async move {
                let answer = client
                    .respond_permission(conversation(), 7, Some("allow".into()))
                    .await;
                let list = client.list_conversations(1).await;
                (answer, list)
            }
        });
        let mut request = node.next("RespondPermission").await?;
        assert!(matches!(
            request.client()?,
            ClientRequest::RespondPermission { request: 7, .. }
        ));
        request
            .frame(&ServerFrame::Error(WireError::new(
                ErrorCode::Unavailable,
                "leadership moving",
            )))
            .await?;
        request.finish();
        // The next request the node sees is the list, not a second answer.
        let mut request = node.next("the request after RespondPermission").await?;
        assert!(
            matches!(request.client()?, ClientRequest::ListConversations { .. }),
            "expected ListConversations, got {:?}",
            request.body
        );
        request
            .frame(&ServerFrame::Reply(ClientReply::Conversations(vec![])))
            .await?;
        request.finish();
        let (answer, list) = within("the calls", calls).await??;
        assert_eq!(
            answer.err().and_then(|e| e.code()),
            Some(ErrorCode::Unavailable)
        );
        assert!(list?.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_turn_stream_that_breaks_after_accepted_is_not_resent() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within(
            "connect",
            Client::connect(&cluster_profile(&dir, &pki, node.addr, &[])?),
        )
        .await??;
        let (items_tx, mut items) = mpsc::channel::<Result<u64, ClientError>>(16);
        let calls = tokio::spawn({
            let client = client.clone();
            async move {
                let mut turn = client.send(conversation(), "hello").await?;
                while let Some(item) = turn.next().await {
                    if items_tx.send(item.map(|f| f.seq.0)).await.is_err() {
                        break;
                    }
                }
                drop(items_tx);
                client.list_conversations(1).await
            }
        });
        let mut request = node.next("SendMessage").await?;
        request
            .frame(&ServerFrame::Accepted {
                turn: TurnId(1),
                user_message: MessageId(0),
                duplicate: false,
            })
            .await?;
        request.event(status(1)).await?;
        let first = within("event 1", items.recv())
            .await?
            .context("the turn ended early")?;
        assert_eq!(first?, 1);
        // The node dies mid-turn.
        request
            .connection
            .close(quinn::VarInt::from_u32(1), b"node killed");
        drop(request);
        let broken = within("the turn's error", items.recv())
            .await?
            .context("the turn ended without an error")?;
        assert!(
            matches!(broken, Err(ClientError::ConnectionLost(_))),
            "{broken:?}"
        );
        assert!(
            within("the turn to end", items.recv()).await?.is_none(),
            "the turn yielded more after its error"
        );

        // The next request the node sees is the list, not the message again.
        let mut request = node.next("the request after the broken turn").await?;
        assert!(
            matches!(request.client()?, ClientRequest::ListConversations { .. }),
            "expected ListConversations, got {:?}",
            request.body
        );
        request
            .frame(&ServerFrame::Reply(ClientReply::Conversations(vec![])))
            .await?;
        request.finish();
        assert!(within("the list", calls).await???.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_follow_whose_node_dies_resumes_on_the_next_address_from_its_last_seq() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut a = FakeNode::start(&pki)?;
        let mut b = FakeNode::start(&pki)?;
        let mut leader = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = cluster_profile(&dir, &pki, a.addr, &[b.addr])?;
        let client = within("connect", Client::connect(&profile)).await??;
        let (seen_tx, mut seen) = mpsc::channel::<Result<u64, ClientError>>(64);
        let follower = tokio::spawn({
            let client = client.clone();
            async move {
                let mut stream = client.follow(conversation(), None);
                while let Some(item) = stream.next().await {
                    if seen_tx.send(item.map(|f| f.seq.0)).await.is_err() {
                        break;
                    }
                }
                stream.last_seq()
            }
        });

        let mut request = a.next("the Follow on the first node").await?;
        assert_eq!(since(&request)?, None);
        request.event(reset(10)).await?;
        request.event(status(11)).await?;
        let mut delivered = Vec::new();
        while delivered.last() != Some(&11) {
            let item = within("events up to 11", seen.recv())
                .await?
                .context("the follow ended early")?;
            delivered.push(item?);
        }

        // The first node dies: its connections close and it answers nothing any more.
        drop(request);
        drop(a);

        // The follow reconnects to the second address, which is not the host: `Moved`.
        let mut request = b.next("the Follow on the second address").await?;
        assert_eq!(since(&request)?, Some(11));
        request
            .frame(&ServerFrame::Moved {
                to: leader.addr.to_string(),
            })
            .await?;
        request.finish();

        // The host replays from 11: the duplicate is dropped, 12 follows with no gap.
        let mut request = leader.next("the Follow on the host").await?;
        assert_eq!(since(&request)?, Some(11));
        request.event(status(11)).await?;
        request.event(status(12)).await?;
        let item = within("event 12", seen.recv())
            .await?
            .context("the follow ended early")?;
        delivered.push(item?);
        assert_eq!(delivered, vec![10, 11, 12]);

        request
            .frame(&ServerFrame::Error(WireError::not_found("deleted")))
            .await?;
        request.finish();
        let item = within("the final error", seen.recv())
            .await?
            .context("the follow ended without an error")?;
        assert!(
            matches!(&item, Err(e) if e.code() == Some(ErrorCode::NotFound)),
            "{item:?}"
        );
        let last = within("the follow to end", follower).await??;
        assert_eq!(last.map(|s| s.0), Some(12));
        client.close().await;
        Ok(())
    })
    .await
}
