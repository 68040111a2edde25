//! The miss path: finding or starting the slot's job, and running it exactly once.

use super::code_instance::CiData;
use super::compiler::Compiler;
use super::slot::{valid_in, Slot, Version};
use super::CacheInner;
use crate::error::{describe, describe_debug, CompileError, Error, Phase};
use crate::methods::MethodInstance;
use crate::raw::job::Waited;
use crate::raw::slot::Begin;
use crate::stats::Counter;
use crate::sync::Arc;
use crate::types::Lattice;
use crate::world::World;

/// A slot a dependency holds, with the version it found there.
pub(crate) type Held<C, L> = (Arc<Slot<C, L>>, Option<Version<C, L>>);

pub(crate) enum Compiled<C: Compiler<L>, L: Lattice> {
    Ready(Arc<CiData<C, L>>),
    /// The instance is being compiled further up this chain of compilations.
    Cycle,
}

/// Finishes the slot's job even if the code between its start and its end unwinds, so that no
/// waiter is ever stranded.
struct JobGuard<'a, C: Compiler<L>, L: Lattice> {
    slot: &'a Slot<C, L>,
    /// The world the job compiles in.
    world: u64,
    armed: bool,
}

impl<C: Compiler<L>, L: Lattice> JobGuard<'_, C, L> {
    fn finish(mut self, outcome: Result<(), CompileError<C::Error>>) {
        self.armed = false;
        self.slot.cell.finish((self.world, outcome));
    }
}

impl<C: Compiler<L>, L: Lattice> Drop for JobGuard<'_, C, L> {
    fn drop(&mut self) {
        if self.armed {
            let unwound = CompileError::Panicked {
                phase: Phase::Infer,
                instance: describe(&self.slot.mi),
                message: "compilation unwound".into(),
            };
            self.slot.cell.finish((self.world, Err(unwound)));
        }
    }
}

impl<C: Compiler<L>, L: Lattice> CacheInner<C, L> {
    /// Checks that `mi` belongs to this engine and that its method is live in `world`: only then
    /// can code compiled for it, or against it, be valid in `world`.
    pub(super) fn check_instance(&self, mi: &MethodInstance<L>, world: World) -> Result<(), Error> {
        if !self.engine.owns(mi.method().function()) {
            return Err(Error::UnknownFunction {
                function: describe(mi),
            });
        }
        if !mi.method().is_live_in(world) {
            return Err(Error::MethodNotLive {
                method: describe(mi.method()),
            });
        }
        Ok(())
    }

    pub(crate) fn compile_slow(
        &self,
        seize: &seize::LocalGuard<'_>,
        world: World,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Result<Compiled<C, L>, CompileError<C::Error>> {
        let engine = &self.engine;
        self.check_instance(mi, world)?;
        check_key(key)?;
        loop {
            let slot = self.slot(mi, key, seize);
            let begun = slot.cell.begin(
                |versions| valid_in(versions, world.get()),
                |ci| ci.linked.get().is_some(),
                || self.start(&slot, world),
            );
            match begun {
                // Reclamation removed the slot after we found it; the next lookup makes a new one.
                Begin::Retired => continue,
                Begin::Ready(ci) => return Ok(Compiled::Ready(ci)),
                Begin::Wait(job) => {
                    if job.owner() != crate::sync::current_thread() {
                        engine.counters().add(Counter::CompileWait, 1);
                    }
                    match job.wait(engine.waits()) {
                        Waited::Cycle => return Ok(Compiled::Cycle),
                        Waited::Done((w, Err(e))) if w == world.get() => return Err(e),
                        // A success is looked up again; so is a failure in another world, which
                        // this caller's compilation (against its own world's callees) may not
                        // share.
                        Waited::Done(_) => continue,
                    }
                }
                Begin::Run { version } => {
                    let job = JobGuard {
                        slot: &slot,
                        world: world.get(),
                        armed: true,
                    };
                    let result = self.run_phases(seize, world, &slot, version);
                    job.finish(result.as_ref().map(|_| ()).map_err(Clone::clone));
                    return result.map(Compiled::Ready);
                }
            }
        }
    }
}

/// Refuses a key that is not equal to itself: it would make a new slot on every lookup.
#[allow(clippy::eq_op)] // comparing the key with itself is the check
pub(super) fn check_key<K: PartialEq + std::fmt::Debug>(key: &K) -> Result<(), Error> {
    if key == key {
        Ok(())
    } else {
        Err(Error::KeyNotReflexive {
            key: describe_debug(key),
        })
    }
}

/// The error for a top-level compile made from inside the same instance's own compilation.
pub(super) fn reentered<E, L: Lattice>(mi: &MethodInstance<L>) -> CompileError<E> {
    CompileError::Reentered {
        instance: describe(mi),
    }
}
