//! One follower's stream: reads the conversation's ring by cursor and writes what it
//! finds, coalesced, to the QUIC stream.
//!
//! The conversation actor only appends to the ring and bumps its watch; this task does
//! every per-follower step (waking, collecting the frames it is missing, writing them
//! in one `write_all_chunks` call of shared, already-encoded bytes). A follower that is
//! behind catches up in a few large writes instead of one write per event.
//!
//! A follower whose stream is blocked (its reader stopped reading) is reset as soon as
//! the ring leaves it behind, so it holds no more than its stream's flow-control window;
//! the client resumes from its last sequence number.

use super::frames::{FINAL_FRAME_ACK_TIMEOUT_MS, FrameIoError};
use crate::actors::conversation::Attached;
use crate::actors::follow::{READ_BATCH_BYTES_MAX, Read, Ring};
use crate::context::{Metrics, NodeContext};
use bytes::Bytes;
use shoal_protocol::Seq;
use shoal_protocol::client::ServerFrame;
use shoal_protocol::frame::encode_frame;
use std::time::Duration;
use tokio::sync::watch;

/// Application error code of a follow stream reset because its reader fell behind.
pub const FOLLOWER_BEHIND_RESET_CODE: u32 = 1;

/// Why tailing ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TailEnd {
    /// The activation ended and its last frame was written: finish the stream.
    Closed,
    /// The follower fell behind and was told to resync: finish the stream.
    CutOver,
    /// The reader went away, or was reset for not reading.
    Gone,
}

/// Writes `attached`'s events to `send` until the activation ends, the follower falls
/// behind or the reader goes away.
pub async fn tail(
    send: &mut quinn::SendStream,
    ctx: &NodeContext,
    attached: Attached,
) -> Result<TailEnd, FrameIoError> {
    let Attached {
        ring,
        mut cursor,
        prelude,
        follower,
    } = attached;
    let lag_max = u64::from(ctx.config.limits.follower_queue_frames.get());
    let mut changed = ring.subscribe();
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut pending: Vec<Bytes> = prelude.into_iter().collect();
    let fanout = &ctx.metrics.histograms().fanout_seconds;
    let mut pushed_at: Option<std::time::Instant> = None;
    loop {
        if !pending.is_empty() {
            tokio::select! {
                biased;
                written = write_chunks(send, &mut pending) => written?,
                () = left_behind(&ring, &mut changed, cursor, lag_max) => {
                    tracing::debug!(follower = follower.id, user = %follower.user, "follower stopped reading; resetting its stream");
                    Metrics::inc(&ctx.metrics.follower_resyncs);
                    let _ = send.reset(FOLLOWER_BEHIND_RESET_CODE.into());
                    return Ok(TailEnd::Gone);
                }
            }
            pending.clear();
            follower.advance(cursor);
            if let Some(at) = pushed_at.take() {
                fanout.observe_duration(at.elapsed());
            }
        }
        // Mark every change seen before reading, so one that lands after the read wakes us.
        changed.borrow_and_update();
        match ring.read(cursor, lag_max, READ_BATCH_BYTES_MAX) {
            Read::Frames {
                frames,
                through,
                oldest_at,
            } => {
                pushed_at = oldest_at;
                pending = frames;
                cursor = through;
            }
            Read::Wait => {
                tokio::select! {
                    result = changed.changed() => {
                        if result.is_err() {
                            // The ring is gone without a close: only a bug gets here.
                            return Ok(TailEnd::Gone);
                        }
                    }
                    _ = &mut stopped => return Ok(TailEnd::Gone),
                }
            }
            Read::Behind => {
                tracing::debug!(follower = follower.id, user = %follower.user, "follower fell behind; cut over to resync");
                Metrics::inc(&ctx.metrics.follower_resyncs);
                let resync = encode_frame(&ServerFrame::Resync {
                    reason: "follower fell behind the live stream; follow again from your last sequence number"
                        .into(),
                })
                .map_err(|e| FrameIoError::Stream(e.to_string()))?;
                write_chunks(send, &mut [resync]).await?;
                return Ok(TailEnd::CutOver);
            }
            Read::Closed(last) => {
                write_chunks(send, &mut [last]).await?;
                return Ok(TailEnd::Closed);
            }
        }
    }
}

async fn write_chunks(
    send: &mut quinn::SendStream,
    chunks: &mut [Bytes],
) -> Result<(), FrameIoError> {
    send.write_all_chunks(chunks)
        .await
        .map_err(|e| FrameIoError::Stream(e.to_string()))
}

/// Resolves once a reader whose writes are through `cursor` can no longer be served
/// (the ring left it behind), or a while after the activation ended.
async fn left_behind(ring: &Ring, changed: &mut watch::Receiver<u64>, cursor: Seq, lag_max: u64) {
    loop {
        if ring.is_behind(cursor, lag_max) {
            return;
        }
        if ring.is_closed() {
            tokio::time::sleep(Duration::from_millis(FINAL_FRAME_ACK_TIMEOUT_MS)).await;
            return;
        }
        if changed.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
