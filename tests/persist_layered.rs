//! The layered artifact store over in-memory tiers and injected faults: read-through, skipping
//! failing tiers, verification, write-through, and the write-behind queue's bound, order and
//! flushing. (Against a real Redis server: `tests/persist_redis.rs`.)
#![cfg(feature = "persist")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use compiler_caching::persist::{
    ArtifactStore, LayeredOptions, LayeredStore, MemoryStore, RecordKey, StoreError, StoreStats,
    WriteMode,
};
use test_support::threads::{watchdog, Signal};

fn key(n: u8) -> RecordKey {
    RecordKey([n; 32])
}

/// A tier that fails every call while `failing` is set.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryStore,
    failing: AtomicBool,
    calls: AtomicUsize,
}

impl Faulty {
    fn check(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                reason: "injected".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl ArtifactStore for Faulty {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.get(key)
    }
    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put(key, record)
    }
    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        self.check()?;
        self.inner.remove(key)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// A tier whose writes wait at a gate: the first `put_batch` raises `entered` and blocks until
/// the gate opens, so a test knows the writer thread is busy.
#[derive(Default)]
struct Gated {
    inner: MemoryStore,
    entered: Signal,
    open: Mutex<bool>,
    opened: Condvar,
    batches: AtomicUsize,
}

impl Gated {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated").field("inner", &self.inner).finish()
    }
}

impl ArtifactStore for Gated {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        self.put_batch(&[(*key, record.to_vec())])
    }
    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        self.inner.remove(key)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.entered.raise();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        for (k, r) in records {
            self.inner.put(k, r)?;
        }
        Ok(())
    }
}

fn behind(max_records: usize, max_bytes: usize) -> LayeredOptions {
    LayeredOptions {
        write: WriteMode::Behind {
            max_records,
            max_bytes,
        },
        ..LayeredOptions::default()
    }
}

#[test]
fn memory_store_replaces_the_record_of_a_key_and_counts() {
    let store = MemoryStore::new();
    assert_eq!(store.get(&key(1)).unwrap(), None);
    store.put(&key(1), b"first").unwrap();
    // A key names an identity, not a content: a later record of it replaces the earlier one.
    store.put(&key(1), b"second").unwrap();
    assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"second"[..]));
    store.remove(&key(1)).unwrap();
    // Removing what is not there succeeds and removes nothing.
    store.remove(&key(1)).unwrap();
    assert_eq!(store.get(&key(1)).unwrap(), None);
    store.put(&key(2), b"abc").unwrap();
    assert_eq!(
        store.stats(),
        StoreStats {
            gets: 3,
            hits: 1,
            puts: 3,
            removes: 1,
            evictions: 0,
            errors: 0,
            // Each record counts its length and its 32-byte key.
            bytes: 3 + 32,
            records: 1,
        }
    );
    assert_eq!(
        format!("{:?}", key(0xab)),
        format!("RecordKey({})", "ab".repeat(32))
    );
}

#[test]
fn a_hit_in_a_lower_tier_is_copied_into_every_tier_above() {
    let (a, b, c) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
    );
    c.put(&key(1), b"from the bottom").unwrap();
    for write in [WriteMode::Through, behind(16, 1 << 20).write] {
        let store = LayeredStore::new(
            vec![a.clone(), b.clone(), c.clone()],
            LayeredOptions {
                write,
                ..LayeredOptions::default()
            },
        );
        a.remove(&key(1)).unwrap();
        b.remove(&key(1)).unwrap();
        assert_eq!(
            store.get(&key(1)).unwrap().as_deref(),
            Some(&b"from the bottom"[..])
        );
        store.flush();
        assert!(
            a.get(&key(1)).unwrap().is_some(),
            "{write:?}: not in tier 0"
        );
        assert!(
            b.get(&key(1)).unwrap().is_some(),
            "{write:?}: not in tier 1"
        );
        let stats = store.tier_stats();
        assert_eq!((stats[0].misses, stats[1].misses, stats[2].hits), (1, 1, 1));
        assert_eq!((stats[0].promoted, stats[1].promoted), (1, 1), "{write:?}");
        // The next lookup is answered by the first tier.
        let c_gets = c.stats().gets;
        store.get(&key(1)).unwrap().unwrap();
        assert_eq!(c.stats().gets, c_gets);
        assert_eq!(store.tier_stats()[0].hits, 1);
        assert_eq!(store.stats().hits, 2);
    }
}

#[test]
fn a_failing_tier_is_skipped_and_counted() {
    let top = Arc::new(Faulty::default());
    let bottom = Arc::new(MemoryStore::new());
    bottom.put(&key(1), b"record").unwrap();
    let store = LayeredStore::new(
        vec![top.clone(), bottom.clone()],
        LayeredOptions {
            write: WriteMode::Through,
            ..LayeredOptions::default()
        },
    );
    top.failing.store(true, Ordering::SeqCst);
    assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"record"[..]));
    assert_eq!(store.get(&key(2)).unwrap(), None);
    store.put(&key(3), b"new").unwrap();
    assert!(bottom.get(&key(3)).unwrap().is_some());
    let stats = store.tier_stats();
    // Two lookups and one write failed at the top, plus the copy of the hit into it.
    assert_eq!(stats[0].errors, 4);
    assert_eq!(stats[0].promoted, 0);
    assert_eq!(stats[1].hits, 1);
    assert_eq!(store.stats().errors, 0);

    // When every tier fails, the lookup fails with the tier's error, and is counted.
    let only = LayeredStore::new(vec![top.clone()], LayeredOptions::default());
    assert!(matches!(
        only.get(&key(1)),
        Err(StoreError::Unavailable { .. })
    ));
    assert!(only.put(&key(1), b"x").is_err());
    assert_eq!(only.stats().errors, 2);
    top.failing.store(false, Ordering::SeqCst);
    only.put(&key(1), b"x").unwrap();
    assert_eq!(only.get(&key(1)).unwrap().as_deref(), Some(&b"x"[..]));
}

/// A record: payload then its 8-byte FNV-1a hash, as an engine's checksum.
fn sealed(payload: &[u8]) -> Vec<u8> {
    let mut record = payload.to_vec();
    record.extend_from_slice(&fnv(payload).to_le_bytes());
    record
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn intact(_: &RecordKey, record: &[u8]) -> bool {
    record.len() >= 8 && {
        let (payload, sum) = record.split_at(record.len() - 8);
        sum == fnv(payload).to_le_bytes()
    }
}

#[test]
fn a_record_the_verifier_rejects_is_neither_returned_nor_copied_up() {
    let (a, b, c) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryStore::new()),
    );
    let mut bad = sealed(b"machine code");
    bad[0] ^= 1;
    b.put(&key(1), &bad).unwrap();
    c.put(&key(1), &sealed(b"machine code")).unwrap();
    b.put(&key(2), &bad).unwrap();
    let store = LayeredStore::new(
        vec![a.clone(), b.clone(), c.clone()],
        LayeredOptions {
            write: WriteMode::Through,
            verify: Some(Arc::new(intact)),
            remove_corrupt: true,
        },
    );
    // Tier 1's copy is corrupt: the lookup goes on to tier 2, whose copy is intact.
    assert_eq!(store.get(&key(1)).unwrap(), Some(sealed(b"machine code")));
    assert_eq!(a.get(&key(1)).unwrap(), Some(sealed(b"machine code")));
    // The corrupt copy was removed, and the intact one copied in its place.
    assert_eq!(b.get(&key(1)).unwrap(), Some(sealed(b"machine code")));
    // Only a corrupt copy: a miss, nothing copied up, the copy removed.
    assert_eq!(store.get(&key(2)).unwrap(), None);
    assert_eq!(a.get(&key(2)).unwrap(), None);
    assert_eq!(b.get(&key(2)).unwrap(), None);
    let stats = store.tier_stats();
    assert_eq!(stats[1].corrupt, 2);
    assert_eq!((stats[2].hits, stats[1].hits), (1, 0));
}

#[test]
fn write_behind_queue_is_bounded_in_records_and_bytes_and_drops_counted() {
    watchdog(60, || {
        let top = Arc::new(MemoryStore::new());
        let gated = Arc::new(Gated::default());
        let store = LayeredStore::new(vec![top.clone(), gated.clone()], behind(4, 4 * 1024));
        assert!(store.writes_behind());
        // The writer takes the first record and waits at the gate.
        store.put(&key(0), &[0; 100]).unwrap();
        gated.entered.wait_for(1);
        // Four more fill the queue (4 records); the fifth does not fit and is dropped.
        for n in 1..=4 {
            store.put(&key(n), &[n; 100]).unwrap();
        }
        assert_eq!(store.queue_stats().len, 4);
        assert_eq!(store.queue_stats().bytes, 4 * 132);
        store.put(&key(5), &[5; 100]).unwrap(); // the first tier still takes it
        assert_eq!(store.queue_stats().dropped, 1);
        assert_eq!(store.tier_stats()[1].dropped, 1);
        assert!(top.get(&key(5)).unwrap().is_some());

        // Bytes: after one is taken out, a record larger than the room left is dropped too.
        gated.open();
        store.flush();
        assert_eq!(store.queue_stats().len, 0);
        store.put(&key(6), &[6; 4 * 1024]).unwrap();
        assert_eq!(store.queue_stats().dropped, 2);

        for n in 0..=4 {
            assert!(
                gated.inner.get(&key(n)).unwrap().is_some(),
                "record {n} lost"
            );
        }
        for n in [5, 6] {
            assert!(
                gated.inner.get(&key(n)).unwrap().is_none(),
                "record {n} kept"
            );
        }
        let stats = store.tier_stats();
        assert_eq!((stats[1].writes, stats[1].dropped), (5, 2));
        assert_eq!(store.queue_stats().queued, 5);
        // The four queued while the writer waited went in one batch.
        assert_eq!(gated.batches.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn write_behind_keeps_the_order_of_puts_and_removes_and_drop_flushes() {
    watchdog(60, || {
        let top = Arc::new(MemoryStore::new());
        let bottom = Arc::new(MemoryStore::new());
        {
            let store = LayeredStore::new(vec![top.clone(), bottom.clone()], behind(1024, 1 << 20));
            for n in 0..100 {
                store.put(&key(n), &[n; 10]).unwrap();
            }
            store.remove(&key(7)).unwrap();
            assert!(top.get(&key(7)).unwrap().is_none());
            store.put(&key(7), b"again").unwrap();
            store.remove(&key(8)).unwrap();
        } // dropped: flushes, then stops the writer
        for n in 0..100 {
            let expected = match n {
                7 => Some(b"again".to_vec()),
                8 => None,
                _ => Some(vec![n; 10]),
            };
            assert_eq!(bottom.get(&key(n)).unwrap(), expected, "record {n}");
        }
    });
}

#[test]
fn write_through_writes_every_tier_before_returning() {
    let top = Arc::new(MemoryStore::new());
    let bottom = Arc::new(Faulty::default());
    let store = LayeredStore::new(
        vec![top.clone(), bottom.clone()],
        LayeredOptions {
            write: WriteMode::Through,
            ..LayeredOptions::default()
        },
    );
    assert!(!store.writes_behind());
    store.put(&key(1), b"r").unwrap();
    assert!(bottom.inner.get(&key(1)).unwrap().is_some());
    bottom.failing.store(true, Ordering::SeqCst);
    store.put(&key(2), b"r").unwrap(); // the first tier took it
    assert_eq!(store.tier_stats()[1].errors, 1);
    assert_eq!(store.tier_stats()[0].writes, 2);
    assert_eq!(store.queue_stats().queued, 0);
}
