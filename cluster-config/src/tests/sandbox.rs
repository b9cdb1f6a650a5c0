//! The `[sandbox]` section: the `isolation` mode's default, names, errors, env override,
//! round trip and unknown keys.

use super::*;

#[test]
fn sandbox_isolation_defaults_to_none() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    assert_eq!(config.sandbox, SandboxSection::default());
    assert_eq!(config.sandbox.isolation, Isolation::None);
    assert_eq!(Isolation::default(), Isolation::None);
    assert_eq!(config.sandbox.isolation.as_str(), "none");

    let text = with(&[("sandbox.isolation", "\"none\"")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("\"none\" is valid");
    assert_eq!(config.sandbox.isolation, Isolation::None);

    let dev = NodeConfig::dev(PathBuf::from("/d"), PathBuf::from("agent"), Vec::new());
    assert_eq!(dev.sandbox.isolation, Isolation::None, "dev preset");
}

#[test]
fn sandbox_isolation_bwrap_parses() {
    let text = with(&[("sandbox.isolation", "\"bwrap\"")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("\"bwrap\" is valid");
    assert_eq!(config.sandbox.isolation, Isolation::Bwrap);
    assert_eq!(config.sandbox.isolation.as_str(), "bwrap");
    assert_eq!(config.sandbox.isolation.to_string(), "bwrap");
}

#[test]
fn bad_sandbox_isolation_names_the_key_and_the_allowed_values() {
    for bad in ["\"docker\"", "\"Bwrap\"", "\"\"", "\" none\""] {
        let err = parse_err(&with(&[("sandbox.isolation", bad)]), &[]);
        let shown = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{shown}");
        assert_eq!(err.key(), "sandbox.isolation", "{shown}");
        assert!(
            shown.starts_with("config error at `sandbox.isolation`: "),
            "{shown}"
        );
        assert!(shown.contains("is not an isolation mode"), "{shown}");
        assert!(
            shown.contains("use one of \"none\" (") && shown.contains(", \"bwrap\" ("),
            "lists both values: {shown}"
        );
        assert_one_line(&err);
    }
    let err = parse_err(&with(&[("sandbox.isolation", "\"docker\"")]), &[]);
    assert_eq!(
        err.to_string(),
        "config error at `sandbox.isolation`: \"docker\" is not an isolation mode; use one of \
         \"none\" (a plain child process, the default), \"bwrap\" (each agent under \
         bubblewrap; needs `bwrap` installed)"
    );

    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("sandbox.isolation", "true")],
            "sandbox.isolation",
            "expected a string, found boolean true; put the value in double quotes",
        ),
        (
            &[("sandbox", "\"bwrap\"")],
            "sandbox",
            "expected a table, found string \"bwrap\"",
        ),
    ];
    assert_rules_fire(cases);
}

#[test]
fn sandbox_isolation_env_override() {
    let config = NodeConfig::from_toml_str(MINIMAL, env(&[("SHOAL_SANDBOX__ISOLATION", "bwrap")]))
        .expect("override is valid");
    assert_eq!(config.sandbox.isolation, Isolation::Bwrap);

    let config = NodeConfig::from_toml_str(
        &with(&[("sandbox.isolation", "\"bwrap\"")]),
        env(&[("SHOAL_SANDBOX__ISOLATION", "none")]),
    )
    .expect("override is valid");
    assert_eq!(
        config.sandbox.isolation,
        Isolation::None,
        "env wins over the file"
    );

    assert_bad_env_values(&[("SHOAL_SANDBOX__ISOLATION", "chroot", "sandbox.isolation")]);
    let err = parse_err(MINIMAL, &[("SHOAL_SANDBOX__ISOLATION", "chroot")]);
    assert!(
        err.to_string()
            .contains("\"chroot\" is not an isolation mode; use one of \"none\""),
        "{err}"
    );

    assert_unknown_env(&[(
        "SHOAL_SANDBOX__ISOLATON",
        "did you mean `SHOAL_SANDBOX__ISOLATION`?",
    )]);
}

#[test]
fn sandbox_isolation_round_trips() {
    for isolation in Isolation::ALL {
        let text = with(&[("sandbox.isolation", &format!("\"{}\"", isolation.as_str()))]);
        let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
        assert_eq!(config.sandbox.isolation, isolation);
        let written = config.to_toml_string();
        assert!(
            written.contains(&format!("\n[sandbox]\nisolation = \"{isolation}\"\n")),
            "{written}"
        );
        let back = NodeConfig::from_toml_str(&written, no_env())
            .unwrap_or_else(|e| panic!("written config reads back: {e}\n{written}"));
        assert_eq!(back.sandbox.isolation, isolation, "{written}");
        assert_eq!(back, config, "{written}");
        assert_eq!(back.to_toml_string(), written, "writing is stable");
    }
}

#[test]
fn sandbox_unknown_keys_are_errors() {
    // (edits, expected key, expected fix)
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("sandbox.isolaton", "\"bwrap\"")],
            "sandbox.isolaton",
            "unknown key `sandbox.isolaton`; did you mean `isolation`?",
        ),
        (
            &[("sandbox.zzz", "1")],
            "sandbox.zzz",
            "remove it; the keys are listed in cluster-config/README.md",
        ),
        (
            &[("sandboxes.isolation", "\"bwrap\"")],
            "sandboxes",
            "did you mean `sandbox`?",
        ),
        (
            &[("sandbox.idle_stop_ms", "5")],
            "sandbox.idle_stop_ms",
            "remove it",
        ),
    ];
    for (edits, key, expected) in cases {
        let err = parse_err(&with(edits), &[]);
        let shown = err.to_string();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{shown}");
        assert_eq!(err.key(), *key, "{shown}");
        assert!(shown.contains(expected), "expected {expected:?} in {shown}");
        assert_one_line(&err);
    }
}
