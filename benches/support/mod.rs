//! Pieces the benchmarks share. Also compiled into `perf` (by `#[path]`), so that the
//! instruction counts and the throughput harness measure exactly what the criterion benches do.
#![allow(dead_code)] // each user takes what it needs

use std::sync::atomic::{AtomicUsize, Ordering};

use compiler_caching::{Compiler, CompilerCache, Engine, Function, InferCx, PhaseCx, Ty};

/// Compiles every instance to its id: phases cost next to nothing, so what is measured is the
/// engine.
pub struct Const;

impl Compiler for Const {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;
    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        Ok(cx.instance().id())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

/// The hit-path setup: `f` has methods for `(Real, Any)` and `(Int64, Any)`, and `args` is
/// `(Int64, Float64)`, so dispatch has to choose by specificity. Nothing is compiled yet.
pub struct HitSetup {
    pub engine: Engine,
    pub f: Function,
    pub args: [Ty; 2],
}

impl HitSetup {
    pub fn new() -> Self {
        let engine = Engine::new();
        let real = engine
            .lattice()
            .declare_abstract("Real", &Ty::any())
            .unwrap();
        let int = engine.lattice().declare_concrete("Int64", &real).unwrap();
        let float = engine.lattice().declare_concrete("Float64", &real).unwrap();
        let f = engine.declare_function("f").unwrap();
        engine.add_method(f, &[real, Ty::any()], ()).unwrap();
        engine.add_method(f, &[int.clone(), Ty::any()], ()).unwrap();
        HitSetup {
            engine,
            f,
            args: [int, float],
        }
    }

    /// A cache of [`Const`] on this engine.
    pub fn cache(&self, tag: &str) -> CompilerCache<Const> {
        CompilerCache::new(&self.engine, tag, Const)
    }
}

/// A barrier that spins, yielding, instead of sleeping: a futex wake-up takes tens of
/// microseconds on a small VM, more than the rounds it would separate.
pub struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub fn new(threads: usize) -> Self {
        SpinBarrier {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                std::thread::yield_now();
            }
        }
    }
}
