//! The dispatch cache: every cached answer, by `(function, stack, argument types)`, each valid over
//! its world range. Lock-free to read, and sound whatever the lattice's `Hash` does.
//!
//! The lock-free map (papaya) is keyed by the 64-bit hash of the call's key, not by the key
//! itself: the answers whose keys share a hash hang off one entry, in a chain of immutable links
//! compared with the types' `Eq`. The map so only ever holds distinct integers (used as their own
//! hash: they are one), and a degenerate but legal `Hash` of the argument types (every value
//! hashing alike, say) costs a walk along a chain, as it would in any hash table, instead of
//! growing the lock-free table without bound: papaya grows a table until every key is within a
//! probe limit of its home slot, which keys with one hash never are.
//!
//! One key can have several answers, one per range of worlds it was asked in: the answer valid in
//! the newest world (registered with its function, see [`super::recheck`]) and answers asked for
//! older worlds that a later mutation changed. A lookup takes the first answer of its key whose
//! validity contains the world asked in; an answer is exact for every world of its range, so an
//! answer computed for one old world serves every other world of its range too. New answers for
//! the newest world go first, so a repeated dispatch in the newest world is one probe and one
//! comparison however many older answers the key has; answers for older worlds go second.
//!
//! A change to a chain replaces its first link only (the rest is shared, reference-counted), so
//! adding an answer costs the same however long the chain; reclamation rebuilds the chains that
//! hold answers no retained world can be given.

use std::hash::Hash;

use papaya::{Compute, Operation};

use super::node::DispatchNode;
use super::signature::{args_hash, Signature};
use crate::sync::{Arc, Prehashed};
use crate::types::Lattice;

/// The lock-free table of chains, by the hash of their calls' keys.
type Chains<L> = papaya::HashMap<u64, Link<L>, Prehashed>;

/// The key of a cached answer: function, stack and argument types.
struct Key<T> {
    func: u32,
    stack: u32,
    /// Shared, so that a link is copied without cloning user values.
    args: Arc<[T]>,
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        Key {
            func: self.func,
            stack: self.stack,
            args: Arc::clone(&self.args),
        }
    }
}

/// A call as the cache is asked about it, and its hash.
pub(super) struct Query<'a, T> {
    func: u32,
    stack: u32,
    args: &'a [T],
    /// The interned tuple `args` is, when the call came with a signature: recognized in a key by
    /// address, and shared by the key a miss caches.
    interned: Option<&'a Arc<[T]>>,
    hash: u64,
}

impl<'a, T: Hash + Eq> Query<'a, T> {
    /// The query for `f(args...)` through `stack`, hashing the argument types (user code) once.
    #[inline]
    pub(super) fn new(func: u32, stack: u32, args: &'a [T]) -> Self {
        Query {
            func,
            stack,
            args,
            interned: None,
            hash: call_hash(func, stack, args_hash(args)),
        }
    }

    /// The query for `f` called with an interned signature: hashes two integers, no user code.
    #[inline]
    pub(super) fn interned<L: Lattice<Type = T>>(
        func: u32,
        stack: u32,
        signature: &'a Signature<L>,
    ) -> Self {
        Query {
            func,
            stack,
            args: &signature.args,
            interned: Some(&signature.args),
            hash: call_hash(func, stack, signature.hash),
        }
    }

    /// Whether `key` is this call's key. Compares argument types (user code) unless the key holds
    /// this query's interned tuple itself.
    #[inline(always)]
    fn matches(&self, key: &Key<T>) -> bool {
        self.func == key.func
            && self.stack == key.stack
            && (self.interned.is_some_and(|i| Arc::ptr_eq(i, &key.args)) || *self.args == *key.args)
    }

    /// The argument types as a shared tuple: the interned one, or a copy of the slice.
    pub(super) fn shared_args(&self) -> Arc<[T]>
    where
        T: Clone,
    {
        match self.interned {
            Some(interned) => Arc::clone(interned),
            None => self.args.into(),
        }
    }

    /// The key of an answer to this query: it holds the interned tuple if the query came with
    /// one (so that later calls with it match by address), or else the answer's copy of the types.
    fn key<L: Lattice<Type = T>>(&self, node: &DispatchNode<L>) -> Key<T> {
        Key {
            func: self.func,
            stack: self.stack,
            args: Arc::clone(self.interned.unwrap_or(&node.args)),
        }
    }
}

/// The hash of a call: function and stack mixed into the hash of its argument types, so that a
/// call by slice and one by signature of the same types hash alike. One multiply and rotate, as a
/// step of Fx: the rotation brings the product's best-mixed high bits down to the low bits the
/// table indexes by, so calls of different functions with the same types spread.
#[inline]
fn call_hash(func: u32, stack: u32, args_hash: u64) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    (args_hash ^ (u64::from(func) << 32 | u64::from(stack)))
        .wrapping_mul(K)
        .rotate_left(26)
}

/// One cached answer, and the rest of its chain: the answers whose keys hash alike.
struct Link<L: Lattice> {
    key: Key<L::Type>,
    node: Arc<DispatchNode<L>>,
    next: Option<Arc<Link<L>>>,
}

impl<L: Lattice> Link<L> {
    /// This link and those after it.
    fn iter(&self) -> impl Iterator<Item = &Link<L>> {
        std::iter::successors(Some(self), |link| link.next.as_deref())
    }

    /// A copy of this link sharing its answer and the rest of the chain. Clones no user value.
    fn copy(&self, next: Option<Arc<Link<L>>>) -> Link<L> {
        Link {
            key: self.key.clone(),
            node: Arc::clone(&self.node),
            next,
        }
    }
}

impl<L: Lattice> Drop for Link<L> {
    /// Drops the chain iteratively: a long chain must not recurse once per link.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(link) = next {
            next = Arc::into_inner(link).and_then(|mut link| link.next.take());
        }
    }
}

/// Every cached answer of one engine (see the module docs).
pub(super) struct Answers<L: Lattice> {
    chains: Chains<L>,
}

impl<L: Lattice> Answers<L> {
    pub(super) fn new(collector: &Arc<seize::Collector>) -> Self {
        Answers {
            chains: papaya::HashMap::builder()
                .hasher(Prehashed)
                .shared_collector(Arc::clone(collector))
                .build(),
        }
    }

    /// The cached answer to `query` valid in `world`, if there is one.
    #[inline(always)]
    pub(super) fn find<'g>(
        &'g self,
        guard: &'g seize::LocalGuard<'_>,
        query: &Query<'_, L::Type>,
        world: u64,
    ) -> Option<&'g Arc<DispatchNode<L>>> {
        let mut link = self.chains.get(&query.hash, guard)?;
        loop {
            if query.matches(&link.key) && link.node.validity.contains(world) {
                return Some(&link.node);
            }
            link = link.next.as_deref()?;
        }
    }

    /// Caches `node`, an answer registered as valid in the newest world, first in its chain
    /// (unless it is cached already), and returns the cached answer.
    pub(super) fn insert_current<'g>(
        &'g self,
        guard: &'g seize::LocalGuard<'_>,
        query: &Query<'_, L::Type>,
        node: Arc<DispatchNode<L>>,
    ) -> &'g Arc<DispatchNode<L>> {
        let key = match self.first_of_chain(guard, query, &node) {
            Ok(first) => return &first.node,
            Err(key) => key,
        };
        let computed = self.chains.compute(
            query.hash,
            |chain| match chain {
                None => Operation::Insert(Link {
                    key: key.clone(),
                    node: Arc::clone(&node),
                    next: None,
                }),
                Some((_, first)) => match first.iter().find(|l| Arc::ptr_eq(&l.node, &node)) {
                    Some(cached) => Operation::Abort(&cached.node),
                    None => Operation::Insert(Link {
                        key: key.clone(),
                        node: Arc::clone(&node),
                        next: Some(Arc::new(first.copy(first.next.clone()))),
                    }),
                },
            },
            guard,
        );
        match computed {
            Compute::Inserted(_, first)
            | Compute::Updated {
                new: (_, first), ..
            } => &first.node,
            Compute::Aborted(cached) => cached,
            Compute::Removed(..) => unreachable!("inserting never removes"),
        }
    }

    /// Caches `node`, an answer for `world` that a later mutation changed, second in its chain
    /// (behind the answer for the newest world), unless an answer of the same key valid in `world`
    /// is cached already; returns the cached answer.
    pub(super) fn insert_older<'g>(
        &'g self,
        guard: &'g seize::LocalGuard<'_>,
        query: &Query<'_, L::Type>,
        world: u64,
        node: Arc<DispatchNode<L>>,
    ) -> &'g Arc<DispatchNode<L>> {
        let key = match self.first_of_chain(guard, query, &node) {
            Ok(first) => return &first.node,
            Err(key) => key,
        };
        let computed = self.chains.compute(
            query.hash,
            |chain| match chain {
                None => Operation::Insert(Link {
                    key: key.clone(),
                    node: Arc::clone(&node),
                    next: None,
                }),
                Some((_, first)) => match first
                    .iter()
                    .find(|l| query.matches(&l.key) && l.node.validity.contains(world))
                {
                    Some(cached) => Operation::Abort(&cached.node),
                    None => Operation::Insert(first.copy(Some(Arc::new(Link {
                        key: key.clone(),
                        node: Arc::clone(&node),
                        next: first.next.clone(),
                    })))),
                },
            },
            guard,
        );
        match computed {
            Compute::Inserted(_, first) => &first.node,
            Compute::Updated {
                new: (_, first), ..
            } => &first.next.as_deref().expect("inserted second").node,
            Compute::Aborted(cached) => cached,
            Compute::Removed(..) => unreachable!("inserting never removes"),
        }
    }

    /// Starts a chain with `node` if no call with the query's hash has one; otherwise returns the
    /// key for the caller to add `node` to the existing chain. A new chain is inserted, not
    /// computed: papaya grows its table as entries are inserted, and a table filled through
    /// `compute` alone is left crowded, which lengthens every probe of it.
    fn first_of_chain<'g>(
        &'g self,
        guard: &'g seize::LocalGuard<'_>,
        query: &Query<'_, L::Type>,
        node: &Arc<DispatchNode<L>>,
    ) -> Result<&'g Link<L>, Key<L::Type>> {
        let key = query.key(node);
        if self.chains.get(&query.hash, guard).is_some() {
            return Err(key);
        }
        let first = Link {
            key: key.clone(),
            node: Arc::clone(node),
            next: None,
        };
        self.chains
            .try_insert(query.hash, first, guard)
            .map_err(|_| key)
    }

    /// Drops every answer `stale` says no retained world can be given. Returns `(dropped, kept)`.
    /// Runs no user code but the answers' destructors, deferred until no reader can see them.
    pub(super) fn retain(&self, stale: impl Fn(&DispatchNode<L>) -> bool) -> (usize, usize) {
        let guard = self.chains.guard();
        let (mut dropped, mut kept) = (0, 0);
        for (&hash, first) in self.chains.iter(&guard) {
            if !first.iter().any(|l| stale(&l.node)) {
                kept += first.iter().count();
                continue;
            }
            // The chain may have grown since: rebuild from what it holds when replaced.
            let mut counts = (0, 0);
            self.chains.compute(
                hash,
                |chain| {
                    let Some((_, first)) = chain else {
                        counts = (0, 0);
                        return Operation::Abort(());
                    };
                    let live: Vec<&Link<L>> = first.iter().filter(|l| !stale(&l.node)).collect();
                    let total = first.iter().count();
                    counts = (total - live.len(), live.len());
                    let mut rest = None;
                    for link in live.iter().skip(1).rev() {
                        rest = Some(Arc::new(link.copy(rest)));
                    }
                    match live.first() {
                        Some(first) => Operation::Insert(first.copy(rest)),
                        None => Operation::Remove,
                    }
                },
                &guard,
            );
            dropped += counts.0;
            kept += counts.1;
        }
        (dropped, kept)
    }

    /// The number of cached answers.
    pub(super) fn len(&self) -> usize {
        let guard = self.chains.guard();
        self.chains
            .iter(&guard)
            .map(|(_, first)| first.iter().count())
            .sum()
    }
}
