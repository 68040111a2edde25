//! Reclamation and census of one cache.

use super::compiler::Compiler;
use super::CacheInner;
use crate::engine::CacheMaintenance;
use crate::sync::Arc;
use crate::types::Lattice;

impl<C: Compiler<L>, L: Lattice> CacheMaintenance for CacheInner<C, L> {
    fn reclaim(&self, horizon: u64) -> usize {
        let guard = self.engine.enter();
        let graph = self.engine.graph();
        let mut dropped = 0;
        let mut empty = Vec::new();
        for (_, entry) in self.slots.iter(&guard) {
            let slot = &entry.slot;
            // Most slots hold only versions still visible: nothing to drop, and the slot stays.
            // (A version published after this snapshot waits for the next reclamation.)
            if entry.newest.is_some() && entry.versions().all(|v| v.valid().max() > horizon) {
                slot.edges.prune_large(|d| graph.is_dead_if_free(*d));
                continue;
            }
            let mut state = slot.cell.lock();
            if state.is_retired() {
                continue;
            }
            let before = state.versions.len();
            state.versions.retain(|v| v.valid().max() > horizon);
            slot.edges.prune(|d| graph.is_dead_if_free(*d));
            if state.versions.len() != before {
                dropped += before - state.versions.len();
                slot.publish(self, &state, &guard);
            }
            let idle = state.versions.is_empty() && !state.has_job();
            drop(state);
            if idle {
                empty.push(Arc::clone(slot));
            }
        }
        for slot in empty {
            // Decided again under the slot's lock: a compilation or a dependency may have found
            // the slot since (see `crate::raw::slot`).
            let retired = slot.cell.retire_if_idle(
                || slot.edges.is_empty(),
                || {
                    let _ = self.slots.remove_if(
                        &slot.query(),
                        |_, entry| Arc::ptr_eq(&entry.slot, &slot),
                        &guard,
                    );
                },
            );
            dropped += usize::from(retired);
        }
        dropped
    }

    fn census(&self) -> (usize, usize) {
        let guard = self.engine.enter();
        let mut versions = 0;
        let mut slots = 0;
        for (_, entry) in self.slots.iter(&guard) {
            slots += 1;
            versions += entry.versions().count();
        }
        (slots, versions)
    }
}
