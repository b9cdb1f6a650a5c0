//! Tests that touch files: `load`, and the README's examples.

use super::*;

#[test]
fn load_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing.toml");
    let err = NodeConfig::load(&path).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("config error: cannot read {}: ", path.display())),
        "{shown}"
    );
    assert!(shown.ends_with("; check the path"), "{shown}");
    assert_eq!(err.key(), "");
}

#[test]
fn load_resolves_relative_paths_against_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shoal.toml");
    let text = with(&[
        ("node.data_dir", "\"data\""),
        ("tls.ca_cert_path", "\"tls/ca.pem\""),
        ("tls.cert_path", "\"/abs/node.pem\""),
        ("auth.signing_key_path", "\"auth/signing.key\""),
    ]);
    std::fs::write(&path, text).expect("write config");
    let config = NodeConfig::load(&path).expect("valid file");
    assert_eq!(config.node.data_dir, dir.path().join("data"));
    assert_eq!(config.tls.ca_cert_path, dir.path().join("tls/ca.pem"));
    assert_eq!(config.tls.cert_path, PathBuf::from("/abs/node.pem"));
    assert_eq!(
        config.auth.signing_key_path,
        dir.path().join("auth/signing.key")
    );
}

#[test]
fn load_rejects_oversized_and_non_utf8_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.toml");
    let size_bytes = usize::try_from(CONFIG_FILE_BYTES_MAX).expect("fits usize") + 1;
    std::fs::write(&big, vec![b'#'; size_bytes]).expect("write big file");
    let err = NodeConfig::load(&big).expect_err("too large");
    assert!(err.to_string().contains("larger than"), "{err}");

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).expect("write binary file");
    let err = NodeConfig::load(&binary).expect_err("not UTF-8");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[test]
fn readme_documents_every_key_and_its_example_is_valid() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let fence = "```toml\n";
    let start = readme.find(fence).expect("README has a TOML example") + fence.len();
    let len = readme[start..].find("```").expect("the example is closed");
    let example = &readme[start..start + len];
    let config = NodeConfig::from_toml_str(example, no_env())
        .unwrap_or_else(|e| panic!("README example is valid: {e}"));
    // The built-ins and the example's own agent.
    assert_eq!(config.agents.len(), 5);
    for section in schema::SECTIONS {
        assert!(
            readme.contains(&format!("### `[{}]`", section.name)),
            "{}",
            section.name
        );
        for key in section.keys {
            assert!(
                readme.contains(&format!("| `{key}` |")),
                "README table row for {key}"
            );
            assert!(
                example.contains(&format!("\n{key} = ")),
                "README example sets {key}"
            );
        }
    }
    for rule in schema::INT_RULES {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", rule.key)))
            .expect("row exists");
        let default = match rule.default {
            Some(default) => format!("`{default}`"),
            None => "none".to_owned(),
        };
        assert!(
            row.contains(&default),
            "README default of {}: {default}",
            rule.key
        );
        assert!(
            row.contains(&format!("{}..={}", rule.min, rule.max)),
            "README range of {}",
            rule.key
        );
    }
}

#[test]
fn readme_error_examples_match() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let errors = [
        parse_err("[node]\nid = \"n1\"\ndata_dir = /var\n", &[]),
        parse_err(MINIMAL, &[("SHOAL_CONVERSATION__TURN_TIMEOUT_MS", "abc")]),
        parse_err(&with(&[("conversation.checkpoint_intervall_ms", "5")]), &[]),
        parse_err(
            &with(&[
                ("conversation.checkpoint_interval_ms", "5000"),
                ("conversation.turn_idle_timeout_ms", "3000"),
            ]),
            &[],
        ),
        parse_err(&with(&[("cluster.lease_ms", "400")]), &[]),
    ];
    for err in errors {
        assert!(readme.contains(&format!("{err}\n")), "README quotes: {err}");
    }
}
