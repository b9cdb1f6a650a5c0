//! The MCP servers given to an agent's session (ACP `mcpServers` of `session/new` and
//! `session/load`) and the JSON for them. No I/O. HTTP servers go only to agents that
//! advertise `agentCapabilities.mcpCapabilities.http`; the others are left out and named
//! (never their headers or env values, which are often keys).

use serde_json::{Value, json};

/// One MCP server for the agent. `Debug` shows the names of its env variables or
/// headers, never their values.
#[derive(Clone, PartialEq, Eq)]
pub struct McpServer {
    /// Its name.
    pub name: String,
    /// How the agent reaches it.
    pub transport: McpServerTransport,
}

/// How the agent reaches an MCP server.
#[derive(Clone, PartialEq, Eq)]
pub enum McpServerTransport {
    /// The agent starts it: `command args…` with `env`.
    Stdio {
        /// The executable.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Its environment, `(name, value)`.
        env: Vec<(String, String)>,
    },
    /// The agent calls `url` with `headers`.
    Http {
        /// The URL.
        url: String,
        /// The headers, `(name, value)`.
        headers: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(k, _)| k.clone()).collect()
        };
        match &self.transport {
            McpServerTransport::Stdio { command, args, env } => f
                .debug_struct("McpServer")
                .field("name", &self.name)
                .field("command", command)
                .field("args", args)
                .field("env", &names(env))
                .finish(),
            McpServerTransport::Http { url, headers } => f
                .debug_struct("McpServer")
                .field("name", &self.name)
                .field("url", url)
                .field("headers", &names(headers))
                .finish(),
        }
    }
}

impl McpServer {
    /// The values of its env variables or headers (to redact from what the agent prints).
    pub fn secret_values(&self) -> impl Iterator<Item = &String> {
        let pairs = match &self.transport {
            McpServerTransport::Stdio { env, .. } => env,
            McpServerTransport::Http { headers, .. } => headers,
        };
        pairs.iter().map(|(_, v)| v)
    }
}

/// Whether the `initialize` answer advertises `agentCapabilities.mcpCapabilities.http`.
pub(crate) fn takes_http(initialize: &Value) -> bool {
    initialize
        .pointer("/agentCapabilities/mcpCapabilities/http")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `mcpServers` for `servers`, and the names of the HTTP ones left out because the agent
/// does not take them (`http`: it does).
pub(crate) fn servers_json(servers: &[McpServer], http: bool) -> (Value, Vec<String>) {
    let pairs = |pairs: &[(String, String)]| -> Vec<Value> {
        pairs
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    let mut left_out = Vec::new();
    let list = servers
        .iter()
        .filter_map(|server| match &server.transport {
            McpServerTransport::Stdio { command, args, env } => Some(json!({
                "name": server.name,
                "command": command,
                "args": args,
                "env": pairs(env),
            })),
            McpServerTransport::Http { url, headers } if http => Some(json!({
                "type": "http",
                "name": server.name,
                "url": url,
                "headers": pairs(headers),
            })),
            McpServerTransport::Http { .. } => {
                left_out.push(server.name.clone());
                None
            }
        })
        .collect();
    (Value::Array(list), left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> Vec<McpServer> {
        vec![
            McpServer {
                name: "files".into(),
                transport: McpServerTransport::Stdio {
                    command: "/bin/files".into(),
                    args: vec!["--ro".into()],
                    env: vec![("TOKEN".into(), "t0k3n".into())],
                },
            },
            McpServer {
                name: "docs".into(),
                transport: McpServerTransport::Http {
                    url: "https://mcp.example/v1".into(),
                    headers: vec![("Authorization".into(), "Bearer s3cret".into())],
                },
            },
        ]
    }

    #[test]
    fn http_servers_go_only_to_agents_that_take_them() {
        let (all, left_out) = servers_json(&servers(), true);
        assert!(left_out.is_empty());
        assert_eq!(all[0]["env"][0], json!({"name": "TOKEN", "value": "t0k3n"}));
        assert_eq!(all[1]["type"], "http");
        assert_eq!(all[1]["headers"][0]["name"], "Authorization");
        let (stdio_only, left_out) = servers_json(&servers(), false);
        assert_eq!(stdio_only.as_array().unwrap().len(), 1);
        assert_eq!(left_out, ["docs"]);
        assert!(takes_http(
            &json!({"agentCapabilities": {"mcpCapabilities": {"http": true}}})
        ));
        assert!(!takes_http(&json!({"agentCapabilities": {}})));
    }

    #[test]
    fn debug_shows_names_not_values() {
        let shown = format!("{:?}", servers());
        assert!(shown.contains("TOKEN") && shown.contains("Authorization"));
        assert!(
            !shown.contains("t0k3n") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
