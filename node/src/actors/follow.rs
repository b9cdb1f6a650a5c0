//! The replay ring followers read from, and the initiator's sink, without I/O.
//!
//! Every follower-visible event gets the next sequence number, is encoded **once** into a
//! complete frame and goes into the conversation's [`Ring`] (bounded by count and bytes).
//! Followers hold no queue of their own: each one is a cursor into the ring, read by its
//! stream's task ([`crate::gateway::tail`]), so attaching, replaying after a reconnect and
//! tailing live are one mechanism, and the conversation actor's cost per event does not
//! depend on how many follow. A follower that is more than `lag_max` events behind, or
//! whose next event has left the ring, is cut over to resync.
//!
//! Owner-only events are delivered to the turn's initiator only, through its [`Sink`],
//! carrying the sequence number of the latest visible event without consuming one, so
//! each follower sees a gap-free sequence.

use crate::context::{Metrics, NodeContext};
use bytes::Bytes;
use shoal_protocol::client::ServerFrame;
use shoal_protocol::frame::encode_frame;
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{Seq, UserId};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::{mpsc, watch};

/// Most bytes one follower takes from the ring for one stream write.
pub const READ_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Outcome of writing one frame into a sink.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued.
    Queued,
    /// The reader is gone (closed channel); drop the sink.
    Gone,
    /// The reader is too slow: a `Resync` was queued in the last slot; drop the sink.
    CutOver,
}

/// A bounded outgoing frame queue to one stream (a turn's initiator).
#[derive(Debug)]
pub struct Sink {
    tx: mpsc::Sender<ServerFrame>,
    /// The stream is a viewer's or editor's: events pass through
    /// [`shoal_protocol::transcript::Event::for_editor`].
    shared: bool,
}

impl Sink {
    /// Wraps a channel sender (the owner's stream: every event).
    pub fn new(tx: mpsc::Sender<ServerFrame>) -> Self {
        Self { tx, shared: false }
    }

    /// Wraps a shared caller's channel sender: owner-only events are left out.
    pub fn shared(tx: mpsc::Sender<ServerFrame>) -> Self {
        Self { tx, shared: true }
    }

    /// Whether this is a shared caller's stream.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Queues `frame` without waiting.
    pub fn deliver(&self, frame: ServerFrame) -> Delivery {
        let frame = match frame {
            ServerFrame::Event(EventFrame { seq, event }) if self.shared => {
                match event.for_editor() {
                    Some(event) => ServerFrame::Event(EventFrame { seq, event }),
                    None => return Delivery::Queued,
                }
            }
            other => other,
        };
        if self.tx.is_closed() {
            return Delivery::Gone;
        }
        if self.tx.capacity() <= 1 {
            let _ = self.tx.try_send(ServerFrame::Resync {
                reason: "follower fell behind the live stream; follow again from your last sequence number"
                    .to_owned(),
            });
            return Delivery::CutOver;
        }
        match self.tx.try_send(frame) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
            Err(mpsc::error::TrySendError::Full(_)) => Delivery::CutOver,
        }
    }
}

/// What a reader gets from [`Ring::read`].
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Encoded frames after the cursor were appended to the reader's vector, oldest
    /// first; the cursor moves to `through`.
    Frames {
        /// Sequence number of the last of them.
        through: Seq,
        /// When the first of them entered the ring.
        oldest_at: Option<std::time::Instant>,
    },
    /// Nothing new: wait for the ring to change.
    Wait,
    /// The reader fell too far behind (or out of the ring): cut it over to resync.
    Behind,
    /// The activation ended and the reader has everything: write this last frame.
    Closed(Bytes),
}

/// How a follower that has everything up to `since` starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// Read the ring from this cursor (a replay of what it missed, then live).
    From(Seq),
    /// Send it a reset with a snapshot at [`Ring::last`], then read from there.
    Reset,
}

#[derive(Debug)]
struct RingInner {
    last: Seq,
    /// Encoded frames for `last - len + 1 ..= last`.
    frames: VecDeque<Bytes>,
    /// When each of `frames` was pushed (for the fan-out delay metric).
    pushed_at: VecDeque<std::time::Instant>,
    bytes: usize,
    closed: Option<Bytes>,
}

/// The sequence counter and encoded replay ring of one conversation activation.
///
/// Written only by the conversation actor; read concurrently by its followers' tasks.
#[derive(Debug)]
pub struct Ring {
    base: Seq,
    count_max: usize,
    bytes_max: usize,
    inner: RwLock<RingInner>,
    /// Bumped on every push and on close; readers wait on it.
    changed: watch::Sender<u64>,
}

impl Ring {
    /// A ring for `activation` keeping at most `count_max` events and `bytes_max` bytes
    /// (always at least the newest event).
    pub fn new(activation: u32, count_max: usize, bytes_max: usize) -> Arc<Self> {
        let base = Seq::first_of_activation(activation);
        Arc::new(Ring {
            base,
            count_max: count_max.max(1),
            bytes_max,
            inner: RwLock::new(RingInner {
                last: base,
                frames: VecDeque::with_capacity(count_max.clamp(1, 1024)),
                pushed_at: VecDeque::with_capacity(count_max.clamp(1, 1024)),
                bytes: 0,
                closed: None,
            }),
            changed: watch::Sender::new(0),
        })
    }

    fn read_inner(&self) -> std::sync::RwLockReadGuard<'_, RingInner> {
        // A panic while holding the lock leaves consistent data (every update is one
        // assignment sequence that cannot panic half way), so poisoning is ignored.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_inner(&self) -> std::sync::RwLockWriteGuard<'_, RingInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last sequence number assigned (the base if none yet).
    pub fn last(&self) -> Seq {
        self.read_inner().last
    }

    /// Assigns the next number to a follower-visible event, encodes it once and appends
    /// it, evicting the oldest events beyond the bounds. Returns its number.
    pub fn push(&self, event: Event) -> Seq {
        let mut inner = self.write_inner();
        assert!(
            inner.last.0 - self.base.0 < u64::from(u32::MAX),
            "sequence space of one activation exhausted"
        );
        let seq = inner.last.next();
        let bytes = encode_event(EventFrame { seq, event });
        inner.last = seq;
        inner.bytes += bytes.len();
        inner.frames.push_back(bytes);
        inner.pushed_at.push_back(std::time::Instant::now());
        while inner.frames.len() > self.count_max
            || (inner.bytes > self.bytes_max && inner.frames.len() > 1)
        {
            if let Some(old) = inner.frames.pop_front() {
                inner.bytes -= old.len();
                inner.pushed_at.pop_front();
            }
        }
        drop(inner);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        seq
    }

    /// Ends the activation: readers get what they still can, then `frame`.
    pub fn close(&self, frame: &ServerFrame) {
        let bytes = encode_frame(frame).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode a closing frame");
            Bytes::new()
        });
        self.write_inner().closed = Some(bytes);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.read_inner().closed.is_some()
    }

    /// A receiver that sees every later push and the close.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// How a follower that has everything up to `since` starts: from its cursor if every
    /// event after it is still here and it is at most `lag_max` behind, else with a reset.
    pub fn start(&self, since: Option<Seq>, lag_max: u64) -> Start {
        let inner = self.read_inner();
        let Some(since) = since else {
            return Start::Reset;
        };
        if since < self.base || since > inner.last {
            return Start::Reset;
        }
        if !serves(&inner, since, lag_max) {
            return Start::Reset;
        }
        Start::From(since)
    }

    /// Appends the frames after `cursor` to `out` (at most `budget` bytes, at least one),
    /// or says what to do instead. `out` is the reader's own vector, reused from read to
    /// read.
    pub fn read(&self, cursor: Seq, lag_max: u64, budget: usize, out: &mut Vec<Bytes>) -> Read {
        let inner = self.read_inner();
        if cursor > inner.last || cursor < self.base {
            // Not a cursor of this activation: only a bug gets here, and a resync heals it.
            return Read::Behind;
        }
        if cursor == inner.last {
            return match &inner.closed {
                Some(frame) => Read::Closed(frame.clone()),
                None => Read::Wait,
            };
        }
        if !serves(&inner, cursor, lag_max) {
            return Read::Behind;
        }
        let first = inner.last.0 + 1 - inner.frames.len() as u64;
        let skip = (cursor.0 + 1 - first) as usize;
        let mut taken = 0;
        let mut bytes = 0;
        for frame in inner.frames.range(skip..) {
            if taken > 0 && bytes + frame.len() > budget {
                break;
            }
            bytes += frame.len();
            taken += 1;
            out.push(frame.clone());
        }
        let through = Seq(cursor.0 + taken);
        let oldest_at = inner.pushed_at.get(skip).copied();
        Read::Frames { through, oldest_at }
    }

    /// Whether a reader whose cursor is `cursor` can no longer be served: it is more than
    /// `lag_max` behind or its next event has left the ring.
    pub fn is_behind(&self, cursor: Seq, lag_max: u64) -> bool {
        let inner = self.read_inner();
        cursor < inner.last && !serves(&inner, cursor, lag_max)
    }

    /// Events and bytes held now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let inner = self.read_inner();
        (inner.frames.len(), inner.bytes)
    }
}

/// Whether a reader at `cursor` (base..=last) can still be served: at most `lag_max`
/// behind, and the event right after its cursor still in the ring.
fn serves(inner: &RingInner, cursor: Seq, lag_max: u64) -> bool {
    let first = inner.last.0 + 1 - inner.frames.len() as u64;
    inner.last.0 - cursor.0 <= lag_max && cursor.0 + 1 >= first
}

/// Encodes one event as a complete `ServerFrame::Event` frame. An event too large for a
/// frame becomes an error event with the same number, so followers see no gap.
pub fn encode_event(frame: EventFrame) -> Bytes {
    let seq = frame.seq;
    match encode_frame(&ServerFrame::Event(frame)) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(seq = %seq, error = %e, "an event is too large for followers; they get an error event instead");
            encode_frame(&ServerFrame::Event(EventFrame {
                seq,
                event: Event::Error {
                    message: format!("an event could not be sent to followers: {e}"),
                },
            }))
            .expect("a short error event always encodes")
        }
    }
}

/// One attached follower, as the conversation actor and the admin API see it. Its stream
/// task holds the other reference; when both are dropped, the follower is gone (and
/// leaves the `followers` gauge).
#[derive(Debug)]
pub struct FollowerShared {
    /// Local id (for admin output).
    pub id: u64,
    /// Who follows.
    pub user: UserId,
    /// Last sequence number written to its stream.
    cursor: AtomicU64,
    ctx: Arc<NodeContext>,
}

impl FollowerShared {
    /// A follower starting at `cursor`, counted in the `followers` gauge.
    pub fn new(ctx: Arc<NodeContext>, id: u64, user: UserId, cursor: Seq) -> Arc<Self> {
        Metrics::inc(&ctx.metrics.followers);
        Arc::new(FollowerShared {
            id,
            user,
            cursor: AtomicU64::new(cursor.0),
            ctx,
        })
    }

    /// Last sequence number written to its stream.
    pub fn cursor(&self) -> Seq {
        Seq(self.cursor.load(Ordering::Relaxed))
    }

    /// Records that everything through `seq` was written.
    pub fn advance(&self, seq: Seq) {
        self.cursor.store(seq.0, Ordering::Relaxed);
    }

    /// Whether its stream task has ended (only the actor's reference is left).
    pub fn is_gone(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) == 1
    }
}

impl Drop for FollowerShared {
    fn drop(&mut self) {
        Metrics::dec(&self.ctx.metrics.followers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::frame::decode_payload;

    fn status(n: u32) -> Event {
        Event::Status {
            text: n.to_string(),
        }
    }

    /// Reads into a fresh vector.
    fn read(ring: &Ring, cursor: Seq, lag_max: u64, budget: usize) -> (Read, Vec<Bytes>) {
        let mut frames = Vec::new();
        let read = ring.read(cursor, lag_max, budget, &mut frames);
        (read, frames)
    }

    fn seqs(frames: &[Bytes]) -> Vec<u64> {
        frames
            .iter()
            .map(|b| match decode_payload::<ServerFrame>(&b[4..]).unwrap() {
                ServerFrame::Event(f) => f.seq.0,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn readers_resume_exactly_after_their_cursor() {
        let ring = Ring::new(2, 4, usize::MAX);
        let base = Seq::first_of_activation(2);
        assert_eq!(ring.start(Some(base), 10), Start::From(base));
        assert_eq!(read(&ring, base, 10, usize::MAX).0, Read::Wait);
        for n in 0..6 {
            ring.push(status(n));
        }
        // The ring holds base+3..=base+6.
        let (Read::Frames { through, .. }, frames) = read(&ring, Seq(base.0 + 4), 10, usize::MAX)
        else {
            panic!()
        };
        assert_eq!(seqs(&frames), vec![base.0 + 5, base.0 + 6]);
        assert_eq!(through, Seq(base.0 + 6));
        assert_eq!(read(&ring, through, 10, usize::MAX).0, Read::Wait);
        // Table: (cursor relative to base, lag_max) -> can start from the cursor?
        for (since, lag_max, from) in [
            (1u64, 10u64, false),
            (0, 10, false),
            (7, 10, false),
            (2, 10, true),
            (6, 10, true),
            (3, 2, false),
            (4, 2, true),
        ] {
            let got = ring.start(Some(Seq(base.0 + since)), lag_max);
            assert_eq!(
                got == Start::From(Seq(base.0 + since)),
                from,
                "since {since} lag {lag_max}: {got:?}"
            );
            let (read, _) = read(&ring, Seq(base.0 + since), lag_max, usize::MAX);
            let behind = ring.is_behind(Seq(base.0 + since), lag_max);
            if since <= 6 {
                assert_eq!(read == Read::Behind, !from, "since {since}: {read:?}");
                assert_eq!(behind, !from, "since {since}");
            }
        }
        assert_eq!(ring.start(None, 10), Start::Reset);
        assert_eq!(
            ring.start(Some(Seq(1)), 10),
            Start::Reset,
            "other activation"
        );
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_and_reads_by_budget() {
        let one = encode_event(EventFrame {
            seq: Seq(1),
            event: status(0),
        })
        .len();
        let ring = Ring::new(0, 1000, one * 3);
        for n in 0..10 {
            ring.push(status(n));
        }
        assert_eq!(ring.held(), (3, one * 3));
        assert_eq!(read(&ring, Seq(6), 100, usize::MAX).0, Read::Behind);
        // A budget of two frames splits the catch-up into two writes.
        let (Read::Frames { through, .. }, frames) = read(&ring, Seq(7), 100, one * 2) else {
            panic!()
        };
        assert_eq!((seqs(&frames), through), (vec![8, 9], Seq(9)));
        // A frame larger than the budget still goes out alone.
        let (Read::Frames { .. }, frames) = read(&ring, Seq(9), 100, 1) else {
            panic!()
        };
        assert_eq!(seqs(&frames), vec![10]);
        // One event larger than the whole byte bound is kept alone.
        let ring = Ring::new(0, 1000, 1);
        ring.push(status(1));
        ring.push(status(2));
        assert_eq!(ring.held(), (1, one));
    }

    #[test]
    fn a_closed_ring_gives_its_last_frame_after_the_events() {
        let ring = Ring::new(0, 10, usize::MAX);
        let mut rx = ring.subscribe();
        ring.push(status(1));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        ring.close(&ServerFrame::Resync { reason: "x".into() });
        assert!(rx.has_changed().unwrap());
        assert!(matches!(
            read(&ring, Seq(0), 10, usize::MAX).0,
            Read::Frames { .. }
        ));
        let (Read::Closed(last), _) = read(&ring, Seq(1), 10, usize::MAX) else {
            panic!()
        };
        assert!(matches!(
            decode_payload::<ServerFrame>(&last[4..]).unwrap(),
            ServerFrame::Resync { .. }
        ));
    }

    #[tokio::test]
    async fn slow_sink_is_cut_over_with_resync() {
        let (tx, mut rx) = mpsc::channel(3);
        let sink = Sink::new(tx);
        let frame = || {
            ServerFrame::Event(EventFrame {
                seq: Seq(1),
                event: status(1),
            })
        };
        assert_eq!(sink.deliver(frame()), Delivery::Queued);
        assert_eq!(sink.deliver(frame()), Delivery::Queued);
        assert_eq!(sink.deliver(frame()), Delivery::CutOver);
        drop(sink);
        let mut frames = Vec::new();
        while let Some(f) = rx.recv().await {
            frames.push(f);
        }
        assert!(
            matches!(frames.last(), Some(ServerFrame::Resync { .. })),
            "{frames:?}"
        );
        let (tx, rx) = mpsc::channel(3);
        drop(rx);
        assert_eq!(Sink::new(tx).deliver(frame()), Delivery::Gone);
    }
}
