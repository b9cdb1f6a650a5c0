//! [`ConfigError`]: every way a config can be rejected, each rendered as one line that
//! names the key path, what is wrong and what to do.

use std::io;
use std::path::PathBuf;

/// Longest user-supplied text (key, value, variable name) echoed into a message, in chars.
pub(crate) const ECHO_CHARS_MAX: usize = 80;

/// Why a config was rejected. Nothing is partially applied: a config either loads
/// completely or not at all.
///
/// Display is one line: ``config error at `<key.path>`: <what is wrong>; <what to do>``.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, not UTF-8, too large).
    #[error("config error: cannot read {}: {source}; check the path", path.display())]
    Read {
        /// The path that was given to [`crate::NodeConfig::load`].
        path: PathBuf,
        /// What the OS (or the size/encoding check) reported.
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML.
    #[error("config error at line {line}, column {column}: {message}; fix the TOML syntax there")]
    Syntax {
        /// 1-based line of the problem (0 when the TOML parser gave no position).
        line: usize,
        /// 1-based column, in characters (0 when the TOML parser gave no position).
        column: usize,
        /// The TOML parser's message, folded onto one line.
        message: String,
    },
    /// A required key is absent.
    #[error("config error at `{key}`: missing required key; {fix}")]
    Missing {
        /// Key path of the absent key, e.g. `node.id`.
        key: String,
        /// What to add.
        fix: String,
    },
    /// A key the config does not define (typo protection).
    #[error("config error at `{key}`: unknown key `{key}`; {fix}")]
    UnknownKey {
        /// Key path of the unknown key, e.g. `conversation.checkpoint_intervall_ms`.
        key: String,
        /// A suggestion (``did you mean `checkpoint_interval_ms`?``) or how to remove it.
        fix: String,
    },
    /// A value written in the file has the wrong type or shape, is out of range, or
    /// breaks a cross-field rule checked by [`crate::NodeConfig::validate`].
    #[error("config error at `{key}`: {problem}; {fix}")]
    Invalid {
        /// Key path of the offending value.
        key: String,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// A value set by a `SHOAL_<SECTION>__<KEY>` environment variable is bad.
    #[error("config error at `{key}`: environment variable {var}: {problem}; {fix}")]
    EnvValue {
        /// Key path the variable sets, e.g. `conversation.turn_timeout_ms`.
        key: String,
        /// The variable, e.g. `SHOAL_CONVERSATION__TURN_TIMEOUT_MS`.
        var: String,
        /// What is wrong with its value.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// A `SHOAL_<X>__<Y>` environment variable names no overridable key.
    #[error("config error at `{var}`: {problem}; {fix}")]
    EnvVar {
        /// The variable name.
        var: String,
        /// What is wrong with it.
        problem: String,
        /// A suggestion or what to do.
        fix: String,
    },
}

impl ConfigError {
    /// The key path the error is about (`conversation.turn_timeout_ms`, `agents.demo.command`,
    /// `default_agent`), the variable name for [`ConfigError::EnvVar`], and `""` for
    /// [`ConfigError::Read`] and [`ConfigError::Syntax`], which concern the whole file.
    pub fn key(&self) -> &str {
        match self {
            Self::Read { .. } | Self::Syntax { .. } => "",
            Self::Missing { key, .. }
            | Self::UnknownKey { key, .. }
            | Self::Invalid { key, .. }
            | Self::EnvValue { key, .. } => key,
            Self::EnvVar { var, .. } => var,
        }
    }

    /// Converts a TOML parse error, locating it in `text` as 1-based line and column.
    pub(crate) fn syntax(text: &str, error: &toml::de::Error) -> Self {
        let (line, column) = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
                (line, column)
            })
            .unwrap_or((0, 0));
        let message = error
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        Self::Syntax {
            line,
            column,
            message: echo_long(&message, 4 * ECHO_CHARS_MAX),
        }
    }
}

/// A problem with one value, before it is tied to a key and a source (file or env).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// What is wrong.
    pub(crate) problem: String,
    /// What to do.
    pub(crate) fix: String,
}

impl Problem {
    /// A problem with its fix.
    pub(crate) fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// The error for this problem found at `key` in the file (or in code).
    pub(crate) fn at(self, key: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            problem: self.problem,
            fix: self.fix,
        }
    }
}

/// `text` made safe to embed in a one-line message: control characters escaped and
/// truncated to [`ECHO_CHARS_MAX`] characters.
pub(crate) fn echo(text: &str) -> String {
    echo_long(text, ECHO_CHARS_MAX)
}

fn echo_long(text: &str, chars_max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == chars_max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML value described for a message: `string "abc"`, `integer 5`, `a table`.
pub(crate) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("string \"{}\"", echo(s)),
        toml::Value::Integer(i) => format!("integer {i}"),
        toml::Value::Float(f) => format!("float {f}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("datetime {d}"),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_escapes_and_truncates() {
        assert_eq!(echo("a\nb"), "a\\nb");
        let long = "x".repeat(200);
        let shown = echo(&long);
        assert_eq!(shown.chars().count(), ECHO_CHARS_MAX + 1);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn syntax_error_has_line_and_column_on_one_line() {
        let text = "[node]\nid = \"a\"\nlisten_addr = = 3\n";
        let err = toml::from_str::<toml::Table>(text).expect_err("invalid TOML");
        let err = ConfigError::syntax(text, &err);
        let shown = err.to_string();
        assert!(
            shown.starts_with("config error at line 3, column "),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "{shown}");
        assert_eq!(err.key(), "");
    }

    #[test]
    fn read_error_display() {
        let err = ConfigError::Read {
            path: PathBuf::from("/nope/shoal.toml"),
            source: io::Error::new(io::ErrorKind::NotFound, "No such file or directory"),
        };
        assert_eq!(
            err.to_string(),
            "config error: cannot read /nope/shoal.toml: No such file or directory; check the path"
        );
    }
}
