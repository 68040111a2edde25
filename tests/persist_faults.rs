//! Every fault of the persistent tier gets a clear answer, never wrong code and never a crash:
//! damaged, truncated, foreign-format, other-compiler and misplaced records are refused; a store
//! that fails to read or write, is locked by another process, is unreadable, or is full is
//! skipped; a process killed in the middle of a write leaves a store that opens with every
//! committed record. Each falls back to compiling, and is counted. Real processes are this test
//! binary run again with a role in `PERSIST_CHILD` (see `child`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use compiler_caching::{
    ArtifactStore, CompilerCache, Engine, MemoryStore, RecordKey, RedbOptions, RedbStore,
    StatsSnapshot, StoreError, Ty, UnavailableStore, RECORD_FORMAT_VERSION,
};
use test_support::persisted::{Calls, Chain, FaultyStore};

/// `f(Int64)` calls `g(Any)`; compiles `f` in a fresh engine over `store` and returns its value
/// and the engine's counters once the store is flushed.
fn run<S: ArtifactStore + 'static>(store: &Arc<S>, version: &str) -> (u64, StatsSnapshot) {
    let engine = Engine::new();
    let int = engine
        .lattice()
        .declare_concrete("Int64", &Ty::any())
        .unwrap();
    let f = engine.declare_function("f").unwrap();
    let g = engine.declare_function("g").unwrap();
    engine.add_method(g, &[Ty::any()], Calls::value(1)).unwrap();
    engine
        .add_method(f, &[int.clone()], Calls::calling(100, &["g"]))
        .unwrap();
    let cache =
        CompilerCache::with_store(&engine, "chain", Chain::new(version), store.clone()).unwrap();
    let value = {
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[int]).unwrap();
        *cache.compile(&guard, mi, &0).unwrap()
    };
    let _ = cache.flush_store();
    (value, engine.stats())
}

/// A store over memory whose keys are logged, holding the records of one cold run: `g`'s key
/// first, then `f`'s.
fn stored() -> (Arc<FaultyStore>, RecordKey, RecordKey) {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    assert_eq!(run(&store, "1").0, 101);
    let puts = store.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 2);
    (store, puts[0], puts[1])
}

/// Rewrites the record under `key` with `edit`.
fn edit(store: &FaultyStore, key: &RecordKey, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = store.inner.get(key).unwrap().unwrap();
    edit(&mut bytes);
    store.inner.put(key, &bytes).unwrap();
}

/// Runs again expecting `f`'s record to be refused by `counter`, `g` to load, the right value,
/// and `f`'s record to be replaced by a good one (the run after loads everything).
fn refused_then_replaced(store: &Arc<FaultyStore>, counter: fn(&StatsSnapshot) -> u64) {
    let (value, s) = run(store, "1");
    assert_eq!(value, 101);
    assert_eq!(counter(&s), 1, "{s:#?}");
    assert_eq!((s.infer_runs, s.persist_loads), (1, 1), "{s:#?}");
    let (value, s) = run(store, "1");
    assert_eq!((value, s.infer_runs, s.persist_loads), (101, 0, 2));
}

#[test]
fn a_record_with_a_flipped_bit_fails_its_checksum() {
    let (store, _, f) = stored();
    edit(&store, &f, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
    });
    refused_then_replaced(&store, |s| s.persist_refused_corrupt);
}

#[test]
fn a_truncated_record_is_refused() {
    for keep in [0, 3, 39, 40, 60] {
        let (store, _, f) = stored();
        edit(&store, &f, |bytes| bytes.truncate(keep));
        refused_then_replaced(&store, |s| s.persist_refused_corrupt);
    }
}

#[test]
fn a_record_of_another_format_version_is_refused() {
    let (store, _, f) = stored();
    edit(&store, &f, |bytes| {
        bytes[4..6].copy_from_slice(&(RECORD_FORMAT_VERSION + 1).to_le_bytes());
    });
    refused_then_replaced(&store, |s| s.persist_refused_format);
}

#[test]
fn a_record_of_another_compiler_version_is_refused() {
    // A store that answers version 2's lookup of `f` with version 1's record (as a store shared
    // with an older build might, if keys ignored versions).
    let (store, _, f1) = stored();
    let probe = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    run(&probe, "2");
    let f2 = probe.puts.lock().unwrap()[1];
    let old = store.inner.get(&f1).unwrap().unwrap();
    store.inner.put(&f2, &old).unwrap();
    let (value, s) = run(&store, "2");
    assert_eq!(value, 101);
    assert_eq!(s.persist_refused_compiler_version, 1, "{s:#?}");
    assert_eq!((s.infer_runs, s.persist_loads), (2, 0));
}

#[test]
fn a_record_under_another_identity_is_refused() {
    let (store, g, f) = stored();
    let g_record = store.inner.get(&g).unwrap().unwrap();
    store.inner.put(&f, &g_record).unwrap();
    refused_then_replaced(&store, |s| s.persist_refused_identity);
}

#[test]
fn a_payload_that_no_longer_decodes_is_refused() {
    // A well-formed record (valid checksum) whose inferred result is not a `u64`: what a
    // compiler that changed its types without changing its version would find.
    let (store, _, f) = stored();
    edit(&store, &f, |bytes| {
        // The payload is at the end: `inferred` then `artifact`, each a length and bytes. Make
        // the artifact's bytes an over-long varint, then fix the checksum.
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        let digest = blake3_of(&bytes[40..]);
        bytes[8..40].copy_from_slice(&digest);
    });
    refused_then_replaced(&store, |s| s.persist_refused_corrupt);
}

fn blake3_of(bytes: &[u8]) -> [u8; 32] {
    compiler_caching::Fingerprint::of(bytes).0
}

#[test]
fn a_store_that_fails_to_read_is_skipped_and_counted() {
    let (store, _, _) = stored();
    *store.fail_gets.lock().unwrap() = Some(StoreError::Io {
        reason: "injected".into(),
    });
    let (value, s) = run(&store, "1");
    assert_eq!(value, 101);
    assert_eq!((s.infer_runs, s.persist_store_errors), (2, 2), "{s:#?}");
}

#[test]
fn a_full_disk_loses_only_the_records_being_written() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    *store.fail_puts.lock().unwrap() = Some(StoreError::Full);
    let engine = Engine::new();
    let f = engine.declare_function("f").unwrap();
    engine.add_method(f, &[Ty::any()], Calls::value(3)).unwrap();
    let cache =
        CompilerCache::with_store(&engine, "chain", Chain::new("1"), store.clone()).unwrap();
    {
        let guard = engine.pin();
        let mi = guard.dispatch(f, &[Ty::any()]).unwrap();
        assert_eq!(*cache.compile(&guard, mi, &0).unwrap(), 3);
    }
    assert_eq!(cache.flush_store(), Err(StoreError::Full));
    assert_eq!(engine.stats().persist_store_errors, 1);
    assert_eq!(cache.flush_store(), Ok(()), "the error is reported once");
    // The disk has room again: the next compilation is stored.
    *store.fail_puts.lock().unwrap() = None;
    let (value, s) = run(&store, "1");
    assert_eq!(
        (value, s.persist_loads, s.persist_store_errors),
        (101, 0, 0)
    );
    assert_eq!(run(&store, "1").1.persist_loads, 2);
}

#[test]
fn an_unavailable_store_compiles_everything_and_counts() {
    let store = Arc::new(UnavailableStore::new(StoreError::Locked {
        path: "artifacts.redb".into(),
    }));
    let (value, s) = run(&store, "1");
    assert_eq!(value, 101);
    // Two failed reads, two failed writes.
    assert_eq!((s.infer_runs, s.persist_store_errors), (2, 4), "{s:#?}");
}

#[test]
fn a_record_larger_than_the_budget_is_refused_as_full() {
    let dir = tempfile::tempdir().unwrap();
    let options = RedbOptions {
        byte_budget: 1000,
        ..RedbOptions::default()
    };
    let store = RedbStore::open(dir.path().join("s.redb"), options).unwrap();
    assert_eq!(
        store.put(&RecordKey([1; 32]), &[0; 2000]),
        Err(StoreError::Full)
    );
    store.put(&RecordKey([1; 32]), &[0; 500]).unwrap();
    assert_eq!(store.stats().records, 1);
}

#[test]
fn a_store_file_open_elsewhere_in_this_process_is_locked_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("artifacts.redb");
    let first = RedbStore::open(&path, RedbOptions::default()).unwrap();
    match RedbStore::open(&path, RedbOptions::default()) {
        Err(StoreError::Locked { path: locked }) => assert_eq!(locked, path),
        other => panic!("{other:?}"),
    }
    // Each concurrent user of a directory gets a file of its own.
    let second = RedbStore::open_in_dir(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(second.path(), dir.path().join("artifacts-1.redb"));
    drop((first, second));
    let again = RedbStore::open_in_dir(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(again.path(), path);
}

#[test]
fn an_unreadable_store_file_is_an_error_or_is_replaced_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("artifacts.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    match RedbStore::open(&path, RedbOptions::default()) {
        Err(StoreError::Corrupt { .. } | StoreError::Io { .. }) => {}
        other => panic!("{other:?}"),
    }
    // A directory where the file should be.
    let not_a_file = dir.path().join("dir.redb");
    std::fs::create_dir(&not_a_file).unwrap();
    assert!(RedbStore::open(&not_a_file, RedbOptions::default()).is_err());
    let options = RedbOptions {
        recreate_if_corrupt: true,
        ..RedbOptions::default()
    };
    let store = Arc::new(RedbStore::open(&path, options).unwrap());
    assert!(path.with_extension("corrupt").exists());
    assert_eq!(run(&store, "1").0, 101);
}

#[test]
fn a_store_file_damaged_on_disk_never_yields_a_wrong_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("artifacts.redb");
    {
        let store = Arc::new(RedbStore::open(&path, RedbOptions::default()).unwrap());
        assert_eq!(run(&store, "1").0, 101);
    }
    // Damage every copy of the records' common prefix in the file (redb keeps a page per
    // record here, plus older copies it has not reused).
    let mut bytes = std::fs::read(&path).unwrap();
    let mut damaged = 0;
    for i in 0..bytes.len().saturating_sub(8) {
        if &bytes[i..i + 4] == b"ccpr" {
            bytes[i + 44] ^= 0xff;
            damaged += 1;
        }
    }
    assert!(damaged >= 2, "found {damaged} records in the file");
    std::fs::write(&path, &bytes).unwrap();
    match RedbStore::open(&path, RedbOptions::default()) {
        // redb's page checksums caught it when the file was opened.
        Err(StoreError::Corrupt { .. }) => {}
        Ok(store) => {
            // Or the pages were not checked: then the records' own checksums catch it.
            let (value, s) = run(&Arc::new(store), "1");
            assert_eq!(value, 101);
            assert_eq!(s.persist_loads, 0, "{s:#?}");
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// Runs this test binary again as `role`, on `dir`.
fn child(test: &str, role: &str, dir: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("PERSIST_CHILD", role)
        .env("PERSIST_DIR", dir)
        .stdout(Stdio::piped());
    command
}

fn role() -> Option<(String, std::path::PathBuf)> {
    Some((
        std::env::var("PERSIST_CHILD").ok()?,
        std::env::var("PERSIST_DIR").ok()?.into(),
    ))
}

/// The record the killed writer writes as its `i`-th: large enough that writing takes a while.
fn nth_record(i: u64) -> Vec<u8> {
    (0..64 * 1024u64)
        .map(|j| (i.wrapping_mul(31) ^ j) as u8)
        .collect()
}

fn nth_key(i: u64) -> RecordKey {
    let mut key = [0; 32];
    key[..8].copy_from_slice(&i.to_le_bytes());
    RecordKey(key)
}

#[test]
fn a_process_killed_while_writing_leaves_every_committed_record() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "writer");
        let store = RedbStore::open(dir.join("artifacts.redb"), RedbOptions::default()).unwrap();
        let mut out = std::io::stdout();
        // Bounded, in case the parent never kills it.
        for i in 0..20_000 {
            store.put(&nth_key(i), &nth_record(i)).unwrap();
            writeln!(out, "committed {i}").unwrap();
            out.flush().unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut writer = child(
        "a_process_killed_while_writing_leaves_every_committed_record",
        "writer",
        dir.path(),
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    // The test harness may print its own text before a child's first line.
    let committed = |line: &str| {
        line.split_once("committed ")
            .map(|(_, n)| n.parse::<u64>().unwrap())
    };
    let mut last = None;
    for line in lines.by_ref() {
        if let Some(i) = committed(&line.unwrap()) {
            last = Some(i);
            if i == 40 {
                break;
            }
        }
    }
    assert_eq!(last, Some(40), "the writer stopped early");
    writer.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Some(i) = committed(&line) {
            last = Some(i);
        }
    }
    writer.wait().unwrap();
    let last = last.unwrap();
    let store = RedbStore::open(dir.path().join("artifacts.redb"), RedbOptions::default())
        .expect("the store opens after the kill");
    for i in 0..=last {
        assert_eq!(
            store.get(&nth_key(i)).unwrap().as_deref(),
            Some(&nth_record(i)[..]),
            "committed record {i} of {last}"
        );
    }
    assert!(store.stats().records > last);
    // And it is usable.
    store.put(&nth_key(u64::MAX), b"after").unwrap();
}

#[test]
fn a_store_file_held_by_another_process_is_locked_and_the_engine_runs_without_it() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "holder");
        let _store = RedbStore::open(dir.join("artifacts.redb"), RedbOptions::default()).unwrap();
        println!("holding the store");
        // Hold the file until the parent closes our standard input.
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut holder = child(
        "a_store_file_held_by_another_process_is_locked_and_the_engine_runs_without_it",
        "holder",
        dir.path(),
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().ends_with("holding the store")));
    let path = dir.path().join("artifacts.redb");
    let store = match RedbStore::open(&path, RedbOptions::default()) {
        Err(e @ StoreError::Locked { .. }) => Arc::new(UnavailableStore::new(e)),
        other => panic!("expected Locked, got {other:?}"),
    };
    let (value, s) = run(&store, "1");
    assert_eq!(value, 101);
    assert_eq!((s.infer_runs, s.persist_store_errors), (2, 4));
    // Or a file of its own in the same directory.
    let own = RedbStore::open_in_dir(dir.path(), RedbOptions::default()).unwrap();
    assert_eq!(own.path(), dir.path().join("artifacts-1.redb"));
    drop(own);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    RedbStore::open(&path, RedbOptions::default()).expect("free once the holder exits");
}

#[test]
fn a_second_process_over_one_store_directory_runs_no_infer() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "program");
        let store = Arc::new(RedbStore::open_in_dir(&dir, RedbOptions::default()).unwrap());
        let (value, s) = run(&store, "1");
        println!(
            "value={value} infer={} codegen={} link={} loads={}",
            s.infer_runs, s.codegen_runs, s.link_runs, s.persist_loads
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = || {
        let out = child(
            "a_second_process_over_one_store_directory_runs_no_infer",
            "program",
            dir.path(),
        )
        .output()
        .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.split_once("value=").map(|(_, r)| format!("value={r}")))
            .unwrap()
    };
    assert_eq!(report(), "value=101 infer=2 codegen=2 link=2 loads=0");
    assert_eq!(report(), "value=101 infer=0 codegen=0 link=2 loads=2");
}
