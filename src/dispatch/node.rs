//! A cached dispatch answer, and the keys the dispatch caches use.

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::error::Error;
use crate::graph::Edges;
use crate::methods::{Method, MethodInstance, StackData};
use crate::raw::validity::Validity;
use crate::sync::Arc;
use crate::types::{sig_subtype, Lattice, SigDisplay};

/// What a dispatch found.
pub(crate) enum Answer<L: Lattice> {
    Found(MethodInstance<L>),
    NoMethod,
    /// No applicable method beats every other one (see [`Selection::Ambiguous`]).
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
    pub(crate) answer: Answer<L>,
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
        match &self.answer {
            Answer::Found(mi) => Ok(mi),
            Answer::NoMethod => Err(self.no_method()),
            Answer::Ambiguous { candidate, rivals } => Err(self.ambiguous(candidate, rivals)),
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

impl<L: Lattice> fmt::Display for DispatchNode<L> {
    /// The call, as `f(Int64) via [overlay, global]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
