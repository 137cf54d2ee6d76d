//! `step` against the FAKE controller: one case per transition.

use shoal_proto::{Task, TaskState, TaskStatus};

use super::fake::{test_task, FakeEngine, FakeRun};
use super::{step, Controller, Executor, StepError};

fn status(state: TaskState) -> TaskStatus {
    TaskStatus {
        state: state as i32,
        ..Default::default()
    }
}

fn state(s: &TaskStatus) -> TaskState {
    TaskState::try_from(s.state).unwrap_or(TaskState::New)
}

struct Case {
    engine: FakeEngine,
    task: Task,
    ctl: Box<dyn Controller>,
}

fn case(command: &[&str]) -> Case {
    let engine = FakeEngine::new();
    let task = test_task("t1", 1, "img:1", command);
    let ctl = engine.executor("n1").controller(&task).expect("controller");
    Case { engine, task, ctl }
}

/// Steps from `from` until the task is terminal or paused; returns every state visited.
async fn run(c: &mut Case, from: TaskState) -> Vec<TaskState> {
    let mut st = status(from);
    let mut seen = vec![];
    loop {
        match step(&c.task, &st, c.ctl.as_mut()).await {
            Ok(next) => {
                seen.push(state(&next));
                st = next;
            }
            Err(StepError::Finished { .. }) | Err(StepError::Paused { .. }) => return seen,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[tokio::test]
async fn each_transition_one_step_at_a_time() {
    use TaskState::*;
    // (from, desired, to)
    let table = [
        (New, Running, Accepted),
        (Pending, Running, Accepted),
        (Assigned, Running, Accepted),
        (Accepted, Running, Preparing),
        (Preparing, Running, Ready),
        (Ready, Running, Starting),
        (Starting, Running, Running),
        (Running, Running, Complete),
    ];
    for (from, desired, to) in table {
        let mut c = case(&["exit", "0"]);
        c.task.desired_state = desired as i32;
        // Give later states the container they would have by then.
        if from >= Starting {
            c.ctl.prepare().await.expect("prepare");
        }
        if from >= Running {
            c.ctl.start().await.expect("start");
        }
        let next = step(&c.task, &status(from), c.ctl.as_mut())
            .await
            .unwrap_or_else(|e| panic!("{from:?}: {e}"));
        assert_eq!(state(&next), to, "from {from:?}");
        assert!(next.timestamp_ms > 0);
        assert!(next.err.is_empty());
    }
}

#[tokio::test]
async fn runs_to_complete_and_reports_container() {
    let mut c = case(&["exit", "0"]);
    let mut st = status(TaskState::Assigned);
    loop {
        match step(&c.task, &st, c.ctl.as_mut()).await {
            Ok(next) => st = next,
            Err(StepError::Finished { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(state(&st), TaskState::Complete);
    assert_eq!(st.exit_code, 0);
    let containers = c.engine.containers_of("t1");
    assert_eq!(containers.len(), 1);
    assert_eq!(st.container_id, containers[0].id);
}

#[tokio::test]
async fn non_zero_exit_fails_with_exit_code() {
    let mut c = case(&["exit", "3"]);
    let seen = run(&mut c, TaskState::Assigned).await;
    assert_eq!(seen.last(), Some(&TaskState::Failed));
    let mut st = status(TaskState::Running);
    st = step(&c.task, &st, c.ctl.as_mut()).await.expect("wait");
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.err, "task: non-zero exit (3)");
}

#[tokio::test]
async fn missing_image_rejects() {
    let mut c = case(&[]);
    c.engine.remove_image("img:1");
    let st = step(&c.task, &status(TaskState::Preparing), c.ctl.as_mut())
        .await
        .expect("step");
    assert_eq!(state(&st), TaskState::Rejected);
    assert_eq!(st.err, "image img:1 not found on node n1");
    assert!(c.engine.containers().is_empty());
}

#[tokio::test]
async fn start_of_a_vanished_container_fails() {
    let mut c = case(&[]);
    // No prepare: there is no container to start.
    let st = step(&c.task, &status(TaskState::Starting), c.ctl.as_mut())
        .await
        .expect("step");
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.err, "container of task t1 not found");
}

#[tokio::test]
async fn shutdown_from_running() {
    let mut c = case(&[]);
    let seen = run_until(&mut c, TaskState::Running).await;
    assert_eq!(seen, TaskState::Running);
    assert_eq!(c.engine.containers_of("t1")[0].run, FakeRun::Running);
    c.task.desired_state = TaskState::Shutdown as i32;
    let st = step(&c.task, &status(TaskState::Running), c.ctl.as_mut())
        .await
        .expect("shutdown");
    assert_eq!(state(&st), TaskState::Shutdown);
    assert_eq!(c.engine.containers_of("t1")[0].run, FakeRun::Exited(143));
    // SHUTDOWN is terminal: nothing more happens.
    let again = step(&c.task, &st, c.ctl.as_mut()).await;
    assert!(
        matches!(again, Err(StepError::Finished { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn shutdown_before_any_container() {
    let mut c = case(&[]);
    c.task.desired_state = TaskState::Shutdown as i32;
    let st = step(&c.task, &status(TaskState::Assigned), c.ctl.as_mut())
        .await
        .expect("shutdown");
    assert_eq!(state(&st), TaskState::Shutdown);
    assert!(c.engine.containers().is_empty());
}

#[tokio::test]
async fn terminal_states_are_unchanged() {
    use TaskState::*;
    for terminal in [Complete, Shutdown, Failed, Rejected, Orphaned] {
        for desired in [Running, Shutdown, Remove] {
            let mut c = case(&[]);
            c.task.desired_state = desired as i32;
            let r = step(&c.task, &status(terminal), c.ctl.as_mut()).await;
            assert!(
                matches!(r, Err(StepError::Finished { .. })),
                "{terminal:?}: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn pauses_at_desired_state() {
    let mut c = case(&[]);
    c.task.desired_state = TaskState::Accepted as i32;
    let r = step(&c.task, &status(TaskState::Accepted), c.ctl.as_mut()).await;
    assert!(matches!(r, Err(StepError::Paused { .. })), "{r:?}");
    // READY proceeds only when the desired state is past it.
    c.task.desired_state = TaskState::Ready as i32;
    let r = step(&c.task, &status(TaskState::Ready), c.ctl.as_mut()).await;
    assert!(matches!(r, Err(StepError::Paused { .. })), "{r:?}");
}

#[tokio::test]
async fn temporary_errors_retry_without_moving() {
    let mut c = case(&[]);
    c.engine.set_down(true);
    let r = step(&c.task, &status(TaskState::Preparing), c.ctl.as_mut()).await;
    assert!(matches!(r, Err(StepError::Retry { .. })), "{r:?}");
    c.engine.set_down(false);
    let st = step(&c.task, &status(TaskState::Preparing), c.ctl.as_mut())
        .await
        .expect("step");
    assert_eq!(state(&st), TaskState::Ready);
}

#[tokio::test]
async fn adopts_a_started_container_instead_of_creating_another() {
    let mut c = case(&[]);
    run_until(&mut c, TaskState::Running).await;
    assert_eq!(c.engine.count("create", "t1"), 1);

    // A restarted agent: a new controller, and the db says the task was still PREPARING.
    let mut ctl = c
        .engine
        .executor("n1")
        .controller(&c.task)
        .expect("controller");
    let st = step(&c.task, &status(TaskState::Preparing), ctl.as_mut())
        .await
        .expect("adopt");
    assert_eq!(state(&st), TaskState::Running);
    assert_eq!(st.container_id, c.engine.containers_of("t1")[0].id);
    assert_eq!(c.engine.count("create", "t1"), 1);
    assert_eq!(c.engine.containers_of("t1").len(), 1);

    // ... and waits on the adopted container.
    c.engine.exit("t1", 0);
    let st = step(&c.task, &st, ctl.as_mut()).await.expect("wait");
    assert_eq!(state(&st), TaskState::Complete);
}

#[tokio::test]
async fn adopts_a_created_container_through_prepare() {
    let mut c = case(&[]);
    c.ctl.prepare().await.expect("prepare");
    let mut ctl = c
        .engine
        .executor("n1")
        .controller(&c.task)
        .expect("controller");
    let st = step(&c.task, &status(TaskState::Preparing), ctl.as_mut())
        .await
        .expect("prepare");
    assert_eq!(state(&st), TaskState::Ready);
    assert_eq!(c.engine.count("create", "t1"), 1);
    assert_eq!(st.container_id, c.engine.containers_of("t1")[0].id);
}

async fn run_until(c: &mut Case, target: TaskState) -> TaskState {
    let mut st = status(TaskState::Assigned);
    while state(&st) < target {
        st = step(&c.task, &st, c.ctl.as_mut()).await.expect("step");
    }
    state(&st)
}
