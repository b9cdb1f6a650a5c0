//! A conversation's session settings: the owner's mode and model picks, and what its
//! agent offered when its session last said ([`SessionSettings`]). Replicated, so the
//! picks are applied again by whichever node runs the conversation next, and a pick is
//! checked against the offer even while no agent runs.
//!
//! Key: `ss/<conversation uid>` → [`SessionSettings`] (absent: no picks, nothing known).
//!
//! Switching agents ([`ShardCommand::SwitchAgent`]) keeps each earlier agent's session
//! id, so switching back resumes it: `sa/<conversation uid>` → agent id → session id
//! (at most one per configured agent).

use super::{
    Failure, Outcome, Rejection, ShardCommand, ShardRead, Writes, history::owned, read, record,
};
use shoal_protocol::ConversationId;
use shoal_protocol::settings::{SessionSettings, SettingKind};

/// Key of a conversation's settings.
pub fn settings_key(conversation: ConversationId) -> Vec<u8> {
    super::workspaces::uid_key(b"ss/", conversation.uid)
}

/// Most earlier agents' sessions kept per conversation (the node config's agent bound).
pub const AGENT_SESSIONS_MAX: usize = 64;
/// Longest agent id, in bytes (as the node config allows).
pub const AGENT_ID_BYTES_MAX: usize = 32;

/// Key of a conversation's earlier agents' sessions.
pub fn agent_sessions_key(conversation: ConversationId) -> Vec<u8> {
    super::workspaces::uid_key(b"sa/", conversation.uid)
}

/// A conversation's settings as stored (the default when none are).
pub fn load(
    view: &impl ShardRead,
    conversation: ConversationId,
) -> Result<SessionSettings, super::ReadError> {
    Ok(read(view, &settings_key(conversation))?.unwrap_or_default())
}

pub(super) fn apply(
    view: &impl ShardRead,
    cmd: &ShardCommand,
    writes: &mut Writes,
) -> Result<Outcome, Failure> {
    match cmd {
        ShardCommand::SetSessionSettings {
            conversation,
            owner,
            mode,
            model,
        } => {
            let rec = owned(view, *conversation, owner)?;
            if let Some(running) = &rec.running_turn {
                return Err(Rejection::Busy(running.turn).into());
            }
            let mut settings = load(view, *conversation)?;
            for (kind, pick) in [(SettingKind::Mode, mode), (SettingKind::Model, model)] {
                let Some(pick) = pick else { continue };
                // Checked against the offer when one is known; before the agent's first
                // session nothing is, and the pick is checked when it is applied.
                if let Some(offer) = &settings.offer {
                    offer
                        .check(&rec.agent, kind, pick)
                        .map_err(Rejection::Invalid)?;
                }
                match kind {
                    SettingKind::Mode => settings.mode = Some(pick.clone()),
                    SettingKind::Model => settings.model = Some(pick.clone()),
                }
            }
            writes.put(settings_key(*conversation), &settings);
            Ok(Outcome::Settings(Box::new(settings)))
        }
        ShardCommand::SwitchAgent {
            conversation,
            owner,
            agent,
        } => {
            let mut rec = owned(view, *conversation, owner)?;
            if let Some(running) = &rec.running_turn {
                return Err(Rejection::Busy(running.turn).into());
            }
            if rec.agent == *agent {
                return Err(Rejection::Invalid(format!(
                    "conversation {conversation} already runs agent `{agent}`"
                ))
                .into());
            }
            let key = agent_sessions_key(*conversation);
            let mut sessions: std::collections::BTreeMap<String, String> =
                read(view, &key)?.unwrap_or_default();
            if let Some(session) = rec.agent_session.take() {
                sessions.insert(rec.agent.clone(), session);
            }
            // One per agent a node can have; an id past that bound is forgotten (its
            // agent starts a new session, given the transcript).
            while sessions.len() > AGENT_SESSIONS_MAX {
                sessions.pop_first();
            }
            rec.agent_session = sessions.get(agent).cloned();
            rec.agent = agent.clone();
            writes.put(key, &sessions);
            writes.delete(settings_key(*conversation));
            writes.put(super::conversation_key(*conversation), &rec);
            Ok(Outcome::Conversation(Box::new(rec)))
        }
        ShardCommand::RecordSessionOffer {
            conversation,
            offer,
        } => {
            record(view, *conversation)?;
            let mut settings = load(view, *conversation)?;
            settings.offer = Some(offer.clone());
            writes.put(settings_key(*conversation), &settings);
            Ok(Outcome::Done)
        }
        _ => Err(super::misrouted()),
    }
}
