//! Sequence numbers, the replay buffer and follower sinks, without I/O.
//!
//! Every follower-visible event gets the next sequence number and goes into a bounded
//! replay buffer. Owner-only events are delivered to the turn's initiator only, carrying
//! the sequence number of the latest visible event without consuming one, so each
//! follower sees a gap-free sequence.
//!
//! Sinks are bounded channels written only by the conversation actor. When a sink has a
//! single free slot left, the actor puts a `Resync` frame into it and drops it: a slow
//! reader is cut over to resync instead of slowing the producer.

use shoal_protocol::client::ServerFrame;
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{Seq, UserId};
use std::collections::VecDeque;
use tokio::sync::mpsc;

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

/// A bounded outgoing frame queue to one stream.
#[derive(Debug)]
pub struct Sink {
    tx: mpsc::Sender<ServerFrame>,
}

impl Sink {
    /// Wraps a channel sender.
    pub fn new(tx: mpsc::Sender<ServerFrame>) -> Self {
        Self { tx }
    }

    /// Queues `frame` without waiting.
    pub fn deliver(&self, frame: ServerFrame) -> Delivery {
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

    /// Queues a final frame if there is room (used when the actor stops).
    pub fn close_with(self, frame: ServerFrame) {
        let _ = self.tx.try_send(frame);
    }

    /// Frames queued and not yet written.
    pub fn queued(&self) -> u64 {
        (self.tx.max_capacity() - self.tx.capacity()) as u64
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Room for this many more frames before the sink would be cut.
    pub fn room(&self) -> usize {
        self.tx.capacity().saturating_sub(1)
    }
}

/// One attached follower.
#[derive(Debug)]
pub struct Follower {
    /// Local id (for removal and admin output).
    pub id: u64,
    /// Who follows.
    pub user: UserId,
    /// Its queue.
    pub sink: Sink,
    /// Last sequence number queued.
    pub last_seq: Seq,
}

/// What a `Follow { since }` gets first.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Replay these buffered frames, then tail.
    Replay(Vec<EventFrame>),
    /// Send a reset with a snapshot at the current sequence number, then tail.
    Reset,
}

/// The sequence counter and replay buffer of one conversation activation.
#[derive(Debug)]
pub struct Sequencer {
    base: Seq,
    last: Seq,
    buffer: VecDeque<EventFrame>,
    capacity: usize,
}

impl Sequencer {
    /// A sequencer for `activation`, buffering up to `capacity` events.
    pub fn new(activation: u32, capacity: usize) -> Self {
        let base = Seq::first_of_activation(activation);
        Self {
            base,
            last: base,
            buffer: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
        }
    }

    /// The last sequence number assigned (the base if none yet).
    pub fn last(&self) -> Seq {
        self.last
    }

    /// Assigns the next number to a follower-visible event and buffers it.
    pub fn push(&mut self, event: Event) -> EventFrame {
        assert!(
            self.last.0 - self.base.0 < u64::from(u32::MAX),
            "sequence space of one activation exhausted"
        );
        self.last = self.last.next();
        let frame = EventFrame {
            seq: self.last,
            event,
        };
        if self.buffer.len() == self.capacity {
            self.buffer.pop_front();
        }
        self.buffer.push_back(frame.clone());
        frame
    }

    /// How a follower that has everything up to `since` should start, given `room` frames
    /// of queue space.
    pub fn start(&self, since: Option<Seq>, room: usize) -> Start {
        let Some(since) = since else {
            return Start::Reset;
        };
        if since < self.base || since > self.last {
            return Start::Reset;
        }
        let missing = (self.last.0 - since.0) as usize;
        if missing == 0 {
            return Start::Replay(Vec::new());
        }
        let first_buffered = self.buffer.front().map(|f| f.seq.0).unwrap_or(u64::MAX);
        if since.0 + 1 < first_buffered || missing >= room {
            return Start::Reset;
        }
        Start::Replay(
            self.buffer
                .iter()
                .filter(|f| f.seq > since)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(n: u32) -> Event {
        Event::Status {
            text: n.to_string(),
        }
    }

    #[test]
    fn replay_resumes_exactly_after_since() {
        let mut seq = Sequencer::new(2, 4);
        let base = Seq::first_of_activation(2);
        assert_eq!(seq.start(Some(base), 10), Start::Replay(vec![]));
        for n in 0..6 {
            seq.push(status(n));
        }
        // Buffer holds base+3..=base+6.
        let Start::Replay(frames) = seq.start(Some(Seq(base.0 + 4)), 10) else {
            panic!()
        };
        assert_eq!(
            frames.iter().map(|f| f.seq.0 - base.0).collect::<Vec<_>>(),
            vec![5, 6]
        );
        let Start::Replay(frames) = seq.start(Some(Seq(base.0 + 2)), 10) else {
            panic!()
        };
        assert_eq!(frames.len(), 4);
        // Table: (since relative to base, room) -> reset?
        for (since, room, reset) in [
            (1u64, 10usize, true),
            (0, 10, true),
            (7, 10, true),
            (6, 10, false),
            (3, 2, true),
        ] {
            let got = seq.start(Some(Seq(base.0 + since)), room);
            assert_eq!(
                got == Start::Reset,
                reset,
                "since {since} room {room}: {got:?}"
            );
        }
        assert_eq!(seq.start(None, 10), Start::Reset);
        assert_eq!(
            seq.start(Some(Seq(1)), 10),
            Start::Reset,
            "other activation"
        );
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
