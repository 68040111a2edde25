//! A small foreign-IR compiler used by the integration tests: a method's source is an [`Ir`]
//! (a constant plus calls); the compiled value of a method is its constant plus the values of its
//! callees, so a stale result is visible in the number it returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compiler_caching::{Callee, Compiler, Engine, Error, InferCx, Phase, PhaseCx, Ty};

/// A call in the IR: function name and argument type names.
#[derive(Clone, Debug)]
pub struct Call {
    pub function: String,
    pub args: Vec<Ty>,
}

/// The foreign IR: `value + sum(callees)`.
#[derive(Clone, Debug, Default)]
pub struct Ir {
    pub value: i64,
    pub calls: Vec<Call>,
    /// Callees recorded with `depend_on` only (not compiled): their value is not used.
    pub opaque_deps: Vec<Call>,
}

impl Ir {
    pub fn constant(value: i64) -> Ir {
        Ir {
            value,
            ..Ir::default()
        }
    }

    pub fn calling(value: i64, calls: &[(&str, &[Ty])]) -> Ir {
        Ir {
            value,
            calls: calls
                .iter()
                .map(|(f, args)| Call {
                    function: f.to_string(),
                    args: args.to_vec(),
                })
                .collect(),
            opaque_deps: Vec::new(),
        }
    }
}

/// How a phase should misbehave for one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Error,
    Panic,
}

#[derive(Default)]
pub struct Log {
    /// Phase runs per (function name, phase).
    pub runs: Mutex<HashMap<(String, Phase), usize>>,
    /// Faults to inject, consumed when they fire.
    pub faults: Mutex<HashMap<(String, Phase), Fault>>,
    /// How long infer sleeps (to widen race windows in concurrency tests).
    pub infer_delay: Mutex<Option<Duration>>,
    /// A staged signal for fault tests: an injected fault fires only once the engine has counted
    /// this many callers waiting on another thread's compilation.
    pub fault_after_waits: Mutex<Option<u64>>,
    pub infers: AtomicUsize,
    /// Callees the engine reported in progress (recursion): only a cyclic call graph may see any.
    pub in_progress: AtomicUsize,
}

impl Log {
    pub fn runs(&self, function: &str, phase: Phase) -> usize {
        self.runs
            .lock()
            .unwrap()
            .get(&(function.to_string(), phase))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self, phase: Phase) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, p), _)| *p == phase)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn inject(&self, function: &str, phase: Phase, fault: Fault) {
        self.faults
            .lock()
            .unwrap()
            .insert((function.to_string(), phase), fault);
    }

    fn enter(&self, engine: &Engine, function: &str, phase: Phase) -> Result<(), String> {
        let armed = self
            .faults
            .lock()
            .unwrap()
            .contains_key(&(function.to_string(), phase));
        let gate = *self.fault_after_waits.lock().unwrap();
        if let (true, Some(waits)) = (armed, gate) {
            while engine.stats().compile_waits < waits {
                std::thread::yield_now();
            }
        }
        let fault = self
            .faults
            .lock()
            .unwrap()
            .remove(&(function.to_string(), phase));
        match fault {
            Some(Fault::Error) => return Err(format!("injected {phase} error in {function}")),
            Some(Fault::Panic) => panic!("injected {phase} panic in {function}"),
            None => {}
        }
        *self
            .runs
            .lock()
            .unwrap()
            .entry((function.to_string(), phase))
            .or_insert(0) += 1;
        Ok(())
    }
}

/// The compiler. `Key` is an optimization level.
#[derive(Clone, Default)]
pub struct Foreign {
    pub log: Arc<Log>,
}

fn name_of(cx_engine: &Engine, f: compiler_caching::Function) -> String {
    cx_engine.function_name(f).unwrap().to_string()
}

impl Compiler for Foreign {
    type Key = u32;
    type Inferred = i64;
    type Artifact = Vec<u8>;
    type Linked = i64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, String> {
        let name = name_of(cx.engine(), cx.instance().method().function());
        self.log.enter(cx.engine(), &name, Phase::Infer)?;
        self.log.infers.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = *self.log.infer_delay.lock().unwrap() {
            std::thread::sleep(d);
        }
        let ir = cx
            .instance()
            .method()
            .source::<Ir>()
            .cloned()
            .ok_or("source is not Ir")?;
        let mut total = ir.value;
        for call in &ir.calls {
            let f = cx
                .engine()
                .function(&call.function)
                .map_err(|e| e.to_string())?;
            let callee = match cx.dispatch(f, &call.args) {
                Ok(mi) => mi,
                // A call with no method, or an ambiguous one, compiles to a runtime error that
                // contributes nothing; the dispatch edge is recorded, so a mutation that changes
                // the answer later invalidates us.
                Err(Error::NoMethod { .. } | Error::Ambiguous { .. }) => continue,
                Err(e) => return Err(e.to_string()),
            };
            match cx.compile(&callee).map_err(|e| e.to_string())? {
                Callee::Ready(ci) => total += ci.linked().copied().unwrap_or(0),
                Callee::InProgress => {
                    self.log.in_progress.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for call in &ir.opaque_deps {
            let f = cx
                .engine()
                .function(&call.function)
                .map_err(|e| e.to_string())?;
            let mi = cx.dispatch(f, &call.args).map_err(|e| e.to_string())?;
            cx.depend_on(&mi).map_err(|e| e.to_string())?;
        }
        Ok(total)
    }

    fn codegen(&self, cx: &PhaseCx<'_, Self>, inferred: &i64) -> Result<Vec<u8>, String> {
        let name = name_of(cx.engine(), cx.instance().method().function());
        self.log.enter(cx.engine(), &name, Phase::Codegen)?;
        Ok(inferred.to_le_bytes().to_vec())
    }

    fn link(&self, cx: &PhaseCx<'_, Self>, artifact: &Vec<u8>) -> Result<i64, String> {
        let name = name_of(cx.engine(), cx.instance().method().function());
        self.log.enter(cx.engine(), &name, Phase::Link)?;
        let bytes: [u8; 8] = artifact.as_slice().try_into().map_err(|_| "bad artifact")?;
        Ok(i64::from_le_bytes(bytes))
    }
}
