//! Followers' streams: one pump task per connection reads the conversations' rings by
//! cursor and writes what each follower is missing, coalesced, to its QUIC stream.
//!
//! The conversation actor only appends to the ring and bumps its watch. The pump does
//! every per-follower step: collecting the frames a follower is missing and writing them
//! in one `write_chunks` call of shared, already-encoded bytes, so a follower that is
//! behind catches up in a few large writes instead of one write per event.
//!
//! **Why one task per connection, not per follower.** Every write to a stream wakes the
//! connection's QUIC driver, and Tokio runs a task woken this way next (its LIFO slot).
//! With one task per follower, the driver ran between two followers' writes and sent each
//! event to each follower in its own datagram even when a hundred followers shared the
//! connection. The pump writes to all of a connection's followers in one pass, so the
//! driver runs once after the pass and packs their frames into full datagrams.
//!
//! A follower whose stream is blocked (its reader stopped reading) is reset as soon as
//! the ring leaves it behind, so it holds no more than its stream's flow-control window;
//! the client resumes from its last sequence number.

use super::frames::{FINAL_FRAME_ACK_TIMEOUT_MS, FrameIoError};
use crate::actors::conversation::Attached;
use crate::actors::follow::{FollowerShared, READ_BATCH_BYTES_MAX, Read, Ring};
use crate::context::{Metrics, NodeContext};
use bytes::Bytes;
use futures::Stream;
use futures::task::{ArcWake, AtomicWaker};
use shoal_protocol::Seq;
use shoal_protocol::client::ServerFrame;
use shoal_protocol::frame::encode_frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::WatchStream;

/// Application error code of a follow stream reset because its reader fell behind.
pub const FOLLOWER_BEHIND_RESET_CODE: u32 = 1;

/// Why tailing ended.
#[derive(Debug, PartialEq, Eq)]
pub enum TailEnd {
    /// The activation ended and its last frame was written: finish the stream.
    Closed,
    /// The follower fell behind and was told to resync: finish the stream.
    CutOver,
    /// The reader went away, was reset for not reading, or tailing was cancelled.
    Gone,
}

/// What tailing hands back: the stream and how it ended.
pub type Tailed = (quinn::SendStream, Result<TailEnd, FrameIoError>);

/// The follows of one connection: hands each follow's stream to the connection's pump
/// (started with the first follow, ended when the connection's handles are gone and its
/// last follow ended). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Follows {
    pump: Arc<Mutex<Option<mpsc::Sender<Box<Job>>>>>,
}

/// A follow being tailed by a pump.
pub struct Tailing {
    done: oneshot::Receiver<Tailed>,
    cancel: Option<oneshot::Sender<()>>,
}

impl Tailing {
    /// Waits until tailing ends; `None` if the pump is gone (the stream with it).
    pub async fn ended(&mut self) -> Option<Tailed> {
        (&mut self.done).await.ok()
    }

    /// Stops tailing and gets the stream back (its end is [`TailEnd::Gone`] unless it had
    /// already ended otherwise).
    pub async fn cancel(mut self) -> Option<Tailed> {
        drop(self.cancel.take());
        self.done.await.ok()
    }
}

struct Job {
    send: quinn::SendStream,
    attached: Attached,
    cancel: oneshot::Receiver<()>,
    done: oneshot::Sender<Tailed>,
}

impl Follows {
    /// Starts writing `attached`'s events to `send` until the activation ends, the
    /// follower falls behind, the reader goes away or the returned handle cancels it.
    pub async fn tail(
        &self,
        send: quinn::SendStream,
        ctx: &Arc<NodeContext>,
        attached: Attached,
    ) -> Tailing {
        let (done_tx, done) = oneshot::channel();
        let (cancel, cancel_rx) = oneshot::channel();
        let mut job = Box::new(Job {
            send,
            attached,
            cancel: cancel_rx,
            done: done_tx,
        });
        // A pump ends only once every sender is gone, and this one holds one: a send
        // fails only if the pump panicked. Such a pump is replaced once; should that one
        // fail too, the job is dropped and the follow ends without an answer.
        for _ in 0..2 {
            let tx = {
                let mut pump = self.pump.lock().unwrap_or_else(|e| e.into_inner());
                pump.get_or_insert_with(|| {
                    // One job per open stream at most: the connection's stream limit
                    // bounds the queue. Jobs are boxed so the channel's first block
                    // (32 slots, allocated with it) costs 256 bytes per connection.
                    let capacity = ctx.config.limits.max_streams_per_connection.get() as usize;
                    let (tx, rx) = mpsc::channel(capacity);
                    // Unconstrained: a pass polls every follow's wake-ups, and Tokio's
                    // cooperative budget would otherwise turn a long pass into a busy loop.
                    tokio::spawn(tokio::task::unconstrained(Pump::new(ctx.clone(), rx)));
                    tx
                })
                .clone()
            };
            match tx.send(job).await {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    job = back;
                    let mut pump = self.pump.lock().unwrap_or_else(|e| e.into_inner());
                    if pump.as_ref().is_some_and(|p| p.same_channel(&tx)) {
                        *pump = None;
                    }
                }
            }
        }
        Tailing {
            done,
            cancel: Some(cancel),
        }
    }
}

/// The changes of one ring, shared by the slots that follow it. The ring owns the
/// sender and the slots hold the ring, so the changes never end while it is watched.
struct Watch {
    ring: Arc<Ring>,
    changes: WatchStream<u64>,
}

/// One follow's state inside the pump.
struct Slot {
    send: quinn::SendStream,
    ring: Arc<Ring>,
    cursor: Seq,
    follower: Arc<FollowerShared>,
    /// Encoded frames to write; those before `written` are written.
    pending: Vec<Bytes>,
    written: usize,
    /// Set when `pending` is the stream's last frame: how tailing ends once it is written.
    then: Option<TailEnd>,
    pushed_at: Option<std::time::Instant>,
    stopped:
        Pin<Box<dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>> + Send>>,
    cancel: oneshot::Receiver<()>,
    /// Whether `cancel` and `stopped` were polled once, so they wake the pump's control.
    control_armed: bool,
    done: oneshot::Sender<Tailed>,
    /// How long a blocked write may wait after the activation ended.
    closing: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The pump of one connection (a future run as its own task).
struct Pump {
    ctx: Arc<NodeContext>,
    /// `limits.follower_queue_frames`: how far behind a follow may fall.
    lag_max: u64,
    jobs: mpsc::Receiver<Box<Job>>,
    jobs_open: bool,
    slots: Vec<Slot>,
    watches: Vec<Watch>,
    control: Arc<Control>,
    control_waker: Waker,
}

/// Wakes the pump and marks that a follow's cancel or stop signal may have fired.
///
/// A pass runs for every event and touches every follow of the connection. Polling every
/// follow's cancel and stop signals in each pass cost about a tenth of the node's time
/// with a thousand follows per connection; they fire rarely, so they are polled only when
/// one of them woke the pump (and once when the follow starts, which arms them).
#[derive(Default)]
struct Control {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Control {
    fn wake_by_ref(control: &Arc<Self>) {
        control.woken.store(true, Ordering::Release);
        control.task.wake();
    }
}

/// What one pass knows, shared by its follows.
struct Pass<'a> {
    ctx: &'a NodeContext,
    lag_max: u64,
    /// A cancel or stop signal fired since the last pass.
    control_woken: bool,
    control: &'a Waker,
    /// When the pass started (for the fan-out delay metric).
    now: std::time::Instant,
}

impl Pump {
    fn new(ctx: Arc<NodeContext>, jobs: mpsc::Receiver<Box<Job>>) -> Self {
        let control = Arc::new(Control::default());
        Pump {
            lag_max: u64::from(ctx.config.limits.follower_queue_frames.get()),
            ctx,
            jobs,
            jobs_open: true,
            slots: Vec::new(),
            watches: Vec::new(),
            control_waker: futures::task::waker(control.clone()),
            control,
        }
    }

    fn add(&mut self, job: Box<Job>) {
        let Job {
            send,
            attached,
            cancel,
            done,
        } = *job;
        let Attached {
            ring,
            cursor,
            prelude,
            follower,
        } = attached;
        if !self.watches.iter().any(|w| Arc::ptr_eq(&w.ring, &ring)) {
            self.watches.push(Watch {
                changes: WatchStream::from_changes(ring.subscribe()),
                ring: ring.clone(),
            });
        }
        self.slots.push(Slot {
            stopped: Box::pin(send.stopped()),
            send,
            ring,
            cursor,
            follower,
            pending: prelude.into_iter().collect(),
            written: 0,
            then: None,
            pushed_at: None,
            cancel,
            control_armed: false,
            done,
            closing: None,
        });
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        while this.jobs_open {
            match this.jobs.poll_recv(cx) {
                Poll::Ready(Some(job)) => this.add(job),
                Poll::Ready(None) => this.jobs_open = false,
                Poll::Pending => break,
            }
        }
        // Mark every change seen before reading, so one that lands after the reads wakes
        // the pump again.
        for watch in &mut this.watches {
            while let Poll::Ready(Some(_)) = Pin::new(&mut watch.changes).poll_next(cx) {}
        }
        this.control.task.register(cx.waker());
        let pass = Pass {
            ctx: &this.ctx,
            lag_max: this.lag_max,
            control_woken: this.control.woken.swap(false, Ordering::AcqRel),
            control: &this.control_waker,
            now: std::time::Instant::now(),
        };
        let followed = this.slots.len();
        let mut i = 0;
        while i < this.slots.len() {
            match this.slots[i].step(cx, &pass) {
                Poll::Pending => i += 1,
                Poll::Ready(end) => {
                    let slot = this.slots.swap_remove(i);
                    let _ = slot.done.send((slot.send, end));
                }
            }
        }
        if this.slots.len() < followed {
            let slots = &this.slots;
            this.watches
                .retain(|w| slots.iter().any(|s| Arc::ptr_eq(&s.ring, &w.ring)));
        }
        if !this.jobs_open && this.slots.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Slot {
    /// Writes and reads until this follow waits (`Pending`, with wake-ups registered) or
    /// ends.
    fn step(&mut self, cx: &mut Context<'_>, pass: &Pass) -> Poll<Result<TailEnd, FrameIoError>> {
        if (pass.control_woken || !self.control_armed) && self.cancel_or_stop(pass.control) {
            return Poll::Ready(Ok(TailEnd::Gone));
        }
        self.control_armed = true;
        loop {
            if self.written < self.pending.len() {
                let polled = {
                    let write = self.send.write_chunks(&mut self.pending[self.written..]);
                    std::pin::pin!(write).poll(cx)
                };
                match polled {
                    Poll::Ready(Ok(w)) => {
                        self.written += w.chunks;
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(FrameIoError::Stream(e.to_string())));
                    }
                    Poll::Pending => return self.blocked(cx, pass),
                }
            }
            if !self.pending.is_empty() {
                self.pending.clear();
                self.written = 0;
                self.follower.advance(self.cursor);
                if let Some(at) = self.pushed_at.take() {
                    let fanout = &pass.ctx.metrics.histograms().fanout_seconds;
                    fanout.observe_duration(pass.now.saturating_duration_since(at));
                }
            }
            if let Some(end) = self.then.take() {
                return Poll::Ready(Ok(end));
            }
            let read = self.ring.read(
                self.cursor,
                pass.lag_max,
                READ_BATCH_BYTES_MAX,
                &mut self.pending,
            );
            match read {
                Read::Frames { through, oldest_at } => {
                    self.pushed_at = oldest_at;
                    self.cursor = through;
                }
                Read::Wait => return Poll::Pending,
                Read::Behind => {
                    tracing::debug!(follower = self.follower.id, user = %self.follower.user, "follower fell behind; cut over to resync");
                    Metrics::inc(&pass.ctx.metrics.follower_resyncs);
                    let resync = encode_frame(&ServerFrame::Resync {
                        reason: "follower fell behind the live stream; follow again from your last sequence number"
                            .into(),
                    })
                    .map_err(|e| FrameIoError::Stream(e.to_string()));
                    self.pending = vec![resync?];
                    self.then = Some(TailEnd::CutOver);
                }
                Read::Closed(last) => {
                    self.pending = vec![last];
                    self.then = Some(TailEnd::Closed);
                }
            }
        }
    }

    /// Whether the handle cancelled this follow or its reader stopped the stream (or the
    /// connection closed). Polled with the pump's control waker: see [`Control`].
    fn cancel_or_stop(&mut self, control: &Waker) -> bool {
        let mut cx = Context::from_waker(control);
        Pin::new(&mut self.cancel).poll(&mut cx).is_ready()
            || self.stopped.as_mut().poll(&mut cx).is_ready()
    }

    /// The stream's flow control holds the write: reset a reader the ring left behind, and
    /// give up on one that has not read the activation's end for a while.
    fn blocked(
        &mut self,
        cx: &mut Context<'_>,
        pass: &Pass,
    ) -> Poll<Result<TailEnd, FrameIoError>> {
        if self.then.is_some() {
            return Poll::Pending; // the last frame: written when the reader reads
        }
        if self.ring.is_behind(self.cursor, pass.lag_max) {
            tracing::debug!(follower = self.follower.id, user = %self.follower.user, "follower stopped reading; resetting its stream");
            Metrics::inc(&pass.ctx.metrics.follower_resyncs);
            let _ = self.send.reset(FOLLOWER_BEHIND_RESET_CODE.into());
            return Poll::Ready(Ok(TailEnd::Gone));
        }
        if self.ring.is_closed() {
            let closing = self.closing.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep(Duration::from_millis(
                    FINAL_FRAME_ACK_TIMEOUT_MS,
                )))
            });
            if closing.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(TailEnd::Gone));
            }
        }
        Poll::Pending
    }
}
