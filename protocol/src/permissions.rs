//! Permission policies: how a node answers an agent's permission requests
//! (`session/request_permission`) — asks the owner, allows or denies — by default and
//! per tool kind. An agent has one in the node config (`[agents.<id>.permissions]`), a
//! workspace one in its replicated settings; the workspace's wins.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The tool kinds ACP names (`toolCall.kind`); a policy's per-kind rules use these.
pub const TOOL_KINDS: [&str; 10] = [
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

/// How a permission request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermissionAnswer {
    /// The owner (or an editor running the turn) answers, as an event of the turn.
    Ask,
    /// Allowed at once with the agent's "allow once" option.
    Allow,
    /// Denied at once with the agent's "reject once" option (or cancelled).
    Deny,
}

impl PermissionAnswer {
    /// `ask`, `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionAnswer::Ask => "ask",
            PermissionAnswer::Allow => "allow",
            PermissionAnswer::Deny => "deny",
        }
    }

    /// Parses `ask`, `allow` or `deny`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "ask" => Ok(PermissionAnswer::Ask),
            "allow" => Ok(PermissionAnswer::Allow),
            "deny" => Ok(PermissionAnswer::Deny),
            other => Err(format!(
                "`{}` is not a permission answer; use \"ask\", \"allow\" or \"deny\"",
                other.escape_debug()
            )),
        }
    }
}

/// A permission policy: a default and per-tool-kind rules (empty: no rule, ask).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionPolicy {
    /// The answer for a kind without its own rule (`None`: no opinion).
    pub default: Option<PermissionAnswer>,
    /// Rules by tool kind (one of [`TOOL_KINDS`]).
    pub kinds: BTreeMap<String, PermissionAnswer>,
}

impl PermissionPolicy {
    /// Whether it has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.kinds.is_empty()
    }

    /// `Ok` when every kind is one of [`TOOL_KINDS`].
    pub fn check(&self) -> Result<(), String> {
        match self
            .kinds
            .keys()
            .find(|k| !TOOL_KINDS.contains(&k.as_str()))
        {
            Some(kind) => Err(unknown_kind(kind)),
            None => Ok(()),
        }
    }

    /// The rule that applies to a request of `kind`, as `(answer, "kind = answer")`:
    /// the kind's own rule, else the default; `None` when neither is set.
    pub fn rule_for(&self, kind: Option<&str>) -> Option<(PermissionAnswer, String)> {
        if let Some((kind, answer)) = kind.and_then(|k| self.kinds.get_key_value(k)) {
            return Some((*answer, format!("{kind} = {}", answer.as_str())));
        }
        self.default
            .map(|answer| (answer, format!("default = {}", answer.as_str())))
    }

    /// Sets one rule given as `KEY=ANSWER` (`default=allow`, `execute=ask`).
    pub fn set_rule(&mut self, rule: &str) -> Result<(), String> {
        let (key, answer) = rule.split_once('=').ok_or_else(|| {
            format!(
                "`{}` is not a rule; write KEY=ANSWER, e.g. default=ask or execute=deny",
                rule.escape_debug()
            )
        })?;
        let answer = PermissionAnswer::parse(answer.trim())?;
        match key.trim() {
            "default" => self.default = Some(answer),
            kind if TOOL_KINDS.contains(&kind) => {
                self.kinds.insert(kind.to_owned(), answer);
            }
            other => return Err(unknown_kind(other)),
        }
        Ok(())
    }

    /// Its rules as `key = answer`, the default first (for people).
    pub fn describe(&self) -> Vec<String> {
        let default = self.default.map(|a| format!("default = {}", a.as_str()));
        default
            .into_iter()
            .chain(
                self.kinds
                    .iter()
                    .map(|(k, a)| format!("{k} = {}", a.as_str())),
            )
            .collect()
    }
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "`{}` is not a tool kind; use `default` or one of: {}",
        kind.escape_debug(),
        TOOL_KINDS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_rule_wins_over_the_default() {
        let mut policy = PermissionPolicy::default();
        assert_eq!(policy.rule_for(Some("read")), None);
        policy.set_rule("default=deny").unwrap();
        policy.set_rule("read = allow").unwrap();
        assert_eq!(
            policy.rule_for(Some("read")),
            Some((PermissionAnswer::Allow, "read = allow".into()))
        );
        assert_eq!(
            policy.rule_for(Some("execute")),
            Some((PermissionAnswer::Deny, "default = deny".into()))
        );
        assert_eq!(policy.rule_for(None).unwrap().0, PermissionAnswer::Deny);
        assert_eq!(policy.describe(), ["default = deny", "read = allow"]);
        assert!(policy.check().is_ok());
    }

    #[test]
    fn bad_rules_say_what_is_allowed() {
        let mut policy = PermissionPolicy::default();
        assert!(
            policy
                .set_rule("execute")
                .unwrap_err()
                .contains("KEY=ANSWER")
        );
        assert!(
            policy
                .set_rule("execute=maybe")
                .unwrap_err()
                .contains("\"ask\", \"allow\" or \"deny\"")
        );
        assert!(
            policy
                .set_rule("shell=allow")
                .unwrap_err()
                .contains("one of: read, edit")
        );
        assert!(policy.is_empty());
        policy.kinds.insert("shell".into(), PermissionAnswer::Allow);
        assert!(policy.check().is_err());
    }
}
