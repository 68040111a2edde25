//! The exact range of worlds a dispatch answer holds in.
//!
//! [`compute`](super::select::compute) bounds an answer's range by the events of every applicable
//! method: conservative at both ends. An answer whose range starts too late makes code compiled
//! against it in an older world look newer than it is (one valid version of a code instance per
//! world then closes it where the newer one starts); one that ends too early is asked again. The
//! sweeps here find where the answer really changes: directly from rival runs for a clear winner,
//! by selecting again at each event otherwise (bounded).

use super::select::{same_selection, select, Selection};
use crate::methods::{Lineage, Method, MethodLists, StackData, WRITINGS};
use crate::sync::Ordering;
use crate::types::{sig_subtype, Lattice};
use crate::world::OPEN;

/// The lineages of `lists` that apply to `args` in `stack`, each with the index of its table in
/// the stack: what [`exact_min`] and [`exact_max`] sweep over.
fn tracks<'l, L: Lattice>(
    lattice: &L,
    lists: &'l MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
) -> Vec<(usize, &'l Lineage<L>)> {
    stack
        .tables
        .iter()
        .enumerate()
        .flat_map(|(t, &table)| lists.lineages(table).map(move |l| (t, &**l)))
        .filter(|(_, l)| sig_subtype(lattice, args, l.signature()))
        .collect()
}

/// The methods an answer names: what a same-signature replacement changes it by.
fn named<L: Lattice>(selection: &Selection<L>) -> Vec<&Method<L>> {
    match selection {
        Selection::Found(m) => vec![m],
        Selection::NoMethod => Vec::new(),
        Selection::Ambiguous { candidate, rivals } => {
            std::iter::once(candidate).chain(rivals).collect()
        }
    }
}

fn deleted<L: Lattice>(m: &Method<L>) -> u64 {
    m.0.deleted.load(Ordering::Acquire)
}

/// The member of `l` live in `world`, if any.
fn live_at<L: Lattice>(l: &Lineage<L>, world: u64) -> Option<usize> {
    l.at(world).filter(|&i| world < deleted(l.member(i)))
}

/// The selection in `world` over the live members of `tracks` (the first table of the stack's
/// `tables` tables with a live applicable method decides).
fn select_at<L: Lattice>(
    lattice: &L,
    tracks: &[(usize, &Lineage<L>)],
    tables: usize,
    world: u64,
) -> Selection<L> {
    let live = (0..tables)
        .map(|t| {
            tracks
                .iter()
                .filter(|(table, _)| *table == t)
                .filter_map(|(_, l)| live_at(l, world).map(|i| l.member(i)))
                .collect::<Vec<_>>()
        })
        .find(|ms| !ms.is_empty());
    match live {
        Some(ms) => select(lattice, &ms),
        None => Selection::NoMethod,
    }
}

/// How many times [`exact_min`] and [`exact_max`] select again before settling for the
/// conservative bound. Only an ambiguity (or a lattice whose specificity is not antisymmetric)
/// takes that path, and a selection among `k` methods costs up to `k²` comparisons; a history of
/// thousands of methods must not make one miss cost thousands of selections.
const RESELECTIONS: usize = 64;
const _: () = assert!(RESELECTIONS > 0, "the sweeps must check at least one event");

/// Whether signature `a` beats `b` and `b` does not beat it back.
fn strictly_beats<L: Lattice>(lattice: &L, a: &[L::Type], b: &[L::Type]) -> bool {
    lattice.is_more_specific(a, b) && !lattice.is_more_specific(b, a)
}

/// The index (in the stack) of `m`'s table, if `m` is a clear winner in `world`: it strictly
/// beats every other live applicable method of its table. Then, over any range of worlds in
/// which `m` stays live, the answer stays `Found(m)` exactly as long as no *rival* run is live: a
/// run of a lineage in an earlier table of the stack, or a run in `m`'s table whose signature
/// `m` does not strictly beat. Any other method coming or going leaves `m` the winner (a
/// tournament over methods `m` strictly beats picks `m`). Rivalry is judged per run, not per
/// lineage: members of one lineage are type-equal, but a run written differently (a union of
/// tuples rather than a tuple of unions) can rank differently.
fn clear_winner<L: Lattice>(
    lattice: &L,
    tracks: &[(usize, &Lineage<L>)],
    m: &Method<L>,
    world: u64,
) -> Option<usize> {
    let (table, _) = tracks
        .iter()
        .find(|(_, l)| live_at(l, world).is_some_and(|i| l.member(i) == m))?;
    for &(t, l) in tracks.iter().filter(|(t, _)| t <= table) {
        if let Some(i) = live_at(l, world) {
            let other = l.member(i);
            if other != m && (t < *table || !strictly_beats(lattice, &m.0.sig, &other.0.sig)) {
                return None;
            }
        }
    }
    Some(*table)
}

/// Judges runs of the lineages of a clear winner `m` of table `table` (see [`clear_winner`]):
/// whether a run is a rival, by how it is written.
///
/// A lineage is first judged by its writings ([`Lineage::writings`]): if none is a rival, no run
/// is; if all are, its nearest run in range is. Only a lineage whose writings disagree, or that
/// has too many to track, is walked run by run, and each such step beyond the first few of a
/// lineage spends one of `budget` [`RIVAL_STEPS`]; once it is spent every run counts as a rival,
/// which only narrows the range. Runs written like the previous one reuse its verdict.
struct Rivalry<'a, L: Lattice> {
    lattice: &'a L,
    m: &'a Method<L>,
    table: usize,
    budget: usize,
    /// Steps left before the current lineage spends `budget`.
    free: usize,
    /// The previous verdict in the current lineage, with the signature it was for.
    last: Option<(&'a [L::Type], bool)>,
}

/// How a lineage's writings judge all of its runs.
#[derive(Clone, Copy)]
enum Runs {
    NoneRival,
    AllRival,
    /// Walk them.
    Mixed,
}

impl<'a, L: Lattice> Rivalry<'a, L> {
    fn new(lattice: &'a L, m: &'a Method<L>, table: usize) -> Self {
        Rivalry {
            lattice,
            m,
            table,
            budget: RIVAL_STEPS,
            free: 0,
            last: None,
        }
    }

    /// Starts on lineage `l`, of table `t`, judging it by its writings.
    fn lineage(&mut self, t: usize, l: &'a Lineage<L>) -> Runs {
        self.last = None;
        self.free = WRITINGS + 2;
        if t < self.table {
            return Runs::AllRival;
        }
        let Some(writings) = l.writings() else {
            return Runs::Mixed;
        };
        let (mut any, mut all) = (false, true);
        for w in writings {
            let rival = self.is_rival(t, w);
            any |= rival;
            all &= rival;
        }
        match (any, all) {
            (false, _) => Runs::NoneRival,
            (true, true) => Runs::AllRival,
            (true, false) => Runs::Mixed,
        }
    }

    /// The bounding world of the first of `runs` (nearest first: each run's first member and
    /// the world it ends or starts) that is a rival, among those `in_range` accepts. The lineage
    /// is judged only once a run lies in range: most have none.
    fn nearest(
        &mut self,
        t: usize,
        l: &'a Lineage<L>,
        runs: impl Iterator<Item = (usize, u64)>,
        in_range: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        let mut judged = None;
        for (first, at) in runs {
            if !in_range(at) {
                return None;
            }
            match *judged.get_or_insert_with(|| self.lineage(t, l)) {
                Runs::NoneRival => return None,
                Runs::AllRival => return Some(at),
                Runs::Mixed if self.is_rival(t, l.member(first)) => return Some(at),
                Runs::Mixed => {}
            }
        }
        None
    }

    /// Whether the run whose first member is `first`, of the current lineage, is a rival.
    fn is_rival(&mut self, t: usize, first: &'a Method<L>) -> bool {
        if self.free > 0 {
            self.free -= 1;
        } else if self.budget > 0 {
            self.budget -= 1;
        } else {
            return true;
        }
        if t < self.table {
            return true;
        }
        let sig: &[L::Type] = &first.0.sig;
        if let Some((last, verdict)) = self.last {
            if last == sig {
                return verdict;
            }
        }
        let verdict = !strictly_beats(self.lattice, &self.m.0.sig, sig);
        self.last = Some((sig, verdict));
        verdict
    }
}

/// Whether a method live in `world` in `candidate`'s table beats `candidate`.
fn candidate_beaten<L: Lattice>(
    lattice: &L,
    tracks: &[(usize, &Lineage<L>)],
    candidate: &Method<L>,
    world: u64,
) -> bool {
    let Some(&(table, _)) = tracks
        .iter()
        .find(|(_, l)| live_at(l, world).is_some_and(|i| l.member(i) == candidate))
    else {
        return true;
    };
    tracks
        .iter()
        .filter(|(t, _)| *t == table)
        .filter_map(|(_, l)| live_at(l, world).map(|i| l.member(i)))
        .any(|o| o != candidate && lattice.is_more_specific(&o.0.sig, &candidate.0.sig))
}

/// Runs one range may look at beyond the first few of each lineage (see [`Rivalry`]).
const RIVAL_STEPS: usize = 4096;

/// The first world of the run of worlds ending at `world` in which the answer is `selection`,
/// given `compute`'s lower bound `min`, which is conservative (the latest event of any applicable
/// method; see the module docs for what a late start costs).
///
/// `min` is already exact when it is the definition of a method the answer names (before it, the
/// answer could not name it), and for no method (its events are deletions of applicable methods,
/// live before). A clear winner's start is found directly: the latest end of a rival's run (see
/// [`clear_winner`]), or the winner's own definition. Otherwise this sweeps backward over the
/// applicable lineages' events, the mirror of [`exact_max`], selecting again before each run
/// boundary, at most [`RESELECTIONS`] times.
pub(crate) fn exact_min<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    selection: &Selection<L>,
    min: u64,
) -> u64 {
    let defined_at_min = |m: &Method<L>| m.0.defined == min;
    let explained = match selection {
        Selection::NoMethod => true,
        Selection::Found(m) => defined_at_min(m),
        Selection::Ambiguous { candidate, rivals } => {
            defined_at_min(candidate) || rivals.iter().any(defined_at_min)
        }
    };
    if min <= 1 || explained {
        return min;
    }
    let tracks = tracks(lattice, lists, stack, args);
    if let Selection::Found(m) = selection {
        if let Some(table) = clear_winner(lattice, &tracks, m, world) {
            // The latest end of a rival run, or m's own definition.
            let mut rivalry = Rivalry::new(lattice, m, table);
            let mut start = m.0.defined;
            for &(t, l) in tracks.iter().filter(|(t, _)| *t <= table) {
                let runs = l.runs_ended_by(world, deleted);
                if let Some(end) = rivalry.nearest(t, l, runs, |end| end > start) {
                    start = end;
                }
            }
            return start;
        }
    }
    let named = named(selection);
    let mut now = world;
    for _ in 0..RESELECTIONS {
        // The latest event at or before `now`: a run starting or ending, or a member the answer
        // names replacing its predecessor.
        let mut last_run = 0;
        let mut last_swap = 0;
        let mut last_other_swap = 0;
        for (_, l) in &tracks {
            match l.at(now) {
                Some(i) if now < deleted(l.member(i)) => {
                    let start = l.run_start(i);
                    last_run = last_run.max(l.member(start).0.defined);
                    if start != i {
                        let defined = l.member(i).0.defined;
                        if named.contains(&l.member(i)) {
                            last_swap = last_swap.max(defined);
                        } else {
                            last_other_swap = last_other_swap.max(defined);
                        }
                    }
                }
                Some(i) => last_run = last_run.max(deleted(l.member(i))),
                None => {}
            }
        }
        // A replacement makes its method younger. That changes an ambiguity only when every
        // applicable method is beaten, so that the candidate is the oldest of them: before the
        // replacement, the replaced method may have been older than the candidate.
        if last_other_swap > last_run.max(last_swap)
            && matches!(selection, Selection::Ambiguous { candidate, .. }
                if candidate_beaten(lattice, &tracks, candidate, now))
        {
            last_run = last_other_swap;
        }
        if last_swap > 0 && last_swap >= last_run {
            return last_swap;
        }
        if last_run <= 1 {
            return 1;
        }
        let before = last_run - 1;
        if !same_selection(
            &select_at(lattice, &tracks, stack.tables.len(), before),
            selection,
        ) {
            return last_run;
        }
        now = before;
    }
    // Past the bound: the answer is known to hold from the last world checked.
    now
}

/// The first world after `world` in which the answer differs from `selection`, or `OPEN` if it
/// never does in `lists`. `compute`'s upper bound is conservative (any applicable method's
/// event); this finds the event that really changes the answer, so that an answer asked for an
/// older world is not closed by, say, a less specific method added later.
///
/// A clear winner's end is found directly: its own replacement or deletion, or the first run of a
/// rival (see [`clear_winner`]). Otherwise this sweeps forward over the events of the applicable
/// lineages. Two kinds matter: a lineage starting or ending a run (becoming live or dead, or
/// changing how its signature is written), after which the answer is selected again, at most
/// [`RESELECTIONS`] times; and a member of a lineage the answer names being replaced, which
/// changes the answer. Replacements within other lineages change nothing (same signature, same
/// ranking) and are skipped, so a method redefined `n` times costs `O(log n)` here, not `n`
/// selections.
pub(crate) fn exact_max<L: Lattice>(
    lattice: &L,
    lists: &MethodLists<L>,
    stack: &StackData,
    args: &[L::Type],
    world: u64,
    selection: &Selection<L>,
) -> u64 {
    let tracks = tracks(lattice, lists, stack, args);
    if let Selection::Found(m) = selection {
        if let Some(table) = clear_winner(lattice, &tracks, m, world) {
            // The earliest start of a rival run, or m's own replacement or deletion.
            let mut rivalry = Rivalry::new(lattice, m, table);
            let mut end = deleted(m);
            for &(t, l) in tracks.iter().filter(|(t, _)| *t <= table) {
                if let Some(start) = rivalry.nearest(t, l, l.runs_after(world), |start| start < end)
                {
                    end = start;
                }
            }
            return end;
        }
    }
    let named = named(selection);
    let mut now = world;
    for _ in 0..RESELECTIONS {
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
        if !same_selection(
            &select_at(lattice, &tracks, stack.tables.len(), now),
            selection,
        ) {
            return now;
        }
    }
    // Past the bound: close where the answer was last checked to hold until.
    now
}
