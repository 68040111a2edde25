//! The JIT demo's observable behaviour: results before and after redefinitions, exactly which
//! method instances recompile, overlays, and clear errors with positions for bad scripts.

use std::process::Command;

use jit::syntax::Pos;
use jit::{Session, Value};

fn run(src: &str) -> Vec<String> {
    let session = Session::new().unwrap();
    let mut out = Vec::new();
    session.run(src, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_tour_compiles_hits_invalidates_exactly_and_overlays() {
    let lines = run(include_str!("../scripts/tour.jl"));
    let expect = [
        "area(2) = 6.0    [compiled: area(Int64), scale(Int64)]",
        "area(2.0) = 6.0    [compiled: area(Float64), scale(Float64)]",
        "describe(3) = 1    [compiled: describe(Int64)]",
        "describe(true) = 2    [compiled: describe(Bool)]",
        "describe(2.5) = 0    [compiled: describe(Float64)]",
        "area(2) = 6.0    [compiled: nothing]",
        "fib(25) = 75025    [compiled: fib(Int64)]",
        "even(10) = true    [compiled: even(Int64), odd(Int64)]",
        // A more specific scale(Int64): only area(Int64) (and the new scale) recompile.
        "area(2) = 40.0    [compiled: area(Int64), scale(Int64)]",
        "area(2.0) = 6.0    [compiled: nothing]",
        "area(2) = 400.0    [compiled: area(Int64), scale(Int64)]",
        "area(2.0) = 6.0    [compiled: nothing]",
        "area(2) = 400.0    [compiled: nothing]",
        "area(2) @debug = -4.0    [compiled: area(Int64), scale(Int64)]",
        "area(2) = 400.0    [compiled: nothing]",
    ];
    let results: Vec<&String> = lines.iter().filter(|l| !l.starts_with("  ")).collect();
    assert_eq!(results, expect.iter().collect::<Vec<_>>());
    let defs: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("  ") && l.contains("scale("))
        .collect();
    assert_eq!(defs.len(), 4, "{defs:#?}");
    // New functions defined after the first call invalidate nothing.
    for f in ["fib", "even", "odd"] {
        assert!(
            lines.contains(&format!("  defined {f}(Int64); invalidated: nothing")),
            "{lines:#?}"
        );
    }
    assert!(defs[0].starts_with("  defined scale(Int64); invalidated: area(Int64) (world 11: method scale(Int64) added to table global; dispatch scale(Int64) via [global] changed -> area(Int64)"), "{}", defs[0]);
    assert!(defs[1].starts_with("  redefined scale(Int64); invalidated: area(Int64) (world 12: method scale(Int64) replaced"), "{}", defs[1]);
    assert_eq!(defs[2], "  defined scale(Bool); invalidated: nothing");
    assert_eq!(
        defs[3],
        "  defined scale(Int64) in overlay `debug`; invalidated: nothing"
    );
}

#[test]
fn readers_on_many_threads_see_each_redefinition() {
    let session = Session::new().unwrap();
    session
        .run(
            "fn k(x: Int64) -> Int64 = 0\nfn f(x: Int64) -> Int64 = x + k(x)\n",
            &mut std::io::sink(),
        )
        .unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut last = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Value::Int(v) = session
                        .call(None, "f", &[Value::Int(1)], Pos::default())
                        .unwrap()
                    else {
                        panic!("f returns Int64")
                    };
                    // k is only ever redefined to larger constants, and worlds never go back.
                    assert!(v >= last, "went back from {last} to {v}");
                    last = v;
                }
            });
        }
        for i in 1..=50 {
            session
                .run(
                    &format!("fn k(x: Int64) -> Int64 = {i}"),
                    &mut std::io::sink(),
                )
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        session.call(None, "f", &[Value::Int(1)], Pos::default()),
        Ok(Value::Int(51))
    );
}

fn run_binary(script: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.jl");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jit"))
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_scripts_fail_with_a_position_and_no_panic() {
    let cases = [
        ("fn f(x: Int64) -> Int64 = x +\n", "line 1, column 30", "expected an expression"),
        ("fn f(x: Widget) -> Int64 = 1\n", "line 1, column 9", "unknown type `Widget`"),
        ("fn f(x: Int64) -> Real = 1\n", "line 1, column 19", "must be concrete"),
        ("fn f(x: Int64) -> Int64 = 1\nprint f(2.5)\n", "line 2, column 7", "no method of `f` matches (Float64)"),
        (
            "fn g(x: Int64, y: Real) -> Int64 = 1\nfn g(x: Real, y: Int64) -> Int64 = 2\nprint g(1, 2)\n",
            "line 3, column 7",
            "ambiguous",
        ),
        ("fn h(x: Int64) -> Int64 = 1\nfn f(x: Int64) -> Int64 = h(true)\nprint f(1)\n", "line 2, column 27", "no method of `h`"),
        ("fn f(x: Int64) -> Int64 = true\nprint f(1)\n", "line 1, column 27", "declared to return Int64 but its body is Bool"),
        ("fn f(x: Int64) -> Int64 = y\nprint f(1)\n", "line 1, column 27", "unknown variable `y`"),
        ("print nope(1)\n", "line 1, column 7", "unknown function `nope`"),
        ("fn f(x: Int64) -> Int64 = 1 $ 2\n", "line 1, column 29", "unexpected character `$`"),
        (
            "fn f(a: Int64, b: Int64, c: Int64, d: Int64, e: Int64) -> Int64 = a\n",
            "line 1, column 1",
            "at most 4 are supported",
        ),
    ];
    for (script, pos, message) in cases {
        let (ok, stderr) = run_binary(script);
        assert!(!ok, "{script:?} should fail");
        assert!(
            stderr.contains(pos) && stderr.contains(message),
            "{script:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_example_scripts_run() {
    let cache = tempfile::tempdir().unwrap();
    for script in ["tour.jl", "numbers.jl", "overlay.jl"] {
        let path = format!("{}/scripts/{script}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new(env!("CARGO_BIN_EXE_jit"))
            .arg("--cache")
            .arg(cache.path())
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines = run(include_str!("../scripts/numbers.jl"));
    assert!(
        lines.contains(&"collatz(27, 0) = 111    [compiled: collatz(Int64, Int64)]".to_string()),
        "{lines:#?}"
    );
    assert!(lines.contains(&"half(7.0) = 3.5    [compiled: half(Float64)]".to_string()));
}
