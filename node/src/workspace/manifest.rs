//! A workspace snapshot's manifest: every directory, file and symlink of the tree with its
//! mode, and for files their size, modification time and chunk hashes. Blocking file
//! I/O: callers run these on a blocking task.
//!
//! * [`scan`] walks a tree into a manifest, bounded in entries and bytes, reading only
//!   files whose size, modification time or mode changed since the base manifest
//!   (incremental) and storing their chunks in the blob store. Symlinks are recorded as
//!   links and never followed; special files (sockets, pipes, devices) are skipped with
//!   a warning.
//! * [`restore`] makes a tree equal to a manifest whose chunks are all in the local blob
//!   store: unchanged files are left alone, changed ones rewritten through a temporary
//!   file and a rename, and anything the manifest does not hold is removed.
//!
//! Paths are relative, `/`-separated bytes. A manifest from the store is checked before
//! anything is written ([`Manifest::check`]): a path that climbs out of the tree or runs
//! through a symlink is refused, so a damaged manifest cannot write outside the tree.

use super::blobs::{BlobStore, CHUNK_BYTES_MAX, ChunkHash};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Largest encoded manifest accepted when decoding.
const MANIFEST_BYTES_MAX: usize = 512 * 1024 * 1024;

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: Vec<u8>,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// What it is.
    pub kind: EntryKind,
}

/// What an [`Entry`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Its modification time, nanoseconds since the Unix epoch.
        mtime_ns: u64,
        /// Its chunks in order.
        chunks: Vec<ChunkHash>,
    },
    /// A symbolic link (stored as a link; its target is never followed).
    Symlink {
        /// The link's target, as written.
        target: Vec<u8>,
    },
}

/// A tree's manifest: entries sorted by path (parents before children).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The entries.
    pub entries: Vec<Entry>,
}

/// Totals of a manifest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Entries.
    pub entries: u64,
    /// Bytes of regular files.
    pub bytes: u64,
}

impl Manifest {
    /// Entries and file bytes.
    pub fn totals(&self) -> Totals {
        let bytes = self
            .entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        Totals {
            entries: self.entries.len() as u64,
            bytes,
        }
    }

    /// Every chunk the files refer to.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkHash> {
        self.entries.iter().flat_map(|e| match &e.kind {
            EntryKind::File { chunks, .. } => chunks.as_slice(),
            _ => &[],
        })
    }

    /// The encoded manifest.
    pub fn encode(&self) -> Vec<u8> {
        // Our own type always encodes.
        bincode::serde::encode_to_vec(self, bincode::config::standard()).expect("manifests encode")
    }

    /// Decodes and [checks](Self::check) a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let config = bincode::config::standard().with_limit::<MANIFEST_BYTES_MAX>();
        let (manifest, _): (Manifest, usize) =
            bincode::serde::decode_from_slice(bytes, config).map_err(|e| e.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Refuses a manifest that could write outside its tree: every path is relative and
    /// made of normal components, sorted and unique, and every parent is a directory
    /// entry of the manifest (so no path runs through a symlink).
    pub fn check(&self) -> Result<(), String> {
        let mut dirs: HashSet<&[u8]> = HashSet::new();
        let mut previous: Option<&[u8]> = None;
        for entry in &self.entries {
            let path = entry.path.as_slice();
            let shown = String::from_utf8_lossy(path);
            if path.is_empty()
                || path
                    .split(|b| *b == b'/')
                    .any(|c| c.is_empty() || c == b"." || c == b".." || c.contains(&0))
            {
                return Err(format!(
                    "manifest path `{shown}` is not a plain relative path"
                ));
            }
            if previous.is_some_and(|p| p >= path) {
                return Err(format!(
                    "manifest path `{shown}` is out of order or repeated"
                ));
            }
            previous = Some(path);
            if let Some(cut) = path.iter().rposition(|b| *b == b'/')
                && !dirs.contains(&path[..cut])
            {
                return Err(format!(
                    "manifest path `{shown}` has no directory entry for its parent"
                ));
            }
            if entry.kind == EntryKind::Dir {
                dirs.insert(path);
            }
        }
        Ok(())
    }
}

/// Splits `bytes` into chunks, stores them, and returns their hashes.
pub fn store_chunked(blobs: &BlobStore, bytes: &[u8]) -> io::Result<Vec<ChunkHash>> {
    bytes
        .chunks(CHUNK_BYTES_MAX)
        .map(|chunk| blobs.put(chunk).map(|(hash, _)| hash))
        .collect()
}

/// Reassembles bytes stored by [`store_chunked`]; `Ok(None)` when a chunk is missing.
pub fn load_chunked(blobs: &BlobStore, chunks: &[ChunkHash]) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    for hash in chunks {
        let Some(chunk) = blobs.get(hash)? else {
            return Ok(None);
        };
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// Limits of one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// Most entries.
    pub entries_max: u64,
    /// Most bytes of regular files.
    pub bytes_max: u64,
}

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The tree is over a limit.
    #[error("the workspace holds more than {limit} {what}; raise `{key}` or remove files")]
    TooBig {
        /// "entries" or "bytes".
        what: &'static str,
        /// The limit.
        limit: u64,
        /// The config key.
        key: &'static str,
    },
    /// Reading the tree or writing a chunk failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A scan's result.
#[derive(Debug)]
pub struct Scanned {
    /// The tree's manifest.
    pub manifest: Manifest,
    /// Files read (new or changed since the base).
    pub files_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Entries skipped, with why (special files, unreadable names).
    pub skipped: Vec<String>,
}

fn io_err<'a>(context: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ScanError + 'a {
    move |source| ScanError::Io {
        context,
        path: path.to_owned(),
        source,
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Walks `root` into a manifest. Files whose size, modification time and mode equal
/// their entry in `base` keep its chunks unread; the others are read and their chunks
/// stored in `blobs`. A missing `root` is an empty tree.
pub fn scan(
    root: &Path,
    base: Option<&Manifest>,
    blobs: &BlobStore,
    limits: ScanLimits,
) -> Result<Scanned, ScanError> {
    let base: HashMap<&[u8], &Entry> = base
        .map(|m| m.entries.iter().map(|e| (e.path.as_slice(), e)).collect())
        .unwrap_or_default();
    let mut out = Scanned {
        manifest: Manifest::default(),
        files_read: 0,
        bytes_read: 0,
        skipped: Vec::new(),
    };
    if !root.exists() {
        return Ok(out);
    }
    let mut bytes = 0u64;
    // Depth first with sorted children, so entries come out sorted by path.
    let mut stack: Vec<Vec<u8>> = Vec::new();
    push_children(root, &[], &mut stack)?;
    while let Some(rel) = stack.pop() {
        let path = root.join(OsStr::from_bytes(&rel));
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed while we walked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot stat", &path)(e)),
        };
        if out.manifest.entries.len() as u64 >= limits.entries_max {
            return Err(ScanError::TooBig {
                what: "entries",
                limit: limits.entries_max,
                key: "workspace.snapshot_files_max",
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            push_children(&path, &rel, &mut stack)?;
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err("cannot read link", &path))?;
            EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            }
        } else if file_type.is_file() {
            let size = meta.len();
            bytes = bytes.saturating_add(size);
            if bytes > limits.bytes_max {
                return Err(ScanError::TooBig {
                    what: "bytes",
                    limit: limits.bytes_max,
                    key: "workspace.snapshot_bytes_max",
                });
            }
            let mtime_ns = mtime_ns(&meta);
            match base.get(rel.as_slice()).map(|e| (&e.kind, e.mode)) {
                Some((
                    EntryKind::File {
                        size: s,
                        mtime_ns: m,
                        chunks,
                    },
                    base_mode,
                )) if *s == size && *m == mtime_ns && base_mode == mode => EntryKind::File {
                    size,
                    mtime_ns,
                    chunks: chunks.clone(),
                },
                _ => {
                    let chunks = read_chunks(&path, blobs)?;
                    out.files_read += 1;
                    out.bytes_read += size;
                    EntryKind::File {
                        size,
                        mtime_ns,
                        chunks,
                    }
                }
            }
        } else {
            out.skipped.push(format!(
                "{}: not a file, directory or symlink",
                String::from_utf8_lossy(&rel)
            ));
            continue;
        };
        out.manifest.entries.push(Entry {
            path: rel,
            mode,
            kind,
        });
    }
    Ok(out)
}

/// Pushes `dir`'s children (as paths relative to the root) so they pop in sorted order.
fn push_children(dir: &Path, rel: &[u8], stack: &mut Vec<Vec<u8>>) -> Result<(), ScanError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let entry = entry.map_err(io_err("cannot list", dir))?;
        let name = entry.file_name();
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        names.push(child);
    }
    // Children of one parent share its prefix, so sorting by the whole path is sorting
    // by name; popping takes the smallest first.
    names.sort_unstable_by(|a, b| b.cmp(a));
    stack.extend(names);
    Ok(())
}

fn read_chunks(path: &Path, blobs: &BlobStore) -> Result<Vec<ChunkHash>, ScanError> {
    let mut file = std::fs::File::open(path).map_err(io_err("cannot read", path))?;
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .map_err(io_err("cannot read", path))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let (hash, _) = blobs
            .put(&buf[..filled])
            .map_err(io_err("cannot store a chunk of", path))?;
        chunks.push(hash);
        if filled < buf.len() {
            break;
        }
    }
    Ok(chunks)
}

/// What a restore changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Files and links written.
    pub written: u64,
    /// Entries removed (not in the manifest, or of another kind).
    pub removed: u64,
    /// Files left as they were.
    pub unchanged: u64,
}

/// Makes the tree at `root` equal to `manifest`, whose chunks must all be in `blobs`
/// ([`missing_chunks`]). Blocking.
pub fn restore(root: &Path, manifest: &Manifest, blobs: &BlobStore) -> io::Result<Restored> {
    manifest.check().map_err(io::Error::other)?;
    let mut done = Restored::default();
    std::fs::create_dir_all(root)?;
    let wanted: BTreeMap<&[u8], &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_slice(), e))
        .collect();
    // Remove what the manifest does not hold, or holds as another kind; deepest first.
    let local = list_local(root)?;
    for (rel, meta) in local.iter().rev() {
        let keep = wanted.get(rel.as_slice()).is_some_and(|e| {
            let ft = meta.file_type();
            match e.kind {
                EntryKind::Dir => ft.is_dir(),
                EntryKind::File { .. } => ft.is_file(),
                EntryKind::Symlink { .. } => ft.is_symlink(),
            }
        });
        if keep {
            continue;
        }
        let path = root.join(OsStr::from_bytes(rel));
        if meta.file_type().is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        done.removed += 1;
    }
    let local: HashMap<&[u8], &std::fs::Metadata> =
        local.iter().map(|(p, m)| (p.as_slice(), m)).collect();
    for entry in &manifest.entries {
        let path = root.join(OsStr::from_bytes(&entry.path));
        match &entry.kind {
            EntryKind::Dir => {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                // Owner write access while filling it; the mode is set at the end.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            }
            EntryKind::File {
                size,
                mtime_ns: mtime,
                chunks,
            } => {
                let same = local.get(entry.path.as_slice()).is_some_and(|m| {
                    m.is_file()
                        && m.len() == *size
                        && mtime_ns(m) == *mtime
                        && m.permissions().mode() & 0o7777 == entry.mode
                });
                if same {
                    done.unchanged += 1;
                    continue;
                }
                write_file(&path, entry.mode, *mtime, chunks, blobs)?;
                done.written += 1;
            }
            EntryKind::Symlink { target } => {
                if local.contains_key(entry.path.as_slice())
                    && std::fs::read_link(&path)
                        .is_ok_and(|t| t.as_os_str().as_bytes() == target.as_slice())
                {
                    done.unchanged += 1;
                    continue;
                }
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)?;
                done.written += 1;
            }
        }
    }
    for entry in manifest.entries.iter().rev() {
        if entry.kind == EntryKind::Dir {
            let path = root.join(OsStr::from_bytes(&entry.path));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))?;
        }
    }
    Ok(done)
}

/// Every entry under `root` (symlinks not followed), sorted by path.
fn list_local(root: &Path) -> io::Result<BTreeMap<Vec<u8>, std::fs::Metadata>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(OsStr::from_bytes(&rel));
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(entry.file_name().as_bytes());
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                stack.push(child.clone());
            }
            out.insert(child, meta);
        }
    }
    Ok(out)
}

fn write_file(
    path: &Path,
    mode: u32,
    mtime_ns: u64,
    chunks: &[ChunkHash],
    blobs: &BlobStore,
) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path has no parent"))?;
    let tmp = parent.join(format!(".shoal-restore-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        for hash in chunks {
            let chunk = blobs.get(hash)?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("chunk {hash} is missing"))
            })?;
            file.write_all(&chunk)?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.set_modified(UNIX_EPOCH + Duration::from_nanos(mtime_ns))?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The chunks of `manifest` that `blobs` does not hold.
pub fn missing_chunks(manifest: &Manifest, blobs: &BlobStore) -> Vec<ChunkHash> {
    let unique: HashSet<ChunkHash> = manifest.chunks().copied().collect();
    let unique: Vec<ChunkHash> = unique.into_iter().collect();
    blobs.missing(&unique)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn set_mtime(path: &Path, at: SystemTime) -> io::Result<()> {
        std::fs::File::options()
            .append(true)
            .open(path)?
            .set_modified(at)
    }

    const LIMITS: ScanLimits = ScanLimits {
        entries_max: 1000,
        bytes_max: 64 * 1024 * 1024,
    };

    fn tree(root: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(root.join("work/src"))?;
        std::fs::write(root.join("work/src/main.rs"), "fn main() {}\n")?;
        std::fs::write(root.join("work/big.bin"), vec![7u8; CHUNK_BYTES_MAX + 10])?;
        std::fs::create_dir_all(root.join("homes/c1/.cache"))?;
        std::fs::write(root.join("homes/c1/session.json"), "{}")?;
        std::os::unix::fs::symlink("/etc/passwd", root.join("work/outside"))?;
        std::fs::set_permissions(
            root.join("work/src/main.rs"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        Ok(())
    }

    #[test]
    fn a_scanned_tree_restores_elsewhere_and_rescans_equal() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let a = dir.path().join("a");
        tree(&a)?;
        let first = scan(&a, None, &blobs, LIMITS)?;
        first.manifest.check().map_err(anyhow::Error::msg)?;
        assert_eq!(first.files_read, 3);
        let totals = first.manifest.totals();
        assert_eq!(totals.entries, 9);
        // Symlinks are links, never followed.
        assert!(first.manifest.entries.iter().any(|e| e.kind
            == EntryKind::Symlink {
                target: b"/etc/passwd".to_vec()
            }));

        // Decoding round-trips.
        let decoded = Manifest::decode(&first.manifest.encode()).map_err(anyhow::Error::msg)?;
        assert_eq!(decoded, first.manifest);

        // Restore into a tree holding stale things: they go, the manifest's come.
        let b = dir.path().join("b");
        std::fs::create_dir_all(b.join("work/stale"))?;
        std::fs::write(b.join("work/stale/x"), "old")?;
        std::fs::write(b.join("work/src"), "a file where a directory belongs")?;
        let restored = restore(&b, &first.manifest, &blobs)?;
        assert_eq!(restored.written, 4);
        assert_eq!(
            std::fs::read(b.join("work/src/main.rs"))?,
            b"fn main() {}\n"
        );
        assert!(!b.join("work/stale").exists());
        let again = scan(&b, Some(&first.manifest), &blobs, LIMITS)?;
        assert_eq!(again.manifest, first.manifest, "mode and mtime came along");
        assert_eq!(again.files_read, 0, "an unchanged tree reads nothing");

        // Restoring again changes nothing.
        let noop = restore(&b, &first.manifest, &blobs)?;
        assert_eq!((noop.written, noop.removed), (0, 0));
        Ok(())
    }

    #[test]
    fn an_incremental_scan_reads_only_changed_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let a = dir.path().join("a");
        tree(&a)?;
        let first = scan(&a, None, &blobs, LIMITS)?;
        std::fs::write(a.join("work/src/main.rs"), "fn main() { changed() }\n")?;
        set_mtime(
            &a.join("work/src/main.rs"),
            SystemTime::now() + Duration::from_secs(5),
        )?;
        let second = scan(&a, Some(&first.manifest), &blobs, LIMITS)?;
        assert_eq!(second.files_read, 1);
        assert_ne!(second.manifest, first.manifest);
        Ok(())
    }

    #[test]
    fn limits_stop_a_scan_naming_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = BlobStore::new(dir.path().join("blobs"));
        let a = dir.path().join("a");
        tree(&a)?;
        let few = ScanLimits {
            entries_max: 3,
            ..LIMITS
        };
        let err = scan(&a, None, &blobs, few).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("workspace.snapshot_files_max")));
        let small = ScanLimits {
            bytes_max: 100,
            ..LIMITS
        };
        let err = scan(&a, None, &blobs, small).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("workspace.snapshot_bytes_max")));
        Ok(())
    }

    #[test]
    fn a_manifest_that_would_write_outside_its_tree_is_refused() {
        let file = |path: &str| Entry {
            path: path.as_bytes().to_vec(),
            mode: 0o644,
            kind: EntryKind::File {
                size: 0,
                mtime_ns: 0,
                chunks: Vec::new(),
            },
        };
        let link = Entry {
            path: b"a".to_vec(),
            mode: 0o777,
            kind: EntryKind::Symlink {
                target: b"/etc".to_vec(),
            },
        };
        for entries in [
            vec![file("../x")],
            vec![file("/etc/passwd")],
            vec![file("a/./b")],
            vec![file("a//b")],
            vec![file("b"), file("a")],
            vec![link, file("a/passwd")],
            vec![file("missing-parent/x")],
        ] {
            let manifest = Manifest { entries };
            assert!(manifest.check().is_err(), "{manifest:?} must be refused");
            let dir = tempfile::tempdir().expect("tempdir");
            let blobs = BlobStore::new(dir.path().join("blobs"));
            assert!(restore(&dir.path().join("t"), &manifest, &blobs).is_err());
        }
    }
}
