//! The Redis artifact store against real `redis-server` processes: records, racing writers
//! (threads and processes), a server killed and restarted, paused, frozen or absent at start,
//! credentials, corrupt values, and the layered store over it.
//!
//! Tests that need any server use the one `COMPILER_CACHING_REDIS_URL` names (CI starts one),
//! else start their own; tests that kill, pause or configure a server start their own. Either
//! way `redis-server` must be installed; without it they fail, saying how to get one.
#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use compiler_caching::persist::{
    ArtifactStore, LayeredOptions, LayeredStore, MemoryStore, RecordKey, RedisOptions, RedisStore,
    StoreError, WriteMode,
};
use test_support::redis::{free_port, shared, RedisServer, Reply};
use test_support::threads::{watchdog, SpinBarrier};

/// Both timeouts of the stores under fault.
const TIMEOUT: Duration = Duration::from_millis(200);
/// The most one call may take when the server fails: a bound on a fault path, not a speed
/// claim (a call may reconnect once, then wait for its command).
const BOUND: Duration = Duration::from_millis(5 * 200);

fn key(n: u32) -> RecordKey {
    let mut k = [0xa5; 32];
    k[..4].copy_from_slice(&n.to_le_bytes());
    RecordKey(k)
}

/// A prefix no other test (or earlier run on the same server) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("test-{test}-{}-{nanos}", std::process::id())
}

fn fault_options(prefix: &str) -> RedisOptions {
    RedisOptions {
        connect_timeout: TIMEOUT,
        command_timeout: TIMEOUT,
        backoff: Duration::from_millis(500),
        ..RedisOptions::new(prefix)
    }
}

/// Calls `f` until it succeeds, at most for 10 s (waiting for a server to come back).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// The stored value under a record's Redis key, read raw.
fn raw_get(port: u16, name: &str) -> Option<Vec<u8>> {
    match test_support::redis::command(port, &[b"GET", name.as_bytes()]) {
        Reply::Bulk(value) => value,
        other => panic!("GET {name}: {other:?}"),
    }
}

fn raw_set(port: u16, name: &str, value: &[u8]) {
    let reply = test_support::redis::command(port, &[b"SET", name.as_bytes(), value]);
    assert_eq!(reply, Reply::Simple("OK".into()));
}

#[test]
fn records_round_trip_in_their_namespace_and_are_counted() {
    let server = shared();
    let p = prefix("basic");
    let store = RedisStore::open(&server.url(), RedisOptions::new(&p)).unwrap();
    assert!(store.health().available);

    assert_eq!(store.get(&key(1)).unwrap(), None);
    store.put(&key(1), b"an artifact").unwrap();
    store.put(&key(2), b"").unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    store.put(&key(3), &big).unwrap();
    assert_eq!(
        store.get(&key(1)).unwrap().as_deref(),
        Some(&b"an artifact"[..])
    );
    assert_eq!(store.get(&key(2)).unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(store.get(&key(3)).unwrap(), Some(big));

    // Records live under `{prefix}:{hex}`, framed.
    let name = store.redis_key(&key(1));
    assert_eq!(name, format!("{p}:{}", hex(&key(1).0)));
    let raw = raw_get(server.port(), &name).unwrap();
    assert_eq!(&raw[..4], b"CCA1");
    assert_eq!(&raw[12..], b"an artifact");

    // Another prefix is another namespace.
    let other = RedisStore::open(&server.url(), RedisOptions::new(prefix("other"))).unwrap();
    assert_eq!(other.get(&key(1)).unwrap(), None);

    store.remove(&key(1)).unwrap();
    store.remove(&key(1)).unwrap();
    assert_eq!(store.get(&key(1)).unwrap(), None);
    assert_eq!(raw_get(server.port(), &name), None);

    // A batch goes in pipelines of 128.
    let batch: Vec<(RecordKey, Vec<u8>)> = (100..400)
        .map(|n| (key(n), n.to_le_bytes().to_vec()))
        .collect();
    store.put_batch(&batch).unwrap();
    for (k, r) in &batch {
        assert_eq!(store.get(k).unwrap().as_ref(), Some(r));
    }

    // A record over the limit is refused without a round trip.
    let small = RedisStore::open(
        &server.url(),
        RedisOptions {
            max_record_bytes: 10,
            ttl: Some(Duration::from_secs(600)),
            ..RedisOptions::new(&p)
        },
    )
    .unwrap();
    assert_eq!(small.put(&key(4), &[0; 11]), Err(StoreError::Full));
    small.put(&key(4), &[0; 10]).unwrap();
    let ttl = test_support::redis::command(
        server.port(),
        &[b"PTTL", small.redis_key(&key(4)).as_bytes()],
    );
    assert!(
        matches!(ttl, Reply::Int(ms) if ms > 0 && ms <= 600_000),
        "{ttl:?}"
    );

    let stats = store.stats();
    assert_eq!(
        (
            stats.gets,
            stats.hits,
            stats.puts,
            stats.removes,
            stats.errors
        ),
        (305, 303, 303, 2, 0)
    );
    assert_eq!(small.stats().errors, 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn racing_writers_leave_one_whole_record_among_eight_threads() {
    let server = shared();
    let store =
        Arc::new(RedisStore::open(&server.url(), RedisOptions::new(prefix("race8"))).unwrap());
    // In order: the second write of a key replaces the first (a key names an identity, and the
    // engine rewrites a record whose dependencies changed).
    store.put(&key(0), b"first").unwrap();
    store.put(&key(0), b"second").unwrap();
    assert_eq!(store.get(&key(0)).unwrap().as_deref(), Some(&b"second"[..]));

    const KEYS: u32 = 50;
    let start = Arc::new(SpinBarrier::new(8));
    let written = Arc::new(SpinBarrier::new(8));
    watchdog(60, move || {
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let (store, start, written) = (store.clone(), start.clone(), written.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for n in 1..=KEYS {
                        store.put(&key(n), &[t; 64]).unwrap();
                    }
                    written.wait();
                    (1..=KEYS)
                        .map(|n| store.get(&key(n)).unwrap().expect("a record"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let seen: Vec<Vec<Vec<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (n, record) in seen[0].iter().enumerate() {
            assert!(record.len() == 64 && record.iter().all(|b| *b == record[0] && *b < 8));
            for other in &seen[1..] {
                assert_eq!(
                    &other[n], record,
                    "threads saw different records of key {n}"
                );
            }
        }
        assert_eq!(store.stats().errors, 0);
        assert_eq!(store.stats().puts, 2 + 8 * u64::from(KEYS));
    });
}

const CHILD_VAR: &str = "COMPILER_CACHING_TEST_CHILD";
const RACE_KEYS: u32 = 50;

/// The child process of `racing_writers_leave_one_whole_record_across_two_processes`: writes the
/// keys when the parent says so, says when it is done, and prints what it reads once the parent
/// is done too.
fn race_child() {
    let url = std::env::var("COMPILER_CACHING_TEST_URL").unwrap();
    let prefix = std::env::var("COMPILER_CACHING_TEST_PREFIX").unwrap();
    let store = RedisStore::open(&url, RedisOptions::new(prefix)).unwrap();
    println!("child: ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    let errors = (1..=RACE_KEYS)
        .filter(|n| store.put(&key(*n), b"child").is_err())
        .count();
    println!("child: written");
    line.clear();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "read");
    let seen: String = (1..=RACE_KEYS)
        .map(|n| match store.get(&key(n)).unwrap().as_deref() {
            Some(b"child") => 'c',
            Some(b"parent") => 'p',
            _ => '?',
        })
        .collect();
    println!("child: errors={errors} seen={seen}");
}

/// A child process, killed if the test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn racing_writers_leave_one_whole_record_across_two_processes() {
    if std::env::var(CHILD_VAR).is_ok() {
        return race_child();
    }
    let server = shared();
    let p = prefix("race2");
    let store = RedisStore::open(&server.url(), RedisOptions::new(&p)).unwrap();
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "racing_writers_leave_one_whole_record_across_two_processes",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_VAR, "writer")
            .env("COMPILER_CACHING_TEST_URL", server.url())
            .env("COMPILER_CACHING_TEST_PREFIX", &p)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The child's lines, through a thread, so that a silent child fails the test in time.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print `test NAME ... ` before the test's own output, on its line.
            if let Some(at) = line.find("child: ") {
                let _ = tx.send(line[at + "child: ".len()..].to_owned());
            }
        }
    });
    let next_child_line = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the child process said nothing for 60 s, or exited")
    };
    assert_eq!(next_child_line(), "ready");
    // Both processes write the same keys in the same order, from here on.
    writeln!(child.0.stdin.as_mut().unwrap(), "go").unwrap();
    for n in 1..=RACE_KEYS {
        store.put(&key(n), b"parent").unwrap();
    }
    // Both are done writing: each key holds one whole record, and both processes read the same.
    assert_eq!(next_child_line(), "written");
    writeln!(child.0.stdin.as_mut().unwrap(), "read").unwrap();
    let report = next_child_line();
    assert!(child.0.wait().unwrap().success());
    let seen: String = (1..=RACE_KEYS)
        .map(|n| match store.get(&key(n)).unwrap().as_deref() {
            Some(b"child") => 'c',
            Some(b"parent") => 'p',
            other => panic!("key {n}: {other:?}"),
        })
        .collect();
    assert_eq!(report, format!("errors=0 seen={seen}"));
}

#[test]
fn a_server_killed_mid_run_costs_one_timeout_then_nothing_until_it_returns() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = RedisStore::open(&server.url(), fault_options(&prefix("kill"))).unwrap();
    for n in 0..20 {
        store.put(&key(n), b"before").unwrap();
    }
    #[cfg(feature = "tracing")]
    let log = log::capture();

    server.kill();
    let connections = store.health().connections;
    let errors = store.stats().errors;
    for n in 0..50 {
        let (result, took) = timed(|| store.get(&key(n)));
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{result:?}"
        );
        assert!(took < BOUND, "call {n} took {took:?}");
    }
    let health = store.health();
    assert!(!health.available);
    assert_eq!(health.outages, 1);
    assert_eq!(store.stats().errors, errors + 50);
    // Each call either tried to connect (the first, and a probe after each backoff) or was
    // answered at once.
    assert!(health.skipped >= 1);
    assert_eq!(health.skipped + (health.connections - connections), 50);
    #[cfg(feature = "tracing")]
    assert_eq!(log.count(tracing::Level::WARN), 1, "{:?}", log.all());

    // Restarted on the same port (empty: no persistence): the store reconnects by itself.
    let _server = RedisServer::start_on(port);
    eventually("reconnection", || store.ping().is_ok());
    let health = store.health();
    assert!(health.available);
    assert_eq!((health.outages, health.recoveries), (1, 1));
    assert_eq!(store.get(&key(1)).unwrap(), None);
    store.put(&key(1), b"after").unwrap();
    assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"after"[..]));
    #[cfg(feature = "tracing")]
    assert_eq!(log.count(tracing::Level::INFO), 1, "{:?}", log.all());
}

#[test]
fn a_restart_between_calls_costs_no_outage() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = RedisStore::open(&server.url(), fault_options(&prefix("restart"))).unwrap();
    store.put(&key(1), b"x").unwrap();
    server.kill();
    let _server = RedisServer::start_on(port);
    // The pooled connection is dead; the call retries once on a new one.
    assert_eq!(store.get(&key(1)).unwrap(), None);
    assert_eq!(store.health().outages, 0);
}

#[test]
fn a_paused_server_times_out_and_the_layered_store_answers_from_the_local_tier() {
    let server = RedisServer::start();
    let remote =
        Arc::new(RedisStore::open(&server.url(), fault_options(&prefix("pause"))).unwrap());
    let direct = RedisStore::open(&server.url(), fault_options(&prefix("pause"))).unwrap();
    let local = Arc::new(MemoryStore::new());
    let store = LayeredStore::new(
        vec![local.clone(), remote.clone()],
        LayeredOptions::default(),
    );
    store.put(&key(1), b"everywhere").unwrap();
    store.flush();
    remote.put(&key(2), b"remote only").unwrap();
    direct.ping().unwrap();

    let reply = server.command(&[b"CLIENT", b"PAUSE", b"3000", b"ALL"]);
    assert_eq!(reply, Reply::Simple("OK".into()));

    // A command that gets no answer returns Timeout, after about the timeout.
    let (result, took) = timed(|| direct.get(&key(2)));
    assert_eq!(result, Err(StoreError::Timeout));
    assert!(took >= TIMEOUT / 2 && took < BOUND, "{took:?}");
    assert!(!direct.health().available);

    // The layered store: the remote tier times out once and is skipped.
    let (result, took) = timed(|| store.get(&key(2)));
    assert_eq!(result, Ok(None));
    assert!(took < BOUND, "{took:?}");
    assert_eq!(store.tier_stats()[1].errors, 1);
    // Then it is skipped at once (backing off), and the local tier answers.
    let (result, took) = timed(|| store.get(&key(1)));
    assert_eq!(result.unwrap().as_deref(), Some(&b"everywhere"[..]));
    assert!(took < BOUND, "{took:?}");
    let (result, took) = timed(|| store.get(&key(3)));
    assert_eq!(result, Ok(None));
    assert!(took < BOUND, "{took:?}");
    store.put(&key(3), b"local").unwrap();
    store.flush();
    assert_eq!(local.get(&key(3)).unwrap().as_deref(), Some(&b"local"[..]));
    let tiers = store.tier_stats();
    assert_eq!((tiers[1].errors, tiers[0].hits), (3, 1));
    assert!(remote.health().skipped >= 2);
}

#[test]
fn a_frozen_server_at_start_costs_one_connect_timeout() {
    let server = RedisServer::start();
    server.freeze();
    let (store, took) = timed(|| RedisStore::open(&server.url(), fault_options(&prefix("frozen"))));
    let store = store.unwrap();
    assert!(took < BOUND, "{took:?}");
    assert!(!store.health().available);
    assert_eq!(store.health().last_error.as_deref().map(|_| ()), Some(()));
    let (result, took) = timed(|| store.get(&key(1)));
    assert!(matches!(result, Err(StoreError::Unavailable { .. })));
    assert!(took < BOUND);
    server.resume();
    eventually("connection once resumed", || store.ping().is_ok());
    store.put(&key(1), b"x").unwrap();
    assert_eq!(store.health().recoveries, 1);
}

#[test]
fn a_server_down_at_start_leaves_the_store_unavailable_until_it_comes_up() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let remote = Arc::new(RedisStore::open(&url, fault_options(&prefix("down"))).unwrap());
    let health = remote.health();
    assert!(!health.available);
    assert_eq!(health.outages, 1);
    assert!(health.last_error.unwrap().contains("refused"));
    let (result, took) = timed(|| remote.get(&key(1)));
    assert!(matches!(result, Err(StoreError::Unavailable { .. })));
    assert!(took < BOUND);

    // The layered store works without it.
    let local = Arc::new(MemoryStore::new());
    let store = LayeredStore::new(
        vec![local.clone(), remote.clone()],
        LayeredOptions::default(),
    );
    store.put(&key(1), b"local").unwrap();
    assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"local"[..]));
    assert_eq!(store.get(&key(2)).unwrap(), None);
    store.flush();
    assert!(store.tier_stats()[1].errors >= 2);

    let _server = RedisServer::start_on(port);
    eventually("connection once the server is up", || remote.ping().is_ok());
    store.put(&key(2), b"shared").unwrap();
    store.flush();
    assert_eq!(
        remote.get(&key(2)).unwrap().as_deref(),
        Some(&b"shared"[..])
    );
    assert_eq!(remote.health().recoveries, 1);
}

#[test]
fn credentials_are_never_shown_and_acls_confine_a_tenant_to_its_prefix() {
    let server = RedisServer::start();
    let reply = server.command(&[
        b"ACL",
        b"SETUSER",
        b"tenant-a",
        b"on",
        b">s3cret@pw",
        b"~tenant-a:*",
        b"+get",
        b"+set",
        b"+del",
        b"+ping",
    ]);
    assert_eq!(reply, Reply::Simple("OK".into()));
    let port = server.port();
    // '@' in a URL's password is percent-encoded.
    let url = format!("redis://tenant-a:s3cret%40pw@127.0.0.1:{port}/");
    let secrets = ["s3cret", "wrong-pw-456", "topsecret"];
    let shows_none = |text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} shown in {text}");
        }
    };

    let store = RedisStore::open(&url, RedisOptions::new("tenant-a")).unwrap();
    store.put(&key(1), b"mine").unwrap();
    assert_eq!(store.get(&key(1)).unwrap().as_deref(), Some(&b"mine"[..]));
    let shown = format!("{store:?}");
    shows_none(&shown);
    assert!(shown.contains("tenant-a:<redacted>@127.0.0.1"), "{shown}");

    // The same user outside its prefix is refused, per command, without a backoff.
    let outside = RedisStore::open(&url, RedisOptions::new("tenant-b")).unwrap();
    let refused = outside.put(&key(1), b"theirs").unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unavailable { reason } if reason.contains("NOPERM")),
        "{refused:?}"
    );
    assert!(outside.health().available);

    // Credentials from the options instead of the URL.
    let options = RedisOptions {
        username: Some("tenant-a".into()),
        password: Some("s3cret@pw".into()),
        ..RedisOptions::new("tenant-a")
    };
    shows_none(&format!("{options:?}"));
    let by_options = RedisStore::open(&server.url(), options).unwrap();
    assert_eq!(
        by_options.get(&key(1)).unwrap().as_deref(),
        Some(&b"mine"[..])
    );
    shows_none(&format!("{by_options:?}"));

    // A wrong password: the store is unavailable, and nothing shows the password.
    #[cfg(feature = "tracing")]
    let log = log::capture();
    let wrong = RedisStore::open(
        &format!("redis://tenant-a:wrong-pw-456@127.0.0.1:{port}/"),
        RedisOptions::new("tenant-a"),
    )
    .unwrap();
    let health = wrong.health();
    assert!(!health.available);
    let last = health.last_error.unwrap();
    assert!(
        last.contains("authentication") || last.contains("WRONGPASS"),
        "{last}"
    );
    shows_none(&last);
    shows_none(&format!("{wrong:?}"));
    let error = wrong.get(&key(1)).unwrap_err();
    shows_none(&format!("{error} {error:?}"));
    #[cfg(feature = "tracing")]
    {
        assert_eq!(log.count(tracing::Level::WARN), 1, "{:?}", log.all());
        shows_none(&format!("{:?}", log.all()));
    }

    // Invalid URLs: typed errors, without the password.
    for bad in [
        "http://u:topsecret@127.0.0.1:1/",
        "redis://u:topsecret@[::1/",
        "topsecret",
    ] {
        let error = RedisStore::open(bad, RedisOptions::new("x")).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }));
        shows_none(&format!("{error} {error:?}"));
    }
    for bad_prefix in ["", "has space", "glob*", "ctl\u{7}"] {
        assert!(RedisStore::open(&url, RedisOptions::new(bad_prefix)).is_err());
    }
}

/// A record: payload then its 8-byte FNV-1a hash, as an engine's checksum.
fn sealed(payload: &[u8]) -> Vec<u8> {
    let mut record = payload.to_vec();
    record.extend_from_slice(&fnv(payload).to_le_bytes());
    record
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn truncated_foreign_and_corrupt_values_are_never_returned() {
    let server = shared();
    let port = server.port();
    let remote =
        Arc::new(RedisStore::open(&server.url(), RedisOptions::new(prefix("corrupt"))).unwrap());

    // Truncated by one byte, or a value this store did not write: Corrupt, and no backoff.
    remote.put(&key(1), b"a whole record").unwrap();
    let name = remote.redis_key(&key(1));
    let value = raw_get(port, &name).unwrap();
    raw_set(port, &name, &value[..value.len() - 1]);
    assert!(matches!(
        remote.get(&key(1)),
        Err(StoreError::Corrupt { .. })
    ));
    raw_set(port, &remote.redis_key(&key(2)), b"hello");
    assert!(matches!(
        remote.get(&key(2)),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(remote.health().available);
    assert_eq!(remote.stats().errors, 2);

    // Intact framing, a payload whose checksum fails: the layered store's verifier rejects it.
    let mut bad = sealed(b"machine code");
    bad[3] ^= 0x40;
    remote.put(&key(3), &bad).unwrap();
    remote.put(&key(4), &sealed(b"good code")).unwrap();
    let local = Arc::new(MemoryStore::new());
    let store = LayeredStore::new(
        vec![local.clone(), remote.clone()],
        LayeredOptions {
            verify: Some(Arc::new(|_: &RecordKey, record: &[u8]| {
                record.len() >= 8 && {
                    let (payload, sum) = record.split_at(record.len() - 8);
                    sum == fnv(payload).to_le_bytes()
                }
            })),
            ..LayeredOptions::default()
        },
    );
    for n in 1..=3 {
        assert_eq!(store.get(&key(n)).unwrap(), None, "key {n}");
        assert_eq!(local.get(&key(n)).unwrap(), None, "key {n} copied up");
        // Removed from the shared store, so no other process meets it.
        assert_eq!(
            raw_get(port, &remote.redis_key(&key(n))),
            None,
            "key {n} kept"
        );
    }
    assert_eq!(store.get(&key(4)).unwrap(), Some(sealed(b"good code")));
    assert_eq!(local.get(&key(4)).unwrap(), Some(sealed(b"good code")));
    assert_eq!(store.tier_stats()[1].corrupt, 3);
}

#[test]
fn a_remote_hit_is_copied_into_the_local_tier() {
    let server = shared();
    let remote =
        Arc::new(RedisStore::open(&server.url(), RedisOptions::new(prefix("through"))).unwrap());
    remote.put(&key(1), b"compiled by another process").unwrap();
    for write in [WriteMode::Through, LayeredOptions::default().write] {
        let local = Arc::new(MemoryStore::new());
        let store = LayeredStore::new(
            vec![local.clone(), remote.clone()],
            LayeredOptions {
                write,
                ..LayeredOptions::default()
            },
        );
        assert_eq!(
            store.get(&key(1)).unwrap().as_deref(),
            Some(&b"compiled by another process"[..])
        );
        assert!(local.get(&key(1)).unwrap().is_some());
        let remote_gets = remote.stats().gets;
        store.get(&key(1)).unwrap().unwrap();
        assert_eq!(
            remote.stats().gets,
            remote_gets,
            "{write:?}: asked the remote tier again"
        );
        let tiers = store.tier_stats();
        assert_eq!((tiers[0].promoted, tiers[0].hits, tiers[1].hits), (1, 1, 1));

        // A local write reaches the shared store (after a flush, with write-behind).
        store.put(&key(2), b"compiled here").unwrap();
        store.flush();
        assert_eq!(
            remote.get(&key(2)).unwrap().as_deref(),
            Some(&b"compiled here"[..])
        );
        remote.remove(&key(2)).unwrap();
    }
}

/// The crate's store events, as this thread sees them. A global subscriber (set once) records
/// the events of each thread that asked for them: scoped subscribers would race with the other
/// tests' threads over the callsites' cached interest.
#[cfg(feature = "tracing")]
mod log {
    use std::cell::RefCell;
    use std::fmt::Write;

    use tracing::field::{Field, Visit};
    use tracing::{span, Event, Level, Metadata, Subscriber};

    thread_local! {
        static EVENTS: RefCell<Option<Vec<(Level, String)>>> = const { RefCell::new(None) };
    }

    /// Events recorded on this thread since [`capture`].
    pub struct Events;

    /// Starts recording this thread's events.
    pub fn capture() -> Events {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            tracing::subscriber::set_global_default(Global).expect("no other global subscriber");
        });
        EVENTS.with(|events| *events.borrow_mut() = Some(Vec::new()));
        Events
    }

    impl Events {
        pub fn all(&self) -> Vec<(Level, String)> {
            EVENTS.with(|events| events.borrow().clone().unwrap_or_default())
        }
        pub fn count(&self, level: Level) -> usize {
            self.all().iter().filter(|(l, _)| *l == level).count()
        }
    }

    struct Fields<'a>(&'a mut String);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }

    struct Global;

    impl Subscriber for Global {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target().starts_with("compiler_caching::persist")
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = String::new();
            event.record(&mut Fields(&mut fields));
            EVENTS.with(|events| {
                if let Some(events) = events.borrow_mut().as_mut() {
                    events.push((*event.metadata().level(), fields));
                }
            });
        }
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }
}

#[cfg(feature = "redis-tls")]
#[test]
fn tls_to_a_server_with_a_private_certificate_authority() {
    let dir = std::env::temp_dir().join(prefix("tls"));
    let files = test_support::redis::tls_files(&dir);
    let tls_port = free_port();
    // The plain port answers the readiness check; the store talks TLS.
    let _server = RedisServer::start_with(&files.server_args(tls_port));
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let ca = std::fs::read(&files.ca).unwrap();
    let store = RedisStore::open(
        &url,
        RedisOptions {
            tls_root_certificate: Some(ca),
            ..fault_options(&prefix("tls"))
        },
    )
    .unwrap();
    store.put(&key(1), b"over TLS").unwrap();
    assert_eq!(
        store.get(&key(1)).unwrap().as_deref(),
        Some(&b"over TLS"[..])
    );

    // Without the authority, the server's certificate is not trusted: unavailable, typed.
    let untrusted = RedisStore::open(&url, fault_options(&prefix("tls"))).unwrap();
    assert!(!untrusted.health().available);
    let (result, took) = timed(|| untrusted.get(&key(1)));
    assert!(matches!(result, Err(StoreError::Unavailable { .. })));
    assert!(took < BOUND);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "redis-tls"))]
#[test]
fn tls_urls_need_the_redis_tls_feature() {
    let error = RedisStore::open("rediss://127.0.0.1:1/", RedisOptions::new("x")).unwrap_err();
    assert!(
        matches!(&error, StoreError::Unavailable { reason } if reason.contains("redis-tls")),
        "{error:?}"
    );
}
