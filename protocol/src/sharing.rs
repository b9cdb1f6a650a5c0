//! Sharing a conversation: grants, roles, share tokens, and what a shared caller sees.
//!
//! A **grant** gives one conversation's **viewer** or **editor** role either to a user
//! (bound to a user id) or to whoever presents its **link token**. A link token is
//! `shoalshare1.<grant id>.<secret>`: the node stores only a hash of the secret. A link
//! grant made as an invitation is bound to the first user who presents it.
//!
//! A request made with a share token is wrapped in `ClientRequest::Shared`; the caller
//! still connects with their own user token.

use crate::ids::{ConversationId, IdParseError, ShardId, UserId};
use crate::transcript::Message;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Prefix of a link share token.
pub const SHARE_TOKEN_PREFIX: &str = "shoalshare1";
/// Longest accepted share token, in bytes.
pub const SHARE_TOKEN_BYTES_MAX: usize = 256;
/// Most grants one conversation may have.
pub const GRANTS_PER_CONVERSATION_MAX: usize = 100;
/// Longest grant lifetime a client may ask for: one year, in ms.
pub const GRANT_EXPIRY_MS_MAX: u64 = 365 * 24 * 3600 * 1000;

/// A grant: its shard is its conversation's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GrantId {
    /// The conversation the grant is for.
    pub conversation: ConversationId,
    /// Random unique part.
    pub uid: u64,
}

impl GrantId {
    /// The shard that holds the grant.
    pub fn shard(&self) -> ShardId {
        self.conversation.shard
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{:016x}-{}", self.uid, self.conversation)
    }
}

impl FromStr for GrantId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IdParseError {
            kind: "grant",
            input: s.chars().take(80).collect(),
            expected: "g<16 hex digits>-c-<shard>-<32 hex digits>",
        };
        let rest = s.strip_prefix('g').ok_or_else(err)?;
        let (uid, conversation) = rest.split_once('-').ok_or_else(err)?;
        if uid.len() != 16 {
            return Err(err());
        }
        let uid = u64::from_str_radix(uid, 16).map_err(|_| err())?;
        let conversation = conversation.parse().map_err(|_| err())?;
        Ok(Self { conversation, uid })
    }
}

/// What a grant lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Read and follow the redacted transcript; fork it into an own workspace.
    Viewer,
    /// A viewer who may also send messages, cancel turns and answer permission requests
    /// (read-only while the conversation's sharing is locked).
    Editor,
}

impl Role {
    /// `viewer` or `editor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            other => Err(format!(
                "`{}` is not a role; use viewer or editor",
                other.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantTarget {
    /// Whoever presents the link token.
    Link,
    /// A link that binds to the first user who presents it (`None` until then).
    Invite {
        /// The user it is bound to.
        bound_to: Option<UserId>,
    },
    /// One user, by id (no token).
    User {
        /// The user.
        user: UserId,
    },
}

/// A grant as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// Its id.
    pub id: GrantId,
    /// Its role.
    pub role: Role,
    /// Who it is for.
    pub target: GrantTarget,
    /// When it was made (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it stops working, if it expires.
    pub expires_at_ms: Option<u64>,
    /// Times its token was rotated.
    pub rotations: u32,
}

/// A conversation shared with the caller, as listed by `SharedWithMe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedListing {
    /// The conversation.
    pub conversation: ConversationId,
    /// The grant that gives the caller access.
    pub grant: GrantId,
    /// The caller's role.
    pub role: Role,
    /// Who shared it.
    pub owner: UserId,
    /// Its title when it was shared.
    pub title: Option<String>,
    /// When it was shared with the caller.
    pub shared_at_ms: u64,
}

/// A shared conversation as a viewer or editor reads it: the transcript (the follower
/// projection of each message) and nothing of the owner's (no workspace, usage,
/// credentials, agent configuration or agent output beyond the transcript).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedView {
    /// The conversation.
    pub conversation: ConversationId,
    /// The caller's role.
    pub role: Role,
    /// Whether the owner locked sharing (editors are read-only meanwhile).
    pub locked: bool,
    /// Title.
    pub title: Option<String>,
    /// Whether a turn is running now.
    pub turn_running: bool,
    /// Committed messages, oldest first (at most the node's snapshot bound).
    pub messages: Vec<Message>,
    /// Messages older than `messages` left out.
    pub earlier: u64,
    /// The running turn's assistant message as streamed so far.
    pub in_flight: Option<Message>,
}

/// A parsed link share token.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareToken {
    /// The grant it names.
    pub grant: GrantId,
    /// The secret (base64url of 32 random bytes).
    pub secret: String,
}

impl fmt::Debug for ShareToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareToken")
            .field("grant", &self.grant)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ShareToken {
    /// Parses `shoalshare1.<grant id>.<secret>`; the error says what is wrong without
    /// echoing the secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > SHARE_TOKEN_BYTES_MAX {
            return Err(format!(
                "the share token is {} bytes, the limit is {SHARE_TOKEN_BYTES_MAX}",
                text.len()
            ));
        }
        let bad = || {
            format!(
                "not a share token (expected `{SHARE_TOKEN_PREFIX}.<grant id>.<secret>`, as `shoalctl share create` prints it)"
            )
        };
        let mut pieces = text.trim().split('.');
        let (Some(prefix), Some(grant), Some(secret), None) =
            (pieces.next(), pieces.next(), pieces.next(), pieces.next())
        else {
            return Err(bad());
        };
        let valid_secret = !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if prefix != SHARE_TOKEN_PREFIX || !valid_secret {
            return Err(bad());
        }
        let grant = grant.parse().map_err(|_| bad())?;
        Ok(Self {
            grant,
            secret: secret.to_owned(),
        })
    }
}

impl fmt::Display for ShareToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARE_TOKEN_PREFIX}.{}.{}", self.grant, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_and_tokens_round_trip_and_reject_junk() {
        let grant = GrantId {
            conversation: ConversationId::new(ShardId(3), 7),
            uid: 0xfeed,
        };
        assert_eq!(grant.to_string().parse::<GrantId>().unwrap(), grant);
        let token = ShareToken {
            grant,
            secret: "abc_DEF-123".into(),
        };
        assert_eq!(ShareToken::parse(&token.to_string()).unwrap(), token);
        assert!(!format!("{token:?}").contains("abc_DEF"));
        for bad in [
            "",
            "shoalshare1",
            "shoalshare1..x",
            "shoal1.a.b",
            "shoalshare1.g0000000000000001-c-1-0.x",
            &format!("{SHARE_TOKEN_PREFIX}.{grant}.bad secret"),
            &format!("{SHARE_TOKEN_PREFIX}.{grant}.x.y"),
            &"x".repeat(SHARE_TOKEN_BYTES_MAX + 1),
        ] {
            assert!(ShareToken::parse(bad).is_err(), "{bad}");
        }
        assert!("g12-c-1-0".parse::<GrantId>().is_err());
        assert_eq!("editor".parse::<Role>(), Ok(Role::Editor));
        assert!("owner".parse::<Role>().is_err());
    }
}
