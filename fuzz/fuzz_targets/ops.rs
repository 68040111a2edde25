//! Sequences of operations (define, replace, delete, dispatch in a chosen world, compile with
//! dependencies, pin, reclaim) replayed against the engine and the reference model; any
//! disagreement panics.
#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = model::decode(data);
    if let Err(e) = model::run(&ops) {
        panic!("engine and model disagree: {e}");
    }
});
