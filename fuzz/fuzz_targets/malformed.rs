//! Malformed and hostile input to every public constructor, mutator and lookup: foreign handles
//! (types, functions, methods, tables, stacks, guards), names of every shape and length, types
//! nested past the depth limit and unions and tuples thousands wide. Each call must return a
//! typed error or succeed, never panic or abort, and leave the engine usable.
#![no_main]

use compiler_caching::{CompilerCache, Engine, Ty, TypeDecl, MAX_TYPE_DEPTH};
use libfuzzer_sys::fuzz_target;
use test_support::compilers::Const;

fuzz_target!(|data: &[u8]| {
    let engine = Engine::new();
    let other = Engine::new();
    let foreign_ty = other.lattice().declare_concrete("X", &Ty::any()).unwrap();
    let foreign_f = other.declare_function("f").unwrap();
    let foreign_m = other.add_method(foreign_f, &[Ty::any()], ()).unwrap();
    let foreign_stack = other.global_stack();
    let cache = CompilerCache::new(&engine, "C", Const).unwrap();
    let mut types = vec![Ty::any(), Ty::bottom(), foreign_ty];
    let mut funcs = vec![foreign_f];
    let mut methods = vec![foreign_m];
    let mut tables = vec![engine.global_table(), other.global_table()];
    let mut stacks = vec![engine.global_stack(), foreign_stack];
    for chunk in data.chunks(4) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as usize;
        let name: String = String::from_utf8_lossy(&chunk[1.min(chunk.len())..]).into_owned();
        let pick = |types: &Vec<Ty>, i: usize| types[i % types.len()].clone();
        match b(0) % 16 {
            0 => {
                if let Ok(t) = engine
                    .lattice()
                    .declare_abstract(&name, &pick(&types, b(1)))
                {
                    types.push(t);
                }
            }
            1 => {
                if let Ok(t) = engine
                    .lattice()
                    .declare_concrete(&name, &pick(&types, b(1)))
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
                let sig: Vec<Ty> = (0..b(1) % 3).map(|i| pick(&types, b(2) + i)).collect();
                let table = tables[b(3) % tables.len()];
                if let Ok(m) = engine.add_method_to(table, funcs[b(2) % funcs.len()], &sig, b(3)) {
                    methods.push(m);
                }
            }
            6 => {
                let _ = engine.delete_method(&methods[b(1) % methods.len()]);
            }
            7 => {
                let args: Vec<Ty> = (0..b(1) % 3).map(|i| pick(&types, b(2) + i)).collect();
                let guard = engine.pin();
                let stack = stacks[b(3) % stacks.len()];
                let f = funcs[b(3) % funcs.len()];
                if let Ok(mi) = guard.dispatch_in(stack, f, &args) {
                    // With this engine's guard, and with another engine's.
                    let _ = cache.compile(&guard, mi, &(b(1) as u32));
                    let foreign = other.pin();
                    let _ = cache.compile(&foreign, mi, &0);
                    let _ = cache.compile_instance(&foreign, mi, &0);
                    let _ = cache.lookup(&foreign, mi, &0);
                }
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
                if let Ok(s) = engine.stack(&picked) {
                    stacks.push(s);
                }
            }
            10 => {
                let world = compiler_caching::World::FIRST;
                let _ = engine.pin_world(world);
                let _ = engine.lattice().lookup(&name);
                let _ = engine.function(&name);
                let _ = CompilerCache::new(&engine, &name, Const);
                let _ = CompilerCache::with_stack(&engine, "D", stacks[b(1) % stacks.len()], Const);
            }
            // Deep types: nest past the limit, then use the deepest that was allowed.
            11 => {
                let mut t = pick(&types, b(1));
                let levels = MAX_TYPE_DEPTH as usize + b(2);
                for i in 0..levels {
                    let next = if (i + b(3)) % 3 == 0 {
                        Ty::union([t.clone(), pick(&types, i)])
                    } else {
                        Ty::tuple([t.clone()])
                    };
                    match next {
                        Ok(deeper) => t = deeper,
                        Err(_) => break,
                    }
                }
                types.push(t);
            }
            // Wide types: unions and tuples of thousands of members.
            12 => {
                let width = 1 + b(1) * 16;
                let members: Vec<Ty> = (0..width).map(|i| pick(&types, b(2) + i)).collect();
                if let Ok(u) = Ty::union(members.clone()) {
                    types.push(u);
                }
                if let Ok(t) = Ty::tuple(members) {
                    types.push(t);
                }
            }
            13 => {
                let (a, c) = (pick(&types, b(1)), pick(&types, b(2)));
                let _ = (
                    a.is_subtype(&c),
                    a.is_disjoint(&c),
                    a.is_equal(&c),
                    a.to_string(),
                );
            }
            14 => {
                let _ = engine.method_instance(
                    funcs[b(1) % funcs.len()],
                    &[pick(&types, b(2))],
                    engine.current_world(),
                    stacks[b(3) % stacks.len()],
                );
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
