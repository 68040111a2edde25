//! Functions, methods, method tables and method instances: what dispatch chooses among.
//!
//! [`Function`], [`MethodTable`] and [`TableStack`] are cheap `Copy` handles, valid only with the
//! engine that made them. A [`Method`] belongs to one function and one table; a
//! [`MethodInstance`] is a method specialized on argument types, interned per method. [`tables`]
//! holds the functions and stacks of an engine; [`lists`] each function's methods as immutable
//! snapshots, grouped into lineages of type-equal methods.

mod lists;
mod method;
mod tables;

pub(crate) use lists::{Lineage, MethodLists, WRITINGS};
pub(crate) use method::MethodData;
pub use method::{Method, MethodInstance};
pub(crate) use tables::{FunctionData, StackData, Tables};

/// A function: a name that methods are defined for. A cheap `Copy` handle, valid only with the
/// engine that declared it.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct Function {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}

/// A method table: the engine's global table or an overlay. A cheap `Copy` handle.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct MethodTable {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}

impl MethodTable {
    /// Whether this is the engine's global table.
    pub fn is_global(&self) -> bool {
        self.id == 0
    }
}

/// An ordered stack of method tables that dispatch walks, for example `[overlay, global]`.
/// The first table holding an applicable live method decides. A cheap `Copy` handle.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct TableStack {
    pub(crate) engine: u32,
    pub(crate) id: u32,
}
