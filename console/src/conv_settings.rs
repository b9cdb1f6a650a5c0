//! `shoalctl conv set` and the settings lines of `conv show`: a conversation's mode and
//! model, what its agent offers, and their JSON.

use crate::conv::print_line;
use anyhow::Context;
use serde_json::{Value, json};
use shoal_client::Client;
use shoal_protocol::ConversationId;
use shoal_protocol::settings::{OfferedSetting, SessionSettings, SettingKind};
use std::io::{self, Write};

/// `conv set ID [--mode M] [--model X]`: prints the settings after it.
pub(crate) async fn set(
    client: &Client,
    id: ConversationId,
    mode: Option<String>,
    model: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    if mode.is_none() && model.is_none() {
        anyhow::bail!("nothing to set: give --mode, --model or both");
    }
    let settings = client
        .set_session_settings(id, mode.as_deref(), model.as_deref())
        .await
        .with_context(|| format!("cannot change the settings of {id}"))?;
    if json {
        print_line(&settings_json(&settings).to_string())
    } else {
        let mut out = io::stdout().lock();
        lines(&mut out, &settings).context("cannot write to stdout")?;
        Ok(())
    }
}

/// One line per setting the owner picked or the agent offers:
/// `mode: ask (picked; offers: code, ask)`; nothing when neither.
pub(crate) fn lines(out: &mut impl Write, settings: &SessionSettings) -> io::Result<()> {
    for kind in [SettingKind::Mode, SettingKind::Model] {
        let offered = settings.offer.as_ref().and_then(|o| o.setting(kind));
        let pick = settings.pick(kind);
        let line = match (pick, offered) {
            (None, None) => continue,
            (Some(pick), None) if settings.offer.is_none() => {
                format!("{pick} (picked; applied when the agent's session starts)")
            }
            (Some(pick), None) => format!("{pick} (picked; the agent offers no {})", kind.name()),
            (pick, Some(offered)) => described(pick, offered),
        };
        writeln!(out, "{}: {line}", kind.name())?;
    }
    Ok(())
}

fn described(pick: Option<&str>, offered: &OfferedSetting) -> String {
    let offers = offered.choice_list();
    match pick {
        Some(pick) if pick != offered.current => format!(
            "{pick} (picked; the agent runs {} until the next turn; offers: {offers})",
            offered.current
        ),
        Some(_) => format!("{} (picked; offers: {offers})", offered.current),
        None => format!(
            "{} (the agent's default; offers: {offers})",
            offered.current
        ),
    }
}

/// `{"mode", "model", "offer": {"modes", "options"} | null}`.
pub(crate) fn settings_json(settings: &SessionSettings) -> Value {
    let setting = |s: &OfferedSetting| {
        json!({
            "id": s.id,
            "name": s.name,
            "category": s.category,
            "current": s.current,
            "choices": s.choices.iter().map(|c| json!({
                "id": c.id, "name": c.name, "description": c.description,
            })).collect::<Vec<_>>(),
        })
    };
    json!({
        "mode": settings.mode,
        "model": settings.model,
        "offer": settings.offer.as_ref().map(|o| json!({
            "modes": o.modes.as_ref().map(setting),
            "options": o.options.iter().map(setting).collect::<Vec<_>>(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::settings::{SessionOffer, SettingChoice};

    fn offered(id: &str, category: &str, current: &str, choices: &[&str]) -> OfferedSetting {
        OfferedSetting {
            id: id.into(),
            name: id.into(),
            category: Some(category.into()),
            current: current.into(),
            choices: choices
                .iter()
                .map(|c| SettingChoice {
                    id: (*c).into(),
                    name: (*c).into(),
                    description: None,
                })
                .collect(),
        }
    }

    fn render(settings: &SessionSettings) -> String {
        let mut out = Vec::new();
        lines(&mut out, settings).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn picks_and_offers_are_shown() {
        let mut settings = SessionSettings::default();
        assert_eq!(render(&settings), "");
        settings.mode = Some("ask".into());
        assert_eq!(
            render(&settings),
            "mode: ask (picked; applied when the agent's session starts)\n"
        );
        settings.offer = Some(SessionOffer {
            modes: Some(offered("", "mode", "code", &["code", "ask"])),
            options: vec![offered("model", "model", "fast", &["fast", "smart"])],
        });
        assert_eq!(
            render(&settings),
            "mode: ask (picked; the agent runs code until the next turn; offers: code, ask)\n\
             model: fast (the agent's default; offers: fast, smart)\n"
        );
        let value = settings_json(&settings);
        assert_eq!(value["mode"], "ask");
        assert_eq!(value["offer"]["options"][0]["choices"][1]["id"], "smart");
    }
}
