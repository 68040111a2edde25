//! The dispatch algorithm ([`crate::semantics`] §4): walk the stack of tables, let the first table
//! holding a live applicable method decide, and pick the method more specific than every other
//! applicable one. Along the way it computes the exact world range over which the answer holds,
//! from the `defined`/`deleted` worlds of the applicable methods.

use smallvec::SmallVec;

use super::node::Answer;
use crate::methods::{Lineage, Method, MethodLists, StackData};
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
/// event); this finds the event that really changes the answer, so that an answer asked for an
/// older world is not closed by, say, a less specific method added later.
///
/// It sweeps forward over the events of the applicable lineages. Two kinds matter: a lineage
/// starting or ending a run (becoming live or dead, or changing how its signature is written),
/// after which the answer is selected again; and a member of a lineage the answer names being
/// replaced, which changes the answer. Replacements within other lineages change nothing (same
/// signature, same ranking) and are skipped, so a method redefined `n` times costs `O(log n)`
/// here, not `n` selections.
pub(crate) fn exact_max<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    selection: &Selection<L>,
) -> u64 {
    let deleted = |m: &Method<L>| m.0.deleted.load(Ordering::Acquire);
    // The applicable lineages, with the index of their table in the stack.
    let tracks: Vec<(usize, &Lineage<L>)> = stack
        .tables
        .iter()
        .enumerate()
        .flat_map(|(t, &table)| lists.lineages(table).map(move |l| (t, &**l)))
        .filter(|(_, l)| sig_subtype(lattice, args, l.signature()))
        .collect();
    let live_at = |l: &Lineage<L>, w: u64| l.at(w).filter(|&i| w < deleted(l.member(i)));
    let named: Vec<&Method<L>> = match selection {
        Selection::Found(m) => vec![m],
        Selection::NoMethod => Vec::new(),
        Selection::Ambiguous { candidate, rivals } => {
            std::iter::once(candidate).chain(rivals).collect()
        }
    };
    let mut now = world;
    loop {
        let mut next_run = OPEN;
        let mut next_swap = OPEN;
        for (_, l) in &tracks {
            match live_at(l, now) {
                Some(i) => {
                    next_run = next_run.min(l.run_end(i, &deleted));
                    if l.replaced_next(i) && named.contains(&l.member(i)) {
                        next_swap = next_swap.min(deleted(l.member(i)));
                    }
                }
                None => next_run = next_run.min(l.next_run_after(now).unwrap_or(OPEN)),
            }
        }
        if next_swap <= next_run {
            return next_swap;
        }
        if next_run == OPEN {
            return OPEN;
        }
        now = next_run;
        let live = (0..stack.tables.len())
            .map(|t| {
                tracks
                    .iter()
                    .filter(|(table, _)| *table == t)
                    .filter_map(|(_, l)| live_at(l, now).map(|i| l.member(i)))
                    .collect::<Vec<_>>()
            })
            .find(|ms| !ms.is_empty());
        let selected = match live {
            Some(ms) => select(lattice, &ms),
            None => Selection::NoMethod,
        };
        if !same_selection(&selected, selection) {
            return now;
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
