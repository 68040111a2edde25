//! Interned argument-type tuples.
//!
//! A JIT knows its call sites: it can intern a site's argument types once
//! ([`Engine::signature`](crate::Engine::signature)) and dispatch with the [`Signature`] on every
//! call ([`Guard::dispatch_signature`](crate::Guard::dispatch_signature)). The signature carries
//! the hash of its types, so a dispatch hashes two integers instead of the types, and the cache
//! recognizes its own copy of the tuple by address instead of comparing the types.

use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use crate::sync::Arc;
use crate::types::{DefaultLattice, Lattice};

/// An argument-type tuple interned by an engine: cheap to clone (a reference count), compared and
/// hashed by identity.
///
/// Two signatures an engine interned from equal tuples are the same signature. A signature works
/// with any engine whose lattice the types belong to; with the engine that interned it, a cached
/// dispatch recognizes it by address.
///
/// ```
/// use compiler_caching::{Engine, Ty};
///
/// let engine = Engine::new();
/// let int = engine.lattice().declare_concrete("Int", &Ty::any())?;
/// let f = engine.declare_function("f")?;
/// engine.add_method(f, &[Ty::any()], "f(::Any)")?;
/// let site = engine.signature(&[int.clone()]);
/// assert_eq!(site, engine.signature(&[int.clone()]));
/// let guard = engine.pin();
/// let by_signature = guard.dispatch_signature(f, &site)?;
/// assert_eq!(by_signature, guard.dispatch(f, &[int])?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Signature<L: Lattice = DefaultLattice> {
    pub(super) args: Arc<[L::Type]>,
    pub(super) hash: u64,
}

impl<L: Lattice> Signature<L> {
    /// The argument types.
    pub fn types(&self) -> &[L::Type] {
        &self.args
    }
}

impl<L: Lattice> Clone for Signature<L> {
    fn clone(&self) -> Self {
        Signature {
            args: Arc::clone(&self.args),
            hash: self.hash,
        }
    }
}

impl<L: Lattice> PartialEq for Signature<L> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.args, &other.args)
    }
}

impl<L: Lattice> Eq for Signature<L> {}

impl<L: Lattice> Hash for Signature<L> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(Arc::as_ptr(&self.args) as *const () as usize);
    }
}

impl<L: Lattice> fmt::Debug for Signature<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signature")
            .field(&crate::error::describe_debug(&&*self.args))
            .finish()
    }
}

/// The hash of an argument-type tuple (runs the types' `Hash`: user code).
#[inline]
pub(super) fn args_hash<T: Hash>(args: &[T]) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(args)
}

/// The signatures an engine has interned. They live as long as the engine: a program has as many
/// as it has distinct call-site tuples.
pub(crate) struct Interner<L: Lattice> {
    set: papaya::HashSet<Arc<[L::Type]>, rustc_hash::FxBuildHasher>,
}

impl<L: Lattice> Interner<L> {
    pub(crate) fn new() -> Self {
        Interner {
            set: papaya::HashSet::builder()
                .hasher(rustc_hash::FxBuildHasher)
                .build(),
        }
    }

    /// The signature of `args`, interned on first use.
    pub(crate) fn intern(&self, args: &[L::Type]) -> Signature<L> {
        let set = self.set.pin();
        let args = match set.get(args) {
            Some(found) => Arc::clone(found),
            None => {
                let new: Arc<[L::Type]> = args.into();
                // Of two threads interning one tuple at once, the first insertion wins and both
                // return it.
                set.insert(Arc::clone(&new));
                set.get(args).map_or(new, Arc::clone)
            }
        };
        let hash = args_hash(&args);
        Signature { args, hash }
    }
}
