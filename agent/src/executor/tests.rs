//! `step` against the FAKE controller: one case per transition.

use shoal_proto::{Task, TaskState, TaskStatus};

use super::fake::{test_task, FakeEngine, FakeRun};
use super::{step, Controller, Executor, Health, StepError};

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

// ---- healthchecks ----

fn health_case(test: &[&str]) -> Case {
    let engine = FakeEngine::new();
    let mut task = test_task("t1", 1, "img:1", &[]);
    if let Some(c) = task.spec.as_mut().and_then(|s| s.container.as_mut()) {
        c.healthcheck = Some(shoal_proto::HealthConfig {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval_ms: 1_000,
            retries: 1,
            ..Default::default()
        });
    }
    let ctl = engine.executor("n1").controller(&task).expect("controller");
    Case { engine, task, ctl }
}

/// Steps from ASSIGNED to the STARTING status that waits for the healthcheck.
async fn until_health_wait(c: &mut Case) -> TaskStatus {
    let mut st = status(TaskState::Assigned);
    while state(&st) < TaskState::Starting || st.health.is_empty() {
        st = step(&c.task, &st, c.ctl.as_mut()).await.expect("step");
        assert!(state(&st) <= TaskState::Starting, "{st:?}");
    }
    st
}

/// True if `step` from `st` is still waiting after a while.
async fn still_waits(c: &mut Case, st: &TaskStatus) -> bool {
    tokio::time::timeout(
        std::time::Duration::from_millis(50),
        step(&c.task, st, c.ctl.as_mut()),
    )
    .await
    .is_err()
}

#[tokio::test]
async fn a_healthcheck_holds_the_task_in_starting_until_healthy() {
    let mut c = health_case(&["CMD-SHELL", "true"]);
    let st = until_health_wait(&mut c).await;
    assert_eq!(state(&st), TaskState::Starting);
    assert_eq!(st.message, super::WAITING_FOR_HEALTH);
    assert_eq!(st.health, "starting");
    assert!(!st.container_id.is_empty());
    assert_eq!(c.engine.containers_of("t1")[0].run, FakeRun::Running);

    // Not healthy yet: the step waits.
    assert!(still_waits(&mut c, &st).await);

    c.engine.set_health("t1", Health::Healthy);
    let st = step(&c.task, &st, c.ctl.as_mut()).await.expect("healthy");
    assert_eq!(state(&st), TaskState::Running);
    assert_eq!(st.health, "healthy");
    assert!(st.err.is_empty());

    // RUNNING waits for an exit (or unhealth) as usual.
    assert!(still_waits(&mut c, &st).await);
    c.engine.exit("t1", 0);
    let st = step(&c.task, &st, c.ctl.as_mut()).await.expect("exit");
    assert_eq!(state(&st), TaskState::Complete);
}

#[tokio::test]
async fn unhealthy_while_starting_fails_and_stops_the_container() {
    let mut c = health_case(&["CMD-SHELL", "false"]);
    let st = until_health_wait(&mut c).await;
    c.engine.set_health("t1", Health::Unhealthy);
    let st = step(&c.task, &st, c.ctl.as_mut()).await.expect("unhealthy");
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.err, "task: container is unhealthy");
    assert_eq!(st.health, "unhealthy");
    assert_eq!(c.engine.count("shutdown", "t1"), 1);
    assert_eq!(c.engine.containers_of("t1")[0].run, FakeRun::Exited(143));
}

#[tokio::test]
async fn unhealthy_after_running_fails_and_stops_the_container() {
    let mut c = health_case(&["CMD-SHELL", "true"]);
    let st = until_health_wait(&mut c).await;
    c.engine.set_health("t1", Health::Healthy);
    let st = step(&c.task, &st, c.ctl.as_mut()).await.expect("healthy");
    assert_eq!(state(&st), TaskState::Running);

    let fut = step(&c.task, &st, c.ctl.as_mut());
    let engine = c.engine.clone();
    let (r, ()) = tokio::join!(fut, async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        engine.set_health("t1", Health::Unhealthy);
    });
    let st = r.expect("unhealthy");
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.err, "task: container is unhealthy");
    assert_eq!(st.health, "unhealthy");
    assert_eq!(c.engine.containers_of("t1")[0].run, FakeRun::Exited(143));
    assert_eq!(st.exit_code, 143, "the stopped process's exit code");
}

#[tokio::test]
async fn an_exit_before_healthy_ends_with_the_exit_code() {
    let mut c = health_case(&["CMD-SHELL", "true"]);
    let st = until_health_wait(&mut c).await;
    c.engine.exit("t1", 3);
    let mut st = step(&c.task, &st, c.ctl.as_mut()).await.expect("exit");
    while !state(&st).is_terminal() {
        st = step(&c.task, &st, c.ctl.as_mut()).await.expect("step");
    }
    assert_eq!(state(&st), TaskState::Failed);
    assert_eq!(st.err, "task: non-zero exit (3)");
}

#[tokio::test]
async fn no_healthcheck_runs_at_once() {
    let mut c = health_case(&["NONE"]);
    assert_eq!(
        run_until(&mut c, TaskState::Running).await,
        TaskState::Running
    );
    assert_eq!(c.engine.count("wait_health", "t1"), 0);
}

#[tokio::test]
async fn a_restarted_agent_keeps_waiting_for_the_health_of_its_container() {
    let mut c = health_case(&["CMD-SHELL", "true"]);
    let before = until_health_wait(&mut c).await;
    let mut ctl = c
        .engine
        .executor("n1")
        .controller(&c.task)
        .expect("controller");
    // The db said STARTING (before the health wait was stored): back to the wait.
    let st = step(&c.task, &status(TaskState::Starting), ctl.as_mut())
        .await
        .expect("adopt");
    assert_eq!(state(&st), TaskState::Starting);
    assert_eq!(st.health, "starting");
    assert_eq!(st.container_id, before.container_id);
    assert_eq!(c.engine.count("start", "t1"), 1);

    c.engine.set_health("t1", Health::Healthy);
    let st = step(&c.task, &st, ctl.as_mut()).await.expect("healthy");
    assert_eq!(state(&st), TaskState::Running);
    // A healthy container is adopted as RUNNING.
    let mut ctl = c
        .engine
        .executor("n1")
        .controller(&c.task)
        .expect("controller");
    let st = step(&c.task, &status(TaskState::Preparing), ctl.as_mut())
        .await
        .expect("adopt");
    assert_eq!(state(&st), TaskState::Running);
    assert_eq!(st.health, "healthy");
}

#[test]
fn templates_fill_in_the_task_the_service_and_the_node() {
    use super::docker::expand_template;
    let task = Task {
        id: "t1".into(),
        service_id: "s1".into(),
        service_name: "app_web".into(),
        slot: 2,
        ..Default::default()
    };
    assert_eq!(
        expand_template(
            "{{.Service.Name}}-{{.Task.Slot}}@{{ .Node.Hostname }}",
            &task,
            "n1",
            "host1"
        ),
        "app_web-2@host1"
    );
    assert_eq!(expand_template("plain", &task, "n1", "h"), "plain");
    assert_eq!(
        expand_template("{{.Unknown}}-{{.Task.ID}}", &task, "n1", "h"),
        "{{.Unknown}}-t1"
    );
    assert_eq!(
        expand_template("open {{.Task.ID", &task, "n1", "h"),
        "open {{.Task.ID"
    );
    // A global task has no slot: the node id stands in, as Swarm's.
    let global = Task { slot: 0, ..task };
    assert_eq!(expand_template("{{.Task.Slot}}", &global, "n1", "h"), "n1");
}
