//! One upstream follow per conversation and connection, shared by the client's follows.
//!
//! A web gateway follows one conversation for each of its viewers. Without sharing, the
//! node sends every event once per viewer over the same connection, and both ends pay
//! QUIC's per-stream work for each copy. With it, the second [`FollowStream`] of a
//! conversation on a client starts a [`Hub`]: a task that follows the conversation once
//! (with all of [`Follower`]'s resume, move and reconnect handling) into a bounded [`Ring`]
//! of delivered events. Every follow of that conversation on the same connection and share
//! token reads the ring by index. A follow that is the only one of its conversation
//! follows alone, as without sharing (a hub would only add a hop).
//!
//! Sharing never changes what a follow yields:
//! * a follow joins a hub only at a position that continues exactly where it is: the
//!   event right after its `since`, a `Reset` (a new base), or the ring's end when the
//!   ring has not reached `since` yet; each reader keeps a [`SeqTracker`], so what it
//!   already has is skipped and a gap sends it back to following alone;
//! * one that cannot join yet (it starts from an older point, or needs a snapshot the ring
//!   no longer holds), and the follow that was alone before the hub started, follow on
//!   their own and join on the first event they deliver that the ring can continue from;
//! * one that falls out of the ring (its reader is slower than the ring is long) follows on
//!   its own again from its last delivered event, exactly as a follow the node cut for
//!   being behind;
//! * when the hub's follow gives up, its error ends every follow reading it.
//!
//! The hub stops following when its last follow is dropped.
//!
//! [`FollowStream`]: crate::FollowStream
//! [`Follower`]: crate::follow::Follower

use crate::ClientError;
use crate::follow::{Follower, SeqTracker, Verdict};
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{ConversationId, Seq};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// Most events a hub keeps for follows that read behind it or join late.
pub const HUB_RING_FRAMES_MAX: usize = 1_024;
/// Most encoded bytes of events a hub keeps (its newest event is kept whatever its size).
pub const HUB_RING_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Keys a client tracks before it first prunes those no follow holds any more.
const SLOTS_PRUNE_MIN: usize = 64;

/// The follows one upstream follow can serve: same conversation, same share token (the
/// connection, and so the user, is the client's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HubKey {
    pub(crate) conversation: ConversationId,
    pub(crate) share_token: Option<String>,
}

/// A client's hubs, by what they follow. Held weakly: a key's [`Slot`] lives as long as
/// one of its follows, and its hub as long as a follow reads it.
#[derive(Default)]
pub(crate) struct Hubs {
    slots: Mutex<Slots>,
}

/// The slots by key, pruned of dead ones whenever they doubled since the last pruning.
#[derive(Default)]
struct Slots {
    by_key: HashMap<HubKey, Weak<Slot>>,
    prune_at: usize,
}

/// What the follows of one key share: held by each of them (its [`Presence`]), so a
/// follow looks for the hub without a map lookup.
#[derive(Default)]
pub(crate) struct Slot {
    /// The running hub, if any.
    hub: Mutex<Weak<Hub>>,
}

/// A follow's share in its key's [`Slot`]: while another follow holds one, a hub is worth
/// starting.
pub(crate) type Presence = Arc<Slot>;

impl Hubs {
    /// How a follow of `key` from `since` starts: it joins the running hub if that can
    /// continue from `since`; else, when another follow of the key lives (and so sharing
    /// pays), it starts a hub from `since`. `None`: follow alone. Either way the follow
    /// keeps the [`Presence`] while it lives.
    /// `follower` makes the hub's follower (from `since`) if one starts.
    pub(crate) fn subscribe(
        &self,
        key: &HubKey,
        since: Option<Seq>,
        follower: impl FnOnce() -> Follower,
    ) -> (Option<Subscription>, Presence) {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.by_key.get(key).and_then(Weak::upgrade) {
            let mut hub = lock(&slot.hub);
            let subscription = match hub.upgrade() {
                Some(running) if !running.ended() => running.join(since),
                _ => {
                    let started = Hub::start(follower(), since);
                    *hub = Arc::downgrade(&started);
                    started.join(since)
                }
            };
            drop(hub);
            return (subscription, slot);
        }
        if slots.by_key.len() >= slots.prune_at {
            slots.by_key.retain(|_, slot| slot.strong_count() > 0);
            slots.prune_at = (slots.by_key.len() * 2).max(SLOTS_PRUNE_MIN);
        }
        let slot = Arc::new(Slot::default());
        slots.by_key.insert(key.clone(), Arc::downgrade(&slot));
        (None, slot)
    }
}

impl Slot {
    /// Joins the running hub right after `delivered`, if it can continue from there: how a
    /// follow reading alone comes to the hub.
    pub(crate) fn rejoin(&self, delivered: Seq) -> Option<Subscription> {
        let hub = lock(&self.hub).upgrade()?;
        hub.join(Some(delivered))
    }
}

/// One upstream follow and the events it delivered.
pub(crate) struct Hub {
    ring: Arc<Mutex<Ring>>,
    driver: tokio::task::AbortHandle,
}

impl Hub {
    /// Starts following with `follower` (which starts from `since`).
    fn start(follower: Follower, since: Option<Seq>) -> Arc<Hub> {
        let ring = Arc::new(Mutex::new(Ring::new(since)));
        let driver = tokio::spawn(drive(follower, ring.clone())).abort_handle();
        Arc::new(Hub { ring, driver })
    }

    fn ended(&self) -> bool {
        lock(&self.ring).end.is_some()
    }

    fn join(self: Arc<Self>, since: Option<Seq>) -> Option<Subscription> {
        let (index, id) = {
            let mut ring = lock(&self.ring);
            let index = ring.join(since)?;
            ring.next_subscription += 1;
            (index, ring.next_subscription)
        };
        Some(Subscription {
            hub: self,
            next: index,
            tracker: SeqTracker::new(since),
            id,
        })
    }
}

impl Drop for Hub {
    /// The last follow is gone: stop following (dropping the stream tells the node).
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Follows into the ring until the follower gives up, waking the follows that wait.
async fn drive(mut follower: Follower, ring: Arc<Mutex<Ring>>) {
    // Taken out of the ring each event and woken outside its lock; reused.
    let mut wakers: Vec<Waker> = Vec::new();
    loop {
        let item = follower.next_item().await;
        let ended = {
            let mut ring = lock(&ring);
            match item {
                Some(Ok(frame)) => ring.push(frame, follower.last_frame_bytes()),
                Some(Err(err)) => ring.end = Some(err),
                None => {
                    ring.end = Some(ClientError::ConnectionLost(
                        "the shared follow ended".to_owned(),
                    ))
                }
            }
            wakers.extend(ring.wakers.drain().map(|(_, waker)| waker));
            ring.end.is_some()
        };
        wakers.drain(..).for_each(Waker::wake);
        if ended {
            return;
        }
    }
}

/// The events a hub delivered, oldest evicted first, indexed from 0 for its first event.
pub(crate) struct Ring {
    /// Each event with its encoded size.
    frames: VecDeque<(EventFrame, usize)>,
    /// Index of `frames[0]`.
    start: u64,
    /// The sequence number delivered right before `frames[0]` (the follow's `since` while
    /// nothing was evicted): a follow from there reads `frames[0]` next.
    before: Option<Seq>,
    bytes: usize,
    /// The upstream follow gave up with this error.
    end: Option<ClientError>,
    /// Follows waiting for the next event, by subscription.
    wakers: HashMap<u64, Waker>,
    /// The next subscription's id.
    next_subscription: u64,
}

impl Ring {
    pub(crate) fn new(since: Option<Seq>) -> Self {
        Ring {
            frames: VecDeque::new(),
            start: 0,
            before: since,
            bytes: 0,
            end: None,
            wakers: HashMap::new(),
            next_subscription: 0,
        }
    }

    /// Appends `frame` of `size` encoded bytes, evicting the oldest events beyond the
    /// bounds (never the newest).
    pub(crate) fn push(&mut self, frame: EventFrame, size: usize) {
        self.bytes += size;
        self.frames.push_back((frame, size));
        while self.frames.len() > 1
            && (self.frames.len() > HUB_RING_FRAMES_MAX || self.bytes > HUB_RING_BYTES_MAX)
        {
            let Some((evicted, size)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.before = Some(evicted.seq);
            self.start += 1;
        }
    }

    /// Where a follow that has delivered up to `since` continues: right after `since`; at
    /// the ring's end when the ring has not reached `since` yet (it reads what comes as
    /// duplicates up to `since`); or at the newest `Reset` past it (a snapshot is a new
    /// base, as the node's own resync).
    pub(crate) fn join(&self, since: Option<Seq>) -> Option<u64> {
        match since {
            // From a snapshot, with nothing evicted: the ring's first event is one.
            None if self.before.is_none() => return Some(self.start),
            None => {}
            Some(since) => {
                if let Some(index) = self.after(since) {
                    return Some(index);
                }
                let newest = self
                    .frames
                    .back()
                    .map_or(self.before, |(frame, _)| Some(frame.seq));
                if newest.is_some_and(|newest| newest < since) {
                    return Some(self.start + self.frames.len() as u64);
                }
            }
        }
        let newest_reset = self.frames.iter().rposition(|(frame, _)| {
            matches!(frame.event, Event::Reset { .. }) && since.is_none_or(|s| frame.seq > s)
        })?;
        Some(self.start + newest_reset as u64)
    }

    /// The index right after the event `delivered`, if the ring holds it (or it is the
    /// event right before the ring).
    pub(crate) fn after(&self, delivered: Seq) -> Option<u64> {
        if self.before == Some(delivered) {
            return Some(self.start);
        }
        let position = self
            .frames
            .binary_search_by_key(&delivered, |(frame, _)| frame.seq)
            .ok()?;
        Some(self.start + position as u64 + 1)
    }
}

/// What a follow reading a hub gets next.
pub(crate) enum Read {
    Frame(EventFrame),
    /// The ring evicted the next event (or skips one): follow alone from the last
    /// delivered one.
    Behind,
    /// The hub's follow gave up with this error.
    End(ClientError),
}

/// A follow's place in a hub.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    /// Index of the next event to read.
    next: u64,
    /// What the follow delivered: events it already has are skipped, and one that would
    /// leave a gap makes it follow alone.
    tracker: SeqTracker,
    /// Its key in the ring's wakers.
    id: u64,
}

impl Subscription {
    pub(crate) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        let mut ring = lock(&self.hub.ring);
        let Some(offset) = self.next.checked_sub(ring.start) else {
            return Poll::Ready(Read::Behind);
        };
        for (frame, _) in ring.frames.iter().skip(offset as usize) {
            self.next += 1;
            match self.tracker.observe(frame) {
                Verdict::Deliver => return Poll::Ready(Read::Frame(frame.clone())),
                Verdict::Duplicate => continue,
                Verdict::Gap => return Poll::Ready(Read::Behind),
            }
        }
        if let Some(err) = &ring.end {
            return Poll::Ready(Read::End(err.clone()));
        }
        match ring.wakers.entry(self.id) {
            Entry::Occupied(registered) if registered.get().will_wake(cx.waker()) => {}
            entry => {
                entry.insert_entry(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Subscription {
    /// A follow dropped while waiting leaves no waker behind (a quiet conversation's hub
    /// may see many follows come and go before its next event).
    fn drop(&mut self) {
        lock(&self.hub.ring).wakers.remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_frames::{reset, status};

    fn ring_with(since: Option<Seq>, frames: impl IntoIterator<Item = EventFrame>) -> Ring {
        let mut ring = Ring::new(since);
        for frame in frames {
            let size = shoal_protocol::frame::encode_frame(&frame).map_or(0, |b| b.len());
            ring.push(frame, size);
        }
        ring
    }

    #[test]
    fn a_follow_joins_right_after_what_it_delivered() {
        let ring = ring_with(None, [reset(10), status(11), status(12)]);
        // From the start (a snapshot): the ring's first event, the reset.
        assert_eq!(ring.join(None), Some(0));
        assert_eq!(ring.join(Some(Seq(10))), Some(1));
        assert_eq!(ring.join(Some(Seq(12))), Some(3));
        // Ahead of the ring: at its end, to read what comes until 13 as duplicates.
        assert_eq!(ring.join(Some(Seq(13))), Some(3));
    }

    #[test]
    fn a_follow_from_an_older_point_joins_only_at_a_reset() {
        let ring = ring_with(Some(Seq(20)), [status(21), reset(40), status(41)]);
        assert_eq!(ring.join(Some(Seq(20))), Some(0), "the ring's own since");
        assert_eq!(ring.join(Some(Seq(5))), Some(1), "the reset is a new base");
        assert_eq!(
            ring.join(None),
            Some(1),
            "a snapshot follow starts at the reset"
        );
        let no_reset = ring_with(Some(Seq(20)), [status(21), status(22)]);
        assert_eq!(no_reset.join(Some(Seq(5))), None);
        assert_eq!(no_reset.join(None), None, "a snapshot follow needs a reset");
    }

    #[test]
    fn the_ring_evicts_the_oldest_past_its_bound_and_keeps_the_join_point() {
        let frames = (1..=HUB_RING_FRAMES_MAX as u64 + 2).map(status);
        let ring = ring_with(Some(Seq(0)), frames);
        assert_eq!(ring.frames.len(), HUB_RING_FRAMES_MAX);
        assert_eq!(ring.start, 2);
        assert_eq!(ring.before, Some(Seq(2)));
        assert_eq!(ring.join(Some(Seq(0))), None, "evicted");
        assert_eq!(ring.join(Some(Seq(1))), None, "evicted");
        assert_eq!(ring.join(Some(Seq(2))), Some(2));
        assert_eq!(ring.after(Seq(3)), Some(3));
        assert_eq!(
            ring.start + ring.frames.len() as u64,
            HUB_RING_FRAMES_MAX as u64 + 2
        );
    }

    #[test]
    fn the_ring_is_bounded_by_bytes() {
        let big = |seq: u64| EventFrame {
            seq: Seq(seq),
            event: Event::Status {
                text: "x".repeat(HUB_RING_BYTES_MAX / 3),
            },
        };
        let ring = ring_with(None, [big(1), big(2), big(3)]);
        assert_eq!(ring.frames.len(), 2);
        assert!(ring.bytes <= HUB_RING_BYTES_MAX);
        assert_eq!(ring.before, Some(Seq(1)));
    }

    #[test]
    fn slots_of_dropped_follows_are_pruned() {
        let hubs = Hubs::default();
        let key = |n: u64| HubKey {
            conversation: ConversationId::new(shoal_protocol::ShardId(0), u128::from(n)),
            share_token: None,
        };
        // Each the only follow of its key: it follows alone, no hub starts.
        let alone = || -> Follower { panic!("a follow alone started a hub") };
        let held: Vec<Presence> = (0..10)
            .map(|n| hubs.subscribe(&key(n), None, alone).1)
            .collect();
        for n in 10..SLOTS_PRUNE_MIN as u64 * 4 {
            drop(hubs.subscribe(&key(n), None, alone));
        }
        let slots = lock(&hubs.slots);
        assert!(
            slots.by_key.len() <= SLOTS_PRUNE_MIN * 2,
            "{}",
            slots.by_key.len()
        );
        assert!(
            (0..10).all(|n| slots.by_key.contains_key(&key(n))),
            "live slots stay"
        );
        drop(held);
    }

    #[tokio::test]
    async fn a_follow_waits_with_one_waker_and_leaves_none_when_dropped() {
        let ring = Arc::new(Mutex::new(ring_with(None, [reset(1)])));
        let driver = tokio::spawn(async {}).abort_handle();
        let hub = Arc::new(Hub { ring, driver });
        let mut subscription = hub.clone().join(None).expect("joins at the reset");
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(matches!(
            subscription.poll_read(&mut cx),
            Poll::Ready(Read::Frame(_))
        ));
        for _ in 0..3 {
            assert!(subscription.poll_read(&mut cx).is_pending());
        }
        assert_eq!(
            lock(&hub.ring).wakers.len(),
            1,
            "polled three times, one waker"
        );
        drop(subscription);
        assert!(lock(&hub.ring).wakers.is_empty());
    }
}
