//! Types that outlive the process: [`PersistentLattice`] turns a lattice's types into a stable
//! serializable form and back, and fingerprints their declarations. The default lattice's types
//! are named, so it implements it with [`TypeName`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::identity::Fingerprint;
use crate::error::TypeError;
use crate::types::{DefaultLattice, Lattice, Ty, TyKind};

/// A [`Lattice`] whose types can be stored and found again in another process.
///
/// The engine stores each type of a record in its [`TypeRepr`](PersistentLattice::TypeRepr)
/// beside the fingerprint of its declarations, and on load imports it and compares the
/// fingerprint: a type whose name now means something else (declared elsewhere in the hierarchy,
/// abstract instead of concrete) makes the record's key or its dependencies differ, so the
/// record is never used against it.
///
/// # Example: a flat lattice of numbered types
///
/// ```
/// use compiler_caching::{Fingerprint, Lattice, PersistentLattice, TypeError};
///
/// struct Flat;
/// impl Lattice for Flat {
///     type Type = u32;
///     fn is_subtype(&self, a: &u32, b: &u32) -> bool { a == b || *b == 0 }
///     fn is_disjoint(&self, a: &u32, b: &u32) -> bool { a != b && *a != 0 && *b != 0 }
///     fn is_concrete(&self, a: &u32) -> bool { *a != 0 }
/// }
/// impl PersistentLattice for Flat {
///     type TypeRepr = u32;
///     fn export_type(&self, ty: &u32) -> Option<u32> { Some(*ty) }
///     fn import_type(&self, repr: u32) -> Result<u32, TypeError> { Ok(repr) }
/// }
/// assert_eq!(Flat.import_type(Flat.export_type(&7).unwrap()), Ok(7));
/// assert_eq!(Flat.declaration_fingerprint(&7), Fingerprint::of(b""));
/// ```
pub trait PersistentLattice: Lattice {
    /// A type's stable form: what is serialized (with postcard) into records and keys. It must
    /// not depend on anything process-local (addresses, ids handed out in order).
    ///
    /// Deserializing runs on bytes read from a store, after their checksum has been verified; a
    /// representation that nests without bound should be flattened (as [`TypeName`] is), so that
    /// decoding recurses a bounded number of times.
    type TypeRepr: Serialize + DeserializeOwned + 'static;

    /// The stable form of `ty`; `None` if it has none (then nothing depending on it is stored).
    fn export_type(&self, ty: &Self::Type) -> Option<Self::TypeRepr>;

    /// The type `repr` denotes in this lattice, or why there is none (an unknown name, say).
    fn import_type(&self, repr: Self::TypeRepr) -> Result<Self::Type, TypeError>;

    /// A fingerprint of the declarations of the named types `ty` mentions, which must differ
    /// whenever a name is declared differently (for the default lattice: each name's kind and
    /// chain of ancestors). The default, for lattices whose [`TypeRepr`](Self::TypeRepr) says
    /// everything about a type, fingerprints nothing.
    fn declaration_fingerprint(&self, ty: &Self::Type) -> Fingerprint {
        let _ = ty;
        Fingerprint::of(b"")
    }
}

/// The stable form of a [`Ty`] of the [`DefaultLattice`]: its structure in postfix order, with
/// named types by name. Flat, so that decoding one does not recurse however deeply the type
/// nests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypeName {
    ops: Vec<TypeOp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum TypeOp {
    Any,
    Bottom,
    Named(String),
    /// A union of the last `n` types.
    Union(u32),
    /// A tuple of the last `n` types.
    Tuple(u32),
}

/// The most operations a stored type may have: far more than any real type, few enough that a
/// damaged record cannot make the engine build a huge one.
const MAX_TYPE_OPS: usize = 1 << 16;

fn malformed() -> TypeError {
    TypeError::InvalidName {
        name: "(a malformed stored type)".to_owned(),
    }
}

fn export(ty: &Ty, ops: &mut Vec<TypeOp>) {
    match ty.kind() {
        TyKind::Any => ops.push(TypeOp::Any),
        TyKind::Bottom => ops.push(TypeOp::Bottom),
        TyKind::Named { name, .. } => ops.push(TypeOp::Named(name.to_owned())),
        // Types nest at most `MAX_TYPE_DEPTH` levels, so this recursion is bounded.
        TyKind::Union(members) => {
            members.iter().for_each(|m| export(m, ops));
            ops.push(TypeOp::Union(members.len() as u32));
        }
        TyKind::Tuple(elements) => {
            elements.iter().for_each(|e| export(e, ops));
            ops.push(TypeOp::Tuple(elements.len() as u32));
        }
    }
}

fn declarations(ty: &Ty, out: &mut Vec<u8>) {
    match ty.kind() {
        TyKind::Any | TyKind::Bottom => {}
        TyKind::Named { .. } => {
            let mut link = Some(ty.clone());
            while let Some(t) = link {
                if let TyKind::Named { name, is_abstract } = t.kind() {
                    out.extend_from_slice(name.as_bytes());
                    out.push(if is_abstract { b'<' } else { b':' });
                }
                link = t.parent();
            }
            out.push(b';');
        }
        TyKind::Union(members) | TyKind::Tuple(members) => {
            members.iter().for_each(|m| declarations(m, out));
        }
    }
}

impl PersistentLattice for DefaultLattice {
    type TypeRepr = TypeName;

    fn export_type(&self, ty: &Ty) -> Option<TypeName> {
        let mut ops = Vec::new();
        export(ty, &mut ops);
        Some(TypeName { ops })
    }

    fn import_type(&self, repr: TypeName) -> Result<Ty, TypeError> {
        if repr.ops.len() > MAX_TYPE_OPS {
            return Err(malformed());
        }
        let mut stack: Vec<Ty> = Vec::new();
        for op in repr.ops {
            let ty = match op {
                TypeOp::Any => Ty::any(),
                TypeOp::Bottom => Ty::bottom(),
                TypeOp::Named(name) => self.lookup(&name)?,
                TypeOp::Union(n) | TypeOp::Tuple(n) if n as usize > stack.len() => {
                    return Err(malformed())
                }
                TypeOp::Union(n) => Ty::union(stack.split_off(stack.len() - n as usize))?,
                TypeOp::Tuple(n) => Ty::tuple(stack.split_off(stack.len() - n as usize))?,
            };
            stack.push(ty);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some(ty), true) => Ok(ty),
            _ => Err(malformed()),
        }
    }

    /// Each named type's name, kind, and ancestors up to `Any`.
    fn declaration_fingerprint(&self, ty: &Ty) -> Fingerprint {
        let mut out = Vec::new();
        declarations(ty, &mut out);
        Fingerprint::of(&out)
    }
}
