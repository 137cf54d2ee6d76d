//! The scheduler: gives every new task a node.
//!
//! A run loop over store events. Each pass takes every task waiting for a node (state NEW
//! or PENDING, desired to run; known from the events, as is every node's load:
//! [`loads`]), runs the filter pipeline ([`filter::check`]: availability,
//! constraints, tasks per node, CPU, memory) on every node, picks by the service's spread
//! preferences ([`spread::choose`]) then by spread of tasks ([`filter::spread`]) and writes
//! all decisions of the pass, in as many bounded transactions as they need, so a 100-task
//! create is placed in one pass. A task no node fits stays PENDING with the reason ("no suitable node (...)") in
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

    /// Plans every waiting task, then writes the decisions in as many transactions as
    /// they need ([`crate::store::WriteTx::is_full`]: a 100k-replica service is placed
    /// in one pass but never one oversized Raft entry), queued back to back and
    /// committed together. Returns how many tasks it wrote.
    async fn pass_with(&self, loads: &mut Loads) -> Result<usize, StoreError> {
        let mut decisions = None;
        let mut commits = Vec::new();
        let mut written = 0;
        let mut failure = None;
        loop {
            let staged = self
                .store
                .submit(|tx| {
                    let rest = decisions.get_or_insert_with(|| loads.plan(tx.read()).into_iter());
                    let mut wrote = 0;
                    while !tx.is_full() {
                        let Some((task, decision)) = rest.next() else {
                            break;
                        };
                        if let Some(task) = decided(task, decision) {
                            tx.update(Object::Task(task))?;
                            wrote += 1;
                        }
                    }
                    Ok::<_, StoreError>((wrote, rest.len() == 0))
                })
                .await;
            match staged {
                Ok(((wrote, done), commit)) => {
                    written += wrote;
                    commits.push(commit);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        for commit in commits {
            if let Err(e) = commit.await {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => {
                // The placements counted in may not have been written.
                loads.invalidate();
                Err(e)
            }
            None => {
                if written > 0 {
                    tracing::debug!(tasks = written, "scheduler pass committed");
                }
                Ok(written)
            }
        }
    }
}

/// `task` as `decision` makes it, or `None` when that changes nothing.
fn decided(mut task: Task, decision: Decision) -> Option<Task> {
    let (state, message, err, node) = match decision {
        Decision::Assign(node) => (
            TaskState::Assigned,
            "scheduler assigned task to node".to_string(),
            String::new(),
            node,
        ),
        Decision::Pending(why) => (TaskState::Pending, why.clone(), why, task.node_id.clone()),
    };
    let unchanged = task.state() == state
        && task
            .status
            .as_ref()
            .is_some_and(|s| s.message == message && s.err == err);
    if unchanged {
        return None;
    }
    task.node_id = node;
    task.status = Some(TaskStatus {
        state: state as i32,
        message,
        err,
        timestamp_ms: now_ms(),
        ..Default::default()
    });
    Some(task)
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

/// Decide for `waiting` (sorted by service), counting each placement into `loads` as it
/// is made (so the rest of the pass sees it) and keeping its share in `shares` (its own
/// event, once written, replaces it).
///
/// Tasks of one service and spec share their filters, so a run of them is decided
/// together ([`decide_run`]): the filters run once per node for the run, not once per
/// node and task, and the run's tasks go one by one to the node the spread prefers,
/// kept in a heap. Placing a task changes only its own node's load, so only that node is
/// checked again and its place in the heap updated. With spread preferences, and for
/// global tasks (made for one node), each task is decided alone ([`decide_one`]).
fn decide(
    r: &ReadTx<'_>,
    loads: &mut HashMap<String, NodeLoad>,
    shares: &mut HashMap<String, Share>,
    waiting: Vec<&Task>,
) -> Vec<(Task, Decision)> {
    let nodes: Vec<&Node> = r.nodes().collect();
    let mut decisions = Vec::with_capacity(waiting.len());
    let same_run = |a: &&Task, b: &&Task| {
        a.service_id == b.service_id
            && a.spec_version == b.spec_version
            && a.node_id.is_empty()
            && b.node_id.is_empty()
    };
    let mut gates: HashMap<&str, Option<String>> = HashMap::new();
    for run in waiting.chunk_by(same_run) {
        let first = run[0];
        let gate = gates.entry(first.service_id.as_str()).or_insert_with(|| {
            r.service(&first.service_id)
                .and_then(|s| depends::waiting_for(r, s))
        });
        if let Some(why) = gate {
            decisions.extend(
                run.iter()
                    .map(|t| ((*t).clone(), Decision::Pending(why.clone()))),
            );
            continue;
        }
        let placement = match Placement::of(first) {
            Ok(p) => p,
            Err(e) => {
                decisions.extend(
                    run.iter()
                        .map(|t| ((*t).clone(), Decision::Pending(e.clone()))),
                );
                continue;
            }
        };
        if placement.spread.is_empty() && first.node_id.is_empty() {
            decide_run(run, &placement, &nodes, loads, shares, &mut decisions);
            continue;
        }
        for task in run {
            let candidates: Vec<&Node> = if task.node_id.is_empty() {
                nodes.clone()
            } else {
                r.node(&task.node_id).into_iter().collect()
            };
            let decision = decide_one(task, &placement, candidates, loads, shares);
            decisions.push(((*task).clone(), decision));
        }
    }
    decisions
}

/// A node's place in a run's heap: fewest tasks of the service, then fewest tasks, then
/// the lowest id ([`filter::spread`]'s order), and the node's index in the pass's list.
type Rank<'n> = std::cmp::Reverse<(usize, usize, &'n str, usize)>;

fn rank<'n>(service_id: &str, node: &'n Node, index: usize, load: &NodeLoad) -> Rank<'n> {
    let of_service = load.by_service.get(service_id).copied().unwrap_or(0);
    std::cmp::Reverse((of_service, load.tasks, node.id.as_str(), index))
}

/// Decide a run of tasks of one service and spec, with no spread preference. A node that
/// fails the filters at the start of the run fails them for the whole run (placing tasks
/// only adds load), so the filters run once per node, and once more per placement on the
/// node placed on.
fn decide_run(
    run: &[&Task],
    placement: &Placement,
    nodes: &[&Node],
    loads: &mut HashMap<String, NodeLoad>,
    shares: &mut HashMap<String, Share>,
    decisions: &mut Vec<(Task, Decision)>,
) {
    let first = run[0];
    let service_id = first.service_id.as_str();
    let mut heap: std::collections::BinaryHeap<Rank<'_>> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            let load = loads.get(node.id.as_str())?;
            filter::check(first, &placement.constraints, node, load)
                .is_ok()
                .then(|| rank(service_id, node, i, load))
        })
        .collect();
    // Why the rest of the run waits, once no node is left (the same for all of them).
    let mut pending: Option<String> = None;
    for task in run {
        let Some(std::cmp::Reverse((_, _, _, index))) = heap.pop() else {
            let why = pending.get_or_insert_with(|| {
                sift(task, placement, nodes.iter().copied(), loads)
                    .1
                    .to_string()
            });
            decisions.push(((*task).clone(), Decision::Pending(why.clone())));
            continue;
        };
        let node = nodes[index];
        let load = place(task, &node.id, loads, shares);
        if filter::check(task, &placement.constraints, node, load).is_ok() {
            heap.push(rank(service_id, node, index, load));
        }
        decisions.push(((*task).clone(), Decision::Assign(node.id.clone())));
    }
}

/// Decide one task among `candidates`, through the spread preferences.
fn decide_one(
    task: &Task,
    placement: &Placement,
    candidates: Vec<&Node>,
    loads: &mut HashMap<String, NodeLoad>,
    shares: &mut HashMap<String, Share>,
) -> Decision {
    let (fits, why) = sift(task, placement, candidates, loads);
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
            place(task, &node_id, loads, shares);
            Decision::Assign(node_id)
        }
        None => Decision::Pending(why.to_string()),
    }
}

/// Run the filters for `task` on each of `nodes`: those that fit, and why the others do
/// not.
fn sift<'n>(
    task: &Task,
    placement: &Placement,
    nodes: impl IntoIterator<Item = &'n Node>,
    loads: &HashMap<String, NodeLoad>,
) -> (Vec<&'n Node>, Explanation) {
    let empty = NodeLoad::default();
    let mut why = Explanation::default();
    let mut fits = Vec::new();
    for node in nodes {
        let load = loads.get(node.id.as_str()).unwrap_or(&empty);
        match filter::check(task, &placement.constraints, node, load) {
            Ok(()) => fits.push(node),
            Err(rejection) => why.add(&rejection),
        }
    }
    (fits, why)
}

/// Count `task` on `node_id` (its share kept in `shares`); the node's load after it.
fn place<'l>(
    task: &Task,
    node_id: &str,
    loads: &'l mut HashMap<String, NodeLoad>,
    shares: &mut HashMap<String, Share>,
) -> &'l NodeLoad {
    let share = Share {
        node_id: node_id.to_string(),
        ..Share::of(task)
    };
    let load = loads.entry(node_id.to_string()).or_default();
    load.add_share(&share);
    // A waiting task holds no share (it occupies nothing): nothing to give back.
    shares.insert(task.id.clone(), share);
    load
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
