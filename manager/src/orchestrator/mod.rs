//! Orchestrators: turn services into tasks.
//!
//! One run loop reconciles every service on each batch of store changes: replicated
//! services keep their numbered slots filled ([`replicated`]: tasks of down or removed
//! nodes are replaced at once, tasks of drained nodes are replaced first and stopped once
//! the replacement runs), global services keep one task per eligible node ([`global`]),
//! the restart supervisor ([`restart`]) replaces finished tasks under the service's
//! restart policy, and the rolling updater ([`update`]) replaces the tasks of an older
//! spec version in batches, slot by slot or node by node (it goes first for each
//! replicated or global service; a pass in which it wrote leaves that service's
//! reconciling to the next pass). Jobs ([`jobs`]) run their
//! tasks to completion and re-run as a new iteration when their spec changes. The task
//! reaper ([`taskreaper`]) is a loop of its own that bounds the history kept per slot.
//!
//! Architecture invariant: orchestrators read and write the store only; they never call
//! the scheduler or the dispatcher, and never import tonic, Raft or the executor.

pub mod global;
pub mod jobs;
pub mod replicated;
pub mod restart;
pub mod taskreaper;
pub mod update;

use shoal_proto::{Service, ServiceMode, Task, TaskState, TaskStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::ids::new_id;
use crate::runloop::{self, Wake};
use crate::store::{Event, Object, Store, StoreError};
use restart::RestartSupervisor;
use update::Updater;

/// A fresh task for `slot` (replicated) or `node_id` (global) of `service`.
pub fn new_task(service: &Service, slot: u64, node_id: &str, desired: TaskState) -> Task {
    let spec = service.spec.clone().unwrap_or_default();
    Task {
        id: new_id(),
        meta: None,
        service_id: service.id.clone(),
        service_name: spec.name.clone(),
        slot,
        node_id: node_id.to_string(),
        spec: spec.task,
        spec_version: service.spec_version,
        desired_state: desired as i32,
        status: Some(TaskStatus {
            state: TaskState::New as i32,
            message: "created".into(),
            timestamp_ms: now_ms(),
            ..Default::default()
        }),
        job_iteration: job_iteration(service),
        stop_first: false,
        networks: Vec::new(),
        ports: spec
            .endpoint
            .as_ref()
            .map(|e| e.ports.clone())
            .unwrap_or_default(),
    }
}

/// The iteration a job's new tasks belong to (0 for services that are not jobs).
pub fn job_iteration(service: &Service) -> u64 {
    service.job_status.as_ref().map_or(0, |j| j.iteration)
}

/// Whether `mode` runs to completion (replicated-job, global-job).
pub fn is_job(mode: ServiceMode) -> bool {
    matches!(mode, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
}

pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The orchestrator's run loop (replicated and global services, restarts).
pub struct Orchestrator {
    store: Store,
    restart: RestartSupervisor,
    updater: Updater,
}

impl Orchestrator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            restart: RestartSupervisor::default(),
            updater: Updater::default(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut events = self.store.watch();
        loop {
            let deadline = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "orchestrator pass failed; retrying");
                    Some(Instant::now() + std::time::Duration::from_millis(200))
                }
            };
            if runloop::next(&mut events, relevant, deadline, &cancel).await == Wake::Shutdown {
                return;
            }
        }
    }

    /// Reconcile every service once; returns when the next timer is due.
    pub async fn pass(&mut self) -> Result<Option<Instant>, StoreError> {
        let now = Instant::now();
        let restart = &mut self.restart;
        let updater = &mut self.updater;
        self.store
            .update(|tx| {
                let services: Vec<Service> = tx.read().services().cloned().collect();
                updater.retain(|id| services.iter().any(|s| s.id == id));
                let mut next = None;
                for service in &services {
                    let due = match service.mode() {
                        mode @ (ServiceMode::Replicated | ServiceMode::Global) => {
                            // The updater goes first; when it wrote, the reconciler waits
                            // for the next pass to see its writes.
                            let update = updater.update(tx, service, now)?;
                            if update.acted {
                                update.next
                            } else if mode == ServiceMode::Global {
                                earliest(update.next, global::reconcile(tx, service, restart, now)?)
                            } else {
                                earliest(
                                    update.next,
                                    replicated::reconcile(tx, service, restart, now)?,
                                )
                            }
                        }
                        // Jobs re-run on a spec change (a new iteration): no rolling update.
                        ServiceMode::ReplicatedJob => {
                            jobs::reconcile_replicated(tx, service, restart, now)?
                        }
                        ServiceMode::GlobalJob => {
                            jobs::reconcile_global(tx, service, restart, now)?
                        }
                    };
                    next = earliest(next, due);
                }
                Ok::<_, StoreError>(next)
            })
            .await
    }
}

fn relevant(event: &Event) -> bool {
    match event {
        // A removed service is the reaper's; nothing to reconcile.
        Event::Removed(o) if matches!(**o, Object::Service(_)) => false,
        Event::Created(o) | Event::Updated(o) | Event::Removed(o) => match &**o {
            Object::Service(_) | Object::Node(_) => true,
            // A task that ended or was shut down can leave a slot empty; one that runs or
            // cannot be placed ends the hand-over of a drained node's task; a stop-first
            // replacement that is prepared lets its predecessor stop.
            Object::Task(t) => {
                t.state().is_terminal()
                    || t.desired() >= TaskState::Shutdown
                    || matches!(t.state(), TaskState::Running | TaskState::Pending)
                    || (t.stop_first && t.state() == TaskState::Ready)
            }
            Object::Cluster(_)
            | Object::Network(_)
            | Object::Stack(_)
            | Object::Secret(_)
            | Object::Config(_) => false,
        },
        Event::Resync => true,
    }
}

#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
