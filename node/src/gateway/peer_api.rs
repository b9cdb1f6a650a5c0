//! `shoal-peer/1`, server side: Raft RPCs, forwarded client requests, control calls, and
//! gossip datagrams. Only connections with a cluster-CA client certificate get here.

use super::frames::{FrameIoError, read_frame, write_final_frame, write_frame};
use super::{Peer, client_api, close_code};
use crate::actors::shard_host::ShardHostMsg;
use crate::context::NodeContext;
use crate::peer::{
    BLOB_PUT_BYTES_MAX, BLOB_QUERY_HASHES_MAX, BlobReply, ControlReply, PEER_FRAME_BYTES_MAX,
    PeerRequest, RaftReply, RaftRpc,
};
use crate::raft::heartbeats::{HEARTBEATS_PER_BATCH_MAX, Heartbeat};
use crate::workspace::blobs::{CHUNK_BYTES_MAX, Durability};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::raft::AppendEntriesResponse;
use ractor::ActorRef;
use shoal_protocol::ShardId;
use std::sync::Arc;

/// Serves one authenticated peer connection until it closes.
pub async fn serve(conn: quinn::Connection, ctx: Arc<NodeContext>, host: ActorRef<ShardHostMsg>) {
    let remote = conn.remote_address();
    let datagrams = {
        let conn = conn.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while let Ok(packet) = conn.read_datagram().await {
                ctx.membership.deliver(remote, packet);
            }
        })
    };
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "peer connection closed");
                break;
            }
        };
        let ctx = ctx.clone();
        let host = host.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            if let Err(FrameIoError::Invalid(e)) =
                handle_stream(send, recv, &ctx, &host, remote).await
            {
                tracing::warn!(%remote, error = %e, "closing peer connection after a bad frame");
                conn.close(close_code::PROTOCOL.into(), e.message.as_bytes());
            }
        });
    }
    datagrams.abort();
}

async fn handle_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: &Arc<NodeContext>,
    host: &ActorRef<ShardHostMsg>,
    remote: std::net::SocketAddr,
) -> Result<(), FrameIoError> {
    let request: PeerRequest = match read_frame(&mut recv, PEER_FRAME_BYTES_MAX).await {
        Ok(Some(request)) => request,
        Ok(None) => return Ok(()),
        Err(FrameIoError::Invalid(e)) => {
            write_final_frame(&mut send, &RaftReply::Refused(e.message.clone())).await;
            return Err(FrameIoError::Invalid(e));
        }
        Err(e) => return Err(e),
    };
    match request {
        PeerRequest::Raft { shard, target, rpc } => {
            let reply = raft_rpc(ctx, ShardId(shard), target, rpc).await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Forward {
            user,
            trace,
            request,
        } => {
            let span = tracing::info_span!(
                "forwarded_request",
                %user,
                from = %remote,
                node = ctx.node_id(),
                traceparent = trace.as_ref().map(|t| t.traceparent.as_str()).unwrap_or(""),
            );
            crate::telemetry::adopt(&span, trace.as_ref());
            let peer = Peer::new(user, remote);
            let _ = tracing::Instrument::instrument(
                client_api::dispatch(send, request, ctx, host, &peer, client_api::Hop::Forwarded),
                span,
            )
            .await;
        }
        PeerRequest::RaftHeartbeats { beats } => {
            heartbeats(ctx, &mut send, beats).await?;
            let _ = send.finish();
        }
        PeerRequest::QuietBeats { beats } => {
            let reply = crate::cluster::quiet::answer(&ctx.cluster, &beats);
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Campaign { shard } => {
            let reply = ctx.cluster.campaign(ShardId(shard)).await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Initialize { shard, voters } => {
            let reply = ctx
                .cluster
                .initialize(ShardId(shard), voters.into_iter().collect())
                .await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::BlobsMissing { .. }
        | PeerRequest::BlobPut { .. }
        | PeerRequest::BlobGet { .. } => {
            let reply = blob_request(ctx, request).await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Propose { shard, command } => {
            let reply = super::sharing::serve_propose(ctx, ShardId(shard), command).await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Drain | PeerRequest::Undrain => {
            let draining = matches!(request, PeerRequest::Drain);
            tracing::info!(from = %remote, draining, "drain flag change asked by a peer");
            let reply = match crate::cluster::drain::set_draining(ctx, draining).await {
                Ok(()) => ControlReply::Ok,
                Err(e) => ControlReply::Refused(e),
            };
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
        PeerRequest::Admin { request } => {
            let reply = super::admin_api::serve_for_peer(request, ctx, host).await;
            write_frame(&mut send, &reply).await?;
            let _ = send.finish();
        }
    }
    Ok(())
}

/// Serves a blob request from the node's blob store (on a blocking thread: it reads,
/// writes and syncs files).
async fn blob_request(ctx: &Arc<NodeContext>, request: PeerRequest) -> BlobReply {
    let blobs = ctx.blobs.clone();
    let served = ctx
        .blocking(move || match request {
            PeerRequest::BlobsMissing { hashes } if hashes.len() > BLOB_QUERY_HASHES_MAX => {
                BlobReply::Refused(format!(
                    "{} hashes in one query; at most {BLOB_QUERY_HASHES_MAX}",
                    hashes.len()
                ))
            }
            PeerRequest::BlobsMissing { hashes } => BlobReply::Missing(blobs.missing(&hashes)),
            PeerRequest::BlobPut { chunks } => put_chunks(&blobs, &chunks),
            PeerRequest::BlobGet { hash } => match blobs.get(&hash) {
                Ok(Some(bytes)) => BlobReply::Blob(bytes),
                Ok(None) => BlobReply::NotFound,
                Err(e) => BlobReply::Refused(format!("chunk {hash} unreadable here: {e}")),
            },
            _ => BlobReply::Refused("not a blob request".into()),
        })
        .await;
    served.unwrap_or_else(|e| BlobReply::Refused(format!("the blob store task failed: {e}")))
}

/// Stores a [`PeerRequest::BlobPut`] batch: every chunk checked first (nothing is stored
/// from a bad batch), then written, then one sync before the acknowledgement.
fn put_chunks(
    blobs: &crate::workspace::blobs::BlobStore,
    chunks: &[(crate::workspace::blobs::ChunkHash, Vec<u8>)],
) -> BlobReply {
    let total: usize = chunks.iter().map(|(_, b)| b.len()).sum();
    if total > BLOB_PUT_BYTES_MAX || chunks.len() > BLOB_QUERY_HASHES_MAX {
        return BlobReply::Refused(format!(
            "{} chunks of {total} bytes in one put; at most {BLOB_QUERY_HASHES_MAX} chunks and {BLOB_PUT_BYTES_MAX} bytes",
            chunks.len()
        ));
    }
    if let Some((hash, bytes)) = chunks.iter().find(|(_, b)| b.len() > CHUNK_BYTES_MAX) {
        return BlobReply::Refused(format!(
            "chunk {hash} has {} bytes; at most {CHUNK_BYTES_MAX}",
            bytes.len()
        ));
    }
    for (hash, bytes) in chunks {
        if let Err(e) = blobs.put_expected(hash, bytes, Durability::Later) {
            return BlobReply::Refused(format!("chunk {hash} not stored: {e}"));
        }
    }
    match blobs.sync() {
        Ok(()) => BlobReply::Stored,
        Err(e) => BlobReply::Refused(format!("chunks not synced: {e}")),
    }
}

/// Answers a batch of heartbeats ([`crate::raft::heartbeats`]): one frame
/// `(index in the batch, reply)` per heartbeat, each written as soon as its shard has
/// answered, so one busy shard never holds back the others' replies.
async fn heartbeats(
    ctx: &NodeContext,
    send: &mut quinn::SendStream,
    beats: Vec<Heartbeat>,
) -> Result<(), FrameIoError> {
    if beats.len() > HEARTBEATS_PER_BATCH_MAX {
        let refused = format!(
            "{} heartbeats in one batch, {HEARTBEATS_PER_BATCH_MAX} at most",
            beats.len()
        );
        for index in 0..beats.len() {
            write_frame(send, &(index, RaftReply::Refused(refused.clone()))).await?;
        }
        return Ok(());
    }
    let mut answers: FuturesUnordered<_> = beats
        .into_iter()
        .enumerate()
        .map(|(index, beat)| async move {
            let rpc = RaftRpc::AppendEntries(beat.rpc);
            (
                index,
                raft_rpc(ctx, ShardId(beat.shard), beat.target, rpc).await,
            )
        })
        .collect();
    while let Some(answer) = answers.next().await {
        write_frame(send, &answer).await?;
    }
    Ok(())
}

async fn raft_rpc(ctx: &NodeContext, shard: ShardId, target: u64, rpc: RaftRpc) -> RaftReply {
    let group = match ctx.cluster.addressed(shard, target) {
        Ok(group) => group,
        Err(why) => return RaftReply::Refused(why),
    };
    match rpc {
        RaftRpc::AppendEntries(req) => {
            let reply = group.raft.append_entries(req).await;
            if matches!(&reply, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                group.contact.heard();
            }
            RaftReply::AppendEntries(reply)
        }
        RaftRpc::Vote(req) => {
            ctx.cluster.votes_open().await;
            if let Err(why) = ctx.cluster.vote_gate(group) {
                tracing::debug!(%shard, candidate = req.vote.leader_id().voted_for(), %why, "vote refused");
                // Refused as openraft refuses while its leader lease holds: this node's
                // vote, not granted (its applied log id stands in for its last one).
                let (vote, applied) = {
                    let m = group.raft.metrics();
                    let m = m.borrow();
                    (m.vote, m.last_applied)
                };
                return RaftReply::Vote(Ok(openraft::raft::VoteResponse::new(
                    vote, applied, false,
                )));
            }
            RaftReply::Vote(group.raft.vote(req).await)
        }
        RaftRpc::InstallSnapshot(req) => {
            let vote = req.vote;
            let reply = group.raft.install_snapshot(req).await;
            if matches!(&reply, Ok(r) if r.vote == vote) {
                group.contact.heard();
            }
            RaftReply::InstallSnapshot(reply)
        }
    }
}
