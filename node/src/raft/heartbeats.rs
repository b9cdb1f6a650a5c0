//! Heartbeats to one node, coalesced across shards.
//!
//! Every shard's Raft group heartbeats each follower every `cluster.heartbeat_ms` on its
//! own timer: with 64 shards on 3 nodes that is over a thousand tiny RPCs a second per
//! node, each its own QUIC stream, frame and reply, and an idle cluster spends its CPU on
//! them. Here an empty append-entries (a heartbeat, or a probe) waits up to `window` for
//! others to the same node and they go as one [`PeerRequest::RaftHeartbeats`]; the node
//! answers each one as soon as its shard has (one busy shard holds back no other). An append that carries entries is never delayed.
//!
//! The lease is unaffected: openraft takes a heartbeat's *sending* instant as the
//! evidence of a quorum ack, which is before the wait, so waiting only makes the
//! evidence older (by at most `window`), never newer than it is.

use crate::peer::{PeerClient, PeerError, PeerLane, PeerRequest, RaftReply};
use crate::raft::TypeConfig;
use openraft::raft::AppendEntriesRequest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Most heartbeats in one [`PeerRequest::RaftHeartbeats`] (a node refuses more).
pub const HEARTBEATS_PER_BATCH_MAX: usize = 256;
/// Heartbeats that may wait for one node; past it they are sent on their own.
const HEARTBEATS_QUEUED_MAX: usize = 1024;

/// One shard group's heartbeat inside a [`PeerRequest::RaftHeartbeats`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The shard.
    pub shard: u16,
    /// The Raft member addressed (see [`PeerRequest::Raft`]).
    pub target: u64,
    /// The empty append-entries.
    pub rpc: AppendEntriesRequest<TypeConfig>,
}

/// A heartbeat waiting for its batch.
struct Waiting {
    beat: Heartbeat,
    deadline: Instant,
    reply: oneshot::Sender<Result<RaftReply, PeerError>>,
}

/// The coalescer: one queue, and one task, per node heartbeats go to (bounded by the
/// cluster's members).
pub struct Heartbeats {
    peers: Arc<PeerClient>,
    window: Duration,
    queues: Mutex<HashMap<SocketAddr, mpsc::Sender<Waiting>>>,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats")
            .field("window", &self.window)
            .finish()
    }
}

impl Heartbeats {
    /// Heartbeats over `peers`, each waiting at most `window` for others.
    pub fn new(peers: Arc<PeerClient>, window: Duration) -> Arc<Self> {
        Arc::new(Heartbeats {
            peers,
            window,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `beat` to `addr` with the next batch, and waits for its reply (or `timeout`).
    pub async fn send(
        &self,
        addr: SocketAddr,
        beat: Heartbeat,
        timeout: Duration,
    ) -> Result<RaftReply, PeerError> {
        let deadline = Instant::now() + timeout;
        let (reply, rx) = oneshot::channel();
        let waiting = Waiting {
            beat,
            deadline,
            reply,
        };
        if let Err(e) = self.queue(addr).try_send(waiting) {
            // Full (or its task is gone): this one goes on its own.
            let Waiting { beat, .. } = e.into_inner();
            let request = PeerRequest::Raft {
                shard: beat.shard,
                target: beat.target,
                rpc: crate::peer::RaftRpc::AppendEntries(beat.rpc),
            };
            return self.peers.call(addr, &request, timeout).await;
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(PeerError::Call {
                addr,
                message: "the heartbeat batch was dropped".into(),
            }),
            Err(_) => Err(PeerError::Timeout {
                addr,
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    fn queue(&self, addr: SocketAddr) -> mpsc::Sender<Waiting> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(addr)
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(HEARTBEATS_QUEUED_MAX);
                let peers = self.peers.clone();
                tokio::spawn(run_queue(self.window, rx, move |batch| {
                    tokio::spawn(send_batch(peers.clone(), addr, batch));
                }));
                tx
            })
            .clone()
    }
}

/// Collects the heartbeats for one node into batches: the first one waits `window`, or
/// until the batch is full; `send` sends the batch (on a task of its own).
async fn run_queue(window: Duration, mut rx: mpsc::Receiver<Waiting>, send: impl Fn(Vec<Waiting>)) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let flush_at = Instant::now() + window;
        while batch.len() < HEARTBEATS_PER_BATCH_MAX {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(w) => batch.push(w),
                    None => break,
                },
                _ = tokio::time::sleep_until(flush_at) => break,
            }
        }
        send(batch);
    }
}

/// Sends one batch and hands each heartbeat its answer as it arrives; those left without
/// one when the exchange ends get its error.
async fn send_batch(peers: Arc<PeerClient>, addr: SocketAddr, mut batch: Vec<Waiting>) {
    let now = Instant::now();
    // Heartbeats already late are not sent (their callers gave up); the batch may take
    // until the latest deadline of the rest (each caller stops waiting at its own).
    batch.retain(|w| w.deadline > now);
    let Some(deadline) = batch.iter().map(|w| w.deadline).max() else {
        return;
    };
    let (beats, mut replies): (Vec<Heartbeat>, Vec<Option<_>>) =
        batch.into_iter().map(|w| (w.beat, Some(w.reply))).unzip();
    let mut unanswered = replies.len();
    let result = match shoal_protocol::frame::encode_frame(&PeerRequest::RaftHeartbeats { beats }) {
        Err(e) => Err(PeerError::Call {
            addr,
            message: format!("cannot encode a frame: {e}"),
        }),
        Ok(frame) => {
            let each = |(i, answer): (usize, RaftReply)| {
                if let Some(reply) = replies.get_mut(i).and_then(Option::take) {
                    let _ = reply.send(Ok(answer));
                    unanswered -= 1;
                }
                if unanswered == 0 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            peers
                .exchange(PeerLane::Raft, addr, &frame, deadline - now, each)
                .await
        }
    };
    let message = match result {
        Ok(()) => "the node ended the heartbeat batch without answering this one".to_owned(),
        Err(e) => e.to_string(),
    };
    for reply in replies.into_iter().flatten() {
        let _ = reply.send(Err(PeerError::Call {
            addr,
            message: message.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;

    fn waiting(shard: u16) -> Waiting {
        let (reply, _) = oneshot::channel();
        Waiting {
            beat: Heartbeat {
                shard,
                target: 1,
                rpc: AppendEntriesRequest {
                    vote: Vote::new_committed(1, 1),
                    prev_log_id: None,
                    leader_commit: None,
                    entries: Vec::new(),
                },
            },
            deadline: Instant::now() + Duration::from_secs(1),
            reply,
        }
    }

    /// Heartbeats that arrive within the window of the first go as one batch; a later
    /// one starts the next batch; a full batch goes at once.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_within_the_window_go_together() {
        let window = Duration::from_millis(20);
        let (tx, rx) = mpsc::channel(HEARTBEATS_QUEUED_MAX);
        let (sent_tx, mut sent) = mpsc::unbounded_channel();
        tokio::spawn(run_queue(window, rx, move |batch: Vec<Waiting>| {
            let shards: Vec<u16> = batch.iter().map(|w| w.beat.shard).collect();
            let _ = sent_tx.send((Instant::now(), shards));
        }));
        let start = Instant::now();
        for shard in 0..5 {
            assert!(tx.try_send(waiting(shard)).is_ok());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (at, shards) = sent.recv().await.unwrap();
        assert_eq!(shards, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            at - start,
            window,
            "the batch waits the window from its first"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tx.try_send(waiting(9)).is_ok());
        assert_eq!(sent.recv().await.unwrap().1, vec![9]);
        let before_full = Instant::now();
        for shard in 0..HEARTBEATS_PER_BATCH_MAX as u16 + 1 {
            assert!(tx.try_send(waiting(shard)).is_ok());
        }
        let (at, full) = sent.recv().await.unwrap();
        assert_eq!(full.len(), HEARTBEATS_PER_BATCH_MAX);
        assert_eq!(at, before_full, "a full batch does not wait");
        assert_eq!(sent.recv().await.unwrap().1.len(), 1);
    }
}
