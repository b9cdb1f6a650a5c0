//! A conversation's queue of messages sent while a turn ran: replicated, so it survives
//! a failover, and bounded ([`QUEUE_MAX`]). The conversation actor starts the first
//! queued message when the running turn ends ([`ShardCommand::StartQueued`]), which
//! takes it off the queue and starts its turn in one command.
//!
//! Key: `q/<conversation uid>` → [`MessageQueue`] (absent: empty).

use super::{
    Failure, Outcome, Rejection, ShardCommand, ShardRead, Writes, append_user_message, read,
    record, send_request_key,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::{ConversationId, RequestId};

/// Most messages queued in one conversation.
pub const QUEUE_MAX: usize = 16;

/// A conversation's queued messages, in the order they will run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageQueue {
    /// The messages.
    pub items: Vec<QueuedMessage>,
    /// The id the next queued message gets.
    pub next_item: u64,
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Its id in the queue (stable while it waits).
    pub item: u64,
    /// The text.
    pub text: String,
    /// The send's idempotency key; its turn is started under it.
    pub request_id: RequestId,
    /// When it was queued.
    pub at_ms: u64,
}

impl MessageQueue {
    /// The 0-based position of `item`.
    pub fn position(&self, item: u64) -> Option<usize> {
        self.items.iter().position(|q| q.item == item)
    }
}

/// Key of a conversation's queue.
pub fn queue_key(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"q/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key
}

fn load(view: &impl ShardRead, conversation: ConversationId) -> Result<MessageQueue, Failure> {
    record(view, conversation)?;
    Ok(read(view, &queue_key(conversation))?.unwrap_or_default())
}

fn item_of(
    queue: &MessageQueue,
    item: u64,
    conversation: ConversationId,
) -> Result<usize, Failure> {
    queue.position(item).ok_or_else(|| {
        Rejection::Invalid(format!(
            "message {item} is not queued in {conversation} (it may have started already)"
        ))
        .into()
    })
}

/// Applies the queue commands.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::EnqueueMessage {
            conversation,
            text,
            request_id,
            at_ms,
            front,
        } => {
            let mut queue = load(view, *conversation)?;
            // A retried send: the item queued first, or the turn it already started.
            if let Some(q) = queue.items.iter().find(|q| q.request_id == *request_id) {
                return Ok(Outcome::Enqueued {
                    item: q.item,
                    queue: Box::new(queue.clone()),
                });
            }
            if read::<super::RunningTurn>(view, &send_request_key(*conversation, *request_id))?
                .is_some()
            {
                return append_user_message(view, writes, *conversation, text, *request_id, *at_ms);
            }
            if queue.items.len() >= QUEUE_MAX {
                return Err(Rejection::TooMany(format!(
                    "{QUEUE_MAX} messages are already queued in {conversation}; wait for the running turn or remove one"
                ))
                .into());
            }
            let item = queue.next_item;
            queue.next_item += 1;
            let queued = QueuedMessage {
                item,
                text: text.clone(),
                request_id: *request_id,
                at_ms: *at_ms,
            };
            if *front {
                queue.items.insert(0, queued);
            } else {
                queue.items.push(queued);
            }
            writes.put(queue_key(*conversation), &queue);
            Ok(Outcome::Enqueued {
                item,
                queue: Box::new(queue),
            })
        }
        ShardCommand::StartQueued {
            conversation,
            item,
            at_ms,
        } => {
            let mut queue = load(view, *conversation)?;
            let at = item_of(&queue, *item, *conversation)?;
            let queued = queue.items.remove(at);
            let started = append_user_message(
                view,
                writes,
                *conversation,
                &queued.text,
                queued.request_id,
                *at_ms,
            )?;
            writes.put(queue_key(*conversation), &queue);
            Ok(started)
        }
        ShardCommand::RemoveQueued { conversation, item } => {
            let mut queue = load(view, *conversation)?;
            let at = item_of(&queue, *item, *conversation)?;
            queue.items.remove(at);
            writes.put(queue_key(*conversation), &queue);
            Ok(Outcome::Queue(Box::new(queue)))
        }
        ShardCommand::MoveQueued {
            conversation,
            item,
            position,
        } => {
            let mut queue = load(view, *conversation)?;
            let at = item_of(&queue, *item, *conversation)?;
            let queued = queue.items.remove(at);
            let to = (*position as usize).min(queue.items.len());
            queue.items.insert(to, queued);
            writes.put(queue_key(*conversation), &queue);
            Ok(Outcome::Queue(Box::new(queue)))
        }
        _ => Err(super::misrouted()),
    }
}
