//! Files Shoal manages inside a tree it does not own: written where nobody else wrote,
//! rewritten or removed only while they still hold what Shoal wrote, symlinks never
//! followed. Used for skill-pack files ([`super::packs`]) and agent home templates
//! ([`super::home_template`]).
//!
//! What Shoal wrote is recorded in [`REGISTRY_FILE`] at the root of the tree (path →
//! BLAKE3 of the content), inside the tree so it moves with the workspace snapshot. A
//! file is rewritten or removed only while it is recorded and unchanged; a file a user or
//! an agent made or edited is left alone with a warning. An unreadable registry counts as
//! empty, so nothing is removed.
//!
//! Symlinks are never followed: every path is reached from a descriptor of the root one
//! component at a time with `O_NOFOLLOW` (`openat`, `mkdirat`, `renameat`, `unlinkat`),
//! so an agent swapping a directory for a symlink, even during a sync, cannot make Shoal
//! write or remove anything outside the tree. Registry paths are checked by the caller's
//! [`Layout`] before use. Files are written to a temporary file and renamed into place,
//! so an agent never sees half a file. Blocking I/O: one sync at a time per tree.

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;

/// The registry of the files Shoal wrote, at the root of the managed tree.
pub const REGISTRY_FILE: &str = ".shoal-managed.json";
/// The registry's format version.
const REGISTRY_VERSION: u32 = 1;
/// Largest registry read; a bigger one counts as unreadable.
const REGISTRY_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Flags to open a directory on the way down, never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What a sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Files written (created or rewritten).
    pub written: u64,
    /// Files removed.
    pub removed: u64,
    /// What was skipped or left alone, and why, one sentence each.
    pub warnings: Vec<String>,
}

/// The registry as stored.
#[derive(Serialize, Deserialize)]
pub(crate) struct Registry {
    /// [`REGISTRY_VERSION`].
    pub(crate) version: u32,
    /// Relative path → BLAKE3 hex of the content Shoal wrote there.
    pub(crate) files: BTreeMap<String, String>,
}

/// What a managed tree may hold, as its owner defines it.
pub(crate) trait Layout {
    /// Whether `rel` (from the registry: untrusted) is a path this owner writes.
    fn path_ok(&self, rel: &str) -> bool;
    /// How many leading directories of `rel` are never created, and how many never
    /// removed.
    fn depths(&self, rel: &str) -> (usize, usize);
}

/// Makes the files Shoal manages under `root` match `desired` (relative path →
/// content): writes what is missing or outdated, prunes what is recorded but no longer
/// desired, and saves the registry. Anything wrong with one file is a warning in `out`.
///
/// Fails only when the root cannot be opened or the registry cannot be saved (then the
/// files written so far stay, unrecorded, and a later sync leaves them alone).
pub(crate) fn sync(
    root: &Path,
    desired: &BTreeMap<String, &[u8]>,
    layout: &dyn Layout,
    out: &mut Synced,
) -> io::Result<()> {
    let with = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", root.display()))
    };
    let root_fd = rustix::fs::open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
        .map_err(|e| with(e.into(), "cannot open"))?;
    let (loaded, dirty) = load_registry(&root_fd, layout, &mut out.warnings);
    let mut registry = loaded.clone();
    for (rel, content) in desired {
        if let Err(why) = put(&root_fd, layout, rel, content, &mut registry, out) {
            out.warnings.push(format!("skipped {rel}: {why}"));
        }
    }
    for (rel, recorded) in &loaded {
        if !desired.contains_key(rel) {
            registry.remove(rel);
            if let Err(why) = prune(&root_fd, layout, rel, recorded, out) {
                out.warnings.push(format!("left {rel} alone: {why}"));
            }
        }
    }
    if dirty || registry != loaded {
        save_registry(&root_fd, &registry)
            .map_err(|e| with(e, "cannot save the registry of Shoal's files in"))?;
    }
    Ok(())
}

/// The registry, and whether it must be saved even if nothing else changes (entries
/// were dropped). Unreadable: a warning, and empty.
fn load_registry(
    root: &OwnedFd,
    layout: &dyn Layout,
    warnings: &mut Vec<String>,
) -> (BTreeMap<String, String>, bool) {
    let read = || -> Result<Option<Registry>, String> {
        let mut file = match open_file(root, REGISTRY_FILE).map_err(|e| e.to_string())? {
            Found::Absent => return Ok(None),
            Found::Other => return Err("is not a regular file".to_owned()),
            Found::File(file) => file.take(REGISTRY_BYTES_MAX + 1),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > REGISTRY_BYTES_MAX {
            return Err(format!("is over {REGISTRY_BYTES_MAX} bytes"));
        }
        let registry: Registry =
            serde_json::from_slice(&bytes).map_err(|e| format!("is not valid ({e})"))?;
        if registry.version != REGISTRY_VERSION {
            return Err(format!("has version {}", registry.version));
        }
        Ok(Some(registry))
    };
    let mut files = match read() {
        Ok(registry) => registry.map_or_else(BTreeMap::new, |r| r.files),
        Err(why) => {
            warnings.push(format!(
                "{REGISTRY_FILE} {why}; treating it as empty, so no file Shoal wrote before is updated or removed"
            ));
            return (BTreeMap::new(), false);
        }
    };
    let before = files.len();
    files.retain(|rel, _| {
        let shown: String = rel.chars().take(120).collect();
        let ok = layout.path_ok(rel);
        if !ok {
            warnings.push(format!(
                "dropped {shown:?} from {REGISTRY_FILE}: not a path Shoal writes"
            ));
        }
        ok
    });
    let dirty = files.len() != before;
    (files, dirty)
}

/// Writes the registry, or removes it when empty.
fn save_registry(root: &OwnedFd, files: &BTreeMap<String, String>) -> io::Result<()> {
    if files.is_empty() {
        return match rustix::fs::unlinkat(root, REGISTRY_FILE, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    let registry = Registry {
        version: REGISTRY_VERSION,
        files: files.clone(),
    };
    write_file(root, REGISTRY_FILE, &serde_json::to_vec_pretty(&registry)?)
}

/// Writes one desired file unless someone else's file is in the way.
fn put(
    root: &OwnedFd,
    layout: &dyn Layout,
    rel: &str,
    content: &[u8],
    registry: &mut BTreeMap<String, String>,
    out: &mut Synced,
) -> Result<(), String> {
    let (dirs, name) = split(rel);
    let (create_from, _) = layout.depths(rel);
    let Some(chain) = open_dirs(root, &dirs, create_from)? else {
        return Err("its home directory is gone".to_owned());
    };
    let dir = &chain[chain.len() - 1];
    let hash = blake3::hash(content).to_hex().to_string();
    match open_file(dir, name).map_err(|e| e.to_string())? {
        Found::Absent => {}
        Found::Other => {
            registry.remove(rel);
            return Err("a directory, symlink or special file is there".to_owned());
        }
        Found::File(file) => {
            let recorded = registry.get(rel);
            if recorded.is_none() || recorded != Some(&hash_of(file).map_err(|e| e.to_string())?) {
                registry.remove(rel);
                out.warnings.push(format!(
                    "kept {rel}: it was not written by Shoal or was changed since"
                ));
                return Ok(());
            }
            if recorded == Some(&hash) {
                return Ok(());
            }
        }
    }
    write_file(dir, name, content).map_err(|e| format!("cannot write it: {e}"))?;
    registry.insert(rel.to_owned(), hash);
    out.written += 1;
    Ok(())
}

/// Removes a file Shoal wrote if it still has the recorded content, then the
/// directories that became empty.
fn prune(
    root: &OwnedFd,
    layout: &dyn Layout,
    rel: &str,
    recorded: &str,
    out: &mut Synced,
) -> Result<(), String> {
    let (dirs, name) = split(rel);
    let (_, keep) = layout.depths(rel);
    let Some(chain) = open_dirs(root, &dirs, usize::MAX)? else {
        return Ok(());
    };
    let dir = &chain[chain.len() - 1];
    match open_file(dir, name).map_err(|e| e.to_string())? {
        Found::Absent => return Ok(()),
        Found::Other => return Err("a directory, symlink or special file is there now".to_owned()),
        Found::File(file) => {
            if hash_of(file).map_err(|e| e.to_string())? != recorded {
                out.warnings.push(format!(
                    "kept {rel}: it was changed since Shoal wrote it, so it is yours now"
                ));
                return Ok(());
            }
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::empty())
        .map_err(|e| format!("cannot remove it: {e}"))?;
    out.removed += 1;
    // Fails (and stops) at the first directory that is not empty.
    for i in (keep..dirs.len()).rev() {
        if rustix::fs::unlinkat(&chain[i], dirs[i], AtFlags::REMOVEDIR).is_err() {
            break;
        }
    }
    Ok(())
}

/// A path's directories and file name.
fn split(rel: &str) -> (Vec<&str>, &str) {
    let mut dirs: Vec<&str> = rel.split('/').collect();
    let name = dirs.pop().unwrap_or_default();
    (dirs, name)
}

/// Opens `dirs` one at a time from the root, never through a symlink, giving the root
/// and each directory in turn. A missing directory at index `create_from` or deeper is
/// created; a missing one above it means `None`.
fn open_dirs(
    root: &OwnedFd,
    dirs: &[&str],
    create_from: usize,
) -> Result<Option<Vec<OwnedFd>>, String> {
    let mut chain = vec![root.try_clone().map_err(|e| e.to_string())?];
    for (i, name) in dirs.iter().enumerate() {
        let shown = || dirs[..=i].join("/");
        let cur = &chain[i];
        let opened = match rustix::fs::openat(cur, *name, DIR_FLAGS, Mode::empty()) {
            Err(Errno::NOENT) if i >= create_from => {
                match rustix::fs::mkdirat(cur, *name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(format!("cannot create `{}`: {e}", shown())),
                }
                rustix::fs::openat(cur, *name, DIR_FLAGS, Mode::empty())
            }
            Err(Errno::NOENT) => return Ok(None),
            other => other,
        };
        match opened {
            Ok(fd) => chain.push(fd),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(format!("`{}` is a symlink or not a directory", shown()));
            }
            Err(e) => return Err(format!("cannot open `{}`: {e}", shown())),
        }
    }
    Ok(Some(chain))
}

/// What is at a name in a directory.
enum Found {
    Absent,
    /// A directory, symlink or special file.
    Other,
    /// A regular file, open for reading.
    File(std::fs::File),
}

/// Opens `name` in `dir` for reading if it is a regular file, never following a
/// symlink nor opening anything else (checked again once open, without blocking, in
/// case a pipe was swapped in).
fn open_file(dir: &OwnedFd, name: &str) -> io::Result<Found> {
    let regular = |mode| FileType::from_raw_mode(mode) == FileType::RegularFile;
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if regular(st.st_mode) => {}
        Ok(_) => return Ok(Found::Other),
        Err(Errno::NOENT) => return Ok(Found::Absent),
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) if regular(rustix::fs::fstat(&fd)?.st_mode) => Ok(Found::File(fd.into())),
        Ok(_) | Err(Errno::LOOP) => Ok(Found::Other),
        Err(Errno::NOENT) => Ok(Found::Absent),
        Err(e) => Err(e.into()),
    }
}

/// A file's BLAKE3, hex.
fn hash_of(mut file: std::fs::File) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Writes `name` in `dir` through a new temporary file beside it and a rename, which
/// replaces a file (or a symlink itself, never its target).
fn write_file(dir: &OwnedFd, name: &str, content: &[u8]) -> io::Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let tmp = format!(".shoal-managed-{:016x}.tmp", rand::random::<u64>());
    let fd = rustix::fs::openat(dir, &tmp, flags, Mode::from_raw_mode(0o666))?;
    let result = (|| {
        let mut file = std::fs::File::from(fd);
        file.write_all(content)?;
        drop(file);
        rustix::fs::renameat(dir, &tmp, dir, name)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    }
    result
}
