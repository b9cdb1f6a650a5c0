//! The SDK against a scripted in-process node: real QUIC + TLS on loopback, with the test
//! deciding frame by frame what the "node" answers.

#[path = "support/fake_node.rs"]
mod fake_node;

use anyhow::{Context, Result, anyhow, bail};
use fake_node::*;
use futures::StreamExt;
use shoal_client::{AdminClient, Client, ClientError, Profile};
use shoal_protocol::admin::{AdminReply, AdminRequest, NodeStatus};
use shoal_protocol::client::{ClientReply, ClientRequest, ServerFrame};
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{ErrorCode, MessageId, RequestId, Seq, TurnId, UserId, WireError};
use tokio::sync::mpsc;

fn profile(dir: &tempfile::TempDir, pki: &Pki, addr: std::net::SocketAddr) -> Result<Profile> {
    Ok(Profile::load(&write_profile(dir, pki, addr)?)?)
}

#[tokio::test]
async fn a_bad_token_is_rejected_with_the_wire_error() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let mut profile = profile(&dir, &pki, node.addr)?;
        profile.token = "wrong".to_owned();
        let err = match within("connect", Client::connect(&profile)).await? {
            Ok(_) => bail!("a wrong token was accepted"),
            Err(err) => err,
        };
        assert!(matches!(err, ClientError::Rejected(_)), "{err}");
        assert_eq!(err.code(), Some(ErrorCode::Unauthorized));
        assert!(err.to_string().contains("check the token"), "{err}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_wrong_ca_fails_to_connect() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let other = crate::pki()?;
        let node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let mut profile = profile(&dir, &pki, node.addr)?;
        let wrong_ca = dir.path().join("other-ca.pem");
        std::fs::write(&wrong_ca, &other.ca_pem)?;
        profile.ca_cert = wrong_ca;
        let err = match within("connect", Client::connect(&profile)).await? {
            Ok(_) => bail!("a certificate from another CA was trusted"),
            Err(err) => err,
        };
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn unary_requests_get_replies_and_server_errors() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within("connect", Client::connect(&profile(&dir, &pki, node.addr)?)).await??;
        assert_eq!(client.user().0, "dev");
        assert_eq!(client.node_id(), "fake-node");

        let create = tokio::spawn({
            let client = client.clone();
            async move { client.create_conversation(Some("t".into()), None).await }
        });
        let mut request = node.next("CreateConversation").await?;
        assert!(matches!(
            request.client()?,
            ClientRequest::CreateConversation { title: Some(t), agent: None, .. } if t == "t"
        ));
        request
            .frame(&ServerFrame::Reply(ClientReply::Created(summary())))
            .await?;
        request.finish();
        assert_eq!(within("create", create).await???.id, conversation());

        let get = tokio::spawn({
            let client = client.clone();
            async move { client.get_conversation(conversation()).await }
        });
        let mut request = node.next("GetConversation").await?;
        request
            .frame(&ServerFrame::Error(WireError::not_found(
                "conversation c-3-… does not exist",
            )))
            .await?;
        request.finish();
        let err = match within("get", get).await?? {
            Ok(_) => bail!("expected not found"),
            Err(err) => err,
        };
        assert_eq!(err.code(), Some(ErrorCode::NotFound));
        assert!(err.to_string().starts_with("not found: "), "{err}");
        client.close().await;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn send_retries_with_the_same_request_id_after_a_connection_loss() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within("connect", Client::connect(&profile(&dir, &pki, node.addr)?)).await??;
        let send = tokio::spawn({
            let client = client.clone();
            async move {
                let mut turn = client.send(conversation(), "hello").await?;
                let duplicate = turn.duplicate();
                let mut events = Vec::new();
                while let Some(frame) = turn.next().await {
                    events.push(frame?);
                }
                Ok::<_, ClientError>((duplicate, events))
            }
        });

        let first = node.next("the first SendMessage").await?;
        let first_id = match first.client()? {
            ClientRequest::SendMessage {
                request_id, text, ..
            } if text == "hello" => *request_id,
            other => bail!("unexpected {other:?}"),
        };
        first
            .connection
            .close(quinn::VarInt::from_u32(1), b"node restarting");

        let mut second = node.next("the retried SendMessage").await?;
        let second_id: RequestId = match second.client()? {
            ClientRequest::SendMessage { request_id, .. } => *request_id,
            other => bail!("unexpected {other:?}"),
        };
        assert_eq!(first_id, second_id, "the retry must reuse the request id");
        second
            .frame(&ServerFrame::Accepted {
                turn: TurnId(1),
                user_message: MessageId(0),
                duplicate: true,
            })
            .await?;
        second
            .event(EventFrame {
                seq: Seq(1),
                event: Event::TextChunk {
                    message_id: MessageId(1),
                    text: "echo: hello".into(),
                },
            })
            .await?;
        second.event(done(2, "echo: hello")).await?;
        second.finish();

        let (duplicate, events) = within("the turn", send).await???;
        assert!(duplicate);
        let seqs: Vec<u64> = events.iter().map(|f| f.seq.0).collect();
        assert_eq!(seqs, vec![1, 2]);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_turn_stream_ends_with_the_server_error() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within("connect", Client::connect(&profile(&dir, &pki, node.addr)?)).await??;
        let send = tokio::spawn({
            let client = client.clone();
            async move {
                let mut turn = client.send(conversation(), "hello").await?;
                let mut items = Vec::new();
                while let Some(item) = turn.next().await {
                    items.push(item);
                }
                Ok::<_, ClientError>(items)
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
        request
            .frame(&ServerFrame::Error(WireError::new(
                ErrorCode::Unavailable,
                "node shutting down",
            )))
            .await?;
        request.finish();
        let items = within("the turn", send).await???;
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(
            matches!(&items[1], Err(e) if e.code() == Some(ErrorCode::Unavailable)),
            "{:?}",
            items[1]
        );
        Ok(())
    })
    .await
}

/// The `since` of a Follow request.
fn since(request: &Request) -> Result<Option<u64>> {
    match request.client()? {
        ClientRequest::Follow { since, .. } => Ok(since.map(|s| s.0)),
        other => Err(anyhow!("expected Follow, got {other:?}")),
    }
}

/// The node a follow was moved to goes silent (its machine died): once the connection
/// times out, the follow asks the client's own node again, from the last delivered seq,
/// instead of dialling the silent node first.
#[tokio::test]
async fn a_follow_whose_node_went_silent_resumes_through_the_home_node() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut a = FakeNode::start(&pki)?;
        let mut b = FakeNode::start(&pki)?;
        let relay = Relay::start(b.addr).await?;
        let dir = tempfile::tempdir()?;
        let client = within("connect", Client::connect(&profile(&dir, &pki, a.addr)?)).await??;
        let mut stream = client.follow(conversation(), None);
        let mut next = async || -> Result<u64> {
            let item = within("an event", stream.next()).await?;
            Ok(item.context("the follow ended")??.seq.0)
        };
        let (delivered, request) = tokio::join!(
            async { Ok::<_, anyhow::Error>([next().await?, next().await?]) },
            async {
                let mut request = a.next("the first Follow").await?;
                request
                    .frame(&ServerFrame::Moved {
                        to: relay.addr.to_string(),
                    })
                    .await?;
                request.finish();
                let mut request = b.next("the Follow through the relay").await?;
                request.event(reset(10)).await?;
                request.event(status(11)).await?;
                Ok::<_, anyhow::Error>(request)
            }
        );
        assert_eq!(delivered?, [10, 11]);
        let _still_open = request?;

        relay.cut();
        let (delivered, resumed) = tokio::join!(next(), async {
            let mut request = a.next("the Follow after the silence").await?;
            request.event(status(12)).await?;
            since(&request)
        });
        assert_eq!(resumed?, Some(11), "resumed from the last delivered seq");
        assert_eq!(delivered?, 12);
        assert_eq!(
            relay.connections(),
            1,
            "the silent node was not dialled again before the home node was asked"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn follow_dedupes_refollows_on_gaps_and_resyncs_and_follows_moves() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut a = FakeNode::start(&pki)?;
        let mut b = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let client = within("connect", Client::connect(&profile(&dir, &pki, a.addr)?)).await??;
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

        // Snapshot, an event, a duplicate, then a gap (12 is missing).
        let mut request = a.next("the first Follow").await?;
        assert_eq!(since(&request)?, None);
        request.event(reset(10)).await?;
        request.event(status(11)).await?;
        request.event(status(11)).await?;
        let _ = request.event(status(13)).await;

        // The gap makes the client follow again from 11.
        let mut request = a.next("the Follow after the gap").await?;
        assert_eq!(since(&request)?, Some(11));
        request.event(status(12)).await?;
        request.event(status(13)).await?;
        request
            .frame(&ServerFrame::Resync {
                reason: "too slow".into(),
            })
            .await?;
        request.finish();

        let mut request = a.next("the Follow after the resync").await?;
        assert_eq!(since(&request)?, Some(13));
        request
            .frame(&ServerFrame::Moved {
                to: b.addr.to_string(),
            })
            .await?;
        request.finish();

        // On the new node: a replayed duplicate, a new event, then the connection drops.
        let mut request = b.next("the Follow on the new node").await?;
        assert_eq!(since(&request)?, Some(13));
        request.event(status(13)).await?;
        request.event(status(14)).await?;
        // Wait until 14 was delivered before breaking the connection.
        let mut delivered = Vec::new();
        while delivered.last() != Some(&14) {
            let item = within("events up to 14", seen.recv())
                .await?
                .context("the follow ended early")?;
            delivered.push(item?);
        }
        request
            .connection
            .close(quinn::VarInt::from_u32(1), b"restarting");

        let mut request = b.next("the Follow after the connection loss").await?;
        assert_eq!(since(&request)?, Some(14));
        request.event(status(15)).await?;
        let item = within("event 15", seen.recv())
            .await?
            .context("the follow ended early")?;
        delivered.push(item?);
        assert_eq!(delivered, vec![10, 11, 12, 13, 14, 15]);

        // Not found is final: the stream yields it and ends.
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
        assert_eq!(last, Some(Seq(15)));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn admin_requests_use_the_admin_token() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let profile = profile(&dir, &pki, node.addr)?;

        let mut no_admin = profile.clone();
        no_admin.admin_token = None;
        assert!(matches!(
            AdminClient::connect(&no_admin).await,
            Err(ClientError::MissingAdminToken)
        ));

        let admin = within("admin connect", AdminClient::connect(&profile)).await??;
        let call = tokio::spawn(async move {
            let status = admin.status().await;
            let token = admin.issue_token(UserId("bob".into()), 60).await;
            (status, token)
        });
        let mut request = node.next("Status").await?;
        assert!(matches!(request.body, Body::Admin(AdminRequest::Status)));
        let status = NodeStatus {
            node_id: "fake-node".into(),
            version: "test".into(),
            listen_addr: node.addr.to_string(),
            uptime_secs: 1,
            conversations_active: 0,
            agent_processes: 0,
            followers: 0,
            turns_running: 0,
            connections: 1,
            follower_resyncs: 0,
            checkpoints: 0,
            checkpoint_bytes: 0,
        };
        request
            .frame(&Ok::<_, WireError>(AdminReply::Status(status.clone())))
            .await?;
        request.finish();
        let mut request = node.next("IssueToken").await?;
        request
            .frame(&Err::<AdminReply, _>(WireError::forbidden("not an admin")))
            .await?;
        request.finish();
        let (got_status, token) = within("admin calls", call).await??;
        assert_eq!(got_status?, status);
        let err = match token {
            Ok(_) => bail!("expected forbidden"),
            Err(err) => err,
        };
        assert_eq!(err.code(), Some(ErrorCode::Forbidden));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn cluster_admin_calls_return_members_shards_and_drain() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let admin = within(
            "admin connect",
            AdminClient::connect(&profile(&dir, &pki, node.addr)?),
        )
        .await??;
        let mut shards = shards();
        shards[5].leader = None;
        shards[5].learners = vec!["n4".to_owned()];
        shards[5].applied_index = None;

        let call = tokio::spawn({
            let shards = shards.clone();
            async move {
                let members = admin.members().await?;
                let got_shards = admin.shards().await?;
                admin.drain("n2").await?;
                let unknown = admin.drain("n9").await;
                admin.close().await;
                Ok::<_, ClientError>((members, got_shards == shards, unknown))
            }
        });

        let request = node.next("Members").await?;
        assert!(matches!(request.admin()?, AdminRequest::Members));
        request
            .admin_reply(Ok(AdminReply::Members(members())))
            .await?;
        let request = node.next("Shards").await?;
        assert!(matches!(request.admin()?, AdminRequest::Shards));
        request.admin_reply(Ok(AdminReply::Shards(shards))).await?;
        let request = node.next("Drain n2").await?;
        assert!(matches!(request.admin()?, AdminRequest::Drain { node } if node == "n2"));
        request
            .admin_reply(Ok(AdminReply::Draining { node: "n2".into() }))
            .await?;
        let request = node.next("Drain n9").await?;
        request
            .admin_reply(Err(WireError::not_found("node n9 is not a cluster member")))
            .await?;

        let (members, shards_equal, unknown) = within("the cluster calls", call).await???;
        assert_eq!(members, fake_node::members());
        assert!(shards_equal, "the shards arrived changed");
        let err = match unknown {
            Ok(()) => bail!("draining an unknown node succeeded"),
            Err(err) => err,
        };
        assert_eq!(err.code(), Some(ErrorCode::NotFound));
        assert!(err.to_string().contains("node n9"), "{err}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn unexpected_cluster_replies_are_protocol_errors() -> Result<()> {
    bounded(async {
        let pki = pki()?;
        let mut node = FakeNode::start(&pki)?;
        let dir = tempfile::tempdir()?;
        let admin = within(
            "admin connect",
            AdminClient::connect(&profile(&dir, &pki, node.addr)?),
        )
        .await??;
        let call = tokio::spawn(async move {
            let members = admin.members().await;
            let shards = admin.shards().await;
            let drain = admin.drain("n2").await;
            admin.close().await;
            (members, shards, drain)
        });
        node.next("Members")
            .await?
            .admin_reply(Ok(AdminReply::Shards(Vec::new())))
            .await?;
        node.next("Shards")
            .await?
            .admin_reply(Ok(AdminReply::Token("t".into())))
            .await?;
        node.next("Drain")
            .await?
            .admin_reply(Ok(AdminReply::Draining { node: "n3".into() }))
            .await?;
        let (members, shards, drain) = within("the cluster calls", call).await??;
        let message = |result: Result<(), ClientError>| match result {
            Err(ClientError::Protocol(message)) => Ok(message),
            other => Err(anyhow!("expected a protocol error, got {other:?}")),
        };
        assert_eq!(
            message(members.map(drop))?,
            "expected a `Members` admin reply, got `Shards`"
        );
        assert_eq!(
            message(shards.map(drop))?,
            "expected a `Shards` admin reply, got `Token`"
        );
        let drain = message(drain)?;
        assert!(drain.contains("`n2`") && drain.contains("`n3`"), "{drain}");
        Ok(())
    })
    .await
}
