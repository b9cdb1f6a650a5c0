//! `[agents.<id>]`: the built-ins, overrides, `extends`, home templates, the default
//! agent, and the probe keys of `[conversation]`.

use super::*;

/// `MINIMAL` without its `[agents.demo]` table.
fn no_agents(edits: Edits<'_>) -> String {
    let mut all = vec![("agents", REMOVE)];
    all.extend_from_slice(edits);
    with(&all)
}

#[test]
fn a_config_without_agents_has_the_builtins_and_demo_by_default() {
    let config = NodeConfig::from_toml_str(&no_agents(&[]), no_env()).expect("valid");
    let ids: Vec<&str> = config.agents.keys().map(AgentName::as_str).collect();
    assert_eq!(ids, ["claude", "demo", "gemini", "opencode"]);
    assert_eq!(config.default_agent.as_str(), DEFAULT_AGENT_BUILTIN);
    assert!(
        config
            .agents
            .values()
            .all(|a| a.enabled && a.home.is_empty())
    );
    let opencode = &config.agents["opencode"];
    assert_eq!(opencode.command, PathBuf::from("opencode"));
    assert_eq!(opencode.args, ["acp"]);
    assert_eq!(opencode.label, "OpenCode");
    assert_eq!(opencode.env["OPENCODE_DISABLE_AUTOUPDATE"], "1");
    assert_eq!(config.agents["gemini"].args, ["--acp"]);
    assert_eq!(
        config.agents["claude"].command,
        PathBuf::from("claude-agent-acp")
    );
    for builtin in BUILTIN_AGENTS {
        assert_eq!(
            config.agents[builtin.name],
            AgentSpec::builtin(builtin_agent(builtin.name).expect("built-in")),
        );
    }
}

#[test]
fn a_builtin_is_overridden_key_by_key() {
    let text = no_agents(&[
        (
            "agents.opencode.env",
            "{ OPENCODE_LOG = \"debug\", OPENCODE_DISABLE_SHARE = \"0\" }",
        ),
        ("agents.opencode.label", "\"OpenCode (local)\""),
        ("agents.gemini.enabled", "false"),
        (
            "agents.gemini.mcp",
            "{ files = { command = \"/bin/files\", args = [\"--ro\"], env = { TOKEN = \"t\" } }, docs = { url = \"https://mcp.example/v1\", headers = { Authorization = \"Bearer x\" } } }",
        ),
        (
            "agents.gemini.permissions",
            "{ default = \"deny\", read = \"allow\", execute = \"ask\" }",
        ),
        ("agents.gemini.args", "[\"--experimental-acp\"]"),
        ("default_agent", "\"opencode\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    let opencode = &config.agents["opencode"];
    assert_eq!(opencode.label, "OpenCode (local)");
    assert_eq!(opencode.command, PathBuf::from("opencode"), "kept");
    assert_eq!(opencode.args, ["acp"], "kept");
    assert_eq!(opencode.env["OPENCODE_LOG"], "debug", "added");
    assert_eq!(opencode.env["OPENCODE_DISABLE_SHARE"], "0", "overridden");
    assert_eq!(opencode.env["OPENCODE_DISABLE_AUTOUPDATE"], "1", "kept");
    let gemini = &config.agents["gemini"];
    assert!(!gemini.enabled);
    assert_eq!(gemini.args, ["--experimental-acp"]);
    assert_eq!(gemini.command, PathBuf::from("gemini"));
}

#[test]
fn new_agents_extend_acp_or_a_builtin() {
    let text = no_agents(&[
        ("agents.mine.extends", "\"acp\""),
        ("agents.mine.command", "\"/opt/mine/bin/agent\""),
        ("agents.legacy.command", "\"/usr/bin/legacy-agent\""),
        ("agents.oc-local.extends", "\"opencode\""),
        (
            "agents.oc-local.env",
            "{ OPENCODE_CONFIG = \"/etc/oc.json\" }",
        ),
        ("default_agent", "\"mine\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    assert_eq!(config.agents.len(), 7);
    let mine = &config.agents["mine"];
    assert_eq!(mine, &AgentSpec::new("mine", "/opt/mine/bin/agent"));
    // A table with a command and no `extends` is a new ACP agent, as before built-ins.
    assert_eq!(
        config.agents["legacy"],
        AgentSpec::new("legacy", "/usr/bin/legacy-agent")
    );
    let local = &config.agents["oc-local"];
    assert_eq!(local.command, PathBuf::from("opencode"));
    assert_eq!(local.args, ["acp"]);
    assert_eq!(local.label, "OpenCode");
    assert_eq!(local.env["OPENCODE_CONFIG"], "/etc/oc.json");
    assert_eq!(local.env["OPENCODE_DISABLE_AUTOUPDATE"], "1");
    assert_eq!(
        config.agents["opencode"],
        AgentSpec::builtin(builtin_agent("opencode").expect("built-in")),
        "the built-in itself is unchanged"
    );
}

#[test]
fn the_default_agent_is_the_only_table_written_and_must_be_enabled() {
    let one = no_agents(&[("agents.claude.label", "\"Claude\"")]);
    let config = NodeConfig::from_toml_str(&one, no_env()).expect("valid");
    assert_eq!(config.default_agent.as_str(), "claude");

    let err = parse_err(&no_agents(&[("agents.demo.enabled", "false")]), &[]);
    assert_eq!(err.key(), "default_agent", "{err}");
    assert!(err.to_string().contains("names a disabled agent"), "{err}");
    assert_one_line(&err);

    let config = NodeConfig::from_toml_str(
        &no_agents(&[
            ("agents.demo.enabled", "false"),
            ("default_agent", "\"opencode\""),
        ]),
        no_env(),
    )
    .expect("another default");
    assert!(!config.agents["demo"].enabled);
}

#[test]
fn home_templates_are_read() {
    let text = no_agents(&[
        (
            "agents.opencode.home",
            "{ \".config/opencode/opencode.json\" = { content = \"{}\" }, \".claude/settings.json\" = { source = \"/etc/shoal/claude.json\" } }",
        ),
        ("default_agent", "\"opencode\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    let home = &config.agents["opencode"].home;
    let path = |p: &str| HomePath::new(p).expect("good path");
    assert_eq!(
        home[&path(".config/opencode/opencode.json")],
        HomeFile::Content("{}".to_owned())
    );
    assert_eq!(
        home[&path(".claude/settings.json")],
        HomeFile::Source(PathBuf::from("/etc/shoal/claude.json"))
    );
}

/// Edits whose values are built at run time.
type OwnedEdits = Vec<(&'static str, String)>;

#[test]
fn agent_rules_fire_naming_the_key() {
    let home = |entry: &str| format!("{{ {entry} }}");
    let cases: Vec<(OwnedEdits, &str, &str)> = vec![
        (
            vec![("agents.claude.extends", "\"acp\"".into())],
            "agents.claude.extends",
            "`claude` is a built-in agent, it extends nothing; remove `extends`",
        ),
        (
            vec![
                ("agents.x.extends", "\"codex\"".into()),
                ("agents.x.command", "\"x\"".into()),
            ],
            "agents.x.extends",
            "\"codex\" is not an agent to extend; use \"acp\" (any ACP agent; then set `command`) or a built-in: claude, demo, gemini, opencode",
        ),
        (
            vec![("agents.x.extends", "\"acp\"".into())],
            "agents.x.command",
            "missing required key; `x` is not a built-in agent",
        ),
        (
            vec![("agents.demo.enabled", "\"no\"".into())],
            "agents.demo.enabled",
            "expected a boolean, found string \"no\"; write true or false without quotes",
        ),
        (
            vec![("agents.demo.label", "\"\"".into())],
            "agents.demo.label",
            "is not a valid label",
        ),
        (
            vec![("agents.demo.label", "\"a\\nb\"".into())],
            "agents.demo.label",
            "no control characters",
        ),
        (
            vec![("agents.demo.home", "3".into())],
            "agents.demo.home",
            "expected a table, found integer 3",
        ),
        (
            vec![(
                "agents.demo.home",
                home("\"/etc/passwd\" = { content = \"x\" }"),
            )],
            "agents.demo.home.\"/etc/passwd\"",
            "the path is absolute",
        ),
        (
            vec![(
                "agents.demo.home",
                home("\"../escape\" = { content = \"x\" }"),
            )],
            "agents.demo.home.\"../escape\"",
            "must stay inside the agent's HOME",
        ),
        (
            vec![("agents.demo.home", home("\"a//b\" = { content = \"x\" }"))],
            "agents.demo.home.\"a//b\"",
            "empty, `.` or `..` component",
        ),
        (
            vec![("agents.demo.home", home("\"a/./b\" = { content = \"x\" }"))],
            "agents.demo.home.\"a/./b\"",
            "empty, `.` or `..` component",
        ),
        (
            vec![("agents.demo.home", home("\"\" = { content = \"x\" }"))],
            "agents.demo.home.\"\"",
            "the path is empty",
        ),
        (
            vec![(
                "agents.demo.home",
                home("\".shoal-managed.json\" = { content = \"x\" }"),
            )],
            "agents.demo.home.\".shoal-managed.json\"",
            "Shoal's own record",
        ),
        (
            vec![("agents.demo.home", home("\"a\" = \"text\""))],
            "agents.demo.home.\"a\"",
            "expected a table, found string \"text\"; write it as { content = \"…\" } or { source = \"/path/on/the/node\" }",
        ),
        (
            vec![(
                "agents.demo.home",
                home("\"a\" = { content = \"x\", source = \"/y\" }"),
            )],
            "agents.demo.home.\"a\"",
            "both `content` and `source` are set",
        ),
        (
            vec![("agents.demo.home", home("\"a\" = {}"))],
            "agents.demo.home.\"a\".content",
            "missing required key; set exactly one of `content",
        ),
        (
            vec![("agents.demo.home", home("\"a\" = { contents = \"x\" }"))],
            "agents.demo.home.\"a\".contents",
            "did you mean `content`?",
        ),
        (
            vec![("agents.demo.home", home("\"a\" = { content = 3 }"))],
            "agents.demo.home.\"a\".content",
            "expected a string, found integer 3",
        ),
        (
            vec![("agents.demo.home", home("\"a\" = { source = \"\" }"))],
            "agents.demo.home.\"a\".source",
            "the path is empty",
        ),
        (
            vec![("agents.demo.permissions", "\"allow\"".into())],
            "agents.demo.permissions",
            "expected a table, found string \"allow\"",
        ),
        (
            vec![("agents.demo.permissions", "{ shell = \"allow\" }".into())],
            "agents.demo.permissions.shell",
            "`shell` is not a tool kind; use `default` or one of: read, edit, delete",
        ),
        (
            vec![("agents.demo.permissions", "{ execute = \"yes\" }".into())],
            "agents.demo.permissions.execute",
            "expected \"ask\", \"allow\" or \"deny\", found string \"yes\"; set it to \"ask\"",
        ),
        (
            vec![(
                "agents.demo.mcp",
                "{ \"bad name\" = { command = \"x\" } }".into(),
            )],
            "agents.demo.mcp.\"bad name\"",
            "not a server name",
        ),
        (
            vec![("agents.demo.mcp", "{ docs = { url = \"ftp://x\" } }".into())],
            "agents.demo.mcp.docs.url",
            "is not an http:// or https:// URL",
        ),
        (
            vec![("agents.demo.mcp", "{ docs = { } }".into())],
            "agents.demo.mcp.docs.command",
            "set `command = ",
        ),
        (
            vec![(
                "agents.demo.mcp",
                "{ docs = { command = \"x\", url = \"https://x\" } }".into(),
            )],
            "agents.demo.mcp.docs",
            "both `command` and `url` are set",
        ),
        (
            vec![(
                "agents.demo.mcp",
                "{ docs = { url = \"https://x\", env = { A = \"b\" } } }".into(),
            )],
            "agents.demo.mcp.docs.url",
            "an HTTP server has no `args` or `env`",
        ),
        (
            vec![(
                "agents.demo.mcp",
                "{ docs = { url = \"https://x\", headers = { \"a b\" = \"c\" } } }".into(),
            )],
            "agents.demo.mcp.docs.headers.\"a b\"",
            "expected a name of letters",
        ),
        (
            vec![(
                "agents.demo.mcp",
                "{ docs = { url = \"https://x\", header = {} } }".into(),
            )],
            "agents.demo.mcp.docs.header",
            "did you mean `headers`?",
        ),
        (
            vec![("agents.demo.extend", "\"acp\"".into())],
            "agents.demo.extend",
            "did you mean `extends`?",
        ),
        (
            vec![("conversation.agent_probe_timeout_ms", "50".into())],
            "conversation.agent_probe_timeout_ms",
            "50 is outside 100..=600000",
        ),
        (
            vec![("conversation.agent_probe_ttl_ms", "999".into())],
            "conversation.agent_probe_ttl_ms",
            "999 is outside 1000..=86400000",
        ),
    ];
    for (edits, key, expected) in cases {
        let edits: Vec<(&str, &str)> = edits.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let err = parse_err(&with(&edits), &[]);
        let shown = err.to_string();
        assert_eq!(err.key(), key, "{shown}");
        assert!(shown.contains(expected), "expected {expected:?} in {shown}");
        assert_one_line(&err);
    }
}

#[test]
fn home_template_limits_are_enforced() {
    let many: Vec<String> = (0..=HOME_FILES_MAX)
        .map(|i| format!("\"f{i}\" = {{ content = \"x\" }}"))
        .collect();
    let text = with(&[("agents.demo.home", &format!("{{ {} }}", many.join(", ")))]);
    let err = parse_err(&text, &[]);
    assert_eq!(err.key(), "agents.demo.home", "{err}");

    let deep = vec!["d"; HOME_PATH_COMPONENTS_MAX + 1].join("/");
    assert!(HomePath::new(&deep).is_err());
    assert!(HomePath::new(&"x".repeat(HOME_PATH_BYTES_MAX + 1)).is_err());
    assert!(HomePath::new(".config/opencode/opencode.json").is_ok());

    let mut config = NodeConfig::dev(PathBuf::from("/d"), PathBuf::from("agent"), Vec::new());
    let big = "x".repeat(HOME_FILE_BYTES_MAX + 1);
    if let Some(demo) = config.agents.get_mut("demo") {
        demo.home
            .insert(HomePath::new("big").expect("path"), HomeFile::Content(big));
    }
    let err = config.validate().expect_err("too big");
    assert_eq!(err.key(), "agents.demo.home.\"big\".content", "{err}");
}

#[test]
fn too_many_agents_is_an_error() {
    let tables: Vec<String> = (0..AGENTS_MAX)
        .map(|i| format!("[agents.a{i}]\ncommand = \"x\"\n"))
        .collect();
    let text = format!(
        "default_agent = \"demo\"\n{}{}",
        with(&[("agents", REMOVE)]),
        tables.join("")
    );
    let err = parse_err(&text, &[]);
    assert_eq!(err.key(), "agents", "{err}");
    assert!(err.to_string().contains("the limit is 64"), "{err}");
}

#[test]
fn relative_template_sources_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = with(&[(
        "agents.demo.home",
        "{ \"a.json\" = { source = \"templates/a.json\" }, \"b.json\" = { source = \"/abs/b.json\" } }",
    )]);
    let file = dir.path().join("shoal.toml");
    std::fs::write(&file, text).expect("write config");
    let config = NodeConfig::load(&file).expect("valid");
    let home = &config.agents["demo"].home;
    assert_eq!(
        home[&HomePath::new("a.json").expect("path")],
        HomeFile::Source(dir.path().join("templates/a.json"))
    );
    assert_eq!(
        home[&HomePath::new("b.json").expect("path")],
        HomeFile::Source(PathBuf::from("/abs/b.json"))
    );
}

#[test]
fn agents_and_probe_keys_round_trip() {
    let text = no_agents(&[
        (
            "agents.opencode.home",
            "{ \".config/opencode/opencode.json\" = { content = \"{\\n  \\\"a\\\": 1\\n}\" }, \"x/y\" = { source = \"/etc/y\" } }",
        ),
        ("agents.gemini.enabled", "false"),
        ("agents.oc2.extends", "\"opencode\""),
        ("agents.mine.command", "\"/bin/mine\""),
        ("agents.mine.label", "\"Mine\""),
        ("default_agent", "\"mine\""),
        ("conversation.agent_probe_timeout_ms", "2000"),
        ("conversation.agent_probe_ttl_ms", "60000"),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    assert_eq!(
        config.conversation.agent_probe_timeout(),
        Duration::from_secs(2)
    );
    assert_eq!(
        config.conversation.agent_probe_ttl(),
        Duration::from_secs(60)
    );
    let written = config.to_toml_string();
    let back = NodeConfig::from_toml_str(&written, no_env())
        .unwrap_or_else(|e| panic!("written config reads back: {e}\n{written}"));
    assert_eq!(back, config, "{written}");
    assert_eq!(back.to_toml_string(), written, "writing is stable");
}

#[test]
fn probe_keys_default_and_come_from_the_environment() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("valid");
    assert_eq!(config.conversation.agent_probe_timeout_ms.get(), 15_000);
    assert_eq!(config.conversation.agent_probe_ttl_ms.get(), 600_000);
    let config = NodeConfig::from_toml_str(
        MINIMAL,
        env(&[("SHOAL_CONVERSATION__AGENT_PROBE_TTL_MS", "5000")]),
    )
    .expect("env override");
    assert_eq!(
        config.conversation.agent_probe_ttl(),
        Duration::from_secs(5)
    );
}

#[test]
fn permission_policies_are_read_and_kept_over_extends() {
    let text = no_agents(&[
        (
            "agents.demo.permissions",
            "{ default = \"allow\", execute = \"ask\" }",
        ),
        ("agents.opencode.permissions", "{ read = \"allow\" }"),
        ("agents.oc2.extends", "\"opencode\""),
        ("agents.oc2.permissions", "{ edit = \"deny\" }"),
        ("default_agent", "\"demo\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    let demo = &config.agents["demo"].permissions;
    assert_eq!(demo.default, Some(PermissionMode::Allow));
    assert_eq!(demo.kinds["execute"], PermissionMode::Ask);
    assert_eq!(config.agents["opencode"].permissions.default, None);
    let oc2 = &config.agents["oc2"].permissions;
    assert_eq!(
        oc2.kinds.len(),
        1,
        "extends starts from the built-in, not the table"
    );
    assert_eq!(oc2.kinds["edit"], PermissionMode::Deny);
    assert!(config.agents["claude"].permissions.kinds.is_empty());
}

#[test]
fn mcp_servers_are_read_and_their_values_never_debug_printed() {
    let text = no_agents(&[(
        "agents.demo.mcp",
        "{ files = { command = \"/bin/files\", env = { TOKEN = \"t0k3n\" } }, docs = { url = \"https://mcp.example/v1\", headers = { Authorization = \"Bearer s3cret\" } } }",
    )]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    let mcp = &config.agents["demo"].mcp;
    assert_eq!(
        mcp["files"],
        AgentMcpServer::Stdio {
            command: "/bin/files".into(),
            args: vec![],
            env: BTreeMap::from([("TOKEN".into(), "t0k3n".into())]),
        }
    );
    assert!(
        matches!(&mcp["docs"], AgentMcpServer::Http { url, .. } if url == "https://mcp.example/v1")
    );
    let shown = format!("{config:?}");
    assert!(
        shown.contains("Authorization") && !shown.contains("s3cret") && !shown.contains("t0k3n")
    );
}
