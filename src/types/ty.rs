//! The types of the default lattice: `Any`, `Bottom`, declared named types, unions and tuples.
//!
//! A named type knows its parent, its depth and one *skip* ancestor further up, chosen so that
//! the ancestor at any depth is found in O(log depth) steps (the skip-list scheme of Myers' random
//! access lists). `A <: B` between named types is therefore a short walk that allocates nothing,
//! and a hierarchy takes memory linear in the number of types however deep it is. A [`Ty`] can be
//! asked questions without a trip to the registry that declared it.
//!
//! Unions and tuples are nested at most [`MAX_TYPE_DEPTH`] levels deep: their constructors refuse
//! deeper nesting with a typed error, so every algorithm over types (subtyping, specificity,
//! hashing, equality, display, drop) recurses a bounded number of times whatever it is given.

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::hash::{Hash, Hasher};

use rustc_hash::FxHashSet;

use crate::drop_chain;
use crate::error::TypeError;
use crate::sync::Arc;

/// How deeply unions and tuples may nest: `Tuple{Tuple{Int}}` has depth 2, a named type 0.
/// Deeper types are refused when they are built ([`TypeError::TooDeep`]), so that no algorithm
/// over types can exhaust a thread's stack.
pub const MAX_TYPE_DEPTH: u32 = 256;

/// How many variants subtyping may split a tuple of unions into when asking whether it is a
/// subtype of a union of tuples (`Tuple{Union{A, B}} <: Union{Tuple{A}, Tuple{B}}`): the split is
/// exponential in the number of unions inside the tuple. Past this many variants the answer is
/// "not a subtype" (see [`Ty::is_subtype`]).
pub const MAX_UNION_SPLIT: usize = 4096;

/// A type of the [`DefaultLattice`](super::DefaultLattice): `Any`, `Bottom`, a declared named
/// type, a union or a tuple.
///
/// Cloning is cheap (at most one reference-count bump). Unions are normalized when built: nested
/// unions are flattened, `Bottom` members dropped, a member that is a subtype of another member
/// dropped, and a union left with one member is that member. A tuple with a `Bottom` element is
/// `Bottom`.
///
/// ```
/// use compiler_caching::{DefaultLattice, Ty};
///
/// let lattice = DefaultLattice::new();
/// let real = lattice.declare_abstract("Real", &Ty::any()).unwrap();
/// let int = lattice.declare_concrete("Int", &real).unwrap();
/// assert_eq!(Ty::union([real.clone(), int.clone()]).unwrap(), real); // Union{Real, Int} is Real
/// assert!(int.is_subtype(&real));
/// assert!(Ty::tuple([int]).unwrap().is_subtype(&Ty::tuple([real]).unwrap()));
/// ```
#[derive(Clone)]
pub struct Ty(pub(super) Repr);

#[derive(Clone)]
pub(super) enum Repr {
    Any,
    Bottom,
    Named(Arc<Named>),
    Union(Arc<Composite>),
    Tuple(Arc<Composite>),
}

/// A declared type.
pub(super) struct Named {
    pub(super) lattice: u64,
    pub(super) id: u32,
    /// 0 for a type whose parent is `Any`.
    pub(super) depth: u32,
    pub(super) name: Box<str>,
    pub(super) is_abstract: bool,
    pub(super) parent: Option<Arc<Named>>,
    /// The ancestor at depth [`skip_depth`]`(depth)`, if that is not the parent.
    skip: Option<Arc<Named>>,
}

/// A union's or a tuple's members, and how deeply they nest.
pub(super) struct Composite {
    depth: u32,
    members: Box<[Ty]>,
    /// A union's named members, by identity, so that membership questions do not scan.
    named: FxHashSet<usize>,
}

impl Named {
    /// A type declared under `parent` (`None`: under `Any`).
    pub(super) fn new(
        lattice: u64,
        id: u32,
        name: &str,
        is_abstract: bool,
        parent: Option<Arc<Named>>,
    ) -> Named {
        let depth = parent.as_ref().map_or(0, |p| p.depth + 1);
        let skip = parent.as_ref().and_then(|p| {
            let target = skip_depth(depth);
            (target < p.depth).then(|| Arc::clone(p.ancestor_at(target)))
        });
        Named {
            lattice,
            id,
            depth,
            name: name.into(),
            is_abstract,
            parent,
            skip,
        }
    }

    /// The ancestor of `self` (inclusive) at `depth`, which must be at most `self.depth`.
    fn ancestor_at(self: &Arc<Named>, depth: u32) -> &Arc<Named> {
        let mut node = self;
        while node.depth > depth {
            let step_skip = node.skip.as_ref().filter(|skip| {
                // Take the skip unless it overshoots, or unless the parent's own skip gets there
                // in fewer steps (the condition that keeps the walk logarithmic).
                let target = skip.depth;
                let parent_target = skip_depth(node.depth - 1);
                target == depth
                    || (target > depth && !(parent_target + 2 < target && parent_target >= depth))
            });
            node = match step_skip {
                Some(skip) => skip,
                None => node
                    .parent
                    .as_ref()
                    .expect("a type below depth 0 has a parent"),
            };
        }
        node
    }

    fn is_subtype(self: &Arc<Named>, other: &Arc<Named>) -> bool {
        self.lattice == other.lattice
            && self.depth >= other.depth
            && Arc::ptr_eq(self.ancestor_at(other.depth), other)
    }

    /// The identity a union's named set records.
    fn key(self: &Arc<Named>) -> usize {
        Arc::as_ptr(self) as usize
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        // A hierarchy is a chain of parents as long as it is deep.
        drop_chain::defer((self.parent.take(), self.skip.take()));
    }
}

/// The depth a type at `depth` keeps a skip pointer to: half-way-ish up, in the pattern that
/// makes every ancestor reachable in O(log depth) steps.
fn skip_depth(depth: u32) -> u32 {
    fn clear_lowest_bit(n: u32) -> u32 {
        n & n.wrapping_sub(1)
    }
    if depth < 2 {
        0
    } else if depth & 1 == 1 {
        clear_lowest_bit(clear_lowest_bit(depth - 1)) + 1
    } else {
        clear_lowest_bit(depth)
    }
}

/// A view of a [`Ty`]'s structure, for embedders that walk types.
#[derive(Clone, Copy, Debug)]
pub enum TyKind<'a> {
    /// The top type.
    Any,
    /// The empty type, `Union{}`.
    Bottom,
    /// A declared type.
    Named {
        /// Its declared name.
        name: &'a str,
        /// Whether it was declared abstract.
        is_abstract: bool,
    },
    /// A normalized union of at least two members.
    Union(&'a [Ty]),
    /// A tuple type.
    Tuple(&'a [Ty]),
}

impl Ty {
    /// The top type `Any`.
    pub fn any() -> Ty {
        Ty(Repr::Any)
    }

    /// The empty type `Bottom` (Julia's `Union{}`).
    pub fn bottom() -> Ty {
        Ty(Repr::Bottom)
    }

    /// The structure of this type.
    pub fn kind(&self) -> TyKind<'_> {
        match &self.0 {
            Repr::Any => TyKind::Any,
            Repr::Bottom => TyKind::Bottom,
            Repr::Named(n) => TyKind::Named {
                name: &n.name,
                is_abstract: n.is_abstract,
            },
            Repr::Union(c) => TyKind::Union(&c.members),
            Repr::Tuple(c) => TyKind::Tuple(&c.members),
        }
    }

    /// The declared parent of a named type (`Any` for a type declared under `Any`); `None` for
    /// `Any`, `Bottom`, unions and tuples.
    ///
    /// ```
    /// use compiler_caching::{DefaultLattice, Ty};
    ///
    /// let lattice = DefaultLattice::new();
    /// let real = lattice.declare_abstract("Real", &Ty::any()).unwrap();
    /// let int = lattice.declare_concrete("Int", &real).unwrap();
    /// assert_eq!(int.parent(), Some(real.clone()));
    /// assert_eq!(real.parent(), Some(Ty::any()));
    /// assert_eq!(Ty::any().parent(), None);
    /// ```
    pub fn parent(&self) -> Option<Ty> {
        match &self.0 {
            Repr::Named(n) => Some(match &n.parent {
                Some(p) => Ty(Repr::Named(Arc::clone(p))),
                None => Ty::any(),
            }),
            _ => None,
        }
    }

    /// How deeply unions and tuples nest in this type (0 for `Any`, `Bottom` and named types).
    pub fn depth(&self) -> u32 {
        match &self.0 {
            Repr::Union(c) | Repr::Tuple(c) => c.depth,
            _ => 0,
        }
    }

    /// The normalized union of `members` (see the type-level docs). `Ty::union([])` is `Bottom`.
    /// Fails with [`TypeError::TooDeep`] if the union would nest more than [`MAX_TYPE_DEPTH`]
    /// levels.
    ///
    /// Normalizing `n` members costs `O(n log n)` plus, for each named member, a walk up its
    /// ancestors (or a probe per named member, whichever is shorter), plus a comparison of every
    /// pair of tuple members.
    pub fn union(members: impl IntoIterator<Item = Ty>) -> Result<Ty, TypeError> {
        let mut flat: Vec<Ty> = Vec::new();
        for m in members {
            match m.0 {
                Repr::Bottom => {}
                Repr::Any => return Ok(Ty::any()),
                Repr::Union(inner) => flat.extend(inner.members.iter().cloned()),
                _ => flat.push(m),
            }
        }
        // Canonical order first, so that the result does not depend on the order given and of
        // type-equal members the first in canonical order is kept.
        flat.sort_by(canonical_cmp);
        flat.dedup();
        let named: FxHashSet<usize> = flat
            .iter()
            .filter_map(|m| match &m.0 {
                Repr::Named(n) => Some(n.key()),
                _ => None,
            })
            .collect();
        let named_members = || {
            flat.iter().filter_map(|m| match &m.0 {
                Repr::Named(n) => Some(n),
                _ => None,
            })
        };
        let tuples: Vec<&Ty> = flat
            .iter()
            .filter(|m| matches!(m.0, Repr::Tuple(_)))
            .collect();
        let mut kept: Vec<Ty> = Vec::with_capacity(flat.len());
        for m in &flat {
            let subsumed = match &m.0 {
                // Only a strict ancestor that is also a member subsumes a named member.
                Repr::Named(n) => strict_ancestor_in(n, &named, named_members()),
                // Only another tuple subsumes a tuple: a subtype of it that it is not type-equal
                // to, or a type-equal one earlier in canonical order.
                _ => tuples.iter().any(|other| {
                    !std::ptr::eq(*other, m)
                        && m.is_subtype(other)
                        && (!other.is_subtype(m) || canonical_cmp(other, m).is_lt())
                }),
            };
            if !subsumed {
                kept.push(m.clone());
            }
        }
        match kept.len() {
            0 => Ok(Ty::bottom()),
            1 => Ok(kept.pop().expect("one member")),
            _ => Composite::new(kept, true).map(|c| Ty(Repr::Union(Arc::new(c)))),
        }
    }

    /// The tuple type of `elements`; `Bottom` if any element is `Bottom`. Fails with
    /// [`TypeError::TooDeep`] if the tuple would nest more than [`MAX_TYPE_DEPTH`] levels.
    pub fn tuple(elements: impl IntoIterator<Item = Ty>) -> Result<Ty, TypeError> {
        let elements: Vec<Ty> = elements.into_iter().collect();
        if elements.iter().any(Ty::is_bottom) {
            return Ok(Ty::bottom());
        }
        Composite::new(elements, false).map(|c| Ty(Repr::Tuple(Arc::new(c))))
    }

    /// Whether this is `Any`.
    pub fn is_any(&self) -> bool {
        matches!(self.0, Repr::Any)
    }

    /// Whether this is `Bottom`.
    pub fn is_bottom(&self) -> bool {
        matches!(self.0, Repr::Bottom)
    }

    /// `self <: other`.
    ///
    /// Tuples distribute over unions (`Tuple{Union{A, B}} <: Union{Tuple{A}, Tuple{B}}`): when a
    /// tuple is not a subtype of any single member of a union, it is split on the unions inside it
    /// and every variant is checked. The split is exponential in the number of unions inside the
    /// tuple; past [`MAX_UNION_SPLIT`] variants the answer is `false`, which only ever makes a
    /// method seem not to apply to such an argument.
    pub fn is_subtype(&self, other: &Ty) -> bool {
        match (&self.0, &other.0) {
            (Repr::Bottom, _) | (_, Repr::Any) => true,
            (Repr::Any, _) | (_, Repr::Bottom) => false,
            (Repr::Union(ms), _) => ms.members.iter().all(|m| m.is_subtype(other)),
            (Repr::Named(a), Repr::Named(b)) => a.is_subtype(b),
            (Repr::Tuple(a), Repr::Tuple(b)) => {
                a.members.len() == b.members.len()
                    && a.members
                        .iter()
                        .zip(b.members.iter())
                        .all(|(x, y)| x.is_subtype(y))
            }
            // A union's members are named types and tuples (normalization removed the rest), and
            // a named type is never inside a tuple type.
            (Repr::Named(a), Repr::Union(u)) => {
                u.named.contains(&a.key()) || strict_ancestor_in(a, &u.named, u.named_members())
            }
            (Repr::Tuple(_), Repr::Union(u)) => {
                if u.members.iter().any(|m| self.is_subtype(m)) {
                    return true;
                }
                match self.split_first_union(MAX_UNION_SPLIT) {
                    Some(variants) => variants.iter().all(|v| v.is_subtype(other)),
                    None => false,
                }
            }
            (Repr::Named(_), Repr::Tuple(_)) | (Repr::Tuple(_), Repr::Named(_)) => false,
        }
    }

    /// Whether `self ∩ other` is empty. With single inheritance two named types meet only when
    /// one is a subtype of the other.
    pub fn is_disjoint(&self, other: &Ty) -> bool {
        match (&self.0, &other.0) {
            (Repr::Bottom, _) | (_, Repr::Bottom) => true,
            (Repr::Any, _) | (_, Repr::Any) => false,
            (Repr::Union(ms), _) => ms.members.iter().all(|m| m.is_disjoint(other)),
            (_, Repr::Union(ms)) => ms.members.iter().all(|m| self.is_disjoint(m)),
            (Repr::Named(a), Repr::Named(b)) => !a.is_subtype(b) && !b.is_subtype(a),
            (Repr::Tuple(a), Repr::Tuple(b)) => {
                a.members.len() != b.members.len()
                    || a.members
                        .iter()
                        .zip(b.members.iter())
                        .any(|(x, y)| x.is_disjoint(y))
            }
            (Repr::Named(_), Repr::Tuple(_)) | (Repr::Tuple(_), Repr::Named(_)) => true,
        }
    }

    /// Whether values can have exactly this type: a concrete named type, or a tuple of
    /// concrete types.
    pub fn is_concrete(&self) -> bool {
        match &self.0 {
            Repr::Named(n) => !n.is_abstract,
            Repr::Tuple(c) => c.members.iter().all(Ty::is_concrete),
            Repr::Any | Repr::Bottom | Repr::Union(_) => false,
        }
    }

    /// Whether `self` and `other` denote the same set (each is a subtype of the other).
    pub fn is_equal(&self, other: &Ty) -> bool {
        self.is_subtype(other) && other.is_subtype(self)
    }

    /// If a union occurs inside this tuple (at any depth of nested tuples), the tuples obtained by
    /// replacing the first such union with each of its members; `None` if there is none, or if
    /// splitting all the way down would make more than `budget` variants.
    fn split_first_union(&self, budget: usize) -> Option<Vec<Ty>> {
        let Repr::Tuple(c) = &self.0 else {
            return None;
        };
        if self.union_variants().is_none_or(|n| n > budget) {
            return None;
        }
        for (i, e) in c.members.iter().enumerate() {
            let variants = match &e.0 {
                Repr::Union(u) => u.members.to_vec(),
                Repr::Tuple(_) => match e.split_first_union(budget) {
                    Some(v) => v,
                    None => continue,
                },
                _ => continue,
            };
            return Some(
                variants
                    .into_iter()
                    .filter_map(|v| {
                        let mut copy = c.members.to_vec();
                        copy[i] = v;
                        // Replacing a member by one of its parts never nests deeper.
                        Ty::tuple(copy).ok()
                    })
                    .collect(),
            );
        }
        None
    }

    /// How many variants splitting every union inside this tuple makes (`None` past `usize`).
    fn union_variants(&self) -> Option<usize> {
        match &self.0 {
            Repr::Union(u) => Some(u.members.len()),
            Repr::Tuple(c) => c
                .members
                .iter()
                .try_fold(1usize, |n, m| n.checked_mul(m.union_variants()?)),
            _ => Some(1),
        }
    }

    /// What type-equal types share (see `DefaultLattice::signature_key`): the identity of a
    /// named type, `Any` or `Bottom`, or one class for every union and tuple.
    pub(super) fn equality_class(&self) -> usize {
        match &self.0 {
            Repr::Named(n) => n.key(),
            Repr::Any => 1,
            Repr::Bottom => 2,
            Repr::Union(_) | Repr::Tuple(_) => 3,
        }
    }

    pub(super) fn lattice_id(&self) -> Option<u64> {
        match &self.0 {
            Repr::Named(n) => Some(n.lattice),
            _ => None,
        }
    }

    /// Every named type inside this type, for membership checks.
    pub(super) fn for_each_named(
        &self,
        f: &mut impl FnMut(&Ty) -> Result<(), TypeError>,
    ) -> Result<(), TypeError> {
        match &self.0 {
            Repr::Named(_) => f(self),
            Repr::Union(c) | Repr::Tuple(c) => {
                c.members.iter().try_for_each(|t| t.for_each_named(f))
            }
            Repr::Any | Repr::Bottom => Ok(()),
        }
    }

    fn rank(&self) -> u8 {
        match self.0 {
            Repr::Bottom => 0,
            Repr::Named(_) => 1,
            Repr::Tuple(_) => 2,
            Repr::Union(_) => 3,
            Repr::Any => 4,
        }
    }
}

impl Composite {
    fn new(members: Vec<Ty>, union: bool) -> Result<Composite, TypeError> {
        let depth = 1 + members.iter().map(Ty::depth).max().unwrap_or(0);
        if depth > MAX_TYPE_DEPTH {
            return Err(TypeError::TooDeep {
                limit: MAX_TYPE_DEPTH,
            });
        }
        let named = if union {
            members
                .iter()
                .filter_map(|m| match &m.0 {
                    Repr::Named(n) => Some(n.key()),
                    _ => None,
                })
                .collect()
        } else {
            FxHashSet::default()
        };
        Ok(Composite {
            depth,
            members: members.into(),
            named,
        })
    }

    fn named_members(&self) -> impl Iterator<Item = &Arc<Named>> {
        self.members.iter().filter_map(|m| match &m.0 {
            Repr::Named(n) => Some(n),
            _ => None,
        })
    }
}

/// Whether some strict ancestor of `n` is among a union's named members (`set`, identities; the
/// same members as `members`): walks up the ancestors or asks each member, whichever is fewer
/// steps.
fn strict_ancestor_in<'a>(
    n: &Arc<Named>,
    set: &FxHashSet<usize>,
    mut members: impl Iterator<Item = &'a Arc<Named>>,
) -> bool {
    if n.depth as usize <= set.len() {
        let mut up = n.parent.as_ref();
        while let Some(p) = up {
            if set.contains(&p.key()) {
                return true;
            }
            up = p.parent.as_ref();
        }
        false
    } else {
        members.any(|m| !Arc::ptr_eq(m, n) && n.is_subtype(m))
    }
}

/// A total order used only to give unions a canonical member order.
fn canonical_cmp(a: &Ty, b: &Ty) -> CmpOrdering {
    match (&a.0, &b.0) {
        (Repr::Named(x), Repr::Named(y)) => (x.lattice, x.id).cmp(&(y.lattice, y.id)),
        (Repr::Tuple(x), Repr::Tuple(y)) | (Repr::Union(x), Repr::Union(y)) => {
            x.members.len().cmp(&y.members.len()).then_with(|| {
                x.members
                    .iter()
                    .zip(y.members.iter())
                    .map(|(p, q)| canonical_cmp(p, q))
                    .find(|o| o.is_ne())
                    .unwrap_or(CmpOrdering::Equal)
            })
        }
        _ => a.rank().cmp(&b.rank()),
    }
}

impl PartialEq for Ty {
    #[inline]
    fn eq(&self, other: &Ty) -> bool {
        match (&self.0, &other.0) {
            // Named types first and inline: dispatch-cache keys compare them on every hit.
            (Repr::Named(a), Repr::Named(b)) => Arc::ptr_eq(a, b),
            _ => self.eq_structural(other),
        }
    }
}

impl Ty {
    #[inline(never)]
    fn eq_structural(&self, other: &Ty) -> bool {
        match (&self.0, &other.0) {
            (Repr::Any, Repr::Any) | (Repr::Bottom, Repr::Bottom) => true,
            (Repr::Union(a), Repr::Union(b)) | (Repr::Tuple(a), Repr::Tuple(b)) => {
                a.members == b.members
            }
            _ => false,
        }
    }
}

impl Eq for Ty {}

impl Hash for Ty {
    /// Named types hash their identity (equality is identity), so hashing one reads no memory
    /// behind the pointer: this is on the dispatch-cache hit path.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Named(n) => state.write_usize(Arc::as_ptr(n) as *const u8 as usize),
            Repr::Any => state.write_u8(0xA7),
            Repr::Bottom => state.write_u8(0xB0),
            Repr::Union(c) | Repr::Tuple(c) => {
                state.write_u8(self.rank());
                state.write_usize(c.members.len());
                c.members.iter().for_each(|t| t.hash(state));
            }
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, open: &str, items: &[Ty]) -> fmt::Result {
            f.write_str(open)?;
            for (i, t) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{t}")?;
            }
            f.write_str("}")
        }
        match &self.0 {
            Repr::Any => f.write_str("Any"),
            Repr::Bottom => f.write_str("Bottom"),
            Repr::Named(n) => f.write_str(&n.name),
            Repr::Union(c) => list(f, "Union{", &c.members),
            Repr::Tuple(c) => list(f, "Tuple{", &c.members),
        }
    }
}

impl fmt::Debug for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::skip_depth;

    #[test]
    fn skip_depths_point_up() {
        for depth in 2..10_000u32 {
            assert!(skip_depth(depth) < depth, "{depth}");
        }
    }
}
