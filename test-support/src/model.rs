//! A deliberately simple, single-threaded reference model of `docs/semantics.md`, and a driver
//! that replays one sequence of operations against both the model and the engine, comparing
//! every answer. Used by `tests/differential.rs` (proptest) and by the `ops` fuzz target.
//!
//! The model keeps every method ever defined in one vector and recomputes everything from
//! scratch: dispatch walks all methods, and a compiled value is recomputed by following dispatch.
//! It shares only the type lattice (whose laws are checked on their own in `tests/lattice.rs`)
//! with the engine.
//!
//! [`decode`] turns any bytes into a scenario:
//!
//! - a type hierarchy: 2–4 abstract roots directly under `Any`, then more abstract and concrete
//!   types (concrete ones are leaves) to a depth of 2–4, 6–14 named types in all;
//! - a long history over four functions: methods added to the global table or an overlay, with
//!   1- or 2-argument signatures of named types, `Any`, and unions of 2–3 mutually unrelated
//!   members (typically from different branches, mixing abstract and concrete: `Union{C6, A1}`),
//!   deleted, and replaced by a method with a type-equal signature;
//! - queries: one-off dispatches and compilations in the current or an older pinned world, and
//!   *watched* queries, which [`run`] re-dispatches after every mutation (and reclamation) in the
//!   current world and every pinned older world, so the engine's dispatch cache is warm when
//!   a mutation happens and a stale cached answer cannot hide. A watched query may also be
//!   recompiled after every mutation, so code compiled against it exists to be invalidated.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;

use compiler_caching::{
    Callee, Compiler, CompilerCache, Engine, Error, Function, Guard, InferCx, Lattice, MethodTable,
    PhaseCx, TableStack, Ty,
};

/// The number of functions, `f0`..`f3`. A method of `fi` only calls functions `fj` with `j > i`.
pub const FUNCS: usize = 4;
/// The most named types a hierarchy has.
pub const MAX_TYPES: usize = 14;
/// The deepest a named type sits (roots are at depth 1, directly under `Any`).
pub const MAX_DEPTH: usize = 4;
/// The most queries watched at once; watching another one forgets the oldest.
pub const MAX_WATCHED: usize = 4;
/// How many worlds stay pinned: the newest and the ones just before it.
pub const PINNED: usize = 4;

/// The engine, its functions, the global table and an overlay, and the two stacks
/// `[global]` and `[overlay, global]`. Named types are declared by [`Op::Declare`].
pub struct Universe {
    pub engine: Engine,
    pub funcs: Vec<Function>,
    pub tables: Vec<MethodTable>,
    pub stacks: Vec<(TableStack, Vec<usize>)>,
}

impl Universe {
    pub fn new() -> Universe {
        let engine = Engine::new();
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
            funcs,
            tables,
            stacks,
        }
    }
}

impl Default for Universe {
    fn default() -> Self {
        Universe::new()
    }
}

/// A type as operations spell it. `Named(i)` is the `i`th declared named type (`A{i}` if
/// abstract, `C{i}` if concrete); an index past the declared ones wraps around, and with none
/// declared every type is `Any`.
#[derive(Clone, PartialEq, Eq)]
pub enum T {
    Any,
    Named(usize),
    Union(Vec<usize>),
    /// A one-element tuple type (only from [`decode_with_tuples`]).
    Tuple(Box<T>),
    /// A union of any of these (only from [`decode_with_tuples`]).
    Mix(Vec<T>),
}

impl fmt::Debug for T {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            T::Any => write!(f, "Any"),
            T::Named(i) => write!(f, "#{i}"),
            T::Union(ms) => {
                write!(f, "Union{{")?;
                for (k, m) in ms.iter().enumerate() {
                    write!(f, "{}#{m}", if k > 0 { ", " } else { "" })?;
                }
                write!(f, "}}")
            }
            T::Tuple(t) => write!(f, "Tuple{{{t:?}}}"),
            T::Mix(ts) => {
                write!(f, "Union{{")?;
                for (k, t) in ts.iter().enumerate() {
                    write!(f, "{}{t:?}", if k > 0 { ", " } else { "" })?;
                }
                write!(f, "}}")
            }
        }
    }
}

fn resolve(named: &[Ty], t: &T) -> Ty {
    let get = |i: usize| {
        if named.is_empty() {
            Ty::any()
        } else {
            named[i % named.len()].clone()
        }
    };
    match t {
        T::Any => Ty::any(),
        T::Named(i) => get(*i),
        T::Union(ms) => Ty::union(ms.iter().map(|&i| get(i))).unwrap(),
        T::Tuple(t) => Ty::tuple([resolve(named, t)]).unwrap(),
        T::Mix(ts) => Ty::union(ts.iter().map(|t| resolve(named, t))).unwrap(),
    }
}

/// `t` written the other way, if it has another: `Tuple{Union{a, b}}` as
/// `Union{Tuple{a}, Tuple{b}}` and back. The two are type-equal, but do not rank alike against
/// every other signature.
pub fn rewritten(t: &Ty) -> Ty {
    use compiler_caching::TyKind;
    let other = match t.kind() {
        TyKind::Tuple([u]) => match u.kind() {
            TyKind::Union(ms) => Ty::union(ms.iter().map(|m| Ty::tuple([m.clone()]).unwrap())),
            _ => return t.clone(),
        },
        TyKind::Union(ms) => {
            let inner: Option<Vec<Ty>> = ms
                .iter()
                .map(|m| match m.kind() {
                    TyKind::Tuple([e]) => Some(e.clone()),
                    _ => None,
                })
                .collect();
            match inner {
                Some(inner) => Ty::union(inner).and_then(|u| Ty::tuple([u])),
                None => return t.clone(),
            }
        }
        _ => return t.clone(),
    };
    other.unwrap_or_else(|_| t.clone())
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
    /// Declares the next named type under `parent` (a declared abstract type, or `Any`).
    Declare {
        parent: Option<usize>,
        concrete: bool,
    },
    /// Adds a method; it replaces a live method of `f` in `table` with a type-equal signature.
    Add {
        f: usize,
        table: usize,
        sig: Vec<T>,
        value: i64,
        calls: Vec<usize>,
    },
    /// Adds a method with the signature of the `nth` live method (see [`Op::Delete`] for
    /// `watched`), in the same function and table, which it replaces. Calls to functions not
    /// above the method's own are dropped.
    Replace {
        nth: usize,
        watched: Option<usize>,
        value: i64,
        calls: Vec<usize>,
        /// Whether the new method's signature is written the other way (see [`rewritten`]):
        /// type-equal, so still a replacement, but a new run of the lineage that may rank
        /// differently.
        rewrite: bool,
    },
    /// Deletes the `nth` live method; with `watched: Some(k)`, the `nth` of those applicable to
    /// the `k`th watched query (if there are any, else of all).
    Delete {
        nth: usize,
        watched: Option<usize>,
    },
    /// Watches a query: it is dispatched now and after every later mutation, in the current
    /// world and every pinned one, and, with a key, compiled in the current world each time.
    Watch {
        f: usize,
        args: Vec<T>,
        stack: usize,
        key: Option<u8>,
    },
    Dispatch {
        f: usize,
        args: Vec<T>,
        stack: usize,
        back: usize,
    },
    Compile {
        f: usize,
        args: Vec<T>,
        stack: usize,
        key: u8,
        back: usize,
    },
    Reclaim,
}

/// Reads bytes, then zeros once they run out.
struct Bytes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.bytes.get(self.at).copied();
        self.at += 1;
        b
    }
    fn b(&mut self) -> usize {
        self.next().unwrap_or(0) as usize
    }
    /// One of `n` (`n > 0`).
    fn pick(&mut self, n: usize) -> usize {
        self.b() % n
    }
}

/// What the decoder knows of a declared named type.
struct Decl {
    parent: Option<usize>,
    concrete: bool,
    depth: usize,
}

struct Decoder<'a> {
    r: Bytes<'a>,
    /// Whether to write tuple types too (and consume the bytes that choose them).
    tuples: bool,
    decls: Vec<Decl>,
    /// The watched queries' function, arguments and stack, as [`run`] will hold them.
    watched: Vec<(usize, Vec<T>, usize)>,
}

impl Decoder<'_> {
    fn is_ancestor(&self, a: usize, mut b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.decls[b].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
    }
    fn related(&self, a: usize, b: usize) -> bool {
        self.is_ancestor(a, b) || self.is_ancestor(b, a)
    }
    fn root(&self, mut a: usize) -> usize {
        while let Some(p) = self.decls[a].parent {
            a = p;
        }
        a
    }

    /// 2–4 abstract roots; a spine from one root down to the hierarchy's depth (2–4) ending in a
    /// concrete type; then more types under abstract ones, half of them concrete, up to 6–14.
    fn hierarchy(&mut self) -> Vec<Op> {
        let roots = 2 + self.r.pick(3);
        let depth = 2 + self.r.pick(MAX_DEPTH - 1);
        let total = (6 + self.r.pick(MAX_TYPES - 5)).max(roots + depth - 1);
        let spine_root = self.r.pick(roots);
        let mut ops = Vec::new();
        let mut declare = |decls: &mut Vec<Decl>, parent: Option<usize>, concrete: bool| {
            let depth = parent.map_or(1, |p| decls[p].depth + 1);
            decls.push(Decl {
                parent,
                concrete,
                depth,
            });
            ops.push(Op::Declare { parent, concrete });
        };
        for _ in 0..roots {
            declare(&mut self.decls, None, false);
        }
        let mut parent = spine_root;
        for d in 2..=depth {
            declare(&mut self.decls, Some(parent), d == depth);
            parent = self.decls.len() - 1;
        }
        while self.decls.len() < total {
            let parents: Vec<usize> = (0..self.decls.len())
                .filter(|&p| !self.decls[p].concrete && self.decls[p].depth < depth)
                .collect();
            // The later of two picks: later types tend to be deeper.
            let (p1, p2) = (self.r.pick(parents.len()), self.r.pick(parents.len()));
            let concrete = self.r.pick(2) == 0;
            declare(&mut self.decls, Some(parents[p1.max(p2)]), concrete);
        }
        ops
    }

    /// A union of 2–3 pairwise unrelated named types: after the first member, each next one
    /// comes from another root's branch when there is one (else any unrelated type), and
    /// usually of the other kind than the first (abstract with concrete).
    fn union(&mut self) -> T {
        let first = self.r.pick(self.decls.len());
        self.union_with(first)
    }

    fn union_with(&mut self, first: usize) -> T {
        let n = self.decls.len();
        let mut members = vec![first];
        let count = 2 + usize::from(self.r.pick(3) == 0);
        while members.len() < count {
            let unrelated: Vec<usize> = (0..n)
                .filter(|&c| members.iter().all(|&m| !self.related(c, m)))
                .collect();
            let other_root: Vec<usize> = unrelated
                .iter()
                .copied()
                .filter(|&c| members.iter().all(|&m| self.root(c) != self.root(m)))
                .collect();
            let pool = if other_root.is_empty() {
                unrelated
            } else {
                other_root
            };
            if pool.is_empty() {
                break;
            }
            // Often a type some watched query's argument is a subtype of, so that methods
            // meet on two calls at once, as `f(Union{Int, String})` meets `f(Int)` and `f(String)`.
            let pivots: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&c| {
                    self.watched.iter().any(|(_, args, _)| {
                        args.iter()
                            .any(|a| matches!(a, &T::Named(x) if self.is_ancestor(c, x)))
                    })
                })
                .collect();
            let pool = if self.r.pick(2) == 0 && !pivots.is_empty() {
                pivots
            } else {
                pool
            };
            let mixed: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&c| self.decls[c].concrete != self.decls[first].concrete)
                .collect();
            let pool = if self.r.pick(4) != 0 && !mixed.is_empty() {
                mixed
            } else {
                pool
            };
            members.push(pool[self.r.pick(pool.len())]);
        }
        if members.len() == 1 {
            T::Named(first)
        } else {
            T::Union(members)
        }
    }

    /// `Tuple{inner}` (`inner` a named type or a union of them) in one of its writings:
    /// as is, distributed over the union, or in a union with another named type.
    fn tuple_of(&mut self, inner: T) -> T {
        match (self.r.pick(3), inner) {
            (1, T::Union(ms)) => T::Mix(
                ms.into_iter()
                    .map(|m| T::Tuple(Box::new(T::Named(m))))
                    .collect(),
            ),
            (2, inner) => {
                let other = T::Named(self.r.pick(self.decls.len()));
                T::Mix(vec![T::Tuple(Box::new(inner)), other])
            }
            (_, inner) => T::Tuple(Box::new(inner)),
        }
    }

    /// A signature element: `Any`, a named type, or a union (or, with tuples, a tuple of one).
    fn sig_elem(&mut self) -> T {
        if self.tuples && self.r.pick(5) == 0 {
            let inner = if self.r.pick(2) == 0 {
                T::Named(self.r.pick(self.decls.len()))
            } else {
                self.union()
            };
            return self.tuple_of(inner);
        }
        match self.r.pick(10) {
            0 => T::Any,
            1..=4 => T::Named(self.r.pick(self.decls.len())),
            _ => self.union(),
        }
    }

    /// A signature element that covers `arg` (a query's argument), so that the method applies
    /// to the query: `Any`, an ancestor of `arg` (or `arg` itself), or a union of one with
    /// unrelated types. Methods sharing a query are what specificity is about.
    fn covering(&mut self, arg: &T) -> T {
        if let T::Tuple(inner) = arg {
            return match self.covering(inner) {
                T::Any => T::Any,
                c => self.tuple_of(c),
            };
        }
        let &T::Named(a) = arg else {
            return self.sig_elem();
        };
        let mut chain = vec![a];
        while let Some(p) = self.decls[*chain.last().unwrap()].parent {
            chain.push(p);
        }
        match self.r.pick(10) {
            0 => T::Any,
            1..=4 => T::Named(chain[self.r.pick(chain.len())]),
            _ => {
                let first = chain[self.r.pick(chain.len())];
                self.union_with(first)
            }
        }
    }

    /// A query's argument: usually a concrete type (what a call has), else any named type,
    /// a union, or `Any`.
    fn arg(&mut self) -> T {
        let concrete: Vec<usize> = (0..self.decls.len())
            .filter(|&i| self.decls[i].concrete)
            .collect();
        if self.tuples && self.r.pick(5) == 0 {
            let c = concrete[self.r.pick(concrete.len())];
            return T::Tuple(Box::new(T::Named(c)));
        }
        match self.r.pick(10) {
            0..=5 => {
                // The deeper of two concrete types: more methods can apply to it.
                let a = concrete[self.r.pick(concrete.len())];
                let b = concrete[self.r.pick(concrete.len())];
                T::Named(if self.decls[b].depth > self.decls[a].depth {
                    b
                } else {
                    a
                })
            }
            6..=7 => T::Named(self.r.pick(self.decls.len())),
            8 => self.union(),
            _ => T::Any,
        }
    }

    /// A function, skewed towards the callees (`f3` half the time, `f2` a quarter), so that
    /// one function gathers enough methods for their specificity to interact.
    fn func(&mut self) -> usize {
        match self.r.pick(8) {
            0 => 0,
            1 => 1,
            2 | 3 => 2,
            _ => 3,
        }
    }

    fn arity(&mut self) -> usize {
        1 + usize::from(self.r.pick(4) == 0)
    }

    fn calls(&mut self, f: usize) -> Vec<usize> {
        let n = self.r.pick(3);
        (0..n)
            .map(|_| self.r.pick(FUNCS))
            .filter(|&c| c > f)
            .collect()
    }

    /// A query: often one of the watched queries' arguments and stack (so compilations read
    /// the answers that are watched), else fresh ones.
    fn query(&mut self) -> (Vec<T>, usize) {
        if !self.watched.is_empty() && self.r.pick(2) == 0 {
            let (_, args, stack) = self.watched[self.r.pick(self.watched.len())].clone();
            return (args, stack);
        }
        let arity = self.arity();
        let args = (0..arity).map(|_| self.arg()).collect();
        (args, self.r.pick(2))
    }

    /// Which watched query a deletion or replacement aims at: usually one.
    fn target(&mut self) -> Option<usize> {
        let k = self.r.pick(4);
        (k > 0 && !self.watched.is_empty()).then(|| self.r.pick(self.watched.len()))
    }

    fn watch(&mut self) -> Op {
        let f = self.func();
        let arity = self.arity();
        let args: Vec<T> = (0..arity).map(|_| self.arg()).collect();
        let stack = self.r.pick(2);
        let key = match self.r.pick(4) {
            0 | 1 => None,
            k => Some((k - 2) as u8),
        };
        self.watched.push((f, args.clone(), stack));
        if self.watched.len() > MAX_WATCHED {
            self.watched.remove(0);
        }
        Op::Watch {
            f,
            args,
            stack,
            key,
        }
    }

    fn op(&mut self, tag: u8) -> Op {
        // Per 20 tags: 8 additions, 4 deletions, a replacement, a new watched query, 2 one-off
        // dispatches, 3 one-off compilations, a reclamation.
        match tag % 20 {
            0..=7 => {
                // Mostly a method that applies to a watched query, usually of the query's
                // function and in a table its stack reads.
                let (f, table, sig) = if !self.watched.is_empty() && self.r.pick(10) < 7 {
                    let (wf, args, stack) = self.watched[self.r.pick(self.watched.len())].clone();
                    let f = if self.r.pick(4) == 0 { self.func() } else { wf };
                    let table = if stack == 1 { self.r.pick(2) } else { 0 };
                    (f, table, args.iter().map(|a| self.covering(a)).collect())
                } else {
                    let f = self.func();
                    let table = usize::from(self.r.pick(3) == 0);
                    let arity = self.arity();
                    (f, table, (0..arity).map(|_| self.sig_elem()).collect())
                };
                Op::Add {
                    f,
                    table,
                    sig,
                    value: self.r.pick(50) as i64,
                    calls: self.calls(f),
                }
            }
            8..=11 => Op::Delete {
                nth: self.r.b(),
                watched: self.target(),
            },
            12 => Op::Replace {
                nth: self.r.b(),
                watched: self.target(),
                value: self.r.pick(50) as i64,
                calls: self.calls(0),
                rewrite: self.tuples && self.r.pick(2) == 0,
            },
            13 => self.watch(),
            14..=15 => {
                let f = self.func();
                let (args, stack) = self.query();
                Op::Dispatch {
                    f,
                    args,
                    stack,
                    back: self.r.pick(PINNED),
                }
            }
            16..=18 => {
                let f = self.func();
                let (args, stack) = self.query();
                Op::Compile {
                    f,
                    args,
                    stack,
                    key: self.r.pick(2) as u8,
                    back: self.r.pick(3),
                }
            }
            _ => Op::Reclaim,
        }
    }
}

/// The first byte that selects [`decode_fixed`] in [`decode`].
pub const FIXED: u8 = 0xFF;

/// Decodes fuzzer bytes into operations (any bytes decode to something): the leading bytes
/// describe a type hierarchy (a few [`Op::Declare`]s) and the first watched queries, the rest
/// is one operation per tag byte and its operands (missing operands read as zero). Bytes that
/// start with [`FIXED`] are decoded by [`decode_fixed`] instead, and those that start with
/// [`TUPLES`] by [`decode_with_tuples`].
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    match bytes {
        [FIXED, rest @ ..] => decode_fixed(rest),
        [TUPLES, rest @ ..] => decode_with_tuples(rest),
        _ => decode_as(bytes, false),
    }
}

/// The first byte that selects [`decode_with_tuples`] in [`decode`], so that the fuzzer reaches
/// tuple types too.
pub const TUPLES: u8 = 0xFE;

/// Like [`decode`], with tuple types among signatures and arguments, written several type-equal
/// ways (`Tuple{Union{a, b}}`, `Union{Tuple{a}, Tuple{b}}`, `Union{Tuple{a}, c}`), and
/// replacements that rewrite a signature the other way. Type-equal signatures written
/// differently rank differently, which is what the engine's answer ranges must follow.
pub fn decode_with_tuples(bytes: &[u8]) -> Vec<Op> {
    decode_as(bytes, true)
}

fn decode_as(bytes: &[u8], tuples: bool) -> Vec<Op> {
    let mut d = Decoder {
        r: Bytes { bytes, at: 0 },
        tuples,
        decls: Vec::new(),
        watched: Vec::new(),
    };
    let mut ops = d.hierarchy();
    // A few queries watched from the start.
    for _ in 0..2 + d.r.pick(2) {
        let op = d.watch();
        ops.push(op);
    }
    while let Some(tag) = d.r.next() {
        let op = d.op(tag);
        ops.push(op);
    }
    ops
}

/// The decoding of the first version of this model, kept so that the regression inputs found
/// with it keep their meaning (they are stored with a leading [`FIXED`] byte): one fixed
/// hierarchy, `Number > Real > {Int, Float}` and `Str`, with `Union{Int, Str}` and
/// `Union{Float, Str}`; short random histories; no watched queries.
pub fn decode_fixed(bytes: &[u8]) -> Vec<Op> {
    // Number, Real, Int, Float, Str.
    let mut ops = vec![
        Op::Declare {
            parent: None,
            concrete: false,
        },
        Op::Declare {
            parent: Some(0),
            concrete: false,
        },
        Op::Declare {
            parent: Some(1),
            concrete: true,
        },
        Op::Declare {
            parent: Some(1),
            concrete: true,
        },
        Op::Declare {
            parent: None,
            concrete: true,
        },
    ];
    let ty = |i: usize| match i % 8 {
        0 => T::Any,
        6 => T::Union(vec![2, 4]),
        7 => T::Union(vec![3, 4]),
        n => T::Named(n - 1),
    };
    let mut r = Bytes { bytes, at: 0 };
    while let Some(tag) = r.next() {
        let op = match tag % 10 {
            0..=2 => {
                let f = r.pick(FUNCS);
                let arity = 1 + r.pick(2);
                let sig = (0..arity).map(|_| ty(r.b())).collect();
                let value = r.pick(50) as i64;
                let ncalls = r.pick(3);
                let calls = (0..ncalls)
                    .map(|_| r.pick(FUNCS))
                    .filter(|&c| c > f)
                    .collect();
                Op::Add {
                    f,
                    table: r.pick(2),
                    sig,
                    value,
                    calls,
                }
            }
            3 => Op::Delete {
                nth: r.b(),
                watched: None,
            },
            4..=5 => {
                let arity = 1 + r.pick(2);
                Op::Dispatch {
                    f: r.pick(FUNCS),
                    args: (0..arity).map(|_| ty(r.b())).collect(),
                    stack: r.pick(2),
                    back: r.pick(4),
                }
            }
            6..=8 => {
                let arity = 1 + r.pick(2);
                Op::Compile {
                    f: r.pick(FUNCS),
                    args: (0..arity).map(|_| ty(r.b())).collect(),
                    stack: r.pick(2),
                    key: r.pick(2) as u8,
                    back: r.pick(3),
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

impl Answer {
    /// Whether the answer names method `m` (as the winner, the candidate or a rival).
    fn names(&self, m: usize) -> bool {
        match self {
            Answer::Method(w) => *w == m,
            Answer::NoMethod => false,
            Answer::Ambiguous { candidate, rivals } => *candidate == m || rivals.contains(&m),
        }
    }
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

    /// The methods of `f`, for an error report.
    fn describe_methods(&self, f: usize) -> String {
        let mut s = String::new();
        for (i, m) in self.methods.iter().enumerate().filter(|(_, m)| m.f == f) {
            let deleted = m.deleted.map_or(String::new(), |d| d.to_string());
            s += &format!(
                "\n  m{i}: {} in table {}, live [{}, {deleted})",
                m.handle, m.table, m.defined
            );
        }
        s
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
    /// Dispatch answers compared (one-off and watched, in every world).
    pub dispatches: usize,
    /// ... of which in a world older than the newest.
    pub old_world_dispatches: usize,
    /// ... of which were ambiguities (candidate and rivals compared).
    pub ambiguous: usize,
    pub compiles: usize,
    pub validity_checks: usize,
    pub invalid_instances: usize,
    /// Mutations: additions, replacements and deletions.
    pub mutations: usize,
    /// Additions that replaced a live method with a type-equal signature.
    pub replacements: usize,
    /// Watched queries re-dispatched after a mutation or a reclamation.
    pub watched_checks: usize,
    /// Watched answers in the newest world (cached, warm) that a mutation changed.
    pub warm_changes: usize,
    /// ... of which by removing (deleting or replacing) a method the old answer did not name:
    /// the changes a recheck of only the answers naming the method would miss.
    pub unnamed_changes: usize,
}

impl std::ops::AddAssign for Coverage {
    fn add_assign(&mut self, o: Coverage) {
        self.dispatches += o.dispatches;
        self.old_world_dispatches += o.old_world_dispatches;
        self.ambiguous += o.ambiguous;
        self.compiles += o.compiles;
        self.validity_checks += o.validity_checks;
        self.invalid_instances += o.invalid_instances;
        self.mutations += o.mutations;
        self.replacements += o.replacements;
        self.watched_checks += o.watched_checks;
        self.warm_changes += o.warm_changes;
        self.unnamed_changes += o.unnamed_changes;
    }
}

struct Compiled {
    mi: compiler_caching::MethodInstance,
    method: usize,
    args: Vec<Ty>,
    stack: usize,
    key: u8,
    world: u64,
    reads: Vec<(usize, Answer)>,
}

struct Watched {
    f: usize,
    args: Vec<Ty>,
    stack: usize,
    key: Option<u8>,
    /// The answer in the newest world when it was last asked.
    last: Answer,
}

/// The state [`run`] threads through its steps.
struct Driver<'e> {
    u: &'e Universe,
    caches: Vec<CompilerCache<SrcCompiler>>,
    model: Model,
    named: Vec<Ty>,
    /// `"C5 <: A3"` for each named type, for error reports.
    hierarchy: Vec<String>,
    /// Engine method id -> model index.
    ids: HashMap<u64, usize>,
    /// What has been compiled, with what the model says it read.
    compiled: Vec<Compiled>,
    cov: Coverage,
}

impl<'e> Driver<'e> {
    fn lattice(&self) -> &'e compiler_caching::DefaultLattice {
        self.u.engine.lattice()
    }

    fn ty(&self, t: &T) -> Ty {
        resolve(&self.named, t)
    }

    fn tys(&self, ts: &[T]) -> Vec<Ty> {
        ts.iter().map(|t| self.ty(t)).collect()
    }

    /// The `nth` live method, of those applicable to `near` if it is given and there are any.
    fn pick_live(&self, nth: usize, near: Option<&Watched>) -> Option<usize> {
        let m = &self.model.methods;
        let live: Vec<usize> = (0..m.len())
            .filter(|&i| Model::live(&m[i], self.model.world))
            .collect();
        let applicable: Vec<usize> = near.map_or(Vec::new(), |q| {
            let tables = &self.u.stacks[q.stack].1;
            live.iter()
                .copied()
                .filter(|&i| {
                    m[i].f == q.f
                        && tables.contains(&m[i].table)
                        && compiler_caching::sig_subtype(self.lattice(), &q.args, &m[i].sig)
                })
                .collect()
        });
        let pool = if applicable.is_empty() {
            live
        } else {
            applicable
        };
        (!pool.is_empty()).then(|| pool[nth % pool.len()])
    }

    /// Dispatches in `guard`'s world through both and compares the answers.
    fn dispatch(
        &mut self,
        guard: &Guard<'_>,
        f: usize,
        args: &[Ty],
        stack: usize,
    ) -> Result<Answer, String> {
        let w = guard.world().get();
        let (stack_handle, tables) = &self.u.stacks[stack];
        let expected = self.model.dispatch(self.lattice(), f, args, w, tables);
        let by_slice = guard.dispatch_in(*stack_handle, self.u.funcs[f], args);
        // The same call by interned signature gives the same answer (the cache is shared, so
        // this also checks answers cached by one path and found by the other).
        let signature = self.u.engine.signature(args);
        let by_signature = guard.dispatch_signature_in(*stack_handle, self.u.funcs[f], &signature);
        let same = match (&by_slice, &by_signature) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
        if !same {
            return Err(format!(
                "f{f}{args:?} via stack {stack} in world {w}: by slice {by_slice:?}, by signature \
                 {by_signature:?}"
            ));
        }
        let got = match by_slice {
            Ok(mi) => match self.ids.get(&mi.method().id()) {
                Some(&m) => Answer::Method(m),
                None => return Err(format!("unknown method {}", mi.method())),
            },
            Err(Error::NoMethod { .. }) => Answer::NoMethod,
            Err(Error::Ambiguous {
                candidate, rivals, ..
            }) => {
                // Compare by rendering the model's methods the same way.
                let name = |i: &usize| self.model.methods[*i].handle.to_string();
                let want = match &expected {
                    Answer::Ambiguous { candidate, rivals } => {
                        Some((name(candidate), rivals.iter().map(name).collect()))
                    }
                    _ => None,
                };
                if want.as_ref() != Some(&(candidate.clone(), rivals.clone())) {
                    return Err(format!(
                        "f{f}{args:?} via stack {stack} in world {w}: engine says ambiguous, \
                         candidate {candidate} rivals {rivals:?}; model {expected:?} = {want:?}{}",
                        self.model.describe_methods(f)
                    ));
                }
                expected.clone()
            }
            Err(e) => return Err(format!("unexpected error {e}")),
        };
        if got != expected {
            return Err(format!(
                "f{f}{args:?} via stack {stack} in world {w}: engine {got:?}, model {expected:?}{}",
                self.model.describe_methods(f)
            ));
        }
        self.cov.dispatches += 1;
        self.cov.old_world_dispatches += usize::from(w < self.model.world);
        self.cov.ambiguous += usize::from(matches!(expected, Answer::Ambiguous { .. }));
        Ok(expected)
    }

    /// Dispatches and, if that finds a method, compiles in `guard`'s world and compares the
    /// value; remembers the compilation for the validity checks.
    fn compile(
        &mut self,
        guard: &Guard<'_>,
        f: usize,
        args: &[Ty],
        stack: usize,
        key: u8,
    ) -> Result<(), String> {
        let Answer::Method(method) = self.dispatch(guard, f, args, stack)? else {
            return Ok(());
        };
        let w = guard.world().get();
        let (stack_handle, tables) = &self.u.stacks[stack];
        let mi = guard
            .dispatch_in(*stack_handle, self.u.funcs[f], args)
            .unwrap();
        let value = *self.caches[stack]
            .compile(guard, mi, &key)
            .map_err(|e| e.to_string())?;
        let want = self
            .model
            .value(self.lattice(), f, args, w, tables)
            .unwrap();
        if value != want {
            return Err(format!(
                "compiled value of f{f}{args:?} via stack {stack} in world {w}: engine {value}, \
                 model {want}"
            ));
        }
        self.cov.compiles += 1;
        let duplicate = self
            .compiled
            .iter()
            .any(|c| c.world == w && c.stack == stack && c.key == key && c.mi == *mi);
        if !duplicate {
            let mut reads = Vec::new();
            self.model
                .reads(self.lattice(), method, args, w, tables, &mut reads);
            self.compiled.push(Compiled {
                mi: mi.clone(),
                method,
                args: args.to_vec(),
                stack,
                key,
                world: w,
                reads,
            });
        }
        Ok(())
    }

    /// Validity must match the model exactly: valid in the newest world iff nothing the
    /// compilation read answers differently now.
    fn check_validity(&mut self, guard: &Guard<'_>) -> Result<(), String> {
        let now = self.model.world;
        let lattice = self.lattice();
        for c in &self.compiled {
            let tables = &self.u.stacks[c.stack].1;
            // Valid now iff nothing it read answered differently in any world since: a validity
            // range has no holes, so A -> B -> A still closed it at the first change.
            let unchanged = (c.world..=now).all(|w| {
                Model::live(&self.model.methods[c.method], w)
                    && c.reads
                        .iter()
                        .all(|(g, a)| self.model.dispatch(lattice, *g, &c.args, w, tables) == *a)
            });
            // The instance compiled then, if it was published by that compile (a later compile
            // in another world may have been served by an older instance instead).
            let versions = self.caches[c.stack].versions(&c.mi, &c.key);
            let Some(ci) = versions.iter().find(|v| v.compiled_in().get() == c.world) else {
                continue;
            };
            let valid_now = ci.is_valid_in(guard.world());
            self.cov.validity_checks += 1;
            self.cov.invalid_instances += usize::from(!valid_now);
            if valid_now && !unchanged {
                return Err(format!(
                    "{} compiled in world {}: still valid in {now} though what it read changed \
                     (read {:?})",
                    c.mi, c.world, c.reads
                ));
            }
            if !valid_now && unchanged {
                // Answers carry their exact ranges, so a version is never born closed by a newer
                // one (one valid version per world) unless what it read really changed.
                let all: Vec<String> = versions
                    .iter()
                    .map(|v| format!("{} in {}", v.validity(), v.compiled_in()))
                    .collect();
                return Err(format!(
                    "{} compiled in world {}: invalid in {now} ({}) though nothing it read \
                     changed (read {:?}; versions {all:?})",
                    c.mi,
                    c.world,
                    ci.validity(),
                    c.reads
                ));
            }
        }
        self.compiled.retain(|c| c.world + 8 > now);
        Ok(())
    }

    /// Re-asks every watched query in every pinned world (the newest is last), recompiles the
    /// ones with a key in the newest world, and counts the answers `removed` changed.
    fn recheck_watched(
        &mut self,
        watched: &mut [Watched],
        pinned: &[Guard<'_>],
        removed: Option<usize>,
    ) -> Result<(), String> {
        let newest = pinned.last().expect("a pinned world");
        for q in watched.iter_mut() {
            let mut now = Answer::NoMethod;
            for guard in pinned {
                now = self.dispatch(guard, q.f, &q.args, q.stack)?;
            }
            self.cov.watched_checks += 1;
            if now != q.last {
                self.cov.warm_changes += 1;
                if removed.is_some_and(|m| !q.last.names(m)) {
                    self.cov.unnamed_changes += 1;
                }
                q.last = now;
            }
            if let Some(key) = q.key {
                self.compile(newest, q.f, &q.args, q.stack, key)?;
            }
        }
        Ok(())
    }
}

/// Replays `ops` against the engine and the model; returns the first disagreement.
pub fn run(ops: &[Op]) -> Result<Coverage, String> {
    let u = Universe::new();
    let engine = &u.engine;
    let mut d = Driver {
        u: &u,
        caches: u
            .stacks
            .iter()
            .map(|(s, _)| CompilerCache::with_stack(engine, "model", *s, SrcCompiler).unwrap())
            .collect(),
        model: Model {
            methods: Vec::new(),
            world: 1,
        },
        named: Vec::new(),
        hierarchy: Vec::new(),
        ids: HashMap::new(),
        compiled: Vec::new(),
        cov: Coverage::default(),
    };
    // Worlds kept pinned so older worlds can be asked about (the last few).
    let mut pinned: Vec<Guard<'_>> = vec![engine.pin()];
    let mut watched: Vec<Watched> = Vec::new();

    let mut steps = || -> Result<(), String> {
        for (step, op) in ops.iter().enumerate() {
            let ctx = |what: String| format!("step {step} {op:?}: {what}");
            // The model index of a method this step removes (deletes or replaces), if any.
            let mut removed: Option<usize> = None;
            let mut mutated = false;
            match op {
                Op::Declare { parent, concrete } => {
                    let parent_ty = match parent {
                        None => Ty::any(),
                        Some(p) => d
                            .named
                            .get(*p)
                            .cloned()
                            .ok_or_else(|| ctx("no such parent".into()))?,
                    };
                    let name = format!("{}{}", if *concrete { "C" } else { "A" }, d.named.len());
                    let l = engine.lattice();
                    let t = if *concrete {
                        l.declare_concrete(&name, &parent_ty)
                    } else {
                        l.declare_abstract(&name, &parent_ty)
                    };
                    d.named.push(t.map_err(|e| ctx(e.to_string()))?);
                    let parent = parent.map_or("Any".to_string(), |p| d.named[p].to_string());
                    d.hierarchy.push(format!("{name} <: {parent}"));
                }
                Op::Add { .. } | Op::Replace { .. } => {
                    let (f, table, sig, value, calls) = match op {
                        Op::Add {
                            f,
                            table,
                            sig,
                            value,
                            calls,
                        } => (*f, *table, d.tys(sig), *value, calls.clone()),
                        Op::Replace {
                            nth,
                            watched: target,
                            value,
                            calls,
                            rewrite,
                        } => {
                            let Some(i) = d.pick_live(
                                *nth,
                                target.and_then(|k| watched.get(k % watched.len().max(1))),
                            ) else {
                                continue;
                            };
                            let m = &d.model.methods[i];
                            let calls = calls.iter().copied().filter(|&c| c > m.f).collect();
                            let sig = if *rewrite {
                                m.sig.iter().map(rewritten).collect()
                            } else {
                                m.sig.clone()
                            };
                            (m.f, m.table, sig, *value, calls)
                        }
                        _ => unreachable!(),
                    };
                    let src = Src { value, calls };
                    let handle = engine
                        .add_method_to(u.tables[table], u.funcs[f], &sig, src.clone())
                        .map_err(|e| ctx(e.to_string()))?;
                    d.model.world += 1;
                    let w = d.model.world;
                    let lattice = engine.lattice();
                    for (i, m) in d.model.methods.iter_mut().enumerate() {
                        if m.f == f
                            && m.table == table
                            && Model::live(m, w - 1)
                            && compiler_caching::sig_equal(lattice, &m.sig, &sig)
                        {
                            m.deleted = Some(w);
                            removed = Some(i);
                        }
                    }
                    d.cov.replacements += usize::from(removed.is_some());
                    d.ids.insert(handle.id(), d.model.methods.len());
                    d.model.methods.push(MMethod {
                        f,
                        table,
                        sig,
                        src,
                        defined: w,
                        deleted: None,
                        handle,
                    });
                    mutated = true;
                }
                Op::Delete {
                    nth,
                    watched: target,
                } => {
                    let Some(i) = d.pick_live(
                        *nth,
                        target.and_then(|k| watched.get(k % watched.len().max(1))),
                    ) else {
                        continue;
                    };
                    engine
                        .delete_method(&d.model.methods[i].handle)
                        .map_err(|e| ctx(e.to_string()))?;
                    d.model.world += 1;
                    d.model.methods[i].deleted = Some(d.model.world);
                    removed = Some(i);
                    mutated = true;
                }
                Op::Reclaim => {
                    engine.reclaim();
                    // Reclamation must not lose or corrupt a cached answer.
                    d.recheck_watched(&mut watched, &pinned, None)
                        .map_err(ctx)?;
                }
                Op::Watch {
                    f,
                    args,
                    stack,
                    key,
                } => {
                    let args = d.tys(args);
                    let newest = pinned.last().unwrap();
                    let last = d.dispatch(newest, *f, &args, *stack).map_err(ctx)?;
                    if let Some(key) = key {
                        d.compile(newest, *f, &args, *stack, *key).map_err(ctx)?;
                    }
                    watched.push(Watched {
                        f: *f,
                        args,
                        stack: *stack,
                        key: *key,
                        last,
                    });
                    if watched.len() > MAX_WATCHED {
                        watched.remove(0);
                    }
                }
                Op::Dispatch {
                    f,
                    args,
                    stack,
                    back,
                } => {
                    let guard = &pinned[pinned.len() - 1 - back % pinned.len()];
                    let args = d.tys(args);
                    d.dispatch(guard, *f, &args, *stack).map_err(ctx)?;
                }
                Op::Compile {
                    f,
                    args,
                    stack,
                    key,
                    back,
                } => {
                    let guard = &pinned[pinned.len() - 1 - back % pinned.len()];
                    let args = d.tys(args);
                    d.compile(guard, *f, &args, *stack, *key).map_err(ctx)?;
                }
            }
            if mutated {
                d.cov.mutations += 1;
                // Keep the newest world and the few just before it pinned.
                pinned.push(engine.pin());
                if pinned.len() > PINNED {
                    pinned.remove(0);
                }
                d.check_validity(pinned.last().unwrap()).map_err(ctx)?;
                d.recheck_watched(&mut watched, &pinned, removed)
                    .map_err(ctx)?;
            }
        }
        Ok(())
    };
    steps().map_err(|e| format!("{e}\n  types: {}", d.hierarchy.join(", ")))?;
    Ok(d.cov)
}
