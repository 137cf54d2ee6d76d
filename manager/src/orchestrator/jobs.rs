//! Jobs: services whose tasks run to completion.
//!
//! - replicated-job: `replicas` completions (slots 1..=replicas, each done once one of its
//!   tasks is COMPLETE), at most `max_concurrent` tasks at once (0: `replicas`);
//! - global-job: one completion on every eligible node (ready, active, matching the
//!   constraints); a node that becomes eligible later gets one too.
//!
//! Tasks carry the job's iteration (`JobStatus.iteration`, bumped by the control API when
//! the spec changes or is forced): tasks of another iteration neither count nor run on
//! (they are shut down). A COMPLETE task is never restarted and stays in the store as the
//! job's record; a task that fails is replaced by the restart supervisor, whose condition
//! defaults to on-failure for jobs, as Swarm's. A task whose node is lost or drained, or
//! no longer matches the constraints, is shut down and its completion run again elsewhere
//! (a global job's task on a paused node runs on; a paused node gets no new one).

use std::collections::{BTreeMap, HashMap};

use shoal_proto::{Availability, NodeState, Service, Task, TaskState};
use tokio::time::Instant;

use super::replicated::{shut_down, shut_down_while_room, standing, Standing};
use super::{earliest, job_iteration, new_task, restart::RestartSupervisor};
use crate::scheduler::constraint;
use crate::store::{Object, StoreError, WriteTx};

/// A task that may still run: desired to run (or about to) and not ended.
fn active(task: &Task) -> bool {
    task.desired() <= TaskState::Running && !task.state().is_terminal()
}

/// The service's tasks desired to run, of the current iteration; tasks of other
/// iterations are shut down on the way. `None` when the transaction filled up first.
fn current_tasks(tx: &mut WriteTx<'_>, service: &Service) -> Result<Option<Vec<Task>>, StoreError> {
    let iteration = job_iteration(service);
    let mut current = Vec::new();
    let tasks: Vec<Task> = tx.read().tasks_of_service(&service.id).cloned().collect();
    for task in tasks {
        if task.desired() > TaskState::Running {
            continue;
        }
        if task.job_iteration != iteration {
            if tx.is_full() {
                return Ok(None);
            }
            shut_down(tx, task)?;
        } else {
            current.push(task);
        }
    }
    Ok(Some(current))
}

/// Shuts down the tasks of `tasks` that may still run; `false` when the transaction filled
/// up first.
fn stop_active(tx: &mut WriteTx<'_>, tasks: Vec<Task>) -> Result<bool, StoreError> {
    shut_down_while_room(tx, tasks.into_iter().filter(active))
}

/// What one look at a slot (or a global job's node) found.
struct Slot {
    /// Nothing done and nothing to look after: it needs a new task.
    empty: bool,
    /// A task of it may run after this pass (what counts against `max_concurrent`).
    occupied: bool,
    due: Option<Instant>,
}

/// One slot (or node) of a job: done once a task of it completed; otherwise its newest
/// task is supervised (restarted on failure), extras and tasks on lost or leaving nodes
/// are shut down.
fn look_after(
    tx: &mut WriteTx<'_>,
    service: &Service,
    mut tasks: Vec<Task>,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Slot, StoreError> {
    let mut slot = Slot {
        empty: false,
        occupied: false,
        due: None,
    };
    if tasks.iter().any(|t| t.state() == TaskState::Complete) {
        // A slot's few tasks: the caller checks for room between slots.
        for task in tasks.into_iter().filter(active) {
            shut_down(tx, task)?;
        }
        return Ok(slot);
    }
    let mut staying = Vec::new();
    for task in tasks.drain(..) {
        if active(&task) && standing(tx.read(), &task) != Standing::Fine {
            shut_down(tx, task)?;
        } else {
            staying.push(task);
        }
    }
    staying.sort_by_key(|t| (t.meta.as_ref().map_or(0, |m| m.created_at_ms), t.version()));
    let Some(current) = staying.pop() else {
        slot.empty = true;
        return Ok(slot);
    };
    for extra in staying {
        shut_down(tx, extra)?;
    }
    slot.due = restart.supervise(tx, service, &current, now)?;
    // The supervisor shuts an ended task down only when it replaces it. (Reads of this
    // transaction see the store before it: what it wrote is looked up by id.)
    let replaced = current.state().is_terminal()
        && tx
            .task(&current.id)
            .is_some_and(|t| t.desired() >= TaskState::Shutdown);
    slot.occupied = active(&current) || replaced;
    Ok(slot)
}

/// Replicated job: `replicas` completions, at most `max_concurrent` tasks at once; as far
/// as one transaction holds ([`WriteTx::is_full`]), due again at once when there is more.
pub fn reconcile_replicated(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let spec = service.spec.clone().unwrap_or_default();
    let total = spec.replicas;
    let concurrency = match spec.max_concurrent {
        0 => total,
        n => n.min(total),
    } as usize;
    let Some(current) = current_tasks(tx, service)? else {
        return Ok(Some(now));
    };
    let mut slots: BTreeMap<u64, Vec<Task>> = BTreeMap::new();
    for task in current {
        slots.entry(task.slot).or_default().push(task);
    }
    let mut next = None;
    let mut empty = Vec::new();
    let mut running = 0;
    for n in 1..=total {
        if tx.is_full() {
            return Ok(Some(now));
        }
        let tasks = slots.remove(&n).unwrap_or_default();
        let slot = look_after(tx, service, tasks, restart, now)?;
        next = earliest(next, slot.due);
        if slot.empty {
            empty.push(n);
        }
        running += usize::from(slot.occupied);
    }
    // Slots beyond the count (scaled down): their tasks stop; their completions no longer count.
    for (_, tasks) in slots {
        if !stop_active(tx, tasks)? {
            return Ok(Some(now));
        }
    }
    for slot in empty {
        if running >= concurrency {
            break;
        }
        if tx.is_full() {
            return Ok(Some(now));
        }
        tx.create(Object::Task(new_task(
            service,
            slot,
            "",
            TaskState::Running,
        )))?;
        running += 1;
    }
    Ok(next)
}

/// Global job: one completion on every eligible node; bounded like
/// [`reconcile_replicated`].
pub fn reconcile_global(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let constraints = constraint::of_service(service);
    let Some(current) = current_tasks(tx, service)? else {
        return Ok(Some(now));
    };
    let mut by_node: HashMap<String, Vec<Task>> = HashMap::new();
    for task in current {
        by_node.entry(task.node_id.clone()).or_default().push(task);
    }
    let nodes: Vec<_> = tx.read().nodes().cloned().collect();
    let mut next = None;
    for node in &nodes {
        if tx.is_full() {
            return Ok(Some(now));
        }
        let tasks = by_node.remove(&node.id).unwrap_or_default();
        let keep = constraints.iter().all(|c| c.matches(node))
            && node.availability() != Availability::Drain
            && node.state() != NodeState::Down;
        if !keep {
            // Drained, down, or no longer matching: what still runs there stops;
            // completions stay. (A paused node keeps its task but gets no new one.)
            if !stop_active(tx, tasks)? {
                return Ok(Some(now));
            }
            continue;
        }
        let slot = look_after(tx, service, tasks, restart, now)?;
        next = earliest(next, slot.due);
        if slot.empty && eligible(node, &constraints) {
            tx.create(Object::Task(new_task(
                service,
                0,
                &node.id,
                TaskState::Running,
            )))?;
        }
    }
    // Tasks on nodes that left the cluster.
    for (_, tasks) in by_node {
        if !stop_active(tx, tasks)? {
            return Ok(Some(now));
        }
    }
    Ok(next)
}

/// A node a global job runs on: ready, active, and matching the constraints.
pub fn eligible(node: &shoal_proto::Node, constraints: &[constraint::Constraint]) -> bool {
    node.state() == NodeState::Ready
        && node.availability() == Availability::Active
        && constraints.iter().all(|c| c.matches(node))
}
