//! Typed identifiers.
//!
//! Workspace and conversation ids carry their shard, so any node can route a request
//! without a lookup: `w-<shard>-<32 hex>` and `c-<shard>-<32 hex>`. A conversation's shard
//! is its workspace's shard (the workspace is the shard key).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A shard index in `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u16);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why an id string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid {kind} id (expected {expected})")]
pub struct IdParseError {
    /// What kind of id was expected.
    pub kind: &'static str,
    /// The offending input (truncated to 64 characters).
    pub input: String,
    /// The expected shape.
    pub expected: &'static str,
}

macro_rules! sharded_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name {
            /// The shard that owns this id.
            pub shard: ShardId,
            /// Random unique part.
            pub uid: u128,
        }

        impl $name {
            /// Builds an id from its shard and unique part.
            pub fn new(shard: ShardId, uid: u128) -> Self {
                Self { shard, uid }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}-{:032x}"), self.shard.0, self.uid)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || IdParseError {
                    kind: $kind,
                    input: s.chars().take(64).collect(),
                    expected: concat!($prefix, "-<shard>-<32 hex digits>"),
                };
                let rest = s.strip_prefix(concat!($prefix, "-")).ok_or_else(err)?;
                let (shard, uid) = rest.split_once('-').ok_or_else(err)?;
                if uid.len() != 32 || shard.is_empty() || shard.len() > 5 {
                    return Err(err());
                }
                let shard = shard.parse::<u16>().map_err(|_| err())?;
                let uid = u128::from_str_radix(uid, 16).map_err(|_| err())?;
                Ok(Self { shard: ShardId(shard), uid })
            }
        }
    };
}

sharded_id!(
    /// A workspace: the shard key. Its conversations and agent sessions live in its shard.
    WorkspaceId,
    "w",
    "workspace"
);
sharded_id!(
    /// A skill pack; it lives in its owner's shard.
    SkillPackId,
    "p",
    "skill pack"
);
sharded_id!(
    /// A conversation; its shard is its workspace's shard.
    ConversationId,
    "c",
    "conversation"
);

/// A user, as named in tokens (`[A-Za-z0-9._@-]{1,128}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub String);

/// The longest accepted user id, in bytes.
pub const USER_ID_BYTES_MAX: usize = 128;

impl UserId {
    /// Checks the user id's shape.
    pub fn parse(s: &str) -> Result<Self, IdParseError> {
        let ok = !s.is_empty()
            && s.len() <= USER_ID_BYTES_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdParseError {
                kind: "user",
                input: s.chars().take(64).collect(),
                expected: "1-128 characters of A-Z a-z 0-9 . _ @ -",
            })
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message within a conversation: its 0-based position in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// A turn within a conversation, numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TurnId(pub u64);

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// A client-chosen id that makes a mutating request idempotent: a retried request with
/// the same id is answered with the first outcome instead of being applied again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u128);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A per-conversation event sequence number.
///
/// The high 32 bits are the conversation's activation number (incremented durably each
/// time the conversation actor starts), the low 32 bits count events within that
/// activation. Numbers are therefore never reused, even after a crash lost events that
/// were broadcast but not yet committed; a follower resuming from a number that the
/// current activation has not buffered receives a reset and a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seq(pub u64);

impl Seq {
    /// The first sequence number of activation `activation`.
    pub fn first_of_activation(activation: u32) -> Self {
        Seq(u64::from(activation) << 32)
    }

    /// The activation this number belongs to.
    pub fn activation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The next sequence number.
    pub fn next(self) -> Self {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_id_round_trips_and_rejects_junk() {
        let id = ConversationId::new(ShardId(17), 0xabcdef);
        let text = id.to_string();
        assert_eq!(text, "c-17-00000000000000000000000000abcdef");
        assert_eq!(text.parse::<ConversationId>().unwrap(), id);
        for bad in [
            "",
            "c-",
            "c-1-xyz",
            "w-1-00000000000000000000000000abcdef",
            "c-99999-0",
            "c--0",
        ] {
            assert!(bad.parse::<ConversationId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn user_id_shape() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("../etc").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
    }
}
