//! A session: one engine, the built-in types, the global table and overlays, and a code cache per
//! table stack, optionally backed by a persistent store of compiled code in a cache directory.
//! Runs scripts statement by statement.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use compiler_caching::{
    ArtifactStore, CodeInstance, CompileError, CompilerCache, Engine, MethodTable, RedbOptions,
    RedbStore, StoreStats, TableStack, TypeDecl, UnavailableStore,
};

use crate::compiler::{at, Jit, Native, Scalar, Shared, Value};
use crate::syntax::{parse, Expr, FnDef, Pos, ScriptError, Stmt};

/// One table stack and the cache compiled through it.
#[derive(Clone)]
struct Target {
    stack: TableStack,
    cache: CompilerCache<Jit>,
}

/// The persistent store a session keeps compiled code in.
struct Store {
    store: Arc<dyn ArtifactStore>,
    /// Where it is, or why there is none.
    describe: String,
}

/// A running program.
pub struct Session {
    /// The engine.
    pub engine: Engine,
    shared: Arc<Shared>,
    store: Option<Store>,
    global: Target,
    overlays: Mutex<HashMap<String, (MethodTable, Target)>>,
    /// Top-level calls compiled so far, to report what a redefinition invalidated.
    entries: Mutex<Vec<CodeInstance<Jit>>>,
    /// Signatures defined so far, to tell a redefinition from a new method.
    defined: Mutex<std::collections::HashSet<(Option<String>, String)>>,
}

impl Session {
    /// A session with the built-in types: `Any > Number > Real > {Integer > {Int64, Bool},
    /// Float64}`, whose compiled code lives as long as it does.
    pub fn new() -> Result<Session, String> {
        Session::open(None)
    }

    /// A session that keeps compiled code in a store in `dir` (created if missing), so that a
    /// later session over the same directory loads what did not change instead of compiling it.
    /// A store that cannot be opened (held by other processes, unreadable, on a full disk) does
    /// not stop the session: it compiles everything, and says why in [`Session::store`].
    pub fn with_cache(dir: &Path) -> Result<Session, String> {
        Session::open(Some(dir))
    }

    fn open(cache: Option<&Path>) -> Result<Session, String> {
        let store = cache.map(|dir| {
            let options = RedbOptions {
                byte_budget: 256 << 20,
                recreate_if_corrupt: true,
                ..RedbOptions::default()
            };
            match RedbStore::open_in_dir(dir, options) {
                Ok(store) => Store {
                    describe: format!("{}", store.path().display()),
                    store: Arc::new(store),
                },
                Err(e) => Store {
                    describe: format!("unavailable ({e}); compiling everything"),
                    store: Arc::new(UnavailableStore::new(e)),
                },
            }
        });
        let engine = Engine::new();
        engine
            .lattice()
            .declare_all(&[
                TypeDecl::abstract_type("Number", "Any"),
                TypeDecl::abstract_type("Real", "Number"),
                TypeDecl::abstract_type("Integer", "Real"),
                TypeDecl::concrete_type("Int64", "Integer"),
                TypeDecl::concrete_type("Bool", "Integer"),
                TypeDecl::concrete_type("Float64", "Real"),
            ])
            .map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared::new()?);
        let stack = engine.global_stack();
        let global = Target {
            stack,
            cache: cache_for(
                &engine,
                &store,
                "jit",
                stack,
                Jit::new(shared.clone(), stack),
            )
            .map_err(|e| e.to_string())?,
        };
        Ok(Session {
            engine,
            shared,
            store,
            global,
            overlays: Mutex::new(HashMap::new()),
            entries: Mutex::new(Vec::new()),
            defined: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The global target, or the overlay's (created on first use).
    fn target(&self, overlay: Option<&str>) -> Result<(MethodTable, Target), ScriptError> {
        let Some(name) = overlay else {
            return Ok((self.engine.global_table(), self.global.clone()));
        };
        let mut overlays = self.overlays.lock().unwrap_or_else(|p| p.into_inner());
        if !overlays.contains_key(name) {
            let table = self.engine.new_overlay(name).map_err(at(Pos::default()))?;
            let stack = self
                .engine
                .stack(&[table, self.engine.global_table()])
                .map_err(at(Pos::default()))?;
            let compiler = Jit::new(self.shared.clone(), stack);
            let cache = cache_for(
                &self.engine,
                &self.store,
                &format!("jit@{name}"),
                stack,
                compiler,
            )
            .map_err(at(Pos::default()))?;
            overlays.insert(name.to_owned(), (table, Target { stack, cache }));
        }
        Ok(overlays[name].clone())
    }

    /// Defines (or redefines) a method. Returns what the redefinition invalidated among earlier
    /// top-level calls, with the reason.
    pub fn define(&self, def: &FnDef) -> Result<Vec<String>, ScriptError> {
        if def.params.len() > MAX_PARAMS {
            return Err(ScriptError::new(
                def.pos,
                format!(
                    "`{}` has {} parameters; at most {MAX_PARAMS} are supported",
                    def.name,
                    def.params.len()
                ),
            ));
        }
        let mut sig = Vec::new();
        for (_, t, pos) in &def.params {
            sig.push(
                self.engine
                    .lattice()
                    .lookup(t)
                    .map_err(|e| ScriptError::new(*pos, e.to_string()))?,
            );
        }
        if Scalar::from_name(&def.ret.0).is_none() {
            let known = self.engine.lattice().lookup(&def.ret.0).is_ok();
            let why = if known {
                "must be concrete (Int64, Float64 or Bool)"
            } else {
                "is not a known type"
            };
            return Err(ScriptError::new(
                def.ret.1,
                format!("return type `{}` {why}", def.ret.0),
            ));
        }
        let f = match self.engine.function(&def.name) {
            Ok(f) => f,
            Err(_) => self
                .engine
                .declare_function(&def.name)
                .map_err(at(def.pos))?,
        };
        let (table, _) = self.target(def.overlay.as_deref())?;
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let was_valid: Vec<bool> = {
            let guard = self.engine.pin();
            entries
                .iter()
                .map(|ci| ci.is_valid_in(guard.world()))
                .collect()
        };
        self.engine
            .add_method_to(table, f, &sig, def.clone())
            .map_err(at(def.pos))?;
        let now = self.engine.current_world();
        let mut invalidated = Vec::new();
        for (ci, was) in entries.iter().zip(was_valid) {
            if was && !ci.is_valid_in(now) {
                let why = ci.invalidation().map(|w| w.to_string()).unwrap_or_default();
                invalidated.push(format!("{} ({why})", ci.instance()));
            }
        }
        Ok(invalidated)
    }

    /// Evaluates an expression at the top level: literals, and calls whose arguments are
    /// evaluated first.
    pub fn eval(&self, overlay: Option<&str>, e: &Expr) -> Result<Value, ScriptError> {
        match e {
            Expr::Int(i, _) => Ok(Value::Int(*i)),
            Expr::Float(x, _) => Ok(Value::Float(*x)),
            Expr::Bool(b, _) => Ok(Value::Bool(*b)),
            Expr::Neg(inner, pos) => match self.eval(overlay, inner)? {
                Value::Int(i) => Ok(Value::Int(i.wrapping_neg())),
                Value::Float(x) => Ok(Value::Float(-x)),
                Value::Bool(_) => Err(ScriptError::new(*pos, "cannot negate a Bool")),
            },
            Expr::Call(name, args, pos) => {
                let mut values = Vec::new();
                for a in args {
                    values.push(self.eval(overlay, a)?);
                }
                self.call(overlay, name, &values, *pos)
            }
            other => Err(ScriptError::new(
                other.pos(),
                "only literals and calls can be evaluated at the top level",
            )),
        }
    }

    /// Calls `name(args...)` through the global table or an overlay: dispatch on the values'
    /// types, compile (or hit the cache), and run the native code.
    pub fn call(
        &self,
        overlay: Option<&str>,
        name: &str,
        args: &[Value],
        pos: Pos,
    ) -> Result<Value, ScriptError> {
        let f = self
            .engine
            .function(name)
            .map_err(|_| ScriptError::new(pos, format!("unknown function `{name}`")))?;
        let mut types = Vec::new();
        for v in args {
            types.push(
                self.engine
                    .lattice()
                    .lookup(v.scalar().name())
                    .map_err(|e| ScriptError::new(pos, e.to_string()))?,
            );
        }
        let (_, Target { stack, cache }) = self.target(overlay)?;
        let guard = self.engine.pin();
        let mi = guard.dispatch_in(stack, f, &types).map_err(at(pos))?;
        let ci = cache
            .compile_instance(&guard, mi, &())
            .map_err(|e| match e {
                CompileError::Phase { error, .. } => (*error).clone(),
                other => ScriptError::new(pos, other.to_string()),
            })?;
        let native = *ci.linked().expect("compile links");
        drop(guard);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.iter_mut().find(|e| e.instance() == ci.instance()) {
            Some(e) => *e = ci,
            None => entries.push(ci),
        }
        drop(entries);
        invoke(native, args).ok_or_else(|| {
            ScriptError::new(
                pos,
                format!("calls with {} arguments are not supported", args.len()),
            )
        })
    }

    /// What was inferred since the last call, in order.
    pub fn take_compiled(&self) -> Vec<String> {
        self.shared.take_log()
    }

    /// What was loaded from the store (neither inferred nor generated) since the last call, in
    /// order.
    pub fn take_loaded(&self) -> Vec<String> {
        self.shared.take_loaded()
    }

    /// The store's location (or why it is unavailable) and counters, if the session has one.
    pub fn store(&self) -> Option<(String, StoreStats)> {
        self.store
            .as_ref()
            .map(|s| (s.describe.clone(), s.store.stats()))
    }

    /// Writes everything compiled so far to the store (also done when the session ends).
    pub fn flush(&self) {
        let _ = self.global.cache.flush_store();
        let overlays = self.overlays.lock().unwrap_or_else(|p| p.into_inner());
        for (_, target) in overlays.values() {
            let _ = target.cache.flush_store();
        }
    }

    /// Runs a script, writing what it prints to `out`.
    pub fn run(&self, src: &str, out: &mut dyn Write) -> Result<(), ScriptError> {
        // Definitions before the first `print` are the program's setup; after it, each one is
        // reported with what it invalidated.
        let mut started = false;
        for stmt in parse(src)? {
            match stmt {
                Stmt::Def(def) => {
                    let key = (def.overlay.clone(), signature(&def));
                    let redefinition = !self
                        .defined
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key);
                    let invalidated = self.define(&def)?;
                    let place = def
                        .overlay
                        .as_deref()
                        .map_or(String::new(), |o| format!(" in overlay `{o}`"));
                    if started || redefinition || !invalidated.is_empty() {
                        let verb = if redefinition { "redefined" } else { "defined" };
                        let _ = writeln!(
                            out,
                            "  {verb} {}{place}; invalidated: {}",
                            signature(&def),
                            list(&invalidated)
                        );
                    }
                }
                Stmt::Print(overlay, e, _) => {
                    started = true;
                    let v = self.eval(overlay.as_deref(), &e)?;
                    let via = overlay
                        .as_deref()
                        .map_or(String::new(), |o| format!(" @{o}"));
                    let loaded = self.take_loaded();
                    let loaded = if loaded.is_empty() {
                        String::new()
                    } else {
                        format!("; loaded: {}", loaded.join(", "))
                    };
                    let _ = writeln!(
                        out,
                        "{}{via} = {v}    [compiled: {}{loaded}]",
                        render(&e),
                        list(&self.take_compiled())
                    );
                }
            }
        }
        Ok(())
    }
}

/// A cache of `compiler` through `stack`, backed by `store` if there is one.
fn cache_for(
    engine: &Engine,
    store: &Option<Store>,
    tag: &str,
    stack: TableStack,
    compiler: Jit,
) -> Result<CompilerCache<Jit>, compiler_caching::Error> {
    match store {
        Some(store) => {
            CompilerCache::with_stack_and_store(engine, tag, stack, compiler, store.store.clone())
        }
        None => CompilerCache::with_stack(engine, tag, stack, compiler),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

fn signature(def: &FnDef) -> String {
    let params: Vec<&str> = def.params.iter().map(|(_, t, _)| t.as_str()).collect();
    format!("{}({})", def.name, params.join(", "))
}

fn render(e: &Expr) -> String {
    match e {
        Expr::Int(i, _) => i.to_string(),
        Expr::Float(x, _) => format!("{x:?}"),
        Expr::Bool(b, _) => b.to_string(),
        Expr::Neg(i, _) => format!("-{}", render(i)),
        Expr::Call(n, args, _) => format!(
            "{n}({})",
            args.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        _ => "…".into(),
    }
}

/// The most parameters a method may have (the arities `invoke` can call).
const MAX_PARAMS: usize = 4;

/// Runs native code; `None` for an arity it cannot call.
fn invoke(native: Native, args: &[Value]) -> Option<Value> {
    let a: Vec<i64> = args.iter().map(|v| v.to_bits()).collect();
    if a.len() != native.arity || native.arity > MAX_PARAMS {
        return None;
    }
    // SAFETY: `entry` is the address of a function `link` finalized with cranelift-jit, whose
    // module is never freed; its signature is `native.arity` `i64` parameters returning one `i64`
    // in the host's default calling convention, which is `extern "C"`. `a` has exactly
    // `native.arity` elements because dispatch matched the method's arity, and `native` was
    // compiled for this exact instance.
    let bits = unsafe {
        match native.arity {
            0 => std::mem::transmute::<usize, extern "C" fn() -> i64>(native.entry)(),
            1 => std::mem::transmute::<usize, extern "C" fn(i64) -> i64>(native.entry)(a[0]),
            2 => std::mem::transmute::<usize, extern "C" fn(i64, i64) -> i64>(native.entry)(
                a[0], a[1],
            ),
            3 => std::mem::transmute::<usize, extern "C" fn(i64, i64, i64) -> i64>(native.entry)(
                a[0], a[1], a[2],
            ),
            4 => std::mem::transmute::<usize, extern "C" fn(i64, i64, i64, i64) -> i64>(
                native.entry,
            )(a[0], a[1], a[2], a[3]),
            _ => return None,
        }
    };
    Some(Value::from_bits(native.ret, bits))
}
