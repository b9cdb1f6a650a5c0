//! Agents that require authentication: the methods an agent advertises in its
//! `initialize` answer (`authMethods`), telling ACP's `auth_required` error apart, and
//! the message that says what to configure. Plain functions (no I/O).
//!
//! Shoal never runs an agent's interactive login: an agent gets its credentials from
//! its environment (`[agents.<name>].env`, workspace credentials) or its private home.

use super::wire::truncate_for_log;
use serde_json::Value;

/// ACP's `auth_required` error code. Agents also use it for other server errors, so an
/// answer with it counts as "authentication required" only with more evidence
/// ([`is_auth_required`]).
pub(crate) const AUTH_REQUIRED_CODE: i64 = -32000;
/// The most auth methods kept from an `initialize` answer (the rest are left out of
/// messages).
pub(crate) const AUTH_METHODS_MAX: usize = 8;

/// One way an agent can be authenticated, as it advertised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMethod {
    /// The method's id.
    pub id: String,
    /// Its name, for a person.
    pub name: String,
    /// Its description (often naming the variable that holds the key), if sent.
    pub description: Option<String>,
}

/// The `authMethods` of an `initialize` answer: those with an id, at most
/// [`AUTH_METHODS_MAX`], each string shortened for messages.
pub(crate) fn parse_auth_methods(initialize: &Value) -> Vec<AuthMethod> {
    initialize
        .get("authMethods")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|method| {
            let text = |name: &str| {
                method
                    .get(name)
                    .and_then(Value::as_str)
                    .map(truncate_for_log)
            };
            let id = text("id")?;
            Some(AuthMethod {
                name: text("name").unwrap_or_else(|| id.clone()),
                description: text("description").filter(|d| !d.is_empty()),
                id,
            })
        })
        .take(AUTH_METHODS_MAX)
        .collect()
}

/// Whether an error answer to `session/new` or `session/load` means the agent needs
/// authentication: ACP's code and either advertised auth methods or a message that
/// says so (the same code also means "server error").
pub(crate) fn is_auth_required(code: i64, message: &str, methods: &[AuthMethod]) -> bool {
    let lower = message.to_ascii_lowercase();
    code == AUTH_REQUIRED_CODE
        && (!methods.is_empty() || lower.contains("auth") || lower.contains("login"))
}

/// What to tell the owner: the agent (by its config name, when known), its methods and
/// where to put the credential.
pub(crate) fn required_message(agent: Option<&str>, methods: &[AuthMethod]) -> String {
    let (who, key) = match agent {
        Some(agent) => (format!("agent `{agent}`"), agent),
        None => (String::from("the agent"), "<name>"),
    };
    let listed = if methods.is_empty() {
        String::from("it advertised no auth method")
    } else {
        let each: Vec<String> = methods
            .iter()
            .map(|m| match &m.description {
                Some(description) => format!("`{}` {}: {description}", m.id, m.name),
                None => format!("`{}` {}", m.id, m.name),
            })
            .collect();
        format!("methods: {}", each.join("; "))
    };
    format!(
        "{who} requires authentication ({listed}). Shoal does not run interactive logins and \
         each session has a private HOME, so a login of the node's user does not reach it: \
         give the agent the credential it reads (an API key variable) in `[agents.{key}].env` \
         in the node config, or as a workspace credential (`shoalctl creds set NAME`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auth_methods_are_read_leniently_and_bounded() {
        let answer = json!({"authMethods": [
            {"id": "login", "name": "Log in", "description": "Run `agent /login`"},
            {"id": "key", "description": ""},
            {"name": "no id"},
            {"id": "term", "type": "terminal", "name": "Terminal", "args": ["--login"]}
        ]});
        let methods = parse_auth_methods(&answer);
        let ids: Vec<&str> = methods.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["login", "key", "term"]);
        assert_eq!(methods[1].name, "key");
        assert_eq!(methods[1].description, None);
        assert!(parse_auth_methods(&json!({"authMethods": 3})).is_empty());
        let many: Vec<Value> = (0..20).map(|i| json!({"id": format!("m{i}")})).collect();
        assert_eq!(
            parse_auth_methods(&json!({ "authMethods": many })).len(),
            AUTH_METHODS_MAX
        );
    }

    #[test]
    fn auth_required_needs_the_code_and_some_evidence() {
        let methods = parse_auth_methods(&json!({"authMethods": [{"id": "k"}]}));
        assert!(is_auth_required(-32000, "Authentication required", &[]));
        assert!(is_auth_required(-32000, "please /login first", &[]));
        assert!(is_auth_required(-32000, "server error", &methods));
        assert!(!is_auth_required(
            -32000,
            "a prompt is already running",
            &[]
        ));
        assert!(!is_auth_required(
            -32603,
            "Authentication required",
            &methods
        ));
    }

    #[test]
    fn the_message_names_the_agent_its_methods_and_the_config_key() {
        let methods = parse_auth_methods(&json!({"authMethods": [
            {"id": "claude-login", "name": "Log in with Claude Code", "description": "Run `claude /login`"}
        ]}));
        let message = required_message(Some("claude"), &methods);
        assert!(
            message.starts_with(
                "agent `claude` requires authentication (methods: `claude-login` Log in with \
                 Claude Code: Run `claude /login`)"
            ),
            "{message}"
        );
        assert!(message.contains("`[agents.claude].env`"), "{message}");
        assert!(
            required_message(None, &[])
                .starts_with("the agent requires authentication (it advertised no auth method)")
        );
    }
}
