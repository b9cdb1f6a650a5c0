//! The `[conversation]` section's `initiator_grace_ms`, where 0 disables: default,
//! bounds, the `initiator_grace_ms <= turn_timeout_ms` rule, env overrides and writing.

use super::*;

#[test]
fn initiator_grace_default() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    let conv = &config.conversation;
    assert_eq!(conv, &ConversationSection::default());
    assert_eq!(conv.initiator_grace_ms, 30_000);
    assert_eq!(conv.initiator_grace(), Some(Duration::from_secs(30)));
    assert_eq!(
        NodeConfig::dev(PathBuf::from("/d"), PathBuf::from("agent"), Vec::new())
            .conversation
            .initiator_grace_ms,
        30_000,
        "the dev preset keeps the default"
    );
}

#[test]
fn initiator_grace_zero_cancels_at_once() {
    let text = with(&[("conversation.initiator_grace_ms", "0")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("0 is valid");
    config.validate().expect("0 validates");
    assert_eq!(config.conversation.initiator_grace_ms, 0);
    assert_eq!(
        config.conversation.initiator_grace(),
        None,
        "0: cancel on disconnect"
    );

    let text = with(&[("conversation.initiator_grace_ms", "1")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("1 is valid");
    assert_eq!(
        config.conversation.initiator_grace(),
        Some(Duration::from_millis(1))
    );
}

#[test]
fn initiator_grace_maximum_and_turn_timeout_boundary_are_accepted() {
    let text = with(&[
        ("conversation.initiator_grace_ms", "3600000"),
        ("conversation.turn_timeout_ms", "3600000"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("maximum, equal to turn");
    assert_eq!(
        config.conversation.initiator_grace(),
        Some(Duration::from_secs(3600))
    );

    let text = with(&[
        ("conversation.turn_idle_timeout_ms", "5000"),
        ("conversation.permission_timeout_ms", "5000"),
        ("conversation.turn_timeout_ms", "5000"),
        ("conversation.initiator_grace_ms", "5000"),
    ]);
    NodeConfig::from_toml_str(&text, no_env()).expect("grace equal to the turn timeout");
}

#[test]
fn initiator_grace_rules_fire_naming_the_key() {
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[
                ("conversation.initiator_grace_ms", "3600001"),
                ("conversation.turn_timeout_ms", "86400000"),
            ],
            "conversation.initiator_grace_ms",
            "3600001 is outside 0..=3600000; set initiator_grace_ms to a value from 1 to \
             3600000 (default 30000), or 0 to disable it",
        ),
        (
            &[("conversation.initiator_grace_ms", "-1")],
            "conversation.initiator_grace_ms",
            "-1 is outside 0..=3600000; use 0 to disable initiator_grace_ms (a negative value \
             does not), or a value from 1 to 3600000 (default 30000)",
        ),
        (
            &[("conversation.initiator_grace_ms", "\"30s\"")],
            "conversation.initiator_grace_ms",
            "expected an integer from 0 to 3600000 (0 disables), found string \"30s\"",
        ),
        // Within its own bounds, but above the default turn timeout (30 min).
        (
            &[("conversation.initiator_grace_ms", "3600000")],
            "conversation.initiator_grace_ms",
            "config error at `conversation.initiator_grace_ms`: 3600000 is above \
             `conversation.turn_timeout_ms` (1800000); lower initiator_grace_ms or raise \
             turn_timeout_ms",
        ),
        (
            &[
                ("conversation.turn_idle_timeout_ms", "5000"),
                ("conversation.permission_timeout_ms", "5000"),
                ("conversation.turn_timeout_ms", "5000"),
                ("conversation.initiator_grace_ms", "5001"),
            ],
            "conversation.initiator_grace_ms",
            "5001 is above `conversation.turn_timeout_ms` (5000); lower initiator_grace_ms or \
             raise turn_timeout_ms",
        ),
    ];
    assert_rules_fire(cases);
}

#[test]
fn initiator_grace_unknown_key_suggests_it() {
    let err = parse_err(&with(&[("conversation.initator_grace_ms", "5")]), &[]);
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    assert_eq!(err.key(), "conversation.initator_grace_ms", "{err}");
    assert!(
        err.to_string()
            .contains("did you mean `initiator_grace_ms`?"),
        "{err}"
    );
    assert_one_line(&err);
}

#[test]
fn initiator_grace_env_override_applies() {
    let config = NodeConfig::from_toml_str(
        &with(&[("conversation.initiator_grace_ms", "60000")]),
        env(&[("SHOAL_CONVERSATION__INITIATOR_GRACE_MS", "0")]),
    )
    .expect("0 from the environment is valid");
    assert_eq!(
        config.conversation.initiator_grace_ms, 0,
        "env wins over the file"
    );
    assert_eq!(config.conversation.initiator_grace(), None);

    assert_bad_env_values(&[
        (
            "SHOAL_CONVERSATION__INITIATOR_GRACE_MS",
            "30s",
            "conversation.initiator_grace_ms",
        ),
        (
            "SHOAL_CONVERSATION__INITIATOR_GRACE_MS",
            "3600001",
            "conversation.initiator_grace_ms",
        ),
    ]);
}

#[test]
fn validate_catches_initiator_grace_edited_in_code() {
    let cases: &[(Edit, &str)] = &[
        (
            |c| c.conversation.initiator_grace_ms = u64::MAX,
            "conversation.initiator_grace_ms",
        ),
        // In bounds, above the dev preset's turn timeout (the default, 30 min).
        (
            |c| c.conversation.initiator_grace_ms = 1_800_001,
            "conversation.initiator_grace_ms",
        ),
    ];
    assert_edits_rejected(cases);
}

#[test]
fn initiator_grace_round_trips() {
    for grace in ["0", "1", "30000", "3600000"] {
        let text = with(&[
            ("conversation.initiator_grace_ms", grace),
            ("conversation.turn_timeout_ms", "3600000"),
        ]);
        let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
        let written = config.to_toml_string();
        assert!(
            written.contains(&format!("\ninitiator_grace_ms = {grace}\n")),
            "{written}"
        );
        let back = NodeConfig::from_toml_str(&written, no_env())
            .unwrap_or_else(|e| panic!("written config reads back: {e}\n{written}"));
        assert_eq!(back.conversation.initiator_grace_ms.to_string(), grace);
        assert_eq!(back, config, "{written}");
    }
    // The default is written too, so a written config states every key.
    let minimal = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal");
    let written = minimal.to_toml_string();
    assert!(
        written.contains("\ninitiator_grace_ms = 30000\n"),
        "{written}"
    );
}
