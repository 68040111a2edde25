//! The [`ArtifactStore`] trait every tier of the persistent artifact cache implements, its key
//! and its errors.

use std::fmt;
use std::path::PathBuf;

/// A content-addressed record key: a 32-byte hash of the record's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(pub [u8; 32]);

impl fmt::Debug for RecordKey {
    /// The key in lowercase hexadecimal, as `RecordKey(00ff…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKey(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// Why a store could not answer.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or used now (a server down, refused, or backing off after a
    /// failure); a later call may succeed.
    #[error("artifact store unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The store did not answer within its timeout.
    #[error("artifact store timed out")]
    Timeout,
    /// The store's file is locked by another process.
    #[error("artifact store locked: {}", path.display())]
    Locked {
        /// The locked file.
        path: PathBuf,
    },
    /// The store has no room for the record.
    #[error("artifact store full")]
    Full,
    /// The store holds a record it cannot return intact.
    #[error("artifact store corrupt: {reason}")]
    Corrupt {
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error.
    #[error("artifact store I/O error: {reason}")]
    Io {
        /// The error.
        reason: String,
    },
}

/// Counters of a store, since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Lookups.
    pub gets: u64,
    /// Lookups that found a record.
    pub hits: u64,
    /// Records written.
    pub puts: u64,
    /// Records removed.
    pub removes: u64,
    /// Records the store dropped on its own to make room.
    pub evictions: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Bytes of the records held.
    pub bytes: u64,
    /// Records held.
    pub records: u64,
}

/// A store of compiled artifacts: opaque, self-checking byte records under content hashes.
///
/// A store is shared by every compiling thread: its methods take `&self`. Two writers of one
/// key write the same content (the key is a hash of the record's identity), so a store may keep
/// either; a reader checks a record it gets before using it.
pub trait ArtifactStore: Send + Sync + std::fmt::Debug {
    /// The record under `key`, if the store holds one.
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `record` under `key`.
    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError>;
    /// Removes the record under `key`, if any.
    fn remove(&self, key: &RecordKey) -> Result<(), StoreError>;
    /// The store's counters.
    fn stats(&self) -> StoreStats;
    /// Stores every record; a store may do it in fewer round trips than one `put` each.
    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, r) in records {
            self.put(k, r)?;
        }
        Ok(())
    }
}
