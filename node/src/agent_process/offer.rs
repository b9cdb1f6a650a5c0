//! Lenient parsing of the session settings an agent offers (`modes` and
//! `configOptions` of `session/new` / `session/load`, `current_mode_update`,
//! `config_option_update`, the `session/set_config_option` answer) and the JSON of
//! `session/set_mode` / `session/set_config_option`. No I/O.
//!
//! Everything kept is bounded ([`shoal_protocol::settings`]): lists are cut, names and
//! descriptions shortened; an entry whose id is too long to pick by is skipped. Only
//! select-type config options are kept (boolean toggles cannot be picked as a mode or
//! model).

use serde_json::{Value, json};
use shoal_protocol::settings::{
    OfferedSetting, SETTING_CHOICES_MAX, SETTING_ID_BYTES_MAX, SETTING_OPTIONS_MAX,
    SETTING_TEXT_BYTES_MAX, SessionOffer, SettingChoice,
};

/// The settings in a `session/new` or `session/load` answer; `None` when it offers
/// neither modes nor config options.
pub(crate) fn parse_session_offer(result: &Value) -> Option<SessionOffer> {
    let modes = result.get("modes").and_then(parse_modes);
    let options = result
        .get("configOptions")
        .map(parse_config_options)
        .unwrap_or_default();
    (modes.is_some() || !options.is_empty()).then_some(SessionOffer { modes, options })
}

/// A mode id from `current_mode_update` (`None` when missing or too long).
pub(crate) fn parse_current_mode(update: &Value) -> Option<String> {
    id(update.get("currentModeId")?)
}

/// `configOptions` (a list) as kept: select options only, at most
/// [`SETTING_OPTIONS_MAX`].
pub(crate) fn parse_config_options(list: &Value) -> Vec<OfferedSetting> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(parse_config_option)
        .take(SETTING_OPTIONS_MAX)
        .collect()
}

/// `session/set_mode` parameters.
pub(crate) fn set_mode_params(session_id: &str, mode: &str) -> Value {
    json!({ "sessionId": session_id, "modeId": mode })
}

/// `session/set_config_option` parameters for a select option.
pub(crate) fn set_config_option_params(session_id: &str, config_id: &str, value: &str) -> Value {
    json!({ "sessionId": session_id, "configId": config_id, "value": value })
}

fn parse_modes(modes: &Value) -> Option<OfferedSetting> {
    let current = id(modes.get("currentModeId")?)?;
    let choices = modes
        .get("availableModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| choice(m, "id"))
        .take(SETTING_CHOICES_MAX)
        .collect();
    Some(OfferedSetting {
        id: String::new(),
        name: "Mode".to_owned(),
        category: Some("mode".to_owned()),
        current,
        choices,
    })
}

fn parse_config_option(option: &Value) -> Option<OfferedSetting> {
    if option.get("type").and_then(Value::as_str) != Some("select") {
        return None;
    }
    let option_id = id(option.get("id")?)?;
    if option_id.is_empty() {
        return None;
    }
    // Grouped options (`[{group, name, options: […]}]`) are flattened.
    let mut choices = Vec::new();
    for entry in option
        .get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match entry.get("options").and_then(Value::as_array) {
            Some(grouped) => choices.extend(grouped.iter().filter_map(|c| choice(c, "value"))),
            None => choices.extend(choice(entry, "value")),
        }
        if choices.len() >= SETTING_CHOICES_MAX {
            choices.truncate(SETTING_CHOICES_MAX);
            break;
        }
    }
    Some(OfferedSetting {
        name: text(option.get("name")).unwrap_or_else(|| option_id.clone()),
        id: option_id,
        category: text(option.get("category")),
        current: id(option.get("currentValue")?)?,
        choices,
    })
}

/// A choice whose id is at `key`.
fn choice(entry: &Value, key: &str) -> Option<SettingChoice> {
    let choice_id = id(entry.get(key)?)?;
    Some(SettingChoice {
        name: text(entry.get("name")).unwrap_or_else(|| choice_id.clone()),
        description: text(entry.get("description")),
        id: choice_id,
    })
}

/// An id: a string of at most [`SETTING_ID_BYTES_MAX`] bytes (a longer one could not be
/// picked, so it is not kept).
fn id(value: &Value) -> Option<String> {
    let id = value.as_str()?;
    (id.len() <= SETTING_ID_BYTES_MAX).then(|| id.to_owned())
}

/// A name or description, cut to [`SETTING_TEXT_BYTES_MAX`] bytes.
fn text(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?;
    Some(crate::shard::state_machine::prefix_within(text, SETTING_TEXT_BYTES_MAX).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_select_options_are_read_and_bounded() {
        let answer = json!({
            "sessionId": "s",
            "modes": {"currentModeId": "code", "availableModes": [
                {"id": "ask", "name": "Ask", "description": "answers only"},
                {"id": "code", "name": "Code"},
                {"name": "no id"},
            ]},
            "configOptions": [
                {"id": "model", "name": "Model", "category": "model", "type": "select",
                 "currentValue": "fast", "options": [
                    {"value": "fast", "name": "Fast"},
                    {"group": "big", "name": "Big ones", "options": [{"value": "smart", "name": "Smart"}]},
                 ]},
                {"id": "web", "name": "Web", "type": "boolean", "currentValue": true},
                {"id": "x".repeat(SETTING_ID_BYTES_MAX + 1), "type": "select", "currentValue": "a", "options": []},
            ],
        });
        let offer = parse_session_offer(&answer).expect("an offer");
        let modes = offer.modes.as_ref().expect("modes");
        assert_eq!(modes.current, "code");
        assert_eq!(modes.choice_list(), "ask, code");
        assert_eq!(
            modes.choices[0].description.as_deref(),
            Some("answers only")
        );
        assert_eq!(
            offer.options.len(),
            1,
            "booleans and unpickable ids are left out"
        );
        assert_eq!(offer.options[0].category.as_deref(), Some("model"));
        assert_eq!(offer.options[0].choice_list(), "fast, smart");
        assert!(offer.within_bounds());
        assert_eq!(parse_session_offer(&json!({"sessionId": "s"})), None);
        assert_eq!(
            parse_current_mode(&json!({"currentModeId": "ask"})).as_deref(),
            Some("ask")
        );
    }

    #[test]
    fn lists_are_cut_to_their_bounds() {
        let many: Vec<Value> = (0..SETTING_CHOICES_MAX + 5)
            .map(|i| json!({"value": format!("v{i}"), "name": "n".repeat(SETTING_TEXT_BYTES_MAX * 2)}))
            .collect();
        let option = json!({"id": "o", "type": "select", "currentValue": "v0", "options": many});
        let options = parse_config_options(&json!(vec![option; SETTING_OPTIONS_MAX + 3]));
        assert_eq!(options.len(), SETTING_OPTIONS_MAX);
        assert_eq!(options[0].choices.len(), SETTING_CHOICES_MAX);
        assert_eq!(options[0].choices[0].name.len(), SETTING_TEXT_BYTES_MAX);
        let offer = SessionOffer {
            modes: None,
            options,
        };
        assert!(offer.within_bounds());
    }
}
