//! `[agents.<id>]`: the built-in agents ([`BUILTIN_AGENTS`]), field-by-field overrides
//! of them, new agents (`extends`), and agent home templates (`[agents.<id>.home]`);
//! their MCP servers (`[agents.<id>.mcp.<name>]`) are read in `agents/mcp.rs`.
//!
//! Every config has the built-ins. A table named after a built-in changes only the keys
//! it sets (`env` and `home` per entry); any other table defines a new agent, from
//! scratch (`extends = "acp"`, the default, then `command` is required) or from a
//! built-in (`extends = "opencode"`).

mod mcp;
pub use mcp::AgentMcpServer;

use crate::env::Origins;
use crate::error::{ConfigError, Problem, describe, echo};
use crate::names::AgentName;
use crate::parse::{Section, not_a_table, reject_unknown};
use crate::schema::{self, AGENTS_KEY};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Keys of one `[agents.<id>]` table.
pub(crate) const AGENT_KEYS: &[&str] = &[
    "extends",
    "label",
    "command",
    "args",
    "env",
    "enabled",
    "home",
    "permissions",
    "mcp",
];
/// Keys of one `[agents.<id>.mcp.<name>]` table.
const MCP_KEYS: &[&str] = &["command", "args", "env", "url", "headers"];
/// The most MCP servers one agent is given from the config.
pub const AGENT_MCP_SERVERS_MAX: usize = 16;
/// Longest MCP server name, in bytes (`[A-Za-z0-9_-]`).
pub const MCP_SERVER_NAME_BYTES_MAX: usize = 64;
/// The tool kinds a permission rule can name (ACP's `toolCall.kind`), besides `default`.
pub const PERMISSION_KINDS: [&str; 10] = [
    "read",
    "edit",
    "delete",
    "move",
    "search",
    "execute",
    "think",
    "fetch",
    "switch_mode",
    "other",
];
/// Keys of one home template entry.
const HOME_FILE_KEYS: &[&str] = &["content", "source"];
/// The `extends` value of an agent defined from scratch.
pub const EXTENDS_ACP: &str = "acp";
/// The most agents a config may have, built-ins included.
pub const AGENTS_MAX: usize = 64;
/// Longest `label`, in characters.
pub const AGENT_LABEL_CHARS_MAX: usize = 64;
/// The most files in one agent's home template.
pub const HOME_FILES_MAX: usize = 64;
/// Longest home template path, in bytes.
pub const HOME_PATH_BYTES_MAX: usize = 256;
/// The most components (directories and the file name) in a home template path.
pub const HOME_PATH_COMPONENTS_MAX: usize = 16;
/// Largest home template file, inline (`content`) or read from `source`, in bytes.
pub const HOME_FILE_BYTES_MAX: usize = 1024 * 1024;
/// The name Shoal keeps its record of the files it wrote under, at the root of an agent
/// home; a template cannot write it.
pub const HOME_REGISTRY_FILE: &str = ".shoal-managed.json";

/// A built-in agent: what `[agents.<name>]` starts from.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinAgent {
    /// Its id.
    pub name: &'static str,
    /// Its label.
    pub label: &'static str,
    /// The executable, looked up in `PATH`.
    pub command: &'static str,
    /// Its arguments.
    pub args: &'static [&'static str],
    /// Environment defaults (each can be overridden).
    pub env: &'static [(&'static str, &'static str)],
    /// How to install it, for messages and docs.
    pub install: &'static str,
}

/// The built-in agents, by id. All are enabled by default: one that is not installed
/// probes as `missing` and no conversation can be created for it.
pub const BUILTIN_AGENTS: [BuiltinAgent; 4] = [
    BuiltinAgent {
        name: "claude",
        label: "Claude Code",
        command: "claude-agent-acp",
        args: &[],
        // A node-managed agent is upgraded by the operator, not by itself mid-session.
        env: &[("DISABLE_AUTOUPDATER", "1")],
        install: "npm install -g @agentclientprotocol/claude-agent-acp",
    },
    BuiltinAgent {
        name: "demo",
        label: "Shoal demo agent",
        command: "shoal-demo-agent",
        args: &[],
        env: &[],
        install: "cargo install --path demo-agent (shoal-node dev runs its own copy)",
    },
    BuiltinAgent {
        name: "gemini",
        label: "Gemini CLI",
        command: "gemini",
        args: &["--acp"],
        env: &[],
        install: "npm install -g @google/gemini-cli",
    },
    BuiltinAgent {
        name: "opencode",
        label: "OpenCode",
        command: "opencode",
        args: &["acp"],
        // No self-update, no downloads at start (cold starts are slow enough), no public
        // share links, no terminal title escapes on a pipe.
        env: &[
            ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_DISABLE_SHARE", "1"),
            ("OPENCODE_DISABLE_TERMINAL_TITLE", "1"),
        ],
        install: "npm install -g opencode-ai",
    },
];

/// The built-in agent named `name`, if there is one.
pub fn builtin_agent(name: &str) -> Option<&'static BuiltinAgent> {
    BUILTIN_AGENTS.iter().find(|b| b.name == name)
}

fn builtin_names() -> String {
    BUILTIN_AGENTS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `[agents.<id>]`: how to start one ACP agent, built-in or configured, after overrides.
/// Not overridable from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// `label` (default: the built-in's, else the id; at most
    /// [`AGENT_LABEL_CHARS_MAX`] characters, no control characters): the name shown to
    /// people.
    pub label: String,
    /// `command` (required for a new agent, non-empty): the executable; a bare name is
    /// looked up in `PATH`, a relative path resolves against the agent's working
    /// directory (its workspace).
    pub command: PathBuf,
    /// `args` (default `[]`, or the built-in's): arguments passed to `command`.
    pub args: Vec<String>,
    /// `env` (default `{}`, or the built-in's defaults, overridden per variable): extra
    /// environment variables for the agent process.
    pub env: BTreeMap<String, String>,
    /// `enabled` (default `true`): whether conversations may use the agent. A disabled
    /// agent is not probed. `shoalctl agents enable|disable` overrides it at run time.
    pub enabled: bool,
    /// `[agents.<id>.home]` (default empty): files written into every home of this
    /// agent before it starts, by path relative to the home.
    pub home: BTreeMap<HomePath, HomeFile>,
    /// `[agents.<id>.permissions]` (default empty: the owner answers every request):
    /// how the agent's permission requests are answered, by default and per tool kind.
    /// A workspace's own policy wins over it.
    pub permissions: AgentPermissions,
    /// `[agents.<id>.mcp.<name>]` (default empty): MCP servers passed to every session
    /// of the agent (ACP `mcpServers`), by name; a workspace's server of the same name
    /// replaces one of these.
    pub mcp: BTreeMap<String, AgentMcpServer>,
}

/// How a permission request is answered ([`AgentPermissions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionMode {
    /// `"ask"`: the owner (or the editor running the turn) answers.
    Ask,
    /// `"allow"`: allowed at once, without asking.
    Allow,
    /// `"deny"`: denied at once, without asking.
    Deny,
}

impl PermissionMode {
    /// `ask`, `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Ask => "ask",
            PermissionMode::Allow => "allow",
            PermissionMode::Deny => "deny",
        }
    }
}

/// `[agents.<id>.permissions]`: `default = "ask" | "allow" | "deny"` and the same per tool
/// kind ([`PERMISSION_KINDS`]), e.g. `execute = "ask"`, `read = "allow"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPermissions {
    /// `default`: the answer for a kind without its own rule (`None`: ask).
    pub default: Option<PermissionMode>,
    /// The per-kind rules, by kind.
    pub kinds: BTreeMap<String, PermissionMode>,
}

impl AgentSpec {
    /// The spec of a built-in agent, before overrides.
    pub fn builtin(builtin: &BuiltinAgent) -> Self {
        Self {
            label: builtin.label.to_owned(),
            command: PathBuf::from(builtin.command),
            args: builtin.args.iter().map(|a| (*a).to_owned()).collect(),
            env: builtin
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            enabled: true,
            home: BTreeMap::new(),
            permissions: AgentPermissions::default(),
            mcp: BTreeMap::new(),
        }
    }

    /// A new agent running `command`, labelled `label`, enabled, with no args, env or
    /// home template.
    pub fn new(label: impl Into<String>, command: impl Into<PathBuf>) -> Self {
        Self {
            label: label.into(),
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            enabled: true,
            home: BTreeMap::new(),
            permissions: AgentPermissions::default(),
            mcp: BTreeMap::new(),
        }
    }
}

/// Every built-in agent, unchanged.
pub fn builtin_agents() -> BTreeMap<AgentName, AgentSpec> {
    BUILTIN_AGENTS
        .iter()
        .map(|b| (AgentName::from_trusted(b.name), AgentSpec::builtin(b)))
        .collect()
}

/// One file of an agent home template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeFile {
    /// `content = "…"`: the file's text (at most [`HOME_FILE_BYTES_MAX`] bytes).
    Content(String),
    /// `source = "/path"`: a file on the node, read (at most [`HOME_FILE_BYTES_MAX`]
    /// bytes) each time an agent starts. Relative to the config file's directory.
    Source(PathBuf),
}

/// A home template path: relative, `/`-separated, every component a plain name (no
/// `.`, `..` or empty component), at most [`HOME_PATH_BYTES_MAX`] bytes and
/// [`HOME_PATH_COMPONENTS_MAX`] components, not [`HOME_REGISTRY_FILE`]. A value of this
/// type is always valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HomePath(String);

impl HomePath {
    /// Checks `path` and wraps it; the error says what is wrong.
    pub fn new(path: &str) -> Result<Self, String> {
        check_home_path(path).map(|()| Self(path.to_owned()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for HomePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_home_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".to_owned());
    }
    if path.len() > HOME_PATH_BYTES_MAX {
        return Err(format!(
            "the path is {} bytes, the limit is {HOME_PATH_BYTES_MAX}",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Err("the path is absolute; it must be relative to the agent's HOME".to_owned());
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("the path contains a control character or a backslash".to_owned());
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > HOME_PATH_COMPONENTS_MAX {
        return Err(format!(
            "the path has {} components, the limit is {HOME_PATH_COMPONENTS_MAX}",
            components.len()
        ));
    }
    if components.iter().any(|c| matches!(*c, "" | "." | "..")) {
        return Err(
            "the path has an empty, `.` or `..` component; it must stay inside the agent's HOME"
                .to_owned(),
        );
    }
    if path == HOME_REGISTRY_FILE {
        return Err(format!(
            "{HOME_REGISTRY_FILE} is Shoal's own record of its files"
        ));
    }
    Ok(())
}

/// The agents of the config: the built-ins with `value`'s `[agents.<id>]` tables
/// applied, and the ids of the tables written (for the default agent).
pub(crate) fn agents(
    value: Option<Value>,
    origins: &Origins,
) -> Result<(BTreeMap<AgentName, AgentSpec>, Vec<AgentName>), ConfigError> {
    let mut agents = builtin_agents();
    let table = match value {
        None => return Ok((agents, Vec::new())),
        Some(Value::Table(table)) => table,
        Some(other) => {
            return Err(not_a_table(AGENTS_KEY.to_owned(), &other, "[agents.<id>]"));
        }
    };
    let mut written = Vec::with_capacity(table.len());
    for (name, value) in table {
        let path = format!("{AGENTS_KEY}.{}", echo(&name));
        let name = AgentName::new(name).map_err(|e| ConfigError::Invalid {
            key: path.clone(),
            problem: e.to_string(),
            fix: "rename the [agents.<id>] table".to_owned(),
        })?;
        let table = match value {
            Value::Table(table) => table,
            other => return Err(not_a_table(path, &other, &format!("[agents.{name}]"))),
        };
        reject_unknown(&table, Some(&path), AGENT_KEYS.iter().copied())?;
        let mut s = Section::new(path, table, origins);
        let spec = agent(&mut s, &name, agents.remove(&name))?;
        check_agent(&s.path, &spec)?;
        agents.insert(name.clone(), spec);
        written.push(name);
    }
    if agents.len() > AGENTS_MAX {
        return Err(ConfigError::Invalid {
            key: AGENTS_KEY.to_owned(),
            problem: format!(
                "{} agents (built-ins included), the limit is {AGENTS_MAX}",
                agents.len()
            ),
            fix: "remove some [agents.<id>] tables".to_owned(),
        });
    }
    Ok((agents, written))
}

/// One `[agents.<id>]` table over `builtin` (the built-in of that name, if any).
fn agent(
    s: &mut Section<'_>,
    name: &AgentName,
    builtin: Option<AgentSpec>,
) -> Result<AgentSpec, ConfigError> {
    let extends = s.string("extends")?;
    let base = match (builtin, extends) {
        (Some(builtin), None) => Some(builtin),
        (Some(_), Some(_)) => {
            return Err(s.invalid(
                "extends",
                format!("`{name}` is a built-in agent, it extends nothing"),
                format!(
                    "remove `extends` to change the built-in's keys, or rename the table to \
                     define another agent (e.g. [agents.{name}-2] extends = \"{name}\")"
                ),
            ));
        }
        (None, None) => None,
        (None, Some(extends)) if extends == EXTENDS_ACP => None,
        (None, Some(extends)) => match builtin_agent(&extends) {
            Some(builtin) => Some(AgentSpec::builtin(builtin)),
            None => {
                return Err(s.invalid(
                    "extends",
                    format!("\"{}\" is not an agent to extend", echo(&extends)),
                    format!(
                        "use \"{EXTENDS_ACP}\" (any ACP agent; then set `command`) or a \
                         built-in: {}",
                        builtin_names()
                    ),
                ));
            }
        },
    };
    let mut spec = match base {
        Some(base) => base,
        None => {
            let command = s.string("command")?.ok_or_else(|| ConfigError::Missing {
                key: s.key_path("command"),
                fix: format!(
                    "`{name}` is not a built-in agent ({}), so it needs the program to run: \
                     add `command = \"/usr/local/bin/my-agent\"` under [agents.{name}] (with \
                     `extends = \"{EXTENDS_ACP}\"`), or `extends = \"<built-in>\"` to start \
                     from a built-in",
                    builtin_names()
                ),
            })?;
            AgentSpec::new(name.as_str(), command)
        }
    };
    if let Some(command) = s.string("command")? {
        spec.command = PathBuf::from(command);
    }
    if let Some(label) = s.string("label")? {
        spec.label = label;
    }
    if let Some(args) = s.opt_string_array("args")? {
        spec.args = args;
    }
    spec.env.extend(s.string_table("env")?);
    if let Some(enabled) = s.bool("enabled")? {
        spec.enabled = enabled;
    }
    spec.home.extend(home(s)?);
    permissions(s, &mut spec.permissions)?;
    spec.mcp.extend(mcp::mcp_servers(s)?);
    if spec.mcp.len() > AGENT_MCP_SERVERS_MAX {
        return Err(s.invalid(
            "mcp",
            format!(
                "{} MCP servers, the limit is {AGENT_MCP_SERVERS_MAX}",
                spec.mcp.len()
            ),
            "give the agent fewer MCP servers",
        ));
    }
    Ok(spec)
}

/// `[agents.<id>.permissions]`: `default` and tool kinds → `"ask" | "allow" | "deny"`,
/// over what `into` has (a built-in's, an extended agent's).
fn permissions(s: &mut Section<'_>, into: &mut AgentPermissions) -> Result<(), ConfigError> {
    let table = match s.remove_value("permissions") {
        None => return Ok(()),
        Some(Value::Table(table)) => table,
        Some(other) => {
            return Err(s.invalid(
                "permissions",
                format!("expected a table, found {}", describe(&other)),
                "write it as [agents.<id>.permissions] with `default = \"ask\"` and tool kinds \
                 such as `execute = \"ask\"`, `read = \"allow\"`",
            ));
        }
    };
    for (key, value) in table {
        let path = format!("{}.permissions.{}", s.path, echo(&key));
        if key != "default" && !PERMISSION_KINDS.contains(&key.as_str()) {
            return Err(ConfigError::Invalid {
                key: path,
                problem: format!("`{}` is not a tool kind", echo(&key)),
                fix: format!("use `default` or one of: {}", PERMISSION_KINDS.join(", ")),
            });
        }
        let mode = match value.as_str() {
            Some("ask") => PermissionMode::Ask,
            Some("allow") => PermissionMode::Allow,
            Some("deny") => PermissionMode::Deny,
            _ => {
                return Err(ConfigError::Invalid {
                    key: path,
                    problem: format!(
                        "expected \"ask\", \"allow\" or \"deny\", found {}",
                        describe(&value)
                    ),
                    fix: "set it to \"ask\" (the owner answers), \"allow\" or \"deny\"".to_owned(),
                });
            }
        };
        if key == "default" {
            into.default = Some(mode);
        } else {
            into.kinds.insert(key, mode);
        }
    }
    Ok(())
}

/// `[agents.<id>.home]`: path → `{ content = "…" }` or `{ source = "/path" }`.
fn home(s: &mut Section<'_>) -> Result<BTreeMap<HomePath, HomeFile>, ConfigError> {
    let table = match s.remove_value("home") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Table(table)) => table,
        Some(other) => {
            return Err(s.invalid(
                "home",
                format!("expected a table, found {}", describe(&other)),
                "write it as [agents.<id>.home] with one `\"path/in/home\" = { content = \"…\" }` \
                 per file",
            ));
        }
    };
    if table.len() > HOME_FILES_MAX {
        return Err(s.invalid(
            "home",
            format!("{} files, the limit is {HOME_FILES_MAX}", table.len()),
            "template fewer files, e.g. one config file per agent",
        ));
    }
    let mut files = BTreeMap::new();
    for (rel, value) in table {
        let key = format!("{}.home.\"{}\"", s.path, echo(&rel));
        let path = HomePath::new(&rel).map_err(|problem| ConfigError::Invalid {
            key: key.clone(),
            problem,
            fix: "use a path relative to the agent's HOME, e.g. \".config/opencode/opencode.json\""
                .to_owned(),
        })?;
        let entry = match value {
            Value::Table(entry) => entry,
            other => {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("expected a table, found {}", describe(&other)),
                    fix: "write it as { content = \"…\" } or { source = \"/path/on/the/node\" }"
                        .to_owned(),
                });
            }
        };
        files.insert(path, home_file(entry, key)?);
    }
    Ok(files)
}

/// One home template entry at `key`.
fn home_file(entry: Table, key: String) -> Result<HomeFile, ConfigError> {
    reject_unknown(&entry, Some(&key), HOME_FILE_KEYS.iter().copied())?;
    let one_of = "set exactly one of `content = \"…\"` (the text) or `source = \"/path\"` (a file \
                  on the node)";
    let string = |name: &str, value: &Value| match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(ConfigError::Invalid {
            key: format!("{key}.{name}"),
            problem: format!("expected a string, found {}", describe(other)),
            fix: "put the value in double quotes".to_owned(),
        }),
    };
    match (entry.get("content"), entry.get("source")) {
        (Some(content), None) => Ok(HomeFile::Content(string("content", content)?)),
        (None, Some(source)) => Ok(HomeFile::Source(PathBuf::from(string("source", source)?))),
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            key,
            problem: "both `content` and `source` are set".to_owned(),
            fix: one_of.to_owned(),
        }),
        (None, None) => Err(ConfigError::Missing {
            key: format!("{key}.content"),
            fix: one_of.to_owned(),
        }),
    }
}

/// The single-value rules of one agent at key path `path` (`agents.<id>`).
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
    check_label(&spec.label).map_err(|p| p.at(format!("{path}.label")))?;
    for (i, arg) in spec.args.iter().enumerate() {
        schema::check_no_nul(arg, "argument").map_err(|p| p.at(format!("{path}.args[{i}]")))?;
    }
    for (name, value) in &spec.env {
        let key = format!("{path}.env.{}", echo(name));
        schema::check_env_name(name).map_err(|p| p.at(key.clone()))?;
        schema::check_no_nul(value, "value").map_err(|p| p.at(key))?;
    }
    if spec.home.len() > HOME_FILES_MAX {
        return Err(Problem::new(
            format!("{} files, the limit is {HOME_FILES_MAX}", spec.home.len()),
            "template fewer files",
        )
        .at(format!("{path}.home")));
    }
    for (rel, file) in &spec.home {
        let key = format!("{path}.home.\"{}\"", echo(rel.as_str()));
        match file {
            HomeFile::Content(text) if text.len() > HOME_FILE_BYTES_MAX => {
                return Err(Problem::new(
                    format!(
                        "the content is {} bytes, the limit is {HOME_FILE_BYTES_MAX}",
                        text.len()
                    ),
                    "shorten it",
                )
                .at(format!("{key}.content")));
            }
            HomeFile::Source(source) => {
                schema::check_path(source, "template source file")
                    .map_err(|p| p.at(format!("{key}.source")))?;
            }
            HomeFile::Content(_) => {}
        }
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), Problem> {
    let chars = label.chars().count();
    if label.trim().is_empty()
        || chars > AGENT_LABEL_CHARS_MAX
        || label.chars().any(char::is_control)
    {
        return Err(Problem::new(
            format!(
                "\"{}\" is not a valid label (1 to {AGENT_LABEL_CHARS_MAX} characters, no \
                 control characters)",
                echo(label)
            ),
            "use a short name such as \"OpenCode (local models)\"",
        ));
    }
    Ok(())
}

/// Makes relative home template `source` paths relative to `base` (the config file's
/// directory); agents cannot be set from the environment.
pub(crate) fn resolve_relative_sources(agents: &mut BTreeMap<AgentName, AgentSpec>, base: &Path) {
    for spec in agents.values_mut() {
        for file in spec.home.values_mut() {
            if let HomeFile::Source(path) = file
                && path.is_relative()
                && !path.as_os_str().is_empty()
            {
                *path = base.join(&*path);
            }
        }
    }
}

/// The top-level `default_agent`, or, when it is absent, the only `[agents.<id>]`
/// table written, or `demo` when none is.
pub(crate) fn default_agent(
    value: Option<Value>,
    written: &[AgentName],
    origins: &Origins,
) -> Result<AgentName, ConfigError> {
    let key = schema::DEFAULT_AGENT_KEY.to_owned();
    match value {
        Some(Value::String(name)) => AgentName::new(name).map_err(|e| {
            origins.invalid(
                key,
                Problem::new(
                    e.to_string(),
                    "set it to the id of a built-in agent or an [agents.<id>] table",
                ),
            )
        }),
        Some(other) => Err(origins.invalid(
            key,
            Problem::new(
                format!("expected a string, found {}", describe(&other)),
                "put the agent id in double quotes",
            ),
        )),
        None => match written {
            [] => Ok(AgentName::from_trusted(DEFAULT_AGENT_BUILTIN)),
            [only] => Ok(only.clone()),
            names => Err(ConfigError::Missing {
                key,
                fix: format!(
                    "several agents are configured: add `default_agent = \"<id>\"` at the top \
                     of the file, one of: {}",
                    names
                        .iter()
                        .map(AgentName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        },
    }
}

/// The default agent of a config with no `[agents.<id>]` table.
pub const DEFAULT_AGENT_BUILTIN: &str = "demo";
