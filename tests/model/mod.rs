//! A deliberately simple, single-threaded reference model of SEMANTICS.md, and a driver that
//! replays one sequence of operations against both the model and the engine, comparing every
//! answer. Used by `tests/differential.rs` (proptest) and by the `ops` fuzz target.
//!
//! The model keeps every method ever defined in one vector and recomputes everything from
//! scratch: dispatch walks all methods, and a compiled value is recomputed by following dispatch.
//! It shares only the type lattice (whose laws are checked on their own in `tests/lattice.rs`)
//! with the engine.
#![allow(dead_code)]

use std::collections::HashMap;

use compiler_caching::{
    Callee, Compiler, CompilerCache, Engine, Error, Function, InferCx, Lattice, MethodTable,
    PhaseCx, TableStack, Ty,
};

/// The types the operations draw from: a small fixed hierarchy.
pub struct Universe {
    pub engine: Engine,
    pub types: Vec<Ty>,
    pub funcs: Vec<Function>,
    pub tables: Vec<MethodTable>,
    pub stacks: Vec<(TableStack, Vec<usize>)>,
}

pub const FUNCS: usize = 4;

impl Universe {
    pub fn new() -> Universe {
        let engine = Engine::new();
        let l = engine.lattice();
        let number = l.declare_abstract("Number", &Ty::any()).unwrap();
        let real = l.declare_abstract("Real", &number).unwrap();
        let int = l.declare_concrete("Int", &real).unwrap();
        let float = l.declare_concrete("Float", &real).unwrap();
        let string = l.declare_concrete("Str", &Ty::any()).unwrap();
        let types = vec![
            Ty::any(),
            number,
            real.clone(),
            int.clone(),
            float.clone(),
            string.clone(),
            Ty::union([int.clone(), string.clone()]),
            Ty::union([float, string]),
        ];
        let funcs = (0..FUNCS)
            .map(|i| engine.declare_function(&format!("f{i}")).unwrap())
            .collect();
        let overlay = engine.new_overlay("overlay").unwrap();
        let tables = vec![engine.global_table(), overlay];
        let stacks = vec![
            (engine.global_stack(), vec![0]),
            (
                engine.stack(&[overlay, engine.global_table()]).unwrap(),
                vec![1, 0],
            ),
        ];
        Universe {
            engine,
            types,
            funcs,
            tables,
            stacks,
        }
    }
}

/// A method's source: a constant and the functions it calls with its own argument types.
/// Calls only go to functions with a higher index, so call graphs are acyclic and a compiled
/// value is a pure function of the world.
#[derive(Clone, Debug)]
pub struct Src {
    pub value: i64,
    pub calls: Vec<usize>,
}

#[derive(Clone, Debug)]
pub enum Op {
    Add {
        f: usize,
        table: usize,
        sig: Vec<usize>,
        value: i64,
        calls: Vec<usize>,
    },
    Delete {
        nth: usize,
    },
    Dispatch {
        f: usize,
        args: Vec<usize>,
        stack: usize,
        back: usize,
    },
    Compile {
        f: usize,
        args: Vec<usize>,
        stack: usize,
        key: u8,
        back: usize,
    },
    Reclaim,
}

/// Decodes fuzzer bytes into operations (any bytes decode to something).
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut it = bytes.iter().copied();
    let mut ops = Vec::new();
    let mut next = move || it.next();
    while let Some(tag) = next() {
        let mut b = || next().unwrap_or(0) as usize;
        let op = match tag % 10 {
            0..=2 => {
                let f = b() % FUNCS;
                let arity = 1 + b() % 2;
                let sig = (0..arity).map(|_| b() % 8).collect();
                let value = (b() % 50) as i64;
                let ncalls = b() % 3;
                let calls = (0..ncalls)
                    .map(|_| b() % FUNCS)
                    .filter(|&c| c > f)
                    .collect();
                Op::Add {
                    f,
                    table: b() % 2,
                    sig,
                    value,
                    calls,
                }
            }
            3 => Op::Delete { nth: b() },
            4..=5 => {
                let arity = 1 + b() % 2;
                Op::Dispatch {
                    f: b() % FUNCS,
                    args: (0..arity).map(|_| b() % 8).collect(),
                    stack: b() % 2,
                    back: b() % 4,
                }
            }
            6..=8 => {
                let arity = 1 + b() % 2;
                Op::Compile {
                    f: b() % FUNCS,
                    args: (0..arity).map(|_| b() % 8).collect(),
                    stack: b() % 2,
                    key: (b() % 2) as u8,
                    back: b() % 3,
                }
            }
            _ => Op::Reclaim,
        };
        ops.push(op);
    }
    ops
}

#[derive(Clone, Debug)]
struct MMethod {
    f: usize,
    table: usize,
    sig: Vec<Ty>,
    src: Src,
    defined: u64,
    deleted: Option<u64>,
    handle: compiler_caching::Method,
}

/// The reference model.
pub struct Model {
    methods: Vec<MMethod>,
    world: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Method(usize),
    NoMethod,
    /// The would-be winner (the oldest applicable method no other beats, else the oldest) and
    /// the applicable methods it does not beat, oldest first.
    Ambiguous {
        candidate: usize,
        rivals: Vec<usize>,
    },
}

impl Model {
    fn live(m: &MMethod, w: u64) -> bool {
        m.defined <= w && m.deleted.is_none_or(|d| w < d)
    }

    pub fn dispatch(
        &self,
        lattice: &impl Lattice<Type = Ty>,
        f: usize,
        args: &[Ty],
        w: u64,
        tables: &[usize],
    ) -> Answer {
        let sub = |a: &[Ty], b: &[Ty]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| lattice.is_subtype(x, y))
        };
        for &t in tables {
            let applicable: Vec<usize> = (0..self.methods.len())
                .filter(|&i| {
                    let m = &self.methods[i];
                    m.f == f && m.table == t && Self::live(m, w) && sub(args, &m.sig)
                })
                .collect();
            if applicable.is_empty() {
                continue;
            }
            let beats = |a: usize, b: usize| {
                lattice.is_more_specific(&self.methods[a].sig, &self.methods[b].sig)
            };
            for &c in &applicable {
                if applicable.iter().all(|&o| o == c || beats(c, o)) {
                    return Answer::Method(c);
                }
            }
            // Indices are in definition order, which is the engine's id order.
            let candidate = applicable
                .iter()
                .copied()
                .find(|&c| !applicable.iter().any(|&o| o != c && beats(o, c)))
                .unwrap_or(applicable[0]);
            let rivals = applicable
                .iter()
                .copied()
                .filter(|&o| o != candidate && !beats(candidate, o))
                .collect();
            return Answer::Ambiguous { candidate, rivals };
        }
        Answer::NoMethod
    }

    /// The compiled value of calling `f` with `args` in world `w`, recomputed from scratch.
    pub fn value(
        &self,
        lattice: &impl Lattice<Type = Ty>,
        f: usize,
        args: &[Ty],
        w: u64,
        tables: &[usize],
    ) -> Option<i64> {
        match self.dispatch(lattice, f, args, w, tables) {
            Answer::Method(m) => {
                let src = &self.methods[m].src;
                let mut total = src.value;
                for &c in &src.calls {
                    // A callee with no method or an ambiguity contributes nothing.
                    total += self.value(lattice, c, args, w, tables).unwrap_or(0);
                }
                Some(total)
            }
            _ => None,
        }
    }

    /// The dispatch answers a compilation of method `m` for `args` in world `w` read: those of its
    /// callees, transitively. (The dispatch that chose `m` is the caller's, not the instance's.)
    fn reads(
        &self,
        lattice: &impl Lattice<Type = Ty>,
        m: usize,
        args: &[Ty],
        w: u64,
        tables: &[usize],
        out: &mut Vec<(usize, Answer)>,
    ) {
        for &c in &self.methods[m].src.calls {
            let a = self.dispatch(lattice, c, args, w, tables);
            out.push((c, a.clone()));
            if let Answer::Method(callee) = a {
                self.reads(lattice, callee, args, w, tables, out);
            }
        }
    }
}

/// The engine-side compiler for [`Src`] methods.
pub struct SrcCompiler;

impl Compiler for SrcCompiler {
    type Key = u8;
    type Inferred = i64;
    type Artifact = i64;
    type Linked = i64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
        let src = cx
            .instance()
            .method()
            .source::<Src>()
            .cloned()
            .ok_or("not Src")?;
        let args = cx.instance().argtypes().to_vec();
        let mut total = src.value;
        for c in src.calls {
            let f = cx
                .engine()
                .function(&format!("f{c}"))
                .map_err(|e| e.to_string())?;
            match cx.dispatch(f, &args) {
                Ok(mi) => match cx.compile(&mi).map_err(|e| e.to_string())? {
                    Callee::Ready(ci) => total += ci.linked().copied().unwrap_or(0),
                    Callee::InProgress => return Err("unexpected cycle".into()),
                },
                Err(Error::NoMethod { .. } | Error::Ambiguous { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(total)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &i64) -> Result<i64, String> {
        Ok(*v)
    }
}

/// What a run compared, to show a sequence exercised something.
#[derive(Default, Debug, Clone, Copy)]
pub struct Coverage {
    pub dispatches: usize,
    pub old_world_dispatches: usize,
    pub compiles: usize,
    pub validity_checks: usize,
    pub invalid_instances: usize,
}

/// Replays `ops` against the engine and the model; returns the first disagreement.
pub fn run(ops: &[Op]) -> Result<Coverage, String> {
    let mut cov = Coverage::default();
    let u = Universe::new();
    let engine = &u.engine;
    let lattice = engine.lattice();
    let caches: Vec<CompilerCache<SrcCompiler>> = u
        .stacks
        .iter()
        .map(|(s, _)| CompilerCache::with_stack(engine, "model", *s, SrcCompiler))
        .collect();
    let mut model = Model {
        methods: Vec::new(),
        world: 1,
    };
    // Worlds kept pinned so older worlds can be asked about (the last few).
    let mut pinned: Vec<compiler_caching::Guard<'_>> = vec![engine.pin()];
    // What has been compiled: (f, args, stack, key, world compiled in) -> model reads then.
    let mut compiled: Vec<Compiled> = Vec::new();
    let ids: HashMap<u64, usize> = HashMap::new();
    let mut ids = ids;

    for (step, op) in ops.iter().enumerate() {
        let ctx = |what: &str| format!("step {step} {op:?}: {what}");
        match op {
            Op::Add {
                f,
                table,
                sig,
                value,
                calls,
            } => {
                let sig: Vec<Ty> = sig.iter().map(|&i| u.types[i].clone()).collect();
                let src = Src {
                    value: *value,
                    calls: calls.clone(),
                };
                let handle = engine
                    .add_method_to(u.tables[*table], u.funcs[*f], &sig, src.clone())
                    .map_err(|e| ctx(&e.to_string()))?;
                model.world += 1;
                let w = model.world;
                for m in model.methods.iter_mut() {
                    if m.f == *f
                        && m.table == *table
                        && Model::live(m, w - 1)
                        && compiler_caching::types::sig_equal(lattice, &m.sig, &sig)
                    {
                        m.deleted = Some(w);
                    }
                }
                ids.insert(handle.id(), model.methods.len());
                model.methods.push(MMethod {
                    f: *f,
                    table: *table,
                    sig,
                    src,
                    defined: w,
                    deleted: None,
                    handle,
                });
            }
            Op::Delete { nth } => {
                let live: Vec<usize> = (0..model.methods.len())
                    .filter(|&i| Model::live(&model.methods[i], model.world))
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let i = live[nth % live.len()];
                engine
                    .delete_method(&model.methods[i].handle)
                    .map_err(|e| ctx(&e.to_string()))?;
                model.world += 1;
                model.methods[i].deleted = Some(model.world);
            }
            Op::Reclaim => {
                engine.reclaim();
            }
            Op::Dispatch {
                f,
                args,
                stack,
                back,
            }
            | Op::Compile {
                f,
                args,
                stack,
                back,
                ..
            } => {
                let guard = &pinned[pinned.len() - 1 - back % pinned.len()];
                let w = guard.world().get();
                let args: Vec<Ty> = args.iter().map(|&i| u.types[i].clone()).collect();
                let (stack_handle, tables) = &u.stacks[*stack];
                let expected = model.dispatch(lattice, *f, &args, w, tables);
                let got = match guard.dispatch_in(*stack_handle, u.funcs[*f], &args) {
                    Ok(mi) => Answer::Method(ids[&mi.method().id()]),
                    Err(Error::NoMethod { .. }) => Answer::NoMethod,
                    Err(Error::Ambiguous {
                        candidate, rivals, ..
                    }) => {
                        // Compare by rendering the model's methods the same way.
                        let name = |i: &usize| model.methods[*i].handle.to_string();
                        let want = match &expected {
                            Answer::Ambiguous { candidate, rivals } => {
                                Some((name(candidate), rivals.iter().map(name).collect()))
                            }
                            _ => None,
                        };
                        if want.as_ref() != Some(&(candidate.clone(), rivals.clone())) {
                            return Err(ctx(&format!(
                                "ambiguity {candidate} vs {rivals:?}, model {want:?}"
                            )));
                        }
                        expected.clone()
                    }
                    Err(e) => return Err(ctx(&format!("unexpected error {e}"))),
                };
                if got != expected {
                    return Err(ctx(&format!(
                        "dispatch in world {w}: engine {got:?}, model {expected:?}"
                    )));
                }
                cov.dispatches += 1;
                if w < model.world {
                    cov.old_world_dispatches += 1;
                }
                if let Op::Compile { key, .. } = op {
                    let Answer::Method(method) = expected else {
                        continue;
                    };
                    let mi = guard
                        .dispatch_in(*stack_handle, u.funcs[*f], &args)
                        .unwrap();
                    let value = *caches[*stack]
                        .compile(guard, mi, key)
                        .map_err(|e| ctx(&e.to_string()))?;
                    let want = model.value(lattice, *f, &args, w, tables).unwrap();
                    if value != want {
                        return Err(ctx(&format!(
                            "compiled value in world {w}: engine {value}, model {want}"
                        )));
                    }
                    cov.compiles += 1;
                    let mut reads = Vec::new();
                    model.reads(lattice, method, &args, w, tables, &mut reads);
                    compiled.push(Compiled {
                        mi: mi.clone(),
                        method,
                        args: args.clone(),
                        stack: *stack,
                        key: *key,
                        world: w,
                        published_at: model.world,
                        reads,
                    });
                }
            }
        }
        if matches!(op, Op::Add { .. } | Op::Delete { .. }) {
            // Keep at most four pinned worlds: the newest and three older ones.
            pinned.push(engine.pin());
            if pinned.len() > 4 {
                pinned.remove(0);
            }
            // Validity must match the model exactly: valid in the new world iff nothing the
            // compilation read answers differently now.
            let now = model.world;
            let guard = pinned.last().unwrap();
            for c in &compiled {
                let tables = &u.stacks[c.stack].1;
                // Valid now iff nothing it read answered differently in any world since: a
                // validity range has no holes, so A -> B -> A still closed it at the first change.
                let unchanged = (c.world..=now).all(|w| {
                    Model::live(&model.methods[c.method], w)
                        && c.reads
                            .iter()
                            .all(|(g, a)| model.dispatch(lattice, *g, &c.args, w, tables) == *a)
                });
                // The instance compiled then, if it was published by that compile (a later
                // compile in another world may have been served by an older instance instead).
                let versions = caches[c.stack].versions(&c.mi, &c.key);
                let Some(ci) = versions.iter().find(|v| v.compiled_in().get() == c.world) else {
                    continue;
                };
                let valid_now = ci.is_valid_in(guard.world());
                cov.validity_checks += 1;
                cov.invalid_instances += usize::from(!valid_now);
                if valid_now && !unchanged {
                    return Err(ctx(&format!(
                        "{} compiled in world {}: still valid in {now} though what it read changed",
                        c.mi, c.world
                    )));
                }
                if !valid_now && unchanged {
                    // Not invalidated by any mutation: it may only have been closed when it was
                    // published, before a newer version of the same slot (one valid version per
                    // world), compiled in a later world with a later start.
                    let max = ci.validity().max.map_or(u64::MAX, |m| m.get());
                    let clamped = max <= c.published_at
                        && versions.iter().any(|v| {
                            v.validity().min.get() == max && v.compiled_in().get() > c.world
                        });
                    if !clamped {
                        return Err(ctx(&format!(
                            "{} compiled in world {}: invalid in {now} ({}) though nothing it read changed",
                            c.mi,
                            c.world,
                            ci.validity()
                        )));
                    }
                }
            }
            compiled.retain(|c| c.world + 8 > now);
        }
    }
    Ok(cov)
}

struct Compiled {
    mi: compiler_caching::MethodInstance,
    method: usize,
    args: Vec<Ty>,
    stack: usize,
    key: u8,
    world: u64,
    /// The newest world when it was compiled.
    published_at: u64,
    reads: Vec<(usize, Answer)>,
}
