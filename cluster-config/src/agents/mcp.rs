//! `[agents.<id>.mcp.<name>]`: the MCP servers an agent's sessions are given.

use super::{MCP_KEYS, MCP_SERVER_NAME_BYTES_MAX};
use crate::error::{ConfigError, describe, echo};
use crate::parse::{Section, reject_unknown};
use std::collections::BTreeMap;
use toml::{Table, Value};

/// One `[agents.<id>.mcp.<name>]`: `command` (+ `args`, `env`) for a stdio server the
/// agent starts, or `url` (+ `headers`) for an HTTP one. `Debug` shows the names of
/// `env` and `headers`, never their values (they are often keys).
#[derive(Clone, PartialEq, Eq)]
pub enum AgentMcpServer {
    /// A server the agent starts as a child process.
    Stdio {
        /// `command`: the executable.
        command: String,
        /// `args` (default `[]`).
        args: Vec<String>,
        /// `env` (default `{}`): its environment variables.
        env: BTreeMap<String, String>,
    },
    /// A server the agent calls over HTTP (given only to agents that advertise
    /// `mcpCapabilities.http`).
    Http {
        /// `url`: `http://…` or `https://…`.
        url: String,
        /// `headers` (default `{}`).
        headers: BTreeMap<String, String>,
    },
}

impl std::fmt::Debug for AgentMcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentMcpServer::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            AgentMcpServer::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// `[agents.<id>.mcp.<name>]` tables.
pub(super) fn mcp_servers(
    s: &mut Section<'_>,
) -> Result<BTreeMap<String, AgentMcpServer>, ConfigError> {
    let table = match s.remove_value("mcp") {
        None => return Ok(BTreeMap::new()),
        Some(Value::Table(table)) => table,
        Some(other) => {
            return Err(s.invalid(
                "mcp",
                format!("expected a table, found {}", describe(&other)),
                "write one [agents.<id>.mcp.<name>] table per server, with `command` or `url`",
            ));
        }
    };
    let mut servers = BTreeMap::new();
    for (name, value) in table {
        let key = format!("{}.mcp.{}", s.path, key_part(&name));
        let good_name = !name.is_empty()
            && name.len() <= MCP_SERVER_NAME_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !good_name {
            return Err(ConfigError::Invalid {
                key,
                problem: "not a server name".to_owned(),
                fix: format!(
                    "name it with 1 to {MCP_SERVER_NAME_BYTES_MAX} letters, digits, `_` or `-`"
                ),
            });
        }
        let entry = match value {
            Value::Table(entry) => entry,
            other => {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("expected a table, found {}", describe(&other)),
                    fix: "write it as [agents.<id>.mcp.<name>] with `command = \"…\"` or `url = \"https://…\"`".to_owned(),
                });
            }
        };
        servers.insert(name, mcp_server(entry, key)?);
    }
    Ok(servers)
}

/// `name` as a part of a key path: bare when TOML allows it, else quoted.
fn key_part(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", echo(name))
    }
}

/// One MCP server table at `key`.
fn mcp_server(entry: Table, key: String) -> Result<AgentMcpServer, ConfigError> {
    reject_unknown(&entry, Some(&key), MCP_KEYS.iter().copied())?;
    let invalid = |name: &str, problem: String, fix: &str| ConfigError::Invalid {
        key: format!("{key}.{name}"),
        problem,
        fix: fix.to_owned(),
    };
    let string = |name: &str| -> Result<Option<String>, ConfigError> {
        match entry.get(name) {
            None => Ok(None),
            Some(Value::String(text)) if !text.contains('\0') => Ok(Some(text.clone())),
            Some(other) => Err(invalid(
                name,
                format!("expected a string without NUL, found {}", describe(other)),
                "put the value in double quotes",
            )),
        }
    };
    let table = |name: &str| -> Result<BTreeMap<String, String>, ConfigError> {
        let Some(value) = entry.get(name) else {
            return Ok(BTreeMap::new());
        };
        let Value::Table(map) = value else {
            return Err(invalid(
                name,
                format!("expected a table, found {}", describe(value)),
                "write it as { NAME = \"value\" }",
            ));
        };
        map.iter()
            .map(|(k, v)| match v {
                Value::String(text)
                    if !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                        && !text.contains(['\0', '\n', '\r']) =>
                {
                    Ok((k.clone(), text.clone()))
                }
                _ => Err(invalid(
                    &format!("{name}.{}", key_part(k)),
                    "expected a name of letters, digits, `_` or `-` and a one-line string"
                        .to_owned(),
                    "write it as NAME = \"value\"",
                )),
            })
            .collect()
    };
    let args = match entry.get("args") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) if !text.contains('\0') => Ok(text.clone()),
                other => Err(invalid(
                    "args",
                    format!("expected strings, found {}", describe(other)),
                    "write it as [\"--flag\", \"value\"]",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                "args",
                format!("expected an array, found {}", describe(other)),
                "write it as [\"--flag\", \"value\"]",
            ));
        }
    };
    match (string("command")?, string("url")?) {
        (Some(command), None) => {
            if command.trim().is_empty() {
                return Err(invalid(
                    "command",
                    "the command is empty".to_owned(),
                    "set it to the server's executable",
                ));
            }
            if entry.contains_key("headers") {
                return Err(invalid(
                    "headers",
                    "a stdio server has no headers".to_owned(),
                    "use `env` for a stdio server, or `url` for an HTTP one",
                ));
            }
            Ok(AgentMcpServer::Stdio {
                command,
                args,
                env: table("env")?,
            })
        }
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "url",
                    format!("\"{}\" is not an http:// or https:// URL", echo(&url)),
                    "give the server's full URL, e.g. \"https://mcp.example.com/mcp\"",
                ));
            }
            if entry.contains_key("env") || entry.contains_key("args") {
                return Err(invalid(
                    "url",
                    "an HTTP server has no `args` or `env`".to_owned(),
                    "use `headers` for an HTTP server, or `command` for a stdio one",
                ));
            }
            Ok(AgentMcpServer::Http {
                url,
                headers: table("headers")?,
            })
        }
        (Some(_), Some(_)) => Err(ConfigError::Invalid {
            key,
            problem: "both `command` and `url` are set".to_owned(),
            fix: "set `command` for a stdio server or `url` for an HTTP one".to_owned(),
        }),
        (None, None) => Err(ConfigError::Missing {
            key: format!("{key}.command"),
            fix: "set `command = \"/path/to/server\"` (stdio) or `url = \"https://…\"` (HTTP)"
                .to_owned(),
        }),
    }
}
