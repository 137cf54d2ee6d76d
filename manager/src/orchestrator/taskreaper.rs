//! The task reaper: keeps a bounded history of finished tasks per slot (the cluster's
//! `task_history_limit`, default 5) and deletes the tasks of removed services once they
//! have stopped. A job's completed tasks of its current iteration are its record and stay.
//! Deleting a task is what tells its node to remove the container.

use std::collections::HashMap;

use shoal_proto::{Service, Task, TaskState};
use tokio_util::sync::CancellationToken;

use super::restart::{slot_key, SlotKey};
use crate::runloop;
use crate::store::{Event, Object, ReadTx, Store, StoreError};

/// Swarm's default history per slot.
pub const DEFAULT_HISTORY_LIMIT: usize = 5;

pub struct TaskReaper {
    store: Store,
}

impl TaskReaper {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn run(self, cancel: CancellationToken) {
        runloop::run_passes(&self.store, "task reaper", Event::is_task, &cancel, || {
            self.pass()
        })
        .await
    }

    /// Delete what should go; returns how many tasks were deleted.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        self.store
            .update(|tx| {
                let doomed = reapable(tx.read());
                let n = doomed.len();
                for task in doomed {
                    tx.remove(Object::Task(task));
                }
                Ok(n)
            })
            .await
    }
}

/// A task that will never run again and holds nothing on a node worth keeping running
/// (a task of a removed node will never report that it stopped).
fn finished(r: &ReadTx<'_>, task: &Task) -> bool {
    task.desired() >= TaskState::Shutdown
        && (task.state().is_terminal()
            || task.state() < TaskState::Assigned
            || (!task.node_id.is_empty() && r.node(&task.node_id).is_none()))
}

/// A completed task of a job's current iteration: the job's record, never reaped.
fn is_job_record(service: &Service, task: &Task) -> bool {
    super::is_job(service.mode())
        && task.state() == TaskState::Complete
        && task.job_iteration == super::job_iteration(service)
}

/// The tasks to delete: finished tasks of services that are gone, and finished tasks beyond
/// the history limit of their slot (oldest first).
pub fn reapable(r: &ReadTx<'_>) -> Vec<Task> {
    let limit = r
        .cluster()
        .and_then(|c| c.spec.as_ref())
        .map(|s| s.task_history_limit as usize)
        .filter(|&l| l > 0)
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let mut doomed = Vec::new();
    let mut history: HashMap<SlotKey, Vec<&Task>> = HashMap::new();
    for task in r.tasks().filter(|t| finished(r, t)) {
        let Some(service) = r.service(&task.service_id) else {
            doomed.push(task.clone());
            continue;
        };
        if !is_job_record(service, task) {
            history.entry(slot_key(task)).or_default().push(task);
        }
    }
    for (_, mut tasks) in history {
        if tasks.len() <= limit {
            continue;
        }
        tasks.sort_by_key(|t| (t.meta.as_ref().map_or(0, |m| m.created_at_ms), t.version()));
        let excess = tasks.len() - limit;
        doomed.extend(tasks.into_iter().take(excess).cloned());
    }
    doomed
}
