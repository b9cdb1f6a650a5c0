//! [`NodeConfig::to_toml_string`]: every key written explicitly (unset optional keys
//! left out), sections in documentation order, in a form [`NodeConfig::from_toml_str`]
//! reads back to an equal config.

use crate::NodeConfig;
use crate::agents::{AgentMcpServer, HomeFile};
use std::path::Path;
use toml_writer::{ToTomlKey, ToTomlValue};

/// Writes `config` as a complete TOML document.
pub(crate) fn to_toml_string(config: &NodeConfig) -> String {
    let mut out = String::new();
    out.push_str(
        "# Shoal node configuration (every key explicit; see cluster-config/README.md).\n",
    );
    // A top-level key must precede the first [section] header.
    kv(
        &mut out,
        "default_agent",
        config.default_agent.as_str().to_toml_value(),
    );

    let node = &config.node;
    section(&mut out, "node");
    kv(&mut out, "id", node.id.as_str().to_toml_value());
    kv(&mut out, "data_dir", path(&node.data_dir));
    kv(
        &mut out,
        "listen_addr",
        node.listen_addr.to_string().to_toml_value(),
    );
    kv(
        &mut out,
        "advertise_addr",
        node.advertise_addr.to_string().to_toml_value(),
    );

    let tls = &config.tls;
    section(&mut out, "tls");
    kv(&mut out, "ca_cert_path", path(&tls.ca_cert_path));
    kv(&mut out, "cert_path", path(&tls.cert_path));
    kv(&mut out, "key_path", path(&tls.key_path));

    section(&mut out, "auth");
    kv(
        &mut out,
        "signing_key_path",
        path(&config.auth.signing_key_path),
    );
    // Absent means "credentials disabled", so an unset key is left out.
    if let Some(key_path) = &config.auth.credentials_key_path {
        kv(&mut out, "credentials_key_path", path(key_path));
    }
    kv(
        &mut out,
        "token_ttl_secs",
        config.auth.token_ttl_secs.get().to_toml_value(),
    );

    let c = &config.cluster;
    section(&mut out, "cluster");
    kv(&mut out, "shard_count", c.shard_count.get().to_toml_value());
    kv(&mut out, "replicas", c.replicas.get().to_toml_value());
    let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
    kv(&mut out, "seeds", seeds.to_toml_value());
    kv(
        &mut out,
        "heartbeat_ms",
        c.heartbeat_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "election_timeout_min_ms",
        c.election_timeout_min_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "election_timeout_max_ms",
        c.election_timeout_max_ms.get().to_toml_value(),
    );
    kv(&mut out, "lease_ms", c.lease_ms.get().to_toml_value());
    kv(
        &mut out,
        "placement_grace_ms",
        c.placement_grace_ms.to_toml_value(),
    );
    kv(
        &mut out,
        "snapshot_every_entries",
        c.snapshot_every_entries.get().to_toml_value(),
    );
    kv(
        &mut out,
        "quiesce_after_ms",
        c.quiesce_after_ms.to_toml_value(),
    );

    let g = &config.gossip;
    section(&mut out, "gossip");
    kv(&mut out, "preset", g.preset.as_str().to_toml_value());
    // Absent optional keys mean "the preset's value", so they are left out.
    if let Some(ms) = g.probe_period_ms {
        kv(&mut out, "probe_period_ms", ms.get().to_toml_value());
    }
    if let Some(ms) = g.suspect_to_down_ms {
        kv(&mut out, "suspect_to_down_ms", ms.get().to_toml_value());
    }
    kv(
        &mut out,
        "packet_bytes_max",
        g.packet_bytes_max.get().to_toml_value(),
    );

    let l = &config.limits;
    section(&mut out, "limits");
    kv(
        &mut out,
        "max_connections",
        l.max_connections.get().to_toml_value(),
    );
    kv(
        &mut out,
        "max_streams_per_connection",
        l.max_streams_per_connection.get().to_toml_value(),
    );
    kv(
        &mut out,
        "followers_per_conversation_max",
        l.followers_per_conversation_max.get().to_toml_value(),
    );
    kv(
        &mut out,
        "follower_queue_frames",
        l.follower_queue_frames.get().to_toml_value(),
    );
    kv(
        &mut out,
        "replay_buffer_events",
        l.replay_buffer_events.get().to_toml_value(),
    );
    kv(
        &mut out,
        "replay_buffer_bytes",
        l.replay_buffer_bytes.get().to_toml_value(),
    );
    kv(
        &mut out,
        "turn_buffer_bytes_max",
        l.turn_buffer_bytes_max.get().to_toml_value(),
    );
    kv(
        &mut out,
        "active_conversations_max",
        l.active_conversations_max.get().to_toml_value(),
    );
    kv(
        &mut out,
        "agent_processes_max",
        l.agent_processes_max.get().to_toml_value(),
    );

    let c = &config.conversation;
    section(&mut out, "conversation");
    kv(
        &mut out,
        "idle_passivate_ms",
        c.idle_passivate_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "checkpoint_interval_ms",
        c.checkpoint_interval_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "turn_timeout_ms",
        c.turn_timeout_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "turn_idle_timeout_ms",
        c.turn_idle_timeout_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "agent_start_timeout_ms",
        c.agent_start_timeout_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "agent_probe_timeout_ms",
        c.agent_probe_timeout_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "agent_probe_ttl_ms",
        c.agent_probe_ttl_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "permission_timeout_ms",
        c.permission_timeout_ms.get().to_toml_value(),
    );
    kv(
        &mut out,
        "initiator_grace_ms",
        c.initiator_grace_ms.to_toml_value(),
    );

    let w = &config.workspace;
    section(&mut out, "workspace");
    kv(
        &mut out,
        "snapshot_bytes_max",
        w.snapshot_bytes_max.get().to_toml_value(),
    );
    kv(
        &mut out,
        "snapshot_files_max",
        w.snapshot_files_max.get().to_toml_value(),
    );
    kv(
        &mut out,
        "snapshot_timeout_ms",
        w.snapshot_timeout_ms.get().to_toml_value(),
    );
    kv(&mut out, "idle_stop_ms", w.idle_stop_ms.to_toml_value());
    kv(
        &mut out,
        "archive_after_ms",
        w.archive_after_ms.to_toml_value(),
    );

    section(&mut out, "sandbox");
    kv(
        &mut out,
        "isolation",
        config.sandbox.isolation.as_str().to_toml_value(),
    );

    let t = &config.telemetry;
    section(&mut out, "telemetry");
    kv(&mut out, "log_filter", t.log_filter.to_toml_value());
    if let Some(endpoint) = &t.otlp_endpoint {
        kv(&mut out, "otlp_endpoint", endpoint.to_toml_value());
    }
    kv(&mut out, "service_name", t.service_name.to_toml_value());
    kv(
        &mut out,
        "sampling_ratio",
        format!("{:?}", t.sampling_ratio.as_f64()),
    );
    if !t.resource_attributes.is_empty() {
        kv(
            &mut out,
            "resource_attributes",
            t.resource_attributes.to_toml_value(),
        );
    }
    if let Some(addr) = t.prometheus_listen {
        kv(
            &mut out,
            "prometheus_listen",
            addr.to_string().to_toml_value(),
        );
    }

    for (name, agent) in &config.agents {
        let header = format!("agents.{}", name.as_str().to_toml_key());
        section(&mut out, &header);
        kv(&mut out, "label", agent.label.to_toml_value());
        kv(&mut out, "command", path(&agent.command));
        kv(&mut out, "args", agent.args.to_toml_value());
        kv(&mut out, "env", agent.env.to_toml_value());
        kv(&mut out, "enabled", agent.enabled.to_toml_value());
        if !agent.home.is_empty() {
            section(&mut out, &format!("{header}.home"));
            for (rel, file) in &agent.home {
                let value = match file {
                    HomeFile::Content(text) => format!("{{ content = {} }}", text.to_toml_value()),
                    HomeFile::Source(source) => format!("{{ source = {} }}", path(source)),
                };
                kv(&mut out, &rel.as_str().to_toml_key(), value);
            }
        }
        for (server, mcp) in &agent.mcp {
            section(
                &mut out,
                &format!("{header}.mcp.{}", server.as_str().to_toml_key()),
            );
            match mcp {
                AgentMcpServer::Stdio { command, args, env } => {
                    kv(&mut out, "command", command.to_toml_value());
                    kv(&mut out, "args", args.to_toml_value());
                    kv(&mut out, "env", env.to_toml_value());
                }
                AgentMcpServer::Http { url, headers } => {
                    kv(&mut out, "url", url.to_toml_value());
                    kv(&mut out, "headers", headers.to_toml_value());
                }
            }
        }
        let permissions = &agent.permissions;
        if permissions.default.is_some() || !permissions.kinds.is_empty() {
            section(&mut out, &format!("{header}.permissions"));
            if let Some(default) = permissions.default {
                kv(&mut out, "default", default.as_str().to_toml_value());
            }
            for (kind, mode) in &permissions.kinds {
                kv(&mut out, kind, mode.as_str().to_toml_value());
            }
        }
    }
    out
}

fn section(out: &mut String, header: &str) {
    out.push_str("\n[");
    out.push_str(header);
    out.push_str("]\n");
}

fn kv(out: &mut String, key: &str, value: String) {
    out.push_str(key);
    out.push_str(" = ");
    out.push_str(&value);
    out.push('\n');
}

/// A path as a TOML string. Paths read from TOML are UTF-8; a non-UTF-8 path built in
/// code is written lossily (U+FFFD for bad bytes).
fn path(path: &Path) -> String {
    path.to_string_lossy().to_toml_value()
}
