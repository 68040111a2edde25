//! The dispatch algorithm ([`crate::semantics`] §4): walk the stack of tables, let the first table
//! holding a live applicable method decide, and pick the method more specific than every other
//! applicable one. Along the way it bounds the world range over which the answer holds, from the
//! `defined`/`deleted` worlds of the applicable methods; [`super::range`] makes that bound exact.

use smallvec::SmallVec;

use super::node::Answer;
use crate::methods::{Method, MethodLists, StackData};
use crate::sync::{Arc, Ordering};
use crate::types::{sig_subtype, Lattice};
use crate::world::OPEN;

/// What [`compute`] selected: the answer before a method instance is made for it.
pub(crate) enum Selection<L: Lattice> {
    Found(Method<L>),
    NoMethod,
    /// No applicable method beats every other applicable one. `candidate` is the would-be winner
    /// (the oldest applicable method that no other beats, or the oldest applicable method if
    /// every one is beaten by another), and `rivals` the applicable methods it fails to beat,
    /// oldest first: what a user must disambiguate.
    Ambiguous {
        candidate: Method<L>,
        rivals: Vec<Method<L>>,
    },
}

/// Dispatch `args` through `stack` in `world` over `lists`. Returns the answer and the world range
/// `[min, max)` over which the methods it read give the same answer.
pub(crate) fn compute<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
) -> (Selection<L>, u64, u64) {
    compute_with(lattice, lists, stack, args, world, |m| {
        m.0.deleted.load(Ordering::Acquire)
    })
}

/// [`compute`], with each method's deletion world given by `deleted`: a mutation asks what the
/// answer will be once it has deleted a method, before it deletes it.
///
/// Applicability is checked once per lineage (type-equal methods, see
/// [`crate::methods::Lineage`]) and the member that matters is found by binary search, so the
/// cost grows with the number of distinct signatures, not with how often they were redefined.
/// Only that member and its successor bound the answer's range: members' lifetimes follow one
/// another.
pub(crate) fn compute_with<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    deleted: impl Fn(&Method<L>) -> u64,
) -> (Selection<L>, u64, u64) {
    let mut min = 1;
    let mut max = OPEN;
    let mut note = |event: u64| {
        if event == OPEN {
        } else if event <= world {
            min = min.max(event);
        } else {
            max = max.min(event);
        }
    };
    for &table in stack.tables.iter() {
        let mut live: SmallVec<[&Method<L>; 8]> = SmallVec::new();
        for lineage in lists.lineages(table) {
            if !sig_subtype(lattice, args, lineage.signature()) {
                continue;
            }
            match lineage.at(world) {
                Some(i) => {
                    let m = lineage.member(i);
                    let gone = deleted(m);
                    note(m.0.defined);
                    note(gone);
                    if world < gone {
                        live.push(m);
                    }
                    if i + 1 < lineage.len() {
                        note(lineage.member(i + 1).0.defined);
                    }
                }
                None => note(lineage.member(0).0.defined),
            }
        }
        if !live.is_empty() {
            return (select(lattice, &live), min, max);
        }
    }
    (Selection::NoMethod, min, max)
}

/// The applicable method more specific than every other, or the ambiguity.
///
/// Specificity is not transitive once unions appear (`a` beats `b`, `b` beats `c`, `a` does not
/// beat `c`), so a method beaten by no other is not necessarily the winner: the winner must beat
/// every other applicable method.
pub(super) fn select<L: Lattice>(lattice: &L, live: &[&Method<L>]) -> Selection<L> {
    let beats = |a: &Method<L>, b: &Method<L>| lattice.is_more_specific(&a.0.sig, &b.0.sig);
    // A tournament finds the winner in one pass when there is one; a check confirms it.
    let mut best = live[0];
    for &m in &live[1..] {
        if beats(m, best) {
            best = m;
        }
    }
    let wins = |w: &Method<L>| live.iter().all(|&o| o == w || beats(w, o));
    if wins(best) {
        return Selection::Found(best.clone());
    }
    if let Some(w) = live.iter().find(|&&w| wins(w)) {
        return Selection::Found((*w).clone());
    }
    // The oldest method no other beats, found oldest first so that the common ambiguity (methods
    // that beat none of each other) costs one pass, not a check of every pair; else the oldest.
    let mut by_age: SmallVec<[&Method<L>; 8]> = live.iter().copied().collect();
    by_age.sort_unstable_by_key(|m| m.0.id);
    let candidate = by_age
        .iter()
        .find(|&&m| !live.iter().any(|&o| o != m && beats(o, m)))
        .unwrap_or(&by_age[0]);
    let candidate = (*candidate).clone();
    let mut rivals: Vec<Method<L>> = live
        .iter()
        .filter(|&&o| *o != candidate && !beats(&candidate, o))
        .map(|&o| o.clone())
        .collect();
    rivals.sort_by_key(|m| m.0.id);
    Selection::Ambiguous { candidate, rivals }
}

/// Whether two selections are the same answer.
pub(crate) fn same_selection<L: Lattice>(a: &Selection<L>, b: &Selection<L>) -> bool {
    match (a, b) {
        (Selection::Found(x), Selection::Found(y)) => x == y,
        (Selection::NoMethod, Selection::NoMethod) => true,
        (
            Selection::Ambiguous {
                candidate: c1,
                rivals: r1,
            },
            Selection::Ambiguous {
                candidate: c2,
                rivals: r2,
            },
        ) => c1 == c2 && r1 == r2,
        _ => false,
    }
}

impl<L: Lattice> Selection<L> {
    /// Whether this answer is the one `answer` records.
    pub(crate) fn matches(&self, answer: &Answer<L>) -> bool {
        match (self, answer) {
            (Selection::Found(m), Answer::Found(mi)) => mi.method() == m,
            (Selection::NoMethod, Answer::NoMethod) => true,
            (
                Selection::Ambiguous {
                    candidate: c1,
                    rivals: r1,
                },
                Answer::Ambiguous {
                    candidate: c2,
                    rivals: r2,
                },
            ) => c1 == c2 && r1 == r2,
            _ => false,
        }
    }
}

/// Turns a selection into an answer, interning the method instance.
pub(crate) fn answer<L: Lattice>(selection: Selection<L>, args: &Arc<[L::Type]>) -> Answer<L> {
    match selection {
        Selection::Found(m) => Answer::Found(m.instance(args)),
        Selection::NoMethod => Answer::NoMethod,
        Selection::Ambiguous { candidate, rivals } => Answer::Ambiguous { candidate, rivals },
    }
}
