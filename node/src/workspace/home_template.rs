//! Agent home templates (`[agents.<id>.home]`): files written into an agent's private
//! home before the agent starts (its provider config, its settings), as managed files
//! ([`super::managed`]): recorded in the home's own `.shoal-managed.json`, rewritten when
//! the template changes and removed when an entry is removed, only while they still hold
//! what Shoal wrote; a file the agent or a user changed is theirs and left alone.
//!
//! Paths were checked when the config was read ([`HomePath`]) and are checked again
//! when read back from the registry. `source` files are read at each start, at most
//! [`HOME_FILE_BYTES_MAX`] bytes.

use super::managed::{self, Synced};
use crate::context::NodeContext;
use shoal_cluster_config::{HOME_FILE_BYTES_MAX, HomeFile, HomePath};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why an agent's home template could not be written. The agent does not start.
#[derive(Debug, thiserror::Error)]
pub enum HomeTemplateError {
    /// A `source` file could not be read (missing, unreadable, too large).
    #[error(
        "agent `{agent}` home template: cannot read `agents.{agent}.home.\"{path}\".source` \
         ({}): {reason}; fix the path in the node config or put the file there",
        source_path.display()
    )]
    Source {
        /// The agent.
        agent: String,
        /// The path in the home.
        path: HomePath,
        /// The source file.
        source_path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The home could not be opened or the registry saved.
    #[error("agent `{agent}` home template: cannot write into the agent's home: {source}")]
    Write {
        /// The agent.
        agent: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where template files go: anywhere below the home, every directory created and removed
/// as needed.
struct HomeLayout;

impl managed::Layout for HomeLayout {
    fn path_ok(&self, rel: &str) -> bool {
        HomePath::new(rel).is_ok()
    }

    fn depths(&self, _rel: &str) -> (usize, usize) {
        (0, 0)
    }
}

/// Makes the managed files of `home` (an existing directory) match `template`, for agent
/// `agent` (named in errors). Blocking I/O.
pub fn sync(
    agent: &str,
    home: &Path,
    template: &BTreeMap<HomePath, HomeFile>,
) -> Result<Synced, HomeTemplateError> {
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (path, file) in template {
        let bytes = match file {
            HomeFile::Content(text) => text.as_bytes().to_vec(),
            HomeFile::Source(source) => {
                read_source(source).map_err(|reason| HomeTemplateError::Source {
                    agent: agent.to_owned(),
                    path: path.clone(),
                    source_path: source.clone(),
                    reason,
                })?
            }
        };
        contents.insert(path.as_str().to_owned(), bytes);
    }
    let desired: BTreeMap<String, &[u8]> = contents
        .iter()
        .map(|(path, bytes)| (path.clone(), bytes.as_slice()))
        .collect();
    let mut out = Synced::default();
    managed::sync(home, &desired, &HomeLayout, &mut out).map_err(|source| {
        HomeTemplateError::Write {
            agent: agent.to_owned(),
            source,
        }
    })?;
    Ok(out)
}

/// A template source file, at most [`HOME_FILE_BYTES_MAX`] bytes.
fn read_source(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(HOME_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > HOME_FILE_BYTES_MAX {
        return Err(format!("the file is over {HOME_FILE_BYTES_MAX} bytes"));
    }
    Ok(bytes)
}

/// Writes agent `agent`'s home template (from the node config) into `home` on a blocking
/// thread; returns the warnings (files left alone).
pub async fn materialize(
    ctx: &NodeContext,
    agent: &str,
    home: &Path,
) -> Result<Vec<String>, HomeTemplateError> {
    let template = ctx
        .config
        .agents
        .get(agent)
        .map(|spec| spec.home.clone())
        .unwrap_or_default();
    let (agent, home) = (agent.to_owned(), home.to_owned());
    let agent_name = agent.clone();
    let synced = ctx
        .blocking(move || sync(&agent, &home, &template))
        .await
        .map_err(|source| HomeTemplateError::Write {
            agent: agent_name,
            source,
        })??;
    if synced.written + synced.removed > 0 {
        tracing::info!(
            written = synced.written,
            removed = synced.removed,
            "agent home template synced"
        );
    }
    Ok(synced.warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn template(entries: &[(&str, HomeFile)]) -> BTreeMap<HomePath, HomeFile> {
        entries
            .iter()
            .map(|(path, file)| (HomePath::new(path).expect("path"), file.clone()))
            .collect()
    }

    fn content(text: &str) -> HomeFile {
        HomeFile::Content(text.to_owned())
    }

    #[test]
    fn templates_are_written_refreshed_and_pruned_but_edits_are_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let home = dir.path();
        let source = dir.path().join("source.json");
        fs::write(&source, "{\"from\": \"source\"}")?;
        let first = template(&[
            (".config/opencode/opencode.json", content("{\"v\": 1}")),
            (".claude/settings.json", HomeFile::Source(source.clone())),
            ("notes.txt", content("one")),
        ]);
        let synced = sync("opencode", home, &first)?;
        assert_eq!((synced.written, synced.removed), (3, 0));
        let read = |rel: &str| fs::read_to_string(home.join(rel)).unwrap_or_default();
        assert_eq!(read(".config/opencode/opencode.json"), "{\"v\": 1}");
        assert_eq!(read(".claude/settings.json"), "{\"from\": \"source\"}");

        // The agent edits one file; the template changes all three and drops one.
        fs::write(home.join("notes.txt"), "mine")?;
        let second = template(&[
            (".config/opencode/opencode.json", content("{\"v\": 2}")),
            ("notes.txt", content("two")),
        ]);
        let synced = sync("opencode", home, &second)?;
        assert_eq!((synced.written, synced.removed), (1, 1));
        assert_eq!(read(".config/opencode/opencode.json"), "{\"v\": 2}");
        assert_eq!(read("notes.txt"), "mine", "the agent's edit is kept");
        assert!(
            synced.warnings.iter().any(|w| w.contains("kept notes.txt")),
            "{:?}",
            synced.warnings
        );
        assert!(!home.join(".claude").exists(), "pruned with its directory");

        // An empty template removes what is still Shoal's.
        let synced = sync("opencode", home, &BTreeMap::new())?;
        assert_eq!(synced.removed, 1);
        assert!(!home.join(".config/opencode").exists());
        assert_eq!(read("notes.txt"), "mine");
        Ok(())
    }

    #[test]
    fn a_symlinked_directory_is_not_followed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let home = dir.path().join("home");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&home)?;
        fs::create_dir_all(&outside)?;
        std::os::unix::fs::symlink(&outside, home.join(".config"))?;
        let synced = sync("x", &home, &template(&[(".config/a.json", content("x"))]))?;
        assert_eq!(synced.written, 0);
        assert!(!outside.join("a.json").exists());
        assert!(
            synced.warnings.iter().any(|w| w.contains("symlink")),
            "{:?}",
            synced.warnings
        );
        Ok(())
    }

    #[test]
    fn a_missing_or_oversized_source_is_an_error_naming_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nope.json");
        let err = sync(
            "claude",
            dir.path(),
            &template(&[(".claude/settings.json", HomeFile::Source(missing))]),
        )
        .expect_err("missing source");
        let shown = err.to_string();
        assert!(
            shown.contains("agents.claude.home.\".claude/settings.json\".source"),
            "{shown}"
        );
        let big = dir.path().join("big");
        fs::write(&big, vec![b'x'; HOME_FILE_BYTES_MAX + 1])?;
        let err = sync(
            "claude",
            dir.path(),
            &template(&[("a", HomeFile::Source(big))]),
        )
        .expect_err("too large");
        assert!(err.to_string().contains("over 1048576 bytes"), "{err}");
        Ok(())
    }
}
