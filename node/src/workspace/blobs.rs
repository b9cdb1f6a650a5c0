//! The node's blob store: content-addressed chunks of workspace snapshots, one file per
//! chunk under `<data_dir>/blobs/<first two hex digits>/<BLAKE3 hex>`.
//!
//! A chunk is written to a temporary file and renamed into place, so a reader never sees
//! half a chunk; every read checks the hash, so a damaged file (a crash before the data
//! reached the disk) is reported as missing and fetched again rather than restored.
//! Durability comes in bulk: a snapshot stores all its chunks, then [`BlobStore::sync`]s
//! once before anything refers to them; a chunk pushed by a peer is synced before it is
//! acknowledged ([`Durability::Now`]). Chunks are shared
//! by every snapshot that holds the same bytes: a chunk is stored once per node.
//!
//! Garbage collection ([`BlobStore::collect`]) removes chunks no committed manifest on
//! this node refers to, once they are older than a grace period. A chunk a snapshot in
//! progress has just written or asked for ([`BlobStore::missing`] touches the ones it
//! finds) is young, so it survives until its manifest is committed.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Largest chunk, in bytes: files are cut into chunks of this size (the last one
/// shorter). Fits one peer frame with room to spare.
pub const CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// A chunk's BLAKE3 hash: its name in every blob store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    fn from_hex(name: &str) -> Option<Self> {
        blake3::Hash::from_hex(name)
            .ok()
            .map(|h| Self(*h.as_bytes()))
    }
}

impl std::fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// When a stored chunk must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the call returns (a chunk a peer waits to be acknowledged).
    Now,
    /// At the next [`BlobStore::sync`] (a batch, or a copy that can be fetched again).
    Later,
}

/// What one garbage collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Chunks kept (referenced or young).
    pub kept: u64,
    /// Chunks removed.
    pub removed: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
}

/// The blob store under one directory.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The store under `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, hash: &ChunkHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Whether `hash` is stored (its bytes are not checked).
    pub fn contains(&self, hash: &ChunkHash) -> bool {
        self.path(hash).is_file()
    }

    /// Stores `bytes` under their hash (durable at the next [`Self::sync`]);
    /// `Ok(false)` when they were stored already. Blocking: call from a blocking task.
    pub fn put(&self, bytes: &[u8]) -> io::Result<(ChunkHash, bool)> {
        let hash = ChunkHash::of(bytes);
        let new = self.store(&hash, bytes, Durability::Later)?;
        Ok((hash, new))
    }

    /// Stores `bytes` received as `hash`: refused when they do not hash to it.
    pub fn put_expected(
        &self,
        hash: &ChunkHash,
        bytes: &[u8],
        durability: Durability,
    ) -> io::Result<bool> {
        let actual = ChunkHash::of(bytes);
        if actual != *hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("chunk bytes hash to {actual}, not {hash}"),
            ));
        }
        self.store(hash, bytes, durability)
    }

    fn store(&self, hash: &ChunkHash, bytes: &[u8], durability: Durability) -> io::Result<bool> {
        let path = self.path(hash);
        if path.is_file() {
            touch(&path);
            if durability == Durability::Now {
                // It may have been written unsynced: make sure before acknowledging.
                std::fs::File::open(&path)?.sync_all()?;
            }
            return Ok(false);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let mut tmp = tempfile_in(parent)?;
        tmp.1.write_all(bytes)?;
        if durability == Durability::Now {
            tmp.1.sync_all()?;
        }
        std::fs::rename(&tmp.0, &path)?;
        if durability == Durability::Now {
            // The rename is durable once the directory is.
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(true)
    }

    /// Makes every chunk written so far durable: one `syncfs` of the store's file
    /// system instead of a sync per chunk.
    pub fn sync(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let dir = std::fs::File::open(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)
    }

    /// The bytes of `hash`; `Ok(None)` when it is not stored or its file is damaged (it
    /// is then removed, so it is fetched again).
    pub fn get(&self, hash: &ChunkHash) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if ChunkHash::of(&bytes) != *hash {
            tracing::warn!(chunk = %hash, path = %path.display(), "stored chunk is damaged; removing it");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Which of `hashes` are not stored. The stored ones are touched, so a collection
    /// running before their manifest commits leaves them alone.
    pub fn missing(&self, hashes: &[ChunkHash]) -> Vec<ChunkHash> {
        hashes
            .iter()
            .filter(|hash| {
                let path = self.path(hash);
                if path.is_file() {
                    touch(&path);
                    false
                } else {
                    true
                }
            })
            .copied()
            .collect()
    }

    /// Removes every chunk not in `referenced` whose file is older than `grace`.
    /// Blocking.
    pub fn collect(
        &self,
        referenced: &HashSet<ChunkHash>,
        grace: Duration,
    ) -> io::Result<Collected> {
        let mut done = Collected::default();
        let now = SystemTime::now();
        let fans = match std::fs::read_dir(&self.dir) {
            Ok(fans) => fans,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(done),
            Err(e) => return Err(e),
        };
        for fan in fans {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(hash) = name.to_str().and_then(ChunkHash::from_hex) else {
                    // A temporary file of a write that died: old ones go too.
                    remove_if_older(&entry.path(), now, grace, &mut done);
                    continue;
                };
                if referenced.contains(&hash) {
                    done.kept += 1;
                } else {
                    remove_if_older(&entry.path(), now, grace, &mut done);
                }
            }
        }
        Ok(done)
    }
}

fn remove_if_older(path: &Path, now: SystemTime, grace: Duration, done: &mut Collected) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or_default();
    if age < grace {
        done.kept += 1;
        return;
    }
    if std::fs::remove_file(path).is_ok() {
        done.removed += 1;
        done.removed_bytes += meta.len();
    }
}

/// Sets a file's modification time to now (best effort).
pub(crate) fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A new temporary file in `dir`, named so collection can recognise and remove it.
fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let path = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
        match std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot create a temporary chunk file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_stored_once_checked_on_read_and_collected_when_unreferenced() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::new(dir.path().join("blobs"));
        let (a, new) = store.put(b"alpha")?;
        assert!(new);
        let (again, new) = store.put(b"alpha")?;
        assert_eq!((again, new), (a, false), "the same bytes are stored once");
        let (b, _) = store.put(b"beta")?;
        assert_eq!(store.get(&a)?.as_deref(), Some(&b"alpha"[..]));
        assert_eq!(
            store.missing(&[a, ChunkHash::of(b"gamma")]),
            [ChunkHash::of(b"gamma")]
        );

        // Bytes that do not hash to the name are refused.
        assert!(
            store
                .put_expected(&a, b"not alpha", Durability::Now)
                .is_err()
        );
        assert!(store.put_expected(&a, b"alpha", Durability::Now).is_ok());
        store.sync()?;

        // A damaged file reads as missing and is removed.
        std::fs::write(store.path(&b), b"bit rot")?;
        assert_eq!(store.get(&b)?, None);
        assert!(!store.contains(&b));

        // Young unreferenced chunks stay; old ones go; referenced ones always stay.
        let (c, _) = store.put(b"gamma")?;
        let referenced = HashSet::from([a]);
        let kept = store.collect(&referenced, Duration::from_secs(3600))?;
        assert_eq!((kept.kept, kept.removed), (2, 0));
        let swept = store.collect(&referenced, Duration::ZERO)?;
        assert_eq!((swept.kept, swept.removed), (1, 1));
        assert!(store.contains(&a));
        assert!(!store.contains(&c));
        Ok(())
    }
}
