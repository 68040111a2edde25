//! Malformed input to every public constructor and mutator: each must return a typed error or
//! succeed, never panic, and leave the engine usable.
#![no_main]

use compiler_caching::{Engine, Ty, TypeDecl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new();
    let other = Engine::new();
    let foreign_ty = other.lattice().declare_concrete("X", &Ty::any()).unwrap();
    let foreign_f = other.declare_function("f").unwrap();
    let foreign_m = other.add_method(foreign_f, &[Ty::any()], ()).unwrap();
    let mut types = vec![Ty::any(), Ty::bottom(), foreign_ty];
    let mut funcs = vec![foreign_f];
    let mut methods = vec![foreign_m];
    let mut tables = vec![engine.global_table(), other.global_table()];
    for chunk in data.chunks(4) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as usize;
        let name: String = String::from_utf8_lossy(&chunk[1.min(chunk.len())..]).into_owned();
        match b(0) % 12 {
            0 => {
                if let Ok(t) = engine
                    .lattice()
                    .declare_abstract(&name, &types[b(1) % types.len()])
                {
                    types.push(t);
                }
            }
            1 => {
                if let Ok(t) = engine
                    .lattice()
                    .declare_concrete(&name, &types[b(1) % types.len()])
                {
                    types.push(t);
                }
            }
            2 => {
                let decls: Vec<TypeDecl> = (0..b(1) % 5)
                    .map(|i| {
                        TypeDecl::abstract_type(
                            format!("B{}", (b(2) + i) % 4),
                            format!("B{}", (b(3) + i * 3) % 5),
                        )
                    })
                    .collect();
                if let Ok(ts) = engine.lattice().declare_all(&decls) {
                    types.extend(ts);
                }
            }
            3 => {
                let f = if b(1) % 2 == 0 {
                    engine.declare_function(&name)
                } else {
                    engine.declare_function_with_arity(&name, b(2) % 3)
                };
                if let Ok(f) = f {
                    funcs.push(f);
                }
            }
            4 | 5 => {
                let sig: Vec<Ty> = (0..b(1) % 3)
                    .map(|i| types[(b(2) + i) % types.len()].clone())
                    .collect();
                let table = tables[b(3) % tables.len()];
                if let Ok(m) = engine.add_method_to(table, funcs[b(2) % funcs.len()], &sig, b(3)) {
                    methods.push(m);
                }
            }
            6 => {
                let _ = engine.delete_method(&methods[b(1) % methods.len()]);
            }
            7 => {
                let args: Vec<Ty> = (0..b(1) % 3)
                    .map(|i| types[(b(2) + i) % types.len()].clone())
                    .collect();
                let guard = engine.pin();
                let _ = guard.dispatch(funcs[b(3) % funcs.len()], &args);
            }
            8 => {
                if let Ok(t) = engine.new_overlay(&name) {
                    tables.push(t);
                }
            }
            9 => {
                let picked: Vec<_> = (0..b(1) % 3)
                    .map(|i| tables[(b(2) + i) % tables.len()])
                    .collect();
                let _ = engine.stack(&picked);
            }
            10 => {
                let world = compiler_caching::World::FIRST;
                let _ = engine.pin_world(world);
                let _ = engine.lattice().lookup(&name);
                let _ = engine.function(&name);
            }
            _ => {
                engine.reclaim();
            }
        }
    }
    // The engine still works.
    let f = engine.declare_function("__check__").unwrap();
    engine.add_method(f, &[Ty::any()], ()).unwrap();
    assert!(engine.pin().dispatch(f, &[Ty::any()]).is_ok());
});
