//! What the scheduler knows between passes: every node's load and the tasks that may wait
//! for a node, kept from the store's events, so a pass costs the tasks it places rather
//! than a walk over every task in the swarm. Counted afresh from the store on the first
//! pass, after a lag or a resync, and after a pass whose write failed.

use std::collections::{BTreeSet, HashMap};

use shoal_proto::Task;

use super::filter::{NodeLoad, Share};
use super::{decide, occupies, unplaced, Decision};
use crate::store::{Event, ReadTx, Stored};

#[derive(Default)]
pub(super) struct Loads {
    nodes: HashMap<String, NodeLoad>,
    /// Every task counted on a node, and what it takes there (given back when it changes).
    shares: HashMap<String, Share>,
    /// Tasks that waited for a node when last seen.
    waiting: BTreeSet<String>,
    /// Counted afresh from the store, and kept since.
    counted: bool,
}

impl Loads {
    /// Take in one store event; whether it may call for a pass.
    pub(super) fn note(&mut self, event: &Event) -> bool {
        match event {
            Event::Resync => self.invalidate(),
            Event::Created(o) | Event::Updated(o) => match o {
                Stored::Task(t) => self.track(t),
                Stored::Node(n) => {
                    self.nodes.entry(n.id.clone()).or_default();
                }
                _ => return false,
            },
            Event::Removed(o) => match o {
                Stored::Task(t) => {
                    self.untrack(&t.id);
                    self.waiting.remove(&t.id);
                }
                // Its tasks stay counted there (until their own events): a node removed
                // is no candidate, and one that comes back has them still.
                Stored::Node(_) => {}
                _ => return false,
            },
        }
        // A task that waits, or a change that may make room for one.
        true
    }

    /// The counts may be wrong: count afresh before the next pass.
    pub(super) fn invalidate(&mut self) {
        self.counted = false;
    }

    /// Count every node's load and the waiting tasks from `r`.
    pub(super) fn rebuild(&mut self, r: &ReadTx<'_>) {
        self.nodes = r
            .nodes()
            .map(|n| (n.id.clone(), NodeLoad::default()))
            .collect();
        self.shares.clear();
        self.waiting.clear();
        for task in r.tasks() {
            self.track(task);
        }
        self.counted = true;
    }

    /// Decide for every waiting task, counting each placement in.
    pub(super) fn plan(&mut self, r: &ReadTx<'_>) -> Vec<(Task, Decision)> {
        if !self.counted {
            self.rebuild(r);
        }
        let mut waiting: Vec<&Task> = self
            .waiting
            .iter()
            .filter_map(|id| r.task(id))
            .filter(|t| unplaced(t))
            .collect();
        if waiting.is_empty() {
            return Vec::new();
        }
        waiting.sort_by(|a, b| (&a.service_id, a.slot, &a.id).cmp(&(&b.service_id, b.slot, &b.id)));
        decide(r, &mut self.nodes, &mut self.shares, waiting)
    }

    /// Every node's load (an empty load is no load) and the waiting tasks, to compare
    /// with a count afresh.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (HashMap<String, NodeLoad>, BTreeSet<String>) {
        let loaded = self
            .nodes
            .iter()
            .filter(|(_, load)| **load != NodeLoad::default())
            .map(|(id, load)| (id.clone(), load.clone()))
            .collect();
        (loaded, self.waiting.clone())
    }

    fn track(&mut self, task: &Task) {
        self.untrack(&task.id);
        if occupies(task) {
            let share = Share::of(task);
            self.nodes
                .entry(share.node_id.clone())
                .or_default()
                .add_share(&share);
            self.shares.insert(task.id.clone(), share);
        }
        if unplaced(task) {
            self.waiting.insert(task.id.clone());
        } else {
            self.waiting.remove(&task.id);
        }
    }

    fn untrack(&mut self, task_id: &str) {
        if let Some(share) = self.shares.remove(task_id) {
            if let Some(load) = self.nodes.get_mut(&share.node_id) {
                load.remove_share(&share);
            }
        }
    }
}
