//! Session ids and the on-disk history store under `$HOME/.shoal-demo-agent/sessions/`.
//!
//! Each session is one JSON file `<sessionId>.json` holding its history. Files are
//! written to a per-process temporary name and renamed over the old one, so a reader
//! (or a restarted agent) never sees a half-written file. New ids are reserved with a
//! hard link, which fails if the name exists, so two agents sharing a `HOME` never
//! hand out the same id.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every session id is this prefix followed by a decimal number.
pub(crate) const SESSION_ID_PREFIX: &str = "demo-";
/// Longest session id accepted from a client (longer ids are unknown sessions).
pub(crate) const SESSION_ID_BYTES_MAX: usize = 32;
/// Largest session file the agent reads back.
pub(crate) const SESSION_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// History entries kept per session; the oldest are dropped beyond this.
pub(crate) const HISTORY_ENTRIES_MAX: usize = 10_000;
/// How many taken ids a new session skips before giving up.
const SESSION_ID_ATTEMPTS_MAX: u64 = 1_000;

/// Who said a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// The user's prompt text.
    User,
    /// The agent's message text (thoughts and tool calls are not kept).
    Agent,
}

/// One remembered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HistoryEntry {
    /// Who said it.
    pub(crate) role: Role,
    /// What was said.
    pub(crate) text: String,
}

/// The JSON layout of a session file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    session_id: String,
    history: Vec<HistoryEntry>,
}

/// Why the session store failed; no variant leaves a partly written session file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The sessions directory could not be created or listed.
    #[error("cannot use session directory {path}: {source}; check that HOME is writable")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A session file could not be read.
    #[error("cannot read session file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A session file is larger than [`SESSION_FILE_BYTES_MAX`].
    #[error("session file {path} is {bytes} bytes, over the {SESSION_FILE_BYTES_MAX} byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// A session file is not valid session JSON.
    #[error("session file {path} is corrupt: {source}; delete it to forget the session")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A session file could not be written; the previous version is unchanged.
    #[error("cannot write session file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Too many consecutive ids were already taken by other agents.
    #[error("no free session id after {SESSION_ID_ATTEMPTS_MAX} attempts in {path}")]
    IdsExhausted {
        /// The sessions directory.
        path: PathBuf,
    },
}

/// Whether `id` has the shape of an id this agent hands out (and is safe as a file name).
pub(crate) fn is_valid_session_id(id: &str) -> bool {
    id.len() <= SESSION_ID_BYTES_MAX
        && id
            .strip_prefix(SESSION_ID_PREFIX)
            .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
}

fn session_number(id: &str) -> Option<u64> {
    if !is_valid_session_id(id) {
        return None;
    }
    id.strip_prefix(SESSION_ID_PREFIX)?.parse().ok()
}

/// Where session histories persist; without a directory they live in memory only.
#[derive(Debug)]
pub(crate) struct Store {
    dir: Option<PathBuf>,
}

impl Store {
    /// A store under `<home>/.shoal-demo-agent/sessions`, or an in-memory one without `home`.
    pub(crate) fn new(home: Option<&Path>) -> Self {
        Self {
            dir: home.map(|home| home.join(".shoal-demo-agent").join("sessions")),
        }
    }

    /// Whether histories survive a restart.
    pub(crate) fn is_persistent(&self) -> bool {
        self.dir.is_some()
    }

    /// The smallest session number above every stored one (1 for an empty store).
    pub(crate) async fn first_free_number(&self) -> Result<u64, StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(1);
        };
        let dir_error = |source| StoreError::Dir {
            path: dir.clone(),
            source,
        };
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(1),
            Err(e) => return Err(dir_error(e)),
        };
        let mut highest = 0;
        while let Some(entry) = entries.next_entry().await.map_err(dir_error)? {
            let name = entry.file_name();
            let number = name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(session_number);
            highest = highest.max(number.unwrap_or(0));
        }
        Ok(highest.saturating_add(1))
    }

    /// Creates a new empty session with the first free number from `*next`, advancing it.
    pub(crate) async fn create(&self, next: &mut u64) -> Result<String, StoreError> {
        let Some(dir) = &self.dir else {
            let id = format!("{SESSION_ID_PREFIX}{next}");
            *next += 1;
            return Ok(id);
        };
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| StoreError::Dir {
                path: dir.clone(),
                source,
            })?;
        for _ in 0..SESSION_ID_ATTEMPTS_MAX {
            let id = format!("{SESSION_ID_PREFIX}{next}");
            *next += 1;
            let temp = self.write_temp(dir, &id, &[]).await?;
            let path = file_path(dir, &id);
            let linked = tokio::fs::hard_link(&temp, &path).await;
            let _ = tokio::fs::remove_file(&temp).await;
            match linked {
                Ok(()) => return Ok(id),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(StoreError::Write { path, source }),
            }
        }
        Err(StoreError::IdsExhausted { path: dir.clone() })
    }

    /// The stored history of `id`, `None` if it has no file (or the store is in memory).
    pub(crate) async fn load(&self, id: &str) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        if !is_valid_session_id(id) {
            return Ok(None);
        }
        let path = file_path(dir, id);
        let read_error = |source| StoreError::Read {
            path: path.clone(),
            source,
        };
        let bytes = match tokio::fs::metadata(&path).await {
            Ok(metadata) => metadata.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        if bytes > SESSION_FILE_BYTES_MAX {
            return Err(StoreError::TooLarge { path, bytes });
        }
        let contents = tokio::fs::read(&path).await.map_err(read_error)?;
        let file: SessionFile = serde_json::from_slice(&contents)
            .map_err(|source| StoreError::Corrupt { path, source })?;
        Ok(Some(file.history))
    }

    /// Atomically replaces the stored history of `id` (a no-op for an in-memory store).
    pub(crate) async fn save(&self, id: &str, history: &[HistoryEntry]) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let temp = self.write_temp(dir, id, history).await?;
        let path = file_path(dir, id);
        if let Err(source) = tokio::fs::rename(&temp, &path).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(StoreError::Write { path, source });
        }
        Ok(())
    }

    /// Writes and syncs a complete session file under a name private to this process.
    async fn write_temp(
        &self,
        dir: &Path,
        id: &str,
        history: &[HistoryEntry],
    ) -> Result<PathBuf, StoreError> {
        let temp = dir.join(format!("{id}.json.{}.tmp", std::process::id()));
        let file = SessionFile {
            session_id: id.to_owned(),
            history: history.to_vec(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| StoreError::Write {
            path: temp.clone(),
            source: e.into(),
        })?;
        let write = async {
            let mut handle = tokio::fs::File::create(&temp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut handle, &bytes).await?;
            handle.sync_all().await
        };
        if let Err(source) = write.await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(StoreError::Write { path: temp, source });
        }
        Ok(temp)
    }
}

fn file_path(dir: &Path, id: &str) -> PathBuf {
    assert!(
        is_valid_session_id(id),
        "unchecked session id {id:?} used as a file name"
    );
    dir.join(format!("{id}.json"))
}

/// Appends `entry` to `history`, dropping the oldest entries beyond [`HISTORY_ENTRIES_MAX`].
pub(crate) fn push_bounded(history: &mut Vec<HistoryEntry>, entry: HistoryEntry) {
    history.push(entry);
    if history.len() > HISTORY_ENTRIES_MAX {
        let excess = history.len() - HISTORY_ENTRIES_MAX;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agent_shaped_ids_are_valid() {
        assert!(is_valid_session_id("demo-1"));
        assert!(is_valid_session_id("demo-0042"));
        for bad in [
            "demo-",
            "demo-1a",
            "../demo-1",
            "demo-1/..",
            "x-1",
            "demo-99999999999999999999999999999",
        ] {
            assert!(!is_valid_session_id(bad), "{bad:?} should be rejected");
        }
    }

    #[tokio::test]
    async fn ids_skip_existing_files_and_history_round_trips() {
        let home = tempfile::tempdir().expect("temp dir");
        let store = Store::new(Some(home.path()));
        assert_eq!(store.first_free_number().await.expect("empty store"), 1);
        let mut next = 1;
        let first = store.create(&mut next).await.expect("create");
        assert_eq!(first, "demo-1");
        let history = vec![HistoryEntry {
            role: Role::User,
            text: "hi".into(),
        }];
        store.save(&first, &history).await.expect("save");
        assert_eq!(store.load(&first).await.expect("load"), Some(history));
        assert_eq!(store.load("demo-7").await.expect("load missing"), None);

        // A second process starting from 1 must not reuse demo-1.
        let mut stale_next = 1;
        assert_eq!(
            store.create(&mut stale_next).await.expect("create"),
            "demo-2"
        );
        assert_eq!(store.first_free_number().await.expect("scan"), 3);
    }

    #[test]
    fn history_is_bounded() {
        let mut history = Vec::new();
        for i in 0..HISTORY_ENTRIES_MAX + 3 {
            push_bounded(
                &mut history,
                HistoryEntry {
                    role: Role::User,
                    text: i.to_string(),
                },
            );
        }
        assert_eq!(history.len(), HISTORY_ENTRIES_MAX);
        assert_eq!(history[0].text, "3");
    }
}
