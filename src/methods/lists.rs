//! A function's methods as dispatch reads them: per table, grouped into lineages.
//!
//! A **lineage** is the methods of one table whose signatures are type-equal, in the order they
//! were defined: each one replaced the previous one, or was defined after the previous one was
//! deleted. Members of a lineage apply to exactly the same calls, and their lifetimes
//! `[defined, deleted)` follow one another without overlapping, so at most one is live in any
//! world. Members *written* alike also rank alike against every other method; a type-equal
//! signature written differently (`Tuple{Union{A, B}}` as `Union{Tuple{A}, Tuple{B}}`) may not,
//! so it starts a new run (see `run_starts`). Dispatch therefore checks applicability once per
//! lineage and finds the member it wants by binary search on the definition worlds, whatever the
//! length of the function's history: a function redefined 10^5 times costs a dispatch in an old
//! world the same as one defined once.
//!
//! Lists are immutable and persistent (`imbl`): a definition makes the next snapshot in
//! `O(log n)`, sharing structure with the previous one, whether `n` counts the function's methods
//! or the tables it has methods in (an ordered persistent map from table to lineages).

use smallvec::SmallVec;

use crate::methods::Method;
use crate::sync::{Arc, Ordering};
use crate::types::Lattice;

/// The type-equal methods of one table, in definition order (see the module docs).
pub(crate) struct Lineage<L: Lattice> {
    members: imbl::Vector<Method<L>>,
    /// The members that start a *run*: the first, one defined after its predecessor was deleted,
    /// and one whose signature is written differently from its predecessor's (type-equal, but
    /// not the same value). Within a run each member replaced the one before with the very same
    /// signature, so from the run's start to its last member's deletion the lineage is live and
    /// ranks exactly the same; only the identity of its live member changes.
    run_starts: imbl::Vector<u32>,
    /// The distinct ways its runs are written, each as the index of the first member written
    /// that way, while there are at most [`WRITINGS`] (`None` past that). Runs written alike rank
    /// alike, so a range asks the lattice once per writing instead of walking the runs: a method
    /// deleted and defined again `n` times, written one of a few ways, costs a range `O(1)` runs.
    writings: Option<SmallVec<[u32; WRITINGS]>>,
}

/// Most distinct writings a lineage keeps track of.
pub(crate) const WRITINGS: usize = 4;

impl<L: Lattice> Clone for Lineage<L> {
    fn clone(&self) -> Self {
        Lineage {
            members: self.members.clone(),
            run_starts: self.run_starts.clone(),
            writings: self.writings.clone(),
        }
    }
}

impl<L: Lattice> Lineage<L> {
    fn new(first: Method<L>) -> Self {
        Lineage {
            members: imbl::Vector::unit(first),
            run_starts: imbl::Vector::unit(0),
            writings: Some(SmallVec::from_elem(0, 1)),
        }
    }

    /// The signature every member shares (up to type equality).
    pub(crate) fn signature(&self) -> &[L::Type] {
        &self.members[0].0.sig
    }

    /// The newest member.
    pub(crate) fn last(&self) -> &Method<L> {
        self.members.back().expect("a lineage has a member")
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn member(&self, i: usize) -> &Method<L> {
        &self.members[i]
    }

    /// The index of the last member defined at or before `world`.
    pub(crate) fn at(&self, world: u64) -> Option<usize> {
        let after = partition_point(self.members.len(), |i| self.members[i].0.defined <= world);
        after.checked_sub(1)
    }

    /// This lineage with `m` appended; `replaces` says whether `m` replaces the live newest
    /// member or comes after it was deleted (see `run_starts` for when a new run starts).
    fn with(&self, m: Method<L>, replaces: bool) -> Self {
        let mut next = self.clone();
        if !replaces || m.0.sig != self.last().0.sig {
            let index = next.members.len() as u32;
            next.run_starts.push_back(index);
            next.writings = self.writings.as_ref().and_then(|ws| {
                let mut ws = ws.clone();
                if !ws
                    .iter()
                    .any(|&w| self.members[w as usize].0.sig == m.0.sig)
                {
                    if ws.len() == WRITINGS {
                        return None;
                    }
                    ws.push(index);
                }
                Some(ws)
            });
        }
        next.members.push_back(m);
        next
    }

    /// The world the run containing member `i` ends: its last member's deletion (`OPEN` while
    /// live), as `deleted` reports deletions.
    ///
    /// A binary search over the run starts: `O(log² n)` with `n` members (an index into the
    /// persistent vector is `O(log n)`), however many runs the lineage has.
    pub(crate) fn run_end(&self, i: usize, deleted: &impl Fn(&Method<L>) -> u64) -> u64 {
        let next = partition_point(self.run_starts.len(), |j| self.run_starts[j] as usize <= i);
        let next_start = self
            .run_starts
            .get(next)
            .map_or(self.members.len(), |&s| s as usize);
        deleted(&self.members[next_start - 1])
    }

    /// The index of the member that starts the run containing member `i`. A binary search over
    /// the run starts, like [`Lineage::run_end`].
    pub(crate) fn run_start(&self, i: usize) -> usize {
        let next = partition_point(self.run_starts.len(), |j| self.run_starts[j] as usize <= i);
        self.run_starts[next - 1] as usize
    }

    /// The first member of each distinct way the runs are written, if there are at most
    /// [`WRITINGS`].
    pub(crate) fn writings(&self) -> Option<impl Iterator<Item = &Method<L>>> {
        let ws = self.writings.as_ref()?;
        Some(ws.iter().map(|&w| &self.members[w as usize]))
    }

    /// The runs that ended at or before `world`, latest first: each as the index of its first
    /// member (every member of a run has that member's signature) and the world it ended.
    pub(crate) fn runs_ended_by<'a>(
        &'a self,
        world: u64,
        deleted: impl Fn(&Method<L>) -> u64 + 'a,
    ) -> impl Iterator<Item = (usize, u64)> + 'a {
        let started = partition_point(self.run_starts.len(), |k| {
            self.members[self.run_starts[k] as usize].0.defined <= world
        });
        (0..started).rev().filter_map(move |k| {
            let first = self.run_starts[k] as usize;
            let next = self
                .run_starts
                .get(k + 1)
                .map_or(self.members.len(), |&s| s as usize);
            let end = deleted(&self.members[next - 1]);
            (end <= world).then_some((first, end))
        })
    }

    /// The runs that start after `world`, earliest first: each as the index of its first member
    /// and the world it starts.
    pub(crate) fn runs_after(&self, world: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let after = partition_point(self.run_starts.len(), |k| {
            self.members[self.run_starts[k] as usize].0.defined <= world
        });
        (after..self.run_starts.len()).map(move |k| {
            let first = self.run_starts[k] as usize;
            (first, self.members[first].0.defined)
        })
    }

    /// The definition world of the first run that starts after `world`, if any.
    pub(crate) fn next_run_after(&self, world: u64) -> Option<u64> {
        let after = partition_point(self.run_starts.len(), |i| {
            self.members[self.run_starts[i] as usize].0.defined <= world
        });
        self.run_starts
            .get(after)
            .map(|&s| self.members[s as usize].0.defined)
    }

    /// Whether member `i + 1` replaced member `i` in the same run (same signature, no gap). A
    /// binary search over the run starts, like [`Lineage::run_end`].
    pub(crate) fn replaced_next(&self, i: usize) -> bool {
        let next = (i + 1) as u32;
        let at = partition_point(self.run_starts.len(), |j| self.run_starts[j] < next);
        i + 1 < self.members.len() && self.run_starts.get(at) != Some(&next)
    }

    /// This lineage without the members no world at or after `horizon` can see, which are its
    /// oldest ones; `None` if none is left.
    fn visible_from(&self, horizon: u64) -> Option<Self> {
        let dropped = partition_point(self.members.len(), |i| {
            self.members[i].0.deleted.load(Ordering::Acquire) <= horizon
        });
        if dropped == self.members.len() {
            return None;
        }
        let members = self.members.skip(dropped);
        let mut run_starts: imbl::Vector<u32> = self
            .run_starts
            .iter()
            .filter(|&&s| s as usize >= dropped)
            .map(|&s| s - dropped as u32)
            .collect();
        if run_starts.front() != Some(&0) {
            run_starts.push_front(0);
        }
        let mut writings: Option<SmallVec<[u32; WRITINGS]>> = Some(SmallVec::new());
        for &start in run_starts.iter() {
            let Some(ws) = writings.as_mut() else { break };
            let sig = &members[start as usize].0.sig;
            if !ws.iter().any(|&w| members[w as usize].0.sig == *sig) {
                if ws.len() == WRITINGS {
                    writings = None;
                } else {
                    ws.push(start);
                }
            }
        }
        Some(Lineage {
            members,
            run_starts,
            writings,
        })
    }
}

/// The lineages of one table, in the order they began.
type TableLineages<L> = imbl::Vector<Arc<Lineage<L>>>;

/// One function's methods, per table, as lineages (see the module docs), as of one mutation.
pub(crate) struct MethodLists<L: Lattice> {
    per_table: imbl::OrdMap<u32, TableLineages<L>>,
}

impl<L: Lattice> Default for MethodLists<L> {
    fn default() -> Self {
        MethodLists {
            per_table: imbl::OrdMap::new(),
        }
    }
}

impl<L: Lattice> MethodLists<L> {
    /// The lineages of `table`, in the order they began.
    pub(crate) fn lineages(&self, table: u32) -> impl Iterator<Item = &Arc<Lineage<L>>> {
        self.per_table.get(&table).into_iter().flatten()
    }

    /// Lineage `index` of `table`.
    pub(crate) fn lineage(&self, table: u32, index: usize) -> Option<&Lineage<L>> {
        self.per_table
            .get(&table)
            .and_then(|lineages| lineages.get(index))
            .map(|l| &**l)
    }

    /// The number of lineages of `table`.
    pub(crate) fn lineage_count(&self, table: u32) -> usize {
        self.per_table
            .get(&table)
            .map_or(0, |lineages| lineages.len())
    }

    /// These lists with `added` appended to lineage `index` of `table` (replacing its newest
    /// member if `replaces`), or to a new lineage if `index` is `None`.
    pub(crate) fn with_added(
        &self,
        table: u32,
        index: Option<usize>,
        added: Method<L>,
        replaces: bool,
    ) -> MethodLists<L> {
        let mut per_table = self.per_table.clone();
        let lineages = per_table.entry(table).or_default();
        match index.and_then(|i| {
            lineages
                .get(i)
                .map(|l| (i, l.with(added.clone(), replaces)))
        }) {
            Some((i, grown)) => {
                lineages.set(i, Arc::new(grown));
            }
            None => lineages.push_back(Arc::new(Lineage::new(added))),
        }
        MethodLists { per_table }
    }

    /// Every method, live or kept for older worlds.
    pub(crate) fn len(&self) -> usize {
        self.per_table
            .values()
            .flat_map(|lineages| lineages.iter())
            .map(|l| l.len())
            .sum()
    }

    /// These lists without the methods no world at or after `horizon` can see, or `None` if
    /// every method is still visible (nothing to drop, nothing allocated).
    pub(crate) fn visible_from(&self, horizon: u64) -> Option<MethodLists<L>> {
        let oldest_gone =
            |l: &Lineage<L>| l.members[0].0.deleted.load(Ordering::Acquire) <= horizon;
        if !self
            .per_table
            .values()
            .any(|lineages| lineages.iter().any(|l| oldest_gone(l)))
        {
            return None;
        }
        Some(MethodLists {
            per_table: self
                .per_table
                .iter()
                .map(|(&t, lineages)| {
                    let kept: TableLineages<L> = lineages
                        .iter()
                        .filter_map(|l| {
                            if oldest_gone(l) {
                                l.visible_from(horizon).map(Arc::new)
                            } else {
                                Some(Arc::clone(l))
                            }
                        })
                        .collect();
                    (t, kept)
                })
                .filter(|(_, lineages)| !lineages.is_empty())
                .collect(),
        })
    }

    /// Every `(table, lineage index, signature key)`, for indexing the lineages.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (u32, usize, u64)> + '_ {
        self.per_table.iter().flat_map(|(&t, lineages)| {
            lineages
                .iter()
                .enumerate()
                .map(move |(i, l)| (t, i, l.members[0].0.signature_key))
        })
    }
}

/// The first index in `0..len` where `pred` is false, `pred` being true then false along it.
fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}
