//! The agent's file requests (`fs/read_text_file`, `fs/write_text_file`), confined
//! to the workspace directory.
//!
//! A path is served only if it is absolute and, after removing `.` and `..`
//! lexically and resolving every symlink that exists on disk, still lies inside
//! the workspace. This stops protocol-level escapes (`../`, a symlink pointing out
//! of the workspace, a dangling symlink that would create a file elsewhere). It is
//! not a sandbox: the agent process itself runs with the node's user id, and a
//! process racing us could swap a directory for a symlink between the check and
//! the write.

use serde_json::{Value, json};
use std::io;
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncReadExt;

/// The largest file `fs/read_text_file` returns, in bytes.
pub(crate) const READ_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// The largest content `fs/write_text_file` accepts, in bytes.
pub(crate) const WRITE_FILE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Why a file request was refused. Nothing on disk changed unless the variant
/// says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// The request lacks a field or has one of the wrong type.
    #[error("invalid file request: {0}")]
    InvalidParams(String),
    /// The path is relative; ACP requires absolute paths.
    #[error(
        "path `{0}` is not absolute; ACP file paths must be absolute paths inside the workspace"
    )]
    NotAbsolute(String),
    /// The path, after normalising `..` and resolving symlinks, leaves the workspace.
    #[error(
        "path `{path}` is outside the workspace `{workspace}`; only files inside the workspace can be read or written"
    )]
    OutsideWorkspace {
        /// The path as requested.
        path: String,
        /// The workspace directory.
        workspace: String,
    },
    /// The file or content is over the limit.
    #[error("file `{path}` is larger than the {limit_bytes}-byte limit")]
    TooLarge {
        /// The path as requested.
        path: String,
        /// The limit that was hit.
        limit_bytes: u64,
    },
    /// The file to read does not exist.
    #[error("file `{0}` does not exist")]
    NotFound(String),
    /// The operating system refused (permissions, not a directory, disk full...).
    /// A failed write may have left missing parent directories created.
    #[error("could not {action} `{path}`: {source}")]
    Io {
        /// What we tried to do.
        action: &'static str,
        /// The path as requested.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// The JSON-RPC error code to answer with.
    pub(crate) fn code(&self) -> i32 {
        match self {
            FsError::InvalidParams(_)
            | FsError::NotAbsolute(_)
            | FsError::OutsideWorkspace { .. }
            | FsError::TooLarge { .. } => -32602,
            // ACP's "resource not found".
            FsError::NotFound(_) => -32002,
            FsError::Io { .. } => -32603,
        }
    }
}

/// The workspace a session's file requests are confined to.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    /// The directory as configured, with `.`/`..` removed.
    given: PathBuf,
    /// The directory with every symlink resolved.
    canonical: PathBuf,
}

impl Workspace {
    /// Resolves `cwd` (which must exist) once, up front.
    pub(crate) fn new(cwd: &Path) -> io::Result<Self> {
        let canonical = std::fs::canonicalize(cwd)?;
        let given = normalize_lexically(cwd).unwrap_or_else(|| canonical.clone());
        Ok(Self { given, canonical })
    }

    /// Maps a requested path to the real path to use, or refuses it.
    pub(crate) async fn resolve(&self, requested: &str) -> Result<PathBuf, FsError> {
        let outside = || FsError::OutsideWorkspace {
            path: requested.to_owned(),
            workspace: self.given.display().to_string(),
        };
        let normalized = normalize_lexically(Path::new(requested))
            .ok_or_else(|| FsError::NotAbsolute(requested.to_owned()))?;
        let relative = normalized
            .strip_prefix(&self.given)
            .or_else(|_| normalized.strip_prefix(&self.canonical))
            .map_err(|_| outside())?;
        let candidate = self.canonical.join(relative);

        // Find the deepest entry that exists (a dangling symlink counts), resolve
        // it, and check it is still inside; what follows it does not exist yet.
        let mut existing = candidate.clone();
        loop {
            match tokio::fs::symlink_metadata(&existing).await {
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    if !existing.pop() {
                        return Err(outside());
                    }
                }
                Err(source) => {
                    return Err(FsError::Io {
                        action: "inspect",
                        path: requested.to_owned(),
                        source,
                    });
                }
            }
        }
        // A dangling symlink cannot be resolved: refuse rather than follow it.
        let real = tokio::fs::canonicalize(&existing)
            .await
            .map_err(|_| outside())?;
        if !real.starts_with(&self.canonical) {
            return Err(outside());
        }
        let tail = candidate.strip_prefix(&existing).map_err(|_| outside())?;
        // `join("")` would add a trailing slash, which fails on a file.
        Ok(if tail.as_os_str().is_empty() {
            real
        } else {
            real.join(tail)
        })
    }
}

/// Removes `.` and `..` without touching the disk. `None` for a relative path.
/// `..` at the root stays at the root, as the kernel does.
fn normalize_lexically(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => normalized.push(prefix.as_os_str()),
            Component::RootDir => normalized.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                normalized.pop();
            }
            Component::Normal(name) => normalized.push(name),
        }
    }
    Some(normalized)
}

fn string_field<'a>(params: &'a Value, name: &str) -> Result<&'a str, FsError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| FsError::InvalidParams(format!("field `{name}` must be a string")))
}

fn optional_count(params: &Value, name: &str) -> Result<Option<u64>, FsError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            FsError::InvalidParams(format!("field `{name}` must be a non-negative integer"))
        }),
    }
}

/// Serves `fs/read_text_file {path, line?, limit?}` → `{content}`.
pub(crate) async fn read_text_file(
    workspace: &Workspace,
    params: &Value,
) -> Result<Value, FsError> {
    let requested = string_field(params, "path")?;
    let line = optional_count(params, "line")?;
    let limit = optional_count(params, "limit")?;
    let path = workspace.resolve(requested).await?;
    let io_error = |action, source| FsError::Io {
        action,
        path: requested.to_owned(),
        source,
    };
    let file = tokio::fs::File::open(&path).await.map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            FsError::NotFound(requested.to_owned())
        } else {
            io_error("open", source)
        }
    })?;
    let too_large = || FsError::TooLarge {
        path: requested.to_owned(),
        limit_bytes: READ_FILE_BYTES_MAX,
    };
    let metadata = file
        .metadata()
        .await
        .map_err(|source| io_error("inspect", source))?;
    if metadata.len() > READ_FILE_BYTES_MAX {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit so a file that grew since `metadata` is caught.
    file.take(READ_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|source| io_error("read", source))?;
    if bytes.len() as u64 > READ_FILE_BYTES_MAX {
        return Err(too_large());
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(json!({ "content": select_lines(&text, line, limit) }))
}

/// Lines `line..line+limit` (1-based, line endings kept) of `text`.
fn select_lines(text: &str, line: Option<u64>, limit: Option<u64>) -> String {
    if line.is_none() && limit.is_none() {
        return text.to_owned();
    }
    let skip = usize::try_from(line.unwrap_or(1).saturating_sub(1)).unwrap_or(usize::MAX);
    let take = limit.map_or(usize::MAX, |limit| {
        usize::try_from(limit).unwrap_or(usize::MAX)
    });
    text.split_inclusive('\n').skip(skip).take(take).collect()
}

/// Serves `fs/write_text_file {path, content}` → `{}`, creating missing parent
/// directories inside the workspace.
pub(crate) async fn write_text_file(
    workspace: &Workspace,
    params: &Value,
) -> Result<Value, FsError> {
    let requested = string_field(params, "path")?;
    let content = string_field(params, "content")?;
    if content.len() > WRITE_FILE_BYTES_MAX {
        return Err(FsError::TooLarge {
            path: requested.to_owned(),
            limit_bytes: WRITE_FILE_BYTES_MAX as u64,
        });
    }
    let path = workspace.resolve(requested).await?;
    let io_error = |action, source| FsError::Io {
        action,
        path: requested.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| io_error("create the directory of", source))?;
    }
    tokio::fs::write(&path, content)
        .await
        .map_err(|source| io_error("write", source))?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_normalisation() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/./b/", "/a/b"),
            ("/../../etc", "/etc"),
            ("/a/b/../../..", "/"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_lexically(Path::new(input)),
                Some(PathBuf::from(expected)),
                "for {input}"
            );
        }
        assert_eq!(normalize_lexically(Path::new("a/b")), None);
    }

    #[test]
    fn line_selection() {
        let text = "one\ntwo\nthree\n";
        assert_eq!(select_lines(text, None, None), text);
        assert_eq!(select_lines(text, Some(2), None), "two\nthree\n");
        assert_eq!(select_lines(text, Some(2), Some(1)), "two\n");
        assert_eq!(select_lines(text, None, Some(1)), "one\n");
        assert_eq!(select_lines(text, Some(9), Some(1)), "");
    }

    #[tokio::test]
    async fn resolve_confines_to_the_workspace() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let ws_dir = root.path().join("ws");
        let outside_dir = root.path().join("outside");
        std::fs::create_dir_all(ws_dir.join("sub"))?;
        std::fs::create_dir_all(&outside_dir)?;
        std::os::unix::fs::symlink(&outside_dir, ws_dir.join("escape"))?;
        std::os::unix::fs::symlink(ws_dir.join("sub"), ws_dir.join("inner"))?;
        std::os::unix::fs::symlink(outside_dir.join("nothing"), ws_dir.join("dangling"))?;
        let workspace = Workspace::new(&ws_dir)?;
        let ws = workspace.canonical.clone();
        let at = |rel: &str| format!("{}/{rel}", ws_dir.display());

        assert_eq!(workspace.resolve(&at("a.txt")).await?, ws.join("a.txt"));
        std::fs::write(ws_dir.join("sub/exists.txt"), "x")?;
        assert_eq!(
            workspace.resolve(&at("sub/exists.txt")).await?,
            ws.join("sub/exists.txt")
        );
        assert_eq!(
            workspace.resolve(&at("new/dir/a.txt")).await?,
            ws.join("new/dir/a.txt")
        );
        assert_eq!(
            workspace.resolve(&at("sub/../b.txt")).await?,
            ws.join("b.txt")
        );
        assert_eq!(
            workspace.resolve(&at("inner/c.txt")).await?,
            ws.join("sub/c.txt")
        );
        for bad in [
            "../outside/x",
            "escape/x",
            "escape",
            "dangling",
            "sub/../../x",
        ] {
            let result = workspace.resolve(&at(bad)).await;
            assert!(
                matches!(result, Err(FsError::OutsideWorkspace { .. })),
                "{bad} resolved to {result:?}"
            );
        }
        assert!(matches!(
            workspace.resolve("relative/path").await,
            Err(FsError::NotAbsolute(_))
        ));
        assert!(matches!(
            workspace.resolve("/etc/passwd").await,
            Err(FsError::OutsideWorkspace { .. })
        ));
        // A sibling directory sharing the prefix is not inside.
        let sibling = format!("{}2/x", ws_dir.display());
        assert!(matches!(
            workspace.resolve(&sibling).await,
            Err(FsError::OutsideWorkspace { .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn read_and_write_round_trip_with_limits() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let workspace = Workspace::new(root.path())?;
        let path = format!("{}/notes/a.txt", root.path().display());
        let written =
            write_text_file(&workspace, &json!({"path": path, "content": "x\ny\n"})).await?;
        assert_eq!(written, json!({}));
        let read = read_text_file(&workspace, &json!({"path": path, "line": 2})).await?;
        assert_eq!(read, json!({"content": "y\n"}));

        let missing = format!("{}/missing.txt", root.path().display());
        let error = read_text_file(&workspace, &json!({"path": missing})).await;
        assert!(matches!(error, Err(ref e @ FsError::NotFound(_)) if e.code() == -32002));

        let big = "a".repeat(WRITE_FILE_BYTES_MAX + 1);
        let error = write_text_file(&workspace, &json!({"path": path, "content": big})).await;
        assert!(matches!(error, Err(FsError::TooLarge { .. })));

        let huge = root.path().join("huge.bin");
        std::fs::write(&huge, vec![b'a'; READ_FILE_BYTES_MAX as usize + 1])?;
        let error = read_text_file(&workspace, &json!({"path": huge})).await;
        assert!(matches!(error, Err(FsError::TooLarge { .. })));

        let error = write_text_file(&workspace, &json!({"path": 3})).await;
        assert!(matches!(error, Err(ref e @ FsError::InvalidParams(_)) if e.code() == -32602));
        Ok(())
    }
}
