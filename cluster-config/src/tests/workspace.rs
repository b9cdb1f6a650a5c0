//! The `[workspace]` section: defaults, bounds, env overrides and unknown keys, and the
//! keys where 0 disables (`idle_stop_ms`, `archive_after_ms`).

use super::*;
use std::num::{NonZeroU32, NonZeroU64};

#[test]
fn workspace_defaults() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    let workspace = &config.workspace;
    assert_eq!(workspace, &WorkspaceSection::default());
    assert_eq!(workspace.snapshot_bytes_max.get(), 256 * 1024 * 1024);
    assert_eq!(workspace.snapshot_files_max.get(), 100_000);
    assert_eq!(workspace.snapshot_timeout_ms.get(), 120_000);
    assert_eq!(workspace.snapshot_timeout(), Duration::from_secs(120));
    assert_eq!(workspace.idle_stop_ms, 900_000);
    assert_eq!(workspace.idle_stop(), Some(Duration::from_secs(15 * 60)));
    assert_eq!(workspace.archive_after_ms, 86_400_000);
    assert_eq!(
        workspace.archive_after(),
        Some(Duration::from_secs(24 * 3600))
    );
}

#[test]
fn workspace_zero_disables_idle_stop_and_archive() {
    let text = with(&[
        ("workspace.idle_stop_ms", "0"),
        ("workspace.archive_after_ms", "0"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("0 is valid");
    let workspace = &config.workspace;
    assert_eq!(workspace.idle_stop_ms, 0);
    assert_eq!(workspace.idle_stop(), None, "0 disables idle stop");
    assert_eq!(workspace.archive_after_ms, 0);
    assert_eq!(workspace.archive_after(), None, "0 disables archiving");

    let text = with(&[
        ("workspace.idle_stop_ms", "1"),
        ("workspace.archive_after_ms", "1"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("1 is valid");
    assert_eq!(config.workspace.idle_stop(), Some(Duration::from_millis(1)));
    assert_eq!(
        config.workspace.archive_after(),
        Some(Duration::from_millis(1))
    );
}

#[test]
fn workspace_idle_stop_and_archive_maxima_are_accepted() {
    let text = with(&[
        ("workspace.idle_stop_ms", "604800000"),
        ("workspace.archive_after_ms", "31536000000"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("maxima are valid");
    let workspace = &config.workspace;
    assert_eq!(workspace.idle_stop(), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(
        workspace.archive_after(),
        Some(Duration::from_secs(365 * 86_400))
    );
}

#[test]
fn workspace_explicit_values_are_read() {
    let text = with(&[
        ("workspace.snapshot_bytes_max", "1099511627776"),
        ("workspace.snapshot_files_max", "1"),
        ("workspace.snapshot_timeout_ms", "3600000"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    let workspace = &config.workspace;
    assert_eq!(workspace.snapshot_bytes_max.get(), 1 << 40);
    assert_eq!(workspace.snapshot_files_max.get(), 1);
    assert_eq!(workspace.snapshot_timeout(), Duration::from_secs(3600));
}

#[test]
fn workspace_rules_fire_naming_the_key() {
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("workspace.snapshot_bytes_max", "0")],
            "workspace.snapshot_bytes_max",
            "0 is outside 1..=1099511627776; set snapshot_bytes_max to a value from 1 to \
             1099511627776 (default 268435456)",
        ),
        (
            &[("workspace.snapshot_bytes_max", "1099511627777")],
            "workspace.snapshot_bytes_max",
            "1099511627777 is outside 1..=1099511627776",
        ),
        (
            &[("workspace.snapshot_files_max", "1000001")],
            "workspace.snapshot_files_max",
            "1000001 is outside 1..=1000000; set snapshot_files_max to a value from 1 to \
             1000000 (default 100000)",
        ),
        (
            &[("workspace.snapshot_files_max", "-1")],
            "workspace.snapshot_files_max",
            "-1 is outside 1..=1000000",
        ),
        (
            &[("workspace.snapshot_timeout_ms", "3600001")],
            "workspace.snapshot_timeout_ms",
            "3600001 is outside 1..=3600000; set snapshot_timeout_ms to a value from 1 to \
             3600000 (default 120000)",
        ),
        (
            &[("workspace.snapshot_timeout_ms", "\"2m\"")],
            "workspace.snapshot_timeout_ms",
            "expected an integer from 1 to 3600000, found string \"2m\"",
        ),
        (
            &[("workspace", "3")],
            "workspace",
            "expected a table, found integer 3",
        ),
        (
            &[("workspace.idle_stop_ms", "604800001")],
            "workspace.idle_stop_ms",
            "604800001 is outside 0..=604800000; set idle_stop_ms to a value from 1 to \
             604800000 (default 900000), or 0 to disable it",
        ),
        (
            &[("workspace.idle_stop_ms", "-1")],
            "workspace.idle_stop_ms",
            "-1 is outside 0..=604800000; use 0 to disable idle_stop_ms (a negative value \
             does not), or a value from 1 to 604800000 (default 900000)",
        ),
        (
            &[("workspace.archive_after_ms", "31536000001")],
            "workspace.archive_after_ms",
            "31536000001 is outside 0..=31536000000; set archive_after_ms to a value from 1 \
             to 31536000000 (default 86400000), or 0 to disable it",
        ),
        (
            &[("workspace.archive_after_ms", "-1")],
            "workspace.archive_after_ms",
            "-1 is outside 0..=31536000000; use 0 to disable archive_after_ms (a negative \
             value does not), or a value from 1 to 31536000000 (default 86400000)",
        ),
        (
            &[("workspace.archive_after_ms", "false")],
            "workspace.archive_after_ms",
            "expected an integer from 0 to 31536000000 (0 disables), found boolean false",
        ),
    ];
    assert_rules_fire(cases);
}

#[test]
fn workspace_unknown_keys_are_errors() {
    // (edits, expected key, expected fix)
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("workspace.snapshot_byte_max", "5")],
            "workspace.snapshot_byte_max",
            "unknown key `workspace.snapshot_byte_max`; did you mean `snapshot_bytes_max`?",
        ),
        (
            &[("workspace.zzz", "1")],
            "workspace.zzz",
            "remove it; the keys are listed in cluster-config/README.md",
        ),
        (
            &[("workspaces.snapshot_files_max", "5")],
            "workspaces",
            "did you mean `workspace`?",
        ),
        (
            &[("workspace.turn_timeout_ms", "5")],
            "workspace.turn_timeout_ms",
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

#[test]
fn workspace_env_overrides_apply() {
    let config = NodeConfig::from_toml_str(
        &with(&[("workspace.snapshot_files_max", "7")]),
        env(&[
            ("SHOAL_WORKSPACE__SNAPSHOT_BYTES_MAX", "1048576"),
            ("SHOAL_WORKSPACE__SNAPSHOT_FILES_MAX", "500"),
            ("SHOAL_WORKSPACE__SNAPSHOT_TIMEOUT_MS", "30000"),
        ]),
    )
    .expect("workspace overrides are valid");
    assert_eq!(config.workspace.snapshot_bytes_max.get(), 1024 * 1024);
    assert_eq!(
        config.workspace.snapshot_files_max.get(),
        500,
        "env wins over the file"
    );
    assert_eq!(config.workspace.snapshot_timeout(), Duration::from_secs(30));

    let config = NodeConfig::from_toml_str(
        &with(&[("workspace.archive_after_ms", "3600000")]),
        env(&[
            ("SHOAL_WORKSPACE__ARCHIVE_AFTER_MS", "0"),
            ("SHOAL_WORKSPACE__IDLE_STOP_MS", "60000"),
        ]),
    )
    .expect("0 from the environment is valid");
    assert_eq!(
        config.workspace.archive_after_ms, 0,
        "env wins over the file"
    );
    assert_eq!(config.workspace.archive_after(), None);
    assert_eq!(config.workspace.idle_stop(), Some(Duration::from_secs(60)));
}

#[test]
fn bad_workspace_env_values_name_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "SHOAL_WORKSPACE__SNAPSHOT_BYTES_MAX",
            "256MiB",
            "workspace.snapshot_bytes_max",
        ),
        (
            "SHOAL_WORKSPACE__SNAPSHOT_FILES_MAX",
            "0",
            "workspace.snapshot_files_max",
        ),
        (
            "SHOAL_WORKSPACE__SNAPSHOT_TIMEOUT_MS",
            "3600001",
            "workspace.snapshot_timeout_ms",
        ),
        (
            "SHOAL_WORKSPACE__IDLE_STOP_MS",
            "-1",
            "workspace.idle_stop_ms",
        ),
        (
            "SHOAL_WORKSPACE__ARCHIVE_AFTER_MS",
            "off",
            "workspace.archive_after_ms",
        ),
    ];
    assert_bad_env_values(cases);

    let err = parse_err(MINIMAL, &[("SHOAL_WORKSPACE__ARCHIVE_AFTER_MS", "-1")]);
    assert!(
        err.to_string()
            .contains("use 0 to disable archive_after_ms (a negative value does not)"),
        "{err}"
    );

    assert_unknown_env(&[(
        "SHOAL_WORKSPACE__SNAPSHOT_TIMOUT_MS",
        "did you mean `SHOAL_WORKSPACE__SNAPSHOT_TIMEOUT_MS`?",
    )]);
}

#[test]
fn validate_catches_workspace_edited_in_code() {
    let cases: &[(Edit, &str)] = &[
        (
            |c| c.workspace.snapshot_bytes_max = NonZeroU64::MAX,
            "workspace.snapshot_bytes_max",
        ),
        (
            |c| c.workspace.snapshot_files_max = NonZeroU32::MAX,
            "workspace.snapshot_files_max",
        ),
        (
            |c| c.workspace.snapshot_timeout_ms = NonZeroU64::MAX,
            "workspace.snapshot_timeout_ms",
        ),
        (
            |c| c.workspace.idle_stop_ms = 604_800_001,
            "workspace.idle_stop_ms",
        ),
        (
            |c| c.workspace.archive_after_ms = u64::MAX,
            "workspace.archive_after_ms",
        ),
    ];
    assert_edits_rejected(cases);
}

#[test]
fn workspace_idle_stop_and_archive_round_trip() {
    for (idle_stop, archive_after) in [("0", "0"), ("60000", "31536000000"), ("1", "3600000")] {
        let text = with(&[
            ("workspace.idle_stop_ms", idle_stop),
            ("workspace.archive_after_ms", archive_after),
        ]);
        let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
        let written = config.to_toml_string();
        assert!(
            written.contains(&format!("\nidle_stop_ms = {idle_stop}\n")),
            "{written}"
        );
        assert!(
            written.contains(&format!("\narchive_after_ms = {archive_after}\n")),
            "{written}"
        );
        let back = NodeConfig::from_toml_str(&written, no_env())
            .unwrap_or_else(|e| panic!("written config reads back: {e}\n{written}"));
        assert_eq!(back.workspace, config.workspace, "{written}");
        assert_eq!(back.workspace.idle_stop_ms.to_string(), idle_stop);
        assert_eq!(back.workspace.archive_after_ms.to_string(), archive_after);
        assert_eq!(back, config, "{written}");
    }
}
