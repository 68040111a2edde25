//! Code instances: one compilation of a method instance for one owner.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::compiler::Compiler;
use crate::dispatch::DispatchNode;
use crate::error::{describe, describe_debug};
use crate::graph::{self, Dependent, Graph, Invalidation, Node, NodeHandle};
use crate::methods::MethodInstance;
use crate::stats::{Counter, Stats};
use crate::sync::{Arc, OnceLock};
use crate::types::{DefaultLattice, Lattice};
use crate::world::{World, WorldRange};

/// A code instance: one compilation of a method instance for one owner, with its phase results
/// and the worlds it is valid in. Cloning is a reference-count bump.
pub struct CodeInstance<C: Compiler<L>, L: Lattice = DefaultLattice>(pub(crate) Arc<CiData<C, L>>);

impl<C: Compiler<L>, L: Lattice> Clone for CodeInstance<C, L> {
    fn clone(&self) -> Self {
        CodeInstance(Arc::clone(&self.0))
    }
}

pub(crate) struct CiData<C: Compiler<L>, L: Lattice> {
    /// Its node in the dependency graph: its validity, and what was compiled against it.
    pub(crate) node: NodeHandle,
    pub(crate) mi: MethodInstance<L>,
    pub(crate) key: C::Key,
    pub(crate) tag: Arc<str>,
    /// Set when `infer` returns, before the instance is published: a published instance always
    /// has it. (Before, the instance is its slot's pending version, which dependents may
    /// register on but nobody reads.)
    pub(crate) inferred: OnceLock<C::Inferred>,
    pub(crate) artifact: OnceLock<C::Artifact>,
    pub(crate) linked: OnceLock<C::Linked>,
    /// The dispatch answers it was compiled against; kept so that those stay reachable for
    /// invalidation. Set once, when it is published.
    pub(crate) deps: OnceLock<Vec<Arc<DispatchNode<L>>>>,
    /// Where a panic of a phase result's destructor is counted.
    pub(crate) stats: Arc<Stats>,
    /// The graph its node is in, to explain its invalidation.
    pub(crate) graph: Arc<Graph>,
    /// The digest of the content a tier below the cache holds this result as (see
    /// [`super::tier`]): set when it was loaded from there or stored there.
    pub(crate) digest: OnceLock<[u8; 32]>,
}

impl<C: Compiler<L>, L: Lattice> Drop for CiData<C, L> {
    /// Drops the phase results one at a time, each under `catch_unwind`: their destructors are
    /// user code (a linked value may free executable memory), and a code instance is dropped
    /// wherever its last reference goes, often by reclamation on whichever thread leaves its
    /// reclamation guard last. A panic there would surface in an unrelated call, or stop the
    /// drop of everything freed with it; it is counted instead
    /// ([`StatsSnapshot::user_code_panics`](crate::StatsSnapshot::user_code_panics)).
    fn drop(&mut self) {
        // Describing runs user code (`Display` of types, `Debug` of the key): contained too.
        self.node.keep_label(|| self.label());
        let panics = usize::from(contained(self.linked.take()))
            + usize::from(contained(self.artifact.take()))
            + usize::from(contained(self.inferred.take()));
        if panics > 0 {
            self.stats.add(Counter::UserCodePanic, panics as u64);
        }
    }
}

/// Drops `value`, returning whether its destructor panicked.
fn contained<T>(value: T) -> bool {
    catch_unwind(AssertUnwindSafe(move || drop(value))).is_err()
}

impl<C: Compiler<L>, L: Lattice> CiData<C, L> {
    /// Its validity and backedges.
    #[inline]
    pub(crate) fn valid(&self) -> &Node {
        self.node.node()
    }

    /// The infer phase's result of a published instance.
    pub(crate) fn inferred(&self) -> &C::Inferred {
        match self.inferred.get() {
            Some(inferred) => inferred,
            None => unreachable!("only published instances are read, and they are inferred"),
        }
    }
}

impl<C: Compiler<L>, L: Lattice> Dependent for CiData<C, L> {
    fn label(&self) -> String {
        let label = format!(
            "{} in {}[{}]",
            describe(&self.mi),
            self.tag,
            describe_debug(&self.key)
        );
        if self.node.node().is_failed() {
            format!("{label} (a compilation that failed)")
        } else {
            label
        }
    }
}

impl<C: Compiler<L>, L: Lattice> CodeInstance<C, L> {
    /// The method instance compiled.
    pub fn instance(&self) -> &MethodInstance<L> {
        &self.0.mi
    }

    /// The owner key it was compiled for.
    pub fn key(&self) -> &C::Key {
        &self.0.key
    }

    /// The worlds it is valid in. The upper end is set when an invalidation reaches it.
    ///
    /// The range is exact for every world the engine still retains (from
    /// [`Engine::oldest_retained_world`](crate::Engine::oldest_retained_world) on). Its lower end
    /// may reach below that floor, into worlds whose methods reclamation has since dropped: such
    /// worlds can no longer be pinned or asked about, and what the range says of them means
    /// nothing.
    pub fn validity(&self) -> WorldRange {
        let v = self.0.valid();
        WorldRange::from_raw(v.min(), v.max())
    }

    /// Whether it is valid in `world` (exact for retained worlds; see
    /// [`CodeInstance::validity`]).
    pub fn is_valid_in(&self, world: World) -> bool {
        self.0.valid().contains(world.get())
    }

    /// The world it was compiled in.
    pub fn compiled_in(&self) -> World {
        World::from_raw(self.0.valid().compile_world())
    }

    /// The infer phase's result.
    pub fn inferred(&self) -> &C::Inferred {
        self.0.inferred()
    }

    /// The codegen phase's result, once it has run.
    pub fn artifact(&self) -> Option<&C::Artifact> {
        self.0.artifact.get()
    }

    /// The link phase's result, once it has run.
    pub fn linked(&self) -> Option<&C::Linked> {
        self.0.linked.get()
    }

    /// Why it was invalidated, if it was: the mutation, what it changed, and the chain of
    /// dependencies that carried the invalidation here.
    ///
    /// An invalidation closes the range first and records its cause just after, so a call made
    /// while the invalidating operation is still running can see [`CodeInstance::validity`]
    /// closed and get `None` here; once that operation has returned, the cause is recorded.
    pub fn invalidation(&self) -> Option<Invalidation> {
        graph::explain(&self.0.graph, self.0.node.get_ref())
    }
}

impl<C: Compiler<L>, L: Lattice> fmt::Debug for CodeInstance<C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CodeInstance({} valid {})",
            self.0.label(),
            self.validity()
        )
    }
}
