//! From a TOML table (file + env overrides) to a [`NodeConfig`]: unknown-key detection,
//! type checks, per-value checks and defaults. Cross-field rules are left to
//! [`NodeConfig::validate`].

use crate::NodeConfig;
use crate::env::Origins;
use crate::error::{ConfigError, Problem, describe, echo};
use crate::names::NodeId;
use crate::schema::{self, AGENTS_KEY, DEFAULT_AGENT_KEY, IntRule};
use crate::sections::{
    AuthSection, ClusterSection, ConversationSection, GossipPreset, GossipSection, Isolation,
    LISTEN_ADDR_DEFAULT, LOG_FILTER_DEFAULT, Limits, NodeSection, SERVICE_NAME_DEFAULT,
    SamplingRatio, SandboxSection, TelemetrySection, TlsSection, WorkspaceSection,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Converts the whole document.
pub(crate) fn node_config(mut root: Table, origins: &Origins) -> Result<NodeConfig, ConfigError> {
    reject_unknown(&root, None, schema::top_level_keys())?;

    let mut s = Section::take(&mut root, "node", origins)?;
    let listen_addr = s.socket_addr("listen_addr")?.unwrap_or(LISTEN_ADDR_DEFAULT);
    let node = NodeSection {
        id: s.node_id("id")?,
        data_dir: s.path("data_dir", "data directory", "\"/var/lib/shoal\"")?,
        listen_addr,
        advertise_addr: s.socket_addr("advertise_addr")?.unwrap_or(listen_addr),
    };

    let mut s = Section::take(&mut root, "tls", origins)?;
    let tls = TlsSection {
        ca_cert_path: s.path(
            "ca_cert_path",
            "cluster CA certificate (PEM)",
            "\"tls/ca.pem\"",
        )?,
        cert_path: s.path(
            "cert_path",
            "node certificate chain (PEM)",
            "\"tls/node.pem\"",
        )?,
        key_path: s.path("key_path", "node private key (PEM)", "\"tls/node.key\"")?,
    };

    let mut s = Section::take(&mut root, "auth", origins)?;
    let auth = AuthSection {
        signing_key_path: s.path(
            "signing_key_path",
            "token signing key",
            "\"auth/signing.key\"",
        )?,
        credentials_key_path: s.opt_path("credentials_key_path", "workspace credentials key")?,
        token_ttl_secs: s.int(&schema::TOKEN_TTL_SECS)?,
    };

    let mut s = Section::take(&mut root, "cluster", origins)?;
    let cluster = ClusterSection {
        shard_count: s.int(&schema::SHARD_COUNT)?,
        replicas: s.int(&schema::REPLICAS)?,
        seeds: s.seeds("seeds")?,
        heartbeat_ms: s.int(&schema::HEARTBEAT_MS)?,
        election_timeout_min_ms: s.int(&schema::ELECTION_TIMEOUT_MIN_MS)?,
        election_timeout_max_ms: s.int(&schema::ELECTION_TIMEOUT_MAX_MS)?,
        lease_ms: s.int(&schema::LEASE_MS)?,
        placement_grace_ms: s.int_u64(&schema::PLACEMENT_GRACE_MS)?,
        snapshot_every_entries: s.int(&schema::SNAPSHOT_EVERY_ENTRIES)?,
        quiesce_after_ms: s.int_u64(&schema::QUIESCE_AFTER_MS)?,
    };

    let mut s = Section::take(&mut root, "gossip", origins)?;
    let preset = match s.string("preset")? {
        None => GossipPreset::default(),
        Some(name) => s.check("preset", schema::parse_gossip_preset(&name))?,
    };
    let gossip = GossipSection {
        preset,
        probe_period_ms: s.opt_int(&schema::PROBE_PERIOD_MS)?,
        suspect_to_down_ms: s.opt_int(&schema::SUSPECT_TO_DOWN_MS)?,
        packet_bytes_max: s.int(&schema::PACKET_BYTES_MAX)?,
    };

    let mut s = Section::take(&mut root, "limits", origins)?;
    let limits = Limits {
        max_connections: s.int(&schema::MAX_CONNECTIONS)?,
        max_streams_per_connection: s.int(&schema::MAX_STREAMS_PER_CONNECTION)?,
        followers_per_conversation_max: s.int(&schema::FOLLOWERS_PER_CONVERSATION_MAX)?,
        follower_queue_frames: s.int(&schema::FOLLOWER_QUEUE_FRAMES)?,
        replay_buffer_events: s.int(&schema::REPLAY_BUFFER_EVENTS)?,
        replay_buffer_bytes: s.int(&schema::REPLAY_BUFFER_BYTES)?,
        turn_buffer_bytes_max: s.int(&schema::TURN_BUFFER_BYTES_MAX)?,
        active_conversations_max: s.int(&schema::ACTIVE_CONVERSATIONS_MAX)?,
        agent_processes_max: s.int(&schema::AGENT_PROCESSES_MAX)?,
    };

    let mut s = Section::take(&mut root, "conversation", origins)?;
    let conversation = ConversationSection {
        idle_passivate_ms: s.int(&schema::IDLE_PASSIVATE_MS)?,
        checkpoint_interval_ms: s.int(&schema::CHECKPOINT_INTERVAL_MS)?,
        turn_timeout_ms: s.int(&schema::TURN_TIMEOUT_MS)?,
        turn_idle_timeout_ms: s.int(&schema::TURN_IDLE_TIMEOUT_MS)?,
        agent_start_timeout_ms: s.int(&schema::AGENT_START_TIMEOUT_MS)?,
        agent_probe_timeout_ms: s.int(&schema::AGENT_PROBE_TIMEOUT_MS)?,
        agent_probe_ttl_ms: s.int(&schema::AGENT_PROBE_TTL_MS)?,
        permission_timeout_ms: s.int(&schema::PERMISSION_TIMEOUT_MS)?,
        initiator_grace_ms: s.int_u64(&schema::INITIATOR_GRACE_MS)?,
    };

    let mut s = Section::take(&mut root, "workspace", origins)?;
    let workspace = WorkspaceSection {
        snapshot_bytes_max: s.int(&schema::SNAPSHOT_BYTES_MAX)?,
        snapshot_files_max: s.int(&schema::SNAPSHOT_FILES_MAX)?,
        snapshot_timeout_ms: s.int(&schema::SNAPSHOT_TIMEOUT_MS)?,
        idle_stop_ms: s.int_u64(&schema::IDLE_STOP_MS)?,
        archive_after_ms: s.int_u64(&schema::ARCHIVE_AFTER_MS)?,
    };

    let mut s = Section::take(&mut root, "sandbox", origins)?;
    let isolation = match s.string("isolation")? {
        None => Isolation::default(),
        Some(name) => s.check("isolation", schema::parse_isolation(&name))?,
    };
    let sandbox = SandboxSection { isolation };

    let mut s = Section::take(&mut root, "telemetry", origins)?;
    let log_filter = s
        .string("log_filter")?
        .unwrap_or_else(|| LOG_FILTER_DEFAULT.to_owned());
    s.check("log_filter", schema::check_log_filter(&log_filter))?;
    let otlp_endpoint = s.string("otlp_endpoint")?;
    if let Some(endpoint) = &otlp_endpoint {
        s.check("otlp_endpoint", schema::check_otlp_endpoint(endpoint))?;
    }
    let service_name = s
        .string("service_name")?
        .unwrap_or_else(|| SERVICE_NAME_DEFAULT.to_owned());
    s.check(
        "service_name",
        schema::check_attribute(&service_name, "service name"),
    )?;
    let sampling_ratio = match s.number("sampling_ratio")? {
        None => SamplingRatio::ALL,
        Some(value) => s.check("sampling_ratio", schema::parse_sampling_ratio(value))?,
    };
    let resource_attributes = s.string_table("resource_attributes")?;
    for (name, value) in &resource_attributes {
        let key = format!("resource_attributes.{}", echo(name));
        s.check(&key, schema::check_attribute(name, "attribute name"))?;
        s.check(&key, schema::check_attribute(value, "attribute value"))?;
    }
    let prometheus_listen = s.socket_addr("prometheus_listen")?;
    let telemetry = TelemetrySection {
        log_filter,
        otlp_endpoint,
        service_name,
        sampling_ratio,
        resource_attributes,
        prometheus_listen,
    };

    let (agents, written) = crate::agents::agents(root.remove(AGENTS_KEY), origins)?;
    let default_agent =
        crate::agents::default_agent(root.remove(DEFAULT_AGENT_KEY), &written, origins)?;

    Ok(NodeConfig {
        node,
        tls,
        auth,
        cluster,
        gossip,
        limits,
        conversation,
        workspace,
        sandbox,
        agents,
        default_agent,
        telemetry,
    })
}

/// Makes relative file paths written in the config file relative to `base` (the file's
/// directory). Paths set from the environment are left as given (relative to the cwd).
pub(crate) fn resolve_relative_paths(config: &mut NodeConfig, base: &Path, origins: &Origins) {
    let mut paths = vec![
        ("node.data_dir", &mut config.node.data_dir),
        ("tls.ca_cert_path", &mut config.tls.ca_cert_path),
        ("tls.cert_path", &mut config.tls.cert_path),
        ("tls.key_path", &mut config.tls.key_path),
        ("auth.signing_key_path", &mut config.auth.signing_key_path),
    ];
    // Optional paths, when set.
    if let Some(path) = &mut config.auth.credentials_key_path {
        paths.push(("auth.credentials_key_path", path));
    }
    for (key, path) in paths {
        if !origins.contains(key) && path.is_relative() && !path.as_os_str().is_empty() {
            *path = base.join(&*path);
        }
    }
    crate::agents::resolve_relative_sources(&mut config.agents, base);
}

/// Rejects keys of `table` not in `known`, suggesting a close one.
pub(crate) fn reject_unknown<'a>(
    table: &Table,
    path: Option<&str>,
    known: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), ConfigError> {
    for key in table.keys() {
        if known.clone().any(|k| k == key) {
            continue;
        }
        let fix = if let Some(suggestion) = schema::closest(key, known.clone()) {
            format!("did you mean `{suggestion}`?")
        } else if path.is_some() && schema::top_level_keys().any(|k| k == key) {
            format!("`{key}` is a top-level key: move it above the first [section] header")
        } else {
            "remove it; the keys are listed in cluster-config/README.md".to_owned()
        };
        return Err(ConfigError::UnknownKey {
            key: join(path, &echo(key)),
            fix,
        });
    }
    Ok(())
}

fn join(path: Option<&str>, key: &str) -> String {
    match path {
        Some(path) => format!("{path}.{key}"),
        None => key.to_owned(),
    }
}

/// One table being read: `[node]` or `[agents.demo]`. Keys are taken out as they are read.
pub(crate) struct Section<'a> {
    /// Key path of the table, e.g. `conversation` or `agents.demo`.
    pub(crate) path: String,
    table: Table,
    origins: &'a Origins,
}

impl<'a> Section<'a> {
    /// A table at key path `path` (its unknown keys already rejected).
    pub(crate) fn new(path: String, table: Table, origins: &'a Origins) -> Self {
        Self {
            path,
            table,
            origins,
        }
    }

    /// Takes key `key`'s raw value out.
    pub(crate) fn remove_value(&mut self, key: &str) -> Option<Value> {
        self.table.remove(key)
    }

    /// The error for a bad value at `key`.
    pub(crate) fn invalid(
        &self,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        self.origins
            .invalid(self.key_path(key), Problem::new(problem, fix))
    }
    /// Takes fixed section `name` out of the root table (empty when absent) and rejects
    /// unknown keys in it.
    fn take(root: &mut Table, name: &str, origins: &'a Origins) -> Result<Self, ConfigError> {
        let known = schema::section(name).map_or(&[][..], |s| s.keys);
        let table = match root.remove(name) {
            None => Table::new(),
            Some(Value::Table(table)) => table,
            Some(other) => {
                return Err(not_a_table(name.to_owned(), &other, &format!("[{name}]")));
            }
        };
        reject_unknown(&table, Some(name), known.iter().copied())?;
        Ok(Self {
            path: name.to_owned(),
            table,
            origins,
        })
    }

    pub(crate) fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// Ties a single-value check result to `key`.
    fn check<T>(&self, key: &str, result: Result<T, Problem>) -> Result<T, ConfigError> {
        result.map_err(|p| self.origins.invalid(self.key_path(key), p))
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value, fix: &str) -> ConfigError {
        self.origins.invalid(
            self.key_path(key),
            Problem::new(
                format!("expected {expected}, found {}", describe(found)),
                fix,
            ),
        )
    }

    fn missing(&self, key: &str, example: &str) -> ConfigError {
        ConfigError::Missing {
            key: self.key_path(key),
            fix: format!("add `{key} = {example}` under [{}]", self.path),
        }
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.wrong_type(key, "a string", &other, "put the value in double quotes"))
            }
        }
    }

    fn required_string(&mut self, key: &str, example: &str) -> Result<String, ConfigError> {
        self.string(key)?.ok_or_else(|| self.missing(key, example))
    }

    /// A required, non-empty path.
    fn path(&mut self, key: &str, what: &str, example: &str) -> Result<PathBuf, ConfigError> {
        let path = PathBuf::from(self.required_string(key, example)?);
        self.check(key, schema::check_path(&path, what))?;
        Ok(path)
    }

    /// An optional path: `None` when absent, non-empty when set.
    fn opt_path(&mut self, key: &str, what: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let path = PathBuf::from(text);
        self.check(key, schema::check_path(&path, what))?;
        Ok(Some(path))
    }

    fn node_id(&mut self, key: &str) -> Result<NodeId, ConfigError> {
        let id = self.required_string(key, "\"node-1\"")?;
        let id = NodeId::new(id).map_err(|e| Problem::new(e.to_string(), "rename the node"));
        self.check(key, id)
    }

    fn socket_addr(&mut self, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        self.check(key, schema::parse_socket_addr(&text)).map(Some)
    }

    /// A list of at most [`crate::SEEDS_MAX`] `ip:port` strings, empty when absent.
    fn seeds(&mut self, key: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        let items = match self.table.remove(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(self.wrong_type(
                    key,
                    "an array of \"ip:port\" strings",
                    &other,
                    "write it as [\"10.0.0.12:7443\", \"10.0.0.13:7443\"]",
                ));
            }
        };
        let path = self.key_path(key);
        self.check(key, schema::check_seed_count(items.len()))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let addr = match item {
                Value::String(text) => schema::parse_socket_addr(&text),
                other => Err(Problem::new(
                    format!("expected a string, found {}", describe(&other)),
                    "quote every address, e.g. \"10.0.0.12:7443\"",
                )),
            };
            out.push(addr.map_err(|p| self.origins.invalid_item(&path, i, p))?);
        }
        Ok(out)
    }

    /// Integer key `rule.key` checked against `rule`; `None` when absent.
    fn int_value(&mut self, rule: &IntRule) -> Result<Option<u64>, ConfigError> {
        match self.table.remove(rule.key) {
            None => Ok(None),
            Some(Value::Integer(int)) => {
                self.check(rule.key, rule.check(i128::from(int))).map(Some)
            }
            Some(other) => {
                let expected = rule.expected();
                Err(self.wrong_type(
                    rule.key,
                    &expected,
                    &other,
                    "write a whole number without quotes",
                ))
            }
        }
    }

    /// Integer key `rule.key` as a plain `u64` (so zero passes where `rule.min` is 0),
    /// its default when absent (required if it has none).
    fn int_u64(&mut self, rule: &IntRule) -> Result<u64, ConfigError> {
        match self.int_value(rule)?.or(rule.default) {
            Some(value) => Ok(value),
            None => Err(self.missing(rule.key, &rule.min.to_string())),
        }
    }

    /// A non-zero integer key, checked against `rule`, its default when absent.
    fn int<T: TryFrom<NonZeroU64>>(&mut self, rule: &IntRule) -> Result<T, ConfigError> {
        let value = self.int_u64(rule)?;
        self.non_zero(rule, value)
    }

    /// An optional non-zero integer key: `None` when absent.
    fn opt_int<T: TryFrom<NonZeroU64>>(
        &mut self,
        rule: &IntRule,
    ) -> Result<Option<T>, ConfigError> {
        self.int_value(rule)?
            .map(|value| self.non_zero(rule, value))
            .transpose()
    }

    /// `value` (already within `rule`'s bounds) as the field's non-zero type.
    fn non_zero<T: TryFrom<NonZeroU64>>(
        &self,
        rule: &IntRule,
        value: u64,
    ) -> Result<T, ConfigError> {
        // Every rule's bounds fit its field's type (tested), so this only guards the invariant.
        NonZeroU64::new(value)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| {
                let fix = format!("use a value from {} to {}", rule.min, rule.max);
                self.origins.invalid(
                    rule.path(),
                    Problem::new(format!("{value} does not fit"), fix),
                )
            })
    }

    /// A number (an integer, a float, or a string holding one, as an environment
    /// variable gives it).
    fn number(&mut self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Float(f)) => Ok(Some(f)),
            Some(Value::Integer(i)) => Ok(Some(i as f64)),
            Some(Value::String(text)) if text.trim().parse::<f64>().is_ok() => {
                Ok(text.trim().parse::<f64>().ok())
            }
            Some(other) => Err(self.wrong_type(key, "a number", &other, "write it as e.g. 0.25")),
        }
    }

    /// A boolean key; `None` when absent.
    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.wrong_type(
                key,
                "a boolean",
                &other,
                "write true or false without quotes",
            )),
        }
    }

    /// An array of strings; `None` when absent.
    pub(crate) fn opt_string_array(
        &mut self,
        key: &str,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            let key = format!("{key}[{i}]");
                            return Err(self.wrong_type(
                                &key,
                                "a string",
                                &other,
                                "quote every element",
                            ));
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(other) => Err(self.wrong_type(
                key,
                "an array of strings",
                &other,
                "write it as [\"--flag\", \"value\"]",
            )),
        }
    }

    pub(crate) fn string_table(
        &mut self,
        key: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        match self.table.remove(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Table(table)) => {
                let mut out = BTreeMap::new();
                for (name, value) in table {
                    match value {
                        Value::String(s) => {
                            out.insert(name, s);
                        }
                        other => {
                            let key = format!("{key}.{}", echo(&name));
                            return Err(self.wrong_type(
                                &key,
                                "a string",
                                &other,
                                "put the value in double quotes",
                            ));
                        }
                    }
                }
                Ok(out)
            }
            Some(other) => Err(self.wrong_type(
                key,
                "a table of strings",
                &other,
                "write it as { NAME = \"value\" }",
            )),
        }
    }
}

pub(crate) fn not_a_table(key: String, found: &Value, example: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: format!("expected a table, found {}", describe(found)),
        fix: format!("write it as a {example} table"),
    }
}
