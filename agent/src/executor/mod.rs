//! The executor boundary: how the agent runs one task's container, whatever runs it.
//!
//! This module owns the narrow [`Controller`] lifecycle trait (one controller per task), the
//! [`Executor`] trait that makes controllers and describes the node, and [`step`], the one
//! function that drives every task through its states (swarmkit's `exec.Do`). The Docker
//! engine ([`docker`]), the fake used by tests ([`fake`]) and any simulated executor all go
//! through `step`; none of them decides a task state on its own.
//!
//! Architecture invariant: `step` never sleeps, retries or persists anything. Backoff, the
//! task database and status reporting belong to the worker (`crate::worker`).

pub mod docker;
mod docker_health;
pub mod fake;

use async_trait::async_trait;
use shoal_proto::{NodeDescription, Task, TaskState, TaskStatus};

/// What an executor or controller failed to do.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task's image is not on this node, and images are never pulled.
    #[error("image {image} not found on node {node}")]
    ImageNotFound { image: String, node: String },
    /// Not on the node, and its registry would not give it (in the engine's words:
    /// "pull access denied ...", "manifest unknown", "unauthorized ...").
    #[error("image {image} not found on node {node}, and the pull failed: {message}")]
    PullFailed {
        image: String,
        node: String,
        message: String,
    },
    /// The task's spec cannot be run (no container spec, empty image, ...).
    #[error("task {task_id} has an invalid spec: {reason}")]
    InvalidSpec { task_id: String, reason: String },
    /// An operation that needs the task's container found none.
    #[error("container of task {task_id} not found")]
    ContainerNotFound { task_id: String },
    /// A container this node's agent did not create: the agent never touches it.
    #[error("container {container_id} does not belong to node {node_id}")]
    NotOurs {
        container_id: String,
        node_id: String,
    },
    /// The engine cannot be reached right now; the same call may succeed later.
    #[error("container engine unavailable during {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// The engine answered with an error.
    #[error("{op} {object}: {message}")]
    Engine {
        op: &'static str,
        object: String,
        message: String,
    },
    /// The task's overlay networks cannot be joined on this node.
    #[error("network: {0}")]
    Network(String),
    /// The task's secrets or configs cannot be given to it on this node.
    #[error("{0}")]
    Files(String),
}

impl ExecError {
    /// True when retrying the same call later may succeed: the task's state must not move.
    pub fn is_temporary(&self) -> bool {
        matches!(self, ExecError::Unavailable { .. })
    }
}

/// How a task's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitInfo {
    pub exit_code: i32,
    /// The engine's own error about the exit, if it gave one.
    pub message: Option<String>,
}

/// What the engine knows about a task's container, from [`Controller::inspect`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerState {
    pub container_id: String,
    /// The engine's status word: "created", "running", "exited", ...
    pub status: String,
    pub running: bool,
    /// The process was started at some point (it may have exited since).
    pub started: bool,
    /// Exit code, once the process has exited.
    pub exit_code: Option<i32>,
    /// The healthcheck's verdict while the process runs; `None` when the container has no
    /// healthcheck or is not running (docker calls every stopped container "unhealthy").
    pub health: Option<Health>,
}

/// What a container's healthcheck (the image's or the spec's) says, as Docker reports it in
/// `State.Health.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet healthy: within the start period, or not enough successes yet.
    Starting,
    Healthy,
    /// `retries` checks in a row failed.
    Unhealthy,
}

impl Health {
    /// The word `TaskStatus.health` and `docker ps` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Status message of a started task whose healthcheck has not passed yet.
pub const WAITING_FOR_HEALTH: &str = "starting: waiting for the healthcheck";
/// `TaskStatus.err` of a task whose container turned unhealthy.
pub const UNHEALTHY_ERR: &str = "task: container is unhealthy";

/// The lifecycle of one task's container. Every call is idempotent: calling it again after
/// it succeeded, or after an agent restart, does no harm (swarmkit's `ErrTaskPrepared` and
/// `ErrTaskStarted` cases are folded into success).
#[async_trait]
pub trait Controller: Send {
    /// Checks that the image is present locally (never pulls: else
    /// [`ExecError::ImageNotFound`]), then creates the container, or adopts the existing one
    /// for this task.
    async fn prepare(&mut self) -> Result<(), ExecError>;
    /// Starts the container; starting a running container succeeds.
    async fn start(&mut self) -> Result<(), ExecError>;
    /// Waits until the process exits and returns its exit code.
    async fn wait(&mut self) -> Result<ExitInfo, ExecError>;
    /// Stops with the spec's stop signal, waits the grace period (default 10 s), then kills.
    /// No container, or a stopped one, is success.
    async fn shutdown(&mut self) -> Result<(), ExecError>;
    /// Kills now. No container, or a stopped one, is success.
    async fn terminate(&mut self) -> Result<(), ExecError>;
    /// Removes the container; no container is success.
    async fn remove(&mut self) -> Result<(), ExecError>;
    /// The task's container as the engine sees it, `None` if none exists yet. This is how a
    /// restarted agent picks up where it left off.
    async fn inspect(&mut self) -> Result<Option<ContainerState>, ExecError>;
    /// Waits until the container's health is no longer `seen` and returns it: `None` when
    /// there is no verdict (no healthcheck, no container, or the process no longer runs).
    /// Never busy-loops: engines without health events poll with backoff. Controllers whose
    /// containers have no healthchecks keep the default, which answers `None` at once.
    async fn wait_health(&mut self, seen: Health) -> Result<Option<Health>, ExecError> {
        let _ = seen;
        Ok(None)
    }
    /// The container id once known (after `prepare`, `inspect` or an adoption). Used by
    /// [`step`] to report it; controllers without containers keep the default.
    fn container_id(&self) -> Option<String> {
        None
    }
    /// What the current step is doing, as it changes ("fetching image from n2: 40 MB"):
    /// the worker reports each change as the task's status message meanwhile.
    /// Controllers with nothing to tell keep the default.
    fn progress(&self) -> Option<tokio::sync::watch::Receiver<String>> {
        None
    }
}

/// An image fetched from another node (see [`ImageSource`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The name of the node it came from.
    pub from: String,
    /// Its id on this node's engine, checked equal to the holder's.
    pub image_id: String,
}

/// Where a node gets an image it lacks and cannot pull: from another node of the swarm.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Load `image` into this node's engine from a node that holds it, telling `progress`
    /// what happens ("fetching image from n2: 40 MB"). The error says which nodes were
    /// asked and what each answered.
    async fn fetch(
        &self,
        image: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Fetched, String>;
}

/// Which lines of a container's output to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRead {
    /// Keep reading new lines until the container stops.
    pub follow: bool,
    /// Only the last N lines; `None`: all.
    pub tail: Option<u64>,
    /// Only lines written at or after this time (ns since the Unix epoch); 0: all.
    pub since_ns: i64,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the container wrote it (ns since the Unix epoch).
    pub timestamp_ns: i64,
    pub stderr: bool,
    /// The line without its newline.
    pub data: Vec<u8>,
}

/// A container's output, line by line, as the engine gives it.
pub type LogLines = futures::stream::BoxStream<'static, Result<LogLine, ExecError>>;

/// A node's way of running tasks.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// What the node reports about itself: hostname, platform, resources, engine.
    async fn describe(&self) -> Result<NodeDescription, ExecError>;
    /// A controller for one task. Cheap: it does not talk to the engine.
    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError>;
    /// `(task id, container id)` of every container this node's agent created, running or
    /// not, and only those.
    async fn list_task_containers(&self) -> Result<Vec<(String, String)>, ExecError>;
    /// Removes one of this node's containers (refuses any other with [`ExecError::NotOurs`]).
    async fn remove_container(&self, container_id: &str) -> Result<(), ExecError>;
    /// The output of one of this node's containers, stdout and stderr interleaved as
    /// written. Without `follow` the stream ends at the last line written so far; with it,
    /// when the container stops.
    async fn logs(&self, container_id: &str, read: &LogRead) -> Result<LogLines, ExecError>;
}

/// Why [`step`] returned no new status.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The task is in a terminal state: nothing will ever change it. The status is unchanged.
    #[error("task {task_id} is finished ({state})")]
    Finished {
        task_id: String,
        state: &'static str,
    },
    /// The task has reached its desired state (or passed it) and waits for the desired state
    /// to move on. The status is unchanged.
    #[error("task {task_id} is {state}, waiting for its desired state to advance")]
    Paused {
        task_id: String,
        state: &'static str,
    },
    /// A temporary executor failure: call `step` again later with the same status.
    #[error("task {task_id}: {source}")]
    Retry {
        task_id: String,
        #[source]
        source: ExecError,
    },
}

/// Milliseconds since the Unix epoch, for status timestamps (wall time, not a clock that
/// tests pause).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn state_of(status: &TaskStatus) -> TaskState {
    TaskState::try_from(status.state).unwrap_or(TaskState::New)
}

/// Moves `task` exactly one transition toward its desired state and returns the new status.
///
/// ```text
/// NEW/PENDING/ASSIGNED -> ACCEPTED -> PREPARING -(prepare)-> READY -> STARTING
///   -(start)-> RUNNING -(wait)-> COMPLETE (exit 0) | FAILED ("task: non-zero exit (N)")
/// with a healthcheck: STARTING -(start)-> STARTING (health "starting")
///   -(wait_health)-> RUNNING (health "healthy") | FAILED ("task: container is unhealthy")
/// RUNNING -(unhealthy)-> FAILED ("task: container is unhealthy"), the container stopped
/// desired >= SHUTDOWN and not terminal: -(shutdown)-> SHUTDOWN
/// ```
///
/// A missing image (or a spec the executor cannot run) found before STARTING rejects the
/// task (REJECTED); any other failure of the executor fails it
/// (FAILED, with the error text in `err`), except a temporary one, which returns
/// [`StepError::Retry`] and leaves the status alone. Before a task is running, `inspect`
/// looks for a container that already started (an agent restarted mid-way): the task then
/// jumps to RUNNING and adopts it rather than creating a second one.
///
/// Terminal states return [`StepError::Finished`], and a task that has reached its desired
/// state returns [`StepError::Paused`]: in both cases there is no new status to report.
pub async fn step(
    task: &Task,
    status: &TaskStatus,
    ctl: &mut dyn Controller,
) -> Result<TaskStatus, StepError> {
    let state = state_of(status);
    let desired = task.desired();
    if state.is_terminal() {
        return Err(StepError::Finished {
            task_id: task.id.clone(),
            state: state.docker_name(),
        });
    }

    let mut next = status.clone();
    let fatal = |mut next: TaskStatus, at: TaskState, err: ExecError| {
        if err.is_temporary() {
            return Err(StepError::Retry {
                task_id: task.id.clone(),
                source: err,
            });
        }
        let to = match err {
            ExecError::ImageNotFound { .. }
            | ExecError::PullFailed { .. }
            | ExecError::InvalidSpec { .. }
                if at < TaskState::Starting =>
            {
                TaskState::Rejected
            }
            _ => TaskState::Failed,
        };
        next.state = to as i32;
        next.message = to.docker_name().to_string();
        next.err = err.to_string();
        next.timestamp_ms = now_ms();
        Ok(next)
    };
    let transition = |mut next: TaskStatus, to: TaskState, message: &str, ctl: &dyn Controller| {
        next.state = to as i32;
        next.message = message.to_string();
        next.err.clear();
        next.timestamp_ms = now_ms();
        if let Some(id) = ctl.container_id() {
            next.container_id = id;
        }
        Ok(next)
    };

    // The largest state the agent moves a task to on the manager's word is SHUTDOWN.
    if desired >= TaskState::Shutdown {
        return match ctl.shutdown().await {
            Ok(()) => transition(next, TaskState::Shutdown, "shutdown", ctl),
            Err(e) => fatal(next, state, e),
        };
    }

    // Adoption: a restarted agent may find the container already started.
    if state < TaskState::Running && desired >= TaskState::Running {
        match ctl.inspect().await {
            Ok(Some(c)) if c.running || c.started => {
                next.container_id = c.container_id;
                match c.health {
                    Some(Health::Unhealthy) => return unhealthy(task, next, ctl).await,
                    // Started, not healthy yet: the STARTING step below waits for it.
                    Some(Health::Starting) if c.running => {
                        if state != TaskState::Starting || status.health != "starting" {
                            next.health = Health::Starting.as_str().to_string();
                            return transition(next, TaskState::Starting, WAITING_FOR_HEALTH, ctl);
                        }
                    }
                    h => {
                        next.health = h.map(|h| h.as_str().to_string()).unwrap_or_default();
                        return transition(
                            next,
                            TaskState::Running,
                            "adopted running container",
                            ctl,
                        );
                    }
                }
            }
            Ok(_) => {}
            Err(e) => return fatal(next, state, e),
        }
    }

    if state > desired {
        return Err(StepError::Paused {
            task_id: task.id.clone(),
            state: state.docker_name(),
        });
    }

    // These states proceed even when they equal the desired state (swarmkit's rule).
    match state {
        TaskState::Preparing => {
            return match ctl.prepare().await {
                Ok(()) => transition(next, TaskState::Ready, "prepared", ctl),
                Err(e) => fatal(next, state, e),
            };
        }
        // Started, waiting for the healthcheck to pass.
        TaskState::Starting if status.health == Health::Starting.as_str() => {
            return match ctl.wait_health(Health::Starting).await {
                Ok(Some(Health::Unhealthy)) => unhealthy(task, next, ctl).await,
                Ok(Some(Health::Healthy)) => {
                    next.health = Health::Healthy.as_str().to_string();
                    transition(next, TaskState::Running, "started", ctl)
                }
                // Still starting (a controller that reports health after the process
                // stopped): RUNNING, and the next step collects its exit.
                Ok(Some(Health::Starting)) => transition(next, TaskState::Running, "started", ctl),
                // No verdict: the process stopped before it became healthy (or the
                // healthcheck is gone). RUNNING, and the next step collects its exit.
                Ok(None) => {
                    next.health.clear();
                    transition(next, TaskState::Running, "started", ctl)
                }
                Err(e) => fatal(next, state, e),
            };
        }
        TaskState::Starting => {
            if let Err(e) = ctl.start().await {
                return fatal(next, state, e);
            }
            // A container with a healthcheck (the image's or the spec's) counts as running
            // only once healthy.
            return match ctl.inspect().await {
                Ok(Some(c)) => match c.health {
                    Some(Health::Starting) if c.running => {
                        next.health = Health::Starting.as_str().to_string();
                        transition(next, TaskState::Starting, WAITING_FOR_HEALTH, ctl)
                    }
                    Some(Health::Unhealthy) => unhealthy(task, next, ctl).await,
                    h => {
                        next.health = h.map(|h| h.as_str().to_string()).unwrap_or_default();
                        transition(next, TaskState::Running, "started", ctl)
                    }
                },
                Ok(None) => transition(next, TaskState::Running, "started", ctl),
                Err(e) => fatal(next, state, e),
            };
        }
        TaskState::Running => {
            // With a healthcheck, an unhealthy container fails the task as an exit would.
            if !status.health.is_empty() {
                let seen = if status.health == Health::Starting.as_str() {
                    Health::Starting
                } else {
                    Health::Healthy
                };
                match ctl.wait_health(seen).await {
                    Ok(Some(Health::Unhealthy)) => return unhealthy(task, next, ctl).await,
                    Ok(Some(h)) => next.health = h.as_str().to_string(),
                    Ok(None) => {}
                    Err(e) => return fatal(next, state, e),
                }
            }
            return match ctl.wait().await {
                Ok(exit) => {
                    next.exit_code = exit.exit_code;
                    if exit.exit_code == 0 {
                        transition(next, TaskState::Complete, "finished", ctl)
                    } else {
                        next = transition(next, TaskState::Failed, "failed", ctl)?;
                        next.err = format!("task: non-zero exit ({})", exit.exit_code);
                        Ok(next)
                    }
                }
                Err(e) => fatal(next, state, e),
            };
        }
        _ => {}
    }

    if state >= desired {
        return Err(StepError::Paused {
            task_id: task.id.clone(),
            state: state.docker_name(),
        });
    }
    match state {
        TaskState::New | TaskState::Pending | TaskState::Assigned => {
            transition(next, TaskState::Accepted, "accepted", ctl)
        }
        TaskState::Accepted => transition(next, TaskState::Preparing, "preparing", ctl),
        TaskState::Ready => transition(next, TaskState::Starting, "starting", ctl),
        _ => Err(StepError::Paused {
            task_id: task.id.clone(),
            state: state.docker_name(),
        }),
    }
}

/// The container turned unhealthy: stop it (with its grace period) and fail the task, so
/// the orchestrator replaces it under the restart policy.
async fn unhealthy(
    task: &Task,
    mut next: TaskStatus,
    ctl: &mut dyn Controller,
) -> Result<TaskStatus, StepError> {
    if let Err(e) = ctl.shutdown().await {
        if e.is_temporary() {
            return Err(StepError::Retry {
                task_id: task.id.clone(),
                source: e,
            });
        }
        tracing::warn!(task = %task.id, "stopping the unhealthy container: {e}");
    }
    // How the stopped process ended (SIGTERM: 143, killed after the grace: 137).
    if let Ok(Some(c)) = ctl.inspect().await {
        if let Some(code) = c.exit_code {
            next.exit_code = code;
        }
    }
    next.state = TaskState::Failed as i32;
    next.message = TaskState::Failed.docker_name().to_string();
    next.err = UNHEALTHY_ERR.to_string();
    next.health = Health::Unhealthy.as_str().to_string();
    next.timestamp_ms = now_ms();
    if let Some(id) = ctl.container_id() {
        next.container_id = id;
    }
    Ok(next)
}

#[cfg(test)]
mod tests;
