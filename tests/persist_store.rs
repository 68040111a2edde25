//! The stores themselves: what was put is got back, across reopening; the byte budget is kept by
//! least-recently-used eviction, where a read counts as a use; a batch is one transaction; a
//! record being read is never torn or removed under the reader; the counters add up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use compiler_caching::{ArtifactStore, MemoryStore, RecordKey, RedbOptions, RedbStore};

fn key(i: u32) -> RecordKey {
    let mut key = [0xa5; 32];
    key[..4].copy_from_slice(&i.to_le_bytes());
    RecordKey(key)
}

fn record(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

/// Each store under test, fresh, with `budget` bytes, and a way to reopen it (the same store
/// for memory).
fn stores(budget: u64) -> Vec<(Arc<dyn ArtifactStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions {
        byte_budget: budget,
        ..RedbOptions::default()
    };
    let redb = RedbStore::open(dir.path().join("s.redb"), options).unwrap();
    vec![
        (
            Arc::new(MemoryStore::with_budget(budget)),
            tempfile::tempdir().unwrap(),
        ),
        (Arc::new(redb), dir),
    ]
}

#[test]
fn what_is_put_is_got_back_replaced_and_removed() {
    for (store, _dir) in stores(u64::MAX) {
        assert_eq!(store.get(&key(1)).unwrap(), None);
        store.put(&key(1), b"one").unwrap();
        store.put(&key(2), b"two").unwrap();
        assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"one"[..]));
        store.put(&key(1), b"uno").unwrap();
        assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"uno"[..]));
        store.remove(&key(2)).unwrap();
        store.remove(&key(3)).unwrap(); // absent: nothing to do
        assert_eq!(store.get(&key(2)).unwrap(), None);
        let s = store.stats();
        assert_eq!(
            (s.gets, s.hits, s.puts, s.removes),
            (4, 2, 3, 1),
            "{store:?}"
        );
        assert_eq!((s.records, s.bytes), (1, 3 + 32));
    }
}

#[test]
fn the_budget_is_kept_by_evicting_the_least_recently_used() {
    for (store, _dir) in stores(4 * (100 + 32)) {
        for i in 0..4 {
            store.put(&key(i), &record(i, 100)).unwrap();
        }
        // Reading 0 makes it the most recently used: 1 is now the oldest.
        assert!(store.get(&key(0)).unwrap().is_some());
        store.put(&key(4), &record(4, 100)).unwrap();
        assert_eq!(store.get(&key(1)).unwrap(), None, "{store:?}");
        for i in [0, 2, 3, 4] {
            assert_eq!(store.get(&key(i)).unwrap(), Some(record(i, 100)), "{i}");
        }
        // A larger record pushes out as many as it needs, oldest first: 0 was read before 2, 3
        // and 4 were (above), so 0 and 2 go.
        store.put(&key(5), &record(5, 200)).unwrap();
        assert_eq!(store.get(&key(0)).unwrap(), None);
        assert_eq!(store.get(&key(2)).unwrap(), None);
        let s = store.stats();
        assert_eq!((s.evictions, s.records), (3, 3), "{store:?}");
        assert!(s.bytes <= 4 * 132);
    }
}

#[test]
fn a_batch_is_written_whole_and_never_evicts_its_own_records() {
    for (store, _dir) in stores(3 * (100 + 32)) {
        store.put(&key(9), &record(9, 100)).unwrap();
        let batch: Vec<_> = (0..3).map(|i| (key(i), record(i, 100))).collect();
        store.put_batch(&batch).unwrap();
        assert_eq!(store.get(&key(9)).unwrap(), None);
        for i in 0..3 {
            assert_eq!(store.get(&key(i)).unwrap(), Some(record(i, 100)));
        }
        // The last write of a key in a batch wins.
        store
            .put_batch(&[(key(0), b"a".to_vec()), (key(0), b"b".to_vec())])
            .unwrap();
        assert_eq!(store.get(&key(0)).unwrap().as_deref(), Some(&b"b"[..]));
    }
}

#[test]
fn records_and_their_recency_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let options = RedbOptions {
        byte_budget: 3 * (100 + 32),
        ..RedbOptions::default()
    };
    {
        let store = RedbStore::open(&path, options.clone()).unwrap();
        for i in 0..3 {
            store.put(&key(i), &record(i, 100)).unwrap();
        }
        // Read, then closed: the read is written when the store is dropped.
        store.get(&key(0)).unwrap();
    }
    let store = RedbStore::open(&path, options).unwrap();
    assert_eq!(store.stats().records, 3);
    assert_eq!(store.stats().bytes, 3 * 132);
    store.put(&key(3), &record(3, 100)).unwrap();
    // 1 was the least recently used (0 was read after it was written).
    assert_eq!(store.get(&key(1)).unwrap(), None);
    assert_eq!(store.get(&key(0)).unwrap(), Some(record(0, 100)));
}

#[test]
fn many_reads_without_a_write_keep_their_recency() {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions {
        byte_budget: 10_000 * (8 + 32),
        ..RedbOptions::default()
    };
    let store = RedbStore::open(dir.path().join("s.redb"), options).unwrap();
    let batch: Vec<_> = (0..10_000).map(|i| (key(i), record(i, 8))).collect();
    store.put_batch(&batch).unwrap();
    // More distinct reads than are kept in memory before they are written (8192): all of the
    // first 9000.
    for i in 0..9000 {
        store.get(&key(i)).unwrap().unwrap();
    }
    store.put(&key(50_000), &record(50_000, 8)).unwrap();
    // The one evicted is the oldest not read: 9000.
    assert_eq!(store.get(&key(9000)).unwrap(), None);
    assert!(store.get(&key(0)).unwrap().is_some());
    assert_eq!(store.stats().evictions, 1);
}

#[test]
fn a_read_is_never_torn_under_concurrent_eviction() {
    for (store, _dir) in stores(8 * (4096 + 32)) {
        store.put(&key(0), &record(0, 4096)).unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut found = 0;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Whatever eviction does meanwhile, a read returns a whole record or none.
                    i = (i + 1) % 200;
                    if let Some(bytes) = store.get(&key(i)).unwrap() {
                        assert_eq!(bytes, record(i, 4096));
                        found += 1;
                    }
                }
                found
            });
            for i in 1..200 {
                store.put(&key(i), &record(i, 4096)).unwrap();
                assert!(store.stats().bytes <= 8 * (4096 + 32));
            }
            stop.store(true, Ordering::Relaxed);
            reader.join().unwrap();
        });
        let s = store.stats();
        assert!(s.evictions >= 190, "{s:?}");
        assert_eq!(s.errors, 0);
    }
}
