//! A shard snapshot as a file on disk. It is built by streaming the state tree to the
//! file off the async worker threads, sent by openraft in chunks
//! ([`super::SNAPSHOT_CHUNK_BYTES_MAX`]), received chunk by chunk into a part file and
//! installed record by record. No snapshot is ever held whole
//! in memory or in one sled value, so a shard's size is bounded by the disk, not by RAM.
//!
//! Format (version 1):
//!
//! ```text
//! MAGIC (8 bytes) ‖ version u32 LE ‖ record* ‖ END u32 LE ‖ record count u64 LE ‖ BLAKE3 (32 bytes)
//! record = key length u32 LE ‖ key ‖ value length u32 LE ‖ value
//! ```
//!
//! The hash covers every byte before it. A file that is truncated, has bytes after the
//! hash, a wrong count or a wrong hash is refused by [`verify`] before anything is
//! installed.
//!
//! Files live in `<store>/raft-snapshots/shard-N/` ([`SnapshotDir`]): the current
//! snapshot `snap-<random>.snap`, and `*.part` files while one is built or received
//! (removed when dropped unfinished, and at start).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

const MAGIC: &[u8; 8] = b"SHOALSNP";
const VERSION: u32 = 1;
/// The length word that ends the records.
const END: u32 = u32::MAX;
/// The largest key or value a record may hold: far above anything the state machine
/// writes (a value is bounded by one log entry), low enough that a damaged length cannot
/// make a reader allocate gigabytes.
pub const RECORD_BYTES_MAX: u32 = 256 * 1024 * 1024;
/// Buffer of the file reader and writer.
const IO_BUFFER_BYTES: usize = 256 * 1024;

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot file {} is damaged: {what}", path.display()),
    )
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn record_len(path: &Path, len: usize) -> io::Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|l| *l <= RECORD_BYTES_MAX)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a key or value of {len} bytes does not fit a snapshot record ({RECORD_BYTES_MAX} at most); writing {}",
                    path.display()
                ),
            )
        })
}

/// Writes `pairs` to a new file at `path` (which must not exist). Returns the number of
/// records. Not yet durable: [`SnapshotDir::commit`] syncs it (outside the state lock
/// the build holds while it reads).
pub fn write<K, V, E>(
    path: &Path,
    pairs: impl IntoIterator<Item = Result<(K, V), E>>,
) -> io::Result<u64>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(IO_BUFFER_BYTES, file),
        hasher: blake3::Hasher::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    let mut records = 0u64;
    for pair in pairs {
        let (key, value) = pair.map_err(|e| io::Error::other(format!("reading the state: {e}")))?;
        for part in [key.as_ref(), value.as_ref()] {
            out.write_all(&record_len(path, part.len())?.to_le_bytes())?;
            out.write_all(part)?;
        }
        records += 1;
    }
    out.write_all(&END.to_le_bytes())?;
    out.write_all(&records.to_le_bytes())?;
    let hash = out.hasher.finalize();
    let mut inner = out.inner;
    inner.write_all(hash.as_bytes())?;
    inner.into_inner().map_err(|e| e.into_error())?;
    Ok(records)
}

/// Reads a snapshot file's records in order, checking its framing, count and hash.
pub struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    hasher: blake3::Hasher,
    records: u64,
    done: bool,
}

impl Reader {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let mut reader = Reader {
            path: path.to_owned(),
            inner: BufReader::with_capacity(IO_BUFFER_BYTES, file),
            hasher: blake3::Hasher::new(),
            records: 0,
            done: false,
        };
        let mut magic = [0u8; 8];
        reader.read_hashed(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid(path, "it does not start with the snapshot magic"));
        }
        let version = reader.read_u32()?;
        if version != VERSION {
            return Err(invalid(
                path,
                format_args!("format version {version}, this node reads {VERSION}"),
            ));
        }
        Ok(reader)
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid(&self.path, "it is truncated"),
            _ => e,
        })?;
        self.hasher.update(buf);
        Ok(())
    }

    fn read_u32(&mut self) -> io::Result<u32> {
        let mut word = [0u8; 4];
        self.read_hashed(&mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    fn read_part(&mut self, len: u32) -> io::Result<Vec<u8>> {
        if len > RECORD_BYTES_MAX {
            return Err(invalid(
                &self.path,
                format_args!("a record claims {len} bytes ({RECORD_BYTES_MAX} at most)"),
            ));
        }
        let mut part = vec![0u8; len as usize];
        self.read_hashed(&mut part)?;
        Ok(part)
    }

    /// The next record; `None` after the last one, once the count, the hash and the end of
    /// the file were checked.
    pub fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        let len = self.read_u32()?;
        if len == END {
            let mut count = [0u8; 8];
            self.read_hashed(&mut count)?;
            let count = u64::from_le_bytes(count);
            if count != self.records {
                return Err(invalid(
                    &self.path,
                    format_args!(
                        "it holds {} records, its trailer says {count}",
                        self.records
                    ),
                ));
            }
            let mut hash = [0u8; 32];
            self.inner
                .read_exact(&mut hash)
                .map_err(|_| invalid(&self.path, "it is truncated in its hash"))?;
            if self.hasher.finalize() != blake3::Hash::from_bytes(hash) {
                return Err(invalid(&self.path, "its hash does not match its contents"));
            }
            let mut rest = [0u8; 1];
            if self.inner.read(&mut rest)? != 0 {
                return Err(invalid(&self.path, "bytes follow its hash"));
            }
            self.done = true;
            return Ok(None);
        }
        let key = self.read_part(len)?;
        let value_len = self.read_u32()?;
        let value = self.read_part(value_len)?;
        self.records += 1;
        Ok(Some((key, value)))
    }
}

/// Reads all of `path`, checking it. Returns the number of records.
pub fn verify(path: &Path) -> io::Result<u64> {
    let mut reader = Reader::open(path)?;
    let mut records = 0;
    while reader.next_record()?.is_some() {
        records += 1;
    }
    Ok(records)
}

/// Replaces everything in `tree` with the records of the (verified) file at `path`,
/// one key at a time (the node makes no sled batches: `storage/redo.rs` says why).
/// Not atomic: callers mark the install as under way first and redo it after a crash
/// (the file is kept).
pub fn load_into(path: &Path, tree: &sled::Tree) -> io::Result<u64> {
    let sled_err = |e: sled::Error| io::Error::other(format!("writing the state: {e}"));
    let mut reader = Reader::open(path)?;
    tree.clear().map_err(sled_err)?;
    let mut records = 0;
    while let Some((key, value)) = reader.next_record()? {
        tree.insert(key, value).map_err(sled_err)?;
        records += 1;
    }
    Ok(records)
}

/// The snapshot directory of one shard.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    path: PathBuf,
}

/// Suffix of a file being built or received.
const PART_SUFFIX: &str = ".part";
/// Suffix of a complete snapshot file.
const SNAP_SUFFIX: &str = ".snap";

impl SnapshotDir {
    /// `<store>/raft-snapshots/shard-<shard>`, created if missing.
    pub fn open(store_dir: &Path, shard: u16) -> io::Result<Self> {
        let path = store_dir
            .join("raft-snapshots")
            .join(format!("shard-{shard}"));
        std::fs::create_dir_all(&path)?;
        Ok(SnapshotDir { path })
    }

    /// The path of the snapshot file `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A path for a new part file (not created).
    pub fn new_part(&self) -> PathBuf {
        self.path
            .join(format!("{:016x}{PART_SUFFIX}", rand::random::<u64>()))
    }

    /// Moves the finished part file `part` (or copies a file from elsewhere) into this
    /// directory as a complete snapshot, durably. Returns its name.
    pub fn commit(&self, part: &Path) -> io::Result<String> {
        let name = format!("snap-{:016x}{SNAP_SUFFIX}", rand::random::<u64>());
        let target = self.path.join(&name);
        if part.parent() == Some(self.path.as_path()) {
            File::open(part)?.sync_all()?;
            std::fs::rename(part, &target)?;
        } else {
            let tmp = self.new_part();
            std::fs::copy(part, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &target)?;
        }
        File::open(&self.path)?.sync_all()?;
        Ok(name)
    }

    /// Removes every file here but `keep`: part files left by a crash and snapshots no
    /// longer referenced.
    pub fn remove_all_but(&self, keep: &[&str]) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.ends_with(PART_SUFFIX) || name.ends_with(SNAP_SUFFIX);
            if ours && !keep.contains(&name.as_ref()) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes `path` if it is a file of this directory (a refused part file).
    pub fn discard(&self, path: &Path) {
        if path.parent() == Some(self.path.as_path()) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes the snapshot `name` (a missing file is not an error).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.file(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// openraft's snapshot data: an open snapshot file.
///
/// Its I/O runs on tokio's blocking pool (`tokio::fs::File`), or on the calling task when
/// the store blocks inline (the deterministic simulation, [`crate::seam`]). A part file
/// (being received) is removed when dropped before it was installed.
pub struct SnapshotFile {
    path: PathBuf,
    io: FileIo,
    /// A part file of ours: removed on drop unless [`Self::into_part`] took it.
    part: bool,
}

enum FileIo {
    Pool(tokio::fs::File),
    Inline {
        file: File,
        seeked: Option<io::Result<u64>>,
    },
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFile")
            .field("path", &self.path)
            .field("part", &self.part)
            .finish()
    }
}

impl SnapshotFile {
    fn wrap(file: File, path: PathBuf, inline: bool, part: bool) -> Self {
        let io = if inline {
            FileIo::Inline { file, seeked: None }
        } else {
            FileIo::Pool(tokio::fs::File::from_std(file))
        };
        SnapshotFile { path, io, part }
    }

    /// Opens the complete snapshot at `path` for reading.
    pub fn open(path: PathBuf, inline: bool) -> io::Result<Self> {
        let file = File::open(&path)?;
        Ok(Self::wrap(file, path, inline, false))
    }

    /// Creates the part file `path` to receive a snapshot into.
    pub fn create_part(path: PathBuf, inline: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self::wrap(file, path, inline, true))
    }

    /// Writes out what was received and makes it durable. Returns the file's path; a
    /// part file is no longer removed on drop (the caller owns it now).
    pub async fn into_part(mut self) -> io::Result<PathBuf> {
        if self.part {
            match &mut self.io {
                FileIo::Pool(file) => {
                    tokio::io::AsyncWriteExt::flush(file).await?;
                    file.sync_all().await?;
                }
                FileIo::Inline { file, .. } => file.sync_all()?,
            }
        }
        self.part = false;
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.part {
            // Best effort: a leftover part file is removed at the next start.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).poll_read(cx, buf),
            FileIo::Inline { file, .. } => {
                let n = file.read(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).poll_write(cx, buf),
            FileIo::Inline { file, .. } => Poll::Ready(file.write(buf)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).poll_flush(cx),
            FileIo::Inline { file, .. } => Poll::Ready(file.flush()),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).poll_shutdown(cx),
            FileIo::Inline { file, .. } => Poll::Ready(file.flush()),
        }
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).start_seek(position),
            FileIo::Inline { file, seeked } => {
                *seeked = Some(file.seek(position));
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match &mut self.get_mut().io {
            FileIo::Pool(file) => Pin::new(file).poll_complete(cx),
            FileIo::Inline { file, seeked } => {
                Poll::Ready(seeked.take().unwrap_or_else(|| file.stream_position()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as the state tree's iterator yields them.
    type Records = Vec<Result<(Vec<u8>, Vec<u8>), String>>;

    fn pairs(n: u32) -> Records {
        (0..n)
            .map(|i| {
                Ok((
                    format!("key-{i:05}").into_bytes(),
                    vec![i as u8; i as usize % 300],
                ))
            })
            .collect()
    }

    #[test]
    fn a_written_file_reads_back_record_by_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.part");
        assert_eq!(write(&path, pairs(1000)).unwrap(), 1000);
        let mut reader = Reader::open(&path).unwrap();
        let mut back = Vec::new();
        while let Some(pair) = reader.next_record().unwrap() {
            back.push(Ok::<_, String>(pair));
        }
        assert_eq!(back, pairs(1000));
        assert_eq!(verify(&path).unwrap(), 1000);
    }

    /// Every kind of damage is refused by `verify`, and `load_into` changes nothing in the
    /// tree when the file is refused at its header.
    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        write(&good, pairs(50)).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", bytes[..bytes.len() - 40].to_vec()),
            ("truncated in its hash", bytes[..bytes.len() - 5].to_vec()),
            ("bytes follow", [bytes.clone(), vec![0]].concat()),
            ("flipped", {
                let mut b = bytes.clone();
                b[200] ^= 1;
                b
            }),
            ("bad magic", {
                let mut b = bytes.clone();
                b[0] = b'X';
                b
            }),
            ("huge length", {
                let mut b = bytes.clone();
                b[12..16].copy_from_slice(&(RECORD_BYTES_MAX + 1).to_le_bytes());
                b
            }),
        ];
        for (what, damaged) in cases {
            let path = dir.path().join(what.replace(' ', "-"));
            std::fs::write(&path, damaged).unwrap();
            let err = verify(&path).expect_err(what);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
            assert!(err.to_string().contains("is damaged"), "{what}: {err}");
        }
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert("kept", "yes").unwrap();
        assert!(load_into(&dir.path().join("bad-magic"), &tree).is_err());
        assert_eq!(tree.get("kept").unwrap().as_deref(), Some(&b"yes"[..]));
    }

    #[test]
    fn load_replaces_the_tree_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        // Values big enough for several install batches.
        let big: Records = (0..40u32)
            .map(|i| Ok((i.to_be_bytes().to_vec(), vec![7u8; 300 * 1024])))
            .collect();
        write(&path, big).unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert("stale", "x").unwrap();
        assert_eq!(load_into(&path, &tree).unwrap(), 40);
        assert_eq!(tree.len(), 40);
        assert!(tree.get("stale").unwrap().is_none());
    }

    #[test]
    fn the_directory_keeps_only_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path(), 3).unwrap();
        let part = snaps.new_part();
        write(&part, pairs(3)).unwrap();
        let name = snaps.commit(&part).unwrap();
        assert!(!part.exists());
        let stray = snaps.new_part();
        std::fs::write(&stray, b"half").unwrap();
        let old = snaps.commit(&{
            let p = snaps.new_part();
            write(&p, pairs(1)).unwrap();
            p
        });
        snaps.remove_all_but(&[&name]).unwrap();
        assert!(snaps.file(&name).exists());
        assert!(!stray.exists());
        assert!(!snaps.file(&old.unwrap()).exists());
    }

    #[tokio::test]
    async fn an_unfinished_part_file_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = SnapshotDir::open(dir.path(), 0).unwrap();
        for inline in [false, true] {
            let path = snaps.new_part();
            let mut file = SnapshotFile::create_part(path.clone(), inline).unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut file, b"chunk")
                .await
                .unwrap();
            drop(file);
            assert!(!path.exists(), "inline {inline}");
            let path = snaps.new_part();
            let mut file = SnapshotFile::create_part(path.clone(), inline).unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut file, b"chunk")
                .await
                .unwrap();
            let kept = file.into_part().await.unwrap();
            assert_eq!(std::fs::read(&kept).unwrap(), b"chunk", "inline {inline}");
        }
    }
}
