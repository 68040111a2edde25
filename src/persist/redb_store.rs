//! The embedded on-disk [`ArtifactStore`]: one redb file, a byte budget kept by
//! least-recently-used eviction, every write one ACID transaction.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::memory_store::accounted_size;
use super::store::{ArtifactStore, RecordKey, StoreError, StoreStats};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};

/// The records, by key.
const RECORDS: TableDefinition<'_, &[u8; 32], &[u8]> = TableDefinition::new("records");
/// Each record's last use (a tick) and accounted size.
const USED: TableDefinition<'_, &[u8; 32], (u64, u64)> = TableDefinition::new("used");
/// The records by last use, oldest first: what eviction walks.
const RECENCY: TableDefinition<'_, u64, &[u8; 32]> = TableDefinition::new("recency");
/// Totals: `bytes`, `records`, `tick`, and the layout version of these tables.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The layout of the tables above. A file with another layout is refused, not misread.
const LAYOUT: u64 = 1;

/// Reads since the last write whose recency is not yet on disk: past this many, a read writes
/// them (in a transaction that is made durable by the next write).
const TOUCH_FLUSH: usize = 8192;

/// How a [`RedbStore`] is opened. Build it with `..RedbOptions::default()`:
///
/// ```
/// use compiler_caching::RedbOptions;
///
/// let options = RedbOptions { byte_budget: 64 << 20, ..RedbOptions::default() };
/// assert!(options.verify_on_open);
/// ```
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// The most bytes of records the store keeps (each record counts its length plus 32 bytes of
    /// key); past it, the least recently used records are evicted in the same transaction as the
    /// write that went over. A single record larger than the budget is refused
    /// ([`StoreError::Full`]). Default: 256 MiB.
    pub byte_budget: u64,
    /// Verify every page checksum of the file when it is opened, so that a file damaged outside
    /// redb is refused ([`StoreError::Corrupt`]) rather than trusted. Reads the whole file once
    /// per open. Default: on.
    pub verify_on_open: bool,
    /// When the file is damaged or not a store at all, move it aside (to `<file>.corrupt`) and
    /// start an empty store in its place, instead of failing to open. Default: off.
    pub recreate_if_corrupt: bool,
    /// The size of redb's page cache in memory. Default: 16 MiB.
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            byte_budget: 256 << 20,
            verify_on_open: true,
            recreate_if_corrupt: false,
            cache_bytes: 16 << 20,
        }
    }
}

/// The embedded on-disk store: one [redb](https://docs.rs/redb) file (pure Rust, ACID,
/// crash-safe copy-on-write B-trees).
///
/// - **Writes** are transactions: [`ArtifactStore::put`] and [`ArtifactStore::put_batch`] commit
///   durably (fsync) before they return, so a process killed at any point leaves the file with
///   every committed record intact and nothing of an uncommitted one.
/// - **Reads** see a consistent snapshot (multi-version concurrency): a read in progress is never
///   affected by a concurrent write or eviction, and returns a copy.
/// - **Budget**: [`RedbOptions::byte_budget`] bytes of records, kept by least-recently-used
///   eviction inside the writing transaction. A read makes its record the most recently used;
///   reads record that in memory and write it with the next write (or after 8192 reads, or when
///   the store is dropped), so reading costs no write. Eviction never removes a record of the
///   batch being written, and what a read returned stays whole. The file itself does not shrink:
///   redb reuses the pages evicted records free.
/// - **One process at a time**: redb locks the file for the process that opens it. A second
///   open, from another process or from this one, fails at once with [`StoreError::Locked`]; it
///   never waits. [`RedbStore::open_in_dir`] gives each concurrent process a file of its own;
///   a process that cannot open any can run without a store (see
///   [`UnavailableStore`](crate::UnavailableStore)).
/// - **Faults** are errors, never panics: a damaged or foreign file is [`StoreError::Corrupt`]
///   (checked page by page when opened, see [`RedbOptions::verify_on_open`]), a full disk
///   [`StoreError::Full`], other I/O [`StoreError::Io`]; a panic inside redb is caught, and the
///   store then answers [`StoreError::Unavailable`] until reopened.
///
/// ```
/// use compiler_caching::{ArtifactStore, RecordKey, RedbOptions, RedbStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("artifacts.redb");
/// let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
/// store.put(&RecordKey([7; 32]), b"record").unwrap();
/// drop(store);
/// // A new process (here: a new handle) finds it again.
/// let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
/// assert_eq!(store.get(&RecordKey([7; 32])).unwrap().as_deref(), Some(&b"record"[..]));
/// ```
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    options: RedbOptions,
    /// The last tick handed out (persisted as `tick` in [`META`] by every write).
    tick: AtomicU64,
    /// Reads since the last write: key and the tick of its last read.
    touched: Mutex<HashMap<RecordKey, u64>>,
    bytes: AtomicU64,
    records: AtomicU64,
    /// Set when redb panicked: the store is no longer used.
    poisoned: AtomicBool,
    gets: AtomicU64,
    hits: AtomicU64,
    puts: AtomicU64,
    removes: AtomicU64,
    evictions: AtomicU64,
    errors: AtomicU64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("byte_budget", &self.options.byte_budget)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The error for a panic caught inside redb.
fn panicked(payload: &(dyn std::any::Any + Send)) -> StoreError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    StoreError::Corrupt {
        reason: format!("the store panicked: {message}"),
    }
}

/// Maps any redb error to a [`StoreError`].
fn map_err(path: &Path, error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked {
                path: path.to_owned(),
            }
        }
        redb::Error::Corrupted(reason) => StoreError::Corrupt { reason },
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt {
            reason: format!("file written in redb format {version}, which this build cannot read"),
        },
        redb::Error::TableTypeMismatch { table, .. } => StoreError::Corrupt {
            reason: format!("table `{table}` has another type: not a store of this crate"),
        },
        redb::Error::ValueTooLarge(_) => StoreError::Full,
        redb::Error::Io(e) => io_error(&e),
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => StoreError::Unavailable {
            reason: "an earlier I/O error closed the store; reopen it".to_owned(),
        },
        other => StoreError::Io {
            reason: other.to_string(),
        },
    }
}

fn io_error(e: &std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => StoreError::Full,
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupt {
                reason: e.to_string(),
            }
        }
        std::io::ErrorKind::WouldBlock => StoreError::Locked {
            path: PathBuf::new(),
        },
        _ => StoreError::Io {
            reason: e.to_string(),
        },
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it if missing. Fails at once, without waiting, with
    /// [`StoreError::Locked`] if another process or handle has it open; with
    /// [`StoreError::Corrupt`] if it is damaged or not a store (unless
    /// [`RedbOptions::recreate_if_corrupt`]); with [`StoreError::Io`] or [`StoreError::Full`] if
    /// it cannot be read or created.
    pub fn open(path: impl AsRef<Path>, options: RedbOptions) -> Result<RedbStore, StoreError> {
        let path = path.as_ref();
        match RedbStore::open_once(path, &options) {
            Err(StoreError::Corrupt { .. }) if options.recreate_if_corrupt => {
                let aside = path.with_extension("corrupt");
                std::fs::rename(path, &aside).map_err(|e| io_error(&e))?;
                RedbStore::open_once(path, &options)
            }
            result => result,
        }
    }

    /// Opens a store in `dir` (created if missing) that no other process has open: the file
    /// `artifacts.redb`, or if another process holds it, `artifacts-1.redb`, ... up to
    /// `artifacts-7.redb`. Concurrent processes sharing one cache directory each get a store;
    /// a process that starts after another ended gets the same file back, and with it
    /// everything that process stored. Fails with [`StoreError::Locked`] if all eight are held.
    pub fn open_in_dir(
        dir: impl AsRef<Path>,
        options: RedbOptions,
    ) -> Result<RedbStore, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io_error(&e))?;
        let mut last = None;
        for i in 0..8 {
            let name = if i == 0 {
                "artifacts.redb".to_owned()
            } else {
                format!("artifacts-{i}.redb")
            };
            match RedbStore::open(dir.join(name), options.clone()) {
                Err(e @ StoreError::Locked { .. }) => last = Some(e),
                result => return result,
            }
        }
        Err(last.unwrap_or(StoreError::Locked {
            path: dir.to_owned(),
        }))
    }

    fn open_once(path: &Path, options: &RedbOptions) -> Result<RedbStore, StoreError> {
        let opened = catch_unwind(|| {
            let mut builder = Database::builder();
            builder.set_cache_size(options.cache_bytes);
            builder.set_check_integrity_on_open(options.verify_on_open);
            builder.create(path)
        });
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_err(path, e)),
            Err(payload) => return Err(panicked(&*payload)),
        };
        let store = RedbStore {
            db,
            path: path.to_owned(),
            options: options.clone(),
            tick: AtomicU64::new(0),
            touched: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            records: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            removes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        };
        store.guarded(|| store.initialize())?;
        Ok(store)
    }

    /// Creates the tables if missing, checks the layout, and loads the totals.
    fn initialize(&self) -> Result<(), StoreError> {
        let err = |e: redb::Error| map_err(&self.path, e);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let (tick, bytes, records) = {
            txn.open_table(RECORDS).map_err(|e| err(e.into()))?;
            txn.open_table(USED).map_err(|e| err(e.into()))?;
            txn.open_table(RECENCY).map_err(|e| err(e.into()))?;
            let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
            let read = |meta: &redb::Table<'_, &str, u64>, name: &str| -> Result<u64, StoreError> {
                Ok(meta
                    .get(name)
                    .map_err(|e| err(e.into()))?
                    .map_or(0, |v| v.value()))
            };
            match read(&meta, "layout")? {
                0 => {
                    meta.insert("layout", LAYOUT).map_err(|e| err(e.into()))?;
                }
                LAYOUT => {}
                other => {
                    return Err(StoreError::Corrupt {
                        reason: format!("store layout {other}, expected {LAYOUT}"),
                    })
                }
            }
            (
                read(&meta, "tick")?,
                read(&meta, "bytes")?,
                read(&meta, "records")?,
            )
        };
        txn.commit().map_err(|e| err(e.into()))?;
        self.tick.store(tick, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.records.store(records, Ordering::Relaxed);
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The byte budget it keeps.
    pub fn byte_budget(&self) -> u64 {
        self.options.byte_budget
    }

    /// Runs `op`, turning a panic into an error (and closing the store) and counting errors.
    fn guarded<T>(&self, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = if self.poisoned.load(Ordering::Acquire) {
            Err(StoreError::Unavailable {
                reason: "the store was closed after a panic inside it; reopen it".to_owned(),
            })
        } else {
            match catch_unwind(AssertUnwindSafe(op)) {
                Ok(result) => result,
                Err(payload) => {
                    self.poisoned.store(true, Ordering::Release);
                    Err(panicked(&*payload))
                }
            }
        };
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn take_touched(&self) -> HashMap<RecordKey, u64> {
        std::mem::take(&mut *self.touched.lock())
    }

    /// Moves the records read since the last write to the recent end, in `txn`.
    fn apply_touches(
        &self,
        txn: &WriteTransaction,
        touched: HashMap<RecordKey, u64>,
    ) -> Result<(), redb::Error> {
        if touched.is_empty() {
            return Ok(());
        }
        let mut used = txn.open_table(USED)?;
        let mut recency = txn.open_table(RECENCY)?;
        for (key, tick) in touched {
            let found = used.get(&key.0)?.map(|v| v.value());
            if let Some((old, size)) = found {
                if old < tick {
                    recency.remove(old)?;
                    recency.insert(tick, &key.0)?;
                    used.insert(&key.0, (tick, size))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the records read since the last write; `durable` makes the commit wait for the
    /// disk.
    fn flush_touches(&self, durable: bool) -> Result<(), StoreError> {
        let touched = self.take_touched();
        if touched.is_empty() {
            return Ok(());
        }
        let err = |e: redb::Error| map_err(&self.path, e);
        let mut txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        if !durable {
            // Made durable by the next durable commit; lost (harmlessly: recency only) if the
            // process ends first.
            let _ = txn.set_durability(Durability::None);
        }
        self.apply_touches(&txn, touched).map_err(err)?;
        self.write_tick(&txn).map_err(err)?;
        txn.commit().map_err(|e| err(e.into()))
    }

    fn write_tick(&self, txn: &WriteTransaction) -> Result<(), redb::Error> {
        let mut meta = txn.open_table(META)?;
        meta.insert("tick", self.tick.load(Ordering::Relaxed))?;
        Ok(())
    }

    /// Writes `batch` and evicts down to the budget, in one transaction. Returns how many
    /// records were evicted.
    fn write(&self, batch: &[(RecordKey, &[u8])]) -> Result<u64, StoreError> {
        if batch
            .iter()
            .any(|(_, r)| accounted_size(r) > self.options.byte_budget)
        {
            return Err(StoreError::Full);
        }
        let err = |e: redb::Error| map_err(&self.path, e);
        let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        let touched = self.take_touched();
        self.apply_touches(&txn, touched).map_err(err)?;
        let (bytes, records, evicted) = self.write_in(&txn, batch).map_err(err)?;
        self.write_tick(&txn).map_err(err)?;
        txn.commit().map_err(|e| err(e.into()))?;
        self.bytes.store(bytes, Ordering::Relaxed);
        self.records.store(records, Ordering::Relaxed);
        Ok(evicted)
    }

    fn write_in(
        &self,
        txn: &WriteTransaction,
        batch: &[(RecordKey, &[u8])],
    ) -> Result<(u64, u64, u64), redb::Error> {
        let mut table = txn.open_table(RECORDS)?;
        let mut used = txn.open_table(USED)?;
        let mut recency = txn.open_table(RECENCY)?;
        let mut meta = txn.open_table(META)?;
        let total = |meta: &redb::Table<'_, &str, u64>, name| -> Result<u64, redb::Error> {
            Ok(meta.get(name)?.map_or(0, |v| v.value()))
        };
        let mut bytes = total(&meta, "bytes")?;
        let mut records = total(&meta, "records")?;
        for (key, record) in batch {
            let previous = used.get(&key.0)?.map(|v| v.value());
            match previous {
                Some((old, size)) => {
                    recency.remove(old)?;
                    bytes = bytes.saturating_sub(size);
                }
                None => records += 1,
            }
            let size = accounted_size(record);
            let tick = self.next_tick();
            table.insert(&key.0, *record)?;
            used.insert(&key.0, (tick, size))?;
            recency.insert(tick, &key.0)?;
            bytes += size;
        }
        // Evict the least recently used records, never one of this batch, until within budget.
        let mut evicted = 0;
        if bytes > self.options.byte_budget {
            let mut victims = Vec::new();
            let mut freed = 0;
            for entry in recency.iter()? {
                if bytes - freed <= self.options.byte_budget {
                    break;
                }
                let (tick, key) = entry?;
                let (tick, key) = (tick.value(), *key.value());
                if batch.iter().any(|(k, _)| k.0 == key) {
                    continue;
                }
                let size = used.get(&key)?.map_or(0, |v| v.value().1);
                freed += size;
                victims.push((tick, key));
            }
            for (tick, key) in victims {
                recency.remove(tick)?;
                used.remove(&key)?;
                table.remove(&key)?;
                evicted += 1;
            }
            bytes -= freed;
            records -= evicted;
        }
        meta.insert("bytes", bytes)?;
        meta.insert("records", records)?;
        Ok((bytes, records, evicted))
    }
}

impl ArtifactStore for RedbStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let found = self.guarded(|| {
            let err = |e: redb::Error| map_err(&self.path, e);
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(RECORDS).map_err(|e| err(e.into()))?;
            let found = table
                .get(&key.0)
                .map_err(|e| err(e.into()))?
                .map(|v| v.value().to_vec());
            Ok(found)
        })?;
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            let tick = self.next_tick();
            let pending = {
                let mut touched = self.touched.lock();
                touched.insert(*key, tick);
                touched.len()
            };
            if pending >= TOUCH_FLUSH {
                // Recency only: a failure here loses no record, and is counted.
                let _ = self.guarded(|| self.flush_touches(false));
            }
        }
        Ok(found)
    }

    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        let evicted = self.guarded(|| self.write(&[(*key, record)]))?;
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        Ok(())
    }

    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // The last write of a key wins, as with separate puts.
        let mut batch: Vec<(RecordKey, &[u8])> = Vec::with_capacity(records.len());
        for (key, record) in records.iter().rev() {
            if !batch.iter().any(|(k, _)| k == key) {
                batch.push((*key, record));
            }
        }
        batch.reverse();
        let evicted = self.guarded(|| self.write(&batch))?;
        self.puts.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        let removed = self.guarded(|| {
            let err = |e: redb::Error| map_err(&self.path, e);
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            let removed = (|| -> Result<Option<(u64, u64)>, redb::Error> {
                let mut table = txn.open_table(RECORDS)?;
                let mut used = txn.open_table(USED)?;
                let mut recency = txn.open_table(RECENCY)?;
                let mut meta = txn.open_table(META)?;
                let Some((tick, size)) = used.remove(&key.0)?.map(|v| v.value()) else {
                    return Ok(None);
                };
                recency.remove(tick)?;
                table.remove(&key.0)?;
                let bytes = meta
                    .get("bytes")?
                    .map_or(0, |v| v.value())
                    .saturating_sub(size);
                let records = meta
                    .get("records")?
                    .map_or(0, |v| v.value())
                    .saturating_sub(1);
                meta.insert("bytes", bytes)?;
                meta.insert("records", records)?;
                Ok(Some((bytes, records)))
            })()
            .map_err(err)?;
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(removed)
        })?;
        if let Some((bytes, records)) = removed {
            self.bytes.store(bytes, Ordering::Relaxed);
            self.records.store(records, Ordering::Relaxed);
            self.removes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            gets: self.gets.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            removes: self.removes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if !self.poisoned.load(Ordering::Acquire) {
            // Recency only; nothing to report to at this point.
            let _ = self.guarded(|| self.flush_touches(true));
        }
    }
}
