//! Method tables: each function's methods, and the stacks of tables dispatch walks.
//!
//! A function's methods are kept per table in one immutable snapshot, published with an atomic
//! swap (arc-swap) on every mutation of that function. Dispatch loads the snapshot once and so
//! sees every table of a stack at the same instant. A snapshot keeps replaced and deleted methods
//! (each knows its `[defined, deleted)` range) until reclamation proves no pinned world can see
//! them, which is what lets older worlds be asked how the engine stood then.

use std::collections::HashMap;

use arc_swap::ArcSwap;

use super::{Function, MethodLists, TableStack};
use crate::error::Error;
use crate::sync::{shared_map, Arc, Map, Mutex};
use crate::types::{sig_equal, Lattice};

pub(crate) struct StackData {
    pub(crate) tables: Box<[u32]>,
    pub(crate) names: Box<[Arc<str>]>,
}

impl StackData {
    pub(crate) fn describe(&self) -> String {
        format!("[{}]", self.names.join(", "))
    }
}

/// A declared function: its name, its arity if fixed, and its methods.
pub(crate) struct FunctionData<L: Lattice> {
    pub(crate) name: Arc<str>,
    pub(crate) arity: Option<usize>,
    /// The methods, replaced by every mutation of the function.
    pub(crate) lists: ArcSwap<MethodLists<L>>,
    /// Where each lineage of `lists` is, by table and [`Lattice::signature_key`]: where a
    /// definition looks for the lineage it joins (and the live method it replaces). Written only
    /// under the engine's writer lock, by mutations and reclamation.
    lineages: Mutex<HashMap<(u32, u64), Vec<usize>>>,
}

impl<L: Lattice> FunctionData<L> {
    pub(crate) fn new(name: Arc<str>, arity: Option<usize>) -> Self {
        FunctionData {
            name,
            arity,
            lists: ArcSwap::from_pointee(MethodLists::default()),
            lineages: Mutex::new(HashMap::new()),
        }
    }

    /// The lineage of `lists` in `table` whose signature is type-equal to `sig`, if any: the one
    /// a definition of `sig` joins. Runs the lattice (user code).
    pub(crate) fn find_lineage(
        &self,
        lattice: &L,
        lists: &MethodLists<L>,
        table: u32,
        sig: &[L::Type],
    ) -> Option<usize> {
        let index = self.lineages.lock();
        index
            .get(&(table, lattice.signature_key(sig)))?
            .iter()
            .copied()
            .find(|&i| {
                lists
                    .lineage(table, i)
                    .is_some_and(|l| sig_equal(lattice, l.signature(), sig))
            })
    }

    /// Records that lineage `index` of `table`, keyed `key`, began. Runs no user code.
    pub(crate) fn index_lineage(&self, table: u32, key: u64, index: usize) {
        self.lineages
            .lock()
            .entry((table, key))
            .or_default()
            .push(index);
    }

    /// Indexes the lineages of `lists` anew (after reclamation dropped some).
    pub(crate) fn reindex(&self, lists: &MethodLists<L>) {
        let mut index = self.lineages.lock();
        index.clear();
        for (table, i, key) in lists.keys() {
            index.entry((table, key)).or_default().push(i);
        }
    }

    /// Checks a signature or an argument list against the function's arity and the lattice.
    pub(crate) fn check_signature(&self, lattice: &L, sig: &[L::Type]) -> Result<(), Error> {
        if let Some(arity) = self.arity {
            if arity != sig.len() {
                return Err(Error::ArityMismatch {
                    function: self.name.to_string(),
                    expected: arity,
                    found: sig.len(),
                });
            }
        }
        sig.iter().try_for_each(|t| lattice.check(t))?;
        Ok(())
    }
}

/// Every function and table stack of one engine, by id: what dispatch reads. Lock-free to read;
/// written only when a function or a stack is declared.
pub(crate) struct Tables<L: Lattice> {
    engine: u32,
    functions: Map<u32, Arc<FunctionData<L>>>,
    stacks: Map<u32, Arc<StackData>>,
}

impl<L: Lattice> Tables<L> {
    pub(crate) fn new(engine: u32, collector: &Arc<seize::Collector>) -> Self {
        Tables {
            engine,
            functions: shared_map(collector),
            stacks: shared_map(collector),
        }
    }

    /// The engine these tables belong to.
    pub(crate) fn engine(&self) -> u32 {
        self.engine
    }

    pub(crate) fn add_function(&self, id: u32, data: FunctionData<L>) {
        self.functions.pin().insert(id, Arc::new(data));
    }

    pub(crate) fn add_stack(&self, id: u32, data: StackData) {
        self.stacks.pin().insert(id, Arc::new(data));
    }

    /// The function `f`, if it is one of this engine's.
    pub(crate) fn function(&self, f: Function) -> Result<Arc<FunctionData<L>>, Error> {
        self.function_in(f, &self.functions.guard()).cloned()
    }

    /// [`Tables::function`], borrowed under a guard of the engine's collector.
    pub(crate) fn function_in<'g>(
        &'g self,
        f: Function,
        guard: &'g impl papaya::Guard,
    ) -> Result<&'g Arc<FunctionData<L>>, Error> {
        let unknown = || Error::UnknownFunction {
            function: format!("#{}", f.id),
        };
        if f.engine != self.engine {
            return Err(unknown());
        }
        self.functions.get(&f.id, guard).ok_or_else(unknown)
    }

    /// The stack `stack`, if it is one of this engine's, borrowed under a guard of the engine's
    /// collector.
    pub(crate) fn stack_in<'g>(
        &'g self,
        stack: TableStack,
        guard: &'g impl papaya::Guard,
    ) -> Result<&'g Arc<StackData>, Error> {
        let unknown = || Error::UnknownTable {
            table: format!("stack #{}", stack.id),
        };
        if stack.engine != self.engine {
            return Err(unknown());
        }
        self.stacks.get(&stack.id, guard).ok_or_else(unknown)
    }

    /// Every function, for reclamation and census.
    pub(crate) fn for_each_function(&self, mut visit: impl FnMut(&FunctionData<L>)) {
        let guard = self.functions.guard();
        for f in self.functions.values(&guard) {
            visit(f);
        }
    }
}
