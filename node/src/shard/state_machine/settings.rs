//! A conversation's session settings: the owner's mode and model picks, and what its
//! agent offered when its session last said ([`SessionSettings`]). Replicated, so the
//! picks are applied again by whichever node runs the conversation next, and a pick is
//! checked against the offer even while no agent runs.
//!
//! Key: `ss/<conversation uid>` → [`SessionSettings`] (absent: no picks, nothing known).

use super::{
    Failure, Outcome, Rejection, ShardCommand, ShardRead, Writes, history::owned, read, record,
};
use shoal_protocol::ConversationId;
use shoal_protocol::settings::{SessionSettings, SettingKind};

/// Key of a conversation's settings.
pub fn settings_key(conversation: ConversationId) -> Vec<u8> {
    let mut key = b"ss/".to_vec();
    key.extend_from_slice(&conversation.uid.to_be_bytes());
    key
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
