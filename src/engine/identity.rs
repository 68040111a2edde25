//! Finding tables and methods again by name and signature, for a tier that stores what was
//! compiled under stable identities and resolves them in a later process, where every handle and
//! id differs.

use super::Engine;
use crate::error::Error;
use crate::methods::{Function, Method, MethodTable, TableStack};
use crate::sync::Arc;
use crate::types::Lattice;
use crate::world::World;

impl<L: Lattice> Engine<L> {
    /// The name of `table` (`global` for the global table).
    pub(crate) fn table_name(&self, table: MethodTable) -> Result<Arc<str>, Error> {
        self.inner.check_table(table)
    }

    /// The table named `name`, if there is one.
    pub(crate) fn table_named(&self, name: &str) -> Option<MethodTable> {
        let names = self.inner.names.lock();
        let id = names.tables.iter().position(|t| &**t == name)?;
        Some(MethodTable {
            engine: self.inner.id,
            id: u32::try_from(id).ok()?,
        })
    }

    /// The names of the tables `stack` walks, in order.
    pub(crate) fn stack_names(&self, stack: TableStack) -> Result<Vec<Arc<str>>, Error> {
        let guard = self.enter();
        let data = self.inner.tables.stack_in(stack, &guard)?;
        Ok(data.names.to_vec())
    }

    /// The method of `f` in `table` live in `world` whose signature is type-equal to `sig`, if
    /// there is one (at most one is). Runs the lattice.
    pub(crate) fn live_method(
        &self,
        f: Function,
        table: MethodTable,
        sig: &[L::Type],
        world: World,
    ) -> Option<Method<L>> {
        let func = self.inner.tables.function(f).ok()?;
        let lists = func.lists.load();
        let lattice = &self.inner.lattice;
        let index = func.find_lineage(lattice, &lists, table.id, sig)?;
        let lineage = lists.lineage(table.id, index)?;
        let member = lineage.member(lineage.at(world.get())?);
        member.is_live_in(world).then(|| member.clone())
    }
}
