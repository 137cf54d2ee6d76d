//! Replicated services: numbered slots 1..=replicas, one current task per slot.

use std::collections::BTreeMap;

use shoal_proto::{Service, Task, TaskState};
use tokio::time::Instant;

use super::{earliest, new_task, restart::RestartSupervisor};
use crate::store::{Object, StoreError, WriteTx};

/// Bring `service`'s slots to its replica count and look after each slot's current task.
pub fn reconcile(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let replicas = service.spec.as_ref().map_or(0, |s| s.replicas) as usize;
    // Slot number -> its current tasks (desired to run or about to).
    let mut slots: BTreeMap<u64, Vec<Task>> = BTreeMap::new();
    for task in tx.read().tasks_of_service(&service.id) {
        if task.desired() <= TaskState::Running {
            slots.entry(task.slot).or_default().push(task.clone());
        }
    }
    let mut next = None;

    // Too many slots: shut down the highest-numbered ones.
    while slots.len() > replicas {
        let Some((_, tasks)) = slots.pop_last() else {
            break;
        };
        for task in tasks {
            shut_down(tx, task)?;
        }
    }
    // Too few: fill the lowest free slot numbers.
    let mut candidate = 1u64;
    while slots.len() < replicas {
        while slots.contains_key(&candidate) {
            candidate += 1;
        }
        let task = new_task(service, candidate, "", TaskState::Running);
        tx.create(Object::Task(task.clone()))?;
        slots.insert(candidate, vec![task]);
    }
    for (_, mut tasks) in slots {
        // One current task per slot: the newest wins, extras are shut down.
        tasks.sort_by_key(|t| t.meta.as_ref().map_or(0, |m| m.created_at_ms));
        let Some(current) = tasks.pop() else { continue };
        for extra in tasks {
            shut_down(tx, extra)?;
        }
        if current.version() == 0 {
            continue; // created in this pass
        }
        next = earliest(next, restart.supervise(tx, service, &current, now)?);
    }
    Ok(next)
}

pub(super) fn shut_down(tx: &mut WriteTx<'_>, mut task: Task) -> Result<(), StoreError> {
    if task.desired() >= TaskState::Shutdown {
        return Ok(());
    }
    task.desired_state = TaskState::Shutdown as i32;
    tx.update(Object::Task(task))
}
