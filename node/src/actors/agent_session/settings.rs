//! Applying the owner's mode and model picks to the agent process's session: with
//! `session/set_config_option` when the agent offers the setting as a config option,
//! with `session/set_mode` for its session modes.
//!
//! Each pick is tried once per process: a new process (a restart, a move) gets every
//! pick again, a running one only the picks changed since. A pick the agent does not
//! offer, or refuses, leaves the agent as it is and gives the turn an owner-only warning;
//! the turn goes on.

use super::AgentSessionState;
use crate::actors::conversation::{AgentEvent, ConversationMsg};
use crate::agent_process::{AgentProcess, AgentUpdate};
use shoal_protocol::TurnId;
use shoal_protocol::settings::{SessionOffer, SettingKind};
use std::time::Duration;

/// How long the agent may take to answer `session/set_mode` or
/// `session/set_config_option`, in milliseconds; after that the pick counts as refused.
pub const SETTING_CALL_TIMEOUT_MS: u64 = 10_000;

/// The owner's mode and model picks for a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Picks {
    /// The mode's id, if picked.
    pub mode: Option<String>,
    /// The model's id, if picked.
    pub model: Option<String>,
    /// What the conversation last knew the agent to offer: used when a resumed session
    /// does not say again (`session/load` answers need not repeat `modes`).
    pub known: Option<Box<SessionOffer>>,
}

impl Picks {
    fn get(&self, kind: SettingKind) -> Option<&str> {
        match kind {
            SettingKind::Mode => self.mode.as_deref(),
            SettingKind::Model => self.model.as_deref(),
        }
    }

    fn set(&mut self, kind: SettingKind, value: &str) {
        let slot = match kind {
            SettingKind::Mode => &mut self.mode,
            SettingKind::Model => &mut self.model,
        };
        *slot = Some(value.to_owned());
    }
}

/// Applies the picks `process` has not had yet, telling the conversation what changed
/// (as agent updates) and warning its owner about picks that could not be applied.
pub(super) async fn apply_picks(
    state: &mut AgentSessionState,
    process: &AgentProcess,
    picks: &Picks,
    turn: TurnId,
) {
    for kind in [SettingKind::Mode, SettingKind::Model] {
        let Some(pick) = picks.get(kind) else {
            continue;
        };
        if state.applied.get(kind) == Some(pick) {
            continue;
        }
        state.applied.set(kind, pick);
        let agent = state.args.agent_name.clone();
        let what = kind.name();
        let offer = state.offer.get_or_insert_with(|| {
            // Not said by this session: the choices known from before, with no current
            // value (what the new process runs is not known), so the pick is applied.
            let mut known = picks.known.as_deref().cloned().unwrap_or_default();
            for setting in known.modes.iter_mut().chain(known.options.iter_mut()) {
                setting.current.clear();
            }
            known
        });
        if let Err(refused) = offer.check(&agent, kind, pick) {
            warn(
                state,
                turn,
                format!(
                    "{refused}; the {what} picked for this conversation is not applied (change it with `shoalctl conv set`)"
                ),
            );
            continue;
        }
        let Some(setting) = offer.setting(kind).cloned() else {
            continue;
        };
        if setting.current == pick {
            continue;
        }
        let call = async {
            if setting.is_session_modes() {
                process
                    .set_mode(pick)
                    .await
                    .map(|()| AgentUpdate::CurrentMode(pick.to_owned()))
            } else {
                let options = process.set_config_option(&setting.id, pick).await?;
                // An answer without the list: the option took the value, the rest stays.
                let options = options.unwrap_or_else(|| {
                    let mut options = offer_options(state);
                    for option in options.iter_mut().filter(|o| o.id == setting.id) {
                        pick.clone_into(&mut option.current);
                    }
                    options
                });
                Ok(AgentUpdate::ConfigOptions(options))
            }
        };
        let timeout = Duration::from_millis(SETTING_CALL_TIMEOUT_MS);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(update)) => {
                learn(state, &update);
                tracing::debug!(%agent, %what, %pick, "session setting applied");
                let _ = state.args.conversation.cast(ConversationMsg::Agent {
                    turn,
                    event: AgentEvent::Update(update),
                    credit: None,
                });
            }
            Ok(Err(e)) => warn(
                state,
                turn,
                format!(
                    "agent `{agent}` refused {what} `{pick}`: {e}; it keeps {what} `{}`",
                    setting.current
                ),
            ),
            Err(_) => warn(
                state,
                turn,
                format!(
                    "agent `{agent}` did not answer the change to {what} `{pick}` within {SETTING_CALL_TIMEOUT_MS} ms; it may keep {what} `{}`",
                    setting.current
                ),
            ),
        }
    }
}

fn offer_options(state: &AgentSessionState) -> Vec<shoal_protocol::settings::OfferedSetting> {
    state
        .offer
        .as_ref()
        .map(|o| o.options.clone())
        .unwrap_or_default()
}

/// Keeps the process's offer up to date with a change Shoal made.
fn learn(state: &mut AgentSessionState, update: &AgentUpdate) {
    let offer = state.offer.get_or_insert_with(SessionOffer::default);
    match update {
        AgentUpdate::CurrentMode(mode) => {
            if let Some(modes) = offer.modes.as_mut() {
                mode.clone_into(&mut modes.current);
            }
        }
        AgentUpdate::ConfigOptions(options) => offer.options.clone_from(options),
        _ => {}
    }
}

fn warn(state: &AgentSessionState, turn: TurnId, message: String) {
    tracing::info!(agent = %state.args.agent_name, %message, "session setting not applied");
    let _ = state.args.conversation.cast(ConversationMsg::Agent {
        turn,
        event: AgentEvent::Warning(message),
        credit: None,
    });
}
