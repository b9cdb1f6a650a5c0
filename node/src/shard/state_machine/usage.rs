//! What each turn used, kept per owner: the agent's token counts for the turn and the
//! cost it added. Agents report cost as their session's running total (`usage_update`),
//! so the cost of a turn is the total now minus the total last recorded for the same
//! agent session (`uc/<conversation uid>`): a session resumed with `session/load` after a
//! move keeps counting from where it was, a new session starts from zero. Kept after the
//! conversation is deleted (it was used).
//!
//! Keys: `us/<user>/<conversation uid>/<turn BE>` → [`TurnUsage`];
//! `uc/<conversation uid>` → [`SessionCost`].

use super::{Failure, Outcome, ReadError, ShardCommand, ShardRead, Writes, read};
use crate::agent_process::TokenCounts;
use serde::{Deserialize, Serialize};
use shoal_protocol::{ConversationId, TurnId, UserId, WorkspaceId};

/// One turn's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnUsage {
    /// The conversation.
    pub conversation: ConversationId,
    /// The turn.
    pub turn: TurnId,
    /// Its workspace.
    pub workspace: WorkspaceId,
    /// The agent that ran it.
    pub agent: String,
    /// When it ended.
    pub at_ms: u64,
    /// Its token counts (zero when the agent reported none).
    pub tokens: TokenCounts,
    /// The cost it added in millionths of the currency, and the currency, when the agent
    /// reports cost.
    pub cost: Option<(u64, String)>,
    /// The workspace credentials (names) the agent ran with.
    pub credentials: Vec<String>,
}

/// The running cost total last recorded for a conversation's agent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCost {
    /// The agent session.
    pub session: Option<String>,
    /// Its running total, in millionths of the currency.
    pub total: u64,
    /// In this currency.
    pub currency: String,
}

/// Prefix of a user's usage records.
pub fn usage_prefix(user: &UserId) -> Vec<u8> {
    let mut key = b"us/".to_vec();
    key.extend_from_slice(user.0.as_bytes());
    key.push(b'/');
    key
}

fn usage_key(user: &UserId, conversation: ConversationId, turn: TurnId) -> Vec<u8> {
    let mut key = usage_prefix(user);
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key.push(b'/');
    key.extend_from_slice(&turn.0.to_be_bytes());
    key
}

/// Key of a conversation's last recorded session cost.
pub fn session_cost_key(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"uc/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key
}

/// Every usage record of `user`, oldest conversation key first.
pub fn user_usage(view: &impl ShardRead, user: &UserId) -> Result<Vec<TurnUsage>, ReadError> {
    super::read_all(view, &usage_prefix(user))
}

/// Applies `RecordUsage`.
pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    let ShardCommand::RecordUsage {
        conversation,
        owner,
        turn,
        workspace,
        agent,
        at_ms,
        tokens,
        session,
        session_cost,
        credentials,
    } = cmd
    else {
        return Err(super::misrouted());
    };
    {
        let key = usage_key(owner, *conversation, *turn);
        // Recorded once per turn: a retry changes nothing.
        if view.get(&key)?.is_some() {
            return Ok(Outcome::Done);
        }
        let cost = match session_cost {
            Some((total, currency)) => {
                let before = read::<SessionCost>(view, &session_cost_key(*conversation))?
                    .filter(|c| c.session == *session && c.currency == *currency)
                    .map_or(0, |c| c.total);
                writes.put(
                    session_cost_key(*conversation),
                    &SessionCost {
                        session: session.clone(),
                        total: *total,
                        currency: currency.clone(),
                    },
                );
                Some((total.saturating_sub(before), currency.clone()))
            }
            None => None,
        };
        let usage = TurnUsage {
            conversation: *conversation,
            turn: *turn,
            workspace: *workspace,
            agent: agent.clone(),
            at_ms: *at_ms,
            tokens: tokens.unwrap_or_default(),
            cost,
            credentials: credentials.clone(),
        };
        writes.put(key, &usage);
        Ok(Outcome::Done)
    }
}
