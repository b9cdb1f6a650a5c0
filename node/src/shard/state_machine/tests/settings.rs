//! Unit tests of the session settings in the state machine.

use super::*;
use shoal_protocol::settings::{OfferedSetting, SessionOffer, SessionSettings, SettingChoice};

fn alice() -> UserId {
    UserId::parse("alice").unwrap()
}

fn set(
    mem: &mut Mem,
    owner: &str,
    mode: Option<&str>,
    model: Option<&str>,
) -> Result<Outcome, Rejection> {
    mem.run(&ShardCommand::SetSessionSettings {
        conversation: conv(),
        owner: UserId::parse(owner).unwrap(),
        mode: mode.map(Into::into),
        model: model.map(Into::into),
    })
}

fn offer() -> SessionOffer {
    let choices = |ids: &[&str]| {
        ids.iter()
            .map(|id| SettingChoice {
                id: (*id).into(),
                name: (*id).into(),
                description: None,
            })
            .collect()
    };
    SessionOffer {
        modes: Some(OfferedSetting {
            id: String::new(),
            name: "Mode".into(),
            category: Some("mode".into()),
            current: "code".into(),
            choices: choices(&["code", "ask"]),
        }),
        options: vec![OfferedSetting {
            id: "model".into(),
            name: "Model".into(),
            category: Some("model".into()),
            current: "fast".into(),
            choices: choices(&["fast", "smart"]),
        }],
    }
}

fn settings(outcome: Result<Outcome, Rejection>) -> SessionSettings {
    match outcome {
        Ok(Outcome::Settings(settings)) => *settings,
        other => panic!("expected settings, got {other:?}"),
    }
}

#[test]
fn picks_are_checked_against_the_recorded_offer_once_there_is_one() {
    let mut mem = Mem::default();
    create(&mut mem);
    // Nothing is known yet: a well-formed pick is kept.
    let first = settings(set(&mut mem, "alice", Some("anything"), None));
    assert_eq!(first.mode.as_deref(), Some("anything"));
    mem.run(&ShardCommand::RecordSessionOffer {
        conversation: conv(),
        offer: offer(),
    })
    .unwrap();
    let before = mem.0.clone();
    match set(&mut mem, "alice", Some("ask"), Some("huge")) {
        Err(Rejection::Invalid(message)) => {
            assert!(
                message.contains("does not offer model `huge`; it offers: fast, smart"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mem.0, before, "a refused pick writes nothing");
    let after = settings(set(&mut mem, "alice", Some("ask"), Some("smart")));
    assert_eq!(
        (after.mode.as_deref(), after.model.as_deref()),
        (Some("ask"), Some("smart"))
    );
    assert_eq!(after.offer, Some(offer()));
    // A new offer keeps the picks.
    let mut newer = offer();
    newer.modes.as_mut().unwrap().current = "ask".into();
    mem.run(&ShardCommand::RecordSessionOffer {
        conversation: conv(),
        offer: newer.clone(),
    })
    .unwrap();
    let stored: SessionSettings = read(&mem, &super::super::settings::settings_key(conv()))
        .unwrap()
        .unwrap();
    assert_eq!(stored.mode.as_deref(), Some("ask"));
    assert_eq!(stored.offer, Some(newer));
}

#[test]
fn picks_are_refused_during_a_turn_for_others_and_when_malformed() {
    let mut mem = Mem::default();
    create(&mut mem);
    assert_eq!(
        set(&mut mem, "mallory", Some("ask"), None),
        Err(Rejection::NotFound(conv()))
    );
    assert!(matches!(
        set(&mut mem, "alice", None, None),
        Err(Rejection::Invalid(_))
    ));
    assert!(matches!(
        set(&mut mem, "alice", Some("two words"), None),
        Err(Rejection::Invalid(_))
    ));
    let turn = started(send(&mut mem, 1)).turn;
    assert_eq!(
        set(&mut mem, "alice", Some("ask"), None),
        Err(Rejection::Busy(turn.turn))
    );
    let too_big = SessionOffer {
        modes: None,
        options: vec![
            offer().options[0].clone();
            shoal_protocol::settings::SETTING_OPTIONS_MAX + 1
        ],
    };
    assert!(matches!(
        mem.run(&ShardCommand::RecordSessionOffer {
            conversation: conv(),
            offer: too_big
        }),
        Err(Rejection::Invalid(_))
    ));
}

#[test]
fn settings_go_with_their_conversation() {
    let mut mem = Mem::default();
    create(&mut mem);
    settings(set(&mut mem, "alice", Some("ask"), None));
    let key = super::super::settings::settings_key(conv());
    assert!(mem.0.contains_key(&key));
    mem.run(&ShardCommand::DeleteConversation {
        conversation: conv(),
        owner: alice(),
    })
    .unwrap();
    assert!(!mem.0.contains_key(&key));
}

#[test]
fn switching_agents_keeps_each_agents_session_and_clears_the_picks() {
    let mut mem = Mem::default();
    create(&mut mem);
    mem.run(&ShardCommand::SetAgentSession {
        conversation: conv(),
        session_id: Some("demo-1".into()),
    })
    .unwrap();
    settings(set(&mut mem, "alice", Some("ask"), None));
    let switch = |agent: &str| ShardCommand::SwitchAgent {
        conversation: conv(),
        owner: alice(),
        agent: agent.into(),
    };
    let rec = match mem.run(&switch("other")) {
        Ok(Outcome::Conversation(rec)) => *rec,
        other => panic!("{other:?}"),
    };
    assert_eq!((rec.agent.as_str(), rec.agent_session), ("other", None));
    assert!(
        !mem.0
            .contains_key(&super::super::settings::settings_key(conv()))
    );
    mem.run(&ShardCommand::SetAgentSession {
        conversation: conv(),
        session_id: Some("other-7".into()),
    })
    .unwrap();
    assert!(matches!(
        mem.run(&switch("other")),
        Err(Rejection::Invalid(_))
    ));
    assert!(matches!(
        mem.run(&switch("Bad Id")),
        Err(Rejection::Invalid(_))
    ));
    let back = match mem.run(&switch("demo")) {
        Ok(Outcome::Conversation(rec)) => *rec,
        other => panic!("{other:?}"),
    };
    assert_eq!(back.agent_session.as_deref(), Some("demo-1"), "resumed");
    let again = match mem.run(&switch("other")) {
        Ok(Outcome::Conversation(rec)) => *rec,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.agent_session.as_deref(), Some("other-7"));
    let turn = started(send(&mut mem, 5)).turn;
    assert_eq!(mem.run(&switch("demo")), Err(Rejection::Busy(turn.turn)));
    let mallory = ShardCommand::SwitchAgent {
        conversation: conv(),
        owner: UserId::parse("mallory").unwrap(),
        agent: "demo".into(),
    };
    assert_eq!(mem.run(&mallory), Err(Rejection::NotFound(conv())));
}
