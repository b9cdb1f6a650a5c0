//! Environment overrides: `SHOAL_<SECTION>__<KEY>` sets `[section] key`, and
//! `SHOAL_DEFAULT_AGENT` sets the top-level `default_agent`.
//!
//! Overrides are inserted into the parsed TOML table before it is checked, so an
//! overridden value goes through exactly the checks a file value does; [`Origins`]
//! remembers which keys came from which variable so errors name the variable.
//!
//! A list of addresses (`cluster.seeds`) is written comma-separated
//! (`SHOAL_CLUSTER__SEEDS=10.0.0.1:7443,10.0.0.2:7443`); an empty value means none.
//!
//! `[agents.*]` cannot be overridden (a variable name cannot carry an agent's args or
//! env table). A `SHOAL_*` variable without a double underscore (`SHOAL_LOG`,
//! `SHOAL_PROFILE`) is ignored; one of the `SHOAL_<X>__<Y>` shape that names no key is an
//! error, so a typo cannot silently leave a setting at its default.

use crate::error::{ConfigError, Problem, echo};
use crate::schema::{self, AGENTS_KEY, DEFAULT_AGENT_KEY, SECTIONS};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// Prefix of every Shoal variable.
pub(crate) const ENV_PREFIX: &str = "SHOAL_";
/// Separator between section and key in a variable name.
pub(crate) const ENV_SEPARATOR: &str = "__";
/// The variable that sets the top-level `default_agent`.
pub(crate) const ENV_DEFAULT_AGENT: &str = "SHOAL_DEFAULT_AGENT";

/// Which keys were set by which environment variable.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    by_key: BTreeMap<String, String>,
}

impl Origins {
    /// Whether `key` (a key path) was set from the environment.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The error for `problem` at `key`, naming the variable if the value came from one.
    pub(crate) fn invalid(&self, key: String, problem: Problem) -> ConfigError {
        match self.by_key.get(&key) {
            Some(var) => ConfigError::EnvValue {
                key,
                var: var.clone(),
                problem: problem.problem,
                fix: problem.fix,
            },
            None => problem.at(key),
        }
    }

    /// The error for `problem` at element `index` of list key `key`
    /// (`cluster.seeds[2]`), naming the variable if the list came from one.
    pub(crate) fn invalid_item(&self, key: &str, index: usize, problem: Problem) -> ConfigError {
        let item = format!("{key}[{index}]");
        match self.by_key.get(key) {
            Some(var) => ConfigError::EnvValue {
                key: item,
                var: var.clone(),
                problem: problem.problem,
                fix: problem.fix,
            },
            None => problem.at(item),
        }
    }
}

/// What an override variable sets.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// The top-level `default_agent`.
    DefaultAgent,
    /// `[section] key`.
    Key {
        section: &'static str,
        key: &'static str,
    },
}

/// Maps a variable name to what it sets: `Ok(None)` for names that are not overrides.
fn target(var: &str) -> Result<Option<Target>, ConfigError> {
    if var == ENV_DEFAULT_AGENT {
        return Ok(Some(Target::DefaultAgent));
    }
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    let Some((section, key)) = rest.split_once(ENV_SEPARATOR) else {
        return Ok(None);
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    if section == AGENTS_KEY {
        return Err(ConfigError::EnvVar {
            var: echo(var),
            problem: "[agents.*] cannot be overridden from the environment".to_owned(),
            fix: "unset it and edit the [agents.<name>] table in the config file".to_owned(),
        });
    }
    let found = schema::section(&section)
        .and_then(|s| s.keys.iter().find(|k| **k == key).map(|k| (s.name, *k)));
    match found {
        Some((section, key)) => Ok(Some(Target::Key { section, key })),
        None => {
            let candidates = override_vars();
            let fix = match schema::closest(var, candidates.iter().map(String::as_str)) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None => {
                    "unset it or fix its name: SHOAL_<SECTION>__<KEY>, see the key reference in \
                         cluster-config/README.md"
                        .to_owned()
                }
            };
            Err(ConfigError::EnvVar {
                var: echo(var),
                problem: "this environment variable names no config key".to_owned(),
                fix,
            })
        }
    }
}

/// Every override variable name.
fn override_vars() -> Vec<String> {
    let mut vars = vec![ENV_DEFAULT_AGENT.to_owned()];
    for section in SECTIONS {
        for key in section.keys {
            vars.push(var_name(section.name, key));
        }
    }
    vars
}

/// The variable that overrides `[section] key`.
pub(crate) fn var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}{ENV_SEPARATOR}{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// Applies the overrides in `env` to `root`. Variables are applied in name order, so the
/// first error reported does not depend on the environment's order; a name given twice
/// keeps its last value.
pub(crate) fn apply(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Origins, ConfigError> {
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX))
        .collect();
    let mut origins = Origins::default();
    for (var, value) in vars {
        match target(&var)? {
            None => {}
            Some(Target::DefaultAgent) => {
                root.insert(DEFAULT_AGENT_KEY.to_owned(), toml::Value::String(value));
                origins.by_key.insert(DEFAULT_AGENT_KEY.to_owned(), var);
            }
            Some(Target::Key { section, key }) => {
                // Integer keys take the value as an integer when it is one; anything
                // else stays a string so the type check reports it, naming the variable.
                let value = if schema::is_addr_list(section, key) {
                    addr_list(&value)
                } else {
                    match (schema::int_rule(section, key), value.trim().parse::<i64>()) {
                        (Some(_), Ok(int)) => toml::Value::Integer(int),
                        _ => toml::Value::String(value),
                    }
                };
                let table = root
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                // A section that is not a table is reported by the parser, at the section.
                if let toml::Value::Table(table) = table {
                    table.insert(key.to_owned(), value);
                    origins.by_key.insert(format!("{section}.{key}"), var);
                }
            }
        }
    }
    Ok(origins)
}

/// A comma-separated list as a TOML array of strings: `""` (or only spaces) is the
/// empty list; elements are trimmed, and an empty element (`a,,b`, a trailing comma)
/// is kept so the parser reports it.
fn addr_list(value: &str) -> toml::Value {
    if value.trim().is_empty() {
        return toml::Value::Array(Vec::new());
    }
    toml::Value::Array(
        value
            .split(',')
            .map(|item| toml::Value::String(item.trim().to_owned()))
            .collect(),
    )
}

/// The process's `SHOAL_*` variables. Unlike `std::env::vars()` this does not panic on
/// non-UTF-8 variables: those are skipped unless they are override variables, which
/// are an error.
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    collect_env(std::env::vars_os())
}

fn collect_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => out.push((name.to_owned(), value)),
            Err(_) if target(name)?.is_some() => {
                return Err(ConfigError::EnvVar {
                    var: echo(name),
                    problem: "its value is not valid UTF-8".to_owned(),
                    fix: "set it to UTF-8 text or unset it".to_owned(),
                });
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn targets() {
        let cases: &[(&str, Option<Target>)] = &[
            ("SHOAL_PROFILE", None),
            ("SHOAL_LOG", None),
            ("HOME", None),
            ("SHOAL_DEFAULT_AGENT", Some(Target::DefaultAgent)),
            (
                "SHOAL_NODE__LISTEN_ADDR",
                Some(Target::Key {
                    section: "node",
                    key: "listen_addr",
                }),
            ),
            (
                "SHOAL_CONVERSATION__TURN_TIMEOUT_MS",
                Some(Target::Key {
                    section: "conversation",
                    key: "turn_timeout_ms",
                }),
            ),
            (
                "SHOAL_TELEMETRY__LOG_FILTER",
                Some(Target::Key {
                    section: "telemetry",
                    key: "log_filter",
                }),
            ),
        ];
        for (var, expected) in cases {
            assert_eq!(target(var).expect("known shape"), *expected, "{var}");
        }
    }

    #[test]
    fn unknown_override_is_an_error_with_suggestion() {
        let cases: &[(&str, &str)] = &[
            (
                "SHOAL_NODE__LISTEN_ADRR",
                "did you mean `SHOAL_NODE__LISTEN_ADDR`?",
            ),
            ("SHOAL_NOPE__X", "unset it or fix its name"),
            ("SHOAL_NODE__", "did you mean `SHOAL_NODE__ID`?"),
            ("SHOAL_NODE__QWERTY", "unset it or fix its name"),
            (
                "SHOAL_AGENTS__DEMO__COMMAND",
                "cannot be overridden from the environment",
            ),
        ];
        for (var, expected) in cases {
            let err = target(var).expect_err("not a key");
            assert_eq!(err.key(), *var);
            let shown = err.to_string();
            assert!(shown.contains(expected), "{var}: {shown}");
            assert!(
                shown.starts_with(&format!("config error at `{var}`: ")),
                "{shown}"
            );
        }
    }

    #[test]
    fn apply_types_and_records_origins() {
        let mut root = toml::Table::new();
        let origins = apply(
            &mut root,
            env(&[
                ("SHOAL_CLUSTER__REPLICAS", " 5 "),
                ("SHOAL_NODE__ID", "123"),
                ("SHOAL_CONVERSATION__TURN_TIMEOUT_MS", "soon"),
                ("SHOAL_LOG", "debug"),
            ]),
        )
        .expect("applies");
        assert_eq!(root["cluster"]["replicas"], toml::Value::Integer(5));
        assert_eq!(root["node"]["id"], toml::Value::String("123".to_owned()));
        assert_eq!(
            root["conversation"]["turn_timeout_ms"],
            toml::Value::String("soon".to_owned())
        );
        assert!(origins.contains("cluster.replicas"));
        assert!(!origins.contains("node.listen_addr"));
    }

    #[test]
    fn address_lists_split_on_commas() {
        let strings = |items: &[&str]| {
            toml::Value::Array(
                items
                    .iter()
                    .map(|s| toml::Value::String((*s).to_owned()))
                    .collect(),
            )
        };
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  ", &[]),
            ("10.0.0.1:7443", &["10.0.0.1:7443"]),
            (
                " 10.0.0.1:7443 , [::1]:7443",
                &["10.0.0.1:7443", "[::1]:7443"],
            ),
            ("a:1,", &["a:1", ""]),
        ];
        for (value, expected) in cases {
            let mut root = toml::Table::new();
            let origins =
                apply(&mut root, env(&[("SHOAL_CLUSTER__SEEDS", value)])).expect("applies");
            assert_eq!(root["cluster"]["seeds"], strings(expected), "{value:?}");
            assert!(origins.contains("cluster.seeds"));
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        let ignored = collect_env([(OsString::from("SHOAL_PROFILE"), bad.clone())])
            .expect("non-override variables are ignored");
        assert!(ignored.is_empty());
        let err = collect_env([(OsString::from("SHOAL_NODE__ID"), bad)])
            .expect_err("override must be UTF-8");
        assert_eq!(err.key(), "SHOAL_NODE__ID");
    }
}
