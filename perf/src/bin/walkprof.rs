use compiler_caching::{CompilerCache, Engine, Function, Ty};
use test_support::compilers::{Program, Sum};
fn main() {
    let shape = std::env::args().nth(1).unwrap_or("tree".into());
    let n = 100_000;
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let funcs: Vec<Function> = (0..n)
        .map(|i| engine.declare_function(&format!("f{i}")).unwrap())
        .collect();
    for (i, &f) in funcs.iter().enumerate() {
        let calls: Vec<Function> = if i == 0 {
            vec![]
        } else if shape == "tree" {
            vec![funcs[(i - 1) / 2]]
        } else if shape == "chain" {
            vec![funcs[i - 1]]
        } else {
            (i.saturating_sub(4)..i).rev().map(|j| funcs[j]).collect()
        };
        engine
            .add_method(f, &[int.clone()], Program::calling(calls))
            .unwrap();
    }
    let cache = CompilerCache::new(&engine, "bench", Sum).unwrap();
    engine.set_auto_reclaim(false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut total = std::time::Duration::ZERO;
    for _round in 0..5 {
        {
            let g = engine.pin();
            for &f in &funcs {
                let mi = g.dispatch(f, &[int.clone()]).unwrap();
                cache.compile(&g, mi, &0).unwrap();
            }
        }
        let t = std::time::Instant::now();
        pool.install(|| {
            engine
                .add_method(funcs[0], &[int.clone()], Program::calling(vec![]))
                .unwrap()
        });
        total += t.elapsed();
        engine.reclaim();
    }
    eprintln!(
        "{shape}: {:.2} M/s",
        5.0 * n as f64 / total.as_secs_f64() / 1e6
    );
}
