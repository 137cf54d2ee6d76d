//! Global services: one task on every eligible node.

use std::collections::HashMap;

use shoal_proto::{Availability, NodeState, Service, Task, TaskState};
use tokio::time::Instant;

use super::replicated::shut_down;
use super::{earliest, new_task, restart::RestartSupervisor};
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
        let mut tasks = tasks;
        tasks.sort_by_key(|t| t.meta.as_ref().map_or(0, |m| m.created_at_ms));
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
                for extra in tasks {
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
