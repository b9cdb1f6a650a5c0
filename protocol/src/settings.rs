//! Session settings: the modes and models (and other options) an agent offers for a
//! conversation's session, and the owner's picks.
//!
//! ACP gives an agent two ways to offer them: session **modes** (`modes` of
//! `session/new`, changed with `session/set_mode`) and **config options** (`configOptions`,
//! changed with `session/set_config_option`), each config option with an optional
//! category (`mode`, `model`, `thought_level`, …). A conversation's *mode* is the config
//! option of category `mode` when the agent has one, else its session modes; its *model*
//! is the config option of category `model`.

use serde::{Deserialize, Serialize};

/// Most config options kept of what an agent offers (more are dropped).
pub const SETTING_OPTIONS_MAX: usize = 32;
/// Most choices kept per option (more are dropped).
pub const SETTING_CHOICES_MAX: usize = 256;
/// Longest id (a mode id, a config option id, a value) kept or accepted, in bytes.
pub const SETTING_ID_BYTES_MAX: usize = 128;
/// Longest name or description kept, in bytes (longer ones are cut).
pub const SETTING_TEXT_BYTES_MAX: usize = 512;

/// One value an option can take (a mode, a model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChoice {
    /// What to pick it by (`code`, `gpt-5`).
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// What it does, if the agent says.
    pub description: Option<String>,
}

/// A setting an agent offers for its session: its session modes, or one select-type
/// config option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedSetting {
    /// The config option's id; empty for the agent's session modes (ACP `modes`).
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// The config option's category (`mode`, `model`, `thought_level`, …), if given.
    pub category: Option<String>,
    /// The value it has now.
    pub current: String,
    /// The values it can take.
    pub choices: Vec<SettingChoice>,
}

impl OfferedSetting {
    /// Whether it is the agent's session modes rather than a config option.
    pub fn is_session_modes(&self) -> bool {
        self.id.is_empty()
    }

    /// Whether `value` is one of its choices.
    pub fn offers(&self, value: &str) -> bool {
        self.choices.iter().any(|c| c.id == value)
    }

    /// Its choices' ids, comma separated (for messages).
    pub fn choice_list(&self) -> String {
        let ids: Vec<&str> = self.choices.iter().map(|c| c.id.as_str()).collect();
        ids.join(", ")
    }

    /// Whether every text is within the bounds above.
    fn within_bounds(&self) -> bool {
        let text = |t: &str| t.len() <= SETTING_TEXT_BYTES_MAX;
        self.id.len() <= SETTING_ID_BYTES_MAX
            && self.current.len() <= SETTING_ID_BYTES_MAX
            && text(&self.name)
            && self.category.as_deref().is_none_or(text)
            && self.choices.len() <= SETTING_CHOICES_MAX
            && self.choices.iter().all(|c| {
                c.id.len() <= SETTING_ID_BYTES_MAX
                    && text(&c.name)
                    && c.description.as_deref().is_none_or(text)
            })
    }
}

/// What an agent offers for a conversation's session, as it last said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionOffer {
    /// Its session modes (ACP `modes`), when it has them.
    pub modes: Option<OfferedSetting>,
    /// Its select-type config options (ACP `configOptions`), in the agent's order.
    pub options: Vec<OfferedSetting>,
}

/// Which of the conversation's settings a value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettingKind {
    /// The agent's mode.
    Mode,
    /// The agent's model.
    Model,
}

impl SettingKind {
    /// `mode` or `model`.
    pub fn name(self) -> &'static str {
        match self {
            SettingKind::Mode => "mode",
            SettingKind::Model => "model",
        }
    }
}

impl SessionOffer {
    /// Where the conversation's `kind` is set: the config option of that category, or
    /// (for a mode) the session modes. `None` when the agent offers none.
    pub fn setting(&self, kind: SettingKind) -> Option<&OfferedSetting> {
        let option = self
            .options
            .iter()
            .find(|o| o.category.as_deref() == Some(kind.name()));
        match kind {
            SettingKind::Mode => option.or(self.modes.as_ref()),
            SettingKind::Model => option,
        }
    }

    /// `Ok` when the agent offers `value` as its `kind`; otherwise a message saying what
    /// it offers (for `agent`).
    pub fn check(&self, agent: &str, kind: SettingKind, value: &str) -> Result<(), String> {
        let what = kind.name();
        match self.setting(kind) {
            Some(setting) if setting.offers(value) => Ok(()),
            Some(setting) => Err(format!(
                "agent `{agent}` does not offer {what} `{value}`; it offers: {}",
                setting.choice_list()
            )),
            None => Err(format!(
                "agent `{agent}` offers no {what} to choose from; leave --{what} out"
            )),
        }
    }

    /// Whether every list and text is within the bounds above (the node keeps offers
    /// within them; a replicated command carrying one is checked).
    pub fn within_bounds(&self) -> bool {
        self.options.len() <= SETTING_OPTIONS_MAX
            && self
                .modes
                .iter()
                .chain(&self.options)
                .all(OfferedSetting::within_bounds)
    }
}

/// A conversation's session settings: the owner's picks and what its agent offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettings {
    /// The mode the owner picked (`None`: the agent's default).
    pub mode: Option<String>,
    /// The model the owner picked (`None`: the agent's default).
    pub model: Option<String>,
    /// What the agent offered when its session last said (`None`: no session has
    /// started yet, so nothing is known).
    pub offer: Option<SessionOffer>,
}

impl SessionSettings {
    /// The owner's pick of `kind`.
    pub fn pick(&self, kind: SettingKind) -> Option<&str> {
        match kind {
            SettingKind::Mode => self.mode.as_deref(),
            SettingKind::Model => self.model.as_deref(),
        }
    }
}

/// Checks a mode or model id given by a user: 1–[`SETTING_ID_BYTES_MAX`] bytes without
/// control characters or whitespace.
pub fn check_pick(kind: SettingKind, value: &str) -> Result<(), String> {
    let what = kind.name();
    if value.is_empty() || value.len() > SETTING_ID_BYTES_MAX {
        return Err(format!(
            "the {what} must be 1 to {SETTING_ID_BYTES_MAX} bytes, not {}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "the {what} `{}` has whitespace or control characters; give its id as listed by `shoalctl conv show`",
            value.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(
        id: &str,
        category: Option<&str>,
        current: &str,
        choices: &[&str],
    ) -> OfferedSetting {
        OfferedSetting {
            id: id.into(),
            name: id.into(),
            category: category.map(Into::into),
            current: current.into(),
            choices: choices
                .iter()
                .map(|c| SettingChoice {
                    id: (*c).into(),
                    name: c.to_uppercase(),
                    description: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_mode_config_option_wins_over_session_modes_and_models_need_one() {
        let mut offer = SessionOffer {
            modes: Some(setting("", None, "code", &["ask", "code"])),
            options: vec![setting("model", Some("model"), "fast", &["fast", "smart"])],
        };
        assert!(offer.setting(SettingKind::Mode).unwrap().is_session_modes());
        assert_eq!(offer.setting(SettingKind::Model).unwrap().id, "model");
        offer
            .options
            .push(setting("agent-mode", Some("mode"), "a", &["a", "b"]));
        assert_eq!(offer.setting(SettingKind::Mode).unwrap().id, "agent-mode");
        assert!(offer.check("demo", SettingKind::Model, "smart").is_ok());
        let refused = offer.check("demo", SettingKind::Model, "huge").unwrap_err();
        assert_eq!(
            refused,
            "agent `demo` does not offer model `huge`; it offers: fast, smart"
        );
        let none = SessionOffer::default();
        assert!(
            none.check("demo", SettingKind::Model, "x")
                .unwrap_err()
                .contains("offers no model")
        );
    }

    #[test]
    fn picks_are_short_ids() {
        assert!(check_pick(SettingKind::Mode, "code").is_ok());
        assert!(check_pick(SettingKind::Mode, "").is_err());
        assert!(check_pick(SettingKind::Model, "a b").is_err());
        assert!(check_pick(SettingKind::Model, &"x".repeat(SETTING_ID_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn bounds_are_checked() {
        let mut offer = SessionOffer::default();
        assert!(offer.within_bounds());
        offer.options = vec![setting("m", None, "a", &["a"]); SETTING_OPTIONS_MAX + 1];
        assert!(!offer.within_bounds());
        offer.options = vec![setting(
            "m",
            None,
            &"a".repeat(SETTING_ID_BYTES_MAX + 1),
            &[],
        )];
        assert!(!offer.within_bounds());
    }
}
