//! [`NodeConfig::validate`]: the cross-field rules, plus the single-value rules again
//! so a config built or edited in code is held to the same standard as a parsed one.

use crate::NodeConfig;
use crate::error::ConfigError;
use crate::schema::{self, AGENTS_KEY, DEFAULT_AGENT_KEY, IntRule};
use crate::sections::ClusterSection;

/// Fewest leader heartbeats a follower must be able to hear within the shortest
/// election timeout: `HEARTBEATS_PER_ELECTION_TIMEOUT_MIN * heartbeat_ms <=
/// election_timeout_min_ms`, so one or two lost heartbeats do not start an election.
const HEARTBEATS_PER_ELECTION_TIMEOUT_MIN: u64 = 3;

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
    if let Some(path) = &config.auth.credentials_key_path {
        schema::check_path(path, "workspace credentials key")
            .map_err(|p| p.at("auth.credentials_key_path"))?;
    }

    let limits = &config.limits;
    let conv = &config.conversation;
    let cluster = &config.cluster;
    let gossip = &config.gossip;
    let workspace = &config.workspace;
    let ints: [(&IntRule, u64); 34] = [
        (&schema::TOKEN_TTL_SECS, config.auth.token_ttl_secs.get()),
        (&schema::SHARD_COUNT, cluster.shard_count.get().into()),
        (&schema::REPLICAS, cluster.replicas.get().into()),
        (&schema::HEARTBEAT_MS, cluster.heartbeat_ms.get()),
        (
            &schema::ELECTION_TIMEOUT_MIN_MS,
            cluster.election_timeout_min_ms.get(),
        ),
        (
            &schema::ELECTION_TIMEOUT_MAX_MS,
            cluster.election_timeout_max_ms.get(),
        ),
        (&schema::LEASE_MS, cluster.lease_ms.get()),
        (&schema::PLACEMENT_GRACE_MS, cluster.placement_grace_ms),
        (
            &schema::SNAPSHOT_EVERY_ENTRIES,
            cluster.snapshot_every_entries.get(),
        ),
        (&schema::QUIESCE_AFTER_MS, cluster.quiesce_after_ms),
        (
            &schema::PACKET_BYTES_MAX,
            gossip.packet_bytes_max.get().into(),
        ),
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
            &schema::REPLAY_BUFFER_BYTES,
            limits.replay_buffer_bytes.get(),
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
            &schema::AGENT_PROBE_TIMEOUT_MS,
            conv.agent_probe_timeout_ms.get(),
        ),
        (&schema::AGENT_PROBE_TTL_MS, conv.agent_probe_ttl_ms.get()),
        (
            &schema::PERMISSION_TIMEOUT_MS,
            conv.permission_timeout_ms.get(),
        ),
        (&schema::INITIATOR_GRACE_MS, conv.initiator_grace_ms),
        (
            &schema::SNAPSHOT_BYTES_MAX,
            workspace.snapshot_bytes_max.get(),
        ),
        (
            &schema::SNAPSHOT_FILES_MAX,
            workspace.snapshot_files_max.get().into(),
        ),
        (
            &schema::SNAPSHOT_TIMEOUT_MS,
            workspace.snapshot_timeout_ms.get(),
        ),
        (&schema::IDLE_STOP_MS, workspace.idle_stop_ms),
        (&schema::ARCHIVE_AFTER_MS, workspace.archive_after_ms),
    ];
    let optional_ints = [
        (&schema::PROBE_PERIOD_MS, gossip.probe_period_ms),
        (&schema::SUSPECT_TO_DOWN_MS, gossip.suspect_to_down_ms),
    ];
    let present_optional_ints = optional_ints
        .into_iter()
        .filter_map(|(rule, value)| Some((rule, value?.get())));
    for (rule, value) in ints.into_iter().chain(present_optional_ints) {
        rule.check(i128::from(value))
            .map_err(|p| p.at(rule.path()))?;
    }

    check_seeds(config)?;
    check_raft_timings(cluster)?;
    if let (Some(probe), Some(suspect)) = (gossip.probe_period_ms, gossip.suspect_to_down_ms) {
        let (probe, suspect) = (probe.get(), suspect.get());
        if probe >= suspect {
            return Err(ConfigError::Invalid {
                key: "gossip.probe_period_ms".to_owned(),
                problem: format!(
                    "{probe} is not below `gossip.suspect_to_down_ms` ({suspect}): a suspected \
                     member must get at least one probe period to refute"
                ),
                fix: format!(
                    "lower probe_period_ms below {suspect} or raise suspect_to_down_ms above \
                     {probe} (several probe periods, e.g. {})",
                    probe.saturating_mul(4)
                ),
            });
        }
    }

    let checkpoint = conv.checkpoint_interval_ms.get();
    let turn_idle = conv.turn_idle_timeout_ms.get();
    let turn = conv.turn_timeout_ms.get();
    let permission = conv.permission_timeout_ms.get();
    let initiator_grace = conv.initiator_grace_ms;
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
    if initiator_grace > turn {
        return Err(ConfigError::Invalid {
            key: "conversation.initiator_grace_ms".to_owned(),
            problem: format!("{initiator_grace} is above `conversation.turn_timeout_ms` ({turn})"),
            fix: "lower initiator_grace_ms or raise turn_timeout_ms".to_owned(),
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
            fix: "keep at least one agent (the built-ins are there unless removed in code)"
                .to_owned(),
        });
    }
    if config.agents.len() > crate::agents::AGENTS_MAX {
        return Err(ConfigError::Invalid {
            key: AGENTS_KEY.to_owned(),
            problem: format!(
                "{} agents, the limit is {}",
                config.agents.len(),
                crate::agents::AGENTS_MAX
            ),
            fix: "remove some agents".to_owned(),
        });
    }
    for (name, spec) in &config.agents {
        crate::agents::check_agent(&format!("{AGENTS_KEY}.{name}"), spec)?;
    }
    let default = config.agents.get(config.default_agent.as_str());
    if default.is_some_and(|spec| !spec.enabled) {
        return Err(ConfigError::Invalid {
            key: DEFAULT_AGENT_KEY.to_owned(),
            problem: format!(
                "\"{}\" names a disabled agent (`agents.{}.enabled = false`)",
                config.default_agent, config.default_agent
            ),
            fix: "set default_agent to an enabled agent, or enable this one".to_owned(),
        });
    }
    if default.is_none() {
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
    schema::check_attribute(&telemetry.service_name, "service name")
        .map_err(|p| p.at("telemetry.service_name"))?;
    if telemetry.sampling_ratio.ppm > 1_000_000 {
        return Err(ConfigError::Invalid {
            key: "telemetry.sampling_ratio".to_owned(),
            problem: format!("{} is more than 1.0", telemetry.sampling_ratio.as_f64()),
            fix: "use a ratio from 0.0 to 1.0".to_owned(),
        });
    }
    Ok(())
}

/// At most [`crate::SEEDS_MAX`] seeds, none of them this node's own `advertise_addr`.
fn check_seeds(config: &NodeConfig) -> Result<(), ConfigError> {
    let seeds = &config.cluster.seeds;
    schema::check_seed_count(seeds.len()).map_err(|p| p.at("cluster.seeds"))?;
    let own = config.node.advertise_addr;
    if let Some(i) = seeds.iter().position(|seed| *seed == own) {
        return Err(ConfigError::Invalid {
            key: "cluster.seeds".to_owned(),
            problem: format!(
                "seeds[{i}] ({own}) is this node's own `node.advertise_addr`; a node cannot \
                 join through itself"
            ),
            fix: format!(
                "remove this node's own address {own} from cluster.seeds and list only other \
                 nodes (none for the first node of a new cluster)"
            ),
        });
    }
    Ok(())
}

/// `heartbeat_ms < lease_ms < election_timeout_min_ms < election_timeout_max_ms` and
/// `3 * heartbeat_ms <= election_timeout_min_ms`.
fn check_raft_timings(cluster: &ClusterSection) -> Result<(), ConfigError> {
    let heartbeat = cluster.heartbeat_ms.get();
    let lease = cluster.lease_ms.get();
    let election_min = cluster.election_timeout_min_ms.get();
    let election_max = cluster.election_timeout_max_ms.get();
    if heartbeat >= lease {
        return Err(ConfigError::Invalid {
            key: "cluster.heartbeat_ms".to_owned(),
            problem: format!(
                "{heartbeat} is not below `cluster.lease_ms` ({lease}): a lease shorter than a \
                 heartbeat interval expires between heartbeats"
            ),
            fix: format!(
                "lower heartbeat_ms below {lease} or raise lease_ms above {heartbeat} (defaults: \
                 heartbeat 100, lease 300)"
            ),
        });
    }
    if lease >= election_min {
        return Err(ConfigError::Invalid {
            key: "cluster.lease_ms".to_owned(),
            problem: format!(
                "{lease} is not below `cluster.election_timeout_min_ms` ({election_min}): the \
                 lease must be shorter than the election timeout, or a new leader could be \
                 elected while the old one still believes its lease"
            ),
            fix: format!(
                "lower lease_ms below {election_min} or raise election_timeout_min_ms above \
                 {lease} (defaults: lease 300, election timeout 400..800)"
            ),
        });
    }
    if election_min >= election_max {
        return Err(ConfigError::Invalid {
            key: "cluster.election_timeout_min_ms".to_owned(),
            problem: format!(
                "{election_min} is not below `cluster.election_timeout_max_ms` \
                 ({election_max}): followers need a range to pick random timeouts from, or \
                 they start elections together and split the vote"
            ),
            fix: format!(
                "lower election_timeout_min_ms below {election_max} or raise \
                 election_timeout_max_ms above {election_min} (e.g. twice the minimum; \
                 defaults 400 and 800)"
            ),
        });
    }
    let factor = HEARTBEATS_PER_ELECTION_TIMEOUT_MIN;
    let needed = heartbeat.saturating_mul(factor);
    if needed > election_min {
        return Err(ConfigError::Invalid {
            key: "cluster.heartbeat_ms".to_owned(),
            problem: format!(
                "{factor} x {heartbeat} = {needed} is above `cluster.election_timeout_min_ms` \
                 ({election_min}): followers must hear several heartbeats per election timeout"
            ),
            fix: format!(
                "lower heartbeat_ms to at most {} or raise election_timeout_min_ms to at least \
                 {needed}",
                election_min / factor
            ),
        });
    }
    Ok(())
}
