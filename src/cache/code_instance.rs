//! Code instances: one compilation of a method instance for one owner.

use std::fmt;

use super::compiler::Compiler;
use super::slot::Dependency;
use crate::drop_chain;
use crate::graph::{self, Dependent, DependentCore, Invalidation};
use crate::methods::MethodInstance;
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
    pub(crate) core: DependentCore,
    pub(crate) mi: MethodInstance<L>,
    pub(crate) key: C::Key,
    pub(crate) tag: Arc<str>,
    pub(crate) inferred: C::Inferred,
    pub(crate) artifact: OnceLock<C::Artifact>,
    pub(crate) linked: OnceLock<C::Linked>,
    /// What it was compiled against; kept so that those stay reachable for invalidation. Set
    /// once, right after the instance registers with them.
    pub(crate) deps: OnceLock<Vec<Dependency<L>>>,
    /// The digest of the content a tier below the cache holds this result as (see
    /// [`super::tier`]): set when it was loaded from there or stored there.
    pub(crate) digest: OnceLock<[u8; 32]>,
}

impl<C: Compiler<L>, L: Lattice> Drop for CiData<C, L> {
    fn drop(&mut self) {
        // Dependencies hold their own dependencies: a chain as long as the call chain.
        drop_chain::defer(self.deps.take());
    }
}

impl<C: Compiler<L>, L: Lattice> Dependent for CiData<C, L> {
    fn core(&self) -> &DependentCore {
        &self.core
    }

    fn label(&self) -> String {
        format!("{} in {}[{:?}]", self.mi, self.tag, self.key)
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
        let v = &self.0.core.validity;
        WorldRange::from_raw(v.min(), v.max())
    }

    /// Whether it is valid in `world` (exact for retained worlds; see
    /// [`CodeInstance::validity`]).
    pub fn is_valid_in(&self, world: World) -> bool {
        self.0.core.validity.contains(world.get())
    }

    /// The world it was compiled in.
    pub fn compiled_in(&self) -> World {
        World::from_raw(self.0.core.validity.compile_world())
    }

    /// The infer phase's result.
    pub fn inferred(&self) -> &C::Inferred {
        &self.0.inferred
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
    pub fn invalidation(&self) -> Option<Invalidation> {
        graph::explain(&*self.0)
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
