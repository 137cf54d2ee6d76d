//! The scheduler: gives every new task a node.
//!
//! A run loop over store events. Each pass takes every task waiting for a node (state NEW
//! or PENDING, desired to run; known from the events, as is every node's load:
//! [`loads`]), runs the filter pipeline ([`filter::check`]: availability,
//! constraints, tasks per node, CPU, memory) on every node, picks by the service's spread
//! preferences ([`spread::choose`]) then by spread of tasks ([`filter::spread`]) and writes
//! all decisions of the pass in one transaction, so a 100-task create is placed in one
//! pass. A task no node fits stays PENDING with the reason ("no suitable node (...)") in
//! both its status message and its error, where `service ps` shows it; so does a task
//! whose service depends on another that does not meet its condition yet ([`depends`]).
//!
//! Architecture invariant: the scheduler reads and writes the store only; it never imports
//! tonic, Raft or the executor.

pub mod constraint;
pub mod depends;
pub mod filter;
mod loads;
pub mod spread;

use std::collections::HashMap;

use shoal_proto::{Node, Task, TaskState, TaskStatus};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::runloop;
use crate::store::{Object, ReadTx, Store, StoreError};
use constraint::Constraint;
use filter::{Explanation, NodeLoad, Share};
use loads::Loads;
use spread::SpreadKey;

/// What a pass decided for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Assign(String),
    Pending(String),
}

/// The scheduler's run loop.
pub struct Scheduler {
    store: Store,
}

impl Scheduler {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Places tasks as events come, with node loads kept from the events between passes
    /// ([`Loads`]), so a pass costs the tasks it places rather than every task.
    pub async fn run(self, cancel: CancellationToken) {
        let mut loads = Loads::default();
        let mut events = self.store.watch();
        loop {
            if let Err(e) = self.pass_with(&mut loads).await {
                tracing::warn!(error = %e, "scheduling pass failed; retrying on the next change");
            }
            let wake = runloop::next_noting(&mut events, |e| loads.note(e), None, &cancel);
            if wake.await == runloop::Wake::Shutdown {
                return;
            }
        }
    }

    /// One scheduling pass over the whole store, every node's load counted afresh.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        self.pass_with(&mut Loads::default()).await
    }

    async fn pass_with(&self, loads: &mut Loads) -> Result<usize, StoreError> {
        let result = self
            .store
            .update(|tx| {
                let decisions = loads.plan(tx.read());
                let mut written = 0;
                for (mut task, decision) in decisions {
                    let (state, message, err, node) = match decision {
                        Decision::Assign(node) => (
                            TaskState::Assigned,
                            "scheduler assigned task to node".to_string(),
                            String::new(),
                            node,
                        ),
                        Decision::Pending(why) => {
                            (TaskState::Pending, why.clone(), why, task.node_id.clone())
                        }
                    };
                    let unchanged = task.state() == state
                        && task
                            .status
                            .as_ref()
                            .is_some_and(|s| s.message == message && s.err == err);
                    if unchanged {
                        continue;
                    }
                    task.node_id = node;
                    task.status = Some(TaskStatus {
                        state: state as i32,
                        message,
                        err,
                        timestamp_ms: now_ms(),
                        ..Default::default()
                    });
                    tx.update(Object::Task(task))?;
                    written += 1;
                }
                Ok(written)
            })
            .await;
        if result.is_err() {
            // The placements counted in may not have been written.
            loads.invalidate();
        }
        result
    }
}

/// Whether a task holds resources on its node: once assigned there (a replacement that
/// waits for its slot's node does not count against itself).
fn occupies(task: &Task) -> bool {
    !task.node_id.is_empty()
        && task.desired() <= TaskState::Running
        && task.state() >= TaskState::Assigned
        && !task.state().is_terminal()
}

/// Whether a task waits for the scheduler: not placed yet, and attached to its networks
/// (the allocator gives it an address on each first; a task never starts unwired).
fn unplaced(task: &Task) -> bool {
    task.desired() <= TaskState::Running
        && matches!(task.state(), TaskState::New | TaskState::Pending)
        && task.is_attached()
}

/// Decide a node (or the reason there is none) for every task that waits for one, with
/// every node's load counted afresh.
pub fn plan(r: &ReadTx<'_>) -> Vec<(Task, Decision)> {
    let mut loads = Loads::default();
    loads.rebuild(r);
    loads.plan(r)
}

/// Decide for `waiting` (sorted), counting each placement into `loads` as it is made
/// (so the rest of the pass sees it) and keeping its share in `shares` (its own event,
/// once written, replaces it).
fn decide(
    r: &ReadTx<'_>,
    loads: &mut HashMap<String, NodeLoad>,
    shares: &mut HashMap<String, Share>,
    waiting: Vec<&Task>,
) -> Vec<(Task, Decision)> {
    let nodes: Vec<&Node> = r.nodes().collect();
    let empty = NodeLoad::default();
    let mut placements: HashMap<&str, Result<Placement, String>> = HashMap::new();
    let mut gates: HashMap<&str, Option<String>> = HashMap::new();
    let mut decisions = Vec::with_capacity(waiting.len());
    for task in waiting {
        let gate = gates.entry(task.service_id.as_str()).or_insert_with(|| {
            r.service(&task.service_id)
                .and_then(|s| depends::waiting_for(r, s))
        });
        if let Some(why) = gate {
            decisions.push((task.clone(), Decision::Pending(why.clone())));
            continue;
        }
        let placement = placements
            .entry(task.service_id.as_str())
            .or_insert_with(|| Placement::of(task));
        let placement = match placement {
            Ok(p) => &*p,
            Err(e) => {
                decisions.push((task.clone(), Decision::Pending(e.clone())));
                continue;
            }
        };
        let candidates: Vec<&Node> = if task.node_id.is_empty() {
            nodes.clone()
        } else {
            // Global tasks are made for one node.
            nodes
                .iter()
                .copied()
                .filter(|n| n.id == task.node_id)
                .collect()
        };
        let mut why = Explanation::default();
        let mut fits = Vec::new();
        for node in candidates {
            let load = loads.get(node.id.as_str()).unwrap_or(&empty);
            match filter::check(task, &placement.constraints, node, load) {
                Ok(()) => fits.push(node),
                Err(rejection) => why.add(&rejection),
            }
        }
        let chosen = spread::choose(
            &task.service_id,
            &placement.spread,
            fits.iter()
                .filter_map(|n| loads.get(n.id.as_str()).map(|l| (*n, l)))
                .collect(),
        )
        .map(|n| n.id.clone());
        match chosen {
            Some(node_id) => {
                let share = Share {
                    node_id: node_id.clone(),
                    ..Share::of(task)
                };
                loads.entry(node_id.clone()).or_default().add_share(&share);
                // A waiting task holds no share (it occupies nothing): nothing to give back.
                shares.insert(task.id.clone(), share);
                decisions.push((task.clone(), Decision::Assign(node_id)));
            }
            None => decisions.push((task.clone(), Decision::Pending(why.to_string()))),
        }
    }
    decisions
}

/// A task's placement rules, parsed once per service and pass.
struct Placement {
    constraints: Vec<Constraint>,
    spread: Vec<SpreadKey>,
}

impl Placement {
    /// Validated at create time; a bad one leaves the task pending with the reason.
    fn of(task: &Task) -> Result<Self, String> {
        let placement = task
            .spec
            .as_ref()
            .and_then(|s| s.placement.clone())
            .unwrap_or_default();
        Ok(Self {
            constraints: constraint::parse_all(&placement.constraints)
                .map_err(|e| e.to_string())?,
            spread: spread::parse_all(&placement.spread).map_err(|e| e.to_string())?,
        })
    }
}

#[cfg(test)]
mod tests;
