//! The persistent tier: compiled artifacts kept in an [`ArtifactStore`] — the embedded on-disk
//! [`RedbStore`], a [`MemoryStore`], a `RedisStore` a fleet shares (feature `redis`), or a
//! [`LayeredStore`] of several — so that a restarted process (or another process of the fleet)
//! runs its first calls with no `infer` and no `codegen` for everything that did not change, and
//! stays exactly as correct as a cold start.
//!
//! - **Records** (`record.rs`): each code instance whose `infer` ran is stored after `codegen` as
//!   one record: a versioned header with a BLAKE3 checksum, then (postcard) its full
//!   identity, the dependencies `infer` recorded, the inferred result and the artifact.
//!   [`record_verifier`] checks a record's header and checksum, for a [`LayeredStore`] to check
//!   what a slower tier returns before copying it into a faster one.
//! - **Keys** (`identity.rs`): content-addressed, a hash of the identity — cache tag and stack,
//!   compiler version, owner key, the method (function and table names, signature, source
//!   fingerprint) and the argument types, each type with a fingerprint of its declaration — so a
//!   record is found again in a process where every pointer and id differs. A load compares the
//!   full identity, so a hash collision is detected, not used.
//! - **Revalidation** (`revalidate.rs`): a record is used only if every recorded dependency still
//!   resolves to the same method identity in the current world; its dependencies are re-issued
//!   through the same context `infer` uses, so the edges registered are the ones `infer` would
//!   have recorded, and later redefinitions invalidate it like anything else. Only `link` runs.
//! - **Faults** never produce wrong code or a crash: a record that is damaged, of another format
//!   or compiler version, of another identity or with changed dependencies is refused, a store
//!   that fails is skipped; each falls back to compiling and is counted in
//!   [`StatsSnapshot`](crate::StatsSnapshot).
//! - **Writes** go behind (`writer.rs`): a thread per cache writes records in batches.
//!
//! The stores:
//!
//! - [`store`]: the [`ArtifactStore`] trait, [`RecordKey`], [`StoreError`], [`StoreStats`] and
//!   [`UnavailableStore`];
//! - [`memory_store`]: [`MemoryStore`], in memory, with an optional byte budget (LRU);
//! - [`redb_store`]: [`RedbStore`], an embedded database file with a byte budget (LRU);
//! - `redis_store` (feature `redis`, on by default): `RedisStore`, a store a fleet of processes
//!   shares through a Redis server;
//! - [`layered`]: [`LayeredStore`], an ordered list of stores (local first, then shared) with
//!   read-through and write-behind.

mod compiler;
mod identity;
mod lattice;
pub mod layered;
pub mod memory_store;
mod record;
pub mod redb_store;
#[cfg(feature = "redis")]
pub mod redis_store;
mod revalidate;
pub mod store;
mod tier;
mod writer;

pub use compiler::PersistentCompiler;
pub use identity::Fingerprint;
pub use lattice::{PersistentLattice, TypeName};
pub use layered::{LayeredOptions, LayeredStore, QueueStats, TierStats, Verifier, WriteMode};
pub use memory_store::MemoryStore;
pub use record::{record_verifier, RECORD_FORMAT_VERSION};
pub use redb_store::{RedbOptions, RedbStore};
#[cfg(feature = "redis")]
pub use redis_store::{RedisHealth, RedisOptions, RedisStore};
pub use store::{ArtifactStore, RecordKey, StoreError, StoreStats, UnavailableStore};
