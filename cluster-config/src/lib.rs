//! The Shoal node's configuration: TOML text plus `SHOAL_*` environment overrides,
//! turned into checked types ([`NodeConfig`]) with precise, one-line errors
//! ([`ConfigError`]) that name the key path and the fix.
//!
//! No I/O beyond reading the config file and the process environment.
//!
//! ```
//! use shoal_cluster_config::NodeConfig;
//!
//! let text = r#"
//! default_agent = "demo"
//!
//! [node]
//! id = "node-1"
//! data_dir = "/var/lib/shoal"
//!
//! [tls]
//! ca_cert_path = "/etc/shoal/ca.pem"
//! cert_path = "/etc/shoal/node.pem"
//! key_path = "/etc/shoal/node.key"
//!
//! [auth]
//! signing_key_path = "/etc/shoal/signing.key"
//!
//! [agents.demo]
//! command = "/usr/local/bin/shoal-demo-agent"
//!
//! [agents.opencode.home.".config/opencode/opencode.json"]
//! content = '{ "autoupdate": false }'
//! "#;
//! let env = [("SHOAL_CLUSTER__REPLICAS".to_owned(), "1".to_owned())];
//! let config = NodeConfig::from_toml_str(text, env)?;
//! assert_eq!(config.cluster.replicas.get(), 1);
//! assert_eq!(config.default_agent.as_str(), "demo");
//! // The built-ins are there, `opencode` with its template.
//! assert_eq!(config.agents["opencode"].args, ["acp"]);
//! assert_eq!(config.agents["opencode"].home.len(), 1);
//! # Ok::<(), shoal_cluster_config::ConfigError>(())
//! ```
//!
//! # Layout
//! * `lib.rs` (this file): [`NodeConfig`], its loaders and the `dev` preset.
//! * `sections.rs`: the checked section types ([`NodeSection`], [`Limits`], …) and
//!   their defaults.
//! * `names.rs`: the [`NodeId`] and [`AgentName`] newtypes.
//! * `agents.rs`: `[agents.<id>]`: the built-in agents, overrides, `extends`, home
//!   templates ([`AgentSpec`]).
//! * `error.rs`: [`ConfigError`].
//! * `schema.rs`: every section, key, integer default and bound, the single-value
//!   checks, and key suggestions (edit distance).
//! * `env.rs`: `SHOAL_<SECTION>__<KEY>` overrides and which key came from which variable.
//! * `parse.rs`: TOML table to [`NodeConfig`] (unknown keys, types, defaults).
//! * `validate.rs`: [`NodeConfig::validate`], the cross-field rules.
//! * `write.rs`: [`NodeConfig::to_toml_string`].
//!
//! # Conventions
//! Durations are integers with the unit in the key and field name
//! (`checkpoint_interval_ms: NonZeroU64`); each has a helper returning a
//! [`std::time::Duration`] (`checkpoint_interval()`). Every integer is bounded and
//! non-zero, except a few plain `u64`s where zero means something:
//! `cluster.placement_grace_ms` (no grace), and `conversation.initiator_grace_ms`,
//! `workspace.idle_stop_ms` and `workspace.archive_after_ms` (disabled; their helpers
//! return `Option<Duration>`, `None` for 0). The key reference, with defaults and sizing
//! advice, is the crate README.
#![warn(missing_docs)]

mod agents;
mod env;
mod error;
mod names;
mod parse;
mod schema;
mod sections;
mod validate;
mod write;

pub use agents::{
    AGENT_LABEL_CHARS_MAX, AGENT_MCP_SERVERS_MAX, AGENTS_MAX, AgentMcpServer, AgentPermissions,
    AgentSpec, BUILTIN_AGENTS, BuiltinAgent, DEFAULT_AGENT_BUILTIN, EXTENDS_ACP,
    HOME_FILE_BYTES_MAX, HOME_FILES_MAX, HOME_PATH_BYTES_MAX, HOME_PATH_COMPONENTS_MAX,
    HOME_REGISTRY_FILE, HomeFile, HomePath, MCP_SERVER_NAME_BYTES_MAX, PERMISSION_KINDS,
    PermissionMode, builtin_agent, builtin_agents,
};
pub use error::ConfigError;
pub use names::{AGENT_NAME_CHARS_MAX, AgentName, NODE_ID_CHARS_MAX, NameError, NodeId};
pub use sections::{
    AuthSection, ClusterSection, ConversationSection, GossipPreset, GossipSection, Isolation,
    LISTEN_ADDR_DEFAULT, LOG_FILTER_DEFAULT, Limits, NodeSection, SEEDS_MAX, SERVICE_NAME_DEFAULT,
    SamplingRatio, SandboxSection, TelemetrySection, TlsSection, WorkspaceSection,
};

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};

/// Largest config file [`NodeConfig::load`] reads, in bytes.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The largest `limits.turn_buffer_bytes_max` accepted (3 MiB): a turn's message is
/// committed as one Raft log entry, which must fit one peer frame.
pub const TURN_BUFFER_BYTES_LIMIT: u64 = schema::TURN_BUFFER_BYTES_MAX.max;

/// The largest `limits.max_streams_per_connection` accepted (4096).
pub const STREAMS_PER_CONNECTION_LIMIT: u64 = schema::MAX_STREAMS_PER_CONNECTION.max;

/// A node's whole configuration, checked. Build it with [`NodeConfig::load`],
/// [`NodeConfig::from_toml_str`] or the [`NodeConfig::dev`] preset; a config built or
/// edited in code should pass [`NodeConfig::validate`] before use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `[node]`: identity, data directory, addresses.
    pub node: NodeSection,
    /// `[tls]`: certificate and key files.
    pub tls: TlsSection,
    /// `[auth]`: token signing key, token lifetime and the credentials master key.
    pub auth: AuthSection,
    /// `[cluster]`: shard count, replication factor, seeds and Raft timings.
    pub cluster: ClusterSection,
    /// `[gossip]`: SWIM membership timings.
    pub gossip: GossipSection,
    /// `[limits]`: bounds on connections, followers, buffers and processes.
    pub limits: Limits,
    /// `[conversation]`: turn, checkpoint and passivation timing.
    pub conversation: ConversationSection,
    /// `[workspace]`: workspace snapshot size, entry count and time bounds; when idle
    /// agents are stopped and idle workspaces archived.
    pub workspace: WorkspaceSection,
    /// `[sandbox]`: how agent processes are confined (`isolation`: `"none"` or
    /// `"bwrap"`).
    pub sandbox: SandboxSection,
    /// The agents this node can run: the built-ins ([`BUILTIN_AGENTS`]) with the
    /// `[agents.<id>]` tables applied (see [`AgentSpec`]); at most [`AGENTS_MAX`].
    pub agents: BTreeMap<AgentName, AgentSpec>,
    /// Top-level `default_agent`: the agent used when a conversation names none. Must
    /// be a key of [`Self::agents`] and enabled; defaults to the only `[agents.<id>]`
    /// table written, or [`DEFAULT_AGENT_BUILTIN`] when there is none.
    pub default_agent: AgentName,
    /// `[telemetry]`: log filter and trace export.
    pub telemetry: TelemetrySection,
}

impl NodeConfig {
    /// Parses TOML text, then applies env overrides from `env` (pairs like
    /// `("SHOAL_NODE__LISTEN_ADDR", "127.0.0.1:9000")`), then [`Self::validate`]s.
    ///
    /// Relative paths are kept as written, so they resolve against the process's
    /// working directory when opened.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::parse(text, None, env)
    }

    /// Reads `path` (at most [`CONFIG_FILE_BYTES_MAX`]) and applies overrides from the
    /// process environment.
    ///
    /// Relative `node.data_dir`, `tls.*`, `auth.signing_key_path` and
    /// `auth.credentials_key_path` values written in the file resolve against the
    /// file's directory; values from environment variables are kept as given (relative
    /// to the working directory).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config_file(path)?;
        let env = env::process_env()?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse(&text, Some(base), env)
    }

    fn parse(
        text: &str,
        base: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut root: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::syntax(text, &e))?;
        let origins = env::apply(&mut root, env)?;
        let mut config = parse::node_config(root, &origins)?;
        if let Some(base) = base {
            parse::resolve_relative_paths(&mut config, base, &origins);
        }
        config.validate()?;
        Ok(config)
    }

    /// Preset for `shoal-node dev`: node id `dev`, `data_dir` as given, listen (and
    /// advertise) `127.0.0.1:7443`, TLS and auth files under `data_dir`
    /// (`tls/ca.pem`, `tls/node.pem`, `tls/node.key`, `auth/signing.key`,
    /// `auth/credentials.key`), the built-in agents with `demo` running
    /// `demo_agent_command` with `demo_agent_args`, `default_agent` `demo`, 64 shards, 1 replica, no seeds, every
    /// other key (Raft timings, gossip) at its default.
    pub fn dev(
        data_dir: PathBuf,
        demo_agent_command: PathBuf,
        demo_agent_args: Vec<String>,
    ) -> Self {
        let demo = AgentName::from_trusted("demo");
        let id = NodeId::from_trusted("dev");
        let tls = data_dir.join("tls");
        let mut agents = builtin_agents();
        if let Some(spec) = agents.get_mut(&demo) {
            spec.command = demo_agent_command;
            spec.args = demo_agent_args;
        }
        Self {
            node: NodeSection {
                id,
                listen_addr: LISTEN_ADDR_DEFAULT,
                advertise_addr: LISTEN_ADDR_DEFAULT,
                data_dir: data_dir.clone(),
            },
            tls: TlsSection {
                ca_cert_path: tls.join("ca.pem"),
                cert_path: tls.join("node.pem"),
                key_path: tls.join("node.key"),
            },
            auth: AuthSection {
                signing_key_path: data_dir.join("auth").join("signing.key"),
                credentials_key_path: Some(data_dir.join("auth").join("credentials.key")),
                token_ttl_secs: sections::TOKEN_TTL_SECS_DEFAULT,
            },
            cluster: ClusterSection {
                replicas: NonZeroU8::MIN,
                ..ClusterSection::default()
            },
            gossip: GossipSection::default(),
            limits: Limits::default(),
            conversation: ConversationSection::default(),
            workspace: WorkspaceSection::default(),
            sandbox: SandboxSection::default(),
            agents,
            default_agent: demo,
            telemetry: TelemetrySection::default(),
        }
    }

    /// Checks the cross-field rules (`heartbeat_ms < lease_ms < election_timeout_min_ms <
    /// election_timeout_max_ms`, `3 * heartbeat_ms <= election_timeout_min_ms`, no seed
    /// equal to `node.advertise_addr`, `probe_period_ms < suspect_to_down_ms` when both
    /// are set, `checkpoint_interval_ms < turn_idle_timeout_ms <= turn_timeout_ms`,
    /// `permission_timeout_ms <= turn_timeout_ms`, `initiator_grace_ms <= turn_timeout_ms`,
    /// `follower_queue_frames <= replay_buffer_events`, `default_agent` is configured and
    /// enabled, one to [`AGENTS_MAX`] agents) and, for configs built in code, every single-value rule (bounds,
    /// at most [`SEEDS_MAX`] seeds, non-empty paths). Returns the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }

    /// Serializes every key (defaults included) back to TOML that
    /// [`Self::from_toml_str`] reads to an equal config. Optional keys that are unset
    /// (`auth.credentials_key_path`, `telemetry.otlp_endpoint`, `gossip.probe_period_ms`,
    /// `gossip.suspect_to_down_ms`) are left out, since absent is their meaning.
    pub fn to_toml_string(&self) -> String {
        write::to_toml_string(self)
    }
}

/// Reads the config file, refusing files over [`CONFIG_FILE_BYTES_MAX`].
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(read_error(io::Error::other(format!(
            "the file is larger than {CONFIG_FILE_BYTES_MAX} bytes"
        ))));
    }
    String::from_utf8(bytes).map_err(|_| {
        read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is not UTF-8",
        ))
    })
}

#[cfg(test)]
mod tests;
