//! [`MemoryStore`]: a store in a `Mutex<HashMap>`, for tests and as the local tier of a
//! [`LayeredStore`](super::layered::LayeredStore) in a process that keeps nothing on disk.

use std::collections::HashMap;
use std::sync::Mutex;

use super::store::{ArtifactStore, RecordKey, StoreError, StoreStats};

/// An [`ArtifactStore`] in memory: a `HashMap` behind one mutex, with its counters.
///
/// The first record stored under a key stays (a later `put` of the same key is accepted and
/// ignored, as the records of one key are the same), until it is removed. It never evicts.
///
/// ```
/// use compiler_caching::persist::{ArtifactStore, MemoryStore, RecordKey};
///
/// let store = MemoryStore::new();
/// let key = RecordKey([7; 32]);
/// store.put(&key, b"record").unwrap();
/// assert_eq!(store.get(&key).unwrap().as_deref(), Some(&b"record"[..]));
/// assert_eq!(store.stats().records, 1);
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<RecordKey, Vec<u8>>,
    stats: StoreStats,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every update is one call).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ArtifactStore for MemoryStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        let mut inner = self.lock();
        inner.stats.gets += 1;
        let found = inner.records.get(key).cloned();
        if found.is_some() {
            inner.stats.hits += 1;
        }
        Ok(found)
    }

    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.stats.puts += 1;
        if !inner.records.contains_key(key) {
            inner.records.insert(*key, record.to_vec());
            inner.stats.records += 1;
            inner.stats.bytes += record.len() as u64;
        }
        Ok(())
    }

    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.stats.removes += 1;
        if let Some(record) = inner.records.remove(key) {
            inner.stats.records -= 1;
            inner.stats.bytes -= record.len() as u64;
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        self.lock().stats
    }
}
