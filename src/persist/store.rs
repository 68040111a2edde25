//! The [`ArtifactStore`] trait every store of the persistent tier implements, its key, its errors
//! and its counters: opaque records under content-addressed keys.
//!
//! A store knows nothing of compilers, identities or record formats: it keeps bytes under 32-byte
//! keys. The engine encodes and decodes records (see `record.rs`), so every store — the embedded
//! [`RedbStore`](crate::RedbStore), the in-memory [`MemoryStore`](crate::MemoryStore), the
//! `RedisStore` a fleet shares, a [`LayeredStore`](crate::LayeredStore) of several — holds the
//! same records and is checked the same way on load.

use std::fmt;
use std::path::PathBuf;

use crate::sync::{AtomicU64, Ordering};

/// A content-addressed record key: a 32-byte hash of the record's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub [u8; 32]);

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({self})")
    }
}

impl fmt::Display for RecordKey {
    /// The key in lowercase hexadecimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a store could not answer.
///
/// Every failure of a store reaches the engine as one of these, and the engine's answer is always
/// the same: compile as if the store held nothing, and count the failure
/// ([`StatsSnapshot::persist_store_errors`](crate::StatsSnapshot::persist_store_errors)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be used now: it could not be opened, it was closed after a fault, or its
    /// server is down, refused the connection, or is being backed off from after a failure (a
    /// later call may then succeed).
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// What made it unavailable.
        reason: String,
    },
    /// The store did not answer in time.
    #[error("store timed out")]
    Timeout,
    /// Another process (or another handle in this one) holds the store's file.
    #[error("store file {} is locked by another process or handle", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The store has no room: the disk is full, or one record is larger than the store's budget.
    #[error("store full")]
    Full,
    /// The store's own data is damaged (not a record: the engine checks records itself).
    #[error("store corrupt: {reason}")]
    Corrupt {
        /// What was found damaged.
        reason: String,
    },
    /// An I/O error.
    #[error("store I/O error: {reason}")]
    Io {
        /// The error, as text.
        reason: String,
    },
}

/// A store's counters. `gets` to `errors` count since the store was opened; `bytes` and
/// `records` are what it holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Reads asked for.
    pub gets: u64,
    /// Reads that found a record.
    pub hits: u64,
    /// Records written.
    pub puts: u64,
    /// Records removed on request.
    pub removes: u64,
    /// Records removed to stay within the byte budget.
    pub evictions: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The bytes held, as the store accounts them (see each store's documentation).
    pub bytes: u64,
    /// The records held.
    pub records: u64,
}

/// Where compiled artifacts persist: bytes under content-addressed keys.
///
/// A store is shared by every compiling thread (its methods take `&self`), and may be shared by
/// several processes; a failure is a [`StoreError`], never a panic. The engine treats a store as
/// a cache: anything may be missing, and whatever a record holds is checked before it is used.
///
/// A key is a hash of a record's identity, not of its content: when an instance's dependencies
/// changed, the engine compiles it again and writes a new record under the same key, which must
/// replace the old one. Writers racing on one key each write a whole record; a store keeps
/// either.
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    /// The stored bytes for `key`, if any.
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `record` under `key` (replacing what was there).
    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError>;
    /// Removes the record under `key`, if there is one.
    fn remove(&self, key: &RecordKey) -> Result<(), StoreError>;
    /// The store's counters.
    fn stats(&self) -> StoreStats;
    /// Several puts at once; stores that can batch (one transaction) override it.
    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, r) in records {
            self.put(k, r)?;
        }
        Ok(())
    }
}

/// A store that answers every operation with the error it was made with: what a process uses in
/// place of a store it could not open (a file locked by another process, unreadable, on a full
/// disk), so that its caches compile everything and count each failed operation instead of
/// failing to start.
///
/// ```
/// use std::sync::Arc;
/// use compiler_caching::{ArtifactStore, RecordKey, StoreError, UnavailableStore};
///
/// let store = UnavailableStore::new(StoreError::Timeout);
/// assert_eq!(store.get(&RecordKey([0; 32])), Err(StoreError::Timeout));
/// assert_eq!(store.stats().errors, 1);
/// ```
#[derive(Debug)]
pub struct UnavailableStore {
    error: StoreError,
    errors: AtomicU64,
}

impl UnavailableStore {
    /// A store that fails every operation with `error`.
    pub fn new(error: StoreError) -> Self {
        UnavailableStore {
            error,
            errors: AtomicU64::new(0),
        }
    }

    /// The error every operation fails with.
    pub fn error(&self) -> &StoreError {
        &self.error
    }

    fn fail<T>(&self) -> Result<T, StoreError> {
        self.errors.fetch_add(1, Ordering::Relaxed);
        Err(self.error.clone())
    }
}

impl ArtifactStore for UnavailableStore {
    fn get(&self, _: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.fail()
    }
    fn put(&self, _: &RecordKey, _: &[u8]) -> Result<(), StoreError> {
        self.fail()
    }
    fn remove(&self, _: &RecordKey) -> Result<(), StoreError> {
        self.fail()
    }
    fn stats(&self) -> StoreStats {
        StoreStats {
            errors: self.errors.load(Ordering::Relaxed),
            ..StoreStats::default()
        }
    }
    fn put_batch(&self, _: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        self.fail()
    }
}
