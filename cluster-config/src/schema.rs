//! The key schema in one place: every section and key, each integer key's default and
//! bounds, and the single-value checks shared by parsing and [`crate::NodeConfig::validate`].

use crate::error::{Problem, echo};
use crate::sections::{GossipPreset, Isolation, SEEDS_MAX};
use std::net::SocketAddr;
use std::path::Path;

/// Name of the top-level key that picks the default agent.
pub(crate) const DEFAULT_AGENT_KEY: &str = "default_agent";
/// Name of the top-level table holding `[agents.<name>]`.
pub(crate) const AGENTS_KEY: &str = "agents";

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
        keys: &["signing_key_path", "credentials_key_path", "token_ttl_secs"],
    },
    SectionSchema {
        name: "cluster",
        keys: &[
            "shard_count",
            "replicas",
            "seeds",
            "heartbeat_ms",
            "election_timeout_min_ms",
            "election_timeout_max_ms",
            "lease_ms",
            "placement_grace_ms",
            "snapshot_every_entries",
            "quiesce_after_ms",
        ],
    },
    SectionSchema {
        name: "gossip",
        keys: &[
            "preset",
            "probe_period_ms",
            "suspect_to_down_ms",
            "packet_bytes_max",
        ],
    },
    SectionSchema {
        name: "limits",
        keys: &[
            "max_connections",
            "max_streams_per_connection",
            "followers_per_conversation_max",
            "follower_queue_frames",
            "replay_buffer_events",
            "replay_buffer_bytes",
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
            "agent_probe_timeout_ms",
            "agent_probe_ttl_ms",
            "permission_timeout_ms",
            "initiator_grace_ms",
        ],
    },
    SectionSchema {
        name: "workspace",
        keys: &[
            "snapshot_bytes_max",
            "snapshot_files_max",
            "snapshot_timeout_ms",
            "idle_stop_ms",
            "archive_after_ms",
        ],
    },
    SectionSchema {
        name: "sandbox",
        keys: &["isolation"],
    },
    SectionSchema {
        name: "telemetry",
        keys: &[
            "log_filter",
            "otlp_endpoint",
            "service_name",
            "sampling_ratio",
            "resource_attributes",
            "prometheus_listen",
        ],
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

/// Keys whose value is a list of `ip:port` strings; from the environment they are
/// written comma-separated.
pub(crate) const ADDR_LIST_KEYS: &[(&str, &str)] = &[("cluster", "seeds")];

/// Whether `section.key` is a list of `ip:port` strings.
pub(crate) fn is_addr_list(section: &str, key: &str) -> bool {
    ADDR_LIST_KEYS.contains(&(section, key))
}

/// Default and inclusive bounds of one integer key.
#[derive(Debug)]
pub(crate) struct IntRule {
    /// Section of the key.
    pub(crate) section: &'static str,
    /// The key within its section.
    pub(crate) key: &'static str,
    /// Value used when the key is absent; `None` for optional keys, whose absence
    /// means "let the node pick" (e.g. the gossip preset's value).
    pub(crate) default: Option<u64>,
    /// Smallest accepted value. At least 1, except for the few keys stored as a plain
    /// `u64` because zero is meaningful: "none" (`cluster.placement_grace_ms`) or "off"
    /// (see [`Self::zero_disables`]).
    pub(crate) min: u64,
    /// Largest accepted value.
    pub(crate) max: u64,
    /// Zero turns the feature off (`workspace.idle_stop_ms`); `min` is then 0, and an
    /// out-of-range value's fix says to use 0 to disable, since a negative one does not.
    pub(crate) zero_disables: bool,
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
                self.fix(value < 0),
            )),
        }
    }

    /// What to do about an out-of-range value; `negative` when it was below zero.
    fn fix(&self, negative: bool) -> String {
        let (key, min, max) = (self.key, self.min, self.max);
        match self.default {
            Some(default) if self.zero_disables && negative => format!(
                "use 0 to disable {key} (a negative value does not), or a value from 1 to {max} \
                 (default {default})"
            ),
            Some(default) if self.zero_disables => format!(
                "set {key} to a value from 1 to {max} (default {default}), or 0 to disable it"
            ),
            Some(default) => {
                format!("set {key} to a value from {min} to {max} (default {default})")
            }
            None => format!("set {key} to a value from {min} to {max}, or remove it"),
        }
    }

    /// What a value of the wrong type should have been, e.g. `an integer from 1 to 60000`.
    pub(crate) fn expected(&self) -> String {
        let range = format!("an integer from {} to {}", self.min, self.max);
        if self.zero_disables {
            format!("{range} (0 disables)")
        } else {
            range
        }
    }
}

const SECS_PER_DAY: u64 = 86_400;
const MS_PER_SEC: u64 = 1_000;
const MS_PER_DAY: u64 = SECS_PER_DAY * MS_PER_SEC;
const MIB_BYTES: u64 = 1024 * 1024;
const TIB_BYTES: u64 = 1024 * 1024 * MIB_BYTES;

/// `NAME: "section"."key" = default, min, max;`, with a trailing `, zero_disables` for
/// keys where 0 turns the feature off.
macro_rules! int_rules {
    (@zero_disables) => { false };
    (@zero_disables zero_disables) => { true };
    ($($name:ident: $section:literal . $key:literal = $default:expr, $min:expr, $max:expr
        $(, $zero:ident)?;)*) => {
        $(
            #[doc = concat!("Rule of `", $section, ".", $key, "`.")]
            pub(crate) const $name: IntRule = IntRule {
                section: $section,
                key: $key,
                default: $default,
                min: $min,
                max: $max,
                zero_disables: int_rules!(@zero_disables $($zero)?),
            };
        )*
        /// Every integer key's rule.
        pub(crate) const INT_RULES: &[&IntRule] = &[$(&$name),*];
    };
}

int_rules! {
    TOKEN_TTL_SECS: "auth"."token_ttl_secs" = Some(30 * SECS_PER_DAY), 60, 10 * 365 * SECS_PER_DAY;
    SHARD_COUNT: "cluster"."shard_count" = Some(64), 1, 1024;
    REPLICAS: "cluster"."replicas" = Some(3), 1, 7;
    HEARTBEAT_MS: "cluster"."heartbeat_ms" = Some(100), 10, 10_000;
    ELECTION_TIMEOUT_MIN_MS: "cluster"."election_timeout_min_ms" = Some(400), 20, 60_000;
    ELECTION_TIMEOUT_MAX_MS: "cluster"."election_timeout_max_ms" = Some(800), 20, 60_000;
    LEASE_MS: "cluster"."lease_ms" = Some(300), 10, 60_000;
    PLACEMENT_GRACE_MS: "cluster"."placement_grace_ms" = Some(10_000), 0, MS_PER_DAY;
    SNAPSHOT_EVERY_ENTRIES: "cluster"."snapshot_every_entries" = Some(1024), 16, 10_000_000;
    QUIESCE_AFTER_MS: "cluster"."quiesce_after_ms" = Some(2_000), 0, MS_PER_DAY, zero_disables;
    PROBE_PERIOD_MS: "gossip"."probe_period_ms" = None, 100, 60_000;
    SUSPECT_TO_DOWN_MS: "gossip"."suspect_to_down_ms" = None, 100, 600_000;
    PACKET_BYTES_MAX: "gossip"."packet_bytes_max" = Some(1100), 512, 1200;
    MAX_CONNECTIONS: "limits"."max_connections" = Some(1024), 1, 100_000;
    MAX_STREAMS_PER_CONNECTION: "limits"."max_streams_per_connection" = Some(64), 1, 4096;
    FOLLOWERS_PER_CONVERSATION_MAX: "limits"."followers_per_conversation_max" = Some(256), 1, 65_536;
    FOLLOWER_QUEUE_FRAMES: "limits"."follower_queue_frames" = Some(1024), 1, 1 << 20;
    REPLAY_BUFFER_EVENTS: "limits"."replay_buffer_events" = Some(4096), 1, 1 << 20;
    REPLAY_BUFFER_BYTES: "limits"."replay_buffer_bytes" = Some(4 * MIB_BYTES), 1024, 1024 * MIB_BYTES;
    // At most 3 MiB: a turn's assistant message is committed as one Raft log entry, which
    // must fit one 8 MiB peer frame with its text stored twice (`content` and `parts`).
    TURN_BUFFER_BYTES_MAX: "limits"."turn_buffer_bytes_max" = Some(2 * MIB_BYTES), 1, 3 * MIB_BYTES;
    ACTIVE_CONVERSATIONS_MAX: "limits"."active_conversations_max" = Some(10_000), 1, 10_000_000;
    AGENT_PROCESSES_MAX: "limits"."agent_processes_max" = Some(64), 1, 10_000;
    IDLE_PASSIVATE_MS: "conversation"."idle_passivate_ms" = Some(300_000), 1, 7 * MS_PER_DAY;
    CHECKPOINT_INTERVAL_MS: "conversation"."checkpoint_interval_ms" = Some(250), 1, 60_000;
    TURN_TIMEOUT_MS: "conversation"."turn_timeout_ms" = Some(1_800_000), 1, MS_PER_DAY;
    TURN_IDLE_TIMEOUT_MS: "conversation"."turn_idle_timeout_ms" = Some(300_000), 1, MS_PER_DAY;
    AGENT_START_TIMEOUT_MS: "conversation"."agent_start_timeout_ms" = Some(60_000), 1, 600_000;
    AGENT_PROBE_TIMEOUT_MS: "conversation"."agent_probe_timeout_ms" = Some(15_000), 100, 600_000;
    AGENT_PROBE_TTL_MS: "conversation"."agent_probe_ttl_ms" = Some(600_000), 1_000, MS_PER_DAY;
    PERMISSION_TIMEOUT_MS: "conversation"."permission_timeout_ms" = Some(300_000), 1, MS_PER_DAY;
    INITIATOR_GRACE_MS: "conversation"."initiator_grace_ms" = Some(30_000), 0, 3_600_000, zero_disables;
    SNAPSHOT_BYTES_MAX: "workspace"."snapshot_bytes_max" = Some(256 * MIB_BYTES), 1, TIB_BYTES;
    SNAPSHOT_FILES_MAX: "workspace"."snapshot_files_max" = Some(100_000), 1, 1_000_000;
    SNAPSHOT_TIMEOUT_MS: "workspace"."snapshot_timeout_ms" = Some(120_000), 1, 3_600_000;
    IDLE_STOP_MS: "workspace"."idle_stop_ms" = Some(900_000), 0, 7 * MS_PER_DAY, zero_disables;
    ARCHIVE_AFTER_MS: "workspace"."archive_after_ms" = Some(MS_PER_DAY), 0, 365 * MS_PER_DAY, zero_disables;
}

/// The rule of integer key `section.key`, if it is one.
pub(crate) fn int_rule(section: &str, key: &str) -> Option<&'static IntRule> {
    INT_RULES
        .iter()
        .copied()
        .find(|r| r.section == section && r.key == key)
}

/// An `ip:port` socket address; host names are not resolved.
pub(crate) fn parse_socket_addr(text: &str) -> Result<SocketAddr, Problem> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        Problem::new(
            format!("\"{}\" is not an ip:port socket address", echo(text)),
            "use e.g. \"127.0.0.1:7443\" or \"[::1]:7443\" (host names are not resolved)",
        )
    })
}

/// `cluster.seeds` holds at most [`SEEDS_MAX`] addresses.
pub(crate) fn check_seed_count(count: usize) -> Result<(), Problem> {
    if count > SEEDS_MAX {
        Err(Problem::new(
            format!("{count} seeds is more than {SEEDS_MAX}"),
            format!(
                "list at most {SEEDS_MAX} other nodes; a few reachable ones are enough to join"
            ),
        ))
    } else {
        Ok(())
    }
}

/// `gossip.preset`: one of the [`GossipPreset`] names.
pub(crate) fn parse_gossip_preset(name: &str) -> Result<GossipPreset, Problem> {
    GossipPreset::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .ok_or_else(|| {
            let allowed: Vec<String> = GossipPreset::ALL
                .iter()
                .map(|p| format!("\"{p}\" (up to {} nodes)", p.cluster_size_hint()))
                .collect();
            Problem::new(
                format!("\"{}\" is not a gossip preset", echo(name)),
                format!(
                    "use one of {}: the smallest at least your node count",
                    allowed.join(", ")
                ),
            )
        })
}

/// `sandbox.isolation`: one of the [`Isolation`] names.
pub(crate) fn parse_isolation(name: &str) -> Result<Isolation, Problem> {
    Isolation::ALL
        .into_iter()
        .find(|i| i.as_str() == name)
        .ok_or_else(|| {
            let allowed: Vec<String> = Isolation::ALL
                .iter()
                .map(|i| {
                    let what = match i {
                        Isolation::None => "a plain child process, the default",
                        Isolation::Bwrap => "each agent under bubblewrap; needs `bwrap` installed",
                    };
                    format!("\"{i}\" ({what})")
                })
                .collect();
            Problem::new(
                format!("\"{}\" is not an isolation mode", echo(name)),
                format!("use one of {}", allowed.join(", ")),
            )
        })
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

/// `telemetry.sampling_ratio`: a number from 0.0 to 1.0.
pub(crate) fn parse_sampling_ratio(value: f64) -> Result<crate::SamplingRatio, Problem> {
    if (0.0..=1.0).contains(&value) {
        Ok(crate::SamplingRatio {
            ppm: (value * 1e6).round() as u32,
        })
    } else {
        Err(Problem::new(
            format!("{value} is not between 0.0 and 1.0"),
            "use 1.0 to record every trace, 0.1 for one in ten, 0.0 for none",
        ))
    }
}

/// `telemetry.service_name` and resource attribute names and values: non-empty text of
/// at most 256 bytes without control characters.
pub(crate) fn check_attribute(text: &str, what: &str) -> Result<(), Problem> {
    if text.trim().is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
        Err(Problem::new(
            format!(
                "the {what} \"{}\" is empty, longer than 256 bytes or has control characters",
                echo(text)
            ),
            format!("use a short printable {what}"),
        ))
    } else {
        Ok(())
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
            // Zero is allowed only where it means something (no grace period, or "off");
            // such a key is a plain integer, every other is a `NonZero*`.
            assert!(
                rule.min >= 1 || rule.zero_disables || rule.path() == "cluster.placement_grace_ms",
                "{} is non-zero",
                rule.path()
            );
            assert!(
                !rule.zero_disables || rule.min == 0,
                "{}: zero must be accepted where it disables",
                rule.path()
            );
            if let Some(default) = rule.default {
                assert!(
                    (rule.min..=rule.max).contains(&default),
                    "{} default in range",
                    rule.path()
                );
            }
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
    fn int_rule_check_fix_names_the_default_or_removal() {
        let problem = HEARTBEAT_MS.check(5).expect_err("below minimum");
        assert_eq!(
            problem.fix,
            "set heartbeat_ms to a value from 10 to 10000 (default 100)"
        );
        let problem = PROBE_PERIOD_MS.check(99).expect_err("below minimum");
        assert_eq!(
            problem.fix,
            "set probe_period_ms to a value from 100 to 60000, or remove it"
        );
        assert_eq!(PLACEMENT_GRACE_MS.check(0), Ok(0));
    }

    #[test]
    fn int_rule_check_where_zero_disables() {
        assert_eq!(IDLE_STOP_MS.check(0), Ok(0));
        assert_eq!(IDLE_STOP_MS.check(604_800_000), Ok(604_800_000));
        let problem = IDLE_STOP_MS.check(-1).expect_err("negative");
        assert_eq!(problem.problem, "-1 is outside 0..=604800000");
        assert_eq!(
            problem.fix,
            "use 0 to disable idle_stop_ms (a negative value does not), or a value from 1 to \
             604800000 (default 900000)"
        );
        let problem = IDLE_STOP_MS.check(604_800_001).expect_err("above maximum");
        assert_eq!(
            problem.fix,
            "set idle_stop_ms to a value from 1 to 604800000 (default 900000), or 0 to disable it"
        );
        assert_eq!(
            IDLE_STOP_MS.expected(),
            "an integer from 0 to 604800000 (0 disables)"
        );
        assert_eq!(SHARD_COUNT.expected(), "an integer from 1 to 1024");
        // Zero meaning "none" is not "off": the usual fix.
        let problem = PLACEMENT_GRACE_MS.check(-1).expect_err("negative");
        assert_eq!(
            problem.fix,
            "set placement_grace_ms to a value from 0 to 86400000 (default 10000)"
        );
    }

    #[test]
    fn gossip_presets_parse_by_name() {
        for preset in GossipPreset::ALL {
            assert_eq!(parse_gossip_preset(preset.as_str()), Ok(preset));
        }
        let problem = parse_gossip_preset("lan-huge").expect_err("unknown preset");
        assert_eq!(problem.problem, "\"lan-huge\" is not a gossip preset");
        assert!(
            problem.fix.contains(
                "\"lan-small\" (up to 8 nodes), \"lan-medium\" (up to 32 nodes), \
                 \"lan-large\" (up to 128 nodes)"
            ),
            "{problem:?}"
        );
        assert!(parse_gossip_preset("LAN-SMALL").is_err(), "names are exact");
    }

    #[test]
    fn isolation_modes_parse_by_name() {
        for isolation in Isolation::ALL {
            assert_eq!(parse_isolation(isolation.as_str()), Ok(isolation));
        }
        let problem = parse_isolation("docker").expect_err("unknown mode");
        assert_eq!(problem.problem, "\"docker\" is not an isolation mode");
        assert_eq!(
            problem.fix,
            "use one of \"none\" (a plain child process, the default), \"bwrap\" (each agent \
             under bubblewrap; needs `bwrap` installed)"
        );
        assert!(parse_isolation("BWRAP").is_err(), "names are exact");
        assert!(parse_isolation("").is_err());
    }

    #[test]
    fn seed_count() {
        assert!(check_seed_count(SEEDS_MAX).is_ok());
        let problem = check_seed_count(SEEDS_MAX + 1).expect_err("too many");
        assert_eq!(problem.problem, "65 seeds is more than 64");
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
