//! The worker: reconciles the manager's assignment set into one supervisor per task.
//!
//! It owns the per-task supervisors and the task database's contents. A supervisor drives
//! its task with [`step`] until the task is terminal, persisting every new status to the
//! [`TaskDb`] before it reports it on the status channel. The manager's word reaches a
//! supervisor through a watch channel: a new desired state (SHUTDOWN) interrupts a pending
//! wait, and a task leaving the assignment set is shut down if still running, its container
//! removed and the task forgotten. Terminal tasks still assigned keep their container.
//!
//! At start the worker loads the database and restarts a supervisor for every stored task,
//! so running containers are adopted, never duplicated; containers of this node whose task
//! the database does not know are orphans and are removed.
//!
//! Stopping the worker stops the supervisors, not the containers: they keep running while
//! `shoald` restarts. The worker does not know about sessions, gRPC or Docker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::{now_ms, step, Controller, ExecError, Executor, StepError};
use crate::taskdb::{TaskDb, TaskDbError};

/// First wait after a temporary executor failure; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries of a failing executor call.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Tasks brought from assigned to running at once. A task holds its place from its first
/// step until it runs, so with many tasks arriving together the first ones run early
/// instead of all of them creeping forward together (on 2 cores, 50 parallel starts put
/// the first task at 0.6 s; 4 at a time keeps the total and brings the first forward).
pub const MAX_CONCURRENT_STARTS: usize = 4;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker: loading the task database: {0}")]
    Db(#[from] TaskDbError),
    #[error("worker: listing this node's containers: {0}")]
    Executor(#[from] ExecError),
}

/// What a supervisor is told: the manager's latest copy of its task, and whether the task
/// is still in the assignment set.
#[derive(Clone, Debug)]
struct Assignment {
    task: Task,
    assigned: bool,
}

struct Supervisor {
    tx: watch::Sender<Assignment>,
    handle: JoinHandle<()>,
    /// Left the assignment set: shutting down and removing; never reassigned.
    retiring: bool,
}

/// What every supervisor shares.
#[derive(Clone)]
struct Ctx {
    executor: Arc<dyn Executor>,
    db: TaskDb,
    status_tx: mpsc::Sender<(String, TaskStatus)>,
    cancel: CancellationToken,
    starts: Arc<Semaphore>,
    /// Bumped whenever a task's stored status changes; see [`TaskFeed`].
    changes: Arc<watch::Sender<()>>,
}

/// Runs this node's tasks: one supervisor per task id.
pub struct Worker {
    ctx: Ctx,
    supervisors: Mutex<HashMap<String, Supervisor>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A worker dropped without `shutdown` still stops its supervisors.
        self.ctx.cancel.cancel();
    }
}

impl Worker {
    /// Loads the task database, removes this node's orphaned containers (ours, but of a task
    /// the database does not know) and restarts a supervisor for every stored task.
    pub async fn new(
        executor: Arc<dyn Executor>,
        db: TaskDb,
        status_tx: mpsc::Sender<(String, TaskStatus)>,
    ) -> Result<Self, WorkerError> {
        let stored = db.list()?;
        let known: HashSet<&str> = stored.iter().map(|(t, _)| t.id.as_str()).collect();
        for (task_id, container_id) in executor.list_task_containers().await? {
            if known.contains(task_id.as_str()) {
                continue;
            }
            tracing::info!(task = %task_id, container = %container_id, "removing orphaned container");
            if let Err(e) = executor.remove_container(&container_id).await {
                tracing::warn!(task = %task_id, "removing orphaned container {container_id}: {e}");
            }
        }
        let ctx = Ctx {
            executor,
            db,
            status_tx,
            cancel: CancellationToken::new(),
            starts: Arc::new(Semaphore::new(MAX_CONCURRENT_STARTS)),
            changes: Arc::new(watch::Sender::new(())),
        };
        let mut supervisors = HashMap::new();
        for (task, status) in stored {
            tracing::debug!(task = %task.id, state = ?TaskState::try_from(status.state), "resuming task");
            let id = task.id.clone();
            supervisors.insert(id, spawn(&ctx, task, status));
        }
        Ok(Self {
            ctx,
            supervisors: Mutex::new(supervisors),
        })
    }

    /// Reconciles to `tasks`, the COMPLETE set of tasks the manager gives this node now:
    /// starts supervisors for new tasks, passes changes (desired state) to running ones,
    /// and retires the tasks that are no longer in the set.
    pub async fn assign(&self, tasks: Vec<Task>) {
        let mut sups = self.supervisors.lock().await;
        // Forget retired supervisors that have finished their work.
        sups.retain(|_, s| !(s.retiring && s.handle.is_finished()));

        let mut ids = HashSet::with_capacity(tasks.len());
        for task in tasks {
            ids.insert(task.id.clone());
            match sups.get(&task.id) {
                Some(s) if s.retiring => {
                    tracing::warn!(task = %task.id, "task reassigned while it is being removed; ignored");
                }
                Some(s) => {
                    s.tx.send_if_modified(|a| {
                        if a.task == task {
                            false
                        } else {
                            a.task = task;
                            true
                        }
                    });
                }
                None => {
                    let status = task.status.clone().unwrap_or_else(|| TaskStatus {
                        state: TaskState::Assigned as i32,
                        ..Default::default()
                    });
                    let id = task.id.clone();
                    sups.insert(id, spawn(&self.ctx, task, status));
                }
            }
        }
        for (id, s) in sups.iter_mut() {
            if !ids.contains(id) && !s.retiring {
                tracing::info!(task = %id, "task left the assignment set");
                s.retiring = true;
                s.tx.send_modify(|a| a.assigned = false);
            }
        }
    }

    /// The last status of every task this node holds, as stored: a new session reports them
    /// all, so nothing reported while no manager listened is lost.
    pub fn statuses(&self) -> Vec<(String, TaskStatus)> {
        stored(&self.ctx.db)
            .into_iter()
            .map(|(task, status)| (task.id, status))
            .collect()
    }

    /// A live view of this node's tasks, for readers outside the worker (log publishers).
    pub fn feed(&self) -> TaskFeed {
        TaskFeed {
            db: self.ctx.db.clone(),
            changes: self.ctx.changes.subscribe(),
        }
    }

    /// The executor the tasks run on.
    pub fn executor(&self) -> Arc<dyn Executor> {
        self.ctx.executor.clone()
    }

    /// Stops every supervisor and waits for them. Containers keep running: a new worker over
    /// the same database adopts them.
    pub async fn shutdown(self) {
        self.ctx.cancel.cancel();
        let sups = std::mem::take(&mut *self.supervisors.lock().await);
        for (id, s) in sups {
            if let Err(e) = s.handle.await {
                tracing::warn!(task = %id, "supervisor ended abnormally: {e}");
            }
        }
    }
}

/// The tasks this node holds and their stored statuses, with a signal when any changes.
#[derive(Clone)]
pub struct TaskFeed {
    db: TaskDb,
    changes: watch::Receiver<()>,
}

impl TaskFeed {
    /// Every task the node holds now, with its last status.
    pub fn tasks(&self) -> Vec<(Task, TaskStatus)> {
        stored(&self.db)
    }

    /// Waits until some task's status changed since the last call; false once the worker
    /// is gone.
    pub async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }
}

/// Every stored task with its last status; none (and a warning) if the database fails.
fn stored(db: &TaskDb) -> Vec<(Task, TaskStatus)> {
    db.list().unwrap_or_else(|e| {
        tracing::warn!("reading the task database: {e}");
        Vec::new()
    })
}

fn spawn(ctx: &Ctx, task: Task, status: TaskStatus) -> Supervisor {
    let (tx, rx) = watch::channel(Assignment {
        task,
        assigned: true,
    });
    let handle = tokio::spawn(supervise(ctx.clone(), rx, status));
    Supervisor {
        tx,
        handle,
        retiring: false,
    }
}

/// Exponential backoff for temporary executor failures.
struct Backoff(Option<Duration>);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0.map_or(MIN_BACKOFF, |d| (d * 2).min(MAX_BACKOFF));
        self.0 = Some(d);
        d
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// How a supervisor's wait for something ended.
enum Woke {
    /// The manager changed the task (or removed it from the set).
    Changed,
    /// The worker is stopping (or gone).
    Cancelled,
    /// The awaited thing happened.
    Done,
}

/// One task's supervisor: steps the task until it is terminal, then parks until the task
/// leaves the assignment set, and retires it.
async fn supervise(ctx: Ctx, mut rx: watch::Receiver<Assignment>, mut status: TaskStatus) {
    let task_id = rx.borrow().task.id.clone();
    let mut ctl: Option<Box<dyn Controller>> = None;
    let mut backoff = Backoff(None);
    let mut start_permit: Option<OwnedSemaphorePermit> = None;

    loop {
        let Assignment { task, assigned } = rx.borrow_and_update().clone();
        if !assigned {
            break;
        }
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::New);
        // A started task waiting for its healthcheck gives its place to the next one.
        let health_wait = state == TaskState::Starting && status.health == "starting";
        let starting =
            state < TaskState::Running && task.desired() <= TaskState::Running && !health_wait;
        if !starting {
            start_permit = None;
        } else if start_permit.is_none() {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                permit = ctx.starts.clone().acquire_owned() => match permit {
                    Ok(p) => start_permit = Some(p),
                    Err(_) => return,
                },
            }
        }
        let ctl = match ctl.as_mut() {
            Some(c) => c,
            None => match ctx.executor.controller(&task) {
                Ok(c) => ctl.insert(c),
                Err(e) => {
                    // A task the executor cannot even describe never runs.
                    if !state.is_terminal() {
                        status = TaskStatus {
                            state: TaskState::Rejected as i32,
                            message: "rejected".to_string(),
                            err: e.to_string(),
                            timestamp_ms: now_ms(),
                            ..status
                        };
                        if !report(&ctx, &task, &status).await {
                            return;
                        }
                    }
                    match park(&ctx, &mut rx, None).await {
                        Woke::Cancelled => return,
                        _ => continue,
                    }
                }
            },
        };

        // Only a wait is interrupted by the manager's changes; the other steps are short and
        // better finished than abandoned half-way.
        let waiting = state == TaskState::Running || health_wait;
        let mut changed_meanwhile = false;
        let mut progress = ctl.progress();
        let outcome = {
            let fut = step(&task, &status, ctl.as_mut());
            tokio::pin!(fut);
            loop {
                tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => return,
                    r = &mut fut => break Some(r),
                    Some(message) = told(&mut progress) => {
                        // What the step does meanwhile, as the status message.
                        let interim = TaskStatus { message, ..status.clone() };
                        if !report(&ctx, &task, &interim).await {
                            return;
                        }
                    }
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        changed_meanwhile = true;
                        let a = rx.borrow();
                        if waiting && (!a.assigned || a.task.desired() != task.desired()) {
                            break None;
                        }
                    }
                }
            }
        };
        match outcome {
            // Interrupted: go round with the new assignment.
            None => continue,
            Some(Ok(next)) => {
                backoff.reset();
                tracing::debug!(task = %task_id, from = state.docker_name(), to = ?TaskState::try_from(next.state), err = %next.err, "task state");
                status = next;
                if !report(&ctx, &task, &status).await {
                    return;
                }
            }
            Some(Err(StepError::Finished { .. } | StepError::Paused { .. })) => {
                start_permit = None;
                // Nothing to do until the manager says something new (unless it already
                // did while the step ran).
                if changed_meanwhile {
                    continue;
                }
                if let Woke::Cancelled = park(&ctx, &mut rx, None).await {
                    return;
                }
            }
            Some(Err(e @ StepError::Retry { .. })) => {
                let delay = backoff.next();
                tracing::warn!(task = %task_id, "{e}; retrying in {delay:?}");
                if let Woke::Cancelled = park(&ctx, &mut rx, Some(delay)).await {
                    return;
                }
            }
        }
    }

    retire(ctx, rx, ctl, status).await;
}

/// The controller's next progress message; never, when it has none to tell.
async fn told(progress: &mut Option<watch::Receiver<String>>) -> Option<String> {
    let Some(rx) = progress.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *progress = None;
        return None;
    }
    let message = rx.borrow_and_update().clone();
    (!message.is_empty()).then_some(message)
}

/// Waits for a change of the assignment, for `timeout` if given, or for cancellation.
async fn park(ctx: &Ctx, rx: &mut watch::Receiver<Assignment>, timeout: Option<Duration>) -> Woke {
    let sleep = async {
        match timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Woke::Cancelled,
        changed = rx.changed() => if changed.is_ok() { Woke::Changed } else { Woke::Cancelled },
        _ = sleep => Woke::Done,
    }
}

/// Persists then reports a new status. False when the worker is stopping.
async fn report(ctx: &Ctx, task: &Task, status: &TaskStatus) -> bool {
    if let Err(e) = ctx.db.put(task, status).await {
        tracing::error!(task = %task.id, "{e}");
    }
    ctx.changes.send_replace(());
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => false,
        sent = ctx.status_tx.send((task.id.clone(), status.clone())) => {
            if sent.is_err() {
                tracing::debug!(task = %task.id, "no one listens to task statuses");
            }
            true
        }
    }
}

/// A task left the assignment set: shut it down if it still runs, remove its container,
/// forget it. Stops half-way if the worker stops; the database still knows the task then,
/// so the next worker finishes the job when the manager's set arrives.
async fn retire(
    ctx: Ctx,
    mut rx: watch::Receiver<Assignment>,
    mut ctl: Option<Box<dyn Controller>>,
    mut status: TaskStatus,
) {
    let mut task = rx.borrow().task.clone();
    let mut backoff = Backoff(None);
    // The task may leave the set before its supervisor made a controller (a restarted
    // agent whose task the manager dropped meanwhile): make one now, to stop it gracefully.
    if ctl.is_none() {
        ctl = ctx.executor.controller(&task).ok();
    }

    if let Some(ctl) = ctl.as_mut() {
        task.desired_state = TaskState::Shutdown as i32;
        loop {
            let r = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return,
                r = step(&task, &status, ctl.as_mut()) => r,
            };
            match r {
                Ok(next) => {
                    status = next;
                    if !report(&ctx, &task, &status).await {
                        return;
                    }
                    break;
                }
                Err(StepError::Retry { source, .. }) => {
                    let delay = backoff.next();
                    tracing::warn!(task = %task.id, "shutting down: {source}; retrying in {delay:?}");
                    if let Woke::Cancelled = park(&ctx, &mut rx, Some(delay)).await {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        backoff.reset();
        loop {
            let r = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return,
                r = ctl.remove() => r,
            };
            match r {
                Ok(()) => break,
                Err(e) if e.is_temporary() => {
                    let delay = backoff.next();
                    tracing::warn!(task = %task.id, "removing container: {e}; retrying in {delay:?}");
                    if let Woke::Cancelled = park(&ctx, &mut rx, Some(delay)).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(task = %task.id, "removing container: {e}");
                    break;
                }
            }
        }
    } else {
        // No controller could be made: remove the task's containers by their labels.
        match ctx.executor.list_task_containers().await {
            Ok(list) => {
                for (_, cid) in list.into_iter().filter(|(t, _)| *t == task.id) {
                    if let Err(e) = ctx.executor.remove_container(&cid).await {
                        tracing::error!(task = %task.id, "removing container {cid}: {e}");
                    }
                }
            }
            Err(e) => tracing::error!(task = %task.id, "listing containers: {e}"),
        }
    }
    if let Err(e) = ctx.db.remove(&task.id).await {
        tracing::error!(task = %task.id, "{e}");
    }
    tracing::info!(task = %task.id, "task removed");
}

#[cfg(test)]
mod tests;
