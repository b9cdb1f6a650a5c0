//! Follows of one conversation on one client share one follow stream to the node, and
//! each still yields exactly what a follow of its own would: joining late, from an older
//! point, falling behind, and when the shared follow fails.

#[path = "support/fake_node.rs"]
mod fake_node;

use anyhow::{Context, Result, anyhow};
use fake_node::*;
use futures::StreamExt;
use shoal_client::{Client, ConnectOptions, FollowStream, HUB_RING_FRAMES_MAX};
use shoal_protocol::client::{ClientRequest, ServerFrame};
use shoal_protocol::transcript::EventFrame;
use shoal_protocol::{ErrorCode, Seq, WireError};

/// A fake node and a client connected to it with `options` (the directory holds the
/// client's profile).
async fn started(options: ConnectOptions) -> Result<(FakeNode, tempfile::TempDir, Client)> {
    let pki = pki()?;
    let node = FakeNode::start(&pki)?;
    let dir = tempfile::tempdir()?;
    let profile = shoal_client::Profile::load(&write_profile(&dir, &pki, node.addr)?)?;
    let client = within("connect", Client::connect_with(&profile, options)).await??;
    Ok((node, dir, client))
}

/// The `since` of a Follow request (made with a share token or not).
fn since(request: &Request) -> Result<Option<u64>> {
    fn follow_since(request: &ClientRequest) -> Result<Option<u64>> {
        match request {
            ClientRequest::Follow { since, .. } => Ok(since.map(|s| s.0)),
            ClientRequest::Shared { request, .. } => follow_since(request),
            other => Err(anyhow!("expected Follow, got {other:?}")),
        }
    }
    follow_since(request.client()?)
}

/// The next `n` sequence numbers `follow` yields.
async fn seqs(follow: &mut FollowStream, n: usize) -> Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(n);
    for _ in 0..n {
        let item = within("an event", follow.next()).await?;
        seqs.push(item.context("the follow ended")??.seq.0);
    }
    Ok(seqs)
}

/// A follow of the conversation that has delivered `seq` (a reset) on a stream of its own:
/// the client's first follow of a conversation follows alone.
async fn alone(client: &Client, node: &mut FakeNode, seq: u64) -> Result<(FollowStream, Request)> {
    let mut follow = client.follow(conversation(), None);
    let what = "the first follow's Follow";
    let (delivered, request) = served(node, what, &mut follow, None, vec![reset(seq)], 1).await?;
    assert_eq!(delivered, [seq]);
    assert!(
        !follow.is_shared(),
        "the only follow of a conversation follows alone"
    );
    Ok((follow, request))
}

/// A first follow alone at the reset `first` (with its stream), and a second that started
/// the shared stream at the reset `second` (with that stream).
async fn pair(
    client: &Client,
    node: &mut FakeNode,
    first: u64,
    second: u64,
) -> Result<(FollowStream, Request, FollowStream, Request)> {
    let (alone, own) = alone(client, node, first).await?;
    let mut follow = client.follow(conversation(), None);
    let what = "the shared Follow";
    let (delivered, shared) = served(node, what, &mut follow, None, vec![reset(second)], 1).await?;
    assert_eq!(delivered, [second]);
    assert!(
        follow.is_shared(),
        "the second follow starts the shared stream"
    );
    Ok((alone, own, follow, shared))
}

/// `follow` asks the node (the request `what`, from `from`), which answers `frames`: the
/// first `n` sequence numbers the follow yields, and the request to write more on.
async fn served(
    node: &mut FakeNode,
    what: &str,
    follow: &mut FollowStream,
    from: Option<u64>,
    frames: Vec<EventFrame>,
    n: usize,
) -> Result<(Vec<u64>, Request)> {
    let (delivered, request) = tokio::join!(seqs(follow, n), async {
        let mut request = node.next(what).await?;
        assert_eq!(
            since(&request)?,
            from,
            "{what} starts from the follow's last event"
        );
        for frame in frames {
            request.event(frame).await?;
        }
        anyhow::Ok(request)
    });
    Ok((delivered?, request?))
}

/// Writes on `request` until the client stops the stream.
async fn until_stopped(what: &str, request: &mut Request, mut seq: u64) -> Result<()> {
    within(what, async {
        while request.event(status(seq)).await.is_ok() {
            seq += 1;
        }
    })
    .await
}

#[tokio::test]
async fn follows_of_a_conversation_share_one_stream() -> Result<()> {
    bounded(async {
        let (mut node, _dir, client) = started(ConnectOptions::default()).await?;
        // The second follow starts the shared one.
        let (mut first, mut own, mut second, mut shared) = pair(&client, &mut node, 10, 11).await?;

        // Later follows read it: from a snapshot at its reset, from 11 right after it (a
        // client derived with the same share token shares it too).
        let mut late = client.follow(conversation(), None);
        let mut resumed = client
            .with_share_token(None)
            .follow(conversation(), Some(Seq(11)));
        shared.event(status(12)).await?;
        assert_eq!(seqs(&mut late, 2).await?, [11, 12]);
        assert_eq!(seqs(&mut resumed, 1).await?, [12]);
        assert_eq!(seqs(&mut second, 1).await?, [12]);
        // The first follow joins once it delivered an event the shared one holds.
        own.event(status(11)).await?;
        own.event(status(12)).await?;
        assert_eq!(seqs(&mut first, 2).await?, [11, 12]);
        assert!(first.is_shared(), "the first follow joined after 12");
        shared.event(status(13)).await?;
        for follow in [&mut first, &mut second, &mut late, &mut resumed] {
            assert_eq!(seqs(follow, 1).await?, [13]);
            assert!(follow.is_shared());
        }
        until_stopped("the first follow's own stream to be stopped", &mut own, 13).await?;
        assert!(
            node.try_next().is_none(),
            "the node got a third request for the same conversation"
        );

        // A follow with another share token is not served another principal's stream.
        let mut viewer = client
            .with_share_token(Some("shoalshare1.viewer".into()))
            .follow(conversation(), None);
        let what = "the viewer's Follow";
        let (delivered, _viewers) =
            served(&mut node, what, &mut viewer, None, vec![reset(13)], 1).await?;
        assert_eq!(delivered, [13]);

        // When the last follow reading it is dropped, the shared follow stops.
        drop((first, second, late, resumed));
        until_stopped("the shared stream to be stopped", &mut shared, 14).await
    })
    .await
}

/// The first follow is usually a little ahead of the shared one it joins (its frames and
/// the hub's arrive together): it joins at the ring's end and skips what it already has.
#[tokio::test]
async fn a_follow_ahead_of_the_shared_one_joins_and_skips_what_it_has() -> Result<()> {
    bounded(async {
        let (mut node, _dir, client) = started(ConnectOptions::default()).await?;
        let (mut first, mut own, mut second, mut shared) = pair(&client, &mut node, 10, 10).await?;

        own.event(status(11)).await?;
        assert_eq!(seqs(&mut first, 1).await?, [11]);
        assert!(first.is_shared(), "joined ahead of the ring (10) after 11");
        for seq in [11, 12] {
            shared.event(status(seq)).await?;
        }
        assert_eq!(seqs(&mut first, 1).await?, [12], "11 skipped");
        assert_eq!(seqs(&mut second, 2).await?, [11, 12]);
        until_stopped("the first follow's own stream to be stopped", &mut own, 12).await
    })
    .await
}

#[tokio::test]
async fn a_follow_that_cannot_join_yet_follows_alone_then_joins() -> Result<()> {
    bounded(async {
        let (mut node, _dir, client) = started(ConnectOptions::default()).await?;
        let (_first, _own) = alone(&client, &mut node, 9).await?;

        let mut current = client.follow(conversation(), Some(Seq(10)));
        let frames = vec![status(11), status(12)];
        let (delivered, mut shared) = served(
            &mut node,
            "the shared Follow",
            &mut current,
            Some(10),
            frames,
            2,
        )
        .await?;
        assert_eq!(delivered, [11, 12]);

        // From 8 the ring (11, 12, no reset) cannot continue: it follows alone from 8
        // until it delivered an event the ring holds, then reads the ring.
        let mut older = client.follow(conversation(), Some(Seq(8)));
        let what = "the older follow's own Follow";
        let frames = vec![status(9), status(10), status(11)];
        let (delivered, mut own) = served(&mut node, what, &mut older, Some(8), frames, 3).await?;
        assert_eq!(delivered, [9, 10, 11]);
        assert!(older.is_shared(), "it joined the ring after 11");
        assert_eq!(seqs(&mut older, 1).await?, [12], "from the ring");
        shared.event(status(13)).await?;
        assert_eq!(seqs(&mut older, 1).await?, [13]);
        assert_eq!(seqs(&mut current, 1).await?, [13]);
        until_stopped("its own stream to be stopped", &mut own, 12).await
    })
    .await
}

#[tokio::test]
async fn a_follow_that_falls_out_of_the_ring_resumes_alone_from_its_last_event() -> Result<()> {
    bounded(async {
        let (mut node, _dir, client) = started(ConnectOptions::default()).await?;
        let (_first, _own) = alone(&client, &mut node, 0).await?;

        let mut fast = client.follow(conversation(), Some(Seq(0)));
        let mut slow = client.follow(conversation(), Some(Seq(0)));
        let last = HUB_RING_FRAMES_MAX as u64 + 10;
        let (fast_seqs, slow_first, request) =
            tokio::join!(seqs(&mut fast, last as usize), seqs(&mut slow, 1), async {
                let mut request = node.next("the shared Follow").await?;
                for seq in 1..=last {
                    request.event(status(seq)).await?;
                }
                anyhow::Ok(request)
            });
        assert_eq!(fast_seqs?, (1..=last).collect::<Vec<_>>());
        assert_eq!(slow_first?, [1]);
        assert!(slow.is_shared());
        let _shared = request?;

        // The ring no longer holds 2: the slow follow asks the node from 1, on its own.
        // A replayed duplicate (1) is dropped.
        let what = "the slow follow's own Follow";
        let frames = vec![status(1), status(2), status(3), status(4)];
        let (delivered, _own) = served(&mut node, what, &mut slow, Some(1), frames, 3).await?;
        assert_eq!(delivered, [2, 3, 4]);
        assert!(!slow.is_shared(), "4 is older than the ring");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_shared_follows_error_ends_every_follow_reading_it() -> Result<()> {
    bounded(async {
        let (mut node, _dir, client) = started(ConnectOptions::default()).await?;
        let (first, _own) = alone(&client, &mut node, 5).await?;
        let mut a = client.follow(conversation(), None);
        let mut b = client.follow(conversation(), None);
        let (a_seqs, b_seqs, request) = tokio::join!(seqs(&mut a, 1), seqs(&mut b, 1), async {
            let mut request = node.next("the shared Follow").await?;
            request.event(reset(10)).await?;
            anyhow::Ok(request)
        });
        assert_eq!((a_seqs?, b_seqs?), (vec![10], vec![10]));
        let mut request = request?;
        request
            .frame(&ServerFrame::Error(WireError::not_found("deleted")))
            .await?;
        request.finish();
        for follow in [&mut a, &mut b] {
            let item = within("the error", follow.next()).await?;
            assert!(
                matches!(&item, Some(Err(e)) if e.code() == Some(ErrorCode::NotFound)),
                "{item:?}"
            );
            assert!(within("the end", follow.next()).await?.is_none());
        }
        assert!(
            !first.is_shared(),
            "a follow on its own stream is not ended"
        );
        // A new follow starts a new shared follow rather than reading the ended one.
        let mut again = client.follow(conversation(), None);
        let what = "the Follow after the error";
        let (delivered, _request) =
            served(&mut node, what, &mut again, None, vec![reset(20)], 1).await?;
        assert_eq!(delivered, [20]);
        assert!(again.is_shared());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn follow_separately_gives_each_follow_its_own_stream() -> Result<()> {
    bounded(async {
        let options = ConnectOptions {
            follow_separately: true,
            ..ConnectOptions::default()
        };
        let (mut node, _dir, client) = started(options).await?;
        let mut a = client.follow(conversation(), None);
        let mut b = client.follow(conversation(), None);
        let (a_seqs, b_seqs, requests) = tokio::join!(seqs(&mut a, 1), seqs(&mut b, 1), async {
            let mut first = node.next("a's Follow").await?;
            let mut second = node.next("b's Follow").await?;
            first.event(reset(10)).await?;
            second.event(reset(10)).await?;
            anyhow::Ok((first, second))
        });
        assert_eq!((a_seqs?, b_seqs?), (vec![10], vec![10]));
        assert!(!a.is_shared() && !b.is_shared());
        drop(requests?);
        Ok(())
    })
    .await
}
