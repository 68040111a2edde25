//! The dispatch algorithm ([`crate::semantics`] §4): walk the stack of tables, let the first table
//! holding a live applicable method decide, and pick the method more specific than every other
//! applicable one. Along the way it computes the exact world range over which the answer holds,
//! from the `defined`/`deleted` worlds of the applicable methods.

use super::node::Answer;
use crate::methods::{Method, MethodLists, StackData};
use crate::sync::Ordering;
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
        let mut live: Vec<&Method<L>> = Vec::new();
        for m in lists.table(table) {
            if !sig_subtype(lattice, args, &m.0.sig) {
                continue;
            }
            let gone = deleted(m);
            note(m.0.defined);
            note(gone);
            if m.0.defined <= world && world < gone {
                live.push(m);
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
fn select<L: Lattice>(lattice: &L, live: &[&Method<L>]) -> Selection<L> {
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
    let oldest = |ms: &mut dyn Iterator<Item = &Method<L>>| ms.min_by_key(|m| m.0.id).cloned();
    let candidate = oldest(
        &mut live
            .iter()
            .copied()
            .filter(|&m| !live.iter().any(|&o| o != m && beats(o, m))),
    )
    .or_else(|| oldest(&mut live.iter().copied()))
    .expect("at least one applicable method");
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

/// The first world after `world` in which the answer differs from `selection`, or `OPEN` if it
/// never does in `lists`. [`compute`]'s upper bound is conservative (any applicable method's
/// event); this re-dispatches at each such event to find the one that really changes the answer, so
/// an answer asked for an older world is not closed by, say, a less specific method added later.
pub(crate) fn exact_max<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    selection: &Selection<L>,
) -> u64 {
    let mut events: Vec<u64> = Vec::new();
    for &table in stack.tables.iter() {
        for m in lists.table(table) {
            if sig_subtype(lattice, args, &m.0.sig) {
                let deleted = m.0.deleted.load(Ordering::Acquire);
                events.extend(
                    [m.0.defined, deleted]
                        .into_iter()
                        .filter(|&e| e != OPEN && e > world),
                );
            }
        }
    }
    events.sort_unstable();
    events.dedup();
    events
        .into_iter()
        .find(|&e| !same_selection(&compute(lattice, lists, stack, args, e).0, selection))
        .unwrap_or(OPEN)
}

/// Turns a selection into an answer, interning the method instance.
pub(crate) fn answer<L: Lattice>(selection: Selection<L>, args: &[L::Type]) -> Answer<L> {
    match selection {
        Selection::Found(m) => Answer::Found(m.instance(args)),
        Selection::NoMethod => Answer::NoMethod,
        Selection::Ambiguous { candidate, rivals } => Answer::Ambiguous { candidate, rivals },
    }
}
