//! Throwaway compilers whose phases cost next to nothing (or a chosen amount), so that what the
//! benchmarks and the perf harness measure is the engine; and one generic in its owner key, so
//! that what a test exercises is the key.

use std::fmt::Debug;
use std::hash::Hash;
use std::marker::PhantomData;

use compiler_caching::{Callee, Compiler, Function, InferCx, PhaseCx};

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

/// Links every instance to one number, with owner keys of type `K`: for tests whose subject is
/// the key (a `Hash` or `Eq` that misbehaves), not the compiler. `infer` does nothing but run
/// the hook given to [`Linking::on_infer`], if any (to arm a fault at that point of a compile).
pub struct Linking<K> {
    linked: u32,
    on_infer: fn(),
    key: PhantomData<fn() -> K>,
}

impl<K> Linking<K> {
    /// Links every instance to `linked`.
    pub fn to(linked: u32) -> Linking<K> {
        Linking {
            linked,
            on_infer: || {},
            key: PhantomData,
        }
    }

    /// Runs `hook` at the start of every `infer`.
    pub fn on_infer(self, hook: fn()) -> Linking<K> {
        Linking {
            on_infer: hook,
            ..self
        }
    }
}

impl<K: Hash + Eq + Clone + Debug + Send + Sync + 'static> Compiler for Linking<K> {
    type Key = K;
    type Inferred = ();
    type Artifact = ();
    type Linked = u32;
    type Error = String;
    fn infer(&self, _: &mut InferCx<'_, Self>) -> Result<(), String> {
        (self.on_infer)();
        Ok(())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<(), String> {
        Ok(())
    }
    fn link(&self, _: &PhaseCx<'_, Self>, _: &()) -> Result<u32, String> {
        Ok(self.linked)
    }
}

/// Compiles every instance to its id; a method whose source is a [`Function`] also records the
/// dispatch of that function with the same argument types (a dependency to invalidate).
pub struct Ids;

impl Compiler for Ids {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;
    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        if let Some(dep) = cx.instance().method().source::<Function>().copied() {
            cx.dispatch(dep, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
        }
        Ok(cx.instance().id())
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

/// The source [`Sum`] compiles: a constant, an amount of simulated work, and the functions the
/// method calls with its own argument types.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// What the method adds to its callees' values.
    pub value: u64,
    /// Units of [`simulated_work`] its `infer` does.
    pub work: u32,
    /// The functions it calls.
    pub calls: Vec<Function>,
}

impl Program {
    /// A method that calls nothing.
    pub fn constant(value: u64) -> Program {
        Program {
            value,
            ..Program::default()
        }
    }

    /// A method with value 1 that calls `calls`.
    pub fn calling(calls: Vec<Function>) -> Program {
        Program {
            value: 1,
            work: 0,
            calls,
        }
    }
}

/// Burns `units` rounds of arithmetic the optimizer cannot remove: a stand-in for compile time.
pub fn simulated_work(units: u32) -> u64 {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..units {
        x = std::hint::black_box(x.rotate_left(5) ^ 0xA5A5_A5A5);
    }
    x
}

/// Compiles a [`Program`] to its value plus its callees' (wrapping), dispatching and compiling
/// each callee through the context so every call is a recorded dependency.
pub struct Sum;

impl Compiler for Sum {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        let program = cx
            .instance()
            .method()
            .source::<Program>()
            .cloned()
            .ok_or("not a Program")?;
        std::hint::black_box(simulated_work(program.work));
        let mut total = program.value;
        for f in program.calls {
            let mi = cx
                .dispatch(f, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
            if let Callee::Ready(ci) = cx.compile(&mi).map_err(|e| e.to_string())? {
                total = total.wrapping_add(ci.linked().copied().unwrap_or(0));
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
