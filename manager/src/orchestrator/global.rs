//! Global services: one task on every eligible node (two while a start-first update hands a
//! node over from the old task to the new one).

use std::collections::HashMap;

use shoal_proto::{Availability, NodeState, Service, Task, TaskState};
use tokio::time::Instant;

use super::replicated::shut_down;
use super::{earliest, new_task, restart::RestartSupervisor, update};
use crate::scheduler::constraint;
use crate::store::{Object, StoreError, WriteTx};

/// Give every eligible node one current task of `service` and take tasks off the rest.
/// Drained nodes and nodes that fail a constraint lose their task; paused nodes keep theirs
/// but get no new one; down nodes lose theirs (a worker that left the swarm is down), and
/// get a new one when they are back.
pub fn reconcile(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let constraints = constraint::of_service(service);
    let mut current: HashMap<String, Vec<Task>> = HashMap::new();
    for task in tx.read().tasks_of_service(&service.id) {
        if task.desired() <= TaskState::Running {
            current
                .entry(task.node_id.clone())
                .or_default()
                .push(task.clone());
        }
    }
    let nodes: Vec<_> = tx.read().nodes().cloned().collect();
    let mut next = None;
    for node in &nodes {
        // One transaction holds so much: the rest of the nodes on the next pass, at once.
        if tx.is_full() {
            return Ok(Some(now));
        }
        let tasks = current.remove(&node.id).unwrap_or_default();
        let fits = constraints.iter().all(|c| c.matches(node));
        let keep =
            fits && node.availability() != Availability::Drain && node.state() != NodeState::Down;
        if !keep {
            for task in tasks {
                shut_down(tx, task)?;
            }
            continue;
        }
        if tasks.iter().any(|t| update::is_handover(service, t)) {
            // A stop-first update hands this node over: the updater owns it.
            continue;
        }
        let mut tasks = tasks;
        // The task to keep goes last: of the current spec first, then the newest (two
        // tasks made in the same millisecond tell apart by version alone).
        tasks.sort_by_key(|t| {
            (
                t.spec_version == service.spec_version,
                t.meta.as_ref().map_or(0, |m| m.created_at_ms),
            )
        });
        match tasks.pop() {
            None => {
                if node.availability() == Availability::Active && node.state() == NodeState::Ready {
                    tx.create(Object::Task(new_task(
                        service,
                        0,
                        &node.id,
                        TaskState::Running,
                    )))?;
                }
            }
            Some(task) => {
                // A start-first update runs the node's new task beside its old one until the
                // new one runs (the updater made it); then the old one goes.
                let sv = service.spec_version;
                let handing_over = task.spec_version == sv
                    && task.desired() == TaskState::Running
                    && task.state() != TaskState::Running
                    && !task.state().is_terminal();
                for extra in tasks {
                    if handing_over && extra.spec_version != sv {
                        continue;
                    }
                    shut_down(tx, extra)?;
                }
                next = earliest(next, restart.supervise(tx, service, &task, now)?);
            }
        }
    }
    // Tasks on nodes that left the cluster.
    for (_, tasks) in current {
        for task in tasks {
            shut_down(tx, task)?;
        }
    }
    Ok(next)
}
