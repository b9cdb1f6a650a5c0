//! Following a conversation with automatic resume.
//!
//! [`SeqTracker`] is the sans-I/O core: it decides, per received event, whether to deliver
//! it, drop it as a duplicate, or re-follow because of a gap. [`FollowStream`] wraps it
//! with the I/O: it opens `Follow` requests, obeys `Resync` and `Moved`, and reconnects
//! with exponential backoff, walking the profile's addresses, until a [`Streak`] of
//! failures spends [`RETRY_BUDGET_MS`].

use crate::ClientError;
use crate::connection::{FrameReader, Link, REQUEST_TIMEOUT_MS, open_request};
use crate::hub::{HubKey, Hubs, Presence, Read, Subscription};
use crate::retry::RETRY_BUDGET_MS;
use futures::Stream;
use futures::future::BoxFuture;
use shoal_protocol::client::{ClientRequest, ServerFrame};
use shoal_protocol::transcript::{Event, EventFrame};
use shoal_protocol::{ConversationId, ErrorCode, Seq};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Consecutive reconnects or re-follows without a delivered event before a follow gives up
/// (it also gives up once such a streak has lasted [`RETRY_BUDGET_MS`]).
pub const FOLLOW_RECONNECT_ATTEMPTS_MAX: u32 = 20;
/// First reconnect backoff, in ms (doubles per consecutive failure).
pub const FOLLOW_BACKOFF_MIN_MS: u64 = 100;
/// Largest reconnect backoff, in ms.
pub const FOLLOW_BACKOFF_MAX_MS: u64 = 5_000;

/// What to do with a received event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New and in order: hand it to the caller.
    Deliver,
    /// Already delivered (or older): drop it.
    Duplicate,
    /// Events between the last delivered one and this one are missing: re-follow from the
    /// last delivered seq so the server replays them or resets.
    Gap,
}

/// Sequence bookkeeping of a follower: no duplicate, no out-of-order event, no gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqTracker {
    last: Option<Seq>,
}

impl SeqTracker {
    /// A tracker that has already seen everything up to `since`.
    pub(crate) fn new(since: Option<Seq>) -> Self {
        SeqTracker { last: since }
    }

    /// The last delivered sequence number (or the starting `since`).
    pub(crate) fn last(&self) -> Option<Seq> {
        self.last
    }

    /// Classifies `frame` and, when it is delivered, advances past it.
    ///
    /// A `Reset` newer than the last delivered event becomes the new base whatever the
    /// distance; any other event must be exactly the next number. The first event of a
    /// follow that started without `since` is the base too.
    pub(crate) fn observe(&mut self, frame: &EventFrame) -> Verdict {
        let verdict = match self.last {
            None => Verdict::Deliver,
            Some(last) if frame.seq <= last => Verdict::Duplicate,
            Some(_) if matches!(frame.event, Event::Reset { .. }) => Verdict::Deliver,
            Some(last) if frame.seq == last.next() => Verdict::Deliver,
            Some(_) => Verdict::Gap,
        };
        if verdict == Verdict::Deliver {
            self.last = Some(frame.seq);
        }
        verdict
    }
}

/// The wait before reconnect attempt number `failures` (1-based), in ms.
pub(crate) fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (FOLLOW_BACKOFF_MIN_MS << doublings).min(FOLLOW_BACKOFF_MAX_MS)
}

/// Consecutive follow attempts that delivered no event, bounded by
/// [`FOLLOW_RECONNECT_ATTEMPTS_MAX`] and by [`RETRY_BUDGET_MS`] since the first of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streak {
    failures: u32,
    started: Option<Instant>,
}

impl Streak {
    /// No failure yet.
    pub(crate) fn new() -> Self {
        Streak {
            failures: 0,
            started: None,
        }
    }

    /// An event was delivered: the next failure starts a new streak.
    pub(crate) fn progress(&mut self) {
        *self = Streak::new();
    }

    /// Failures in this streak.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure at `now`. Returns the wait before the next attempt, in ms, or
    /// `None` to give up (too many attempts, or the next would start past the budget).
    /// With `first_is_immediate` (the server asked to follow again), the first failure of
    /// a streak waits nothing.
    pub(crate) fn next_wait_ms(&mut self, now: Instant, first_is_immediate: bool) -> Option<u64> {
        let started = *self.started.get_or_insert(now);
        self.failures = self.failures.saturating_add(1);
        if self.failures >= FOLLOW_RECONNECT_ATTEMPTS_MAX {
            return None;
        }
        let wait_ms = match (first_is_immediate, self.failures) {
            (true, 1) => 0,
            (true, failures) => backoff_ms(failures - 1),
            (false, failures) => backoff_ms(failures),
        };
        let elapsed_ms =
            u64::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u64::MAX);
        (elapsed_ms.saturating_add(wait_ms) <= RETRY_BUDGET_MS).then_some(wait_ms)
    }
}

/// The events of a followed conversation (follower view), across reconnects and moves.
///
/// Never yields a duplicate or an out-of-order sequence number. Reconnects walk the
/// profile's addresses (starting from the one that last worked), so a follower whose node
/// died resumes on another node, which serves it or answers `Moved` to the host; either way
/// it resumes from the last delivered seq. Yields `Err` only on a non-retryable error (not
/// found, forbidden, unauthorized…) or when consecutive failures reach
/// [`FOLLOW_RECONNECT_ATTEMPTS_MAX`] or last [`RETRY_BUDGET_MS`], and ends right after it.
/// Dropping the stream stops following.
///
/// Follows of the same conversation on one [`Client`](crate::Client) (and share token)
/// share one follow stream to the node once there are two of them, unless the client was
/// connected with [`ConnectOptions::follow_separately`](crate::ConnectOptions); what each
/// yields is the same either way (see [`HUB_RING_FRAMES_MAX`](crate::HUB_RING_FRAMES_MAX)).
pub struct FollowStream {
    state: State,
    last_seq: Option<Seq>,
    /// What is followed: to start a follower or join a hub.
    origin: Origin,
}

type FollowItem = Result<EventFrame, ClientError>;

/// Who holds the follow.
enum State {
    /// Not polled yet: nothing is opened before the first poll.
    New,
    /// Reading the events of the follow the client's other follows of this conversation
    /// share.
    Shared(Subscription),
    /// Following alone: live events are read straight from its open follow stream.
    Live(Box<Follower>),
    /// Following alone, opening, re-following or backing off: the follower comes back with
    /// the item.
    Recovering(BoxFuture<'static, (Option<FollowItem>, Box<Follower>)>),
    /// An error was yielded; the stream is over.
    Finished,
}

/// What a follow follows, and where it may share.
struct Origin {
    /// The client's own connection.
    home: Arc<Link>,
    key: HubKey,
    /// The client's hubs; `None`: this follow always follows alone.
    hubs: Option<Arc<Hubs>>,
    /// Tells the client's later follows of the conversation that this one lives.
    presence: Option<Presence>,
}

impl Origin {
    /// Joins or starts the hub from `since`, or follows alone (see [`Hubs::subscribe`]).
    fn start(&mut self, since: Option<Seq>) -> State {
        let Some(hubs) = &self.hubs else {
            return State::Live(Box::new(self.follower(since)));
        };
        let (subscription, presence) = hubs.subscribe(&self.key, since, || self.follower(since));
        self.presence = Some(presence);
        match subscription {
            Some(subscription) => State::Shared(subscription),
            None => State::Live(Box::new(self.follower(since))),
        }
    }

    /// A follower of this follow's conversation from `since`, on its own stream.
    fn follower(&self, since: Option<Seq>) -> Follower {
        Follower::new(
            self.home.clone(),
            self.key.conversation,
            since,
            self.key.share_token.clone(),
        )
    }
}

impl FollowStream {
    pub(crate) fn new(
        home: Arc<Link>,
        hubs: Option<Arc<Hubs>>,
        conversation: ConversationId,
        since: Option<Seq>,
        share_token: Option<String>,
    ) -> Self {
        FollowStream {
            state: State::New,
            last_seq: since,
            origin: Origin {
                home,
                key: HubKey {
                    conversation,
                    share_token,
                },
                hubs,
                presence: None,
            },
        }
    }

    /// The sequence number of the last event yielded (or the `since` it started from).
    pub fn last_seq(&self) -> Option<Seq> {
        self.last_seq
    }

    /// Whether this follow reads the stream it shares with the client's other follows of
    /// the conversation (rather than one of its own) right now.
    pub fn is_shared(&self) -> bool {
        matches!(self.state, State::Shared(_))
    }
}

impl Stream for FollowStream {
    type Item = Result<EventFrame, ClientError>;

    /// Shared events are read from the hub's ring; live events of a follow of its own
    /// straight from its stream; only opening, re-following and backing off run as a
    /// (boxed) future.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = loop {
            let follower = match &mut this.state {
                State::New => {
                    this.state = this.origin.start(this.last_seq);
                    continue;
                }
                State::Finished => break None,
                State::Shared(subscription) => {
                    match std::task::ready!(subscription.poll_read(cx)) {
                        Read::Frame(frame) => {
                            this.last_seq = Some(frame.seq);
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        Read::Behind => {
                            // As a follow the node cut for being behind: on its own, from the
                            // last delivered event.
                            let follower = this.origin.follower(this.last_seq);
                            this.state = State::Live(Box::new(follower));
                            continue;
                        }
                        Read::End(err) => {
                            this.state = State::Finished;
                            break Some(Err(err));
                        }
                    }
                }
                State::Recovering(recovering) => {
                    let (item, follower) = std::task::ready!(recovering.as_mut().poll(cx));
                    this.state = State::Live(follower);
                    break item;
                }
                State::Live(follower) => follower,
            };
            if follower.finished {
                break None;
            }
            let outcome = match follower.reader.as_mut() {
                Some(reader) => {
                    let frame = std::task::ready!(reader.poll_next::<ServerFrame>(cx));
                    match follower.classify(frame) {
                        Step::Deliver(frame) => break Some(Ok(frame)),
                        Step::Skip => continue,
                        Step::Refollow(outcome) => Some(outcome),
                    }
                }
                None => None,
            };
            // Hand the follower to a recovery future (a zero-sized placeholder meanwhile).
            let placeholder = State::Recovering(Box::pin(std::future::pending()));
            if let State::Live(follower) = std::mem::replace(&mut this.state, placeholder) {
                this.state = State::Recovering(Box::pin(follower.recovered(outcome)));
            }
        };
        if let Some(Ok(frame)) = &item {
            this.last_seq = Some(frame.seq);
            // Following alone: to the hub as soon as it can continue from this event.
            if let Some(presence) = &this.origin.presence
                && let Some(subscription) = presence.rejoin(frame.seq)
            {
                this.state = State::Shared(subscription);
            }
        }
        Poll::Ready(item)
    }
}

/// The I/O half of a follow.
pub(crate) struct Follower {
    /// The client's own connection.
    home: Arc<Link>,
    /// Follows with this share token (a viewer or editor).
    share_token: Option<String>,
    /// A connection to the node the conversation moved to, if it moved; it falls back to
    /// the home addresses if that node dies.
    moved: Option<Arc<Link>>,
    conversation: ConversationId,
    tracker: SeqTracker,
    /// The open follow stream, if any.
    reader: Option<FrameReader>,
    /// Consecutive reconnects or re-follows without a delivered event.
    streak: Streak,
    /// An error was yielded; the stream is over.
    finished: bool,
}

impl Follower {
    /// A follower from `since` that has not opened anything yet.
    pub(crate) fn new(
        home: Arc<Link>,
        conversation: ConversationId,
        since: Option<Seq>,
        share_token: Option<String>,
    ) -> Self {
        Follower {
            home,
            share_token,
            moved: None,
            conversation,
            tracker: SeqTracker::new(since),
            reader: None,
            streak: Streak::new(),
            finished: false,
        }
    }

    /// The next event to yield, following again as needed; `None` after an error was
    /// returned.
    pub(crate) async fn next_item(&mut self) -> Option<Result<EventFrame, ClientError>> {
        loop {
            if self.finished {
                return None;
            }
            let Some(reader) = self.reader.as_mut() else {
                match self.open().await {
                    Ok(reader) => self.reader = Some(reader),
                    Err(err) => {
                        if let Some(err) = self.failed(err).await {
                            return Some(Err(err));
                        }
                    }
                }
                continue;
            };
            let frame = reader.next::<ServerFrame>().await;
            match self.classify(frame) {
                Step::Deliver(frame) => return Some(Ok(frame)),
                Step::Skip => continue,
                Step::Refollow(outcome) => {
                    if let Some(err) = self.recover(outcome).await {
                        return Some(Err(err));
                    }
                }
            }
        }
    }

    /// Encoded bytes of the last event read (0 before the first).
    pub(crate) fn last_frame_bytes(&self) -> usize {
        self.reader
            .as_ref()
            .map_or(0, FrameReader::last_frame_bytes)
    }

    /// Waits as `outcome` asks (if any), then opens a follow stream and reads until the
    /// next event to yield; hands itself back with it.
    async fn recovered(
        mut self: Box<Self>,
        outcome: Option<Refollow>,
    ) -> (Option<FollowItem>, Box<Self>) {
        if let Some(outcome) = outcome
            && let Some(err) = self.recover(outcome).await
        {
            return (Some(Err(err)), self);
        }
        let item = self.next_item().await;
        (item, self)
    }

    /// What to do with what the open follow stream gave.
    fn classify(&mut self, frame: Result<Option<ServerFrame>, ClientError>) -> Step {
        let outcome = match frame {
            Ok(Some(ServerFrame::Event(frame))) => match self.tracker.observe(&frame) {
                Verdict::Deliver => {
                    self.streak.progress();
                    return Step::Deliver(frame);
                }
                Verdict::Duplicate => return Step::Skip,
                Verdict::Gap => Refollow::Now(format!(
                    "gap after seq {:?}: got {}",
                    self.tracker.last().map(|s| s.0),
                    frame.seq
                )),
            },
            Ok(Some(ServerFrame::Resync { reason })) => Refollow::Now(format!("resync: {reason}")),
            Ok(Some(ServerFrame::Moved { to })) => {
                self.move_to(to.clone());
                Refollow::Now(format!("moved to {to}"))
            }
            Ok(Some(ServerFrame::Error(err))) => Refollow::AfterError(ClientError::Server(err)),
            Ok(Some(
                ServerFrame::Reply(_) | ServerFrame::Accepted { .. } | ServerFrame::Queued { .. },
            )) => Refollow::AfterError(ClientError::Protocol(
                "the node answered a follow with a unary reply".to_owned(),
            )),
            Ok(None) => Refollow::AfterError(ClientError::ConnectionLost(
                "the node ended the follow stream".to_owned(),
            )),
            Err(err) => Refollow::AfterError(err),
        };
        Step::Refollow(outcome)
    }

    /// Drops the abandoned follow stream and waits as `outcome` asks before the next
    /// one; returns the error to yield when giving up.
    async fn recover(&mut self, outcome: Refollow) -> Option<ClientError> {
        self.reader = None;
        match outcome {
            Refollow::Now(reason) => self.refollow(reason).await,
            Refollow::AfterError(err) => self.failed(err).await,
        }
    }

    /// Opens a follow request from the last delivered seq on the current node.
    async fn open(&self) -> Result<FrameReader, ClientError> {
        let link = self.moved.as_ref().unwrap_or(&self.home);
        let connection = link.connection().await?;
        let request = crate::shared(
            self.share_token.as_deref(),
            ClientRequest::Follow {
                conversation: self.conversation,
                since: self.tracker.last(),
            },
        );
        tokio::time::timeout(
            Duration::from_millis(REQUEST_TIMEOUT_MS),
            open_request(&connection, request, None),
        )
        .await
        .unwrap_or(Err(ClientError::Timeout {
            what: "opening a follow stream",
            after_ms: REQUEST_TIMEOUT_MS,
        }))
    }

    /// Points later follows at `to` (same CA, server name and token), then, should that
    /// node die, at the home addresses.
    fn move_to(&mut self, to: String) {
        if to == self.home.preferred_address() {
            self.moved = None;
        } else {
            let target = self.home.target().moved_to(&to);
            self.moved = Some(Arc::new(Link::lazy(target)));
        }
    }

    /// Counts a server-directed re-follow; the first one after progress is immediate.
    /// Returns the error to yield when giving up.
    async fn refollow(&mut self, reason: String) -> Option<ClientError> {
        tracing::debug!(conversation = %self.conversation, %reason, "re-following");
        let Some(wait_ms) = self.streak.next_wait_ms(Instant::now(), true) else {
            self.finished = true;
            return Some(ClientError::ConnectionLost(format!(
                "following {} made no progress after {} attempts (last: {reason})",
                self.conversation,
                self.streak.failures()
            )));
        };
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
        None
    }

    /// Handles a failed follow: gives up on a non-retryable error or after too many
    /// failures (returning the error to yield), otherwise backs off.
    async fn failed(&mut self, err: ClientError) -> Option<ClientError> {
        if let Some(to) = err.wire_error().and_then(|w| {
            (w.code == ErrorCode::Moved)
                .then(|| w.moved_to.clone())
                .flatten()
        }) {
            self.move_to(to.clone());
            return self.refollow(format!("moved to {to}")).await;
        }
        if !err.is_retryable() {
            self.finished = true;
            return Some(err);
        }
        if let Some(moved) = &self.moved
            && moved.went_silent().await
        {
            // The node the conversation moved to went silent (most likely dead): ask the
            // client's own connection, whose node knows where the conversation lives now,
            // rather than dialling the silent one again.
            self.moved = None;
        }
        let Some(wait_ms) = self.streak.next_wait_ms(Instant::now(), false) else {
            tracing::debug!(conversation = %self.conversation, error = %err, failures = self.streak.failures(), "follow keeps failing; giving up");
            self.finished = true;
            return Some(err);
        };
        tracing::debug!(conversation = %self.conversation, error = %err, failures = self.streak.failures(), wait_ms, "follow failed; reconnecting");
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        None
    }
}

/// What one frame of the open follow stream leads to.
enum Step {
    /// Yield it.
    Deliver(EventFrame),
    /// A duplicate: read the next one.
    Skip,
    /// Abandon the stream.
    Refollow(Refollow),
}

/// Why the current follow stream was abandoned.
enum Refollow {
    /// The server asked for it (resync, move) or a gap showed: follow again now.
    Now(String),
    /// The stream failed.
    AfterError(ClientError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_frames::{reset, status as text};

    #[test]
    fn in_order_events_are_delivered_and_duplicates_dropped() {
        let mut tracker = SeqTracker::new(None);
        assert_eq!(tracker.observe(&reset(10)), Verdict::Deliver);
        assert_eq!(tracker.observe(&text(11)), Verdict::Deliver);
        assert_eq!(tracker.observe(&text(12)), Verdict::Deliver);
        // A replay after a reconnect repeats what was delivered.
        assert_eq!(tracker.observe(&text(11)), Verdict::Duplicate);
        assert_eq!(tracker.observe(&text(12)), Verdict::Duplicate);
        assert_eq!(tracker.observe(&text(13)), Verdict::Deliver);
        assert_eq!(tracker.last(), Some(Seq(13)));
    }

    #[test]
    fn a_gap_asks_for_a_refollow_and_does_not_advance() {
        let mut tracker = SeqTracker::new(Some(Seq(5)));
        assert_eq!(tracker.observe(&text(7)), Verdict::Gap);
        assert_eq!(tracker.last(), Some(Seq(5)));
        assert_eq!(tracker.observe(&text(6)), Verdict::Deliver);
        assert_eq!(tracker.observe(&text(7)), Verdict::Deliver);
    }

    #[test]
    fn a_reset_is_the_new_base_even_across_activations() {
        let mut tracker = SeqTracker::new(Some(Seq(5)));
        let next_activation = Seq::first_of_activation(2).0;
        assert_eq!(tracker.observe(&reset(next_activation)), Verdict::Deliver);
        assert_eq!(tracker.last(), Some(Seq(next_activation)));
        assert_eq!(
            tracker.observe(&text(next_activation + 1)),
            Verdict::Deliver
        );
        // A stale reset (not newer than what we have) is a duplicate.
        assert_eq!(tracker.observe(&reset(next_activation)), Verdict::Duplicate);
        assert_eq!(tracker.observe(&reset(3)), Verdict::Duplicate);
    }

    #[test]
    fn starting_from_since_drops_everything_up_to_it() {
        let mut tracker = SeqTracker::new(Some(Seq(20)));
        assert_eq!(tracker.observe(&text(19)), Verdict::Duplicate);
        assert_eq!(tracker.observe(&text(20)), Verdict::Duplicate);
        assert_eq!(tracker.observe(&text(21)), Verdict::Deliver);
    }

    #[test]
    fn a_streak_gives_up_after_the_attempt_cap() {
        let now = Instant::now();
        let mut streak = Streak::new();
        let waits: Vec<Option<u64>> = (0..FOLLOW_RECONNECT_ATTEMPTS_MAX)
            .map(|_| streak.next_wait_ms(now, true))
            .collect();
        assert_eq!(&waits[..4], &[Some(0), Some(100), Some(200), Some(400)]);
        assert!(waits[..waits.len() - 1].iter().all(Option::is_some));
        assert_eq!(waits.last(), Some(&None));
    }

    #[test]
    fn a_streak_gives_up_when_the_next_attempt_would_pass_the_budget() {
        let start = Instant::now();
        let mut streak = Streak::new();
        assert_eq!(streak.next_wait_ms(start, false), Some(100));
        let late = start + Duration::from_millis(RETRY_BUDGET_MS - 150);
        assert_eq!(streak.next_wait_ms(late, false), None);

        // Progress starts a new streak, with a new budget.
        streak.progress();
        assert_eq!(streak.failures(), 0);
        let later = late + Duration::from_millis(RETRY_BUDGET_MS);
        assert_eq!(streak.next_wait_ms(later, false), Some(100));
        assert_eq!(streak.next_wait_ms(later, false), Some(200));
    }

    #[test]
    fn backoff_doubles_from_100_ms_up_to_5_s() {
        assert_eq!(backoff_ms(1), 100);
        assert_eq!(backoff_ms(2), 200);
        assert_eq!(backoff_ms(3), 400);
        assert_eq!(backoff_ms(6), 3_200);
        assert_eq!(backoff_ms(7), 5_000);
        assert_eq!(backoff_ms(u32::MAX), 5_000);
    }
}
