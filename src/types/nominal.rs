//! The default lattice: declared nominal types with one parent each, `Any`, `Bottom`, unions and
//! tuples. The types themselves are in [`super::ty`]; this is the registry that declares them.
//! It is only consulted when types are declared or looked up by name.

use std::collections::HashMap;
use std::fmt;

use super::ty::{Named, Repr, Ty};
use super::Lattice;
use crate::error::TypeError;
use crate::names;
use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

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
/// [`Ty`] values take none and allocate nothing (named types answer in O(log depth), tuples and
/// unions in the size of the types), with one exception documented on [`Ty::is_subtype`]'s
/// tuple-into-union case. Memory grows linearly with the number of types declared, however deep
/// the hierarchy.
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
        if !names::is_valid_type_name(name) {
            return Err(TypeError::InvalidName {
                name: names::shorten(name),
            });
        }
        if registry.contains_key(name) {
            return Err(TypeError::DuplicateType {
                name: name.to_owned(),
            });
        }
        let parent = match &parent.0 {
            Repr::Any => None,
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
            Repr::Named(p) => Some(Arc::clone(p)),
            _ => {
                return Err(TypeError::InvalidParent {
                    name: name.to_owned(),
                    parent: parent.to_string(),
                })
            }
        };
        let id = u32::try_from(registry.len()).map_err(|_| TypeError::TooManyTypes)?;
        let ty = Ty(Repr::Named(Arc::new(Named::new(
            self.id,
            id,
            name,
            kind == TypeDeclKind::Abstract,
            parent,
        ))));
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
            if !names::is_valid_type_name(&d.name) {
                return Err(TypeError::InvalidName {
                    name: names::shorten(&d.name),
                });
            }
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
        // Order the batch parents-first (a topological order of the parent links, O(n)); whatever
        // cannot be ordered sits on or below a cycle.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); decls.len()];
        let mut roots = Vec::new();
        for (i, d) in decls.iter().enumerate() {
            match in_batch.get(d.parent.as_str()) {
                Some(&p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        let mut order = Vec::with_capacity(decls.len());
        while let Some(i) = roots.pop() {
            order.push(i);
            roots.extend(children[i].iter().copied());
        }
        if order.len() < decls.len() {
            let mut placed = vec![false; decls.len()];
            for &i in &order {
                placed[i] = true;
            }
            let mut names: Vec<String> = (0..decls.len())
                .filter(|&i| !placed[i])
                .map(|i| decls[i].name.clone())
                .collect();
            names.sort();
            return Err(TypeError::CyclicDeclaration { names });
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

    /// Refuses types of another lattice, and `Bottom`: no value has it, so a method for it
    /// could never be called, and every method applies to a call with it.
    fn check(&self, t: &Ty) -> Result<(), TypeError> {
        if t.is_bottom() {
            return Err(TypeError::Uninhabited);
        }
        t.for_each_named(&mut |n| match n.lattice_id() {
            Some(id) if id != self.id => Err(TypeError::ForeignType { ty: n.to_string() }),
            _ => Ok(()),
        })
    }

    /// Hashes the arity and, position by position, the identity of a named type, `Any` or
    /// `Bottom`, or one mark for a union or tuple. Type-equal signatures agree on it: a named type,
    /// `Any` or `Bottom` is type-equal only to itself, and a union or tuple only to another union
    /// or tuple.
    fn signature_key(&self, sig: &[Ty]) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        sig.len().hash(&mut h);
        for t in sig {
            t.equality_class().hash(&mut h);
        }
        h.finish()
    }

    fn is_more_specific(&self, s1: &[Ty], s2: &[Ty]) -> bool {
        super::specificity::more_specific_sig(s1, s2)
    }
}
