//! Stable identities: what a record is about, in terms that mean the same in a later process
//! where every handle, pointer and id differs — names, type names with fingerprints of their
//! declarations, fingerprints of sources — and the content-addressed key derived from it.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::compiler::PersistentCompiler;
use super::lattice::PersistentLattice;
use super::store::RecordKey;
use crate::cache::CacheInner;
use crate::engine::Engine;
use crate::methods::{Function, Method, MethodInstance};
use crate::sync::{Arc, Mutex};

/// A 32-byte BLAKE3 fingerprint: of a method's source (see
/// [`PersistentCompiler::source_fingerprint`]), of type declarations, of a record's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `bytes`.
    ///
    /// ```
    /// use compiler_caching::Fingerprint;
    /// assert_eq!(Fingerprint::of(b"fn f() = 1"), Fingerprint::of(b"fn f() = 1"));
    /// assert_ne!(Fingerprint::of(b"fn f() = 1"), Fingerprint::of(b"fn f() = 2"));
    /// ```
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint(*blake3::hash(bytes).as_bytes())
    }

    /// The fingerprint of a sequence of parts, each length-prefixed, so that different splits of
    /// the same bytes differ (`["ab", "c"]` is not `["a", "bc"]`).
    pub fn of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Fingerprint {
        let mut hasher = blake3::Hasher::new();
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Fingerprint(*hasher.finalize().as_bytes())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(")?;
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…)")
    }
}

/// A type: its serialized stable form and the fingerprint of its declarations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TypeId {
    pub(crate) repr: Vec<u8>,
    pub(crate) declarations: Fingerprint,
}

/// A method: where it is (function and table names), its signature, and its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MethodId {
    pub(crate) function: String,
    pub(crate) table: String,
    pub(crate) signature: Vec<TypeId>,
    pub(crate) source: Fingerprint,
}

/// A method instance: its method and argument types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceId {
    pub(crate) method: MethodId,
    pub(crate) argtypes: Vec<TypeId>,
}

/// What one record is about: a method instance compiled by one compiler (at one version) for one
/// cache, stack and owner key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) tag: String,
    pub(crate) stack: Vec<String>,
    pub(crate) compiler_version: String,
    pub(crate) key: Vec<u8>,
    pub(crate) instance: InstanceId,
}

impl Identity {
    /// The content-addressed key: a BLAKE3 hash of the serialized identity, under a domain of
    /// its own so that no other hash of the crate collides with it by construction.
    pub(crate) fn record_key(&self) -> Option<RecordKey> {
        let bytes = postcard::to_allocvec(self).ok()?;
        let mut hasher = blake3::Hasher::new_derive_key("compiler-caching record key v1");
        hasher.update(&bytes);
        Some(RecordKey(*hasher.finalize().as_bytes()))
    }
}

/// The most entries each memo keeps: past it, it starts over.
const MEMO_LIMIT: usize = 1 << 16;

/// A memo that starts over when full.
struct Memo<K, V>(Mutex<HashMap<K, V>>);

impl<K: std::hash::Hash + Eq, V: Clone> Memo<K, V> {
    fn new() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }

    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        let mut map = self.0.lock();
        if map.len() >= MEMO_LIMIT {
            map.clear();
        }
        map.insert(key, value);
    }
}

/// Computes identities for one cache and resolves stored ones, remembering what never changes
/// within a process: each method's identity (methods are immutable and their ids are never
/// reused), each type's stable form and declarations (a type's declaration cannot change), and
/// each function's handle by name (functions are never undeclared).
pub(crate) struct Identifier<L: PersistentLattice> {
    methods: Memo<u64, Arc<MethodId>>,
    exported: Memo<L::Type, TypeId>,
    imported: Memo<TypeId, L::Type>,
    functions: Memo<String, Function>,
}

impl<L: PersistentLattice> Identifier<L> {
    pub(crate) fn new() -> Self {
        Identifier {
            methods: Memo::new(),
            exported: Memo::new(),
            imported: Memo::new(),
            functions: Memo::new(),
        }
    }

    pub(crate) fn ty(&self, lattice: &L, ty: &L::Type) -> Option<TypeId> {
        if let Some(known) = self.exported.get(ty) {
            return Some(known);
        }
        let repr = lattice.export_type(ty)?;
        let id = TypeId {
            repr: postcard::to_allocvec(&repr).ok()?,
            declarations: lattice.declaration_fingerprint(ty),
        };
        self.exported.insert(ty.clone(), id.clone());
        Some(id)
    }

    pub(crate) fn types(&self, lattice: &L, types: &[L::Type]) -> Option<Vec<TypeId>> {
        types.iter().map(|t| self.ty(lattice, t)).collect()
    }

    /// The type a stored one denotes here, if it is declared as it was.
    pub(crate) fn import(&self, lattice: &L, id: &TypeId) -> Result<L::Type, String> {
        if let Some(known) = self.imported.get(id) {
            return Ok(known);
        }
        let repr: L::TypeRepr =
            postcard::from_bytes(&id.repr).map_err(|_| "a stored type does not decode")?;
        let ty = lattice
            .import_type(repr)
            .map_err(|e| format!("a stored type no longer exists: {e}"))?;
        if lattice.declaration_fingerprint(&ty) != id.declarations {
            return Err(format!("type {ty} is declared differently"));
        }
        self.imported.insert(id.clone(), ty.clone());
        Ok(ty)
    }

    /// The function declared as `name`, if there is one.
    pub(crate) fn function(&self, engine: &Engine<L>, name: &str) -> Option<Function> {
        if let Some(known) = self.functions.get(name) {
            return Some(known);
        }
        let f = engine.function(name).ok()?;
        self.functions.insert(name.to_owned(), f);
        Some(f)
    }

    /// The identity of `method`, if its source can be fingerprinted and its types exported.
    pub(crate) fn method<C: PersistentCompiler<L>>(
        &self,
        compiler: &C,
        engine: &Engine<L>,
        method: &Method<L>,
    ) -> Option<Arc<MethodId>> {
        if let Some(known) = self.methods.get(&method.id()) {
            return Some(known);
        }
        let id = Arc::new(MethodId {
            function: method.0.function_name.to_string(),
            table: engine.table_name(method.table()).ok()?.to_string(),
            signature: self.types(engine.lattice(), method.signature())?,
            source: compiler.source_fingerprint(method)?,
        });
        self.methods.insert(method.id(), Arc::clone(&id));
        Some(id)
    }

    pub(crate) fn instance<C: PersistentCompiler<L>>(
        &self,
        compiler: &C,
        engine: &Engine<L>,
        mi: &MethodInstance<L>,
    ) -> Option<InstanceId> {
        Some(InstanceId {
            method: (*self.method(compiler, engine, mi.method())?).clone(),
            argtypes: self.types(engine.lattice(), mi.argtypes())?,
        })
    }

    /// The identity of what `cache` compiles for `(mi, key)`.
    pub(crate) fn identity<C: PersistentCompiler<L>>(
        &self,
        cache: &CacheInner<C, L>,
        mi: &MethodInstance<L>,
        key: &C::Key,
    ) -> Option<Identity> {
        let engine = &cache.engine;
        Some(Identity {
            tag: cache.tag.to_string(),
            stack: engine
                .stack_names(cache.stack)
                .ok()?
                .iter()
                .map(|t| t.to_string())
                .collect(),
            compiler_version: cache.compiler.version().to_owned(),
            key: postcard::to_allocvec(key).ok()?,
            instance: self.instance(&cache.compiler, engine, mi)?,
        })
    }
}
