//! A FAKE executor for tests: an in-memory container engine with no processes.
//!
//! It owns nothing real. [`FakeEngine`] is shared by every [`FakeExecutor`] made from it, so
//! a test can stop a worker, build a new one over the same engine and watch it adopt the
//! "containers" the first one made. It records every controller call so tests can prove
//! that nothing was created twice.
//!
//! What a fake container does is read from its task's spec: a container whose command is
//! `["exit", "N"]` exits with code N as soon as it starts; any other runs until it is shut
//! down (exit 143), terminated (137) or told to exit with [`FakeEngine::exit`]. A container
//! whose spec has a healthcheck (other than `["NONE"]`) is "starting" once started, until a
//! test says otherwise with [`FakeEngine::set_health`]. Its output is what a test writes
//! with [`FakeEngine::print`]. Images are
//! all present except those named with [`FakeEngine::remove_image`]. While
//! [`FakeEngine::set_down`] is on, every call fails with a temporary error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use shoal_proto::{NodeDescription, Platform, Resources, Task};
use tokio::sync::watch;

use super::{
    now_ms, ContainerState, Controller, ExecError, Executor, ExitInfo, Health, LogLine, LogLines,
    LogRead,
};

/// Where a fake container's process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeRun {
    Created,
    Running,
    Exited(i32),
}

/// One fake container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    pub id: String,
    pub task_id: String,
    pub node_id: String,
    pub image: String,
    pub run: FakeRun,
    /// Exit code the process ends with as soon as it starts (`["exit", "N"]`).
    pub exit_on_start: Option<i32>,
    /// The spec has a healthcheck: health becomes "starting" when the container starts.
    pub has_healthcheck: bool,
    /// The healthcheck's verdict, once started (`None` without a healthcheck).
    pub health: Option<Health>,
    /// What the "process" wrote, through [`FakeEngine::print`].
    pub output: Vec<LogLine>,
}

/// One recorded controller or executor call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    pub op: &'static str,
    pub task_id: String,
}

#[derive(Default)]
struct EngineState {
    missing_images: HashSet<String>,
    containers: BTreeMap<String, FakeContainer>,
    next_id: u64,
    calls: Vec<FakeCall>,
    down: bool,
}

/// The shared in-memory engine. Clones share state.
#[derive(Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<EngineState>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEngine {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(EngineState::default())),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }

    /// An executor for node `node_id` over this engine.
    pub fn executor(&self, node_id: &str) -> FakeExecutor {
        FakeExecutor {
            engine: self.clone(),
            node_id: node_id.to_string(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        // A test that panicked while holding the lock already failed: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes `image` absent from the node.
    pub fn remove_image(&self, image: &str) {
        self.lock().missing_images.insert(image.to_string());
    }

    /// While `down`, every call fails with [`ExecError::Unavailable`].
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
        self.bump();
    }

    /// Makes the running container of `task_id` exit with `code`.
    pub fn exit(&self, task_id: &str, code: i32) {
        {
            let mut s = self.lock();
            for c in s.containers.values_mut() {
                if c.task_id == task_id && c.run == FakeRun::Running {
                    c.run = FakeRun::Exited(code);
                }
            }
        }
        self.bump();
    }

    /// Sets the health of the containers of `task_id` that have a healthcheck.
    pub fn set_health(&self, task_id: &str, health: Health) {
        {
            let mut s = self.lock();
            for c in s.containers.values_mut() {
                if c.task_id == task_id && c.has_healthcheck {
                    c.health = Some(health);
                }
            }
        }
        self.bump();
    }

    /// Makes the containers of `task_id` write one line, stamped now.
    pub fn print(&self, task_id: &str, stderr: bool, line: &str) {
        {
            let mut s = self.lock();
            for c in s.containers.values_mut() {
                if c.task_id == task_id {
                    c.output.push(LogLine {
                        timestamp_ns: now_ms() * 1_000_000,
                        stderr,
                        data: line.as_bytes().to_vec(),
                    });
                }
            }
        }
        self.bump();
    }

    /// Every container, in creation order of their ids.
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.values().cloned().collect()
    }

    /// Containers of one task.
    pub fn containers_of(&self, task_id: &str) -> Vec<FakeContainer> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.task_id == task_id)
            .cloned()
            .collect()
    }

    /// Every recorded call.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// How many times `op` was called for `task_id`.
    pub fn count(&self, op: &str, task_id: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.op == op && c.task_id == task_id)
            .count()
    }

    /// Adds a container directly, as if some agent had created it (for orphan tests).
    pub fn insert_container(&self, task_id: &str, node_id: &str, run: FakeRun) -> String {
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            let id = format!("fake{:08}", s.next_id);
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    id: id.clone(),
                    task_id: task_id.to_string(),
                    node_id: node_id.to_string(),
                    image: String::new(),
                    run,
                    exit_on_start: None,
                    has_healthcheck: false,
                    health: None,
                    output: Vec::new(),
                },
            );
            id
        };
        self.bump();
        id
    }

    /// Resolves once `cond` holds over the containers (checked on every engine change).
    pub async fn wait_for(&self, mut cond: impl FnMut(&[FakeContainer]) -> bool) {
        let mut rx = self.changed.subscribe();
        loop {
            if cond(&self.containers()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records a call, failing it if the engine is down.
    fn call(&self, op: &'static str, task_id: &str) -> Result<(), ExecError> {
        let mut s = self.lock();
        s.calls.push(FakeCall {
            op,
            task_id: task_id.to_string(),
        });
        if s.down {
            return Err(ExecError::Unavailable {
                op,
                message: "fake engine is down".to_string(),
            });
        }
        Ok(())
    }
}

/// [`Executor`] over a [`FakeEngine`] for one node.
#[derive(Clone)]
pub struct FakeExecutor {
    engine: FakeEngine,
    node_id: String,
}

impl FakeExecutor {
    pub fn engine(&self) -> &FakeEngine {
        &self.engine
    }
}

#[async_trait]
impl Executor for FakeExecutor {
    async fn describe(&self) -> Result<NodeDescription, ExecError> {
        self.engine.call("describe", "")?;
        Ok(NodeDescription {
            hostname: format!("fake-{}", self.node_id),
            platform: Some(Platform {
                os: "linux".to_string(),
                architecture: "x86_64".to_string(),
            }),
            resources: Some(Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 4 << 30,
            }),
            engine_version: "fake".to_string(),
            engine_labels: HashMap::new(),
        })
    }

    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError> {
        let container = task
            .spec
            .as_ref()
            .and_then(|s| s.container.as_ref())
            .ok_or_else(|| ExecError::InvalidSpec {
                task_id: task.id.clone(),
                reason: "no container spec".to_string(),
            })?;
        let exit_on_start = match container.command.as_slice() {
            [exit, code] if exit == "exit" => code.parse().ok(),
            _ => None,
        };
        let has_healthcheck = container
            .healthcheck
            .as_ref()
            .is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"));
        Ok(Box::new(FakeController {
            engine: self.engine.clone(),
            node_id: self.node_id.clone(),
            task_id: task.id.clone(),
            image: container.image.clone(),
            exit_on_start,
            has_healthcheck,
            container_id: None,
        }))
    }

    async fn list_task_containers(&self) -> Result<Vec<(String, String)>, ExecError> {
        self.engine.call("list", "")?;
        Ok(self
            .engine
            .lock()
            .containers
            .values()
            .filter(|c| c.node_id == self.node_id)
            .map(|c| (c.task_id.clone(), c.id.clone()))
            .collect())
    }

    async fn remove_container(&self, container_id: &str) -> Result<(), ExecError> {
        let task_id = {
            let s = self.engine.lock();
            match s.containers.get(container_id) {
                None => return Ok(()),
                Some(c) if c.node_id != self.node_id => {
                    return Err(ExecError::NotOurs {
                        container_id: container_id.to_string(),
                        node_id: self.node_id.clone(),
                    })
                }
                Some(c) => c.task_id.clone(),
            }
        };
        self.engine.call("remove_container", &task_id)?;
        self.engine.lock().containers.remove(container_id);
        self.engine.bump();
        Ok(())
    }

    async fn logs(&self, container_id: &str, read: &LogRead) -> Result<LogLines, ExecError> {
        let task_id = self
            .engine
            .lock()
            .containers
            .get(container_id)
            .map(|c| c.task_id.clone())
            .ok_or_else(|| ExecError::Engine {
                op: "read logs of container",
                object: container_id.to_string(),
                message: "no such container".to_string(),
            })?;
        self.engine.call("logs", &task_id)?;
        // Lines [seen..] of the container, then (following) new ones as the engine changes,
        // until the container no longer runs.
        let lines = |seen: usize| {
            let s = self.engine.lock();
            s.containers.get(container_id).map(|c| {
                let running = c.run == FakeRun::Running;
                (c.output[seen.min(c.output.len())..].to_vec(), running)
            })
        };
        let (mut first, _) = lines(0).unwrap_or_default();
        if let Some(tail) = read.tail {
            let skip = first
                .len()
                .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
            first.drain(..skip);
        }
        let seen = lines(0).map_or(0, |(all, _)| all.len());
        let since = read.since_ns;
        let keep = move |l: &LogLine| l.timestamp_ns >= since;
        let first: Vec<_> = first.into_iter().filter(|l| keep(l)).map(Ok).collect();
        if !read.follow {
            return Ok(futures::stream::iter(first).boxed());
        }
        let engine = self.engine.clone();
        let id = container_id.to_string();
        let rx = self.engine.changed.subscribe();
        let rest = futures::stream::unfold(
            (engine, id, rx, seen),
            move |(engine, id, mut rx, seen)| async move {
                loop {
                    let now = {
                        let s = engine.lock();
                        s.containers.get(&id).map(|c| {
                            (
                                c.output[seen.min(c.output.len())..].to_vec(),
                                c.run == FakeRun::Running,
                                c.output.len(),
                            )
                        })
                    };
                    match now {
                        Some((new, _, len)) if !new.is_empty() => {
                            let batch: Vec<_> =
                                new.into_iter().filter(|l| keep(l)).map(Ok).collect();
                            return Some((futures::stream::iter(batch), (engine, id, rx, len)));
                        }
                        Some((_, true, _)) => {
                            if rx.changed().await.is_err() {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
            },
        );
        Ok(futures::stream::iter(first).chain(rest.flatten()).boxed())
    }
}

/// The FAKE [`Controller`] of one task.
pub struct FakeController {
    engine: FakeEngine,
    node_id: String,
    task_id: String,
    image: String,
    exit_on_start: Option<i32>,
    has_healthcheck: bool,
    container_id: Option<String>,
}

impl FakeController {
    /// The task's container on this node, by its labels (task id and node id).
    fn find(&mut self) -> Option<FakeContainer> {
        let s = self.engine.lock();
        let found = s
            .containers
            .values()
            .find(|c| c.task_id == self.task_id && c.node_id == self.node_id)
            .cloned();
        drop(s);
        self.container_id = found.as_ref().map(|c| c.id.clone());
        found
    }

    fn set_run(&self, id: &str, run: FakeRun) {
        if let Some(c) = self.engine.lock().containers.get_mut(id) {
            c.run = run;
        }
        self.engine.bump();
    }

    fn not_found(&self) -> ExecError {
        ExecError::ContainerNotFound {
            task_id: self.task_id.clone(),
        }
    }
}

#[async_trait]
impl Controller for FakeController {
    async fn prepare(&mut self) -> Result<(), ExecError> {
        self.engine.call("prepare", &self.task_id)?;
        if self.find().is_some() {
            return Ok(());
        }
        if self.engine.lock().missing_images.contains(&self.image) {
            return Err(ExecError::ImageNotFound {
                image: self.image.clone(),
                node: self.node_id.clone(),
            });
        }
        let id = {
            let mut s = self.engine.lock();
            s.next_id += 1;
            let id = format!("fake{:08}", s.next_id);
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    id: id.clone(),
                    task_id: self.task_id.clone(),
                    node_id: self.node_id.clone(),
                    image: self.image.clone(),
                    run: FakeRun::Created,
                    exit_on_start: self.exit_on_start,
                    has_healthcheck: self.has_healthcheck,
                    health: None,
                    output: Vec::new(),
                },
            );
            id
        };
        self.engine.call("create", &self.task_id)?;
        self.container_id = Some(id);
        self.engine.bump();
        Ok(())
    }

    async fn start(&mut self) -> Result<(), ExecError> {
        self.engine.call("start", &self.task_id)?;
        let c = self.find().ok_or_else(|| self.not_found())?;
        if c.run == FakeRun::Created {
            let run = c.exit_on_start.map_or(FakeRun::Running, FakeRun::Exited);
            if c.has_healthcheck {
                if let Some(c) = self.engine.lock().containers.get_mut(&c.id) {
                    c.health = Some(Health::Starting);
                }
            }
            self.set_run(&c.id, run);
        }
        Ok(())
    }

    async fn wait(&mut self) -> Result<ExitInfo, ExecError> {
        self.engine.call("wait", &self.task_id)?;
        let mut rx = self.engine.changed.subscribe();
        loop {
            let c = self.find().ok_or_else(|| self.not_found())?;
            match c.run {
                FakeRun::Exited(code) => {
                    return Ok(ExitInfo {
                        exit_code: code,
                        message: None,
                    })
                }
                // docker's "not-running" condition returns at once for a created container.
                FakeRun::Created => return Ok(ExitInfo::default()),
                FakeRun::Running => {}
            }
            if rx.changed().await.is_err() {
                return Err(self.not_found());
            }
        }
    }

    async fn shutdown(&mut self) -> Result<(), ExecError> {
        self.engine.call("shutdown", &self.task_id)?;
        if let Some(c) = self.find() {
            if c.run == FakeRun::Running {
                self.set_run(&c.id, FakeRun::Exited(143));
            }
        }
        Ok(())
    }

    async fn terminate(&mut self) -> Result<(), ExecError> {
        self.engine.call("terminate", &self.task_id)?;
        if let Some(c) = self.find() {
            if c.run == FakeRun::Running {
                self.set_run(&c.id, FakeRun::Exited(137));
            }
        }
        Ok(())
    }

    async fn remove(&mut self) -> Result<(), ExecError> {
        self.engine.call("remove", &self.task_id)?;
        if let Some(c) = self.find() {
            self.engine.lock().containers.remove(&c.id);
            self.container_id = None;
            self.engine.bump();
        }
        Ok(())
    }

    async fn inspect(&mut self) -> Result<Option<ContainerState>, ExecError> {
        self.engine.call("inspect", &self.task_id)?;
        Ok(self.find().map(|c| {
            let (status, running, started, exit_code) = match c.run {
                FakeRun::Created => ("created", false, false, None),
                FakeRun::Running => ("running", true, true, None),
                FakeRun::Exited(code) => ("exited", false, true, Some(code)),
            };
            ContainerState {
                container_id: c.id,
                status: status.to_string(),
                running,
                started,
                exit_code,
                // As docker's: a verdict only while the process runs.
                health: c.health.filter(|_| running),
            }
        }))
    }

    async fn wait_health(&mut self, seen: Health) -> Result<Option<Health>, ExecError> {
        self.engine.call("wait_health", &self.task_id)?;
        let mut rx = self.engine.changed.subscribe();
        loop {
            let Some(c) = self.find() else {
                return Ok(None);
            };
            match c.health.filter(|_| c.run == FakeRun::Running) {
                None => return Ok(None),
                Some(h) if h != seen => return Ok(Some(h)),
                Some(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err(self.not_found());
            }
        }
    }

    fn container_id(&self) -> Option<String> {
        self.container_id.clone()
    }
}

/// A task for tests: service `svc`, the given slot, image and command, desired RUNNING,
/// observed ASSIGNED.
pub fn test_task(id: &str, slot: u64, image: &str, command: &[&str]) -> Task {
    use shoal_proto::{ContainerSpec, TaskSpec, TaskState, TaskStatus};
    Task {
        id: id.to_string(),
        service_id: "svc-id".to_string(),
        service_name: "svc".to_string(),
        slot,
        spec: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: image.to_string(),
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Assigned as i32,
            message: "assigned".to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
