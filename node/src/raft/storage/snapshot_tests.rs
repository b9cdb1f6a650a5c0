//! Snapshots on disk: built and installed as streamed files, never one sled value;
//! crash-safe installs; damaged files refused; snapshots of older versions converted.

use super::*;
use openraft::{CommittedLeaderId, Membership};
use std::collections::{BTreeMap, BTreeSet};
use tokio::io::AsyncReadExt;

const SHARD: ShardId = ShardId(0);

fn open_store(dir: &Path) -> Arc<Store> {
    Store::open(dir, 1).unwrap()
}

/// A state machine at applied index 9 whose state holds `values` values of `value_bytes`
/// each.
async fn filled(store: &Arc<Store>, values: u32, value_bytes: usize) -> StateMachineStore {
    let (_, mut sm) = open(store, SHARD).unwrap();
    let membership = Membership::new(vec![BTreeSet::from([1u64])], None);
    let entry = Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(2, 1), 9),
        payload: EntryPayload::Membership(membership),
    };
    sm.apply([entry]).await.unwrap();
    let tree = store.shard_tree(SHARD).unwrap();
    for i in 0..values {
        tree.insert(format!("k{i:06}"), vec![(i % 251) as u8; value_bytes])
            .unwrap();
    }
    sm
}

/// The state-machine pairs of `store`'s shard, reserved keys included but for the
/// last apply's redo record (scratch of this replica's applies, not state).
fn state_of(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .shard_tree(SHARD)
        .unwrap()
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .filter(|(k, _)| k != super::redo::REDO_KEY)
        .collect()
}

/// The files in the snapshot directory of shard 0 of the store at `dir`.
fn snapshot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("raft-snapshots/shard-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn largest_meta_value(store: &Store) -> usize {
    let trees = Trees::open(store, SHARD).unwrap();
    trees
        .meta
        .iter()
        .map(|kv| kv.unwrap().1.len())
        .max()
        .unwrap_or(0)
}

async fn read_all(snapshot: &mut Snapshot<TypeConfig>) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Before streamed snapshots, a build copied the whole state into memory and stored it
/// as one sled value in the meta tree. Now the data is a file, and the meta tree holds
/// only a small pointer.
#[tokio::test]
async fn a_snapshot_is_a_file_not_a_sled_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // 8 MiB of state.
    let mut sm = filled(&store, 128, 64 * 1024).await;
    let mut built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(9));
    assert!(
        largest_meta_value(&store) < 4096,
        "the meta tree holds a value of {} bytes",
        largest_meta_value(&store)
    );
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".snap"), "{files:?}");
    assert!(read_all(&mut built).await.len() > 8 * 1024 * 1024);

    // A second build replaces the first file.
    let second = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, second.meta);
    assert_eq!(
        snapshot_files(dir.path()).len(),
        1,
        "the replaced snapshot file was removed"
    );
}

/// A snapshot sent in chunks into a receiving part file installs the sender's state
/// exactly, replacing what the receiver had, and becomes its current snapshot.
#[tokio::test]
async fn a_snapshot_received_in_chunks_installs_the_senders_state() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sender, receiver) = (open_store(a.path()), open_store(b.path()));
    let mut sm_a = filled(&sender, 300, 10 * 1024).await;
    let mut sm_b = filled(&receiver, 5, 10).await;
    receiver
        .shard_tree(SHARD)
        .unwrap()
        .insert("stale", "x")
        .unwrap();
    let (meta, _) = transfer(&mut sm_a, &mut sm_b, 64 * 1024).await;
    assert_eq!(state_of(&receiver), state_of(&sender));
    assert_eq!(
        sm_b.applied_state().await.unwrap(),
        sm_a.applied_state().await.unwrap()
    );
    let current = sm_b.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, meta);
}

/// Builds `from`'s snapshot and installs it on `to`, written in pieces of `chunk`
/// bytes: the snapshot's meta and size.
async fn transfer(
    from: &mut StateMachineStore,
    to: &mut StateMachineStore,
    chunk: usize,
) -> (openraft::SnapshotMeta<u64, PeerNode>, usize) {
    let mut built = from
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let bytes = read_all(&mut built).await;
    let mut part = to.begin_receiving_snapshot().await.unwrap();
    for piece in bytes.chunks(chunk) {
        tokio::io::AsyncWriteExt::write_all(&mut *part, piece)
            .await
            .unwrap();
    }
    to.install_snapshot(&built.meta, part).await.unwrap();
    (built.meta, bytes.len())
}

/// A closed span: its name, and its fields as text.
type Closed = (String, BTreeMap<String, String>);

/// Closed spans as a test subscriber saw them.
#[derive(Clone, Default)]
struct ClosedSpans(Arc<Mutex<Vec<Closed>>>);

/// A span's fields so far (kept in its extensions until it closes).
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for ClosedSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span.extensions_mut().remove::<Fields>().unwrap_or_default();
            let mut closed = self.0.lock().unwrap();
            closed.push((span.name().to_owned(), fields.0));
        }
    }
}

/// An install is a `snapshot.install` span naming the shard, the snapshot's last log
/// index, its size in bytes and its records (no keys or values).
#[tokio::test]
async fn an_install_is_a_span_with_its_shard_index_and_size() {
    use tracing_subscriber::layer::SubscriberExt;
    let closed = ClosedSpans::default();
    // At INFO, as nodes run: tokio's TRACE task spans would keep their parents open.
    let subscriber = tracing_subscriber::registry()
        .with(closed.clone())
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sender, receiver) = (open_store(a.path()), open_store(b.path()));
    let mut sm_a = filled(&sender, 40, 100).await;
    let mut sm_b = filled(&receiver, 5, 10).await;
    let (_, bytes) = transfer(&mut sm_a, &mut sm_b, usize::MAX).await;

    let closed = closed.0.lock().unwrap().clone();
    let installs: Vec<_> = closed
        .iter()
        .filter(|(name, _)| name == "snapshot.install")
        .collect();
    assert_eq!(installs.len(), 1, "{closed:?}");
    let fields = &installs[0].1;
    let expected = BTreeMap::from([
        ("shard".to_owned(), "0".to_owned()),
        ("index".to_owned(), "9".to_owned()),
        ("bytes".to_owned(), bytes.to_string()),
        ("records".to_owned(), "40".to_owned()),
    ]);
    assert_eq!(fields, &expected);
}

/// A damaged transfer is refused whole: the receiver's state is untouched, and the part
/// file is gone.
#[tokio::test]
async fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sender, receiver) = (open_store(a.path()), open_store(b.path()));
    let mut sm_a = filled(&sender, 50, 1024).await;
    let mut sm_b = filled(&receiver, 5, 10).await;
    let before = state_of(&receiver);
    let mut built = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = read_all(&mut built).await;
    bytes.truncate(bytes.len() - 100);
    let mut part = sm_b.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *part, &bytes)
        .await
        .unwrap();
    let err = sm_b.install_snapshot(&built.meta, part).await.unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert_eq!(state_of(&receiver), before);
    assert!(sm_b.get_current_snapshot().await.unwrap().is_none());
    assert_eq!(
        snapshot_files(b.path()),
        Vec::<String>::new(),
        "the refused part file was removed"
    );
}

/// A stop in the middle of an install (state half replaced) is finished when the store
/// is opened again: the state is the snapshot's, the snapshot is current.
#[tokio::test]
async fn an_interrupted_install_is_finished_at_open() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sender = open_store(a.path());
    let mut sm_a = filled(&sender, 200, 2048).await;
    let built = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let sender_file = {
        let trees = Trees::open(&sender, SHARD).unwrap();
        let (_, name): SnapshotPointer = get(&trees.meta, CURRENT_SNAPSHOT_KEY).unwrap().unwrap();
        trees.snapshots.file(&name)
    };
    {
        let receiver = open_store(b.path());
        let _ = filled(&receiver, 10, 10).await;
        let trees = Trees::open(&receiver, SHARD).unwrap();
        // What `install_from` does before the state is replaced...
        let name = trees
            .snapshots
            .commit(&{
                let copy = trees.snapshots.new_part();
                std::fs::copy(&sender_file, &copy).unwrap();
                copy
            })
            .unwrap();
        put(&trees.meta, INSTALLING_SNAPSHOT_KEY, &(&built.meta, &name)).unwrap();
        // ...then the stop, halfway through replacing the state.
        trees.state.clear().unwrap();
        trees.state.insert("k000001", "half").unwrap();
        receiver.db().flush().unwrap();
    }
    let receiver = open_store(b.path());
    let (_, mut sm_b) = open(&receiver, SHARD).unwrap();
    assert_eq!(state_of(&receiver), state_of(&sender));
    let current = sm_b.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);
    let trees = Trees::open(&receiver, SHARD).unwrap();
    assert!(trees.meta.get(INSTALLING_SNAPSHOT_KEY).unwrap().is_none());
}

/// A store written by a version that kept the snapshot in one sled value still serves
/// that snapshot after the upgrade (as a file), and the old value is gone.
#[tokio::test]
async fn a_snapshot_stored_by_an_older_version_is_converted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"a".to_vec(), b"1".to_vec()),
        (b"b".to_vec(), b"2".to_vec()),
    ];
    let meta = SnapshotMeta::<u64, PeerNode> {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 4)),
        last_membership: StoredMembership::default(),
        snapshot_id: "1-4-legacy".into(),
    };
    {
        let store = open_store(dir.path());
        let trees = Trees::open(&store, SHARD).unwrap();
        put(
            &trees.meta,
            LEGACY_SNAPSHOT_KEY,
            &(&meta, encode(&pairs).unwrap()),
        )
        .unwrap();
        store.db().flush().unwrap();
    }
    let store = open_store(dir.path());
    let (_, mut sm) = open(&store, SHARD).unwrap();
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, meta);
    let trees = Trees::open(&store, SHARD).unwrap();
    assert!(trees.meta.get(LEGACY_SNAPSHOT_KEY).unwrap().is_none());
    let (_, name): SnapshotPointer = get(&trees.meta, CURRENT_SNAPSHOT_KEY).unwrap().unwrap();
    let mut reader = snapshot_file::Reader::open(&trees.snapshots.file(&name)).unwrap();
    let mut back = Vec::new();
    while let Some(pair) = reader.next_record().unwrap() {
        back.push(pair);
    }
    assert_eq!(back, pairs);
}
