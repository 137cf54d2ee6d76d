//! The rolling updater of replicated and global services.
//!
//! A task is old when its `spec_version` differs from its service's. While a service's
//! `update_status` is UPDATING (or ROLLBACK_STARTED) and places hold old tasks, the updater
//! replaces them in batches of `parallelism` (0: all at once), the next batch once the
//! previous batch's tasks run and `delay` has passed. A place is a slot of a replicated
//! service, or a node of a global one ([`Place`]):
//! - stop-first: the replacement is created desired READY (`stop_first`) beside the old
//!   task, which keeps running while the replacement's node prepares it; once it is READY
//!   (image there, container created) the old task is shut down, and once that is down the
//!   replacement is raised to RUNNING ([`Updater::hand_over`], read from the store, so a
//!   new leader carries on). A replacement that cannot be prepared (no such image) ends
//!   before the old task was touched: the update fails with the service as it was;
//! - start-first: the replacement is created desired RUNNING beside the old task, which the
//!   replicated reconciler shuts down once the replacement runs (as it does on a drain).
//!
//! A new task that ends within `monitor` of starting is a failure; once failures / updated
//! slots exceed `max_failure_ratio` the failure action applies: pause, continue, or roll back
//! (the previous spec and its version come back, and the update runs again with the
//! `rollback` config). Everything that matters is in the store (task spec versions and the
//! service's `update_status`), so a new leader resumes an update where it stood; the delay
//! and monitor timers live in memory and start afresh on a new leader.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use shoal_proto::{
    FailureAction, NodeState, Service, ServiceMode, Task, TaskState, UpdateConfig, UpdateOrder,
    UpdateState, UpdateStatus,
};
use tokio::time::Instant;

use super::restart::slot_key;
use super::{earliest, new_task, replicated::shut_down};
use crate::clock::now_ms;
use crate::store::{Object, ReadTx, StoreError, WriteTx};

/// Swarm's default monitor period.
pub const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// Where a task belongs: its slot (replicated services), or its node (global services,
/// whose tasks all have slot 0). A replacement takes its predecessor's place.
type Place = (u64, String);

fn place(service: &Service, task: &Task) -> Place {
    if service.mode() == ServiceMode::Global {
        (0, task.node_id.clone())
    } else {
        (task.slot, String::new())
    }
}

/// Whether two tasks of one service hold the same place.
fn same_place(a: &Task, b: &Task) -> bool {
    slot_key(a) == slot_key(b)
}

/// What one look at a service did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The updater wrote to the service or its tasks in this transaction: the replicated
    /// reconciler leaves the service alone until the next pass.
    pub acted: bool,
    /// When the updater next needs a look.
    pub next: Option<Instant>,
}

/// A new task under watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Not running yet.
    Starting,
    /// Running since then (as this leader saw it).
    Running(Instant),
    /// Out of its monitor window, or counted as a failure.
    Done,
}

/// The leader's in-memory view of one service's update (timers and failure counts).
#[derive(Debug)]
struct Progress {
    /// The update it belongs to: spec version, start time and state.
    key: (u64, i64, i32),
    watched: HashMap<String, Watch>,
    failures: usize,
    last_failure: Option<Task>,
    /// When the slots last had no replacement in flight (the delay counts from here).
    idle_since: Option<Instant>,
    /// Replacements of the batch under way not created yet: a batch larger than one
    /// transaction holds ([`WriteTx::is_full`]) goes on in the next pass, without waiting
    /// for the part already created.
    batch_left: usize,
}

impl Progress {
    fn new(key: (u64, i64, i32)) -> Self {
        Self {
            key,
            watched: HashMap::new(),
            failures: 0,
            last_failure: None,
            idle_since: None,
            batch_left: 0,
        }
    }
}

/// The updater's in-memory bookkeeping (timers, failure counts); the store holds the rest.
#[derive(Debug, Default)]
pub struct Updater {
    progress: HashMap<String, Progress>,
}

/// The policy an update of `service` runs with, defaults filled in as Swarm's.
pub struct Policy {
    pub parallelism: usize,
    pub delay: Duration,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    pub monitor: Duration,
    pub max_failure_ratio: f32,
}

impl Policy {
    pub fn of(config: Option<&UpdateConfig>) -> Self {
        let c = config.cloned().unwrap_or_default();
        Self {
            parallelism: c.parallelism.map_or(1, |p| p as usize),
            delay: Duration::from_millis(c.delay_ms.max(0) as u64),
            order: UpdateOrder::try_from(c.order).unwrap_or(UpdateOrder::StopFirst),
            failure_action: FailureAction::try_from(c.failure_action)
                .unwrap_or(FailureAction::Pause),
            monitor: c.monitor_ms.map_or(DEFAULT_MONITOR, |ms| {
                Duration::from_millis(ms.max(0) as u64)
            }),
            max_failure_ratio: c.max_failure_ratio,
        }
    }
}

fn state_of(service: &Service) -> UpdateState {
    service
        .update_status
        .as_ref()
        .and_then(|s| UpdateState::try_from(s.state).ok())
        .unwrap_or(UpdateState::Unknown)
}

/// The policy of the update or rollback `service` is in.
pub fn policy(service: &Service) -> Policy {
    if state_of(service) == UpdateState::RollbackStarted {
        // The rollback policy of the spec rolled back from, else of the one rolled back to.
        let config = service
            .previous_spec
            .as_ref()
            .and_then(|s| s.rollback.as_ref())
            .or_else(|| service.spec.as_ref().and_then(|s| s.rollback.as_ref()));
        Policy::of(config)
    } else {
        Policy::of(service.spec.as_ref().and_then(|s| s.update.as_ref()))
    }
}

/// A task that stopped on its own (not because it was asked to).
fn ended(task: &Task) -> bool {
    let state = task.state();
    state.is_terminal() && !(state == TaskState::Shutdown && task.desired() >= TaskState::Shutdown)
}

fn status(state: UpdateState, message: String, started_at_ms: i64) -> UpdateStatus {
    UpdateStatus {
        state: state as i32,
        message,
        started_at_ms,
        completed_at_ms: 0,
    }
}

impl Updater {
    /// Look after the update of a replicated or global `service`, if one is under way.
    pub fn update(
        &mut self,
        tx: &mut WriteTx<'_>,
        service: &Service,
        now: Instant,
    ) -> Result<Outcome, StoreError> {
        if Self::hand_over(tx, service)? {
            return Ok(Outcome {
                acted: true,
                next: Some(now),
            });
        }
        let sv = service.spec_version;
        let current = service.update_status.clone().unwrap_or_default();
        let state = state_of(service);
        // Read without copying: most passes find no update under way (and a service may
        // have 100k tasks).
        let any_old = || {
            tx.read()
                .tasks_of_service(&service.id)
                .any(|t| t.desired() <= TaskState::Running && t.spec_version != sv)
        };
        match state {
            UpdateState::Updating | UpdateState::RollbackStarted => {}
            UpdateState::Unknown if any_old() => {
                // Old tasks and no update recorded (a service from before updates): start one.
                let mut s = service.clone();
                s.update_status = Some(status(
                    UpdateState::Updating,
                    "update in progress".into(),
                    now_ms(),
                ));
                tx.update(Object::Service(s))?;
                return Ok(Outcome {
                    acted: true,
                    next: Some(now),
                });
            }
            _ => {
                self.progress.remove(&service.id);
                return Ok(Outcome::default());
            }
        }
        let mut slots: BTreeMap<Place, Vec<Task>> = BTreeMap::new();
        for task in tx.read().tasks_of_service(&service.id) {
            if task.desired() <= TaskState::Running {
                slots
                    .entry(place(service, task))
                    .or_default()
                    .push(task.clone());
            }
        }
        let rolling_back = state == UpdateState::RollbackStarted;
        let policy = policy(service);
        let key = (sv, current.started_at_ms, current.state);
        let progress = self
            .progress
            .entry(service.id.clone())
            .or_insert_with(|| Progress::new(key));
        if progress.key != key {
            *progress = Progress::new(key);
        }

        // Watch the new tasks: a failure is one that ends within the monitor window.
        let mut next = None;
        for task in tx.read().tasks_of_service(&service.id) {
            if task.spec_version != sv {
                continue;
            }
            let watch = match progress.watched.get(&task.id) {
                Some(w) => *w,
                None if task.desired() <= TaskState::Running => Watch::Starting,
                None => continue,
            };
            let watch = match watch {
                Watch::Done => Watch::Done,
                Watch::Running(since) if now >= since + policy.monitor => Watch::Done,
                _ if ended(task) => {
                    progress.failures += 1;
                    progress.last_failure = Some(task.clone());
                    Watch::Done
                }
                Watch::Starting if task.state() == TaskState::Running => Watch::Running(now),
                w => w,
            };
            let watch = match watch {
                Watch::Running(since) if now >= since + policy.monitor => Watch::Done,
                Watch::Running(since) => {
                    next = earliest(next, Some(since + policy.monitor));
                    watch
                }
                w => w,
            };
            progress.watched.insert(task.id.clone(), watch);
        }

        let updated = slots
            .values()
            .filter(|ts| ts.iter().any(|t| t.spec_version == sv))
            .count();
        if progress.failures > 0
            && progress.failures as f32 / updated.max(1) as f32 > policy.max_failure_ratio
            && policy.failure_action != FailureAction::Continue
        {
            let failed = progress.last_failure.clone().unwrap_or_default();
            let why = failed
                .status
                .as_ref()
                .map(|s| {
                    if s.err.is_empty() {
                        s.message.clone()
                    } else {
                        s.err.clone()
                    }
                })
                .unwrap_or_default();
            let what = format!("failure or early termination of task {}: {why}", failed.id);
            let mut s = service.clone();
            match (policy.failure_action, rolling_back, s.previous_spec.take()) {
                (FailureAction::Rollback, false, Some(previous)) => {
                    let failed_spec = s.spec.replace(previous);
                    s.previous_spec = failed_spec;
                    std::mem::swap(&mut s.spec_version, &mut s.previous_spec_version);
                    s.update_status = Some(status(
                        UpdateState::RollbackStarted,
                        format!("update rolled back due to {what}"),
                        now_ms(),
                    ));
                }
                (_, _, previous) => {
                    s.previous_spec = previous;
                    let (state, verb) = if rolling_back {
                        (UpdateState::RollbackPaused, "rollback")
                    } else {
                        (UpdateState::Paused, "update")
                    };
                    s.update_status = Some(status(
                        state,
                        format!("{verb} paused due to {what}"),
                        current.started_at_ms,
                    ));
                }
            }
            tx.update(Object::Service(s))?;
            return Ok(Outcome {
                acted: true,
                next: Some(now),
            });
        }

        // A place is in flight while its new task has not ended and either an old task is
        // still there or the new one does not run yet. (A new task that ended is a failure,
        // counted above; its place keeps its old task if it still has one.)
        let in_flight = slots
            .values()
            .filter(|ts| {
                let live_new = ts.iter().any(|t| t.spec_version == sv && !ended(t));
                let old = ts.iter().any(|t| t.spec_version != sv);
                live_new
                    && (old
                        || ts
                            .iter()
                            .any(|t| t.spec_version == sv && t.state() != TaskState::Running))
            })
            .count();
        let todo: Vec<Place> = slots
            .iter()
            .filter(|(_, ts)| ts.iter().all(|t| t.spec_version != sv))
            .map(|(place, _)| place.clone())
            .collect();
        if in_flight > 0 && (progress.batch_left == 0 || todo.is_empty()) {
            progress.idle_since = None;
            return Ok(Outcome { acted: false, next });
        }
        if todo.is_empty() {
            if next.is_some() {
                return Ok(Outcome { acted: false, next }); // the last batch is monitored
            }
            let mut s = service.clone();
            let (state, message) = if rolling_back {
                (UpdateState::RollbackCompleted, "rollback completed")
            } else {
                (UpdateState::Completed, "update completed")
            };
            s.update_status = Some(UpdateStatus {
                completed_at_ms: now_ms(),
                ..status(state, message.into(), current.started_at_ms)
            });
            tx.update(Object::Service(s))?;
            self.progress.remove(&service.id);
            return Ok(Outcome {
                acted: true,
                next: None,
            });
        }
        if progress.batch_left == 0 {
            if updated > 0 && !policy.delay.is_zero() {
                let due = *progress.idle_since.get_or_insert(now) + policy.delay;
                if now < due {
                    return Ok(Outcome {
                        acted: false,
                        next: earliest(next, Some(due)),
                    });
                }
            }
            progress.idle_since = None;
            progress.batch_left = match policy.parallelism {
                0 => todo.len(),
                n => n,
            };
        }
        let batch = progress.batch_left.min(todo.len());
        progress.batch_left = 0;
        for (made, place) in todo.into_iter().take(batch).enumerate() {
            if tx.is_full() {
                progress.batch_left = batch - made;
                break;
            }
            let olds = slots.remove(&place).unwrap_or_default();
            let (slot, node_id) = place;
            let task = match policy.order {
                UpdateOrder::StartFirst => new_task(service, slot, &node_id, TaskState::Running),
                // Nothing of the old runs: nothing to hand over.
                UpdateOrder::StopFirst if !olds.iter().any(is_up) => {
                    for old in olds {
                        shut_down(tx, old)?;
                    }
                    new_task(service, slot, &node_id, TaskState::Running)
                }
                UpdateOrder::StopFirst => Task {
                    stop_first: true,
                    ..new_task(service, slot, &node_id, TaskState::Ready)
                },
            };
            progress.watched.insert(task.id.clone(), Watch::Starting);
            tx.create(Object::Task(task))?;
        }
        Ok(Outcome {
            acted: true,
            next: Some(now),
        })
    }

    /// The stop-first hand-overs of `service`, as the store has them: a replacement that is
    /// prepared (READY) has the live tasks of its place shut down; once none of them is up
    /// it is raised to RUNNING. One that is still preparing, or ended (could not be
    /// prepared), is left as it is, and so are the tasks it was to replace. Returns whether
    /// it wrote.
    fn hand_over(tx: &mut WriteTx<'_>, service: &Service) -> Result<bool, StoreError> {
        // Every pass looks at every service: only clone what is being handed over.
        let prepared: Vec<Task> = tx
            .read()
            .tasks_of_service(&service.id)
            .filter(|t| is_handover(service, t) && t.state() == TaskState::Ready)
            .cloned()
            .collect();
        let mut wrote = false;
        for new in prepared {
            if tx.is_full() {
                return Ok(true); // the rest in the next pass, due at once
            }
            let live: Vec<Task> = tx
                .read()
                .tasks_of_service(&service.id)
                .filter(|t| {
                    t.id != new.id && same_place(t, &new) && t.desired() <= TaskState::Running
                })
                .cloned()
                .collect();
            if !live.is_empty() {
                for old in live {
                    shut_down(tx, old)?;
                }
                wrote = true;
            } else if !predecessor_up(tx.read(), &new) {
                let mut started = new;
                started.desired_state = TaskState::Running as i32;
                tx.update(Object::Task(started))?;
                wrote = true;
            }
        }
        Ok(wrote)
    }

    /// Forget services that no longer exist.
    pub fn retain(&mut self, alive: impl Fn(&str) -> bool) {
        self.progress.retain(|id, _| alive(id));
    }
}

/// A task that may still hold its container: placed and not known to have stopped.
fn is_up(task: &Task) -> bool {
    task.state() >= TaskState::Assigned && !task.state().is_terminal()
}

/// Whether a task of `task`'s place other than itself is still up while told to stop: a
/// stop-first replacement waits for it (it never runs beside the task it replaces).
pub fn predecessor_up(r: &ReadTx<'_>, task: &Task) -> bool {
    r.tasks_of_service(&task.service_id).any(|t| {
        same_place(t, task)
            && t.id != task.id
            && t.desired() >= TaskState::Shutdown
            && is_up(t)
            // A task on a node that is down never reports stopping: do not wait for it.
            && r.node(&t.node_id).is_some_and(|n| n.state() != NodeState::Down)
    })
}

/// Whether `task` is a stop-first replacement of the current spec still waiting to be
/// started: the updater hands its place over, the reconcilers leave the place alone.
pub fn is_handover(service: &Service, task: &Task) -> bool {
    task.stop_first
        && task.desired() == TaskState::Ready
        && task.spec_version == service.spec_version
}
