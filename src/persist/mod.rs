//! The persistent artifact tier: compiled artifacts as opaque, self-checking byte records in
//! [`ArtifactStore`]s, keyed by a content hash.
//!
//! - [`store`]: the [`ArtifactStore`] trait, [`RecordKey`], [`StoreError`], [`StoreStats`];
//! - [`memory_store`]: [`MemoryStore`], a store in a `Mutex<HashMap>`;
//! - `redis_store` (feature `redis`, on by default): `RedisStore`, a store a fleet of
//!   processes shares through a Redis server;
//! - [`layered`]: [`LayeredStore`], an ordered list of tiers (local first, then shared) with
//!   read-through and write-behind.

pub mod layered;
pub mod memory_store;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod store;

pub use layered::{LayeredOptions, LayeredStore, QueueStats, TierStats, Verifier, WriteMode};
pub use memory_store::MemoryStore;
#[cfg(feature = "redis")]
pub use redis_store::{RedisHealth, RedisOptions, RedisStore};
pub use store::{ArtifactStore, RecordKey, StoreError, StoreStats};
