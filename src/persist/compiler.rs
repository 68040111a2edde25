//! What a compiler provides to have its results persist: [`PersistentCompiler`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::identity::Fingerprint;
use super::lattice::PersistentLattice;
use crate::cache::Compiler;
use crate::methods::{Method, MethodInstance};
use crate::types::DefaultLattice;

/// A [`Compiler`] whose results can be stored and loaded by a persistent tier: its owner key,
/// inferred results and artifacts serialize, it names its own version, and it fingerprints
/// method sources (which the engine cannot read).
///
/// Compilers that do not implement it are unaffected by the tier: their caches are built with
/// [`CompilerCache::new`](crate::CompilerCache::new) as always.
///
/// What `infer` must observe only through its context for a loaded result to be exactly as
/// correct as a fresh one: the dispatch answers it asks for
/// ([`InferCx::dispatch`](crate::InferCx::dispatch)), the callees it compiles or depends on, its
/// own instance (method,
/// source, argument types, owner key) and the declarations of the types those mention. Those
/// are what a record stores and what a load revalidates. Anything else `infer` reads — global
/// state, the clock, functions looked up by name that are not then dispatched — is no more
/// tracked across processes than it is within one.
///
/// # Example
///
/// ```
/// use compiler_caching::{Compiler, Fingerprint, InferCx, Method, PersistentCompiler, PhaseCx};
///
/// struct Doubler;
///
/// impl Compiler for Doubler {
///     type Key = ();
///     type Inferred = i64;
///     type Artifact = i64;
///     type Linked = i64;
///     type Error = String;
///     fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
///         Ok(*cx.instance().method().source::<i64>().ok_or("bad source")? * 2)
///     }
///     fn codegen(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> { Ok(*v) }
///     fn link(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> { Ok(*v) }
/// }
///
/// impl PersistentCompiler for Doubler {
///     fn version(&self) -> &str {
///         "doubler 1"
///     }
///     fn source_fingerprint(&self, method: &Method) -> Option<Fingerprint> {
///         Some(Fingerprint::of(&method.source::<i64>()?.to_le_bytes()))
///     }
/// }
/// ```
pub trait PersistentCompiler<L: PersistentLattice = DefaultLattice>:
    Compiler<
    L,
    Key: Serialize,
    Inferred: Serialize + DeserializeOwned,
    Artifact: Serialize + DeserializeOwned,
>
{
    /// The compiler's version: part of every record's identity, so a record written by another
    /// version is never found (change it whenever what `infer` or `codegen` produce changes).
    fn version(&self) -> &str;

    /// A fingerprint of `method`'s source that changes whenever its meaning does (and only then,
    /// ideally: positions and comments need not count). `None` if this source cannot be
    /// fingerprinted: nothing compiled for it, or depending on it, is then stored.
    fn source_fingerprint(&self, method: &Method<L>) -> Option<Fingerprint>;

    /// Called when the code instance of `instance` for `key` was loaded from the store rather
    /// than compiled (before its `link`). The default does nothing.
    fn loaded(&self, instance: &MethodInstance<L>, key: &Self::Key) {
        let _ = (instance, key);
    }
}
