//! The lock-free and blocking protocols the engine is built from, kept small and free of the
//! engine's types so that the loom models in `loom-tests/` can check them directly.
//!
//! - [`validity`]: a world range whose upper end only ever moves down.
//! - [`edges`]: dependents registered on a dependency, and the register-versus-invalidate protocol
//!   that keeps a result compiled against a stale dependency from ever looking valid.
//! - [`job`]: the per-key once-cell that deduplicates compilation, with cross-thread cycle
//!   detection so recursive compiles never deadlock.
//! - [`pins`]: pinned worlds and the horizon reclamation may not pass.
//! - [`share`]: work the invalidation walk offers to rayon helpers, without the walking thread
//!   ever waiting inside rayon.
//! - [`slot`]: a code-cache slot's locked state, and retiring an idle slot without losing a
//!   compilation or a dependency that found it.
//!
//! Everything here takes its atomics and locks from the crate's `sync` facade.

pub mod edges;
pub mod job;
pub mod pins;
pub mod share;
pub mod slot;
pub mod validity;
