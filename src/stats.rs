//! Counters: hits, misses, phase runs, invalidations.
//!
//! Counting a hit must not make every reader write one shared cache line (that alone would cost
//! more than the hit). Hits are tallied in the [`Guard`](crate::Guard) that made them — a plain
//! increment of a field the thread owns — and added here when the guard is dropped; a thread-local
//! shard lookup per hit is a large share of a code-cache hit (`bash perf/callgrind.sh`). Each
//! counter is spread over cache-padded shards and a thread adds to the shard it was assigned on
//! first use, so threads do not share a line. Everything off the hit path is added with an atomic
//! add, and is exact; a guard adds its hits with a plain load and store (a locked add on every
//! guard drop would cost more than the hits it reports) to the shard of the pin slot its thread
//! holds, so with more than 32 threads pinned at once two may share a shard and, rarely, a batch of
//! hits is lost. Reading sums the shards: a
//! snapshot is exact once the counting threads have dropped their guards, and a lower bound while
//! they run.

use crossbeam_utils::CachePadded;

use crate::sync::{thread_shard, AtomicU64, Ordering};

const SHARDS: usize = 32;

#[inline]
fn shard() -> usize {
    thread_shard() % SHARDS
}

/// What is counted.
#[derive(Copy, Clone, Debug)]
#[repr(usize)]
pub(crate) enum Counter {
    DispatchHit,
    DispatchMiss,
    CodeMiss,
    CompileWait,
    Infer,
    Codegen,
    Link,
    PhaseFailure,
    Invalidated,
    DispatchInvalidated,
    Reclaimed,
    UserCodePanic,
    PersistLoad,
    PersistMiss,
    PersistStore,
    PersistRefusedCorrupt,
    PersistRefusedFormat,
    PersistRefusedCompilerVersion,
    PersistRefusedIdentity,
    PersistRefusedDependencies,
    PersistStoreError,
    PersistUnstorable,
}

const COUNTERS: usize = 22;

#[derive(Default)]
struct Shard {
    counts: [AtomicU64; COUNTERS],
}

pub(crate) struct Stats {
    shards: Box<[CachePadded<Shard>]>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Stats {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Shard::default()))
                .collect(),
        }
    }

    /// Adds `n`, exactly.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.shards[shard()].counts[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.shards
            .iter()
            .map(|s| s.counts[counter as usize].load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            dispatch_hits: self.sum(Counter::DispatchHit),
            dispatch_misses: self.sum(Counter::DispatchMiss),
            // Only guards count code hits, in their pin slots (see `Engine::stats`).
            code_hits: 0,
            code_misses: self.sum(Counter::CodeMiss),
            compile_waits: self.sum(Counter::CompileWait),
            infer_runs: self.sum(Counter::Infer),
            codegen_runs: self.sum(Counter::Codegen),
            link_runs: self.sum(Counter::Link),
            phase_failures: self.sum(Counter::PhaseFailure),
            invalidated_code_instances: self.sum(Counter::Invalidated),
            invalidated_dispatches: self.sum(Counter::DispatchInvalidated),
            reclaimed: self.sum(Counter::Reclaimed),
            user_code_panics: self.sum(Counter::UserCodePanic),
            persist_loads: self.sum(Counter::PersistLoad),
            persist_misses: self.sum(Counter::PersistMiss),
            persist_stores: self.sum(Counter::PersistStore),
            persist_refused_corrupt: self.sum(Counter::PersistRefusedCorrupt),
            persist_refused_format: self.sum(Counter::PersistRefusedFormat),
            persist_refused_compiler_version: self.sum(Counter::PersistRefusedCompilerVersion),
            persist_refused_identity: self.sum(Counter::PersistRefusedIdentity),
            persist_refused_dependencies: self.sum(Counter::PersistRefusedDependencies),
            persist_store_errors: self.sum(Counter::PersistStoreError),
            persist_unstorable: self.sum(Counter::PersistUnstorable),
        }
    }
}

/// A snapshot of an engine's or a cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Dispatches answered from the dispatch cache (a guard's hits are added when it is dropped).
    pub dispatch_hits: u64,
    /// Dispatches computed from the method tables.
    pub dispatch_misses: u64,
    /// Compilations answered from the code cache without running a phase (a guard's hits are
    /// added when it is dropped).
    pub code_hits: u64,
    /// Compilations that had to run (or wait for) at least one phase.
    pub code_misses: u64,
    /// Times a caller found its code instance being compiled by another thread and waited for
    /// that compilation instead of running it again (counted when the wait begins).
    pub compile_waits: u64,
    /// Successful runs of the infer phase.
    pub infer_runs: u64,
    /// Successful runs of the codegen phase.
    pub codegen_runs: u64,
    /// Successful runs of the link phase.
    pub link_runs: u64,
    /// Phase runs that returned an error or panicked.
    pub phase_failures: u64,
    /// Code instances whose validity an invalidation closed. A compilation still running when
    /// an invalidation reaches it counts, whether it then publishes (closed) or fails; one that
    /// has already failed, which a walk may still pass through to what was compiled against it
    /// (see [`crate::semantics`] §7), does not. An instance closed again at an older world
    /// (also §7) counts again.
    pub invalidated_code_instances: u64,
    /// Cached dispatch results a mutation changed.
    pub invalidated_dispatches: u64,
    /// Entries (methods, dispatch results, code instances) dropped by reclamation.
    pub reclaimed: u64,
    /// Panics caught in user code the engine ran on its own once an operation had taken effect:
    /// destructors of user values (phase results, sources, keys) it dropped after a mutation or
    /// during automatic reclamation, and descriptions it rendered for `tracing`. The operation
    /// stays in effect.
    pub user_code_panics: u64,
    /// Code instances installed from a persistent store: revalidated, with no `infer` and no
    /// `codegen` run (only `link`). Always 0 without a store (see the `persist` feature).
    pub persist_loads: u64,
    /// Misses for which the store held no record (never stored, evicted, or stored under another
    /// identity: a changed source, compiler version or type declaration).
    pub persist_misses: u64,
    /// Records handed to the store after a compilation (written, or queued for writing; a write
    /// that fails is counted in `persist_store_errors` too).
    pub persist_stores: u64,
    /// Records refused because they were truncated, failed their checksum or did not decode.
    pub persist_refused_corrupt: u64,
    /// Records refused because they were written in another record format version.
    pub persist_refused_format: u64,
    /// Records refused because another version of the compiler wrote them.
    pub persist_refused_compiler_version: u64,
    /// Records refused because the identity they carry is not the one looked up (a key
    /// collision, or a record written under the wrong key).
    pub persist_refused_identity: u64,
    /// Records refused because a dependency no longer resolves as it did: a dispatch answers
    /// another method (or none), a method was replaced or deleted, a callee's own record was
    /// refused or differs, or a named type is declared differently.
    pub persist_refused_dependencies: u64,
    /// Store operations that failed (unavailable, locked, full, I/O, timeout): a failed read
    /// falls back to compiling, a failed write loses only that record.
    pub persist_store_errors: u64,
    /// Compilations not stored because something they depend on has no stable identity (a
    /// method whose source the compiler cannot fingerprint, a type or key that does not
    /// serialize, a callee that is not stored).
    pub persist_unstorable: u64,
}
