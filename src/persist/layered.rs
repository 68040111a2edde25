//! [`LayeredStore`]: an ordered list of stores, fastest first, read through and written behind.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::store::{ArtifactStore, RecordKey, StoreError, StoreStats};

/// A check of a record's integrity (the engine's checksum): `true` if the record under the key
/// is intact.
pub type Verifier = Arc<dyn Fn(&RecordKey, &[u8]) -> bool + Send + Sync>;

/// How a [`LayeredStore`] writes to its tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Every tier is written before `put` returns.
    Through,
    /// The first tier is written before `put` returns; the others by a background thread, from
    /// a queue of at most `max_records` records and `max_bytes` bytes (payload plus 32 per key).
    /// A write that does not fit is dropped and counted ([`QueueStats::dropped`]).
    Behind {
        /// The most writes queued at once.
        max_records: usize,
        /// The most bytes queued at once.
        max_bytes: usize,
    },
}

/// How a [`LayeredStore`] reads and writes.
#[derive(Clone)]
pub struct LayeredOptions {
    /// Write-through or write-behind. Default: write-behind, at most 4096 records and 64 MiB
    /// queued.
    pub write: WriteMode,
    /// Checks every record a tier returns before it is returned or copied into a faster tier: a
    /// record it rejects is counted ([`TierStats::corrupt`]), treated as a miss of that tier,
    /// and the lookup goes on to the next tier. Default: none (the caller checks what it gets).
    pub verify: Option<Verifier>,
    /// Whether a record the verifier rejects, or a tier reports as
    /// [`StoreError::Corrupt`], is removed from that tier (so that no other reader meets it
    /// again). Default: true.
    pub remove_corrupt: bool,
}

impl Default for LayeredOptions {
    fn default() -> LayeredOptions {
        LayeredOptions {
            write: WriteMode::Behind {
                max_records: 4096,
                max_bytes: 64 << 20,
            },
            verify: None,
            remove_corrupt: true,
        }
    }
}

impl fmt::Debug for LayeredOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredOptions")
            .field("write", &self.write)
            .field("verify", &self.verify.as_ref().map(|_| "<fn>"))
            .field("remove_corrupt", &self.remove_corrupt)
            .finish()
    }
}

/// What happened at one tier of a [`LayeredStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierStats {
    /// The tier's own counters.
    pub store: StoreStats,
    /// Lookups this tier answered with a record (that passed the verifier).
    pub hits: u64,
    /// Lookups this tier answered with no record (counting rejected records).
    pub misses: u64,
    /// Calls to this tier that failed and were skipped (reads and writes).
    pub errors: u64,
    /// Records of this tier the verifier rejected, or the tier reported corrupt.
    pub corrupt: u64,
    /// Records copied into this tier after a hit in a slower one.
    pub promoted: u64,
    /// Records written to this tier (by `put`, a copy, or the write-behind thread).
    pub writes: u64,
    /// Writes meant for this tier that the full write-behind queue dropped.
    pub dropped: u64,
}

/// The write-behind queue of a [`LayeredStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Writes queued since the store was made.
    pub queued: u64,
    /// Writes dropped because the queue was full.
    pub dropped: u64,
    /// Writes in the queue now.
    pub len: usize,
    /// Bytes in the queue now.
    pub bytes: usize,
}

/// An [`ArtifactStore`] made of an ordered list of stores, fastest first (say an embedded
/// database, then a `RedisStore` shared by a fleet).
///
/// - **Read-through**: `get` asks each tier in order; a record found in a slower tier is copied
///   into every faster one, so the next lookup is local.
/// - **Write-behind** (the default) or write-through ([`WriteMode`]). Write-behind is the
///   default because a compiling thread should not wait for the network: the first tier is
///   written at once, and a background thread writes the slower tiers in batches (one round
///   trip per batch for a store whose `put_batch` pipelines). The queue is bounded in records
///   and bytes and drops what does not fit (counted): the tiers are caches, and a record that
///   was not shared is compiled again elsewhere. Removals go through the same queue, after the
///   writes queued before them. [`LayeredStore::flush`] waits until the queue is empty;
///   dropping the store flushes it, then stops the thread.
/// - **Failing tiers are skipped**: a tier that returns an error is counted and skipped; a
///   lookup fails only if every tier failed, a write only if no tier took it.
/// - **Verification**: with [`LayeredOptions::verify`], a record that fails the check is never
///   returned nor copied upward; the lookup goes on to the next tier.
///
/// ```
/// use std::sync::Arc;
/// use compiler_caching::persist::{
///     ArtifactStore, LayeredOptions, LayeredStore, MemoryStore, RecordKey,
/// };
///
/// let local = Arc::new(MemoryStore::new());
/// let shared = Arc::new(MemoryStore::new()); // a RedisStore, in a fleet
/// let key = RecordKey([3; 32]);
/// shared.put(&key, b"compiled elsewhere").unwrap();
///
/// let store = LayeredStore::new(vec![local.clone(), shared.clone()], LayeredOptions::default());
/// assert_eq!(store.get(&key).unwrap().as_deref(), Some(&b"compiled elsewhere"[..]));
/// assert!(local.get(&key).unwrap().is_some()); // copied into the local tier
///
/// store.put(&RecordKey([4; 32]), b"compiled here").unwrap();
/// store.flush(); // the write-behind queue reaches the shared tier
/// assert!(shared.get(&RecordKey([4; 32])).unwrap().is_some());
/// assert_eq!(store.tier_stats()[1].hits, 1);
/// ```
pub struct LayeredStore {
    inner: Arc<Inner>,
    writer: Option<JoinHandle<()>>,
}

struct Inner {
    tiers: Vec<Tier>,
    options: LayeredOptions,
    /// Whether tiers after the first are written by the writer thread.
    behind: bool,
    queue: Mutex<Queue>,
    /// Signalled when a write is queued or the store closes.
    work: Condvar,
    /// Signalled when the writer finished a batch.
    idle: Condvar,
    gets: AtomicU64,
    hits: AtomicU64,
    puts: AtomicU64,
    removes: AtomicU64,
    errors: AtomicU64,
}

struct Tier {
    store: Arc<dyn ArtifactStore>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    promoted: AtomicU64,
    writes: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<Queued>,
    bytes: usize,
    /// The writer holds a batch it took from `ops`.
    busy: bool,
    closed: bool,
    queued: u64,
    dropped: u64,
}

struct Queued {
    tiers: Range<usize>,
    op: Op,
    promotion: bool,
}

enum Op {
    Put(RecordKey, Vec<u8>),
    Remove(RecordKey),
}

impl Queued {
    fn size(&self) -> usize {
        32 + match &self.op {
            Op::Put(_, record) => record.len(),
            Op::Remove(_) => 0,
        }
    }
}

/// Writes taken from the queue at once.
const BATCH: usize = 256;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl LayeredStore {
    /// A store over `tiers`, fastest first. With write-behind and more than one tier, starts
    /// the writer thread (if the system cannot start a thread, the store writes through).
    pub fn new(tiers: Vec<Arc<dyn ArtifactStore>>, options: LayeredOptions) -> LayeredStore {
        let wants_behind = matches!(options.write, WriteMode::Behind { .. }) && tiers.len() > 1;
        let mut inner = Inner {
            tiers: tiers
                .into_iter()
                .map(|store| Tier {
                    store,
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    corrupt: AtomicU64::new(0),
                    promoted: AtomicU64::new(0),
                    writes: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                })
                .collect(),
            options,
            behind: wants_behind,
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            idle: Condvar::new(),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        };
        let mut writer = None;
        if wants_behind {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Inner>>();
            match std::thread::Builder::new()
                .name("compiler-caching-write-behind".into())
                .spawn(move || {
                    if let Ok(inner) = rx.recv() {
                        inner.write_behind();
                    }
                }) {
                Ok(handle) => writer = Some((handle, tx)),
                Err(_) => inner.behind = false,
            }
        }
        let inner = Arc::new(inner);
        let writer = writer.map(|(handle, tx)| {
            // The thread waits for this: it cannot fail while the thread lives.
            let _ = tx.send(inner.clone());
            handle
        });
        LayeredStore { inner, writer }
    }

    /// Waits until every queued write has reached its tiers (at once with write-through).
    pub fn flush(&self) {
        let mut queue = self.inner.lock_queue();
        while !queue.ops.is_empty() || queue.busy {
            queue = self
                .inner
                .idle
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// The counters of each tier, in order.
    pub fn tier_stats(&self) -> Vec<TierStats> {
        self.inner
            .tiers
            .iter()
            .map(|t| TierStats {
                store: t.store.stats(),
                hits: load(&t.hits),
                misses: load(&t.misses),
                errors: load(&t.errors),
                corrupt: load(&t.corrupt),
                promoted: load(&t.promoted),
                writes: load(&t.writes),
                dropped: load(&t.dropped),
            })
            .collect()
    }

    /// The write-behind queue's counters (all zero with write-through).
    pub fn queue_stats(&self) -> QueueStats {
        let queue = self.inner.lock_queue();
        QueueStats {
            queued: queue.queued,
            dropped: queue.dropped,
            len: queue.ops.len(),
            bytes: queue.bytes,
        }
    }

    /// The tiers, fastest first.
    pub fn tiers(&self) -> impl ExactSizeIterator<Item = &Arc<dyn ArtifactStore>> + '_ {
        self.inner.tiers.iter().map(|t| &t.store)
    }

    /// Whether tiers after the first are written behind (false with write-through, one tier, or
    /// when the writer thread could not start).
    pub fn writes_behind(&self) -> bool {
        self.inner.behind
    }
}

impl Inner {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tiers written before a call returns; the others (if any) are queued.
    fn sync_tiers(&self, below: usize) -> Range<usize> {
        if self.behind {
            0..below.min(1)
        } else {
            0..below
        }
    }

    fn put_to(&self, t: usize, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let tier = &self.tiers[t];
        match tier.store.put(key, record) {
            Ok(()) => {
                bump(&tier.writes);
                Ok(())
            }
            Err(e) => {
                bump(&tier.errors);
                Err(e)
            }
        }
    }

    /// Queues `op` for `tiers`; false (and counted) if the queue is full or closed.
    fn enqueue(&self, tiers: Range<usize>, op: Op, promotion: bool) -> bool {
        let WriteMode::Behind {
            max_records,
            max_bytes,
        } = self.options.write
        else {
            return false;
        };
        let queued = Queued {
            tiers,
            op,
            promotion,
        };
        let size = queued.size();
        let mut queue = self.lock_queue();
        if queue.closed
            || queue.ops.len() >= max_records
            || queue.bytes.saturating_add(size) > max_bytes
        {
            queue.dropped += 1;
            drop(queue);
            for t in queued.tiers {
                bump(&self.tiers[t].dropped);
            }
            return false;
        }
        queue.ops.push_back(queued);
        queue.bytes += size;
        queue.queued += 1;
        drop(queue);
        self.work.notify_one();
        true
    }

    /// Copies a record found in tier `found` into the faster tiers.
    fn promote(&self, found: usize, key: &RecordKey, record: &[u8]) {
        for t in self.sync_tiers(found) {
            if self.put_to(t, key, record).is_ok() {
                bump(&self.tiers[t].promoted);
            }
        }
        let queued = self.sync_tiers(found).end..found;
        if !queued.is_empty() {
            self.enqueue(queued, Op::Put(*key, record.to_vec()), true);
        }
    }

    /// A record tier `t` holds but should not: counted, and removed if so configured.
    fn corrupt(&self, t: usize, key: &RecordKey) {
        let tier = &self.tiers[t];
        bump(&tier.corrupt);
        bump(&tier.misses);
        if self.options.remove_corrupt && tier.store.remove(key).is_err() {
            bump(&tier.errors);
        }
    }

    /// The writer thread's loop: takes batches from the queue until the store closes and the
    /// queue is empty.
    fn write_behind(&self) {
        loop {
            let batch: Vec<Queued> = {
                let mut queue = self.lock_queue();
                while queue.ops.is_empty() && !queue.closed {
                    queue = self
                        .work
                        .wait(queue)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if queue.ops.is_empty() {
                    return; // closed, and all written
                }
                let n = queue.ops.len().min(BATCH);
                let batch: Vec<Queued> = queue.ops.drain(..n).collect();
                queue.bytes -= batch.iter().map(Queued::size).sum::<usize>();
                queue.busy = true;
                batch
            };
            // A tier that panics loses this batch, not the writer (nor a `flush` waiting on it).
            if catch_unwind(AssertUnwindSafe(|| self.apply(batch))).is_err() {
                for tier in &self.tiers[1..] {
                    bump(&tier.errors);
                }
            }
            self.lock_queue().busy = false;
            self.idle.notify_all();
        }
    }

    /// Applies queued writes in order: each run of puts as one `put_batch` per tier.
    fn apply(&self, batch: Vec<Queued>) {
        let mut ops = batch.into_iter().peekable();
        while let Some(first) = ops.next() {
            match first.op {
                Op::Remove(key) => {
                    for t in first.tiers {
                        if self.tiers[t].store.remove(&key).is_err() {
                            bump(&self.tiers[t].errors);
                        }
                    }
                }
                Op::Put(key, record) => {
                    let mut records = vec![(key, record)];
                    let mut runs = vec![(first.tiers, first.promotion)];
                    while let Some(Queued {
                        op: Op::Put(..), ..
                    }) = ops.peek()
                    {
                        let Some(Queued {
                            tiers,
                            op: Op::Put(key, record),
                            promotion,
                        }) = ops.next()
                        else {
                            break;
                        };
                        records.push((key, record));
                        runs.push((tiers, promotion));
                    }
                    self.put_run(&records, &runs);
                }
            }
        }
    }

    fn put_run(&self, records: &[(RecordKey, Vec<u8>)], runs: &[(Range<usize>, bool)]) {
        let lowest = runs.iter().map(|(r, _)| r.start).min().unwrap_or(0);
        let highest = runs.iter().map(|(r, _)| r.end).max().unwrap_or(0);
        for t in lowest..highest {
            let tier = &self.tiers[t];
            let mine: Vec<usize> = (0..records.len())
                .filter(|&i| runs[i].0.contains(&t))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let result = if mine.len() == records.len() {
                tier.store.put_batch(records)
            } else {
                let subset: Vec<(RecordKey, Vec<u8>)> =
                    mine.iter().map(|&i| records[i].clone()).collect();
                tier.store.put_batch(&subset)
            };
            match result {
                Ok(()) => {
                    tier.writes.fetch_add(mine.len() as u64, Ordering::Relaxed);
                    let promoted = mine.iter().filter(|&&i| runs[i].1).count();
                    tier.promoted.fetch_add(promoted as u64, Ordering::Relaxed);
                }
                Err(_) => bump(&tier.errors),
            }
        }
    }
}

impl ArtifactStore for LayeredStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        let inner = &*self.inner;
        bump(&inner.gets);
        let mut answered = false;
        let mut failure = None;
        for (t, tier) in inner.tiers.iter().enumerate() {
            match tier.store.get(key) {
                Ok(Some(record)) => {
                    if let Some(verify) = &inner.options.verify {
                        if !verify(key, &record) {
                            inner.corrupt(t, key);
                            answered = true;
                            continue;
                        }
                    }
                    bump(&tier.hits);
                    bump(&inner.hits);
                    inner.promote(t, key, &record);
                    return Ok(Some(record));
                }
                Ok(None) => {
                    bump(&tier.misses);
                    answered = true;
                }
                Err(StoreError::Corrupt { .. }) => {
                    inner.corrupt(t, key);
                    answered = true;
                }
                Err(e) => {
                    bump(&tier.errors);
                    failure = Some(e);
                }
            }
        }
        match failure {
            Some(e) if !answered => {
                bump(&inner.errors);
                Err(e)
            }
            _ => Ok(None),
        }
    }

    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let inner = &*self.inner;
        bump(&inner.puts);
        let all = inner.tiers.len();
        if all == 0 {
            bump(&inner.errors);
            return Err(StoreError::Unavailable {
                reason: "a layered store with no tiers".into(),
            });
        }
        let mut stored = false;
        let mut failure = None;
        for t in inner.sync_tiers(all) {
            match inner.put_to(t, key, record) {
                Ok(()) => stored = true,
                Err(e) => failure = Some(e),
            }
        }
        let queued = inner.sync_tiers(all).end..all;
        if !queued.is_empty() && inner.enqueue(queued, Op::Put(*key, record.to_vec()), false) {
            stored = true;
        }
        if stored {
            return Ok(());
        }
        bump(&inner.errors);
        Err(failure.unwrap_or(StoreError::Full))
    }

    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        let inner = &*self.inner;
        bump(&inner.removes);
        let all = inner.tiers.len();
        let mut done = all == 0;
        let mut failure = None;
        for t in inner.sync_tiers(all) {
            match inner.tiers[t].store.remove(key) {
                Ok(()) => done = true,
                Err(e) => {
                    bump(&inner.tiers[t].errors);
                    failure = Some(e);
                }
            }
        }
        let queued = inner.sync_tiers(all).end..all;
        if !queued.is_empty() && inner.enqueue(queued, Op::Remove(*key), false) {
            done = true;
        }
        if done {
            Ok(())
        } else {
            bump(&inner.errors);
            Err(failure.unwrap_or(StoreError::Full))
        }
    }

    /// Calls to the layered store itself (a hit in any tier is a hit); `evictions` is the sum
    /// over the tiers; `bytes` and `records` are the first tier's.
    fn stats(&self) -> StoreStats {
        let inner = &*self.inner;
        let tiers: Vec<StoreStats> = inner.tiers.iter().map(|t| t.store.stats()).collect();
        let first = tiers.first().copied().unwrap_or_default();
        StoreStats {
            gets: load(&inner.gets),
            hits: load(&inner.hits),
            puts: load(&inner.puts),
            removes: load(&inner.removes),
            evictions: tiers.iter().map(|s| s.evictions).sum(),
            errors: load(&inner.errors),
            bytes: first.bytes,
            records: first.records,
        }
    }
}

impl fmt::Debug for LayeredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tiers: Vec<&Arc<dyn ArtifactStore>> = self.tiers().collect();
        f.debug_struct("LayeredStore")
            .field("tiers", &tiers)
            .field("options", &self.inner.options)
            .field("writes_behind", &self.inner.behind)
            .field("queue", &self.queue_stats())
            .finish()
    }
}

impl Drop for LayeredStore {
    /// Flushes the write-behind queue, then stops the writer thread.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.inner.lock_queue().closed = true;
            self.inner.work.notify_all();
            let _ = writer.join();
        }
    }
}
