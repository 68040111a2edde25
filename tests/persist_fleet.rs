//! The persistent tier over a fleet's stores: each "process" (an engine that shares nothing else)
//! keeps its records in a layered store of its own redb file first and a Redis server the fleet
//! shares second, with the engine's record check as the layered store's verifier. A process with
//! an empty disk loads what another compiled; a record whose dependencies changed is compiled
//! again and replaced in the shared tier, so the next process loads the new one; a damaged
//! shared record is neither used nor copied, and is replaced.
//!
//! Uses the server `COMPILER_CACHING_REDIS_URL` names (CI starts one), else starts its own;
//! without `redis-server` installed the tests fail, saying how to get one.
#![cfg(feature = "redis")]

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use compiler_caching::{
    record_verifier, ArtifactStore, CompilerCache, Engine, LayeredOptions, LayeredStore,
    RedbOptions, RedbStore, RedisOptions, RedisStore, StatsSnapshot,
};
use test_support::persisted::{Calls, Chain, FaultyStore};
use test_support::redis::shared;
use test_support::setups::{types, Types};

/// A prefix no other test (or earlier run on the same server) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("test-fleet-{test}-{}-{nanos}", std::process::id())
}

/// One process of the fleet: an engine, its local redb file, the shared Redis store, and a
/// cache over both layered.
struct Proc {
    engine: Engine,
    cache: CompilerCache<Chain>,
    store: Arc<LayeredStore>,
    local: Arc<RedbStore>,
    t: Types,
}

impl Proc {
    fn new(disk: &Path, shared: Arc<dyn ArtifactStore>) -> Proc {
        let local =
            Arc::new(RedbStore::open(disk.join("local.redb"), RedbOptions::default()).unwrap());
        let store = Arc::new(LayeredStore::new(
            vec![local.clone(), shared],
            LayeredOptions {
                verify: Some(record_verifier()),
                ..LayeredOptions::default()
            },
        ));
        let engine = Engine::new();
        let t = types(&engine);
        let cache =
            CompilerCache::with_store(&engine, "chain", Chain::new("1"), store.clone()).unwrap();
        Proc {
            engine,
            cache,
            store,
            local,
            t,
        }
    }

    /// `f(Int64)` calls `g`, which calls `h`.
    fn program(&self, h_value: u64) {
        for (name, sig, source) in [
            ("h", &self.t.real, Calls::value(h_value)),
            ("g", &self.t.integer, Calls::calling(10, &["h"])),
            ("f", &self.t.int, Calls::calling(100, &["g"])),
        ] {
            let f = self.engine.declare_function(name).unwrap();
            self.engine.add_method(f, &[sig.clone()], source).unwrap();
        }
    }

    fn call_f(&self) -> u64 {
        let f = self.engine.function("f").unwrap();
        let guard = self.engine.pin();
        let mi = guard.dispatch(f, &[self.t.int.clone()]).unwrap();
        *self.cache.compile(&guard, mi, &0).unwrap()
    }

    /// The engine's counters once every record is written to both tiers.
    fn stats(&self) -> StatsSnapshot {
        self.cache.flush_store().unwrap();
        self.store.flush();
        self.engine.stats()
    }

    fn loaded(&self) -> Vec<String> {
        let mut loaded = self.cache.compiler().take_loaded();
        loaded.sort();
        loaded
    }
}

fn redis(test: &str) -> (test_support::redis::Shared, Arc<RedisStore>) {
    let server = shared();
    let store = Arc::new(RedisStore::open(&server.url(), RedisOptions::new(prefix(test))).unwrap());
    (server, store)
}

#[test]
fn a_process_with_an_empty_disk_loads_what_another_compiled() {
    let (_server, remote) = redis("load");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let a = Proc::new(disk_a.path(), remote.clone());
    a.program(1);
    assert_eq!(a.call_f(), 111);
    let s = a.stats();
    assert_eq!(
        (s.infer_runs, s.persist_stores, s.persist_store_errors),
        (3, 3, 0)
    );
    assert_eq!(a.store.tier_stats()[1].writes, 3);

    let b = Proc::new(disk_b.path(), remote.clone());
    b.program(1);
    assert_eq!(b.call_f(), 111);
    let s = b.stats();
    assert_eq!((s.infer_runs, s.codegen_runs), (0, 0), "{s:#?}");
    assert_eq!((s.persist_loads, s.link_runs), (3, 3));
    assert_eq!(b.loaded(), ["f(Int64)", "g(Int64)", "h(Int64)"]);
    let tiers = b.store.tier_stats();
    assert_eq!((tiers[0].hits, tiers[1].hits, tiers[0].promoted), (0, 3, 3));
    assert_eq!(b.local.stats().records, 3, "copied into b's disk");
    let shared_gets = remote.stats().gets;
    drop(b);

    // B restarted: its own disk answers, and the shared store is not asked.
    let b = Proc::new(disk_b.path(), remote.clone());
    b.program(1);
    assert_eq!(b.call_f(), 111);
    let s = b.stats();
    assert_eq!((s.infer_runs, s.persist_loads), (0, 3));
    assert_eq!(b.store.tier_stats()[0].hits, 3);
    assert_eq!(remote.stats().gets, shared_gets);
}

#[test]
fn a_record_whose_dependencies_changed_is_replaced_in_the_shared_tier() {
    let (_server, remote) = redis("replace");
    let disks: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    {
        let a = Proc::new(disks[0].path(), remote.clone());
        a.program(1);
        assert_eq!(a.call_f(), 111);
        assert_eq!(a.stats().persist_stores, 3);
    }
    // A new release changes h: its callers' records are refused, compiled again, and rewritten
    // under the same keys (h's own identity changed: a new key).
    let b = Proc::new(disks[1].path(), remote.clone());
    b.program(2);
    assert_eq!(b.call_f(), 112);
    let s = b.stats();
    assert_eq!(s.infer_runs, 3, "{s:#?}");
    assert_eq!(s.persist_refused_dependencies, 2, "{s:#?}");
    assert_eq!(s.persist_stores, 3);
    drop(b);
    // The next process of that release loads the new records from the shared tier.
    let c = Proc::new(disks[2].path(), remote.clone());
    c.program(2);
    assert_eq!(c.call_f(), 112);
    let s = c.stats();
    assert_eq!((s.infer_runs, s.persist_loads), (0, 3), "{s:#?}");
    assert_eq!(s.persist_refused_dependencies, 0);
}

#[test]
fn a_damaged_shared_record_is_neither_used_nor_copied_and_is_replaced() {
    let (_server, remote) = redis("damaged");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A's writes to the shared tier go through a wrapper that logs their keys.
    let logged = Arc::new(FaultyStore::new(remote.clone()));
    let a = Proc::new(disk_a.path(), logged.clone());
    a.program(1);
    assert_eq!(a.call_f(), 111);
    a.stats();
    // Flip a byte of the body of every record in the shared tier: framing intact, checksum not.
    let keys = logged.puts.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let mut record = remote.get(key).unwrap().unwrap();
        let last = record.len() - 1;
        record[last] ^= 0x55;
        remote.put(key, &record).unwrap();
    }

    let b = Proc::new(disk_b.path(), remote.clone());
    b.program(1);
    assert_eq!(b.call_f(), 111);
    let s = b.stats();
    assert_eq!(
        (s.infer_runs, s.persist_loads, s.persist_stores),
        (3, 0, 3),
        "{s:#?}"
    );
    let tiers = b.store.tier_stats();
    assert_eq!((tiers[1].corrupt, tiers[0].promoted), (3, 0));
    // What b compiled replaced them: intact again.
    let verify = record_verifier();
    for key in &keys {
        let record = remote.get(key).unwrap().unwrap();
        assert!(verify(key, &record), "{key:?} still damaged");
    }
}
