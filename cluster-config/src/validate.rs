//! [`NodeConfig::validate`]: the cross-field rules, plus the single-value rules again
//! so a config built or edited in code is held to the same standard as a parsed one.

use crate::NodeConfig;
use crate::error::{ConfigError, Problem};
use crate::schema::{self, AGENTS_KEY, DEFAULT_AGENT_KEY, IntRule};
use crate::sections::AgentSpec;

/// Checks `config`, returning the first problem.
pub(crate) fn validate(config: &NodeConfig) -> Result<(), ConfigError> {
    let paths = [
        ("node.data_dir", &config.node.data_dir, "data directory"),
        (
            "tls.ca_cert_path",
            &config.tls.ca_cert_path,
            "cluster CA certificate (PEM)",
        ),
        (
            "tls.cert_path",
            &config.tls.cert_path,
            "node certificate chain (PEM)",
        ),
        (
            "tls.key_path",
            &config.tls.key_path,
            "node private key (PEM)",
        ),
        (
            "auth.signing_key_path",
            &config.auth.signing_key_path,
            "token signing key",
        ),
    ];
    for (key, path, what) in paths {
        schema::check_path(path, what).map_err(|p| p.at(key))?;
    }

    let limits = &config.limits;
    let conv = &config.conversation;
    let ints: [(&IntRule, u64); 17] = [
        (&schema::TOKEN_TTL_SECS, config.auth.token_ttl_secs.get()),
        (
            &schema::SHARD_COUNT,
            config.cluster.shard_count.get().into(),
        ),
        (&schema::REPLICAS, config.cluster.replicas.get().into()),
        (
            &schema::MAX_CONNECTIONS,
            limits.max_connections.get().into(),
        ),
        (
            &schema::MAX_STREAMS_PER_CONNECTION,
            limits.max_streams_per_connection.get().into(),
        ),
        (
            &schema::FOLLOWERS_PER_CONVERSATION_MAX,
            limits.followers_per_conversation_max.get().into(),
        ),
        (
            &schema::FOLLOWER_QUEUE_FRAMES,
            limits.follower_queue_frames.get().into(),
        ),
        (
            &schema::REPLAY_BUFFER_EVENTS,
            limits.replay_buffer_events.get().into(),
        ),
        (
            &schema::TURN_BUFFER_BYTES_MAX,
            limits.turn_buffer_bytes_max.get(),
        ),
        (
            &schema::ACTIVE_CONVERSATIONS_MAX,
            limits.active_conversations_max.get().into(),
        ),
        (
            &schema::AGENT_PROCESSES_MAX,
            limits.agent_processes_max.get().into(),
        ),
        (&schema::IDLE_PASSIVATE_MS, conv.idle_passivate_ms.get()),
        (
            &schema::CHECKPOINT_INTERVAL_MS,
            conv.checkpoint_interval_ms.get(),
        ),
        (&schema::TURN_TIMEOUT_MS, conv.turn_timeout_ms.get()),
        (
            &schema::TURN_IDLE_TIMEOUT_MS,
            conv.turn_idle_timeout_ms.get(),
        ),
        (
            &schema::AGENT_START_TIMEOUT_MS,
            conv.agent_start_timeout_ms.get(),
        ),
        (
            &schema::PERMISSION_TIMEOUT_MS,
            conv.permission_timeout_ms.get(),
        ),
    ];
    for (rule, value) in ints {
        rule.check(i128::from(value))
            .map_err(|p| p.at(rule.path()))?;
    }

    let checkpoint = conv.checkpoint_interval_ms.get();
    let turn_idle = conv.turn_idle_timeout_ms.get();
    let turn = conv.turn_timeout_ms.get();
    let permission = conv.permission_timeout_ms.get();
    if checkpoint >= turn_idle {
        return Err(ConfigError::Invalid {
            key: "conversation.checkpoint_interval_ms".to_owned(),
            problem: format!(
                "{checkpoint} is not below `conversation.turn_idle_timeout_ms` ({turn_idle})"
            ),
            fix: "lower checkpoint_interval_ms or raise turn_idle_timeout_ms".to_owned(),
        });
    }
    if turn_idle > turn {
        return Err(ConfigError::Invalid {
            key: "conversation.turn_idle_timeout_ms".to_owned(),
            problem: format!("{turn_idle} is above `conversation.turn_timeout_ms` ({turn})"),
            fix: "lower turn_idle_timeout_ms or raise turn_timeout_ms".to_owned(),
        });
    }
    if permission > turn {
        return Err(ConfigError::Invalid {
            key: "conversation.permission_timeout_ms".to_owned(),
            problem: format!("{permission} is above `conversation.turn_timeout_ms` ({turn})"),
            fix: "lower permission_timeout_ms or raise turn_timeout_ms".to_owned(),
        });
    }

    let queue = limits.follower_queue_frames.get();
    let replay = limits.replay_buffer_events.get();
    if queue > replay {
        return Err(ConfigError::Invalid {
            key: "limits.follower_queue_frames".to_owned(),
            problem: format!("{queue} is above `limits.replay_buffer_events` ({replay})"),
            fix: "lower follower_queue_frames or raise replay_buffer_events".to_owned(),
        });
    }

    if config.agents.is_empty() {
        return Err(ConfigError::Missing {
            key: AGENTS_KEY.to_owned(),
            fix: "add an [agents.<name>] table with a `command`".to_owned(),
        });
    }
    for (name, spec) in &config.agents {
        check_agent(&format!("{AGENTS_KEY}.{name}"), spec)?;
    }
    if !config.agents.contains_key(config.default_agent.as_str()) {
        let names: Vec<&str> = config.agents.keys().map(|n| n.as_str()).collect();
        return Err(ConfigError::Invalid {
            key: DEFAULT_AGENT_KEY.to_owned(),
            problem: format!(
                "\"{}\" names no configured agent (configured: {})",
                config.default_agent,
                names.join(", ")
            ),
            fix: format!(
                "set default_agent to one of them or add an [agents.{}] table",
                config.default_agent
            ),
        });
    }

    let telemetry = &config.telemetry;
    schema::check_log_filter(&telemetry.log_filter).map_err(|p| p.at("telemetry.log_filter"))?;
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        schema::check_otlp_endpoint(endpoint).map_err(|p| p.at("telemetry.otlp_endpoint"))?;
    }
    Ok(())
}

/// The single-value rules of one agent at key path `path` (`agents.<name>`).
pub(crate) fn check_agent(path: &str, spec: &AgentSpec) -> Result<(), ConfigError> {
    let command = spec.command.as_os_str();
    if command.is_empty() {
        return Err(
            Problem::new("the command is empty", "set it to the agent executable")
                .at(format!("{path}.command")),
        );
    }
    if command.as_encoded_bytes().contains(&0) {
        return Err(
            Problem::new("the command contains a NUL character", "remove it")
                .at(format!("{path}.command")),
        );
    }
    for (i, arg) in spec.args.iter().enumerate() {
        schema::check_no_nul(arg, "argument").map_err(|p| p.at(format!("{path}.args[{i}]")))?;
    }
    for (name, value) in &spec.env {
        let key = format!("{path}.env.{}", crate::error::echo(name));
        schema::check_env_name(name).map_err(|p| p.at(key.clone()))?;
        schema::check_no_nul(value, "value").map_err(|p| p.at(key))?;
    }
    Ok(())
}
