//! Multiple dispatch and the dispatch cache.
//!
//! `compute` is the algorithm of [`crate::semantics`] §4: walk the stack of tables, let the first
//! table holding a live applicable method decide, and pick the method more specific than every
//! other applicable one. Along the way it computes the exact world range over which the answer
//! holds, from the `defined`/`deleted` worlds of the applicable methods.
//!
//! A result valid in the newest world becomes a dispatch node, registered with its function
//! (so a mutation of that function can find it and re-check it) and published in the engine's
//! lock-free dispatch cache (so a repeated lookup costs one hash-map probe and an atomic load).
//! Registration re-checks, under the function's lock, that no mutation of the function happened
//! since the methods were read; a mutation holds the same lock while it installs its methods and
//! re-checks the registered nodes, so a node can never be registered stale.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::error::Error;
use crate::instance::MethodInstance;
use crate::invalidate::Edges;
use crate::raw::validity::Validity;
use crate::table::{Method, MethodLists, StackData};
use crate::types::{sig_subtype, Lattice, SigDisplay};
use crate::world::OPEN;

/// What a dispatch found.
pub(crate) enum Outcome<L: Lattice> {
    Found(MethodInstance<L>),
    NoMethod,
    /// No applicable method beats every other one (see [`Raw::Ambiguous`]).
    Ambiguous {
        candidate: Method<L>,
        rivals: Vec<Method<L>>,
    },
}

/// A dispatch result with its validity and the code instances that depend on it.
pub(crate) struct DispatchNode<L: Lattice> {
    pub(crate) function_name: Arc<str>,
    pub(crate) stack: Arc<StackData>,
    pub(crate) args: Box<[L::Type]>,
    pub(crate) outcome: Outcome<L>,
    pub(crate) validity: Validity,
    pub(crate) edges: Edges,
}

impl<L: Lattice> DispatchNode<L> {
    /// Whether adding or removing `method` can change this answer: exactly when `method` applies
    /// to the node's argument types. Every applicable method matters, not only those the answer
    /// names: deleting a method that the would-be winner beats can free an older method it
    /// dominated (specificity is not transitive with unions), and deleting any applicable method
    /// can turn an ambiguity into a winner. A method that does not apply never changes the answer.
    pub(crate) fn depends_on(&self, lattice: &L, method: &Method<L>) -> bool {
        self.stack.tables.contains(&method.0.table.id)
            && sig_subtype(lattice, &self.args, &method.0.sig)
    }

    #[inline]
    pub(crate) fn result(&self) -> Result<&MethodInstance<L>, Error> {
        match &self.outcome {
            Outcome::Found(mi) => Ok(mi),
            Outcome::NoMethod => Err(self.no_method()),
            Outcome::Ambiguous { candidate, rivals } => Err(self.ambiguous(candidate, rivals)),
        }
    }

    // The error paths build strings; kept out of line so a hit inlines as a tag check.
    #[cold]
    fn no_method(&self) -> Error {
        Error::NoMethod {
            function: self.function_name.to_string(),
            argtypes: SigDisplay(&self.args).to_string(),
        }
    }

    #[cold]
    fn ambiguous(&self, candidate: &Method<L>, rivals: &[Method<L>]) -> Error {
        Error::Ambiguous {
            function: self.function_name.to_string(),
            argtypes: SigDisplay(&self.args).to_string(),
            candidate: candidate.to_string(),
            rivals: rivals.iter().map(ToString::to_string).collect(),
        }
    }
}

impl<L: Lattice> std::fmt::Display for DispatchNode<L> {
    /// The call, as `f(Int64) via [overlay, global]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} via {}",
            self.function_name,
            SigDisplay(&self.args),
            self.stack.describe()
        )
    }
}

/// A registered node's key within its function: the stack and the argument types.
pub(crate) type NodeKey<T> = (u32, Box<[T]>);

/// The dispatch nodes of one function that are valid in the newest world.
pub(crate) struct FuncDispatch<L: Lattice> {
    pub(crate) nodes: HashMap<NodeKey<L::Type>, Arc<DispatchNode<L>>>,
}

impl<L: Lattice> Default for FuncDispatch<L> {
    fn default() -> Self {
        FuncDispatch {
            nodes: HashMap::new(),
        }
    }
}

/// The key of the engine's dispatch cache.
pub(crate) struct DispatchKey<T> {
    pub(crate) func: u32,
    pub(crate) stack: u32,
    /// 0 in the current-world cache; the world asked in, in the cache of older answers.
    pub(crate) world: u64,
    pub(crate) args: Box<[T]>,
}

/// A borrowed [`DispatchKey`], so that a lookup allocates nothing.
#[derive(Clone, Copy)]
pub(crate) struct DispatchQuery<'a, T> {
    pub(crate) func: u32,
    pub(crate) stack: u32,
    pub(crate) world: u64,
    pub(crate) args: &'a [T],
}

impl<T: Hash> Hash for DispatchKey<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        DispatchQuery {
            func: self.func,
            stack: self.stack,
            world: self.world,
            args: &self.args,
        }
        .hash(state)
    }
}

impl<T: Hash> Hash for DispatchQuery<'_, T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.func) << 32 | u64::from(self.stack));
        state.write_u64(self.world);
        self.args.hash(state);
    }
}

impl<T: Eq> PartialEq for DispatchKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.func == other.func
            && self.stack == other.stack
            && self.world == other.world
            && self.args == other.args
    }
}
impl<T: Eq> Eq for DispatchKey<T> {}

impl<T: Eq> papaya::Equivalent<DispatchKey<T>> for DispatchQuery<'_, T> {
    fn equivalent(&self, key: &DispatchKey<T>) -> bool {
        self.func == key.func
            && self.stack == key.stack
            && self.world == key.world
            && *self.args == *key.args
    }
}

/// The raw answer of [`compute`], before method instances are made.
pub(crate) enum Raw<L: Lattice> {
    Found(Method<L>),
    NoMethod,
    /// No applicable method beats every other applicable one. `candidate` is the would-be winner
    /// (the oldest applicable method that no other beats, or the oldest applicable method if
    /// every one is beaten by another), and `rivals` the applicable methods it fails to beat,
    /// oldest first: what a user must disambiguate.
    Ambiguous {
        candidate: Method<L>,
        rivals: Vec<Method<L>>,
    },
}

/// Dispatch `args` through `stack` in `world` over `lists`. Returns the answer and the world range
/// `[min, max)` over which the methods it read give the same answer.
pub(crate) fn compute<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
) -> (Raw<L>, u64, u64) {
    compute_with(lattice, lists, stack, args, world, |m| {
        m.0.deleted.load(std::sync::atomic::Ordering::Acquire)
    })
}

/// [`compute`], with each method's deletion world given by `deleted`: a mutation asks what the
/// answer will be once it has deleted a method, before it deletes it.
pub(crate) fn compute_with<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    deleted: impl Fn(&Method<L>) -> u64,
) -> (Raw<L>, u64, u64) {
    let mut min = 1;
    let mut max = OPEN;
    let mut note = |event: u64| {
        if event == OPEN {
        } else if event <= world {
            min = min.max(event);
        } else {
            max = max.min(event);
        }
    };
    for &table in stack.tables.iter() {
        let mut live: Vec<&Method<L>> = Vec::new();
        for m in lists.table(table) {
            if !sig_subtype(lattice, args, &m.0.sig) {
                continue;
            }
            let gone = deleted(m);
            note(m.0.defined);
            note(gone);
            if m.0.defined <= world && world < gone {
                live.push(m);
            }
        }
        if !live.is_empty() {
            return (select(lattice, &live), min, max);
        }
    }
    (Raw::NoMethod, min, max)
}

/// The applicable method more specific than every other, or the ambiguity.
///
/// Specificity is not transitive once unions appear (`a` beats `b`, `b` beats `c`, `a` does not
/// beat `c`), so a method beaten by no other is not necessarily the winner: the winner must beat
/// every other applicable method.
fn select<L: Lattice>(lattice: &L, live: &[&Method<L>]) -> Raw<L> {
    let beats = |a: &Method<L>, b: &Method<L>| lattice.is_more_specific(&a.0.sig, &b.0.sig);
    // A tournament finds the winner in one pass when there is one; a check confirms it.
    let mut best = live[0];
    for &m in &live[1..] {
        if beats(m, best) {
            best = m;
        }
    }
    let wins = |w: &Method<L>| live.iter().all(|&o| o == w || beats(w, o));
    if wins(best) {
        return Raw::Found(best.clone());
    }
    if let Some(w) = live.iter().find(|&&w| wins(w)) {
        return Raw::Found((*w).clone());
    }
    let oldest = |ms: &mut dyn Iterator<Item = &Method<L>>| ms.min_by_key(|m| m.0.id).cloned();
    let candidate = oldest(
        &mut live
            .iter()
            .copied()
            .filter(|&m| !live.iter().any(|&o| o != m && beats(o, m))),
    )
    .or_else(|| oldest(&mut live.iter().copied()))
    .expect("at least one applicable method");
    let mut rivals: Vec<Method<L>> = live
        .iter()
        .filter(|&&o| *o != candidate && !beats(&candidate, o))
        .map(|&o| o.clone())
        .collect();
    rivals.sort_by_key(|m| m.0.id);
    Raw::Ambiguous { candidate, rivals }
}

/// Whether two raw answers are the same answer.
pub(crate) fn same_raw<L: Lattice>(a: &Raw<L>, b: &Raw<L>) -> bool {
    match (a, b) {
        (Raw::Found(x), Raw::Found(y)) => x == y,
        (Raw::NoMethod, Raw::NoMethod) => true,
        (
            Raw::Ambiguous {
                candidate: c1,
                rivals: r1,
            },
            Raw::Ambiguous {
                candidate: c2,
                rivals: r2,
            },
        ) => c1 == c2 && r1 == r2,
        _ => false,
    }
}

impl<L: Lattice> Raw<L> {
    /// Whether this answer is the one `outcome` records.
    pub(crate) fn matches(&self, outcome: &Outcome<L>) -> bool {
        match (self, outcome) {
            (Raw::Found(m), Outcome::Found(mi)) => mi.method() == m,
            (Raw::NoMethod, Outcome::NoMethod) => true,
            (
                Raw::Ambiguous {
                    candidate: c1,
                    rivals: r1,
                },
                Outcome::Ambiguous {
                    candidate: c2,
                    rivals: r2,
                },
            ) => c1 == c2 && r1 == r2,
            _ => false,
        }
    }
}

/// The first world after `world` in which the answer differs from `raw`, or `OPEN` if it never
/// does in `lists`. [`compute`]'s upper bound is conservative (any applicable method's event);
/// this re-dispatches at each such event to find the one that really changes the answer, so an
/// answer asked for an older world is not closed by, say, a less specific method added later.
pub(crate) fn exact_max<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    raw: &Raw<L>,
) -> u64 {
    let mut events: Vec<u64> = Vec::new();
    for &table in stack.tables.iter() {
        for m in lists.table(table) {
            if sig_subtype(lattice, args, &m.0.sig) {
                let deleted = m.0.deleted.load(std::sync::atomic::Ordering::Acquire);
                events.extend(
                    [m.0.defined, deleted]
                        .into_iter()
                        .filter(|&e| e != OPEN && e > world),
                );
            }
        }
    }
    events.sort_unstable();
    events.dedup();
    events
        .into_iter()
        .find(|&e| !same_raw(&compute(lattice, lists, stack, args, e).0, raw))
        .unwrap_or(OPEN)
}

/// Turns a raw answer into an outcome, interning the method instance.
pub(crate) fn outcome<L: Lattice>(raw: Raw<L>, args: &[L::Type]) -> Outcome<L> {
    match raw {
        Raw::Found(m) => Outcome::Found(m.instance(args)),
        Raw::NoMethod => Outcome::NoMethod,
        Raw::Ambiguous { candidate, rivals } => Outcome::Ambiguous { candidate, rivals },
    }
}
