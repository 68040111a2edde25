//! The default lattice: nominal types with one parent each, `Any`, `Bottom`, unions and tuples.
//!
//! A named type carries its chain of ancestors, so `A <: B` between named types is one comparison
//! (`ancestors(A)[depth(B)] == B`) and allocates nothing, and a [`Ty`] can be asked questions
//! without a trip to the registry that declared it. The registry is only consulted when types are
//! declared or looked up by name.

use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};
use std::cmp::Ordering as CmpOrdering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use super::Lattice;
use crate::error::TypeError;

/// A type of the [`DefaultLattice`]: `Any`, `Bottom`, a declared named type, a union or a tuple.
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
/// assert_eq!(Ty::union([real.clone(), int.clone()]), real); // Union{Real, Int} is Real
/// assert!(int.is_subtype(&real));
/// assert!(Ty::tuple([int.clone()]).is_subtype(&Ty::tuple([real])));
/// ```
#[derive(Clone)]
pub struct Ty(Repr);

#[derive(Clone)]
enum Repr {
    Any,
    Bottom,
    Named(Arc<Named>),
    Union(Arc<[Ty]>),
    Tuple(Arc<[Ty]>),
}

struct Named {
    lattice: u64,
    name: Box<str>,
    is_abstract: bool,
    /// Ids of the ancestors from the one just below `Any` down to this type itself, so
    /// `ancestors.len() - 1` is the depth and `ancestors[depth]` is this type's id.
    ancestors: Box<[u32]>,
}

impl Named {
    fn id(&self) -> u32 {
        self.ancestors[self.ancestors.len() - 1]
    }
    fn depth(&self) -> usize {
        self.ancestors.len() - 1
    }
    fn is_subtype(&self, other: &Named) -> bool {
        self.lattice == other.lattice
            && self.ancestors.len() >= other.ancestors.len()
            && self.ancestors[other.depth()] == other.id()
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
            Repr::Union(m) => TyKind::Union(m),
            Repr::Tuple(e) => TyKind::Tuple(e),
        }
    }

    /// The normalized union of `members` (see the type-level docs). `Ty::union([])` is `Bottom`.
    pub fn union(members: impl IntoIterator<Item = Ty>) -> Ty {
        let mut flat: Vec<Ty> = Vec::new();
        for m in members {
            match m.0 {
                Repr::Bottom => {}
                Repr::Any => return Ty::any(),
                Repr::Union(inner) => flat.extend(inner.iter().cloned()),
                _ => flat.push(m),
            }
        }
        // Drop members subsumed by another one; of type-equal members keep the first in canonical
        // order, so the result does not depend on the order the members were given in.
        flat.sort_by(canonical_cmp);
        flat.dedup();
        let mut kept: Vec<Ty> = Vec::with_capacity(flat.len());
        for (i, m) in flat.iter().enumerate() {
            let subsumed = flat
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && m.is_subtype(other) && (!other.is_subtype(m) || j < i));
            if !subsumed {
                kept.push(m.clone());
            }
        }
        match kept.len() {
            0 => Ty::bottom(),
            1 => kept.pop().expect("one member"),
            _ => Ty(Repr::Union(kept.into())),
        }
    }

    /// The tuple type of `elements`; `Bottom` if any element is `Bottom`.
    pub fn tuple(elements: impl IntoIterator<Item = Ty>) -> Ty {
        let elements: Vec<Ty> = elements.into_iter().collect();
        if elements.iter().any(Ty::is_bottom) {
            return Ty::bottom();
        }
        Ty(Repr::Tuple(elements.into()))
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
    pub fn is_subtype(&self, other: &Ty) -> bool {
        match (&self.0, &other.0) {
            (Repr::Bottom, _) | (_, Repr::Any) => true,
            (Repr::Any, _) | (_, Repr::Bottom) => false,
            (Repr::Union(ms), _) => ms.iter().all(|m| m.is_subtype(other)),
            (Repr::Named(a), Repr::Named(b)) => a.is_subtype(b),
            (Repr::Tuple(a), Repr::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.is_subtype(y))
            }
            (Repr::Named(_), Repr::Union(ms)) => ms.iter().any(|m| self.is_subtype(m)),
            (Repr::Tuple(_), Repr::Union(ms)) => {
                if ms.iter().any(|m| self.is_subtype(m)) {
                    return true;
                }
                // Tuples distribute over unions: Tuple{Union{A,B}} <: Union{Tuple{A},Tuple{B}}.
                // Split on the first union inside the tuple and require every variant to fit.
                // Only this rare shape allocates.
                match self.split_first_union() {
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
            (Repr::Union(ms), _) => ms.iter().all(|m| m.is_disjoint(other)),
            (_, Repr::Union(ms)) => ms.iter().all(|m| self.is_disjoint(m)),
            (Repr::Named(a), Repr::Named(b)) => !a.is_subtype(b) && !b.is_subtype(a),
            (Repr::Tuple(a), Repr::Tuple(b)) => {
                a.len() != b.len() || a.iter().zip(b.iter()).any(|(x, y)| x.is_disjoint(y))
            }
            (Repr::Named(_), Repr::Tuple(_)) | (Repr::Tuple(_), Repr::Named(_)) => true,
        }
    }

    /// Whether values can have exactly this type: a concrete named type, or a tuple of
    /// concrete types.
    pub fn is_concrete(&self) -> bool {
        match &self.0 {
            Repr::Named(n) => !n.is_abstract,
            Repr::Tuple(e) => e.iter().all(Ty::is_concrete),
            Repr::Any | Repr::Bottom | Repr::Union(_) => false,
        }
    }

    /// Whether `self` and `other` denote the same set (each is a subtype of the other).
    pub fn is_equal(&self, other: &Ty) -> bool {
        self.is_subtype(other) && other.is_subtype(self)
    }

    /// If a union occurs inside this tuple (at any depth of nested tuples), the tuples obtained by
    /// replacing the first such union with each of its members.
    fn split_first_union(&self) -> Option<Vec<Ty>> {
        let Repr::Tuple(elems) = &self.0 else {
            return None;
        };
        for (i, e) in elems.iter().enumerate() {
            let variants = match &e.0 {
                Repr::Union(ms) => ms.to_vec(),
                Repr::Tuple(_) => match e.split_first_union() {
                    Some(v) => v,
                    None => continue,
                },
                _ => continue,
            };
            return Some(
                variants
                    .into_iter()
                    .map(|v| {
                        let mut copy = elems.to_vec();
                        copy[i] = v;
                        Ty::tuple(copy)
                    })
                    .collect(),
            );
        }
        None
    }

    fn lattice_id(&self) -> Option<u64> {
        match &self.0 {
            Repr::Named(n) => Some(n.lattice),
            _ => None,
        }
    }

    /// Every named type inside this type, for membership checks.
    fn for_each_named(
        &self,
        f: &mut impl FnMut(&Ty) -> Result<(), TypeError>,
    ) -> Result<(), TypeError> {
        match &self.0 {
            Repr::Named(_) => f(self),
            Repr::Union(m) | Repr::Tuple(m) => m.iter().try_for_each(|t| t.for_each_named(f)),
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

/// A total order used only to give unions a canonical member order.
fn canonical_cmp(a: &Ty, b: &Ty) -> CmpOrdering {
    match (&a.0, &b.0) {
        (Repr::Named(x), Repr::Named(y)) => (x.lattice, x.id()).cmp(&(y.lattice, y.id())),
        (Repr::Tuple(x), Repr::Tuple(y)) | (Repr::Union(x), Repr::Union(y)) => {
            x.len().cmp(&y.len()).then_with(|| {
                x.iter()
                    .zip(y.iter())
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
            (Repr::Union(a), Repr::Union(b)) | (Repr::Tuple(a), Repr::Tuple(b)) => a == b,
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
            Repr::Union(m) | Repr::Tuple(m) => {
                state.write_u8(self.rank());
                state.write_usize(m.len());
                m.iter().for_each(|t| t.hash(state));
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
            Repr::Union(m) => list(f, "Union{", m),
            Repr::Tuple(e) => list(f, "Tuple{", e),
        }
    }
}

impl fmt::Debug for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether a declared type is abstract (may have subtypes) or concrete (a leaf).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum TypeDeclKind {
    /// May have subtypes; no value has exactly this type.
    Abstract,
    /// A leaf of the hierarchy.
    Concrete,
}

/// One declaration for [`DefaultLattice::declare_all`], naming its parent by name so a batch may
/// refer forward to types declared later in it.
#[derive(Clone, Debug)]
pub struct TypeDecl {
    /// The new type's name.
    pub name: String,
    /// The parent's name: `"Any"`, an existing abstract type, or an abstract type in the batch.
    pub parent: String,
    /// Abstract or concrete.
    pub kind: TypeDeclKind,
}

impl TypeDecl {
    /// A declaration of an abstract type.
    pub fn abstract_type(name: impl Into<String>, parent: impl Into<String>) -> TypeDecl {
        TypeDecl {
            name: name.into(),
            parent: parent.into(),
            kind: TypeDeclKind::Abstract,
        }
    }

    /// A declaration of a concrete type.
    pub fn concrete_type(name: impl Into<String>, parent: impl Into<String>) -> TypeDecl {
        TypeDecl {
            name: name.into(),
            parent: parent.into(),
            kind: TypeDeclKind::Concrete,
        }
    }
}

/// The lattice every [`Engine::new`](crate::Engine::new) uses: declared nominal types under `Any`,
/// `Bottom` below all, unions and tuples.
///
/// Declarations take a short internal lock; subtype, disjointness and concreteness queries on
/// [`Ty`] values take none and allocate nothing (named types answer in O(1), tuples and unions in
/// the size of the types), with one exception documented on [`Ty::is_subtype`]'s tuple-into-union
/// case.
///
/// ```
/// use compiler_caching::{DefaultLattice, TypeDecl, Ty};
///
/// let lattice = DefaultLattice::new();
/// // A batch may declare children before parents; it is checked as a whole.
/// lattice
///     .declare_all(&[
///         TypeDecl::concrete_type("Int64", "Integer"),
///         TypeDecl::abstract_type("Integer", "Real"),
///         TypeDecl::abstract_type("Real", "Any"),
///     ])
///     .unwrap();
/// let int = lattice.lookup("Int64").unwrap();
/// assert!(int.is_subtype(&lattice.lookup("Real").unwrap()));
/// assert!(lattice.lookup("Float64").is_err());
/// ```
pub struct DefaultLattice {
    id: u64,
    registry: Mutex<HashMap<Box<str>, Ty>>,
}

static NEXT_LATTICE: AtomicU64 = AtomicU64::new(1);

impl Default for DefaultLattice {
    fn default() -> Self {
        DefaultLattice::new()
    }
}

impl fmt::Debug for DefaultLattice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultLattice")
            .field("types", &self.registry().len())
            .finish()
    }
}

impl DefaultLattice {
    /// An empty lattice: only `Any` and `Bottom`.
    pub fn new() -> DefaultLattice {
        DefaultLattice {
            id: NEXT_LATTICE.fetch_add(1, Ordering::Relaxed),
            registry: Mutex::new(HashMap::new()),
        }
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<Box<str>, Ty>> {
        self.registry.lock()
    }

    /// Declares an abstract type under `parent` (`Any` or an abstract type of this lattice).
    pub fn declare_abstract(&self, name: &str, parent: &Ty) -> Result<Ty, TypeError> {
        self.declare(name, parent, TypeDeclKind::Abstract)
    }

    /// Declares a concrete type under `parent` (`Any` or an abstract type of this lattice).
    pub fn declare_concrete(&self, name: &str, parent: &Ty) -> Result<Ty, TypeError> {
        self.declare(name, parent, TypeDeclKind::Concrete)
    }

    /// Declares one type.
    pub fn declare(&self, name: &str, parent: &Ty, kind: TypeDeclKind) -> Result<Ty, TypeError> {
        let mut registry = self.registry();
        self.declare_locked(&mut registry, name, parent, kind)
    }

    fn declare_locked(
        &self,
        registry: &mut HashMap<Box<str>, Ty>,
        name: &str,
        parent: &Ty,
        kind: TypeDeclKind,
    ) -> Result<Ty, TypeError> {
        validate_name(name)?;
        if registry.contains_key(name) {
            return Err(TypeError::DuplicateType {
                name: name.to_owned(),
            });
        }
        let mut ancestors = match &parent.0 {
            Repr::Any => Vec::new(),
            Repr::Named(p) if p.lattice != self.id => {
                return Err(TypeError::ForeignType {
                    ty: parent.to_string(),
                })
            }
            Repr::Named(p) if !p.is_abstract => {
                return Err(TypeError::ConcreteParent {
                    name: name.to_owned(),
                    parent: parent.to_string(),
                })
            }
            Repr::Named(p) => p.ancestors.to_vec(),
            _ => {
                return Err(TypeError::InvalidParent {
                    name: name.to_owned(),
                    parent: parent.to_string(),
                })
            }
        };
        let id = u32::try_from(registry.len()).map_err(|_| TypeError::TooManyTypes)?;
        ancestors.push(id);
        let ty = Ty(Repr::Named(Arc::new(Named {
            lattice: self.id,
            name: name.into(),
            is_abstract: kind == TypeDeclKind::Abstract,
            ancestors: ancestors.into(),
        })));
        registry.insert(name.into(), ty.clone());
        Ok(ty)
    }

    /// Declares a batch of types whose parents are given by name, in any order. The batch is
    /// checked as a whole and declares nothing if any declaration is wrong: an unknown parent, a
    /// duplicate name, a concrete parent, or a cycle among the batch's parents.
    pub fn declare_all(&self, decls: &[TypeDecl]) -> Result<Vec<Ty>, TypeError> {
        let mut registry = self.registry();
        let mut in_batch: HashMap<&str, usize> = HashMap::new();
        for (i, d) in decls.iter().enumerate() {
            validate_name(&d.name)?;
            if registry.contains_key(d.name.as_str()) || in_batch.insert(&d.name, i).is_some() {
                return Err(TypeError::DuplicateType {
                    name: d.name.clone(),
                });
            }
        }
        for d in decls {
            if d.parent != "Any"
                && !in_batch.contains_key(d.parent.as_str())
                && !registry.contains_key(d.parent.as_str())
            {
                return Err(TypeError::UnknownType {
                    name: d.parent.clone(),
                });
            }
        }
        // Order the batch parents-first; whatever cannot be ordered sits on a cycle.
        let mut order = Vec::with_capacity(decls.len());
        let mut placed: HashSet<usize> = HashSet::new();
        while order.len() < decls.len() {
            let before = order.len();
            for (i, d) in decls.iter().enumerate() {
                if placed.contains(&i) {
                    continue;
                }
                let ready = match in_batch.get(d.parent.as_str()) {
                    Some(p) => placed.contains(p),
                    None => true,
                };
                if ready {
                    placed.insert(i);
                    order.push(i);
                }
            }
            if order.len() == before {
                let mut names: Vec<String> = (0..decls.len())
                    .filter(|i| !placed.contains(i))
                    .map(|i| decls[i].name.clone())
                    .collect();
                names.sort();
                return Err(TypeError::CyclicDeclaration { names });
            }
        }
        // Validate every parent's kind before declaring anything, so a failure declares nothing.
        for d in decls {
            let parent_kind = match in_batch.get(d.parent.as_str()) {
                Some(&p) => Some(decls[p].kind),
                None => match registry.get(d.parent.as_str()).map(|t| &t.0) {
                    Some(Repr::Named(n)) if !n.is_abstract => Some(TypeDeclKind::Concrete),
                    _ => None,
                },
            };
            if parent_kind == Some(TypeDeclKind::Concrete) {
                return Err(TypeError::ConcreteParent {
                    name: d.name.clone(),
                    parent: d.parent.clone(),
                });
            }
        }
        let mut made: HashMap<usize, Ty> = HashMap::new();
        for &i in &order {
            let d = &decls[i];
            let parent = if d.parent == "Any" {
                Ty::any()
            } else if let Some(p) = in_batch.get(d.parent.as_str()) {
                made[p].clone()
            } else {
                registry[d.parent.as_str()].clone()
            };
            let ty = self.declare_locked(&mut registry, &d.name, &parent, d.kind)?;
            made.insert(i, ty);
        }
        Ok((0..decls.len())
            .map(|i| made.remove(&i).expect("declared"))
            .collect())
    }

    /// The type declared as `name`; `"Any"` and `"Bottom"` name the built-in types.
    pub fn lookup(&self, name: &str) -> Result<Ty, TypeError> {
        match name {
            "Any" => Ok(Ty::any()),
            "Bottom" => Ok(Ty::bottom()),
            _ => self
                .registry()
                .get(name)
                .cloned()
                .ok_or_else(|| TypeError::UnknownType {
                    name: name.to_owned(),
                }),
        }
    }

    /// The number of declared types.
    pub fn len(&self) -> usize {
        self.registry().len()
    }

    /// Whether no type has been declared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn validate_name(name: &str) -> Result<(), TypeError> {
    let reserved = matches!(name, "Any" | "Bottom" | "Union" | "Tuple");
    let bad_char = name
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | '(' | ')' | ',' | ':'));
    if name.is_empty() || reserved || bad_char {
        return Err(TypeError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl Lattice for DefaultLattice {
    type Type = Ty;

    fn is_subtype(&self, a: &Ty, b: &Ty) -> bool {
        a.is_subtype(b)
    }

    fn is_disjoint(&self, a: &Ty, b: &Ty) -> bool {
        a.is_disjoint(b)
    }

    fn is_concrete(&self, a: &Ty) -> bool {
        a.is_concrete()
    }

    fn check(&self, t: &Ty) -> Result<(), TypeError> {
        t.for_each_named(&mut |n| match n.lattice_id() {
            Some(id) if id != self.id => Err(TypeError::ForeignType { ty: n.to_string() }),
            _ => Ok(()),
        })
    }

    fn is_more_specific(&self, s1: &[Ty], s2: &[Ty]) -> bool {
        super::specificity::more_specific_sig(s1, s2)
    }
}
