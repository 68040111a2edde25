//! `jit [--cache DIR | --no-cache] [SCRIPT]`: run a script (or, with no argument, the built-in
//! tour) and print what was compiled, what each redefinition invalidated and why, and the
//! engine's counters.
//!
//! Compiled code is kept in a store in a cache directory (`--cache DIR`; by default
//! `$XDG_CACHE_HOME/compiler-caching-jit`, or `~/.cache/compiler-caching-jit`), so a second run
//! loads every method instance that did not change instead of compiling it, and says so per call.
//! `--no-cache` keeps nothing.
//!
//! `JIT_TRACE=<filter>` also prints the engine's `tracing` spans and events on stderr, for
//! example `JIT_TRACE=debug` (every compile phase and every invalidated code instance with its
//! why-chain) or `JIT_TRACE=compiler_caching::mutation=info`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use jit::syntax::{parse, Pos, Stmt};
use jit::{Session, Value};

const TOUR: &str = include_str!("../scripts/tour.jl");

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("JIT_TRACE") {
        match tracing_subscriber::EnvFilter::try_new(&filter) {
            Ok(filter) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init(),
            Err(e) => {
                eprintln!("JIT_TRACE={filter}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let Some((cache, args)) = parse_args(std::env::args().skip(1).collect()) else {
        eprintln!("usage: jit [--cache DIR | --no-cache] [SCRIPT]");
        return ExitCode::from(2);
    };
    let (name, src) = match args.as_slice() {
        [] => ("the built-in tour".to_string(), TOUR.to_string()),
        [path] => match std::fs::read_to_string(path) {
            Ok(s) => (path.clone(), s),
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: jit [--cache DIR | --no-cache] [SCRIPT]");
            return ExitCode::from(2);
        }
    };
    let session = match &cache {
        Some(dir) => Session::with_cache(dir),
        None => Session::new(),
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("Running {name}. Each line shows a result and the method instances compiled for it.");
    if let Some((store, _)) = session.store() {
        println!(
            "Compiled code is kept in {store}: what an earlier run stored and did not change since \
             is loaded, not compiled."
        );
    }
    println!();
    let mut out = std::io::stdout();
    if let Err(e) = session.run(&src, &mut out) {
        eprintln!("{name}: {e}");
        return ExitCode::from(1);
    }
    if args.is_empty() {
        threads(&session);
    }
    session.flush();
    println!("\nCounters: {:#?}", session.engine.stats());
    if let Some((store, stats)) = session.store() {
        println!(
            "Store {store}: {} records, {} bytes; {} reads ({} found), {} writes, {} evictions, {} errors",
            stats.records, stats.bytes, stats.gets, stats.hits, stats.puts, stats.evictions, stats.errors
        );
    }
    ExitCode::SUCCESS
}

/// The cache directory (`None` for `--no-cache`) and the remaining arguments; `None` for a bad
/// command line.
fn parse_args(args: Vec<String>) -> Option<(Option<PathBuf>, Vec<String>)> {
    let mut cache = default_cache_dir();
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cache" => cache = Some(PathBuf::from(args.next()?)),
            "--no-cache" => cache = None,
            flag if flag.starts_with("--") => return None,
            _ => rest.push(arg),
        }
    }
    Some((cache, rest))
}

/// `$XDG_CACHE_HOME/compiler-caching-jit`, or `$HOME/.cache/compiler-caching-jit`; none if
/// neither variable is set.
fn default_cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(base.join("compiler-caching-jit"))
}

/// Four threads call `area(2)` while this one redefines `scale(Int64)` 100 times.
fn threads(session: &Session) {
    println!("\nFour threads call area(2) while the main thread redefines scale(Int64) 100 times:");
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let redefine = |i: usize| format!("fn scale(x: Int64) -> Float64 = {i}.0");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Value::Float(_)) =
                        session.call(None, "area", &[Value::Int(2)], Pos::default())
                    {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for i in 0..100 {
            let Ok(stmts) = parse(&redefine(i)) else {
                continue;
            };
            if let Some(Stmt::Def(def)) = stmts.first() {
                let _ = session.define(def);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let last = session.call(None, "area", &[Value::Int(2)], Pos::default());
    println!(
        "  {} calls ran native code; area(2) is now {} (scale(Int64) = 99.0)",
        calls.load(Ordering::Relaxed),
        last.map_or_else(|e| e.to_string(), |v| v.to_string())
    );
    session.take_compiled();
}
