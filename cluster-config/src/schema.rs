//! The key schema in one place: every section and key, each integer key's default and
//! bounds, and the single-value checks shared by parsing and [`crate::NodeConfig::validate`].

use crate::error::{Problem, echo};
use std::path::Path;

/// Name of the top-level key that picks the default agent.
pub(crate) const DEFAULT_AGENT_KEY: &str = "default_agent";
/// Name of the top-level table holding `[agents.<name>]`.
pub(crate) const AGENTS_KEY: &str = "agents";
/// Keys of one `[agents.<name>]` table.
pub(crate) const AGENT_KEYS: &[&str] = &["command", "args", "env"];

/// The keys of one fixed `[section]`.
#[derive(Debug)]
pub(crate) struct SectionSchema {
    /// Section name, e.g. `conversation`.
    pub(crate) name: &'static str,
    /// Its keys, in documentation order.
    pub(crate) keys: &'static [&'static str],
}

/// Every fixed section (everything but `[agents.*]`), in documentation order.
pub(crate) const SECTIONS: &[SectionSchema] = &[
    SectionSchema {
        name: "node",
        keys: &["id", "data_dir", "listen_addr", "advertise_addr"],
    },
    SectionSchema {
        name: "tls",
        keys: &["ca_cert_path", "cert_path", "key_path"],
    },
    SectionSchema {
        name: "auth",
        keys: &["signing_key_path", "token_ttl_secs"],
    },
    SectionSchema {
        name: "cluster",
        keys: &["shard_count", "replicas"],
    },
    SectionSchema {
        name: "limits",
        keys: &[
            "max_connections",
            "max_streams_per_connection",
            "followers_per_conversation_max",
            "follower_queue_frames",
            "replay_buffer_events",
            "turn_buffer_bytes_max",
            "active_conversations_max",
            "agent_processes_max",
        ],
    },
    SectionSchema {
        name: "conversation",
        keys: &[
            "idle_passivate_ms",
            "checkpoint_interval_ms",
            "turn_timeout_ms",
            "turn_idle_timeout_ms",
            "agent_start_timeout_ms",
            "permission_timeout_ms",
        ],
    },
    SectionSchema {
        name: "telemetry",
        keys: &["log_filter", "otlp_endpoint"],
    },
];

/// The schema of fixed section `name`.
pub(crate) fn section(name: &str) -> Option<&'static SectionSchema> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// Every key allowed at the top level of the file.
pub(crate) fn top_level_keys() -> impl Iterator<Item = &'static str> + Clone {
    SECTIONS
        .iter()
        .map(|s| s.name)
        .chain([AGENTS_KEY, DEFAULT_AGENT_KEY])
}

/// Default and inclusive bounds of one integer key.
#[derive(Debug)]
pub(crate) struct IntRule {
    /// Section of the key.
    pub(crate) section: &'static str,
    /// The key within its section.
    pub(crate) key: &'static str,
    /// Value used when the key is absent.
    pub(crate) default: u64,
    /// Smallest accepted value (at least 1: every integer key is non-zero).
    pub(crate) min: u64,
    /// Largest accepted value.
    pub(crate) max: u64,
}

impl IntRule {
    /// `section.key`.
    pub(crate) fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// Checks a value against the bounds.
    pub(crate) fn check(&self, value: i128) -> Result<u64, Problem> {
        match u64::try_from(value) {
            Ok(v) if (self.min..=self.max).contains(&v) => Ok(v),
            _ => Err(Problem::new(
                format!("{value} is outside {}..={}", self.min, self.max),
                format!(
                    "set {} to a value from {} to {} (default {})",
                    self.key, self.min, self.max, self.default
                ),
            )),
        }
    }
}

const SECS_PER_DAY: u64 = 86_400;
const MS_PER_SEC: u64 = 1_000;
const MS_PER_DAY: u64 = SECS_PER_DAY * MS_PER_SEC;
const MIB_BYTES: u64 = 1024 * 1024;

macro_rules! int_rules {
    ($($name:ident: $section:literal . $key:literal = $default:expr, $min:expr, $max:expr;)*) => {
        $(
            #[doc = concat!("Rule of `", $section, ".", $key, "`.")]
            pub(crate) const $name: IntRule =
                IntRule { section: $section, key: $key, default: $default, min: $min, max: $max };
        )*
        /// Every integer key's rule.
        pub(crate) const INT_RULES: &[&IntRule] = &[$(&$name),*];
    };
}

int_rules! {
    TOKEN_TTL_SECS: "auth"."token_ttl_secs" = 30 * SECS_PER_DAY, 60, 10 * 365 * SECS_PER_DAY;
    SHARD_COUNT: "cluster"."shard_count" = 64, 1, 1024;
    REPLICAS: "cluster"."replicas" = 3, 1, 7;
    MAX_CONNECTIONS: "limits"."max_connections" = 1024, 1, 100_000;
    MAX_STREAMS_PER_CONNECTION: "limits"."max_streams_per_connection" = 64, 1, 4096;
    FOLLOWERS_PER_CONVERSATION_MAX: "limits"."followers_per_conversation_max" = 256, 1, 65_536;
    FOLLOWER_QUEUE_FRAMES: "limits"."follower_queue_frames" = 1024, 1, 1 << 20;
    REPLAY_BUFFER_EVENTS: "limits"."replay_buffer_events" = 4096, 1, 1 << 20;
    TURN_BUFFER_BYTES_MAX: "limits"."turn_buffer_bytes_max" = 8 * MIB_BYTES, 1, 1024 * MIB_BYTES;
    ACTIVE_CONVERSATIONS_MAX: "limits"."active_conversations_max" = 10_000, 1, 10_000_000;
    AGENT_PROCESSES_MAX: "limits"."agent_processes_max" = 64, 1, 10_000;
    IDLE_PASSIVATE_MS: "conversation"."idle_passivate_ms" = 300_000, 1, 7 * MS_PER_DAY;
    CHECKPOINT_INTERVAL_MS: "conversation"."checkpoint_interval_ms" = 250, 1, 60_000;
    TURN_TIMEOUT_MS: "conversation"."turn_timeout_ms" = 1_800_000, 1, MS_PER_DAY;
    TURN_IDLE_TIMEOUT_MS: "conversation"."turn_idle_timeout_ms" = 300_000, 1, MS_PER_DAY;
    AGENT_START_TIMEOUT_MS: "conversation"."agent_start_timeout_ms" = 60_000, 1, 600_000;
    PERMISSION_TIMEOUT_MS: "conversation"."permission_timeout_ms" = 300_000, 1, MS_PER_DAY;
}

/// The rule of integer key `section.key`, if it is one.
pub(crate) fn int_rule(section: &str, key: &str) -> Option<&'static IntRule> {
    INT_RULES
        .iter()
        .copied()
        .find(|r| r.section == section && r.key == key)
}

/// A path must not be empty (relative paths are fine).
pub(crate) fn check_path(path: &Path, what: &str) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        Err(Problem::new(
            "the path is empty",
            format!("set it to the {what}"),
        ))
    } else {
        Ok(())
    }
}

/// `telemetry.log_filter` must not be empty.
pub(crate) fn check_log_filter(filter: &str) -> Result<(), Problem> {
    if filter.trim().is_empty() {
        Err(Problem::new(
            "the filter is empty",
            "use e.g. \"info\" or \"info,shoal_node=debug\"",
        ))
    } else {
        Ok(())
    }
}

/// `telemetry.otlp_endpoint` must be an http(s) URL with a host part.
pub(crate) fn check_otlp_endpoint(endpoint: &str) -> Result<(), Problem> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(Problem::new(
            format!("\"{}\" is not an http:// or https:// URL", echo(endpoint)),
            "use e.g. \"http://127.0.0.1:4317\", or remove the key to disable export",
        )),
    }
}

/// An agent's command, args and env must be passable to a child process.
pub(crate) fn check_no_nul(text: &str, what: &str) -> Result<(), Problem> {
    if text.contains('\0') {
        Err(Problem::new(
            format!("the {what} contains a NUL character"),
            "remove it",
        ))
    } else {
        Ok(())
    }
}

/// An agent environment variable name: non-empty, no `=` and no NUL.
pub(crate) fn check_env_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.contains(['=', '\0']) {
        Err(Problem::new(
            format!(
                "\"{}\" is not a valid environment variable name",
                echo(name)
            ),
            "use a non-empty name without `=`, e.g. RUST_LOG",
        ))
    } else {
        Ok(())
    }
}

/// Longest input [`closest`] compares, in chars (keeps the edit distance cheap).
const SUGGEST_INPUT_CHARS_MAX: usize = 128;
/// Largest edit distance at which [`closest`] still suggests a candidate.
const SUGGEST_DISTANCE_MAX: usize = 2;

/// The candidate closest to `input` by edit distance, if within 2 edits.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if input.chars().count() > SUGGEST_INPUT_CHARS_MAX {
        return None;
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(input, c), c))
        .filter(|(d, _)| *d <= SUGGEST_DISTANCE_MAX)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        let cases = [
            ("", "", 0),
            ("abc", "abc", 0),
            ("abc", "abd", 1),
            ("ab", "abc", 1),
            ("kitten", "sitting", 3),
        ];
        for (a, b, d) in cases {
            assert_eq!(edit_distance(a, b), d, "{a} vs {b}");
        }
    }

    #[test]
    fn closest_suggests_within_two_edits() {
        let keys = ["checkpoint_interval_ms", "turn_timeout_ms"];
        assert_eq!(
            closest("checkpoint_intervall_ms", keys),
            Some("checkpoint_interval_ms")
        );
        assert_eq!(closest("turn_timout_ms", keys), Some("turn_timeout_ms"));
        assert_eq!(closest("something_else", keys), None);
        assert_eq!(closest(&"x".repeat(1000), keys), None);
    }

    #[test]
    fn every_int_rule_is_in_a_section_and_sane() {
        for rule in INT_RULES {
            let section = section(rule.section).expect("rule section exists");
            assert!(
                section.keys.contains(&rule.key),
                "{} listed in its section",
                rule.path()
            );
            assert!(rule.min >= 1, "{} is non-zero", rule.path());
            assert!(
                (rule.min..=rule.max).contains(&rule.default),
                "{} default in range",
                rule.path()
            );
            assert!(
                i64::try_from(rule.max).is_ok(),
                "{} fits a TOML integer",
                rule.path()
            );
        }
    }

    #[test]
    fn int_rule_check() {
        assert_eq!(SHARD_COUNT.check(1), Ok(1));
        assert_eq!(SHARD_COUNT.check(1024), Ok(1024));
        for bad in [0, -1, 1025, i128::from(i64::MAX)] {
            let problem = SHARD_COUNT.check(bad).expect_err("out of range");
            assert!(problem.problem.contains("outside 1..=1024"), "{problem:?}");
        }
    }

    #[test]
    fn otlp_endpoints() {
        for (endpoint, ok) in [
            ("http://127.0.0.1:4317", true),
            ("https://otel.example.com", true),
            ("http://", false),
            ("grpc://x", false),
            ("localhost:4317", false),
        ] {
            assert_eq!(check_otlp_endpoint(endpoint).is_ok(), ok, "{endpoint}");
        }
    }
}
