//! A tour of the engine: define methods, dispatch, compile lazily, hit the cache, redefine a
//! callee and watch exactly its dependents recompile (with the reason), use an overlay table,
//! and run several threads against one writer.
//!
//! Run it with `cargo run --release --example demo`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use compiler_caching::{Callee, Compiler, CompilerCache, Engine, Error, InferCx, PhaseCx, Ty};

/// A tiny foreign IR: a method returns its constant plus what each callee returns.
#[derive(Clone, Debug)]
struct Ir {
    constant: i64,
    calls: Vec<&'static str>,
}

fn ir(constant: i64, calls: &[&'static str]) -> Ir {
    Ir {
        constant,
        calls: calls.to_vec(),
    }
}

/// The demo compiler. "Codegen" folds the program to a constant and serializes it; "linking"
/// deserializes it into the session-local value callers receive. It logs what it infers.
#[derive(Default)]
struct Folder {
    inferred: Mutex<Vec<String>>,
}

impl Folder {
    /// What was inferred since the last call, as a sorted list.
    fn drain(&self) -> String {
        let mut log = std::mem::take(&mut *self.inferred.lock().unwrap());
        log.sort();
        if log.is_empty() {
            "nothing".into()
        } else {
            log.join(", ")
        }
    }
}

impl Compiler for Folder {
    type Key = &'static str; // a target: "cpu" or "gpu"
    type Inferred = i64;
    type Artifact = [u8; 8];
    type Linked = i64;
    type Error = Error;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<i64, Error> {
        let ir = cx
            .instance()
            .method()
            .source::<Ir>()
            .expect("demo methods hold Ir")
            .clone();
        let entry = format!("{} [{}]", cx.instance(), cx.key());
        self.inferred.lock().unwrap().push(entry);
        let args = cx.instance().argtypes();
        let mut total = ir.constant;
        for callee in ir.calls {
            let f = cx.engine().function(callee)?;
            let mi = cx.dispatch(f, args)?; // records the dispatch edge
            if let Ok(Callee::Ready(ci)) = cx.compile(&mi) {
                total += ci.linked().copied().unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn codegen(&self, _: &PhaseCx<'_, Self>, folded: &i64) -> Result<[u8; 8], Error> {
        Ok(folded.to_le_bytes())
    }

    fn link(&self, _: &PhaseCx<'_, Self>, bytes: &[u8; 8]) -> Result<i64, Error> {
        Ok(i64::from_le_bytes(*bytes))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::new();
    let types = engine.lattice();
    let number = types.declare_abstract("Number", &Ty::any())?;
    let real = types.declare_abstract("Real", &number)?;
    let int = types.declare_concrete("Int64", &real)?;
    let float = types.declare_concrete("Float64", &real)?;

    let area = engine.declare_function("area")?;
    let scale = engine.declare_function("scale")?;
    let unit = engine.declare_function("unit")?;
    engine.add_method(area, &[real.clone()], ir(1000, &["scale"]))?;
    engine.add_method(scale, &[real.clone()], ir(100, &["unit"]))?;
    engine.add_method(scale, &[int.clone()], ir(200, &["unit"]))?;
    engine.add_method(unit, &[Ty::any()], ir(1, &[]))?;
    let cache = CompilerCache::new(&engine, "Folder", Folder::default()).unwrap();
    let compiled = || cache.compiler().drain();

    let call = |f, ty: &Ty, target: &'static str| -> Result<i64, Box<dyn std::error::Error>> {
        let guard = engine.pin();
        let mi = guard.dispatch(f, std::slice::from_ref(ty))?;
        Ok(*cache.compile(&guard, mi, &target)?)
    };

    println!("1. First calls compile (world {}):", engine.current_world());
    println!("  area(Int64)   on cpu = {}", call(area, &int, "cpu")?);
    println!("  area(Float64) on cpu = {}", call(area, &float, "cpu")?);
    println!("  compiled: {}", compiled());
    println!("\n2. Repeated calls hit the cache (no phase runs):");
    println!("  area(Int64)   on cpu = {}", call(area, &int, "cpu")?);
    println!("  compiled: {}", compiled());
    println!("\n3. Another target is another cache partition:");
    println!("  area(Int64)   on gpu = {}", call(area, &int, "gpu")?);
    println!("  compiled: {}", compiled());

    println!("\n4. Redefine unit(Any): exactly what reached it is invalidated.");
    let old = {
        let guard = engine.pin();
        let mi = guard.dispatch(area, std::slice::from_ref(&int))?.clone();
        cache.versions(&mi, &"cpu")
    };
    engine.add_method(unit, &[Ty::any()], ir(2, &[]))?;
    if let Some(why) = old.last().and_then(|ci| ci.invalidation()) {
        println!("  why area(Int64) is stale: {why}");
    }
    println!("  area(Int64)   on cpu = {}", call(area, &int, "cpu")?);
    println!("  compiled: {}", compiled());

    println!("\n5. A method for unrelated types invalidates nothing:");
    let before = engine.stats().invalidated_code_instances;
    let string = types.declare_concrete("String", &Ty::any())?;
    engine.add_method(scale, &[string], ir(5, &[]))?;
    println!(
        "  invalidated {} code instances; area(Int64) = {}",
        engine.stats().invalidated_code_instances - before,
        call(area, &int, "cpu")?
    );
    println!("  compiled: {}", compiled());

    println!("\n6. An overlay table changes dispatch only for callers compiled through it:");
    let debug = engine.new_overlay("debug")?;
    let stack = engine.stack(&[debug, engine.global_table()])?;
    let debug_cache =
        CompilerCache::with_stack(&engine, "Debug", stack, Folder::default()).unwrap();
    engine.add_method_to(debug, unit, &[int.clone()], ir(7, &[]))?;
    {
        let guard = engine.pin();
        let mi = guard.dispatch_in(stack, area, std::slice::from_ref(&int))?;
        println!(
            "  through [debug, global]: area(Int64) = {}",
            debug_cache.compile(&guard, mi, &"cpu")?
        );
    }
    println!(
        "  through [global]:        area(Int64) = {}",
        call(area, &int, "cpu")?
    );
    println!(
        "  compiled: {} (debug cache), {} (global cache)",
        debug_cache.compiler().drain(),
        compiled()
    );

    println!("\n7. Four threads call while one redefines scale(Int64) 200 times:");
    let stop = AtomicBool::new(false);
    let calls = thread::scope(|s| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let guard = engine.pin();
                        let mi = guard
                            .dispatch(area, std::slice::from_ref(&int))
                            .expect("dispatch");
                        cache.compile(&guard, mi, &"cpu").expect("compile");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for i in 0..200 {
            engine
                .add_method(scale, &[int.clone()], ir(300 + i, &["unit"]))
                .expect("define");
            thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Relaxed);
        readers
            .into_iter()
            .map(|r| r.join().expect("reader"))
            .sum::<u64>()
    });
    let recompiles = cache.compiler().drain().matches("area").count();
    println!(
        "  {calls} calls; area(Int64) recompiled {recompiles} times; now {}",
        call(area, &int, "cpu")?
    );

    let stats = engine.stats();
    println!("\nCounters: {stats:#?}");
    println!("Live entries: {:?}", engine.census());
    Ok(())
}
