//! Where a batch's results go: each proposal's reply rides with its log entry, in
//! memory, from `client_write` to the leader's apply of the entry, which answers it as
//! soon as the entry's writes are made.
//!
//! openraft returns an apply's results to the state-machine worker's caller, its core
//! task, which hands them to `client_write`'s waiter, the batcher, which answers each
//! proposal: two task hand-offs on every commit between the state being written and
//! the proposer hearing of it (docs/PERFORMANCE.md, "Agent overhead"). The replies are
//! shared between the leader's apply and the batcher, and whichever takes them first
//! answers: the apply on success, the batcher for a write that failed, timed out or
//! was never applied on this node. Either way a proposal is answered once.

use crate::cluster::ProposeError;
use crate::shard::state_machine::{Outcome, Rejection};
use shoal_protocol::ShardId;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Where one proposal's result goes.
pub type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

/// The replies of a batch's proposals, in command order, shared by the batcher and
/// the leader's apply of the entry (empty on an entry this node did not propose).
/// Not part of the entry's value: any two are equal.
#[derive(Clone, Default)]
pub struct BatchReplies(Option<Arc<Mutex<Option<Vec<Reply>>>>>);

impl BatchReplies {
    /// The replies of a batch about to be proposed.
    pub fn new(replies: Vec<Reply>) -> Self {
        Self(Some(Arc::new(Mutex::new(Some(replies)))))
    }

    /// Whether there is nothing to answer here (a follower's copy of the entry, or a
    /// blank one).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The replies, unless someone took them already (then `None`): the taker answers
    /// them.
    pub fn take(&self) -> Option<Vec<Reply>> {
        let shared = self.0.as_ref()?;
        shared.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for BatchReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "BatchReplies(none)"
        } else {
            "BatchReplies(..)"
        })
    }
}

impl PartialEq for BatchReplies {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for BatchReplies {}

/// Answers `replies` with the entry's `results`, in order. A reply with no result (the
/// state machine answered fewer commands than the batch had) gets an error, never
/// silence.
pub fn answer(shard: ShardId, replies: Vec<Reply>, results: Vec<Result<Outcome, Rejection>>) {
    let count = replies.len();
    let mut results = results.into_iter();
    for reply in replies {
        let r = match results.next() {
            Some(Ok(outcome)) => Ok(outcome),
            Some(Err(rejection)) => Err(ProposeError::Rejected(rejection)),
            None => Err(ProposeError::Failed {
                shard,
                message: format!("the state machine answered fewer than {count} commands"),
            }),
        };
        let _ = reply.send(r);
    }
}

/// Answers each of `replies` with the error `make` makes.
pub fn fail(replies: Vec<Reply>, make: impl Fn() -> ProposeError) {
    for reply in replies {
        let _ = reply.send(Err(make()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies are taken once, by whichever side comes first; the other finds
    /// nothing to answer, so no proposal hears twice.
    #[tokio::test]
    async fn the_replies_are_answered_once_by_whoever_takes_them_first() {
        let (tx, rx) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let replies = BatchReplies::new(vec![tx, tx2]);
        let batcher = replies.clone();
        let taken = replies.take().expect("the apply takes them first");
        assert!(batcher.take().is_none(), "the batcher finds them answered");
        answer(ShardId(3), taken, vec![Ok(Outcome::Done)]);
        assert_eq!(rx.await.unwrap().unwrap(), Outcome::Done);
        let missing = rx2.await.unwrap().unwrap_err();
        assert!(
            matches!(&missing, ProposeError::Failed { message, .. } if message.contains("fewer than 2")),
            "{missing:?}"
        );
        assert!(BatchReplies::default().is_empty());
        assert!(BatchReplies::default().take().is_none());
    }
}
