//! Orchestrators: turn services into tasks.
//!
//! One run loop reconciles the services each batch of store changes touched (all of them
//! after a node change or a resync), and those whose timer is due: replicated
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

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use shoal_proto::{Service, ServiceMode, Task, TaskState, TaskStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::ids::new_id;
use crate::runloop::{self, Wake};
use crate::store::{Event, Store, StoreError, Stored, WriteTx};
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
    /// What the next pass reconciles, from the events since the last.
    dirty: Dirty,
    /// When a service must be reconciled again without an event (a restart delay, an
    /// update's monitor period, a retry), by service id.
    due: HashMap<String, Instant>,
}

/// How long a service whose reconcile failed waits before it is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// The services the events since the last pass touched.
#[derive(Default)]
struct Dirty {
    /// Every service (the first pass, a resync, a node change).
    all: bool,
    /// Also look for tasks whose service is gone and still run (the first pass, a
    /// resync: a removal this loop did not see).
    orphans: bool,
    services: BTreeSet<String>,
    removed: Vec<String>,
}

impl Dirty {
    /// Record `event`; whether it calls for a pass.
    fn note(&mut self, event: &Event) -> bool {
        if let Event::Removed(Stored::Service(s)) = event {
            self.removed.push(s.id.clone());
        }
        if !relevant(event) {
            return false;
        }
        if *event == Event::Resync {
            self.orphans = true;
        }
        match event.object() {
            Some(Stored::Service(s)) => {
                self.services.insert(s.id.clone());
            }
            Some(Stored::Task(t)) => {
                self.services.insert(t.service_id.clone());
            }
            // A node's state or availability can move any service's tasks.
            _ => self.all = true,
        }
        true
    }
}

impl Orchestrator {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            restart: RestartSupervisor::default(),
            updater: Updater::default(),
            dirty: Dirty {
                all: true,
                orphans: true,
                ..Dirty::default()
            },
            due: HashMap::new(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut events = self.store.watch();
        loop {
            let deadline = match self.pass_dirty().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "orchestrator pass failed for a service; retrying it");
                    self.due.values().min().copied()
                }
            };
            let dirty = &mut self.dirty;
            let wake = runloop::next_noting(&mut events, |e| dirty.note(e), deadline, &cancel);
            if wake.await == Wake::Shutdown {
                return;
            }
        }
    }

    /// Reconcile every service once; returns when the next timer is due.
    pub async fn pass(&mut self) -> Result<Option<Instant>, StoreError> {
        self.dirty.all = true;
        self.pass_dirty().await
    }

    /// Reconcile the services the events touched and those whose timer is due, each in a
    /// transaction of its own (queued one after another, committed together), so a pass
    /// costs what changed rather than the size of the cluster, and one service that fails
    /// leaves the others be (it is retried after [`RETRY`]). Returns when the next timer is
    /// due, or the first failure.
    async fn pass_dirty(&mut self) -> Result<Option<Instant>, StoreError> {
        let now = Instant::now();
        let dirty = std::mem::take(&mut self.dirty);
        for id in &dirty.removed {
            self.due.remove(id);
        }
        let mut ids: BTreeSet<String> = dirty.services;
        if dirty.all {
            let all: BTreeSet<String> = self
                .store
                .view(|r| r.services().map(|s| s.id.clone()).collect());
            self.updater.retain(|id| all.contains(id));
            self.due.retain(|id, _| all.contains(id));
            ids = all;
        }
        if dirty.orphans {
            self.store.view(|r| {
                let gone = r.tasks().filter(|t| {
                    t.desired() < TaskState::Shutdown && r.service(&t.service_id).is_none()
                });
                ids.extend(gone.map(|t| t.service_id.clone()));
            });
        }
        ids.extend(
            self.due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| id.clone()),
        );
        let mut failure = None;
        let reconciled = ids.len();
        let mut commits = Vec::with_capacity(ids.len());
        for id in ids {
            self.due.remove(&id);
            let (restart, updater) = (&mut self.restart, &mut self.updater);
            let staged = self
                .store
                .submit(|tx| {
                    let Some(service) = tx.read().service(&id).cloned() else {
                        return Ok((shut_down_orphans(tx, &id, now)?, false));
                    };
                    reconcile(tx, &service, restart, updater, now)
                })
                .await;
            match staged {
                Ok((next, commit)) => commits.push((id, next, commit)),
                Err(e) => {
                    self.due.insert(id, now + RETRY);
                    failure.get_or_insert(e);
                }
            }
        }
        for (id, (next, acted), commit) in commits {
            match commit.await {
                // When the updater wrote, the reconciler runs on the next pass, on its
                // writes.
                Ok(()) if acted => {
                    self.due.insert(id, now);
                }
                Ok(()) => {
                    if let Some(at) = next {
                        self.due.insert(id, at);
                    }
                }
                Err(e) => {
                    self.due.insert(id, now + RETRY);
                    failure.get_or_insert(e);
                }
            }
        }
        tracing::debug!(services = reconciled, "orchestrator pass committed");
        match failure {
            Some(e) => Err(e),
            None => Ok(self.due.values().min().copied()),
        }
    }
}

/// Shut down the tasks of a removed service (`service rm` removes only the service: it may
/// have 100k tasks, more than one transaction holds), as many as fit this transaction;
/// due again at once while some are left.
fn shut_down_orphans(
    tx: &mut WriteTx<'_>,
    service_id: &str,
    now: Instant,
) -> Result<Option<Instant>, StoreError> {
    let live = tx
        .read()
        .tasks_of_service(service_id)
        .filter(|t| t.desired() < TaskState::Shutdown)
        .cloned();
    Ok(if replicated::shut_down_while_room(tx, live)? {
        None
    } else {
        Some(now)
    })
}

/// Reconcile one service in `tx`: when it is next due, and whether the rolling updater
/// wrote (then the reconciler waits for the next pass, to see the updater's writes).
fn reconcile(
    tx: &mut WriteTx<'_>,
    service: &Service,
    restart: &mut RestartSupervisor,
    updater: &mut Updater,
    now: Instant,
) -> Result<(Option<Instant>, bool), StoreError> {
    Ok(match service.mode() {
        mode @ (ServiceMode::Replicated | ServiceMode::Global) => {
            let update = updater.update(tx, service, now)?;
            if update.acted {
                (update.next, true)
            } else if mode == ServiceMode::Global {
                let due = global::reconcile(tx, service, restart, now)?;
                (earliest(update.next, due), false)
            } else {
                let due = replicated::reconcile(tx, service, restart, now)?;
                (earliest(update.next, due), false)
            }
        }
        // Jobs re-run on a spec change (a new iteration): no rolling update.
        ServiceMode::ReplicatedJob => (
            jobs::reconcile_replicated(tx, service, restart, now)?,
            false,
        ),
        ServiceMode::GlobalJob => (jobs::reconcile_global(tx, service, restart, now)?, false),
    })
}

fn relevant(event: &Event) -> bool {
    match event {
        Event::Created(o) | Event::Updated(o) | Event::Removed(o) => match o {
            // A removed service's tasks are shut down here.
            Stored::Service(_) | Stored::Node(_) => true,
            // A task that ended or was shut down can leave a slot empty; one that runs or
            // cannot be placed ends the hand-over of a drained node's task; a stop-first
            // replacement that is prepared lets its predecessor stop.
            Stored::Task(t) => {
                t.state().is_terminal()
                    || t.desired() >= TaskState::Shutdown
                    || matches!(t.state(), TaskState::Running | TaskState::Pending)
                    || (t.stop_first && t.state() == TaskState::Ready)
            }
            Stored::Cluster(_)
            | Stored::Network(_)
            | Stored::Stack(_)
            | Stored::Secret(_)
            | Stored::Config(_) => false,
        },
        Event::Resync => true,
    }
}

#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
