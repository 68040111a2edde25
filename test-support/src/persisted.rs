//! For the persistent tier: a compiler whose methods call other functions by name (so that its
//! sources mean the same in every process), and stores that fail, block or count on command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use compiler_caching::{
    ArtifactStore, Callee, Compiler, Error, Fingerprint, InferCx, Method, PersistentCompiler,
    PhaseCx, RecordKey, StoreError, StoreStats,
};

use crate::threads::Signal;

/// A method's source for [`Chain`]: a value, the functions it calls with its own argument types
/// (adding their values; a call with no method adds 0), and the functions whose dispatched
/// instance it only depends on.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// What the method adds.
    pub value: u64,
    /// Functions called (dispatched and compiled) with the method's argument types.
    pub calls: Vec<String>,
    /// Functions dispatched whose instance it depends on without compiling it.
    pub depends: Vec<String>,
    /// Functions only dispatched (one recorded dependency each).
    pub dispatches: Vec<String>,
}

impl Calls {
    /// A method worth `value` that calls nothing.
    pub fn value(value: u64) -> Calls {
        Calls {
            value,
            ..Calls::default()
        }
    }

    /// A method worth `value` that calls `calls`.
    pub fn calling(value: u64, calls: &[&str]) -> Calls {
        Calls {
            value,
            calls: calls.iter().map(|c| c.to_string()).collect(),
            ..Calls::default()
        }
    }
}

/// Compiles a [`Calls`] to its value plus its callees' values (wrapping); a callee in progress
/// (recursion) adds 0. Deterministic, so a recompiled callee has the same content as before.
pub struct Chain {
    /// What [`PersistentCompiler::version`] answers.
    pub version: String,
    /// The instances loaded from the store, in order, as `f(T)`.
    pub loaded: Mutex<Vec<String>>,
    /// Make `source_fingerprint` refuse every method: nothing can be stored.
    pub opaque: AtomicBool,
}

impl Chain {
    /// A compiler at `version`.
    pub fn new(version: &str) -> Chain {
        Chain {
            version: version.to_owned(),
            loaded: Mutex::new(Vec::new()),
            opaque: AtomicBool::new(false),
        }
    }

    /// What was loaded since the last call.
    pub fn take_loaded(&self) -> Vec<String> {
        std::mem::take(&mut *self.loaded.lock().unwrap())
    }
}

fn calls(cx: &InferCx<'_, Chain>) -> Result<Calls, String> {
    cx.instance()
        .method()
        .source::<Calls>()
        .cloned()
        .ok_or_else(|| "not a Calls".to_owned())
}

impl Compiler for Chain {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        let source = calls(cx)?;
        let mut total = source.value;
        for name in &source.calls {
            let f = cx.engine().function(name).map_err(|e| e.to_string())?;
            let callee = match cx.dispatch(f, cx.instance().argtypes()) {
                Ok(mi) => mi,
                Err(Error::NoMethod { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            };
            if let Callee::Ready(ci) = cx.compile(&callee).map_err(|e| e.to_string())? {
                total = total.wrapping_add(ci.linked().copied().unwrap_or(0));
            }
        }
        for name in &source.dispatches {
            let f = cx.engine().function(name).map_err(|e| e.to_string())?;
            if let Ok(mi) = cx.dispatch(f, cx.instance().argtypes()) {
                total = total.wrapping_add(mi.method().source::<Calls>().map_or(0, |c| c.value));
            }
        }
        for name in &source.depends {
            let f = cx.engine().function(name).map_err(|e| e.to_string())?;
            if let Ok(mi) = cx.dispatch(f, cx.instance().argtypes()) {
                cx.depend_on(&mi).map_err(|e| e.to_string())?;
            }
        }
        Ok(total)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

impl PersistentCompiler for Chain {
    fn version(&self) -> &str {
        &self.version
    }

    fn source_fingerprint(&self, method: &Method) -> Option<Fingerprint> {
        if self.opaque.load(Ordering::Relaxed) {
            return None;
        }
        let source = method.source::<Calls>()?;
        let value = source.value.to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![&value, b"calls"];
        parts.extend(source.calls.iter().map(|c| c.as_bytes()));
        parts.push(b"depends");
        parts.extend(source.depends.iter().map(|c| c.as_bytes()));
        parts.push(b"dispatches");
        parts.extend(source.dispatches.iter().map(|c| c.as_bytes()));
        Some(Fingerprint::of_parts(parts))
    }

    fn loaded(&self, instance: &compiler_caching::MethodInstance, _: &u32) {
        self.loaded.lock().unwrap().push(instance.to_string());
    }
}

/// A store wrapper that fails, blocks or counts on command, and logs the keys asked for.
#[derive(Debug)]
pub struct FaultyStore {
    /// The store behind.
    pub inner: Arc<dyn ArtifactStore>,
    /// Fail every get with this error.
    pub fail_gets: Mutex<Option<StoreError>>,
    /// Fail every put (and batch) with this error.
    pub fail_puts: Mutex<Option<StoreError>>,
    /// Gets per key.
    pub gets: Mutex<HashMap<RecordKey, usize>>,
    /// Keys put, in order.
    pub puts: Mutex<Vec<RecordKey>>,
    /// While set, a get raises [`FaultyStore::entered`] and waits for [`FaultyStore::release`].
    pub hold_gets: AtomicBool,
    /// Raised by each get that is held.
    pub entered: Signal,
    /// Raised by the test to let held gets go on.
    pub release: Signal,
    held: AtomicUsize,
}

impl FaultyStore {
    /// A wrapper of `inner` that does nothing special until told.
    pub fn new(inner: Arc<dyn ArtifactStore>) -> FaultyStore {
        FaultyStore {
            inner,
            fail_gets: Mutex::new(None),
            fail_puts: Mutex::new(None),
            gets: Mutex::new(HashMap::new()),
            puts: Mutex::new(Vec::new()),
            hold_gets: AtomicBool::new(false),
            entered: Signal::default(),
            release: Signal::default(),
            held: AtomicUsize::new(0),
        }
    }

    /// How many gets were made, over all keys.
    pub fn total_gets(&self) -> usize {
        self.gets.lock().unwrap().values().sum()
    }
}

impl ArtifactStore for FaultyStore {
    fn get(&self, key: &RecordKey) -> Result<Option<Vec<u8>>, StoreError> {
        *self.gets.lock().unwrap().entry(*key).or_default() += 1;
        if self.hold_gets.load(Ordering::SeqCst) {
            let n = self.held.fetch_add(1, Ordering::SeqCst) + 1;
            self.entered.raise();
            self.release.wait_for(n);
        }
        if let Some(e) = self.fail_gets.lock().unwrap().clone() {
            return Err(e);
        }
        self.inner.get(key)
    }
    fn put(&self, key: &RecordKey, record: &[u8]) -> Result<(), StoreError> {
        if let Some(e) = self.fail_puts.lock().unwrap().clone() {
            return Err(e);
        }
        self.puts.lock().unwrap().push(*key);
        self.inner.put(key, record)
    }
    fn remove(&self, key: &RecordKey) -> Result<(), StoreError> {
        self.inner.remove(key)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    fn put_batch(&self, records: &[(RecordKey, Vec<u8>)]) -> Result<(), StoreError> {
        if let Some(e) = self.fail_puts.lock().unwrap().clone() {
            return Err(e);
        }
        self.puts
            .lock()
            .unwrap()
            .extend(records.iter().map(|(k, _)| *k));
        self.inner.put_batch(records)
    }
}
