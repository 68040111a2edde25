//! The dependency graph: code instances (the *dependents*), the backedges that lead to them from
//! what they were compiled against, and why each was invalidated.
//!
//! Each code instance has a node in the engine's [`nodes::Graph`] arena: its validity, the
//! backedges of the instances compiled against it, and the upstream node its invalidation came
//! from. A dispatch answer (see [`crate::dispatch`]) keeps the backedges of the instances that
//! recorded it as an [`Edges`] set, and so does a code-cache slot (see [`crate::cache`]) for
//! instances that depend on it while nothing is compiled for it. The graph is type-erased: the
//! descriptions a why-chain needs come from a [`Dependent`] (the code instance) and [`Describe`]
//! values rendered only when asked. So the layers above hang their nodes on it without it knowing
//! any of their types.
//!
//! [`walk`] holds the invalidation walk itself.

pub(crate) mod nodes;
pub(crate) mod walk;

use std::fmt;

use crate::error::describe;
use crate::raw::edges::EdgeSet;
use crate::sync::Arc;
use crate::world::World;

pub(crate) use nodes::{Graph, Node, NodeHandle, NodeRef};

/// A dependent: a code instance, seen without its compiler's types.
pub(crate) trait Dependent: Send + Sync {
    /// A description such as `f(Int64) in MyCompiler[2]`.
    fn label(&self) -> String;
}

/// The backedges of a dispatch answer or of a slot: the nodes of the instances that recorded it.
pub(crate) type Edges = EdgeSet<NodeRef>;

/// A code-cache slot, seen without its compiler's types.
pub(crate) trait SlotNode: Send + Sync {
    /// Lowers every version computed before `world` to end at `world` (the running one too),
    /// giving each the cause `cause` makes; returns those lowered.
    fn invalidate_versions(&self, world: u64, cause: &dyn Fn() -> Cause) -> Vec<NodeRef>;
    /// The instances that depend on the slot while nothing is compiled for it.
    fn edges(&self) -> &Edges;
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
    /// A dependency was invalidated (or its own method deleted) while it was being compiled, in
    /// the world given; it was published already closed.
    DuringCompilation { world: u64 },
}

impl Cause {
    /// `(world, mutation, trigger)`, for an [`Invalidation`].
    fn describe(&self) -> (u64, String, String) {
        match self {
            Cause::Dispatch { mutation, call } => (
                mutation.world,
                describe(&**mutation),
                format!("dispatch {} changed", describe(&**call)),
            ),
            Cause::Method { mutation, instance } => (
                mutation.world,
                describe(&**mutation),
                format!(
                    "method of {} was replaced or deleted",
                    describe(&**instance)
                ),
            ),
            Cause::DuringCompilation { world } => (
                *world,
                "a dependency was invalidated while this was being compiled".to_owned(),
                "published already invalid".to_owned(),
            ),
        }
    }
}

/// What an invalidation let go of, and what it lowered. Dropping can run user code (destructors),
/// so a mutation drops these only after it has published its world.
#[derive(Default)]
pub(crate) struct Released {
    /// What the walks lowered.
    pub(crate) lowered: walk::Lowered,
    /// Dispatch nodes, slots, method instances.
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

/// Reconstructs the invalidation record of the instance `node` names, if a walk invalidated it. The
/// chain follows upstream nodes while their instances are alive; an instance reclaimed since cuts
/// it there, and the record then starts at the last instance still known.
pub(crate) fn explain(graph: &Graph, node: NodeRef) -> Option<Invalidation> {
    let mut chain = vec![graph.label(node)?];
    let mut at = node;
    // A chain is as long as a path in the graph; a guard against a corrupted (cyclic) one.
    for _ in 0..u32::MAX {
        match graph.cause(at)? {
            Ok(up) => match graph.label(up) {
                Some(label) => {
                    chain.push(label);
                    at = up;
                }
                None => {
                    chain.push("<a code instance since reclaimed>".to_owned());
                    chain.reverse();
                    let world = graph.max_of(node)?;
                    return Some(Invalidation {
                        world: World::from_raw(world),
                        mutation: format!("a mutation in world {world}"),
                        trigger: "(its record went with a reclaimed code instance)".to_owned(),
                        chain,
                    });
                }
            },
            Err(root) => {
                let (world, mutation, trigger) = root.describe();
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
    None
}
