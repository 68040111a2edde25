//! Method specificity on the default lattice.
//!
//! This is Julia's `morespecific` restricted to the fragment the default lattice has (nominal
//! types, `Any`, unions, tuples), stated in [`crate::semantics`] §4. Without unions it reduces to
//! "`s1 <: s2` and not `s2 <: s1`"; the union clauses are what make, for example, `f(::Union{Int,
//! String})` beat both `f(::Any)` and `f(::Real)` for an `Int` argument.

use super::Ty;

/// Whether signature `s1` is more specific than signature `s2`.
pub(crate) fn more_specific_sig(s1: &[Ty], s2: &[Ty]) -> bool {
    if s1.len() != s2.len() {
        // Signatures of different lengths never both apply, so neither beats the other.
        return false;
    }
    let sub = |a: &[Ty], b: &[Ty]| a.iter().zip(b).all(|(x, y)| x.is_subtype(y));
    if s1.iter().zip(s2).any(|(a, b)| a.is_disjoint(b)) || sub(s2, s1) {
        return false;
    }
    if sub(s1, s2) {
        return true;
    }
    let mut any_more = false;
    for (a, b) in s1.iter().zip(s2) {
        if more_specific(a, b) {
            any_more = true;
        } else if !a.is_subtype(b) {
            return false;
        }
    }
    any_more
}

/// Whether element type `a` is more specific than `b`.
pub(crate) fn more_specific(a: &Ty, b: &Ty) -> bool {
    use super::TyKind;
    if a.is_equal(b) || a.is_any() {
        return false;
    }
    if b.is_any() {
        return true;
    }
    match (a.kind(), b.kind()) {
        (TyKind::Union(us), _) => {
            !b.is_subtype(a)
                && us.iter().any(|u| more_specific(u, b))
                && match b.kind() {
                    TyKind::Union(vs) => !vs.iter().any(|v| more_specific(v, a)),
                    _ => true,
                }
        }
        (_, TyKind::Union(vs)) => vs.iter().all(|v| more_specific(a, v)) || a.is_subtype(b),
        _ => a.is_subtype(b) && !b.is_subtype(a),
    }
}
