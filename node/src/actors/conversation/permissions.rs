//! Permission policies at work: a permission request of the running turn is answered
//! by the workspace's policy ([`crate::shard::state_machine::permissions`]), else by the
//! agent's (`[agents.<id>.permissions]`), else asked as before. An automatic answer is
//! recorded in the turn's message as a [`Part::PermissionDecision`] (a transcript part:
//! owner and followers see it like the tool call it answers), and nobody is asked.

use super::*;
use shoal_cluster_config::PermissionMode;
use shoal_protocol::permissions::{PermissionAnswer, PermissionPolicy};
use shoal_protocol::transcript::PermissionOption;

/// A policy's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    /// Allowed or denied.
    pub(super) allowed: bool,
    /// The option to answer with (`None`: cancelled, a denial without a reject option).
    pub(super) option_id: Option<String>,
    /// Which rule decided, for the record.
    pub(super) rule: String,
}

/// Longest title kept in a [`Part::PermissionDecision`], in bytes (longer ones are cut).
pub(super) const DECISION_TITLE_BYTES_MAX: usize = 1024;

/// What the policies say about a request of `kind` offering `options` in `record`'s
/// conversation; `None`: ask.
pub(super) fn decide_for(
    ctx: &NodeContext,
    record: &ConversationRecord,
    kind: Option<&str>,
    options: &[PermissionOption],
) -> Option<Decision> {
    let workspace = match ctx.store.workspace_permissions(record.workspace) {
        Ok(policy) => policy,
        Err(e) => {
            // Asking is always safe.
            tracing::warn!(conversation = %record.id, error = %e, "cannot read the workspace's permission policy; asking");
            return None;
        }
    };
    let agent = agent_policy(ctx, &record.agent);
    resolve(&workspace, &agent, &record.agent, kind, options)
}

/// The workspace's rule for `kind`, else the agent's; turned into an answer among
/// `options`. An `allow` with no allow option to pick is asked instead.
fn resolve(
    workspace: &PermissionPolicy,
    agent: &PermissionPolicy,
    agent_name: &str,
    kind: Option<&str>,
    options: &[PermissionOption],
) -> Option<Decision> {
    let (answer, rule) = match workspace.rule_for(kind) {
        Some((answer, rule)) => (answer, format!("workspace policy: {rule}")),
        None => {
            let (answer, rule) = agent.rule_for(kind)?;
            (answer, format!("agent `{agent_name}` policy: {rule}"))
        }
    };
    let pick = |kinds: &[&str]| {
        kinds.iter().find_map(|k| {
            options
                .iter()
                .find(|o| o.kind == *k)
                .map(|o| o.option_id.clone())
        })
    };
    match answer {
        PermissionAnswer::Ask => None,
        PermissionAnswer::Allow => Some(Decision {
            allowed: true,
            option_id: Some(pick(&["allow_once", "allow_always"])?),
            rule,
        }),
        PermissionAnswer::Deny => Some(Decision {
            allowed: false,
            option_id: pick(&["reject_once", "reject_always"]),
            rule,
        }),
    }
}

/// The agent's policy from the node config (empty for an agent it does not know).
fn agent_policy(ctx: &NodeContext, agent: &str) -> PermissionPolicy {
    let Some(spec) = ctx
        .config
        .agents
        .iter()
        .find(|(n, _)| n.as_str() == agent)
        .map(|(_, spec)| spec)
    else {
        return PermissionPolicy::default();
    };
    let answer = |mode: PermissionMode| match mode {
        PermissionMode::Ask => PermissionAnswer::Ask,
        PermissionMode::Allow => PermissionAnswer::Allow,
        PermissionMode::Deny => PermissionAnswer::Deny,
    };
    PermissionPolicy {
        default: spec.permissions.default.map(answer),
        kinds: spec
            .permissions
            .kinds
            .iter()
            .map(|(k, m)| (k.clone(), answer(*m)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config parser (which cannot depend on the protocol crate) checks rule keys
    /// against its own list of tool kinds: it must be the protocol's.
    #[test]
    fn the_config_knows_the_same_tool_kinds_as_the_protocol() {
        assert_eq!(
            shoal_cluster_config::PERMISSION_KINDS,
            shoal_protocol::permissions::TOOL_KINDS
        );
    }

    fn options() -> Vec<PermissionOption> {
        [
            ("ok", "allow_once"),
            ("always", "allow_always"),
            ("no", "reject_once"),
        ]
        .iter()
        .map(|(id, kind)| PermissionOption {
            option_id: (*id).into(),
            name: (*id).into(),
            kind: (*kind).into(),
        })
        .collect()
    }

    fn policy(rules: &[&str]) -> PermissionPolicy {
        let mut policy = PermissionPolicy::default();
        for rule in rules {
            policy.set_rule(rule).unwrap();
        }
        policy
    }

    #[test]
    fn the_workspace_wins_then_the_agent_then_asking() {
        let none = PermissionPolicy::default();
        let agent = policy(&["default=allow", "execute=deny"]);
        let decide = |ws: &PermissionPolicy, kind| resolve(ws, &agent, "demo", kind, &options());
        let read = decide(&none, Some("read")).unwrap();
        assert_eq!(read.option_id.as_deref(), Some("ok"));
        assert_eq!(read.rule, "agent `demo` policy: default = allow");
        let execute = decide(&none, Some("execute")).unwrap();
        assert!(!execute.allowed);
        assert_eq!(execute.option_id.as_deref(), Some("no"));
        let ws = policy(&["execute=ask", "read=deny"]);
        assert_eq!(decide(&ws, Some("execute")), None, "the workspace asks");
        assert_eq!(
            decide(&ws, Some("read")).unwrap().rule,
            "workspace policy: read = deny"
        );
        assert!(
            decide(&ws, Some("edit")).unwrap().allowed,
            "no workspace rule: the agent's"
        );
        assert_eq!(
            resolve(&none, &none, "demo", Some("read"), &options()),
            None
        );
    }

    #[test]
    fn an_allow_without_an_allow_option_asks_and_a_deny_without_a_reject_cancels() {
        let only_reject: Vec<PermissionOption> = options().into_iter().skip(2).collect();
        let allow = policy(&["default=allow"]);
        let none = PermissionPolicy::default();
        assert_eq!(resolve(&allow, &none, "demo", None, &only_reject), None);
        let only_allow: Vec<PermissionOption> = options().into_iter().take(1).collect();
        let deny = policy(&["default=deny"]);
        let decision = resolve(&deny, &none, "demo", None, &only_allow).unwrap();
        assert_eq!((decision.allowed, decision.option_id), (false, None));
    }
}
