//! Scenarios (a generated type hierarchy; methods defined, replaced and deleted in the global
//! table and an overlay; dispatches and compilations with dependencies in the newest and older
//! pinned worlds; watched queries re-asked after every mutation; reclamation) replayed against
//! the engine and the reference model of `tests/model/`; any disagreement panics.
#![no_main]

use test_support::model;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = model::decode(data);
    if let Err(e) = model::run(&ops) {
        panic!("engine and model disagree: {e}");
    }
});
