//! End-to-end tests of [`NodeConfig`]: defaults, every rule, env overrides, the `dev`
//! preset, round-tripping and loading files.

use super::*;
use std::net::SocketAddr;
use std::time::Duration;

mod agents;
mod cluster;
mod conversation;
mod credentials;
mod files;
mod sandbox;
mod workspace;

const MINIMAL: &str = r#"
[node]
id = "n1"
data_dir = "/var/lib/shoal"

[tls]
ca_cert_path = "/etc/shoal/ca.pem"
cert_path = "/etc/shoal/node.pem"
key_path = "/etc/shoal/node.key"

[auth]
signing_key_path = "/etc/shoal/signing.key"

[agents.demo]
command = "shoal-demo-agent"
"#;

/// Edits for [`with`]: (`dotted.key.path`, TOML value text or [`REMOVE`]).
type Edits<'a> = &'a [(&'a str, &'a str)];

/// Marks a key to delete in [`with`].
const REMOVE: &str = "<remove>";

/// `MINIMAL` with `edits` applied: (`dotted.key.path`, TOML value text or [`REMOVE`]).
fn with(edits: &[(&str, &str)]) -> String {
    let mut root: toml::Table = toml::from_str(MINIMAL).expect("MINIMAL parses");
    for (path, value) in edits {
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("non-empty path");
        let mut table = &mut root;
        for part in parts {
            table = table
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("path goes through tables");
        }
        if *value == REMOVE {
            table.remove(last);
        } else {
            let parsed: toml::Table =
                toml::from_str(&format!("v = {value}")).expect("test value is TOML");
            table.insert(last.to_owned(), parsed["v"].clone());
        }
    }
    toml::to_string(&root).expect("test table serializes")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse_err(text: &str, env_pairs: &[(&str, &str)]) -> ConfigError {
    match NodeConfig::from_toml_str(text, env(env_pairs)) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    }
}

fn assert_one_line(err: &ConfigError) {
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "one line: {shown}");
    assert!(shown.starts_with("config error"), "{shown}");
}

#[test]
fn defaults_fill_in() {
    let config = NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal config is valid");
    assert_eq!(config.node.id.as_str(), "n1");
    assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/shoal"));
    assert_eq!(config.node.listen_addr, LISTEN_ADDR_DEFAULT);
    assert_eq!(
        config.node.listen_addr,
        "127.0.0.1:7443".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(config.node.advertise_addr, config.node.listen_addr);
    assert_eq!(config.auth.token_ttl_secs.get(), 30 * 24 * 3600);
    assert_eq!(
        config.auth.credentials_key_path, None,
        "credentials disabled"
    );
    assert_eq!(config.cluster.shard_count.get(), 64);
    assert_eq!(config.cluster.replicas.get(), 3);
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.limits.max_connections.get(), 1024);
    assert_eq!(config.limits.max_streams_per_connection.get(), 64);
    assert_eq!(config.limits.followers_per_conversation_max.get(), 256);
    assert_eq!(config.limits.follower_queue_frames.get(), 1024);
    assert_eq!(config.limits.replay_buffer_events.get(), 4096);
    assert_eq!(config.limits.replay_buffer_bytes.get(), 4 * 1024 * 1024);
    assert_eq!(config.limits.turn_buffer_bytes_max.get(), 2 * 1024 * 1024);
    assert_eq!(config.limits.active_conversations_max.get(), 10_000);
    assert_eq!(config.limits.agent_processes_max.get(), 64);
    let conv = &config.conversation;
    assert_eq!(conv, &ConversationSection::default());
    assert_eq!(conv.idle_passivate_ms.get(), 300_000);
    assert_eq!(
        conv.checkpoint_interval(),
        std::time::Duration::from_millis(250)
    );
    assert_eq!(conv.turn_timeout_ms.get(), 1_800_000);
    assert_eq!(conv.turn_idle_timeout_ms.get(), 300_000);
    assert_eq!(conv.agent_start_timeout_ms.get(), 60_000);
    assert_eq!(conv.permission_timeout_ms.get(), 300_000);
    assert_eq!(conv.initiator_grace_ms, 30_000);
    assert_eq!(config.workspace, WorkspaceSection::default());
    assert_eq!(config.sandbox.isolation, Isolation::None);
    assert_eq!(config.telemetry.log_filter, "info");
    assert_eq!(config.telemetry.otlp_endpoint, None);
    assert_eq!(config.default_agent.as_str(), "demo");
    let demo = config.agents.get("demo").expect("demo agent");
    assert_eq!(demo.command, PathBuf::from("shoal-demo-agent"));
    assert!(demo.args.is_empty() && demo.env.is_empty());
}

#[test]
fn explicit_values_are_read() {
    let text = with(&[
        ("node.listen_addr", "\"0.0.0.0:9000\""),
        ("node.advertise_addr", "\"[::1]:9001\""),
        ("cluster.shard_count", "1024"),
        ("cluster.replicas", "7"),
        ("cluster.seeds", "[\"10.0.0.12:7443\", \" [::1]:7444 \"]"),
        ("cluster.heartbeat_ms", "50"),
        ("cluster.election_timeout_min_ms", "150"),
        ("cluster.election_timeout_max_ms", "151"),
        ("cluster.lease_ms", "149"),
        ("cluster.placement_grace_ms", "0"),
        ("cluster.snapshot_every_entries", "16"),
        ("cluster.quiesce_after_ms", "0"),
        ("gossip.preset", "\"lan-large\""),
        ("gossip.probe_period_ms", "500"),
        ("gossip.suspect_to_down_ms", "501"),
        ("gossip.packet_bytes_max", "512"),
        (
            "telemetry.otlp_endpoint",
            "\"https://otel.example.com:4317\"",
        ),
        ("agents.demo.args", "[\"--fast\", \"-v\"]"),
        ("agents.demo.env", "{ RUST_LOG = \"debug\" }"),
        ("agents.other.command", "\"/bin/other\""),
        ("default_agent", "\"other\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("valid");
    assert_eq!(config.node.listen_addr.to_string(), "0.0.0.0:9000");
    assert_eq!(config.node.advertise_addr.to_string(), "[::1]:9001");
    assert_eq!(config.cluster.shard_count.get(), 1024);
    assert_eq!(config.cluster.replicas.get(), 7);
    let seeds: Vec<String> = config.cluster.seeds.iter().map(|a| a.to_string()).collect();
    assert_eq!(seeds, ["10.0.0.12:7443", "[::1]:7444"]);
    assert_eq!(config.cluster.heartbeat_ms.get(), 50);
    assert_eq!(config.cluster.election_timeout_min_ms.get(), 150);
    assert_eq!(config.cluster.election_timeout_max_ms.get(), 151);
    assert_eq!(config.cluster.lease_ms.get(), 149);
    assert_eq!(config.cluster.placement_grace(), Duration::ZERO);
    assert_eq!(config.cluster.snapshot_every_entries.get(), 16);
    assert_eq!(config.cluster.quiesce_after(), None);
    assert_eq!(config.gossip.preset, GossipPreset::LanLarge);
    assert_eq!(config.gossip.preset.cluster_size_hint(), 128);
    assert_eq!(
        config.gossip.probe_period(),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        config.gossip.suspect_to_down(),
        Some(Duration::from_millis(501))
    );
    assert_eq!(config.gossip.packet_bytes_max.get(), 512);
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("https://otel.example.com:4317")
    );
    assert_eq!(
        config.agents["demo"].args,
        vec!["--fast".to_owned(), "-v".to_owned()]
    );
    assert_eq!(config.agents["demo"].env["RUST_LOG"], "debug");
    assert_eq!(config.default_agent.as_str(), "other");
}

#[test]
fn every_integer_at_its_maximum_fits_its_type() {
    let mut edits: Vec<(String, String)> = schema::INT_RULES
        .iter()
        .map(|rule| (rule.path(), rule.max.to_string()))
        .collect();
    // At their maxima, checkpoint (60 s) < turn idle (24 h) <= turn (24 h) still holds
    // and follower_queue_frames == replay_buffer_events. The Raft timings share one
    // maximum but must be strictly ordered, so lease and election minimum sit just below.
    edits.extend(
        [
            ("cluster.lease_ms", "59998"),
            ("cluster.election_timeout_min_ms", "59999"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let edits: Vec<(&str, &str)> = edits
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config = NodeConfig::from_toml_str(&with(&edits), no_env()).expect("maxima are valid");
    assert_eq!(
        u64::from(config.limits.max_connections.get()),
        schema::MAX_CONNECTIONS.max
    );
}

#[test]
fn every_key_where_zero_disables_accepts_zero() {
    let edits: Vec<(String, &str)> = schema::INT_RULES
        .iter()
        .filter(|rule| rule.zero_disables)
        .map(|rule| (rule.path(), "0"))
        .collect();
    assert!(!edits.is_empty());
    let edits: Vec<(&str, &str)> = edits.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let config = NodeConfig::from_toml_str(&with(&edits), no_env()).expect("0 is valid");
    config.validate().expect("validates");
}

#[test]
fn rules_fire_naming_the_key() {
    // (edits, expected key, text the message must contain)
    let cases: &[(Edits, &str, &str)] = &[
        // Missing required keys.
        (
            &[("node.id", REMOVE)],
            "node.id",
            "missing required key; add `id = ",
        ),
        (
            &[("node.data_dir", REMOVE)],
            "node.data_dir",
            "missing required key",
        ),
        (
            &[("tls.ca_cert_path", REMOVE)],
            "tls.ca_cert_path",
            "missing required key",
        ),
        (
            &[("tls.cert_path", REMOVE)],
            "tls.cert_path",
            "missing required key",
        ),
        (
            &[("tls.key_path", REMOVE)],
            "tls.key_path",
            "missing required key",
        ),
        (
            &[("auth.signing_key_path", REMOVE)],
            "auth.signing_key_path",
            "missing required key",
        ),
        (
            &[("agents.mine.command", REMOVE)],
            "agents.mine.command",
            "missing required key; `mine` is not a built-in agent (claude, demo, gemini, opencode)",
        ),
        (
            &[("agents.other.command", "\"x\"")],
            "default_agent",
            "several agents are configured: add `default_agent = \"<id>\"` at the top of the file, one of: demo, other",
        ),
        // Single values.
        (
            &[("node.id", "\"bad id\"")],
            "node.id",
            "is not a valid node id",
        ),
        (
            &[("node.data_dir", "\"\"")],
            "node.data_dir",
            "the path is empty",
        ),
        (
            &[("tls.key_path", "\"\"")],
            "tls.key_path",
            "the path is empty",
        ),
        (
            &[("node.listen_addr", "\"localhost:7443\"")],
            "node.listen_addr",
            "not an ip:port",
        ),
        (
            &[("node.advertise_addr", "7443")],
            "node.advertise_addr",
            "expected a string, found integer 7443",
        ),
        (
            &[("cluster.shard_count", "0")],
            "cluster.shard_count",
            "0 is outside 1..=1024",
        ),
        (
            &[("cluster.shard_count", "1025")],
            "cluster.shard_count",
            "1025 is outside 1..=1024",
        ),
        (
            &[("cluster.replicas", "8")],
            "cluster.replicas",
            "8 is outside 1..=7",
        ),
        (
            &[("cluster.replicas", "-1")],
            "cluster.replicas",
            "-1 is outside 1..=7",
        ),
        (
            &[("auth.token_ttl_secs", "59")],
            "auth.token_ttl_secs",
            "59 is outside 60..=315360000",
        ),
        (
            &[("limits.max_connections", "\"many\"")],
            "limits.max_connections",
            "expected an integer from 1 to 100000, found string \"many\"",
        ),
        (
            &[("limits.turn_buffer_bytes_max", "1.5")],
            "limits.turn_buffer_bytes_max",
            "found float 1.5",
        ),
        (
            &[("conversation.turn_timeout_ms", "0")],
            "conversation.turn_timeout_ms",
            "0 is outside",
        ),
        (
            &[("telemetry.log_filter", "\" \"")],
            "telemetry.log_filter",
            "the filter is empty",
        ),
        (
            &[("telemetry.otlp_endpoint", "\"localhost:4317\"")],
            "telemetry.otlp_endpoint",
            "is not an http:// or https:// URL",
        ),
        (
            &[("telemetry.sampling_ratio", "1.5")],
            "telemetry.sampling_ratio",
            "1.5 is not between 0.0 and 1.0",
        ),
        (
            &[("telemetry.sampling_ratio", "\"half\"")],
            "telemetry.sampling_ratio",
            "expected a number",
        ),
        (
            &[("telemetry.service_name", "\"\"")],
            "telemetry.service_name",
            "is empty",
        ),
        (
            &[("telemetry.prometheus_listen", "\"localhost\"")],
            "telemetry.prometheus_listen",
            "is not an ip:port socket address",
        ),
        (
            &[("telemetry.resource_attributes", "{ team = 3 }")],
            "telemetry.resource_attributes.team",
            "expected a string",
        ),
        (
            &[("agents.demo.command", "\"\"")],
            "agents.demo.command",
            "the command is empty",
        ),
        (
            &[("agents.demo.args", "[\"ok\", 3]")],
            "agents.demo.args[1]",
            "expected a string, found integer 3",
        ),
        (
            &[("agents.demo.args", "\"--x\"")],
            "agents.demo.args",
            "expected an array of strings",
        ),
        (
            &[("agents.demo.env", "{ PORT = 8080 }")],
            "agents.demo.env.PORT",
            "expected a string, found integer 8080",
        ),
        (
            &[("agents.demo.env", "{ \"A=B\" = \"x\" }")],
            "agents.demo.env.A=B",
            "not a valid environment variable name",
        ),
        (
            &[("agents.Demo.command", "\"x\"")],
            "agents.Demo",
            "is not a valid agent name",
        ),
        (
            &[("agents.x", "3")],
            "agents.x",
            "expected a table, found integer 3",
        ),
        (
            &[("conversation", "3")],
            "conversation",
            "expected a table, found integer 3",
        ),
        (
            &[("default_agent", "\"Nope\"")],
            "default_agent",
            "is not a valid agent name",
        ),
        (
            &[("default_agent", "true")],
            "default_agent",
            "expected a string, found boolean true",
        ),
        // Cross-field rules.
        (
            &[
                ("conversation.checkpoint_interval_ms", "5000"),
                ("conversation.turn_idle_timeout_ms", "3000"),
            ],
            "conversation.checkpoint_interval_ms",
            "config error at `conversation.checkpoint_interval_ms`: 5000 is not below \
             `conversation.turn_idle_timeout_ms` (3000); lower checkpoint_interval_ms or raise turn_idle_timeout_ms",
        ),
        (
            &[
                ("conversation.checkpoint_interval_ms", "3000"),
                ("conversation.turn_idle_timeout_ms", "3000"),
            ],
            "conversation.checkpoint_interval_ms",
            "3000 is not below",
        ),
        (
            &[("conversation.turn_idle_timeout_ms", "2000000")],
            "conversation.turn_idle_timeout_ms",
            "2000000 is above `conversation.turn_timeout_ms` (1800000); lower turn_idle_timeout_ms or raise turn_timeout_ms",
        ),
        (
            &[
                ("conversation.permission_timeout_ms", "400000"),
                ("conversation.turn_timeout_ms", "300000"),
            ],
            "conversation.permission_timeout_ms",
            "400000 is above `conversation.turn_timeout_ms` (300000); lower permission_timeout_ms or raise turn_timeout_ms",
        ),
        (
            &[("limits.follower_queue_frames", "5000")],
            "limits.follower_queue_frames",
            "5000 is above `limits.replay_buffer_events` (4096); lower follower_queue_frames or raise replay_buffer_events",
        ),
        (
            &[("default_agent", "\"ghost\"")],
            "default_agent",
            "\"ghost\" names no configured agent (configured: claude, demo, gemini, opencode); set default_agent to one of them or add an [agents.ghost] table",
        ),
    ];
    assert_rules_fire(cases);
}

/// Each case's edits to `MINIMAL` are rejected at the expected key, with the expected
/// text in the one-line message.
fn assert_rules_fire(cases: &[(Edits, &str, &str)]) {
    for (edits, key, expected) in cases {
        let err = parse_err(&with(edits), &[]);
        let shown = err.to_string();
        assert_eq!(err.key(), *key, "{edits:?}: {shown}");
        assert!(
            shown.starts_with(&format!("config error at `{key}`: ")),
            "{edits:?}: {shown}"
        );
        assert!(
            shown.contains(expected),
            "{edits:?}: expected {expected:?} in {shown}"
        );
        assert_one_line(&err);
    }
}

#[test]
fn boundaries_of_cross_field_rules_are_accepted() {
    let text = with(&[
        ("conversation.checkpoint_interval_ms", "2999"),
        ("conversation.turn_idle_timeout_ms", "3000"),
        ("conversation.turn_timeout_ms", "3000"),
        ("conversation.permission_timeout_ms", "3000"),
        ("conversation.initiator_grace_ms", "3000"),
        ("limits.follower_queue_frames", "4096"),
        // heartbeat < lease < election min < election max, each by 1; 3 * heartbeat == min.
        ("cluster.heartbeat_ms", "100"),
        ("cluster.lease_ms", "299"),
        ("cluster.election_timeout_min_ms", "300"),
        ("cluster.election_timeout_max_ms", "301"),
        ("gossip.probe_period_ms", "999"),
        ("gossip.suspect_to_down_ms", "1000"),
    ]);
    NodeConfig::from_toml_str(&text, no_env()).expect("equal values where <= is allowed");
}

#[test]
fn relative_data_dir_is_allowed() {
    let text = with(&[
        ("node.data_dir", "\"data\""),
        ("tls.ca_cert_path", "\"tls/ca.pem\""),
    ]);
    let config = NodeConfig::from_toml_str(&text, no_env()).expect("relative paths are fine");
    assert_eq!(config.node.data_dir, PathBuf::from("data"));
    assert_eq!(config.tls.ca_cert_path, PathBuf::from("tls/ca.pem"));
}

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    // (edits, expected key, expected fix)
    let cases: &[(Edits, &str, &str)] = &[
        (
            &[("conversation.checkpoint_intervall_ms", "5")],
            "conversation.checkpoint_intervall_ms",
            "unknown key `conversation.checkpoint_intervall_ms`; did you mean `checkpoint_interval_ms`?",
        ),
        (
            &[("node.listen_adr", "\"x\"")],
            "node.listen_adr",
            "did you mean `listen_addr`?",
        ),
        (
            &[("conversaton.turn_timeout_ms", "5")],
            "conversaton",
            "did you mean `conversation`?",
        ),
        (
            &[("agents.demo.comand", "\"x\"")],
            "agents.demo.comand",
            "did you mean `command`?",
        ),
        (
            &[("limits.zzz", "1")],
            "limits.zzz",
            "remove it; the keys are listed in cluster-config/README.md",
        ),
        (&[("whatever", "1")], "whatever", "remove it"),
        (
            &[("telemetry.default_agent", "\"demo\"")],
            "telemetry.default_agent",
            "`default_agent` is a top-level key: move it above the first [section] header",
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
fn env_overrides_apply() {
    let config = NodeConfig::from_toml_str(
        MINIMAL,
        env(&[
            ("SHOAL_NODE__LISTEN_ADDR", "127.0.0.1:9000"),
            ("SHOAL_CONVERSATION__TURN_TIMEOUT_MS", "600000"),
            ("SHOAL_TELEMETRY__LOG_FILTER", "debug"),
            ("SHOAL_CLUSTER__REPLICAS", "1"),
            ("SHOAL_NODE__ID", "42"),
            ("SHOAL_PROFILE", "dev"),
            ("SHOAL_LOG", "trace"),
            ("PATH", "/bin"),
        ]),
    )
    .expect("overrides are valid");
    assert_eq!(config.node.listen_addr.to_string(), "127.0.0.1:9000");
    assert_eq!(
        config.node.advertise_addr.to_string(),
        "127.0.0.1:9000",
        "follows listen_addr"
    );
    assert_eq!(config.conversation.turn_timeout_ms.get(), 600_000);
    assert_eq!(config.telemetry.log_filter, "debug");
    assert_eq!(config.cluster.replicas.get(), 1);
    assert_eq!(config.node.id.as_str(), "42", "a numeric id stays a string");

    let text = with(&[("agents.other.command", "\"x\"")]);
    let config = NodeConfig::from_toml_str(&text, env(&[("SHOAL_DEFAULT_AGENT", "other")]))
        .expect("default agent from env");
    assert_eq!(config.default_agent.as_str(), "other");
}

#[test]
fn bad_env_values_name_the_variable() {
    // (env, expected key, expected variable)
    let cases: &[(&str, &str, &str)] = &[
        (
            "SHOAL_CONVERSATION__TURN_TIMEOUT_MS",
            "abc",
            "conversation.turn_timeout_ms",
        ),
        (
            "SHOAL_CONVERSATION__TURN_TIMEOUT_MS",
            "0",
            "conversation.turn_timeout_ms",
        ),
        ("SHOAL_CLUSTER__SHARD_COUNT", "99999", "cluster.shard_count"),
        ("SHOAL_NODE__LISTEN_ADDR", "nowhere", "node.listen_addr"),
        ("SHOAL_NODE__ID", "no spaces", "node.id"),
        ("SHOAL_NODE__DATA_DIR", "", "node.data_dir"),
        (
            "SHOAL_TELEMETRY__OTLP_ENDPOINT",
            "ftp://x",
            "telemetry.otlp_endpoint",
        ),
        ("SHOAL_DEFAULT_AGENT", "Bad", "default_agent"),
    ];
    assert_bad_env_values(cases);
}

/// Each (variable, value, key) case is rejected as a bad value of `key` that names the
/// variable.
fn assert_bad_env_values(cases: &[(&str, &str, &str)]) {
    for (var, value, key) in cases {
        let err = parse_err(MINIMAL, &[(var, value)]);
        let shown = err.to_string();
        assert!(
            matches!(err, ConfigError::EnvValue { .. }),
            "{var}: {shown}"
        );
        assert_eq!(err.key(), *key, "{shown}");
        assert!(
            shown.contains(&format!("environment variable {var}: ")),
            "{shown}"
        );
        assert_one_line(&err);
    }
}

#[test]
fn unknown_env_overrides_are_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "SHOAL_NODE__LISTEN_ADRR",
            "did you mean `SHOAL_NODE__LISTEN_ADDR`?",
        ),
        (
            "SHOAL_CONVERSATION__TURN_TIMOUT_MS",
            "did you mean `SHOAL_CONVERSATION__TURN_TIMEOUT_MS`?",
        ),
        (
            "SHOAL_AGENTS__DEMO__COMMAND",
            "[agents.*] cannot be overridden from the environment",
        ),
        ("SHOAL_X__Y", "names no config key"),
        (
            "SHOAL_CLUSTER__SEED",
            "did you mean `SHOAL_CLUSTER__SEEDS`?",
        ),
        (
            "SHOAL_GOSIP__PRESET",
            "did you mean `SHOAL_GOSSIP__PRESET`?",
        ),
    ];
    assert_unknown_env(cases);
}

/// Each `(variable, expected text)`: setting the variable is an error naming it.
fn assert_unknown_env(cases: &[(&str, &str)]) {
    for (var, expected) in cases {
        let err = parse_err(MINIMAL, &[(var, "1")]);
        let shown = err.to_string();
        assert_eq!(err.key(), *var, "{shown}");
        assert!(shown.contains(expected), "expected {expected:?} in {shown}");
        assert_one_line(&err);
    }
}

#[test]
fn dev_preset_validates() {
    let config = NodeConfig::dev(
        PathBuf::from("/tmp/shoal-dev"),
        PathBuf::from("/usr/bin/shoal-demo-agent"),
        vec!["--seed".to_owned(), "7".to_owned()],
    );
    config.validate().expect("dev preset is valid");
    assert_eq!(config.node.listen_addr.to_string(), "127.0.0.1:7443");
    assert_eq!(
        config.tls.ca_cert_path,
        PathBuf::from("/tmp/shoal-dev/tls/ca.pem")
    );
    assert_eq!(
        config.tls.cert_path,
        PathBuf::from("/tmp/shoal-dev/tls/node.pem")
    );
    assert_eq!(
        config.tls.key_path,
        PathBuf::from("/tmp/shoal-dev/tls/node.key")
    );
    assert_eq!(
        config.auth.signing_key_path,
        PathBuf::from("/tmp/shoal-dev/auth/signing.key")
    );
    assert_eq!(
        config.auth.credentials_key_path,
        Some(PathBuf::from("/tmp/shoal-dev/auth/credentials.key"))
    );
    assert_eq!(config.cluster.shard_count.get(), 64);
    assert_eq!(config.cluster.replicas.get(), 1);
    assert_eq!(
        config.cluster,
        ClusterSection {
            replicas: std::num::NonZeroU8::MIN,
            ..ClusterSection::default()
        },
        "no seeds, default Raft timings"
    );
    assert_eq!(config.gossip, GossipSection::default());
    assert_eq!(config.default_agent.as_str(), "demo");
    assert_eq!(
        config.agents["demo"].args,
        vec!["--seed".to_owned(), "7".to_owned()]
    );
}

#[test]
fn validate_catches_configs_edited_in_code() {
    let cases: &[(Edit, &str)] = &[
        (|c| c.node.data_dir = PathBuf::new(), "node.data_dir"),
        (
            |c| c.cluster.shard_count = std::num::NonZeroU16::MAX,
            "cluster.shard_count",
        ),
        (
            |c| c.limits.turn_buffer_bytes_max = std::num::NonZeroU64::MAX,
            "limits.turn_buffer_bytes_max",
        ),
        (|c| c.agents.clear(), "agents"),
        (
            |c| c.default_agent = AgentName::from_trusted("ghost"),
            "default_agent",
        ),
        (
            |c| {
                c.agents
                    .values_mut()
                    .for_each(|a| a.command = PathBuf::new())
            },
            "agents.claude.command",
        ),
        (
            |c| {
                c.agents
                    .values_mut()
                    .for_each(|a| a.args.push("a\0b".to_owned()))
            },
            "agents.claude.args[0]",
        ),
        (
            |c| c.telemetry.otlp_endpoint = Some("x".to_owned()),
            "telemetry.otlp_endpoint",
        ),
        (|c| c.telemetry.log_filter.clear(), "telemetry.log_filter"),
    ];
    assert_edits_rejected(cases);
}

/// An edit to a valid config built in code.
type Edit = fn(&mut NodeConfig);

/// Each edit of the dev preset makes `validate` fail at the expected key.
fn assert_edits_rejected(cases: &[(Edit, &str)]) {
    let base = || NodeConfig::dev(PathBuf::from("/d"), PathBuf::from("agent"), Vec::new());
    for (edit, key) in cases {
        let mut config = base();
        edit(&mut config);
        let err = config.validate().expect_err("edited config is invalid");
        assert_eq!(err.key(), *key, "{err}");
        assert_one_line(&err);
    }
}

#[test]
fn to_toml_string_round_trips() {
    let full = with(&[
        ("node.listen_addr", "\"0.0.0.0:9000\""),
        ("node.advertise_addr", "\"10.0.0.5:9000\""),
        (
            "auth.credentials_key_path",
            "\"/etc/shoal/credentials.key\"",
        ),
        ("telemetry.otlp_endpoint", "\"http://127.0.0.1:4317\""),
        ("telemetry.log_filter", "\"info,shoal_node=debug\""),
        ("telemetry.service_name", "\"shoal-eu\""),
        ("telemetry.sampling_ratio", "0.25"),
        (
            "telemetry.resource_attributes",
            "{ \"deployment.environment\" = \"prod\" }",
        ),
        ("telemetry.prometheus_listen", "\"127.0.0.1:9464\""),
        (
            "agents.demo.args",
            "[\"--say\", \"quote \\\" and \\\\ backslash\", \"\"]",
        ),
        (
            "agents.demo.env",
            "{ RUST_LOG = \"debug\", \"weird key\" = \"line\\nbreak\" }",
        ),
        ("agents.other.command", "\"/opt/other agent/bin\""),
        ("default_agent", "\"other\""),
        ("conversation.checkpoint_interval_ms", "100"),
        ("conversation.initiator_grace_ms", "0"),
        ("limits.turn_buffer_bytes_max", "3145728"),
        ("cluster.seeds", "[\"10.0.0.12:7443\", \"[fd00::13]:7443\"]"),
        ("cluster.heartbeat_ms", "200"),
        ("cluster.lease_ms", "900"),
        ("cluster.election_timeout_min_ms", "1000"),
        ("cluster.election_timeout_max_ms", "3000"),
        ("cluster.placement_grace_ms", "0"),
        ("cluster.snapshot_every_entries", "100000"),
        ("cluster.quiesce_after_ms", "5000"),
        ("gossip.preset", "\"lan-medium\""),
        ("gossip.probe_period_ms", "700"),
        ("gossip.suspect_to_down_ms", "7000"),
        ("gossip.packet_bytes_max", "1200"),
        ("workspace.snapshot_bytes_max", "1073741824"),
        ("workspace.snapshot_files_max", "250000"),
        ("workspace.snapshot_timeout_ms", "600000"),
        ("workspace.idle_stop_ms", "0"),
        ("workspace.archive_after_ms", "604800000"),
        ("sandbox.isolation", "\"bwrap\""),
    ]);
    let only_probe = with(&[("gossip.probe_period_ms", "300")]);
    let configs = [
        NodeConfig::from_toml_str(MINIMAL, no_env()).expect("minimal"),
        NodeConfig::from_toml_str(&full, no_env()).expect("full"),
        NodeConfig::from_toml_str(&only_probe, no_env()).expect("only probe period"),
        NodeConfig::dev(
            PathBuf::from("rel/dir"),
            PathBuf::from("demo"),
            vec!["-x".to_owned()],
        ),
    ];
    for config in configs {
        let text = config.to_toml_string();
        let back = NodeConfig::from_toml_str(&text, no_env())
            .unwrap_or_else(|e| panic!("written config reads back: {e}\n{text}"));
        assert_eq!(back, config, "{text}");
        assert_eq!(back.to_toml_string(), text, "writing is stable");
    }
}

#[test]
fn syntax_errors_have_line_and_column() {
    let text = "[node]\nid = \"n1\"\ndata_dir = /var\n";
    let err = parse_err(text, &[]);
    assert!(
        matches!(
            err,
            ConfigError::Syntax {
                line: 3,
                column: 12,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("config error at line 3, column 12: "),
        "{err}"
    );
    assert_one_line(&err);

    let err = parse_err("[node]\n[node]\n", &[]);
    assert!(
        matches!(err, ConfigError::Syntax { line: 2, .. }),
        "duplicate table: {err:?}"
    );
}
