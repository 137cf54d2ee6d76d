//! What the allocator may have to do, kept from the store's events between passes: the
//! nodes, services and tasks that may wait for an address. A pass then looks at those
//! rather than walking every task in the swarm. Everything is walked afresh on the first
//! pass, after a lag or a resync, when a network changes, and after a pass whose write
//! failed.

use std::collections::BTreeSet;

use shoal_proto::{Node, Service, Task};

use super::{router_settled, vips_settled, waits};
use crate::store::{Event, ReadTx, Stored};

pub(super) struct Pending {
    /// Walk everything on the next pass.
    all: bool,
    nodes: BTreeSet<String>,
    services: BTreeSet<String>,
    tasks: BTreeSet<String>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            all: true,
            nodes: BTreeSet::new(),
            services: BTreeSet::new(),
            tasks: BTreeSet::new(),
        }
    }
}

/// What one pass is to look at, as `r` has it.
pub(super) struct Work {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub tasks: Vec<Task>,
}

impl Pending {
    /// Take in one store event; whether it calls for a pass: something new may wait, or
    /// something already waits and any change (an address freed) may let it through.
    pub(super) fn note(&mut self, event: &Event) -> bool {
        let added = match event {
            Event::Resync => {
                self.invalidate();
                true
            }
            Event::Created(o) | Event::Updated(o) => match o {
                Stored::Task(t) => keep(&mut self.tasks, &t.id, waits(t)),
                Stored::Service(s) => keep(&mut self.services, &s.id, !vips_settled(s)),
                // Whether its router is settled depends on the ingress network: judged
                // in the pass.
                Stored::Node(n) => keep(&mut self.nodes, &n.id, true),
                Stored::Network(_) => {
                    self.invalidate();
                    true
                }
                _ => return false,
            },
            Event::Removed(o) => match o {
                Stored::Task(t) => keep(&mut self.tasks, &t.id, false),
                Stored::Service(s) => keep(&mut self.services, &s.id, false),
                Stored::Node(n) => keep(&mut self.nodes, &n.id, false),
                Stored::Network(_) => {
                    self.invalidate();
                    true
                }
                _ => return false,
            },
        };
        added || self.all || !self.is_empty()
    }

    /// The sets may be wrong: walk everything on the next pass.
    pub(super) fn invalidate(&mut self) {
        self.all = true;
    }

    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.services.is_empty() && self.tasks.is_empty()
    }

    /// What waits in `r` (the ingress network's id: `ingress`): from the sets, or from
    /// every object after [`Pending::invalidate`]. The sets keep exactly what waits; what
    /// this pass settles leaves them through its own events.
    pub(super) fn work(&mut self, r: &ReadTx<'_>, ingress: Option<&str>) -> Work {
        if std::mem::take(&mut self.all) {
            self.nodes = r.nodes().map(|n| n.id.clone()).collect();
            self.services = r.services().map(|s| s.id.clone()).collect();
            self.tasks = r
                .tasks()
                .filter(|t| waits(t))
                .map(|t| t.id.clone())
                .collect();
        }
        self.nodes
            .retain(|id| r.node(id).is_some_and(|n| !router_settled(n, ingress)));
        self.services
            .retain(|id| r.service(id).is_some_and(|s| !vips_settled(s)));
        self.tasks.retain(|id| r.task(id).is_some_and(waits));
        Work {
            nodes: self
                .nodes
                .iter()
                .filter_map(|id| r.node(id))
                .cloned()
                .collect(),
            services: self
                .services
                .iter()
                .filter_map(|id| r.service(id))
                .cloned()
                .collect(),
            tasks: self
                .tasks
                .iter()
                .filter_map(|id| r.task(id))
                .cloned()
                .collect(),
        }
    }

    /// The ids kept, to compare with a walk afresh.
    #[cfg(test)]
    pub(super) fn ids(&self) -> [BTreeSet<String>; 3] {
        [
            self.nodes.clone(),
            self.services.clone(),
            self.tasks.clone(),
        ]
    }
}

/// Keep `id` in `set` when `wanted`, else drop it; whether it was added.
fn keep(set: &mut BTreeSet<String>, id: &str, wanted: bool) -> bool {
    if wanted {
        set.insert(id.to_string())
    } else {
        set.remove(id);
        false
    }
}
