//! The dependency graph: code instances (the *dependents*), the backedges that lead to them from
//! what they were compiled against, and why each was invalidated.
//!
//! A dependency is a dispatch answer (see [`crate::dispatch`]) or a code-cache slot
//! `(method instance, owner)` (see [`crate::cache`]); each keeps the [`Edges`] of its dependents.
//! The graph is type-erased: a dependent is a [`Dependent`] whatever its compiler, and the
//! descriptions a why-chain needs are [`Describe`] values rendered only when asked. So the layers
//! above hang their nodes on it (methods register slots, dispatch answers keep edges, the engine
//! and the caches invalidate through it) without it knowing any of their types.
//!
//! [`walk`] holds the invalidation walk itself. Dependents form long chains (a call chain, a path
//! of causes), which `crate::drop_chain` drops without deep recursion.

pub(crate) mod walk;

use std::fmt;

use crate::drop_chain;
use crate::error::describe;
use crate::raw::edges::EdgeSet;
use crate::raw::validity::Validity;
use crate::sync::{Arc, Mutex, Weak};
use crate::world::{World, OPEN};

/// A dependent: a code instance, seen without its compiler's types.
pub(crate) trait Dependent: Send + Sync {
    fn core(&self) -> &DependentCore;
    /// A description such as `f(Int64) in MyCompiler[2]`.
    fn label(&self) -> String;
}

pub(crate) type DependentRef = Arc<dyn Dependent>;

/// A backedge: the dependent's compile world (so an invalidation can select edges without
/// touching the dependent) and a weak reference to it. Weak, because the dependent in turn holds
/// its dependencies strongly; a strong backedge would make every edge a reference cycle.
pub(crate) struct Edge {
    pub(crate) compile_world: u64,
    pub(crate) dependent: Weak<dyn Dependent>,
}

impl Edge {
    pub(crate) fn to(dependent: &DependentRef) -> Edge {
        Edge {
            compile_world: dependent.core().validity.compile_world(),
            dependent: Arc::downgrade(dependent),
        }
    }

    /// Whether the edge can never matter again: its dependent is gone or already invalid, and a
    /// further invalidation could not lower it.
    pub(crate) fn is_dead(&self) -> bool {
        self.dependent
            .upgrade()
            .is_none_or(|d| d.core().validity.max() != OPEN)
    }
}

pub(crate) type Edges = EdgeSet<Edge>;

/// What every code instance carries for invalidation, whatever its compiler.
pub(crate) struct DependentCore {
    pub(crate) validity: Validity,
    /// Why it was invalidated; the first record stands. An uncontended lock rather than a
    /// once-cell: initializing a once-cell cost more per instance in the walk
    /// (`benches/invalidation`).
    cause: Mutex<Option<Cause>>,
    /// The edges of this instance's own slot: who depends on this instance's result.
    pub(crate) slot_edges: Arc<Edges>,
}

impl DependentCore {
    pub(crate) fn new(compile_world: u64, min: u64, slot_edges: Arc<Edges>) -> Self {
        DependentCore {
            validity: Validity::new(compile_world, min),
            cause: Mutex::new(None),
            slot_edges,
        }
    }

    /// Records why the instance was invalidated; the first record stands.
    pub(crate) fn set_cause(&self, cause: Cause) {
        self.cause.lock().get_or_insert(cause);
    }

    /// The upstream instance, if the cause is `Via`, or the root cause's parts otherwise.
    fn read_cause(&self) -> Option<Result<DependentRef, (u64, String, String)>> {
        // Copied out first: describing runs user code (types' `Display`), not under the lock.
        let cause = self.cause.lock().clone()?;
        Some(match cause {
            Cause::Via(up) => Ok(up),
            Cause::Dispatch { mutation, call } => Err((
                mutation.world,
                describe(&*mutation),
                format!("dispatch {} changed", describe(&*call)),
            )),
            Cause::Method { mutation, instance } => Err((
                mutation.world,
                describe(&*mutation),
                format!("method of {} was replaced or deleted", describe(&*instance)),
            )),
            Cause::DuringCompilation { world } => Err((
                world,
                "a dependency was invalidated while this was being compiled".to_owned(),
                "published already invalid".to_owned(),
            )),
        })
    }
}

impl Drop for DependentCore {
    fn drop(&mut self) {
        // A `Via` cause holds the previous link of the invalidation's path (see drop_chain).
        let cause = self.cause.get_mut().take();
        drop_chain::defer(cause);
    }
}

/// A code-cache slot, seen without its compiler's types.
pub(crate) trait SlotNode: Send + Sync {
    /// Lowers every version computed before `world` to end at `world`, giving each the cause
    /// `cause` makes; returns those lowered.
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<DependentRef>;
    /// Who depends on this slot's results.
    fn edges(&self) -> &Arc<Edges>;
}

/// Something the engine describes to a user only when asked (a method, a dispatch, a method
/// instance). Kept as a value rather than a string so that a mutation runs no user code (a
/// custom lattice's `Display`) once it has begun to change the engine.
pub(crate) type Describe = Arc<dyn fmt::Display + Send + Sync>;

/// The mutation at the root of an invalidation.
pub(crate) struct Mutation {
    pub(crate) world: u64,
    /// The method added, replaced or deleted.
    pub(crate) method: Describe,
    /// `"added to"`, `"replaced in"` or `"deleted from"`.
    pub(crate) verb: &'static str,
    pub(crate) table: Arc<str>,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "method {} {} table {}",
            self.method, self.verb, self.table
        )
    }
}

/// Why a code instance was invalidated.
#[derive(Clone)]
pub(crate) enum Cause {
    /// A dispatch result it recorded changed.
    Dispatch {
        mutation: Arc<Mutation>,
        call: Describe,
    },
    /// The method of a method instance it depends on (or its own) was replaced or deleted.
    Method {
        mutation: Arc<Mutation>,
        instance: Describe,
    },
    /// A code instance it depends on was invalidated.
    Via(DependentRef),
    /// A dependency was invalidated while it was being compiled; it was published already closed.
    DuringCompilation { world: u64 },
}

/// What an invalidation let go of. Dropping a code instance can run user code (its phase results'
/// destructors), so a mutation drops these only after it has published its world.
#[derive(Default)]
pub(crate) struct Released {
    /// Every dependent the walk lowered.
    pub(crate) deps: Vec<DependentRef>,
    /// Everything else: dispatch nodes, slots, method instances.
    pub(crate) other: Vec<Box<dyn Send>>,
}

/// Why a code instance stopped being valid: the mutation, what it changed, and the chain of
/// dependencies through which the invalidation reached the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// The world the mutation created; the instance is valid only before it.
    pub world: World,
    /// The mutation, for example `method f(Int64) added to table global`.
    pub mutation: String,
    /// The edge the mutation hit first, for example `dispatch f(Int64) via [global] changed`.
    pub trigger: String,
    /// The code instances from the one the trigger hit down to the one asked about, inclusive.
    pub chain: Vec<String>,
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "world {}: {}; {}",
            self.world, self.mutation, self.trigger
        )?;
        for link in &self.chain {
            write!(f, " -> {link}")?;
        }
        Ok(())
    }
}

/// Reconstructs the invalidation record of `dep`, if it was invalidated by a walk.
pub(crate) fn explain(dep: &dyn Dependent) -> Option<Invalidation> {
    let mut chain = vec![dep.label()];
    let mut cause = dep.core().read_cause()?;
    loop {
        match cause {
            Ok(up) => {
                chain.push(up.label());
                cause = up.core().read_cause()?;
            }
            Err((world, mutation, trigger)) => {
                chain.reverse();
                return Some(Invalidation {
                    world: World::from_raw(world),
                    mutation,
                    trigger,
                    chain,
                });
            }
        }
    }
}
