//! A running turn's assistant message, stored so that a checkpoint costs what it adds.
//!
//! A checkpoint ([`ShardCommand::AppendParts`](super::ShardCommand::AppendParts)) stores
//! its delta under a key of its own and updates the message's [`Shape`] (each part's kind
//! and length), which is all the next delta is checked against. The message itself is put
//! together from its *base* (the message key, absent until the first fold) and the deltas
//! stored after it only when it is needed:
//! * at the turn's end, which writes the final message to the message key;
//! * when the deltas outgrow the base: a *fold* rewrites the base with them. Since a fold
//!   waits until the deltas hold at least as many bytes as the base, every byte is
//!   rewritten a bounded number of times and a turn of n bytes writes O(n) in all
//!   (rewriting the whole message at every checkpoint wrote O(n²));
//! * when a delta starts inside a text part rather than at its end (the store is ahead of
//!   the proposer's mark after an uncertain checkpoint): deciding whether the cut falls on
//!   a character boundary needs the text, so the message is folded there and the delta
//!   applied to it. Rare, and still correct.
//!
//! Every decision depends only on the command and the replicated keys, like the rest of
//! the state machine.
//!
//! Keys, beside the base at `m/<conversation uid>/<index BE>`:
//! * `mr/<conversation uid>/<index BE>` → [`Shape`]
//! * `mr/<conversation uid>/<index BE><seq u32 BE>` → a stored [`PartsDelta`], in order.

use super::{
    Failure, MessageHeader, ReadError, Rejection, ShardRead, Writes, decode, message_key, read,
};
use crate::shard::parts_delta::PartsDelta;
use serde::{Deserialize, Serialize};
use shoal_protocol::frame::{BincodeCodec, Codec};
use shoal_protocol::transcript::{Message, MessageStatus, Part, Role, content_from_parts};
use shoal_protocol::{ConversationId, MessageId};

/// The deltas are folded into the base once they hold more bytes than this or than the
/// base, whichever is more.
pub const FOLD_BYTES_MIN: u64 = 64 * 1024;

/// The deltas are folded into the base once there are this many (so a stream of tiny
/// checkpoints keeps a bounded number of keys).
pub const DELTAS_MAX: u32 = 256;

/// What a delta is checked against: the running message's parts as stored (base and
/// deltas together), without their contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// When the turn started.
    pub created_at_ms: u64,
    /// Each part's kind and length.
    pub parts: Vec<PartShape>,
    /// Deltas stored after the base (sequence numbers `0..deltas`).
    pub deltas: u32,
    /// Their encoded bytes.
    pub delta_bytes: u64,
    /// The base's encoded bytes (0 when there is none).
    pub base_bytes: u64,
}

/// A part's kind and the length of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartShape {
    /// Its kind.
    pub kind: PartKind,
    /// Bytes of its text (0 for a part without text).
    pub len: u32,
}

/// The kinds of part a delta can continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartKind {
    /// [`Part::Text`].
    Text,
    /// [`Part::Reasoning`].
    Reasoning,
    /// Any other part (never continued).
    Other,
}

impl PartShape {
    fn of(part: &Part) -> PartShape {
        let (kind, len) = match part {
            Part::Text { text } => (PartKind::Text, text.len()),
            Part::Reasoning { text } => (PartKind::Reasoning, text.len()),
            _ => (PartKind::Other, 0),
        };
        PartShape {
            kind,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }
}

impl Shape {
    fn of(message: &Message, base_bytes: u64) -> Shape {
        Shape {
            created_at_ms: message.created_at_ms,
            parts: message.parts.iter().map(PartShape::of).collect(),
            deltas: 0,
            delta_bytes: 0,
            base_bytes,
        }
    }

    /// Applies `delta` to the shape when it surely applies to the parts: it starts at a
    /// part boundary within them, or at the very end of a text part it continues with
    /// the same kind. `None` (the shape unchanged) otherwise: the full message decides.
    fn advance(&mut self, delta: &PartsDelta) -> Option<()> {
        let index = delta.from.part as usize;
        let byte = delta.from.byte;
        let mut tail = delta.tail.iter();
        if byte > 0 {
            let stored = self.parts.get(index)?;
            let first = PartShape::of(tail.next()?);
            if stored.kind == PartKind::Other || stored.kind != first.kind || stored.len != byte {
                return None;
            }
            let len = byte.checked_add(first.len)?;
            self.parts.truncate(index);
            self.parts.push(PartShape {
                kind: first.kind,
                len,
            });
        } else {
            if index > self.parts.len() {
                return None;
            }
            self.parts.truncate(index);
        }
        self.parts.extend(tail.map(PartShape::of));
        Some(())
    }
}

/// Prefix of every running-message key of a conversation.
pub fn running_prefix(id: ConversationId) -> Vec<u8> {
    let mut key = b"mr/".to_vec();
    key.extend_from_slice(&id.uid.to_be_bytes());
    key.push(b'/');
    key
}

/// Key of a running message's [`Shape`] (and prefix of its deltas' keys).
pub fn shape_key(id: ConversationId, index: MessageId) -> Vec<u8> {
    let mut key = running_prefix(id);
    key.extend_from_slice(&index.0.to_be_bytes());
    key
}

fn delta_key(id: ConversationId, index: MessageId, seq: u32) -> Vec<u8> {
    let mut key = shape_key(id, index);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// An empty assistant message for `header` (nothing stored yet).
fn empty(header: &MessageHeader, created_at_ms: u64) -> Message {
    Message {
        id: header.id,
        turn: header.turn,
        role: Role::Assistant,
        status: MessageStatus::InProgress,
        parts: Vec::new(),
        content: String::new(),
        created_at_ms,
        stop_reason: None,
        error: None,
    }
}

/// The stored shape of the running message `header`, from its base when a store written
/// before shapes existed holds only that.
fn shape(
    view: &impl ShardRead,
    id: ConversationId,
    header: &MessageHeader,
) -> Result<Shape, ReadError> {
    if let Some(shape) = read::<Shape>(view, &shape_key(id, header.id))? {
        return Ok(shape);
    }
    let key = message_key(id, header.id);
    Ok(match view.get(&key)? {
        Some(bytes) => Shape::of(&decode::<Message>(&key, &bytes)?, bytes.len() as u64),
        None => Shape {
            created_at_ms: header.created_at_ms,
            ..Shape::default()
        },
    })
}

/// The running message `header` as stored: its base with every stored delta applied,
/// `content` recomputed. The caller has checked that it is the running turn's message.
pub fn load(
    view: &impl ShardRead,
    id: ConversationId,
    header: &MessageHeader,
) -> Result<Message, ReadError> {
    let mut stored = Stored::read(view, id, header)?;
    stored.message.content = content_from_parts(&stored.message.parts);
    Ok(stored.message)
}

/// The running message put together (its `content` not yet recomputed), and the running
/// keys it was put together from.
struct Stored {
    message: Message,
    keys: Vec<Vec<u8>>,
}

impl Stored {
    fn read(
        view: &impl ShardRead,
        id: ConversationId,
        header: &MessageHeader,
    ) -> Result<Stored, ReadError> {
        let shape_key = shape_key(id, header.id);
        // The shape first, then its deltas, in order.
        let mut running = view.scan_prefix(&shape_key)?.into_iter();
        let mut keys = Vec::new();
        let created_at_ms = match running.next() {
            Some((key, bytes)) if key == shape_key => {
                let created_at_ms = decode::<Shape>(&key, &bytes)?.created_at_ms;
                keys.push(key);
                created_at_ms
            }
            Some((key, _)) => {
                return Err(ReadError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    message: "a stored delta without its shape".into(),
                });
            }
            None => header.created_at_ms,
        };
        let mut message = read::<Message>(view, &message_key(id, header.id))?
            .unwrap_or_else(|| empty(header, created_at_ms));
        for (key, bytes) in running {
            let delta: PartsDelta = decode(&key, &bytes)?;
            // It applied to these parts when it was stored.
            delta
                .apply(&mut message.parts)
                .map_err(|e| ReadError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    message: format!("a stored delta no longer applies: {e}"),
                })?;
            keys.push(key);
        }
        Ok(Stored { message, keys })
    }

    /// Applies `delta` (if any): `Rejection::Invalid` when it does not apply. Then
    /// recomputes `content` and queues the removal of the running keys.
    fn finish(
        mut self,
        writes: &mut Writes,
        id: ConversationId,
        delta: Option<&PartsDelta>,
    ) -> Result<Message, Rejection> {
        if let Some(delta) = delta {
            delta.apply(&mut self.message.parts).map_err(|e| {
                Rejection::Invalid(format!("message {} of {id}: {e}", self.message.id))
            })?;
        }
        self.message.content = content_from_parts(&self.message.parts);
        for key in self.keys {
            writes.delete(key);
        }
        Ok(self.message)
    }
}

/// Stores `delta` of the running message `header`: as a key of its own when the shape
/// shows it applies, folding the deltas into the base once they outgrow it; otherwise
/// by applying it to the whole message. `Rejection::Invalid` (nothing written) when it
/// does not apply.
pub fn append(
    view: &impl ShardRead,
    writes: &mut Writes,
    id: ConversationId,
    header: &MessageHeader,
    delta: &PartsDelta,
) -> Result<(), Failure> {
    let mut shape = shape(view, id, header)?;
    if shape.advance(delta).is_some() {
        // Our own types always encode.
        let bytes = BincodeCodec.encode(delta).expect("deltas encode");
        let seq = shape.deltas;
        shape.deltas += 1;
        shape.delta_bytes += bytes.len() as u64;
        let outgrown =
            shape.delta_bytes > shape.base_bytes.max(FOLD_BYTES_MIN) || shape.deltas >= DELTAS_MAX;
        if !outgrown {
            writes.puts.push((delta_key(id, header.id, seq), bytes));
            writes.put(shape_key(id, header.id), &shape);
            return Ok(());
        }
    }
    // The shape cannot tell, or the deltas outgrew the base: the whole message, with the
    // delta applied, becomes the new base.
    let message = Stored::read(view, id, header)?.finish(writes, id, Some(delta))?;
    writes.put(message_key(id, header.id), &message);
    let base_bytes = writes.puts.last().map_or(0, |(_, v)| v.len() as u64);
    writes.put(shape_key(id, header.id), &Shape::of(&message, base_bytes));
    Ok(())
}

/// Ends the running message `header`: the stored message with `delta` (if any) applied,
/// its running keys removed. The caller sets the status and writes it.
pub fn take(
    view: &impl ShardRead,
    writes: &mut Writes,
    id: ConversationId,
    header: &MessageHeader,
    delta: Option<&PartsDelta>,
) -> Result<Message, Failure> {
    Ok(Stored::read(view, id, header)?.finish(writes, id, delta)?)
}

/// Removes the running keys of message `index` (its shape and deltas), if any.
pub fn forget(
    view: &impl ShardRead,
    writes: &mut Writes,
    id: ConversationId,
    index: MessageId,
) -> Result<(), ReadError> {
    for (key, _) in view.scan_prefix(&shape_key(id, index))? {
        writes.delete(key);
    }
    Ok(())
}
