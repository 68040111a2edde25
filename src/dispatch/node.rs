//! A cached dispatch answer, and its key within its function's registry.

use std::fmt;

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
    /// No applicable method beats every other one (see [`Selection::Ambiguous`](super::select::Selection::Ambiguous)).
    Ambiguous {
        candidate: Method<L>,
        rivals: Vec<Method<L>>,
    },
}

/// A dispatch result with its validity and the code instances that depend on it.
pub(crate) struct DispatchNode<L: Lattice> {
    pub(crate) function_name: Arc<str>,
    pub(crate) stack: Arc<StackData>,
    /// Shared with the answer's keys and the instance it found.
    pub(crate) args: Arc<[L::Type]>,
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
pub(crate) type NodeKey<T> = (u32, Arc<[T]>);
