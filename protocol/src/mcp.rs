//! MCP servers a workspace gives its agents (passed in ACP `session/new` /
//! `session/load` as `mcpServers`, with the agents' own from the node config). Their
//! environment variables (stdio) and headers (http) are secrets: written, never read
//! back — listings carry their names only.

use crate::client::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most MCP servers per workspace.
pub const MCP_SERVERS_MAX: usize = 16;
/// Longest server name, in bytes (`[A-Za-z0-9_-]`).
pub const MCP_NAME_BYTES_MAX: usize = 64;
/// Most arguments, env variables or headers of one server.
pub const MCP_ENTRIES_MAX: usize = 32;
/// Longest command, argument, URL, header or variable value, in bytes.
pub const MCP_VALUE_BYTES_MAX: usize = 8 * 1024;

/// How an agent reaches an MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum McpTransport {
    /// The agent starts it as a child process.
    Stdio {
        /// The executable.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    },
    /// The agent calls it over HTTP (only agents advertising `mcpCapabilities.http`
    /// get these).
    Http {
        /// Its URL (`http://` or `https://`).
        url: String,
    },
}

/// An MCP server as written: its secrets are its environment (stdio) or its headers
/// (http).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerSpec {
    /// Its name, unique in the workspace.
    pub name: String,
    /// How it is reached.
    pub transport: McpTransport,
    /// Environment variables (stdio) or HTTP headers (http), by name.
    pub secrets: BTreeMap<String, Secret>,
}

/// An MCP server as listed: the names of its secrets, never their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServerInfo {
    /// Its name.
    pub name: String,
    /// How it is reached.
    pub transport: McpTransport,
    /// The names of its environment variables or headers.
    pub secret_names: Vec<String>,
}

/// Checks a server name: 1–[`MCP_NAME_BYTES_MAX`] bytes of `[A-Za-z0-9_-]`.
pub fn check_server_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MCP_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "MCP server name `{}` must be 1 to {MCP_NAME_BYTES_MAX} letters, digits, `_` or `-`",
            name.escape_debug()
        ))
    }
}

/// Checks a transport: a non-empty command, an `http(s)://` URL, bounded values.
pub fn check_transport(name: &str, transport: &McpTransport) -> Result<(), String> {
    let value = |what: &str, v: &str| {
        if v.len() > MCP_VALUE_BYTES_MAX || v.contains('\0') {
            Err(format!(
                "MCP server `{name}`: the {what} is over {MCP_VALUE_BYTES_MAX} bytes or has a NUL"
            ))
        } else {
            Ok(())
        }
    };
    match transport {
        McpTransport::Stdio { command, args } => {
            if command.trim().is_empty() {
                return Err(format!("MCP server `{name}`: the command is empty"));
            }
            value("command", command)?;
            if args.len() > MCP_ENTRIES_MAX {
                return Err(format!(
                    "MCP server `{name}` has {} arguments, the limit is {MCP_ENTRIES_MAX}",
                    args.len()
                ));
            }
            args.iter().try_for_each(|a| value("argument", a))
        }
        McpTransport::Http { url } => {
            value("url", url)?;
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(())
            } else {
                Err(format!(
                    "MCP server `{name}`: the url must start with http:// or https://"
                ))
            }
        }
    }
}

/// Checks the names of a server's secrets (environment variables or headers) and their
/// count; `values` are checked for size when given.
pub fn check_secret_names<'a>(
    name: &str,
    names: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), String> {
    if names.len() > MCP_ENTRIES_MAX {
        return Err(format!(
            "MCP server `{name}` has {} env variables or headers, the limit is {MCP_ENTRIES_MAX}",
            names.len()
        ));
    }
    for key in names {
        let ok = !key.is_empty()
            && key.len() <= MCP_NAME_BYTES_MAX
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "MCP server `{name}`: `{}` is not an env variable or header name (1 to {MCP_NAME_BYTES_MAX} letters, digits, `_` or `-`)",
                key.escape_debug()
            ));
        }
    }
    Ok(())
}

/// Checks a whole server as written.
pub fn check_server(spec: &McpServerSpec) -> Result<(), String> {
    check_server_name(&spec.name)?;
    check_transport(&spec.name, &spec.transport)?;
    check_secret_names(&spec.name, spec.secrets.keys())?;
    match spec
        .secrets
        .iter()
        .find(|(_, v)| v.0.len() > MCP_VALUE_BYTES_MAX || v.0.contains(['\0', '\n', '\r']))
    {
        Some((key, _)) => Err(format!(
            "MCP server `{}`: the value of `{key}` is over {MCP_VALUE_BYTES_MAX} bytes or has a NUL or line break",
            spec.name
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, transport: McpTransport, secrets: &[(&str, &str)]) -> McpServerSpec {
        McpServerSpec {
            name: name.into(),
            transport,
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).into(), Secret((*v).into())))
                .collect(),
        }
    }

    #[test]
    fn servers_are_checked_and_secrets_never_debug_printed() {
        let http = McpTransport::Http {
            url: "https://mcp.example/v1".into(),
        };
        let good = spec("docs", http.clone(), &[("Authorization", "Bearer s3cret")]);
        assert!(check_server(&good).is_ok());
        assert!(!format!("{good:?}").contains("s3cret"));
        assert!(check_server(&spec("a b", http.clone(), &[])).is_err());
        let ftp = McpTransport::Http {
            url: "ftp://x".into(),
        };
        assert!(
            check_server(&spec("x", ftp, &[]))
                .unwrap_err()
                .contains("http://")
        );
        let empty = McpTransport::Stdio {
            command: " ".into(),
            args: vec![],
        };
        assert!(check_server(&spec("x", empty, &[])).is_err());
        assert!(check_server(&spec("x", http.clone(), &[("Bad Header", "v")])).is_err());
        assert!(check_server(&spec("x", http, &[("H", "a\nb")])).is_err());
    }
}
