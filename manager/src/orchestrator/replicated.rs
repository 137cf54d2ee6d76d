//! Replicated services: numbered slots 1..=replicas, one current task per slot.
//!
//! A slot's task can stand on a node in three ways ([`standing`]):
//! - fine: it stays;
//! - lost (its node is DOWN or was removed): it is shut down and replaced at once;
//! - leaving (its node is drained, or no longer satisfies the task's constraints): its
//!   replacement is created first while it keeps running, and it is shut down only when
//!   the replacement runs, or cannot be placed (PENDING), or ended and will not restart.
//!   This drains a node without taking a replica away (Swarm stops the old task first).

use std::borrow::Cow;
use std::collections::BTreeMap;

use shoal_proto::{Availability, NodeState, Service, Task, TaskState};
use tokio::time::Instant;

use super::{earliest, new_task, restart::RestartSupervisor, update};
use crate::scheduler::constraint;
use crate::store::{Object, ReadTx, StoreError, WriteTx};

/// Bring `service`'s slots to its replica count and look after each slot's tasks, as far
/// as one transaction holds ([`WriteTx::is_full`]: a scale to 100k replicas takes many);
/// due again at once when there is more to do.
pub fn reconcile(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let replicas = service.spec.as_ref().map_or(0, |s| s.replicas) as usize;
    // Slot number -> its current tasks (desired to run or about to), borrowed from the
    // state the transaction began on (a service may have 100k, and many passes).
    let mut slots: BTreeMap<u64, Vec<Cow<'_, Task>>> = BTreeMap::new();
    for task in tx.read().tasks_of_service(&service.id) {
        if task.desired() <= TaskState::Running {
            slots
                .entry(task.slot)
                .or_default()
                .push(Cow::Borrowed(task));
        }
    }
    let mut next = None;

    // Too many slots: shut down the highest-numbered ones.
    while slots.len() > replicas {
        if tx.is_full() {
            return Ok(Some(now));
        }
        let Some((_, tasks)) = slots.pop_last() else {
            break;
        };
        for task in tasks {
            shut_down(tx, task.into_owned())?;
        }
    }
    // Too few: fill the lowest free slot numbers.
    let mut candidate = 1u64;
    while slots.len() < replicas {
        if tx.is_full() {
            return Ok(Some(now));
        }
        while slots.contains_key(&candidate) {
            candidate += 1;
        }
        let task = new_task(service, candidate, "", TaskState::Running);
        tx.create(Object::Task(task.clone()))?;
        slots.insert(candidate, vec![Cow::Owned(task)]);
    }
    for (slot, tasks) in slots {
        if tx.is_full() {
            return Ok(Some(now));
        }
        next = earliest(
            next,
            reconcile_slot(tx, service, slot, tasks, restart, now)?,
        );
    }
    Ok(next)
}

/// Where a task stands with respect to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not placed yet, or on a node it may stay on (paused nodes keep their tasks).
    Fine,
    /// The node is down or gone: the task is replaced at once.
    Lost,
    /// The node is drained or no longer satisfies the task's constraints: the task is
    /// replaced, and kept running until its replacement runs.
    Leaving,
}

pub fn standing(r: &ReadTx<'_>, task: &Task) -> Standing {
    if task.node_id.is_empty() {
        return Standing::Fine;
    }
    let Some(node) = r.node(&task.node_id) else {
        return Standing::Lost;
    };
    if node.state() == NodeState::Down {
        return Standing::Lost;
    }
    // The task's own constraints (those it was placed with), as Swarm's constraint
    // enforcer: a node whose labels changed under it loses it. Validated at create time.
    let exprs = task
        .spec
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .map(|p| p.constraints.as_slice())
        .unwrap_or_default();
    let fits = constraint::parse_all(exprs).is_ok_and(|cs| cs.iter().all(|c| c.matches(node)));
    if node.availability() == Availability::Drain || !fits {
        Standing::Leaving
    } else {
        Standing::Fine
    }
}

fn reconcile_slot(
    tx: &mut WriteTx<'_>,
    service: &Service,
    slot: u64,
    tasks: Vec<Cow<'_, Task>>,
    restart: &mut RestartSupervisor,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    // A stop-first update is handing this slot over: the updater owns it, unless the
    // replacement's node went away.
    let owned = tasks
        .iter()
        .any(|t| update::is_handover(service, t) && standing(tx.read(), t) == Standing::Fine);
    if owned {
        return Ok(None);
    }
    let mut staying = Vec::new();
    let mut leaving = Vec::new();
    // A start-first update put a task of the current spec beside the old one: the old one
    // leaves as from a drained node, once its replacement runs.
    let updating = tasks.iter().any(|t| t.spec_version == service.spec_version)
        && tasks.iter().any(|t| t.spec_version != service.spec_version);
    for task in tasks {
        let standing = match standing(tx.read(), &task) {
            Standing::Fine if updating && task.spec_version != service.spec_version => {
                Standing::Leaving
            }
            s => s,
        };
        match standing {
            Standing::Fine => staying.push(task),
            // Only a running task is worth keeping until its replacement runs.
            Standing::Leaving if task.state() == TaskState::Running => leaving.push(task),
            Standing::Leaving | Standing::Lost => shut_down(tx, task.into_owned())?,
        }
    }
    // One current task per slot: a running one over one that is not, then the newest.
    staying.sort_by_key(|t| {
        (
            t.state() == TaskState::Running,
            t.meta.as_ref().map_or(0, |m| m.created_at_ms),
        )
    });
    let Some(current) = staying.pop() else {
        // Nothing stays: a replacement now; a leaving task runs on until it runs.
        tx.create(Object::Task(new_task(
            service,
            slot,
            "",
            TaskState::Running,
        )))?;
        return Ok(None);
    };
    for extra in staying {
        shut_down(tx, extra.into_owned())?;
    }
    if current.version() == 0 {
        return Ok(None); // created in this pass
    }
    if current.desired() == TaskState::Ready && update::predecessor_up(tx.read(), &current) {
        // A stop-first update's replacement starts once the task it replaces is down.
        return Ok(None);
    }
    let next = restart.supervise(tx, service, &current, now)?;
    if !leaving.is_empty() {
        // As this transaction sees it: the supervisor may have just replaced it.
        let current = tx.task(&current.id).unwrap_or_else(|| current.into_owned());
        let state = current.state();
        let handed_over = state == TaskState::Running
            || state == TaskState::Pending
            || (state.is_terminal() && current.desired() <= TaskState::Running);
        if handed_over {
            for task in leaving {
                shut_down(tx, task.into_owned())?;
            }
        }
    }
    Ok(next)
}

/// Shuts `tasks` down while the transaction has room ([`WriteTx::is_full`]); `false` when
/// it filled up first (the rest wait for the next pass).
pub(super) fn shut_down_while_room(
    tx: &mut WriteTx<'_>,
    tasks: impl IntoIterator<Item = Task>,
) -> Result<bool, StoreError> {
    for task in tasks {
        if tx.is_full() {
            return Ok(false);
        }
        shut_down(tx, task)?;
    }
    Ok(true)
}

pub(super) fn shut_down(tx: &mut WriteTx<'_>, mut task: Task) -> Result<(), StoreError> {
    if task.desired() >= TaskState::Shutdown {
        return Ok(());
    }
    task.desired_state = TaskState::Shutdown as i32;
    tx.update(Object::Task(task))
}
