//! The persistent tier: compiled artifacts kept in an [`ArtifactStore`] (by default an embedded
//! on-disk [`RedbStore`]) so that a restarted process runs its first calls with no `infer` and no
//! `codegen` for everything that did not change, and stays exactly as correct as a cold start.
//!
//! - **Records** (`record.rs`): each code instance whose `infer` ran is stored after `codegen` as
//!   one record: a versioned header with a BLAKE3 checksum, then (postcard) its full
//!   [`identity`], the dependencies `infer` recorded, the inferred result and the artifact.
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

mod compiler;
mod identity;
mod lattice;
mod memory_store;
mod record;
mod redb_store;
mod revalidate;
mod store;
mod tier;
mod writer;

pub use compiler::PersistentCompiler;
pub use identity::Fingerprint;
pub use lattice::{PersistentLattice, TypeName};
pub use memory_store::MemoryStore;
pub use record::RECORD_FORMAT_VERSION;
pub use redb_store::{RedbOptions, RedbStore};
pub use store::{ArtifactStore, RecordKey, StoreError, StoreStats, UnavailableStore};
