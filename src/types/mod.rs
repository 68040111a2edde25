//! The type lattice that dispatch runs over.
//!
//! Dispatch needs three questions answered about types — "is `A <: B`", "is `A ∩ B` empty" and "is
//! `A` concrete" — plus, for ranking applicable methods, "is signature `s1` more specific than
//! `s2`". [`Lattice`] is that interface. The crate ships [`DefaultLattice`], a nominal hierarchy
//! with `Any`, `Bottom`, unions and tuples that serves without configuration; an embedder with a
//! type system of its own implements [`Lattice`] and builds an [`Engine`](crate::Engine) over it.
//!
//! A *signature* is a tuple of argument types, written here as a slice `&[T]`. Tuples are
//! covariant, so signature subtyping and disjointness are elementwise ([`sig_subtype`],
//! [`sig_disjoint`]).

mod nominal;
mod specificity;
mod ty;

use std::fmt;
use std::hash::Hash;

pub use nominal::{DefaultLattice, TypeDecl, TypeDeclKind};
pub use ty::{Ty, TyKind, MAX_TYPE_DEPTH, MAX_UNION_SPLIT};

use crate::error::TypeError;

/// A type system dispatch can run over.
///
/// Implementations must be lattices in the usual sense: `is_subtype` is reflexive and transitive,
/// and `is_disjoint(a, b)` holds exactly when no value has both types. The engine calls these from
/// many threads at once, so they take `&self` and must not block for long.
///
/// # Example: a two-level type system of its own
///
/// ```
/// use compiler_caching::{Engine, Lattice};
///
/// /// `0` is the top type; every other number is a concrete leaf under it.
/// struct Flat;
///
/// impl Lattice for Flat {
///     type Type = u32;
///     fn is_subtype(&self, a: &u32, b: &u32) -> bool { a == b || *b == 0 }
///     fn is_disjoint(&self, a: &u32, b: &u32) -> bool { a != b && *a != 0 && *b != 0 }
///     fn is_concrete(&self, a: &u32) -> bool { *a != 0 }
/// }
///
/// let engine = Engine::with_lattice(Flat);
/// let f = engine.declare_function("f").unwrap();
/// engine.add_method(f, &[0], "generic").unwrap();
/// engine.add_method(f, &[7], "special").unwrap();
/// let guard = engine.pin();
/// let mi = guard.dispatch(f, &[7]).unwrap();
/// assert_eq!(mi.method().source::<&str>(), Some(&"special"));
/// let mi = guard.dispatch(f, &[3]).unwrap();
/// assert_eq!(mi.method().source::<&str>(), Some(&"generic"));
/// ```
pub trait Lattice: Send + Sync + 'static {
    /// A type. Equality and hashing are used to key the dispatch cache, so equal values must be
    /// the same type (the converse is not required: type-equal values that compare unequal only
    /// cost a cache miss).
    type Type: Clone + Eq + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static;

    /// `a <: b`.
    fn is_subtype(&self, a: &Self::Type, b: &Self::Type) -> bool;

    /// Whether `a ∩ b` is empty.
    fn is_disjoint(&self, a: &Self::Type, b: &Self::Type) -> bool;

    /// Whether `a` is concrete: a type values can have exactly, with no proper subtypes.
    fn is_concrete(&self, a: &Self::Type) -> bool;

    /// Checks that `t` is a type of this lattice (not, for example, one made by another engine's
    /// lattice). The engine calls it on every signature and argument type it is given before it
    /// stores or dispatches on them.
    fn check(&self, _type: &Self::Type) -> Result<(), TypeError> {
        Ok(())
    }

    /// A hash of a signature that type-equal signatures (each a subtype of the other) share. A
    /// definition replaces the live method whose signature is type-equal to its own; the engine
    /// looks for it only among live methods with the same key, so a key that separated
    /// type-equal signatures would let two of them be live at once. The default, the number of
    /// arguments, is always right but makes a definition compare its signature with every live
    /// method of the same arity; a lattice whose type equality is cheap to characterize should
    /// do better (the default lattice keys by the identity of each named argument type).
    fn signature_key(&self, sig: &[Self::Type]) -> u64 {
        sig.len() as u64
    }

    /// Whether signature `s1` is more specific than `s2`. The default is the rule for lattices
    /// without unions: `s1 <: s2` and not `s2 <: s1`.
    fn is_more_specific(&self, s1: &[Self::Type], s2: &[Self::Type]) -> bool {
        sig_subtype(self, s1, s2) && !sig_subtype(self, s2, s1)
    }
}

/// `Tuple{a...} <: Tuple{b...}`: same length and elementwise subtypes.
pub fn sig_subtype<L: Lattice + ?Sized>(lattice: &L, a: &[L::Type], b: &[L::Type]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| lattice.is_subtype(x, y))
}

/// Whether `Tuple{a...} ∩ Tuple{b...}` is empty: different lengths or some disjoint element.
pub fn sig_disjoint<L: Lattice + ?Sized>(lattice: &L, a: &[L::Type], b: &[L::Type]) -> bool {
    a.len() != b.len() || a.iter().zip(b).any(|(x, y)| lattice.is_disjoint(x, y))
}

/// Whether two signatures denote the same set of tuples (each is a subtype of the other).
pub fn sig_equal<L: Lattice + ?Sized>(lattice: &L, a: &[L::Type], b: &[L::Type]) -> bool {
    sig_subtype(lattice, a, b) && sig_subtype(lattice, b, a)
}

/// Formats a signature as `(T1, T2)`.
pub(crate) struct SigDisplay<'a, T>(pub(crate) &'a [T]);

impl<T: fmt::Display> fmt::Display for SigDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        f.write_str(")")
    }
}
