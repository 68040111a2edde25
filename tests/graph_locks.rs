//! Lock order between the dependency graph's node table and a dependency's backedge set.
//!
//! A registration that compacts a long backedge list checks each entry for a dead dependent,
//! which reads the node table, while it holds the backedge lock. A redefinition holds a read of
//! the table and then takes that backedge lock to seed its walk. A thread growing the table (any
//! compilation that needs a new node) queues a write between the two, and std's lock makes the
//! compaction's read wait behind it: a cycle. Compactions now read the table only if it is free at
//! once. Against the old code, the 12-round version of this test hung in 2 of 2 release runs.

use compiler_caching::{Compiler, CompilerCache, Engine, Function, InferCx, PhaseCx, Ty};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

/// A caller's source: its index among the callers and the function it calls.
struct Caller {
    index: usize,
    callee: Function,
}

/// Dispatches the callee in `infer`, and signals when the caller with index `signal_at` infers.
struct Signals {
    signal_at: usize,
    tx: Mutex<mpsc::Sender<()>>,
}

impl Compiler for Signals {
    type Key = u32;
    type Inferred = u64;
    type Artifact = u64;
    type Linked = u64;
    type Error = String;

    fn infer(&self, cx: &mut InferCx<'_, Self>) -> Result<u64, String> {
        if let Some(caller) = cx.instance().method().source::<Caller>() {
            if caller.index == self.signal_at {
                let _ = self.tx.lock().unwrap().send(());
            }
            let callee = caller.callee;
            cx.dispatch(callee, cx.instance().argtypes())
                .map_err(|e| e.to_string())?;
        }
        Ok(1)
    }
    fn codegen(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
    fn link(&self, _: &PhaseCx<'_, Self>, v: &u64) -> Result<u64, String> {
        Ok(*v)
    }
}

#[test]
fn a_compaction_never_waits_for_the_node_table_under_a_backedge_lock() {
    // The registration at 2^16 compacts the 2^16 entries before it.
    const CALLERS: usize = 70_000;
    const SIGNAL_AT: usize = 1 << 16;
    const ROUNDS: u32 = 4;
    let (finished, watchdog) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        // A hang cannot fail a test by itself: end the run loudly instead.
        if let Err(mpsc::RecvTimeoutError::Timeout) =
            watchdog.recv_timeout(Duration::from_secs(600))
        {
            eprintln!("a compaction deadlocked against a redefinition and a growing node table");
            std::process::abort();
        }
    });
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let callee = engine.declare_function("callee").unwrap();
    engine.add_method(callee, &[int.clone()], 0u64).unwrap();
    let callers: Vec<Function> = (0..CALLERS)
        .map(|i| engine.declare_function(&format!("caller{i}")).unwrap())
        .collect();
    for (index, &f) in callers.iter().enumerate() {
        engine
            .add_method(f, &[int.clone()], Caller { index, callee })
            .unwrap();
    }
    let fresh = engine.declare_function("fresh").unwrap();
    engine.add_method(fresh, &[int.clone()], 7u64).unwrap();
    let (tx, signals) = mpsc::channel();
    let compiler = Signals {
        signal_at: SIGNAL_AT,
        tx: Mutex::new(tx),
    };
    let cache = CompilerCache::new(&engine, "locks", compiler).unwrap();
    let stop = AtomicBool::new(false);
    for round in 0..ROUNDS {
        let invalidated = engine.stats().invalidated_code_instances;
        std::thread::scope(|s| {
            // Grows the node table: a new key, so a new code instance, every time.
            s.spawn(|| {
                let mut key = round * 10_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let guard = engine.pin();
                    let mi = guard.dispatch(fresh, &[int.clone()]).unwrap();
                    cache.compile(&guard, mi, &key).unwrap();
                    key += 1;
                }
            });
            // Registers every caller on the callee's dispatch answer.
            let registering = s.spawn(|| {
                let guard = engine.pin();
                for &f in &callers {
                    let mi = guard.dispatch(f, &[int.clone()]).unwrap();
                    cache.compile(&guard, mi, &0).unwrap();
                }
            });
            signals.recv().unwrap();
            // Seeds its walk from the answer the registrations are compacting.
            engine
                .add_method(callee, &[int.clone()], u64::from(round) + 1)
                .unwrap();
            registering.join().unwrap();
            stop.store(true, Ordering::Relaxed);
        });
        stop.store(false, Ordering::Relaxed);
        assert!(
            engine.stats().invalidated_code_instances > invalidated,
            "round {round}: the redefinition invalidated the callers compiled before it"
        );
        engine.reclaim();
    }
    finished.send(()).unwrap();
}
