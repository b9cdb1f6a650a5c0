//! The node's agent registry: the configured agents (the built-ins with the
//! `[agents.<id>]` tables applied), enabled or disabled at run time, and probed.
//!
//! * **Enabled** comes from the config's `enabled`, unless `shoalctl agents
//!   enable|disable` set it on this node: that choice is kept in the node's local store
//!   (tree [`OVERRIDES_TREE`], flushed before the answer) and wins until changed again.
//! * **Probe**: the program is looked for ([`find_program`]; `missing` when absent), then
//!   started in a scratch directory (`<data_dir>/agent-probes/<id>/`, its home template
//!   written into the scratch home) and asked ACP `initialize`, within
//!   `conversation.agent_probe_timeout_ms`. The result is trusted for
//!   `conversation.agent_probe_ttl_ms`. The probed agent gets [`PROBE_ENV`] set to `1`.
//!   Every enabled agent is probed when the node starts (in the background), when
//!   listed with a stale result, when a conversation is created for it with a stale
//!   result, and on demand (`shoalctl agents probe`). One probe per agent runs at a time;
//!   a second caller waits for it and uses its result.
//! * **Guards**: a conversation can only be created for an enabled, ready agent
//!   ([`AgentRegistry::check_creatable`]); a turn is refused for a disabled agent or one
//!   whose program is not on this node ([`AgentRegistry::check_runnable`], cheap: no
//!   process), naming the agent and the node (after a failover to a node without it).
//!
//! In simulation ([`crate::seam::Seams::agent_launcher`]) agents are in-process: nothing
//! is looked for or probed, every enabled agent is `ready`.

use crate::agent_process::{AgentCommand, AgentProcess, ProbeInfo, StartOptions, find_program};
use crate::context::NodeContext;
use shoal_cluster_config::{AgentSpec, Isolation, builtin_agent};
use shoal_protocol::admin::{AgentInfo, AgentStatus};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::time::Instant;

/// The sled tree of run-time enable/disable choices: agent id → `[1]` or `[0]`.
pub const OVERRIDES_TREE: &str = "agent-overrides";
/// Set to `1` in a probed agent's environment: the run is a probe, not a session (the
/// demo agent then reports to no witness).
pub const PROBE_ENV: &str = "SHOAL_AGENT_PROBE";
/// Longest failure reason kept from a probe (it carries the end of the agent's stderr),
/// in characters.
pub const PROBE_REASON_CHARS_MAX: usize = 1024;

/// Why an admin change to the registry was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No agent has this id. Nothing changed.
    #[error("no agent `{agent}` on node `{node}`; agents: {known}")]
    Unknown {
        /// The id asked for (shortened).
        agent: String,
        /// This node.
        node: String,
        /// The agents there are.
        known: String,
    },
    /// The choice could not be stored. It may not survive a restart.
    #[error("cannot store the agent setting in the node's store: {0}; check the data dir's disk")]
    Store(String),
}

/// The last probe of one agent.
#[derive(Debug, Clone)]
struct Probed {
    /// `Ready`, `Missing` or `Failed`.
    status: AgentStatus,
    /// What it said, when it answered.
    info: Option<ProbeInfo>,
    /// When (for the TTL).
    at: Instant,
    /// When, wall clock (for display).
    at_ms: u64,
}

/// One agent's run-time state.
#[derive(Debug)]
struct Entry {
    /// The run-time choice, if any (else the config's `enabled`).
    enabled_override: Option<bool>,
    probed: Option<Probed>,
    /// Held while probing: one probe at a time per agent.
    probing: Arc<tokio::sync::Mutex<()>>,
}

/// See the module doc.
#[derive(Debug)]
pub struct AgentRegistry {
    tree: sled::Tree,
    /// By agent id; the same keys as the config's agents.
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl AgentRegistry {
    /// The registry of `agents`, with the run-time choices kept in `db`.
    pub fn open(
        agents: &BTreeMap<shoal_cluster_config::AgentName, AgentSpec>,
        db: &sled::Db,
    ) -> Result<Self, sled::Error> {
        let tree = db.open_tree(OVERRIDES_TREE)?;
        let mut entries = BTreeMap::new();
        for id in agents.keys() {
            let enabled_override = tree.get(id.as_str())?.map(|v| v.as_ref() == [1]);
            entries.insert(
                id.as_str().to_owned(),
                Entry {
                    enabled_override,
                    probed: None,
                    probing: Arc::default(),
                },
            );
        }
        Ok(Self {
            tree,
            entries: Mutex::new(entries),
        })
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What agent `id`'s last probe said it takes in prompts: `(image, embeddedContext)`;
    /// `None` when it has not answered a probe.
    pub fn prompt_capabilities(&self, id: &str) -> Option<(bool, bool)> {
        let entries = self.entries();
        let info = entries.get(id)?.probed.as_ref()?.info.as_ref()?;
        Some((info.prompt_image, info.prompt_embedded_context))
    }

    /// Whether `id` is enabled on this node (`false` for an unknown id).
    pub fn enabled(&self, ctx: &NodeContext, id: &str) -> bool {
        let Some(spec) = ctx.config.agents.get(id) else {
            return false;
        };
        self.entries()
            .get(id)
            .and_then(|e| e.enabled_override)
            .unwrap_or(spec.enabled)
    }

    /// Probes every enabled agent whose last probe is older than the TTL (or all, with
    /// `force`), concurrently (one task per agent, at most `AGENTS_MAX`).
    pub async fn probe_all(&self, ctx: &NodeContext, force: bool) {
        let ids: Vec<String> = ctx
            .config
            .agents
            .keys()
            .map(|id| id.as_str().to_owned())
            .filter(|id| self.enabled(ctx, id))
            .collect();
        futures::future::join_all(ids.iter().map(|id| self.probe_one(ctx, id, force))).await;
    }

    /// Probes `id` unless its last probe is fresh (or always, with `force`); returns its
    /// status. A disabled agent is not probed.
    async fn probe_one(&self, ctx: &NodeContext, id: &str, force: bool) -> AgentStatus {
        if !self.enabled(ctx, id) {
            return AgentStatus::Disabled;
        }
        let Some(spec) = ctx.config.agents.get(id) else {
            return AgentStatus::Disabled;
        };
        let Some(lock) = self.entries().get(id).map(|e| Arc::clone(&e.probing)) else {
            return AgentStatus::Disabled;
        };
        let started = Instant::now();
        let _probing = lock.lock().await;
        // Someone may have probed while we waited.
        if let Some(probed) = self.fresh(ctx, id, force.then_some(started)) {
            return probed.status;
        }
        let probed = probe(ctx, id, spec).await;
        let status = probed.status.clone();
        match &status {
            AgentStatus::Ready => tracing::info!(agent = id, "agent probe: ready"),
            // Built-ins that are not installed are expected.
            AgentStatus::Missing { detail } => {
                tracing::info!(agent = id, %detail, "agent probe: missing");
            }
            other => tracing::warn!(agent = id, status = %other, "agent probe: not ready"),
        }
        if let Some(entry) = self.entries().get_mut(id) {
            entry.probed = Some(probed);
        }
        status
    }

    /// The last probe of `id` if it is within the TTL (and, with `since`, taken after
    /// it).
    fn fresh(&self, ctx: &NodeContext, id: &str, since: Option<Instant>) -> Option<Probed> {
        let ttl = ctx.config.conversation.agent_probe_ttl();
        let entries = self.entries();
        let probed = entries.get(id)?.probed.as_ref()?;
        let fresh = probed.at.elapsed() < ttl && since.is_none_or(|since| probed.at >= since);
        fresh.then(|| probed.clone())
    }

    /// Every agent, by id, probing those with stale results first.
    pub async fn list(&self, ctx: &NodeContext) -> Vec<AgentInfo> {
        self.probe_all(ctx, false).await;
        self.describe_all(ctx)
    }

    /// Probes `id` now (every enabled agent when `None`); returns what was probed.
    pub async fn probe_now(
        &self,
        ctx: &NodeContext,
        id: Option<&str>,
    ) -> Result<Vec<AgentInfo>, RegistryError> {
        match id {
            None => {
                self.probe_all(ctx, true).await;
                Ok(self.describe_all(ctx))
            }
            Some(id) => {
                self.known(ctx, id)?;
                self.probe_one(ctx, id, true).await;
                Ok(self.describe(ctx, id).into_iter().collect())
            }
        }
    }

    /// Enables or disables `id` on this node, stored before it returns; an enabled agent
    /// is probed again.
    pub async fn set_enabled(
        &self,
        ctx: &NodeContext,
        id: &str,
        enabled: bool,
    ) -> Result<Vec<AgentInfo>, RegistryError> {
        self.known(ctx, id)?;
        let tree = self.tree.clone();
        let key = id.to_owned();
        ctx.blocking(move || -> Result<(), sled::Error> {
            tree.insert(key.as_bytes(), &[u8::from(enabled)])?;
            tree.flush()?;
            Ok(())
        })
        .await
        .map_err(|e| RegistryError::Store(e.to_string()))?
        .map_err(|e| RegistryError::Store(e.to_string()))?;
        if let Some(entry) = self.entries().get_mut(id) {
            entry.enabled_override = Some(enabled);
        }
        tracing::info!(
            agent = id,
            enabled,
            "agent enabled state changed at run time"
        );
        if enabled {
            self.probe_one(ctx, id, true).await;
        }
        Ok(self.describe(ctx, id).into_iter().collect())
    }

    fn known(&self, ctx: &NodeContext, id: &str) -> Result<(), RegistryError> {
        if ctx.config.agents.contains_key(id) {
            return Ok(());
        }
        Err(RegistryError::Unknown {
            agent: id.chars().take(64).collect(),
            node: ctx.node_id().to_owned(),
            known: ids(ctx.config.agents.keys().map(|id| id.as_str())),
        })
    }

    /// Whether a conversation may be created for `id`: enabled and ready (probed now
    /// when the last result is stale). The error lists the ready agents.
    pub async fn check_creatable(&self, ctx: &NodeContext, id: &str) -> Result<(), String> {
        let status = self.probe_one(ctx, id, false).await;
        if status == AgentStatus::Ready {
            return Ok(());
        }
        let why = match &status {
            AgentStatus::Disabled => format!(
                "is disabled on node `{}`; an admin can enable it with `shoalctl agents enable {id}`",
                ctx.node_id()
            ),
            AgentStatus::Missing { detail } => format!(
                "is not installed on node `{}` ({detail}){}",
                ctx.node_id(),
                install_hint(id)
            ),
            // The reason may quote the agent's stderr: admins see it in `shoalctl agents`.
            AgentStatus::Failed { .. } => format!(
                "failed its probe on node `{}` (it did not start or answer ACP `initialize`); \
                 an admin sees why with `shoalctl agents`",
                ctx.node_id()
            ),
            other => format!("is not ready on node `{}`: {other}", ctx.node_id()),
        };
        let ready: Vec<String> = self
            .describe_all(ctx)
            .into_iter()
            .filter(|a| a.status == AgentStatus::Ready)
            .map(|a| a.id)
            .collect();
        let ready = if ready.is_empty() {
            "none is ready; see `shoalctl agents`".to_owned()
        } else {
            format!("ready agents: {}", ready.join(", "))
        };
        Err(format!("agent `{id}` {why}; {ready}"))
    }

    /// Whether a turn may start agent `id` here: enabled, and its program found (no
    /// process is started). The error names the agent and this node.
    pub fn check_runnable(&self, ctx: &NodeContext, id: &str) -> Result<(), String> {
        let node = ctx.node_id();
        if !self.enabled(ctx, id) {
            return Err(format!(
                "agent `{id}` is disabled on node `{node}`, which runs this conversation now; \
                 an admin can enable it with `shoalctl agents enable {id}`"
            ));
        }
        if ctx.seams.agent_launcher.is_some() {
            return Ok(());
        }
        let Some(spec) = ctx.config.agents.get(id) else {
            return Err(format!(
                "agent `{id}` is not configured on node `{node}`, which runs this conversation \
                 now; add `[agents.{id}]` to its config"
            ));
        };
        let cwd = probe_dirs(ctx, id).0;
        if let Err(detail) = find_program(&AgentCommand::from(spec), &cwd) {
            return Err(format!(
                "agent `{id}` is not installed on node `{node}`, which runs this conversation \
                 now ({detail}){}",
                install_hint(id)
            ));
        }
        Ok(())
    }

    fn describe_all(&self, ctx: &NodeContext) -> Vec<AgentInfo> {
        ctx.config
            .agents
            .keys()
            .filter_map(|id| self.describe(ctx, id.as_str()))
            .collect()
    }

    fn describe(&self, ctx: &NodeContext, id: &str) -> Option<AgentInfo> {
        let spec = ctx.config.agents.get(id)?;
        let entries = self.entries();
        let entry = entries.get(id)?;
        let enabled = entry.enabled_override.unwrap_or(spec.enabled);
        let probed = entry.probed.as_ref();
        let info = probed.and_then(|p| p.info.clone()).unwrap_or_default();
        let status = match probed {
            _ if !enabled => AgentStatus::Disabled,
            Some(probed) => probed.status.clone(),
            None => AgentStatus::Unknown,
        };
        let mut prompt_capabilities = Vec::new();
        for (on, name) in [
            (info.prompt_image, "image"),
            (info.prompt_audio, "audio"),
            (info.prompt_embedded_context, "embeddedContext"),
        ] {
            if on {
                prompt_capabilities.push(name.to_owned());
            }
        }
        Some(AgentInfo {
            id: id.to_owned(),
            label: spec.label.clone(),
            command: std::iter::once(spec.command.display().to_string())
                .chain(spec.args.iter().cloned())
                .collect(),
            enabled,
            enabled_at_run_time: entry.enabled_override.is_some(),
            status,
            agent_name: info.name,
            version: info.version,
            load_session: info.load_session,
            prompt_capabilities,
            auth_methods: info.auth_methods,
            probed_at_ms: probed.map(|p| p.at_ms),
        })
    }
}

/// `, install it with …` for a built-in.
fn install_hint(id: &str) -> String {
    builtin_agent(id)
        .map(|b| format!("; install it there with `{}`", b.install))
        .unwrap_or_default()
}

fn ids<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.collect::<Vec<_>>().join(", ")
}

impl From<&AgentSpec> for AgentCommand {
    fn from(spec: &AgentSpec) -> Self {
        AgentCommand {
            program: spec.command.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
        }
    }
}

/// The scratch working directory and home a probe of `id` runs in.
fn probe_dirs(ctx: &NodeContext, id: &str) -> (PathBuf, PathBuf) {
    let root = ctx.config.node.data_dir.join("agent-probes").join(id);
    (root.join("work"), root.join("home"))
}

/// One probe of agent `id`: find its program, write its home template into the scratch
/// home, start it and ask `initialize`.
async fn probe(ctx: &NodeContext, id: &str, spec: &AgentSpec) -> Probed {
    let done = |status, info| Probed {
        status,
        info,
        at: Instant::now(),
        at_ms: ctx.now_ms(),
    };
    if ctx.seams.agent_launcher.is_some() {
        return done(AgentStatus::Ready, None);
    }
    let (cwd, home) = probe_dirs(ctx, id);
    let cmd = AgentCommand::from(spec);
    if let Err(detail) = find_program(&cmd, &cwd) {
        return done(AgentStatus::Missing { detail }, None);
    }
    let failed = |reason: String| AgentStatus::Failed {
        reason: reason.chars().take(PROBE_REASON_CHARS_MAX).collect(),
    };
    for dir in [&cwd, &home] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            let reason = format!("cannot create the probe directory {}: {e}", dir.display());
            return done(failed(reason), None);
        }
    }
    if let Err(e) = crate::workspace::home_template::materialize(ctx, id, &home).await {
        return done(failed(e.to_string()), None);
    }
    let root = cwd
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| cwd.clone());
    let opts = StartOptions {
        cwd,
        home,
        resume_session: None,
        start_timeout: ctx.config.conversation.agent_probe_timeout(),
        extra_env: BTreeMap::from([
            ("SHOAL_NODE_ID".to_owned(), ctx.node_id().to_owned()),
            (PROBE_ENV.to_owned(), "1".to_owned()),
        ]),
        confine_to: (ctx.config.sandbox.isolation == Isolation::Bwrap).then_some(root),
        mcp_servers: Vec::new(),
    };
    match AgentProcess::probe(&cmd, opts, None).await {
        Ok(info) => done(AgentStatus::Ready, Some(info)),
        Err(e) => done(failed(e.to_string()), None),
    }
}

/// Probes every enabled agent once, in the background (at node start).
pub fn spawn_startup_probe(ctx: Arc<NodeContext>) {
    tokio::spawn(async move {
        ctx.agents.probe_all(&ctx, false).await;
    });
}
