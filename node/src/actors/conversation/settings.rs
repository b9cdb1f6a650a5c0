//! The conversation's session settings: the owner's mode and model picks
//! ([`ShardCommand::SetSessionSettings`]), checked here first (owner, between turns,
//! offered by the agent) and again by the state machine; and the agent's offer, kept
//! current from its session start and updates and recorded in the store
//! ([`ShardCommand::RecordSessionOffer`], at most one in flight: changes meanwhile are
//! recorded after it).
//!
//! The picks reach the agent with each prompt ([`AgentSessionMsg::Prompt`]); the
//! agent-session actor applies those its process does not have yet.

use super::commits::{Commit, submit};
use super::*;
use crate::actors::agent_session::Picks;
use shoal_protocol::settings::{SessionOffer, SessionSettings, SettingKind, check_pick};

/// Settings commands in flight.
#[derive(Debug)]
pub(super) struct SettingsCommits {
    /// A `SetSessionSettings` waits for its commit (one at a time: another is busy).
    set_in_flight: bool,
    /// A `RecordSessionOffer` waits for its commit.
    offer_in_flight: bool,
    /// The offer as the store has it (or will, once the one in flight commits).
    recorded: Option<SessionOffer>,
}

impl SettingsCommits {
    /// Nothing in flight; the store holds `stored`.
    pub(super) fn new(stored: &SessionSettings) -> Self {
        Self {
            set_in_flight: false,
            offer_in_flight: false,
            recorded: stored.offer.clone(),
        }
    }
}

/// The owner's picks, for the agent.
pub(super) fn picks(state: &ConversationState) -> Picks {
    Picks {
        mode: state.settings.mode.clone(),
        model: state.settings.model.clone(),
        known: state.settings.offer.clone().map(Box::new),
    }
}

pub(super) fn on_set(
    state: &mut ConversationState,
    user: &UserId,
    mode: Option<String>,
    model: Option<String>,
    reply: RpcReplyPort<Result<SessionSettings, WireError>>,
) {
    if let Err(e) = check_set(state, user, &mode, &model) {
        let _ = reply.send(Err(e));
        return;
    }
    let cmd = ShardCommand::SetSessionSettings {
        conversation: state.record.id,
        owner: user.clone(),
        mode,
        model,
    };
    if let Err(e) = cmd.validate() {
        let _ = reply.send(Err(WireError::invalid("settings", e.to_string())));
        return;
    }
    state.settings_commits.set_in_flight = true;
    submit(state, cmd, Commit::Settings { reply });
}

/// Owner only, between turns, one change at a time, ids well formed and (when the
/// agent's offer is known) offered.
fn check_set(
    state: &ConversationState,
    user: &UserId,
    mode: &Option<String>,
    model: &Option<String>,
) -> Result<(), WireError> {
    authorize(state, user)?;
    let id = state.record.id;
    if let Some(turn) = &state.turn {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!(
                "turn {} is running in conversation {id}; the mode and model change between turns: wait for it or cancel it, then retry",
                turn.running.turn
            ),
        ));
    }
    if state.sends_pending > 0 || state.settings_commits.set_in_flight {
        return Err(WireError::new(
            ErrorCode::Busy,
            format!("conversation {id} is starting a turn or changing its settings; retry"),
        ));
    }
    if mode.is_none() && model.is_none() {
        return Err(WireError::invalid(
            "settings",
            "give a mode, a model or both (`--mode M`, `--model X`)",
        ));
    }
    for (kind, pick) in [(SettingKind::Mode, mode), (SettingKind::Model, model)] {
        let Some(pick) = pick else { continue };
        check_pick(kind, pick).map_err(|e| WireError::invalid(kind.name(), e))?;
        if let Some(offer) = &state.settings.offer {
            offer
                .check(&state.record.agent, kind, pick)
                .map_err(|e| WireError::invalid(kind.name(), e))?;
        }
    }
    Ok(())
}

pub(super) fn on_set_committed(
    state: &mut ConversationState,
    reply: RpcReplyPort<Result<SessionSettings, WireError>>,
    result: Result<Outcome, ProposeError>,
) {
    state.settings_commits.set_in_flight = false;
    let answer = match result {
        Ok(Outcome::Settings(stored)) => {
            // The offer in memory may be newer than the stored one (a record in flight).
            state.settings.mode = stored.mode;
            state.settings.model = stored.model;
            Ok(state.settings.clone())
        }
        Ok(other) => Err(state.ctx.internal_error(
            "change the conversation's settings",
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(propose_error(
            &state.ctx,
            "change the conversation's settings",
            e,
        )),
    };
    let _ = reply.send(answer);
}

/// A new agent session said what it offers (`None`: it said nothing — a resumed
/// session need not repeat it, so what is known stays; with nothing known, there is
/// nothing to pick).
pub(super) fn on_session_offer(state: &mut ConversationState, offer: Option<SessionOffer>) {
    match offer {
        Some(offer) => state.settings.offer = Some(offer),
        None if state.settings.offer.is_none() => {
            state.settings.offer = Some(SessionOffer::default());
        }
        None => {}
    }
    record_offer(state);
}

/// The agent's mode or config options changed (its own update, or a pick applied).
pub(super) fn on_offer_changed(state: &mut ConversationState, update: AgentUpdate) {
    let offer = state
        .settings
        .offer
        .get_or_insert_with(SessionOffer::default);
    match update {
        AgentUpdate::CurrentMode(mode) => match offer.modes.as_mut() {
            Some(modes) => modes.current = mode,
            None => return,
        },
        AgentUpdate::ConfigOptions(options) => offer.options = options,
        _ => return,
    }
    record_offer(state);
}

/// Records the offer in memory unless the store has it or will; one record in flight.
fn record_offer(state: &mut ConversationState) {
    if state.settings_commits.offer_in_flight
        || state.settings.offer == state.settings_commits.recorded
    {
        return;
    }
    let Some(offer) = state.settings.offer.clone() else {
        return;
    };
    let cmd = ShardCommand::RecordSessionOffer {
        conversation: state.record.id,
        offer: offer.clone(),
    };
    if let Err(e) = cmd.validate() {
        // The parser keeps offers within bounds; this is a bug, not the agent's doing.
        tracing::warn!(conversation = %state.record.id, error = %e, "agent offer not recorded");
        return;
    }
    state.settings_commits.offer_in_flight = true;
    state.settings_commits.recorded = Some(offer);
    submit(state, cmd, Commit::Offer);
}

pub(super) fn on_offer_committed(
    state: &mut ConversationState,
    result: Result<Outcome, ProposeError>,
) {
    state.settings_commits.offer_in_flight = false;
    if let Err(e) = result {
        tracing::warn!(conversation = %state.record.id, error = %e, "cannot record the agent's session offer");
        // Not stored: the next change (or session start) records it again.
        state.settings_commits.recorded = None;
        return;
    }
    // Changes that came while it was in flight.
    record_offer(state);
}
