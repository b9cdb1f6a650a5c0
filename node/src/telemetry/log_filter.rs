//! The log filter, changeable at run time (`shoalctl admin log-filter`).
//!
//! The process's `tracing` subscriber is global, so is the handle that reloads its
//! filter: the first [`reloadable`] filter installed wins (a second node in the same
//! process, as in simulations, shares it).

use std::sync::{Mutex, OnceLock};
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Longest filter an operator may set, in bytes.
pub const LOG_FILTER_BYTES_MAX: usize = 1024;

/// The reload handle and the directives in effect.
struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
    directives: Mutex<String>,
}

static FILTER: OnceLock<Reloadable> = OnceLock::new();

/// Why a filter was not set; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    /// The directives do not parse.
    #[error(
        "invalid log filter `{directives}`: {message}; write directives such as `info,shoal_node=debug` (tracing-subscriber's EnvFilter syntax)"
    )]
    Invalid {
        /// What was asked for (cut to [`LOG_FILTER_BYTES_MAX`]).
        directives: String,
        /// The parser's message.
        message: String,
    },
    /// Longer than [`LOG_FILTER_BYTES_MAX`].
    #[error("a log filter is at most {LOG_FILTER_BYTES_MAX} bytes; this one has {bytes}")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// This process's subscriber was not installed by [`crate::telemetry::init`].
    #[error("this process's log filter cannot be changed (it was not set up by the node)")]
    NotReloadable,
    /// The subscriber is gone (the process is exiting).
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

/// The filter layer for `directives` (as at start before: directives that do not parse
/// are skipped), made reloadable once per process.
pub(crate) fn reloadable(directives: &str) -> reload::Layer<EnvFilter, Registry> {
    let (layer, handle) = reload::Layer::new(EnvFilter::new(directives));
    let _ = FILTER.set(Reloadable {
        handle,
        directives: Mutex::new(directives.to_owned()),
    });
    layer
}

/// The directives in effect, if the filter is reloadable.
pub fn current() -> Option<String> {
    FILTER.get().map(|f| {
        f.directives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    })
}

/// Checks `directives` and installs them; returns them. A bad filter changes nothing.
pub fn set(directives: &str) -> Result<String, LogFilterError> {
    let directives = directives.trim();
    if directives.len() > LOG_FILTER_BYTES_MAX {
        return Err(LogFilterError::TooLong {
            bytes: directives.len(),
        });
    }
    let filter = parse(directives)?;
    let reloadable = FILTER.get().ok_or(LogFilterError::NotReloadable)?;
    let mut current = reloadable
        .directives
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    reloadable
        .handle
        .reload(filter)
        .map_err(|e| LogFilterError::Reload(e.to_string()))?;
    *current = directives.to_owned();
    Ok(directives.to_owned())
}

/// Parses directives strictly: an empty filter or a bad directive is an error.
fn parse(directives: &str) -> Result<EnvFilter, LogFilterError> {
    let invalid = |message: String| LogFilterError::Invalid {
        directives: directives.chars().take(LOG_FILTER_BYTES_MAX).collect(),
        message,
    };
    if directives.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    EnvFilter::builder()
        .with_regex(false)
        .parse(directives)
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_are_refused_with_the_reason() {
        for bad in ["", "shoal_node=loud", "[{", "=debug=x"] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains("invalid log filter"),
                "{bad}: {err}"
            );
        }
        parse("info,shoal_node=debug,openraft=error").expect("a good filter");
        let long = "a".repeat(LOG_FILTER_BYTES_MAX + 1);
        assert!(matches!(set(&long), Err(LogFilterError::TooLong { .. })));
    }
}
