//! Compilers, engine setups and thread helpers shared by the tests, benchmarks, perf harness and
//! fuzz targets of `compiler-caching`. Not published; not part of the crate.
//!
//! - [`alloc`]: a global allocator that counts the bytes live ([`alloc::CountingAlloc`]), for
//!   the memory tests and measurements;
//! - [`compilers`]: throwaway compilers ([`compilers::Const`], [`compilers::Ids`],
//!   [`compilers::Sum`]) whose phases cost next to nothing, for measuring the engine, and
//!   [`compilers::Linking`], generic in its owner key, for tests of misbehaving keys;
//! - [`foreign`]: a compiler of a small foreign IR whose compiled value shows any stale result,
//!   with fault injection and phase-run counts, for the integration tests;
//! - [`persisted`]: a compiler whose results persist ([`persisted::Chain`]) and a store that
//!   fails, blocks and counts on command ([`persisted::FaultyStore`]), for the persistent tier;
//! - [`setups`]: engines set up the same way by several users;
//! - [`threads`]: staged signals, a spinning barrier and a watchdog;
//! - [`model`]: the reference model the differential test and the `ops` fuzz target replay
//!   operation sequences against;
//! - [`redis`]: `redis-server` processes on free loopback ports, for the Redis artifact store's
//!   tests and measurements.

pub mod alloc;
pub mod compilers;
pub mod foreign;
pub mod model;
pub mod persisted;
pub mod redis;
pub mod setups;
pub mod threads;
