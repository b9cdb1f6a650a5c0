//! `auth.credentials_key_path`: optional, resolved like `auth.signing_key_path`,
//! written only when set, and set by the `dev` preset.

use super::*;

#[test]
fn credentials_key_absent_is_none() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    assert_eq!(config.auth.credentials_key_path, None);
    assert!(
        !config.to_toml_string().contains("credentials_key_path"),
        "an unset key is not written"
    );
}

#[test]
fn credentials_key_is_read() {
    let text = with(&[(
        "auth.credentials_key_path",
        "\"/etc/shoal/auth/credentials.key\"",
    )]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("/etc/shoal/auth/credentials.key"))
    );

    // `from_toml_str` keeps a relative value as written.
    let text = with(&[("auth.credentials_key_path", "\"auth/credentials.key\"")]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("auth/credentials.key"))
    );
}

#[test]
fn load_resolves_a_relative_credentials_key_against_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shoal.toml");

    let text = with(&[
        ("auth.signing_key_path", "\"auth/signing.key\""),
        ("auth.credentials_key_path", "\"auth/credentials.key\""),
    ]);
    std::fs::write(&path, text).expect("write config");
    let config = NodeConfig::load(&path).expect("valid file");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(dir.path().join("auth/credentials.key"))
    );
    assert_eq!(
        config.auth.signing_key_path,
        dir.path().join("auth/signing.key")
    );

    let text = with(&[("auth.credentials_key_path", "\"/abs/credentials.key\"")]);
    std::fs::write(&path, text).expect("write config");
    let config = NodeConfig::load(&path).expect("valid file");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("/abs/credentials.key")),
        "an absolute path is kept"
    );

    std::fs::write(&path, MINIMAL).expect("write config");
    let config = NodeConfig::load(&path).expect("valid file");
    assert_eq!(config.auth.credentials_key_path, None, "absent stays unset");
}

#[test]
fn credentials_key_round_trips() {
    let configs = [
        with(&[(
            "auth.credentials_key_path",
            "\"/etc/shoal/credentials.key\"",
        )]),
        with(&[("auth.credentials_key_path", "\"rel/credentials.key\"")]),
        MINIMAL.to_owned(),
    ];
    for text in configs {
        let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
        let written = config.to_toml_string();
        let back = NodeConfig::from_toml_str(&written, no_env())
            .unwrap_or_else(|e| panic!("written config reads back: {e}\n{written}"));
        assert_eq!(
            back.auth.credentials_key_path, config.auth.credentials_key_path,
            "{written}"
        );
        assert_eq!(back, config, "{written}");
        assert_eq!(
            written.contains("\ncredentials_key_path = "),
            config.auth.credentials_key_path.is_some(),
            "written only when set: {written}"
        );
    }
}

#[test]
fn dev_preset_sets_the_credentials_key() {
    let config = NodeConfig::dev(
        PathBuf::from("/tmp/shoal-dev"),
        PathBuf::from("shoal-demo-agent"),
        Vec::new(),
    );
    config.validate().expect("dev preset is valid");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("/tmp/shoal-dev/auth/credentials.key"))
    );
    let written = config.to_toml_string();
    assert!(
        written.contains("\ncredentials_key_path = \"/tmp/shoal-dev/auth/credentials.key\"\n"),
        "{written}"
    );
    let back = NodeConfig::from_toml_str(&written, no_env()).expect("reads back");
    assert_eq!(back, config);
}

#[test]
fn credentials_key_env_override() {
    let config = NodeConfig::from_toml_str(
        MINIMAL,
        env(&[("SHOAL_AUTH__CREDENTIALS_KEY_PATH", "keys/credentials.key")]),
    )
    .expect("override is valid");
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("keys/credentials.key"))
    );
    assert_bad_env_values(&[(
        "SHOAL_AUTH__CREDENTIALS_KEY_PATH",
        "",
        "auth.credentials_key_path",
    )]);
}

#[test]
fn credentials_key_rules_fire_naming_the_key() {
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("auth.credentials_key_path", "\"\"")],
            "auth.credentials_key_path",
            "the path is empty; set it to the workspace credentials key",
        ),
        (
            &[("auth.credentials_key_path", "true")],
            "auth.credentials_key_path",
            "expected a string, found boolean true",
        ),
    ];
    assert_rules_fire(cases);

    let err = parse_err(&with(&[("auth.credential_key_path", "\"k\"")]), &[]);
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("did you mean `credentials_key_path`?"),
        "{err}"
    );
}

#[test]
fn validate_catches_an_empty_credentials_key_set_in_code() {
    assert_edits_rejected(&[(
        |c| c.auth.credentials_key_path = Some(PathBuf::new()),
        "auth.credentials_key_path",
    )]);
    let mut config = NodeConfig::dev(PathBuf::from("/d"), PathBuf::from("agent"), Vec::new());
    config.auth.credentials_key_path = None;
    config.validate().expect("unset is valid");
}
