//! Differential test: random scenarios replayed against the engine and the reference model in
//! `tests/model/`, every dispatch answer, compiled value and validity compared. A scenario is a
//! generated type hierarchy and a long history of additions, type-equal replacements and
//! deletions in the global table and an overlay, with watched queries re-asked after every
//! mutation in the newest and older pinned worlds (see `model::decode`).

use test_support::model;

use model::{Op, T};
use proptest::prelude::*;

proptest! {
    // `DIFF_CASES=N` runs a longer campaign.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("DIFF_CASES").ok().and_then(|n| n.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 500 } else { 5000 })
    ))]

    #[test]
    fn engine_agrees_with_the_reference_model(
        bytes in prop::collection::vec(any::<u8>(), 0..3000)
    ) {
        let ops = model::decode(&bytes);
        if let Err(e) = model::run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

proptest! {
    // `DIFF_CASES=N` runs a longer campaign.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("DIFF_CASES").ok().and_then(|n| n.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 300 } else { 3000 })
    ))]

    /// With tuple types written several type-equal ways, which rank differently.
    #[test]
    fn engine_agrees_with_the_reference_model_on_tuple_types(
        bytes in prop::collection::vec(any::<u8>(), 0..3000)
    ) {
        let ops = model::decode_with_tuples(&bytes);
        if let Err(e) = model::run(&ops) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The same comparison over a fixed set of scenarios, asserting that they exercise every kind of
/// check (so a decoder change cannot quietly make the property vacuous).
#[test]
fn fixed_sequences_cover_every_check() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut total = model::Coverage::default();
    for _ in 0..300 {
        let bytes: Vec<u8> = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        total += model::run(&model::decode(&bytes)).unwrap();
    }
    eprintln!("{total:#?}");
    assert!(total.dispatches > 400_000, "{total:?}");
    assert!(total.old_world_dispatches > 250_000, "{total:?}");
    assert!(total.ambiguous > 30_000, "{total:?}");
    assert!(total.compiles > 25_000, "{total:?}");
    assert!(total.validity_checks > 35_000, "{total:?}");
    assert!(total.invalid_instances > 10_000, "{total:?}");
    assert!(total.mutations > 20_000, "{total:?}");
    assert!(total.replacements > 3_000, "{total:?}");
    assert!(total.watched_checks > 80_000, "{total:?}");
    assert!(total.warm_changes > 8_000, "{total:?}");
    // Deletions of a method the cached answer did not name, which changed it: what a recheck of
    // only the answers naming the deleted method misses (specificity is not transitive).
    assert!(total.unnamed_changes >= 10, "{total:?}");
}

/// The tuple decoding over fixed scenarios, asserting it writes tuples every way and rewrites
/// signatures, so that the property above cannot quietly stop exercising them.
#[test]
fn fixed_sequences_with_tuples_cover_every_writing() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let (mut tuples, mut distributed, mut rewrites) = (0, 0, 0);
    let mut total = model::Coverage::default();
    for _ in 0..100 {
        let bytes: Vec<u8> = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let ops = model::decode_with_tuples(&bytes);
        for op in &ops {
            let text = format!("{op:?}");
            tuples += usize::from(text.contains("Tuple{"));
            distributed += usize::from(text.contains("Union{Tuple{"));
            rewrites += usize::from(matches!(op, Op::Replace { rewrite: true, .. }));
        }
        total += model::run(&ops).unwrap();
    }
    eprintln!("{tuples} {distributed} {rewrites} {total:#?}");
    assert!(tuples > 3_000 && distributed > 500 && rewrites > 400);
    assert!(
        total.replacements > 500 && total.warm_changes > 1_000,
        "{total:?}"
    );
}

/// Every seed of the `ops` fuzz target, among them the regressions found so far (those found by
/// the first version of the model start with `model::FIXED`).
#[test]
fn fuzz_seeds_agree() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/ops");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = model::run(&model::decode(&bytes)) {
            panic!("{}: {e}", path.display());
        }
        seen += 1;
    }
    assert!(seen > 0, "no seeds in {dir}");
}

/// The shortest history the generator found against the engine without commit f3b95c2 (cached
/// answers rechecked only for the methods they named): A1 and A2 roots, C4 <: A1, C5 <: A2;
/// `f3(A2)` beats `f3(Union{A2, C4})`, `f3(Union{A1, C5})` beats `f3(A2)` and not
/// `f3(Union{A2, C4})`. `f3(C5)` is ambiguous with candidate `f3(Union{A1, C5})`; deleting
/// `f3(A2)`, which the answer does not name, makes `f3(Union{A2, C4})` the candidate.
#[test]
fn deleting_a_method_the_answer_does_not_name() {
    let declare = |parent, concrete| Op::Declare { parent, concrete };
    let add = |sig: T, value| Op::Add {
        f: 3,
        table: 0,
        sig: vec![sig],
        value,
        calls: vec![],
    };
    let ops = vec![
        declare(None, false),   // A0
        declare(None, false),   // A1
        declare(None, false),   // A2
        declare(Some(1), true), // C3 <: A1
        declare(Some(1), true), // C4 <: A1
        declare(Some(2), true), // C5 <: A2
        Op::Watch {
            f: 3,
            args: vec![T::Named(5)],
            stack: 0,
            key: Some(1),
        },
        add(T::Named(2), 9),
        add(T::Union(vec![2, 4]), 1),
        add(T::Union(vec![1, 5]), 38),
        Op::Delete {
            nth: 0,
            watched: None,
        },
    ];
    let cov = model::run(&ops).unwrap();
    assert_eq!(cov.unnamed_changes, 1, "{cov:?}");
}
