//! The hook a tier below the in-memory cache (the persistent tier of `crate::persist`) installs in
//! the miss path: one call before `infer` ([`Tier::load`]) and one after `codegen`
//! ([`Tier::store`]). The cache knows the tier only through this trait, so it does not depend on
//! the layer that implements it.

// Without the `persist` feature nothing installs a tier, so what it would read goes unread.
#![cfg_attr(not(feature = "persist"), allow(dead_code))]

use super::code_instance::CiData;
use super::compiler::{Compiler, InferCx};
use super::CacheInner;
use crate::error::Error;
use crate::methods::{Function, MethodInstance};
use crate::sync::Arc;
use crate::types::Lattice;

/// A code instance a tier found, revalidated, and hands back instead of running `infer` and
/// `codegen`.
pub(crate) struct Loaded<C: Compiler<L>, L: Lattice> {
    pub(crate) inferred: C::Inferred,
    pub(crate) artifact: C::Artifact,
    /// The content digest the tier identifies this result by (see [`CiData::digest`]).
    pub(crate) digest: [u8; 32],
}

/// What `infer` asked its context, in order, for a tier to record: the same queries the
/// dependencies were made from, with the answers the compiler saw.
pub(crate) enum Trail<C: Compiler<L>, L: Lattice> {
    /// [`InferCx::dispatch`] of `f` with `args`, and its answer.
    Dispatch {
        f: Function,
        args: Box<[L::Type]>,
        answer: Result<MethodInstance<L>, Error>,
    },
    /// [`InferCx::depend_on`] of an instance.
    DependOn(MethodInstance<L>),
    /// [`InferCx::compile`] of an instance: its code instance if it was ready, `None` if it was
    /// in progress further up the chain.
    Compiled {
        instance: MethodInstance<L>,
        callee: Option<Arc<CiData<C, L>>>,
    },
}

/// A tier below the in-memory cache.
pub(crate) trait Tier<C: Compiler<L>, L: Lattice>: Send + Sync {
    /// Called on a miss, inside the slot's job, before `infer`, with a fresh context for
    /// `cx.instance()`. A tier that has a valid result re-issues the dependencies it recorded
    /// through `cx` (so that they are registered exactly as if `infer` had recorded them) and
    /// returns the result; `None` runs the phases as usual, with a new context.
    fn load(&self, cache: &CacheInner<C, L>, cx: &mut InferCx<'_, C, L>) -> Option<Loaded<C, L>>;

    /// Called after `codegen` of a code instance whose `infer` ran in this job, with what `infer`
    /// asked. Returns the content digest the result was stored under, if it was.
    fn store(
        &self,
        cache: &CacheInner<C, L>,
        ci: &CiData<C, L>,
        artifact: &C::Artifact,
        trail: Vec<Trail<C, L>>,
    ) -> Option<[u8; 32]>;

    /// The tier itself, for the layer that installed it.
    fn as_any(&self) -> &dyn std::any::Any;
}
