//! [`MemoryStore`]: an [`ArtifactStore`] in memory, for tests, benchmarks, a process that keeps
//! nothing on disk, and as the fast local tier of a [`LayeredStore`](super::LayeredStore).

use std::collections::{BTreeMap, HashMap};

use super::store::{ArtifactStore, RecordKey, StoreError, StoreStats};
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// What one record costs against a byte budget: its bytes and its key.
pub(crate) fn accounted_size(record: &[u8]) -> u64 {
    record.len() as u64 + 32
}

/// An [`ArtifactStore`] in memory, with an optional byte budget kept by least-recently-used
/// eviction (a read or a write makes a record the most recently used). Records are accounted as
/// their length plus 32 bytes of key.
///
/// ```
/// use compiler_caching::{ArtifactStore, MemoryStore, RecordKey};
///
/// let store = MemoryStore::with_budget(250); // each record counts its length + 32
/// store.put(&RecordKey([1; 32]), &[0; 100]).unwrap();
/// store.put(&RecordKey([2; 32]), &[0; 40]).unwrap();
/// store.get(&RecordKey([1; 32])).unwrap(); // 1 is now the most recently used
/// store.put(&RecordKey([3; 32]), &[0; 40]).unwrap(); // over budget: 2 goes
/// assert!(store.get(&RecordKey([2; 32])).unwrap().is_none());
/// assert!(store.get(&RecordKey([1; 32])).unwrap().is_some());
/// assert_eq!(store.stats().evictions, 1);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    budget: u64,
    state: Mutex<State>,
    gets: AtomicU64,
    hits: AtomicU64,
    puts: AtomicU64,
    removes: AtomicU64,
    evictions: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<RecordKey, (Vec<u8>, u64)>,
    /// Records by last use, oldest first.
    recency: BTreeMap<u64, RecordKey>,
    tick: u64,
    bytes: u64,
}

impl State {
    fn touch(&mut self, key: &RecordKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, used)) = self.records.get_mut(key) {
            self.recency.remove(used);
            *used = tick;
            self.recency.insert(tick, *key);
        }
    }

    fn remove(&mut self, key: &RecordKey) -> bool {
        match self.records.remove(key) {
            Some((record, used)) => {
                self.recency.remove(&used);
                self.bytes -= accounted_size(&record);
                true
            }
            None => false,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store without a budget.
    pub fn new() -> Self {
        MemoryStore::with_budget(u64::MAX)
    }

    /// A store that keeps at most `budget` bytes (as accounted above), evicting the least
    /// recently used records.
    pub fn with_budget(budget: u64) -> Self {
        MemoryStore {
            budget,
            state: Mutex::new(State::default()),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn insert(&self, state: &mut State, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let size = accounted_size(record);
        if size > self.budget {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Full);
        }
        state.remove(key);
        state.tick += 1;
        let tick = state.tick;
        state.records.insert(*key, (record.to_vec(), tick));
        state.recency.insert(tick, *key);
        state.bytes += size;
        self.puts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Evicts the least recently used records, never one of `keep`, until within budget.
    fn evict(&self, state: &mut State, keep: &[RecordKey]) {
        while state.bytes > self.budget {
            let Some(victim) = state.recency.values().find(|k| !keep.contains(k)).copied() else {
                break;
            };
            state.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ArtifactStore for MemoryStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state();
        let found = state.records.get(key).map(|(r, _)| r.clone());
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            state.touch(key);
        }
        Ok(found)
    }

    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state();
        self.insert(&mut state, key, record)?;
        self.evict(&mut state, &[*key]);
        Ok(())
    }

    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        if self.state().remove(key) {
            self.removes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let state = self.state();
        StoreStats {
            gets: self.gets.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            removes: self.removes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes: state.bytes,
            records: state.records.len() as u64,
        }
    }

    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        let mut state = self.state();
        if records.iter().any(|(_, r)| accounted_size(r) > self.budget) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Full);
        }
        for (key, record) in records {
            self.insert(&mut state, key, record)?;
        }
        // Older records go first; if the batch alone is over budget, its own older records too.
        let keep: Vec<RecordKey> = records.iter().map(|(k, _)| *k).collect();
        self.evict(&mut state, &keep);
        self.evict(&mut state, &keep[keep.len().saturating_sub(1)..]);
        Ok(())
    }
}
