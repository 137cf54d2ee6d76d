//! The worker over the FAKE executor and a real sled task database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{Task, TaskState, TaskStatus};
use tokio::sync::mpsc;

use super::Worker;
use crate::executor::fake::{test_task, FakeEngine, FakeRun};
use crate::taskdb::TaskDb;

const LIMIT: Duration = Duration::from_secs(20);

/// A worker over a fake engine, with the statuses it reports.
struct Harness {
    engine: FakeEngine,
    db: TaskDb,
    worker: Worker,
    rx: mpsc::Receiver<(String, TaskStatus)>,
    /// Latest status seen per task.
    latest: HashMap<String, TaskStatus>,
    _dir: tempfile::TempDir,
}

fn state(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap_or(TaskState::New)
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TaskDb::open(dir.path(), None).expect("open db");
        Self::over(FakeEngine::new(), db, dir).await
    }

    async fn over(engine: FakeEngine, db: TaskDb, dir: tempfile::TempDir) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let worker = Worker::new(Arc::new(engine.executor("n1")), db.clone(), tx)
            .await
            .expect("worker");
        Self {
            engine,
            db,
            worker,
            rx,
            latest: HashMap::new(),
            _dir: dir,
        }
    }

    /// Stops the worker and starts a new one over the same engine and database, as a
    /// restarted shoald would.
    async fn restart(self) -> Self {
        let Harness {
            engine,
            db,
            worker,
            _dir,
            ..
        } = self;
        worker.shutdown().await;
        Self::over(engine, db, _dir).await
    }

    /// Reads statuses until `task_id` reports `want` (every status must move forward).
    async fn wait_state(&mut self, task_id: &str, want: TaskState) -> TaskStatus {
        let fut = async {
            loop {
                if let Some(s) = self.latest.get(task_id) {
                    if state(s) == want {
                        return s.clone();
                    }
                    assert!(
                        state(s) < want,
                        "task {task_id} went to {:?} ({}), wanted {want:?}",
                        state(s),
                        s.err
                    );
                }
                let (id, status) = self.rx.recv().await.expect("status channel closed");
                if let Some(prev) = self.latest.get(&id) {
                    assert!(state(&status) > state(prev), "task {id} went backwards");
                }
                self.latest.insert(id, status);
            }
        };
        tokio::time::timeout(LIMIT, fut)
            .await
            .unwrap_or_else(|_| panic!("task {task_id} never reached {want:?}"))
    }

    /// Waits until the db no longer knows `task_id`.
    async fn wait_forgotten(&self, task_id: &str) {
        eventually(|| self.db.get(task_id).expect("db get").is_none()).await;
    }
}

/// Polls a condition that nothing signals (the database) until it holds.
async fn eventually(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition never held");
}

fn running_task(id: &str, slot: u64) -> Task {
    test_task(id, slot, "img:1", &[])
}

fn with_desired(mut t: Task, desired: TaskState) -> Task {
    t.desired_state = desired as i32;
    t
}

#[tokio::test]
async fn three_assigned_tasks_run() {
    let mut h = Harness::new().await;
    let tasks: Vec<Task> = (1..=3).map(|i| running_task(&format!("t{i}"), i)).collect();
    h.worker.assign(tasks).await;
    for i in 1..=3 {
        let s = h.wait_state(&format!("t{i}"), TaskState::Running).await;
        assert!(!s.container_id.is_empty());
    }
    assert_eq!(h.engine.containers().len(), 3);
    let stored = h.db.get("t2").expect("get").expect("stored");
    assert_eq!(state(&stored.1), TaskState::Running);
    h.worker.shutdown().await;
}

#[tokio::test]
async fn a_task_removed_from_the_set_is_shut_down_and_removed() {
    let mut h = Harness::new().await;
    let tasks: Vec<Task> = (1..=3).map(|i| running_task(&format!("t{i}"), i)).collect();
    h.worker.assign(tasks.clone()).await;
    for i in 1..=3 {
        h.wait_state(&format!("t{i}"), TaskState::Running).await;
    }
    h.worker
        .assign(vec![tasks[0].clone(), tasks[2].clone()])
        .await;
    h.wait_state("t2", TaskState::Shutdown).await;
    h.engine
        .wait_for(|cs| !cs.iter().any(|c| c.task_id == "t2"))
        .await;
    h.wait_forgotten("t2").await;
    assert_eq!(h.engine.count("shutdown", "t2"), 1);
    // The others are untouched.
    for t in ["t1", "t3"] {
        assert_eq!(h.engine.containers_of(t)[0].run, FakeRun::Running);
    }
    h.worker.shutdown().await;
}

#[tokio::test]
async fn desired_shutdown_interrupts_wait_and_keeps_the_container() {
    let mut h = Harness::new().await;
    let t = running_task("t1", 1);
    h.worker.assign(vec![t.clone()]).await;
    h.wait_state("t1", TaskState::Running).await;
    h.worker
        .assign(vec![with_desired(t, TaskState::Shutdown)])
        .await;
    h.wait_state("t1", TaskState::Shutdown).await;
    let cs = h.engine.containers_of("t1");
    assert_eq!(
        cs.len(),
        1,
        "a terminal task still assigned keeps its container"
    );
    assert_eq!(cs[0].run, FakeRun::Exited(143));
    h.worker.shutdown().await;
}

#[tokio::test]
async fn exits_are_reported_and_terminal_tasks_keep_their_container() {
    let mut h = Harness::new().await;
    h.worker
        .assign(vec![
            test_task("ok", 1, "img:1", &["exit", "0"]),
            test_task("bad", 2, "img:1", &["exit", "3"]),
        ])
        .await;
    h.wait_state("ok", TaskState::Complete).await;
    let s = h.wait_state("bad", TaskState::Failed).await;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.err, "task: non-zero exit (3)");
    assert_eq!(h.engine.containers().len(), 2);
    h.worker.shutdown().await;
}

#[tokio::test]
async fn a_missing_image_rejects_the_task() {
    let mut h = Harness::new().await;
    h.engine.remove_image("nope:1");
    h.worker
        .assign(vec![test_task("t1", 1, "nope:1", &[])])
        .await;
    let s = h.wait_state("t1", TaskState::Rejected).await;
    assert_eq!(s.err, "image nope:1 not found on node n1");
    assert!(h.engine.containers().is_empty());
    h.worker.shutdown().await;
}

#[tokio::test]
async fn a_new_worker_adopts_running_containers() {
    let mut h = Harness::new().await;
    let tasks: Vec<Task> = (1..=2).map(|i| running_task(&format!("t{i}"), i)).collect();
    h.worker.assign(tasks.clone()).await;
    for t in &tasks {
        h.wait_state(&t.id, TaskState::Running).await;
    }
    let before = h.engine.containers();

    let mut h = h.restart().await;
    // Containers kept running across the restart, and the new worker supervises them
    // without an assignment yet (it read them from its database).
    assert_eq!(h.engine.containers(), before);
    h.engine.exit("t1", 0);
    h.wait_state("t1", TaskState::Complete).await;

    // The manager's set arrives: nothing is created again.
    h.worker.assign(tasks.clone()).await;
    h.engine.exit("t2", 7);
    let s = h.wait_state("t2", TaskState::Failed).await;
    assert_eq!(s.exit_code, 7);
    for t in &tasks {
        assert_eq!(h.engine.count("create", &t.id), 1, "{} created twice", t.id);
        assert_eq!(h.engine.containers_of(&t.id).len(), 1);
    }
    h.worker.shutdown().await;
}

#[tokio::test]
async fn a_restart_mid_way_adopts_the_started_container() {
    let mut h = Harness::new().await;
    let t = running_task("t1", 1);
    h.worker.assign(vec![t.clone()]).await;
    h.wait_state("t1", TaskState::Running).await;
    // Pretend the agent died before it persisted RUNNING: the db says STARTING.
    let starting = TaskStatus {
        state: TaskState::Starting as i32,
        ..Default::default()
    };
    h.worker.shutdown().await;
    h.db.put(&t, &starting).await.expect("put");
    let dir = h._dir;
    let mut h = Harness::over(h.engine, h.db, dir).await;
    let s = h.wait_state("t1", TaskState::Running).await;
    assert_eq!(s.message, "adopted running container");
    assert_eq!(h.engine.count("create", "t1"), 1);
    assert_eq!(h.engine.count("start", "t1"), 1);
    h.worker.shutdown().await;
}

#[tokio::test]
async fn orphans_of_this_node_are_removed_at_start_and_others_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TaskDb::open(dir.path(), None).expect("open db");
    let engine = FakeEngine::new();
    let orphan = engine.insert_container("ghost", "n1", FakeRun::Running);
    let foreign = engine.insert_container("theirs", "n2", FakeRun::Running);
    let h = Harness::over(engine, db, dir).await;
    let ids: Vec<String> = h.engine.containers().into_iter().map(|c| c.id).collect();
    assert!(!ids.contains(&orphan));
    assert!(ids.contains(&foreign));
    h.worker.shutdown().await;
}

#[tokio::test]
async fn unassigned_after_restart_is_removed() {
    let mut h = Harness::new().await;
    h.worker.assign(vec![running_task("t1", 1)]).await;
    h.wait_state("t1", TaskState::Running).await;
    let mut h = h.restart().await;
    // The manager no longer has the task.
    h.worker.assign(vec![]).await;
    h.wait_state("t1", TaskState::Shutdown).await;
    h.engine.wait_for(|cs| cs.is_empty()).await;
    h.wait_forgotten("t1").await;
    h.worker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn executor_errors_back_off_without_a_busy_loop() {
    let mut h = Harness::new().await;
    h.engine.set_down(true);
    h.worker.assign(vec![running_task("t1", 1)]).await;
    // Let a minute of (paused, auto-advancing) time pass.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let attempts = h
        .engine
        .calls()
        .iter()
        .filter(|c| c.task_id == "t1")
        .count();
    assert!(
        (3..=20).contains(&attempts),
        "{attempts} attempts in a minute"
    );
    assert!(
        h.latest.is_empty() && h.rx.try_recv().is_err(),
        "no state moved"
    );
    h.engine.set_down(false);
    // Let the pending backoff (at most MAX_BACKOFF) end, then go on in real time: the
    // database flushes on sled's own threads, which a paused clock does not wait for.
    tokio::time::advance(super::MAX_BACKOFF + Duration::from_secs(1)).await;
    tokio::time::resume();
    h.wait_state("t1", TaskState::Running).await;
    h.worker.shutdown().await;
}

fn health_task(id: &str, slot: u64) -> Task {
    let mut t = running_task(id, slot);
    if let Some(c) = t.spec.as_mut().and_then(|s| s.container.as_mut()) {
        c.healthcheck = Some(shoal_proto::HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            ..Default::default()
        });
    }
    t
}

impl Harness {
    /// Reads statuses until one of `task_id` satisfies `cond`.
    async fn wait_status(
        &mut self,
        task_id: &str,
        cond: impl Fn(&TaskStatus) -> bool,
    ) -> TaskStatus {
        if let Some(s) = self.latest.get(task_id).filter(|s| cond(s)) {
            return s.clone();
        }
        let fut = async {
            loop {
                let (id, status) = self.rx.recv().await.expect("status channel closed");
                self.latest.insert(id.clone(), status.clone());
                if id == task_id && cond(&status) {
                    return status;
                }
            }
        };
        tokio::time::timeout(LIMIT, fut)
            .await
            .unwrap_or_else(|_| panic!("task {task_id}: awaited status never came"))
    }
}

#[tokio::test]
async fn a_healthcheck_wait_is_reported_and_ends_running_once_healthy() {
    use crate::executor::Health;
    let mut h = Harness::new().await;
    h.worker.assign(vec![health_task("t1", 1)]).await;
    let st = h
        .wait_status("t1", |s| {
            state(s) == TaskState::Starting && s.health == "starting"
        })
        .await;
    assert_eq!(st.message, crate::executor::WAITING_FOR_HEALTH);
    // Waiting for health does not hold a start place: others start meanwhile.
    let others: Vec<Task> = (2..=6).map(|i| running_task(&format!("t{i}"), i)).collect();
    let mut all = vec![health_task("t1", 1)];
    all.extend(others);
    h.worker.assign(all).await;
    for i in 2..=6 {
        h.wait_status(&format!("t{i}"), |s| state(s) == TaskState::Running)
            .await;
    }
    h.engine.set_health("t1", Health::Healthy);
    let st = h
        .wait_status("t1", |s| state(s) >= TaskState::Running)
        .await;
    assert_eq!(state(&st), TaskState::Running);
    assert_eq!(st.health, "healthy");
    h.worker.shutdown().await;
}

#[tokio::test]
async fn desired_shutdown_interrupts_the_healthcheck_wait() {
    let mut h = Harness::new().await;
    let t = health_task("t1", 1);
    h.worker.assign(vec![t.clone()]).await;
    h.wait_status("t1", |s| s.health == "starting").await;
    h.worker
        .assign(vec![with_desired(t, TaskState::Shutdown)])
        .await;
    let st = h
        .wait_status("t1", |s| state(s) >= TaskState::Shutdown)
        .await;
    assert_eq!(state(&st), TaskState::Shutdown);
    assert_eq!(h.engine.containers_of("t1")[0].run, FakeRun::Exited(143));
    h.worker.shutdown().await;
}

#[tokio::test]
async fn an_unhealthy_container_fails_its_running_task() {
    use crate::executor::Health;
    let mut h = Harness::new().await;
    h.worker.assign(vec![health_task("t1", 1)]).await;
    h.wait_status("t1", |s| s.health == "starting").await;
    h.engine.set_health("t1", Health::Healthy);
    h.wait_status("t1", |s| state(s) == TaskState::Running)
        .await;
    h.engine.set_health("t1", Health::Unhealthy);
    let st = h.wait_status("t1", |s| state(s) > TaskState::Running).await;
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.err, "task: container is unhealthy");
    assert_eq!(st.health, "unhealthy");
    assert_eq!(h.engine.containers_of("t1")[0].run, FakeRun::Exited(143));
    h.worker.shutdown().await;
}
