//! Checked names: [`NodeId`] and [`AgentName`]. A value of these types is always valid.

use crate::error::echo;
use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// Longest node id, in characters.
pub const NODE_ID_CHARS_MAX: usize = 64;
/// Longest agent name, in characters.
pub const AGENT_NAME_CHARS_MAX: usize = 32;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{input}\" is not a valid {kind} (expected {expected})")]
pub struct NameError {
    /// What kind of name was expected (`node id`, `agent name`).
    pub kind: &'static str,
    /// The offending input, escaped and truncated for display.
    pub input: String,
    /// The expected shape.
    pub expected: &'static str,
}

macro_rules! checked_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $expected:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `name` and wraps it.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                let allowed: fn(char) -> bool = $allowed;
                let len = name.chars().count();
                if (1..=$max).contains(&len) && name.chars().all(allowed) {
                    Ok(Self(name))
                } else {
                    Err(NameError { kind: $kind, input: echo(&name), expected: $expected })
                }
            }

            /// Wraps a name known to be valid (a literal in this crate).
            pub(crate) fn from_trusted(name: &str) -> Self {
                debug_assert!(Self::new(name).is_ok(), "{name:?} is a valid {}", $kind);
                Self(name.to_owned())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

checked_name!(
    /// A node's identity in the cluster: 1 to [`NODE_ID_CHARS_MAX`] characters from
    /// `A-Z a-z 0-9 _ -`.
    NodeId,
    "node id",
    "1-64 characters from A-Z a-z 0-9 _ -",
    NODE_ID_CHARS_MAX,
    |c| c.is_ascii_alphanumeric() || c == '_' || c == '-'
);

checked_name!(
    /// The name of a configured agent (the `<name>` of `[agents.<name>]`): 1 to
    /// [`AGENT_NAME_CHARS_MAX`] characters from `a-z 0-9 _ -`. `Borrow<str>` lets
    /// `config.agents.get("demo")` look an agent up by text.
    AgentName,
    "agent name",
    "1-32 characters from a-z 0-9 _ -",
    AGENT_NAME_CHARS_MAX,
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        let cases: &[(&str, bool)] = &[
            ("n1", true),
            ("Node_A-7", true),
            (&"a".repeat(64), true),
            (&"a".repeat(65), false),
            ("", false),
            ("has space", false),
            ("dot.ted", false),
            ("ünï", false),
        ];
        for (input, ok) in cases {
            assert_eq!(NodeId::new(*input).is_ok(), *ok, "node id {input:?}");
        }
    }

    #[test]
    fn agent_names() {
        let cases: &[(&str, bool)] = &[
            ("demo", true),
            ("open-code_2", true),
            (&"a".repeat(32), true),
            (&"a".repeat(33), false),
            ("", false),
            ("Demo", false),
            ("a.b", false),
        ];
        for (input, ok) in cases {
            assert_eq!(AgentName::new(*input).is_ok(), *ok, "agent name {input:?}");
        }
    }

    #[test]
    fn name_error_is_one_line_and_escaped() {
        let err = AgentName::new("bad\nname").expect_err("newline is not allowed");
        let shown = err.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("agent name"), "{shown}");
    }
}
