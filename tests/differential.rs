//! Differential test: random operation sequences replayed against the engine and the reference
//! model in `tests/model/`, every dispatch answer, compiled value and validity compared.

mod model;

use proptest::prelude::*;

proptest! {
    // `DIFF_CASES=N` runs a longer campaign.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("DIFF_CASES").ok().and_then(|n| n.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 500 } else { 5000 })
    ))]

    #[test]
    fn engine_agrees_with_the_reference_model(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let ops = model::decode(&bytes);
        if let Err(e) = model::run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The same comparison over a fixed set of sequences, asserting that they exercise every kind of
/// check (so a decoder change cannot quietly make the property vacuous).
#[test]
fn fixed_sequences_cover_every_check() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut total = model::Coverage::default();
    for _ in 0..400 {
        let bytes: Vec<u8> = (0..500)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let cov = model::run(&model::decode(&bytes)).unwrap();
        total.dispatches += cov.dispatches;
        total.old_world_dispatches += cov.old_world_dispatches;
        total.compiles += cov.compiles;
        total.validity_checks += cov.validity_checks;
        total.invalid_instances += cov.invalid_instances;
    }
    eprintln!("{total:?}");
    assert!(total.dispatches > 10_000, "{total:?}");
    assert!(total.old_world_dispatches > 5_000, "{total:?}");
    assert!(total.compiles > 1_000, "{total:?}");
    assert!(total.validity_checks > 5_000, "{total:?}");
    assert!(total.invalid_instances > 500, "{total:?}");
}
