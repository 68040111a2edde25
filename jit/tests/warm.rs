//! Warm starts of the demo: a second session (or run of the binary) over the same cache
//! directory loads every method instance that did not change, running no infer and no codegen,
//! with the same results; editing one method recompiles exactly it and its dependents.

use std::path::Path;
use std::process::Command;

use jit::Session;

/// Runs `src` in a session over `cache`; returns its output lines (results and definitions) and
/// the engine's counters.
fn run(cache: &Path, src: &str) -> (Vec<String>, compiler_caching::StatsSnapshot) {
    let session = Session::with_cache(cache).unwrap();
    let mut out = Vec::new();
    session.run(src, &mut out).unwrap();
    session.flush();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, session.engine.stats())
}

/// The value printed on a result line, and the bracket after it.
fn split(line: &str) -> (&str, &str) {
    line.split_once("    [").unwrap_or((line, ""))
}

#[test]
fn a_second_session_loads_everything_that_did_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let script = include_str!("../scripts/numbers.jl");
    let (cold, s) = run(dir.path(), script);
    assert!(s.infer_runs > 0);
    assert_eq!(s.persist_loads, 0);
    let (warm, s) = run(dir.path(), script);
    assert_eq!((s.infer_runs, s.codegen_runs), (0, 0), "{s:#?}");
    assert_eq!(s.persist_loads, 5);
    assert_eq!(cold.len(), warm.len());
    for (c, w) in cold.iter().zip(&warm) {
        // Same values; compiled nothing.
        assert_eq!(split(c).0, split(w).0);
        if !w.starts_with("  ") {
            assert!(split(w).1.starts_with("compiled: nothing"), "{w}");
        }
    }
    assert!(warm.contains(
        &"collatz(27, 0) = 111    [compiled: nothing; loaded: collatz(Int64, Int64)]".to_string()
    ));
}

#[test]
fn the_tour_warm_recompiles_only_what_its_redefinitions_change() {
    let dir = tempfile::tempdir().unwrap();
    let script = include_str!("../scripts/tour.jl");
    let (cold, _) = run(dir.path(), script);
    let (warm, s) = run(dir.path(), script);
    let values =
        |lines: &[String]| -> Vec<String> { lines.iter().map(|l| split(l).0.to_owned()).collect() };
    assert_eq!(values(&cold), values(&warm));
    // area(Int64)'s record holds its last compilation, against the last scale(Int64) (100.0):
    // at the two stages before that, scale(Int64) differs, so area(Int64) compiles, and only
    // it; everything else, that last stage included, loads.
    let compiled: Vec<&str> = warm
        .iter()
        .filter(|l| !l.starts_with("  "))
        .map(|l| split(l).1)
        .filter(|b| !b.starts_with("compiled: nothing"))
        .collect();
    assert_eq!(
        compiled,
        [
            "compiled: area(Int64); loaded: scale(Int64)]",
            "compiled: area(Int64); loaded: scale(Int64)]",
        ],
        "{warm:#?}"
    );
    assert!(warm.contains(
        &"area(2) = 400.0    [compiled: nothing; loaded: scale(Int64), area(Int64)]".to_string()
    ));
    assert_eq!((s.infer_runs, s.codegen_runs), (2, 2));
}

#[test]
fn editing_one_method_recompiles_exactly_it_and_its_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let script = |base: &str, other: &str| {
        format!(
            "fn base(x: Int64) -> Int64 = {base}\n\
             fn mid(x: Int64) -> Int64 = base(x) + 1\n\
             fn top(x: Int64) -> Int64 = mid(x) * 2\n\
             fn other(x: Int64) -> Int64 = {other}\n\
             fn user(x: Int64) -> Int64 = other(x) - 1\n\
             print top(1)\n\
             print user(1)\n"
        )
    };
    // Each line's compiled and loaded instances, each list sorted (loads and compilations
    // interleave in the order callers reach callees).
    let compiled_and_loaded = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let bracket = split(l).1.trim_end_matches(']');
                bracket
                    .split("; ")
                    .map(|part| {
                        let (what, items) = part.split_once(": ").unwrap();
                        let mut items: Vec<&str> = items.split(", ").collect();
                        items.sort();
                        format!("{what}: {}", items.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .collect()
    };
    run(dir.path(), &script("x", "x * 10"));
    let (lines, _) = run(dir.path(), &script("x", "x * 10"));
    assert_eq!(
        compiled_and_loaded(&lines),
        [
            "compiled: nothing; loaded: base(Int64), mid(Int64), top(Int64)",
            "compiled: nothing; loaded: other(Int64), user(Int64)"
        ]
    );
    // Edit `base`: it and its dependents `mid` and `top` compile; `other` and `user` load.
    let (lines, s) = run(dir.path(), &script("x + 100", "x * 10"));
    assert_eq!(
        compiled_and_loaded(&lines),
        [
            "compiled: base(Int64), mid(Int64), top(Int64)",
            "compiled: nothing; loaded: other(Int64), user(Int64)"
        ]
    );
    assert_eq!(split(&lines[0]).0, "top(1) = 204");
    assert_eq!((s.infer_runs, s.persist_loads), (3, 2));
    // Reformatting and comments change nothing.
    let (lines, s) = run(
        dir.path(),
        &format!(
            "# a comment\n\n{}",
            script("x   +   100", "x*10").replace(" = ", " =  ")
        ),
    );
    assert_eq!(s.infer_runs, 0, "{lines:#?}");
}

#[test]
fn two_sessions_at_once_over_one_directory_each_get_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = Session::with_cache(dir.path()).unwrap();
    let b = Session::with_cache(dir.path()).unwrap();
    let (a_store, _) = a.store().unwrap();
    let (b_store, _) = b.store().unwrap();
    assert!(a_store.ends_with("artifacts.redb"), "{a_store}");
    assert!(b_store.ends_with("artifacts-1.redb"), "{b_store}");
    let script = "fn f(x: Int64) -> Int64 = x + 1\nprint f(1)\n";
    for s in [&a, &b] {
        let mut out = Vec::new();
        s.run(script, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with("f(1) = 2"));
    }
}

fn jit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_warm_starts_from_its_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().to_str().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/numbers.jl");
    let (ok, cold, err) = jit(&["--cache", cache, script]);
    assert!(ok, "{err}");
    assert!(cold.contains("Compiled code is kept in"));
    assert!(!cold.contains("infer_runs: 0,"));
    let (ok, warm, err) = jit(&["--cache", cache, script]);
    assert!(ok, "{err}");
    assert!(warm.contains("infer_runs: 0,"), "{warm}");
    assert!(warm.contains("codegen_runs: 0,"), "{warm}");
    assert!(warm.contains("loaded: collatz(Int64, Int64)"), "{warm}");
    // Without a cache: nothing kept, nothing loaded.
    let (ok, none, _) = jit(&["--no-cache", script]);
    assert!(ok);
    assert!(!none.contains("kept in") && !none.contains("loaded:"));
    assert!(none.contains("persist_loads: 0,"));
    let (ok, _, err) = jit(&["--cache"]);
    assert!(!ok && err.contains("usage"), "{err}");
    let (ok, _, err) = jit(&["--bogus", script]);
    assert!(!ok && err.contains("usage"), "{err}");
}

#[test]
fn an_unusable_cache_directory_runs_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/numbers.jl");
    let (ok, out, err) = jit(&["--cache", file.to_str().unwrap(), script]);
    assert!(ok, "{err}");
    assert!(out.contains("unavailable"), "{out}");
    assert!(out.contains("collatz(27, 0) = 111"));
    assert!(!out.contains("persist_store_errors: 0,"), "{out}");
}
