//! Revalidation on load (the package-image rule): a stored result is used only if every
//! dependency it recorded still resolves to the same method identity in the current world.
//!
//! The dependencies are not merely checked: they are re-issued, in the order `infer` made them,
//! through the very context methods `infer` uses ([`InferCx::dispatch`], [`InferCx::depend_on`],
//! [`InferCx::compile`]). So the dependencies the loaded code instance registers are exactly
//! those a fresh `infer` would have recorded, in this world, and a later redefinition
//! invalidates it like any other code instance.
//!
//! A callee compiled through [`InferCx::compile`] is revalidated transitively: compiling it
//! goes through the same miss path, which loads its own record (or compiles it), and the result
//! must be the very one the caller was compiled against (same content digest). Recursion cannot
//! loop: a callee already being compiled or loaded further up the chain is reported in progress
//! by the job that dedupes compilations, exactly as during `infer`. The callee must be in the
//! same state as when the record was made: ready with the same content, or in progress (a
//! compiler may well emit different code for a callee it cannot see yet, so entering a cycle of
//! recursive functions at another member than last time recompiles the members whose view
//! changed, just as a cold start in that order would).

use super::compiler::PersistentCompiler;
use super::identity::{Identifier, InstanceId, TypeId};
use super::lattice::PersistentLattice;
use super::record::{Answer, Dep};
use crate::cache::{CacheInner, Callee, InferCx};
use crate::methods::MethodInstance;

/// Why a dependency does not hold: a short description for tracing.
pub(crate) type Changed = String;

/// Imports stored types, checking that each is declared as it was.
fn import<L: PersistentLattice>(
    ids: &Identifier<L>,
    lattice: &L,
    types: &[TypeId],
) -> Result<Vec<L::Type>, Changed> {
    types.iter().map(|t| ids.import(lattice, t)).collect()
}

/// The method instance `id` names in the compilation's world: the live method of that function,
/// table and signature, with that source, specialized on those argument types.
fn resolve<C: PersistentCompiler<L>, L: PersistentLattice>(
    ids: &Identifier<L>,
    cache: &CacheInner<C, L>,
    cx: &InferCx<'_, C, L>,
    id: &InstanceId,
) -> Result<MethodInstance<L>, Changed> {
    let engine = &cache.engine;
    let lattice = engine.lattice();
    let gone = || {
        format!(
            "the method of {} in table {} it named is gone",
            id.method.function, id.method.table
        )
    };
    let f = ids.function(engine, &id.method.function).ok_or_else(gone)?;
    let table = engine.table_named(&id.method.table).ok_or_else(gone)?;
    let signature = import(ids, lattice, &id.method.signature)?;
    let method = engine
        .live_method(f, table, &signature, cx.world())
        .ok_or_else(gone)?;
    match ids.method(&cache.compiler, engine, &method) {
        Some(now) if *now == id.method => {}
        _ => return Err(format!("method {method} was redefined")),
    }
    let argtypes = import(ids, lattice, &id.argtypes)?;
    Ok(method.instance(&argtypes.into()))
}

/// Re-issues `deps` through `cx`, in order. `Ok` if every one resolves as it did.
pub(crate) fn revalidate<C: PersistentCompiler<L>, L: PersistentLattice>(
    ids: &Identifier<L>,
    cache: &CacheInner<C, L>,
    cx: &mut InferCx<'_, C, L>,
    deps: &[Dep],
) -> Result<(), Changed> {
    let engine = &cache.engine;
    for dep in deps {
        match dep {
            Dep::Dispatch {
                function,
                argtypes,
                answer,
            } => {
                let f = ids
                    .function(engine, function)
                    .ok_or_else(|| format!("function {function} is not declared"))?;
                let types = import(ids, engine.lattice(), argtypes)?;
                let now = cx.dispatch(f, &types);
                let same = match (answer, &now) {
                    (Answer::Method(was), Ok(mi)) => ids
                        .method(&cache.compiler, engine, mi.method())
                        .is_some_and(|now| *now == *was),
                    (Answer::Error(was), Err(e)) => *was == e.to_string(),
                    _ => false,
                };
                if !same {
                    return Err(format!(
                        "dispatch {function}{} answers differently",
                        crate::types::SigDisplay(&types)
                    ));
                }
            }
            Dep::DependOn(id) => {
                let mi = resolve(ids, cache, cx, id)?;
                cx.depend_on(&mi)
                    .map_err(|e| format!("dependency on {mi} fails: {e}"))?;
            }
            Dep::Compiled { instance, callee } => {
                let mi = resolve(ids, cache, cx, instance)?;
                match (cx.compile(&mi), callee) {
                    (Ok(Callee::Ready(ci)), Some(was)) => {
                        if ci.0.digest.get() != Some(&was.0) {
                            return Err(format!("callee {mi} is not the one compiled against"));
                        }
                    }
                    (Ok(Callee::InProgress), None) => {}
                    (Ok(Callee::InProgress), Some(_)) => {
                        return Err(format!("callee {mi} is in progress now, it was ready"));
                    }
                    (Ok(Callee::Ready(_)), None) => {
                        return Err(format!("callee {mi} is ready now, it was in progress"));
                    }
                    (Err(e), _) => return Err(format!("callee {mi} fails: {e}")),
                }
            }
        }
    }
    Ok(())
}
