//! Multi-key writes without sled batches: a redo record, then the writes one by one.
//!
//! sled 0.34 makes `Tree::apply_batch` (and transactions) atomic with one
//! process-wide read-write lock: the batch takes it exclusively, and once any batch
//! has run, every later read and write in the process takes it shared. `Db::flush()`
//! holds it shared for the whole flush, fsync included. So each batch waited for the
//! flush in progress, and every sled access of every shard queued behind that batch,
//! on tokio's worker threads: under load the node's runtime spent its time blocked
//! in sled, not working (docs/PERFORMANCE.md, "Throughput").
//!
//! The node never makes a sled batch or transaction (clippy's `disallowed-methods`
//! refuses them), so that lock is never switched on. Atomicity comes from two
//! properties sled does give:
//! * a single-key write is atomic;
//! * recovery after a crash replays sled's log in order and stops at the first torn
//!   message, so what survives of one thread's writes is a prefix of them.
//!
//! A state-machine apply first writes one redo record (under [`REDO_KEY`])
//! holding every write of the apply, then makes the writes, then the "applied up to"
//! keys. After a crash, [`replay`] makes the writes of the last redo record again:
//! either the record did not survive (then none of the writes after it did), or it
//! did and replaying it completes a torn apply. Replaying a complete one changes
//! nothing: its writes are whole values, not increments.
//!
//! Readers see an apply's writes as they are made, not all at once; a reader making
//! two reads already saw any apply that fell between them.

/// The reserved key of the redo record (under the reserved prefix `0xff`, so never a
/// state-machine key nor part of a snapshot).
pub(super) const REDO_KEY: &[u8] = b"\xffraft/redo";

/// One write: a value, or `None` for a key removed. The redo record is every write of
/// one apply, in the order they are made.
pub(super) type Write = (Vec<u8>, Option<Vec<u8>>);

fn encode(writes: &[Write]) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(writes, bincode::config::standard())
}

/// Writes the redo record of `writes`, then each of them in order. A crash part way is
/// finished by [`replay`] at open.
pub(super) fn write(tree: &sled::Tree, writes: &[Write]) -> Result<(), String> {
    let record = encode(writes).map_err(|e| format!("encoding the redo record: {e}"))?;
    tree.insert(REDO_KEY, record)
        .map_err(|e| format!("writing the redo record: {e}"))?;
    apply(tree, writes)
}

/// Makes `writes` one by one, in order.
pub(super) fn apply(tree: &sled::Tree, writes: &[Write]) -> Result<(), String> {
    for (key, value) in writes {
        match value {
            Some(value) => tree.insert(key.as_slice(), value.as_slice()).map(drop),
            None => tree.remove(key.as_slice()).map(drop),
        }
        .map_err(|e| format!("writing the state: {e}"))?;
    }
    Ok(())
}

/// Makes the writes of the last redo record again (after a crash, some may be
/// missing). Returns how many writes it replayed.
pub(super) fn replay(tree: &sled::Tree) -> Result<usize, String> {
    let Some(bytes) = tree
        .get(REDO_KEY)
        .map_err(|e| format!("reading the redo record: {e}"))?
    else {
        return Ok(0);
    };
    let (writes, _): (Vec<Write>, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
            .map_err(|e| format!("the redo record is damaged: {e}"))?;
    apply(tree, &writes)?;
    Ok(writes.len())
}

/// Removes `keys` from `tree` one by one, in the order given: callers choose the order
/// so that any prefix of it leaves the tree consistent (a log stays contiguous).
pub(super) fn remove_in_order(
    tree: &sled::Tree,
    keys: impl IntoIterator<Item = sled::IVec>,
) -> Result<(), String> {
    for key in keys {
        tree.remove(key)
            .map_err(|e| format!("removing a key: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        (dir, tree)
    }

    fn redo() -> Vec<Write> {
        vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
            (b"c".to_vec(), Some(b"3".to_vec())),
            (super::super::APPLIED_KEY.to_vec(), Some(b"7".to_vec())),
        ]
    }

    fn contents(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|kv| kv.unwrap())
            .filter(|(k, _)| k.as_ref() != REDO_KEY)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// A crash after the redo record and some of the writes (what survives of one
    /// thread's sled writes is a prefix of them): replay finishes the apply.
    #[test]
    fn replay_finishes_an_apply_a_crash_cut_short() {
        let (_dir, whole) = tree();
        whole.insert(b"b", b"old").unwrap();
        write(&whole, &redo()).unwrap();
        let expected = contents(&whole);
        let (_dir, torn) = tree();
        torn.insert(b"b", b"old").unwrap();
        let record = encode(&redo()).unwrap();
        torn.insert(REDO_KEY, record).unwrap();
        apply(&torn, &redo()[..1]).unwrap();
        assert_ne!(contents(&torn), expected, "the torn apply is incomplete");
        assert_eq!(replay(&torn).unwrap(), 4);
        assert_eq!(contents(&torn), expected);
    }

    /// Replaying a complete apply changes nothing, and an empty tree has nothing to
    /// replay.
    #[test]
    fn replay_of_a_complete_apply_changes_nothing() {
        let (_dir, tree) = tree();
        assert_eq!(replay(&tree).unwrap(), 0);
        write(&tree, &redo()).unwrap();
        let before = contents(&tree);
        replay(&tree).unwrap();
        replay(&tree).unwrap();
        assert_eq!(contents(&tree), before);
    }

    /// A damaged redo record is an error naming it, not a panic.
    #[test]
    fn a_damaged_redo_record_is_an_error() {
        let (_dir, tree) = tree();
        tree.insert(REDO_KEY, &[0xff, 0xff, 0xff][..]).unwrap();
        let e = replay(&tree).unwrap_err();
        assert!(e.contains("redo record is damaged"), "{e}");
    }
}
