//! The shared artifact tier: a Redis server on loopback against a local in-memory tier.
//!
//! ```text
//! cargo run --release -p perf --bin remote [-- --quick]
//! ```
//!
//! - `hit`: a lookup that finds its record, in the local tier (`MemoryStore`) and in Redis
//!   (`RedisStore`), for 1 KiB and 64 KiB records, on 1 and 2 threads (each thread on its own
//!   pooled connection);
//! - `read-through`: a `LayeredStore` lookup that misses the local tier, hits Redis and copies
//!   the record into the local tier;
//! - `put`: `SET` of a fresh 1 KiB record, one per call and 128 per `put_batch` pipeline;
//! - `down`: Redis frozen (SIGSTOP: connections accepted, nothing answered), timeouts 100 ms,
//!   backoff 1 s: the first call, which waits for its timeout, then every call during the
//!   backoff; and a `LayeredStore` miss with Redis down.
//!
//! It uses the server `COMPILER_CACHING_REDIS_URL` names for the first three, or starts its own
//! (`redis-server` must be on the path; the `down` measurement always starts its own). `--quick`
//! runs a tenth of the operations (for CI). Latencies are per call, timer included (~40 ns);
//! times are wall-clock on a shared machine, so compare rows of one run.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use compiler_caching::persist::{
    ArtifactStore, LayeredOptions, LayeredStore, MemoryStore, RecordKey, RedisOptions, RedisStore,
};
use test_support::redis::{shared, RedisServer};

fn key(space: u32, n: u32) -> RecordKey {
    let mut k = [0x5a; 32];
    k[..4].copy_from_slice(&space.to_le_bytes());
    k[4..8].copy_from_slice(&n.to_le_bytes());
    RecordKey(k)
}

/// Nanoseconds at the 50th and 99th percentiles.
fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

struct Row {
    what: String,
    store: &'static str,
    threads: usize,
    ops_per_sec: f64,
    p50: u64,
    p99: u64,
}

/// Runs `op(thread, i)` for `i in 0..per_thread` on each of `threads` threads, timing each call.
fn measure(threads: usize, per_thread: u32, op: impl Fn(usize, u32) + Sync) -> (f64, u64, u64) {
    let barrier = Barrier::new(threads);
    let start = Instant::now();
    let mut samples: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            let t0 = Instant::now();
                            op(t, i);
                            t0.elapsed().as_nanos() as u64
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = start.elapsed();
    let (p50, p99) = percentiles(&mut samples);
    (samples.len() as f64 / elapsed.as_secs_f64(), p50, p99)
}

fn human(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

fn rate(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.1} M", ops / 1e6)
    } else {
        format!("{:.1} k", ops / 1e3)
    }
}

fn main() {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => {
            eprintln!("usage: remote [--quick] (not `{other}`)");
            std::process::exit(2);
        }
    };
    let scale = if quick { 10 } else { 1 };
    let server = shared();
    let url = server.url();
    let prefix = format!("perf-remote-{}", std::process::id());
    let redis = Arc::new(RedisStore::open(&url, RedisOptions::new(&prefix)).expect("open"));
    redis.ping().expect("the Redis server does not answer");
    let mut rows = Vec::new();

    // Hits: the local tier, then Redis, for two record sizes.
    const KEYS: u32 = 1024;
    for (size, label) in [(1024, "1 KiB"), (64 * 1024, "64 KiB")] {
        let record = vec![0xc3; size];
        let local = MemoryStore::new();
        let records: Vec<(RecordKey, Vec<u8>)> = (0..KEYS)
            .map(|n| (key(size as u32, n), record.clone()))
            .collect();
        local.put_batch(&records).unwrap();
        redis.put_batch(&records).unwrap();
        for threads in [1, 2] {
            let per = 200_000 / scale;
            let (ops, p50, p99) = measure(threads, per, |_, i| {
                black_box(local.get(&key(size as u32, i % KEYS)).unwrap().unwrap());
            });
            rows.push(Row {
                what: format!("hit, {label}"),
                store: "local (MemoryStore)",
                threads,
                ops_per_sec: ops,
                p50,
                p99,
            });
            let per = if size > 1024 { 5_000 } else { 20_000 } / scale;
            let (ops, p50, p99) = measure(threads, per, |_, i| {
                black_box(redis.get(&key(size as u32, i % KEYS)).unwrap().unwrap());
            });
            rows.push(Row {
                what: format!("hit, {label}"),
                store: "Redis (loopback)",
                threads,
                ops_per_sec: ops,
                p50,
                p99,
            });
        }
    }

    // Read-through: every lookup misses the local tier and is copied into it.
    {
        let n = 10_000 / scale;
        let records: Vec<(RecordKey, Vec<u8>)> =
            (0..n).map(|i| (key(7, i), vec![0x3c; 1024])).collect();
        redis.put_batch(&records).unwrap();
        let local = Arc::new(MemoryStore::new());
        let layered = LayeredStore::new(
            vec![local.clone(), redis.clone()],
            LayeredOptions::default(),
        );
        let (ops, p50, p99) = measure(1, n, |_, i| {
            black_box(layered.get(&key(7, i)).unwrap().unwrap());
        });
        assert_eq!(local.stats().records, u64::from(n));
        rows.push(Row {
            what: "local miss, Redis hit, copied up (1 KiB)".into(),
            store: "LayeredStore",
            threads: 1,
            ops_per_sec: ops,
            p50,
            p99,
        });
    }

    // Writes of fresh keys: one per call, and pipelined.
    {
        let fresh = AtomicU32::new(0);
        let record = vec![0x11; 1024];
        for threads in [1, 2] {
            let (ops, p50, p99) = measure(threads, 10_000 / scale, |_, _| {
                let n = fresh.fetch_add(1, Ordering::Relaxed);
                redis.put(&key(8, n), &record).unwrap();
            });
            rows.push(Row {
                what: "put (SET), 1 KiB".into(),
                store: "Redis (loopback)",
                threads,
                ops_per_sec: ops,
                p50,
                p99,
            });
        }
        let batches = 200 / scale;
        let (calls, p50, p99) = measure(1, batches, |_, b| {
            let batch: Vec<(RecordKey, Vec<u8>)> = (0..128)
                .map(|i| (key(9, b * 128 + i), record.clone()))
                .collect();
            redis.put_batch(&batch).unwrap();
        });
        rows.push(Row {
            what: "put_batch of 128 (one pipeline), 1 KiB; ops/s in records, latency per batch"
                .into(),
            store: "Redis (loopback)",
            threads: 1,
            ops_per_sec: calls * 128.0,
            p50,
            p99,
        });
    }

    print_rows(&rows);
    down(quick);
}

fn print_rows(rows: &[Row]) {
    println!("| operation | store | threads | ops/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            r.store,
            r.threads,
            rate(r.ops_per_sec),
            human(r.p50),
            human(r.p99)
        );
    }
}

/// The cost of a Redis that stopped answering.
fn down(quick: bool) {
    let server = RedisServer::start();
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(100),
        command_timeout: Duration::from_millis(100),
        backoff: Duration::from_secs(1),
        ..RedisOptions::new("perf-down")
    };
    let redis = Arc::new(RedisStore::open(&server.url(), options).expect("open"));
    redis.ping().expect("ping");
    let local = Arc::new(MemoryStore::new());
    let layered = LayeredStore::new(
        vec![local.clone(), redis.clone()],
        LayeredOptions::default(),
    );
    server.freeze();

    let t0 = Instant::now();
    let first = redis.get(&key(1, 1));
    let first_took = t0.elapsed();
    assert!(first.is_err(), "a frozen server answered");
    // Every call from here is inside the backoff.
    let calls = if quick { 10_000 } else { 100_000 };
    let start = Instant::now();
    let mut samples: Vec<u64> = (0..calls)
        .map(|i| {
            let t = Instant::now();
            black_box(redis.get(&key(1, i)).is_err());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    let during = start.elapsed();
    let (p50, p99) = percentiles(&mut samples);
    let mut layered_samples: Vec<u64> = (0..calls)
        .map(|i| {
            let t = Instant::now();
            black_box(layered.get(&key(2, i)).unwrap());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    let (lp50, lp99) = percentiles(&mut layered_samples);
    let health = redis.health();
    println!();
    println!(
        "Redis frozen (timeouts 100 ms, backoff 1 s): first call {} (Err: {}); the next {calls} \
         calls took {:.1} ms in all: p50 {}, p99 {}; a LayeredStore miss meanwhile: p50 {}, \
         p99 {}; skipped {}, connections opened {}",
        human(first_took.as_nanos() as u64),
        first.unwrap_err(),
        during.as_secs_f64() * 1e3,
        human(p50),
        human(p99),
        human(lp50),
        human(lp99),
        health.skipped,
        health.connections,
    );
    server.resume();
}
